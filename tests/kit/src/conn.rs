//! A raw HTTP/1 client connection over TCP, for tests: it writes the bytes it
//! is given and decodes responses with [`crate::http1`].
//!
//! Every read is bounded: by [`IO_TIMEOUT`] (then a server bug fails the test
//! with a message instead of hanging it), or by a deadline the test gives
//! (the `_by` methods, which say why they stopped instead of panicking).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::{timeout_at, Instant};

use crate::http1::{Decoder, Framing, Head, Req};

/// The bound on any single read or wait: generous, so only a bug trips it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `f` bounded by `IO_TIMEOUT`, panicking with `what` on timeout.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {IO_TIMEOUT:?}: {what}"),
    }
}

/// Polls `cond` every 10 ms until it holds; panics after `IO_TIMEOUT`.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if cond().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {IO_TIMEOUT:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Why a read bounded by a deadline came back without bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Nothing came by the deadline.
    Deadline,
    /// The body ended as its framing says it should.
    End,
    /// The connection closed in the middle of a body (chunked or with a
    /// length): a proxy or the server cut it.
    Cut,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::Deadline => "nothing came by the deadline",
            Stop::End => "the stream ended",
            Stop::Cut => "the stream was cut mid-body",
        })
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of cookie `name` set by this response (`Set-Cookie`).
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.head
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.split(';').next()?.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}\n{}", self.text(), self.head.raw))
    }
    /// Asserts a refusal: this status, a JSON content type and an
    /// `{"error":"..."}` body whose message contains every one of `words`.
    pub fn expect_error(&self, status: u16, words: &[&str]) -> String {
        assert_eq!(
            self.head.status,
            status,
            "{}\n{}",
            self.head.raw,
            self.text()
        );
        self.head.expect("content-type", "application/json");
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 1, "error body has only `error`: {v}");
        let msg = v["error"].as_str().expect("error is a string").to_string();
        for w in words {
            assert!(msg.contains(w), "error {msg:?} should mention {w:?}");
        }
        msg
    }
}

/// One client connection.
pub struct Conn {
    pub stream: TcpStream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

impl Conn {
    pub fn from_stream(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn connect(addr: impl ToSocketAddrs + fmt::Debug + Copy) -> Conn {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connect to {addr:?}: {e}"));
        Conn::from_stream(stream)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("write request", self.stream.write_all(bytes))
            .await
            .expect("write request");
    }

    /// Bytes read but not yet taken by a head or a body.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads more bytes into the buffer by `deadline`: `None` if nothing
    /// came by then, `Some(0)` at the end of the stream (a reset by the peer
    /// also counts as the end).
    pub async fn fill_by(&mut self, deadline: Instant) -> Option<usize> {
        let mut chunk = [0u8; 16 * 1024];
        match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => None,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(0),
            Ok(Err(e)) => panic!("read failed: {e}"),
        }
    }

    /// Reads more bytes; 0 means end of stream. Panics after `IO_TIMEOUT`.
    async fn fill(&mut self) -> usize {
        match self.fill_by(Instant::now() + IO_TIMEOUT).await {
            Some(n) => n,
            None => panic!("timed out after {IO_TIMEOUT:?}: read from the server"),
        }
    }

    /// Whether the server has closed the connection (nothing more to read).
    /// Panics if it sends bytes instead.
    pub async fn at_eof(&mut self) -> bool {
        let n = self.fill().await;
        assert!(
            n == 0,
            "expected the connection to close, got {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        true
    }

    /// Reads and parses a response head by `deadline`; panics if none comes.
    pub async fn read_head_by(&mut self, deadline: Instant) -> Head {
        loop {
            match Head::parse(&self.buf) {
                Ok(Some((head, len))) => {
                    self.buf.drain(..len);
                    return head;
                }
                Ok(None) => match self.fill_by(deadline).await {
                    Some(0) => panic!(
                        "connection closed before a full response head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                    Some(_) => {}
                    None => panic!(
                        "no response head in time; got {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                },
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Reads and parses a response head.
    pub async fn read_head(&mut self) -> Head {
        self.read_head_by(Instant::now() + IO_TIMEOUT).await
    }

    /// Sends a request and reads the whole response; the connection stays usable.
    pub async fn request(&mut self, req: &Req) -> Response {
        self.send(&req.to_bytes()).await;
        self.response(&req.method).await
    }

    /// Reads one whole response (to a request with `method`).
    pub async fn response(&mut self, method: &str) -> Response {
        let head = self.read_head().await;
        let mut dec = Decoder::new(Framing::of(&head, method));
        while next_by(self, &mut dec, Instant::now() + IO_TIMEOUT)
            .await
            .map_err(must_end)
            .is_ok()
        {}
        Response {
            head,
            body: dec.take_raw(),
        }
    }

    /// Reads one whole response by `deadline`; panics if it is cut or not
    /// all there by then.
    pub async fn response_by(&mut self, method: &str, deadline: Instant) -> Response {
        let head = self.read_head_by(deadline).await;
        let mut dec = Decoder::new(Framing::of(&head, method));
        loop {
            match next_by(self, &mut dec, deadline).await {
                Ok(_) => {}
                Err(Stop::End) => break,
                Err(Stop::Cut) => panic!(
                    "connection closed mid-body ({:?}) after {:?}",
                    dec.framing(),
                    String::from_utf8_lossy(dec.raw())
                ),
                Err(Stop::Deadline) => panic!(
                    "body not complete in time; got {:?}",
                    String::from_utf8_lossy(dec.raw())
                ),
            }
        }
        Response {
            head,
            body: dec.take_raw(),
        }
    }

    pub fn into_body(self, head: &Head, method: &str) -> BodyReader {
        BodyReader {
            conn: self,
            dec: Decoder::new(Framing::of(head, method)),
        }
    }
}

/// The next decoded body bytes from `conn` by `deadline`.
async fn next_by(conn: &mut Conn, dec: &mut Decoder, deadline: Instant) -> Result<Vec<u8>, Stop> {
    loop {
        let out = dec.decode(&mut conn.buf).unwrap_or_else(|e| panic!("{e}"));
        if !out.is_empty() {
            return Ok(out);
        }
        if dec.is_done() {
            return Err(if dec.ended_cleanly() {
                Stop::End
            } else {
                Stop::Cut
            });
        }
        match conn.fill_by(deadline).await {
            None => return Err(Stop::Deadline),
            Some(0) => dec.closed(),
            Some(_) => {}
        }
    }
}

/// For reads bounded by `IO_TIMEOUT`: the end of the body is the only
/// acceptable stop.
fn must_end(stop: Stop) {
    match stop {
        Stop::End => {}
        Stop::Cut => panic!("connection closed mid-body"),
        Stop::Deadline => panic!("timed out after {IO_TIMEOUT:?}: read from the server"),
    }
}

/// Reads a response body incrementally.
pub struct BodyReader {
    pub conn: Conn,
    dec: Decoder,
}

impl BodyReader {
    pub fn framing(&self) -> Framing {
        self.dec.framing()
    }

    /// Every decoded body byte so far.
    pub fn raw(&self) -> &[u8] {
        self.dec.raw()
    }

    /// Whether the body ended as its framing says it should (the last chunk,
    /// all of Content-Length, or the connection closing for close-delimited).
    pub fn ended_cleanly(&self) -> bool {
        self.dec.ended_cleanly()
    }

    /// The next decoded body bytes by `deadline`, or why there are none.
    pub async fn next_by(&mut self, deadline: Instant) -> Result<Vec<u8>, Stop> {
        next_by(&mut self.conn, &mut self.dec, deadline).await
    }

    /// The next decoded body bytes, or `None` at the end of the body. Panics
    /// if nothing comes within `IO_TIMEOUT` or the body is cut.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        match self.next_by(Instant::now() + IO_TIMEOUT).await {
            Ok(bytes) => Some(bytes),
            Err(stop) => {
                must_end(stop);
                None
            }
        }
    }

    /// Reads until the decoded body so far satisfies `pred`, for at most
    /// `IO_TIMEOUT` in all (heartbeats alone cannot keep it reading forever).
    pub async fn read_until(&mut self, what: &str, mut pred: impl FnMut(&[u8]) -> bool) {
        let deadline = Instant::now() + IO_TIMEOUT;
        while !pred(self.dec.raw()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                String::from_utf8_lossy(self.dec.raw())
            );
            if self.next().await.is_none() {
                panic!(
                    "body ended before {what}: {:?}",
                    String::from_utf8_lossy(self.dec.raw())
                );
            }
        }
    }
}
