//! TLS (`--tls-cert`, `--tls-key`): every transport over HTTP/1.1 and over
//! HTTP/2 (ALPN), certificate reload without dropping streams (in-process
//! and by SIGHUP to the binary), `Secure` cookies and HSTS, start-up errors,
//! and the plaintext warning. Certificates are made here with rcgen: a CA of
//! the test's own, trusted by the test's clients only.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kit::{config, wait_until, within, Pki, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The certificate a TLS connection was shown.
fn peer_cert(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// An HTTP/1.1 request over TLS, written raw.
async fn h1_open(pki: &Pki, port: u16, head: &str) -> TlsStream<TcpStream> {
    let mut tls = pki.connect(port, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(head.as_bytes()).await.unwrap();
    tls
}

/// Reads until `needle` has arrived (5 s at most); returns what was read.
async fn read_until(io: &mut TlsStream<TcpStream>, got: &mut Vec<u8>, needle: &str) -> String {
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(got).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within 5 s; got {:?}",
                    String::from_utf8_lossy(got)
                )
            })
            .expect("read");
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(got).into_owned()
}

/// A publish over an HTTP/1.1 TLS connection (the lean publish path).
async fn h1_publish(tls: &mut TlsStream<TcpStream>, channel: &str, data: &str) -> String {
    let req = format!(
        "POST /ch/{channel} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{data}",
        data.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    read_until(tls, &mut got, "}").await
}

/// The stream and long-poll requests of every transport, each with what
/// an event with data `hello` looks like on it.
fn transports(channel: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("/ch/{channel}/sse"), "data: hello"),
        (format!("/ch/{channel}/multipart"), "hello"),
        (format!("/ch/{channel}/mixed"), "hello"),
        (format!("/ch/{channel}/iframe?callback=f"), "\"hello\""),
        (
            format!("/ch/{channel}/poll?since=0&timeout=10"),
            "\"hello\"",
        ),
        (
            format!("/ch/{channel}/jsonp?callback=f&since=0&timeout=10"),
            "f(",
        ),
    ]
}

async fn tls_server(pki: &Pki) -> Server {
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    Server::start(config().tls(tls)).await
}

#[tokio::test]
async fn every_transport_over_tls_http1() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let port = server.port();
    let mut open = Vec::new();
    for (path, _) in transports("h1") {
        let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        open.push(h1_open(&pki, port, &head).await);
    }
    // Streams are up (4) and long-polls wait (2) before the publish.
    wait_until("every subscriber is in", || async {
        server.hub.info("h1").subscribers.iter().sum::<usize>() >= 6
    })
    .await;
    // Publishes on one keep-alive TLS connection: the lean exchange loops.
    let mut publisher = h1_open(&pki, port, "").await;
    let answer = h1_publish(&mut publisher, "h1", "hello").await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(answer.contains("{\"id\":1}"), "{answer}");
    for ((path, needle), mut tls) in transports("h1").into_iter().zip(open) {
        let mut got = Vec::new();
        let text = read_until(&mut tls, &mut got, needle).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
    }
    let answer = h1_publish(&mut publisher, "h1", "again").await;
    assert!(answer.contains("{\"id\":2}"), "{answer}");
}

/// An HTTP/2 connection's request handle (the connection runs on a task).
pub(crate) async fn h2_connect(pki: &Pki, port: u16) -> http2::SendRequest<Full<Bytes>> {
    let tls = pki.connect(port, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

pub(crate) fn h2_req(method: &str, path: &str, body: &str) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method(method)
        .uri(format!("https://127.0.0.1{path}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Reads an HTTP/2 answer's body until `needle`.
pub(crate) async fn h2_read_until(
    body: &mut hyper::body::Incoming,
    got: &mut Vec<u8>,
    needle: &str,
) {
    while !String::from_utf8_lossy(got).contains(needle) {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within 5 s; got {:?}",
                    String::from_utf8_lossy(got)
                )
            })
            .expect("the body ended")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
}

/// The head and URL limits of HTTP/1.1 hold over HTTP/2: a header list over
/// `--max-head-bytes` is refused with 431 (not hyper's own 16 KiB), a URL
/// over `--max-url-bytes` with tandem's 414, each on its stream alone: the
/// connection serves the next request.
#[tokio::test]
async fn http2_heads_have_the_same_limits() {
    let pki = Pki::new();
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    let roomy = Server::start(config().max_head_bytes(40_000).tls(tls.clone())).await;
    let mut h2 = h2_connect(&pki, roomy.port()).await;
    let mut req = h2_req("GET", "/ch/c/poll?timeout=0", "");
    req.headers_mut()
        .insert("x-big", "a".repeat(24_000).parse().unwrap());
    let r = h2.send_request(req).await.expect("answered");
    assert_eq!(r.status(), 200, "24 KB is within a 40,000-byte head limit");

    let small = Server::start(config().max_head_bytes(4096).max_url_bytes(1024).tls(tls)).await;
    let mut h2 = h2_connect(&pki, small.port()).await;
    let mut req = h2_req("GET", "/ch/c/poll?timeout=0", "");
    req.headers_mut()
        .insert("x-big", "a".repeat(6_000).parse().unwrap());
    let r = h2.send_request(req).await.expect("answered");
    assert_eq!(r.status(), 431);
    let long = format!("/ch/c/poll?timeout=0&x={}", "a".repeat(2_000));
    let r = h2
        .send_request(h2_req("GET", &long, ""))
        .await
        .expect("answered");
    assert_eq!(r.status(), 414);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("url too long (max 1024 bytes)"), "{body}");
    let r = h2
        .send_request(h2_req("POST", "/ch/c", "after"))
        .await
        .expect("the connection still serves");
    assert_eq!(r.status(), 202);
    assert_eq!(small.hub.info("c").last_id, 1);
}

#[tokio::test]
async fn every_transport_over_http2_on_one_connection() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let mut h2 = h2_connect(&pki, server.port()).await;
    let mut bodies = Vec::new();
    for (path, needle) in transports("h2") {
        let pending = h2.send_request(h2_req("GET", &path, ""));
        bodies.push((path, needle, pending));
    }
    let mut open = Vec::new();
    for (path, needle, pending) in bodies {
        // Long-polls answer only after the publish: their heads come later.
        open.push((path, needle, tokio::spawn(pending)));
    }
    wait_until("every subscriber is in", || async {
        server.hub.info("h2").subscribers.iter().sum::<usize>() >= 6
    })
    .await;
    let r = h2
        .send_request(h2_req("POST", "/ch/h2", "hello"))
        .await
        .unwrap();
    assert_eq!(r.version(), hyper::Version::HTTP_2);
    assert_eq!(r.status(), 202);
    assert_eq!(r.collect().await.unwrap().to_bytes(), "{\"id\":1}");
    for (path, needle, pending) in open {
        let resp = within(&path, pending).await.unwrap().expect(&path);
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.version(), hyper::Version::HTTP_2, "{path}");
        let mut body = resp.into_body();
        h2_read_until(&mut body, &mut Vec::new(), needle).await;
    }
    // A browser's publish: same origin by `:authority` (HTTP/2 has no
    // `Host` header), another origin refused.
    let port = server.port();
    for (origin, status) in [
        (format!("https://127.0.0.1:{port}"), 202),
        ("https://evil.example".into(), 403),
    ] {
        let mut req = h2_req("POST", "/ch/h2", "from a page");
        *req.uri_mut() = format!("https://127.0.0.1:{port}/ch/h2").parse().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        let r = h2.send_request(req).await.unwrap();
        assert_eq!(r.status(), status, "{origin}");
    }
    assert_eq!(
        server.hub.metrics().connections.get(),
        1,
        "six streams and the publishes on one connection"
    );
}

#[tokio::test]
async fn reload_keeps_streams_and_new_handshakes_see_the_new_certificate() {
    let pki = Pki::new();
    let first = pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    let server = Server::start(config().tls(tls.clone())).await;
    let port = server.port();
    let mut h1 = h1_open(&pki, port, "GET /ch/r/sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(peer_cert(&h1), first);
    let mut h2 = h2_connect(&pki, port).await;
    let mut h2_body = h2
        .send_request(h2_req("GET", "/ch/r/sse", ""))
        .await
        .unwrap()
        .into_body();
    server
        .wait_subscribers("r", tandem::Transport::Sse, 2)
        .await;

    let second = pki.issue();
    tls.reload().expect("a good certificate reloads");
    assert_eq!(peer_cert(&pki.connect(port, &[]).await), second);
    server
        .hub
        .publish("r", tandem::NewEvent::message("after reload"))
        .await
        .unwrap();
    let (mut h1_got, mut h2_got) = (Vec::new(), Vec::new());
    read_until(&mut h1, &mut h1_got, "data: after reload").await;
    h2_read_until(&mut h2_body, &mut h2_got, "data: after reload").await;

    // A bad file: the error names it, the certificate in use stays.
    std::fs::write(pki.cert(), "not a certificate").unwrap();
    let e = tls.reload().expect_err("garbage does not load").to_string();
    assert!(
        e.contains(&pki.cert().display().to_string()) && e.contains("no PEM CERTIFICATE"),
        "{e}"
    );
    assert_eq!(peer_cert(&pki.connect(port, &[]).await), second);
    server
        .hub
        .publish("r", tandem::NewEvent::message("still here"))
        .await
        .unwrap();
    read_until(&mut h1, &mut h1_got, "data: still here").await;
    h2_read_until(&mut h2_body, &mut h2_got, "data: still here").await;
}

/// `Set-Cookie` lines of an answer.
fn cookies(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().to_string())
        })
        .collect()
}

#[tokio::test]
async fn cookies_are_secure_and_hsts_is_sent_over_tls_only() {
    let pki = Pki::new();
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key())
        .unwrap()
        .with_hsts(Duration::from_secs(600));
    let server = Server::start(config().tls(tls)).await;
    let body = r#"{"url":"/portal/cart","title":"t","message":"m"}"#;
    let req = format!(
        "POST /cobrowse/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // HTTP/1.1 over TLS (the lean exchange path answers this POST).
    let mut h1 = h1_open(&pki, server.port(), &req).await;
    let text = read_until(&mut h1, &mut Vec::new(), "\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    let set = cookies(&text);
    assert!(!set.is_empty(), "{text}");
    for c in &set {
        assert!(c.ends_with("; Secure") && c.contains("HttpOnly"), "{c}");
    }
    assert!(
        text.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=600\r\n"),
        "{text}"
    );
    // A stream (the lean stream path) carries HSTS too.
    let mut sse = h1_open(
        &pki,
        server.port(),
        "GET /ch/x/sse HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let text = read_until(&mut sse, &mut Vec::new(), "\r\n\r\n").await;
    assert!(
        text.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=600"),
        "{text}"
    );
    // HTTP/2.
    let mut h2 = h2_connect(&pki, server.port()).await;
    let mut req = h2_req("POST", "/cobrowse/session", body);
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    let r = h2.send_request(req).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=600");
    let set: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert!(!set.is_empty());
    for c in set {
        let c = c.to_str().unwrap();
        assert!(c.ends_with("; Secure"), "{c}");
        assert_eq!(c.matches("Secure").count(), 1, "{c}");
    }

    // Plaintext: neither.
    let plain = Server::with_defaults().await;
    let r = plain
        .post(
            "/cobrowse/session",
            Some("application/json"),
            body.as_bytes(),
        )
        .await;
    assert_eq!(r.head.status, 201);
    let c = r.head.header("set-cookie").unwrap();
    assert!(!c.contains("Secure"), "{c}");
    assert!(r.head.header("strict-transport-security").is_none());
}

const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// The binary, killed (by its PID) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_binary_serves_tls_and_reloads_on_sighup() {
    let pki = Pki::new();
    let first = pki.issue();
    let port = free_port();
    let log = pki.dir.join("tandem.log");
    let child = Child(
        std::process::Command::new(TANDEM)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--threads", "1", "--hsts", "60"])
            .arg("--tls-cert")
            .arg(pki.cert())
            .arg("--tls-key")
            .arg(pki.key())
            .stdout(std::process::Stdio::null())
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("tandem"),
    );
    wait_until("the binary listens", || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    let mut stream = h1_open(&pki, port, "GET /ch/hup/sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut got = Vec::new();
    read_until(&mut stream, &mut got, "retry:").await;
    assert_eq!(peer_cert(&stream), first);

    let second = pki.issue();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = peer_cert(&pki.connect(port, &[]).await);
        if seen == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen, second,
        "a new handshake after SIGHUP sees the new certificate"
    );
    // The stream opened before the reload still receives.
    let mut publisher = h1_open(&pki, port, "").await;
    let answer = h1_publish(&mut publisher, "hup", "after sighup").await;
    assert!(
        answer.contains("strict-transport-security: max-age=60"),
        "{answer}"
    );
    read_until(&mut stream, &mut got, "data: after sighup").await;

    // A half-written key: the reload fails, says why, keeps the certificate.
    std::fs::write(pki.key(), "-----BEGIN PRIVATE KEY-----\nAAAA").unwrap();
    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &child.0.id().to_string()])
            .status()
            .unwrap()
    };
    assert!(hup().success());
    let key = pki.key().display().to_string();
    wait_until("the failed reload in the log", || async {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        said.contains("tls reload failed, keeping the old certificate") && said.contains(&key)
    })
    .await;
    assert_eq!(peer_cert(&pki.connect(port, &[]).await), second);
    let answer = h1_publish(&mut publisher, "hup", "still open").await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    read_until(&mut stream, &mut got, "data: still open").await;
}

/// Runs `tandem serve` with these flags; returns its exit code and stderr.
fn run_to_exit(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let out = std::process::Command::new(TANDEM)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn bad_tls_flags_are_start_up_errors_naming_the_file() {
    let pki = Pki::new();
    pki.issue();
    let other = Pki::new();
    other.issue();
    let os = |p: &Path| p.as_os_str().to_owned();
    let missing = pki.dir.join("missing.pem");
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let cert = os(&pki.cert());
    let key = os(&pki.key());
    let cases: Vec<(Vec<std::ffi::OsString>, Vec<String>)> = vec![
        (
            vec![
                "--tls-cert".into(),
                os(&missing),
                "--tls-key".into(),
                key.clone(),
            ],
            vec![format!("certificate file {}", missing.display())],
        ),
        (
            vec![
                "--tls-cert".into(),
                os(&garbage),
                "--tls-key".into(),
                key.clone(),
            ],
            vec![garbage.display().to_string(), "no PEM CERTIFICATE".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                os(&garbage),
            ],
            vec![garbage.display().to_string(), "no PEM PRIVATE KEY".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                os(&other.key()),
            ],
            vec!["does not match".into(), other.key().display().to_string()],
        ),
        (
            vec!["--tls-cert".into(), cert.clone()],
            vec!["--tls-cert needs --tls-key".into()],
        ),
        (
            vec!["--hsts".into(), "60".into()],
            vec!["--hsts needs TLS".into()],
        ),
    ];
    for (args, words) in cases {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, err) = run_to_exit(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        for w in words {
            assert!(err.contains(&w), "{args:?}: {w:?} not in {err:?}");
        }
    }
}

/// What the binary prints at start when listening on `listen` (it is
/// killed once it has said it listens).
async fn start_up_words(listen: &str, extra: &[&std::ffi::OsStr]) -> String {
    let mut child = tokio::process::Command::new(TANDEM)
        .args(["serve", "--listen", listen, "--threads", "1"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            said.push_str(&line);
            said.push('\n');
            if line.contains("tandem listening on") {
                // The warning, if any, follows at once.
                if let Ok(Ok(Some(next))) =
                    tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
                {
                    said.push_str(&next);
                    said.push('\n');
                }
                break;
            }
        }
    })
    .await;
    child.kill().await.ok();
    said
}

#[tokio::test]
async fn plaintext_on_a_public_address_says_so_at_start() {
    let said = start_up_words("0.0.0.0:0", &[]).await;
    assert!(said.contains("tandem listening on http://"), "{said}");
    assert!(
        said.contains("plaintext") && said.contains("--tls-cert FILE --tls-key FILE"),
        "{said}"
    );
    let said = start_up_words("127.0.0.1:0", &[]).await;
    assert!(said.contains("tandem listening on http://"), "{said}");
    assert!(!said.contains("plaintext"), "{said}");
    // With TLS on a public address: no warning.
    let pki = Pki::new();
    pki.issue();
    let (cert, key) = (pki.cert(), pki.key());
    let args = [
        std::ffi::OsStr::new("--tls-cert"),
        cert.as_os_str(),
        std::ffi::OsStr::new("--tls-key"),
        key.as_os_str(),
    ];
    let said = start_up_words("0.0.0.0:0", &args).await;
    assert!(said.contains("tandem listening on https://"), "{said}");
    assert!(!said.contains("plaintext"), "{said}");
}

#[tokio::test]
async fn over_the_connection_limit_tls_clients_get_503() {
    let pki = Pki::new();
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    let server = Server::start(config().tls(tls).max_connections(1)).await;
    let port = server.port();
    let _held = h1_open(&pki, port, "GET /ch/full/sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    wait_until("the first connection counted", || async {
        server.hub.metrics().connections.get() == 1
    })
    .await;
    // HTTP/1.1: 503, Retry-After, closed.
    let mut h1 = h1_open(&pki, port, "GET /ch/x/sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut got = Vec::new();
    let text = read_until(&mut h1, &mut got, "max 1").await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    // h2: 503 with Retry-After too.
    let mut h2 = h2_connect(&pki, port).await;
    let r = h2
        .send_request(h2_req("GET", "/ch/x/sse", ""))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(server.hub.metrics().refused.get(), 2);
    assert_eq!(server.hub.metrics().connections.get(), 1);
}

/// Graceful shutdown over TLS: open HTTP/1.1 and h2 streams end (the
/// h2 connection gets GOAWAY), and the server drains well within its
/// shutdown timeout.
#[tokio::test]
async fn shutdown_ends_tls_and_h2_streams_and_drains() {
    let pki = Pki::new();
    let mut server = tls_server(&pki).await;
    let port = server.port();
    let mut h1 = h1_open(&pki, port, "GET /ch/bye/sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut h2 = h2_connect(&pki, port).await;
    let mut body = h2
        .send_request(h2_req("GET", "/ch/bye/sse", ""))
        .await
        .unwrap()
        .into_body();
    server
        .wait_subscribers("bye", tandem::Transport::Sse, 2)
        .await;
    let started = std::time::Instant::now();
    server.trigger_shutdown();
    // The HTTP/1.1 stream's last chunk, then EOF.
    let mut got = Vec::new();
    read_until(&mut h1, &mut got, "0\r\n\r\n").await;
    // The h2 stream ends cleanly.
    within("the h2 stream's end", async {
        while let Some(frame) = body.frame().await {
            frame.expect("a clean end, not a reset");
        }
    })
    .await;
    server.join(Duration::from_secs(2)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// In front of an application (`--upstream`), over TLS: the application
/// is told `X-Forwarded-Proto: https`, and its cookies reach the browser
/// `Secure`; over HTTP/1.1 and h2 (whose `:authority` is the Host the
/// proxy checks).
#[tokio::test]
async fn the_proxy_over_tls_says_https_upstream_and_secures_its_cookies() {
    let up = kit::Upstream::start().await;
    let pki = Pki::new();
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    let server = Server::start(config().proxy(&up.url()).tls(tls)).await;
    let port = server.port();
    let head = format!("GET /cookie HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let mut h1 = h1_open(&pki, port, &head).await;
    let text = read_until(&mut h1, &mut Vec::new(), "cookies").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let set = cookies(&text);
    assert_eq!(set.len(), 3, "{text}");
    assert!(set.iter().all(|c| c.ends_with("; Secure")), "{set:?}");
    assert_eq!(
        up.last("/cookie").header("x-forwarded-proto"),
        Some("https")
    );

    let mut h2 = h2_connect(&pki, port).await;
    let mut req = h2_req("GET", "/cookie", "");
    *req.uri_mut() = format!("https://127.0.0.1:{port}/cookie").parse().unwrap();
    let r = h2.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    let set: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(set.len(), 3);
    assert!(set
        .iter()
        .all(|c| c.to_str().unwrap().ends_with("; Secure")));
    assert_eq!(up.seen().len(), 2);
    assert_eq!(
        up.last("/cookie").header("x-forwarded-proto"),
        Some("https")
    );
}

/// `--idle-timeout` holds for HTTP/2 as for HTTP/1.1: a connection with
/// no request in flight is closed when it runs out; one holding a stream
/// (or waiting on a long-poll) is not.
#[tokio::test]
async fn an_idle_h2_connection_is_closed_one_with_a_stream_is_not() {
    let pki = Pki::new();
    pki.issue();
    let tls = tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).unwrap();
    let idle = Duration::from_millis(400);
    let server = Server::start(config().tls(tls).idle_timeout(idle)).await;
    let port = server.port();

    // Busy: a stream open on one connection, a long-poll on another.
    let mut streaming = h2_connect(&pki, port).await;
    let mut body = streaming
        .send_request(h2_req("GET", "/ch/idle/sse", ""))
        .await
        .unwrap()
        .into_body();
    let mut polling = h2_connect(&pki, port).await;
    let poll =
        tokio::spawn(polling.send_request(h2_req("GET", "/ch/idle/poll?since=0&timeout=5", "")));
    // Idle: one publish, then nothing.
    let mut quiet_conn = h2_connect(&pki, port).await;
    let r = quiet_conn
        .send_request(h2_req("POST", "/ch/elsewhere", "hello"))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    drop(r);
    let quiet = &quiet_conn;
    wait_until("the quiet connection is closed", || async move {
        quiet.is_closed()
    })
    .await;
    wait_until("the server counts the busy two only", || async {
        server.hub.metrics().connections.get() == 2
    })
    .await;
    tokio::time::sleep(idle * 3).await;
    // Both busy connections outlived several idle timeouts.
    server
        .hub
        .publish("idle", tandem::NewEvent::message("later"))
        .await
        .unwrap();
    h2_read_until(&mut body, &mut Vec::new(), "data: later").await;
    let answer = within("the long-poll", poll).await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    streaming
        .ready()
        .await
        .expect("the streaming connection is open");
    polling
        .ready()
        .await
        .expect("the polling connection is open");
}

/// Plaintext HTTP sent to the TLS port is told to use https://.
#[tokio::test]
async fn plaintext_http_to_the_tls_port_is_told_to_use_https() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let r = server.get("/ch/x/poll").await;
    assert_eq!(r.head.status, 400);
    assert!(r.text().contains("https://"), "{}", r.text());
    // TLS clients are served as before.
    let mut tls = h1_open(
        &pki,
        server.port(),
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let text = read_until(&mut tls, &mut Vec::new(), "\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// A client that comes back resumes its TLS session (the tickets sent
/// after the handshake reach it) and is served as before.
#[tokio::test]
async fn a_returning_client_resumes_its_session() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let connector = pki.client(&[b"http/1.1"]);
    let name = || rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    for (n, kind) in [
        (1, rustls::HandshakeKind::Full),
        (2, rustls::HandshakeKind::Resumed),
    ] {
        let tcp = TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .unwrap();
        let mut tls = within("the handshake", connector.connect(name(), tcp))
            .await
            .unwrap();
        let answer = h1_publish(&mut tls, "back", "hi").await;
        assert!(answer.contains(&format!("{{\"id\":{n}}}")), "{answer}");
        assert_eq!(tls.get_ref().1.handshake_kind(), Some(kind));
    }
}

/// Events larger than a TLS record (16 KiB) cross whole: published over
/// HTTP/1.1 (the lean publish path reads the body across records) and
/// h2, read on an HTTP/1.1 stream.
#[tokio::test]
async fn events_larger_than_a_record_cross_whole() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let port = server.port();
    let mut stream = h1_open(&pki, port, "GET /ch/big/sse HTTP/1.1\r\nHost: x\r\n\r\n").await;
    server
        .wait_subscribers("big", tandem::Transport::Sse, 1)
        .await;
    let big: String = (0..60_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut publisher = h1_open(&pki, port, "").await;
    let answer = h1_publish(&mut publisher, "big", &format!("{big}1")).await;
    assert!(answer.contains("{\"id\":1}"), "{answer}");
    let mut h2 = h2_connect(&pki, port).await;
    let r = h2
        .send_request(h2_req("POST", "/ch/big", &format!("{big}2")))
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut got = Vec::new();
    let text = read_until(&mut stream, &mut got, &format!("data: {big}2\n")).await;
    assert!(
        text.contains(&format!("data: {big}1\n")),
        "the first event whole"
    );
}

/// An idle stream over TLS notices its client leave at once, whether the
/// client says `close_notify` first or only closes the socket.
#[tokio::test]
async fn a_tls_stream_ends_when_its_client_leaves() {
    let pki = Pki::new();
    let server = tls_server(&pki).await;
    let port = server.port();
    let head = "GET /ch/gone/sse HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut polite = h1_open(&pki, port, head).await;
    let abrupt = h1_open(&pki, port, head).await;
    server
        .wait_subscribers("gone", tandem::Transport::Sse, 2)
        .await;
    read_until(&mut polite, &mut Vec::new(), "\r\n\r\n").await;
    polite.shutdown().await.unwrap();
    wait_until("the polite client's stream ends", || async {
        server.hub.info("gone").subscribers.iter().sum::<usize>() == 1
    })
    .await;
    drop(abrupt);
    wait_until("the abrupt client's stream ends", || async {
        server.hub.info("gone").subscribers.iter().sum::<usize>() == 0
    })
    .await;
}
