//! Not API. What the fuzz targets (`fuzz/`) and the tests reach inside the
//! crate: the pure parsers they check against models, the encoders of the
//! round-trip checks, the client-side wire parsers. Hidden from the docs,
//! exempt from semver, and kept here so that the public modules show only
//! what an embedder uses.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::event::{Epoch, Event, NewEvent};

pub use crate::http::publish::{parse_form, parse_multipart, BodyKind};
pub use crate::http::route::{check_callback, parse_path, percent_decode, Query, Route, Sub};
pub use crate::server::{sniff_bytes, SniffOutcome};
pub use crate::transport::multipart::BOUNDARY;
/// The parsers of every wire format, the client side.
pub mod wire {
    pub use crate::wire::*;
}

/// Encodes an event in every wire format (multipart part, SSE frame, JSON)
/// for the encode-then-parse round trips.
pub fn encode_for_test(epoch: Epoch, id: u64, event: NewEvent) -> [bytes::Bytes; 3] {
    let e = Event::new(epoch, id, event);
    [
        crate::transport::multipart::encode_event(&e),
        crate::transport::sse::encode_event(&e),
        crate::transport::json::encode_event(&e),
    ]
}

/// The output of a future that is ready when first polled, such as a
/// publish into the in-memory backplane, for code with no runtime (the fuzz
/// targets). Panics if it is not ready.
pub fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future was not ready at once"),
    }
}
