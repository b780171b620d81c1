//! Hostile input: a catalogue of malicious or broken requests sent to a
//! running server while a normal subscriber on it keeps receiving every
//! event published in between. Each gets a clean refusal or safe output;
//! nothing smuggled behind a request is ever served. Both flavors: the
//! `serve` accept loop (lean stream and publish paths, hyper for the rest)
//! and a plain hyper server (what an embedder runs).
//!
//! Heads that HTTP/1.1 itself forbids (two lengths, a transfer coding other
//! than `chunked`, obsolete line folding, bare CR, NUL, a bad version) are
//! refused before any route sees them: `400 Bad Request` with
//! `connection: close`, and the connection closed. On `serve` every such
//! head is refused by tandem's own head reader, with a JSON body saying
//! what is malformed; in a plain hyper server, by hyper, with no body.
//! Everything that parses is answered by tandem with its JSON error.

use kit::*;
use tokio::time::{Duration, Instant};

/// What the server must do with one hostile request.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The HTTP parser's refusal: `400`, `connection: close`, on `serve`
    /// tandem's JSON saying what in the head is malformed (in a plain hyper
    /// server no body), and the connection closed (nothing after the head
    /// is read as a request).
    Unparsable,
    /// tandem's refusal: this status and a JSON `{"error"}` naming `.1`.
    Json(u16, &'static str),
    /// `Transfer-Encoding: chunked` with a `Content-Length`: the body is read
    /// as chunked (RFC 9112 6.3), the publish answered, and the connection
    /// closed so whatever follows is never read as a request.
    ChunkedThenClose,
    /// Served normally with this status.
    Served(u16),
}

/// Everything the server sends back on a fresh connection given `bytes`,
/// until it closes (`true`) or `wait` passes (`false`).
async fn exchange(srv: &Server, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut conn = srv.connect().await;
    conn.send(bytes).await;
    let deadline = Instant::now() + wait;
    let closed = loop {
        match conn.fill_by(deadline).await {
            Some(0) => break true,
            None => break false,
            Some(_) => {}
        }
    };
    (
        String::from_utf8_lossy(conn.buffered()).into_owned(),
        closed,
    )
}

fn check(flavor: Flavor, what: &str, want: Want, out: &str, closed: bool) {
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: no response head: {out:?}"));
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no status: {out:?}"));
    let lower = head.to_ascii_lowercase();
    match want {
        Want::Unparsable => {
            assert_eq!(status, 400, "{what}: {out}");
            assert!(lower.contains("connection: close"), "{what}: {out}");
            if flavor == Flavor::Serve {
                // `serve` reads every head itself: its refusal says why.
                assert!(
                    lower.contains("content-type: application/json")
                        && body.starts_with("{\"error\":\"malformed request head (")
                        && body.ends_with(")\"}"),
                    "{what}: tandem's refusal and nothing after it: {out}"
                );
            } else {
                assert_eq!(body, "", "{what}: hyper's refusal has no body: {out}");
            }
            assert!(closed, "{what}: the connection is closed");
        }
        Want::Json(want_status, words) => {
            assert_eq!(status, want_status, "{what}: {out}");
            assert!(
                lower.contains("content-type: application/json"),
                "{what}: {out}"
            );
            let v: serde_json::Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {out}"));
            let msg = v["error"].as_str().unwrap_or_else(|| panic!("{what}: {v}"));
            assert!(msg.contains(words), "{what}: {msg:?} should name {words:?}");
        }
        Want::ChunkedThenClose => {
            assert_eq!(status, 202, "{what}: {out}");
            assert!(lower.contains("connection: close"), "{what}: {out}");
            assert!(closed, "{what}: the connection is closed");
            assert_eq!(count_statuses(out), 1, "{what}: one answer: {out}");
        }
        Want::Served(want_status) => assert_eq!(status, want_status, "{what}: {out}"),
    }
}

/// How many responses `out` holds.
fn count_statuses(out: &str) -> usize {
    out.matches("HTTP/1.1 ").count()
}

const NAME: &str = "invalid channel name";

async fn catalogue(flavor: Flavor) {
    use Want::*;
    let srv = flavor.with_defaults().await;
    let host = srv.host();
    // What a smuggling attempt hides after its body: served, it would
    // publish to `smuggled`.
    let sm = format!("POST /ch/smuggled HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\n\r\nX");
    let post = format!("POST /ch/x HTTP/1.1\r\nHost: {host}\r\n");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let cases: Vec<(&str, String, Want)> = vec![
        // Request smuggling: conflicting framings.
        ("CL then TE", format!("{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{sm}"), ChunkedThenClose),
        ("TE then CL", format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n{sm}"), ChunkedThenClose),
        ("two Content-Lengths", format!("{post}Content-Length: 0\r\nContent-Length: 5\r\n\r\n{sm}"), Unparsable),
        ("a Content-Length list", format!("{post}Content-Length: 0, 5\r\n\r\n{sm}"), Unparsable),
        ("chunked, identity", format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{sm}"), Unparsable),
        ("identity", format!("{post}Transfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nX{sm}"), Unparsable),
        ("xchunked", format!("{post}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{sm}"), Unparsable),
        ("TE folded onto the next line", format!("{post}Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n{sm}"), Unparsable),
        ("obsolete line folding", format!("{post}X-A: a\r\n b\r\nContent-Length: 1\r\n\r\nX"), Unparsable),
        ("bare CR", format!("POST /ch/x HTTP/1.1\r\nHost: {host}\rContent-Length: 0\r\n\r\n{sm}"), Unparsable),
        ("NUL in a header", format!("{post}X-A: a\0b\r\nContent-Length: 1\r\n\r\nX"), Unparsable),
        ("NUL in the path", get("/ch/a\0b/poll"), Unparsable),
        ("space before the colon", format!("{post}Content-Length : 1\r\n\r\nX{sm}"), Unparsable),
        ("two equal Content-Lengths", format!("{post}Content-Length: 1\r\nContent-Length: 1\r\n\r\nX"), Served(202)),
        ("chunked, then a gzip line", format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n{sm}"), Unparsable),
        ("TE in HTTP/1.0", format!("POST /ch/x HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{sm}"), Unparsable),
        ("negative length", format!("{post}Content-Length: -1\r\n\r\nX"), Unparsable),
        ("signed length", format!("{post}Content-Length: +1\r\n\r\nX"), Unparsable),
        ("length past u64", format!("{post}Content-Length: 99999999999999999999999\r\n\r\nX"), Unparsable),
        ("bad chunk size", format!("{post}Transfer-Encoding: chunked\r\n\r\nzz\r\nX\r\n0\r\n\r\n"), Json(400, "could not read the request body")),
        ("chunk size past u64", format!("{post}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nX\r\n0\r\n\r\n"), Json(400, "could not read the request body")),
        // Malformed heads.
        ("TLS hello to plaintext", "\x16\x03\x01\x00\x05hello\r\n\r\n".to_string(), Unparsable),
        ("no version", "GET /ch/x/poll\r\n\r\n".to_string(), Unparsable),
        ("HTTP/2.0 as text", format!("GET /ch/x/poll HTTP/2.0\r\nHost: {host}\r\n\r\n"), Unparsable),
        ("HTTP/9.9", format!("GET /ch/x/poll HTTP/9.9\r\nHost: {host}\r\n\r\n"), Unparsable),
        ("control byte in the method", format!("G\x01T /ch/x/poll HTTP/1.1\r\nHost: {host}\r\n\r\n"), Unparsable),
        ("asterisk target", get("*"), Json(404, "no such route")),
        // Channel names: invalid UTF-8, traversal, NUL.
        ("raw UTF-8 name", get("/ch/\u{e9}t\u{e9}/poll?timeout=0"), Json(400, NAME)),
        ("invalid UTF-8, encoded", get("/ch/%ff%fe/poll?timeout=0"), Json(400, NAME)),
        ("invalid UTF-8, encoded, stream", get("/ch/%c3%28/sse"), Json(400, NAME)),
        ("..%2f traversal", get("/ch/..%2f..%2fetc%2fpasswd/poll?timeout=0"), Json(400, NAME)),
        ("..%2f traversal, stream", get("/ch/..%2f..%2fetc%2fpasswd/sse"), Json(400, NAME)),
        ("..%2f traversal, publish", format!("POST /ch/..%2fx HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\n\r\nX"), Json(400, NAME)),
        ("raw traversal", get("/ch/../../etc/passwd"), Json(404, "no such route")),
        ("%00 in a name", get("/ch/a%00b/poll?timeout=0"), Json(400, NAME)),
        ("%00 in a name, stream", get("/ch/a%00b/sse"), Json(400, NAME)),
        ("%00 in a name, chunked publish", format!("POST /ch/a%00 HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nX\r\n0\r\n\r\n"), Json(400, NAME)),
        ("traversal to a file", get("/tandem.js/../../Cargo.toml"), Json(404, "no such route")),
        ("encoded traversal to a file", get("/%2e%2e/%2e%2e/Cargo.toml"), Json(404, "no such route")),
        // A bare LF ends lines in every parser tandem has (RFC 9112 2.2
        // allows it); served, the same on both paths.
        ("LF-only head", format!("POST /ch/x HTTP/1.1\nHost: {host}\nContent-Length: 1\n\nX"), Served(202)),
    ];
    let mut sse = srv.sse("/ch/c/sse").await;
    for (i, (what, bytes, want)) in cases.iter().enumerate() {
        let (out, closed) = exchange(&srv, bytes.as_bytes(), Duration::from_millis(1500)).await;
        check(flavor, what, *want, &out, closed);
        srv.publish("c", &format!("e{i}")).await;
    }
    let got = sse.take(cases.len()).await;
    let want: Vec<String> = (0..cases.len()).map(|i| format!("e{i}")).collect();
    assert_eq!(
        got.iter().map(|e| text(e).to_string()).collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        ids(&got),
        some_ids(1..=cases.len() as u64),
        "every event, in order"
    );
    assert_eq!(
        srv.hub.info("smuggled").last_id,
        0,
        "nothing smuggled was served"
    );
    for bad in ["..", "a\0b", "etc"] {
        assert_eq!(srv.hub.info(bad).last_id, 0);
    }
}

/// Script injection through the callback and through event data, on every
/// transport: the callback is refused, the data escaped for where it lands.
async fn injection_is_escaped(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut sse = srv.sse("/ch/c/sse").await;
    for cb in [
        "alert(1)//",
        "a;alert(1)",
        "%3C/script%3E%3Cscript%3Ealert(1)",
        "a%0aalert(1)",
        "a..b",
        "1a",
        "a%00",
        "%e2%80%a8a",
    ] {
        for t in ["jsonp", "iframe"] {
            srv.get(&format!("/ch/j/{t}?callback={cb}&timeout=0"))
                .await
                .expect_error(400, &["invalid callback"]);
        }
        srv.publish("c", cb).await;
    }
    let evil = "</script><script>alert(1)</script><!--\u{2028}\u{2029}&'\"\r\n\r\nevent: evil\ndata: x\n\n";
    let id = srv.publish("j", evil).await;

    // Long-poll and JSONP: JSON with `<`, `>`, `&`, U+2028/9 escaped.
    for path in ["/ch/j/poll?since=0", "/ch/j/jsonp?since=0&callback=app.got"] {
        let r = srv.get(path).await;
        assert_eq!(r.head.status, 200, "{path}");
        let body = r.text();
        for raw in ["<", ">", "&", "\u{2028}", "\u{2029}", "\n"] {
            assert!(
                !body.trim_end().contains(raw),
                "{path}: raw {raw:?} in {body}"
            );
        }
        assert!(body.contains("\\u003c/script\\u003e"), "{path}: {body}");
    }
    let r = srv.get("/ch/j/jsonp?since=0&callback=app.got").await;
    assert!(r.text().starts_with("/**/app.got("), "{}", r.text());
    r.head.expect("x-content-type-options", "nosniff");

    // The forever iframe: the only `<script>` elements are tandem's.
    let mut iframe = srv
        .iframe("/ch/j/iframe?since=0&callback=app.got", "app.got")
        .await;
    let e = iframe.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id), evil));
    let page = String::from_utf8_lossy(iframe.body.raw()).into_owned();
    assert_eq!(
        page.matches("<script").count(),
        page.matches("</script>").count(),
        "{page}"
    );
    assert!(!page.contains("alert(1)</script>"), "{page}");
    assert!(!page.contains("<!--\u{2028}"), "{page}");

    // SSE: one event of the default type, whatever the data's lines say.
    let mut s = srv.sse("/ch/j/sse?since=0").await;
    let e = s.next_event().await;
    assert_eq!((e.id, e.kind.as_str()), (Some(id), "message"));
    assert_eq!(text(&e), evil.replace("\r\n", "\n"));
    // Multipart and mixed: the payload cannot end its part early.
    for t in ["multipart", "mixed"] {
        let mut m = srv.multipart(&format!("/ch/j/{t}?since=0")).await;
        let e = m.next_event().await;
        assert_eq!((e.id, text(&e)), (Some(id), evil), "{t}");
    }
    // The boundary itself as data.
    let b = format!(
        "\r\n--{}\r\nContent-Type: text/html\r\n\r\n<b>x</b>",
        tandem::__private::BOUNDARY
    );
    let id2 = srv.publish("j", &b).await;
    let mut m = srv.multipart(&format!("/ch/j/multipart?since={id}")).await;
    let e = m.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id2), b.as_str()));

    // The normal subscriber got every one of its events.
    let got = sse.take(8).await;
    assert_eq!(ids(&got), some_ids(1..=8));
}

/// A flood of channel creations: new names are taken up to
/// `--max-channels` (1,000 here), then refused with 503 and a JSON body
/// naming the limit, while existing channels keep working; a closed or
/// swept channel makes room again.
async fn channel_flood(flavor: Flavor) {
    let srv = flavor.start(config().max_channels(1000)).await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let host = srv.host();
    const N: usize = 2000;
    let mut conns = Vec::new();
    for part in 0..4 {
        let mut conn = srv.connect().await;
        let mut bytes = Vec::new();
        for i in (part * N / 4)..((part + 1) * N / 4) {
            Req::post(&format!("/ch/flood-{i}"), b"x")
                .host(&host)
                .write(&mut bytes);
        }
        conn.send(&bytes).await;
        conns.push(conn);
    }
    srv.publish("c", "during").await;
    let (mut taken, mut refused) = (0, 0);
    for mut conn in conns {
        for _ in 0..N / 4 {
            let r = conn.response("POST").await;
            match r.head.status {
                202 => taken += 1,
                _ => {
                    r.expect_error(503, &["too many channels", "max 1000"]);
                    refused += 1;
                }
            }
        }
    }
    // "c" is one of the 1,000 (two worker threads may each make one more
    // between the count's check and its increment).
    assert!((999..=1001).contains(&taken), "{taken} taken");
    assert_eq!(taken + refused, N);
    assert!(
        srv.hub.channel_count() <= 1002,
        "{}",
        srv.hub.channel_count()
    );
    // Existing channels work on; a new name is refused for streams too.
    srv.publish("c", "after").await;
    let r = srv.send(Req::post("/ch/flood-0", b"again")).await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    srv.send(Req::get("/ch/new/poll?since=0&timeout=0"))
        .await
        .expect_error(503, &["too many channels"]);
    let got = sse.take(2).await;
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        ["during", "after"]
    );
    // Room again once channels go.
    for i in 0..N {
        srv.hub.close(&format!("flood-{i}"));
    }
    let r = srv.send(Req::post("/ch/new", b"x")).await;
    assert_eq!(r.head.status, 202, "{}", r.text());
}

/// Hundreds of slowloris sockets (a head begun and never finished, for
/// either path): each is ended with 408 at the head timeout, and meanwhile
/// publishes, a long-poll and the stream are served. (`serve` reads every
/// connection's first head itself; an embedder's hyper server has hyper's
/// own `header_read_timeout`.)
#[tokio::test]
async fn slowloris() {
    let srv = Server::start(config().head_timeout(Duration::from_secs(2))).await;
    let mut sse = srv.sse("/ch/c/sse").await;
    const N: usize = 300;
    let mut socks = Vec::with_capacity(N);
    for i in 0..N {
        let mut conn = srv.connect().await;
        let head = if i % 2 == 0 {
            "GET /ch/c/sse HTTP/1.1\r\nHost: x\r\nX-A: "
        } else {
            "POST /ch/c HTTP/1.1\r\nContent-"
        };
        conn.send(head.as_bytes()).await;
        socks.push(conn);
    }
    for conn in socks.iter_mut().take(50) {
        conn.send(b"a").await;
    }
    srv.publish("c", "one").await;
    let r = srv.get("/ch/c/poll?since=0").await;
    assert_eq!(r.head.status, 200);
    srv.publish("c", "two").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut conn in socks {
        let r = conn.response_by("GET", deadline).await;
        r.expect_error(408, &["request head too slow"]);
        assert!(conn.at_eof().await);
    }
    srv.publish("c", "three").await;
    let got = sse.take(3).await;
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
}

/// Bodies that stop mid-way, on the lean path (`Content-Length`) and
/// hyper's (chunked), while the stream keeps flowing: 408, nothing
/// published.
async fn bodies_that_stop(flavor: Flavor) {
    let srv = flavor
        .start(config().body_timeout(Duration::from_secs(1)))
        .await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let host = srv.host();
    let mut conns = Vec::new();
    for i in 0..20 {
        let mut conn = srv.connect().await;
        let req = if i % 2 == 0 {
            format!("POST /ch/c HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\nhalf")
        } else {
            format!("POST /ch/c HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nhalf")
        };
        conn.send(req.as_bytes()).await;
        conns.push(conn);
    }
    srv.publish("c", "meanwhile").await;
    for mut conn in conns {
        conn.response("POST")
            .await
            .expect_error(408, &["request body too slow"]);
        assert!(conn.at_eof().await);
    }
    srv.publish("c", "after").await;
    let got = sse.take(2).await;
    assert_eq!(
        got.iter().map(text).collect::<Vec<_>>(),
        ["meanwhile", "after"]
    );
    assert_eq!(
        srv.hub.info("c").last_id,
        2,
        "no stopped body was published"
    );
}

both_flavors!(
    catalogue,
    injection_is_escaped,
    channel_flood,
    bodies_that_stop
);
