//! Chromium over HTTPS: a page loaded over TLS negotiates HTTP/2, and
//! tandem.js receives and publishes on every transport over it; then the
//! co-browsing story over HTTPS (ask, sign in, join, the shared view of
//! the customer's cart, push, pull; the link blinking is not repeated). The
//! certificate is made at test time by a CA Chromium does not know, so the
//! browser runs with `--ignore-certificate-errors` (headless Chromium's
//! way; the TLS itself is real).

use std::time::Duration;

use serde_json::{json, Value};
use tandem::NewEvent;

use crate::cobrowse::{
    ask, click, join_row, js, sign_in_at, type_into, wait_paths, wait_text, wait_true, KEY,
    ONE_STORY,
};
use crate::harness::{
    assert_exactly_once, browser_slot, eventually, open_page, wait_got, wait_open,
};
use crate::webdriver::Browser;
use kit::{browser_config, Pki, Server, Setup};

const INSECURE_CA: &[&str] = &["--ignore-certificate-errors"];

fn tls_setup(pki: &Pki, setup: Setup) -> Setup {
    pki.issue();
    setup.tls(tandem::TlsConfig::from_pem_files(pki.cert(), pki.key()).expect("test certificate"))
}

/// The protocol of the page's document and of every request to `/ch/` it
/// made (Resource Timing's `nextHopProtocol`).
async fn protocols(b: &Browser) -> (Value, Value) {
    let v = b
        .exec(
            "var nav = performance.getEntriesByType('navigation')[0];
             var ch = performance.getEntriesByType('resource')
               .filter(function (e) { return e.name.indexOf('/ch/') >= 0; })
               .map(function (e) { return e.nextHopProtocol; });
             return [nav.nextHopProtocol, ch];",
            json!([]),
        )
        .await;
    (v[0].clone(), v[1].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_over_https_and_http2() {
    let _slot = browser_slot().await;
    let pki = Pki::new();
    let server = Server::start(tls_setup(&pki, browser_config())).await;
    let browser = Browser::start(INSECURE_CA).await;
    for (transport, via) in [
        ("fetch", "auto"),
        ("eventsource", "auto"),
        ("xhr", "auto"),
        ("poll", "auto"),
        ("jsonp", "auto"),
        ("iframe", "form"),
    ] {
        let channel = format!("tls-{transport}");
        open_page(
            &browser,
            &server.url("/"),
            &channel,
            json!({"transport": transport, "since": 0, "client": "page", "publishVia": via}),
        )
        .await;
        wait_open(&browser, transport).await;
        for i in 1..=5 {
            let id = server
                .hub
                .publish(&channel, NewEvent::message(format!("{transport} {i}")))
                .await
                .unwrap()
                .id();
            assert_eq!(id, i);
        }
        let got = wait_got(&browser, 5, Duration::from_secs(20)).await;
        assert_exactly_once(&got, 1, 5);
        assert_eq!(got[4].data, format!("{transport} 5"));
        // A publish from the page, over the same TLS origin.
        browser
            .exec(
                "T.conn.publish('said', 'from the page', function (err, res) {
                   T.pubs.push(err ? 'error: ' + err.message : res.id);
                 });",
                json!([]),
            )
            .await;
        let pubs = eventually("the page's publish", Duration::from_secs(20), || async {
            let v = browser.exec("return T.pubs;", json!([])).await;
            (v.as_array().map_or(0, Vec::len) >= 1).then_some(v)
        })
        .await;
        assert_eq!(pubs, json!([6]), "{transport}");
        assert_eq!(server.hub.info(&channel).last_id, 6);
        let (page, ch) = protocols(&browser).await;
        assert_eq!(page, json!("h2"), "{transport}: the page over HTTP/2");
        // Script tags (jsonp) and iframes are not always in Resource
        // Timing while loading; what is there is h2.
        for p in ch.as_array().unwrap() {
            assert_eq!(p, &json!("h2"), "{transport}: {ch}");
        }
        if matches!(transport, "fetch" | "xhr" | "poll" | "eventsource") {
            assert!(
                !ch.as_array().unwrap().is_empty(),
                "{transport}: its requests are timed"
            );
        }
    }
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cobrowse_story_over_https() {
    let _one = ONE_STORY.lock().await;
    let _slots = (browser_slot().await, browser_slot().await);
    let pki = Pki::new();
    let server = Server::start(tls_setup(&pki, browser_config()).agent_key(Some(KEY.into()))).await;
    let customer = Browser::start(INSECURE_CA).await;
    let agent = Browser::start(INSECURE_CA).await;
    // The customer shops (the cart is in the portal's session), then asks.
    customer.goto(&server.url("/portal/products/2")).await;
    click(&customer, "#add").await;
    wait_text(&customer, "the lamp in the cart", "#cart", "Reading lamp").await;
    ask(&customer, &server, "/portal/cart", "help over https").await;
    sign_in_at(&agent, &server, "/agent", "ann").await;
    join_row(&agent, "help over https").await;
    wait_text(
        &customer,
        "the assisted state",
        "#tcb-assisted",
        "You are being assisted by ann",
    )
    .await;
    // The agent's view uses the customer's session: the customer's cart.
    wait_true(
        &agent,
        "the customer's cart in the agent's view",
        "try { var d = document.getElementById('view').contentDocument; \
             return !!d.getElementById('shared-view') && d.getElementById('cart').textContent.indexOf('Reading lamp') >= 0; } catch (e) { return false; }",
    )
    .await;
    // Push, then pull.
    js(&agent, "document.getElementById('push-url').value = '';").await;
    type_into(&agent, "#push-url", "/portal/help").await;
    click(&agent, "#push").await;
    wait_paths(&customer, &agent, "/portal/help").await;
    click(&agent, "#pull").await;
    wait_text(
        &agent,
        "the pulled page",
        "#session-state",
        "Pulled: the customer is on /portal/help",
    )
    .await;
    assert_eq!(protocols(&customer).await.0, json!("h2"));
    assert_eq!(protocols(&agent).await.0, json!("h2"));
    // The help and agent cookies were set Secure (and still reached the
    // server: the session works). WebDriver shows each cookie's flags.
    for (b, name) in [(&customer, "tandem_help"), (&agent, "tandem_agent")] {
        let secure = b.cookie_secure(name).await;
        assert_eq!(secure, Some(true), "{name}");
    }
    customer.quit().await;
    agent.quit().await;
}
