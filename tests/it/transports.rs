//! Every transport's framing, byte-checked: multipart/x-mixed-replace,
//! multipart/mixed, SSE, long-poll JSON, JSONP, the forever iframe, and the
//! transport `GET /ch/{c}` picks from `Accept`.

use base64::Engine;
use tandem::__private::wire::{parse_jsonp, parse_poll, MultipartParser, SseParser};
use tandem::__private::BOUNDARY;
use tandem::Transport;

use kit::*;

/// Splits one multipart part (headers, blank line, body) off the front of
/// `bytes`, checking it ends with CRLF and the next delimiter line.
fn split_part(bytes: &[u8]) -> (Vec<(String, String)>, Vec<u8>, usize) {
    let end = find(bytes, b"\r\n\r\n").expect("part header block ends with a blank line");
    let head = std::str::from_utf8(&bytes[..end]).expect("ascii part headers");
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("header line `Name: value`");
            (k.to_string(), v.to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "Content-Length")
        .expect("Content-Length part header")
        .1
        .parse()
        .expect("numeric length");
    let body_start = end + 4;
    let body = bytes[body_start..body_start + len].to_vec();
    let tail = format!("\r\n{}\r\n", delimiter());
    assert_eq!(
        &bytes[body_start + len..body_start + len + tail.len()],
        tail.as_bytes(),
        "a part ends with CRLF and the next delimiter at once"
    );
    (headers, body, body_start + len + tail.len())
}

fn names(headers: &[(String, String)]) -> Vec<&str> {
    headers.iter().map(|(k, _)| k.as_str()).collect()
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    &headers
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("part header {name} missing in {headers:?}"))
        .1
}

async fn multipart_stream(flavor: Flavor, path: &str, content_type: &str) {
    let srv = flavor.with_defaults().await;
    let (head, mut body) = srv.open(Req::get(path)).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    head.expect("content-type", content_type);
    head.expect_no_cache();
    assert!(
        head.is_chunked(),
        "HTTP/1.1 stream is chunked: {}",
        head.raw
    );

    // The prelude: the configured padding, then the first delimiter line.
    let prelude = format!("{}\r\n{}\r\n", " ".repeat(2048), delimiter());
    body.read_until("the prelude", |b| b.len() >= prelude.len())
        .await;
    assert_eq!(&body.raw()[..prelude.len()], prelude.as_bytes());
    let start = prelude.len();

    // A text event with a type from the Event-Type header.
    let r = srv
        .send(
            Req::post("/ch/c", b"hello")
                .header("Content-Type", "text/plain")
                .header("Event-Type", "greet"),
        )
        .await;
    assert_eq!(r.head.status, 202);
    body.read_until("the first part", |b| {
        find(&b[start..], format!("\r\n{}\r\n", delimiter()).as_bytes()).is_some()
    })
    .await;
    let (headers, data, used) = split_part(&body.raw()[start..]);
    // Each contract header exactly once (Event-Time and Event-From may join them).
    for h in [
        "Content-Type",
        "Event-Id",
        "Event-Epoch",
        "Event-Type",
        "Content-Length",
    ] {
        let n = names(&headers).iter().filter(|k| **k == h).count();
        assert_eq!(n, 1, "{h} in {headers:?}");
    }
    assert_eq!(value(&headers, "Content-Type"), "text/plain");
    assert_eq!(value(&headers, "Event-Id"), "1");
    assert_eq!(value(&headers, "Event-Epoch"), srv.epoch("c"));
    assert_eq!(
        names(&headers)[..3],
        ["Content-Type", "Event-Id", "Event-Epoch"],
        "the epoch right after the id"
    );
    assert_eq!(value(&headers, "Event-Type"), "greet");
    assert!(value(&headers, "Event-Time").parse::<u64>().unwrap() > 1_600_000_000_000);
    assert_eq!(data, b"hello");
    let start = start + used;

    // A payload containing the delimiter cannot forge a part: it travels base64.
    let forged = format!("x\r\n{}\r\nEvent-Id: 99\r\n\r\nevil", delimiter());
    let r = srv
        .post(
            "/ch/c?type=bin",
            Some("application/octet-stream"),
            forged.as_bytes(),
        )
        .await;
    assert_eq!(r.head.status, 202);
    body.read_until("the second part", |b| {
        b.len() > start + 10 && {
            let tail = &b[start..];
            find(tail, b"\r\n\r\n").is_some_and(|h| {
                find(&tail[h..], format!("\r\n{}\r\n", delimiter()).as_bytes()).is_some()
            })
        }
    })
    .await;
    let (headers, data, _) = split_part(&body.raw()[start..]);
    assert_eq!(value(&headers, "Content-Type"), "application/octet-stream");
    assert_eq!(value(&headers, "Event-Id"), "2");
    assert_eq!(value(&headers, "Event-Type"), "bin");
    assert_eq!(value(&headers, "Content-Transfer-Encoding"), "base64");
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&data)
            .unwrap(),
        forged.as_bytes()
    );

    // The library's own parser reads the same bytes back as two events.
    let mut p = MultipartParser::new(BOUNDARY);
    let evs = p.feed(body.raw()).unwrap();
    assert_eq!(ids(&evs), some_ids(1..=2));
    assert_eq!(evs[0].kind, "greet");
    assert_eq!(evs[0].data, b"hello");
    assert_eq!(evs[0].content_type.as_deref(), Some("text/plain"));
    assert_eq!(evs[1].data, forged.as_bytes());
    assert_eq!(p.heartbeats, 0);
}

both_flavors!(multipart_x_mixed_replace_framing);
async fn multipart_x_mixed_replace_framing(flavor: Flavor) {
    multipart_stream(
        flavor,
        "/ch/c/multipart",
        &format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
    )
    .await;
}

both_flavors!(multipart_mixed_framing);
async fn multipart_mixed_framing(flavor: Flavor) {
    multipart_stream(
        flavor,
        "/ch/c/mixed",
        &format!("multipart/mixed; boundary={BOUNDARY}"),
    )
    .await;
}

both_flavors!(multipart_default_content_type_is_text);
async fn multipart_default_content_type_is_text(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut s = srv.multipart("/ch/c/mixed").await;
    srv.post("/ch/c", None, b"no type given").await;
    let e = s.next_event().await;
    assert_eq!(e.content_type.as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(e.kind, "message");
    assert_eq!(e.data, b"no type given");
}

both_flavors!(sse_framing);
async fn sse_framing(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let (head, mut body) = srv.open(Req::get("/ch/c/sse")).await;
    assert_eq!(head.status, 200, "{}", head.raw);
    head.expect("content-type", "text/event-stream; charset=utf-8");
    head.expect_no_cache();
    assert!(head.is_chunked());

    // Padding comment, then the configured retry (1500 ms in the test config).
    let prelude = format!(":{}\nretry: 1500\n\n", " ".repeat(2048));
    body.read_until("the prelude", |b| b.len() >= prelude.len())
        .await;
    assert_eq!(body.raw(), prelude.as_bytes());

    // Multi-line data: LF, CRLF and CR all split lines.
    let r = srv
        .post(
            "/ch/c?type=chat",
            Some("text/plain"),
            b"one\ntwo\r\nthree\rfour",
        )
        .await;
    assert_eq!(r.head.status, 202);
    let e = srv.epoch("c");
    let expect =
        format!("id: {e}:1\nevent: chat\ndata: one\ndata: two\ndata: three\ndata: four\n\n");
    body.read_until("the event", |b| b.len() >= prelude.len() + expect.len())
        .await;
    assert_eq!(&body.raw()[prelude.len()..], expect.as_bytes());

    // Binary data travels base64 behind a `:base64` comment.
    let bin = [0u8, 0xff, 0x10, b'\n', 0x80];
    srv.post("/ch/c", Some("application/octet-stream"), &bin)
        .await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bin);
    let expect2 = format!("id: {e}:2\nevent: message\n:base64\ndata: {b64}\n\n");
    let at = prelude.len() + expect.len();
    body.read_until("the binary event", |b| b.len() >= at + expect2.len())
        .await;
    assert_eq!(&body.raw()[at..], expect2.as_bytes());

    let mut p = SseParser::new();
    let evs = p.feed(body.raw()).unwrap();
    assert_eq!(p.retry, Some(1500));
    assert_eq!(ids(&evs), some_ids(1..=2));
    assert_eq!(evs[0].epoch.as_deref(), Some(e.as_str()));
    assert_eq!(evs[1].cursor(), Some(format!("{e}:2")));
    assert_eq!(evs[0].kind, "chat");
    assert_eq!(evs[0].data, b"one\ntwo\nthree\nfour");
    assert_eq!(evs[1].data, bin);
}

both_flavors!(poll_json_with_binary_as_data_b64);
async fn poll_json_with_binary_as_data_b64(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    srv.post("/ch/c?type=chat", Some("text/plain"), b"hi \"you\"")
        .await;
    let png = [0x89, b'P', b'N', b'G', 0, 0xff, 0xfe];
    srv.post("/ch/c?type=image", Some("image/png"), &png).await;

    let r = srv.get("/ch/c/poll?since=0").await;
    assert_eq!(r.head.status, 200);
    r.head.expect("content-type", "application/json");
    r.head.expect_no_cache();
    assert_eq!(
        r.head.header("content-length"),
        Some(r.body.len().to_string().as_str()),
        "a poll answer has an exact length"
    );
    let v = r.json();
    assert_eq!(v.as_object().unwrap().len(), 2, "{{events, next}}: {v}");
    let epoch = srv.epoch("c");
    assert_eq!(v["next"], format!("{epoch}:2"));
    let evs = v["events"].as_array().unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0]["id"], 1);
    assert_eq!(evs[0]["epoch"], epoch);
    assert_eq!(evs[1]["epoch"], epoch);
    assert!(
        r.text().starts_with(&format!(
            "{{\"events\":[{{\"id\":1,\"epoch\":\"{epoch}\",\"type\":"
        )),
        "the epoch beside the id: {}",
        r.text()
    );
    assert_eq!(evs[0]["type"], "chat");
    assert_eq!(evs[0]["data"], "hi \"you\"");
    assert_eq!(evs[0]["content_type"], "text/plain");
    assert!(evs[0]["time"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(evs[1]["id"], 2);
    assert_eq!(evs[1]["type"], "image");
    assert!(
        evs[1].get("data").is_none(),
        "binary has no `data`: {}",
        evs[1]
    );
    assert_eq!(
        evs[1]["data_b64"],
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    assert_eq!(evs[1]["content_type"], "image/png");

    let (evs, next) = parse_poll(&r.body).unwrap();
    assert_eq!(next, srv.cursor("c", 2));
    assert_eq!(evs[1].data, png);
}

both_flavors!(jsonp_wraps_the_poll_answer);
async fn jsonp_wraps_the_poll_answer(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    srv.post(
        "/ch/c",
        Some("text/plain"),
        "</script>\u{2028}<b>".as_bytes(),
    )
    .await;
    let r = srv.get("/ch/c/jsonp?since=0&callback=a.b").await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    r.head
        .expect("content-type", "application/javascript; charset=utf-8");
    r.head.expect("x-content-type-options", "nosniff");
    r.head.expect_no_cache();
    let text = r.text();
    assert!(text.starts_with("/**/a.b({\"events\":["), "{text}");
    assert!(text.ends_with("});"), "{text}");
    // Script-safe: nothing in the payload can end the call or a script element.
    assert!(!text.contains('<') && !text.contains('\u{2028}'), "{text}");
    let (cb, evs, next) = parse_jsonp(&r.body).unwrap();
    assert_eq!((cb.as_str(), next), ("a.b", srv.cursor("c", 1)));
    assert_eq!(evs[0].data, "</script>\u{2028}<b>".as_bytes());

    // Without a callback, the default one.
    let r = srv.get("/ch/c/jsonp?since=1&timeout=0").await;
    assert_eq!(
        r.text(),
        format!(
            "/**/tandemEvent({{\"events\":[],\"next\":\"{}\"}});",
            srv.cursor("c", 1)
        )
    );
}

both_flavors!(jsonp_refuses_bad_callbacks);
async fn jsonp_refuses_bad_callbacks(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let long = "a".repeat(65);
    for cb in [
        "alert(1)",
        long.as_str(),
        "a..b",
        "1a",
        "a.b;c",
        "a%0Ab",
        ".a",
    ] {
        let r = srv
            .get(&format!("/ch/c/jsonp?timeout=0&callback={cb}"))
            .await;
        r.expect_error(400, &["callback", "64"]);
        assert!(!r.text().contains("alert(1)("));
    }
    // 64 characters is still fine.
    let ok = "b".repeat(64);
    let r = srv
        .get(&format!("/ch/c/jsonp?timeout=0&callback={ok}"))
        .await;
    assert_eq!(r.head.status, 200);
    assert!(r.text().starts_with(&format!("/**/{ok}(")));
    // The iframe takes the same rule.
    srv.get("/ch/c/iframe?callback=alert(1)")
        .await
        .expect_error(400, &["callback"]);
}

both_flavors!(iframe_padding_and_script_safety);
async fn iframe_padding_and_script_safety(flavor: Flavor) {
    // Even with no configured padding, the page pads at least 1 KiB.
    let srv = flavor.start(config().stream_padding(0)).await;
    let mut page = srv.iframe("/ch/c/iframe?callback=cb", "cb").await;
    page.head.expect("content-type", "text/html; charset=utf-8");
    page.head.expect_no_cache();

    let evil = "</script><script>alert(1)</script><!-- \u{2028}";
    srv.post("/ch/c", Some("text/plain"), evil.as_bytes()).await;
    srv.post("/ch/c?type=two", Some("text/plain"), b"</SCRIPT >")
        .await;
    let evs = page.take(2).await;
    assert_eq!(ids(&evs), some_ids(1..=2));
    assert_eq!(evs[0].data, evil.as_bytes());
    assert_eq!(evs[1].kind, "two");
    assert_eq!(evs[1].data, b"</SCRIPT >");

    let raw = page.body.raw().to_vec();
    let first_script = find(&raw, b"<script").expect("a script element");
    assert!(
        first_script >= 1024,
        "padding before the first <script>: {first_script}"
    );
    // Exactly one `</script>` per script element: the payload closes nothing.
    let lower = raw.to_ascii_lowercase();
    assert_eq!(count(&lower, b"<script"), 2);
    assert_eq!(count(&lower, b"</script"), 2);
    // Between the opening call and `);</script>` there is no `<` at all.
    let text = String::from_utf8(raw).unwrap();
    for script in text.split("<script>parent.cb(").skip(1) {
        let inner = script.split(");</script>\n").next().unwrap();
        assert!(!inner.contains('<'), "{inner}");
    }
}

both_flavors!(channel_route_negotiates_by_accept);
async fn channel_route_negotiates_by_accept(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let cases = [
        (
            "text/event-stream",
            "text/event-stream; charset=utf-8",
            Transport::Sse,
        ),
        (
            "multipart/mixed",
            "multipart/mixed; boundary=tandem-b7d1e0",
            Transport::Mixed,
        ),
        (
            "multipart/x-mixed-replace",
            "multipart/x-mixed-replace; boundary=tandem-b7d1e0",
            Transport::Multipart,
        ),
    ];
    let mut open = Vec::new();
    for (accept, ct, t) in cases {
        let (head, body) = srv.open(Req::get("/ch/n").header("Accept", accept)).await;
        assert_eq!(head.status, 200);
        head.expect("content-type", ct);
        head.expect_no_cache();
        srv.wait_subscribers("n", t, 1).await;
        open.push(body);
    }
    // Anything else long-polls.
    for accept in [None, Some("*/*"), Some("application/json")] {
        let mut req = Req::get("/ch/n?timeout=0");
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let r = srv.send(req).await;
        assert_eq!(r.head.status, 200);
        r.head.expect("content-type", "application/json");
        assert_eq!(
            r.text(),
            format!("{{\"events\":[],\"next\":\"{}\"}}", srv.cursor("n", 0))
        );
    }
}

both_flavors!(every_subscribe_response_has_no_cache_headers);
async fn every_subscribe_response_has_no_cache_headers(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    for t in ["multipart", "mixed", "sse", "iframe"] {
        let (head, _body) = srv.open(Req::get(&format!("/ch/c/{t}"))).await;
        assert_eq!(head.status, 200, "{t}");
        head.expect_no_cache();
        head.expect("x-content-type-options", "nosniff");
    }
    for t in ["poll", "jsonp"] {
        let r = srv.get(&format!("/ch/c/{t}?timeout=0")).await;
        assert_eq!(r.head.status, 200, "{t}");
        r.head.expect_no_cache();
    }
}
