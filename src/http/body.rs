//! The response body type and the small helpers that build responses.
//!
//! One `Body` for every route: a list of shared `Bytes` chunks with an exact
//! length (hyper sends `Content-Length`), an endless event stream (hyper
//! sends chunked to HTTP/1.1 clients and a close-delimited body to HTTP/1.0
//! clients, which never see chunked encoding), or, behind the reverse proxy
//! (`crate::proxy`), the upstream's body passed through frame by frame.
//!
//! Only a proxied body can fail (the upstream's connection breaks mid-body):
//! the error reaches hyper, which then cuts the client's connection instead
//! of ending the body as if it were complete.

use std::collections::VecDeque;
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
    /// A body from elsewhere (the proxy's upstream), frames passed as they come.
    Proxied(Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BoxError> + Send>>),
}

/// The error of a [`Body`]: only a proxied body has any.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::One(c) => write!(f, "Body({} chunks)", c.iter().len()),
            Kind::Chunks(c) => write!(f, "Body({} chunks)", c.len()),
            Kind::Stream(_) => f.write_str("Body(stream)"),
            Kind::Proxied(_) => f.write_str("Body(proxied)"),
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
    pub(crate) fn proxied(
        b: impl hyper::body::Body<Data = Bytes, Error = BoxError> + Send + 'static,
    ) -> Body {
        Body(Kind::Proxied(Box::pin(b)))
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
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Kind::One(chunk) => Poll::Ready(chunk.take().map(|c| Ok(Frame::data(c)))),
            Kind::Chunks(chunks) => Poll::Ready(chunks.pop_front().map(|c| Ok(Frame::data(c)))),
            Kind::Stream(s) => s.poll_chunk(cx).map(|c| c.map(|c| Ok(Frame::data(c)))),
            Kind::Proxied(b) => b.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::One(c) => c.is_none(),
            Kind::Chunks(c) => c.is_empty(),
            Kind::Stream(_) => false,
            Kind::Proxied(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::One(c) => SizeHint::with_exact(c.as_ref().map_or(0, |c| c.len() as u64)),
            Kind::Chunks(c) => SizeHint::with_exact(c.iter().map(|c| c.len() as u64).sum()),
            Kind::Stream(_) => SizeHint::default(),
            Kind::Proxied(b) => b.size_hint(),
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
