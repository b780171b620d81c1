//! JSON events, for long-poll, JSONP and the forever iframe.
//!
//! An event is `{"id":N,"epoch":"E","type":"T","data":"...","time":MS}` plus
//! `"from"` and `"content_type"` when set; a payload that is not text travels
//! as `"data_b64"` instead of `"data"`. A gap is `{"type":"gap","data":"{...}"}`
//! with no id (its epoch is in its payload, see [`crate::Gap::json`]).
//!
//! The escaping is script-safe as well as JSON: `<`, `>`, `&`, U+2028 and
//! U+2029 are written as `\uXXXX`, so the same bytes can sit inside a
//! `<script>` element (iframe) or a JavaScript call (JSONP) and no payload can
//! close the element or break out of the call.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use crate::event::{Cursor, Event, Gap};

/// Appends `s` as a script-safe JSON string literal (see `crate::json_escape`).
pub use crate::json_escape::push_str;

/// The JSON object of one event.
pub(crate) fn encode_event(e: &Event) -> Bytes {
    let mut s = String::with_capacity(e.data.len() + 64);
    s.push_str("{\"id\":");
    s.push_str(itoa(e.id).as_str());
    // An epoch is 0-9 a-z only: nothing to escape.
    s.push_str(",\"epoch\":\"");
    s.push_str(e.epoch.as_str());
    s.push_str("\",\"type\":");
    push_str(&mut s, &e.kind);
    if e.is_text() {
        s.push_str(",\"data\":");
        push_str(&mut s, std::str::from_utf8(&e.data).unwrap_or_default());
    } else {
        s.push_str(",\"data_b64\":\"");
        base64::engine::general_purpose::STANDARD.encode_string(&e.data, &mut s);
        s.push('"');
    }
    if let Some(ct) = &e.content_type {
        s.push_str(",\"content_type\":");
        push_str(&mut s, ct);
    }
    if let Some(from) = &e.from {
        s.push_str(",\"from\":");
        push_str(&mut s, from);
    }
    s.push_str(",\"time\":");
    s.push_str(itoa(e.time_ms).as_str());
    s.push('}');
    Bytes::from(s)
}

/// The JSON object of a gap notice.
pub(crate) fn encode_gap(g: &Gap) -> Bytes {
    let mut s = String::from("{\"type\":\"gap\",\"data\":");
    push_str(&mut s, &g.json());
    s.push('}');
    Bytes::from(s)
}

fn itoa(n: u64) -> String {
    n.to_string()
}

/// The chunks of a long-poll answer: `{"events":[e1,e2,...],"next":"E:N"}`,
/// with each event's shared JSON frame as its own chunk (no copy per poller).
/// `next` is the cursor to poll from next (a string: `EPOCH:ID`).
pub(crate) fn poll_chunks(events: Vec<Bytes>, next: Cursor) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(events.len() * 2 + 2);
    out.push(Bytes::from_static(b"{\"events\":["));
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(Bytes::from_static(b","));
        }
        out.push(e);
    }
    let mut tail = BytesMut::with_capacity(48);
    tail.put_slice(b"],\"next\":\"");
    tail.put_slice(next.to_string().as_bytes());
    tail.put_slice(b"\"}");
    out.push(tail.freeze());
    out
}
