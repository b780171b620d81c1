//! Echo suppression (`?client=` on publish and subscribe) and two clients
//! talking both ways through the server with nothing but GETs and POSTs.

use tandem::__private::wire::parse_poll;
use tandem::Transport;

use kit::*;

async fn post_as(srv: &Server, client: &str, data: &str) -> u64 {
    let r = srv
        .post(
            &format!("/ch/room?client={client}"),
            Some("text/plain"),
            data.as_bytes(),
        )
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    r.json()["id"].as_u64().unwrap()
}

both_flavors!(a_client_does_not_get_its_own_events_and_from_names_the_sender);
async fn a_client_does_not_get_its_own_events_and_from_names_the_sender(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    post_as(&srv, "alice", "mine").await;
    post_as(&srv, "bob", "theirs").await;
    post_as(&srv, "alice", "mine again").await;

    let r = srv
        .get("/ch/room/poll?since=0&timeout=0&client=alice")
        .await;
    let (evs, next) = parse_poll(&r.body).unwrap();
    assert_eq!(evs.len(), 1, "{}", r.text());
    assert_eq!((evs[0].id, text(&evs[0])), (Some(2), "theirs"));
    assert_eq!(evs[0].from.as_deref(), Some("bob"));
    assert_eq!(
        next,
        srv.cursor("room", 3),
        "the cursor moves past skipped echoes"
    );
    assert_eq!(r.json()["events"][0]["from"], "bob");

    // Someone else sees everything, each with its sender.
    let r = srv
        .get("/ch/room/poll?since=0&timeout=0&client=carol")
        .await;
    let (evs, _) = parse_poll(&r.body).unwrap();
    let from: Vec<_> = evs.iter().map(|e| e.from.as_deref().unwrap()).collect();
    assert_eq!(from, ["alice", "bob", "alice"]);
    // No client id: no `from` on anonymous events, and nothing skipped.
    srv.publish("room", "anon").await;
    let r = srv
        .get("/ch/room/poll?since=3&timeout=0&client=alice")
        .await;
    let (evs, _) = parse_poll(&r.body).unwrap();
    assert_eq!((evs[0].from.as_deref(), text(&evs[0])), (None, "anon"));
}

both_flavors!(suppression_on_streams);
async fn suppression_on_streams(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut sse = srv.sse("/ch/room/sse?client=alice").await;
    let mut mp = srv.multipart("/ch/room/mixed?client=alice").await;
    let mut frame = srv
        .iframe("/ch/room/iframe?client=alice", "tandemEvent")
        .await;
    post_as(&srv, "alice", "own 1").await;
    post_as(&srv, "alice", "own 2").await;
    let id = post_as(&srv, "bob", "from bob").await;
    // Events are delivered in order, so the first one each stream shows is bob's.
    let e = sse.next_event().await;
    assert_eq!((e.id, text(&e)), (Some(id), "from bob"));
    let e = mp.next_event().await;
    assert_eq!(
        (e.id, text(&e), e.from.as_deref()),
        (Some(id), "from bob", Some("bob"))
    );
    let e = frame.next_event().await;
    assert_eq!((e.id, e.from.as_deref()), (Some(id), Some("bob")));
    assert!(!String::from_utf8_lossy(sse.body.raw()).contains("own"));
}

both_flavors!(two_clients_talk_both_ways_with_gets_and_posts);
async fn two_clients_talk_both_ways_with_gets_and_posts(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    // Alice long-polls; Bob holds a multipart stream. Both POST.
    let mut bob_stream = srv.multipart("/ch/room/multipart?client=bob").await;
    let mut alice_since = "0".to_string();
    for round in 0..3 {
        // Alice waits in a long-poll while Bob speaks.
        let mut conn = srv.connect().await;
        conn.send(
            &Req::get(&format!(
                "/ch/room/poll?client=alice&timeout=10&since={alice_since}"
            ))
            .host(&srv.host())
            .to_bytes(),
        )
        .await;
        srv.wait_subscribers("room", Transport::Poll, 1).await;
        let bob_id = post_as(&srv, "bob", &format!("bob says {round}")).await;
        let r = conn.response("GET").await;
        let (evs, next) = parse_poll(&r.body).unwrap();
        assert_eq!(evs.len(), 1, "{}", r.text());
        assert_eq!(evs[0].id, Some(bob_id));
        assert_eq!(evs[0].from.as_deref(), Some("bob"));
        assert_eq!(text(&evs[0]), format!("bob says {round}"));
        alice_since = next;
        srv.wait_subscribers("room", Transport::Poll, 0).await;

        // Alice answers; Bob's stream shows it (and never his own line).
        let alice_id = post_as(&srv, "alice", &format!("alice says {round}")).await;
        let e = bob_stream.next_event().await;
        assert_eq!(e.id, Some(alice_id));
        assert_eq!(e.from.as_deref(), Some("alice"));
        assert_eq!(text(&e), format!("alice says {round}"));
    }
    // Alice's next poll skips her own last line: nothing new for her.
    let r = srv
        .get(&format!(
            "/ch/room/poll?client=alice&timeout=0&since={alice_since}"
        ))
        .await;
    let (evs, next) = parse_poll(&r.body).unwrap();
    assert!(evs.is_empty(), "{}", r.text());
    assert_eq!(next, srv.cursor("room", 6));
    assert_eq!(bob_stream.pending(), 0);
}
