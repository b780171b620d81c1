//! The event: what a publisher sends and every transport carries.
//!
//! An [`Event`] is immutable once the router has given it an id. It is shared
//! as `Arc<Event>` by the ring buffer and by every subscriber, and it keeps one
//! encoded frame per wire format in a `OnceLock`, so 10,000 subscribers of one
//! channel share a single encoding of each event (see `transport`).

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::Error;

/// Longest channel name (in bytes).
pub const MAX_CHANNEL_LEN: usize = 128;
/// Longest event type and client id (in bytes).
pub const MAX_TYPE_LEN: usize = 64;

/// Number of wire formats with a cached per-event frame.
pub(crate) const FORMATS: usize = 4;

/// An event as the router stores and delivers it.
#[derive(Debug)]
pub struct Event {
    pub(crate) id: u64,
    pub(crate) kind: Box<str>,
    pub(crate) data: Bytes,
    pub(crate) content_type: Option<Box<str>>,
    pub(crate) time_ms: u64,
    pub(crate) from: Option<Box<str>>,
    /// One lazily built encoding per wire format (`transport::Format`).
    pub(crate) frames: [OnceLock<Bytes>; FORMATS],
}

impl Event {
    pub(crate) fn new(id: u64, input: NewEvent) -> Event {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Event {
            id,
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
    /// The subscriber's cursor was ahead of the channel, which was removed
    /// while idle and made again: ids started over, and the client should
    /// forget the ids it has seen and continue from `to`.
    pub reset: bool,
}

impl Gap {
    /// The gap's payload as every transport carries it: `{"from":A,"to":B}`,
    /// with `,"reset":true` added for a reset.
    pub fn json(&self) -> String {
        if self.reset {
            format!(
                "{{\"from\":{},\"to\":{},\"reset\":true}}",
                self.from, self.to
            )
        } else {
            format!("{{\"from\":{},\"to\":{}}}", self.from, self.to)
        }
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
        let mut e = Event::new(1, NewEvent::message("héllo"));
        assert!(e.is_text());
        e.content_type = Some("image/png".into());
        assert!(!e.is_text());
        e.content_type = Some("text/plain; charset=utf-8".into());
        e.data = Bytes::from_static(b"\xff");
        assert!(!e.is_text());
    }
}
