//! Injecting the co-browsing scripts into the HTML pages the proxy forwards,
//! streaming, in the page's content encoding and charset, with the page's
//! Content-Security-Policy adjusted (a per-response nonce) rather than removed.
//!
//! The entry point is [`inject`]: given an upstream response and the script
//! paths, it returns the response to send, whose body is an [`InjectBody`]
//! (a `hyper::body::Body` over any `Body<Data = Bytes>`, such as hyper's
//! `Incoming`). Responses that are not HTML, or are in an encoding we cannot
//! decode, come back untouched (same headers, same bytes, same size hint).
//!
//! The insertion rule (the same for every chunking of the body): skip a byte
//! order mark, then whitespace, comments (`<!--…-->`), doctypes and other
//! `<!…>` / `<?…>` declarations, and an `<html …>` start tag; if the next
//! thing is a `<head …>` start tag, the scripts go right after its `>`;
//! otherwise (any other tag, an end tag, text, a stray `<`) right before it,
//! which is where a browser opens the implied `<head>` itself. At the end of
//! a body that never got past that prologue the scripts go at the end (before
//! a tag name cut short), except past the name of an unclosed tag, inside an
//! unclosed comment or doctype, or in an empty body (then nowhere). In XHTML
//! the scripts never go before the `<html>` root: a page whose first element
//! is something else gets none (another root would make it ill-formed).
//! Only the bytes of a tag whose name might still be `head` or `html` are
//! held back (at most five characters), everything else is passed on as it
//! arrives: memory does not grow with the page, and a prologue of any length
//! is streamed. See `docs/proxy.md`, "HTML injection".

use std::fmt;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

/// The error type of an [`InjectBody`]: the inner body's, or a decoding one.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The content codings we can decode and encode again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
    /// HTTP's `deflate`: zlib-wrapped (RFC 9110), or raw deflate as some
    /// servers send it; the first two bytes tell, and the output keeps the
    /// same wrapping.
    Deflate,
    Brotli,
}

impl Encoding {
    /// The coding named by a `Content-Encoding` header (all its values), or
    /// `None` for one we do not handle (an unknown coding, or several).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Encoding> {
        let mut codings = headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|c| c.trim_ascii())
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"));
        let Some(first) = codings.next() else {
            return Some(Encoding::Identity);
        };
        if codings.next().is_some() {
            return None;
        }
        if first.eq_ignore_ascii_case(b"gzip") || first.eq_ignore_ascii_case(b"x-gzip") {
            Some(Encoding::Gzip)
        } else if first.eq_ignore_ascii_case(b"deflate") {
            Some(Encoding::Deflate)
        } else if first.eq_ignore_ascii_case(b"br") {
            Some(Encoding::Brotli)
        } else {
            None
        }
    }
}

/// How the page's characters are laid out in bytes, as far as finding tags
/// and writing our ASCII markup go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Charset {
    /// UTF-8, ISO-8859-1, windows-1252 and every other charset a browser
    /// reads in which ASCII is one byte per character (Shift_JIS, GBK, Big5,
    /// EUC-*: `<` is never part of a multi-byte character in them).
    Ascii,
    Utf16Le,
    Utf16Be,
}

/// What a `Content-Type` says about a page, if it is HTML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Html {
    /// From the `charset` parameter; a byte order mark in the body wins.
    pub(crate) charset: Charset,
    /// `application/xhtml+xml`: a doctype's internal subset is skipped whole.
    pub(crate) xml: bool,
}

impl Html {
    /// `Some` for `text/html` and `application/xhtml+xml`, `None` for
    /// anything else (not HTML, leave it), including no `Content-Type`.
    pub(crate) fn from_content_type(value: &[u8]) -> Option<Html> {
        let mut parts = value.split(|&b| b == b';');
        let essence = parts.next()?.trim_ascii();
        let xml = if essence.eq_ignore_ascii_case(b"text/html") {
            false
        } else if essence.eq_ignore_ascii_case(b"application/xhtml+xml") {
            true
        } else {
            return None;
        };
        let mut charset = Charset::Ascii;
        for param in parts {
            let Some(eq) = param.iter().position(|&b| b == b'=') else {
                continue;
            };
            if !param[..eq].trim_ascii().eq_ignore_ascii_case(b"charset") {
                continue;
            }
            let v = param[eq + 1..].trim_ascii();
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            // WHATWG Encoding: "utf-16" and "unicode"-ish labels are LE.
            charset =
                if v.eq_ignore_ascii_case(b"utf-16be") || v.eq_ignore_ascii_case(b"unicodefffe") {
                    Charset::Utf16Be
                } else if [
                    &b"utf-16le"[..],
                    b"utf-16",
                    b"unicode",
                    b"ucs-2",
                    b"iso-10646-ucs-2",
                    b"csunicode",
                    b"unicodefeff",
                ]
                .iter()
                .any(|l| v.eq_ignore_ascii_case(l))
                {
                    Charset::Utf16Le
                } else {
                    Charset::Ascii
                };
            break;
        }
        Some(Html { charset, xml })
    }
}

/// The scripts to inject into one response, with that response's nonce.
#[derive(Clone, Debug)]
pub(crate) struct Scripts {
    nonce: String,
    markup: String,
}

impl Scripts {
    /// `<script src="SRC" nonce="N"></script>` for each of `srcs`, in order,
    /// with a fresh random nonce (16 bytes from the operating system, base64).
    pub(crate) fn new(srcs: &[&str]) -> Scripts {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).expect("the operating system's random source");
        Scripts::with_nonce(srcs, &STANDARD.encode(b))
    }

    /// The same with a given nonce (tests; the nonce must be base64).
    pub(crate) fn with_nonce(srcs: &[&str], nonce: &str) -> Scripts {
        let mut markup = String::new();
        for src in srcs {
            markup.push_str("<script src=\"");
            markup.push_str(&attribute(src));
            markup.push_str("\" nonce=\"");
            markup.push_str(&attribute(nonce));
            markup.push_str("\"></script>");
        }
        Scripts {
            nonce: nonce.to_owned(),
            markup,
        }
    }

    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The markup inserted, in ASCII (widened for UTF-16 pages).
    pub(crate) fn markup(&self) -> &str {
        &self.markup
    }
}

/// An attribute value: ASCII only (others percent-encoded, as in a URL),
/// with `&`, `"`, `<` and `>` escaped.
fn attribute(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for &b in v.as_bytes() {
        match b {
            b'&' => s.push_str("&amp;"),
            b'"' => s.push_str("&quot;"),
            b'<' => s.push_str("&lt;"),
            b'>' => s.push_str("&gt;"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

/// Injects `scripts` into `response` if it is an HTML page we can rewrite,
/// and fixes its headers for the new body; anything else is returned as it
/// came (its body wrapped, passing every frame through).
///
/// Rewritten: `Content-Length` removed (the body is re-chunked), a strong
/// `ETag` made weak, `Accept-Ranges` and digests (`Content-MD5`, `Digest`,
/// `Content-Digest`, `Repr-Digest`) removed, and every
/// `Content-Security-Policy(-Report-Only)` adjusted by [`adjust_csp`].
/// `Content-Encoding` is kept (the body is encoded again the same way), so
/// `Vary` needs nothing more. Not rewritten: 1xx, 204, 206 and 304 answers.
/// The caller must not call this for a `HEAD` request (its empty body would
/// lose a `Content-Length` it should keep).
pub(crate) fn inject<B>(response: Response<B>, scripts: &Scripts) -> Response<InjectBody<B>> {
    let (mut parts, body) = response.into_parts();
    let injector = plan(parts.status, &parts.headers, scripts);
    let body = match injector {
        Some(injector) => {
            fix_headers(&mut parts.headers, scripts.nonce());
            InjectBody::new(body, injector)
        }
        None => InjectBody::pass(body),
    };
    Response::from_parts(parts, body)
}

/// The injector for a response, or `None`: not HTML, an encoding we do not
/// handle, or a status without a page.
pub(crate) fn plan(status: StatusCode, headers: &HeaderMap, scripts: &Scripts) -> Option<Injector> {
    let (encoding, html) = page(status, headers)?;
    Some(Injector::new(encoding, html, scripts.markup()))
}

/// Whether a response with this status and these headers is a page the
/// scripts go into (HTML, a status that carries one, a coding we decode),
/// and how it is encoded. Cheap: the proxy asks it before it makes the
/// scripts' nonce, which only pages need.
pub(crate) fn is_page(status: StatusCode, headers: &HeaderMap) -> bool {
    page(status, headers).is_some()
}

fn page(status: StatusCode, headers: &HeaderMap) -> Option<(Encoding, Html)> {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return None;
    }
    let html = Html::from_content_type(headers.get(header::CONTENT_TYPE)?.as_bytes())?;
    let encoding = Encoding::from_headers(headers)?;
    Some((encoding, html))
}

/// The header changes that go with an injected body (see [`inject`]).
pub(crate) fn fix_headers(headers: &mut HeaderMap, nonce: &str) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    for digest in ["content-md5", "digest", "content-digest", "repr-digest"] {
        headers.remove(digest);
    }
    if let Some(etag) = headers.get(header::ETAG) {
        if etag.as_bytes().starts_with(b"\"") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            match HeaderValue::from_bytes(&weak) {
                Ok(v) => {
                    headers.insert(header::ETAG, v);
                }
                Err(_) => {
                    headers.remove(header::ETAG);
                }
            }
        }
    }
    for name in [
        header::CONTENT_SECURITY_POLICY,
        header::CONTENT_SECURITY_POLICY_REPORT_ONLY,
    ] {
        let adjusted: Vec<HeaderValue> = headers
            .get_all(&name)
            .iter()
            .map(|v| match v.to_str() {
                Ok(s) => HeaderValue::from_str(&adjust_csp(s, nonce)).unwrap_or_else(|_| v.clone()),
                // Not visible ASCII: not a policy a browser would parse as we
                // would; left as it is.
                Err(_) => v.clone(),
            })
            .collect();
        if adjusted.is_empty() {
            continue;
        }
        headers.remove(&name);
        for v in adjusted {
            headers.append(&name, v);
        }
    }
}

/// One `Content-Security-Policy` header value (one or more policies, comma
/// separated) adjusted so that a `<script src>` with `nonce` is allowed by
/// every policy, changing as little as it can:
///
/// * the source list that governs script elements is `script-src-elem`, else
///   `script-src`, else `default-src`; with none, scripts are not restricted
///   and the policy is left alone;
/// * a list that already allows a same-origin script is left alone: it has
///   `'self'` or `*`, and no `'strict-dynamic'` (which makes those ignored);
/// * otherwise `'nonce-N'` is added (a `'none'` in the list goes: it means
///   nothing beside another source). A nonce also allows external scripts,
///   and is what `'strict-dynamic'` trusts;
/// * but a list with `'unsafe-inline'` and no nonce or hash gets `'self'`
///   instead: adding a nonce would switch `'unsafe-inline'` off and break the
///   page's own inline scripts;
/// * a `default-src` is not changed: a `script-src` copying it, adjusted, is
///   added to that policy.
pub(crate) fn adjust_csp(value: &str, nonce: &str) -> String {
    value
        .split(',')
        .map(|policy| adjust_policy(policy, nonce))
        .collect::<Vec<_>>()
        .join(",")
}

fn adjust_policy(policy: &str, nonce: &str) -> String {
    let directives: Vec<&str> = policy.split(';').collect();
    let name_of = |d: &str| {
        d.split_ascii_whitespace()
            .next()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default()
    };
    // The first directive of a name counts; repeats are ignored by browsers.
    let find = |n: &str| directives.iter().position(|d| name_of(d) == n);
    let (index, copy) = match (
        find("script-src-elem"),
        find("script-src"),
        find("default-src"),
    ) {
        (Some(i), _, _) | (None, Some(i), _) => (i, false),
        (None, None, Some(i)) => (i, true),
        (None, None, None) => return policy.to_owned(),
    };
    let sources: Vec<&str> = directives[index].split_ascii_whitespace().skip(1).collect();
    let Some(new) = allow(&sources, nonce) else {
        return policy.to_owned();
    };
    let list = format!(
        "{} {}",
        if copy {
            "script-src"
        } else {
            directives[index]
                .split_ascii_whitespace()
                .next()
                .unwrap_or("script-src")
        },
        new.join(" ")
    );
    let mut out: Vec<String> = directives.iter().map(|d| (*d).to_owned()).collect();
    if copy {
        // Before any trailing empty directive (a policy ending in ';').
        let at = out
            .iter()
            .rposition(|d| !d.trim().is_empty())
            .map_or(0, |i| i + 1);
        out.insert(at, format!(" {list}"));
    } else {
        let lead =
            &directives[index][..directives[index].len() - directives[index].trim_start().len()];
        out[index] = format!("{lead}{list}");
    }
    out.join(";")
}

/// The source list changed to allow our scripts, or `None` if it does already.
fn allow(sources: &[&str], nonce: &str) -> Option<Vec<String>> {
    let has = |s: &str| sources.iter().any(|x| x.eq_ignore_ascii_case(s));
    let strict = has("'strict-dynamic'");
    if !strict && (has("'self'") || has("*")) {
        return None;
    }
    let keyed = sources.iter().any(|s| {
        let l = s.to_ascii_lowercase();
        l.starts_with("'nonce-")
            || l.starts_with("'sha256-")
            || l.starts_with("'sha384-")
            || l.starts_with("'sha512-")
    });
    let mut new: Vec<String> = sources
        .iter()
        .filter(|s| !s.eq_ignore_ascii_case("'none'"))
        .map(|s| (*s).to_owned())
        .collect();
    if has("'unsafe-inline'") && !keyed && !strict {
        new.push("'self'".to_owned());
    } else {
        new.push(format!("'nonce-{nonce}'"));
    }
    Some(new)
}

/// A response body with the scripts injected (or passed through untouched).
pub(crate) struct InjectBody<B> {
    inner: B,
    mode: Mode,
    trailers: Option<HeaderMap>,
}

enum Mode {
    Pass,
    Inject(Box<Injector>),
    /// The inner body ended (or failed): trailers, if any, then the end.
    Done,
}

impl<B> InjectBody<B> {
    pub(crate) fn new(inner: B, injector: Injector) -> InjectBody<B> {
        InjectBody {
            inner,
            mode: Mode::Inject(Box::new(injector)),
            trailers: None,
        }
    }

    /// Every frame of `inner` as it is.
    pub(crate) fn pass(inner: B) -> InjectBody<B> {
        InjectBody {
            inner,
            mode: Mode::Pass,
            trailers: None,
        }
    }

    /// Whether the scripts are being injected (false: a pass-through).
    pub(crate) fn injecting(&self) -> bool {
        !matches!(self.mode, Mode::Pass)
    }
}

impl<B> fmt::Debug for InjectBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectBody")
            .field("injecting", &self.injecting())
            .finish_non_exhaustive()
    }
}

impl<B> Body for InjectBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let injector = match &mut this.mode {
                Mode::Pass => return Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into),
                Mode::Done => {
                    return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
                }
                Mode::Inject(injector) => injector,
            };
            let out = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => injector.push(data),
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        let out = injector.finish();
                        this.mode = Mode::Done;
                        out
                    }
                },
                Some(Err(e)) => {
                    this.mode = Mode::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
                None => {
                    let out = injector.finish();
                    this.mode = Mode::Done;
                    out
                }
            };
            match out {
                Ok(out) if out.is_empty() => continue,
                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                Err(e) => {
                    this.mode = Mode::Done;
                    this.trailers = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.mode {
            Mode::Pass => self.inner.is_end_stream(),
            Mode::Inject(_) => false,
            Mode::Done => self.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.mode {
            Mode::Pass => self.inner.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

/// The synchronous core: decodes, scans and injects, encodes again, one
/// chunk at a time. The decoder writes straight into the scanner and the
/// encoder as it inflates, so what is held is the encoder's output for one
/// chunk, never the page decoded. Each chunk's output is flushed through the
/// encoder (a sync flush for gzip and deflate, a flush block for brotli), so
/// what the page's bytes allow is sent at once.
pub(crate) struct Injector {
    decoder: Decoder,
    /// Any byte of the body seen.
    input: bool,
}

impl Injector {
    pub(crate) fn new(encoding: Encoding, html: Html, markup: &str) -> Injector {
        Injector {
            decoder: Decoder::new(encoding, Scanner::new(html, markup.as_bytes()), true),
            input: false,
        }
    }

    /// The output for one more chunk of the (encoded) body; may be empty.
    pub(crate) fn push(&mut self, chunk: Bytes) -> io::Result<Bytes> {
        self.input |= !chunk.is_empty();
        if let Decoder::Identity(sink) = &self.decoder {
            if sink.scanner.passing() {
                return Ok(chunk);
            }
        }
        self.decoder.write(&chunk)?;
        match self.decoder.sink() {
            Some(sink) => {
                let dirty = std::mem::take(&mut sink.dirty);
                sink.encoder.flushed(dirty).map(Bytes::from)
            }
            None => Ok(Bytes::new()),
        }
    }

    /// The last of the output, once the body has ended.
    pub(crate) fn finish(&mut self) -> io::Result<Bytes> {
        if !self.input {
            // An empty body stays empty, whatever its coding says.
            return Ok(Bytes::new());
        }
        self.decoder.finish().map(Bytes::from)
    }
}

/// Where the decoder writes: the scanner, then the encoder.
struct Sink {
    scanner: Scanner,
    encoder: Encoder,
    /// Written to the encoder since its last flush.
    dirty: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.dirty |= !buf.is_empty();
        if self.scanner.passing() {
            self.encoder.write_all(buf)?;
        } else {
            let mut page = Vec::with_capacity(buf.len() + self.scanner.markup.len());
            self.scanner.feed(buf, &mut page);
            self.encoder.write_all(&page)?;
        }
        Ok(buf.len())
    }

    /// The encoder is flushed once per chunk, by `Injector::push`.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The decoder of one content coding, writing into a [`Sink`].
// The flate2 variants are large; the whole `Injector` is boxed in an
// `InjectBody`, once per page.
#[allow(clippy::large_enum_variant)]
enum Decoder {
    Identity(Sink),
    Gzip(flate2::write::MultiGzDecoder<Sink>),
    /// Deflate before its first two bytes tell zlib from raw.
    DeflateUnknown(Vec<u8>, Option<Scanner>, bool),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    Raw(flate2::write::DeflateDecoder<Sink>),
    Brotli(Box<brotli::DecompressorWriter<Sink>>),
    /// Finished: `finish` ran.
    Ended,
}

/// The encoder of one content coding, into a `Vec`.
enum Encoder {
    Identity(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zlib(flate2::write::ZlibEncoder<Vec<u8>>),
    Raw(flate2::write::DeflateEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

/// Brotli quality for the re-encoded page: fast enough to stream.
const BROTLI_QUALITY: u32 = 5;
const BROTLI_WINDOW: u32 = 22;

fn corrupt(what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt {what} body from upstream: {e}"),
    )
}

impl Encoder {
    fn new(encoding: Encoding, zlib: bool) -> Encoder {
        let level = flate2::Compression::default();
        match encoding {
            Encoding::Identity => Encoder::Identity(Vec::new()),
            Encoding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            Encoding::Deflate if zlib => {
                Encoder::Zlib(flate2::write::ZlibEncoder::new(Vec::new(), level))
            }
            Encoding::Deflate => {
                Encoder::Raw(flate2::write::DeflateEncoder::new(Vec::new(), level))
            }
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
        }
    }

    fn write_all(&mut self, page: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Identity(v) => {
                v.extend_from_slice(page);
                Ok(())
            }
            Encoder::Gzip(e) => e.write_all(page),
            Encoder::Zlib(e) => e.write_all(page),
            Encoder::Raw(e) => e.write_all(page),
            Encoder::Brotli(e) => e.write_all(page),
        }
    }

    /// What is encoded so far, flushed if anything was written since the
    /// last time (`dirty`: a flush of nothing would still cost bytes).
    fn flushed(&mut self, dirty: bool) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Identity(v) => Ok(std::mem::take(v)),
            Encoder::Gzip(e) => flush_take(dirty, e),
            Encoder::Zlib(e) => flush_take(dirty, e),
            Encoder::Raw(e) => flush_take(dirty, e),
            Encoder::Brotli(e) => {
                if dirty {
                    e.flush()?;
                }
                Ok(std::mem::take(e.get_mut()))
            }
        }
    }

    /// The rest, with the coding's trailer.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Identity(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zlib(e) => e.finish(),
            Encoder::Raw(e) => e.finish(),
            Encoder::Brotli(e) => Ok(e.into_inner()),
        }
    }
}

/// Flushes a flate2 encoder that has had input, and takes its output.
fn flush_take<E: FlateEncoder>(dirty: bool, e: &mut E) -> io::Result<Vec<u8>> {
    if dirty {
        e.flush()?;
    }
    Ok(std::mem::take(e.out()))
}

trait FlateEncoder: Write {
    fn out(&mut self) -> &mut Vec<u8>;
}

impl FlateEncoder for flate2::write::GzEncoder<Vec<u8>> {
    fn out(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}
impl FlateEncoder for flate2::write::ZlibEncoder<Vec<u8>> {
    fn out(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}
impl FlateEncoder for flate2::write::DeflateEncoder<Vec<u8>> {
    fn out(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl Decoder {
    /// A decoder for `encoding` writing into `scanner`, then into an encoder
    /// of the same coding (`reencode`) or none.
    fn new(encoding: Encoding, scanner: Scanner, reencode: bool) -> Decoder {
        let sink = |zlib| Sink {
            scanner,
            encoder: Encoder::new(
                if reencode {
                    encoding
                } else {
                    Encoding::Identity
                },
                zlib,
            ),
            dirty: false,
        };
        match encoding {
            Encoding::Identity => Decoder::Identity(sink(false)),
            Encoding::Gzip => Decoder::Gzip(flate2::write::MultiGzDecoder::new(sink(false))),
            Encoding::Deflate => {
                Decoder::DeflateUnknown(Vec::new(), Some(sink(false).scanner), reencode)
            }
            Encoding::Brotli => {
                Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(sink(false), 4096)))
            }
        }
    }

    fn sink(&mut self) -> Option<&mut Sink> {
        match self {
            Decoder::Identity(s) => Some(s),
            Decoder::Gzip(d) => Some(d.get_mut()),
            Decoder::Zlib(d) => Some(d.get_mut()),
            Decoder::Raw(d) => Some(d.get_mut()),
            Decoder::Brotli(d) => Some(d.get_mut()),
            Decoder::DeflateUnknown(..) | Decoder::Ended => None,
        }
    }

    fn write(&mut self, input: &[u8]) -> io::Result<()> {
        if let Decoder::DeflateUnknown(held, scanner, reencode) = self {
            held.extend_from_slice(input);
            if held.len() < 2 {
                return Ok(());
            }
            // RFC 1950: CM 8, a window of at most 32 KiB, a check multiple of 31.
            let zlib = held[0] & 0x0f == 8
                && held[0] >> 4 <= 7
                && (u16::from(held[0]) << 8 | u16::from(held[1])) % 31 == 0;
            let held = std::mem::take(held);
            let sink = Sink {
                scanner: scanner.take().expect("the scanner until decided"),
                encoder: Encoder::new(
                    if *reencode {
                        Encoding::Deflate
                    } else {
                        Encoding::Identity
                    },
                    zlib,
                ),
                dirty: false,
            };
            *self = if zlib {
                Decoder::Zlib(flate2::write::ZlibDecoder::new(sink))
            } else {
                Decoder::Raw(flate2::write::DeflateDecoder::new(sink))
            };
            return self.write(&held);
        }
        match self {
            Decoder::Identity(s) => s.write_all(input),
            Decoder::Gzip(d) => d.write_all(input).map_err(|e| corrupt("gzip", e)),
            Decoder::Zlib(d) => d.write_all(input).map_err(|e| corrupt("deflate", e)),
            Decoder::Raw(d) => d.write_all(input).map_err(|e| corrupt("deflate", e)),
            Decoder::Brotli(d) => d.write_all(input).map_err(|e| corrupt("brotli", e)),
            Decoder::DeflateUnknown(..) | Decoder::Ended => Ok(()),
        }
    }

    /// The end of the body: the decoder's rest, the scanner's end, the
    /// encoder's trailer. An error if the coded stream was cut short.
    fn finish(&mut self) -> io::Result<Vec<u8>> {
        let mut sink = match std::mem::replace(self, Decoder::Ended) {
            Decoder::Identity(s) => s,
            Decoder::Gzip(d) => d.finish().map_err(|e| corrupt("gzip", e))?,
            Decoder::Zlib(d) => d.finish().map_err(|e| corrupt("deflate", e))?,
            Decoder::Raw(d) => d.finish().map_err(|e| corrupt("deflate", e))?,
            Decoder::Brotli(mut d) => {
                d.close().map_err(|e| corrupt("brotli", e))?;
                d.into_inner()
                    .map_err(|_| corrupt("brotli", io::ErrorKind::UnexpectedEof.into()))?
            }
            // Fewer than two bytes are never a whole deflate stream.
            Decoder::DeflateUnknown(..) => {
                return Err(corrupt("deflate", io::ErrorKind::UnexpectedEof.into()))
            }
            Decoder::Ended => return Ok(Vec::new()),
        };
        let mut page = Vec::new();
        sink.scanner.finish(&mut page);
        sink.encoder.write_all(&page)?;
        sink.encoder.finish()
    }
}

/// Finds the insertion point in the decoded page, a byte at a time (a code
/// unit at a time in UTF-16, narrowed to ASCII or 0x80 for anything else).
struct Scanner {
    /// The markup, in the page's charset once known.
    markup: Vec<u8>,
    charset: Charset,
    xml: bool,
    phase: Phase,
    tok: Tok,
    /// Bytes held back: the start of a tag that might be `<head` or `<html`.
    held: Vec<u8>,
    /// A UTF-16 byte waiting for its pair.
    odd: Option<u8>,
    /// Any byte seen (an empty body gets no scripts).
    seen: bool,
    /// An `<html` start tag seen: in XHTML, the scripts go nowhere outside
    /// it (a second root element would make the page ill-formed).
    root: bool,
}

enum Phase {
    /// Up to three bytes kept to look for a byte order mark.
    Sniff(Vec<u8>),
    Scan,
    /// Injected (or given up): the rest passes.
    Done,
}

#[derive(Clone, Copy, Debug)]
enum Tok {
    /// Between things in the prologue.
    Data,
    /// After `<` (held).
    Open,
    /// A start tag's name so far, lowercased (held).
    Name([u8; 4], u8),
    /// Inside the `<html` or `<head` tag (`head` true), up to its `>`.
    Attrs(bool, Attr),
    /// After `<!` and this many dashes (0 or 1).
    Markup(u8),
    Comment(Comment),
    /// A doctype or bogus comment, up to `>` (and `]` nesting in XHTML).
    Bogus(u32),
}

#[derive(Clone, Copy, Debug)]
enum Attr {
    Before,
    Name,
    AfterName,
    BeforeValue,
    Double,
    Single,
    Unquoted,
    AfterQuoted,
}

#[derive(Clone, Copy, Debug)]
enum Comment {
    Start,
    StartDash,
    In,
    EndDash,
    End,
    Bang,
}

/// What to do with the unit just scanned.
enum Step {
    /// Pass it (and anything held) on.
    Emit,
    /// Hold it back.
    Hold,
    /// The scripts go before what is held (or before it).
    Before,
    /// The scripts go after it.
    After,
}

impl Scanner {
    fn new(html: Html, markup: &[u8]) -> Scanner {
        Scanner {
            markup: markup.to_vec(),
            charset: html.charset,
            xml: html.xml,
            phase: Phase::Sniff(Vec::new()),
            tok: Tok::Data,
            held: Vec::new(),
            odd: None,
            seen: false,
            root: false,
        }
    }

    /// Whether the injection is behind us (bytes pass as they are).
    fn passing(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.odd.is_none()
    }

    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        self.seen = true;
        if let Phase::Sniff(buf) = &mut self.phase {
            let want = 3 - buf.len();
            let take = want.min(input.len());
            buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            let complete = buf.len() == 3 || !matches!(buf[0], 0xef | 0xfe | 0xff);
            if !complete {
                return;
            }
            let buf = std::mem::take(buf);
            self.start(&buf, out);
        }
        self.scan(input, out);
    }

    /// Decides the charset from the first bytes (a byte order mark wins over
    /// the header), and scans them.
    fn start(&mut self, first: &[u8], out: &mut Vec<u8>) {
        let bom = if first.starts_with(&[0xef, 0xbb, 0xbf]) {
            self.charset = Charset::Ascii;
            3
        } else if first.starts_with(&[0xff, 0xfe]) {
            self.charset = Charset::Utf16Le;
            2
        } else if first.starts_with(&[0xfe, 0xff]) {
            self.charset = Charset::Utf16Be;
            2
        } else {
            0
        };
        self.markup = match self.charset {
            Charset::Ascii => std::mem::take(&mut self.markup),
            Charset::Utf16Le => self.markup.iter().flat_map(|&b| [b, 0]).collect(),
            Charset::Utf16Be => self.markup.iter().flat_map(|&b| [0, b]).collect(),
        };
        out.extend_from_slice(&first[..bom]);
        self.phase = Phase::Scan;
        self.scan(&first[bom..], out);
    }

    fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if !matches!(self.phase, Phase::Scan) {
            out.extend_from_slice(input);
            return;
        }
        match self.charset {
            Charset::Ascii => {
                for (i, &b) in input.iter().enumerate() {
                    let step = self.step(b);
                    self.apply(step, &[b], out);
                    if matches!(self.phase, Phase::Done) {
                        out.extend_from_slice(&input[i + 1..]);
                        return;
                    }
                }
            }
            Charset::Utf16Le | Charset::Utf16Be => {
                let mut rest = input;
                if let Some(first) = self.odd.take() {
                    let Some((&second, tail)) = rest.split_first() else {
                        self.odd = Some(first);
                        return;
                    };
                    rest = tail;
                    self.unit([first, second], out);
                    if matches!(self.phase, Phase::Done) {
                        // The rest passes as it is, a last odd byte too.
                        out.extend_from_slice(rest);
                        return;
                    }
                }
                let mut pairs = rest.chunks_exact(2);
                for (i, pair) in pairs.by_ref().enumerate() {
                    self.unit([pair[0], pair[1]], out);
                    if matches!(self.phase, Phase::Done) {
                        out.extend_from_slice(&rest[2 * i + 2..]);
                        return;
                    }
                }
                self.odd = pairs.remainder().first().copied();
            }
        }
    }

    fn unit(&mut self, pair: [u8; 2], out: &mut Vec<u8>) {
        if matches!(self.phase, Phase::Done) {
            out.extend_from_slice(&pair);
            return;
        }
        let unit = match self.charset {
            Charset::Utf16Be => u16::from_be_bytes(pair),
            _ => u16::from_le_bytes(pair),
        };
        let narrow = if unit < 0x80 { unit as u8 } else { 0x80 };
        let step = self.step(narrow);
        self.apply(step, &pair, out);
    }

    fn apply(&mut self, step: Step, raw: &[u8], out: &mut Vec<u8>) {
        match step {
            Step::Emit => {
                out.append(&mut self.held);
                out.extend_from_slice(raw);
            }
            Step::Hold => self.held.extend_from_slice(raw),
            Step::Before => {
                if !self.xml || self.root {
                    out.extend_from_slice(&self.markup);
                }
                out.append(&mut self.held);
                out.extend_from_slice(raw);
                self.phase = Phase::Done;
            }
            Step::After => {
                out.append(&mut self.held);
                out.extend_from_slice(raw);
                out.extend_from_slice(&self.markup);
                self.phase = Phase::Done;
            }
        }
    }

    /// One character of the prologue (see the module's rule).
    fn step(&mut self, c: u8) -> Step {
        let ws = matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c);
        let (tok, step) = match self.tok {
            Tok::Data if ws => (Tok::Data, Step::Emit),
            Tok::Data if c == b'<' => (Tok::Open, Step::Hold),
            Tok::Data => (Tok::Data, Step::Before),
            Tok::Open => match c {
                b'!' => (Tok::Markup(0), Step::Emit),
                b'?' => (Tok::Bogus(0), Step::Emit),
                c if c.is_ascii_alphabetic() => {
                    (Tok::Name([c.to_ascii_lowercase(), 0, 0, 0], 1), Step::Hold)
                }
                // An end tag, or a `<` that is text.
                _ => (Tok::Data, Step::Before),
            },
            Tok::Name(mut name, len) => {
                if ws || c == b'/' || c == b'>' {
                    let head = &name[..usize::from(len)] == b"head";
                    if !head && &name[..usize::from(len)] != b"html" {
                        (Tok::Data, Step::Before)
                    } else {
                        self.root |= !head;
                        if c == b'>' {
                            (Tok::Data, if head { Step::After } else { Step::Emit })
                        } else {
                            (Tok::Attrs(head, Attr::Before), Step::Emit)
                        }
                    }
                } else if len == 4 {
                    (Tok::Data, Step::Before)
                } else {
                    name[usize::from(len)] = c.to_ascii_lowercase();
                    (Tok::Name(name, len + 1), Step::Hold)
                }
            }
            Tok::Attrs(head, at) => {
                use Attr::*;
                let next = match (at, c) {
                    (Double, b'"') | (Single, b'\'') => Some(AfterQuoted),
                    (Double | Single, _) => Some(at),
                    (_, b'>') => None,
                    (Before | AfterQuoted | Unquoted, _) if ws => Some(Before),
                    (Before | AfterQuoted | Name | AfterName, b'/') => Some(Before),
                    (Before | AfterQuoted, _) => Some(Name),
                    (Name | AfterName, _) if ws => Some(AfterName),
                    (Name | AfterName, b'=') => Some(BeforeValue),
                    (Name | AfterName, _) => Some(Name),
                    (BeforeValue, _) if ws => Some(BeforeValue),
                    (BeforeValue, b'"') => Some(Double),
                    (BeforeValue, b'\'') => Some(Single),
                    (BeforeValue | Unquoted, _) => Some(Unquoted),
                };
                match next {
                    Some(at) => (Tok::Attrs(head, at), Step::Emit),
                    None => (Tok::Data, if head { Step::After } else { Step::Emit }),
                }
            }
            Tok::Markup(dashes) => match (c, dashes) {
                (b'-', 0) => (Tok::Markup(1), Step::Emit),
                (b'-', _) => (Tok::Comment(Comment::Start), Step::Emit),
                (b'>', _) => (Tok::Data, Step::Emit),
                (b'[', _) if self.xml => (Tok::Bogus(1), Step::Emit),
                _ => (Tok::Bogus(0), Step::Emit),
            },
            Tok::Comment(at) => {
                use Comment::*;
                let next = match (at, c) {
                    (Start | StartDash | End | Bang, b'>') => None,
                    (Start, b'-') => Some(StartDash),
                    (StartDash | EndDash | End, b'-') => Some(End),
                    (In | Bang, b'-') => Some(EndDash),
                    (End, b'!') => Some(Bang),
                    _ => Some(In),
                };
                (next.map_or(Tok::Data, Tok::Comment), Step::Emit)
            }
            Tok::Bogus(depth) => match c {
                b'>' if depth == 0 => (Tok::Data, Step::Emit),
                b'[' if self.xml => (Tok::Bogus(depth + 1), Step::Emit),
                b']' if self.xml => (Tok::Bogus(depth.saturating_sub(1)), Step::Emit),
                _ => (Tok::Bogus(depth), Step::Emit),
            },
        };
        self.tok = tok;
        step
    }

    /// The end of the page: the scripts go at the end if the page never got
    /// past its prologue, unless it is empty or ends inside a tag or comment.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Phase::Sniff(buf) = &mut self.phase {
            let buf = std::mem::take(buf);
            self.start(&buf, out);
        }
        if matches!(self.phase, Phase::Scan) {
            let placed = !self.xml || self.root;
            if self.seen && placed && matches!(self.tok, Tok::Data | Tok::Open | Tok::Name(..)) {
                out.extend_from_slice(&self.markup);
            }
            out.append(&mut self.held);
            self.phase = Phase::Done;
        }
        out.extend(self.odd.take());
    }
}

/// `plain` encoded whole in `encoding` (deflate zlib-wrapped, as RFC 9110
/// says), for tests and the fuzz check.
pub(crate) fn encode_all(encoding: Encoding, plain: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(encoding, true);
    e.write_all(plain).expect("encoding into memory");
    e.finish().expect("encoding into memory")
}

/// `body` decoded whole from `encoding` (an empty body is empty).
pub(crate) fn decode_all(encoding: Encoding, body: &[u8]) -> io::Result<Vec<u8>> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let html = Html {
        charset: Charset::Ascii,
        xml: false,
    };
    let mut d = Decoder::new(encoding, Scanner::new(html, b""), false);
    d.write(body)?;
    d.finish()
}

#[cfg(test)]
mod tests;
