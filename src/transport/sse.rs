//! `text/event-stream` (Server-Sent Events).
//!
//! An event is `id: EPOCH:ID` (the event's cursor, so `Last-Event-ID` brings
//! the incarnation back by itself), `event:` and one `data:` line per line of
//! the payload (CR, LF and CRLF all split lines, as the SSE parser would). A payload that
//! is not text is sent base64-encoded, announced by a `:base64` comment line
//! that `EventSource` ignores and tandem's own client reads. A gap is an
//! `event: gap` with no `id:`, so `Last-Event-ID` is not moved by it.
//!
//! The prelude is a comment of padding (old proxies and the IE polyfills want
//! about 2 KiB before they pass anything on) and a `retry:` line; heartbeats
//! are comment lines, which `EventSource` never shows.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use crate::event::{Event, Gap};

/// Content type of the stream.
pub const CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

/// Padding comment and the reconnect delay.
pub(crate) fn prelude(padding: usize, retry_ms: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(padding + 32);
    b.put_slice(b":");
    b.put_slice(&super::spaces(padding));
    b.put_slice(format!("\nretry: {retry_ms}\n\n").as_bytes());
    b.freeze()
}

/// A comment that keeps the line busy.
pub(crate) const HEARTBEAT: &[u8] = b":hb\n\n";

/// The heartbeat of the JSON envelope (`?envelope=json`), also sent once
/// right after its prelude: an `hb` event rather than a comment, because
/// `EventSource` hides comments and tandem.js must see bytes arrive to tell
/// an idle channel from a proxy that buffers the stream (it then falls back
/// to long-poll). Envelope events are all `message`s, so an app listening
/// with `onmessage` never sees these.
pub(crate) const ENVELOPE_HEARTBEAT: &[u8] = b"event: hb\ndata: 1\n\n";

/// The prelude of the JSON envelope: the usual prelude, then one heartbeat.
pub(crate) fn envelope_prelude(padding: usize, retry_ms: u64) -> Bytes {
    let mut b = BytesMut::from(&prelude(padding, retry_ms)[..]);
    b.put_slice(ENVELOPE_HEARTBEAT);
    b.freeze()
}

/// Sent before a stream ends on shutdown: when to come back.
pub(crate) fn closing(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n:closing\n\n"))
}

fn push_data(b: &mut BytesMut, text: &str) {
    let mut rest = text;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        b.put_slice(b"data: ");
        b.put_slice(&rest.as_bytes()[..end]);
        b.put_slice(b"\n");
        if end == rest.len() {
            break;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
}

/// One event block.
pub(crate) fn encode_event(e: &Event) -> Bytes {
    let mut b = BytesMut::with_capacity(e.data.len() + 64);
    b.put_slice(format!("id: {}:{}\nevent: {}\n", e.epoch, e.id, e.kind).as_bytes());
    if e.is_text() {
        push_data(&mut b, std::str::from_utf8(&e.data).unwrap_or_default());
    } else {
        b.put_slice(b":base64\n");
        push_data(
            &mut b,
            &base64::engine::general_purpose::STANDARD.encode(&e.data),
        );
    }
    b.put_slice(b"\n");
    b.freeze()
}

/// One event block in the JSON envelope: `id: E:N` and one `data:` line holding
/// the event's JSON object (which never contains a line break). Used with
/// `?envelope=json`, because `EventSource` only hands events of type
/// `message` to a catch-all handler: in the envelope every event is a
/// `message` and its real type travels inside the JSON.
pub(crate) fn encode_envelope(e: &Event, json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 48);
    b.put_slice(format!("id: {}:{}\ndata: ", e.epoch, e.id).as_bytes());
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// A gap in the JSON envelope.
pub(crate) fn encode_envelope_gap(json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 16);
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// A gap block (no id).
pub(crate) fn encode_gap(g: &Gap) -> Bytes {
    Bytes::from(format!("event: gap\ndata: {}\n\n", g.json()))
}
