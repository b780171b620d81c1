//! Two tandem nodes sharing their channels through a real redis-server,
//! behind a real nginx balancing over both (docs/scaling.md): tandem.js in
//! Chromium keeps its stream on one node; that node shuts down, the page
//! reconnects through nginx to the other node with its cursor, and gets
//! every event once, in order.

use std::time::Duration;

use serde_json::json;
use tandem::Transport;

use crate::harness::{assert_exactly_once, browser_slot, open_page, statuses, wait_got, wait_open};
use crate::proxies::Nginx;
use crate::webdriver::Browser;
use kit::{browser_config, RedisServer, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_moves_to_the_other_node_when_its_node_goes() {
    let _slot = browser_slot().await;
    let redis = RedisServer::start();
    let mut nodes = [
        Server::start(browser_config().redis(&redis.url())).await,
        Server::start(browser_config().redis(&redis.url())).await,
    ];
    let nginx = Nginx::start_pair(nodes[0].port(), nodes[1].port());
    let browser = Browser::start(&[]).await;
    let page = format!("http://127.0.0.1:{}/", nginx.port);
    open_page(&browser, &page, "moving", json!({})).await;
    wait_open(&browser, "fetch").await;
    for i in 1..=20 {
        nodes[i % 2].publish("moving", &format!("event {i}")).await;
    }
    assert_exactly_once(
        &wait_got(&browser, 20, Duration::from_secs(10)).await,
        1,
        20,
    );
    // The node holding the page's stream goes away.
    let holding = if nodes[0].subscribers("moving", Transport::Mixed)
        + nodes[0].subscribers("moving", Transport::Multipart)
        + nodes[0].subscribers("moving", Transport::Sse)
        > 0
    {
        0
    } else {
        1
    };
    let other = 1 - holding;
    nodes[holding].shutdown().await;
    for i in 21..=40 {
        nodes[other].publish("moving", &format!("event {i}")).await;
    }
    let got = wait_got(&browser, 40, Duration::from_secs(15)).await;
    assert_exactly_once(&got, 1, 40);
    let st = statuses(&browser).await;
    assert!(
        st.iter().any(|(s, _, _)| s == "reconnecting"),
        "the page noticed its node go: {st:?}"
    );
    assert!(
        nodes[other].subscribers("moving", Transport::Mixed)
            + nodes[other].subscribers("moving", Transport::Multipart)
            + nodes[other].subscribers("moving", Transport::Sse)
            > 0,
        "the page's stream is on the other node now"
    );
    browser.quit().await;
    drop(nginx);
}

/// `/status.html` from one node shows both nodes, and adds them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_node() {
    let _slot = browser_slot().await;
    let redis = RedisServer::start();
    let first = Server::start(browser_config().redis(&redis.url())).await;
    let _second = Server::start(browser_config().redis(&redis.url())).await;
    let browser = Browser::start(&[]).await;
    browser.goto(&first.url("/status.html")).await;
    crate::harness::eventually("two nodes on the page", Duration::from_secs(15), || async {
        let rows = browser
            .exec(
                "return document.querySelectorAll('#node-rows tr').length;",
                json!([]),
            )
            .await;
        (rows == json!(2)).then_some(())
    })
    .await;
    browser.quit().await;
}
