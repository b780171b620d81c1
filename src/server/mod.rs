//! The accept loop: connection limit, HTTP/1 connections, graceful shutdown.
//!
//! Every request head is read by tandem (`sniff.rs`), the first on a
//! connection and every one after it, so the head and URL limits, the head
//! and idle timeouts and the path choice are the same for every request:
//! a GET that opens a stream is served on the lean path (`lean.rs`), which
//! owns the socket and keeps almost nothing per connection; a publish with
//! a `Content-Length` body and a long-poll are answered on the lean path
//! too; everything else (chunked bodies, pages, the proxy's upstream) is
//! served by hyper, one exchange at a time (`handoff.rs`: a fresh hyper
//! connection gets the head already read, answers it, and gives the socket
//! and any bytes read past the request back). After a publish or a hyper
//! exchange the connection loops back to `sniff` for its next request
//! (`lean_requests`).
//!
//! Shutdown follows the axum pattern: `serve(listener, service)
//! .with_graceful_shutdown(signal)`. When the signal completes (or anyone
//! triggers the service's [`Shutdown`]), the loop stops accepting, every
//! connection stops taking new requests (the loop between requests closes
//! it; a request in flight, on either path, finishes and its answer says
//! `connection: close`), every stream writes its closing words and ends,
//! every long-poll answers at once, and publishes already in flight finish
//! normally. Each connection task holds a clone of an `mpsc` sender;
//! when the last one is dropped, everything has drained. `serve` waits for
//! that at most `shutdown_timeout`.
//!
//! A connection is any `AsyncRead + AsyncWrite` stream (`Io`): the accept
//! loop hands over TCP sockets, or, with [`Serve::with_tls`], the decrypted
//! side of a TLS connection (`tls.rs`: HTTP/1.1 takes these same paths,
//! HTTP/2 goes to hyper's HTTP/2 server).

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::http::limits::Limits;
use crate::http::Service;
use crate::shutdown::Shutdown;
use sniff::Sniff;

mod handoff;
mod lean;
mod sniff;
mod tls;
mod tls_stream;

pub use sniff::{sniff_bytes, SniffOutcome};
pub(crate) use tls::{as_http1, from_pem, PemError};
pub use tls::{TlsConfig, TlsError};

/// What a connection can be served over: a TCP socket, or anything that
/// wraps one (TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves `service` on `listener`; await it (it is a future) to run it.
///
/// It runs until the service's [`Shutdown`] is triggered, by the signal given
/// to [`Serve::with_graceful_shutdown`] or by anyone holding the handle,
/// then drains (see [`Shutdown`]). Beyond `max_connections` open
/// connections, new ones are answered `503` with `Retry-After: 1`.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let hub = tandem::Hub::new(tandem::Config::default()).unwrap();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// tandem::serve(listener, tandem::Service::new(hub))
///     .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
///     .await
/// # }
/// ```
pub fn serve(listener: TcpListener, service: Service) -> Serve {
    Serve {
        listener,
        service,
        signal: None,
        tls: None,
    }
}

/// A server being set up by [`serve`]; `.await` it to run it.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    service: Service,
    signal: Option<Signal>,
    tls: Option<TlsConfig>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// Shuts down gracefully when `signal` completes (SIGTERM, a test's
    /// oneshot): it triggers the service's [`Shutdown`].
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Serve {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// Serves TLS only (HTTP/1.1, or HTTP/2 when the client offers `h2` by
    /// ALPN) with this certificate; keep a clone of `tls` to
    /// [`reload`](TlsConfig::reload) it while serving. Cookies set over
    /// TLS get `Secure`.
    pub fn with_tls(mut self, tls: TlsConfig) -> Serve {
        self.tls = Some(tls);
        self
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.listener, self.service, self.signal, self.tls))
    }
}

async fn run(
    listener: TcpListener,
    service: Service,
    signal: Option<Signal>,
    tls: Option<TlsConfig>,
) -> io::Result<()> {
    // TLS connections are served by a clone that marks its answers
    // (`Secure` cookies, HSTS).
    let (service, acceptor) = match &tls {
        Some(tls) => (service.over_tls(tls.hsts_header()), Some(tls.acceptor())),
        None => (service, None),
    };
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let shutdown: Shutdown = service.shutdown().clone();
    let hub = service.hub().clone();
    let cfg = service.config().clone();
    // The service's own limits: one count per address whichever way a
    // connection comes (plaintext, TLS).
    let limits = service.limits().clone();
    if let Some(signal) = signal {
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = signal => trigger.trigger(),
                // Triggered by someone else: the signal is not needed.
                () = trigger.wait() => {}
            }
        });
    }
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let alive = alive_tx.clone();
        if hub.metrics().connections.get() >= cfg.max_connections as u64 {
            hub.metrics().refused.inc();
            log::debug!("refusing {peer}: at the connection limit");
            let max = cfg.max_connections;
            let e = crate::Error::unavailable(format!("too many connections (max {max})"));
            spawn_refusal(stream, &acceptor, e, alive);
            continue;
        }
        // One hash lookup: this address's share of the connections.
        let counted = match limits.open(peer.ip()) {
            Ok(counted) => counted,
            Err(e) => {
                hub.metrics().refused.inc();
                log::debug!("refusing {peer}: {e}");
                spawn_refusal(stream, &acceptor, e, alive);
                continue;
            }
        };
        hub.metrics().connections.inc();
        log::debug!("connection opened: {peer}");
        let svc = service.clone();
        let limits = limits.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                // Boxed: the task is as large as its largest future, and a
                // plaintext connection must not carry rustls' state inline.
                Some(acceptor) => {
                    Box::pin(tls::connection(stream, peer, acceptor, svc.clone(), limits)).await
                }
                None => connection(stream, peer, svc.clone(), limits).await,
            }
            drop(counted);
            svc.hub().metrics().connections.dec();
            drop(alive);
        });
    }
    log::info!(
        "shutting down: draining connections (at most {:?})",
        cfg.shutdown_timeout
    );
    drop(listener);
    drop(alive_tx);
    if tokio::time::timeout(cfg.shutdown_timeout, alive_rx.recv())
        .await
        .is_err()
    {
        log::warn!("shutdown timeout reached; closing the remaining connections");
    }
    Ok(())
}

/// Refuses a connection over a limit with `e` (503 over the global limit,
/// 429 over its address's share), over TLS when the listener speaks it.
fn spawn_refusal(
    stream: tokio::net::TcpStream,
    acceptor: &Option<tls_stream::TlsAcceptor>,
    e: crate::Error,
    alive: mpsc::Sender<()>,
) {
    match acceptor {
        Some(acceptor) => tokio::spawn(tls::refuse(stream, acceptor.clone(), e, alive)),
        None => tokio::spawn(refuse(stream, e, alive)),
    };
}

/// The answer to every request on a connection over a limit: `e`, with
/// `Retry-After: 1`.
fn refusal(e: &crate::Error) -> Response<crate::http::Body> {
    let mut resp: Response<crate::http::Body> = crate::http::error_response(e);
    debug_assert!(matches!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ));
    resp.headers_mut()
        .insert("retry-after", "1".parse().expect("static"));
    resp
}

/// Answers a connection over a limit with `e` (see [`refusal`]) and closes it.
async fn refuse(stream: impl Io, e: crate::Error, alive: mpsc::Sender<()>) {
    let refuse = service_fn(move |_req| {
        let resp = refusal(&e);
        async move { Ok::<_, std::convert::Infallible>(resp) }
    });
    let conn = http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .serve_connection(TokioIo::new(stream), refuse);
    let _ = conn.await;
    drop(alive);
}

/// Serves one connection: stream subscriptions, long-polls and publishes
/// on the lean path, everything else through hyper one exchange at a time
/// (`handoff.rs`); every request head is read by `sniff`.
///
/// The phases are boxed futures so that the task, which lives as long as the
/// connection, only holds the phase it is in: an idle stream subscriber does
/// not pay for the request parser or hyper's connection state.
async fn connection(mut stream: impl Io, peer: SocketAddr, svc: Service, limits: Arc<Limits>) {
    let mut buf = BytesMut::new();
    let next = Box::pin(lean_requests(&mut stream, &mut buf, &svc, peer, &limits)).await;
    drop(buf);
    match next {
        Next::Stream(req) => {
            log::debug!(
                "stream opened: {peer} {}",
                crate::token::redact(&req.uri().to_string())
            );
            match Box::pin(lean::serve_stream(stream, req, &svc)).await {
                Ok(()) => log::debug!("stream closed: {peer}"),
                Err(e) => log::debug!("stream closed: {peer}: {e}"),
            }
        }
        Next::Done(Ok(())) => log::debug!("connection closed: {peer}"),
        Next::Done(Err(e)) => log::debug!("connection closed: {peer}: {e}"),
    }
}

/// The answer to a request: what every service future is.
type BoxFuture = Pin<
    Box<dyn Future<Output = Result<Response<crate::http::Body>, std::convert::Infallible>> + Send>,
>;

/// Where a connection goes after its requests.
// Returned once per connection and matched at once: boxing the request
// would cost every stream an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// To the lean stream path, for the rest of its life.
    Stream(hyper::Request<http_body_util::Empty<Bytes>>),
    Done(io::Result<()>),
}

/// Answers requests one after another on a keep-alive connection, each
/// head read by `sniff`: publishes and long-polls on the lean path, the rest through
/// hyper (`handoff::exchange`), until one opens a stream or the connection
/// ends. One boxed future per connection, not one per request.
async fn lean_requests<S: Io>(
    stream: &mut S,
    buf: &mut BytesMut,
    svc: &Service,
    peer: SocketAddr,
    limits: &Arc<Limits>,
) -> Next {
    // `--idle-timeout` from the connection's opening or its last answer to
    // the next complete head. One timer per connection, re-armed only when
    // it fires early (a timer per request was a tenth of a publish's cost):
    // `last` moves with every answer, the timer catches up lazily.
    let idle = svc.config().idle_timeout;
    let mut last = tokio::time::Instant::now();
    let mut idle_timer = std::pin::pin!(tokio::time::sleep_until(last + idle));
    // `--head-timeout` from a head's first byte to its end, when it does
    // not come whole: the same timer, pulled in.
    let head_timeout = svc.config().head_timeout;
    let mut head_due: Option<tokio::time::Instant> = None;
    // The answer is written here, reused from request to request.
    let mut out = Vec::new();
    // One shutdown future for the connection, not one per request (each
    // new `wait_for` subscribes afresh: a tenth of a publish's cost).
    let shutdown = svc.shutdown();
    let mut stopped = std::pin::pin!(shutdown.wait());
    loop {
        let sniffed = tokio::select! {
            biased;
            s = sniff::sniff(stream, buf, svc, head_due.is_none()) => s,
            _ = &mut stopped => return Next::Done(Ok(())),
            () = &mut idle_timer => {
                let now = tokio::time::Instant::now();
                if head_due.is_some_and(|h| now >= h) {
                    let e = crate::Error::request_timeout(format!(
                        "request head too slow (max {} to send it)",
                        crate::http::seconds(head_timeout)
                    ));
                    log::debug!("refusing a request: {e}");
                    let resp = crate::http::error_response(&e);
                    return Next::Done(lean::refuse(stream, resp).await);
                }
                let due = last + idle;
                if now >= due {
                    log::debug!("closing a connection idle for {idle:?}");
                    return Next::Done(Ok(()));
                }
                idle_timer.as_mut().reset(head_due.map_or(due, |h| h.min(due)));
                continue;
            }
        };
        if let Ok(Sniff::Started) = sniffed {
            let due = tokio::time::Instant::now() + head_timeout;
            head_due = Some(due);
            if due < idle_timer.deadline() {
                idle_timer.as_mut().reset(due);
            }
            continue;
        }
        head_due = None;
        match sniffed {
            Ok(Sniff::Exchange {
                req,
                length,
                keep_alive,
            }) => {
                // A publish in flight when shutdown begins completes (its
                // body is read outside the `select!`), and its answer says
                // the connection closes.
                let body_timeout = svc.config().body_timeout;
                let body = match sniff::read_body(stream, buf, length, body_timeout).await {
                    Ok(sniff::BodyRead::Whole(body)) => body,
                    Ok(sniff::BodyRead::Closed) => return Next::Done(Ok(())),
                    Ok(sniff::BodyRead::TooSlow) => {
                        let e = crate::http::too_slow(body_timeout);
                        log::debug!("refusing a request: {e}");
                        let resp = crate::http::error_response(&e);
                        return Next::Done(lean::refuse(stream, resp).await);
                    }
                    Err(e) => return Next::Done(Err(e)),
                };
                // Over its address's rate: refused after the body was read,
                // so the connection stays usable.
                let resp = match limits.check(svc, peer.ip(), &req) {
                    Some(refusal) => refusal,
                    None => {
                        let handle = svc.handle(req.map(|()| http_body_util::Full::new(body)));
                        let mut handle = std::pin::pin!(handle);
                        // Usually answered at once (a publish, a poll with
                        // events waiting); a held long-poll also watches for
                        // the client leaving, so that a departed poller's
                        // subscription goes at once.
                        tokio::select! {
                            biased;
                            resp = &mut handle => resp,
                            gone = client_gone(stream, buf, svc.config().max_head_bytes) => {
                                return Next::Done(gone);
                            }
                        }
                    }
                };
                // Shutdown may have come while a long-poll was held.
                let keep_alive = keep_alive && !shutdown.is_triggered();
                match lean::answer(stream, resp, keep_alive, &mut out).await {
                    Ok(true) => {
                        last = tokio::time::Instant::now();
                        continue;
                    }
                    Ok(false) => return Next::Done(Ok(())),
                    Err(e) => return Next::Done(Err(e)),
                }
            }
            Ok(Sniff::Stream(req)) => return Next::Stream(req),
            Ok(Sniff::Hyper(head, rest, keeps)) => {
                // Once the head is in, the request is in flight: shutdown
                // lets it finish, and the connection closes after it.
                // Boxed: hyper's connection state is large, and an idle
                // keep-alive connection must not carry it between requests.
                let exchange = handoff::exchange(stream, buf, (head, rest, keeps), svc, peer);
                match Box::pin(exchange).await {
                    Ok(true) => {
                        last = tokio::time::Instant::now();
                        continue;
                    }
                    Ok(false) => return Next::Done(Ok(())),
                    Err(e) => return Next::Done(Err(e)),
                }
            }
            Ok(Sniff::Closed) => return Next::Done(Ok(())),
            Ok(Sniff::Started) => unreachable!("handled above"),
            Ok(Sniff::Refuse(e)) => {
                log::debug!("refusing a request: {e}");
                let resp = crate::http::error_response(&e);
                return Next::Done(lean::refuse(stream, resp).await);
            }
            Err(e) => return Next::Done(Err(e)),
        }
    }
}

/// Completes when the client closes its side (or the socket fails) while
/// its request is being answered. What it sends meanwhile (a pipelined
/// request) is kept in `buf` for `sniff`, up to `cap` bytes; then it stops
/// reading.
async fn client_gone<S: Io>(stream: &mut S, buf: &mut BytesMut, cap: usize) -> io::Result<()> {
    loop {
        if buf.len() >= cap {
            return std::future::pending().await;
        }
        sniff::reserve(buf);
        if tokio::io::AsyncReadExt::read_buf(stream, buf).await? == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    //! The connection paths over a stream that is not a TCP socket (an
    //! in-memory duplex here; TLS in deployment): all three paths work.

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::{Config, Hub, NewEvent};

    fn open(svc: &Service) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let limits = svc.limits().clone();
        tokio::spawn(connection(server, peer, svc.clone(), limits));
        client
    }

    /// Reads until `needle` has arrived; returns everything read.
    async fn read_until(io: &mut DuplexStream, needle: &str) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains(needle) {
            let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
                .await
                .expect("an answer within 5 s")
                .expect("read");
            assert!(
                n > 0,
                "closed before {needle:?}: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn every_path_serves_any_async_stream() {
        let hub = Hub::new(Config::default()).unwrap();
        let svc = Service::new(hub.clone());

        // The lean stream path.
        let mut stream = open(&svc);
        stream
            .write_all(b"GET /ch/d/sse HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        read_until(&mut stream, "retry:").await;
        hub.publish("d", NewEvent::message("over a duplex"))
            .await
            .unwrap();
        read_until(&mut stream, "data: over a duplex").await;

        // The lean publish exchange, twice on one keep-alive connection.
        let mut publish = open(&svc);
        for n in 2..=3 {
            publish
                .write_all(b"POST /ch/d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
                .await
                .unwrap();
            read_until(&mut publish, &format!("{{\"id\":{n}}}")).await;
        }

        // A long-poll, on the lean exchange too.
        let mut poll = open(&svc);
        poll.write_all(b"GET /ch/d/poll?since=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until(&mut poll, "\"next\"").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // hyper's path (a page), then the lean path again on the same
        // connection.
        let mut page = open(&svc);
        page.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until(&mut page, "</html>").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        page.write_all(b"POST /ch/d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .unwrap();
        read_until(&mut page, "{\"id\":4}").await;
    }
}
