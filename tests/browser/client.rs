//! tandem.js in Chromium, one transport at a time: events published in Rust
//! arrive in the page in order, once each, with their payloads intact;
//! events published by one page reach another; a page rides out cut
//! connections and a server restart without losing or repeating an event;
//! a stream that delivers nothing makes the client fall back to long-poll
//! and, later, go back to streaming. Also the status and chat pages.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde_json::json;
use tandem::{Hub, NewEvent};

use crate::harness::{
    assert_exactly_once, browser_slot, eventually, got, open_page, statuses, wait_got, wait_open,
    CutProxy, Got,
};
use crate::webdriver::Browser;
use kit::{browser_config, Server};

/// What the page should show for event number `i` (1-based).
struct Expected {
    kind: String,
    data: String,
    base64: bool,
}

/// Event `i` of the stream published from Rust: mostly short text, with
/// every payload the transports must carry unchanged mixed in.
fn event(i: u64) -> (NewEvent, Expected) {
    let text = |kind: &str, data: String| {
        (
            NewEvent::message(data.clone()).with_kind(kind),
            Expected {
                kind: kind.into(),
                data,
                base64: false,
            },
        )
    };
    match i {
        _ if i % 13 == 6 => {
            // Binary: base64 in every JSON shape, raw bytes in multipart.
            let bytes: Vec<u8> = (0..64u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(i as u8))
                .chain([0xff, 0xfe, 0])
                .collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let mut e = NewEvent::message(Bytes::from(bytes)).with_kind("bin");
            e.content_type = Some("application/octet-stream".into());
            (
                e,
                Expected {
                    kind: "bin".into(),
                    data: b64,
                    base64: true,
                },
            )
        }
        _ if i % 7 == 3 => text("chat", format!("two lines\nof text {i}\r\nand a CRLF")),
        _ if i % 11 == 5 => text(
            "tricky",
            format!("</script><!-- & \"quotes\" é ☃ \u{2028} \u{1} {i}"),
        ),
        _ if i % 17 == 8 => text(
            "message",
            format!("a part must not end at --tandem-b7d1e0 here {i}"),
        ),
        100 => text("message", String::new()),
        150 => text("big", "x".repeat(20_000) + "end"),
        _ => text("message", format!("event {i}")),
    }
}

fn check_payloads(got: &[Got], first: u64) {
    for (n, g) in got.iter().enumerate() {
        let i = first + n as u64;
        let (_, want) = event(i);
        assert_eq!(
            (&g.kind, &g.data, g.base64),
            (&want.kind, &want.data, want.base64),
            "event {i}"
        );
    }
}

/// 200 events from Rust into one page; 50 publishes from that page into a
/// second one (another tab); no echo back to the publisher.
async fn round_trip(transport: &str, publish_via: &str) {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let browser = Browser::start(&[]).await;
    let a = browser.window().await;
    open_page(
        &browser,
        &server.url("/"),
        "room",
        json!({"transport": transport, "since": 0, "client": "alice", "publishVia": publish_via}),
    )
    .await;
    wait_open(&browser, transport).await;

    for i in 1..=200 {
        let id = server.publish_event("room", event(i).0).await;
        assert_eq!(id, i);
    }
    let got_a = wait_got(&browser, 200, Duration::from_secs(30)).await;
    assert_exactly_once(&got_a, 1, 200);
    check_payloads(&got_a, 1);

    // A second page on the same channel, in another tab, with no cursor:
    // it starts at the newest event.
    let b = browser.new_tab().await;
    browser.switch_to(&b).await;
    open_page(
        &browser,
        &server.url("/"),
        "room",
        json!({"transport": transport, "client": "bob"}),
    )
    .await;
    wait_open(&browser, transport).await;

    browser.switch_to(&a).await;
    browser
        .exec(
            "for (var i = 0; i < 50; i++) {
               T.conn.publish('said', 'line ' + i + ' ✓', function (err, res) {
                 T.pubs.push(err ? 'error: ' + err.message : res.id);
               });
             }",
            json!([]),
        )
        .await;
    let pubs = eventually("50 publish callbacks", Duration::from_secs(30), || async {
        let v = browser.exec("return T.pubs;", json!([])).await;
        (v.as_array().map_or(0, Vec::len) >= 50).then_some(v)
    })
    .await;
    let want_ids: Vec<u64> = (201..=250).collect();
    assert_eq!(pubs, json!(want_ids), "publish results, in order");

    browser.switch_to(&b).await;
    let got_b = wait_got(&browser, 50, Duration::from_secs(30)).await;
    assert_exactly_once(&got_b, 201, 250);
    for (i, g) in got_b.iter().enumerate() {
        assert_eq!(g.kind, "said");
        assert_eq!(g.data, format!("line {i} ✓"));
        assert_eq!(g.from.as_deref(), Some("alice"));
    }

    // The publisher does not hear itself (its client id is on its subscribe).
    browser.switch_to(&a).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        got(&browser).await.len(),
        200,
        "alice got her own events back"
    );
    let st = statuses(&browser).await;
    assert!(
        st.iter()
            .all(|(s, _, _)| s != "reconnecting" && s != "fallback"),
        "a clean run needs no reconnect: {st:?}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_round_trip() {
    round_trip("fetch", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_round_trip() {
    round_trip("eventsource", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xhr_round_trip() {
    round_trip("xhr", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_round_trip() {
    round_trip("poll", "auto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonp_round_trip() {
    round_trip("jsonp", "auto").await;
}

/// The iframe is for the oldest browsers: they publish with a form post
/// into a hidden iframe too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_round_trip_with_form_publish() {
    round_trip("iframe", "form").await;
}

/// Events keep coming while every connection is cut twice and the server
/// is down for a while and restarts (same port, same hub); the page ends
/// with each event once.
///
/// `min_reconnects`: the streams see each cut at once (3 reconnects: cut,
/// restart, cut); a long-poll often meets a cut between two polls, where
/// the browser retries on its own; the forever iframe never learns its
/// connection was cut (Chromium keeps the frame "loading") and comes back
/// when it has been idle for `idleTimeout`.
async fn survives_drops(transport: &str, min_reconnects: usize) {
    let _slot = browser_slot().await;
    let mut server = Server::start(browser_config()).await;
    let proxy = CutProxy::start(server.addr).await;
    let browser = Browser::start(&[]).await;
    open_page(
        &browser,
        &proxy.url("/"),
        "drops",
        json!({"transport": transport, "since": 0, "retryMin": 100, "retryMax": 800,
               "idleTimeout": 3000}),
    )
    .await;
    wait_open(&browser, transport).await;

    const N: u64 = 120;
    let hub = server.hub.clone();
    let publisher = tokio::spawn(async move {
        for i in 1..=N {
            hub.publish("drops", event(i).0).await.expect("publish");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.restart().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    proxy.cut();
    publisher.await.expect("publisher");

    let got = wait_got(&browser, N as usize, Duration::from_secs(40)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = crate::harness::got(&browser).await;
    assert_eq!(got.len(), got_after.len(), "events arrived twice");
    assert_exactly_once(&got_after, 1, N);
    check_payloads(&got_after, 1);
    let st = statuses(&browser).await;
    let reconnects = st.iter().filter(|(s, _, _)| s == "reconnecting").count();
    assert!(
        reconnects >= min_reconnects,
        "expected {min_reconnects} reconnects or more: {st:?}"
    );
    assert!(
        st.iter().all(|(s, _, _)| s != "fallback"),
        "cut connections are not a buffering proxy: {st:?}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_survives_drops() {
    survives_drops("fetch", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_survives_drops() {
    survives_drops("eventsource", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xhr_survives_drops() {
    survives_drops("xhr", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_survives_drops() {
    survives_drops("poll", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonp_survives_drops() {
    survives_drops("jsonp", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_survives_drops() {
    survives_drops("iframe", 1).await;
}

/// The server stops and a new run starts on the same port (a new hub: every
/// channel is a new incarnation, with a new epoch, its ids from 1), which
/// publishes 5 events before the page is back. The page saw 1..=3 of the old
/// run; it resumes with its cursor `EPOCH:3`, gets one reset gap, forgets
/// the ids it saw and delivers the new run's 1..=5 (not only 4 and 5), then
/// what comes live.
async fn follows_a_restart_into_a_new_run(transport: &str) {
    let _slot = browser_slot().await;
    let mut server = Server::start(browser_config()).await;
    let browser = Browser::start(&[]).await;
    open_page(
        &browser,
        &server.url("/"),
        "runs",
        json!({"transport": transport, "since": 0, "retryMin": 100, "retryMax": 800,
               "idleTimeout": 3000}),
    )
    .await;
    wait_open(&browser, transport).await;
    for i in 1..=3 {
        server
            .publish_event("runs", NewEvent::message(format!("old {i}")))
            .await;
    }
    wait_got(&browser, 3, Duration::from_secs(20)).await;
    let old_epoch = server
        .hub
        .info("runs")
        .epoch
        .expect("a channel")
        .to_string();
    let cursor = browser.exec("return T.conn.cursor();", json!([])).await;
    assert_eq!(cursor, json!(format!("{old_epoch}:3")), "{transport}");

    server.shutdown().await;
    server.hub = Hub::new(browser_config().core).expect("a valid config");
    for i in 1..=5 {
        assert_eq!(
            server
                .publish_event("runs", NewEvent::message(format!("new {i}")))
                .await,
            i
        );
    }
    let epoch = server
        .hub
        .info("runs")
        .epoch
        .expect("a channel")
        .to_string();
    assert_ne!(epoch, old_epoch);
    server.restart().await;
    wait_got(&browser, 9, Duration::from_secs(30)).await;
    for i in 6..=7 {
        server
            .publish_event("runs", NewEvent::message(format!("new {i}")))
            .await;
    }
    wait_got(&browser, 11, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = browser
        .exec(
            "return T.got.map(function (e) {
               return [e.type, e.id || null, e.type === 'gap' ? null : e.data,
                       !!e.reset, e.epoch || null];
             });",
            json!([]),
        )
        .await;
    let mut want = Vec::new();
    for i in 1..=3 {
        want.push(json!(["message", i, format!("old {i}"), false, old_epoch]));
    }
    want.push(json!(["gap", null, null, true, epoch]));
    for i in 1..=7 {
        want.push(json!(["message", i, format!("new {i}"), false, epoch]));
    }
    assert_eq!(
        got,
        json!(want),
        "{transport}: every event once, the reset between the runs"
    );
    let gap = browser
        .exec(
            "for (var i = 0; i < T.got.length; i++) {
               if (T.got[i].type === 'gap') { return [T.got[i].from, T.got[i].to]; }
             }",
            json!([]),
        )
        .await;
    assert_eq!(gap, json!([1, 0]), "{transport}: the new run lost nothing");
    let cursor = browser.exec("return T.conn.cursor();", json!([])).await;
    assert_eq!(cursor, json!(format!("{epoch}:7")), "{transport}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_follows_a_restart_into_a_new_run() {
    follows_a_restart_into_a_new_run("fetch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_follows_a_restart_into_a_new_run() {
    follows_a_restart_into_a_new_run("eventsource").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xhr_follows_a_restart_into_a_new_run() {
    follows_a_restart_into_a_new_run("xhr").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_follows_a_restart_into_a_new_run() {
    follows_a_restart_into_a_new_run("poll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonp_follows_a_restart_into_a_new_run() {
    follows_a_restart_into_a_new_run("jsonp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iframe_follows_a_restart_into_a_new_run() {
    follows_a_restart_into_a_new_run("iframe").await;
}

/// Stream sensing, in the page: the browser's own `fetch` (or
/// `EventSource`) is replaced by one whose stream never delivers a byte, as
/// behind a proxy that buffers. The client falls back to long-poll, keeps
/// delivering, and once streaming works again goes back to it, never
/// losing or repeating an event.
async fn senses_a_silent_stream(transport: &str, silence: &str) {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let browser = Browser::start(&[]).await;
    browser.goto(&server.url("/")).await;
    crate::harness::load_client(&browser).await;
    browser.exec(silence, json!([])).await;
    browser
        .exec(
            "window.T = {got: [], statuses: []};
             T.conn = tandem.connect('quiet', {transport: arguments[0], since: 0,
               streamTimeout: 1500, streamRetry: 2500,
               onEvent: function (ev) { T.got.push(ev); },
               onStatus: function (s, info) {
                 T.statuses.push([s, info.transport || '', info.reason || '']);
               }});",
            json!([transport]),
        )
        .await;
    wait_open(&browser, "poll").await;
    let st = statuses(&browser).await;
    assert!(
        st.iter()
            .any(|(s, t, r)| s == "fallback" && t == "poll" && r.contains("no data")),
        "no fallback reported: {st:?}"
    );
    for i in 1..=30 {
        server.publish_event("quiet", event(i).0).await;
    }
    let got = wait_got(&browser, 30, Duration::from_secs(20)).await;
    assert_exactly_once(&got, 1, 30);

    // Streaming works again: after `streamRetry` the client tries it and stays.
    browser.exec("restoreSilence();", json!([])).await;
    wait_open(&browser, transport).await;
    for i in 31..=60 {
        server.publish_event("quiet", event(i).0).await;
    }
    let got = wait_got(&browser, 60, Duration::from_secs(20)).await;
    assert_exactly_once(&got, 1, 60);
    check_payloads(&got, 1);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_falls_back_to_poll_when_the_stream_is_silent() {
    senses_a_silent_stream(
        "fetch",
        "var real = window.fetch;
         window.fetch = function (url) {
           if (String(url).indexOf('/mixed') < 0) { return real.apply(window, arguments); }
           return Promise.resolve(new Response(new ReadableStream({start: function () {}}),
             {headers: {'Content-Type': 'multipart/mixed; boundary=tandem-b7d1e0'}}));
         };
         window.restoreSilence = function () { window.fetch = real; };",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_falls_back_to_poll_when_the_stream_is_silent() {
    senses_a_silent_stream(
        "eventsource",
        "var real = window.EventSource;
         window.EventSource = function () { this.close = function () {}; this.addEventListener = function () {}; this.removeEventListener = function () {}; };
         window.restoreSilence = function () { window.EventSource = real; };",
    )
    .await;
}

/// The status page shows live numbers, pushed through tandem itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_is_live() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let browser = Browser::start(&[]).await;
    browser.goto(&server.url("/status.html")).await;
    let first = eventually("a status snapshot", Duration::from_secs(10), || async {
        let v = browser
            .exec("return window.lastStatus || null;", json!([]))
            .await;
        (!v.is_null()).then_some(v)
    })
    .await;
    // The page itself reads through fetch (multipart/mixed) in Chromium.
    assert!(first["open"]["mixed"].as_u64() >= Some(1), "{first}");
    assert!(first["connections"].as_u64() >= Some(1), "{first}");
    for i in 0..100 {
        server
            .publish_event("busy", NewEvent::message(format!("{i}")))
            .await;
    }
    let later = eventually("a newer snapshot", Duration::from_secs(10), || async {
        let v = browser.exec("return window.lastStatus;", json!([])).await;
        (v["published"].as_u64() >= Some(100)).then_some(v)
    })
    .await;
    assert!(later["time"].as_u64() > first["time"].as_u64());
    let shown = browser
        .exec(
            "return document.getElementById('open').innerText;",
            json!([]),
        )
        .await;
    assert!(
        shown.as_str().is_some_and(|s| s.contains("mixed")),
        "the table shows the transports: {shown}"
    );
    // `?transport=` picks another; each one brings the snapshots too.
    for t in ["eventsource", "xhr", "poll", "jsonp", "iframe"] {
        browser
            .goto(&server.url(&format!("/status.html?transport={t}")))
            .await;
        let v = eventually(t, Duration::from_secs(10), || async {
            let v = browser
                .exec(
                    "return window.lastStatus ? statusConn.transport : null;",
                    json!([]),
                )
                .await;
            (!v.is_null()).then_some(v)
        })
        .await;
        assert_eq!(v, json!(t));
    }
    browser.quit().await;
}

/// Two chat tabs talk both ways through the page's own form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_talks_both_ways() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let browser = Browser::start(&[]).await;
    let a = browser.window().await;
    browser.goto(&server.url("/chat.html")).await;
    let b = browser.new_tab().await;
    browser.switch_to(&b).await;
    browser.goto(&server.url("/chat.html")).await;
    let say = |who: &'static str, text: &'static str| {
        let browser = &browser;
        async move {
            eventually("the chat to open", Duration::from_secs(20), || async {
                let v = browser
                    .exec(
                        "return document.getElementById('state').innerText;",
                        json!([]),
                    )
                    .await;
                v.as_str()
                    .is_some_and(|s| s.starts_with("open"))
                    .then_some(())
            })
            .await;
            browser
                .exec(
                    "document.getElementById('name').value = arguments[0];
                     document.getElementById('text').value = arguments[1];
                     document.querySelector('#say button').click();",
                    json!([who, text]),
                )
                .await;
        }
    };
    let log_has = |text: &'static str| {
        let browser = &browser;
        async move {
            eventually(text, Duration::from_secs(20), || async {
                let v = browser
                    .exec(
                        "return document.getElementById('log').innerText;",
                        json!([]),
                    )
                    .await;
                v.as_str().is_some_and(|s| s.contains(text)).then_some(())
            })
            .await;
        }
    };
    say("bob", "hi alice <b>").await;
    log_has("bob: hi alice <b>").await;
    browser.switch_to(&a).await;
    log_has("bob: hi alice <b>").await;
    say("alice", "hello bob").await;
    browser.switch_to(&b).await;
    log_has("alice: hello bob").await;
    browser.quit().await;
}

/// Gaps reach the app from every transport's wire format, and a reset gap
/// (the channel was swept while idle and started over at id 1) makes the
/// client forget the ids it saw and take the new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_and_resets_reach_the_app() {
    const TRANSPORTS: [&str; 6] = ["fetch", "eventsource", "xhr", "poll", "jsonp", "iframe"];
    let _slot = browser_slot().await;
    let cfg = browser_config()
        .buffer_events(50)
        .buffer_age(Duration::from_secs(3));
    let server = Server::start(cfg).await;
    let browser = Browser::start(&[]).await;
    browser.goto(&server.url("/")).await;
    crate::harness::load_client(&browser).await;
    // One connection at a time: until it has `n` events (or a timeout),
    // then closed; what it got comes back as [[type, id, from, to, reset]].
    let run = |transport: &'static str, channel: String, since: u64, n: usize| {
        let browser = &browser;
        async move {
            browser
                .exec_async(
                    "var done = arguments[arguments.length - 1], got = [], statuses = [];
                     var conn = tandem.connect(arguments[1], {transport: arguments[0],
                       since: arguments[2],
                       onEvent: function (ev) {
                         got.push([ev.type, ev.id || null, ev.from === undefined ? null : ev.from,
                                   ev.to === undefined ? null : ev.to, !!ev.reset]);
                       },
                       onStatus: function (s) { statuses.push(s); }});
                     var n = arguments[3];
                     var timer = setTimeout(finish, 15000);
                     function finish() { clearTimeout(timer); conn.close(); done({got: got, statuses: statuses}); }
                     var check = setInterval(function () {
                       if (got.length >= n) { clearInterval(check); finish(); }
                     }, 20);",
                    json!([transport, channel, since, n]),
                )
                .await
        }
    };
    for t in TRANSPORTS {
        for i in 1..=80 {
            server
                .publish_event(&format!("g-{t}"), NewEvent::message(format!("{i}")))
                .await;
            // For the resets: channels nobody subscribes to, to be swept.
            server
                .publish_event(&format!("r-{t}"), NewEvent::message(format!("{i}")))
                .await;
        }
    }
    for t in TRANSPORTS {
        let v = run(t, format!("g-{t}"), 0, 51).await;
        let got = v["got"].as_array().expect("events");
        assert_eq!(got.len(), 51, "{t}: {v}");
        assert_eq!(got[0], json!(["gap", null, 1, 30, false]), "{t}: the gap");
        for (k, e) in got[1..].iter().enumerate() {
            assert_eq!(e[1], json!(31 + k), "{t}: event {k} after the gap");
        }
    }
    // Everything expires, the idle channels are swept, and made again:
    // their ids start over.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    server.hub.sweep();
    for t in TRANSPORTS {
        for i in 1..=3 {
            let id = server
                .publish_event(&format!("r-{t}"), NewEvent::message(format!("{i}")))
                .await;
            assert_eq!(id, i, "r-{t} was swept");
        }
    }
    for t in TRANSPORTS {
        let v = run(t, format!("r-{t}"), 80, 4).await;
        let got = v["got"].as_array().expect("events");
        assert_eq!(
            v["got"],
            json!([
                ["gap", null, 1, 0, true],
                ["message", 1, null, null, false],
                ["message", 2, null, null, false],
                ["message", 3, null, null, false]
            ]),
            "{t}: after the reset ({} events)",
            got.len()
        );
    }
    browser.quit().await;
}

/// The `xhr` transport's responseText and the iframe's document only grow:
/// past a limit the client opens the stream afresh, without losing,
/// repeating or even reporting anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_streams_are_renewed_seamlessly() {
    let _slot = browser_slot().await;
    let server = Server::start(browser_config()).await;
    let browser = Browser::start(&[]).await;
    for (transport, limit) in [
        ("xhr", json!({"maxStreamBytes": 30000})),
        ("iframe", json!({"maxFrameEvents": 40})),
    ] {
        let channel = format!("renew-{transport}");
        let mut opts = limit;
        opts["transport"] = json!(transport);
        opts["since"] = json!(0);
        open_page(&browser, &server.url("/"), &channel, opts).await;
        wait_open(&browser, transport).await;
        for i in 1..=200 {
            server.publish_event(&channel, event(i).0).await;
        }
        let got = wait_got(&browser, 200, Duration::from_secs(30)).await;
        assert_exactly_once(&got, 1, 200);
        check_payloads(&got, 1);
        let st = statuses(&browser).await;
        assert_eq!(
            st.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
            ["connecting", "open"],
            "{transport}: renewing is silent"
        );
    }
    browser.quit().await;
}
