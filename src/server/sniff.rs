//! Reading a request head before deciding who serves it.
//!
//! The accept loop reads each request head itself with `httparse` and sorts
//! the request into one of three paths:
//!
//! - a GET that opens an endless stream goes to the lean stream path
//!   (`lean::serve_stream`), which owns the socket for hours and keeps almost
//!   nothing per connection;
//! - a plain request with a body of known size (a publish: `POST` with
//!   `Content-Length`, HTTP/1.1, no `Expect`, no `Upgrade`), or a long-poll
//!   (a GET of `/poll` or `/jsonp`, HTTP/1.1, no body) is read whole
//!   (`read_body`) and answered on the lean path too (`lean::answer`), and
//!   the connection comes back here for its next request. Publishing is the
//!   hot path for servers that fan events out, and hyper's general machinery
//!   (header map conversions, body channel, dispatcher) was half of a
//!   publish's instructions; a long-polling client comes back on its
//!   connection after every answer, and through hyper each poll would pay
//!   for a fresh hyper connection as well as this parse;
//! - everything else (chunked bodies, `Expect: 100-continue`, HTTP/1.0
//!   requests, pages, heads with more headers than
//!   the lean path takes) is served by hyper, one exchange, with the bytes
//!   already read put back in front of the socket (`handoff.rs`); then the
//!   connection comes back here for its next request.
//!
//! Every head of a connection is read here, so its limits are tandem's on
//! every request: a head over `--max-head-bytes` is refused with 431 (414
//! when its request line alone is over `--max-url-bytes`), a malformed one
//! (what `httparse` or `http`'s types refuse: bare CR, NUL, obsolete line
//! folding, a space before the colon; or a framing hyper would refuse: two
//! lengths, a length that is not digits, a coding other than `chunked`
//! last) with 400, each with a JSON body, and the connection closed.
//!
//! The buffer lives with the connection, so pipelined requests are parsed
//! from what was already read before reading more.

use std::io;

use super::Io;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::Empty;
use hyper::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE,
};
use hyper::{Method, Request, Version};
use tokio::io::AsyncReadExt;

use crate::http::Service;

/// Most headers in a request taken on the lean path.
const MAX_HEADERS: usize = 48;

/// Most headers in a request at all (hyper's own limit, which serves the
/// requests with more than `MAX_HEADERS`).
const MAX_HYPER_HEADERS: usize = 100;

/// What the next request on a connection turned out to be.
pub(crate) enum Sniff {
    /// A stream subscription: serve it on the lean path.
    Stream(Request<Empty<Bytes>>),
    /// A request with a body of `length` bytes (read it with `read_body`):
    /// answer it on the lean path, and keep the connection for another
    /// request if `keep_alive`.
    Exchange {
        req: Request<()>,
        length: usize,
        keep_alive: bool,
    },
    /// Anything else: hyper serves the request, after these bytes (the
    /// request head, then what followed it); whether hyper could keep the
    /// connection after it (its own rules, from the head as sent: hyper
    /// drops some of what they read, a `Content-Length` beside chunked).
    Hyper(Bytes, Bytes, bool),
    /// The client closed between requests (or in the middle of a head).
    Closed,
    /// The first bytes of a head came but not all of it, and the caller
    /// asked to be told (`sniff`'s `waiting`): start the head's timer.
    Started,
    /// A head over `--max-head-bytes` (431), or whose request line alone is
    /// over `--max-url-bytes` (414), or malformed (400): answer this and
    /// close.
    Refuse(crate::Error),
}

/// Reads the next request head from `stream`, after whatever `buf` already
/// holds, and decides who serves it.
///
/// Cancel-safe: what was read stays in `buf`, and a later call starts from
/// it (the caller's idle timer may interrupt a wait and resume it).
///
/// With `waiting` (the caller's head timer is not running yet), a head
/// that is there only in part returns `Started` instead of waiting for the
/// rest; a head that came whole (nearly always) never does.
pub(crate) async fn sniff(
    stream: &mut impl Io,
    buf: &mut BytesMut,
    svc: &Service,
    waiting: bool,
) -> io::Result<Sniff> {
    let max_head = svc.config().max_head_bytes;
    {
        loop {
            if !buf.is_empty() {
                match parse(buf) {
                    Parsed::Partial if buf.len() < max_head => {
                        if waiting {
                            return Ok(Sniff::Started);
                        }
                    }
                    Parsed::Partial => return Ok(Sniff::Refuse(too_large(buf, svc))),
                    Parsed::Malformed(why) => {
                        return Ok(Sniff::Refuse(crate::Error::bad_request(format!(
                            "malformed request head ({why})"
                        ))))
                    }
                    Parsed::TooMany => {
                        return Ok(Sniff::Refuse(crate::Error::head_too_large(format!(
                            "too many request headers (max {MAX_HYPER_HEADERS})"
                        ))))
                    }
                    // More headers than the lean path takes: hyper reads it.
                    Parsed::Other(keeps) => {
                        return Ok(Sniff::Hyper(Bytes::new(), buf.split().freeze(), keeps))
                    }
                    // Complete, but it came in one read larger than the limit.
                    Parsed::Head(head) if head.raw.len() > max_head => {
                        return Ok(Sniff::Refuse(too_large(&head.raw, svc)))
                    }
                    Parsed::Head(head) => {
                        let raw = head.raw.clone();
                        return match classify(head, svc, buf.is_empty()) {
                            Class::Stream(req) => {
                                // The stream lives for hours: free the
                                // buffer now (the request's slices of the
                                // head keep only the head alive, briefly).
                                *buf = BytesMut::new();
                                Ok(Sniff::Stream(req.map(|()| Empty::new())))
                            }
                            Class::Exchange(req, length, keep_alive) => Ok(Sniff::Exchange {
                                req,
                                length,
                                keep_alive,
                            }),
                            Class::Hyper(keeps) => {
                                Ok(Sniff::Hyper(raw, buf.split().freeze(), keeps))
                            }
                        };
                    }
                }
            }
            reserve(buf);
            // The client closed, between requests or in the middle of a
            // head: nothing to answer.
            if stream.read_buf(buf).await? == 0 {
                return Ok(Sniff::Closed);
            }
        }
    }
}

/// The refusal of a head over the limit: 414 when its request line alone
/// is too long (the URL is what is wrong), else 431. A complete head with a
/// long URL but within the head limit is answered 414 by the service.
fn too_large(head: &[u8], svc: &Service) -> crate::Error {
    let cfg = svc.config();
    let line = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    // "GET " and " HTTP/1.1\r": a little over the URL itself.
    if line > cfg.max_url_bytes + 20 {
        crate::Error::uri_too_long(format!("url too long (max {} bytes)", cfg.max_url_bytes))
    } else {
        crate::Error::head_too_large(format!(
            "request head too large (max {} bytes)",
            cfg.max_head_bytes
        ))
    }
}

/// Room for the next read: `read_buf` would otherwise grow a full buffer by
/// a few dozen bytes at a time. A connection's first read gets 1 KiB, enough
/// for a subscriber's request: with thousands of subscribers connecting at
/// once, larger short-lived buffers leave the allocator holding more memory.
pub(crate) fn reserve(buf: &mut BytesMut) {
    if buf.capacity() == 0 {
        buf.reserve(1024);
    } else if buf.capacity() - buf.len() < 512 {
        buf.reserve(4096);
    }
}

// Returned once per request and matched at once: boxing the large variant
// would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A complete head (taken out of the buffer).
    Head(Head),
    Partial,
    /// Not a valid request head: what is wrong with it.
    Malformed(&'static str),
    /// A complete head with more headers than `MAX_HEADERS`, within
    /// `MAX_HYPER_HEADERS` (left in the buffer); whether hyper could keep
    /// the connection after it.
    Other(bool),
    /// More headers than `MAX_HYPER_HEADERS`.
    TooMany,
}

/// A request head, and what the choice of path depends on, gathered while
/// converting the parsed headers (cheaper than looking them up afterwards).
struct Head {
    req: Request<()>,
    /// The head's bytes: the request's path and header values are slices
    /// of them (no copy each), and hyper is handed them back if it must
    /// serve the request after all.
    raw: Bytes,
    /// `Content-Length`, `Some(0)` when absent, `None` when unusable
    /// (repeated, not a number).
    length: Option<usize>,
    /// `Transfer-Encoding`, `Upgrade` or `Expect` is present.
    special: bool,
    /// `Some(keep_alive)` from `Connection: keep-alive|close`, `None` for
    /// another value; `Some(true)` when absent.
    keep_alive: Option<bool>,
    /// Whether hyper, serving it, could keep the connection after it.
    hyper_keeps: bool,
}

/// Where a parsed header's name and value sit in the head: offsets, so the
/// head can be split off the buffer before the values become slices of it.
#[derive(Clone, Copy, Default)]
struct Spot {
    name: (usize, usize),
    value: (usize, usize),
}

fn parse(buf: &mut BytesMut) -> Parsed {
    let mut spots = [Spot::default(); MAX_HEADERS];
    let (n, count, method, path, version) = {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let n = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => return many_headers(buf),
            Err(e) => return Parsed::Malformed(malformed(e)),
        };
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
        for (spot, h) in spots.iter_mut().zip(parsed.headers.iter()) {
            *spot = Spot {
                name: at(h.name.as_bytes()),
                value: at(h.value),
            };
        }
        let (Some(method), Some(path), Some(version)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Parsed::Malformed("incomplete request line");
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Parsed::Malformed("invalid method");
        };
        (
            n,
            parsed.headers.len(),
            method,
            at(path.as_bytes()),
            version,
        )
    };
    let raw = buf.split_to(n).freeze();
    match to_head(raw, &spots[..count], method, path, version) {
        Ok(head) => Parsed::Head(head),
        // Not valid for `http`'s types (hyper refuses these too).
        Err(why) => Parsed::Malformed(why),
    }
}

/// A head with more headers than the lean path takes: hyper serves it if
/// it is complete and within hyper's count; the count is checked here, so
/// that the refusal is tandem's and a partial head waits under tandem's
/// timers.
#[cold]
fn many_headers(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HYPER_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            let pairs = req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
            if let Some(why) = bad_framing(req.version == Some(1), pairs) {
                return Parsed::Malformed(why);
            }
            let (mut te, mut cl, mut upgrade, mut close, mut keep_token) =
                (false, false, false, false, false);
            for h in req.headers.iter() {
                let name = h.name.as_bytes();
                te |= name.eq_ignore_ascii_case(b"transfer-encoding");
                cl |= name.eq_ignore_ascii_case(b"content-length");
                upgrade |= name.eq_ignore_ascii_case(b"upgrade");
                if name.eq_ignore_ascii_case(b"connection") {
                    for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                        close |= token.eq_ignore_ascii_case(b"close");
                        keep_token |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
            }
            // The same rules as `to_head`'s.
            Parsed::Other(
                !close
                    && (req.version == Some(1) || keep_token)
                    && !(te && cl)
                    && !upgrade
                    && req.method != Some("CONNECT"),
            )
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::TooMany,
        Err(e) => Parsed::Malformed(malformed(e)),
    }
}

/// Why hyper would refuse a parsed head's framing (its rules, in
/// `proto/h1/role.rs`), so that tandem refuses it first, with its JSON
/// `400`, on every head of a connection. `headers` in the order sent:
/// hyper ignores a `Content-Length` that comes after a `Transfer-Encoding`
/// (the body is chunked) and judges the coding by the last
/// `Transfer-Encoding` line. Only called for a head with a
/// `Transfer-Encoding` or a length that is not one plain number.
#[cold]
fn bad_framing<'a>(
    http11: bool,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Option<&'static str> {
    let (mut te, mut chunked, mut length) = (false, false, None);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !http11 {
                return Some("Transfer-Encoding in an HTTP/1.0 request");
            }
            te = true;
            // `chunked` must be the last coding; hyper reads a value with
            // a byte outside visible ASCII as not chunked.
            chunked = value
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
                && value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") && !te {
            // Digits only, and below hyper's largest length (`u64::MAX - 2`).
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|&n| n <= u64::MAX - 2);
            let Some(n) = n else {
                return Some("invalid Content-Length: digits only");
            };
            if length.is_some_and(|l| l != n) {
                return Some("conflicting Content-Length headers");
            }
            length = Some(n);
        }
    }
    (te && !chunked).then_some("a Transfer-Encoding must end with chunked")
}

/// What is wrong with a head `httparse` refuses, for the 400's message.
fn malformed(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line end",
        httparse::Error::Version => "invalid HTTP version",
        // `Token`: a bad method or request target; `Status` is for responses.
        _ => "invalid request line",
    }
}

fn to_head(
    raw: Bytes,
    spots: &[Spot],
    method: Method,
    path: (usize, usize),
    version: u8,
) -> Result<Head, &'static str> {
    let slice = |(at, len): (usize, usize)| raw.slice(at..at + len);
    let mut req = Request::new(());
    *req.method_mut() = method;
    let Ok(uri) = hyper::Uri::from_maybe_shared(slice(path)) else {
        return Err("invalid request target");
    };
    *req.uri_mut() = uri;
    *req.version_mut() = match version {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut length = Some(0);
    let mut lengths = 0;
    let mut special = false;
    let mut keep_alive = Some(true);
    // What hyper decides keep-alive by, should it serve the request.
    let (mut te, mut upgrade, mut close, mut keep_token) = (false, false, false, false);
    let map = req.headers_mut();
    map.reserve(spots.len());
    for spot in spots {
        let (at, len) = spot.name;
        let Ok(name) = HeaderName::from_bytes(&raw[at..at + len]) else {
            return Err("invalid header name");
        };
        let Ok(value) = HeaderValue::from_maybe_shared(slice(spot.value)) else {
            return Err("invalid header value");
        };
        if name == CONTENT_LENGTH {
            lengths += 1;
            length = std::str::from_utf8(value.as_bytes())
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .filter(|_| lengths == 1);
        } else if name == TRANSFER_ENCODING || name == UPGRADE || name == EXPECT {
            special = true;
            te |= name == TRANSFER_ENCODING;
            upgrade |= name == UPGRADE;
        } else if name == CONNECTION {
            let v = value.as_bytes();
            for token in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
            keep_alive = if map.contains_key(CONNECTION) {
                None
            } else if v.eq_ignore_ascii_case(b"keep-alive") {
                Some(true)
            } else if v.eq_ignore_ascii_case(b"close") {
                Some(false)
            } else {
                // `keep-alive, Upgrade` and the like.
                None
            };
        }
        map.append(name, value);
    }
    // Anything but one plain length: is the framing one hyper would refuse?
    // (Checked here so that the refusal is tandem's JSON 400.)
    if te || length.is_none() {
        let at = |(at, len): (usize, usize)| &raw[at..at + len];
        let pairs = spots.iter().map(|s| (at(s.name), at(s.value)));
        if let Some(why) = bad_framing(version == 1, pairs) {
            return Err(why);
        }
    }
    // hyper's rules (`proto/h1/role.rs`): HTTP/1.1 unless `close`, HTTP/1.0
    // only with `keep-alive`; never after a body framed both ways (it is
    // read as chunked, and what follows could be a smuggled request), an
    // upgrade or a CONNECT.
    let hyper_keeps = !close
        && (version == 1 || keep_token)
        && !(te && lengths > 0)
        && !upgrade
        && req.method() != Method::CONNECT;
    Ok(Head {
        req,
        raw,
        length,
        special,
        keep_alive,
        hyper_keeps,
    })
}

enum Class {
    Stream(Request<()>),
    /// The request, its body length, whether the client keeps the connection.
    Exchange(Request<()>, usize, bool),
    /// Whether hyper could keep the connection after it.
    Hyper(bool),
}

/// Which path serves a parsed request head. `alone` is whether nothing
/// follows the head in the buffer (a stream request must be alone: bytes
/// after it would be pipelined requests the stream path never answers).
fn classify(head: Head, svc: &Service, alone: bool) -> Class {
    let Head {
        req,
        length,
        special,
        keep_alive,
        hyper_keeps,
        ..
    } = head;
    let (Some(length), false) = (length, special) else {
        return Class::Hyper(hyper_keeps);
    };
    // Behind the proxy, a request outside tandem's prefix is the upstream's:
    // never a stream or a publish, and its answer streams through hyper.
    if !svc.is_own_request(req.uri()) {
        return Class::Hyper(hyper_keeps);
    }
    let subscribes = match length {
        0 => svc.subscribes(req.method(), req.uri(), req.headers()),
        _ => None,
    };
    if alone && subscribes == Some(true) {
        return Class::Stream(req);
    }
    // A publish, or a long-poll: one answer of known length, on every poll
    // of a long-polling client (through hyper, each poll paid for a fresh
    // hyper connection as well as this parse).
    match keep_alive {
        Some(keep_alive)
            if (req.method() == Method::POST || subscribes == Some(false))
                && req.version() == Version::HTTP_11
                && length <= svc.hub().config().max_body_bytes() =>
        {
            Class::Exchange(req, length, keep_alive)
        }
        _ => Class::Hyper(hyper_keeps),
    }
}

/// What became of a request body.
pub(crate) enum BodyRead {
    Whole(Bytes),
    /// The client closed mid-body.
    Closed,
    /// Not all there `--body-timeout` after the first wait for it.
    TooSlow,
}

/// Reads until `buf` holds a body of `len` bytes, then takes it out; a
/// body trickled so slowly that it is not whole within `timeout`
/// (`--body-timeout`) does not hold a connection slot for long.
///
/// Separate from `sniff`, which shutdown may interrupt: once a request's
/// head is in, the request is in flight and finishes.
pub(crate) async fn read_body(
    stream: &mut impl Io,
    buf: &mut BytesMut,
    len: usize,
    timeout: std::time::Duration,
) -> io::Result<BodyRead> {
    if buf.len() < len {
        buf.reserve(len - buf.len());
    }
    // Usually the body came with the head and this loop never waits; a
    // deadline is set only when it must.
    let mut due = None;
    while buf.len() < len {
        let due = *due.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
        match tokio::time::timeout_at(due, stream.read_buf(buf)).await {
            Ok(Ok(0)) => return Ok(BodyRead::Closed),
            Err(_) => return Ok(BodyRead::TooSlow),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
    // A copy, not a slice of `buf`: the body becomes an event that may stay
    // in a channel's ring for minutes, and a slice would pin the whole read
    // buffer (and every request after it) in memory for that long.
    let body = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(BodyRead::Whole(body))
}

/// What the lean path makes of a connection's first bytes: the fuzz target
/// `sniff` compares it with `httparse` (not a stable API).
#[doc(hidden)]
#[derive(Debug)]
pub enum SniffOutcome {
    /// A complete head turned into a request.
    Head {
        /// The method, path and version (0 for HTTP/1.0, 1 for HTTP/1.1).
        method: String,
        /// The request target, as the request holds it.
        uri: String,
        /// 0 or 1.
        version: u8,
        /// Every header in order, names lowercased.
        headers: Vec<(String, Vec<u8>)>,
        /// `Content-Length` as taken (see `Head`).
        length: Option<usize>,
        /// `Transfer-Encoding`, `Upgrade` or `Expect` present.
        special: bool,
        /// From `Connection`.
        keep_alive: Option<bool>,
        /// `"stream"`, `"exchange"` or `"hyper"`.
        path: &'static str,
        /// What stays in the buffer after the head.
        rest: Vec<u8>,
    },
    /// Not a complete head yet.
    Partial,
    /// Refused by tandem (400 or 431): a malformed head (`httparse` or
    /// `http`'s types refuse it), or more than 100 headers.
    Refused {
        /// What the refusal says is wrong.
        why: &'static str,
    },
    /// Given to hyper as it is (more headers than the lean path takes):
    /// the head's bytes if they were taken out, then the rest.
    Other {
        /// The head, if taken out of the buffer.
        taken: Vec<u8>,
        /// The rest of the buffer.
        rest: Vec<u8>,
    },
}

#[doc(hidden)]
/// Runs the head parser and the path choice on `data` (see [`SniffOutcome`]).
pub fn sniff_bytes(data: &[u8]) -> SniffOutcome {
    let svc = Service::new(
        crate::Hub::new(crate::Config::default()).expect("the default config is valid"),
    );
    let mut buf = BytesMut::from(data);
    match parse(&mut buf) {
        Parsed::Partial => SniffOutcome::Partial,
        Parsed::Malformed(why) => SniffOutcome::Refused { why },
        Parsed::TooMany => SniffOutcome::Refused {
            why: "too many request headers",
        },
        Parsed::Other(_) => SniffOutcome::Other {
            taken: Vec::new(),
            rest: buf.to_vec(),
        },
        Parsed::Head(head) => {
            let req = &head.req;
            let (method, uri, version) = (
                req.method().to_string(),
                req.uri().to_string(),
                u8::from(req.version() == Version::HTTP_11),
            );
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect();
            let (length, special, keep_alive) = (head.length, head.special, head.keep_alive);
            let path = match classify(head, &svc, buf.is_empty()) {
                Class::Stream(_) => "stream",
                Class::Exchange(..) => "exchange",
                Class::Hyper(_) => "hyper",
            };
            SniffOutcome::Head {
                method,
                uri,
                version,
                headers,
                length,
                special,
                keep_alive,
                path,
                rest: buf.to_vec(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Hub};

    /// Which path a request (head and whatever follows) is given to.
    fn path_of(bytes: &str) -> &'static str {
        path_via(
            &Service::new(Hub::new(Config::default()).expect("default config")),
            bytes,
        )
    }

    fn path_via(svc: &Service, bytes: &str) -> &'static str {
        let mut buf = BytesMut::from(bytes);
        match parse(&mut buf) {
            Parsed::Head(head) => match classify(head, svc, buf.is_empty()) {
                Class::Stream(_) => "stream",
                Class::Exchange(_, _, true) => "exchange",
                Class::Exchange(_, _, false) => "exchange, then close",
                Class::Hyper(_) => "hyper",
            },
            Parsed::Partial => "partial",
            Parsed::Malformed(_) => "refused (malformed)",
            Parsed::TooMany => "refused (too many headers)",
            Parsed::Other(_) => "hyper (unparsed)",
        }
    }

    #[test]
    fn publishes_with_a_length_are_lean() {
        let post = "POST /ch/c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n";
        assert_eq!(path_of(&format!("{post}\r\nhello")), "exchange");
        assert_eq!(
            path_of(&format!("{post}Connection: Keep-Alive\r\n\r\nhello")),
            "exchange"
        );
        assert_eq!(
            path_of(&format!("{post}Connection: close\r\n\r\nhello")),
            "exchange, then close"
        );
        // No body at all is a body of length 0.
        assert_eq!(
            path_of("POST /ch/c HTTP/1.1\r\nHost: x\r\n\r\n"),
            "exchange"
        );
    }

    /// Behind the proxy only requests under tandem's prefix are tandem's
    /// streams and publishes; the rest are the upstream's and go to hyper
    /// (whose answer streams), whatever they look like.
    #[test]
    fn behind_the_proxy_only_the_prefix_is_lean() {
        let proxy = crate::proxy::ProxyConfig::new("http://127.0.0.1:9".parse().unwrap())
            .hosts(vec!["x".into()]);
        let svc = Service::new(Hub::new(Config::default()).expect("default config"))
            .with_proxy(proxy)
            .unwrap();
        let post = |path: &str| {
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        };
        let sse = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(path_via(&svc, &post("/_tandem/ch/c")), "exchange");
        assert_eq!(path_via(&svc, &sse("/_tandem/ch/c/sse")), "stream");
        for path in ["/ch/c", "/_tandemx/ch/c", "/x/_tandem/ch/c"] {
            assert_eq!(path_via(&svc, &post(path)), "hyper", "POST {path}");
        }
        for path in ["/ch/c/sse", "/_tandemx/ch/c/sse", "/ch/c/multipart"] {
            assert_eq!(path_via(&svc, &sse(path)), "hyper", "GET {path}");
        }
        // Without a proxy nothing changes.
        assert_eq!(path_of(&post("/ch/c")), "exchange");
        assert_eq!(path_of(&sse("/ch/c/sse")), "stream");
    }

    #[test]
    fn everything_unusual_goes_to_hyper() {
        for (why, req) in [
            (
                "chunked",
                "POST /ch/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            ),
            (
                "expect",
                "POST /ch/c HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            ),
            ("http/1.0", "POST /ch/c HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"),
            (
                "two lengths",
                "POST /ch/c HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            ),
            (
                "upgrade",
                "POST /ch/c HTTP/1.1\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n",
            ),
            (
                "connection list",
                "POST /ch/c HTTP/1.1\r\nContent-Length: 0\r\nConnection: keep-alive, x\r\n\r\n",
            ),
            (
                "over the body limit",
                "POST /ch/c HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n",
            ),
            ("a page", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("an HTTP/1.0 long-poll", "GET /ch/c/poll HTTP/1.0\r\n\r\n"),
            ("a long-poll with a body", "GET /ch/c/poll HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"),
        ] {
            assert_eq!(path_of(req), "hyper", "{why}");
        }
        assert_eq!(path_of("BAD\r\n\r\n"), "refused (malformed)");
        // Framings hyper would refuse are refused here, with tandem's 400.
        for (why, req) in [
            ("signed length", "POST /ch/c HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello"),
            (
                "two lengths",
                "POST /ch/c HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 4\r\n\r\nhello",
            ),
            ("gzip", "POST /ch/c HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            (
                "chunked, then gzip",
                "POST /ch/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            ),
            ("http/1.0 chunked", "POST /ch/c HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ] {
            assert_eq!(path_of(req), "refused (malformed)", "{why}");
        }
        // A length after the coding is not read (the body is chunked).
        assert_eq!(
            path_of(
                "POST /ch/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n"
            ),
            "hyper"
        );
        assert_eq!(path_of("POST /ch/c HTTP/1.1\r\nHost"), "partial");
    }

    /// A long-poll is answered once, with a length: the lean exchange,
    /// as a publish (a client polls again and again on one connection).
    #[test]
    fn long_polls_are_lean() {
        assert_eq!(
            path_of("GET /ch/c/poll?since=3 HTTP/1.1\r\nHost: x\r\n\r\n"),
            "exchange"
        );
        assert_eq!(
            path_of("GET /ch/c/jsonp?callback=f HTTP/1.1\r\nHost: x\r\n\r\n"),
            "exchange"
        );
        assert_eq!(path_of("GET /ch/c HTTP/1.1\r\nHost: x\r\n\r\n"), "exchange");
        assert_eq!(
            path_of("GET /ch/c/poll HTTP/1.1\r\nConnection: close\r\n\r\n"),
            "exchange, then close"
        );
        // Pipelined behind it is fine: it is answered, then the next.
        assert_eq!(
            path_of("GET /ch/c/poll HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
            "exchange"
        );
    }

    #[test]
    fn a_stream_must_come_alone() {
        assert_eq!(
            path_of("GET /ch/c/sse HTTP/1.1\r\nHost: x\r\n\r\n"),
            "stream"
        );
        assert_eq!(
            path_of("GET /ch/c HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n"),
            "stream"
        );
        // Bytes after it would be a pipelined request the stream never reads.
        assert_eq!(
            path_of("GET /ch/c/sse HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
            "hyper"
        );
    }

    #[test]
    fn the_request_keeps_its_head() {
        let svc = Service::new(Hub::new(Config::default()).expect("default config"));
        let mut buf = BytesMut::from(
            "POST /ch/c?type=x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\nhiPOST",
        );
        let Parsed::Head(head) = parse(&mut buf) else {
            panic!("a complete head")
        };
        let Class::Exchange(req, 2, true) = classify(head, &svc, false) else {
            panic!("a lean publish")
        };
        assert_eq!(req.uri().path(), "/ch/c");
        assert_eq!(req.uri().query(), Some("type=x"));
        let a: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        // What follows the head stays in the buffer: the body, then the next request.
        assert_eq!(&buf[..], b"hiPOST");
    }
}
