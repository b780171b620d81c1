use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

use super::*;

const NONCE: &str = "bm9uY2Vub25jZQ==";

fn scripts() -> Scripts {
    Scripts::with_nonce(&["/_tandem/tandem.js", "/_tandem/cobrowse.js"], NONCE)
}

fn html() -> Html {
    Html {
        charset: Charset::Ascii,
        xml: false,
    }
}

/// The decoded output of an injector given `chunks` (encoded bytes).
fn run_chunks(encoding: Encoding, html: Html, chunks: &[&[u8]]) -> Vec<u8> {
    let mut injector = Injector::new(encoding, html, scripts().markup());
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&injector.push(Bytes::copy_from_slice(chunk)).unwrap());
    }
    out.extend_from_slice(&injector.finish().unwrap());
    decode_all(encoding, &out).unwrap()
}

fn run(page: &[u8]) -> Vec<u8> {
    run_chunks(Encoding::Identity, html(), &[page])
}

/// `page` with the markup (in `charset`) inserted at `at`.
fn with_markup_at(page: &[u8], at: usize, charset: Charset) -> Vec<u8> {
    let m = scripts().markup().as_bytes().to_vec();
    let m: Vec<u8> = match charset {
        Charset::Ascii => m,
        Charset::Utf16Le => m.iter().flat_map(|&b| [b, 0]).collect(),
        Charset::Utf16Be => m.iter().flat_map(|&b| [0, b]).collect(),
    };
    [&page[..at], &m, &page[at..]].concat()
}

/// Asserts the markup goes right after `marker`'s first occurrence in `page`
/// (right before it with `before`).
fn assert_at(page: &str, marker: &str, before: bool) {
    let i = page
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {page}"));
    let at = if before { i } else { i + marker.len() };
    let got = run(page.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&with_markup_at(page.as_bytes(), at, Charset::Ascii)),
        "page {page:?}"
    );
}

const PAGE: &str = "<!DOCTYPE html>\n<!-- a <head> in a comment -->\n<html lang=\"en\">\n  <head data-x=\"a>b\" class='c'>\n<title>t</title></head><body><p>hello</p></body></html>";

#[test]
fn after_the_head_tag_with_its_attributes() {
    assert_at(PAGE, "class='c'>", false);
    assert_at("<head>", "<head>", false);
    assert_at("<head/>x", "<head/>", false);
    assert_at("<html><head\n>", "<head\n>", false);
    assert_at("<html><head a=b>", "a=b>", false);
    assert_at("<html><head a=\"x\"b>", "b>", false);
    assert_at("<html><head a= >", "a= >", false);
}

#[test]
fn upper_and_mixed_case_tags() {
    assert_at("<!doctype HTML><HTML><HEAD><TITLE>", "<HEAD>", false);
    assert_at("<Html LANG=fr>\r\n<hEaD >", "<hEaD >", false);
}

#[test]
fn header_is_not_head() {
    assert_at("<html><header>x</header>", "<header>", true);
    assert_at("<heading>", "<heading>", true);
    assert_at("<html5><head>", "<html5>", true);
    assert_at("<hea>", "<hea>", true);
}

#[test]
fn without_a_head_tag_before_the_first_content() {
    assert_at("<!doctype html><p>hi", "<p>", true);
    assert_at("<!doctype html>\n<html>\n<body>", "<body>", true);
    assert_at("  hello", "hello", true);
    assert_at("<html>text", "text", true);
    assert_at("<html></html>", "</html>", true);
    assert_at("<html>< p", "< p", true);
    assert_at("<meta charset=utf-8><head>", "<meta", true);
    // A `<head>` after content is ignored by browsers, and by us.
    assert_at("<title>x</title><head>", "<title>", true);
}

#[test]
fn comments_and_scripts_before_the_real_head() {
    assert_at("<!--<head>--><head>", "--><head>", false);
    assert_at("<!-- -- -> --!> <head>", "--!> <head>", false);
    assert_at("<!--><head>", "<!--><head>", false);
    assert_at("<!---><head>", "<!---><head>", false);
    assert_at("<!-x<head>", "<!-x<head>", false);
    assert_at("<?xml version=\"1.0\"?><html><head>", "<head>", false);
    // A script before the head opens the implied head: ours go before it.
    assert_at("<script>var s='<head>'</script><head>", "<script>", true);
    assert_at("<html><script>", "<script>", true);
}

#[test]
fn xhtml_internal_subset_is_skipped_whole() {
    let page = "<?xml version=\"1.0\"?><!DOCTYPE html [<!ENTITY a \"b\">]><html xmlns=\"http://www.w3.org/1999/xhtml\"><head>";
    let at = page.len();
    let xhtml = Html {
        charset: Charset::Ascii,
        xml: true,
    };
    let got = run_chunks(Encoding::Identity, xhtml, &[page.as_bytes()]);
    assert_eq!(got, with_markup_at(page.as_bytes(), at, Charset::Ascii));
    // Never before the root element: another root would be ill-formed.
    for page in [
        "<?xml version=\"1.0\"?><svg><head>",
        "text<html>",
        "<h:html><h:head>",
        "<!-- c -->",
        "<html",
    ] {
        let got = run_chunks(Encoding::Identity, xhtml, &[page.as_bytes()]);
        assert_eq!(got, page.as_bytes(), "{page}");
    }
    // Inside it, as in HTML.
    let page = "<html xmlns=\"http://www.w3.org/1999/xhtml\"><body/></html>";
    let got = run_chunks(Encoding::Identity, xhtml, &[page.as_bytes()]);
    assert_eq!(
        got,
        with_markup_at(page.as_bytes(), page.find("<body").unwrap(), Charset::Ascii)
    );
    // In HTML the doctype ends at its first `>`, as browsers have it.
    assert_at("<!DOCTYPE html [<!ENTITY a \"b\">]><head>", "]>", true);
}

#[test]
fn the_end_of_a_page_without_content() {
    for encoding in [
        Encoding::Identity,
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Brotli,
    ] {
        let mut injector = Injector::new(encoding, html(), scripts().markup());
        assert_eq!(injector.push(Bytes::new()).unwrap(), "");
        assert_eq!(injector.finish().unwrap(), "", "an empty {encoding:?} body");
    }
    assert_at("<!doctype html><!-- only -->", "<!-- only -->", false);
    assert_at("<html>", "<html>", false);
    // A tag name cut short is held back: the scripts go before it.
    assert_at("<hea", "<hea", true);
    assert_at("<html", "<html", true);
    // Inside an unclosed tag (past its name) or comment: nowhere.
    for page in ["<head a=\"", "<html ", "<head ", "<!-- open", "<!doctype"] {
        assert_eq!(run(page.as_bytes()), page.as_bytes(), "{page}");
    }
}

/// Every split of the page into two chunks and into one-byte chunks gives
/// the same output.
fn check_splits(encoding: Encoding, charset: Charset, page: &[u8], at: usize) {
    let html = Html {
        charset,
        xml: false,
    };
    let body = encode_all(encoding, page);
    let want = with_markup_at(page, at, charset);
    for i in 0..=body.len() {
        let got = run_chunks(encoding, html, &[&body[..i], &body[i..]]);
        assert_eq!(got, want, "{encoding:?} {charset:?} split at {i}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(
        run_chunks(encoding, html, &bytes),
        want,
        "{encoding:?} {charset:?} one byte at a time"
    );
}

fn utf16(s: &str, charset: Charset, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let units = bom.then_some(0xfeff).into_iter().chain(s.encode_utf16());
    for u in units {
        match charset {
            Charset::Utf16Be => out.extend(u.to_be_bytes()),
            _ => out.extend(u.to_le_bytes()),
        }
    }
    out
}

#[test]
fn every_encoding_and_charset_split_at_every_byte() {
    let head_end = PAGE.find("class='c'>").unwrap() + "class='c'>".len();
    // windows-1252 and UTF-8 text (non-ASCII bytes in the prologue) alike.
    let latin = [b"<!-- caf\xe9 -->".as_slice(), PAGE.as_bytes()].concat();
    let utf8 = [
        b"\xef\xbb\xbf<!-- caf\xc3\xa9 -->".as_slice(),
        PAGE.as_bytes(),
    ]
    .concat();
    for encoding in [
        Encoding::Identity,
        Encoding::Gzip,
        Encoding::Deflate,
        Encoding::Brotli,
    ] {
        check_splits(encoding, Charset::Ascii, PAGE.as_bytes(), head_end);
        check_splits(encoding, Charset::Ascii, &latin, head_end + 13);
        check_splits(encoding, Charset::Ascii, &utf8, head_end + 17);
        let page = format!("<!-- café ☕ -->{PAGE}");
        let chars = page.find("class='c'>").unwrap() + "class='c'>".len();
        let units = page[..chars].encode_utf16().count();
        for (charset, bom) in [
            (Charset::Utf16Le, true),
            (Charset::Utf16Be, true),
            (Charset::Utf16Le, false),
            (Charset::Utf16Be, false),
        ] {
            let bytes = utf16(&page, charset, bom);
            let at = 2 * (units + usize::from(bom));
            check_splits(encoding, charset, &bytes, at);
        }
    }
}

#[test]
fn a_byte_order_mark_wins_over_the_header() {
    let page = utf16("<head>x", Charset::Utf16Be, true);
    let got = run_chunks(Encoding::Identity, html(), &[&page]);
    assert_eq!(got, with_markup_at(&page, 14, Charset::Utf16Be));
    let page = [b"\xef\xbb\xbf<head>".as_slice()].concat();
    let declared = Html {
        charset: Charset::Utf16Le,
        xml: false,
    };
    let got = run_chunks(Encoding::Identity, declared, &[&page]);
    assert_eq!(got, with_markup_at(&page, 9, Charset::Ascii));
    // A non-ASCII UTF-16 character is not `<` whatever its bytes.
    let page = utf16("\u{3c3c}<head>", Charset::Utf16Le, false);
    let le = Html {
        charset: Charset::Utf16Le,
        xml: false,
    };
    let got = run_chunks(Encoding::Identity, le, &[&page]);
    assert_eq!(got, with_markup_at(&page, 0, Charset::Utf16Le));
}

#[test]
fn a_utf16_unit_split_across_chunks_where_the_scripts_go() {
    // The unit that decides is completed by the next chunk, whose odd last
    // byte must stay in place (found by the fuzz target).
    let page = utf16("\u{3c00}x<", Charset::Utf16Le, true);
    let want = with_markup_at(&page, 2, Charset::Utf16Le);
    let le = Html {
        charset: Charset::Utf16Le,
        xml: false,
    };
    for split in 0..=page.len() {
        let got = run_chunks(Encoding::Identity, le, &[&page[..split], &page[split..]]);
        assert_eq!(got, want, "split at {split}");
        let last = page.len() - 1;
        if split > last {
            continue;
        }
        let got = run_chunks(
            Encoding::Identity,
            le,
            &[&page[..split], &page[split..last], &page[last..]],
        );
        assert_eq!(got, want, "split at {split} and before the last byte");
    }
}

#[test]
fn content_types_and_charsets_from_the_header() {
    let h = |v: &str| Html::from_content_type(v.as_bytes());
    assert_eq!(h("text/html"), Some(html()));
    assert_eq!(h("TEXT/HTML ; charset=ISO-8859-1"), Some(html()));
    assert_eq!(h("text/html; charset=windows-1252"), Some(html()));
    let le = Html {
        charset: Charset::Utf16Le,
        xml: false,
    };
    assert_eq!(h("text/html;charset=utf-16"), Some(le));
    assert_eq!(h("text/html; charset=\"UTF-16LE\""), Some(le));
    assert_eq!(
        h("text/html; charset=utf-16be").unwrap().charset,
        Charset::Utf16Be
    );
    assert_eq!(
        h("application/xhtml+xml"),
        Some(Html {
            charset: Charset::Ascii,
            xml: true
        })
    );
    for other in [
        "text/plain",
        "application/json",
        "text/htmlx",
        "image/svg+xml",
        "",
        "text/css; charset=utf-8",
    ] {
        assert_eq!(h(other), None, "{other}");
    }
}

#[test]
fn content_encodings_from_the_header() {
    let e = |values: &[&str]| {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::CONTENT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        Encoding::from_headers(&headers)
    };
    assert_eq!(e(&[]), Some(Encoding::Identity));
    assert_eq!(e(&["identity"]), Some(Encoding::Identity));
    assert_eq!(e(&["GZIP"]), Some(Encoding::Gzip));
    assert_eq!(e(&["x-gzip"]), Some(Encoding::Gzip));
    assert_eq!(e(&["deflate"]), Some(Encoding::Deflate));
    assert_eq!(e(&["br"]), Some(Encoding::Brotli));
    assert_eq!(e(&["zstd"]), None);
    assert_eq!(e(&["gzip, br"]), None);
    assert_eq!(e(&["gzip", "gzip"]), None);
}

#[test]
fn raw_deflate_and_multi_member_gzip() {
    use flate2::write::{DeflateEncoder, GzEncoder};
    let mut raw = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    raw.write_all(b"<head>raw").unwrap();
    let raw = raw.finish().unwrap();
    let mut injector = Injector::new(Encoding::Deflate, html(), scripts().markup());
    let mut out = injector.push(Bytes::from(raw)).unwrap().to_vec();
    out.extend_from_slice(&injector.finish().unwrap());
    // Sent back raw too.
    let mut d = flate2::write::DeflateDecoder::new(Vec::new());
    d.write_all(&out).unwrap();
    assert_eq!(
        d.finish().unwrap(),
        with_markup_at(b"<head>raw", 6, Charset::Ascii)
    );

    let member = |s: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(s).unwrap();
        e.finish().unwrap()
    };
    let body = [member(b"<head>one"), member(b" two")].concat();
    assert_eq!(
        run_chunks(Encoding::Gzip, html(), &[&body]),
        with_markup_at(b"<head>one two", 6, Charset::Ascii)
    );
}

#[test]
fn corrupt_and_truncated_bodies_are_errors() {
    for encoding in [Encoding::Gzip, Encoding::Deflate, Encoding::Brotli] {
        let body = encode_all(encoding, PAGE.as_bytes());
        let mut injector = Injector::new(encoding, html(), scripts().markup());
        let cut = injector
            .push(Bytes::copy_from_slice(&body[..body.len() / 2]))
            .and_then(|_| injector.finish());
        let e = cut.expect_err("a truncated body");
        assert!(e.to_string().starts_with("corrupt "), "{e}");
        let mut injector = Injector::new(encoding, html(), scripts().markup());
        let garbage = injector
            .push(Bytes::from_static(
                b"\x00\x00this is not compressed at all, no",
            ))
            .and_then(|_| injector.finish());
        assert!(garbage.is_err(), "{encoding:?} garbage");
    }
}

/// A body fed by the test: pending until a chunk or the end is given.
#[derive(Clone, Default)]
struct Fed(Rc<RefCell<(VecDeque<Bytes>, bool)>>);

impl Fed {
    fn give(&self, b: impl Into<Bytes>) {
        self.0.borrow_mut().0.push_back(b.into());
    }
    fn end(&self) {
        self.0.borrow_mut().1 = true;
    }
}

impl Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut s = self.0.borrow_mut();
        match s.0.pop_front() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None if s.1 => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(42)
    }
}

/// Polls until pending or the end: the data given, and whether it ended.
fn drain<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> (Vec<u8>, bool)
where
    B::Error: fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    loop {
        match Pin::new(&mut *body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(f))) => out.extend_from_slice(&f.into_data().unwrap()),
            Poll::Ready(Some(Err(e))) => panic!("{e:?}"),
            Poll::Ready(None) => return (out, true),
            Poll::Pending => return (out, false),
        }
    }
}

fn response(fed: &Fed, headers: &[(&str, &str)]) -> Response<Fed> {
    let mut r = Response::new(fed.clone());
    for (n, v) in headers {
        r.headers_mut().append(
            header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

#[test]
fn a_big_page_streams_before_it_ends() {
    for (coding, encoding) in [
        ("identity", Encoding::Identity),
        ("gzip", Encoding::Gzip),
        ("deflate", Encoding::Deflate),
        ("br", Encoding::Brotli),
    ] {
        let fed = Fed::default();
        let r = response(
            &fed,
            &[("content-type", "text/html"), ("content-encoding", coding)],
        );
        let mut body = inject(r, &scripts()).into_body();
        let mut page = b"<html><head><title>big</title>".to_vec();
        for i in 0..20_000 {
            page.extend_from_slice(format!("<p>paragraph {i}</p>\n").as_bytes());
        }
        let encoded = encode_all(encoding, &page);
        let mut out = Vec::new();
        let mut chunks = encoded.chunks(8192);
        let first = chunks.next().unwrap();
        fed.give(Bytes::copy_from_slice(first));
        let (got, ended) = drain(&mut body);
        assert!(!ended);
        assert!(!got.is_empty(), "{coding}: output after the first chunk");
        out.extend(got);
        for chunk in chunks {
            fed.give(Bytes::copy_from_slice(chunk));
            out.extend(drain(&mut body).0);
        }
        assert!(!body.is_end_stream());
        fed.end();
        let (rest, ended) = drain(&mut body);
        assert!(ended && body.is_end_stream());
        out.extend(rest);
        assert_eq!(
            decode_all(encoding, &out).unwrap(),
            with_markup_at(&page, 12, Charset::Ascii),
            "{coding}"
        );
    }
}

#[test]
fn identity_chunks_after_the_head_pass_without_copying() {
    let mut injector = Injector::new(Encoding::Identity, html(), scripts().markup());
    let first = injector.push(Bytes::from_static(b"<head>")).unwrap();
    assert_eq!(first, with_markup_at(b"<head>", 6, Charset::Ascii));
    let later = Bytes::from(vec![b'x'; 100_000]);
    let out = injector.push(later.clone()).unwrap();
    assert_eq!(out.as_ptr(), later.as_ptr());
    // Nothing held back past a tag's first bytes.
    let mut injector = Injector::new(Encoding::Identity, html(), scripts().markup());
    assert_eq!(
        injector
            .push(Bytes::from_static(b"<!-- long comment"))
            .unwrap(),
        &b"<!-- long comment"[..]
    );
    assert_eq!(
        injector.push(Bytes::from_static(b" --> <hea")).unwrap(),
        &b" --> "[..]
    );
}

#[test]
fn not_html_passes_byte_for_byte() {
    let cases: &[&[(&str, &str)]] = &[
        &[
            ("content-type", "application/json"),
            ("content-length", "42"),
        ],
        &[("content-type", "text/css"), ("content-encoding", "gzip")],
        &[("content-length", "42")],
        &[("content-type", "text/html"), ("content-encoding", "zstd")],
        &[
            ("content-type", "text/html"),
            ("content-encoding", "gzip, br"),
        ],
    ];
    for headers in cases {
        let fed = Fed::default();
        let before = response(&fed, headers);
        let original = before.headers().clone();
        let mut after = inject(before, &scripts());
        assert_eq!(after.headers(), &original);
        assert!(!after.body().injecting());
        assert_eq!(after.body().size_hint().exact(), Some(42));
        fed.give(Bytes::from_static(b"<head>\xff\x00"));
        fed.end();
        assert_eq!(drain(after.body_mut()), (b"<head>\xff\x00".to_vec(), true));
    }
    for status in [
        StatusCode::NOT_MODIFIED,
        StatusCode::PARTIAL_CONTENT,
        StatusCode::NO_CONTENT,
    ] {
        let fed = Fed::default();
        let mut r = response(&fed, &[("content-type", "text/html")]);
        *r.status_mut() = status;
        assert!(!inject(r, &scripts()).body().injecting(), "{status}");
    }
}

#[test]
fn headers_of_an_injected_page() {
    let fed = Fed::default();
    let r = response(
        &fed,
        &[
            ("content-type", "text/html; charset=utf-8"),
            ("content-encoding", "gzip"),
            ("content-length", "1234"),
            ("etag", "\"v1\""),
            ("accept-ranges", "bytes"),
            ("content-md5", "x"),
            ("vary", "Accept-Encoding"),
            (
                "content-security-policy",
                "script-src 'strict-dynamic' 'nonce-abc'",
            ),
            ("content-security-policy", "default-src 'none'"),
            (
                "content-security-policy-report-only",
                "script-src https://cdn.example",
            ),
        ],
    );
    let r = inject(r, &scripts());
    let h = r.headers();
    assert!(r.body().injecting());
    for gone in ["content-length", "accept-ranges", "content-md5"] {
        assert!(!h.contains_key(gone), "{gone}");
    }
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(h["vary"], "Accept-Encoding");
    assert_eq!(h["etag"], "W/\"v1\"");
    let csp: Vec<_> = h
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        csp,
        [
            format!("script-src 'strict-dynamic' 'nonce-abc' 'nonce-{NONCE}'"),
            format!("default-src 'none'; script-src 'nonce-{NONCE}'"),
        ]
    );
    assert_eq!(
        h["content-security-policy-report-only"],
        format!("script-src https://cdn.example 'nonce-{NONCE}'")
    );
    // A weak ETag stays as it is.
    let fed = Fed::default();
    let r = response(&fed, &[("content-type", "text/html"), ("etag", "W/\"v2\"")]);
    assert_eq!(inject(r, &scripts()).headers()["etag"], "W/\"v2\"");
}

#[test]
fn csp_adjusted_not_removed() {
    let n = format!("'nonce-{NONCE}'");
    let a = |v: &str| adjust_csp(v, NONCE);
    // script-src gets the nonce.
    assert_eq!(
        a("script-src https://cdn.example"),
        format!("script-src https://cdn.example {n}")
    );
    assert_eq!(a("script-src 'none'"), format!("script-src {n}"));
    assert_eq!(
        a("default-src 'self'; script-src 'strict-dynamic' 'nonce-x'; object-src 'none'"),
        format!("default-src 'self'; script-src 'strict-dynamic' 'nonce-x' {n}; object-src 'none'")
    );
    // Allowed already: same origin.
    for allowed in [
        "script-src 'self'",
        "script-src *",
        "default-src 'SELF' data:",
        "img-src 'none'",
        "",
        "report-uri /r",
    ] {
        assert_eq!(a(allowed), allowed);
    }
    // 'strict-dynamic' makes 'self' ignored.
    assert_eq!(
        a("script-src 'self' 'strict-dynamic'"),
        format!("script-src 'self' 'strict-dynamic' {n}")
    );
    // default-src is copied into a new script-src.
    assert_eq!(
        a("default-src https://a.example; img-src *"),
        format!("default-src https://a.example; img-src *; script-src https://a.example {n}")
    );
    assert_eq!(
        a("default-src 'none';"),
        format!("default-src 'none'; script-src {n};")
    );
    // script-src-elem governs elements, before script-src.
    assert_eq!(
        a("script-src 'none'; script-src-elem https://a.example"),
        format!("script-src 'none'; script-src-elem https://a.example {n}")
    );
    // 'unsafe-inline' without a nonce: a nonce would switch it off.
    assert_eq!(
        a("script-src 'unsafe-inline'"),
        "script-src 'unsafe-inline' 'self'"
    );
    assert_eq!(
        a("script-src 'unsafe-inline' 'nonce-x'"),
        format!("script-src 'unsafe-inline' 'nonce-x' {n}")
    );
    // Each policy of a header, each on its own.
    assert_eq!(
        a("script-src 'none', default-src 'self', img-src *"),
        format!("script-src {n}, default-src 'self', img-src *")
    );
    // Directive names in any case, the first of a name counts.
    assert_eq!(
        a("SCRIPT-SRC https://a.example; script-src 'self'"),
        format!("SCRIPT-SRC https://a.example {n}; script-src 'self'")
    );
}

#[test]
fn nonces_are_fresh_and_markup_is_escaped() {
    let a = Scripts::new(&["/_tandem/tandem.js"]);
    let b = Scripts::new(&["/_tandem/tandem.js"]);
    assert_ne!(a.nonce(), b.nonce());
    assert_eq!(STANDARD.decode(a.nonce()).unwrap().len(), 16);
    assert_eq!(
        a.markup(),
        format!(
            "<script src=\"/_tandem/tandem.js\" nonce=\"{}\"></script>",
            a.nonce()
        )
    );
    let odd = Scripts::with_nonce(&["/a?b=1&c=\"<é>"], "n");
    assert_eq!(
        odd.markup(),
        "<script src=\"/a?b=1&amp;c=&quot;&lt;%C3%A9&gt;\" nonce=\"n\"></script>"
    );
}

/// Data frames, then trailers, then an error if asked.
struct Framed(VecDeque<Result<Frame<Bytes>, &'static str>>);

impl Body for Framed {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(|f| f.map_err(Into::into)))
    }
}

#[test]
fn trailers_follow_the_page_and_errors_end_it() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-check", HeaderValue::from_static("1"));
    let frames = VecDeque::from([
        Ok(Frame::data(Bytes::from_static(b"<!doctype html>"))),
        Ok(Frame::data(Bytes::from_static(b"<hea"))),
        Ok(Frame::trailers(trailers.clone())),
    ]);
    let mut r = Response::new(Framed(frames));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    let mut body = inject(r, &scripts()).into_body();
    let mut cx = Context::from_waker(Waker::noop());
    let mut data = Vec::new();
    let mut got_trailers = None;
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        match frame.unwrap().into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => got_trailers = f.into_trailers().ok(),
        }
    }
    assert_eq!(
        data,
        with_markup_at(b"<!doctype html><hea", 15, Charset::Ascii)
    );
    assert_eq!(got_trailers, Some(trailers));
    assert!(body.is_end_stream());

    let frames = VecDeque::from([
        Ok(Frame::data(Bytes::from_static(b"<head>"))),
        Err("upstream reset"),
    ]);
    let mut r = Response::new(Framed(frames));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    let mut body = inject(r, &scripts()).into_body();
    let first = Pin::new(&mut body).poll_frame(&mut cx);
    assert!(matches!(first, Poll::Ready(Some(Ok(_)))));
    let Poll::Ready(Some(Err(e))) = Pin::new(&mut body).poll_frame(&mut cx) else {
        panic!("the error is passed on");
    };
    assert_eq!(e.to_string(), "upstream reset");
    assert!(matches!(
        Pin::new(&mut body).poll_frame(&mut cx),
        Poll::Ready(None)
    ));
}

/// What the proxy hands hyper: a response over hyper's own body, `Send`.
#[allow(dead_code)]
fn wraps_incoming(
    r: Response<hyper::body::Incoming>,
) -> Response<impl Body<Data = Bytes, Error = BoxError> + Send + Unpin + 'static> {
    inject(r, &scripts())
}
