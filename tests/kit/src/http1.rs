//! HTTP/1 by hand, without I/O: requests written byte by byte, response
//! heads parsed with `httparse`, bodies undone from their framing (chunked,
//! Content-Length or close-delimited), strictly. The tests ([`crate::conn`])
//! and loadgen each put their own socket loop around these.

use std::fmt::Write as _;

/// A request, written by hand.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// The request target: a path, or an absolute URL for a forward proxy.
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
        let mut out = Vec::with_capacity(128 + self.body.len());
        self.write(&mut out);
        out
    }
    /// Appends the request's bytes to `out` (reuse one buffer for many).
    pub fn write(&self, out: &mut Vec<u8>) {
        for part in [&self.method, " ", &self.path, " ", self.version, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
        for (k, v) in &self.headers {
            for part in [k, ": ", v, "\r\n"] {
                out.extend_from_slice(part.as_bytes());
            }
        }
        if self.length {
            let mut n = String::new();
            let _ = write!(n, "Content-Length: {}\r\n", self.body.len());
            out.extend_from_slice(n.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
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
    /// Parses a response head at the start of `buf`: the head and its
    /// length, `None` if more bytes are needed, `Err` if it is malformed
    /// (or a header value is not text).
    pub fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "bad response head ({e}): {:?}",
                    String::from_utf8_lossy(buf)
                ))
            }
        };
        let mut list = Vec::with_capacity(resp.headers.len());
        for h in resp.headers.iter() {
            let v = std::str::from_utf8(h.value)
                .map_err(|_| format!("header values are ascii: {}: {:?}", h.name, h.value))?;
            list.push((h.name.to_string(), v.to_string()));
        }
        let head = Head {
            version: resp.version.unwrap_or(1),
            status: resp.code.unwrap_or(0),
            headers: list,
            raw: String::from_utf8_lossy(&buf[..len]).into_owned(),
        };
        Ok(Some((head, len)))
    }

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

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(usize),
    Close,
}

impl Framing {
    /// The framing of the body that follows `head` (an answer to `method`).
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

/// Undoes a body's framing, strictly: bad chunk framing is an error.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    chunk: ChunkState,
    done: bool,
    clean_end: bool,
    /// Every decoded body byte so far.
    raw: Vec<u8>,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        Decoder {
            framing,
            chunk: ChunkState::Size,
            done: false,
            clean_end: false,
            raw: Vec::new(),
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Every decoded body byte so far.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Takes the decoded body out (the decoder keeps nothing).
    pub fn take_raw(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.raw)
    }

    /// Whether the body is over (by its framing, or the connection closed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the body ended as its framing says it should (the last chunk,
    /// all of Content-Length, or the connection closing for close-delimited).
    pub fn ended_cleanly(&self) -> bool {
        self.clean_end
    }

    /// Decodes what `buf` holds, taking the bytes it uses out of it (bytes
    /// after the body stay: a pipelined response); returns the decoded bytes.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
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
                            if buf.len() >= 1024 {
                                return Err("chunk size line too long".into());
                            }
                            break;
                        };
                        let line = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let hex = line.split(';').next().unwrap_or("").trim();
                        let n = usize::from_str_radix(hex, 16)
                            .map_err(|_| format!("bad chunk size line {line:?}"))?;
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
                        if &buf[..2] != b"\r\n" {
                            return Err(format!(
                                "chunk data must end with CRLF, not {:?}",
                                String::from_utf8_lossy(&buf[..2])
                            ));
                        }
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
        Ok(out)
    }

    /// The connection closed: the body is over, and ended cleanly only if
    /// its framing was already complete or is close-delimited.
    pub fn closed(&mut self) {
        self.done = true;
        if self.framing == Framing::Close {
            self.clean_end = true;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_as_built() {
        let req = Req::post("/ch/c", b"hi")
            .header("Host", "h")
            .header("Content-Type", "text/plain");
        assert_eq!(
            req.to_bytes(),
            b"POST /ch/c HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        let get = Req::get("/x").http10().host("h");
        assert_eq!(get.to_bytes(), b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n");
    }

    /// A chunked answer and a pipelined one behind it, fed a byte at a time.
    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n1\r\nd\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let mut buf = Vec::new();
        let mut head = None;
        let mut dec = None;
        for &b in wire.iter() {
            buf.push(b);
            if head.is_none() {
                if let Some((h, len)) = Head::parse(&buf).unwrap() {
                    buf.drain(..len);
                    dec = Some(Decoder::new(Framing::of(&h, "GET")));
                    head = Some(h);
                }
            }
            if let Some(d) = dec.as_mut().filter(|d| !d.is_done()) {
                d.decode(&mut buf).unwrap();
            }
        }
        let dec = dec.unwrap();
        assert!(dec.is_done() && dec.ended_cleanly());
        assert_eq!(dec.raw(), b"abcd");
        let (next, _) = Head::parse(&buf).unwrap().unwrap();
        assert_eq!(Framing::of(&next, "GET"), Framing::Length(0));
    }

    #[test]
    fn bad_framing_is_an_error_and_a_cut_is_not_clean() {
        let mut d = Decoder::new(Framing::Chunked);
        assert!(d.decode(&mut b"zz\r\n".to_vec()).is_err());
        let mut d = Decoder::new(Framing::Chunked);
        assert!(d.decode(&mut b"2\r\nabXY".to_vec()).is_err());
        let mut d = Decoder::new(Framing::Length(5));
        d.decode(&mut b"abc".to_vec()).unwrap();
        d.closed();
        assert!(d.is_done() && !d.ended_cleanly());
        let mut d = Decoder::new(Framing::Close);
        d.decode(&mut b"abc".to_vec()).unwrap();
        d.closed();
        assert!(d.ended_cleanly());
    }
}
