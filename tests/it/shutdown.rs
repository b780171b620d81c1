//! Graceful shutdown: streams end cleanly with their closing words, waiting
//! long-polls answer at once, new connections are refused, `serve` returns.

use std::time::{Duration, Instant};

use tandem::__private::wire::parse_poll;
use tandem::Transport;

use kit::*;

both_flavors!(streams_and_polls_end_cleanly);
async fn streams_and_polls_end_cleanly(flavor: Flavor) {
    let mut srv = flavor.with_defaults().await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let mut mp = srv.multipart("/ch/c/multipart").await;
    let mut fr = srv.iframe("/ch/c/iframe", "tandemEvent").await;
    let mut poll = srv.connect().await;
    poll.send(
        &Req::get("/ch/c/poll?timeout=30")
            .host(&srv.host())
            .to_bytes(),
    )
    .await;
    srv.wait_subscribers("c", Transport::Poll, 1).await;
    // An idle keep-alive connection, between requests.
    let mut idle = srv.connect().await;
    let r = idle.request(&Req::get("/healthz").host(&srv.host())).await;
    assert_eq!(r.head.status, 200);

    let id = srv.publish("c", "last words").await;
    assert_eq!(sse.next_event().await.id, Some(id));
    assert_eq!(mp.next_event().await.id, Some(id));
    assert_eq!(fr.next_event().await.id, Some(id));
    let r = poll.response("GET").await;
    assert_eq!(parse_poll(&r.body).unwrap().0[0].id, Some(id));
    // Hold a fresh long-poll from where the last one ended.
    srv.hold_poll(&mut poll, "c", id).await;

    let t0 = Instant::now();
    srv.trigger_shutdown();

    // The long-poll answers at once (not after its 30 s), empty, with its cursor.
    let r = poll.response("GET").await;
    assert_eq!(r.head.status, 200);
    assert_eq!(
        r.text(),
        format!("{{\"events\":[],\"next\":\"{}\"}}", srv.cursor("c", id))
    );
    assert!(t0.elapsed() < Duration::from_secs(5));

    // SSE ends with the chunked terminator, after telling the client when to retry.
    assert!(sse.finish().await.is_empty());
    assert!(sse.body.ended_cleanly());
    let raw = sse.body.raw();
    assert!(
        raw.ends_with(b"retry: 1500\n:closing\n\n"),
        "{:?}",
        String::from_utf8_lossy(&raw[raw.len().saturating_sub(40)..])
    );
    // The iframe closes its document; multipart simply ends.
    fr.finish().await;
    assert!(fr.body.ended_cleanly());
    assert!(fr.body.raw().ends_with(b"</body></html>\n"));
    mp.finish().await;
    assert!(mp.body.ended_cleanly());

    srv.join(Duration::from_secs(5)).await.unwrap();
    // After serve returns, nobody is listening.
    assert!(tokio::net::TcpStream::connect(srv.addr).await.is_err());
    // The idle keep-alive connection was closed too.
    let mut buf = [0u8; 16];
    use tokio::io::AsyncReadExt;
    let n = within("idle connection closes", idle.stream.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(srv.hub.info("c").subscribers.iter().sum::<usize>(), 0);
}

// Serve only: the listener closing and the drain bounded by
// `shutdown_timeout` belong to serve's accept loop (an embedder's loop is
// its own).
#[tokio::test]
async fn new_connections_are_refused_while_draining() {
    // A publish whose body never finishes keeps the server draining until
    // shutdown_timeout; meanwhile the port no longer accepts.
    let mut srv = Server::start(config().shutdown_timeout(Duration::from_secs(2))).await;
    let mut slow = srv.connect().await;
    slow.send(b"POST /ch/c HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    srv.trigger_shutdown();
    let addr = srv.addr;
    wait_until("the listener is closed", || async move {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    // serve gives up on the stuck connection after shutdown_timeout.
    srv.join(Duration::from_secs(6)).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(srv.hub.info("c").last_id, 0);
}

both_flavors!(serve_returns_promptly_with_nothing_open);
async fn serve_returns_promptly_with_nothing_open(flavor: Flavor) {
    let mut srv = flavor.with_defaults().await;
    srv.publish("c", "x").await;
    srv.trigger_shutdown();
    srv.join(Duration::from_secs(5)).await.unwrap();
}

both_flavors!(a_publish_in_flight_finishes_during_shutdown);
async fn a_publish_in_flight_finishes_during_shutdown(flavor: Flavor) {
    let mut srv = flavor.with_defaults().await;
    let mut conn = srv.connect().await;
    let head = format!(
        "POST /ch/c HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello",
        srv.host()
    );
    conn.send(head.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    conn.send(b"world").await;
    let r = conn.response("POST").await;
    assert_eq!((r.head.status, r.text().as_str()), (202, "{\"id\":1}"));
    assert_eq!(srv.hub.info("c").last_id, 1);
    srv.join(Duration::from_secs(5)).await.unwrap();
}

both_flavors!(closing_a_channel_ends_its_streams_and_polls);
async fn closing_a_channel_ends_its_streams_and_polls(flavor: Flavor) {
    // `Hub::close` (used when a help session ends): what was published is
    // still delivered, then streams end cleanly and a waiting poll answers
    // at once; other channels are untouched.
    let srv = flavor.with_defaults().await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let mut other = srv.sse("/ch/d/sse").await;
    let mut poll = srv.connect().await;
    poll.send(
        &Req::get("/ch/c/poll?timeout=30")
            .host(&srv.host())
            .to_bytes(),
    )
    .await;
    srv.wait_subscribers("c", Transport::Poll, 1).await;
    let id = srv.publish("c", "the end").await;
    let r = poll.response("GET").await;
    assert_eq!(parse_poll(&r.body).unwrap().0[0].id, Some(id));
    srv.hold_poll(&mut poll, "c", id).await;
    let cursor = srv.cursor("c", id);

    let t0 = Instant::now();
    assert!(srv.hub.close("c"));
    let r = poll.response("GET").await;
    assert_eq!(
        r.text(),
        format!("{{\"events\":[],\"next\":\"{}\"}}", cursor)
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(sse.next_event().await.id, Some(id));
    assert!(sse.finish().await.is_empty());
    assert!(sse.body.ended_cleanly());
    assert!(sse.body.raw().ends_with(b":closing\n\n"));

    // The other channel still streams; the closed name starts afresh.
    let d = srv.publish("d", "still here").await;
    assert_eq!(other.next_event().await.id, Some(d));
    assert_eq!(srv.publish("c", "new").await, 1);
    assert!(!srv.hub.close("nope"));
}
