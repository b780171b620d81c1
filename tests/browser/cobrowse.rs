//! The co-browsing story in two separate headless Chromium sessions, a
//! customer and an agent, as the issue tells it: the customer asks for help,
//! the agent signs in and sees the request appear without a reload, joins,
//! pushes a page, pulls, both follow a clicked link and see it blink first,
//! they chat both ways with a canned reply, the agent sees the customer's
//! cart, the customer ends. It runs twice: on the best transport, and with
//! the customer's page forced onto long-poll (as behind a buffering proxy).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::harness::{browser_slot, eventually};
use crate::webdriver::Browser;
use kit::{browser_config, Server};

pub(crate) const KEY: &str = "browser-agent-key-0123456789";
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// Each story holds two browsers; one story at a time keeps within the
/// harness's two browser slots without two stories deadlocking on them.
pub(crate) static ONE_STORY: Mutex<()> = Mutex::const_new(());

pub(crate) async fn text(b: &Browser, css: &str) -> String {
    b.exec(
        "var e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        json!([css]),
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_string()
}

pub(crate) async fn wait_text(b: &Browser, what: &str, css: &str, needle: &str) {
    eventually(what, WAIT, || async {
        text(b, css).await.contains(needle).then_some(())
    })
    .await;
}

pub(crate) async fn js(b: &Browser, script: &str) -> Value {
    b.exec(script, json!([])).await
}

/// Waits until `script` returns `true` in `b`.
pub(crate) async fn wait_true(b: &Browser, what: &str, script: &str) {
    eventually(what, WAIT, || async {
        js(b, script).await.as_bool().unwrap_or(false).then_some(())
    })
    .await;
}

/// The path the agent's view of the customer's page shows.
pub(crate) async fn view_path(agent: &Browser) -> String {
    js(
        agent,
        "try { var l = document.getElementById('view').contentWindow.location; return l.pathname; } catch (e) { return ''; }",
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_string()
}

pub(crate) async fn wait_paths(customer: &Browser, agent: &Browser, path: &str) {
    eventually(&format!("the customer on {path}"), WAIT, || async {
        (js(customer, "return location.pathname;").await == json!(path)).then_some(())
    })
    .await;
    eventually(&format!("the agent's view on {path}"), WAIT, || async {
        (view_path(agent).await == path).then_some(())
    })
    .await;
}

pub(crate) async fn settle(customer: &Browser, agent: &Browser) {
    eventually("the customer's page connected", WAIT, || async {
        js(
            customer,
            "return window.tandemCobrowse && window.tandemCobrowse.status;",
        )
        .await
        .as_str()
        .is_some_and(|s| s.starts_with("open"))
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    wait_true(
        agent,
        "the agent's view listening",
        "try { return document.getElementById('view').contentWindow.tandemHooked === true; } catch (e) { return false; }",
    )
    .await;
}

pub(crate) async fn type_into(b: &Browser, css: &str, value: &str) {
    let el = b.find(css).await;
    b.send_keys(&el, value).await;
}

pub(crate) async fn click(b: &Browser, css: &str) {
    let el = b.find(css).await;
    b.click(&el).await;
}

async fn story(force_poll: bool) {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let server = Server::start(browser_config().agent_key(Some(KEY.into()))).await;
    // The long-poll run also asks for reduced motion: links then get a
    // steady outline instead of blinking.
    let customer = if force_poll {
        Browser::start(&["--force-prefers-reduced-motion"]).await
    } else {
        Browser::start(&[]).await
    };
    let agent = Browser::start(&[]).await;

    // The customer shops: a lamp in the cart, kept in the portal's server-side session.
    customer.goto(&server.url("/portal/products/2")).await;
    if force_poll {
        js(
            &customer,
            "sessionStorage.setItem('tandem.cobrowse.transport', 'poll');",
        )
        .await;
    }
    click(&customer, "#add").await;
    wait_text(&customer, "the lamp in the cart", "#cart", "Reading lamp").await;

    // The agent signs in and waits at the console.
    agent.goto(&server.url("/agent")).await;
    eventually("the sign-in form", WAIT, || async {
        (js(
            &agent,
            "return document.getElementById('signin').style.display;",
        )
        .await
            == json!(""))
        .then_some(())
    })
    .await;
    js(&agent, "document.getElementById('signin-name').value = '';").await;
    type_into(&agent, "#signin-name", "ann").await;
    type_into(&agent, "#signin-secret", KEY).await;
    click(&agent, "#signin-button").await;
    wait_text(
        &agent,
        "the empty list",
        "#list-status",
        "No one is waiting",
    )
    .await;
    js(&agent, "window.sameConsolePage = true;").await;

    // The customer asks for help from the cart, told what is shared.
    let toggle = customer.find("#tcb-toggle").await;
    assert_eq!(
        customer
            .exec(
                "return arguments[0].getAttribute('aria-expanded');",
                json!([toggle]) // fantoccini serializes an element as its W3C reference
            )
            .await,
        json!("false")
    );
    customer.click(&toggle).await;
    assert!(text(&customer, "#tcb-ask")
        .await
        .contains("Nothing is shared before you ask"));
    type_into(&customer, "#tcb-message", "where is my lamp?").await;
    click(&customer, "#tcb-ask-button").await;
    wait_text(
        &customer,
        "the customer waiting",
        "#tcb-status",
        "Waiting for an agent",
    )
    .await;

    // The request appears at the console without a reload.
    wait_text(
        &agent,
        "the session in the list",
        "#rows",
        "where is my lamp?",
    )
    .await;
    assert_eq!(
        js(&agent, "return window.sameConsolePage === true;").await,
        json!(true)
    );
    assert!(text(&agent, "#rows").await.contains("/portal/cart"));

    // The agent joins; the customer sees who, and that they are assisted.
    click(&agent, "#rows button.join").await;
    wait_text(
        &customer,
        "the assisted state",
        "#tcb-assisted",
        "You are being assisted by ann",
    )
    .await;
    wait_text(&agent, "the session view", "#session-label", "visitor").await;

    // The agent's view uses the customer's session: the customer's cart.
    wait_true(
        &agent,
        "the customer's cart in the agent's view",
        "try { var d = document.getElementById('view').contentDocument; \
             return !!d.getElementById('shared-view') && d.getElementById('cart').textContent.indexOf('Reading lamp') >= 0; } catch (e) { return false; }",
    )
    .await;
    let agent_cookies = js(&agent, "return document.cookie;").await;
    assert_eq!(agent_cookies, json!(""), "every cookie is HttpOnly");

    // Push: the agent sends the customer to the help page.
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/help").await;
    click(&agent, "#push").await;
    wait_paths(&customer, &agent, "/portal/help").await;

    // The session survived the navigation.
    wait_text(
        &customer,
        "the assisted state after navigating",
        "#tcb-assisted",
        "ann",
    )
    .await;
    if force_poll {
        eventually("the customer on long-poll", WAIT, || async {
            js(&customer, "return window.tandemCobrowse.status;")
                .await
                .as_str()
                .is_some_and(|s| s.contains("poll"))
                .then_some(())
        })
        .await;
    }

    // Pull: the agent asks, the customer's browser answers.
    click(&agent, "#pull").await;
    wait_text(
        &agent,
        "the pulled page",
        "#session-state",
        "Pulled: the customer is on /portal/help",
    )
    .await;

    // The customer clicks a link: it blinks on both sides, then both navigate.
    click(&customer, "#home-link").await;
    let blinking = js(
        &customer,
        "return !!document.querySelector('.tandem-blink, .tandem-marked');",
    )
    .await;
    assert_eq!(
        blinking,
        json!(true),
        "the customer's link blinks before navigating"
    );
    wait_true(
        &agent,
        "the blink in the agent's view",
        "return window.tandemAgentBlinks.indexOf('/portal/') >= 0;",
    )
    .await;
    wait_text(
        &agent,
        "the announcement of the customer's click",
        "#live",
        "clicked the link",
    )
    .await;
    wait_paths(&customer, &agent, "/portal/").await;

    // The agent clicks a link in its view: the customer's copy blinks, both follow.
    // First let both pages settle: the customer's new page connected and
    // reported itself, and the agent's view refreshed for it and listening.
    settle(&customer, &agent).await;
    js(
        &agent,
        "document.getElementById('view').contentDocument.getElementById('cart-link').click();",
    )
    .await;
    wait_true(
        &customer,
        "the blink on the customer's side",
        "return window.tandemCobrowse && window.tandemCobrowse.blinks.indexOf('/portal/cart') >= 0;",
    )
    .await;
    wait_text(
        &customer,
        "the announcement of the agent's click",
        "#tcb-live",
        "ann clicked the link",
    )
    .await;
    wait_paths(&customer, &agent, "/portal/cart").await;

    // Chat both ways, plain text only, and a canned reply.
    type_into(&customer, "#tcb-chat-text", "<b>bold</b> & thanks").await;
    click(&customer, "#tcb-chat-send").await;
    wait_text(
        &agent,
        "the customer's chat",
        "#log",
        "<b>bold</b> & thanks",
    )
    .await;
    assert_eq!(
        js(
            &agent,
            "return document.querySelectorAll('#log .chat-line b').length === document.querySelectorAll('#log .chat-line').length;"
        )
        .await,
        json!(true),
        "markup arrives as text (the only <b> of a line is the speaker's name)"
    );
    let canned = js(&agent, "return document.getElementById('canned').value;").await;
    let canned = canned.as_str().unwrap().to_string();
    assert!(!canned.is_empty(), "canned replies are offered");
    click(&agent, "#canned-send").await;
    wait_text(&customer, "the canned reply", "#tcb-log", &canned).await;

    // The customer ends; everyone sees it.
    click(&customer, "#tcb-end").await;
    wait_text(&customer, "the ended state", "#tcb-ended", "ended").await;
    eventually("the agent back at the list", WAIT, || async {
        (js(
            &agent,
            "return document.getElementById('console').style.display;",
        )
        .await
            == json!(""))
        .then_some(())
    })
    .await;
    wait_text(&agent, "the agent told", "#live", "ended by customer").await;
    wait_text(
        &agent,
        "the empty list again",
        "#list-status",
        "No one is waiting",
    )
    .await;
    // The session's channel is closed to the customer now.
    let status = customer
        .exec_async(
            "var done = arguments[0], x = new XMLHttpRequest();
             x.open('GET', '/cobrowse/session'); x.onload = function () { done(x.status); }; x.send();",
            json!([]),
        )
        .await;
    assert_eq!(status, json!(404));
    customer.quit().await;
    agent.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cobrowse_story_on_the_best_transport() {
    story(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cobrowse_story_with_the_customer_on_long_poll() {
    story(true).await;
}

/// A customer with a help session and an agent who joined it: the server,
/// the two browsers (customer first), and the slots they hold.
struct Pair {
    server: Server,
    customer: Browser,
    agent: Browser,
}

/// The agent signs in at the console of `server` as `name`.
async fn sign_in(agent: &Browser, server: &Server, name: &str) {
    sign_in_at(agent, server, "/agent", name).await;
}

/// The agent signs in on the console at `path`.
pub(crate) async fn sign_in_at(agent: &Browser, server: &Server, path: &str, name: &str) {
    agent.goto(&server.url(path)).await;
    eventually("the sign-in form", WAIT, || async {
        (js(
            agent,
            "return document.getElementById('signin').style.display;",
        )
        .await
            == json!(""))
        .then_some(())
    })
    .await;
    js(agent, "document.getElementById('signin-name').value = '';").await;
    type_into(agent, "#signin-name", name).await;
    type_into(agent, "#signin-secret", KEY).await;
    click(agent, "#signin-button").await;
    wait_true(
        agent,
        "the list shown",
        "return document.getElementById('console').style.display === '';",
    )
    .await;
}

/// Behind the proxy, a page of an application that knows nothing of tandem
/// gets the widget (injected in its head), and asking for help from it
/// reaches tandem under its prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_widget_is_injected_into_a_proxied_application() {
    let _slot = browser_slot().await;
    let up = kit::Upstream::start().await;
    let setup = browser_config().proxy(&up.url());
    let server = Server::start(setup.agent_key(Some(KEY.into()))).await;
    let customer = Browser::start(&[]).await;
    ask(&customer, &server, "/page", "help through the proxy").await;
    // The agent's console lives under the prefix too (its files, its API,
    // its channel), and lists it.
    let agent = Browser::start(&[]).await;
    sign_in_at(&agent, &server, "/_tandem/agent", "ann").await;
    wait_text(
        &agent,
        "the session in the list",
        "#rows",
        "help through the proxy",
    )
    .await;
    let list = server
        .get("/_tandem/ch/cb.console/poll?since=0&timeout=0")
        .await;
    assert_eq!(list.head.status, 401, "the console list is the agents'");
    assert!(
        up.seen()
            .iter()
            .all(|s| ["cobrowse", "agent", ".js", "/ch/"]
                .iter()
                .all(|t| !s.target.contains(t))),
        "no request of tandem's reached the application: {:?}",
        up.seen()
            .iter()
            .map(|s| s.target.clone())
            .collect::<Vec<_>>()
    );
    customer.quit().await;
}

/// The customer on `page` asks for help with `message`.
pub(crate) async fn ask(customer: &Browser, server: &Server, page: &str, message: &str) {
    customer.goto(&server.url(page)).await;
    js(
        customer,
        "sessionStorage.setItem('tandem.cobrowse.transport', 'poll');",
    )
    .await;
    click(customer, "#tcb-toggle").await;
    type_into(customer, "#tcb-message", message).await;
    click(customer, "#tcb-ask-button").await;
    wait_text(
        customer,
        "the customer waiting",
        "#tcb-status",
        "Waiting for an agent",
    )
    .await;
}

/// The agent joins the session whose row shows `message`.
pub(crate) async fn join_row(agent: &Browser, message: &str) {
    wait_text(agent, "the session in the list", "#rows", message).await;
    js(
        agent,
        &format!(
            "var rows = document.querySelectorAll('#rows tr'); for (var i = 0; i < rows.length; i++) {{ \
               if (rows[i].textContent.indexOf({}) >= 0) {{ rows[i].querySelector('button.join').click(); }} }}",
            json!(message)
        ),
    )
    .await;
    wait_true(
        agent,
        "the session open",
        "return document.getElementById('session').style.display === '';",
    )
    .await;
}

async fn pair(setup: kit::Setup, message: &str) -> Pair {
    pair_with(setup, message, false).await
}

/// [`pair`], the customer first putting the lamp in the cart if `lamp`.
async fn pair_with(setup: kit::Setup, message: &str, lamp: bool) -> Pair {
    let server = Server::start(setup.agent_key(Some(KEY.into()))).await;
    let customer = Browser::start(&[]).await;
    let agent = Browser::start(&[]).await;
    if lamp {
        customer.goto(&server.url("/portal/products/2")).await;
        click(&customer, "#add").await;
        wait_text(&customer, "the lamp in the cart", "#cart", "Reading lamp").await;
    }
    ask(&customer, &server, "/portal/products/2", message).await;
    sign_in(&agent, &server, "ann").await;
    join_row(&agent, message).await;
    wait_text(
        &customer,
        "the assisted state",
        "#tcb-assisted",
        "You are being assisted by ann",
    )
    .await;
    Pair {
        server,
        customer,
        agent,
    }
}

/// The chat lines `css` shows, each as its text.
async fn lines(b: &Browser, css: &str) -> Vec<String> {
    let v = b
        .exec(
            "var l = document.querySelectorAll(arguments[0]), out = []; \
             for (var i = 0; i < l.length; i++) { out.push(l[i].textContent); } return out;",
            json!([css]),
        )
        .await;
    serde_json::from_value(v).unwrap_or_default()
}

async fn wait_lines(b: &Browser, what: &str, css: &str, want: &[String]) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = lines(b, css).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: got {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The chat survives page loads on both sides: after a push, a reload of
/// the customer's page and a reload of the console, each side shows every
/// line of the conversation, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_survives_pushes_and_reloads() {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let Pair {
        server: _server,
        customer,
        agent,
    } = pair(browser_config(), "my lamp, please").await;
    let label = text(&agent, "#session-label").await;

    type_into(&customer, "#tcb-chat-text", "hello").await;
    click(&customer, "#tcb-chat-send").await;
    wait_text(&agent, "the customer's line", "#log", "hello").await;
    type_into(&agent, "#chat-text", "hi, let me look").await;
    click(&agent, "#chat-send").await;
    wait_text(&customer, "the agent's line", "#tcb-log", "hi, let me look").await;
    type_into(&customer, "#tcb-chat-text", "thanks").await;
    click(&customer, "#tcb-chat-send").await;
    wait_text(&agent, "the customer's second line", "#log", "thanks").await;

    let on_customer: Vec<String> = vec![
        "You: hello".into(),
        "ann: hi, let me look".into(),
        "You: thanks".into(),
    ];
    let on_agent: Vec<String> = vec![
        format!("{label}: my lamp, please"),
        format!("{label}: hello"),
        "You: hi, let me look".into(),
        format!("{label}: thanks"),
    ];
    wait_lines(
        &customer,
        "the customer's chat",
        "#tcb-log .tcb-line",
        &on_customer,
    )
    .await;
    wait_lines(&agent, "the agent's chat", "#log .chat-line", &on_agent).await;

    // A push: the customer's next page shows the whole conversation.
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/help").await;
    click(&agent, "#push").await;
    wait_paths(&customer, &agent, "/portal/help").await;
    wait_lines(
        &customer,
        "the chat after a push",
        "#tcb-log .tcb-line",
        &on_customer,
    )
    .await;

    // A reload of each side.
    js(&customer, "location.reload();").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_lines(
        &customer,
        "the chat after a reload",
        "#tcb-log .tcb-line",
        &on_customer,
    )
    .await;
    js(&agent, "location.reload();").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_lines(
        &agent,
        "the console's chat after a reload",
        "#log .chat-line",
        &on_agent,
    )
    .await;

    // A line after all that still shows once on each side.
    type_into(&agent, "#chat-text", "found it").await;
    click(&agent, "#chat-send").await;
    let mut on_customer = on_customer;
    on_customer.push("ann: found it".into());
    let mut on_agent = on_agent;
    on_agent.push("You: found it".into());
    wait_lines(
        &customer,
        "the chat after a new line",
        "#tcb-log .tcb-line",
        &on_customer,
    )
    .await;
    wait_lines(
        &agent,
        "the console's chat after a new line",
        "#log .chat-line",
        &on_agent,
    )
    .await;
    customer.quit().await;
    agent.quit().await;
}

/// The text of `css` if it is shown on screen (laid out, not hidden), or "".
async fn visible_text(b: &Browser, css: &str) -> String {
    b.exec(
        "var e = document.querySelector(arguments[0]); \
         if (!e || !e.offsetParent || e.getClientRects().length === 0) { return ''; } \
         var s = getComputedStyle(e); \
         return s.visibility === 'visible' && s.display !== 'none' ? e.textContent : '';",
        json!([css]),
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_string()
}

async fn wait_visible(b: &Browser, what: &str, css: &str, needle: &str) {
    eventually(what, WAIT, || async {
        visible_text(b, css).await.contains(needle).then_some(())
    })
    .await;
}

/// Errors in the console are on screen next to the action that failed
/// (not only announced to screen readers), and the next success there
/// clears them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_errors_are_shown_on_screen_and_cleared() {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let Pair {
        server: _server,
        customer,
        agent,
    } = pair(browser_config(), "errors, please").await;

    // A refused push: an address on another site.
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "https://example.com/").await;
    click(&agent, "#push").await;
    wait_visible(
        &agent,
        "the refused push on screen",
        "#push-error",
        "Not pushed: url must be a path within this site",
    )
    .await;
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/help").await;
    click(&agent, "#push").await;
    wait_paths(&customer, &agent, "/portal/help").await;
    assert_eq!(
        text(&agent, "#push-error").await,
        "",
        "cleared by a push that worked"
    );
    assert_eq!(visible_text(&agent, "#push-error").await, "");

    // A chat line not sent: only blanks.
    type_into(&agent, "#chat-text", "   ").await;
    click(&agent, "#chat-send").await;
    wait_visible(
        &agent,
        "the chat error on screen",
        "#chat-error",
        "Not sent: chat text is empty",
    )
    .await;
    type_into(&agent, "#chat-text", "a real line").await;
    click(&agent, "#chat-send").await;
    wait_text(&customer, "the line sent", "#tcb-log", "a real line").await;
    wait_text(&agent, "the line shown", "#log", "a real line").await;
    assert_eq!(
        text(&agent, "#chat-error").await,
        "",
        "cleared by a line sent"
    );

    // A failed join: the session ended while its row was still on screen
    // (the row's button, kept, is clicked after the end).
    click(&agent, "#back").await;
    wait_text(&agent, "the row", "#rows", "errors, please").await;
    js(
        &agent,
        "window.staleJoin = document.querySelector('#rows button.join');",
    )
    .await;
    click(&customer, "#tcb-end").await;
    wait_text(&customer, "the ended state", "#tcb-ended", "ended").await;
    wait_text(
        &agent,
        "the list emptied",
        "#list-status",
        "No one is waiting",
    )
    .await;
    js(&agent, "window.staleJoin.click();").await;
    wait_visible(
        &agent,
        "the failed join on screen",
        "#list-error",
        "Could not join: no such help session",
    )
    .await;
    customer.quit().await;
    agent.quit().await;
}

/// What the agent's view in the current tab shows: its cart, or "".
async fn view_cart(agent: &Browser) -> String {
    js(
        agent,
        "try { var d = document.getElementById('view').contentDocument; \
           return d.getElementById('shared-view') && d.getElementById('cart') ? d.getElementById('cart').textContent : ''; } catch (e) { return ''; }",
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_string()
}

/// An agent helps two customers in two tabs of one browser: each tab shows
/// its own customer's session, and the first tab's buttons still act on
/// the first customer after the second tab joined the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_customers_in_two_tabs() {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let Pair {
        server,
        customer,
        agent,
    } = pair_with(browser_config(), "lamp customer", true).await;
    // Customer A has the lamp in the cart; tab 1's view shows it.
    wait_paths(&customer, &agent, "/portal/products/2").await;
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/cart").await;
    click(&agent, "#push").await;
    wait_paths(&customer, &agent, "/portal/cart").await;
    eventually("A's cart in tab 1", WAIT, || async {
        view_cart(&agent)
            .await
            .contains("Reading lamp")
            .then_some(())
    })
    .await;

    // Customer B (over plain HTTP): a blanket in the cart, then asks for help.
    let add = server
        .send(
            kit::Req::post("/portal/cart/add", b"product=3")
                .header("Content-Type", "application/x-www-form-urlencoded"),
        )
        .await;
    let portal = add
        .head
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let asked = server
        .send(
            kit::Req::post(
                "/cobrowse/session",
                json!({"url": "/portal/cart", "title": "Your cart", "message": "blanket customer"})
                    .to_string()
                    .as_bytes(),
            )
            .header("Content-Type", "application/json")
            .header("Cookie", &portal),
        )
        .await;
    assert_eq!(asked.head.status, 201, "{}", asked.text());
    let b = asked.json()["id"].as_str().unwrap().to_string();

    // Tab 2 joins B and shows B's cart.
    let tab1 = agent.window().await;
    let tab2 = agent.new_tab().await;
    agent.switch_to(&tab2).await;
    agent.goto(&server.url("/agent")).await;
    join_row(&agent, "blanket customer").await;
    eventually("B's cart in tab 2", WAIT, || async {
        view_cart(&agent)
            .await
            .contains("Wool blanket")
            .then_some(())
    })
    .await;

    // Back in tab 1: a push from there goes to A, and its view, reloaded
    // for A's new page, still shows A's cart.
    agent.switch_to(&tab1).await;
    assert!(text(&agent, "#session-label").await.contains("visitor 1"));
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/cart?again=1").await;
    click(&agent, "#push").await;
    eventually("customer A pushed", WAIT, || async {
        (js(&customer, "return location.search;").await == json!("?again=1")).then_some(())
    })
    .await;
    eventually("tab 1's view reloaded for A's page", WAIT, || async {
        js(
            &agent,
            "try { return document.getElementById('view').contentWindow.location.search; } catch (e) { return ''; }",
        )
        .await
        .as_str()
        .is_some_and(|s| s.starts_with("?again=1"))
        .then_some(())
    })
    .await;
    let cart = eventually("A's cart in tab 1 again", WAIT, || async {
        let c = view_cart(&agent).await;
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert!(
        cart.contains("Reading lamp"),
        "tab 1 shows A's cart: {cart}"
    );
    assert!(
        !cart.contains("Wool blanket"),
        "tab 1 shows A's cart: {cart}"
    );
    // B heard no push.
    let b_events = server
        .send(
            kit::Req::get(&format!("/ch/cb.{b}/poll?since=0&timeout=0")).header(
                "Cookie",
                &format!(
                    "{}; tandem_help={}",
                    portal,
                    asked.set_cookie("tandem_help").expect("the cookie")
                ),
            ),
        )
        .await;
    assert_eq!(b_events.head.status, 200, "{}", b_events.text());
    assert!(!b_events.text().contains("\"push\""), "{}", b_events.text());
    customer.quit().await;
    agent.quit().await;
}

/// The customer's name, given by the application (the widget's field is
/// filled with it), is what the agent sees in the list and in the chat; when the customer's page closes, the console shows
/// them gone within the presence bound (2 s here: gone within 2.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_names_and_presence() {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let mut setup = browser_config();
    setup.cobrowse = setup.cobrowse.presence_timeout(Duration::from_secs(2));
    let server = Server::start(setup.agent_key(Some(KEY.into()))).await;
    let customer = Browser::start(&[]).await;
    let agent = Browser::start(&[]).await;
    // The customer signs in to the application, which gives the widget the
    // name (data-name); the customer could change it in the field.
    customer.goto(&server.url("/portal/")).await;
    type_into(&customer, "#signin input[name=name]", "Dana").await;
    click(&customer, "#signin button").await;
    wait_text(&customer, "signed in", "#user", "Dana").await;
    customer.goto(&server.url("/portal/products/2")).await;
    js(
        &customer,
        "sessionStorage.setItem('tandem.cobrowse.transport', 'poll');",
    )
    .await;
    click(&customer, "#tcb-toggle").await;
    assert_eq!(
        js(
            &customer,
            "return document.getElementById('tcb-name').value;"
        )
        .await,
        json!("Dana"),
        "the name from the application"
    );
    type_into(&customer, "#tcb-message", "named customer").await;
    click(&customer, "#tcb-ask-button").await;
    wait_text(&customer, "the customer waiting", "#tcb-status", "Waiting").await;

    sign_in(&agent, &server, "ann").await;
    wait_text(&agent, "the name in the list", "#rows", "Dana").await;
    wait_text(&agent, "online in the list", "#rows .presence", "online").await;
    // Still online after several presence timeouts: the page pings.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(text(&agent, "#rows .presence").await, "online");
    join_row(&agent, "named customer").await;
    wait_text(&agent, "the name in the session", "#session-label", "Dana").await;
    wait_text(
        &agent,
        "online in the session",
        "#session-presence",
        "Dana is online",
    )
    .await;
    type_into(&customer, "#tcb-chat-text", "hello").await;
    click(&customer, "#tcb-chat-send").await;
    wait_lines(
        &agent,
        "the name in the chat",
        "#log .chat-line",
        &["Dana: named customer".into(), "Dana: hello".into()],
    )
    .await;

    // The customer's page closes: gone, in the session and in the list.
    customer.goto("about:blank").await;
    let closed = std::time::Instant::now();
    wait_text(
        &agent,
        "gone in the session",
        "#session-presence",
        "Dana is gone",
    )
    .await;
    assert!(
        closed.elapsed() < Duration::from_secs(6),
        "gone within the bound: {:?}",
        closed.elapsed()
    );
    click(&agent, "#back").await;
    wait_text(&agent, "gone in the list", "#rows .presence", "gone").await;
    customer.quit().await;
    agent.quit().await;
}
