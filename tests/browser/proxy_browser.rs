//! tandem.js in Chromium through each proxy of `proxies.rs`: the page loads
//! through the proxy, its connection opens, and every event published arrives
//! once, in order.
//!
//! * squid as Chromium's forward proxy (`--proxy-server`, with
//!   `--proxy-bypass-list=<-loopback>` so loopback goes through it too): the
//!   stream opens and delivers; squid's access log proves the traffic went
//!   through it.
//! * nginx (recommended config) in front of tandem: the same, and a publish
//!   from the page is accepted (nginx passes the browser's Host).
//! * the HTTP/1.0 proxy: the stream works on a close-delimited body.
//! * the buffering proxy: the client notices the silent stream and falls
//!   back to long-poll within 10 s, losing nothing.
//! * the idle-cutting proxy: heartbeats keep the page's stream open, with no
//!   reconnect.

use std::time::Duration;

use serde_json::{json, Value};
use tandem::NewEvent;

use crate::harness::{assert_exactly_once, browser_slot, open_page, statuses, wait_got, wait_open};
use crate::proxies::{BufferingProxy, Http10Proxy, IdleCutProxy, Nginx, Squid};
use crate::webdriver::Browser;
use kit::{browser_config, Server};

/// Publishes `first..=last` into `channel` from Rust.
async fn publish_range(server: &Server, channel: &str, first: u64, last: u64) {
    for i in first..=last {
        let id = server
            .publish_event(channel, NewEvent::message(format!("event {i}")))
            .await;
        assert_eq!(id, i);
    }
}

/// Publishes from the page (`conn.publish`) and returns the callback's
/// `[error, result]`.
async fn publish_from_page(b: &Browser, data: &str) -> Value {
    b.exec_async(
        "var done = arguments[arguments.length - 1];
         T.conn.publish('message', arguments[0], function (err, res) {
           done([err ? String(err.message || err) : null, res || null]);
         });",
        json!([data]),
    )
    .await
}

/// The page's stream (`fetch`, the client's first choice) opens at `url`,
/// 20 events published from Rust arrive once each in order, and a publish
/// from the page is accepted.
async fn stream_and_publish(b: &Browser, server: &Server, url: &str, channel: &str) {
    open_page(b, url, channel, json!({"since": 0})).await;
    wait_open(b, "fetch").await;
    publish_range(server, channel, 1, 20).await;
    let got = wait_got(b, 20, Duration::from_secs(10)).await;
    assert_exactly_once(&got, 1, 20);
    let r = publish_from_page(b, "from the page").await;
    assert_eq!(r[0], Value::Null, "publish from the page failed: {r}");
    assert_eq!(r[1]["id"], json!(21), "{r}");
    let st = statuses(b).await;
    assert!(
        !st.iter()
            .any(|(s, _, _)| s == "reconnecting" || s == "fallback"),
        "{st:?}"
    );
}

#[tokio::test]
async fn browser_through_squid_forward_proxy_streams() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let squid = Squid::start();
    let proxy = format!("--proxy-server={}", squid.url());
    let browser = Browser::start(&[&proxy, "--proxy-bypass-list=<-loopback>"]).await;
    stream_and_publish(&browser, &server, &server.url("/"), "squid-page").await;
    browser.quit().await;
    // The page, the stream and the publish all went through squid (which
    // logs a request when it ends: the stream ended with the browser).
    let port = server.addr.port();
    let wanted = [
        format!("GET http://127.0.0.1:{port}/tandem.js"),
        format!("GET http://127.0.0.1:{port}/ch/squid-page/mixed"),
        format!("POST http://127.0.0.1:{port}/ch/squid-page"),
    ];
    wait_logged("squid", || squid.access_log(), &wanted).await;
}

/// Through squid, every client transport forced in turn delivers each event
/// within a second of its publishing: a proxy that buffered any of them
/// would hold the event back far longer.
#[tokio::test]
async fn every_client_transport_through_squid_within_a_second() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let squid = Squid::start();
    let proxy = format!("--proxy-server={}", squid.url());
    let browser = Browser::start(&[&proxy, "--proxy-bypass-list=<-loopback>"]).await;
    for transport in ["fetch", "eventsource", "xhr", "poll", "jsonp", "iframe"] {
        let channel = format!("squid-{transport}");
        let opts = json!({"since": 0, "transport": transport});
        open_page(&browser, &server.url("/"), &channel, opts).await;
        wait_open(&browser, transport).await;
        for i in 1..=3u64 {
            publish_range(&server, &channel, i, i).await;
            let got = wait_got(&browser, i as usize, Duration::from_secs(1)).await;
            assert_exactly_once(&got, 1, i);
        }
    }
    browser.quit().await;
    let port = server.addr.port();
    // Every transport's requests went through squid.
    let wanted: Vec<String> = [
        ("fetch", "mixed"),
        ("eventsource", "sse"),
        ("xhr", "sse"),
        ("poll", "poll"),
        ("jsonp", "jsonp"),
        ("iframe", "iframe"),
    ]
    .iter()
    .map(|(t, route)| format!("GET http://127.0.0.1:{port}/ch/squid-{t}/{route}"))
    .collect();
    wait_logged("squid", || squid.access_log(), &wanted).await;
}

/// Waits (at most 5 s) until `log()` contains every one of `wanted`.
async fn wait_logged(what: &str, log: impl Fn() -> String, wanted: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = log();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|w| !text.contains(w.as_str()))
            .collect();
        if missing.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{missing:?} not in {what}'s access log:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn browser_through_nginx_reverse_proxy_streams() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let nginx = Nginx::start_http11(server.addr.port());
    let browser = Browser::start(&[]).await;
    let url = format!("{}/", nginx.url());
    stream_and_publish(&browser, &server, &url, "nginx-page").await;
    browser.quit().await;
    let wanted = [
        "GET /ch/nginx-page/mixed".to_string(),
        "POST /ch/nginx-page".to_string(),
    ];
    wait_logged("nginx", || nginx.access_log(), &wanted).await;
}

#[tokio::test]
async fn browser_through_http10_proxy_streams() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let proxy = Http10Proxy::start(server.addr);
    let browser = Browser::start(&[]).await;
    let url = format!("{}/", proxy.url());
    stream_and_publish(&browser, &server, &url, "http10-page").await;
    browser.quit().await;
}

/// Through a proxy that holds 16 KiB, the page's stream shows nothing; the
/// client falls back to long-poll within 10 s of connecting, and every event
/// published before, during and after the switch arrives once, in order.
#[tokio::test]
async fn browser_through_buffering_proxy_falls_back_to_long_poll() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let proxy = BufferingProxy::start(server.addr);
    let browser = Browser::start(&[]).await;
    let url = format!("{}/", proxy.url());
    let channel = "buffered-page";
    publish_range(&server, channel, 1, 3).await;
    open_page(&browser, &url, channel, json!({"since": 0})).await;
    let opened = tokio::time::Instant::now();
    // While the stream is being sensed.
    publish_range(&server, channel, 4, 6).await;
    let fell_back = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let st = statuses(&browser).await;
            if st
                .last()
                .is_some_and(|(s, t, _)| s == "open" && t == "poll")
                && st.iter().any(|(s, _, _)| s == "fallback")
            {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let st = match fell_back {
        Ok(st) => st,
        Err(_) => panic!(
            "no fallback to long-poll within 10 s; statuses: {:?}",
            statuses(&browser).await
        ),
    };
    assert!(opened.elapsed() <= Duration::from_secs(10));
    assert!(
        st.iter()
            .any(|(s, t, _)| s == "fallback" && (t == "poll" || t == "jsonp")),
        "{st:?}"
    );
    publish_range(&server, channel, 7, 12).await;
    let got = wait_got(&browser, 12, Duration::from_secs(10)).await;
    assert_exactly_once(&got, 1, 12);
    let r = publish_from_page(&browser, "from the page").await;
    assert_eq!(r[1]["id"], json!(13), "{r}");
    browser.quit().await;
}

/// The page's stream through a proxy that cuts connections idle for 2 s,
/// with tandem's heartbeat at 0.5 s (the harness config): after 6 s without
/// an event the stream is still the one it opened (no reconnect, no new
/// connection through the proxy) and the next event arrives on it. (The
/// proxy may well cut the browser's idle keep-alive connections meanwhile:
/// those carry no heartbeat, and nothing is lost with them.)
#[tokio::test]
async fn browser_through_idle_cut_proxy_stays_open() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    assert!(server.hub.config().heartbeat < Duration::from_secs(2));
    let proxy = IdleCutProxy::start(server.addr, Duration::from_secs(2));
    let browser = Browser::start(&[]).await;
    let url = format!("http://{}/", proxy.addr());
    let channel = "idle-page";
    open_page(&browser, &url, channel, json!({"since": 0})).await;
    wait_open(&browser, "fetch").await;
    publish_range(&server, channel, 1, 1).await;
    wait_got(&browser, 1, Duration::from_secs(10)).await;
    let accepted = proxy.accepted();
    tokio::time::sleep(Duration::from_secs(6)).await;
    publish_range(&server, channel, 2, 2).await;
    let got = wait_got(&browser, 2, Duration::from_secs(10)).await;
    assert_exactly_once(&got, 1, 2);
    let st = statuses(&browser).await;
    assert!(
        !st.iter()
            .any(|(s, _, _)| s == "reconnecting" || s == "fallback"),
        "{st:?}"
    );
    assert_eq!(
        proxy.accepted(),
        accepted,
        "the page opened a new connection"
    );
    browser.quit().await;
}
