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

/// On a Redis Cluster, the shard channel announcing the channels of hash
/// slot `slot` (`tandem:ev:{TAG}`, the tag hashing to that slot).
pub fn redis_announce_channel(slot: usize) -> String {
    crate::router::announce_channel(slot)
}
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

/// What the proxy's HTML injection (`src/proxy/inject.rs`) made of a
/// response: see [`inject_for_test`].
#[derive(Debug)]
pub struct Injected {
    /// The nonce of this response's scripts.
    pub nonce: String,
    /// The markup inserted (ASCII; widened in a UTF-16 page).
    pub markup: String,
    /// Whether the body was rewritten (false: passed through).
    pub injecting: bool,
    /// The response's headers afterwards, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The body's data frames; an error ends them.
    pub frames: Vec<Result<bytes::Bytes, String>>,
}

/// Runs the proxy's HTML injection on a 200 response with `headers` whose
/// body arrives in `chunks`, injecting scripts with sources `srcs`.
pub fn inject_for_test(
    headers: &[(&str, &str)],
    chunks: Vec<bytes::Bytes>,
    srcs: &[&str],
) -> Injected {
    use crate::proxy::inject;
    use hyper::body::Body as _;
    struct Chunks(std::collections::VecDeque<bytes::Bytes>);
    impl hyper::body::Body for Chunks {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
        }
    }
    let mut response = hyper::Response::new(Chunks(chunks.into()));
    for (name, value) in headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        let value = hyper::header::HeaderValue::from_str(value).expect("a header value");
        response.headers_mut().append(name, value);
    }
    let scripts = inject::Scripts::new(srcs);
    let (parts, mut body) = inject::inject(response, &scripts).into_parts();
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = Vec::new();
    let injecting = body.injecting();
    loop {
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    frames.push(Ok(data));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                frames.push(Err(e.to_string()));
                break;
            }
            Poll::Ready(None) => break,
            Poll::Pending => panic!("an in-memory body is never pending"),
        }
    }
    Injected {
        nonce: scripts.nonce().to_owned(),
        markup: scripts.markup().to_owned(),
        injecting,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        frames,
    }
}

/// `plain` encoded whole in a content coding (`gzip`, `deflate`, `br`, or
/// anything else for identity), as an upstream would send it.
pub fn content_encode_for_test(coding: &str, plain: &[u8]) -> Vec<u8> {
    crate::proxy::inject::encode_all(coding_for_test(coding), plain)
}

/// `body` decoded whole from a content coding (see [`content_encode_for_test`]).
pub fn content_decode_for_test(coding: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    crate::proxy::inject::decode_all(coding_for_test(coding), body).map_err(|e| e.to_string())
}

fn coding_for_test(coding: &str) -> crate::proxy::inject::Encoding {
    let mut headers = hyper::HeaderMap::new();
    if let Ok(v) = hyper::header::HeaderValue::from_str(coding) {
        headers.insert(hyper::header::CONTENT_ENCODING, v);
    }
    crate::proxy::inject::Encoding::from_headers(&headers)
        .unwrap_or(crate::proxy::inject::Encoding::Identity)
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

/// The proxy's per-help-session cookie jar (`src/cobrowse/jar.rs`), for the
/// `cookie_jar` fuzz target.
#[derive(Debug, Default)]
pub struct JarForTest(crate::cobrowse::jar::Jar);

impl JarForTest {
    /// The limits: cookies kept, bytes of one `name=value`.
    pub const LIMITS: (usize, usize) = (
        crate::cobrowse::jar::MAX_COOKIES,
        crate::cobrowse::jar::MAX_COOKIE_BYTES,
    );
    /// The `name=value` pairs of a `Cookie` header value.
    pub fn pairs(header: &str) -> Vec<(String, String)> {
        crate::cobrowse::jar::pairs(std::iter::once(header))
    }
    /// The customer's browser sent `cookie` with a request to `path`.
    pub fn saw_request(&mut self, path: &str, cookie: &str) {
        self.0.saw_request(path, &Self::pairs(cookie));
    }
    /// The application set a cookie in answer to a request to `path`.
    pub fn set(&mut self, line: &str, path: &str, for_view: bool) {
        self.0.set(line, path, for_view);
    }
    /// The `Cookie` header for a request to `path`.
    pub fn header(&self, path: &str) -> Option<String> {
        self.0.header(path)
    }
    /// The `Set-Cookie` lines the customer's browser has yet to get.
    pub fn hand_over(&mut self, path: &str) -> Vec<String> {
        self.0.hand_over(path)
    }
    /// How many cookies it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }
}

/// The client address the per-address limits count for a request from
/// `peer` with `headers` (`Forwarded`, `X-Forwarded-For`, in order; a value hyper would refuse is left
/// out), when the proxies
/// in `trusted` (CIDR strings, as `--trusted-proxy` takes them) are trusted.
pub fn client_addr_for_test(
    trusted: &[&str],
    peer: std::net::IpAddr,
    headers: &[(&str, &[u8])],
) -> std::net::IpAddr {
    let mut map = hyper::HeaderMap::new();
    for (name, value) in headers {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        // What hyper would refuse never reaches the walk.
        if let Ok(value) = hyper::header::HeaderValue::from_bytes(value) {
            map.append(name, value);
        }
    }
    let cfg = crate::http::HttpConfig::default()
        .trusted_proxies(trusted.iter().map(|s| s.to_string()).collect());
    crate::http::limits::Limits::new(&cfg).client(peer, &map)
}

/// Whether `cidr` parses as a trusted-proxy block, and if so whether it holds `ip`.
pub fn cidr_contains_for_test(cidr: &str, ip: std::net::IpAddr) -> Option<bool> {
    crate::http::limits::Cidr::parse(cidr).map(|c| c.contains(ip))
}

/// The value of cookie `name` in `Cookie` headers with these values (a
/// value hyper would refuse is left out), as co-browsing reads its own
/// cookies and an application's shared session
/// (`tandem::cobrowse::share::cookie`).
pub fn cookie_for_test(values: &[&[u8]], name: &str) -> Option<String> {
    let mut map = hyper::HeaderMap::new();
    for v in values {
        if let Ok(v) = hyper::header::HeaderValue::from_bytes(v) {
            map.append(hyper::header::COOKIE, v);
        }
    }
    crate::cobrowse::share::cookie(&map, name)
}

/// The transport `GET /ch/{c}` picks for an `Accept` header with this value
/// (`None`: no such header, or one hyper would refuse).
pub fn negotiate_for_test(accept: Option<&[u8]>) -> Sub {
    let mut map = hyper::HeaderMap::new();
    if let Some(Ok(v)) = accept.map(hyper::header::HeaderValue::from_bytes) {
        map.insert(hyper::header::ACCEPT, v);
    }
    crate::http::service::negotiate(&map)
}

/// What `--tls-cert`/`--tls-key` files with these contents give: `Ok` with
/// the chain's length, or the error (`cert: ...`, `key: ...`,
/// `mismatch: ...`) the start-up message is made from.
pub fn tls_from_pem_for_test(cert_pem: &[u8], key_pem: &[u8]) -> Result<usize, String> {
    use crate::server::PemError;
    match crate::server::from_pem(cert_pem, key_pem) {
        Ok(certified) => Ok(certified.cert.len()),
        Err(PemError::Cert(e)) => Err(format!("cert: {e}")),
        Err(PemError::Key(e)) => Err(format!("key: {e}")),
        Err(PemError::Mismatch(e)) => Err(format!("mismatch: {e}")),
    }
}

/// An HTTP/2 request's URI and `Host` as the service sees them after
/// `as_http1`: `None` if hyper would not take `uri` as a URI; else the URI
/// and the `Host` value (`host` `None`, or one hyper would refuse: none).
pub fn h2_as_http1_for_test(uri: &[u8], host: Option<&[u8]>) -> Option<(String, Option<Vec<u8>>)> {
    let mut uri = hyper::Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(uri)).ok()?;
    let mut map = hyper::HeaderMap::new();
    if let Some(Ok(v)) = host.map(hyper::header::HeaderValue::from_bytes) {
        map.insert(hyper::header::HOST, v);
    }
    crate::server::as_http1(&mut uri, &mut map);
    let host = map.get(hyper::header::HOST).map(|v| v.as_bytes().to_vec());
    Some((uri.to_string(), host))
}
