//! The connection limit (503 with Retry-After), and clients that disconnect
//! mid-stream leaving no subscriber behind.

use std::time::Duration;

use tandem::Transport;

use kit::*;

fn quick_beat() -> Setup {
    config().heartbeat(Duration::from_millis(50))
}

// Serve only: the connection limit is serve's accept loop.
#[tokio::test]
async fn beyond_max_connections_gets_503() {
    let srv = Server::start(quick_beat().max_connections(2)).await;
    let first = srv.sse("/ch/c/sse").await;
    let _second = srv.multipart("/ch/c/multipart").await;

    let r = srv.get("/healthz").await;
    r.expect_error(503, &["too many connections", "max 2"]);
    r.head.expect("retry-after", "1");
    // The refused connection is not kept open.
    assert_eq!(srv.hub.metrics().refused.get(), 1);
    let r = srv.post("/ch/c", Some("text/plain"), b"x").await;
    r.expect_error(503, &["too many connections"]);
    assert_eq!(
        srv.hub.info("c").last_id,
        0,
        "a refused publish publishes nothing"
    );

    // Once a client leaves, there is room again.
    drop(first);
    wait_until("a connection slot frees up", || async {
        srv.hub.metrics().connections.get() < 2
    })
    .await;
    // One keep-alive connection for both, so the limit is not hit again.
    let mut conn = srv.connect().await;
    let r = conn.request(&Req::get("/healthz").host(&srv.host())).await;
    assert_eq!(r.head.status, 200);
    let m = conn
        .request(&Req::get("/metrics").host(&srv.host()))
        .await
        .text();
    assert!(m.contains("tandem_connections_refused_total 2\n"), "{m}");
}

async fn disconnect_leaves_nothing(flavor: Flavor, transport: &str, t: Transport) {
    let srv = flavor.start(quick_beat()).await;
    let path = format!("/ch/c/{transport}?timeout=30");
    let mut conn = srv.connect().await;
    conn.send(&Req::get(&path).host(&srv.host()).to_bytes())
        .await;
    srv.wait_subscribers("c", t, 1).await;
    let info = srv.info("c").await;
    assert_eq!(info["subscribers"][transport], 1, "{info}");
    assert_eq!(info["total"], 1);

    drop(conn);
    wait_until(&format!("the {transport} subscriber is gone"), || async {
        srv.info("c").await["total"] == 0
    })
    .await;
    assert_eq!(srv.hub.metrics().open[t as usize].get(), 0);
    wait_until("the connection is closed", || async {
        // Only the connection asking /info is open, if any.
        srv.hub.metrics().connections.get() == 0
    })
    .await;
}

both_flavors!(sse_disconnect_leaves_no_subscriber);
async fn sse_disconnect_leaves_no_subscriber(flavor: Flavor) {
    disconnect_leaves_nothing(flavor, "sse", Transport::Sse).await;
}

both_flavors!(multipart_disconnect_leaves_no_subscriber);
async fn multipart_disconnect_leaves_no_subscriber(flavor: Flavor) {
    disconnect_leaves_nothing(flavor, "multipart", Transport::Multipart).await;
}

both_flavors!(mixed_disconnect_leaves_no_subscriber);
async fn mixed_disconnect_leaves_no_subscriber(flavor: Flavor) {
    disconnect_leaves_nothing(flavor, "mixed", Transport::Mixed).await;
}

both_flavors!(iframe_disconnect_leaves_no_subscriber);
async fn iframe_disconnect_leaves_no_subscriber(flavor: Flavor) {
    disconnect_leaves_nothing(flavor, "iframe", Transport::Iframe).await;
}

both_flavors!(poll_disconnect_leaves_no_subscriber);
async fn poll_disconnect_leaves_no_subscriber(flavor: Flavor) {
    disconnect_leaves_nothing(flavor, "poll", Transport::Poll).await;
}

both_flavors!(jsonp_disconnect_leaves_no_subscriber);
async fn jsonp_disconnect_leaves_no_subscriber(flavor: Flavor) {
    disconnect_leaves_nothing(flavor, "jsonp", Transport::Jsonp).await;
}

both_flavors!(many_streams_come_and_go);
async fn many_streams_come_and_go(flavor: Flavor) {
    let srv = flavor.start(quick_beat()).await;
    for round in 0..3 {
        let mut streams = Vec::new();
        for _ in 0..20 {
            streams.push(srv.sse("/ch/c/sse").await);
        }
        assert_eq!(srv.subscribers("c", Transport::Sse), 20);
        let id = srv.publish("c", &format!("round {round}")).await;
        for s in &mut streams {
            assert_eq!(s.next_event().await.id, Some(id));
        }
        drop(streams);
        srv.wait_subscribers("c", Transport::Sse, 0).await;
    }
}
