//! Where a subscriber is in a channel: the channel's incarnation and an id.
//!
//! These two types have the shape of the crate's own `Cursor` and `Epoch`
//! (which the server side is gaining at the same time): public `epoch` and
//! `id` fields, `Cursor::bare`, `Cursor::new(epoch, id)`, `Epoch::new`,
//! `as_str`, `Display` and `FromStr`. When both are in one tree this file
//! becomes `pub use crate::{Cursor, Epoch};` and [`parse`] keeps mapping the
//! error; the rest of the client only uses what both have.

use std::fmt;
use std::str::FromStr;

use super::error::Error;

/// The longest epoch a server writes.
const MAX_EPOCH_LEN: usize = 16;

/// The cursor grammar, as error messages name it.
const CURSOR_RULE: &str =
    "EPOCH:ID or ID, where EPOCH is 1 to 16 of 0-9 a-z and ID a non-negative integer";

/// The incarnation of a channel: 1 to 16 of `0-9 a-z`. A server makes a new
/// one each time it makes the channel (at first use, after a restart, after
/// the channel was closed or swept), so ids of different incarnations never
/// pass for one another. A small inline value (`Copy`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch {
    len: u8,
    bytes: [u8; MAX_EPOCH_LEN],
}

impl Epoch {
    /// An epoch from its text, checked: 1 to 16 of `0-9 a-z`.
    pub fn new(s: &str) -> Result<Epoch, Error> {
        Epoch::parse(s).ok_or_else(|| {
            Error::input(format!(
                "invalid epoch {s:?} (1 to {MAX_EPOCH_LEN} of 0-9 a-z)"
            ))
        })
    }

    fn parse(s: &str) -> Option<Epoch> {
        let ok = |b: u8| b.is_ascii_digit() || b.is_ascii_lowercase();
        if s.is_empty() || s.len() > MAX_EPOCH_LEN || !s.bytes().all(ok) {
            return None;
        }
        let mut bytes = [0u8; MAX_EPOCH_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Epoch {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({:?})", self.as_str())
    }
}

impl FromStr for Epoch {
    type Err = Error;
    fn from_str(s: &str) -> Result<Epoch, Error> {
        Epoch::new(s)
    }
}

/// A place in a channel: the last id accounted for (delivered, or reported
/// lost in a gap) in one incarnation of the channel.
///
/// It prints as servers read it in `?since=`: `EPOCH:ID` (`k3j9x2a:17`), or
/// a bare `ID` when the epoch is unknown. A bare id means "in whatever
/// incarnation is current", which cannot tell an earlier incarnation from
/// this one (a server restart, a channel swept and made again): keep the
/// epoch when you store a cursor. `Cursor::bare(0)` asks for every
/// buffered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cursor {
    /// The incarnation `id` belongs to; `None` for a bare id.
    pub epoch: Option<Epoch>,
    /// The last id accounted for (0: none yet).
    pub id: u64,
}

impl Cursor {
    /// `epoch:id`.
    pub fn new(epoch: Epoch, id: u64) -> Cursor {
        Cursor {
            epoch: Some(epoch),
            id,
        }
    }

    /// A bare `id`, in whatever incarnation is current.
    pub fn bare(id: u64) -> Cursor {
        Cursor { epoch: None, id }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.epoch {
            Some(e) => write!(f, "{e}:{}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl FromStr for Cursor {
    type Err = Error;

    /// `EPOCH:ID` or `ID`.
    fn from_str(s: &str) -> Result<Cursor, Error> {
        let bad = || Error::input(format!("invalid cursor {s:?} ({CURSOR_RULE})"));
        let (epoch, id) = match s.split_once(':') {
            Some((e, id)) => (Some(Epoch::parse(e).ok_or_else(bad)?), id),
            None => (None, s),
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Cursor {
            epoch,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// Reads a cursor, as the client's error.
pub(crate) fn parse(s: &str) -> Result<Cursor, Error> {
    s.parse::<Cursor>().map_err(|e| Error::input(e.to_string()))
}

/// Reads an epoch off the wire, as the client's error.
pub(crate) fn parse_epoch(s: &str) -> Result<Epoch, Error> {
    s.parse::<Epoch>()
        .map_err(|e| Error::protocol(format!("the server sent an {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_reads_both_forms() {
        let c = parse("k3j9x2a:17").unwrap();
        assert_eq!((c.epoch.unwrap().as_str(), c.id), ("k3j9x2a", 17));
        assert_eq!(c.to_string(), "k3j9x2a:17");
        let c = parse("42").unwrap();
        assert_eq!((c.epoch, c.id), (None, 42));
        assert_eq!(c.to_string(), "42");
        assert_eq!(Cursor::default(), Cursor::bare(0));
        assert_eq!(
            Cursor::new(Epoch::new("ab").unwrap(), 3).to_string(),
            "ab:3"
        );
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
            "a:+1",
            "12345678901234567:1",
            "a:1:2",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.is_input(), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("invalid cursor"), "{e}");
        }
        assert!(parse_epoch("UP").unwrap_err().is_protocol());
    }
}
