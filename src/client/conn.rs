//! HTTP/1 requests with hyper's client connections, over TCP or TLS.
//!
//! A stream gets a connection of its own for as long as it lasts. Publishes
//! and long-polls reuse idle keep-alive connections from a small pool, and a
//! request that a pooled connection closed before sending is sent again on
//! a new one (never a request that may have reached the server: a publish is
//! not repeated). For an `https` endpoint, [`connect`] wraps the
//! `TcpStream` in TLS (`tls.rs`) and nothing else changes.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST, USER_AGENT};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::error::Error;
use super::target::Endpoint;
use super::Settings;

type Sender = SendRequest<Full<Bytes>>;

/// Idle keep-alive connections, most recently used last, with when each
/// became idle.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(Endpoint, Sender, Instant)>>,
}

/// At most this many idle connections are kept.
const MAX_IDLE: usize = 8;

/// An idle connection is not used after this long: well before tandem's
/// own idle timeout (75 s) closes it, and before a NAT on the way forgets it.
const IDLE_FOR: Duration = Duration::from_secs(45);

/// The largest error message read from a refusal.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The largest whole answer read (a long-poll batch of big events).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

impl Pool {
    fn take(&self, ep: &Endpoint) -> Option<Sender> {
        let mut idle = self.idle.lock();
        idle.retain(|(_, s, since)| !s.is_closed() && since.elapsed() < IDLE_FOR);
        let i = idle.iter().rposition(|(e, _, _)| e == ep)?;
        Some(idle.remove(i).1)
    }

    fn put(&self, ep: &Endpoint, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((ep.clone(), sender, Instant::now()));
    }
}

/// A new HTTP/1 connection to `ep`; its driver runs as a task of its own
/// and ends when the sender and the last answer are dropped.
async fn connect(s: &Settings, ep: &Endpoint) -> Result<Sender, Error> {
    let started = Instant::now();
    let tcp = match tokio::time::timeout(s.connect_timeout, TcpStream::connect(&ep.addr)).await {
        Err(_) => {
            return Err(Error::timeout(
                format!("connecting to {}", ep.addr),
                s.connect_timeout,
            ))
        }
        Ok(Err(e)) => return Err(Error::connect(&ep.addr, e)),
        Ok(Ok(tcp)) => tcp,
    };
    // Small writes (a request head, a publish) should leave at once.
    let _ = tcp.set_nodelay(true);
    let Some(name) = &ep.tls else {
        return http1_over(tcp, ep).await;
    };
    // The connect timeout covers TCP and TLS together.
    let left = s.connect_timeout.saturating_sub(started.elapsed());
    let shake = super::tls::handshake(tcp, ep, name, s.ca.as_ref());
    match tokio::time::timeout(left, shake).await {
        Ok(tls) => http1_over(tls?, ep).await,
        Err(_) => Err(Error::timeout(
            format!("connecting to {} (TLS)", ep.addr),
            s.connect_timeout,
        )),
    }
}

/// hyper's HTTP/1 client connection over `io`, its driver a task of its own.
async fn http1_over<T>(io: T, ep: &Endpoint) -> Result<Sender, Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::io(&ep.addr, e))?;
    let addr = ep.addr.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("connection to {addr}: {e}");
        }
    });
    Ok(sender)
}

/// A request to send: method, path (with query), extra headers, body.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
}

impl Req {
    pub(crate) fn get(path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// The request, with the client's token (asked of its source first
    /// if need be).
    async fn build(&self, s: &Settings, ep: &Endpoint) -> Result<Request<Full<Bytes>>, Error> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header(HOST, &ep.host)
            .header(USER_AGENT, concat!("tandem/", env!("CARGO_PKG_VERSION")));
        if let Some(tokens) = &s.token {
            let token = tokens.get().await?;
            let bearer = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Error::input("the token is not a valid header value"))?;
            req = req.header(AUTHORIZATION, bearer);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        req.body(Full::new(self.body.clone()))
            .map_err(|e| Error::input(format!("bad request {}: {e}", self.path)))
    }

    fn what(&self) -> String {
        format!("the answer to {} {}", self.method, self.path)
    }
}

/// A streamed answer and the connection it comes on.
pub(crate) struct Opened {
    pub(crate) resp: Response<Incoming>,
    /// Held so the connection is plainly in use until the stream is dropped.
    _sender: Sender,
}

/// Opens a streamed answer on a connection of its own: the head of a 2xx
/// answer (its body still to read), or the refusal as an error.
pub(crate) async fn open(s: &Settings, ep: &Endpoint, req: Req) -> Result<Opened, Error> {
    let what = req.what();
    let head = async {
        let built = req.build(s, ep).await?;
        let mut sender = connect(s, ep).await?;
        let resp = sender
            .send_request(built)
            .await
            .map_err(|e| Error::io(&ep.addr, e))?;
        Ok(Opened {
            resp,
            _sender: sender,
        })
    };
    let opened = bounded(&what, s.request_timeout, head).await?;
    if opened.resp.status().is_success() {
        Ok(opened)
    } else {
        Err(refusal(s, opened.resp).await)
    }
}

/// Sends a request on a pooled connection and reads the whole answer,
/// within `deadline`. A refusal (not 2xx) is an error with its message.
pub(crate) async fn fetch(
    s: &Settings,
    pool: &Pool,
    ep: &Endpoint,
    req: Req,
    deadline: Duration,
) -> Result<Bytes, Error> {
    let what = req.what();
    bounded(&what, deadline, async {
        let (mut sender, resp) = send_pooled(s, pool, ep, req.build(s, ep).await?).await?;
        if !resp.status().is_success() {
            return Err(refusal(s, resp).await);
        }
        let body = read_body(ep, resp.into_body(), MAX_ANSWER).await?;
        // The connection is ready for another request once the answer is
        // read; wait the moment it takes the driver to see that.
        if sender.ready().await.is_ok() {
            pool.put(ep, sender);
        }
        Ok(body)
    })
    .await
}

async fn send_pooled(
    s: &Settings,
    pool: &Pool,
    ep: &Endpoint,
    req: Request<Full<Bytes>>,
) -> Result<(Sender, Response<Incoming>), Error> {
    let mut req = req;
    if let Some(mut sender) = pool.take(ep) {
        if sender.ready().await.is_ok() {
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((sender, resp)),
                Err(mut e) => match e.take_message() {
                    // Not sent: the server had closed the idle connection.
                    Some(r) => req = r,
                    None => return Err(Error::io(&ep.addr, e.into_error())),
                },
            }
        }
    }
    let mut sender = connect(s, ep).await?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| Error::io(&ep.addr, e))?;
    Ok((sender, resp))
}

/// Reads a body whole, refusing one over `max` bytes.
async fn read_body(ep: &Endpoint, mut body: Incoming, max: usize) -> Result<Bytes, Error> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::io(&ep.addr, e))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(Error::protocol(format!(
                    "the answer is too large (max {max} bytes)"
                )));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// The error for a refusal: its status and the message of its
/// `{"error":"..."}` body (or its first line of text).
async fn refusal(s: &Settings, resp: Response<Incoming>) -> Error {
    let status = resp.status();
    let body = tokio::time::timeout(s.request_timeout, async {
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
                if out.len() > MAX_ERROR_BODY {
                    break;
                }
            }
        }
        out
    })
    .await
    .unwrap_or_default();
    Error::refused(status, error_message(&body))
}

/// The message of an error answer: `{"error":"..."}`, or the body's first
/// line (at most 200 characters), or nothing.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v["error"].as_str() {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.trim().lines().next().unwrap_or("");
    let mut line: String = line.chars().take(200).collect();
    if line.is_empty() {
        line.push_str("no message");
    }
    line
}

async fn bounded<T>(
    what: &str,
    deadline: Duration,
    f: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(deadline, f)
        .await
        .unwrap_or_else(|_| Err(Error::timeout(what, deadline)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_json_or_the_text() {
        assert_eq!(
            error_message(br#"{"error":"too many parts (max 64)"}"#),
            "too many parts (max 64)"
        );
        assert_eq!(error_message(b"  Bad Gateway\n<html>"), "Bad Gateway");
        assert_eq!(error_message(b""), "no message");
    }
}
