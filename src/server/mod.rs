//! The accept loop: connection limit, HTTP/1 connections, graceful shutdown.
//!
//! Each request head is read first (`sniff.rs`): a GET that opens a stream
//! is served on the lean path (`lean.rs`), which owns the socket and keeps
//! almost nothing per connection; a publish with a `Content-Length` body is
//! read whole and answered on the lean path too, and the connection loops
//! back for its next request; everything else (chunked bodies, long-poll,
//! pages) is served by hyper with the bytes already read put back in front
//! of the socket, and hyper keeps the connection from then on.
//!
//! Shutdown follows the axum pattern: a `watch` channel turns `true` when the
//! caller's `shutdown` future completes. Every connection then stops taking
//! new requests (hyper's `graceful_shutdown`, or the lean loop between
//! requests), every stream writes its closing
//! words and ends, every long-poll answers at once, and publishes already in
//! flight finish normally. Each connection task holds a clone of an `mpsc`
//! sender; when the last one is dropped, everything has drained. `serve`
//! waits for that at most `shutdown_timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::http::Service;
use sniff::{Prefixed, Sniff};

mod lean;
mod sniff;

use crate::router::Hub;
#[doc(hidden)]
pub use sniff::{sniff_bytes, SniffOutcome};

/// Serves tandem on `listener` until `shutdown` completes, then drains.
///
/// Beyond `max_connections` open connections, new ones are answered
/// `503` with `Retry-After: 1` and closed.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let service = Service::new(hub.clone()).with_shutdown(stop_rx.clone());
    let cobrowse = cobrowse_settings(hub.config());
    let service = crate::cobrowse::mount(service, cobrowse, listener.local_addr()?)?;
    let cfg = hub.config().clone();
    // The live status feed (`/status.html`): ends with the same signal.
    tokio::spawn(crate::status::run(hub.clone(), stop_rx.clone()));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
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
            let io = TokioIo::new(stream);
            hub.metrics().refused.inc();
            log::debug!("refusing {peer}: at the connection limit");
            let max = cfg.max_connections;
            tokio::spawn(async move {
                let refuse = service_fn(move |_req| async move {
                    let mut resp = Response::new(crate::http::Body::from(Bytes::from(format!(
                        "{{\"error\":\"too many connections (max {max})\"}}"
                    ))));
                    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    let h = resp.headers_mut();
                    h.insert("retry-after", "1".parse().expect("static"));
                    h.insert("content-type", "application/json".parse().expect("static"));
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let conn = http1::Builder::new()
                    .keep_alive(false)
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(io, refuse);
                let _ = conn.await;
                drop(alive);
            });
            continue;
        }
        hub.metrics().connections.inc();
        log::debug!("connection opened: {peer}");
        let svc = service.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            connection(stream, peer, svc.clone(), stop).await;
            svc.hub().metrics().connections.dec();
            drop(alive);
        });
    }
    log::info!(
        "shutting down: draining connections (at most {:?})",
        cfg.shutdown_timeout
    );
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(cfg.shutdown_timeout, alive_rx.recv())
        .await
        .is_err()
    {
        log::warn!("shutdown timeout reached; closing the remaining connections");
    }
    Ok(())
}

/// Serves one connection: stream subscriptions and publishes on the lean
/// path, everything else through hyper.
///
/// The phases are boxed futures so that the task, which lives as long as the
/// connection, only holds the phase it is in: an idle stream subscriber does
/// not pay for the request parser or hyper's connection state.
/// The co-browsing fields of the all-in-one `Config` as
/// `cobrowse::Settings` (`None` with `cobrowse` off), until the binary builds
/// the settings and mounts co-browsing itself.
fn cobrowse_settings(cfg: &crate::Config) -> Option<crate::cobrowse::Settings> {
    if !cfg.cobrowse {
        return None;
    }
    let mut s = crate::cobrowse::Settings::default()
        .audit_chat_text(cfg.audit_chat_text)
        .agent_session_ttl(cfg.agent_session_ttl)
        .help_session_ttl(cfg.help_session_ttl)
        .max_help_sessions(cfg.max_help_sessions);
    if let Some(p) = &cfg.agents_file {
        s = s.agents_file(p);
    }
    if let Some(k) = &cfg.agent_key {
        s = s.agent_key(k.0.as_str());
    }
    if let Some(p) = &cfg.audit_file {
        s = s.audit_file(p);
    }
    if let Some(p) = &cfg.canned_file {
        s = s.canned_file(p);
    }
    Some(s)
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    svc: Service,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::new();
    let next = Box::pin(lean_requests(&mut stream, &mut buf, &svc, &stop)).await;
    drop(buf);
    let (head, rest) = match next {
        Next::Stream(req) => {
            log::debug!("stream opened: {peer} {}", req.uri());
            match Box::pin(lean::serve_stream(stream, req, &svc)).await {
                Ok(()) => log::debug!("stream closed: {peer}"),
                Err(e) => log::debug!("stream closed: {peer}: {e}"),
            }
            return;
        }
        Next::Hyper(head, rest) => (head, rest),
        Next::Done(Ok(())) => return,
        Next::Done(Err(e)) => {
            log::debug!("connection closed: {peer}: {e}");
            return;
        }
    };
    // hyper's header-read timer runs from the end of an answer (or now) to
    // the next complete head, the same rule as the lean loop's. Flattened
    // writes: most answers here are one small buffer, one write.
    let idle = svc.hub().config().idle_timeout;
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .writev(false)
        .serve_connection(TokioIo::new(Prefixed::new(head, rest, stream)), svc);
    let mut conn = Box::pin(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { let _ = stop.wait_for(|v| *v).await; } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => log::debug!("connection closed: {peer}"),
        Err(e) if e.is_parse() => log::warn!("connection {peer}: bad request: {e}"),
        Err(e) => log::debug!("connection closed: {peer}: {e}"),
    }
}

/// Where a connection goes after its lean requests.
enum Next {
    Stream(hyper::Request<http_body_util::Empty<Bytes>>),
    /// To hyper, with the bytes already read (a request head, what followed).
    Hyper(Bytes, Bytes),
    Done(io::Result<()>),
}

/// Answers requests on the lean path (publishes, one after another on a
/// keep-alive connection) until one needs another path or the connection
/// ends. One boxed future per connection, not one per request.
async fn lean_requests(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    svc: &Service,
    stop: &watch::Receiver<bool>,
) -> Next {
    // `--idle-timeout` from the connection's opening or its last answer to
    // the next complete head. One timer per connection, re-armed only when
    // it fires early (a timer per request was a tenth of a publish's cost):
    // `last` moves with every answer, the timer catches up lazily.
    let idle = svc.hub().config().idle_timeout;
    let mut last = tokio::time::Instant::now();
    let mut idle_timer = std::pin::pin!(tokio::time::sleep_until(last + idle));
    // The answer is written here, reused from request to request.
    let mut out = Vec::new();
    // One shutdown future for the connection, not one per request (each
    // new `wait_for` subscribes afresh: a tenth of a publish's cost).
    let mut stop_rx = stop.clone();
    let mut stopped = std::pin::pin!(async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    });
    loop {
        let sniffed = tokio::select! {
            biased;
            s = sniff::sniff(stream, buf, svc) => s,
            _ = &mut stopped => return Next::Done(Ok(())),
            () = &mut idle_timer => {
                let due = last + idle;
                if tokio::time::Instant::now() >= due {
                    log::debug!("closing a connection idle for {idle:?}");
                    return Next::Done(Ok(()));
                }
                idle_timer.as_mut().reset(due);
                continue;
            }
        };
        match sniffed {
            Ok(Sniff::Exchange {
                req,
                length,
                keep_alive,
            }) => {
                // A publish in flight when shutdown begins completes (its
                // body is read outside the `select!`), and its answer says
                // the connection closes.
                let body = match sniff::read_body(stream, buf, length, idle).await {
                    Ok(Some(body)) => body,
                    Ok(None) => return Next::Done(Ok(())),
                    Err(e) => return Next::Done(Err(e)),
                };
                let req = req.map(|()| http_body_util::Full::new(body));
                let keep_alive = keep_alive && !*stop.borrow();
                match lean::exchange(stream, req, svc, keep_alive, &mut out).await {
                    Ok(true) => {
                        last = tokio::time::Instant::now();
                        continue;
                    }
                    Ok(false) => return Next::Done(Ok(())),
                    Err(e) => return Next::Done(Err(e)),
                }
            }
            Ok(Sniff::Stream(req)) => return Next::Stream(req),
            Ok(Sniff::Hyper(head, rest)) => return Next::Hyper(head, rest),
            Ok(Sniff::Closed) => return Next::Done(Ok(())),
            Err(e) => return Next::Done(Err(e)),
        }
    }
}
