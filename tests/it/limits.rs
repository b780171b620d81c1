//! Limits and errors: each refusal has the fitting status and a JSON body
//! naming the limit; a refused publish publishes nothing, and other clients
//! keep working.

use kit::*;

fn small() -> Setup {
    config().max_event_bytes(1024).max_parts(3)
}

both_flavors!(event_too_large_is_413);
async fn event_too_large_is_413(flavor: Flavor) {
    let srv = flavor.start(small()).await;
    // Declared too large (Content-Length).
    let r = srv.post("/ch/c", Some("text/plain"), &[b'x'; 1025]).await;
    r.expect_error(413, &["event too large", "1024"]);
    // Too large without a declared length (chunked).
    let r = srv.send(Req::post("/ch/c", &[b'x'; 3000]).chunked()).await;
    r.expect_error(413, &["event too large", "1024"]);
    // A form whose data field is too large.
    let body = format!("type=t&data={}", "y".repeat(1025));
    let r = srv
        .post(
            "/ch/c",
            Some("application/x-www-form-urlencoded"),
            body.as_bytes(),
        )
        .await;
    r.expect_error(413, &["event too large", "1024"]);
    // One multipart part too large.
    let big = vec![b'z'; 1025];
    let body = form_data("bb", &[("a", None, None, b"ok"), ("b", None, None, &big)]);
    let r = srv
        .post("/ch/c", Some("multipart/form-data; boundary=bb"), &body)
        .await;
    r.expect_error(413, &["too large", "1024"]);
    assert_eq!(srv.hub.info("c").last_id, 0, "nothing was published");

    // Exactly the limit is fine.
    let r = srv.post("/ch/c", Some("text/plain"), &[b'x'; 1024]).await;
    assert_eq!(r.head.status, 202);
}

both_flavors!(default_event_limit_is_64_kib);
async fn default_event_limit_is_64_kib(flavor: Flavor) {
    let srv = flavor
        .start(config().max_event_bytes(tandem::Config::default().max_event_bytes))
        .await;
    let r = srv
        .post("/ch/c", Some("application/octet-stream"), &vec![0u8; 65537])
        .await;
    r.expect_error(413, &["event too large", "65536"]);
    let r = srv
        .post("/ch/c", Some("application/octet-stream"), &vec![0u8; 65536])
        .await;
    assert_eq!(r.head.status, 202);
}

both_flavors!(too_many_parts_is_413_and_publishes_nothing);
async fn too_many_parts_is_413_and_publishes_nothing(flavor: Flavor) {
    let srv = flavor.start(small()).await;
    let parts: Vec<Part> = vec![("p", None, None, b"x"); 4];
    let body = form_data("zz", &parts);
    let r = srv
        .post("/ch/c", Some("multipart/form-data; boundary=zz"), &body)
        .await;
    r.expect_error(413, &["too many parts", "3"]);
    assert_eq!(srv.info("c").await["last_id"], 0);
    let body = form_data("zz", &parts[..3]);
    let r = srv
        .post("/ch/c", Some("multipart/form-data; boundary=zz"), &body)
        .await;
    assert_eq!(r.text(), "{\"ids\":[1,2,3]}");
}

both_flavors!(bad_channel_names_are_400);
async fn bad_channel_names_are_400(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let long = "a".repeat(129);
    for path in [
        "/ch/a%20b/poll".to_string(),
        "/ch/a!b/sse".to_string(),
        "/ch/%ff/poll".to_string(),
        "/ch//poll".to_string(),
        format!("/ch/{long}/poll"),
        format!("/ch/{long}"),
    ] {
        srv.get(&path)
            .await
            .expect_error(400, &["invalid channel name", "128"]);
    }
    srv.post("/ch/a$b", Some("text/plain"), b"x")
        .await
        .expect_error(400, &["invalid channel name"]);
    // 128 characters is fine.
    let ok = "a".repeat(128);
    let r = srv.get(&format!("/ch/{ok}/poll?timeout=0")).await;
    assert_eq!(r.head.status, 200);
    assert_eq!(srv.hub.channel_count(), 1, "refusals made no channels");
}

both_flavors!(bad_types_are_400_and_publish_nothing);
async fn bad_types_are_400_and_publish_nothing(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    srv.post("/ch/c?type=a%20b", Some("text/plain"), b"x")
        .await
        .expect_error(400, &["invalid event type", "64"]);
    let long = "t".repeat(65);
    srv.post(&format!("/ch/c?type={long}"), None, b"x")
        .await
        .expect_error(400, &["invalid event type"]);
    srv.send(Req::post("/ch/c", b"x").header("Event-Type", "no/slash"))
        .await
        .expect_error(400, &["invalid event type"]);
    srv.post(
        "/ch/c",
        Some("application/x-www-form-urlencoded"),
        b"type=%3Cscript%3E&data=x",
    )
    .await
    .expect_error(400, &["invalid event type"]);
    // A multipart with one bad part name: the good parts are not published either.
    let body = form_data(
        "q",
        &[("fine", None, None, b"1"), ("not fine", None, None, b"2")],
    );
    srv.post("/ch/c", Some("multipart/form-data; boundary=q"), &body)
        .await
        .expect_error(400, &["invalid event type"]);
    // Same when the last part's content type is the problem.
    let long_ct = format!("application/{}", "x".repeat(130));
    let body = form_data(
        "q",
        &[
            ("one", None, None, b"1"),
            ("two", Some("f.bin"), Some(long_ct.as_str()), b"2"),
        ],
    );
    srv.post("/ch/c", Some("multipart/form-data; boundary=q"), &body)
        .await
        .expect_error(400, &["invalid content type", "128"]);
    srv.post("/ch/c", Some(&long_ct), b"x")
        .await
        .expect_error(400, &["invalid content type"]);
    // A header that is not printable ASCII is refused, not silently dropped.
    srv.send(Req::post("/ch/c", b"x").header("Content-Type", "text/plain; é"))
        .await
        .expect_error(400, &["content-type", "ascii"]);
    assert_eq!(srv.hub.info("c").last_id, 0);
}

both_flavors!(bad_cursors_and_queries_are_400);
async fn bad_cursors_and_queries_are_400(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    for q in [
        "since=abc",
        "since=-1",
        "since=",
        "since=1.5",
        "since=99999999999999999999999",
        "since=K3J:1",
        "since=:1",
        "since=ab:",
        "since=ab:1:2",
        "since=0123456789abcdefg:1",
        "since=ab%3A-1",
    ] {
        srv.get(&format!("/ch/c/poll?{q}"))
            .await
            .expect_error(400, &["invalid cursor", "in since", "EPOCH:ID or ID"]);
    }
    srv.get("/ch/c/sse?backlog=x")
        .await
        .expect_error(400, &["backlog"]);
    srv.get("/ch/c/poll?timeout=forever")
        .await
        .expect_error(400, &["timeout"]);
    srv.get("/ch/c/poll?client=a%20b")
        .await
        .expect_error(400, &["invalid client id"]);
    let r = srv
        .send(Req::get("/ch/c/sse").header("Last-Event-ID", "last"))
        .await;
    r.expect_error(
        400,
        &["invalid cursor \"last\" in Last-Event-ID", "EPOCH:ID or ID"],
    );
    let r = srv
        .send(Req::get("/ch/c/sse").header("Last-Event-ID", "Ab:3"))
        .await;
    r.expect_error(400, &["Last-Event-ID", "EPOCH:ID or ID"]);
    // Unknown parameters (cache busters) are ignored.
    let r = srv.get("/ch/c/poll?timeout=0&_=12345").await;
    assert_eq!(r.head.status, 200);
}

both_flavors!(malformed_bodies_are_400);
async fn malformed_bodies_are_400(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    srv.post("/ch/c", Some("multipart/form-data"), b"x")
        .await
        .expect_error(400, &["boundary"]);
    srv.post("/ch/c", Some("multipart/form-data; boundary=k"), b"garbage")
        .await
        .expect_error(400, &["multipart"]);
    srv.post(
        "/ch/c",
        Some("application/x-www-form-urlencoded"),
        b"type=chat",
    )
    .await
    .expect_error(400, &["data"]);
    assert_eq!(srv.hub.info("c").last_id, 0);
}

both_flavors!(wrong_method_is_405_with_allow);
async fn wrong_method_is_405_with_allow(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let cases = [
        ("PUT", "/ch/c", "GET, POST, OPTIONS"),
        ("DELETE", "/ch/c", "GET, POST, OPTIONS"),
        ("POST", "/ch/c/sse", "GET, OPTIONS"),
        ("PATCH", "/ch/c/poll", "GET, OPTIONS"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
        ("POST", "/ch/c/info", "GET, HEAD"),
        ("OPTIONS", "/healthz", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let r = srv.send(Req::new(method, path)).await;
        r.expect_error(405, &["not allowed", method]);
        r.head.expect("allow", allow);
    }
    assert_eq!(srv.hub.info("c").last_id, 0);
}

both_flavors!(unknown_routes_are_404);
async fn unknown_routes_are_404(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    for path in [
        "/nope",
        "/ch/c/nope",
        "/ch",
        "/ch/c/sse/extra",
        "/healthz/x",
    ] {
        srv.get(path).await.expect_error(404, &["no such route"]);
    }
}

both_flavors!(refusals_leave_other_clients_working);
async fn refusals_leave_other_clients_working(flavor: Flavor) {
    let srv = flavor.start(small()).await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let mut mp = srv.multipart("/ch/c/multipart").await;

    srv.post("/ch/c", Some("text/plain"), &[b'x'; 2000])
        .await
        .expect_error(413, &["event too large"]);
    srv.post("/ch/c?type=bad%20type", None, b"x")
        .await
        .expect_error(400, &["invalid event type"]);
    let parts: Vec<Part> = vec![("p", None, None, b"x"); 5];
    srv.post(
        "/ch/c",
        Some("multipart/form-data; boundary=zz"),
        &form_data("zz", &parts),
    )
    .await
    .expect_error(413, &["too many parts"]);
    srv.send(Req::new("PUT", "/ch/c").body(b"x"))
        .await
        .expect_error(405, &["not allowed"]);
    let info = srv.info("c").await;
    assert_eq!(info["last_id"], 0, "{info}");
    assert_eq!(info["subscribers"]["sse"], 1);
    assert_eq!(info["subscribers"]["multipart"], 1);

    // The first good event is id 1 and both streams get it.
    let id = srv.publish("c", "still here").await;
    assert_eq!(id, 1);
    assert_eq!(text(&sse.next_event().await), "still here");
    assert_eq!(mp.next_event().await.id, Some(1));
}

both_flavors!(refusal_keeps_the_connection_usable_when_the_body_was_read);
async fn refusal_keeps_the_connection_usable_when_the_body_was_read(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut conn = srv.connect().await;
    let r = conn
        .request(&Req::post("/ch/c?type=a%20b", b"x").host(&srv.host()))
        .await;
    r.expect_error(400, &["invalid event type"]);
    let r = conn
        .request(&Req::post("/ch/c", b"ok").host(&srv.host()))
        .await;
    assert_eq!(r.text(), "{\"id\":1}");
}

// ---- One set of request limits on every connection path ----
//
// `serve` reads every request head itself and then serves it on the lean
// path (streams, Content-Length publishes) or lends the connection to hyper
// for the one exchange (chunked publishes, pages). The limits
// must not depend on which (and the heads after the first on a connection
// get the same: tests/it/heads.rs).

/// A request of each path: (what, request) with `extra` headers.
fn every_path(extra: &[(&str, &str)], path_suffix: &str) -> Vec<(&'static str, Req)> {
    let with = |mut r: Req| {
        for (k, v) in extra {
            r = r.header(k, v);
        }
        r
    };
    vec![
        (
            "a stream (lean)",
            with(Req::get(&format!("/ch/c/sse{path_suffix}"))),
        ),
        (
            "a publish with Content-Length (lean)",
            with(Req::post(&format!("/ch/c{path_suffix}"), b"x")),
        ),
        (
            "a long-poll (lean)",
            with(Req::get(&format!("/ch/c/poll?timeout=30{path_suffix}"))),
        ),
        (
            "a chunked publish (hyper)",
            with(Req::post(&format!("/ch/c{path_suffix}"), b"x")).chunked(),
        ),
        ("a page (hyper)", with(Req::get(&format!("/{path_suffix}")))),
    ]
}

#[tokio::test]
async fn a_200_kb_header_is_431_on_every_path() {
    let srv = Server::with_defaults().await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let big = "b".repeat(200 * 1024);
    for (what, req) in every_path(&[("X-Big", &big)], "") {
        let r = srv.send(req).await;
        assert_eq!(r.head.status, 431, "{what}: {}", r.head.raw);
        r.expect_error(431, &["request head too large", "max 32768 bytes"]);
        r.head.expect("connection", "close");
    }
    // Many headers adding up to too much are the same.
    let mut req = Req::get("/ch/c/poll");
    let piece = "p".repeat(1000);
    for i in 0..40 {
        req = req.header(&format!("X-{i}"), &piece);
    }
    srv.send(req)
        .await
        .expect_error(431, &["request head too large"]);
    assert_eq!(srv.hub.info("c").last_id, 0, "nothing was published");
    // The subscriber never noticed.
    srv.publish("c", "still here").await;
    assert_eq!(text(&sse.next_event().await), "still here");
}

both_flavors!(a_long_url_is_414_on_every_path);
async fn a_long_url_is_414_on_every_path(flavor: Flavor) {
    let srv = flavor
        .start(config().max_head_bytes(8192).max_url_bytes(2048))
        .await;
    // Within the head limit: the service refuses it, whichever path.
    let long = format!("&pad={}", "u".repeat(3000));
    for (what, req) in every_path(&[], &format!("?x=1{long}")) {
        let r = srv.send(req).await;
        assert_eq!(r.head.status, 414, "{what}: {}", r.head.raw);
        r.expect_error(414, &["url too long", "max 2048 bytes"]);
    }
    // Exactly at the limit is fine.
    let path = "/ch/c/poll?timeout=0&pad=";
    let ok = format!("{path}{}", "u".repeat(2048 - path.len()));
    assert_eq!(srv.get(&ok).await.head.status, 200);
    assert_eq!(srv.hub.info("c").last_id, 0, "nothing was published");
}

/// A URL longer than the whole head limit: still 414 (not 431), since the
/// request line is what is wrong, on every path (`serve` reads it first).
#[tokio::test]
async fn a_url_longer_than_the_head_limit_is_414() {
    let srv = Server::with_defaults().await;
    let long = format!("&pad={}", "u".repeat(100 * 1024));
    for (what, req) in every_path(&[], &format!("?x=1{long}")) {
        let r = srv.send(req).await;
        assert_eq!(r.head.status, 414, "{what}: {}", r.head.raw);
        r.expect_error(414, &["url too long", "max 8192 bytes"]);
    }
}

// ---- A timeout for every phase of a request ----

/// Trickles header lines one every 100 ms until the server answers or
/// closes; returns what it sent back and how long that took.
async fn trickle_head(conn: &mut Conn, start: &[u8]) -> (Vec<u8>, std::time::Duration) {
    use tokio::io::AsyncWriteExt;
    let t0 = std::time::Instant::now();
    let _ = conn.stream.write_all(start).await;
    for i in 0..100 {
        // Writes fail once the server has closed: that is the point.
        let _ = conn
            .stream
            .write_all(format!("X-{i}: 1\r\n").as_bytes())
            .await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        if conn.fill_by(deadline).await.is_some() {
            break;
        }
    }
    // Whatever else comes, up to the end.
    while conn
        .fill_by(tokio::time::Instant::now() + std::time::Duration::from_secs(5))
        .await
        .is_some_and(|n| n > 0)
    {}
    (conn.buffered().to_vec(), t0.elapsed())
}

fn quick_timeouts() -> Setup {
    config()
        .head_timeout(std::time::Duration::from_millis(500))
        .body_timeout(std::time::Duration::from_millis(500))
        .idle_timeout(std::time::Duration::from_secs(20))
}

/// Slowloris: a first head trickled slower than `--head-timeout` is cut
/// with 408, whichever path it would have taken (serve reads every
/// head), long before the idle timeout.
#[tokio::test]
async fn a_head_trickled_too_slowly_is_cut() {
    let srv = Server::start(quick_timeouts()).await;
    let mut sse = srv.sse("/ch/c/sse").await;
    for start in [
        "GET /ch/c/sse HTTP/1.1\r\n",
        "POST /ch/c HTTP/1.1\r\nContent-Length: 1\r\n",
        "GET /ch/c/poll HTTP/1.1\r\n",
        "POST /ch/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let mut conn = srv.connect().await;
        let (got, took) = trickle_head(&mut conn, start.as_bytes()).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 408"), "{start:?}: {got}");
        assert!(got.contains("request head too slow (max 500 ms"), "{got}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "{start:?}: {took:?}"
        );
    }
    srv.publish("c", "still here").await;
    assert_eq!(text(&sse.next_event().await), "still here");
}

// A body that stops mid-way is answered 408 after `--body-timeout` and
// publishes nothing: with `Content-Length` (serve: the lean path) and
// chunked (hyper, which used to hold it for ever).
both_flavors!(a_body_that_stops_is_408);
async fn a_body_that_stops_is_408(flavor: Flavor) {
    let srv = flavor.start(quick_timeouts()).await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let host = srv.host();
    for (what, bytes) in [
        (
            "content-length",
            format!("POST /ch/c HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\n01234"),
        ),
        (
            "chunked",
            format!(
                "POST /ch/c HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n"
            ),
        ),
        (
            "form, chunked",
            format!(
                "POST /ch/c HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n5\r\ndata=\r\n"
            ),
        ),
    ] {
        let mut conn = srv.connect().await;
        conn.send(bytes.as_bytes()).await;
        let t0 = std::time::Instant::now();
        let r = conn.response("POST").await;
        assert_eq!(r.head.status, 408, "{what}: {}", r.head.raw);
        r.expect_error(408, &["request body too slow", "500 ms"]);
        assert!(conn.at_eof().await, "{what}: the connection ends");
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{what}");
    }
    assert_eq!(srv.hub.info("c").last_id, 0, "nothing was published");
    srv.publish("c", "still here").await;
    assert_eq!(text(&sse.next_event().await), "still here");
}

/// Idle keep-alive connections are closed after `--idle-timeout` on both
/// paths: after a lean publish, after a long-poll, after a page hyper
/// served (tandem's timer, not hyper's).
#[tokio::test]
async fn idle_connections_are_closed_on_both_paths() {
    let srv =
        Server::start(quick_timeouts().idle_timeout(std::time::Duration::from_millis(500))).await;
    for req in [
        Req::post("/ch/c", b"x"),
        Req::get("/ch/c/poll?timeout=0"),
        Req::get("/"),
    ] {
        let mut conn = srv.connect().await;
        let r = conn.request(&req.clone().host(&srv.host())).await;
        assert!(r.head.status < 300, "{}", r.head.raw);
        let t0 = std::time::Instant::now();
        assert!(conn.at_eof().await);
        assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    }
}

// ---- Per client address: connections, publishes, new sessions ----

/// A connection from another loopback address (the whole of 127/8 is
/// this host), so a test has two client addresses.
async fn connect_from(srv: &Server, ip: &str) -> Conn {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{ip}:0").parse().expect("address"))
        .expect("bind a loopback address");
    Conn::from_stream(socket.connect(srv.addr).await.expect("connect"))
}

/// `n` publishes pipelined on one connection in one write; their statuses.
async fn pipelined_publishes(conn: &mut Conn, srv: &Server, n: usize, xff: &str) -> Vec<Response> {
    let mut bytes = Vec::new();
    for i in 0..n {
        let mut req = Req::post("/ch/c", format!("p{i}").as_bytes()).host(&srv.host());
        if !xff.is_empty() {
            req = req.header("X-Forwarded-For", xff);
        }
        req.write(&mut bytes);
    }
    conn.send(&bytes).await;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(conn.response("POST").await);
    }
    out
}

/// The first `limit` were taken, and at least one after them refused with
/// 429, `Retry-After` and the limit named (a slow machine may refill a
/// token or two while the rest are answered: no timing is assumed).
fn expect_throttled(rs: &[Response], limit: usize, what: &str) -> usize {
    for r in &rs[..limit] {
        assert_eq!(r.head.status, 202, "{what}: {}", r.text());
    }
    let refused: Vec<_> = rs.iter().filter(|r| r.head.status == 429).collect();
    assert!(!refused.is_empty(), "{what}: none of {} refused", rs.len());
    for r in &refused {
        r.expect_error(
            429,
            &[
                "too many publishes from one address",
                &format!("max {limit} a second"),
            ],
        );
        r.head.expect("retry-after", "1");
    }
    rs.iter().filter(|r| r.head.status == 202).count()
}

both_flavors!(an_address_over_its_publish_rate_gets_429_and_others_do_not);
async fn an_address_over_its_publish_rate_gets_429_and_others_do_not(flavor: Flavor) {
    // 127.0.0.1 is a trusted proxy (its X-Forwarded-For names the client),
    // 127.0.0.2 an ordinary client. (The hyper flavor is an embedder's
    // server giving hyper `Service::for_peer`.)
    let srv = flavor
        .start(
            config()
                .publishes_per_second(3)
                .trusted_proxies(vec!["127.0.0.1".into()]),
        )
        .await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let mut taken = 0;

    // Ten publishes at once from client A (behind the proxy): on `serve`,
    // the lean path.
    let mut conn = srv.connect().await;
    let rs = pipelined_publishes(&mut conn, &srv, 10, "203.0.113.1").await;
    taken += expect_throttled(&rs, 3, "lean, A");
    // The refusal read the body: the connection goes on.
    let r = conn
        .request(&Req::get("/ch/c/info").host(&srv.host()))
        .await;
    assert_eq!(r.head.status, 200);

    // hyper's path (chunked), client B: the same limit.
    let mut rs = Vec::new();
    for i in 0..10 {
        let req = Req::post("/ch/c", format!("q{i}").as_bytes())
            .header("X-Forwarded-For", "198.51.100.9, 203.0.113.2")
            .chunked();
        rs.push(srv.send(req).await);
    }
    taken += expect_throttled(&rs, 3, "hyper, B");

    // Client C, behind the same proxy, is unaffected by A and B.
    let r = srv
        .send(Req::post("/ch/c", b"c").header("X-Forwarded-For", "203.0.113.3"))
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    taken += 1;

    // An untrusted peer's X-Forwarded-For is ignored: naming A does not
    // make it A (refused), and naming a new address each time does not
    // get it past its own limit.
    let mut other = connect_from(&srv, "127.0.0.2").await;
    let r = other
        .request(
            &Req::post("/ch/c", b"d")
                .host(&srv.host())
                .header("X-Forwarded-For", "203.0.113.1"),
        )
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    taken += 1;
    let mut bytes = Vec::new();
    for i in 0..10 {
        Req::post("/ch/c", b"e")
            .host(&srv.host())
            .header("X-Forwarded-For", &format!("192.0.2.{i}"))
            .write(&mut bytes);
    }
    other.send(&bytes).await;
    let mut refused = 0;
    for _ in 0..10 {
        let r = other.response("POST").await;
        match r.head.status {
            202 => taken += 1,
            429 => refused += 1,
            s => panic!("{s}: {}", r.text()),
        }
    }
    assert!(refused > 0, "spoofed addresses got past the limit");

    assert_eq!(srv.hub.info("c").last_id as usize, taken);
    // The subscriber got every event taken, and keeps receiving.
    let id = srv.publish("c", "still here").await;
    loop {
        let e = sse.next_event().await;
        if e.id == Some(id) {
            assert_eq!(text(&e), "still here");
            break;
        }
    }
}

both_flavors!(an_address_over_its_connections_gets_429_and_others_do_not);
async fn an_address_over_its_connections_gets_429_and_others_do_not(flavor: Flavor) {
    let srv = flavor
        .start(
            config()
                .max_connections_per_addr(2)
                .trusted_proxies(vec!["127.0.0.3".into()]),
        )
        .await;
    let first = srv.sse("/ch/c/sse").await;
    let mut second = srv.sse("/ch/c/sse").await;
    let r = srv.get("/healthz").await;
    r.expect_error(429, &["too many connections from one address", "max 2"]);
    r.head.expect("retry-after", "1");
    // Another address is unaffected, and so are the open streams.
    let mut other = connect_from(&srv, "127.0.0.2").await;
    let r = other.request(&Req::get("/healthz").host(&srv.host())).await;
    assert_eq!(r.head.status, 200);
    let id = srv
        .publish_event("c", tandem::NewEvent::message("still here"))
        .await;
    assert_eq!(second.next_event().await.id, Some(id));
    // A trusted proxy's connections are not counted per address.
    let mut via_proxy = Vec::new();
    for _ in 0..3 {
        let mut c = connect_from(&srv, "127.0.0.3").await;
        let r = c.request(&Req::get("/healthz").host(&srv.host())).await;
        assert_eq!(r.head.status, 200);
        via_proxy.push(c);
    }
    // Once one leaves, there is room again.
    drop(first);
    srv.wait_subscribers("c", tandem::Transport::Sse, 1).await;
    wait_until("a slot of 127.0.0.1 frees up", || async {
        srv.get("/healthz").await.head.status == 200
    })
    .await;
}

#[tokio::test]
async fn an_address_over_its_new_sessions_gets_429_and_others_do_not() {
    let srv = Server::start(
        config()
            .sessions_per_minute(2)
            .trusted_proxies(vec!["127.0.0.1".into()]),
    )
    .await;
    let ask = |xff: &str| {
        Req::post(
            "/cobrowse/session",
            br#"{"url":"/portal/cart","title":"Your cart"}"#,
        )
        .header("Content-Type", "application/json")
        .header("X-Forwarded-For", xff)
    };
    for _ in 0..2 {
        assert_eq!(srv.send(ask("203.0.113.1")).await.head.status, 201);
    }
    let r = srv.send(ask("203.0.113.1")).await;
    r.expect_error(
        429,
        &["too many new sessions from one address", "max 2 a minute"],
    );
    let wait: u64 = r.head.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    // The same through hyper (chunked body).
    let r = srv.send(ask("203.0.113.1").chunked()).await;
    assert_eq!(r.head.status, 429, "{}", r.text());
    // Another customer is unaffected.
    assert_eq!(srv.send(ask("203.0.113.2")).await.head.status, 201);
}
