//! What every test shares: a real server on an OS-chosen port, and a raw
//! HTTP/1 client that writes request bytes by hand and decodes the response
//! itself (chunked, Content-Length or close-delimited), so the tests check
//! exactly what goes over the wire.
//!
//! Every read is bounded by `IO_TIMEOUT`: a server bug fails the test with a
//! message instead of hanging it.

#![allow(dead_code)] // not every test module uses every helper

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tandem::wire::{MultipartParser, SseParser, WireEvent};
use tandem::{Config, Hub, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The bound on any single read or wait: generous, so only a bug trips it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The multipart stream delimiter line.
pub fn delimiter() -> String {
    format!("--{}", tandem::transport::multipart::BOUNDARY)
}

/// A config with small values so tests are quick. The heartbeat is long so it
/// stays out of byte-exact checks; tests about heartbeats set their own.
pub fn config() -> Config {
    Config {
        buffer_events: 64,
        heartbeat: Duration::from_secs(30),
        poll_timeout: Duration::from_secs(1),
        poll_timeout_max: Duration::from_secs(30),
        stream_padding: 2048,
        sse_retry: Duration::from_millis(1500),
        shutdown_timeout: Duration::from_secs(3),
        max_connections: 1000,
        ..Config::default()
    }
}

/// What the binary serves: channels, co-browsing and its demo portal (when
/// the config says so), and the live status feed.
pub fn app(hub: &Hub, addr: SocketAddr) -> tandem::Service {
    let svc = tandem::cobrowse::mount(tandem::Service::new(hub.clone()), addr).expect("mount");
    tokio::spawn(tandem::status::run(hub.clone(), svc.shutdown().clone()));
    svc
}

/// A tandem server running in the test's runtime.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(cfg: Config) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hub = Hub::new(cfg).expect("valid test config");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tandem::serve(listener, app(&hub, addr))
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .into_future(),
        );
        Server {
            addr,
            hub,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn with_defaults() -> Server {
        Server::start(config()).await
    }

    /// Completes the shutdown future given to `serve`.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `serve` to return; panics if it takes longer than `bound`.
    pub async fn join(&mut self, bound: Duration) -> std::io::Result<()> {
        let task = self.task.take().expect("serve task already joined");
        tokio::time::timeout(bound, task)
            .await
            .unwrap_or_else(|_| panic!("serve did not return within {bound:?}"))
            .expect("serve task panicked")
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub async fn connect(&self) -> Conn {
        Conn::connect(&self.host()).await
    }

    /// Sends one request on a new connection and reads the whole response.
    pub async fn send(&self, req: Req) -> Response {
        let mut conn = self.connect().await;
        conn.request(&req.host(&self.host())).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Req::get(path)).await
    }

    /// A raw publish: `content_type` (if any) and the body as given.
    pub async fn post(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Response {
        let mut req = Req::post(path, body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        self.send(req).await
    }

    /// Publishes text and returns its id (asserting 202).
    pub async fn publish(&self, channel: &str, data: &str) -> u64 {
        let r = self
            .post(
                &format!("/ch/{channel}"),
                Some("text/plain; charset=utf-8"),
                data.as_bytes(),
            )
            .await;
        assert_eq!(r.head.status, 202, "publish answered {}", r.text());
        r.json()["id"].as_u64().expect("publish answers an id")
    }

    /// Opens a streamed GET and reads its head.
    pub async fn open(&self, req: Req) -> (Head, BodyReader) {
        let mut conn = self.connect().await;
        let method = req.method.clone();
        conn.send(&req.host(&self.host()).to_bytes()).await;
        let head = conn.read_head().await;
        let body = conn.into_body(&head, &method);
        (head, body)
    }

    /// Opens an SSE stream and checks it was accepted.
    pub async fn sse(&self, path: &str) -> Events<SseParser> {
        self.sse_with(Req::get(path)).await
    }

    pub async fn sse_with(&self, req: Req) -> Events<SseParser> {
        let (head, body) = self.open(req).await;
        assert_eq!(head.status, 200, "{}", head.raw);
        Events::new(head, body, SseParser::new())
    }

    /// Opens a multipart (x-mixed-replace or mixed) stream.
    pub async fn multipart(&self, path: &str) -> Events<MultipartParser> {
        let (head, body) = self.open(Req::get(path)).await;
        assert_eq!(head.status, 200, "{}", head.raw);
        let parser = MultipartParser::new(tandem::transport::multipart::BOUNDARY);
        Events::new(head, body, parser)
    }

    /// Opens a forever-iframe page.
    pub async fn iframe(&self, path: &str, callback: &str) -> Events<IframeParser> {
        let (head, body) = self.open(Req::get(path)).await;
        assert_eq!(head.status, 200, "{}", head.raw);
        Events::new(head, body, IframeParser::new(callback))
    }

    /// `GET /ch/{c}/info` as JSON.
    pub async fn info(&self, channel: &str) -> Value {
        let r = self.get(&format!("/ch/{channel}/info")).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
        r.json()
    }

    /// The channel's current epoch, straight from the hub (it must exist).
    pub fn epoch(&self, channel: &str) -> String {
        let info = self.hub.info(channel);
        info.epoch.expect("the channel exists").to_string()
    }

    /// `EPOCH:ID` in the channel's current epoch.
    pub fn cursor(&self, channel: &str, id: u64) -> String {
        format!("{}:{id}", self.epoch(channel))
    }

    /// Live subscribers of a channel on one transport, straight from the hub.
    pub fn subscribers(&self, channel: &str, t: Transport) -> usize {
        self.hub.info(channel).subscribers[t as usize]
    }

    /// Waits (bounded) until the channel has `n` subscribers on transport `t`.
    /// Sends a long-poll on `conn` from `since`, held up to 30 s, and waits
    /// until the server holds it (the channel then has one more poller).
    pub async fn hold_poll(&self, conn: &mut Conn, channel: &str, since: u64) {
        let before = self.subscribers(channel, Transport::Poll);
        let path = format!("/ch/{channel}/poll?timeout=30&since={since}");
        conn.send(&Req::get(&path).host(&self.host()).to_bytes())
            .await;
        self.wait_subscribers(channel, Transport::Poll, before + 1)
            .await;
    }

    pub async fn wait_subscribers(&self, channel: &str, t: Transport, n: usize) {
        wait_until(
            &format!("{n} {} subscriber(s) on {channel}", t.name()),
            || {
                let ok = self.subscribers(channel, t) == n;
                async move { ok }
            },
        )
        .await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

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
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {IO_TIMEOUT:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request, written by hand.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub version: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send `Content-Length` for the body (off for hand-chunked bodies).
    pub length: bool,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            version: "HTTP/1.1",
            headers: Vec::new(),
            body: Vec::new(),
            length: method == "POST" || method == "PUT",
        }
    }
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }
    pub fn post(path: &str, body: &[u8]) -> Req {
        Req::new("POST", path).body(body)
    }
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: &[u8]) -> Req {
        self.body = b.to_vec();
        self.length = true;
        self
    }
    /// Sends the body chunked, without `Content-Length`.
    pub fn chunked(mut self) -> Req {
        let mut framed = Vec::new();
        for piece in self.body.chunks(1000) {
            framed.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            framed.extend_from_slice(piece);
            framed.extend_from_slice(b"\r\n");
        }
        framed.extend_from_slice(b"0\r\n\r\n");
        self.body = framed;
        self.length = false;
        self.header("Transfer-Encoding", "chunked")
    }
    pub fn http10(mut self) -> Req {
        self.version = "HTTP/1.0";
        self
    }
    /// Adds `Host` unless the test set one.
    pub fn host(self, host: &str) -> Req {
        if self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            self
        } else {
            self.header("Host", host)
        }
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} {}\r\n", self.method, self.path, self.version).into_bytes();
        for (k, v) in &self.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if self.length {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response head as parsed by `httparse`.
#[derive(Debug, Clone)]
pub struct Head {
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The head as received, for failure messages and byte checks.
    pub raw: String,
}

impl Head {
    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
    /// Asserts the header is present with exactly this value.
    pub fn expect(&self, name: &str, value: &str) {
        assert_eq!(
            self.header(name),
            Some(value),
            "header {name} in:\n{}",
            self.raw
        );
    }
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
    /// Asserts the headers that keep caches and buffering proxies away.
    pub fn expect_no_cache(&self) {
        self.expect("cache-control", "no-cache, no-store, no-transform");
        self.expect("x-accel-buffering", "no");
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
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
    buf: Vec<u8>,
}

impl Conn {
    pub fn from_stream(stream: TcpStream) -> Conn {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn connect(addr: &str) -> Conn {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect to the test server");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        within("write request", self.stream.write_all(bytes))
            .await
            .expect("write request");
    }

    /// Reads more bytes into the buffer; 0 means end of stream. A reset by
    /// the peer also counts as the end.
    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match within("read from the server", self.stream.read(&mut chunk)).await {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read failed: {e}"),
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

    /// Reads and parses a response head.
    pub async fn read_head(&mut self) -> Head {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let head = Head {
                        version: resp.version.expect("version"),
                        status: resp.code.expect("status"),
                        headers: resp
                            .headers
                            .iter()
                            .map(|h| {
                                let v = String::from_utf8(h.value.to_vec())
                                    .expect("header values are ascii");
                                (h.name.to_string(), v)
                            })
                            .collect(),
                        raw: String::from_utf8_lossy(&self.buf[..len]).into_owned(),
                    };
                    self.buf.drain(..len);
                    return head;
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill().await == 0 {
                        panic!(
                            "connection closed before a full response head: {:?}",
                            String::from_utf8_lossy(&self.buf)
                        );
                    }
                }
                Err(e) => panic!(
                    "bad response head ({e}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
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
        while dec.next(self).await.is_some() {}
        Response {
            head,
            body: dec.raw,
        }
    }

    pub fn into_body(self, head: &Head, method: &str) -> BodyReader {
        BodyReader {
            conn: self,
            dec: Decoder::new(Framing::of(head, method)),
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(usize),
    Close,
}

impl Framing {
    pub fn of(head: &Head, method: &str) -> Framing {
        if method == "HEAD" || head.status / 100 == 1 || head.status == 204 || head.status == 304 {
            return Framing::Length(0);
        }
        if head.is_chunked() {
            return Framing::Chunked;
        }
        match head.header("content-length") {
            Some(n) => Framing::Length(n.trim().parse().expect("numeric content-length")),
            None => Framing::Close,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
}

/// Undoes a body's framing, strictly: bad chunk framing fails the test.
struct Decoder {
    framing: Framing,
    chunk: ChunkState,
    done: bool,
    clean_end: bool,
    /// Every decoded body byte so far.
    raw: Vec<u8>,
}

impl Decoder {
    fn new(framing: Framing) -> Decoder {
        Decoder {
            framing,
            chunk: ChunkState::Size,
            done: false,
            clean_end: false,
            raw: Vec::new(),
        }
    }

    /// Decodes what the connection's buffer holds; returns the decoded bytes.
    fn decode(&mut self, buf: &mut Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        match self.framing {
            Framing::Close => out.append(buf),
            Framing::Length(n) => {
                let want = n - self.raw.len();
                let take = want.min(buf.len());
                out.extend(buf.drain(..take));
                if want == take {
                    self.done = true;
                    self.clean_end = true;
                }
            }
            Framing::Chunked => loop {
                match self.chunk {
                    ChunkState::Size => {
                        let Some(end) = find(buf, b"\r\n") else {
                            assert!(buf.len() < 1024, "chunk size line too long");
                            break;
                        };
                        let line = std::str::from_utf8(&buf[..end]).expect("chunk size is ascii");
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let n = usize::from_str_radix(hex, 16)
                            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                        buf.drain(..end + 2);
                        self.chunk = if n == 0 {
                            ChunkState::Trailer
                        } else {
                            ChunkState::Data(n)
                        };
                    }
                    ChunkState::Data(n) => {
                        if buf.is_empty() {
                            break;
                        }
                        let take = n.min(buf.len());
                        out.extend(buf.drain(..take));
                        self.chunk = if take == n {
                            ChunkState::DataEnd
                        } else {
                            ChunkState::Data(n - take)
                        };
                    }
                    ChunkState::DataEnd => {
                        if buf.len() < 2 {
                            break;
                        }
                        assert_eq!(&buf[..2], b"\r\n", "chunk data must end with CRLF");
                        buf.drain(..2);
                        self.chunk = ChunkState::Size;
                    }
                    ChunkState::Trailer => {
                        let Some(end) = find(buf, b"\r\n") else {
                            break;
                        };
                        buf.drain(..end + 2);
                        if end == 0 {
                            self.done = true;
                            self.clean_end = true;
                            break;
                        }
                    }
                }
            },
        }
        self.raw.extend_from_slice(&out);
        out
    }

    /// The next decoded bytes, `None` at the end of the body.
    async fn next(&mut self, conn: &mut Conn) -> Option<Vec<u8>> {
        loop {
            let out = self.decode(&mut conn.buf);
            if !out.is_empty() {
                return Some(out);
            }
            if self.done {
                return None;
            }
            if conn.fill().await == 0 {
                self.done = true;
                let leftover = self.decode(&mut conn.buf);
                if self.framing == Framing::Close {
                    self.clean_end = true;
                } else {
                    assert!(
                        self.clean_end,
                        "connection closed mid-body ({:?})",
                        self.framing
                    );
                }
                return (!leftover.is_empty()).then_some(leftover);
            }
        }
    }
}

/// Reads a response body incrementally.
pub struct BodyReader {
    pub conn: Conn,
    dec: Decoder,
}

impl BodyReader {
    pub fn framing(&self) -> Framing {
        self.dec.framing
    }

    /// Every decoded body byte so far.
    pub fn raw(&self) -> &[u8] {
        &self.dec.raw
    }

    /// Whether the body ended as its framing says it should (the last chunk,
    /// all of Content-Length, or the connection closing for close-delimited).
    pub fn ended_cleanly(&self) -> bool {
        self.dec.clean_end
    }

    /// The next decoded body bytes, or `None` at the end of the body. Panics
    /// if nothing comes within `IO_TIMEOUT`.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.dec.next(&mut self.conn).await
    }

    /// Reads to the end of the body and returns all of it.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        while self.next().await.is_some() {}
        self.dec.raw.clone()
    }

    /// Reads until the decoded body so far satisfies `pred`, for at most
    /// `IO_TIMEOUT` in all (heartbeats alone cannot keep it reading forever).
    pub async fn read_until(&mut self, what: &str, mut pred: impl FnMut(&[u8]) -> bool) {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        while !pred(&self.dec.raw) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                String::from_utf8_lossy(&self.dec.raw)
            );
            if self.next().await.is_none() {
                panic!(
                    "body ended before {what}: {:?}",
                    String::from_utf8_lossy(&self.dec.raw)
                );
            }
        }
    }

    /// Reads until the body so far contains `needle`.
    pub async fn read_until_contains(&mut self, needle: &[u8]) {
        let what = format!("{:?}", String::from_utf8_lossy(needle));
        self.read_until(&what, |b| find(b, needle).is_some()).await
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How many times `needle` occurs in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Turns stream bytes into events.
pub trait Feed {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String>;
}

impl Feed for SseParser {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.feed(bytes)
    }
}

impl Feed for MultipartParser {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.feed(bytes)
    }
}

/// The forever iframe has no incremental parser in `tandem::wire`: this one
/// hands `parse_iframe` each complete `<script>` element as it arrives.
pub struct IframeParser {
    callback: String,
    buf: Vec<u8>,
}

impl IframeParser {
    pub fn new(callback: &str) -> IframeParser {
        IframeParser {
            callback: callback.into(),
            buf: Vec::new(),
        }
    }
}

impl Feed for IframeParser {
    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<Vec<WireEvent>, String> {
        self.buf.extend_from_slice(bytes);
        let close = b");</script>";
        let Some(last) = self.buf.windows(close.len()).rposition(|w| w == close) else {
            return Ok(Vec::new());
        };
        let complete: Vec<u8> = self.buf.drain(..last + close.len()).collect();
        tandem::wire::parse_iframe(&complete, &self.callback)
    }
}

/// A streamed subscription: its head, its body and a parser over it.
pub struct Events<P> {
    pub head: Head,
    pub body: BodyReader,
    pub parser: P,
    pending: VecDeque<WireEvent>,
}

impl<P: Feed> Events<P> {
    pub fn new(head: Head, body: BodyReader, parser: P) -> Events<P> {
        Events {
            head,
            body,
            parser,
            pending: VecDeque::new(),
        }
    }

    /// Reads more of the body into the parser; false at the end of the body.
    pub async fn pump(&mut self) -> bool {
        match self.body.next().await {
            Some(bytes) => {
                let evs = self
                    .parser
                    .feed_bytes(&bytes)
                    .unwrap_or_else(|e| panic!("stream does not parse: {e}"));
                self.pending.extend(evs);
                true
            }
            None => false,
        }
    }

    /// Reads (feeding the parser) until the body so far satisfies `pred`.
    pub async fn read_until(&mut self, what: &str, mut pred: impl FnMut(&[u8]) -> bool) {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        while !pred(self.body.raw()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                String::from_utf8_lossy(self.body.raw())
            );
            if !self.pump().await {
                panic!(
                    "body ended before {what}: {:?}",
                    String::from_utf8_lossy(self.body.raw())
                );
            }
        }
    }

    /// The next event (panics if the stream ends or none comes within
    /// `IO_TIMEOUT`, heartbeats or not).
    pub async fn next_event(&mut self) -> WireEvent {
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for an event: {:?}",
                String::from_utf8_lossy(self.body.raw())
            );
            if !self.pump().await {
                panic!(
                    "stream ended while waiting for an event: {:?}",
                    String::from_utf8_lossy(self.body.raw())
                );
            }
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<WireEvent> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_event().await);
        }
        out
    }

    /// Events parsed but not yet taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Reads to the end of the body; returns the events that were still to come.
    pub async fn finish(&mut self) -> Vec<WireEvent> {
        while self.pump().await {}
        self.pending.drain(..).collect()
    }
}

/// The ids of events (gaps have none).
pub fn ids(events: &[WireEvent]) -> Vec<Option<u64>> {
    events.iter().map(|e| e.id).collect()
}

/// Ids `a..=b` as delivered ids.
pub fn some_ids(r: std::ops::RangeInclusive<u64>) -> Vec<Option<u64>> {
    r.map(Some).collect()
}

/// The text of an event's data.
pub fn text(e: &WireEvent) -> &str {
    std::str::from_utf8(&e.data).expect("utf-8 data")
}

/// One `multipart/form-data` part: name, filename, content type, data.
pub type Part<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A `multipart/form-data` body.
pub fn form_data(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, filename, ct, data) in parts {
        b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disp = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            disp.push_str(&format!("; filename=\"{f}\""));
        }
        b.extend_from_slice(disp.as_bytes());
        b.extend_from_slice(b"\r\n");
        if let Some(ct) = ct {
            b.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}
