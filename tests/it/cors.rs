//! CORS: same origin only by default (a cross-site POST is refused, GETs get
//! no Access-Control headers); configured origins are echoed with credentials.

use kit::*;

const EVIL: &str = "http://evil.example";
const APP: &str = "http://app.example";

both_flavors!(default_refuses_cross_origin_publish);
async fn default_refuses_cross_origin_publish(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let r = srv
        .send(
            Req::post("/ch/c", b"forged")
                .header("Origin", EVIL)
                .header("Content-Type", "application/x-www-form-urlencoded"),
        )
        .await;
    r.expect_error(403, &["origin not allowed"]);
    assert!(!r.head.has("access-control-allow-origin"));
    assert_eq!(srv.info("c").await["last_id"], 0, "nothing published");

    // A foreign origin may read (a script tag, an <img>), but gets no CORS grant.
    let r = srv
        .send(Req::get("/ch/c/poll?timeout=0").header("Origin", EVIL))
        .await;
    assert_eq!(r.head.status, 200);
    assert!(!r.head.has("access-control-allow-origin"), "{}", r.head.raw);
    assert!(!r.head.has("access-control-allow-credentials"));
    let (head, _body) = srv.open(Req::get("/ch/c/sse").header("Origin", EVIL)).await;
    assert_eq!(head.status, 200);
    assert!(!head.has("access-control-allow-origin"), "{}", head.raw);

    // A preflight from a foreign origin is refused.
    let r = srv
        .send(
            Req::new("OPTIONS", "/ch/c")
                .header("Origin", EVIL)
                .header("Access-Control-Request-Method", "POST"),
        )
        .await;
    r.expect_error(403, &["origin not allowed"]);
}

both_flavors!(same_origin_and_originless_publishes_pass);
async fn same_origin_and_originless_publishes_pass(flavor: Flavor) {
    let srv = flavor.with_defaults().await;
    let own = format!("http://{}", srv.host());
    let r = srv
        .send(Req::post("/ch/c", b"same").header("Origin", &own))
        .await;
    assert_eq!(r.head.status, 202, "{}", r.text());
    assert!(!r.head.has("access-control-allow-origin"));
    let r = srv.post("/ch/c", None, b"curl").await;
    assert_eq!(r.head.status, 202);
    assert_eq!(srv.hub.info("c").last_id, 2);
}

both_flavors!(allowed_origins_get_preflight_and_credentials);
async fn allowed_origins_get_preflight_and_credentials(flavor: Flavor) {
    let srv = flavor.start(config().allow_origins(vec![APP.into()])).await;
    let r = srv
        .send(
            Req::new("OPTIONS", "/ch/c")
                .header("Origin", APP)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "content-type, event-type"),
        )
        .await;
    assert!(
        r.head.status == 204 || r.head.status == 200,
        "{}",
        r.head.raw
    );
    r.head.expect("access-control-allow-origin", APP);
    r.head.expect("access-control-allow-credentials", "true");
    let methods = r.head.header("access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = r
        .head
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(headers.contains("content-type") && headers.contains("event-type"));
    assert!(r.head.header("vary").is_some_and(|v| v.contains("Origin")));

    // The actual cross-origin publish and a cross-origin stream.
    let r = srv
        .send(
            Req::post("/ch/c", b"hi")
                .header("Origin", APP)
                .header("Content-Type", "text/plain"),
        )
        .await;
    assert_eq!(r.head.status, 202);
    r.head.expect("access-control-allow-origin", APP);
    r.head.expect("access-control-allow-credentials", "true");
    let mut s = srv
        .sse_with(Req::get("/ch/c/sse?since=0").header("Origin", APP))
        .await;
    s.head.expect("access-control-allow-origin", APP);
    s.head.expect("access-control-allow-credentials", "true");
    assert_eq!(text(&s.next_event().await), "hi");

    // Other origins are still refused.
    srv.send(Req::post("/ch/c", b"no").header("Origin", EVIL))
        .await
        .expect_error(403, &["origin not allowed"]);
    let r = srv
        .send(Req::get("/ch/c/poll?timeout=0").header("Origin", EVIL))
        .await;
    assert!(!r.head.has("access-control-allow-origin"));
    assert_eq!(srv.hub.info("c").last_id, 1);
}

both_flavors!(wildcard_echoes_the_origin_not_a_star);
async fn wildcard_echoes_the_origin_not_a_star(flavor: Flavor) {
    let srv = flavor.start(config().allow_origins(vec!["*".into()])).await;
    let r = srv
        .send(
            Req::new("OPTIONS", "/ch/c/sse")
                .header("Origin", EVIL)
                .header("Access-Control-Request-Method", "GET"),
        )
        .await;
    r.head.expect("access-control-allow-origin", EVIL);
    r.head.expect("access-control-allow-credentials", "true");
    let r = srv
        .send(Req::post("/ch/c", b"ok").header("Origin", EVIL))
        .await;
    assert_eq!(r.head.status, 202);
    r.head.expect("access-control-allow-origin", EVIL);
}
