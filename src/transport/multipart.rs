//! `multipart/x-mixed-replace` and `multipart/mixed` streams.
//!
//! The body is a preamble (padding), the first delimiter, then one part per
//! event. Each part's frame *ends* with the next delimiter:
//!
//! ```text
//! Content-Type: text/plain\r\n
//! Event-Id: 7\r\n
//! Event-Epoch: k3j9x2a0qz\r\n
//! Event-Type: message\r\n
//! Content-Length: 5\r\n
//! \r\n
//! hello\r\n
//! --tandem-b7d1e0\r\n
//! ```
//!
//! Why the delimiter comes right after the data: a browser showing an
//! `<img src=".../multipart">` only knows an image part is complete when it
//! sees the next delimiter, so writing it at once makes each image appear as
//! it arrives instead of one event late (Firefox). Chromium waits for the
//! next part's whole header block as well: for `<img>` requests the stream
//! repeats the last part of each burst (see `http::stream::Style`).
//!
//! Why heartbeats are header lines (`X-Heartbeat: 1\r\n`): after a delimiter
//! the stream is inside the header block of the next part, where a browser
//! shows nothing until the blank line. An extra header line keeps proxies from
//! timing out without starting a part, so an `<img>` never goes blank.
//!
//! A payload that contains the delimiter is sent base64-encoded with
//! `Content-Transfer-Encoding: base64`, so no event can forge a part.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};

use crate::event::{Event, Gap};

/// The boundary of every multipart stream.
pub const BOUNDARY: &str = "tandem-b7d1e0";

const DELIMITER: &[u8] = b"--tandem-b7d1e0";

/// The response `Content-Type` for `x-mixed-replace` (`mixed == false`) or `mixed`.
pub fn content_type(mixed: bool) -> String {
    let kind = if mixed { "mixed" } else { "x-mixed-replace" };
    format!("multipart/{kind}; boundary={BOUNDARY}")
}

/// Padding, then the first delimiter.
pub(crate) fn prelude(padding: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(padding + 32);
    b.put_slice(&super::spaces(padding));
    b.put_slice(b"\r\n");
    b.put_slice(DELIMITER);
    b.put_slice(b"\r\n");
    b.freeze()
}

/// A header line that keeps an idle stream alive without starting a part.
pub(crate) const HEARTBEAT: &[u8] = b"X-Heartbeat: 1\r\n";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn part(headers: &[(&str, &str)], data: &[u8]) -> Bytes {
    let base64 = contains(data, DELIMITER);
    let encoded;
    let body = if base64 {
        encoded = base64::engine::general_purpose::STANDARD.encode(data);
        encoded.as_bytes()
    } else {
        data
    };
    let mut b = BytesMut::with_capacity(body.len() + 160);
    for (k, v) in headers {
        b.put_slice(k.as_bytes());
        b.put_slice(b": ");
        b.put_slice(v.as_bytes());
        b.put_slice(b"\r\n");
    }
    if base64 {
        b.put_slice(b"Content-Transfer-Encoding: base64\r\n");
    }
    b.put_slice(b"Content-Length: ");
    b.put_slice(body.len().to_string().as_bytes());
    b.put_slice(b"\r\n\r\n");
    b.put_slice(body);
    b.put_slice(b"\r\n");
    b.put_slice(DELIMITER);
    b.put_slice(b"\r\n");
    b.freeze()
}

/// One event's part, ending with the next delimiter.
pub(crate) fn encode_event(e: &Event) -> Bytes {
    let id = e.id.to_string();
    let time = e.time_ms.to_string();
    let ct = e
        .content_type
        .as_deref()
        .unwrap_or("text/plain; charset=utf-8");
    let mut headers = vec![
        ("Content-Type", ct),
        ("Event-Id", &id),
        ("Event-Epoch", e.epoch.as_str()),
        ("Event-Type", &e.kind),
    ];
    if let Some(from) = &e.from {
        headers.push(("Event-From", from));
    }
    headers.push(("Event-Time", &time));
    part(&headers, &e.data)
}

/// A gap notice as a part with no `Event-Id`.
pub(crate) fn encode_gap(g: &Gap) -> Bytes {
    part(
        &[("Content-Type", "application/json"), ("Event-Type", "gap")],
        g.json().as_bytes(),
    )
}
