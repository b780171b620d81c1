//! Two tandem nodes sharing their channels through a real redis-server,
//! behind a real nginx balancing over both (docs/scaling.md): tandem.js in
//! Chromium keeps its stream on one node; that node shuts down, the page
//! reconnects through nginx to the other node with its cursor, and gets
//! every event once, in order. And the co-browsing story with the customer
//! on one node and the agent on the other, through a node restart.

use std::time::Duration;

use serde_json::json;
use tandem::Transport;

use crate::cobrowse::{
    click, join_row, js, settle, sign_in_at, text, type_into, wait_paths, wait_text, KEY, ONE_STORY,
};
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

/// The co-browsing story across two nodes on one Redis: the customer's
/// pages come from node 1, the agent's console from node 2. They find each
/// other, push, chat both ways; then node 1 is replaced by a fresh node (a
/// restart: a new process's memory, the same port and Redis), and the
/// session goes on where it was: the customer's page reconnects, keeps its
/// chat, follows a push, and ends the session for the agent on node 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cobrowsing_across_nodes_survives_a_node_restart() {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let redis = RedisServer::start();
    let setup = || {
        browser_config()
            .redis(&redis.url())
            .agent_key(Some(KEY.into()))
    };
    let mut node1 = Server::start(setup()).await;
    let node2 = Server::start(setup()).await;
    let customer = Browser::start(&[]).await;
    let agent = Browser::start(&[]).await;

    customer.goto(&node1.url("/portal/products/2")).await;
    click(&customer, "#tcb-toggle").await;
    type_into(&customer, "#tcb-message", "help across nodes").await;
    click(&customer, "#tcb-ask-button").await;
    wait_text(
        &customer,
        "the customer waiting",
        "#tcb-status",
        "Waiting for an agent",
    )
    .await;

    // The agent on node 2 sees the request made on node 1 and joins it.
    sign_in_at(&agent, &node2, "/agent", "ann").await;
    join_row(&agent, "help across nodes").await;
    wait_text(
        &customer,
        "the assisted state",
        "#tcb-assisted",
        "You are being assisted by ann",
    )
    .await;
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/help").await;
    click(&agent, "#push").await;
    wait_paths(&customer, &agent, "/portal/help").await;
    settle(&customer, &agent).await;
    type_into(&customer, "#tcb-chat-text", "from node one").await;
    click(&customer, "#tcb-chat-send").await;
    wait_text(&agent, "the customer's line", "#log", "from node one").await;

    // Node 1 restarts with nothing in memory.
    node1.replace().await;
    type_into(&agent, "#chat-text", "after the restart").await;
    click(&agent, "#chat-send").await;
    wait_text(
        &customer,
        "the agent's line after the restart",
        "#tcb-log",
        "after the restart",
    )
    .await;
    assert!(
        text(&customer, "#tcb-log").await.contains("from node one"),
        "the chat from before the restart is still shown"
    );
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/").await;
    click(&agent, "#push").await;
    wait_paths(&customer, &agent, "/portal/").await;
    wait_text(
        &customer,
        "the assisted state on the restarted node",
        "#tcb-assisted",
        "ann",
    )
    .await;
    wait_text(
        &customer,
        "the chat after a page load",
        "#tcb-log",
        "after the restart",
    )
    .await;
    settle(&customer, &agent).await;
    type_into(&customer, "#tcb-chat-text", "still here").await;
    click(&customer, "#tcb-chat-send").await;
    wait_text(
        &agent,
        "the customer's line from the new node",
        "#log",
        "still here",
    )
    .await;

    // The customer ends on node 1; the agent on node 2 is told.
    click(&customer, "#tcb-end").await;
    wait_text(&customer, "the ended state", "#tcb-ended", "ended").await;
    wait_text(&agent, "the agent told", "#live", "ended by customer").await;
    customer.quit().await;
    agent.quit().await;
}
