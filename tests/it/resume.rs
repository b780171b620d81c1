//! Resume on every transport: `?since=N`, SSE `Last-Event-ID`, one `gap` when
//! the cursor is older than the ring, `?backlog=N`.

use tandem::__private::wire::{parse_jsonp, parse_poll, WireEvent};

use kit::*;

async fn publish_n(srv: &Server, channel: &str, n: u64) {
    for i in 1..=n {
        assert_eq!(srv.publish(channel, &format!("e{i}")).await, i);
    }
}

fn assert_texts(evs: &[WireEvent], ids: std::ops::RangeInclusive<u64>) {
    assert_eq!(kit::ids(evs), some_ids(ids.clone()));
    for (e, i) in evs.iter().zip(ids) {
        assert_eq!(text(e), format!("e{i}"));
    }
}

/// Reads `n` events from a streamed transport at `path`.
async fn stream_events(srv: &Server, transport: &str, query: &str, n: usize) -> Vec<WireEvent> {
    let path = format!("/ch/c/{transport}?{query}");
    match transport {
        "sse" => srv.sse(&path).await.take(n).await,
        "multipart" | "mixed" => srv.multipart(&path).await.take(n).await,
        "iframe" => srv.iframe(&path, "tandemEvent").await.take(n).await,
        _ => unreachable!(),
    }
}

async fn poll_events(srv: &Server, transport: &str, query: &str) -> (Vec<WireEvent>, String) {
    let r = srv
        .get(&format!("/ch/c/{transport}?{query}&timeout=0"))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    match transport {
        "poll" => parse_poll(&r.body).unwrap(),
        "jsonp" => {
            let (_, evs, next) = parse_jsonp(&r.body).unwrap();
            (evs, next)
        }
        _ => unreachable!(),
    }
}

both_flavors!(since_replays_buffered_events_in_order_on_every_transport);
async fn since_replays_buffered_events_in_order_on_every_transport(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    publish_n(&srv, "c", 5).await;
    for t in ["sse", "multipart", "mixed", "iframe"] {
        let evs = stream_events(&srv, t, "since=2", 3).await;
        assert_texts(&evs, 3..=5);
    }
    for t in ["poll", "jsonp"] {
        let (evs, next) = poll_events(&srv, t, "since=2").await;
        assert_texts(&evs, 3..=5);
        assert_eq!(next, srv.cursor("c", 5));
    }
}

both_flavors!(since_then_live_without_duplicates);
async fn since_then_live_without_duplicates(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    publish_n(&srv, "c", 3).await;
    let mut s = srv.sse("/ch/c/sse?since=1").await;
    let mut got = s.take(2).await;
    for i in 4..=6 {
        assert_eq!(srv.publish("c", &format!("e{i}")).await, i);
    }
    got.extend(s.take(3).await);
    assert_texts(&got, 2..=6);
    // Nothing else was sent: one more publish is the very next event.
    srv.publish("c", "e7").await;
    assert_eq!(s.next_event().await.id, Some(7));
}

both_flavors!(sse_last_event_id_resumes);
async fn sse_last_event_id_resumes(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    publish_n(&srv, "c", 5).await;
    let mut s = srv
        .sse_with(Req::get("/ch/c/sse").header("Last-Event-ID", "3"))
        .await;
    assert_texts(&s.take(2).await, 4..=5);
    srv.publish("c", "e6").await;
    assert_texts(&[s.next_event().await], 6..=6);
}

both_flavors!(since_at_the_head_waits_for_new_events);
async fn since_at_the_head_waits_for_new_events(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    publish_n(&srv, "c", 2).await;
    let mut s = srv.sse("/ch/c/sse?since=2").await;
    srv.publish("c", "e3").await;
    assert_texts(&[s.next_event().await], 3..=3);
}

fn small_ring() -> Setup {
    config().buffer_events(4)
}

fn assert_gap(srv: &Server, e: &WireEvent, from: u64, to: u64) {
    assert_eq!(e.kind, "gap");
    assert_eq!(e.id, None, "a gap carries no id");
    let v: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
    let epoch = srv.epoch("c");
    assert_eq!(
        v,
        serde_json::json!({"from": from, "to": to, "epoch": epoch})
    );
}

both_flavors!(cursor_older_than_the_ring_gets_one_gap_first);
async fn cursor_older_than_the_ring_gets_one_gap_first(flavor: Flavor) {
    let srv = flavor.start(small_ring()).await;
    publish_n(&srv, "c", 10).await; // the ring keeps 7..=10
    for t in ["sse", "multipart", "mixed", "iframe"] {
        let mut evs = stream_events(&srv, t, "since=2", 5).await;
        assert_gap(&srv, &evs.remove(0), 3, 6);
        assert_texts(&evs, 7..=10);
    }
    for t in ["poll", "jsonp"] {
        let (mut evs, next) = poll_events(&srv, t, "since=2").await;
        assert_eq!(evs.len(), 5, "{t}: one gap, four events");
        assert_gap(&srv, &evs.remove(0), 3, 6);
        assert_texts(&evs, 7..=10);
        assert_eq!(next, srv.cursor("c", 10));
    }
    // since=0 on a channel that lost its first events: the gap starts at 1.
    let (evs, _) = poll_events(&srv, "poll", "since=0").await;
    assert_gap(&srv, &evs[0], 1, 6);
    assert_eq!(evs.iter().filter(|e| e.kind == "gap").count(), 1);
}

both_flavors!(gap_bytes_on_the_wire);
async fn gap_bytes_on_the_wire(flavor: Flavor) {
    let srv = flavor.start(small_ring()).await;
    publish_n(&srv, "c", 6).await; // ring 3..=6
    let e = srv.epoch("c");
    let mut s = srv.sse("/ch/c/sse?since=0").await;
    s.take(5).await;
    let raw = String::from_utf8(s.body.raw().to_vec()).unwrap();
    let want =
        format!("\n\nevent: gap\ndata: {{\"from\":1,\"to\":2,\"epoch\":\"{e}\"}}\n\nid: {e}:3\n");
    assert!(raw.contains(&want), "{raw}");
    assert_eq!(raw.matches("event: gap").count(), 1);

    let r = srv.get("/ch/c/poll?since=0").await;
    let want = format!(
        "{{\"events\":[{{\"type\":\"gap\",\"data\":\"{{\\\"from\\\":1,\\\"to\\\":2,\\\"epoch\\\":\\\"{e}\\\"}}\"}},{{\"id\":3,\"epoch\":\"{e}\","
    );
    assert!(r.text().starts_with(&want), "{}", r.text());

    let mut m = srv.multipart("/ch/c/multipart?since=0").await;
    m.take(5).await;
    let raw = String::from_utf8(m.body.raw().to_vec()).unwrap();
    let gap_part = raw.split(&delimiter()).nth(1).unwrap();
    let payload = format!("{{\"from\":1,\"to\":2,\"epoch\":\"{e}\"}}");
    assert_eq!(
        gap_part,
        format!(
            "\r\nContent-Type: application/json\r\nEvent-Type: gap\r\nContent-Length: {}\r\n\r\n{payload}\r\n",
            payload.len()
        )
    );
}

both_flavors!(backlog_replays_the_last_n);
async fn backlog_replays_the_last_n(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    publish_n(&srv, "c", 5).await;
    let mut s = srv.sse("/ch/c/sse?backlog=2").await;
    assert_texts(&s.take(2).await, 4..=5);
    srv.publish("c", "e6").await;
    assert_texts(&[s.next_event().await], 6..=6);

    let (evs, next) = poll_events(&srv, "poll", "backlog=3").await;
    assert_texts(&evs, 4..=6);
    assert_eq!(next, srv.cursor("c", 6));
    let evs = stream_events(&srv, "multipart", "backlog=1", 1).await;
    assert_texts(&evs, 6..=6);
    // backlog=0 and no cursor: only what comes next.
    let (evs, next) = poll_events(&srv, "poll", "backlog=0").await;
    assert!(evs.is_empty());
    assert_eq!(next, srv.cursor("c", 6));
}

both_flavors!(no_cursor_means_only_new_events);
async fn no_cursor_means_only_new_events(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    publish_n(&srv, "c", 3).await;
    let mut s = srv.sse("/ch/c/sse").await;
    srv.publish("c", "e4").await;
    assert_texts(&[s.next_event().await], 4..=4);
}

both_flavors!(a_burst_larger_than_every_batch_arrives_whole_and_in_order);
async fn a_burst_larger_than_every_batch_arrives_whole_and_in_order(flavor: Flavor) {
    let srv = flavor.start(config().buffer_events(1000)).await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let mut mp = srv.multipart("/ch/c/mixed").await;
    for i in 1..=500u64 {
        let e = srv
            .hub
            .publish("c", tandem::NewEvent::message(format!("e{i}")))
            .await
            .unwrap();
        assert_eq!(e.id(), i);
    }
    assert_texts(&sse.take(500).await, 1..=500);
    assert_texts(&mp.take(500).await, 1..=500);
    // A poll from 0 is cut at poll_batch (100 by default) and `next` says where.
    let (evs, next) = poll_events(&srv, "poll", "since=0").await;
    assert_texts(&evs, 1..=100);
    assert_eq!(next, srv.cursor("c", 100));
}

both_flavors!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_reader_that_falls_behind_gets_a_gap_and_then_the_rest
);
async fn a_reader_that_falls_behind_gets_a_gap_and_then_the_rest(flavor: Flavor) {
    // The reader's socket buffer is tiny and it reads nothing while 19 MiB
    // are published: the server cannot queue that much (the stream pulls from
    // the ring only when the socket takes more), so the reader falls behind
    // the 16-event ring and must be told with a gap, then resume in order.
    let srv = flavor.start(config().buffer_events(16)).await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = within("connect", sock.connect(srv.addr)).await.unwrap();
    let mut conn = Conn::from_stream(stream);
    conn.send(&Req::get("/ch/c/sse").host(&srv.host()).to_bytes())
        .await;
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    let body = conn.into_body(&head, "GET");
    let mut s = Events::new(head, body, tandem::__private::wire::SseParser::new());
    srv.wait_subscribers("c", tandem::Transport::Sse, 1).await;

    let n = 600u64;
    let data = "x".repeat(32 * 1024);
    for _ in 0..n {
        srv.hub
            .publish("c", tandem::NewEvent::message(data.clone()))
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    let mut expected = 1;
    let mut gaps = 0;
    while expected <= n {
        let e = s.next_event().await;
        if e.kind == "gap" {
            assert_eq!(e.id, None);
            let g: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
            assert_eq!(g["from"], expected, "a gap starts where delivery stopped");
            expected = g["to"].as_u64().unwrap() + 1;
            gaps += 1;
        } else {
            assert_eq!(e.id, Some(expected), "in order, no duplicates");
            assert_eq!(e.data.len(), data.len());
            expected += 1;
        }
    }
    assert!(
        gaps >= 1,
        "19 MiB cannot all have been queued for a stalled reader"
    );
    assert!(
        s.body.raw().len() < (n as usize) * data.len(),
        "lost events were not sent"
    );
}

both_flavors!(backlog_never_reaches_behind_the_ring);
async fn backlog_never_reaches_behind_the_ring(flavor: Flavor) {
    // Asking for more than is buffered replays what is buffered, with no gap:
    // the ids before the ring were never part of "the last N buffered".
    let srv = flavor.start(config().buffer_events(3)).await;
    publish_n(&srv, "c", 10).await;
    let (evs, next) = poll_events(&srv, "poll", "backlog=50").await;
    assert_texts(&evs, 8..=10);
    assert_eq!(next, srv.cursor("c", 10));
    // A cursor behind the ring still gets its gap: only backlog is clamped.
    let (evs, _) = poll_events(&srv, "poll", "since=2").await;
    assert_eq!(evs[0].kind, "gap");
    let want = format!("{{\"from\":3,\"to\":7,\"epoch\":\"{}\"}}", srv.epoch("c"));
    assert_eq!(evs[0].data, want.as_bytes());
}

/// Publishes `n` events whose data is `{prefix}{i}`.
async fn publish_texts(srv: &Server, channel: &str, prefix: &str, n: u64) {
    for i in 1..=n {
        assert_eq!(srv.publish(channel, &format!("{prefix}{i}")).await, i);
    }
}

/// The cursor a client keeps after reading channel `c` from the start on
/// `transport`, as that transport's bytes give it: the last event's (SSE
/// `id:`, multipart `Event-Epoch` and `Event-Id`, the iframe's JSON), or a
/// long-poll's `next`.
async fn cursor_kept_on(srv: &Server, transport: &str, n: usize) -> String {
    match transport {
        "poll" | "jsonp" => {
            let (evs, next) = poll_events(srv, transport, "since=0").await;
            assert_eq!(evs.len(), n);
            next
        }
        _ => {
            let evs = stream_events(srv, transport, "since=0", n).await;
            evs.last().and_then(WireEvent::cursor).expect("a cursor")
        }
    }
}

/// One reset gap (from 1 to 0, in the new epoch), then `new1..=newN`, each
/// with the new epoch.
fn assert_reset_then_new(srv: &Server, t: &str, evs: &[WireEvent], n: u64) {
    let epoch = srv.epoch("c");
    assert_eq!(evs.len() as u64, n + 1, "{t}: one gap, {n} events: {evs:?}");
    let gap = evs[0].gap().expect("a gap payload").expect("a gap first");
    assert_eq!(
        (gap.from, gap.to, gap.epoch.as_deref(), gap.reset),
        (1, 0, Some(epoch.as_str()), true),
        "{t}: the reset gap"
    );
    assert_eq!(evs[0].cursor(), Some(format!("{epoch}:0")), "{t}");
    for (e, i) in evs[1..].iter().zip(1..) {
        assert_eq!(e.id, Some(i), "{t}: ids start over, in order");
        assert_eq!(text(e), format!("new{i}"), "{t}: the new incarnation's");
        assert_eq!(e.epoch.as_deref(), Some(epoch.as_str()), "{t}: its epoch");
    }
}

/// Resumes channel `c` from `cursor` on `transport` (SSE also through
/// `Last-Event-ID`) and checks it gets one reset gap, then `new1..=new5`.
async fn assert_resets_on(srv: &Server, transport: &str, cursor: &str) {
    let query = format!("since={cursor}");
    match transport {
        "poll" | "jsonp" => {
            let (evs, next) = poll_events(srv, transport, &query).await;
            assert_reset_then_new(srv, transport, &evs, 5);
            assert_eq!(next, srv.cursor("c", 5), "{transport}: next");
        }
        _ => {
            let evs = stream_events(srv, transport, &query, 6).await;
            assert_reset_then_new(srv, transport, &evs, 5);
        }
    }
    if transport == "sse" {
        let mut s = srv
            .sse_with(Req::get("/ch/c/sse").header("Last-Event-ID", cursor))
            .await;
        assert_reset_then_new(srv, "sse with Last-Event-ID", &s.take(6).await, 5);
    }
}

const EVERY_TRANSPORT: [&str; 6] = ["multipart", "mixed", "sse", "poll", "jsonp", "iframe"];

/// A client that saw 1..=3 before the server restarted, and resumes after
/// the new run has published 5: without epochs it got only 4 and 5, silently.
/// Now its cursor names the old run's epoch, so it gets one reset gap and
/// then 1..=5 of the new run, on every transport.
#[tokio::test]
async fn a_cursor_from_before_a_restart_gets_a_reset_then_the_new_run() {
    let mut old = Server::with_defaults().await;
    publish_texts(&old, "c", "old", 3).await;
    let old_epoch = old.epoch("c");
    let mut kept = Vec::new();
    for t in EVERY_TRANSPORT {
        let cursor = cursor_kept_on(&old, t, 3).await;
        assert_eq!(cursor, format!("{old_epoch}:3"), "{t}: the cursor kept");
        kept.push((t, cursor));
    }
    old.trigger_shutdown();
    old.join(IO_TIMEOUT).await.expect("the old run ends");
    drop(old);

    // A new run: a new hub, so a new incarnation of every channel.
    let srv = Server::with_defaults().await;
    publish_texts(&srv, "c", "new", 5).await;
    assert_ne!(srv.epoch("c"), old_epoch, "a new run, a new epoch");
    for (t, cursor) in &kept {
        assert_resets_on(&srv, t, cursor).await;
    }

    // The bytes of the reset on SSE, with the new run's cursors.
    let e = srv.epoch("c");
    let mut s = srv.sse(&format!("/ch/c/sse?since={old_epoch}:3")).await;
    s.take(2).await;
    let raw = String::from_utf8(s.body.raw().to_vec()).unwrap();
    let want = format!(
        "\n\nevent: gap\ndata: {{\"from\":1,\"to\":0,\"epoch\":\"{e}\",\"reset\":true}}\n\nid: {e}:1\nevent: message\ndata: new1\n\n"
    );
    assert!(raw.contains(&want), "{raw}");

    // A bare id cannot tell the runs apart: `since=3` is taken to be in the
    // current one (kept for hand-written URLs; docs/protocol.md warns).
    let (evs, next) = poll_events(&srv, "poll", "since=3").await;
    assert_eq!(
        evs.iter().map(text).collect::<Vec<_>>(),
        ["new4", "new5"],
        "a bare id resumes in the current incarnation"
    );
    assert_eq!(next, srv.cursor("c", 5));
}

/// The same within one server: the channel is closed (or swept) and made
/// again by the next publish; cursors of its first incarnation get a reset.
#[tokio::test]
async fn a_cursor_from_before_a_close_gets_a_reset_then_the_new_incarnation() {
    let srv = Server::with_defaults().await;
    publish_texts(&srv, "c", "old", 3).await;
    let old_epoch = srv.epoch("c");
    let mut kept = Vec::new();
    for t in EVERY_TRANSPORT {
        kept.push((t, cursor_kept_on(&srv, t, 3).await));
    }
    assert!(srv.hub.close("c"));
    publish_texts(&srv, "c", "new", 5).await;
    assert_ne!(srv.epoch("c"), old_epoch, "a new incarnation, a new epoch");
    for (t, cursor) in &kept {
        assert_eq!(*cursor, format!("{old_epoch}:3"), "{t}: the cursor kept");
        assert_resets_on(&srv, t, cursor).await;
    }
    // The new incarnation's own cursors resume as usual, on every transport.
    let mid = srv.cursor("c", 2);
    for t in ["multipart", "mixed", "sse", "iframe"] {
        let evs = stream_events(&srv, t, &format!("since={mid}"), 3).await;
        assert_eq!(ids(&evs), some_ids(3..=5), "{t}");
    }
    for t in ["poll", "jsonp"] {
        let (evs, next) = poll_events(&srv, t, &format!("since={mid}")).await;
        assert_eq!(
            (ids(&evs), next),
            (some_ids(3..=5), srv.cursor("c", 5)),
            "{t}"
        );
    }
}

/// A reset into an incarnation with nothing published yet: the gap says so
/// (from 1 to 0), a long-poll answers with it at once, and the stream then
/// carries the new events live.
#[tokio::test]
async fn a_reset_into_an_empty_incarnation_then_live_events() {
    let srv = Server::with_defaults().await;
    publish_texts(&srv, "c", "old", 3).await;
    let old = srv.cursor("c", 3);
    assert!(srv.hub.close("c"));
    let r = srv.get(&format!("/ch/c/poll?since={old}&timeout=20")).await;
    let e = srv.epoch("c");
    assert_eq!(
        r.text(),
        format!(
            "{{\"events\":[{{\"type\":\"gap\",\"data\":\"{{\\\"from\\\":1,\\\"to\\\":0,\\\"epoch\\\":\\\"{e}\\\",\\\"reset\\\":true}}\"}}],\"next\":\"{e}:0\"}}"
        )
    );
    let mut s = srv
        .sse_with(Req::get("/ch/c/sse").header("Last-Event-ID", &old))
        .await;
    let mut m = srv.multipart(&format!("/ch/c/mixed?since={old}")).await;
    for t in [&s.next_event().await, &m.next_event().await] {
        let gap = t.gap().unwrap().expect("a reset gap");
        assert_eq!((gap.from, gap.to, gap.reset), (1, 0, true));
    }
    publish_texts(&srv, "c", "new", 2).await;
    let evs = s.take(2).await;
    assert_eq!(evs.iter().map(text).collect::<Vec<_>>(), ["new1", "new2"]);
    assert_eq!(evs[1].cursor(), Some(format!("{e}:2")));
    let evs = m.take(2).await;
    assert_eq!(evs.iter().map(text).collect::<Vec<_>>(), ["new1", "new2"]);
    assert_eq!(evs[1].cursor(), Some(format!("{e}:2")));
}
