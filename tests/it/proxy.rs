//! tandem as a transparent reverse proxy (`--upstream`) in front of the
//! kit's small web application (`kit::Upstream`): what passes through
//! untouched, what is rewritten, what streams, and every trick that would
//! make it an open proxy.

use std::time::Duration;

use tokio::time::Instant;

use kit::{config, wait_until, Conn, Decoder, Flavor, Framing, Head, Req, Server, Upstream};
use tandem::proxy::ProxyConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn proxied() -> (Upstream, Server) {
    let up = Upstream::start().await;
    let srv = Server::start(config().proxy(&up.url())).await;
    (up, srv)
}

#[tokio::test]
async fn pages_statuses_and_bytes_pass_through() {
    let (up, srv) = proxied().await;
    // One client connection for several requests (keep-alive on both sides).
    let mut conn = srv.connect().await;
    let page = conn.request(&Req::get("/page").host(&srv.host())).await;
    assert_eq!(page.head.status, 200, "{}", page.head.raw);
    page.head.expect("content-type", "text/html; charset=utf-8");
    // An HTML page gets the co-browsing scripts, from tandem's prefix, where
    // a browser opens the head (here: no <head>, so before the <title>).
    let text = page.text();
    let (before, rest) = text.split_at(text.find("<title>").expect("the page"));
    assert_eq!(
        rest,
        "<title>upstream page</title><p>hello from upstream</p>"
    );
    assert!(
        before.starts_with("<!doctype html><script src=\"/_tandem/tandem.js\" nonce=\"")
            && before.contains("<script src=\"/_tandem/cobrowse.js\" nonce=\"")
            && before.ends_with("</script>"),
        "{before}"
    );
    assert!(!page.head.has("content-length"), "the length changed");
    for code in [404, 500] {
        let r = conn
            .request(&Req::get(&format!("/status/{code}")).host(&srv.host()))
            .await;
        assert_eq!(r.head.status, code, "{}", r.head.raw);
        assert_eq!(r.text(), format!("upstream status {code}"));
        r.head.expect("x-upstream-odd", "a  b,c;d");
        r.head.expect("content-type", "text/plain");
    }
    let bin = conn.request(&Req::get("/binary").host(&srv.host())).await;
    assert_eq!(bin.head.status, 200);
    assert_eq!(bin.body, (0..=255u8).collect::<Vec<u8>>(), "byte for byte");
    bin.head.expect("etag", "\"v1-binary\"");
    bin.head.expect("content-length", "256");
    bin.head.expect("content-type", "application/octet-stream");
    assert!(
        !bin.head.has("cache-control") && !bin.head.has("access-control-allow-origin"),
        "tandem adds none of its own headers to a proxied answer: {}",
        bin.head.raw
    );
    let head = conn
        .request(&Req::new("HEAD", "/binary").host(&srv.host()))
        .await;
    assert_eq!(head.head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(up.seen().len(), 5);
    // Answers read whole free their upstream connection for the next
    // request, from this client or another.
    for _ in 0..5 {
        assert_eq!(srv.get("/binary").await.body.len(), 256);
    }
    assert_eq!(up.connections(), 1, "one upstream connection, reused");
    // The upstream closes its idle connections: the next request still
    // gets through (on a new connection).
    up.close_connections();
    for _ in 0..3 {
        assert_eq!(srv.get("/binary").await.body.len(), 256);
    }
    assert!(up.connections() >= 2);
}

#[tokio::test]
async fn own_routes_live_under_the_prefix() {
    let (up, srv) = proxied().await;
    let mut events = srv.sse("/_tandem/ch/news/sse").await;
    // A publish with a Content-Length body under the prefix: the lean path.
    let r = srv
        .post("/_tandem/ch/news", Some("text/plain"), b"hello")
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    let e = events.next_event().await;
    assert_eq!(e.data, b"hello");
    assert!(
        up.seen().is_empty(),
        "tandem's own routes never reach the upstream"
    );

    // The same paths without the prefix are the application's, on every
    // connection path: not a tandem stream, not a tandem publish.
    let (head, mut body) = srv.open(Req::get("/ch/news/sse")).await;
    assert_eq!(head.status, 200);
    body.read_until("the upstream's answer", |b| b.ends_with(b"/ch/news/sse"))
        .await;
    assert_eq!(
        String::from_utf8_lossy(body.raw()),
        "upstream saw GET /ch/news/sse"
    );
    let r = srv
        .post("/ch/news", Some("text/plain"), b"for the app")
        .await;
    assert_eq!(r.text(), "upstream saw POST /ch/news");
    let r = srv.get("/_tandemx/ch/news").await;
    assert_eq!(r.text(), "upstream saw GET /_tandemx/ch/news");
    assert_eq!(srv.hub.info("news").last_id, 1, "nothing else published");
}

#[tokio::test]
async fn redirects_are_mapped_or_passed_never_followed() {
    let (up, srv) = proxied().await;
    let r = srv.get("/redirect/relative").await;
    assert_eq!(r.head.status, 302);
    r.head.expect("location", "/page");
    let r = srv.get("/redirect/own").await;
    assert_eq!(r.head.status, 302);
    r.head.expect("location", "/page?from=own");
    let r = srv.get("/redirect/other").await;
    assert_eq!(r.head.status, 302);
    r.head.expect("location", "http://other.example/elsewhere");
    let targets: Vec<String> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        ["/redirect/relative", "/redirect/own", "/redirect/other"],
        "no redirect is followed by tandem"
    );
}

#[tokio::test]
async fn cookie_domains_and_content_location_map_to_the_proxy() {
    let (up, srv) = proxied().await;
    let r = srv.get("/cookie").await;
    assert_eq!(r.head.status, 200);
    let cookies: Vec<&str> = r
        .head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        cookies,
        [
            "sid=abc; Path=/; HttpOnly",
            "theme=dark; Domain=other.example; Path=/",
            "plain=1; Path=/"
        ]
    );
    r.head.expect("content-location", "/cookie/here");
    drop(up);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_download_streams() {
    let (up, srv) = proxied().await;
    gated_download(&up, &srv, 10 * 1024 * 1024).await;
}

/// Downloads `n` bytes of `/download` through the proxy with the upstream
/// holding everything after the first MiB until released: the first MiB
/// must come through before the upstream sends the rest, then every byte
/// as the upstream sent it.
async fn gated_download(up: &Upstream, srv: &Server, n: usize) {
    let (head, mut body) = srv
        .open(Req::get(&format!("/download?bytes={n}&gate=1")))
        .await;
    assert_eq!(head.status, 200, "{}", head.raw);
    head.expect("content-length", &n.to_string());
    let mut got = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 1 << 20 {
        got.extend(
            body.next_by(deadline)
                .await
                .expect("the first MiB, streamed"),
        );
    }
    assert_eq!(got.len(), 1 << 20, "nothing past the gate yet");
    up.release();
    while let Some(chunk) = body.next().await {
        got.extend(chunk);
    }
    assert!(body.ended_cleanly());
    assert_eq!(got.len(), n);
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8),
        "every byte as the upstream sent it"
    );
}

/// A POST with a small `Content-Length` body outside the prefix is the
/// application's: not taken for a tandem publish on the lean exchange path
/// (which would read the answer whole before writing it), so its answer
/// streams too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posts_answer_streams_too() {
    let (up, srv) = proxied().await;
    const N: usize = 3 * 1024 * 1024;
    let req = Req::post(&format!("/download?bytes={N}&gate=1"), b"a=1")
        .header("Content-Type", "application/x-www-form-urlencoded");
    let (head, mut body) = srv.open(req).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < 1 << 20 {
        got += body
            .next_by(deadline)
            .await
            .expect("the first MiB before the upstream sends the rest")
            .len();
    }
    up.release();
    while let Some(chunk) = body.next().await {
        got += chunk.len();
    }
    assert_eq!(got, N);
    assert_eq!(up.last("/download").method, "POST");
}

/// Sends `head`, then `first`, waits until `ready`, sends `rest`; reads the
/// whole response meanwhile (the request carries `Connection: close`).
async fn upload(
    srv: &Server,
    head: String,
    first: Vec<u8>,
    rest: Vec<u8>,
    ready: impl std::future::Future<Output = ()> + Send + 'static,
) -> (Head, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await.unwrap();
        wr.write_all(&first).await.unwrap();
        ready.await;
        wr.write_all(&rest).await.unwrap();
        wr
    });
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut raw))
        .await
        .expect("the response within 20 s")
        .unwrap();
    drop(writer.await.unwrap());
    let (head, n) = Head::parse(&raw).unwrap().expect("a response head");
    let mut rest = raw[n..].to_vec();
    let mut dec = Decoder::new(Framing::of(&head, "POST"));
    let mut body = dec.decode(&mut rest).unwrap();
    dec.closed();
    body.extend(dec.decode(&mut rest).unwrap());
    assert!(dec.ended_cleanly(), "{}", head.raw);
    (head, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_streams_to_the_upstream() {
    let (up, srv) = proxied().await;
    let up = std::sync::Arc::new(up);
    let data: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        srv.host(),
        data.len()
    );
    let (first, rest) = data.split_at(1 << 20);
    let u = up.clone();
    // The rest is sent only once the upstream has received some of the body:
    // the proxy passes it on as it comes, not once it has it whole.
    let ready = async move {
        wait_until("the upstream receives the body's start", || {
            let n = u.received();
            async move { n > 0 }
        })
        .await;
    };
    let (head, body) = upload(&srv, head, first.to_vec(), rest.to_vec(), ready).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    head.expect("content-type", "application/x-test");
    assert_eq!(body.len(), data.len());
    assert!(body == data, "byte for byte");
    assert_eq!(
        up.last("/echo").header("content-length"),
        Some(data.len().to_string().as_str())
    );

    // A chunked upload too.
    let chunked = Req::post("/echo", &data[..300_000])
        .chunked()
        .host(&srv.host());
    let r = srv.send(chunked).await;
    assert_eq!(r.body, &data[..300_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstreams_own_sse_flows_event_by_event() {
    let (up, srv) = proxied().await;
    let (head, mut body) = srv.open(Req::get("/events")).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    head.expect("content-type", "text/event-stream");
    body.read_until("the stream's opening", |b| b.ends_with(b": open\n\n"))
        .await;
    wait_until("the upstream's stream is open", || {
        let n = up.sse_streams();
        async move { n == 1 }
    })
    .await;
    for word in ["one", "two", "three"] {
        up.push(word);
        let want = format!("data: {word}\n\n");
        body.read_until(&want, |b| b.ends_with(want.as_bytes()))
            .await;
    }
    assert_eq!(
        String::from_utf8_lossy(body.raw()),
        ": open\n\ndata: one\n\ndata: two\n\ndata: three\n\n"
    );
}

#[tokio::test]
async fn a_form_post_passes() {
    let (up, srv) = proxied().await;
    let r = srv
        .post(
            "/form?x=1",
            Some("application/x-www-form-urlencoded"),
            b"name=Ada&note=hi%21",
        )
        .await;
    assert_eq!(r.head.status, 201, "{}", r.head.raw);
    assert_eq!(r.text(), "form: name=Ada&note=hi%21");
    let seen = up.last("/form");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/form?x=1");
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn hop_by_hop_headers_go_and_forwarded_headers_come() {
    let (up, srv) = proxied().await;
    let req = Req::get("/anything?q=1")
        .header("Connection", "keep-alive, X-Secret")
        .header("X-Secret", "do not forward")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Connection", "keep-alive")
        .header("Proxy-Authorization", "Basic c2VjcmV0")
        .header("TE", "trailers, deflate")
        .header("X-Forwarded-For", "10.0.0.1")
        .header("X-Forwarded-For", "10.0.0.2")
        .header("X-Custom", "kept  as is")
        .header("Cookie", "a=1; b=2");
    let r = srv.send(req).await;
    assert_eq!(r.text(), "upstream saw GET /anything?q=1");
    let seen = up.last("/anything");
    let host = up.addr.to_string();
    assert_eq!(seen.header("host"), Some(host.as_str()));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("10.0.0.1, 10.0.0.2, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some(srv.host().as_str()));
    assert_eq!(seen.header("x-custom"), Some("kept  as is"));
    assert_eq!(seen.header("cookie"), Some("a=1; b=2"));
    assert_eq!(
        seen.header("te"),
        Some("trailers"),
        "only trailers is asked for"
    );
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert_eq!(
            seen.header(gone),
            None,
            "{gone} forwarded: {:?}",
            seen.headers
        );
    }
    assert!(seen
        .all("connection")
        .iter()
        .all(|v| !v.to_ascii_lowercase().contains("secret")));

    // Without a prior X-Forwarded-For the client's address alone.
    srv.get("/plain").await;
    assert_eq!(
        up.last("/plain").header("x-forwarded-for"),
        Some("127.0.0.1")
    );

    // And in the response.
    let r = srv.get("/hop").await;
    assert_eq!(r.text(), "hop");
    r.head.expect("x-kept", "yes");
    for gone in ["x-secret", "keep-alive", "proxy-authenticate"] {
        assert!(!r.head.has(gone), "{gone} passed back: {}", r.head.raw);
    }
}

#[tokio::test]
async fn open_proxy_tricks_are_refused() {
    let (up, srv) = proxied().await;
    let send = |raw: String| {
        let addr = srv.addr;
        async move {
            let mut conn = Conn::connect(addr).await;
            conn.send(raw.as_bytes()).await;
            conn.response("GET").await
        }
    };
    let upstream = up.addr.to_string();
    let me = srv.host();
    // Absolute-form, at another host and at the upstream itself.
    for target in [
        "http://other.example/".to_string(),
        format!("http://{upstream}/page"),
        format!("http://{me}/page"),
    ] {
        let r = send(format!("GET {target} HTTP/1.1\r\nHost: {me}\r\n\r\n")).await;
        r.expect_error(400, &["absolute-form"]);
    }
    // A Host that is not the proxy's own.
    for host in ["other.example", upstream.as_str(), "127.0.0.1:1"] {
        let r = srv.send(Req::get("/page").header("Host", host)).await;
        r.expect_error(403, &["host", "not one this proxy answers to"]);
    }
    // Two Hosts.
    let r = send(format!(
        "GET /page HTTP/1.1\r\nHost: {me}\r\nHost: other.example\r\n\r\n"
    ))
    .await;
    assert_eq!(r.head.status, 400, "{}", r.head.raw);
    // CONNECT.
    let r = send(
        "CONNECT other.example:443 HTTP/1.1
Host: other.example:443

"
        .into(),
    )
    .await;
    r.expect_error(405, &["connect"]);
    // HTTP/1.0 without Host.
    let r = send("GET /page HTTP/1.0\r\n\r\n".into()).await;
    r.expect_error(400, &["host"]);
    assert!(
        up.seen().is_empty(),
        "none of them reached the upstream: {:?}",
        up.seen()
    );
    // The names the proxy answers to do work.
    let r = srv.send(Req::get("/page").header("Host", &me)).await;
    assert_eq!(r.head.status, 200);
}

#[tokio::test]
async fn public_hosts_are_accepted() {
    let up = Upstream::start().await;
    let cfg = ProxyConfig::new(up.url().parse().unwrap())
        .hosts(vec!["app.example".into(), "cdn.example:8443".into()]);
    let srv = Server::start(config().proxy_config(cfg)).await;
    for (host, ok) in [
        ("app.example", true),
        ("APP.example:8080", true),
        ("cdn.example:8443", true),
        ("cdn.example", false),
        ("evil.example", false),
    ] {
        let r = srv.send(Req::get("/page").header("Host", host)).await;
        assert_eq!(r.head.status == 200, ok, "{host}: {}", r.head.raw);
    }
    let r = srv.get("/page").await;
    assert_eq!(r.head.status, 200, "the listen address is always accepted");
}

#[tokio::test]
async fn a_custom_prefix() {
    let up = Upstream::start().await;
    let cfg = ProxyConfig::new(up.url().parse().unwrap()).prefix("/push".into());
    let srv = Server::start(config().proxy_config(cfg)).await;
    let r = srv.post("/push/ch/a", Some("text/plain"), b"x").await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    let r = srv.get("/_tandem/healthz").await;
    assert_eq!(r.text(), "upstream saw GET /_tandem/healthz");
    let r = srv.get("/push/healthz").await;
    assert_eq!(r.head.status, 200);
    assert!(r.text().contains("ok"), "{}", r.text());
}

#[tokio::test]
async fn an_unreachable_upstream_is_502() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let srv = Server::start(config().proxy(&url)).await;
    let r = srv.get("/page").await;
    r.expect_error(502, &["upstream", "unreachable"]);
    // tandem's own routes are unaffected.
    assert_eq!(srv.get("/_tandem/healthz").await.head.status, 200);
}

#[tokio::test]
async fn a_slow_upstream_is_504() {
    let up = Upstream::start().await;
    let cfg =
        ProxyConfig::new(up.url().parse().unwrap()).response_timeout(Duration::from_millis(300));
    let srv = Server::start(config().proxy_config(cfg)).await;
    let r = srv.get("/slow").await;
    r.expect_error(504, &["upstream", "upstream-timeout"]);
    // A fresh connection for the next request works.
    assert_eq!(srv.get("/page").await.head.status, 200);
}

/// The upstream-timeout runs from the end of the request body: a slow
/// upload to an application that answers only once it has the whole body
/// is not cut at the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_starts_when_the_upload_ends() {
    let up = Upstream::start().await;
    let cfg =
        ProxyConfig::new(up.url().parse().unwrap()).response_timeout(Duration::from_millis(300));
    let srv = Server::start(config().proxy_config(cfg)).await;
    let head = format!(
        "POST /form HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\n",
        srv.host()
    );
    let ready = tokio::time::sleep(Duration::from_millis(900));
    let (head, body) = upload(&srv, head, b"hello".to_vec(), b"world".to_vec(), ready).await;
    assert_eq!(head.status, 201, "{}", head.raw);
    assert_eq!(body, b"form: helloworld");
}

/// An upload that stops mid-way is cut after `--body-timeout` without a
/// byte: 408 with tandem's JSON, not held for ever (nor the upstream's
/// connection), while other requests through the proxy go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_stops_is_cut_with_408() {
    let up = Upstream::start().await;
    let srv = Server::start(
        config()
            .proxy(&up.url())
            .body_timeout(Duration::from_millis(800)),
    )
    .await;
    let started = Instant::now();
    let mut stalled = srv.connect().await;
    stalled
        .send(
            format!(
                "POST /form HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello",
                srv.host()
            )
            .as_bytes(),
        )
        .await;
    // Meanwhile a page passes.
    let page = srv.send(Req::get("/page").host(&srv.host())).await;
    assert_eq!(page.head.status, 200, "{}", page.head.raw);
    let r = stalled.response("POST").await;
    r.expect_error(408, &["stalled", "800 ms"]);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // The proxy still works.
    let again = srv.send(Req::get("/page").host(&srv.host())).await;
    assert_eq!(again.head.status, 200, "{}", again.head.raw);
}

/// `Expect: 100-continue` is answered by tandem itself (when the body is
/// wanted upstream) and not passed on.
#[tokio::test]
async fn expect_continue_is_answered_by_tandem() {
    let (up, srv) = proxied().await;
    let mut conn = srv.connect().await;
    conn.send(
        format!(
            "POST /form HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            srv.host()
        )
        .as_bytes(),
    )
    .await;
    let interim = conn.read_head().await;
    assert_eq!(interim.status, 100, "{}", interim.raw);
    conn.send(b"hello").await;
    let r = conn.response("POST").await;
    assert_eq!(r.head.status, 201, "{}", r.head.raw);
    assert_eq!(r.text(), "form: hello");
    assert_eq!(up.last("/form").header("expect"), None);
}

/// The service in a plain hyper server (an embedder's, given
/// `Service::for_peer`): the proxy works the same, and names the client in
/// `X-Forwarded-For` as under `serve`.
#[tokio::test]
async fn as_a_service_in_plain_hyper() {
    let up = Upstream::start().await;
    let srv = Flavor::Hyper.start(config().proxy(&up.url())).await;
    let r = srv.get("/page").await;
    assert_eq!(r.head.status, 200);
    assert!(r.text().contains("hello from upstream"));
    let seen = up.last("/page");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some(srv.host().as_str()));
    let r = srv.post("/_tandem/ch/a", Some("text/plain"), b"x").await;
    assert_eq!(r.head.status, 202);
    let r = srv
        .send(Req::get("/page").header("Host", "evil.example"))
        .await;
    r.expect_error(403, &["host"]);
}

/// On graceful shutdown a proxied stream (no length: perhaps endless) is
/// cut at once, not held until the shutdown timeout; the client sees a cut
/// body, never one that looks complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_proxied_streams() {
    let up = Upstream::start().await;
    let mut srv = Server::start(
        config()
            .proxy(&up.url())
            .shutdown_timeout(Duration::from_secs(10)),
    )
    .await;
    let (head, mut body) = srv.open(Req::get("/events")).await;
    assert_eq!(head.status, 200);
    body.read_until("the stream's opening", |b| b.ends_with(b": open\n\n"))
        .await;
    let started = Instant::now();
    srv.trigger_shutdown();
    let stop = body
        .next_by(Instant::now() + Duration::from_secs(5))
        .await
        .expect_err("nothing more comes");
    assert!(matches!(stop, kit::Stop::Cut), "{stop}");
    srv.join(Duration::from_secs(5)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// An upstream that speaks HTTP/1.0 with a close-delimited body: the
/// browser still gets tandem's HTTP/1.1, the body whole and properly framed.
#[tokio::test]
async fn an_http10_upstream() {
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", raw.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = raw.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while kit::find(&got, b"\r\n\r\n").is_none() {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
                    )
                    .await;
            });
        }
    });
    let srv = Server::start(config().proxy(&url)).await;
    let mut conn = srv.connect().await;
    for _ in 0..2 {
        let r = conn.request(&Req::get("/").host(&srv.host())).await;
        assert_eq!(r.head.version, 1, "{}", r.head.raw);
        assert_eq!(r.head.status, 200);
        assert_eq!(r.text(), "until the close");
    }
}

/// Trailers pass through when the client asks for them (`TE: trailers`,
/// which is the one `TE` the proxy sends upstream).
#[tokio::test]
async fn trailers_pass_when_asked_for() {
    let (up, srv) = proxied().await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let req = format!(
        "GET /trailers HTTP/1.1\r\nHost: {}\r\nTE: trailers\r\nConnection: close\r\n\r\n",
        srv.host()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(raw.contains("transfer-encoding: chunked"), "{raw}");
    assert!(raw.contains("trailer: x-checksum"), "{raw}");
    assert!(raw.contains("with trailers"), "{raw}");
    assert!(raw.contains("0\r\nx-checksum: 42\r\n\r\n"), "{raw}");
    assert_eq!(up.last("/trailers").header("te"), Some("trailers"));

    // Not asked for: no TE upstream, no trailers to the client.
    let r = srv.get("/trailers").await;
    assert_eq!(r.text(), "with trailers");
    assert_eq!(up.last("/trailers").header("te"), None);
}

// --- https:// upstreams (src/proxy/tls.rs) ---

/// tandem in front of the kit's application over TLS, its certificate
/// checked against the application's own CA (`--upstream-ca`).
async fn proxied_tls() -> (Upstream, Server) {
    let up = Upstream::start_tls().await;
    let srv = Server::start(config().proxy(&up.url()).upstream_ca(up.ca_file())).await;
    (up, srv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_pages_downloads_and_posts() {
    let (up, srv) = proxied_tls().await;
    assert!(up.url().starts_with("https://127.0.0.1:"), "{}", up.url());
    // A page, with the co-browsing scripts put in as over plain HTTP.
    let mut conn = srv.connect().await;
    let page = conn.request(&Req::get("/page").host(&srv.host())).await;
    assert_eq!(page.head.status, 200, "{}\n{}", page.head.raw, page.text());
    assert!(page.text().contains("hello from upstream"));
    assert!(page.text().contains("<script src=\"/_tandem/cobrowse.js\""));
    let seen = up.last("/page");
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"), "tandem's");
    // The application's own https:// origin maps to the proxy.
    let r = conn
        .request(&Req::get("/redirect/own").host(&srv.host()))
        .await;
    assert_eq!(r.head.status, 302);
    r.head.expect("location", "/page?from=own");

    // A large download streams: the first MiB arrives before the upstream
    // sends the rest.
    gated_download(&up, &srv, 8 * 1024 * 1024).await;

    // A POST's body goes up and its echo comes back, byte for byte, with
    // a Content-Length and chunked.
    let data: Vec<u8> = (0..1_500_000).map(|i| (i % 253) as u8).collect();
    let r = srv
        .send(Req::post("/echo", &data).header("Content-Type", "application/x-test"))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.head.raw);
    r.head.expect("content-type", "application/x-test");
    assert!(r.body == data, "byte for byte");
    let r = srv
        .send(Req::post("/echo", &data[..200_000]).chunked())
        .await;
    assert!(r.body == data[..200_000], "byte for byte, chunked");
    assert_eq!(up.last("/echo").method, "POST");

    // Answers read whole free their TLS connection for the next request.
    let before = up.connections();
    for _ in 0..5 {
        assert_eq!(srv.get("/binary").await.body.len(), 256);
    }
    assert!(
        up.connections() <= before + 1,
        "TLS connections are pooled: {before} then {}",
        up.connections()
    );
    // The upstream closes them: the next request gets a new one.
    up.close_connections();
    assert_eq!(srv.get("/binary").await.body.len(), 256);
}

/// Without `--upstream-ca` the upstream's certificate is checked against
/// the system's CA certificates, which do not know the test's CA: 502,
/// naming the problem, and nothing reaches the application.
#[tokio::test]
async fn an_https_upstream_unknown_to_the_system_is_502() {
    let up = Upstream::start_tls().await;
    let srv = Server::start(config().proxy(&up.url())).await;
    let r = srv.get("/page").await;
    let msg = r.expect_error(
        502,
        &[
            &format!("upstream {}", up.url()),
            "TLS handshake failed",
            "invalid peer certificate",
            "UnknownIssuer",
        ],
    );
    assert!(!msg.contains("{"), "{msg}");
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    // tandem's own routes are unaffected.
    assert_eq!(srv.get("/_tandem/healthz").await.head.status, 200);
}

/// A certificate from the right CA but for another name: 502.
#[tokio::test]
async fn an_https_upstream_certificate_for_another_name_is_502() {
    let up = Upstream::start_tls_for(&["other.example"]).await;
    let srv = Server::start(config().proxy(&up.url()).upstream_ca(up.ca_file())).await;
    let r = srv.get("/page").await;
    r.expect_error(
        502,
        &[
            "TLS handshake failed",
            "invalid peer certificate",
            "not valid for name",
            "127.0.0.1",
        ],
    );
    assert!(up.seen().is_empty());

    // The name is the upstream's host: one for `localhost` is checked as
    // a DNS name (and the IP address 127.0.0.1 is not in it).
    let up = Upstream::start_tls_for(&["localhost"]).await;
    let url = format!("https://localhost:{}", up.addr.port());
    let srv = Server::start(config().proxy(&url).upstream_ca(up.ca_file())).await;
    let r = srv.get("/page").await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(
        up.last("/page").header("host"),
        Some(format!("localhost:{}", up.addr.port()).as_str())
    );
    let ip = Upstream::start_tls_for(&["localhost"]).await;
    let srv = Server::start(config().proxy(&ip.url()).upstream_ca(ip.ca_file())).await;
    srv.get("/page")
        .await
        .expect_error(502, &["not valid for name", "127.0.0.1"]);
}

/// A CA file that is missing, empty or not PEM stops the proxy from
/// starting, with a message naming the setting and the file; the binary
/// refuses before it listens.
#[tokio::test]
async fn a_bad_upstream_ca_file_is_a_setup_error() {
    let up = Upstream::start_tls().await;
    let dir = std::env::temp_dir().join(format!("tandem-it-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing-ca.pem");
    let empty = dir.join("empty-ca.pem");
    std::fs::write(&empty, "").unwrap();
    let key = dir.join("not-a-cert.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let garbled = dir.join("garbled-ca.pem");
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (file, why) in [
        (&missing, "cannot read it"),
        (&empty, "no certificate in it"),
        (&key, "no certificate in it"),
        (&garbled, "certificate 1 is not a usable CA"),
    ] {
        let cfg = ProxyConfig::new(up.url().parse().unwrap())
            .hosts(vec!["127.0.0.1:8080".into()])
            .upstream_ca(file);
        let want = format!("upstream-ca {}: {why}", file.display());
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with(&want), "{e}");
        let hub = tandem::Hub::new(tandem::Config::default()).unwrap();
        let e = tandem::Service::new(hub).with_proxy(cfg).unwrap_err();
        assert!(e.to_string().starts_with(&want), "{e}");
    }
    // A CA file for a plain http upstream is a mistake too.
    let plain = ProxyConfig::new("http://127.0.0.1:9000".parse().unwrap())
        .hosts(vec!["127.0.0.1:8080".into()])
        .upstream_ca(up.ca_file());
    let e = plain.validate().unwrap_err().to_string();
    assert!(e.contains("is for an https upstream"), "{e}");

    // The binary: exit 2 before listening, the flag and the file named.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(up.url())
        .arg("--upstream-ca")
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "tandem: upstream-ca {}: cannot read it",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `https://` upstream that is not TLS at all is a 502 naming the
/// handshake; one that accepts the connection but never answers the
/// handshake is a 504 within the connect timeout.
#[tokio::test]
async fn an_https_upstream_that_does_not_speak_tls() {
    let plain = Upstream::start().await;
    let url = format!("https://{}", plain.addr);
    let srv = Server::start(config().proxy(&url)).await;
    srv.get("/page")
        .await
        .expect_error(502, &[&format!("upstream {url}"), "TLS handshake failed"]);
    assert!(plain.seen().is_empty(), "{:?}", plain.seen());

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let cfg = ProxyConfig::new(url.parse().unwrap()).connect_timeout(Duration::from_millis(300));
    let srv = Server::start(config().proxy_config(cfg)).await;
    let started = Instant::now();
    srv.get("/page").await.expect_error(
        504,
        &[&format!("upstream {url}"), "TLS handshake within 300ms"],
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

/// An upstream that dies under a kept-alive connection after the request
/// was written: a bodiless GET is sent again on a new connection (it is
/// idempotent, RFC 9110 §9.2.2); a POST is not, and gets 502.
#[tokio::test]
async fn a_get_is_sent_again_when_its_kept_alive_connection_dies() {
    let (up, srv) = proxied().await;
    assert_eq!(srv.get("/binary").await.body.len(), 256);
    assert_eq!(up.connections(), 1);
    up.drop_next();
    let r = srv.get("/binary").await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), 256);
    assert_eq!(up.connections(), 2, "sent again on a new connection");
    up.drop_next();
    let r = srv.post("/echo", Some("text/plain"), b"once").await;
    r.expect_error(502, &["upstream"]);
    assert_eq!(
        up.seen().iter().filter(|s| s.target == "/echo").count(),
        0,
        "the POST was not sent twice"
    );
}
