//! HTTP/1.0 clients (and HTTP/1.0 proxies): streams come close-delimited,
//! never chunked, and still carry events; long-poll works too.

use std::time::Duration;

use tandem::__private::wire::parse_poll;
use tandem::Transport;

use kit::*;

fn assert_close_delimited(head: &Head) {
    assert!(head.raw.starts_with("HTTP/1."), "{}", head.raw);
    assert!(
        !head.has("transfer-encoding"),
        "no Transfer-Encoding for HTTP/1.0:\n{}",
        head.raw
    );
    assert!(!head.has("content-length"), "{}", head.raw);
}

both_flavors!(sse_over_http10_is_close_delimited);
async fn sse_over_http10_is_close_delimited(flavor: Flavor) {
    let mut srv = flavor.with_defaults().await;
    let (head, body) = srv.open(Req::get("/ch/c/sse").http10()).await;
    assert_eq!(head.status, 200);
    assert_close_delimited(&head);
    head.expect_no_cache();
    assert_eq!(body.framing(), Framing::Close);
    let mut s = Events::new(head, body, tandem::__private::wire::SseParser::new());
    // The body starts with the prelude itself, not a chunk-size line.
    s.read_until("prelude", |b| b.len() > 4).await;
    assert!(
        s.body.raw().starts_with(b":    "),
        "{:?}",
        &s.body.raw()[..8]
    );

    srv.publish("c", "one").await;
    srv.publish("c", "two\nlines").await;
    let evs = s.take(2).await;
    assert_eq!(ids(&evs), some_ids(1..=2));
    assert_eq!(evs[1].data, b"two\nlines");
    assert!(find(s.body.raw(), b"\r\n0\r\n").is_none());

    // The end of the body is the connection closing, after the closing words.
    srv.trigger_shutdown();
    assert!(s.finish().await.is_empty());
    assert!(s.body.ended_cleanly());
    assert!(s.body.raw().ends_with(b"retry: 1500\n:closing\n\n"));
    srv.join(Duration::from_secs(5)).await.unwrap();
}

both_flavors!(multipart_and_iframe_over_http10);
async fn multipart_and_iframe_over_http10(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let (head, body) = srv.open(Req::get("/ch/c/multipart").http10()).await;
    assert_close_delimited(&head);
    let parser = tandem::__private::wire::MultipartParser::new(tandem::__private::BOUNDARY);
    let mut mp = Events::new(head, body, parser);
    let (head, body) = srv.open(Req::get("/ch/c/iframe").http10()).await;
    assert_close_delimited(&head);
    let mut fr = Events::new(head, body, IframeParser::new("tandemEvent"));
    srv.wait_subscribers("c", Transport::Iframe, 1).await;
    let id = srv.publish("c", "hello 1.0").await;
    let e = mp.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id), "hello 1.0"));
    let e = fr.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id), "hello 1.0"));
}

both_flavors!(poll_over_http10);
async fn poll_over_http10(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    srv.publish("c", "x").await;
    let r = srv
        .send(Req::get("/ch/c/poll?since=0&timeout=0").http10())
        .await;
    assert_eq!(r.head.status, 200);
    assert!(r.head.raw.starts_with("HTTP/1."));
    assert!(!r.head.is_chunked());
    let (evs, next) = parse_poll(&r.body).unwrap();
    assert_eq!((evs.len(), next), (1, srv.cursor("c", 1)));

    // A held HTTP/1.0 long-poll answers when the event comes.
    let mut conn = srv.connect().await;
    conn.send(
        &Req::get("/ch/c/poll?since=1&timeout=10")
            .http10()
            .host(&srv.host())
            .to_bytes(),
    )
    .await;
    srv.wait_subscribers("c", Transport::Poll, 1).await;
    let id = srv.publish("c", "y").await;
    let r = conn.response("GET").await;
    assert!(!r.head.is_chunked());
    let (evs, _) = parse_poll(&r.body).unwrap();
    assert_eq!(evs[0].id, Some(id));
}

both_flavors!(publish_over_http10);
async fn publish_over_http10(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let r = srv
        .send(
            Req::post("/ch/c", b"from an old proxy")
                .header("Content-Type", "text/plain")
                .http10(),
        )
        .await;
    assert_eq!(r.head.status, 202);
    assert_eq!(r.text(), "{\"id\":1}");
}
