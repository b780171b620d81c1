//! The response body type and the small helpers that build responses.
//!
//! One `Body` for every route: a list of shared `Bytes` chunks with an exact
//! length (hyper sends `Content-Length`), or an endless event stream (hyper
//! sends chunked to HTTP/1.1 clients and a close-delimited body to HTTP/1.0
//! clients, which never see chunked encoding).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::stream::EventStream;

/// The body of every tandem response.
pub struct Body(Kind);

enum Kind {
    /// One chunk (taken when sent), the common case: no queue to allocate.
    One(Option<Bytes>),
    Chunks(VecDeque<Bytes>),
    Stream(Box<EventStream>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::One(c) => write!(f, "Body({} chunks)", c.iter().len()),
            Kind::Chunks(c) => write!(f, "Body({} chunks)", c.len()),
            Kind::Stream(_) => f.write_str("Body(stream)"),
        }
    }
}

impl Body {
    /// A body of these chunks, sent with their total length.
    pub fn chunks(chunks: Vec<Bytes>) -> Body {
        Body(Kind::Chunks(chunks.into()))
    }
    /// An empty body.
    pub fn empty() -> Body {
        Body(Kind::One(None))
    }
    pub(crate) fn stream(s: EventStream) -> Body {
        Body(Kind::Stream(Box::new(s)))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body(Kind::One(Some(b).filter(|b| !b.is_empty())))
    }
}
impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::from(Bytes::from(s))
    }
}
impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().0 {
            Kind::One(chunk) => Poll::Ready(chunk.take().map(|c| Ok(Frame::data(c)))),
            Kind::Chunks(chunks) => Poll::Ready(chunks.pop_front().map(|c| Ok(Frame::data(c)))),
            Kind::Stream(s) => s.poll_chunk(cx).map(|c| c.map(|c| Ok(Frame::data(c)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::One(c) => c.is_none(),
            Kind::Chunks(c) => c.is_empty(),
            Kind::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::One(c) => SizeHint::with_exact(c.as_ref().map_or(0, |c| c.len() as u64)),
            Kind::Chunks(c) => SizeHint::with_exact(c.iter().map(|c| c.len() as u64).sum()),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

/// `n` in decimal, written into `digits` (no `String` per response: this is
/// on the path of every publish).
pub(crate) fn decimal(n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// Headers that keep browsers, proxies and CDNs from caching or buffering.
///
/// The names and values are constants: building them from `&str` on every
/// response (parsing and validating the name each time) was a measurable part
/// of a publish's cost.
pub(crate) fn no_cache<T>(resp: &mut Response<T>) {
    const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache, no-store, no-transform");
    const PRAGMA: HeaderName = HeaderName::from_static("pragma");
    const EXPIRES: HeaderName = HeaderName::from_static("expires");
    const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, NO_CACHE);
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(EXPIRES, HeaderValue::from_static("0"));
    h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

/// A response with a body and a content type.
pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut resp = with_type(status, "application/json", body);
    no_cache(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 202, 65_536, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
