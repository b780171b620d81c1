//! Lending a connection to hyper for one exchange, then taking it back.
//!
//! Requests the lean paths do not serve (pages, chunked bodies,
//! `Expect: 100-continue`, HTTP/1.0 bodies, the proxy's upstream pages) are
//! served by hyper, but hyper only ever sees one request: `exchange` gives a
//! fresh `http1::Connection` the head `sniff` already read (and whatever
//! followed it), lets it answer, and takes the socket and hyper's unread
//! bytes back (`into_parts`), so the next head is read by `sniff` again with
//! every limit, timeout and path choice that applies to a first request.
//!
//! The hand-back is hyper's own mechanism, used at one exact moment. hyper
//! keeps a connection for another request when the answer's last bytes are
//! flushed (`try_keep_alive` after the flush), and reads the next head from
//! its buffer at once if a pipelined one is there. Disabling keep-alive
//! (`graceful_shutdown`) before the answer's head is encoded would add
//! `connection: close` to it; after the flush it would be too late. So the
//! answer's body is wrapped (`Lending`), and its drop (hyper drops it right
//! after writing its last bytes, or after the head when it has none to
//! write) marks the answer as written; the socket wrapper (`Lent`) then holds
//! the next flush back once (`Pending`, without a wake-up: the driver
//! itself polls again), the driver disables keep-alive, and hyper flushes,
//! closes its own state without touching the socket (`poll_without_shutdown`)
//! and is taken apart (`into_parts`: the socket and what hyper read past
//! the request, a pipelined next one).
//!
//! That is done only for an answer after which the connection can go on,
//! by hyper's own rules (`proto/h1/role.rs`, `conn.rs`), checked on the
//! head as it came (`sniff`: hyper drops a `Content-Length` sent beside
//! chunked, which ends the connection) and on the answer (`Answer`): the
//! request allows it (HTTP/1.1 without `Connection: close`, or HTTP/1.0
//! with `keep-alive`; no body framed both ways, no upgrade, no CONNECT),
//! the answer does not say `close` and its framing ends without closing (a
//! length, or chunks for HTTP/1.1), and the server is not shutting down.
//! Any other exchange is driven to its end as hyper drives a connection,
//! its answer made to say `connection: close` (so that hyper closes it
//! rather than read another head itself): the answer flushed and the
//! socket shut down. A connection taken back goes to
//! `sniff` again only if nothing of the request is left unread and hyper
//! read no other:
//!
//! - the request's body was read to its end by the service (`ReadToEnd`);
//!   a body left unread would be read as the next request, so the
//!   connection is closed instead, as hyper would close it;
//! - hyper served exactly one request (the service was called once).
//!
//! Anything else (an error, an answer cut short) closes the connection.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::{Request, Response, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Io;
use crate::http::{Body, PeerService, Service};

/// The answer's body was dropped by hyper: its bytes are written (to
/// hyper's buffer), only the flush is left.
const ENDED: u8 = 1;
/// Keep-alive is disabled: the flush may go through.
const RELEASED: u8 = 2;
/// The request's body was read to its end (or there was none).
const BODY_READ: u8 = 4;
/// The request and its answer allow another request on the connection.
const REUSABLE: u8 = 8;
/// The service was called (hyper read a request).
const CALLED: u8 = 16;
/// The service was called again: hyper read a second request itself.
const TWICE: u8 = 32;

/// What one exchange's parts (the service, the bodies, the socket
/// wrapper) tell the driver. A fresh one per exchange: a body kept alive
/// elsewhere after its exchange (a proxied request body) must not mark the
/// next exchange's request as read.
#[derive(Default)]
struct Flags(AtomicU8);

impl Flags {
    fn set(&self, f: u8) -> u8 {
        self.0.fetch_or(f, Ordering::AcqRel)
    }
    fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves one request through hyper: `head` (the request head `sniff`
/// read), then `rest` (what followed it), then the socket; `keeps` is
/// whether hyper could keep the connection after this request (`sniff`
/// knows from the head as it came). Returns whether the connection may
/// carry another request; if so, `buf` holds what was read past this
/// request (a pipelined next one), for `sniff`.
pub(crate) async fn exchange<S: Io>(
    stream: &mut S,
    buf: &mut BytesMut,
    (head, rest, keeps): (Bytes, Bytes, bool),
    svc: &Service,
    peer: SocketAddr,
) -> io::Result<bool> {
    let flags = Arc::new(Flags::default());
    let io = Lent {
        prefix: head,
        then: rest,
        stream: &mut *stream,
        flags: flags.clone(),
    };
    // No header-read timer: the head is already here, and the time between
    // requests is `lean_requests`' to watch. Flattened writes: most answers
    // here are one small buffer, one write.
    let mut conn = http1::Builder::new()
        .max_header_size(svc.config().max_head_bytes)
        .writev(false)
        .serve_connection(
            TokioIo::new(io),
            Lender {
                svc: PeerService::counted(svc.clone(), peer),
                flags: flags.clone(),
                keeps,
            },
        );
    // An exchange whose answer lets the connection go on is driven without
    // shutting the socket down and taken apart after; any other is driven
    // to its end as hyper drives a connection (its answer flushed, the
    // socket shut down). Which one is known once the answer is ready, and
    // hyper cannot end a kept-alive exchange without the driver: the flush
    // after the answer is held back until keep-alive is disabled.
    let mut taken_back = false;
    let done = std::future::poll_fn(|cx| loop {
        let lending = flags.get() & REUSABLE != 0;
        let polled = if lending {
            conn.poll_without_shutdown(cx)
        } else {
            Pin::new(&mut conn).poll(cx)
        };
        match polled {
            Poll::Ready(r) => {
                taken_back = lending;
                return Poll::Ready(r);
            }
            // The answer is written and its flush held back: now keep-alive
            // can be disabled without `connection: close` in its head.
            Poll::Pending if flags.get() & (ENDED | RELEASED | REUSABLE) == ENDED | REUSABLE => {
                Pin::new(&mut conn).graceful_shutdown();
                flags.set(RELEASED);
            }
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    let f = flags.get();
    if let Err(e) = done {
        drop(conn);
        if e.is_parse() {
            log::warn!("connection {peer}: bad request: {e}");
        } else {
            log::debug!("connection {peer}: {e}");
        }
        let _ = tokio::io::AsyncWriteExt::shutdown(stream).await;
        return Ok(false);
    }
    if !taken_back {
        // hyper closed it.
        return Ok(false);
    }
    // The answer is flushed; the request must be all read, and alone.
    let reusable = f & (RELEASED | BODY_READ) == RELEASED | BODY_READ
        && f & TWICE == 0
        && !svc.shutdown().is_triggered();
    if !reusable {
        drop(conn);
        let _ = tokio::io::AsyncWriteExt::shutdown(stream).await;
        return Ok(false);
    }
    // What hyper read past the request comes first, then what it never
    // read of what `sniff` had read.
    let parts = conn.into_parts();
    let lent = parts.io.into_inner();
    if !(parts.read_buf.is_empty() && lent.prefix.is_empty() && lent.then.is_empty()) {
        buf.clear();
        buf.extend_from_slice(&parts.read_buf);
        buf.extend_from_slice(&lent.prefix);
        buf.extend_from_slice(&lent.then);
    }
    Ok(true)
}

/// The socket lent to hyper, with the bytes `sniff` already read in front;
/// it holds back the flush after the answer (see the module notes).
struct Lent<'a, S> {
    prefix: Bytes,
    then: Bytes,
    stream: &'a mut S,
    flags: Arc<Flags>,
}

impl<S: Io> AsyncRead for Lent<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            std::mem::swap(&mut this.prefix, &mut this.then);
        }
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *this.stream).poll_read(cx, buf)
    }
}

impl<S: Io> AsyncWrite for Lent<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Pending without a wake-up: `exchange` polls hyper again itself as
        // soon as it sees this state.
        if this.flags.get() & (ENDED | RELEASED | REUSABLE) == ENDED | REUSABLE {
            return Poll::Pending;
        }
        Pin::new(&mut *this.stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The service (with the client's address, `PeerService`) for one lent
/// exchange: it marks the request body read to its end and the answer
/// written, and decides whether the request and its answer allow another
/// request.
struct Lender {
    svc: PeerService,
    flags: Arc<Flags>,
    /// Whether hyper could keep the connection after the request (`sniff`).
    keeps: bool,
}

impl hyper::service::Service<Request<Incoming>> for Lender {
    type Response = Response<Lending>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Answer {
        if self.flags.set(CALLED) & CALLED != 0 {
            self.flags.set(TWICE);
        }
        if req.body().is_end_stream() {
            self.flags.set(BODY_READ);
        }
        // `sniff` read the head as it came; the request as hyper gives it
        // agrees (checked again: it is what hyper decides by).
        let keep = self.keeps && request_keeps_alive(&req);
        let http11 = req.version() == Version::HTTP_11;
        let flags = self.flags.clone();
        let req = req.map(|body| ReadToEnd {
            body,
            flags: flags.clone(),
        });
        Answer {
            fut: hyper::service::Service::call(&self.svc, req),
            flags: Some(flags),
            keep,
            http11,
            shutdown: self.svc.service().shutdown().clone(),
        }
    }
}

/// Whether a request lets the connection carry another (RFC 9112 9.3), as
/// hyper decides it: HTTP/1.1 unless `Connection` has `close`, HTTP/1.0
/// only with `keep-alive`.
fn request_keeps_alive<B>(req: &Request<B>) -> bool {
    let (mut close, mut keep_alive) = (false, false);
    for value in req.headers().get_all(CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    match req.version() {
        Version::HTTP_11 => !close,
        Version::HTTP_10 => keep_alive && !close,
        _ => false,
    }
}

/// The service's answer, its body wrapped to tell when hyper has written it.
struct Answer {
    fut: super::BoxFuture,
    flags: Option<Arc<Flags>>,
    /// The request allows another request after it.
    keep: bool,
    http11: bool,
    /// Once triggered, the answer says `connection: close`.
    shutdown: crate::shutdown::Shutdown,
}

impl Future for Answer {
    type Output = Result<Response<Lending>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Ok(mut resp) = std::task::ready!(this.fut.as_mut().poll(cx));
        if let Some(flags) = &this.flags {
            // Once only: `flags` is taken below. A body hyper cannot
            // delimit but by closing (an endless one to HTTP/1.0) ends the
            // connection; so does an answer that says so.
            let body = resp.body();
            let delimited = body.is_end_stream()
                || body.size_hint().exact().is_some()
                || (this.http11 && resp.version() == Version::HTTP_11);
            let says_close = resp.headers().get_all(CONNECTION).iter().any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            });
            if this.keep
                && delimited
                && !says_close
                && resp.status().as_u16() != 101
                && !this.shutdown.is_triggered()
            {
                flags.set(REUSABLE);
            } else {
                // hyper must not keep a connection the driver does not take
                // back (it would read the next head itself): the answer says
                // `close`, and hyper closes after it (at shutdown too).
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let flags = this.flags.take();
        Poll::Ready(Ok(resp.map(|body| Lending { body, flags })))
    }
}

/// An answer's body; hyper drops it once it has written the last of it.
struct Lending {
    body: Body,
    flags: Option<Arc<Flags>>,
}

impl Drop for Lending {
    fn drop(&mut self) {
        if let Some(flags) = &self.flags {
            flags.set(ENDED);
        }
    }
}

impl hyper::body::Body for Lending {
    type Data = Bytes;
    type Error = crate::http::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that tells when it has been read to its end: only then
/// can what follows it on the connection be read as the next request.
struct ReadToEnd {
    body: Incoming,
    flags: Arc<Flags>,
}

impl ReadToEnd {
    fn ended(&self) {
        self.flags.set(BODY_READ);
    }
}

impl hyper::body::Body for ReadToEnd {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.ended(),
            Some(Ok(_)) if this.body.is_end_stream() => this.ended(),
            _ => {}
        }
        Poll::Ready(frame)
    }
    fn is_end_stream(&self) -> bool {
        let end = self.body.is_end_stream();
        if end {
            self.ended();
        }
        end
    }
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
