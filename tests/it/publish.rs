//! Publishing: raw bodies, urlencoded forms (with and without fields),
//! multipart/form-data with a file part; 202 with the id(s); the event is in
//! the router by the time the answer comes.

use tandem::__private::wire::{parse_poll, WireEvent};

use kit::*;

async fn all_events(srv: &Server, channel: &str) -> Vec<WireEvent> {
    let r = srv
        .get(&format!("/ch/{channel}/poll?since=0&timeout=0"))
        .await;
    parse_poll(&r.body).unwrap().0
}

both_flavors!(raw_body_keeps_its_content_type_and_answers_202_with_the_id);
async fn raw_body_keeps_its_content_type_and_answers_202_with_the_id(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let r = srv
        .post("/ch/c?type=chat", Some("application/json"), b"{\"a\":1}")
        .await;
    assert_eq!(r.head.status, 202);
    r.head.expect("content-type", "application/json");
    assert_eq!(r.text(), "{\"id\":1}");

    let r = srv
        .send(
            Req::post("/ch/c", b"note body")
                .header("Content-Type", "text/markdown")
                .header("Event-Type", "note"),
        )
        .await;
    assert_eq!(r.text(), "{\"id\":2}");

    // No content type at all: a plain `message`.
    let r = srv.post("/ch/c", None, b"plain").await;
    assert_eq!(r.text(), "{\"id\":3}");

    let evs = all_events(&srv, "c").await;
    assert_eq!(evs.len(), 3);
    assert_eq!(evs[0].kind, "chat");
    assert_eq!(evs[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(evs[0].data, b"{\"a\":1}");
    assert_eq!(evs[1].kind, "note");
    assert_eq!(evs[1].content_type.as_deref(), Some("text/markdown"));
    assert_eq!(evs[1].data, b"note body");
    assert_eq!(evs[2].kind, "message");
    assert_eq!(evs[2].content_type, None);
    assert_eq!(evs[2].data, b"plain");
}

both_flavors!(chunked_raw_body);
async fn chunked_raw_body(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let data = vec![b'z'; 2500];
    let r = srv.send(Req::post("/ch/c", &data).chunked()).await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    assert_eq!(all_events(&srv, "c").await[0].data, data);
}

both_flavors!(curl_d_style_form_is_the_whole_body);
async fn curl_d_style_form_is_the_whole_body(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    // `curl -d hello`: urlencoded content type, but no fields.
    let r = srv
        .post("/ch/c", Some("application/x-www-form-urlencoded"), b"hello")
        .await;
    assert_eq!((r.head.status, r.text().as_str()), (202, "{\"id\":1}"));
    let e = &all_events(&srv, "c").await[0];
    assert_eq!((e.kind.as_str(), text(e)), ("message", "hello"));

    // Still no fields: the body is taken as sent, even where `%` or `+` is no
    // form escape (`curl -d "save 50% today"`).
    for (i, body) in ["save 50% today", "100%", "a+b=c & %zz"].iter().enumerate() {
        let r = srv
            .post(
                "/ch/c",
                Some("application/x-www-form-urlencoded"),
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.head.status, 202, "{body:?}: {}", r.text());
        let e = &all_events(&srv, "c").await[i + 1];
        assert_eq!(text(e), *body);
    }
    // A body that names a field is a form, and a malformed one is refused.
    srv.post(
        "/ch/c",
        Some("application/x-www-form-urlencoded"),
        b"data=50%",
    )
    .await
    .expect_error(400, &["percent-encoding"]);
}

both_flavors!(form_with_type_and_data);
async fn form_with_type_and_data(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let r = srv
        .post(
            "/ch/c",
            Some("application/x-www-form-urlencoded"),
            b"type=chat&data=hi+there%21+%3Cb%3E",
        )
        .await;
    assert_eq!(r.text(), "{\"id\":1}");
    // `data` alone takes the default type (or `?type=`).
    let r = srv
        .post(
            "/ch/c?type=note",
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"data=just+data&extra=ignored",
        )
        .await;
    assert_eq!(r.text(), "{\"id\":2}");
    let evs = all_events(&srv, "c").await;
    assert_eq!(
        (evs[0].kind.as_str(), text(&evs[0])),
        ("chat", "hi there! <b>")
    );
    assert_eq!((evs[1].kind.as_str(), text(&evs[1])), ("note", "just data"));
}

both_flavors!(multipart_form_data_publishes_one_event_per_part);
async fn multipart_form_data_publishes_one_event_per_part(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let png: &[u8] = &[
        0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 0xff,
    ];
    let body = form_data(
        "XyZ123",
        &[
            ("chat", None, None, b"hello"),
            ("image", Some("dot.png"), Some("image/png"), png),
            ("note", None, Some("text/plain"), b"second\r\nline"),
        ],
    );
    let r = srv
        .post("/ch/c", Some("multipart/form-data; boundary=XyZ123"), &body)
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    r.head.expect("content-type", "application/json");
    assert_eq!(r.text(), "{\"ids\":[1,2,3]}");

    let evs = all_events(&srv, "c").await;
    assert_eq!(ids(&evs), some_ids(1..=3));
    assert_eq!((evs[0].kind.as_str(), text(&evs[0])), ("chat", "hello"));
    assert_eq!(
        evs[0].content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(evs[1].kind, "image");
    assert_eq!(evs[1].content_type.as_deref(), Some("image/png"));
    assert_eq!(evs[1].data, png);
    assert_eq!(
        (evs[2].kind.as_str(), text(&evs[2])),
        ("note", "second\r\nline")
    );

    // Streams get them in order too; binary survives SSE as base64.
    let got = sse.take(3).await;
    assert_eq!(got[1].data, png);
    assert_eq!(
        got[2].data, b"second\nline",
        "SSE splits lines; CRLF reads back as LF"
    );
}

both_flavors!(a_single_part_multipart_answers_ids);
async fn a_single_part_multipart_answers_ids(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let body = form_data("b", &[("x", None, None, b"1")]);
    let r = srv
        .post("/ch/c", Some("multipart/form-data; boundary=b"), &body)
        .await;
    assert_eq!(r.text(), "{\"ids\":[1]}");
}

both_flavors!(publish_answers_after_the_event_is_in_the_router);
async fn publish_answers_after_the_event_is_in_the_router(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    for i in 1..=30u64 {
        let id = srv.publish("c", &format!("n{i}")).await;
        assert_eq!(id, i);
        // timeout=0: the poll does not wait, so the event must be there already.
        let r = srv
            .get(&format!("/ch/c/poll?since={}&timeout=0", id - 1))
            .await;
        let (evs, next) = parse_poll(&r.body).unwrap();
        assert_eq!(evs.len(), 1, "round {i}: {}", r.text());
        assert_eq!((evs[0].id, next), (Some(id), srv.cursor("c", id)));
        assert_eq!(srv.hub.info("c").last_id, id);
    }
}

both_flavors!(ids_are_per_channel_and_keep_alive_works);
async fn ids_are_per_channel_and_keep_alive_works(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut conn = srv.connect().await;
    for (ch, want) in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)] {
        let r = conn
            .request(&Req::post(&format!("/ch/{ch}"), b"x").host(&srv.host()))
            .await;
        assert_eq!(r.json()["id"], want, "{ch}");
    }
}

both_flavors!(percent_encoded_channel_names);
async fn percent_encoded_channel_names(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let r = srv.post("/ch/room%3A1", Some("text/plain"), b"x").await;
    assert_eq!(r.head.status, 202);
    assert_eq!(srv.hub.info("room:1").last_id, 1);
    let r = srv.get("/ch/room:1/poll?since=0&timeout=0").await;
    assert_eq!(parse_poll(&r.body).unwrap().0.len(), 1);
}

both_flavors!(expect_100_continue_like_curl_sends_for_big_bodies);
async fn expect_100_continue_like_curl_sends_for_big_bodies(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let data = vec![b'd'; 4000];
    let mut conn = srv.connect().await;
    conn.send(
        format!(
            "POST /ch/c HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            srv.host(),
            data.len()
        )
        .as_bytes(),
    )
    .await;
    let interim = conn.read_head().await;
    assert_eq!(interim.status, 100, "{}", interim.raw);
    conn.send(&data).await;
    let r = conn.response("POST").await;
    assert_eq!((r.head.status, r.text().as_str()), (202, "{\"id\":1}"));
    assert_eq!(all_events(&srv, "c").await[0].data, data);
}

both_flavors!(large_events_cross_every_transport_intact);
async fn large_events_cross_every_transport_intact(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let mut sse = srv.sse("/ch/c/sse").await;
    let mut mp = srv.multipart("/ch/c/multipart").await;
    let mut fr = srv.iframe("/ch/c/iframe", "tandemEvent").await;
    // Just under the 64 KiB default, binary, then text with many lines.
    let bin: Vec<u8> = (0..65_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let txt = "line with </script> & \u{2028}\n".repeat(1500);
    srv.post("/ch/c", Some("application/octet-stream"), &bin)
        .await;
    srv.post("/ch/c", Some("text/plain; charset=utf-8"), txt.as_bytes())
        .await;
    for evs in [sse.take(2).await, mp.take(2).await, fr.take(2).await] {
        assert_eq!(evs[0].data, bin);
        // SSE carries a final newline as an empty last data line: same text.
        assert_eq!(evs[1].data, txt.as_bytes());
    }
    let evs = all_events(&srv, "c").await;
    assert_eq!(
        (evs[0].data.len(), evs[1].data.len()),
        (bin.len(), txt.len())
    );
}
