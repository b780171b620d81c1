//! tandem.js with signed channel tokens (docs/security.md): the page gets
//! its token from a function returning a promise, each token lives 3 s, and
//! over 10 s of events on a channel that needs tokens the client renews
//! before every expiry on each transport (no stream is cut, no request
//! refused), receiving every event once.

use std::time::Duration;

use serde_json::json;
use tandem::token::{now_unix, Needs, Rights, Signer, Token, TokenPolicy};

use crate::harness::{
    assert_exactly_once, browser_slot, load_client, statuses, wait_got, wait_open,
};
use crate::webdriver::Browser;
use kit::{browser_config, Server};

const SECRET: &[u8] = b"browser test secret of 32 bytes or more";

async fn renews_tokens(transport: &str) {
    let _slot = browser_slot().await;
    let signer = Signer::new(SECRET).unwrap();
    let server = Server::start(browser_config().tokens(TokenPolicy {
        signer: signer.clone(),
        needs: Needs::All,
    }))
    .await;
    let browser = Browser::start(&[]).await;
    browser.goto(&server.url("/")).await;
    load_client(&browser).await;
    // Token i expires 3 (i + 1) s from now: each is fetched about a second
    // before the one before it expires.
    let start = now_unix();
    let tokens: Vec<String> = (0..12)
        .map(|i| {
            signer.mint(&Token {
                channel: "room".into(),
                prefix: false,
                rights: Rights::parse("sub,pub").unwrap(),
                expires: start + 3 * (i + 1),
                client: None,
            })
        })
        .collect();
    browser
        .exec(
            "var tokens = arguments[1];
             window.T = {got: [], statuses: [], pubs: [], calls: 0};
             T.conn = tandem.connect('room', {
               transport: arguments[0], since: 0, tokenRenew: 1000,
               token: function () {
                 var t = tokens[T.calls++];
                 return new Promise(function (ok) { setTimeout(function () { ok(t); }, 20); });
               },
               onEvent: function (ev) { T.got.push(ev); },
               onStatus: function (s, info) {
                 T.statuses.push([s, info.transport || '', info.reason || '']);
               }
             });",
            json!([transport, tokens]),
        )
        .await;
    wait_open(&browser, transport).await;
    for i in 1..=40u64 {
        let id = server
            .publish_event("room", tandem::NewEvent::message(format!("e{i}")))
            .await;
        assert_eq!(id, i);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let got = wait_got(&browser, 40, Duration::from_secs(20)).await;
    assert_exactly_once(&got, 1, 40);
    // A publish from the page with the current token.
    browser
        .exec(
            "T.conn.publish('said', 'hi', function (err, res) { T.pubs.push(err ? 'error' : res.id); });",
            json!([]),
        )
        .await;
    let pubs = crate::harness::eventually("the publish", Duration::from_secs(10), || async {
        let v = browser.exec("return T.pubs;", json!([])).await;
        (v.as_array().map_or(0, Vec::len) >= 1).then_some(v)
    })
    .await;
    assert_eq!(pubs, json!([41]));
    let calls = browser.exec("return T.calls;", json!([])).await;
    assert!(
        calls.as_u64().unwrap_or(0) >= 3,
        "renewed several times: {calls}"
    );
    let st = statuses(&browser).await;
    // Renewed ahead of each expiry: never refused, never cut (a stream
    // ended by the server at an expiry would show as `reconnecting`).
    assert!(
        st.iter()
            .all(|(s, _, _)| s != "reconnecting" && s != "fallback"),
        "renewed in time, no reconnect: {st:?}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_renews_tokens() {
    renews_tokens("fetch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_renews_tokens() {
    renews_tokens("eventsource").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xhr_renews_tokens() {
    renews_tokens("xhr").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_renews_tokens() {
    renews_tokens("poll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonp_renews_tokens() {
    renews_tokens("jsonp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_renews_tokens() {
    renews_tokens("iframe").await;
}

/// A secret dropped under a running page (`Service::rotate_token_secret`,
/// what SIGHUP does): the stream its token opened is cut, the reconnect is
/// refused (on EventSource and iframe without a status the page can read),
/// and tandem.js asks its token function again and resumes with the new
/// secret's token, every event once.
async fn rides_out_a_dropped_secret(transport: &str) {
    let _slot = browser_slot().await;
    let old = Signer::new(SECRET).unwrap();
    let new: &[u8] = b"the next browser test secret, 32 bytes+";
    let server = Server::start(browser_config().tokens(TokenPolicy {
        signer: old.clone(),
        needs: Needs::All,
    }))
    .await;
    let browser = Browser::start(&[]).await;
    browser.goto(&server.url("/")).await;
    load_client(&browser).await;
    let token = |s: &Signer| {
        s.mint(&Token {
            channel: "room".into(),
            prefix: false,
            rights: Rights::parse("sub,pub").unwrap(),
            expires: now_unix() + 600,
            client: None,
        })
    };
    let tokens = [token(&old), token(&Signer::new(new).unwrap())];
    browser
        .exec(
            "var tokens = arguments[1];
             window.T = {got: [], statuses: [], calls: 0};
             T.conn = tandem.connect('room', {
               transport: arguments[0], since: 0, retryMin: 100,
               token: function () { return tokens[Math.min(T.calls++, 1)]; },
               onEvent: function (ev) { T.got.push(ev); },
               onStatus: function (s, info) {
                 T.statuses.push([s, info.transport || '', info.reason || '']);
               }
             });",
            json!([transport, tokens]),
        )
        .await;
    wait_open(&browser, transport).await;
    server
        .publish_event("room", tandem::NewEvent::message("e1"))
        .await;
    wait_got(&browser, 1, Duration::from_secs(10)).await;
    // Rotated, then dropped: the old secret's stream is cut.
    assert!(server
        .service()
        .rotate_token_secret(Signer::new(new).unwrap()));
    assert!(!server
        .service()
        .rotate_token_secret(Signer::new(new).unwrap()));
    for i in 2..=3u64 {
        server
            .publish_event("room", tandem::NewEvent::message(format!("e{i}")))
            .await;
    }
    // The refused reconnect makes the page ask for a token again.
    crate::harness::eventually("a fresh token", Duration::from_secs(20), || async {
        let calls = browser.exec("return T.calls;", json!([])).await;
        (calls == json!(2)).then_some(())
    })
    .await;
    for i in 4..=5u64 {
        server
            .publish_event("room", tandem::NewEvent::message(format!("e{i}")))
            .await;
    }
    let got = wait_got(&browser, 5, Duration::from_secs(20)).await;
    assert_exactly_once(&got, 1, 5);
    let st = statuses(&browser).await;
    assert!(
        st.iter().any(|(s, _, _)| s == "reconnecting"),
        "the stream was cut: {st:?}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_rides_out_a_dropped_secret() {
    rides_out_a_dropped_secret("eventsource").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_rides_out_a_dropped_secret() {
    rides_out_a_dropped_secret("fetch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_rides_out_a_dropped_secret() {
    rides_out_a_dropped_secret("iframe").await;
}
