//! Every request head on a connection is tandem's to read, not only the
//! first: after a request hyper served (a page, a chunked publish), the
//! next head on the same keep-alive connection still gets
//! tandem's limits (431, 414, 408, 400 with a JSON body naming what was
//! wrong) and the path it would have got first (a stream goes to the lean
//! path). `serve` lends the connection to hyper for one exchange at a time
//! (`src/server/handoff.rs`); these tests speak raw HTTP/1.1 over TCP (and
//! TLS) to check the connection comes back whole: pipelined bytes, request
//! bodies, `Expect: 100-continue`, `Connection: close`, HTTP/1.0.

use kit::*;
use tokio::io::AsyncWriteExt;
use tokio::time::{Duration, Instant};

/// Small limits, so that the tests' heads are small; a short head timeout.
fn small() -> Setup {
    config()
        .max_head_bytes(4096)
        .max_url_bytes(1024)
        .head_timeout(Duration::from_millis(500))
        .idle_timeout(Duration::from_secs(20))
}

/// The requests hyper serves, each answered at once.
fn served_by_hyper(host: &str) -> Vec<(&'static str, Req)> {
    vec![
        ("a page", Req::get("/").host(host)),
        ("a health check", Req::get("/healthz").host(host)),
        (
            "a chunked publish",
            Req::post("/ch/other", b"chunked").chunked().host(host),
        ),
    ]
}

/// A connection that has had one request served by hyper.
async fn after_hyper(srv: &Server, what: &str, first: &Req) -> Conn {
    let mut conn = srv.connect().await;
    let r = conn.request(first).await;
    assert!(
        r.head.status == 200 || r.head.status == 202,
        "{what}: {}",
        r.head.raw
    );
    conn
}

/// Reads what the server sends until it closes (5 s at most).
async fn rest_of(conn: &mut Conn) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn.fill_by(deadline).await.is_some_and(|n| n > 0) {}
    String::from_utf8_lossy(conn.buffered()).into_owned()
}

#[tokio::test]
async fn a_later_head_over_the_limit_is_431_json() {
    let srv = Server::start(small()).await;
    let host = srv.host();
    for (what, first) in served_by_hyper(&host) {
        let mut conn = after_hyper(&srv, what, &first).await;
        let req = Req::get("/ch/c/poll?timeout=0")
            .host(&host)
            .header("X-Big", &"b".repeat(5000));
        // The write may fail once the server has answered and closed.
        let _ = conn.stream.write_all(&req.to_bytes()).await;
        let r = conn.response("GET").await;
        r.expect_error(431, &["request head too large", "max 4096 bytes"]);
        r.head.expect("connection", "close");
        assert!(conn.at_eof().await, "{what}");
    }
}

#[tokio::test]
async fn a_later_200_kb_head_is_431_json() {
    let srv = Server::with_defaults().await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let host = srv.host();
    for (what, first) in served_by_hyper(&host) {
        let mut conn = after_hyper(&srv, what, &first).await;
        let req = Req::get("/ch/c/poll?timeout=0")
            .host(&host)
            .header("X-Big", &"b".repeat(200 * 1024));
        let _ = conn.stream.write_all(&req.to_bytes()).await;
        let r = conn.response("GET").await;
        r.expect_error(431, &["request head too large", "max 32768 bytes"]);
    }
    srv.publish("c", "still here").await;
    assert_eq!(text(&sse.next_event().await), "still here");
}

#[tokio::test]
async fn a_later_url_longer_than_the_head_limit_is_414_json() {
    let srv = Server::start(small()).await;
    let host = srv.host();
    for (what, first) in served_by_hyper(&host) {
        let mut conn = after_hyper(&srv, what, &first).await;
        let req = Req::get(&format!("/ch/c/poll?pad={}", "u".repeat(5000))).host(&host);
        let _ = conn.stream.write_all(&req.to_bytes()).await;
        let r = conn.response("GET").await;
        r.expect_error(414, &["url too long", "max 1024 bytes"]);
        assert!(conn.at_eof().await, "{what}");
    }
}

#[tokio::test]
async fn a_later_head_trickled_too_slowly_is_408_json() {
    let srv = Server::start(small()).await;
    let host = srv.host();
    for (what, first) in served_by_hyper(&host) {
        let mut conn = after_hyper(&srv, what, &first).await;
        let t0 = Instant::now();
        conn.send(b"GET /ch/c/poll HTTP/1.1\r\n").await;
        let mut i = 0;
        // A header line every 100 ms: never a whole head.
        let got = loop {
            let _ = conn
                .stream
                .write_all(format!("X-{i}: 1\r\n").as_bytes())
                .await;
            i += 1;
            let deadline = Instant::now() + Duration::from_millis(100);
            if conn.fill_by(deadline).await.is_some() {
                break rest_of(&mut conn).await;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "{what}: no answer");
        };
        assert!(got.starts_with("HTTP/1.1 408"), "{what}: {got}");
        assert!(got.contains("application/json"), "{what}: {got}");
        assert!(
            got.contains("request head too slow (max 500 ms"),
            "{what}: {got}"
        );
    }
}

#[tokio::test]
async fn a_later_malformed_head_is_400_json() {
    let srv = Server::start(small()).await;
    let host = srv.host();
    for (what, first) in served_by_hyper(&host) {
        for bad in [
            format!("GET /ch/c/poll HTTP/1.1\r\nHost: {host}\r\nX-A: a\0b\r\n\r\n"),
            format!("GET /ch/c/poll HTTP/1.1\r\nHost: {host}\r\nX-A : a\r\n\r\n"),
            format!("GET /ch/c/poll HTTP/1.1\r\nHost: {host}\rX-A: a\r\n\r\n"),
        ] {
            let mut conn = after_hyper(&srv, what, &first).await;
            conn.send(bad.as_bytes()).await;
            let r = conn.response("GET").await;
            r.expect_error(400, &["malformed request head"]);
            r.head.expect("connection", "close");
            assert!(conn.at_eof().await, "{what}");
        }
    }
}

/// A framing HTTP/1.1 forbids (hyper would refuse it, with no body) is
/// refused by tandem first, with the reason, on a later head too, and with
/// more headers than the lean path takes (those heads go to hyper).
#[tokio::test]
async fn a_framing_hyper_forbids_is_400_json_on_every_head() {
    let srv = Server::start(small()).await;
    let host = srv.host();
    let padding: String = (0..60).map(|i| format!("X-{i}: 1\r\n")).collect();
    let post = format!("POST /ch/c HTTP/1.1\r\nHost: {host}\r\n");
    let cases = [
        (
            "Content-Length: 1\r\nContent-Length: 2\r\n\r\nXY",
            "conflicting Content-Length headers",
        ),
        (
            "Content-Length: 1, 1\r\n\r\nX",
            "invalid Content-Length: digits only",
        ),
        (
            "Transfer-Encoding: gzip\r\n\r\n",
            "a Transfer-Encoding must end with chunked",
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n",
            "must end with chunked",
        ),
    ];
    for (rest, why) in cases {
        for padded in [false, true] {
            let pad = if padded { padding.as_str() } else { "" };
            let bad = format!("{post}{pad}{rest}");
            // First on a fresh connection, then after a page hyper served.
            for (what, first) in [("fresh", None)].into_iter().chain(
                served_by_hyper(&host)
                    .into_iter()
                    .map(|(w, r)| (w, Some(r))),
            ) {
                let mut conn = match &first {
                    None => srv.connect().await,
                    Some(first) => after_hyper(&srv, what, first).await,
                };
                conn.send(bad.as_bytes()).await;
                let r = conn.response("POST").await;
                r.expect_error(400, &["malformed request head", why]);
                r.head.expect("connection", "close");
                assert!(conn.at_eof().await, "{what} {why}");
            }
        }
    }
    // HTTP/1.0 has no transfer codings.
    let mut conn = srv.connect().await;
    let old = format!(
        "POST /ch/c HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    conn.send(old.as_bytes()).await;
    conn.response("POST")
        .await
        .expect_error(400, &["Transfer-Encoding in an HTTP/1.0 request"]);
    assert_eq!(srv.hub.info("c").last_id, 0, "nothing was published");
}

/// More headers than the lean path takes goes to hyper, within hyper's
/// count (100); beyond it, tandem refuses it (431) before hyper sees it.
#[tokio::test]
async fn many_headers_are_served_and_too_many_are_431_json() {
    let srv = Server::with_defaults().await;
    let host = srv.host();
    let mut many = Req::get("/ch/c/poll?timeout=0").host(&host);
    for i in 0..60 {
        many = many.header(&format!("X-{i}"), "1");
    }
    let mut conn = srv.connect().await;
    assert_eq!(conn.request(&many).await.head.status, 200);
    // And again on the same connection: it came back from hyper.
    assert_eq!(conn.request(&many).await.head.status, 200);
    for i in 60..120 {
        many = many.header(&format!("X-{i}"), "1");
    }
    let r = conn.request(&many).await;
    r.expect_error(431, &["too many request headers", "max 100"]);
}

/// The lean path writes the frames that are ready together as one chunk
/// (one write); hyper writes one chunk per frame. A stream opened after a
/// page on the same connection is the lean path's: the three buffered
/// events come in the first chunk, with the stream's opening.
#[tokio::test]
async fn a_stream_after_a_page_is_served_on_the_lean_path() {
    let srv = Server::with_defaults().await;
    let host = srv.host();
    for data in ["one", "two", "three"] {
        srv.publish("c", data).await;
    }
    let mut conn = srv.connect().await;
    let r = conn.request(&Req::get("/").host(&host)).await;
    assert_eq!(r.head.status, 200);
    conn.send(&Req::get("/ch/c/sse?since=0").host(&host).to_bytes())
        .await;
    let head = conn.read_head().await;
    assert_eq!(head.status, 200, "{}", head.raw);
    head.expect("transfer-encoding", "chunked");
    raw_until(&mut conn, "data: three").await;
    let raw = String::from_utf8_lossy(conn.buffered()).into_owned();
    let (size, rest) = raw.split_once("\r\n").expect("a chunk");
    let size = usize::from_str_radix(size, 16).expect("a chunk size");
    let first = &rest[..size];
    assert!(
        first.contains("data: one") && first.contains("data: three"),
        "one chunk: {raw:?}"
    );
    // And it streams.
    srv.publish("c", "four").await;
    raw_until(&mut conn, "data: four").await;
}

/// Reads raw bytes until `needle` is among them (5 s at most).
async fn raw_until(conn: &mut Conn, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(conn.buffered()).contains(needle) {
        match conn.fill_by(deadline).await {
            Some(n) if n > 0 => {}
            _ => panic!(
                "no {needle:?}: {:?}",
                String::from_utf8_lossy(conn.buffered())
            ),
        }
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let srv = Server::with_defaults().await;
    let host = srv.host();
    let mut conn = srv.connect().await;
    let mut bytes = Vec::new();
    bytes.extend(Req::get("/").host(&host).to_bytes());
    bytes.extend(Req::post("/ch/c", b"first").host(&host).to_bytes());
    bytes.extend(Req::get("/ch/c/poll?since=0").host(&host).to_bytes());
    bytes.extend(
        Req::post("/ch/c", b"second")
            .chunked()
            .host(&host)
            .to_bytes(),
    );
    bytes.extend(Req::get("/ch/c/poll?since=1").host(&host).to_bytes());
    conn.send(&bytes).await;
    assert_eq!(conn.response("GET").await.head.status, 200);
    assert_eq!(conn.response("POST").await.text(), "{\"id\":1}");
    let poll = conn.response("GET").await.json();
    assert_eq!(poll["events"][0]["data"], "first", "{poll}");
    assert_eq!(conn.response("POST").await.text(), "{\"id\":2}");
    let poll = conn.response("GET").await.json();
    assert_eq!(poll["events"][0]["data"], "second", "{poll}");
    // And a bad head pipelined behind a page is tandem's to refuse.
    let mut conn = srv.connect().await;
    let mut bytes = Req::get("/").host(&host).to_bytes();
    bytes.extend(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-A: a\0b\r\n\r\n").as_bytes());
    conn.send(&bytes).await;
    assert_eq!(conn.response("GET").await.head.status, 200);
    conn.response("GET")
        .await
        .expect_error(400, &["malformed request head"]);
}

#[tokio::test]
async fn a_chunked_publish_then_a_publish_with_a_length() {
    let srv = Server::with_defaults().await;
    let host = srv.host();
    let mut conn = srv.connect().await;
    let r = conn
        .request(&Req::post("/ch/c", b"chunked").chunked().host(&host))
        .await;
    assert_eq!(r.text(), "{\"id\":1}");
    let r = conn
        .request(&Req::post("/ch/c", b"length").host(&host))
        .await;
    assert_eq!(r.text(), "{\"id\":2}");
    let r = conn
        .request(&Req::post("/ch/c", b"chunked again").chunked().host(&host))
        .await;
    assert_eq!(r.text(), "{\"id\":3}");
}

#[tokio::test]
async fn expect_100_continue_then_another_request() {
    let srv = Server::with_defaults().await;
    let host = srv.host();
    let mut conn = srv.connect().await;
    conn.send(
        format!(
            "POST /ch/c HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    let cont = conn.read_head().await;
    assert_eq!(cont.status, 100, "{}", cont.raw);
    conn.send(b"hello").await;
    assert_eq!(conn.response("POST").await.text(), "{\"id\":1}");
    let r = conn
        .request(&Req::post("/ch/c", b"again").host(&host))
        .await;
    assert_eq!(r.text(), "{\"id\":2}");
}

/// A body the service answered without reading: what follows it cannot be
/// told apart from the body, so the connection closes after the answer and
/// nothing behind it is served.
#[tokio::test]
async fn an_unread_body_closes_the_connection() {
    let srv = Server::with_defaults().await;
    let host = srv.host();
    let smuggled =
        format!("POST /ch/smuggled HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1\r\n\r\nX");
    let mut conn = srv.connect().await;
    // `/healthz` takes no POST: 405, body unread.
    let mut bytes =
        format!("POST /healthz HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    bytes.extend(format!("{:x}\r\n{smuggled}\r\n", smuggled.len()).as_bytes());
    conn.send(&bytes).await;
    let r = conn.response("POST").await;
    assert_eq!(r.head.status, 405, "{}", r.head.raw);
    // The body never ended (no last chunk): the connection closes.
    let rest = rest_of(&mut conn).await;
    assert!(!rest.contains("HTTP/1.1"), "one answer: {rest}");
    assert_eq!(srv.hub.info("smuggled").last_id, 0);
}

#[tokio::test]
async fn connection_close_and_http10_end_the_connection() {
    let srv = Server::with_defaults().await;
    let host = srv.host();
    for req in [
        Req::get("/").host(&host).header("Connection", "close"),
        Req::get("/").host(&host).http10(),
        Req::get("/ch/c/poll?timeout=0").host(&host).http10(),
    ] {
        let mut conn = srv.connect().await;
        let r = conn.request(&req).await;
        assert_eq!(r.head.status, 200, "{}", r.head.raw);
        assert!(conn.at_eof().await);
    }
    // HTTP/1.0 with keep-alive stays open, as hyper keeps it.
    let mut conn = srv.connect().await;
    let req = Req::get("/ch/c/poll?timeout=0")
        .host(&host)
        .http10()
        .header("Connection", "keep-alive");
    assert_eq!(conn.request(&req).await.head.status, 200);
    assert_eq!(conn.request(&req).await.head.status, 200);
}

/// A connection idle after a hyper exchange is closed after
/// `--idle-timeout` by tandem's own timer.
#[tokio::test]
async fn an_idle_connection_after_hyper_is_closed() {
    let srv = Server::start(config().idle_timeout(Duration::from_millis(500))).await;
    let mut conn = srv.connect().await;
    let t0 = Instant::now();
    let r = conn.request(&Req::get("/").host(&srv.host())).await;
    assert_eq!(r.head.status, 200);
    assert!(conn.at_eof().await);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn shutdown_after_a_hyper_exchange_closes_the_connection() {
    let mut srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    // A long-poll held, then the server shuts down: the poll is answered
    // at once, says the connection closes, and it does.
    conn.send(
        &Req::get("/ch/c/poll?timeout=30")
            .host(&srv.host())
            .to_bytes(),
    )
    .await;
    wait_until("the poll is held", || async {
        srv.hub.info("c").subscribers.iter().sum::<usize>() >= 1
    })
    .await;
    srv.trigger_shutdown();
    let r = conn.response("GET").await;
    assert_eq!(r.head.status, 200, "{}", r.head.raw);
    r.head.expect("connection", "close");
    assert!(conn.at_eof().await);
    srv.shutdown().await;
}

/// HTTP/1.1 over TLS takes the same connection code: after a page, a
/// malformed head and a head over the limit are tandem's to refuse.
#[tokio::test]
async fn over_tls_later_heads_are_tandems_too() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::new();
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    let srv = Server::start(small().tls(tls)).await;
    for (bad, want) in [
        (
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_string(),
            "malformed request head",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(5000)
            ),
            "request head too large (max 4096 bytes)",
        ),
    ] {
        let mut io = pki.connect(srv.port(), &[b"http/1.1"]).await;
        io.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        // The page, whole (its length is in its head), then the bad head.
        let page_end = loop {
            let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
                .await
                .expect("the page within 5 s")
                .expect("read");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .expect("a length")
                    .parse()
                    .unwrap();
                if body.len() >= len {
                    break head.len() + 4 + len;
                }
            }
        };
        assert!(got.starts_with(b"HTTP/1.1 200"));
        let _ = io.write_all(bad.as_bytes()).await;
        let mut rest = got.split_off(page_end);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let rest = String::from_utf8_lossy(&rest);
        assert!(rest.starts_with("HTTP/1.1 4"), "{rest}");
        assert!(
            rest.contains("application/json") && rest.contains(want),
            "{rest}"
        );
    }
}
