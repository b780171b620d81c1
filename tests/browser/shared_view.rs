//! Two Chromium sessions through the proxy in front of the kit's small
//! application with users: the customer signs in (an `HttpOnly` cookie) and
//! asks for help; the agent joins, and the view shows the customer's own
//! data while the agent's browser holds no cookie of the application; a
//! form sent from the view is refused until the customer hands over
//! control; the customer navigates and the view follows.

use crate::cobrowse::{
    ask, click, join_row, js, settle, sign_in_at, text, type_into, wait_text, wait_true, ONE_STORY,
    WAIT,
};
use crate::harness::{browser_slot, eventually};
use crate::webdriver::Browser;
use kit::{browser_config, Server, Upstream};

/// The text of `css` in the agent's view of the customer's page.
async fn in_view(agent: &Browser, css: &str) -> String {
    js(
        agent,
        &format!(
            "try {{ var e = document.getElementById('view').contentDocument.querySelector({}); return e ? e.textContent : ''; }} catch (x) {{ return ''; }}",
            serde_json::json!(css)
        ),
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_string()
}

async fn wait_in_view(agent: &Browser, what: &str, css: &str, needle: &str) {
    eventually(what, WAIT, || async {
        in_view(agent, css).await.contains(needle).then_some(())
    })
    .await;
}

/// Types `note` into the view's notes form and sends it.
async fn send_note_from_view(agent: &Browser, note: &str) {
    js(
        agent,
        &format!(
            "var d = document.getElementById('view').contentDocument; d.getElementById('note').value = {}; d.getElementById('add-note').click();",
            serde_json::json!(note)
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sees_the_customers_own_data_through_the_proxy() {
    let _one = ONE_STORY.lock().await;
    let _slot = browser_slot().await;
    let up = Upstream::start().await;
    let server = Server::start(
        browser_config()
            .proxy(&up.url())
            .agent_key(Some(crate::cobrowse::KEY.into())),
    )
    .await;

    // The customer signs in to the application, through tandem.
    let customer = Browser::start(&[]).await;
    customer.goto(&server.url("/signin")).await;
    type_into(&customer, "#user", "carol").await;
    click(&customer, "#signin").await;
    wait_text(
        &customer,
        "the customer's account",
        "#who",
        "Account of carol",
    )
    .await;
    // The page came brotli-encoded with a nonce-only CSP: the injected
    // widget runs, the page's own nonced script runs, and an inline script
    // without the nonce is still blocked.
    wait_true(
        &customer,
        "the widget on the page",
        "return !!window.tandemCobrowse && window.appRan === true && window.inlineRan === undefined;",
    )
    .await;
    let seen = up.last("/account");
    assert!(
        seen.header("accept-encoding")
            .is_some_and(|a| a.contains("br")),
        "{seen:?}"
    );

    ask(&customer, &server, "/account", "help with my notes").await;

    // The agent joins: the view shows carol's account.
    let agent = Browser::start(&[]).await;
    sign_in_at(&agent, &server, "/_tandem/agent", "ann").await;
    join_row(&agent, "help with my notes").await;
    wait_in_view(
        &agent,
        "carol's account in the view",
        "#who",
        "Account of carol",
    )
    .await;
    settle(&customer, &agent).await;
    wait_text(
        &agent,
        "the view-only notice",
        "#session-control",
        "View only",
    )
    .await;
    let names = agent.cookie_names().await;
    assert!(
        names.iter().all(|n| n.starts_with("tandem_")),
        "the agent's browser holds only tandem's cookies: {names:?}"
    );

    // A form sent from the view is refused until the customer allows it:
    // the console says so on screen, and nothing reaches the application
    // (the server refuses it too: tests/it/shared_view.rs).
    send_note_from_view(&agent, "from ann").await;
    wait_text(
        &agent,
        "the refusal on screen",
        "#session-error",
        "has not let you act",
    )
    .await;
    assert!(up.notes("carol").is_empty());
    assert!(up
        .seen()
        .iter()
        .all(|s| s.method != "POST" || s.target != "/notes"));
    click(&customer, "#tcb-control").await;
    wait_text(
        &customer,
        "the customer's control notice",
        "#tcb-control-state",
        "can act for you",
    )
    .await;
    wait_text(
        &agent,
        "the agent told",
        "#session-control",
        "lets you act for them",
    )
    .await;
    send_note_from_view(&agent, "from ann").await;
    wait_in_view(&agent, "the note in the view", "#notes", "from ann").await;
    assert_eq!(up.notes("carol"), vec!["from ann".to_string()]);
    let names = agent.cookie_names().await;
    assert!(names.iter().all(|n| n.starts_with("tandem_")), "{names:?}");

    // The customer follows a link (it blinks on both sides, then both
    // navigate): the view shows carol's orders, gzip-encoded.
    settle(&customer, &agent).await;
    click(&customer, "#to-orders").await;
    wait_text(
        &customer,
        "the customer's orders",
        "#who",
        "Orders of carol",
    )
    .await;
    wait_in_view(&agent, "the orders in the view", "#who", "Orders of carol").await;
    // A link the agent follows in the view blinks on both sides, then both
    // navigate.
    settle(&customer, &agent).await;
    js(
        &agent,
        "document.getElementById('view').contentDocument.getElementById('to-account').click();",
    )
    .await;
    wait_true(
        &customer,
        "the blink on the customer's side",
        "return window.tandemCobrowse && window.tandemCobrowse.blinks.indexOf('/account') >= 0;",
    )
    .await;
    wait_text(
        &customer,
        "the customer led back",
        "#who",
        "Account of carol",
    )
    .await;
    wait_in_view(&agent, "the view back", "#notes", "from ann").await;
    // The customer's page reloads itself on another page: the view follows.
    settle(&customer, &agent).await;
    customer.goto(&server.url("/orders")).await;
    wait_text(
        &customer,
        "the customer on orders",
        "#who",
        "Orders of carol",
    )
    .await;
    wait_in_view(&agent, "the view on orders", "#who", "Orders of carol").await;
    assert!(
        text(&agent, "#view-url").await.starts_with("/orders"),
        "{}",
        text(&agent, "#view-url").await
    );
    customer.quit().await;
    agent.quit().await;
}
