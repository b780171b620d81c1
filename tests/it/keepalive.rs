//! Connections that carry many requests. Publishes with a `Content-Length`
//! body are answered on the server's lean path and the connection comes back
//! for the next request; anything else on the same connection is handed to
//! hyper with the bytes already read. These tests check that nothing is lost
//! or reordered at those seams.
//!
//! Serve only: these seams (and `--idle-timeout`, enforced by serve's
//! connection loop) exist only on `tandem::serve`; in a plain hyper server
//! every request is hyper's.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use tandem::__private::wire::parse_poll;

use kit::*;

fn publish(host: &str, channel: &str, body: &str) -> Req {
    Req::post(&format!("/ch/{channel}"), body.as_bytes())
        .header("Content-Type", "text/plain")
        .host(host)
}

async fn data_of(srv: &Server, channel: &str) -> Vec<String> {
    let r = srv
        .get(&format!("/ch/{channel}/poll?since=0&timeout=0"))
        .await;
    parse_poll(&r.body)
        .unwrap()
        .0
        .into_iter()
        .map(|e| String::from_utf8(e.data).unwrap())
        .collect()
}

#[tokio::test]
async fn publishes_one_after_another_on_one_connection() {
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    for i in 1..=20u64 {
        let r = conn
            .request(&publish(&srv.host(), "c", &format!("m{i}")))
            .await;
        assert_eq!(r.head.status, 202, "{}", r.head.raw);
        assert_eq!(r.text(), format!("{{\"id\":{i}}}"));
        assert!(r.head.has("date"), "{}", r.head.raw);
        assert!(!r.head.has("connection"), "kept open: {}", r.head.raw);
    }
    let want: Vec<String> = (1..=20).map(|i| format!("m{i}")).collect();
    assert_eq!(data_of(&srv, "c").await, want);
}

#[tokio::test]
async fn pipelined_publishes_are_all_answered_in_order() {
    // Ten requests in one write, bodies and heads back to back: each is
    // parsed from what the previous read left over.
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    let mut all = Vec::new();
    for i in 1..=10 {
        all.extend_from_slice(&publish(&srv.host(), "p", &format!("n{i}")).to_bytes());
    }
    conn.send(&all).await;
    for i in 1..=10u64 {
        let r = conn.response("POST").await;
        assert_eq!(r.text(), format!("{{\"id\":{i}}}"));
    }
    assert_eq!(data_of(&srv, "p").await.len(), 10);
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces() {
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    let mut bytes = publish(&srv.host(), "c", "hello world").to_bytes();
    let body = bytes.split_off(bytes.len() - 11);
    // The head alone, then the body a few bytes at a time.
    conn.send(&bytes).await;
    for piece in body.chunks(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        conn.send(piece).await;
    }
    let r = conn.response("POST").await;
    assert_eq!(r.text(), "{\"id\":1}");
    assert_eq!(data_of(&srv, "c").await, ["hello world"]);
}

#[tokio::test]
async fn other_requests_on_the_same_connection_go_on_working() {
    // publish (lean), info (hyper from here on), publish, long-poll.
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    let host = srv.host();
    assert_eq!(
        conn.request(&publish(&host, "c", "one")).await.text(),
        "{\"id\":1}"
    );
    let r = conn.request(&Req::get("/ch/c/info").host(&host)).await;
    assert_eq!(r.json()["last_id"], 1);
    assert_eq!(
        conn.request(&publish(&host, "c", "two")).await.text(),
        "{\"id\":2}"
    );
    let r = conn
        .request(&Req::get("/ch/c/poll?since=0&timeout=0").host(&host))
        .await;
    assert_eq!(parse_poll(&r.body).unwrap().0.len(), 2);
    // A publish pipelined right behind a GET: hyper gets both.
    let mut two = Req::get("/healthz").host(&host).to_bytes();
    two.extend_from_slice(&publish(&host, "c", "three").to_bytes());
    conn.send(&two).await;
    assert_eq!(conn.response("GET").await.head.status, 200);
    assert_eq!(conn.response("POST").await.text(), "{\"id\":3}");
}

#[tokio::test]
async fn a_stream_after_publishes_on_the_same_connection() {
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    let host = srv.host();
    assert_eq!(
        conn.request(&publish(&host, "s", "before")).await.text(),
        "{\"id\":1}"
    );
    conn.send(&Req::get("/ch/s/sse?since=0").host(&host).to_bytes())
        .await;
    let head = conn.read_head().await;
    assert_eq!(head.status, 200, "{}", head.raw);
    let body = conn.into_body(&head, "GET");
    let mut events = Events::new(head, body, tandem::__private::wire::SseParser::new());
    assert_eq!(events.next_event().await.data, b"before");
    srv.publish("s", "after").await;
    assert_eq!(events.next_event().await.data, b"after");
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    let r = conn
        .request(&publish(&srv.host(), "c", "last").header("Connection", "close"))
        .await;
    assert_eq!(r.text(), "{\"id\":1}");
    r.head.expect("connection", "close");
    assert!(conn.at_eof().await);
}

#[tokio::test]
async fn a_refused_publish_keeps_the_connection_usable() {
    // Over the event limit but within what the lean path reads: the body is
    // read and refused, and the next request on the connection is fine.
    let srv = Server::start(config().max_event_bytes(1024)).await;
    let mut conn = srv.connect().await;
    let big = "x".repeat(2000);
    let r = conn.request(&publish(&srv.host(), "c", &big)).await;
    r.expect_error(413, &["event too large", "1024"]);
    assert_eq!(
        conn.request(&publish(&srv.host(), "c", "ok")).await.text(),
        "{\"id\":1}"
    );
    assert_eq!(data_of(&srv, "c").await, ["ok"]);
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_publishes_nothing() {
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    let mut bytes = publish(&srv.host(), "c", "0123456789").to_bytes();
    bytes.truncate(bytes.len() - 4);
    conn.send(&bytes).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(srv.hub.info("c").last_id, 0);
    // The server is fine.
    assert_eq!(srv.publish("c", "next").await, 1);
}

#[tokio::test]
async fn expect_continue_and_http10_publishes_still_work() {
    // These go to hyper: it sends `100 Continue`, and answers HTTP/1.0
    // close-delimited.
    let srv = Server::with_defaults().await;
    let mut conn = srv.connect().await;
    let mut req = publish(&srv.host(), "c", "waited").header("Expect", "100-continue");
    let body = std::mem::take(&mut req.body);
    req.length = false;
    let mut head = req.to_bytes();
    head.truncate(head.len() - 2);
    head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    conn.send(&head).await;
    assert_eq!(conn.read_head().await.status, 100);
    conn.send(&body).await;
    assert_eq!(conn.response("POST").await.text(), "{\"id\":1}");

    let mut old = srv.connect().await;
    let r = old
        .request(&publish(&srv.host(), "c", "old").http10())
        .await;
    assert_eq!((r.head.version, r.text().as_str()), (0, "{\"id\":2}"));
    assert_eq!(data_of(&srv, "c").await, ["waited", "old"]);
}

fn idle_config() -> Setup {
    config().idle_timeout(Duration::from_millis(400))
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let srv = Server::start(idle_config()).await;
    let t0 = std::time::Instant::now();
    let mut silent = srv.connect().await;
    assert!(silent.at_eof().await);
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t0.elapsed()
    );
    // A head sent a byte at a time, slower than the timeout allows: closed too.
    let mut slow = srv.connect().await;
    let t0 = std::time::Instant::now();
    for b in b"POST /ch/c HTTP/1.1\r\n".iter().take(8) {
        // Writes fail once the server has closed: that is the point.
        if slow.stream.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(slow.at_eof().await);
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(srv.hub.info("c").last_id, 0);
}

#[tokio::test]
async fn a_keep_alive_connection_lives_while_used_and_closes_when_idle() {
    let srv = Server::start(idle_config()).await;
    let mut conn = srv.connect().await;
    // Twelve publishes 100 ms apart: three times the idle timeout in all,
    // never idle for long. (The lean path.)
    for i in 1..=12u64 {
        let r = conn.request(&publish(&srv.host(), "c", "tick")).await;
        assert_eq!(r.text(), format!("{{\"id\":{i}}}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let t0 = std::time::Instant::now();
    assert!(conn.at_eof().await);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );

    // The same on a connection hyper serves (a GET), then idle.
    let mut conn = srv.connect().await;
    for _ in 0..6 {
        let r = conn
            .request(&Req::get("/ch/c/info").host(&srv.host()))
            .await;
        assert_eq!(r.json()["last_id"], 12);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(conn.at_eof().await);
}

#[tokio::test]
async fn streams_and_held_polls_outlive_the_idle_timeout() {
    // The timeout is for a missing request, not for a long answer.
    let srv = Server::start(idle_config()).await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let mut poll = srv.connect().await;
    poll.send(
        &Req::get("/ch/c/poll?timeout=5")
            .host(&srv.host())
            .to_bytes(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let id = srv.publish("c", "late").await;
    assert_eq!(sse.next_event().await.id, Some(id));
    let r = poll.response("GET").await;
    assert_eq!(parse_poll(&r.body).unwrap().0[0].id, Some(id));
}

#[tokio::test]
async fn a_body_that_stalls_is_dropped_and_a_slow_one_is_taken() {
    // `--body-timeout` bounds the whole body (the idle timeout is for
    // the time between requests).
    let srv = Server::start(idle_config().body_timeout(Duration::from_secs(3))).await;
    // Half a body, then silence: 408 after the body timeout, unpublished.
    let mut stalled = srv.connect().await;
    let mut bytes = publish(&srv.host(), "c", "0123456789").to_bytes();
    bytes.truncate(bytes.len() - 5);
    stalled.send(&bytes).await;
    let t0 = std::time::Instant::now();
    stalled
        .response("POST")
        .await
        .expect_error(408, &["request body too slow", "3 s"]);
    assert!(stalled.at_eof().await);
    assert!(
        t0.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(srv.hub.info("c").last_id, 0);
    // A body in pieces 200 ms apart (each gap and the whole over the idle
    // timeout, the whole under the body timeout) is read and published.
    let mut slow = srv.connect().await;
    let bytes = publish(&srv.host(), "c", "0123456789").to_bytes();
    let (head, body) = bytes.split_at(bytes.len() - 10);
    slow.send(head).await;
    for piece in body.chunks(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        slow.send(piece).await;
    }
    assert_eq!(slow.response("POST").await.text(), "{\"id\":1}");
    assert_eq!(data_of(&srv, "c").await, ["0123456789"]);
}
