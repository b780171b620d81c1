//! The event: what a publisher sends and every transport carries.
//!
//! An [`Event`] is immutable once the router has given it an id. It is shared
//! as `Arc<Event>` by the ring buffer and by every subscriber, and it keeps one
//! encoded frame per wire format in a `OnceLock`, so 10,000 subscribers of one
//! channel share a single encoding of each event (see `transport`).
//!
//! Ids count from 1 in each *incarnation* of a channel: a channel swept while
//! idle, closed, or lost with a server restart starts over at 1. Each
//! incarnation has an [`Epoch`], and a [`Cursor`] (`EPOCH:ID`) names a place
//! in one incarnation, so a cursor from an earlier one is recognised (and
//! answered with a reset gap) instead of silently skipping events.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::Error;

/// Longest channel name (in bytes).
pub const MAX_CHANNEL_LEN: usize = 128;
/// Longest event type and client id (in bytes).
pub const MAX_TYPE_LEN: usize = 64;

/// Longest epoch (in characters).
pub const MAX_EPOCH_LEN: usize = 16;

/// Number of wire formats with a cached per-event frame.
pub(crate) const FORMATS: usize = 4;

/// An event as the router stores and delivers it.
#[derive(Debug)]
pub struct Event {
    pub(crate) id: u64,
    /// The incarnation of the channel the event was published in; inline
    /// (no allocation, no reference count), copied from the channel.
    pub(crate) epoch: Epoch,
    pub(crate) kind: Box<str>,
    pub(crate) data: Bytes,
    pub(crate) content_type: Option<Box<str>>,
    pub(crate) time_ms: u64,
    pub(crate) from: Option<Box<str>>,
    /// One lazily built encoding per wire format (`transport::Format`).
    pub(crate) frames: [OnceLock<Bytes>; FORMATS],
}

impl Event {
    pub(crate) fn new(epoch: Epoch, id: u64, input: NewEvent) -> Event {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Event {
            id,
            epoch,
            kind: input.kind.into_boxed_str(),
            data: input.data,
            content_type: input.content_type.map(String::into_boxed_str),
            time_ms,
            from: input.from.map(String::into_boxed_str),
            frames: Default::default(),
        }
    }

    /// The id, per channel, strictly increasing from 1.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The incarnation of the channel the event belongs to.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// Where this event is: resuming from it delivers what follows it.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.epoch, self.id)
    }
    /// The event type (`message` unless the publisher chose one).
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The payload, any bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }
    /// The payload's media type, if the publisher gave one.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    /// Server time of publishing, milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }
    /// The publisher's client id, where it identified itself.
    pub fn from(&self) -> Option<&str> {
        self.from.as_deref()
    }
    /// Whether the payload can travel as text: valid UTF-8 with a textual (or no)
    /// content type. Other payloads travel base64-encoded where the format is text.
    pub fn is_text(&self) -> bool {
        is_textual(self.content_type()) && std::str::from_utf8(&self.data).is_ok()
    }
}

fn is_textual(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.ends_with("+json")
        || ct.ends_with("+xml")
        || matches!(
            ct.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-www-form-urlencoded"
        )
}

/// What a publisher hands to [`crate::Hub::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Event type; validated with [`check_type`].
    pub kind: String,
    /// Payload.
    pub data: Bytes,
    /// Media type of the payload.
    pub content_type: Option<String>,
    /// Publisher's client id (for echo suppression and `from`).
    pub from: Option<String>,
}

impl NewEvent {
    /// A `message` event with the given payload.
    pub fn message(data: impl Into<Bytes>) -> NewEvent {
        NewEvent {
            kind: "message".into(),
            data: data.into(),
            content_type: None,
            from: None,
        }
    }

    /// Sets the type.
    pub fn with_kind(mut self, kind: impl Into<String>) -> NewEvent {
        self.kind = kind.into();
        self
    }
}

/// What a subscriber receives: an event, or notice that some were lost.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The next event after the cursor.
    Event(std::sync::Arc<Event>),
    /// Events `from..=to` left the buffer before this subscriber read them.
    Gap(Gap),
}

/// Ids that a subscriber will never see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// First lost id.
    pub from: u64,
    /// Last lost id (`to < from` when nothing was lost, only reset).
    pub to: u64,
    /// The incarnation of the channel the ids belong to; after the gap the
    /// subscriber is at `epoch:to`.
    pub epoch: Epoch,
    /// The subscriber's cursor belongs to another incarnation of the channel
    /// (an earlier run of the server, or a channel swept or closed and made
    /// again), or is ahead of it: ids started over. The client should forget
    /// the ids it has seen and continue from `epoch:to`; `from` is 1.
    pub reset: bool,
}

impl Gap {
    /// The gap's payload as every transport carries it:
    /// `{"from":A,"to":B,"epoch":"E"}`, with `,"reset":true` added for a reset.
    pub fn json(&self) -> String {
        let reset = if self.reset { ",\"reset\":true" } else { "" };
        format!(
            "{{\"from\":{},\"to\":{},\"epoch\":\"{}\"{reset}}}",
            self.from, self.to, self.epoch
        )
    }

    /// The cursor just after the gap.
    pub fn cursor(&self) -> Cursor {
        Cursor::new(self.epoch, self.to)
    }
}

/// The incarnation of a channel: 1 to 16 of `0-9 a-z`.
///
/// The in-memory router makes a random one each time a channel is made (at
/// first use, and again after a sweep or [`crate::Hub::close`]), so a cursor
/// from an earlier incarnation or an earlier run of the server never matches
/// by accident. It is a small inline value (`Copy`, no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch {
    len: u8,
    bytes: [u8; MAX_EPOCH_LEN],
}

/// Characters of a random epoch; 36^10 is about 2^51.
const RANDOM_EPOCH_LEN: usize = 10;

fn epoch_char(b: u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_lowercase()
}

impl Epoch {
    /// A stand-in (`0`) for an event the router has not yet given its
    /// channel's epoch.
    pub(crate) const PLACEHOLDER: Epoch = {
        let mut bytes = [0u8; MAX_EPOCH_LEN];
        bytes[0] = b'0';
        Epoch { len: 1, bytes }
    };

    /// An epoch from its text, checked: 1 to 16 of `0-9 a-z`.
    pub fn new(s: &str) -> Result<Epoch, Error> {
        Epoch::parse(s).ok_or_else(|| {
            Error::bad_request(format!(
                "invalid epoch {} (1 to {MAX_EPOCH_LEN} of 0-9 a-z)",
                quoted(s)
            ))
        })
    }

    fn parse(s: &str) -> Option<Epoch> {
        if s.is_empty() || s.len() > MAX_EPOCH_LEN || !s.bytes().all(epoch_char) {
            return None;
        }
        let mut bytes = [0u8; MAX_EPOCH_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Epoch {
            len: s.len() as u8,
            bytes,
        })
    }

    /// A fresh epoch: a per-process random seed (from the operating system)
    /// mixed with a counter, so no two incarnations in a process share one
    /// and another run of the server picks different ones.
    pub(crate) fn random() -> Epoch {
        static SEED: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b).expect("the operating system's random source");
            u64::from_le_bytes(b)
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // splitmix64: a bijection of the counter, scrambled by the seed.
        let mut x = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let mut bytes = [0u8; MAX_EPOCH_LEN];
        for b in bytes[..RANDOM_EPOCH_LEN].iter_mut().rev() {
            *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
            x /= 36;
        }
        Epoch {
            len: RANDOM_EPOCH_LEN as u8,
            bytes,
        }
    }

    /// The text, 1 to 16 of `0-9 a-z`.
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

impl AsRef<str> for Epoch {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Epoch {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Epoch {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A place in a channel: resume after `id` of incarnation `epoch`.
///
/// Written `EPOCH:ID` (`k3j9x2a0qz:17`), or a bare `ID` that means "in
/// whatever incarnation is current" (kept for hand-written URLs; it cannot
/// tell an earlier incarnation from this one, so it is unsafe across
/// restarts). `?since=` and `Last-Event-ID` take both forms; `0` is the
/// start. A cursor whose epoch is not the channel's current one gets one
/// reset [`Gap`], then the whole new incarnation that is still buffered.
///
/// ```
/// use tandem::Cursor;
/// let c: Cursor = "k3j9x2a:17".parse().unwrap();
/// assert_eq!((c.epoch.unwrap().as_str(), c.id), ("k3j9x2a", 17));
/// assert_eq!(c.to_string(), "k3j9x2a:17");
/// let bare: Cursor = "17".parse().unwrap();
/// assert_eq!((bare.epoch, bare.id, bare.to_string()), (None, 17, "17".to_string()));
/// assert!("K3:17".parse::<Cursor>().is_err());
/// ```
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

    fn parse(s: &str) -> Option<Cursor> {
        let (epoch, id) = match s.split_once(':') {
            Some((e, id)) => (Some(Epoch::parse(e)?), id),
            None => (None, s),
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Cursor {
            epoch,
            id: id.parse().ok()?,
        })
    }

    /// Parses the cursor `what` carries (`since`, `Last-Event-ID`), with an
    /// error that names it and the format.
    pub(crate) fn parse_in(what: &str, s: &str) -> Result<Cursor, Error> {
        Cursor::parse(s).ok_or_else(|| {
            Error::bad_request(format!(
                "invalid cursor {} in {what} ({CURSOR_RULE})",
                quoted(s)
            ))
        })
    }
}

/// The cursor grammar, as error messages name it.
const CURSOR_RULE: &str =
    "EPOCH:ID or ID, where EPOCH is 1 to 16 of 0-9 a-z and ID a non-negative integer";

/// `s` quoted for an error message, cut to 40 characters.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
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
    /// `EPOCH:ID` or `ID`; an error names the format:
    /// `invalid cursor "x" (EPOCH:ID or ID, ...)`.
    fn from_str(s: &str) -> Result<Cursor, Error> {
        Cursor::parse(s).ok_or_else(|| {
            Error::bad_request(format!("invalid cursor {} ({CURSOR_RULE})", quoted(s)))
        })
    }
}

fn name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b':' | b'@' | b'-')
}

/// Checks a channel name: 1 to 128 of `A-Z a-z 0-9 . _ ~ : @ -`.
pub fn check_channel(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_CHANNEL_LEN || !name.bytes().all(name_char) {
        return Err(Error::bad_request(format!(
            "invalid channel name (1 to {MAX_CHANNEL_LEN} of A-Z a-z 0-9 . _ ~ : @ -)"
        )));
    }
    Ok(())
}

/// Checks an event type: 1 to 64 of the channel-name characters.
pub fn check_type(kind: &str) -> Result<(), Error> {
    if kind.is_empty() || kind.len() > MAX_TYPE_LEN || !kind.bytes().all(name_char) {
        return Err(Error::bad_request(format!(
            "invalid event type (1 to {MAX_TYPE_LEN} of A-Z a-z 0-9 . _ ~ : @ -)"
        )));
    }
    Ok(())
}

/// Checks a client id: same rule as event types.
pub fn check_client(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_TYPE_LEN || !id.bytes().all(name_char) {
        return Err(Error::bad_request(format!(
            "invalid client id (1 to {MAX_TYPE_LEN} of A-Z a-z 0-9 . _ ~ : @ -)"
        )));
    }
    Ok(())
}

/// Checks a content type: printable ASCII, no CR/LF, at most 128 bytes, and
/// no space at either end.
pub fn check_content_type(ct: &str) -> Result<(), Error> {
    // Multipart streams carry the content type as a header value, whose
    // surrounding spaces are not part of it (found by the `wire_roundtrip` fuzz
    // target: " " came back as ""). The HTTP publish path trims already; this
    // keeps library publishers to what every transport can carry exactly.
    if ct.is_empty()
        || ct.len() > 128
        || !ct.bytes().all(|b| (0x20..0x7f).contains(&b))
        || ct.trim() != ct
    {
        return Err(Error::bad_request(
            "invalid content type (1 to 128 printable ASCII characters, no space at either end)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_channel("a.b_c~d:e@f-9").is_ok());
        assert!(check_channel("").is_err());
        assert!(check_channel("a/b").is_err());
        assert!(check_channel(&"a".repeat(128)).is_ok());
        assert!(check_channel(&"a".repeat(129)).is_err());
        assert!(check_type("gap").is_ok());
        assert!(check_type("a b").is_err());
    }

    #[test]
    fn text_detection() {
        let mut e = Event::new(Epoch::random(), 1, NewEvent::message("héllo"));
        assert!(e.is_text());
        e.content_type = Some("image/png".into());
        assert!(!e.is_text());
        e.content_type = Some("text/plain; charset=utf-8".into());
        e.data = Bytes::from_static(b"\xff");
        assert!(!e.is_text());
    }

    #[test]
    fn epochs() {
        let a = Epoch::random();
        let b = Epoch::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), RANDOM_EPOCH_LEN);
        assert!(a.as_str().bytes().all(epoch_char));
        assert_eq!(Epoch::new(a.as_str()).unwrap(), a);
        assert!(Epoch::new("0123456789abcdef").is_ok());
        for bad in ["", "0123456789abcdefg", "ABC", "a-b", "é"] {
            let e = Epoch::new(bad).unwrap_err();
            assert!(e.message().starts_with("invalid epoch"), "{e}");
        }
    }

    #[test]
    fn cursors() {
        let c: Cursor = "k3j9x2a:17".parse().unwrap();
        assert_eq!(c, Cursor::new(Epoch::new("k3j9x2a").unwrap(), 17));
        assert_eq!(c.to_string(), "k3j9x2a:17");
        assert_eq!("0".parse::<Cursor>().unwrap(), Cursor::bare(0));
        assert_eq!("007".parse::<Cursor>().unwrap(), Cursor::bare(7));
        let max = format!("z:{}", u64::MAX);
        assert_eq!(max.parse::<Cursor>().unwrap().to_string(), max);
        for bad in [
            "",
            ":",
            ":1",
            "a:",
            "a:b",
            "A:1",
            "a:-1",
            "-1",
            "+1",
            " 1",
            "a:1:2",
            "18446744073709551616",
            "0123456789abcdefg:1",
            "a:1 ",
        ] {
            let e = bad.parse::<Cursor>().unwrap_err();
            assert!(e.is_bad_request());
            assert!(
                e.message().starts_with("invalid cursor") && e.message().contains("EPOCH:ID or ID"),
                "{bad:?}: {e}"
            );
        }
        let e = Cursor::parse_in("since", &"x".repeat(100)).unwrap_err();
        assert!(e.message().contains("in since"), "{e}");
        assert!(e.message().len() < 200, "long input is cut: {e}");
    }

    #[test]
    fn gap_json() {
        let epoch = Epoch::new("e1").unwrap();
        let g = Gap {
            from: 3,
            to: 6,
            epoch,
            reset: false,
        };
        assert_eq!(g.json(), r#"{"from":3,"to":6,"epoch":"e1"}"#);
        let r = Gap {
            from: 1,
            to: 0,
            epoch,
            reset: true,
        };
        assert_eq!(r.json(), r#"{"from":1,"to":0,"epoch":"e1","reset":true}"#);
        assert_eq!(r.cursor().to_string(), "e1:0");
    }
}
