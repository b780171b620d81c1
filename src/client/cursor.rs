//! Where a subscriber is in a channel: the crate's own [`Cursor`] and
//! [`Epoch`] (the channel's incarnation), read as the client's errors.

pub use crate::{Cursor, Epoch};

use super::error::Error;

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
