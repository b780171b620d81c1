//! The lean connection path: writing responses straight to the socket.
//!
//! A streaming subscriber is a connection that sends one small request and
//! then only receives, for hours. Through hyper each such connection keeps an
//! 8 KiB read buffer and a write buffer, the price of supporting keep-alive
//! and request bodies it will never use. With 10,000 idle subscribers those
//! buffers are most of the server's memory. So the accept loop reads the
//! request head itself (`sniff.rs`) and, when it is a GET that opens a
//! stream, serves it here (`serve_stream`): the same `Service` builds the
//! response (routing, validation, CORS, headers are shared), and this file
//! writes the head and then the body's shared `Bytes` frames straight to the
//! socket with vectored writes, as one HTTP/1.1 chunk per batch of ready
//! frames (HTTP/1.0: close-delimited). What stays per connection is the
//! socket, the subscription's stream and a small queue of `Bytes` being
//! written.
//!
//! A stream ends when the subscription ends (shutdown), or when the client
//! closes: the socket's read side is watched for EOF while the stream is
//! idle, so a departed subscriber is dropped at once, not at the next write.
//!
//! Publishes read whole by `sniff`, and long-polls, are answered here too
//! (`answer`): one head and body with `Content-Length` in one write, and
//! the connection goes back to `sniff` for its next request.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Io;
use bytes::{Buf, Bytes};
use http_body_util::Empty;
use hyper::body::Body as _;
use hyper::{Request, Response, Version};

use crate::http::{Body, Service};

/// Most frames gathered into one chunk (one write).
const FRAMES_PER_WRITE: usize = 64;

/// Serves one stream subscription on the socket until the stream or the client ends.
pub(crate) async fn serve_stream(
    mut stream: impl Io,
    req: Request<Empty<Bytes>>,
    svc: &Service,
) -> io::Result<()> {
    let http10 = req.version() == Version::HTTP_10;
    // Boxed: the handler's state is large and only needed for a moment; the
    // stream then lives for hours in this future.
    let resp = Box::pin(svc.handle(req)).await;
    respond(&mut stream, resp, http10, false).await?;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    Ok(())
}

/// Writes the answer to a request read whole by `sniff` (a publish,
/// usually; always HTTP/1.1: see `classify`) through `out`, a buffer kept
/// from request to request. Returns whether the connection may carry
/// another request.
pub(crate) async fn answer(
    stream: &mut impl Io,
    resp: Response<Body>,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    let http10 = false;
    let (parts, mut body) = resp.into_parts();
    let Some(len) = body.size_hint().exact() else {
        // An endless answer to a POST (an application's stream): chunked,
        // and the connection ends with it.
        let resp = Response::from_parts(parts, body);
        respond(stream, resp, http10, false).await?;
        let _ = tokio::io::AsyncWriteExt::shutdown(stream).await;
        return Ok(false);
    };
    out.clear();
    write_head(out, &parts, http10, Framing::Length(len, keep_alive));
    drop(parts);
    // A body of known length is a list of ready chunks.
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        // Only a proxied body fails, and proxied answers never come here.
        let frame = frame.map_err(io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    tokio::io::AsyncWriteExt::write_all(stream, out).await?;
    if out.capacity() > 64 * 1024 {
        // An unusually large answer: do not keep its buffer for the next one.
        *out = Vec::new();
    }
    if !keep_alive {
        let _ = tokio::io::AsyncWriteExt::shutdown(stream).await;
    }
    Ok(keep_alive)
}

/// Answers a request the connection cannot go on from (a head over the
/// limit, a body that stopped coming) with `resp` and closes the connection.
///
/// The close lingers: the client may still be sending what was refused
/// (the rest of a 200 KB head), and closing a socket with unread bytes
/// makes the kernel send a reset that can destroy the answer before the
/// client reads it. So the write side is shut, then what arrives is read
/// and dropped until the client closes, for at most 2 s or 1 MiB.
pub(crate) async fn refuse(stream: &mut impl Io, resp: Response<Body>) -> io::Result<()> {
    let http10 = false;
    respond(stream, resp, http10, false).await?;
    let _ = tokio::io::AsyncWriteExt::shutdown(stream).await;
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut left = 1024 * 1024usize;
        while left > 0 {
            match tokio::io::AsyncReadExt::read(stream, &mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
    Ok(())
}

/// How a response's body is delimited.
enum Framing {
    /// `Content-Length: n`; the connection stays open if the flag is set.
    Length(u64, bool),
    /// HTTP/1.1 chunks.
    Chunked,
    /// Until the connection closes (HTTP/1.0 streams).
    Close,
}

/// Appends a response head (status line, headers, framing, `Date`).
fn write_head(
    out: &mut Vec<u8>,
    parts: &hyper::http::response::Parts,
    http10: bool,
    framing: Framing,
) {
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n, keep_alive) => {
            // RFC 9110 8.6: no Content-Length on a 1xx or 204 (a 304's
            // would be the unsent representation's).
            let s = parts.status.as_u16();
            if !(s < 200 || s == 204 || s == 304) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(crate::http::decimal(n, &mut [0; 20]));
                out.extend_from_slice(b"\r\n");
            }
            if !keep_alive {
                out.extend_from_slice(b"connection: close\r\n");
            }
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::Close => out.extend_from_slice(b"connection: close\r\n"),
    }
    out.extend_from_slice(b"date: ");
    DATE.with(|d| out.extend_from_slice(d.borrow_mut().now()));
    out.extend_from_slice(b"\r\n\r\n");
}

/// Writes a response: a body of known length with `Content-Length` (the
/// connection stays open if `keep_alive`), an endless one chunked (HTTP/1.0:
/// close-delimited) until it ends. Returns whether the connection may carry
/// another request.
async fn respond(
    stream: &mut impl Io,
    resp: Response<Body>,
    http10: bool,
    keep_alive: bool,
) -> io::Result<bool> {
    let (parts, body) = resp.into_parts();
    let exact = body.size_hint().exact();
    let keep_alive = keep_alive && exact.is_some();
    let chunked = exact.is_none() && !http10;
    let framing = match exact {
        Some(n) => Framing::Length(n, keep_alive),
        None if chunked => Framing::Chunked,
        None => Framing::Close,
    };
    let mut head = Vec::with_capacity(256);
    write_head(&mut head, &parts, http10, framing);
    drop(parts);
    let mut conn = LeanConn {
        stream,
        body,
        out: VecDeque::with_capacity(4),
        chunked,
        // A connection that ends with this response is watched for the
        // client leaving while the body waits (bytes it sends are dropped);
        // one that stays open leaves them for the next request.
        watch_eof: !keep_alive,
        done: false,
    };
    conn.out.push_back(Bytes::from(head));
    std::future::poll_fn(|cx| conn.poll_run(cx)).await?;
    Ok(keep_alive)
}

struct LeanConn<'a, S> {
    stream: &'a mut S,
    body: Body,
    /// Bytes queued for the socket, written front first.
    out: VecDeque<Bytes>,
    chunked: bool,
    watch_eof: bool,
    done: bool,
}

impl<S: Io> LeanConn<'_, S> {
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The response head waits in `out` for the first frames, so that a
        // short answer (a publish's `{"id":..}`) leaves in one write with it.
        self.gather(cx);
        loop {
            while !self.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE + 3];
                let n = self
                    .out
                    .iter()
                    .zip(slices.iter_mut())
                    .map(|(b, s)| *s = IoSlice::new(b))
                    .count();
                match Pin::new(&mut *self.stream).poll_write_vectored(cx, &slices[..n]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(mut written)) => {
                        while written > 0 {
                            let front =
                                self.out.front_mut().expect("wrote at most what was queued");
                            let k = written.min(front.len());
                            front.advance(k);
                            written -= k;
                            if front.is_empty() {
                                self.out.pop_front();
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // A slow reader: wait for the socket. If it has gone
                        // away instead, stop now.
                        return match self.poll_client_gone(cx) {
                            Poll::Ready(e) => Poll::Ready(Err(e)),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                }
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            self.gather(cx);
            if self.out.is_empty() {
                // Idle: the body has registered for its next event, heartbeat
                // or shutdown; also notice the client leaving.
                return match self.poll_client_gone(cx) {
                    Poll::Ready(e) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                };
            }
        }
    }

    /// Moves the body's ready frames (at most one write's worth) to the end
    /// of `out`, framed as one chunk when chunked: no batch `Vec` per write.
    fn gather(&mut self, cx: &mut Context<'_>) {
        if self.done {
            return;
        }
        let start = self.out.len();
        let mut frames = 0;
        let mut len = 0;
        while frames < FRAMES_PER_WRITE {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            len += data.len();
                            frames += 1;
                            self.out.push_back(data);
                        }
                    }
                }
                // Only a proxied body fails, and proxied answers never
                // come here; end the stream if one ever does.
                Poll::Ready(Some(Err(_))) => {
                    self.done = true;
                    break;
                }
                Poll::Ready(None) => {
                    self.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if frames > 0 && self.chunked {
            self.out.insert(start, chunk_head(len));
            self.out.push_back(Bytes::from_static(b"\r\n"));
        }
        if self.done && self.chunked {
            self.out.push_back(Bytes::from_static(b"0\r\n\r\n"));
        }
    }

    /// Ready with an error once the client has closed its side or the socket
    /// failed; bytes it sends after its request are read and ignored.
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.watch_eof {
            return Poll::Pending;
        }
        // A read into a scratch buffer on the stack: for a TCP socket this
        // registers read interest exactly as `poll_read_ready` would, and it
        // works the same for any stream that wraps one (TLS).
        let mut scratch = [0u8; 256];
        loop {
            let mut read = tokio::io::ReadBuf::new(&mut scratch);
            match Pin::new(&mut *self.stream).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    return Poll::Ready(io::ErrorKind::UnexpectedEof.into())
                }
                Poll::Ready(Ok(())) => continue,
            }
        }
    }
}

/// `{len:x}\r\n`, the head of one HTTP/1.1 chunk (written per batch, so
/// without the formatting machinery).
fn chunk_head(len: usize) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 20];
    let mut i = buf.len() - 2;
    buf[i..].copy_from_slice(b"\r\n");
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    Bytes::copy_from_slice(&buf[i..])
}

thread_local! {
    /// The `Date` header's text, formatted once per second per thread.
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { secs: u64::MAX, text: String::new() }) };
}

struct CachedDate {
    secs: u64,
    text: String,
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.text = http_date(now);
        }
        self.text.as_bytes()
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate).
fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn chunk_heads() {
        assert_eq!(&chunk_head(0)[..], b"0\r\n");
        assert_eq!(&chunk_head(255)[..], b"ff\r\n");
        assert_eq!(&chunk_head(0x1a2b3c)[..], b"1a2b3c\r\n");
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(t), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
