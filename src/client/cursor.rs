//! Where a subscriber is in a channel: the channel's incarnation and an id.

use std::fmt;
use std::str::FromStr;

use super::error::Error;

/// A position in a channel: the last id accounted for (delivered, or
/// reported lost in a gap), in one incarnation of the channel.
///
/// It prints as the servers read it in `?since=`: `EPOCH:ID` (`k3j9x2a:17`),
/// or a bare `ID` when the epoch is unknown. A bare id means "in whatever
/// incarnation is current", which is unsafe across a server restart or a
/// channel that was swept and made again: keep the epoch when you store a
/// cursor. `Cursor::start()` (`0`) asks for every buffered event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Cursor {
    epoch: Option<String>,
    id: u64,
}

/// The longest epoch a server writes.
const MAX_EPOCH_LEN: usize = 16;

fn valid_epoch(e: &str) -> bool {
    (1..=MAX_EPOCH_LEN).contains(&e.len())
        && e.bytes()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
}

impl Cursor {
    /// The start of a channel (`since=0`): every event still buffered.
    pub fn start() -> Cursor {
        Cursor::default()
    }

    /// A bare id, in whatever incarnation of the channel is current.
    pub fn new(id: u64) -> Cursor {
        Cursor { epoch: None, id }
    }

    /// An id in one incarnation of the channel. The epoch is 1 to 16 of
    /// `0-9 a-z`, as servers write it.
    pub fn with_epoch(epoch: &str, id: u64) -> Result<Cursor, Error> {
        if !valid_epoch(epoch) {
            return Err(Error::input(format!(
                "bad cursor epoch {epoch:?} (1 to {MAX_EPOCH_LEN} of 0-9 a-z)"
            )));
        }
        Ok(Cursor {
            epoch: Some(epoch.to_string()),
            id,
        })
    }

    /// The id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The channel's incarnation, where the server said.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// Epochs as the wire carries them; not checked again.
    pub(crate) fn from_parts(epoch: Option<String>, id: u64) -> Cursor {
        Cursor { epoch, id }
    }

    /// Whether `self` and `other` are in one incarnation, as far as anyone
    /// can tell: an unknown epoch matches any.
    pub(crate) fn same_incarnation(&self, epoch: Option<&str>) -> bool {
        match (self.epoch(), epoch) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.epoch {
            Some(e) => write!(f, "{e}:{}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl FromStr for Cursor {
    type Err = Error;

    /// Reads `EPOCH:ID` or `ID`.
    fn from_str(s: &str) -> Result<Cursor, Error> {
        let bad = || Error::input(format!("bad cursor {s:?} (EPOCH:ID or ID)"));
        let (epoch, id) = match s.split_once(':') {
            Some((e, i)) => (Some(e), i),
            None => (None, s),
        };
        let id = id.parse::<u64>().map_err(|_| bad())?;
        match epoch {
            Some(e) => Cursor::with_epoch(e, id).map_err(|_| bad()),
            None => Ok(Cursor::new(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_reads_both_forms() {
        let c: Cursor = "k3j9x2a:17".parse().unwrap();
        assert_eq!((c.epoch(), c.id()), (Some("k3j9x2a"), 17));
        assert_eq!(c.to_string(), "k3j9x2a:17");
        let c: Cursor = "42".parse().unwrap();
        assert_eq!((c.epoch(), c.id()), (None, 42));
        assert_eq!(c.to_string(), "42");
        assert_eq!(Cursor::start().to_string(), "0");
    }

    #[test]
    fn refuses_what_no_server_writes() {
        for bad in [
            "",
            ":1",
            "a:",
            "A:1",
            "a:-1",
            "x",
            "12345678901234567:1",
            "a:1:2",
        ] {
            let e = bad.parse::<Cursor>().unwrap_err();
            assert!(e.is_input(), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("bad cursor"), "{e}");
        }
    }

    #[test]
    fn unknown_epochs_match_any() {
        let bare = Cursor::new(3);
        let known = Cursor::with_epoch("ab", 3).unwrap();
        assert!(bare.same_incarnation(Some("zz")));
        assert!(known.same_incarnation(None));
        assert!(known.same_incarnation(Some("ab")));
        assert!(!known.same_incarnation(Some("zz")));
    }
}
