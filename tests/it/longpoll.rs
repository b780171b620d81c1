//! Long-poll: holds until an event arrives, answers empty after `timeout`,
//! and `next` used as the next `since` loses nothing.

use std::time::{Duration, Instant};

use tandem::__private::wire::{parse_jsonp, parse_poll};
use tandem::Transport;

use kit::*;

/// Sends a poll on a new connection and returns the connection, unread.
async fn start_poll(srv: &Server, path: &str) -> Conn {
    let mut conn = srv.connect().await;
    conn.send(&Req::get(path).host(&srv.host()).to_bytes())
        .await;
    conn
}

both_flavors!(held_poll_answers_with_the_event_published_while_it_waits);
async fn held_poll_answers_with_the_event_published_while_it_waits(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    srv.publish("c", "before").await;
    let mut conn = start_poll(&srv, "/ch/c/poll?timeout=20").await;
    srv.wait_subscribers("c", Transport::Poll, 1).await;
    let id = srv.publish("c", "while waiting").await;
    let r = conn.response("GET").await;
    assert_eq!(r.head.status, 200);
    let (evs, next) = parse_poll(&r.body).unwrap();
    assert_eq!(evs.len(), 1, "only the new event: {}", r.text());
    assert_eq!((evs[0].id, text(&evs[0])), (Some(id), "while waiting"));
    assert_eq!(next, srv.cursor("c", id));
    srv.wait_subscribers("c", Transport::Poll, 0).await;
}

both_flavors!(held_jsonp_answers_with_the_event);
async fn held_jsonp_answers_with_the_event(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut conn = start_poll(&srv, "/ch/c/jsonp?timeout=20&callback=cb").await;
    srv.wait_subscribers("c", Transport::Jsonp, 1).await;
    let id = srv.publish("c", "hi").await;
    let r = conn.response("GET").await;
    let (cb, evs, next) = parse_jsonp(&r.body).unwrap();
    assert_eq!(
        (cb.as_str(), evs[0].id, next),
        ("cb", Some(id), srv.cursor("c", id))
    );
}

both_flavors!(empty_answer_after_the_timeout);
async fn empty_answer_after_the_timeout(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    srv.publish("c", "a").await;
    srv.publish("c", "b").await;
    let t0 = Instant::now();
    let r = srv.get("/ch/c/poll?timeout=0.3").await;
    let waited = t0.elapsed();
    assert_eq!(r.head.status, 200);
    r.head.expect_no_cache();
    assert_eq!(
        r.text(),
        format!("{{\"events\":[],\"next\":\"{}\"}}", srv.cursor("c", 2))
    );
    assert!(waited >= Duration::from_millis(250), "held only {waited:?}");
}

both_flavors!(default_timeout_is_the_configured_one_and_capped);
async fn default_timeout_is_the_configured_one_and_capped(flavor: Flavor) {
    let srv = flavor
        .start(
            config()
                .poll_timeout(Duration::from_millis(400))
                .poll_timeout_max(Duration::from_millis(600)),
        )
        .await;
    let t0 = Instant::now();
    let r = srv.get("/ch/c/poll").await;
    assert!(t0.elapsed() >= Duration::from_millis(350));
    assert_eq!(r.text(), empty_answer(&srv.cursor("c", 0)));
    // Asking for an hour is cut to poll_timeout_max: it answers within the IO bound.
    let t0 = Instant::now();
    let r = srv.get("/ch/c/poll?timeout=3600").await;
    assert!(t0.elapsed() >= Duration::from_millis(550));
    assert_eq!(r.text(), empty_answer(&srv.cursor("c", 0)));
}

both_flavors!(timeout_zero_answers_at_once);
async fn timeout_zero_answers_at_once(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let r = srv.get("/ch/c/poll?timeout=0").await;
    assert_eq!(r.text(), empty_answer(&srv.cursor("c", 0)));
}

both_flavors!(next_as_since_loses_nothing_while_publishing);
async fn next_as_since_loses_nothing_while_publishing(flavor: Flavor) {
    // A small batch forces many rounds; a publisher runs alongside.
    let srv = flavor.start(config().poll_batch(3)).await;
    let addr = srv.host();
    let total = 40u64;
    let publisher = tokio::spawn(async move {
        for i in 1..=total {
            let mut conn = Conn::connect(&addr).await;
            let r = conn
                .request(&Req::post("/ch/c", format!("e{i}").as_bytes()).host(&addr))
                .await;
            assert_eq!(r.json()["id"], i);
            if i % 4 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut since = "0".to_string();
    let mut got = Vec::new();
    let mut rounds = 0;
    while got.len() < total as usize {
        let r = srv
            .get(&format!("/ch/c/poll?since={since}&timeout=2"))
            .await;
        let (evs, next) = parse_poll(&r.body).unwrap();
        assert!(evs.len() <= 3, "poll_batch caps an answer");
        assert!(evs.iter().all(|e| e.kind != "gap"), "no loss: {}", r.text());
        if let Some(last) = evs.last() {
            assert_eq!(
                last.cursor(),
                Some(next.clone()),
                "next is the last delivered"
            );
        }
        got.extend(evs);
        since = next;
        rounds += 1;
        assert!(rounds < 200, "too many rounds");
    }
    publisher.await.unwrap();
    assert_eq!(ids(&got), some_ids(1..=total));
    for (i, e) in got.iter().enumerate() {
        assert_eq!(text(e), format!("e{}", i + 1));
    }
}

both_flavors!(a_client_that_leaves_a_held_poll_is_let_go_at_once);
async fn a_client_that_leaves_a_held_poll_is_let_go_at_once(flavor: Flavor) {
    // Its subscription (and the open-subscriber gauge) goes when it does,
    // not at the end of its 30 s timeout; a poll waiting behind it on
    // another connection is untouched.
    let srv = flavor.with_defaults().await;
    let leaving = start_poll(&srv, "/ch/c/poll?timeout=30").await;
    let mut staying = start_poll(&srv, "/ch/c/jsonp?timeout=30&callback=f").await;
    srv.wait_subscribers("c", Transport::Poll, 1).await;
    srv.wait_subscribers("c", Transport::Jsonp, 1).await;
    let t0 = Instant::now();
    drop(leaving);
    srv.wait_subscribers("c", Transport::Poll, 0).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(srv.subscribers("c", Transport::Jsonp), 1);
    let id = srv.publish("c", "still wanted").await;
    let r = staying.response("GET").await;
    let (callback, events, _) = parse_jsonp(&r.body).unwrap();
    assert_eq!((callback.as_str(), events[0].id), ("f", Some(id)));
}

both_flavors!(a_request_sent_behind_a_held_poll_is_answered_after_it);
async fn a_request_sent_behind_a_held_poll_is_answered_after_it(flavor: Flavor) {
    // Bytes that arrive while a poll waits are kept for the next request.
    let srv = flavor.with_defaults().await;
    let mut conn = start_poll(&srv, "/ch/c/poll?timeout=30").await;
    srv.wait_subscribers("c", Transport::Poll, 1).await;
    conn.send(&Req::get("/ch/c/info").host(&srv.host()).to_bytes())
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = srv.publish("c", "x").await;
    let r = conn.response("GET").await;
    assert_eq!(parse_poll(&r.body).unwrap().0[0].id, Some(id));
    let r = conn.response("GET").await;
    assert_eq!(r.json()["last_id"], id);
}

/// A long-poll answer with no events.
fn empty_answer(next: &str) -> String {
    format!("{{\"events\":[],\"next\":\"{next}\"}}")
}
