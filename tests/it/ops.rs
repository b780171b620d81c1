//! `/ch/{c}/info`, `/healthz` and `/metrics`.

use tandem::Transport;

use kit::*;

both_flavors!(info_counts_subscribers_per_transport);
async fn info_counts_subscribers_per_transport(flavor: Flavor) {
    let srv = flavor.start(config().buffer_events(2)).await;
    let v = srv.info("c").await;
    assert_eq!(
        v,
        serde_json::json!({
            "channel": "c", "epoch": null, "last_id": 0, "buffered": 0, "total": 0,
            "subscribers": {"multipart": 0, "mixed": 0, "sse": 0, "poll": 0,
                            "jsonp": 0, "iframe": 0, "library": 0}
        })
    );

    for i in 0..3 {
        srv.publish("c", &format!("{i}")).await;
    }
    let _sse1 = srv.sse("/ch/c/sse").await;
    let _sse2 = srv.sse("/ch/c/sse").await;
    let _mp = srv.multipart("/ch/c/multipart").await;
    let _mx = srv.multipart("/ch/c/mixed").await;
    let _fr = srv.iframe("/ch/c/iframe", "tandemEvent").await;
    let mut poll = srv.connect().await;
    poll.send(
        &Req::get("/ch/c/poll?timeout=20")
            .host(&srv.host())
            .to_bytes(),
    )
    .await;
    srv.wait_subscribers("c", Transport::Poll, 1).await;
    let _lib = srv
        .hub
        .subscribe("c", tandem::SubscribeOptions::default())
        .unwrap();
    let r = srv.get("/ch/c/info").await;
    r.head.expect("content-type", "application/json");
    r.head.expect_no_cache();
    let v = r.json();
    assert_eq!(v["channel"], "c");
    assert_eq!(v["epoch"], srv.epoch("c"));
    assert_eq!(v["last_id"], 3);
    assert_eq!(v["buffered"], 2, "the ring holds buffer_events");
    let subs = &v["subscribers"];
    assert_eq!(
        (
            subs["sse"].as_u64(),
            subs["multipart"].as_u64(),
            subs["mixed"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(
        (
            subs["iframe"].as_u64(),
            subs["library"].as_u64(),
            subs["jsonp"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(subs["poll"].as_u64(), Some(1), "the waiting long-poll");
    let total: u64 = subs
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(v["total"].as_u64(), Some(total));

    // Another channel is independent.
    assert_eq!(srv.info("other").await["last_id"], 0);
}

both_flavors!(healthz);
async fn healthz(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let r = srv.get("/healthz").await;
    assert_eq!(r.head.status, 200);
    r.head.expect("content-type", "application/json");
    assert_eq!(r.text(), "{\"status\":\"ok\"}");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
        .parse()
        .unwrap()
}

// Serve only: `tandem_connections_open` and `_refused_total` are counted
// by serve's accept loop, which an embedder's hyper server does not run.
#[tokio::test]
async fn metrics_reflect_activity() {
    let srv = Server::start(
        config()
            .buffer_events(2)
            .heartbeat(std::time::Duration::from_millis(100)),
    )
    .await;
    let r = srv.get("/metrics").await;
    assert_eq!(r.head.status, 200);
    r.head.expect("content-type", "text/plain; version=0.0.4");
    let m = r.text();
    assert_eq!(metric(&m, "tandem_events_published_total"), 0);
    assert!(m.contains("# TYPE tandem_events_published_total counter\n"));
    assert!(m.contains("# TYPE tandem_subscribers_open gauge\n"));

    let mut sse = srv.sse("/ch/a/sse").await;
    for i in 0..3 {
        srv.publish("a", &format!("{i}")).await;
    }
    srv.publish("b", "x").await;
    sse.take(3).await;
    // A poll from 0 on a ring of 2 sees a gap.
    srv.get("/ch/a/poll?since=0&timeout=0").await;

    let m = srv.get("/metrics").await.text();
    assert_eq!(metric(&m, "tandem_events_published_total"), 4);
    assert!(
        metric(&m, "tandem_deliveries_total") >= 5,
        "3 streamed + 2 polled:\n{m}"
    );
    assert_eq!(metric(&m, "tandem_gaps_total"), 1);
    assert!(metric(&m, "tandem_bytes_written_total") > 2048);
    assert_eq!(metric(&m, "tandem_channels"), 2);
    assert!(
        metric(&m, "tandem_connections_open") >= 2,
        "the stream and the scrape"
    );
    assert_eq!(metric(&m, "tandem_subscribers_open{transport=\"sse\"}"), 1);
    assert_eq!(metric(&m, "tandem_subscribers_open{transport=\"poll\"}"), 0);
    assert_eq!(metric(&m, "tandem_connections_refused_total"), 0);

    drop(sse);
    wait_until("the sse gauge drops", || async {
        let m = srv.get("/metrics").await.text();
        metric(&m, "tandem_subscribers_open{transport=\"sse\"}") == 0
    })
    .await;
}

both_flavors!(head_probes_get_headers_without_a_body);
async fn head_probes_get_headers_without_a_body(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    for path in ["/healthz", "/metrics", "/ch/c/info", "/", "/tandem.js"] {
        let r = srv.send(Req::new("HEAD", path)).await;
        assert_eq!(r.head.status, 200, "HEAD {path}");
        assert!(r.body.is_empty(), "HEAD {path} sent a body");
    }
    // Subscribe routes hold a request open: HEAD is refused there, not half-served.
    let r = srv.send(Req::new("HEAD", "/ch/c/sse")).await;
    assert_eq!(r.head.status, 405);
    assert_eq!(r.head.header("allow"), Some("GET, OPTIONS"));
}
