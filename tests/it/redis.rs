//! Many nodes, one set of channels: tandem nodes sharing their channels
//! through a real `redis-server` (started by the test on a free port, in a
//! temporary directory): a publish on one node reaches subscribers on the
//! others in order, a subscriber resumes on another node with its cursor,
//! and while Redis is down publishes get 503 (never a 202 for an event not
//! stored) and the nodes catch up by themselves when it is back.

use kit::{config, wait_until, Events, IframeParser, RedisServer, Req, Server};
use tandem::__private::wire::{parse_jsonp, parse_poll, MultipartParser, SseParser, WireEvent};

async fn node(redis: &RedisServer) -> Server {
    Server::start(config().redis(&redis.url())).await
}

pub(crate) fn texts(evs: &[WireEvent]) -> Vec<String> {
    evs.iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

pub(crate) fn ids(evs: &[WireEvent]) -> Vec<u64> {
    evs.iter()
        .map(|e| e.id.expect("an event, not a gap"))
        .collect()
}

/// Every event of a long-poll from `since` (JSON), waiting up to 1 s.
pub(crate) async fn poll(srv: &Server, channel: &str, since: &str) -> serde_json::Value {
    let r = srv
        .get(&format!("/ch/{channel}/poll?since={since}&timeout=1"))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    r.json()
}

/// Subscribers of one channel on two nodes, every transport: SSE and the
/// forever iframe on `a`, multipart/x-mixed-replace and multipart/mixed
/// on `b` (streams, opened before the publishes), and long-polls (JSON on
/// `b`, JSONP on `a`) from the start.
pub(crate) struct Watchers {
    channel: String,
    sse: Events<SseParser>,
    iframe: Events<IframeParser>,
    multipart: Events<MultipartParser>,
    mixed: Events<MultipartParser>,
}

impl Watchers {
    pub(crate) async fn open(a: &Server, b: &Server, channel: &str) -> Watchers {
        let w = Watchers {
            channel: channel.to_string(),
            sse: a.sse(&format!("/ch/{channel}/sse")).await,
            iframe: a
                .iframe(&format!("/ch/{channel}/iframe"), "tandemEvent")
                .await,
            multipart: b.multipart(&format!("/ch/{channel}/multipart")).await,
            mixed: b.multipart(&format!("/ch/{channel}/mixed")).await,
        };
        // At least these two streams on each (the test may have more).
        for (srv, n) in [(a, 2), (b, 2)] {
            wait_until("the streams are subscribed", || async {
                srv.info(channel).await["total"].as_u64() >= Some(n)
            })
            .await;
        }
        w
    }

    /// Every transport received `want` (texts), ids 1.., in order, once.
    pub(crate) async fn expect(&mut self, a: &Server, b: &Server, want: &[String]) {
        let n = want.len();
        let ch = self.channel.clone();
        let all_ids: Vec<u64> = (1..=n as u64).collect();
        for (what, got) in [
            ("sse", self.sse.take(n).await),
            ("iframe", self.iframe.take(n).await),
            ("multipart", self.multipart.take(n).await),
            ("mixed", self.mixed.take(n).await),
        ] {
            assert_eq!(texts(&got), want, "{what} on {ch}");
            assert_eq!(ids(&got), all_ids, "{what} on {ch}");
        }
        let mut polled = Vec::new();
        let mut since = "0".to_string();
        while polled.len() < n {
            let r = b
                .get(&format!("/ch/{ch}/poll?since={since}&timeout=2"))
                .await;
            assert_eq!(r.head.status, 200, "{}", r.text());
            let (evs, cursor) = parse_poll(r.body.as_ref()).expect("poll JSON");
            polled.extend(evs);
            since = cursor;
        }
        assert_eq!(texts(&polled), want, "poll on {ch}");
        let r = a.get(&format!("/ch/{ch}/jsonp?since=0&callback=cb")).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
        let (_, evs, _) = parse_jsonp(r.body.as_ref()).expect("jsonp");
        assert_eq!(ids(&evs), all_ids, "jsonp on {ch}");
    }
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_every_node_in_order() {
    let redis = RedisServer::start();
    let (n1, n2, n3) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let mut sse = n2.sse("/ch/news/sse").await;
    let mut every = Watchers::open(&n2, &n3, "news").await;
    for i in 1..=30u64 {
        let id = n1.publish("news", &format!("e{i}")).await;
        assert_eq!(id, i, "ids come from redis, one sequence for all nodes");
    }
    let want: Vec<String> = (1..=30).map(|i| format!("e{i}")).collect();
    let got = sse.take(30).await;
    assert_eq!(texts(&got), want);
    assert_eq!(ids(&got), (1..=30).collect::<Vec<_>>());
    every.expect(&n2, &n3, &want).await;
    // The same epoch everywhere: a cursor means the same on every node.
    let epoch = got[0].epoch.clone().expect("an epoch");
    for srv in [&n1, &n2, &n3] {
        assert_eq!(srv.epoch("news"), epoch);
    }
    // Publishes on every node interleave into one order.
    for (i, srv) in [&n3, &n2, &n1, &n2].iter().enumerate() {
        assert_eq!(srv.publish("news", &format!("m{i}")).await, 31 + i as u64);
    }
    assert_eq!(ids(&sse.take(4).await), vec![31, 32, 33, 34]);
    let long = poll(&n1, "news", &format!("{epoch}:30")).await;
    let polled: Vec<u64> = long["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert_eq!(polled, vec![31, 32, 33, 34]);
}

#[tokio::test]
async fn a_subscriber_resumes_on_another_node_with_its_cursor() {
    let redis = RedisServer::start();
    let n1 = node(&redis).await;
    let n2 = node(&redis).await;
    for i in 1..=10 {
        n1.publish("c", &format!("e{i}")).await;
    }
    let mut first = n1.sse("/ch/c/sse?since=0").await;
    let seen = first.take(5).await;
    let cursor = format!("{}:{}", seen[4].epoch.clone().unwrap(), seen[4].id.unwrap());
    drop(first);
    // The same cursor on the other node: the rest, once, in order.
    let mut second = n2
        .sse_with(Req::get("/ch/c/sse").header("Last-Event-ID", &cursor))
        .await;
    assert_eq!(ids(&second.take(5).await), vec![6, 7, 8, 9, 10]);
    n1.publish("c", "e11").await;
    assert_eq!(ids(&[second.next_event().await]), vec![11]);
    // A node started after the events loads them from redis.
    let n3 = node(&redis).await;
    let all = poll(&n3, "c", "0").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 11);
}

/// A cursor reaching a node before the events it counts (a long-poll
/// balanced round robin: node 1 answered it, node 2's copy is a moment
/// behind) waits for them there, and gets what follows, once: no reset, no
/// replay. The cursor here is one ahead of every node, so the wait is sure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_ahead_of_a_nodes_copy_waits_for_the_events() {
    let redis = RedisServer::start();
    let n1 = node(&redis).await;
    let n2 = node(&redis).await;
    for i in 1..=3 {
        n1.publish("c", &format!("e{i}")).await;
    }
    // Node 2 hears of the events a moment after node 1 stored them (under
    // load, a poll right after the publishes may find two of three).
    wait_until("node 2's copy holds the three events", || async {
        poll(&n2, "c", "0").await["events"]
            .as_array()
            .unwrap()
            .len()
            == 3
    })
    .await;
    let ahead = n2.cursor("c", 4);
    let path = format!("/ch/c/poll?since={ahead}&timeout=10");
    let waiting = n2.get(&path);
    let publishing = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        n1.publish("c", "e4").await;
        n1.publish("c", "e5").await;
    };
    let (answer, ()) = tokio::join!(waiting, publishing);
    assert_eq!(answer.head.status, 200, "{}", answer.text());
    let v = answer.json();
    let got: Vec<(String, String)> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].to_string(), e["data"].to_string()))
        .collect();
    // Not a reset gap and events 1 to 3 again: event 5 alone.
    assert_eq!(
        got,
        [("\"message\"".to_string(), "\"e5\"".to_string())],
        "{v}"
    );
    assert_eq!(v["events"][0]["id"], 5);
}

#[tokio::test]
async fn while_redis_is_down_publishes_get_503_and_nothing_is_lost() {
    let mut redis = RedisServer::start_with(true);
    let n1 = node(&redis).await;
    let n2 = node(&redis).await;
    for i in 1..=5 {
        n1.publish("c", &format!("e{i}")).await;
    }
    let mut sub = n2.sse("/ch/c/sse?since=0").await;
    assert_eq!(ids(&sub.take(5).await), vec![1, 2, 3, 4, 5]);
    redis.stop();
    let r = n1
        .post("/ch/c", Some("text/plain"), b"during the outage")
        .await;
    r.expect_error(503, &["redis", "not stored"]);
    r.head.expect("retry-after", "1");
    wait_until("node 2 notices", || async {
        n2.get("/healthz").await.head.status == 503
    })
    .await;
    redis.restart();
    // The nodes reconnect by themselves; publishing works again and ids
    // go on from where they were (redis kept them in its append-only file).
    wait_until("node 2 back", || async {
        n2.get("/healthz").await.head.status == 200
    })
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        let r = n1.post("/ch/c", Some("text/plain"), b"e6").await;
        if r.head.status == 202 {
            break r.json()["id"].as_u64().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no publish accepted: {}",
            r.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(id, 6);
    let next = sub.next_event().await;
    assert_eq!(
        (next.id, texts(std::slice::from_ref(&next))),
        (Some(6), vec!["e6".to_string()])
    );
}

/// Every node's subscription is cut (Redis stays up) while events are
/// published: the nodes resubscribe and read what they missed from the
/// log, so a subscriber gets every event once, in order.
#[tokio::test]
async fn a_node_that_missed_announcements_catches_up_from_the_log() {
    let redis = RedisServer::start();
    let n1 = node(&redis).await;
    let n2 = node(&redis).await;
    let mut sub = n2.sse("/ch/c/sse").await;
    for i in 1..=5 {
        n1.publish("c", &format!("e{i}")).await;
    }
    assert_eq!(ids(&sub.take(5).await), vec![1, 2, 3, 4, 5]);
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed.starts_with(':'), "{killed}");
    for i in 6..=40 {
        n1.publish("c", &format!("e{i}")).await;
    }
    let got = sub.take(35).await;
    assert_eq!(ids(&got), (6..=40).collect::<Vec<_>>());
    assert_eq!(texts(&got)[34], "e40");
    n1.publish("c", "e41").await;
    assert_eq!(sub.next_event().await.id, Some(41));
}

/// A `tandem serve --redis` process on a free port, killed (SIGKILL, by
/// PID) when dropped.
pub(crate) struct NodeProcess {
    child: std::process::Child,
    pub(crate) base: String,
}

impl NodeProcess {
    async fn start(redis: &RedisServer) -> NodeProcess {
        NodeProcess::start_args(&["--redis", &redis.url()]).await
    }

    /// `tandem serve` with these flags (the Redis ones) on a free port.
    pub(crate) async fn start_args(args: &[&str]) -> NodeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .args(["--threads", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tandem");
        let base = format!("http://127.0.0.1:{port}");
        let node = NodeProcess { child, base };
        wait_until("the node listens", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        node
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `kill -9` of the node a subscriber reads from, in the middle of a
/// publish stream on another node: the subscriber goes to a third node
/// with its cursor and gets every event once, in order.
#[tokio::test]
async fn a_node_killed_mid_stream_loses_nothing() {
    use tandem::client::{Client, Delivery};
    let redis = RedisServer::start();
    let mut a = NodeProcess::start(&redis).await;
    let b = NodeProcess::start(&redis).await;
    let c = NodeProcess::start(&redis).await;
    let client = Client::new().with_retries(Some(0));
    let mut sub = client
        .subscribe(&format!("{}/ch/stream/sse", a.base))
        .await
        .expect("subscribe on node a");
    let publisher = {
        let url = format!("{}/ch/stream", b.base);
        tokio::spawn(async move {
            let client = Client::new();
            for i in 1..=300u64 {
                let id = client
                    .publish(&url, tandem::NewEvent::message(format!("e{i}")))
                    .await
                    .expect("publish on node b");
                assert_eq!(id, i);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let mut got = Vec::new();
    let mut cursor = None;
    while got.len() < 60 {
        match sub.next().await.expect("a delivery").expect("no error") {
            Delivery::Event(e) => {
                got.push(e.id);
                cursor = Some(e.cursor());
            }
            Delivery::Gap(g) => panic!("a gap on node a: {g:?}"),
        }
    }
    // Node a has reported its subscriber (node b, which has none, sees it).
    let info = format!("{}/ch/stream/info", b.base);
    let counted = |want: serde_json::Value| {
        let info = info.clone();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let v: serde_json::Value =
                    serde_json::from_slice(&fetch(&info).await).expect("info is JSON");
                if v["cluster"] == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "want {want}, have {v}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
    };
    counted(serde_json::json!({"nodes": 1, "subscribers": 1})).await;
    a.kill();
    drop(sub);
    // Its last report goes stale: it stops counting within three intervals.
    counted(serde_json::json!({"nodes": 0, "subscribers": 0})).await;
    let mut sub = client
        .subscribe(&format!("{}/ch/stream/sse", c.base))
        .since(cursor.expect("a cursor"))
        .await
        .expect("subscribe on node c");
    while got.len() < 300 {
        match sub.next().await.expect("a delivery").expect("no error") {
            Delivery::Event(e) => got.push(e.id),
            Delivery::Gap(g) => panic!("a gap after moving to node c: {g:?}"),
        }
    }
    publisher.await.expect("the publisher");
    assert_eq!(
        got,
        (1..=300).collect::<Vec<_>>(),
        "every event once, in order"
    );
    // Node c counts its subscriber now.
    counted(serde_json::json!({"nodes": 1, "subscribers": 1})).await;
}

/// GET `url` (a plain `http://127.0.0.1:PORT/...`) and return the body.
pub(crate) async fn fetch(url: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let at = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    buf.split_off(at)
}

/// `/ch/{c}/info` and `/metrics` add what every node reported: nodes and
/// their subscribers; a node that goes stops counting within three reports.
#[tokio::test]
async fn info_and_metrics_tell_the_whole_cluster() {
    let redis = RedisServer::start();
    let n1 = node(&redis).await;
    let mut n2 = node(&redis).await;
    let _a = n1.sse("/ch/counted/sse").await;
    let _b = n2.sse("/ch/counted/sse").await;
    let _c = n2.sse("/ch/counted/sse").await;
    let _other = n2.sse("/ch/elsewhere/sse").await;
    let cluster = |v: serde_json::Value| v["cluster"].clone();
    wait_until("both nodes' subscribers counted", || async {
        cluster(n1.info("counted").await) == serde_json::json!({"nodes": 2, "subscribers": 3})
    })
    .await;
    assert_eq!(
        n1.info("counted").await["total"],
        1,
        "the node's own figure stays"
    );
    let metrics = n1.get("/metrics").await.text();
    assert!(metrics.contains("\ntandem_cluster_nodes 2\n"), "{metrics}");
    assert!(
        metrics.contains("\ntandem_cluster_subscribers 4\n"),
        "{metrics}"
    );
    n2.shutdown().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while cluster(n1.info("counted").await) != serde_json::json!({"nodes": 1, "subscribers": 1}) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 2 still counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Without --redis there is no cluster to tell.
    let alone = Server::start(config()).await;
    assert!(alone.info("counted").await.get("cluster").is_none());
}

/// With `--redis` every node publishes its status snapshot, named, while
/// anyone on any node watches `tandem.status`: one subscriber on node 1
/// hears both nodes.
#[tokio::test]
async fn the_status_feed_hears_every_node() {
    let redis = RedisServer::start();
    let n1 = node(&redis).await;
    let _n2 = node(&redis).await;
    let mut feed = n1.sse("/ch/tandem.status/sse").await;
    let mut names = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while names.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "heard only {names:?}"
        );
        let e = feed.next_event().await;
        if e.kind != "status" {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&e.data).expect("a snapshot");
        names.insert(v["node"].as_str().expect("a node name").to_string());
    }
}

/// What a publisher saw on one channel: the events that got a 202 (id,
/// text, when), and when each 503 came.
#[derive(Debug, Default)]
pub(crate) struct Published {
    pub(crate) accepted: Vec<(u64, String, tokio::time::Instant)>,
    pub(crate) refused: Vec<tokio::time::Instant>,
}

/// Publishes `p1`, `p2`, ... on each of `urls` (each url its own
/// publisher, so a slow one holds up no other), one every 5 ms, for `run`
/// and then until a publish is accepted after the last refused one (20 s
/// more at most: a loaded machine may take a while to reconnect): a 503 is
/// counted, any other failure fails the test.
pub(crate) fn publisher(
    urls: Vec<String>,
    run: std::time::Duration,
) -> tokio::task::JoinHandle<Vec<Published>> {
    let start = tokio::time::Instant::now();
    let each: Vec<_> = urls
        .into_iter()
        .map(|url| {
            tokio::spawn(async move {
                let client = tandem::client::Client::new();
                let mut seen = Published::default();
                let mut i = 0;
                let refused_last = |seen: &Published| {
                    seen.refused
                        .last()
                        .is_some_and(|r| seen.accepted.last().is_none_or(|(_, _, a)| a < r))
                };
                while start.elapsed() < run
                    || (refused_last(&seen)
                        && start.elapsed() < run + std::time::Duration::from_secs(20))
                {
                    i += 1;
                    let text = format!("p{i}");
                    match client
                        .publish(&url, tandem::NewEvent::message(text.clone()))
                        .await
                    {
                        Ok(id) => seen.accepted.push((id, text, tokio::time::Instant::now())),
                        Err(e) if e.status().map(|s| s.as_u16()) == Some(503) => {
                            seen.refused.push(tokio::time::Instant::now())
                        }
                        Err(e) => panic!("publish {i} on {url}: {e}"),
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                seen
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut out = Vec::new();
        for p in each {
            out.push(p.await.expect("a publisher"));
        }
        out
    })
}

/// Reads `sub` until the last accepted event, and checks that it got
/// every event that got a 202, once, in order, with consecutive ids (an
/// event whose answer was lost with Redis may be stored without a 202; it
/// arrives too, in its place).
pub(crate) async fn expect_every_accepted(sub: &mut Events<SseParser>, seen: &Published) {
    let last = seen.accepted.last().expect("publishes accepted").0;
    let mut got = Vec::new();
    while got.last().map_or(0, |(id, _)| *id) < last {
        let e = sub.next_event().await;
        let Some(id) = e.id else {
            panic!("a gap after {:?}: {e:?}", got.last());
        };
        got.push((id, String::from_utf8_lossy(&e.data).into_owned()));
    }
    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=last).collect::<Vec<_>>(),
        "consecutive, once, in order"
    );
    for (id, text, _) in &seen.accepted {
        assert!(
            got.contains(&(*id, text.clone())),
            "accepted {id} {text} never arrived"
        );
    }
}

/// Redis (append-only) restarts while a publisher keeps publishing on one
/// node and a subscriber reads on another: the nodes reconnect by
/// themselves, publishes during the outage are refused (503), and the
/// subscriber receives every event that got a 202, once, in order.
#[tokio::test]
async fn a_redis_restart_in_the_middle_of_a_stream_loses_no_accepted_event() {
    let mut redis = RedisServer::start_with(true);
    // A log long enough for what is published (200 a second) between
    // Redis's return and the nodes' resubscribing (up to 1 s).
    let big = || config().buffer_events(1024).redis(&redis.url());
    let n1 = Server::start(big()).await;
    let n2 = Server::start(big()).await;
    let mut sub = n2.sse("/ch/live/sse").await;
    let publishing = publisher(vec![n1.url("/ch/live")], std::time::Duration::from_secs(4));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    redis.stop();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    redis.restart();
    let seen = publishing.await.expect("the publisher").remove(0);
    let last_refused = *seen
        .refused
        .last()
        .expect("some publishes fell in the outage");
    assert!(
        seen.accepted.iter().any(|(_, _, at)| *at > last_refused),
        "publishing worked again after the restart"
    );
    expect_every_accepted(&mut sub, &seen).await;
}

/// `tandem serve` with these flags, expected to give up at start: its exit
/// code and what it printed. Never a hang: killed (by PID) after 15 s.
pub(crate) async fn start_fails(args: &[&str]) -> (i32, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["serve", "--listen", "127.0.0.1:0", "--threads", "1"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tandem");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tandem serve {args:?} did not give up within 15 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    (status.code().expect("an exit code"), err)
}

/// A Redis that wants a password: from the URL, or from a file
/// (`--redis-password-file`, its line end stripped); a wrong one, an
/// empty or unreadable file are clear start-up errors.
#[tokio::test]
async fn a_password_from_the_url_or_a_file() {
    let redis = RedisServer::start_opts(kit::RedisOpts {
        password: Some("s3cret-pass".into()),
        ..kit::RedisOpts::default()
    });
    let port = redis.port;
    // In the URL , in process.
    let n1 =
        Server::start(config().redis(&format!("redis://:s3cret-pass@127.0.0.1:{port}/0"))).await;
    // From a file, a process.
    let dir = std::env::temp_dir().join(format!("tandem-pwfile-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "s3cret-pass\n").unwrap();
    let file = file.to_str().unwrap().to_string();
    let url = redis.url();
    let n2 = NodeProcess::start_args(&["--redis", &url, "--redis-password-file", &file]).await;
    let mut sub = n1.sse("/ch/pw/sse").await;
    let client = tandem::client::Client::new();
    let id = client
        .publish(
            &format!("{}/ch/pw", n2.base),
            tandem::NewEvent::message("hi"),
        )
        .await
        .expect("publish through node 2");
    assert_eq!(id, 1);
    assert_eq!(texts(&[sub.next_event().await]), vec!["hi".to_string()]);

    // Wrong, missing: exit 1, naming the password, not printing it.
    let (code, err) = start_fails(&["--redis", &format!("redis://:nope@127.0.0.1:{port}/0")]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("password was refused"), "{err}");
    assert!(!err.contains("nope"), "the password is not printed: {err}");
    let (code, err) = start_fails(&["--redis", &url]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("password"), "{err}");
    // An empty or unreadable file: a usage error, exit 2.
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (code, err) = start_fails(&[
        "--redis",
        &url,
        "--redis-password-file",
        empty.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("password file"), "{err}");
    let missing = dir.join("missing");
    let (code, err) = start_fails(&[
        "--redis",
        &url,
        "--redis-password-file",
        missing.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read the redis password file"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rediss://`: a Redis on TLS only, its certificate signed by a CA made
/// by the test. The node trusts it with `--redis-ca` (in process:
/// `RedisOptions::ca_pem`); without it the start fails, saying why.
#[tokio::test]
async fn rediss_with_the_ca_given() {
    let redis = RedisServer::start_opts(kit::RedisOpts {
        tls: true,
        password: Some("tls-pass".into()),
        ..kit::RedisOpts::default()
    });
    let url = format!("rediss://:tls-pass@127.0.0.1:{}/0", redis.port);
    assert!(url.starts_with("rediss://"));
    let ca = redis.ca_file();
    let pem = std::fs::read(&ca).expect("the CA");
    let n1 =
        Server::start(config().redis_options(tandem::RedisOptions::new(&url).ca_pem(pem))).await;
    let n2 = NodeProcess::start_args(&["--redis", &url, "--redis-ca", ca.to_str().unwrap()]).await;
    let mut sub = n1.sse("/ch/tls/sse").await;
    let client = tandem::client::Client::new();
    for i in 1..=3u64 {
        let id = client
            .publish(
                &format!("{}/ch/tls", n2.base),
                tandem::NewEvent::message(format!("t{i}")),
            )
            .await
            .expect("publish through node 2");
        assert_eq!(id, i);
    }
    assert_eq!(ids(&sub.take(3).await), vec![1, 2, 3]);
    // Not trusted without the CA (the system's store does not have it).
    let (code, err) = start_fails(&["--redis", &url]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--redis-ca"), "{err}");
    // A CA for plain redis:// is a usage error.
    let plain = format!("redis://127.0.0.1:{}/0", redis.port);
    let (code, err) = start_fails(&["--redis", &plain, "--redis-ca", ca.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rediss://"), "{err}");
}
