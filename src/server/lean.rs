//! The lean connection path for long-lived streams.
//!
//! A streaming subscriber is a connection that sends one small request and
//! then only receives, for hours. Through hyper each such connection keeps an
//! 8 KiB read buffer and a write buffer, the price of supporting keep-alive
//! and request bodies it will never use. With 10,000 idle subscribers those
//! buffers are most of the server's memory. So the accept loop reads the
//! request head itself (`sniff`) and, when it is a GET that opens a stream
//! (see `Service::is_stream_request`), serves it here: the same `Service`
//! builds the response (routing, validation, CORS, headers are shared), and
//! this file writes the head and then the body's shared `Bytes` frames
//! straight to the socket with vectored writes, as one HTTP/1.1 chunk per
//! batch of ready frames (HTTP/1.0: close-delimited). What stays per
//! connection is the socket, the subscription's stream and a small queue of
//! `Bytes` being written. Everything else goes to hyper, with the bytes
//! already read replayed in front of the socket (`Prefixed`).
//!
//! The connection ends when the stream ends (shutdown), or when the client
//! closes: the socket's read side is watched for EOF while the stream is
//! idle, so a departed subscriber is dropped at once, not at the next write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::Empty;
use hyper::body::Body as _;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http::{Body, Service};

/// Largest request head read before handing the connection to hyper.
const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request taken on the lean path.
const MAX_HEADERS: usize = 48;
/// Most frames gathered into one chunk (one write).
const FRAMES_PER_WRITE: usize = 64;

/// What the first bytes of a connection turned out to be.
pub(crate) enum Sniff {
    /// A stream subscription: serve it here.
    Stream(Request<Empty<Bytes>>),
    /// Anything else: hyper serves it, after these bytes.
    Hyper(Bytes),
    /// The client closed before sending anything.
    Closed,
}

/// Reads the request head and decides who serves the connection.
pub(crate) async fn sniff(
    stream: &mut TcpStream,
    svc: &Service,
    timeout: Duration,
) -> io::Result<Sniff> {
    let mut buf = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(if buf.is_empty() {
                    Sniff::Closed
                } else {
                    Sniff::Hyper(buf.split().freeze())
                });
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let lean = (n == buf.len()).then(|| to_request(&req)).flatten();
                    return Ok(match lean {
                        Some(r)
                            if has_no_body(&r)
                                && svc.is_stream_request(r.method(), r.uri(), r.headers()) =>
                        {
                            Sniff::Stream(r)
                        }
                        _ => Sniff::Hyper(buf.split().freeze()),
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
                // Too long, too many headers or malformed: hyper answers it.
                _ => return Ok(Sniff::Hyper(buf.split().freeze())),
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Ok(Sniff::Closed),
    }
}

fn to_request(req: &httparse::Request<'_, '_>) -> Option<Request<Empty<Bytes>>> {
    let mut b = Request::builder()
        .method(req.method?)
        .uri(req.path?)
        .version(if req.version? == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        });
    let headers = b.headers_mut()?;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    b.body(Empty::new()).ok()
}

fn has_no_body(req: &Request<Empty<Bytes>>) -> bool {
    let h = req.headers();
    !h.contains_key(hyper::header::TRANSFER_ENCODING)
        && h.get(hyper::header::CONTENT_LENGTH)
            .map_or(true, |v| v.as_bytes() == b"0")
}

/// Serves one stream subscription on the socket until the stream or the client ends.
pub(crate) async fn serve_stream(
    stream: TcpStream,
    req: Request<Empty<Bytes>>,
    svc: &Service,
) -> io::Result<()> {
    let http10 = req.version() == Version::HTTP_10;
    // Boxed: the handler's state is large and only needed for a moment; the
    // stream then lives for hours in this future.
    let resp = Box::pin(svc.handle(req)).await;
    let (parts, body) = resp.into_parts();
    let exact = body.size_hint().exact();
    let chunked = exact.is_none() && !http10;
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match exact {
        // A refusal (bad cursor, bad callback...): a complete answer, then close.
        Some(n) => head
            .extend_from_slice(format!("content-length: {n}\r\nconnection: close\r\n").as_bytes()),
        None if chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        None => head.extend_from_slice(b"connection: close\r\n"),
    }
    head.extend_from_slice(b"date: ");
    head.extend_from_slice(http_date(SystemTime::now()).as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    drop(parts);
    let mut conn = LeanConn {
        stream,
        body,
        out: VecDeque::from([Bytes::from(head)]),
        chunked,
        done: false,
    };
    std::future::poll_fn(|cx| conn.poll_run(cx)).await?;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn.stream).await;
    Ok(())
}

struct LeanConn {
    stream: TcpStream,
    body: Body,
    /// Bytes queued for the socket, written front first.
    out: VecDeque<Bytes>,
    chunked: bool,
    done: bool,
}

impl LeanConn {
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while !self.out.is_empty() {
                let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE + 2];
                let n = self
                    .out
                    .iter()
                    .zip(slices.iter_mut())
                    .map(|(b, s)| *s = IoSlice::new(b))
                    .count();
                match Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..n]) {
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
            // `out` is empty here: gather the ready frames straight into it,
            // then put the chunk head in front (no batch `Vec` per write).
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
                    Poll::Ready(Some(Err(never))) => match never {},
                    Poll::Ready(None) => {
                        self.done = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if frames > 0 && self.chunked {
                self.out.push_front(chunk_head(len));
                self.out.push_back(Bytes::from_static(b"\r\n"));
            }
            if self.done && self.chunked {
                self.out.push_back(Bytes::from_static(b"0\r\n\r\n"));
            }
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

    /// Ready with an error once the client has closed its side or the socket
    /// failed; bytes it sends after its request are read and ignored.
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Ready(Ok(())) => {
                    let mut scratch = [0u8; 256];
                    match self.stream.try_read(&mut scratch) {
                        Ok(0) => return Poll::Ready(io::ErrorKind::UnexpectedEof.into()),
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Poll::Ready(e),
                    }
                }
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

/// A socket with bytes already read from it put back in front, for hyper.
pub(crate) struct Prefixed {
    prefix: Bytes,
    stream: TcpStream,
}

impl Prefixed {
    pub(crate) fn new(prefix: Bytes, stream: TcpStream) -> Prefixed {
        Prefixed { prefix, stream }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate).
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
