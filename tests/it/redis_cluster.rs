//! Many nodes on a Redis Cluster: three masters started by the test
//! (`kit::RedisCluster`, append-only, on free ports in temporary
//! directories) and three tandem nodes. Channels are picked to land on the
//! three different shards, and carry the same checks as on one Redis
//! (`redis.rs`, whose helpers these reuse): every transport on every node
//! receives every event in order, once; a subscriber resumes on another
//! node with its cursor; a shard master restarted mid-stream costs only
//! its own channels' publishes (503) and loses no accepted event.

use kit::{config, wait_until, RedisCluster, Req, Server};

use super::redis::{
    expect_every_accepted, fetch, ids, poll, publisher, start_fails, texts, NodeProcess, Watchers,
};

async fn node(cluster: &RedisCluster) -> Server {
    Server::start(config().redis_options(tandem::RedisOptions::cluster(cluster.urls()))).await
}

/// One channel name per shard (`CLUSTER KEYSLOT` of its keys says where).
fn one_channel_per_shard(cluster: &RedisCluster) -> [String; 3] {
    let mut out: [Option<String>; 3] = Default::default();
    for i in 0.. {
        let name = format!("ch{i}");
        let shard = cluster.node_of_channel(&name);
        if out[shard].is_none() {
            out[shard] = Some(name);
        }
        if out.iter().all(Option::is_some) {
            break;
        }
    }
    out.map(|c| c.expect("a channel"))
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_every_node_on_every_shard() {
    let cluster = RedisCluster::start();
    let (n1, n2, n3) = (
        node(&cluster).await,
        node(&cluster).await,
        node(&cluster).await,
    );
    let channels = one_channel_per_shard(&cluster);
    let mut watchers = Vec::new();
    for ch in &channels {
        watchers.push(Watchers::open(&n2, &n3, ch).await);
    }
    // Interleaved over the three shards.
    for i in 1..=20u64 {
        for ch in &channels {
            let id = n1.publish(ch, &format!("{ch}-{i}")).await;
            assert_eq!(id, i, "ids come from the channel's shard");
        }
    }
    for (ch, w) in channels.iter().zip(&mut watchers) {
        let want: Vec<String> = (1..=20).map(|i| format!("{ch}-{i}")).collect();
        w.expect(&n2, &n3, &want).await;
        // The publishing node's own copy follows the announcements too.
        wait_until("node 1's copy", || async {
            n1.info(ch).await["last_id"].as_u64() == Some(20)
        })
        .await;
        let epoch = n1.epoch(ch);
        assert_eq!((n2.epoch(ch), n3.epoch(ch)), (epoch.clone(), epoch));
    }
    // Each channel's keys are on its own shard: the other masters have none.
    for (shard, ch) in channels.iter().enumerate() {
        for (i, master) in cluster.nodes.iter().enumerate() {
            let exists = master.command(&["EXISTS", &format!("tandem:{{{ch}}}:l")]);
            if i == shard {
                assert_eq!(exists, ":1", "{ch} on node {i}");
            } else {
                assert!(exists.starts_with("-MOVED"), "{ch} on node {i}: {exists}");
            }
        }
    }
    // A node started now loads every shard's channels.
    let n4 = node(&cluster).await;
    for ch in &channels {
        let all = poll(&n4, ch, "0").await;
        assert_eq!(all["events"].as_array().unwrap().len(), 20, "{ch}");
    }
    // The whole cluster's figures: node 2 and node 3 each have two
    // streams on each channel.
    wait_until("every node's subscribers counted", || async {
        n1.info(&channels[1]).await["cluster"] == serde_json::json!({"nodes": 2, "subscribers": 4})
    })
    .await;
    let metrics = n1.get("/metrics").await.text();
    assert!(metrics.contains("\ntandem_cluster_nodes 4\n"), "{metrics}");
    assert!(
        metrics.contains("\ntandem_cluster_subscribers 12\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_subscriber_resumes_on_another_node_with_its_cursor() {
    let cluster = RedisCluster::start();
    let n1 = node(&cluster).await;
    let n2 = node(&cluster).await;
    for ch in one_channel_per_shard(&cluster) {
        for i in 1..=10 {
            n1.publish(&ch, &format!("e{i}")).await;
        }
        let mut first = n1.sse(&format!("/ch/{ch}/sse?since=0")).await;
        let seen = first.take(5).await;
        let cursor = format!("{}:{}", seen[4].epoch.clone().unwrap(), seen[4].id.unwrap());
        drop(first);
        let mut second = n2
            .sse_with(Req::get(&format!("/ch/{ch}/sse")).header("Last-Event-ID", &cursor))
            .await;
        assert_eq!(ids(&second.take(5).await), vec![6, 7, 8, 9, 10], "{ch}");
        n1.publish(&ch, "e11").await;
        assert_eq!(ids(&[second.next_event().await]), vec![11], "{ch}");
    }
}

/// One shard's master (append-only) is killed and restarted while a
/// publisher on node 1 publishes on a channel of each shard: that shard's
/// publishes get 503 during the outage, the other two shards' keep being
/// accepted and delivered, and subscribers on node 2 receive every event
/// that got a 202, once, in order, on all three channels.
#[tokio::test]
async fn a_shard_master_restarted_mid_stream_costs_only_its_channels() {
    let mut cluster = RedisCluster::start();
    // A log long enough for what is published (200 a second a channel)
    // between the master's return and the nodes' resubscribing (up to 1 s).
    let big = || {
        config()
            .buffer_events(1024)
            .redis_options(tandem::RedisOptions::cluster(cluster.urls()))
    };
    let n1 = Server::start(big()).await;
    let n2 = Server::start(big()).await;
    let channels = one_channel_per_shard(&cluster);
    let mut subs = Vec::new();
    for ch in &channels {
        subs.push(n2.sse(&format!("/ch/{ch}/sse")).await);
    }
    let urls = channels
        .iter()
        .map(|c| n1.url(&format!("/ch/{c}")))
        .collect();
    let publishing = publisher(urls, std::time::Duration::from_secs(6));
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let down = 1;
    let before: Vec<u64> = {
        let mut v = Vec::new();
        for ch in &channels {
            v.push(n2.info(ch).await["last_id"].as_u64().unwrap());
        }
        v
    };
    cluster.nodes[down].stop();
    let stopped = tokio::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // Node 2 stays healthy: it still serves the other shards' channels (a
    // load balancer taking every node out would stop them all).
    assert_eq!(n2.get("/healthz").await.head.status, 200);
    // Meanwhile node 2 still hears the other shards.
    for (i, ch) in channels.iter().enumerate() {
        if i != down {
            let now = n2.info(ch).await["last_id"].as_u64().unwrap();
            assert!(now > before[i] + 10, "{ch}: {} then {now}", before[i]);
        }
    }
    let restarted = tokio::time::Instant::now();
    cluster.nodes[down].restart();
    cluster.wait_ok();
    let seen = publishing.await.expect("the publisher");
    let outage = |at: &tokio::time::Instant| *at > stopped && *at < restarted;
    let last_refused = *seen[down]
        .refused
        .last()
        .expect("the shard's publishes got 503");
    assert!(
        seen[down]
            .accepted
            .iter()
            .any(|(_, _, at)| *at > last_refused),
        "publishing on the restarted shard worked again"
    );
    for (i, s) in seen.iter().enumerate() {
        if i != down {
            assert!(
                s.refused.is_empty(),
                "shard {i} refused {} publishes",
                s.refused.len()
            );
            assert!(
                s.accepted.iter().filter(|(_, _, at)| outage(at)).count() > 10,
                "shard {i} kept publishing during the outage"
            );
        }
    }
    for (sub, s) in subs.iter_mut().zip(&seen) {
        expect_every_accepted(sub, s).await;
    }
}

/// The command line: `--redis-cluster` with several `--redis` seeds, a
/// node process that a publish on an in-process node reaches; misuse is a
/// usage error (exit 2).
#[tokio::test]
async fn the_command_line_takes_a_cluster() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let n1 = node(&cluster).await;
    let p = NodeProcess::start_args(&["--redis-cluster", "--redis", &urls[2], "--redis", &urls[0]])
        .await;
    let ch = &one_channel_per_shard(&cluster)[2];
    for i in 1..=3 {
        n1.publish(ch, &format!("x{i}")).await;
    }
    // The process node hears them (a moment after the publishes).
    let mut got: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.len() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "only {got:?}");
        let body = fetch(&format!("{}/ch/{ch}/poll?since=0&timeout=1", p.base)).await;
        let v: serde_json::Value = serde_json::from_slice(&body).expect("poll JSON");
        got = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["data"].as_str().unwrap().to_string())
            .collect();
    }
    assert_eq!(got, ["x1", "x2", "x3"]);
    let (code, err) = start_fails(&["--redis", &urls[0], "--redis", &urls[1]]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--redis-cluster"), "{err}");
    let (code, err) = start_fails(&["--redis-cluster"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs --redis"), "{err}");
    let (code, err) = start_fails(&[
        "--redis-cluster",
        "--redis",
        &format!("redis://127.0.0.1:{}/1", cluster.nodes[0].port),
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("database 0"), "{err}");
    // One --redis on a cluster node, --redis-cluster on a lone Redis.
    let (code, err) = start_fails(&["--redis", &urls[1]]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("add --redis-cluster"), "{err}");
    let lone = kit::RedisServer::start();
    let (code, err) = start_fails(&["--redis-cluster", "--redis", &lone.url()]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("leave out --redis-cluster"), "{err}");
}

/// The announcement channel of every slot hashes to that slot, as the
/// cluster itself says (`CLUSTER KEYSLOT`), for a spread of slots.
#[tokio::test]
async fn every_slot_announces_on_a_channel_of_its_own_slot() {
    let cluster = RedisCluster::start();
    for slot in (0..16384)
        .step_by(331)
        .chain([1, 5460, 5461, 10922, 10923, 16383])
    {
        let channel = tandem::__private::redis_announce_channel(slot);
        assert_eq!(cluster.keyslot(&channel) as usize, slot, "{channel}");
    }
}

/// Every node's shard subscriptions are cut on every master (the masters
/// stay up) while events are published: the nodes subscribe again and
/// read what they missed from the logs, so each subscriber gets every
/// event once, in order.
#[tokio::test]
async fn a_node_that_missed_announcements_catches_up_from_the_logs() {
    let cluster = RedisCluster::start();
    let n1 = node(&cluster).await;
    let n2 = node(&cluster).await;
    let channels = one_channel_per_shard(&cluster);
    let mut subs = Vec::new();
    for ch in &channels {
        subs.push(n2.sse(&format!("/ch/{ch}/sse")).await);
    }
    for ch in &channels {
        n1.publish(ch, "e1").await;
    }
    for sub in &mut subs {
        assert_eq!(ids(&sub.take(1).await), vec![1]);
    }
    for master in &cluster.nodes {
        // Each node's subscription to this shard.
        let killed = master.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        assert_eq!(killed, ":2");
    }
    for i in 2..=30 {
        for ch in &channels {
            n1.publish(ch, &format!("e{i}")).await;
        }
    }
    for (ch, sub) in channels.iter().zip(&mut subs) {
        let got = sub.take(29).await;
        assert_eq!(ids(&got), (2..=30).collect::<Vec<_>>(), "{ch}");
    }
}

/// A cluster on TLS only (its bus too) with a password: the seeds are
/// `rediss://`, the CA and the password come from files; every shard's
/// channel reaches the other node.
#[tokio::test]
async fn a_cluster_on_tls_with_a_password() {
    let cluster = RedisCluster::start_opts(kit::RedisOpts {
        tls: true,
        password: Some("cluster-pass".into()),
        ..kit::RedisOpts::default()
    });
    let urls = cluster.urls();
    assert!(urls[0].starts_with("rediss://"));
    let pem = std::fs::read(cluster.nodes[0].ca_file()).expect("the CA");
    let options = tandem::RedisOptions::cluster(&urls[..1])
        .password("cluster-pass")
        .ca_pem(pem);
    let n1 = Server::start(config().redis_options(options.clone())).await;
    let n2 = Server::start(config().redis_options(options)).await;
    let channels = one_channel_per_shard(&cluster);
    let mut subs = Vec::new();
    for ch in &channels {
        subs.push(n2.sse(&format!("/ch/{ch}/sse")).await);
    }
    for ch in &channels {
        for i in 1..=5 {
            n1.publish(ch, &format!("e{i}")).await;
        }
    }
    for sub in &mut subs {
        assert_eq!(ids(&sub.take(5).await), vec![1, 2, 3, 4, 5]);
    }
}

/// A channel's slot moves to another master (a resharding: keys migrated,
/// the slot map changed): the old master unsubscribes the nodes from that
/// slot's shard channel, the nodes re-read the slot map and subscribe on
/// the new shards, publishes follow the move (`MOVED`), and subscribers on
/// another node get every event once, in order, across the move.
#[tokio::test]
async fn a_channel_whose_slot_moves_to_another_master_goes_on() {
    let cluster = RedisCluster::start();
    let n1 = node(&cluster).await;
    let n2 = node(&cluster).await;
    let ch = &one_channel_per_shard(&cluster)[0];
    let mut sub = n2.sse(&format!("/ch/{ch}/sse")).await;
    for i in 1..=10 {
        n1.publish(ch, &format!("e{i}")).await;
    }
    assert_eq!(ids(&sub.take(10).await), (1..=10).collect::<Vec<_>>());
    let slot = cluster.keyslot(&format!("tandem:{{{ch}}}:m"));
    cluster.move_slot(slot, 2);
    let key = format!("tandem:{{{ch}}}:l");
    assert_eq!(
        cluster.nodes[2].command(&["EXISTS", &key]),
        ":1",
        "the log moved"
    );
    for i in 11..=30 {
        n1.publish(ch, &format!("e{i}")).await;
    }
    let got = sub.take(20).await;
    assert_eq!(ids(&got), (11..=30).collect::<Vec<_>>());
    // Announcements now come from the new master, straight.
    n1.publish(ch, "e31").await;
    assert_eq!(ids(&[sub.next_event().await]), vec![31]);
    let n3 = node(&cluster).await;
    let all = poll(&n3, ch, "0").await;
    assert_eq!(all["events"].as_array().unwrap().len(), 31);
}

/// A master dies for good and its replica takes over (the cluster's own
/// failover): the nodes follow the new slot map and subscribe to the new
/// master; publishes on that shard's channel get 503 until the replica has
/// taken over, then work again; a subscriber on another node gets every
/// event that got a 202, once, in order.
#[tokio::test]
async fn a_failover_to_a_replica_is_followed() {
    let mut cluster = RedisCluster::start_with(kit::RedisOpts::default(), true);
    let n1 = node(&cluster).await;
    let n2 = node(&cluster).await;
    let ch = one_channel_per_shard(&cluster)[1].clone();
    let mut sub = n2.sse(&format!("/ch/{ch}/sse")).await;
    for i in 1..=10 {
        n1.publish(&ch, &format!("e{i}")).await;
    }
    assert_eq!(ids(&sub.take(10).await), (1..=10).collect::<Vec<_>>());
    // Let the replica have every write before its master goes.
    let replica = 4;
    let ack = cluster.nodes[1].cli(&["WAIT", "1", "2000"]);
    assert_eq!(ack, "1");
    cluster.nodes[1].stop();
    cluster.wait_master(replica);
    // Publishes until ten are accepted: 503 while there is no master (an
    // event whose answer was lost may still have been stored: it arrives
    // too, in its place).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut accepted = Vec::new();
    let mut i = 10;
    while accepted.len() < 10 {
        i += 1;
        let text = format!("e{i}");
        let r = n1
            .post(&format!("/ch/{ch}"), Some("text/plain"), text.as_bytes())
            .await;
        match r.head.status {
            202 => accepted.push((r.json()["id"].as_u64().unwrap(), text)),
            503 => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no publish accepted: {}",
                    r.text()
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            s => panic!("{s}: {}", r.text()),
        }
    }
    let last = accepted.last().unwrap().0;
    assert!(accepted[0].0 >= 11, "ids go on on the replica");
    let mut got = Vec::new();
    while got.last().map_or(10, |(id, _)| *id) < last {
        let e = sub.next_event().await;
        got.push((e.id.expect("an event, not a gap"), texts(&[e]).remove(0)));
    }
    let got_ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    assert_eq!(got_ids, (11..=last).collect::<Vec<_>>());
    for a in &accepted {
        assert!(got.contains(a), "accepted {a:?} never arrived");
    }
}

/// `/healthz` answers 503 only when the node hears no shard: with one
/// master down it stays 200 (the test above); with all three down it is
/// 503, publishes are refused, and when they are back it is 200 again and
/// publishing goes on.
#[tokio::test]
async fn healthz_fails_when_no_shard_is_heard() {
    let mut cluster = RedisCluster::start();
    let n1 = node(&cluster).await;
    let ch = one_channel_per_shard(&cluster)[0].clone();
    assert_eq!(n1.publish(&ch, "before").await, 1);
    for master in &mut cluster.nodes {
        master.stop();
    }
    wait_until("node 1 hears no shard", || async {
        n1.get("/healthz").await.head.status == 503
    })
    .await;
    let r = n1
        .post(&format!("/ch/{ch}"), Some("text/plain"), b"x")
        .await;
    r.expect_error(503, &["redis", "not stored"]);
    for master in &mut cluster.nodes {
        master.restart();
    }
    cluster.wait_ok();
    wait_until("node 1 hears the shards again", || async {
        n1.get("/healthz").await.head.status == 200
    })
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = n1
            .post(&format!("/ch/{ch}"), Some("text/plain"), b"after")
            .await;
        if r.head.status == 202 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", r.text());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
