//! Signed channel tokens (`--secret-file`): each place a token rides
//! (Authorization: Bearer, the tandem_token cookie, ?token=), each refusal
//! (401 without one; 403 saying which for a bad signature, an expired token,
//! another channel, a missing right, another client id), prefix tokens,
//! which channels need one, long-polls checked on every poll, a stream
//! ended at its token's expiry and resumed with a fresh one losing nothing,
//! a held long-poll answered at its token's expiry, the Rust client's
//! tokens (fixed, or renewed from a source),
//! and the `tandem token` binary.

use std::time::{Duration, Instant};

use kit::*;
use tandem::token::{now_unix, Needs, Rights, Signer, Token, TokenPolicy};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

fn signer() -> Signer {
    Signer::new(SECRET).unwrap()
}

fn with_tokens(needs: Needs) -> Setup {
    config().tokens(TokenPolicy {
        signer: signer(),
        needs,
    })
}

fn mint(channel: &str, prefix: bool, rights: &str, ttl: i64, client: Option<&str>) -> String {
    signer().mint(&Token {
        channel: channel.into(),
        prefix,
        rights: Rights::parse(rights).unwrap(),
        expires: (now_unix() as i64 + ttl) as u64,
        client: client.map(Into::into),
    })
}

fn bearer(req: Req, token: &str) -> Req {
    req.header("Authorization", &format!("Bearer {token}"))
}

both_flavors!(a_token_rides_in_header_cookie_or_query);
async fn a_token_rides_in_header_cookie_or_query(flavor: Flavor) {
    let srv = flavor.start(with_tokens(Needs::All)).await;
    let sub = mint("c", false, "sub", 60, None);
    let publ = mint("c", false, "pub", 60, None);
    // Streams (the lean path on the Serve flavor) with each carrier.
    let mut by_header = srv.sse_with(bearer(Req::get("/ch/c/sse"), &sub)).await;
    let mut by_cookie = srv
        .sse_with(Req::get("/ch/c/sse").header("Cookie", &format!("a=b; tandem_token={sub}")))
        .await;
    let mut by_query = srv.sse(&format!("/ch/c/sse?token={sub}")).await;
    // Publishes (the lean publish path on Serve) with each carrier.
    let r = srv.send(bearer(Req::post("/ch/c", b"one"), &publ)).await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    let r = srv
        .send(Req::post("/ch/c", b"two").header("Cookie", &format!("tandem_token={publ}")))
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    let r = srv
        .send(Req::post(&format!("/ch/c?token={publ}"), b"three"))
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    for s in [&mut by_header, &mut by_cookie, &mut by_query] {
        let got = s.take(3).await;
        assert_eq!(ids(&got), some_ids(1..=3));
        assert_eq!(text(&got[2]), "three");
    }
    // Other transports and info with a query token.
    let (head, _) = srv
        .open(Req::get(&format!("/ch/c/multipart?token={sub}")))
        .await;
    assert_eq!(head.status, 200);
    let (head, _) = srv
        .open(Req::get(&format!("/ch/c/iframe?token={sub}")))
        .await;
    assert_eq!(head.status, 200);
    let r = srv.get(&format!("/ch/c/info?token={sub}")).await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let r = srv
        .get(&format!("/ch/c/jsonp?since=0&callback=cb&token={sub}"))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert!(r.text().contains("three"), "{}", r.text());
}

both_flavors!(each_refusal_says_why);
async fn each_refusal_says_why(flavor: Flavor) {
    let srv = flavor.start(with_tokens(Needs::All)).await;
    // No token: 401, streams, polls, info and publishes alike.
    for path in ["/ch/c/sse", "/ch/c/poll", "/ch/c/multipart", "/ch/c/info"] {
        srv.get(path).await.expect_error(401, &["token required"]);
    }
    srv.post("/ch/c", Some("text/plain"), b"x")
        .await
        .expect_error(401, &["token required"]);
    let other = Signer::new(b"another secret, also 32 bytes long!").unwrap();
    let forged = other.mint(&Token {
        channel: "c".into(),
        prefix: false,
        rights: Rights::parse("sub,pub").unwrap(),
        expires: now_unix() + 60,
        client: None,
    });
    let cases = [
        (forged.clone(), "signature invalid"),
        (mint("c", false, "sub,pub", -1, None), "expired"),
        (
            mint("d", false, "sub,pub", 60, None),
            "not for this channel",
        ),
        (
            mint("c.", true, "sub,pub", 60, None),
            "not for this channel",
        ),
        (
            mint("c", false, "sub,pub", 60, Some("alice")),
            "another client",
        ),
        ("v1.garbage".to_string(), "malformed"),
    ];
    for (tok, why) in &cases {
        let r = srv
            .send(bearer(Req::get("/ch/c/sse?client=bob"), tok))
            .await;
        r.expect_error(403, &[why]);
        let r = srv
            .send(bearer(Req::post("/ch/c?client=bob", b"x"), tok))
            .await;
        r.expect_error(403, &[why]);
    }
    // Per right: a subscribe token cannot publish, a publish token cannot
    // subscribe (nor read the info).
    let sub = mint("c", false, "sub", 60, None);
    let publ = mint("c", false, "pub", 60, None);
    srv.send(bearer(Req::post("/ch/c", b"x"), &sub))
        .await
        .expect_error(403, &["right"]);
    srv.send(bearer(Req::get("/ch/c/sse"), &publ))
        .await
        .expect_error(403, &["right"]);
    srv.send(bearer(Req::get("/ch/c/info"), &publ))
        .await
        .expect_error(403, &["right"]);
    assert_eq!(srv.hub.info("c").last_id, 0, "nothing was published");
    // The right client id passes.
    let alice = mint("c", false, "sub,pub", 60, Some("alice"));
    let r = srv
        .send(bearer(Req::post("/ch/c?client=alice", b"x"), &alice))
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
}

both_flavors!(prefix_tokens_and_which_channels_need_one);
async fn prefix_tokens_and_which_channels_need_one(flavor: Flavor) {
    let srv = flavor
        .start(with_tokens(Needs::Prefixes(vec![
            "chat.".into(),
            "ops".into(),
        ])))
        .await;
    // Outside the prefixes: open as before.
    let r = srv.post("/ch/news", Some("text/plain"), b"x").await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    // Inside: a token is needed.
    srv.post("/ch/chat.a", Some("text/plain"), b"x")
        .await
        .expect_error(401, &["token"]);
    srv.get("/ch/ops/sse").await.expect_error(401, &["token"]);
    // A prefix token covers every channel under it, and no other.
    let t = mint("chat.", true, "sub,pub", 60, None);
    for c in ["chat.a", "chat.b.c"] {
        let r = srv
            .send(bearer(Req::post(&format!("/ch/{c}"), b"x"), &t))
            .await;
        assert_eq!(r.head.status, 202, "{c}: {}", r.text());
    }
    srv.send(bearer(Req::post("/ch/ops", b"x"), &t))
        .await
        .expect_error(403, &["not for this channel"]);
}

both_flavors!(long_polls_are_checked_on_every_poll);
async fn long_polls_are_checked_on_every_poll(flavor: Flavor) {
    let srv = flavor.start(with_tokens(Needs::All)).await;
    srv.publish_event("c", tandem::NewEvent::message("hello".to_string()))
        .await;
    let good = mint("c", false, "sub", 60, None);
    for _ in 0..3 {
        let r = srv.get(&format!("/ch/c/poll?since=0&token={good}")).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
        assert!(r.text().contains("hello"));
    }
    let expired = mint("c", false, "sub", -5, None);
    srv.get(&format!("/ch/c/poll?since=0&token={expired}"))
        .await
        .expect_error(403, &["expired"]);
    srv.get("/ch/c/poll?since=0")
        .await
        .expect_error(401, &["token"]);
}

both_flavors!(a_held_long_poll_is_answered_at_expiry);
async fn a_held_long_poll_is_answered_at_expiry(flavor: Flavor) {
    let srv = flavor.start(with_tokens(Needs::All)).await;
    srv.publish_event("c", tandem::NewEvent::message("1".to_string()))
        .await;
    let short = mint("c", false, "sub", 2, None);
    let started = Instant::now();
    // Held for up to 30 s by its timeout, but the token runs out first: the
    // poll is answered then, empty, with its cursor.
    let r = srv
        .get(&format!("/ch/c/poll?since=1&timeout=30&token={short}"))
        .await;
    let held = started.elapsed();
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert!(
        held < Duration::from_secs(10),
        "answered at the token's expiry, not at the poll's timeout: {held:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(v["events"].as_array().map(Vec::len), Some(0), "{v}");
    let next = v["next"].as_str().expect("a cursor").to_string();
    // The same token again is refused; a fresh one polls on from the cursor.
    srv.get(&format!("/ch/c/poll?since={next}&token={short}"))
        .await
        .expect_error(403, &["expired"]);
    srv.publish_event("c", tandem::NewEvent::message("2".to_string()))
        .await;
    let fresh = mint("c", false, "sub", 60, None);
    let r = srv
        .get(&format!("/ch/c/poll?since={next}&token={fresh}"))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert!(r.text().contains("\"2\""), "{}", r.text());
}

both_flavors!(a_stream_ends_at_expiry_and_resumes_with_a_fresh_token);
async fn a_stream_ends_at_expiry_and_resumes_with_a_fresh_token(flavor: Flavor) {
    let srv = flavor.start(with_tokens(Needs::All)).await;
    let short = mint("c", false, "sub", 2, None);
    let started = Instant::now();
    let mut s = srv.sse(&format!("/ch/c/sse?token={short}")).await;
    srv.publish_event("c", tandem::NewEvent::message("1".to_string()))
        .await;
    let first = s.next_event().await;
    assert_eq!(first.id, Some(1));
    // The stream ends by itself (cleanly) at the expiry, within ~2 s.
    let rest = tokio::time::timeout(Duration::from_secs(5), s.finish())
        .await
        .expect("the stream ends at its token's expiry");
    assert!(rest.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Published while the client was away.
    srv.publish_event("c", tandem::NewEvent::message("2".to_string()))
        .await;
    srv.publish_event("c", tandem::NewEvent::message("3".to_string()))
        .await;
    // The same token again: refused, expired.
    srv.send(Req::get(&format!("/ch/c/sse?token={short}")))
        .await
        .expect_error(403, &["expired"]);
    // A fresh one resumes from the cursor: nothing lost, nothing repeated.
    let fresh = mint("c", false, "sub", 60, None);
    let epoch = first.epoch.clone().expect("an epoch");
    let mut s = srv
        .sse_with(
            bearer(Req::get("/ch/c/sse"), &fresh).header("Last-Event-ID", &format!("{epoch}:1")),
        )
        .await;
    let got = s.take(2).await;
    assert_eq!(ids(&got), some_ids(2..=3));
}

/// `tandem::client` with a token source of 3-second tokens: a stream (SSE)
/// and a long-poll subscription, and the publishes, run across several
/// expiries; the source is asked again each time, the stream the server
/// ends at expiry opens again with the fresh token, and every event comes
/// once, in order, with no gap.
#[tokio::test]
async fn the_rust_client_renews_its_tokens() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tandem::client::{Client, Delivery, Transport};

    let srv = Server::start(with_tokens(Needs::All)).await;
    let asked = Arc::new(AtomicU32::new(0));
    let counter = asked.clone();
    let client = Client::new()
        .with_retry_delay(Duration::from_millis(10), Duration::from_millis(100))
        .with_poll_timeout(Duration::from_secs(5))
        .with_token_source(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(mint("rc", false, "sub,pub", 3, None)) }
        });
    let url = format!("http://{}/ch/rc", srv.addr);
    let mut subs = Vec::new();
    for t in [Transport::Sse, Transport::Poll] {
        let sub = client
            .subscribe(&format!("{url}/{t}?since=0"))
            .await
            .unwrap();
        subs.push(sub);
    }
    let n = 16u64;
    let publisher = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            for i in 1..=n {
                let id = client
                    .publish(&url, tandem::NewEvent::message(format!("e{i}")))
                    .await
                    .expect("publish with a fresh token");
                assert_eq!(id, i);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    for sub in &mut subs {
        for i in 1..=n {
            let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("a delivery")
                .expect("the subscription goes on")
                .unwrap_or_else(|e| panic!("on {}: {e}", sub.transport()));
            match d {
                Delivery::Event(e) => {
                    assert_eq!((e.id, e.text()), (i, Some(format!("e{i}").as_str())));
                }
                Delivery::Gap(g) => panic!("a gap on {}: {g:?}", sub.transport()),
            }
        }
    }
    publisher.await.unwrap();
    // 8 s of 3-second tokens: asked at least three times.
    assert!(asked.load(Ordering::SeqCst) >= 3, "{asked:?}");
    assert!(
        srv.hub.info("rc").subscribers.iter().sum::<usize>() <= 2,
        "no stream left behind"
    );
}

/// A secret rotated and then dropped under a running Rust client: its
/// stream is cut when the secret is dropped, the refused token is replaced
/// by the source's fresh one, and the subscription and the publishes go on
/// with no loss.
#[tokio::test]
async fn the_rust_client_rides_out_a_dropped_secret() {
    use std::sync::Arc;
    use tandem::client::Client;

    let srv = Server::start(with_tokens(Needs::All)).await;
    let second: &[u8] = b"the application's next secret, 32+ bytes";
    // The application's secret, as its token endpoint would use it.
    let minting = Arc::new(parking_lot::Mutex::new(signer()));
    let asked = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let client = Client::new()
        .with_retry_delay(Duration::from_millis(10), Duration::from_millis(100))
        .with_token_source({
            let (minting, asked) = (minting.clone(), asked.clone());
            move || {
                asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let t = minting.lock().mint(&Token {
                    channel: "drop".into(),
                    prefix: false,
                    rights: Rights::parse("sub,pub").unwrap(),
                    expires: now_unix() + 600,
                    client: None,
                });
                async move { Ok(t) }
            }
        });
    let url = format!("http://{}/ch/drop", srv.addr);
    let mut sub = client
        .subscribe(&format!("{url}/sse?since=0"))
        .await
        .unwrap();
    let publish = |i: u64| client.publish(&url, tandem::NewEvent::message(format!("e{i}")));
    assert_eq!(publish(1).await.unwrap(), 1);
    expect_event(&mut sub, 1).await;
    // Rotated: the application mints with the new secret; the old tokens
    // still pass.
    *minting.lock() = Signer::new(second).unwrap();
    assert!(srv
        .service()
        .rotate_token_secret(Signer::new(second).unwrap()));
    assert_eq!(publish(2).await.unwrap(), 2);
    expect_event(&mut sub, 2).await;
    // Dropped: the stream opened with the old secret's token is cut, and
    // the client's held token (the old secret's) is refused once, then
    // replaced.
    assert!(!srv
        .service()
        .rotate_token_secret(Signer::new(second).unwrap()));
    assert_eq!(publish(3).await.unwrap(), 3);
    expect_event(&mut sub, 3).await;
    assert_eq!(publish(4).await.unwrap(), 4);
    expect_event(&mut sub, 4).await;
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "asked again once"
    );
}

/// The next delivery of `sub` is the event `e{i}` with id `i`.
async fn expect_event(sub: &mut tandem::client::Subscription, i: u64) {
    let d = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a delivery")
        .expect("the subscription goes on")
        .unwrap_or_else(|e| panic!("{e}"));
    match d {
        tandem::client::Delivery::Event(e) => {
            assert_eq!((e.id, e.text()), (i, Some(format!("e{i}").as_str())))
        }
        tandem::client::Delivery::Gap(g) => panic!("a gap: {g:?}"),
    }
}

/// A fixed token: sent, refused clearly once expired; none: 401.
#[tokio::test]
async fn the_rust_client_says_why_a_token_is_refused() {
    use tandem::client::Client;
    let srv = Server::start(with_tokens(Needs::All)).await;
    let url = format!("http://{}/ch/fixed", srv.addr);
    let event = || tandem::NewEvent::message("x");
    let good = Client::new().with_token(mint("fixed", false, "pub", 60, None));
    assert_eq!(good.publish(&url, event()).await.unwrap(), 1);
    let e = Client::new().publish(&url, event()).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(401), "{e}");
    let old = Client::new().with_token(mint("fixed", false, "pub", -1, None));
    let e = old.publish(&url, event()).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
    assert!(e.server_message().unwrap().contains("expired"), "{e}");
    let failing = Client::new().with_token_source(|| async { Err("the minter is down".into()) });
    let e = failing.publish(&url, event()).await.unwrap_err();
    assert!(e.is_token(), "{e:?}");
    assert_eq!(e.to_string(), "getting a token failed: the minter is down");
}

#[tokio::test]
async fn the_token_binary_mints_what_the_server_accepts() {
    let dir = std::env::temp_dir().join(format!("tandem-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, [SECRET, b"\n"].concat()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["token", "--secret-file"])
        .arg(&file)
        .args([
            "--channel",
            "room.",
            "--prefix",
            "--rights",
            "sub,pub",
            "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let claims = signer().verify(&tok, now_unix()).expect("a valid token");
    assert!(claims.prefix && claims.rights.subscribe && claims.rights.publish);
    assert!(claims.expires > now_unix() + 3500 && claims.expires <= now_unix() + 3600);
    let srv = Flavor::Serve.start(with_tokens(Needs::All)).await;
    let r = srv.send(bearer(Req::post("/ch/room.1", b"x"), &tok)).await;
    assert_eq!(r.head.status, 202, "{}", r.text());

    // serve with a short or unreadable secret: a clear start-up error, exit 2.
    let short = dir.join("short");
    std::fs::write(&short, b"too short").unwrap();
    for f in [short, dir.join("missing")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["serve", "--listen", "127.0.0.1:0", "--secret-file"])
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("secret"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tandem serve` as a process with everything logged (`RUST_LOG=trace`,
/// stderr to a file), on a free port; killed (by its handle) on drop.
struct LoggedServer {
    child: std::process::Child,
    port: u16,
    log: std::path::PathBuf,
}

impl LoggedServer {
    async fn start(dir: &std::path::Path, name: &str, args: &[&str]) -> LoggedServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = dir.join(format!("{name}.log"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--threads", "1"])
            .args(args)
            .env("RUST_LOG", "trace")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("tandem");
        wait_until("the server listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        LoggedServer { child, port, log }
    }

    /// Everything it logged, once stopped.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Secret rotation on SIGHUP: the new secret's tokens are accepted and the
/// old one's still are (tokens already handed out), a stream open across
/// it keeps receiving; a second SIGHUP with the same file refuses the old
/// secret's tokens and ends the stream one of them opened; a file too
/// short keeps the secret as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_secret() {
    let dir = std::env::temp_dir().join(format!("tandem-rotate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, SECRET).unwrap();
    let srv = LoggedServer::start(&dir, "rotate", &["--secret-file", file.to_str().unwrap()]).await;
    let addr = ("127.0.0.1", srv.port);
    let next: &[u8] = b"a brand new secret of at least thirty-two bytes";
    let (old_sub, old_pub) = (
        mint("c", false, "sub", 60, None),
        mint("c", false, "pub", 60, None),
    );
    let new_pub = Signer::new(next).unwrap().mint(&Token {
        channel: "c".into(),
        prefix: false,
        rights: Rights::parse("pub").unwrap(),
        expires: now_unix() + 60,
        client: None,
    });
    let publish = |token: String, data: &'static [u8]| async move {
        Conn::connect(addr)
            .await
            .request(&bearer(Req::post("/ch/c", data), &token))
            .await
    };
    let hup = |pid: u32| {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let mut stream = Conn::connect(addr).await;
    stream
        .send(
            format!("GET /ch/c/sse?since=0&token={old_sub} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .await;
    assert_eq!(stream.read_head().await.status, 200);
    assert_eq!(publish(new_pub.clone(), b"x").await.head.status, 403);

    std::fs::write(&file, next).unwrap();
    hup(srv.child.id());
    wait_until("the new secret is taken", || {
        let t = new_pub.clone();
        async move { publish(t, b"new").await.head.status == 202 }
    })
    .await;
    assert_eq!(
        publish(old_pub.clone(), b"old").await.head.status,
        202,
        "the previous secret is still accepted"
    );

    // The stream opened with the old secret's token kept receiving.
    let deadline = Instant::now() + Duration::from_secs(5);
    for want in ["new", "old"] {
        while !String::from_utf8_lossy(stream.buffered()).contains(&format!("data: {want}")) {
            let n = stream.fill_by(deadline.into()).await;
            assert!(
                n.is_some_and(|n| n > 0),
                "no {want:?}: {:?}",
                String::from_utf8_lossy(stream.buffered())
            );
        }
    }

    // Again with the same file: the old secret's tokens are refused, and
    // the stream its token opened ends now (cleanly: the chunked body's
    // last chunk), not at the token's expiry a minute away.
    hup(srv.child.id());
    wait_until("the previous secret is dropped", || {
        let t = old_pub.clone();
        async move { publish(t, b"refused").await.head.status == 403 }
    })
    .await;
    let r = publish(old_pub.clone(), b"refused").await;
    r.expect_error(403, &["signature"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if String::from_utf8_lossy(stream.buffered()).ends_with("\r\n0\r\n\r\n") {
            break;
        }
        match stream.fill_by(deadline.into()).await {
            Some(0) => break,
            Some(_) => {}
            None => panic!(
                "the stream did not end: {:?}",
                String::from_utf8_lossy(stream.buffered())
            ),
        }
    }
    // A file that cannot be a secret: the current one stays.
    std::fs::write(&file, "short").unwrap();
    hup(srv.child.id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(publish(new_pub.clone(), b"still").await.head.status, 202);
    let log = srv.stop();
    assert!(log.contains("token secret rotated"), "{log}");
    assert!(
        log.contains("tokens of any previous secret are now refused"),
        "{log}"
    );
    assert!(
        log.contains("token secret not reloaded, keeping the old one"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The end-to-end check of "a token in a URL is never written to the log":
/// a real `tandem serve` logging at `trace`, tokens sent in every place
/// (query, header, cookie) down every path (a lean stream, a long-poll
/// through hyper, lean and chunked publishes, refusals, HTTP/2 over TLS),
/// and no token, nor its signature, anywhere in what it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_the_log() {
    let dir = std::env::temp_dir().join(format!("tandem-tokenlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let secret = secret.to_str().unwrap().to_string();
    let sub = mint("c", false, "sub", 60, None);
    let publ = mint("c", false, "pub", 60, None);
    let expired = mint("c", false, "sub", -5, None);
    let other = mint("elsewhere", false, "sub,pub", 60, None);
    let forged = format!("{}x", &sub[..sub.len() - 1]);
    let tokens = [&sub, &publ, &expired, &other, &forged];

    let plain = LoggedServer::start(&dir, "plain", &["--secret-file", &secret]).await;
    let addr = ("127.0.0.1", plain.port);
    let mut stream = Conn::connect(addr).await;
    stream
        .send(format!("GET /ch/c/sse?since=0&token={sub} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    assert_eq!(stream.read_head().await.status, 200);
    let mut c = Conn::connect(addr).await;
    for req in [
        Req::post(&format!("/ch/c?token={publ}"), b"lean"),
        Req::post(&format!("/ch/c?token={publ}"), b"chunked").chunked(),
        bearer(Req::post("/ch/c", b"header"), &publ),
        Req::post("/ch/c", b"cookie").header("Cookie", &format!("tandem_token={publ}")),
    ] {
        let r = c.request(&req).await;
        assert_eq!(r.head.status, 202, "{}", r.text());
    }
    let r = c
        .request(&Req::get(&format!("/ch/c/poll?since=0&token={sub}")))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    for (t, status) in [(&expired, 403), (&other, 403), (&forged, 403)] {
        for path in ["/ch/c/poll?since=0&token=", "/ch/c/sse?token="] {
            let r = Conn::connect(addr)
                .await
                .request(&Req::get(&format!("{path}{t}")))
                .await;
            assert_eq!(r.head.status, status, "{path}: {}", r.text());
        }
    }
    drop(stream);

    let pki = Pki::new();
    pki.issue();
    let (cert, key) = (pki.cert(), pki.key());
    let tls = LoggedServer::start(
        &dir,
        "tls",
        &[
            "--secret-file",
            &secret,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let mut h2 = crate::tls::h2_connect(&pki, tls.port).await;
    for path in [
        format!("/ch/c/poll?since=0&timeout=0&token={sub}"),
        format!("/ch/c/poll?since=0&timeout=0&token={forged}"),
    ] {
        let r = h2
            .send_request(crate::tls::h2_req("GET", &path, ""))
            .await
            .unwrap();
        assert!(r.status() == 200 || r.status() == 403, "{path}");
    }
    let mut r = h2
        .send_request(crate::tls::h2_req(
            "GET",
            &format!("/ch/c/sse?since=0&token={sub}"),
            "",
        ))
        .await
        .unwrap();
    crate::tls::h2_read_until(r.body_mut(), &mut Vec::new(), "retry:").await;

    for (name, log) in [("plain", plain.stop()), ("tls", tls.stop())] {
        // It did log (the lean stream's opening names its URL, with the
        // token's place marked; HTTP/2 streams are not logged one by one).
        assert!(!log.is_empty(), "{name}: nothing logged");
        if name == "plain" {
            assert!(log.contains("token=REDACTED"), "{name}: {log}");
        }
        for t in tokens {
            let signature = t.rsplit('.').next().unwrap();
            assert!(
                !log.contains(t.as_str()) && !log.contains(signature),
                "{name}: a token in the log: {log}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_query_token_is_redacted_for_logs() {
    let tok = mint("c", false, "sub", 60, None);
    let uri = format!("/ch/c/sse?since=0&token={tok}&client=x");
    let shown = tandem::token::redact(&uri);
    assert!(!shown.contains(&tok));
    assert_eq!(shown, "/ch/c/sse?since=0&token=REDACTED&client=x");
}

#[tokio::test]
async fn cobrowse_channels_keep_their_own_gate() {
    // Serve mounts co-browsing: its `cb.*` channels are guarded by its
    // cookies, not by channel tokens, even with --tokens-for all.
    let srv = Flavor::Serve.start(with_tokens(Needs::All)).await;
    let r = srv.get("/ch/cb.s.nobody/sse").await;
    assert!(matches!(r.head.status, 401 | 403), "{}", r.text());
    assert!(!r.text().contains("token"), "{}", r.text());
    srv.get("/ch/other/sse")
        .await
        .expect_error(401, &["token required"]);
}
