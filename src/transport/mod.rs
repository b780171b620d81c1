//! Wire formats: turning events into the bytes each transport writes.
//!
//! One file per format. Each event is encoded at most once per format: the
//! frame is kept in the event's `OnceLock<Bytes>` slot and every subscriber
//! writes a clone of the same `Bytes` (a reference count, not a copy). Where a
//! frame depends on the request (the JSONP callback, the iframe callback) the
//! request-specific bytes are built once per subscriber and written around the
//! shared frame as separate chunks. Every frame names the event's epoch (its
//! channel's incarnation) beside its id, and the epoch is the event's own, so
//! the frame stays the same for every subscriber.
//!
//! The parsers in [`crate::wire`] read these formats back; the fuzz targets
//! check that encode-then-parse gives every event back unchanged.

pub mod iframe;
pub mod json;
pub mod multipart;
pub mod sse;

use bytes::Bytes;

use crate::event::Event;

/// A cached per-event encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// A multipart part (shared by `x-mixed-replace` and `mixed`).
    Multipart = 0,
    /// An SSE event block.
    Sse = 1,
    /// A JSON object (long-poll, JSONP, iframe).
    Json = 2,
    /// An SSE block whose data is the JSON object (`/sse?envelope=json`).
    SseJson = 3,
}

/// The event's frame in `format`, encoding it on first use.
pub(crate) fn frame(event: &Event, format: Format) -> Bytes {
    event.frames[format as usize]
        .get_or_init(|| match format {
            Format::Multipart => multipart::encode_event(event),
            Format::Sse => sse::encode_event(event),
            Format::Json => json::encode_event(event),
            Format::SseJson => sse::encode_envelope(event, &frame(event, Format::Json)),
        })
        .clone()
}

/// Padding of `n` spaces, shared by the stream preludes.
pub(crate) fn spaces(n: usize) -> Vec<u8> {
    vec![b' '; n]
}
