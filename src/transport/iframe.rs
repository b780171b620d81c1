//! The forever iframe, for browsers with neither XHR streaming nor EventSource.
//!
//! An HTML page that never ends: a head, at least 1 KiB of padding (IE and old
//! WebKit render nothing of a streamed document before that), then one
//! `<script>parent.f(EVENT);</script>` per event, where `EVENT` is the shared,
//! script-safe JSON frame of `json.rs`, so no payload can close the script
//! element. Heartbeats are HTML comments.

use bytes::{BufMut, Bytes, BytesMut};

/// Content type of the page.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The least padding the page starts with, whatever the configuration.
pub const MIN_PADDING: usize = 1024;

/// The document head and the padding.
pub(crate) fn prelude(padding: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(padding.max(MIN_PADDING) + 128);
    b.put_slice(b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tandem</title></head><body>\n<!--");
    b.put_slice(&super::spaces(padding.max(MIN_PADDING)));
    b.put_slice(b"-->\n");
    b.freeze()
}

/// What goes before each event's JSON: `<script>parent.CALLBACK(`.
pub(crate) fn script_open(callback: &str) -> Bytes {
    Bytes::from(format!("<script>parent.{callback}("))
}

/// What goes after each event's JSON.
pub(crate) const SCRIPT_CLOSE: &[u8] = b");</script>\n";

/// A comment that keeps the line busy.
pub(crate) const HEARTBEAT: &[u8] = b"<!-- hb -->\n";

/// Sent before the page ends on shutdown.
pub(crate) const CLOSING: &[u8] = b"</body></html>\n";
