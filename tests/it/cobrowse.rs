//! Co-browsing over real TCP: help sessions, agents, the channel gate, phone
//! codes, the audit chain. The browser story is in tests/browser/cobrowse.rs.
//!
//! Serve only: `tandem::serve` mounts co-browsing; the kit's hyper flavor
//! serves nothing but channels.

use serde_json::{json, Value};

use kit::{config, Req, Response, Server, Setup};

const KEY: &str = "test-agent-key-0123456789";

fn cb_config() -> Setup {
    config().agent_key(Some(KEY.into()))
}

/// One browser: its cookies, sent with every request.
struct Client<'a> {
    server: &'a Server,
    cookies: Vec<(String, String)>,
}

impl<'a> Client<'a> {
    fn new(server: &'a Server) -> Client<'a> {
        Client {
            server,
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, mut req: Req) -> Response {
        if !self.cookies.is_empty() {
            req = req.header("Cookie", &self.cookie_header());
        }
        let r = self.server.send(req).await;
        for name in ["tandem_help", "tandem_agent", "tandem_portal"] {
            if let Some(v) = r.set_cookie(name) {
                self.cookies.retain(|(k, _)| k != name);
                if !v.is_empty() {
                    self.cookies.push((name.into(), v));
                }
            }
        }
        r
    }

    async fn get(&mut self, path: &str) -> Response {
        self.send(Req::get(path)).await
    }

    async fn post(&mut self, path: &str, body: Value) -> Response {
        self.send(
            Req::post(path, body.to_string().as_bytes()).header("Content-Type", "application/json"),
        )
        .await
    }

    /// Every event buffered on a channel (a long-poll from 0 that does not wait).
    async fn events(&mut self, channel: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/ch/{channel}/poll?since=0&timeout=0"))
            .await;
        assert_eq!(r.head.status, 200, "poll {channel}: {}", r.text());
        r.json()["events"].as_array().unwrap().clone()
    }

    async fn ask_for_help(&mut self, message: &str) -> String {
        let r = self
            .post(
                "/cobrowse/session",
                json!({"url": "/portal/cart", "title": "Your cart", "message": message}),
            )
            .await;
        assert_eq!(r.head.status, 201, "{}", r.text());
        let c = r.head.header("set-cookie").unwrap().to_string();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age="),
            "{c}"
        );
        assert!(
            !r.text().contains(&r.set_cookie("tandem_help").unwrap()),
            "no token in bodies"
        );
        r.json()["id"].as_str().unwrap().to_string()
    }

    async fn sign_in(&mut self, name: &str) {
        let r = self
            .post("/agent/signin", json!({"key": KEY, "name": name}))
            .await;
        assert_eq!(r.head.status, 200, "{}", r.text());
        let c = r.head.header("set-cookie").unwrap().to_string();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age="),
            "{c}"
        );
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn data(e: &Value) -> Value {
    serde_json::from_str(e["data"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_stranger_is_refused() {
    let s = Server::start(cb_config()).await;
    let mut customer = Client::new(&s);
    let id = customer.ask_for_help("hi").await;
    let mut stranger = Client::new(&s);
    for path in [
        format!("/ch/cb.{id}/poll?since=0&timeout=0"),
        format!("/ch/cb.{id}/info"),
        "/ch/cb.console/poll?since=0&timeout=0".to_string(),
        "/cobrowse/sessions".to_string(),
        "/cobrowse/canned".to_string(),
        "/agent/me".to_string(),
        "/cobrowse/session".to_string(),
    ] {
        let r = stranger.get(&path).await;
        assert!(
            r.head.status == 401 || r.head.status == 404,
            "{path}: {}",
            r.head.status
        );
        r.expect_error(r.head.status, &[]);
    }
    // A stream open goes through the lean connection path: gated there too.
    let r = stranger.get(&format!("/ch/cb.{id}/sse")).await;
    r.expect_error(401, &["ask for help", "agent"]);
    for (path, body) in [
        ("/cobrowse/join", json!({"session": id})),
        (
            "/cobrowse/event",
            json!({"session": id, "type": "chat", "text": "hi"}),
        ),
        ("/cobrowse/event", json!({"type": "push", "url": "/"})),
    ] {
        stranger.post(path, body).await.expect_error(401, &[]);
    }
    // Nobody publishes into co-browsing channels directly, not even the customer.
    for c in [&mut stranger, &mut customer] {
        let r = c
            .send(Req::post(
                &format!("/ch/cb.{id}?type=push"),
                b"{\"url\":\"/x\"}",
            ))
            .await;
        r.expect_error(403, &["server only"]);
    }
    // Other channels are untouched by the gate.
    assert_eq!(s.publish("plain", "x").await, 1);
}

#[tokio::test]
async fn a_customer_of_another_session_is_refused() {
    let s = Server::start(cb_config()).await;
    let mut alice = Client::new(&s);
    let a = alice.ask_for_help("a").await;
    let mut bob = Client::new(&s);
    let b = bob.ask_for_help("b").await;
    assert_ne!(a, b);
    assert!(a.len() >= 24, "ids carry at least 18 random bytes: {a}");
    bob.get(&format!("/ch/cb.{a}/poll?since=0&timeout=0"))
        .await
        .expect_error(403, &["not a participant"]);
    bob.get("/ch/cb.console/poll?since=0&timeout=0")
        .await
        .expect_error(401, &["agents only"]);
    bob.post(
        "/cobrowse/event",
        json!({"session": a, "type": "chat", "text": "not yours"}),
    )
    .await
    .expect_error(403, &["not a participant"]);
    // Bob's own channel works for Bob, and his chat landed there only.
    bob.post("/cobrowse/event", json!({"type": "chat", "text": "mine"}))
        .await;
    assert_eq!(types(&bob.events(&format!("cb.{b}")).await), ["chat"]);
    assert!(alice.events(&format!("cb.{a}")).await.is_empty());
    // A forged customer cookie (right id, wrong token) is refused.
    let mut forger = Client::new(&s);
    forger.cookies.push((
        "tandem_help".into(),
        format!("{a}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ));
    forger
        .get(&format!("/ch/cb.{a}/poll?since=0&timeout=0"))
        .await
        .expect_error(403, &[]);
    // Customers cannot act as agents.
    alice
        .post("/cobrowse/event", json!({"type": "push", "url": "/"}))
        .await
        .expect_error(403, &["sent by the agent"]);
    alice.get("/cobrowse/sessions").await.expect_error(401, &[]);
}

#[tokio::test]
async fn an_agent_not_signed_in_is_refused() {
    let s = Server::start(cb_config()).await;
    let mut customer = Client::new(&s);
    let id = customer.ask_for_help("help").await;
    let mut agent = Client::new(&s);
    agent
        .post(
            "/agent/signin",
            json!({"key": "wrong-key-wrong-key", "name": "ann"}),
        )
        .await
        .expect_error(401, &["wrong"]);
    agent
        .cookies
        .push(("tandem_agent".into(), "forged-token".into()));
    agent
        .get("/cobrowse/sessions")
        .await
        .expect_error(401, &["sign in"]);
    agent.cookies.clear();
    agent.sign_in("ann").await;
    assert_eq!(agent.get("/agent/me").await.json()["name"], "ann");
    // Signed in but not joined: the list yes, the session's channel no.
    let list = agent.get("/cobrowse/sessions").await.json();
    assert_eq!(list["sessions"][0]["id"], id.as_str());
    assert_eq!(list["sessions"][0]["message"], "help");
    agent
        .get(&format!("/ch/cb.{id}/poll?since=0&timeout=0"))
        .await
        .expect_error(403, &["join"]);
    agent
        .post(
            "/cobrowse/event",
            json!({"session": id, "type": "push", "url": "/"}),
        )
        .await
        .expect_error(403, &["join"]);
    // Signed out: refused again.
    agent.post("/agent/signout", json!({})).await;
    assert!(agent.cookies.is_empty());
    agent.get("/cobrowse/sessions").await.expect_error(401, &[]);
    // Too many failed sign-ins for a name: 429, naming the limit.
    let mut guesser = Client::new(&s);
    for _ in 0..5 {
        guesser
            .post(
                "/agent/signin",
                json!({"key": "guess-guess-guess", "name": "bob"}),
            )
            .await
            .expect_error(401, &[]);
    }
    guesser
        .post("/agent/signin", json!({"key": KEY, "name": "bob"}))
        .await
        .expect_error(429, &["max 5"]);
}

#[tokio::test]
async fn the_story_over_http() {
    let s = Server::start(cb_config()).await;
    let mut agent = Client::new(&s);
    agent.sign_in("ann").await;
    let mut customer = Client::new(&s);
    let id = customer.ask_for_help("where is my cart?").await;
    let ch = format!("cb.{id}");
    // The console list arrived on the console channel, pushed.
    let console = agent.events("cb.console").await;
    let last = data(console.last().unwrap());
    assert_eq!(last["sessions"][0]["state"], "waiting");
    assert_eq!(last["sessions"][0]["url"], "/portal/cart");
    // Join; a second agent joins too.
    let j = agent.post("/cobrowse/join", json!({"session": id})).await;
    assert_eq!(j.json()["channel"], ch.as_str());
    let mut bea = Client::new(&s);
    bea.sign_in("bea").await;
    bea.post("/cobrowse/join", json!({"session": id})).await;
    let mine = customer.get("/cobrowse/session").await.json();
    assert_eq!(mine["state"], "active");
    assert_eq!(mine["agents"], json!(["ann", "bea"]));
    // Push, pull, pulled, chat both ways with markup kept as text.
    for body in [
        json!({"session": id, "type": "push", "url": "/portal/help"}),
        json!({"session": id, "type": "pull"}),
        json!({"session": id, "type": "chat", "text": "<b>hi</b>"}),
    ] {
        let r = agent.post("/cobrowse/event", body).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
    }
    agent
        .post(
            "/cobrowse/event",
            json!({"session": id, "type": "push", "url": "https://evil.example/"}),
        )
        .await
        .expect_error(400, &["within this site"]);
    customer
        .post(
            "/cobrowse/event",
            json!({"type": "pulled", "url": "/portal/cart", "title": "Cart"}),
        )
        .await;
    customer
        .post("/cobrowse/event", json!({"type": "chat", "text": "thanks"}))
        .await;
    customer
        .post(
            "/cobrowse/event",
            json!({"type": "chat", "text": "x".repeat(2001)}),
        )
        .await
        .expect_error(400, &["max 2000"]);
    let evs = bea.events(&ch).await;
    assert_eq!(
        types(&evs),
        ["joined", "joined", "push", "pull", "chat", "pulled", "chat"]
    );
    assert_eq!(data(&evs[4])["text"], "<b>hi</b>");
    assert_eq!(evs[4]["from"], "agent:ann");
    assert_eq!(evs[6]["from"], "customer");
    assert_eq!(data(&evs[5])["url"], "/portal/cart");
    // Canned replies (built-in ones without --canned).
    let canned = agent.get("/cobrowse/canned").await.json();
    assert!(canned["replies"].as_array().unwrap().len() >= 3);
    // The customer ends: everyone sees it, the channel and the session are closed.
    let since = evs.last().unwrap()["id"].as_u64().unwrap();
    let poll = format!("/ch/{ch}/poll?since={since}&timeout=5");
    let (polled, r) = tokio::join!(bea.get(&poll), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        customer
            .post("/cobrowse/event", json!({"type": "end"}))
            .await
    });
    assert_eq!(r.head.status, 200);
    assert!(customer.cookies.is_empty(), "the help cookie is cleared");
    let evs = polled.json()["events"].as_array().unwrap().clone();
    assert_eq!(types(&evs), ["end"]);
    assert_eq!(data(&evs[0])["by"], "customer");
    agent
        .get(&format!("/ch/{ch}/poll?since=0&timeout=0"))
        .await
        .expect_error(403, &[]);
    agent
        .post(
            "/cobrowse/event",
            json!({"session": id, "type": "chat", "text": "hello?"}),
        )
        .await
        .expect_error(404, &["ended"]);
    let list = agent.get("/cobrowse/sessions").await.json();
    assert_eq!(list["sessions"], json!([]));
}

#[tokio::test]
async fn phone_codes_expire_once_used_and_limit_guesses() {
    let s = Server::start(cb_config()).await;
    let mut customer = Client::new(&s);
    let id = customer.ask_for_help("on the phone").await;
    let code = customer
        .post("/cobrowse/session/code", json!({}))
        .await
        .json()["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    let mut agent = Client::new(&s);
    agent.sign_in("ann").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    agent
        .post("/cobrowse/join", json!({"code": wrong}))
        .await
        .expect_error(404, &["6 digits"]);
    let r = agent.post("/cobrowse/join", json!({"code": code})).await;
    assert_eq!(r.json()["id"], id.as_str());
    // Spent once used.
    let mut bea = Client::new(&s);
    bea.sign_in("bea").await;
    bea.post("/cobrowse/join", json!({"code": code}))
        .await
        .expect_error(404, &[]);
    for _ in 0..4 {
        bea.post("/cobrowse/join", json!({"code": wrong})).await;
    }
    bea.post("/cobrowse/join", json!({"code": wrong}))
        .await
        .expect_error(429, &["max 5"]);
}

#[tokio::test]
async fn requests_are_checked_and_errors_are_json() {
    let s = Server::start(cb_config()).await;
    let mut c = Client::new(&s);
    c.send(
        Req::post("/cobrowse/session", b"url=/")
            .header("Content-Type", "application/x-www-form-urlencoded"),
    )
    .await
    .expect_error(415, &["application/json"]);
    c.post("/cobrowse/session", json!({"url": "javascript:alert(1)"}))
        .await
        .expect_error(400, &["within this site"]);
    c.post(
        "/cobrowse/session",
        json!({"url": "/", "message": "m".repeat(501)}),
    )
    .await
    .expect_error(400, &["max 500"]);
    c.send(
        Req::post("/cobrowse/session", b"{\"url\":\"/\"}")
            .header("Content-Type", "application/json")
            .header("Origin", "https://evil.example"),
    )
    .await
    .expect_error(403, &["origin"]);
    c.send(Req::new("DELETE", "/cobrowse/session"))
        .await
        .expect_error(405, &["allowed: GET, POST"]);
    c.get("/cobrowse/nope")
        .await
        .expect_error(404, &["no such route"]);
    // Asking twice gives the same session.
    let a = c.ask_for_help("x").await;
    let r = c.post("/cobrowse/session", json!({"url": "/"})).await;
    assert_eq!(r.json()["id"], a.as_str());
    assert!(
        r.json()["shared"].as_array().unwrap().len() >= 3,
        "the customer is told what is shared"
    );
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

#[tokio::test]
async fn the_audit_chain_detects_an_edited_or_removed_line() {
    let path = temp("audit.log");
    let s = Server::start(cb_config().audit_file(Some(path.clone()))).await;
    let mut agent = Client::new(&s);
    agent.sign_in("ann").await;
    let mut customer = Client::new(&s);
    let id = customer.ask_for_help("audit me").await;
    agent.post("/cobrowse/join", json!({"session": id})).await;
    agent
        .post(
            "/cobrowse/event",
            json!({"session": id, "type": "push", "url": "/portal/"}),
        )
        .await;
    customer
        .post(
            "/cobrowse/event",
            json!({"type": "chat", "text": "secret words"}),
        )
        .await;
    customer
        .post("/cobrowse/event", json!({"type": "end"}))
        .await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let events: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        events,
        ["signed_in", "created", "joined", "pushed", "chat", "ended"]
    );
    assert!(
        !text.contains("secret words"),
        "chat length only, by default"
    );
    assert!(lines[4].contains("\"length\":12"));
    let ok = tandem::cobrowse::verify_audit(&path).unwrap();
    assert_eq!(ok.lines, 6);
    // The binary's `tandem audit verify` agrees.
    let bin = env!("CARGO_BIN_EXE_tandem");
    let run = |p: &std::path::Path| {
        std::process::Command::new(bin)
            .args(["audit", "verify"])
            .arg(p)
            .output()
            .unwrap()
    };
    assert!(run(&path).status.success());
    // An edited line...
    let edited = temp("audit-edited.log");
    std::fs::write(
        &edited,
        text.replacen("\"url\":\"/portal/\"", "\"url\":\"/portal/x\"", 1),
    )
    .unwrap();
    let e = tandem::cobrowse::verify_audit(&edited).unwrap_err();
    assert!(e.to_string().starts_with("line 5:"), "{e}");
    assert_eq!(e.line(), Some(5));
    let out = run(&edited);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 5"));
    // ...and a removed one both show.
    let removed = temp("audit-removed.log");
    let mut kept = lines.clone();
    kept.remove(2);
    std::fs::write(&removed, kept.join("\n") + "\n").unwrap();
    assert!(tandem::cobrowse::verify_audit(&removed)
        .unwrap_err()
        .to_string()
        .starts_with("line 3:"));
    assert!(!run(&removed).status.success());
    // Several nodes' logs are checked together; one given twice is refused.
    let twice = std::process::Command::new(bin)
        .args(["audit", "verify"])
        .args([&path, &path])
        .output()
        .unwrap();
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("is the same chain as"));
    let none = std::process::Command::new(bin)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "no file is a usage error");
}

#[tokio::test]
async fn agent_accounts_from_a_file() {
    let path = temp("agents");
    let line = tandem::cobrowse::agent_line("bea", "battery staple").unwrap();
    assert!(line.starts_with("bea:$argon2id$"), "{line}");
    std::fs::write(&path, format!("# agents\n{line}\n")).unwrap();
    // `tandem agents add FILE NAME` reads the password from standard input.
    let mut add = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["agents", "add"])
        .arg(&path)
        .arg("ann")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = add.stdin.take().unwrap();
        stdin.write_all(b"correct horse\n").unwrap();
    }
    assert!(add.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("correct horse"), "only the hash is stored");
    assert_eq!(text.lines().filter(|l| l.contains("$argon2id$")).count(), 2);
    let s = Server::start(config().agents_file(Some(path))).await;
    let mut a = Client::new(&s);
    a.post(
        "/agent/signin",
        json!({"name": "ann", "password": "wrong horse"}),
    )
    .await
    .expect_error(401, &["wrong"]);
    a.post(
        "/agent/signin",
        json!({"name": "zed", "password": "correct horse"}),
    )
    .await
    .expect_error(401, &["wrong"]);
    a.post("/agent/signin", json!({"name": "ann", "key": KEY}))
        .await
        .expect_error(401, &["wrong"]);
    let r = a
        .post(
            "/agent/signin",
            json!({"name": "ann", "password": "correct horse"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(a.get("/agent/me").await.json()["name"], "ann");
    let mut b = Client::new(&s);
    let r = b
        .post(
            "/agent/signin",
            json!({"name": "bea", "password": "battery staple"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
}

#[tokio::test]
async fn the_agent_sees_the_customers_portal_session_without_its_cookie() {
    let s = Server::start(cb_config()).await;
    let mut customer = Client::new(&s);
    let r = customer
        .send(
            Req::post("/portal/cart/add", b"product=2")
                .header("Content-Type", "application/x-www-form-urlencoded"),
        )
        .await;
    assert_eq!(r.head.status, 303);
    let portal_cookie = customer
        .cookies
        .iter()
        .find(|(k, _)| k == "tandem_portal")
        .unwrap()
        .1
        .clone();
    assert!(customer
        .get("/portal/cart")
        .await
        .text()
        .contains("Reading lamp"));
    let id = customer.ask_for_help("my cart").await;
    let mut agent = Client::new(&s);
    agent.sign_in("ann").await;
    // Before joining the agent's view has its own (empty) cart.
    assert!(agent
        .get("/portal/cart")
        .await
        .text()
        .contains("id=\"empty\""));
    let j = agent.post("/cobrowse/join", json!({"session": id})).await;
    assert!(!j.text().contains(&portal_cookie));
    assert_eq!(j.json()["view_param"], "tandem_view");
    let page = agent.get(&format!("/portal/cart?tandem_view={id}")).await;
    assert!(page.text().contains("Reading lamp"), "{}", page.text());
    assert!(page.text().contains("shared-view"));
    assert!(agent.cookies.iter().all(|(_, v)| v != &portal_cookie));
    assert!(!page.head.raw.contains(&portal_cookie));
    // Without naming the session, the agent's own (empty) cart.
    assert!(agent
        .get("/portal/cart")
        .await
        .text()
        .contains("id=\"empty\""));
    // A stranger naming the session gets nothing.
    let mut stranger = Client::new(&s);
    assert!(stranger
        .get(&format!("/portal/cart?tandem_view={id}"))
        .await
        .text()
        .contains("id=\"empty\""));
}

async fn customer_with(s: &Server, product: &str, message: &str) -> String {
    let mut c = Client::new(s);
    let r = c
        .send(
            Req::post("/portal/cart/add", format!("product={product}").as_bytes())
                .header("Content-Type", "application/x-www-form-urlencoded"),
        )
        .await;
    assert_eq!(r.head.status, 303);
    c.ask_for_help(message).await
}

/// One agent helping two customers (two tabs of one browser, so one set of
/// cookies): each page of the view names its session, so a page of A's
/// view shows A's data after joining B, and a session the agent did not
/// join shows nothing of its customer.
#[tokio::test]
async fn one_agent_views_two_customers_side_by_side() {
    let s = Server::start(cb_config()).await;
    let a = customer_with(&s, "1", "kettle").await;
    let b = customer_with(&s, "3", "blanket").await;
    let c = customer_with(&s, "2", "lamp").await;
    let mut ann = Client::new(&s);
    ann.sign_in("ann").await;
    for id in [&a, &b] {
        let r = ann.post("/cobrowse/join", json!({"session": id})).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
    }
    for _ in 0..2 {
        let page = ann.get(&format!("/portal/cart?tandem_view={a}")).await;
        assert!(page.text().contains("Blue kettle"), "{}", page.text());
        assert!(!page.text().contains("Wool blanket"));
        let page = ann.get(&format!("/portal/cart?x=1&tandem_view={b}")).await;
        assert!(page.text().contains("Wool blanket"), "{}", page.text());
        assert!(!page.text().contains("Blue kettle"));
    }
    // A session ann did not join: nothing of its customer.
    let page = ann.get(&format!("/portal/cart?tandem_view={c}")).await;
    assert!(page.text().contains("id=\"empty\""), "{}", page.text());
    // Events name their session: a push into A reaches A only.
    let r = ann
        .post(
            "/cobrowse/event",
            json!({"session": a, "type": "push", "url": "/portal/help"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert!(types(&ann.events(&format!("cb.{a}")).await).contains(&"push"));
    assert!(!types(&ann.events(&format!("cb.{b}")).await).contains(&"push"));
}

#[tokio::test]
async fn canned_replies_come_from_a_file() {
    let path = temp("canned");
    std::fs::write(&path, "# replies\nHello there!\n\nOne moment, please.\n").unwrap();
    let s = Server::start(cb_config().canned_file(Some(path))).await;
    let mut agent = Client::new(&s);
    agent.get("/cobrowse/canned").await.expect_error(401, &[]);
    agent.sign_in("ann").await;
    assert_eq!(
        agent.get("/cobrowse/canned").await.json()["replies"],
        json!(["Hello there!", "One moment, please."])
    );
}

#[tokio::test]
async fn an_agent_ends_and_everyone_sees_it() {
    let s = Server::start(cb_config()).await;
    let mut customer = Client::new(&s);
    let id = customer.ask_for_help("x").await;
    let mut agent = Client::new(&s);
    agent.sign_in("ann").await;
    let since = agent
        .post("/cobrowse/join", json!({"session": id}))
        .await
        .json()["since"]
        .as_str()
        .unwrap()
        .to_string();
    let poll = format!("/ch/cb.{id}/poll?since={since}&timeout=5");
    let (polled, ended) = tokio::join!(customer.get(&poll), async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        agent
            .post("/cobrowse/event", json!({"session": id, "type": "end"}))
            .await
    });
    assert_eq!(ended.head.status, 200, "{}", ended.text());
    let evs = polled.json()["events"].as_array().unwrap().clone();
    assert_eq!(types(&evs), ["end"]);
    assert_eq!(data(&evs[0])["by"], "ann");
    // The customer's page then finds the session gone, and the cookie is cleared.
    customer
        .get("/cobrowse/session")
        .await
        .expect_error(404, &["ask for help"]);
    assert!(customer.cookies.is_empty());
}

/// The server keeps a session's chat, numbered, and gives it with the
/// session to the customer's next page and to an agent who joins (or comes
/// back) later.
#[tokio::test]
async fn the_chat_comes_with_the_session_after_a_page_load() {
    let s = Server::start(cb_config()).await;
    let mut customer = Client::new(&s);
    let id = customer.ask_for_help("hi").await;
    let mut ann = Client::new(&s);
    ann.sign_in("ann").await;
    let r = ann.post("/cobrowse/join", json!({"session": id})).await;
    assert_eq!(r.json()["chat"], json!([]));
    let r = customer
        .post("/cobrowse/event", json!({"type": "chat", "text": "hello"}))
        .await;
    assert_eq!(r.json()["n"], 1, "{}", r.text());
    let r = ann
        .post(
            "/cobrowse/event",
            json!({"session": id, "type": "chat", "text": "hi there"}),
        )
        .await;
    assert_eq!(r.json()["n"], 2, "{}", r.text());
    let events = customer.events(&format!("cb.{id}")).await;
    let chat: Vec<Value> = events
        .iter()
        .filter(|e| e["type"] == "chat")
        .map(data)
        .collect();
    assert_eq!(chat[0]["n"], 1);
    assert_eq!(chat[1]["n"], 2);
    let want = json!([
        {"n": 1, "by": "visitor 1", "from": "customer", "text": "hello"},
        {"n": 2, "by": "ann", "from": "agent:ann", "text": "hi there"},
    ]);
    let r = customer.get("/cobrowse/session").await;
    assert_eq!(r.json()["chat"], want);
    let r = ann.post("/cobrowse/join", json!({"session": id})).await;
    assert_eq!(r.json()["chat"], want);
}

/// A customer's name (the `label` the page sends) is used the same way in
/// the list and the chat; a customer not heard from for the presence
/// timeout shows as gone, in the list answer and on the console channel,
/// with nobody asking, and a ping brings them back.
#[tokio::test]
async fn names_and_presence() {
    let mut setup = cb_config();
    setup.cobrowse = setup
        .cobrowse
        .presence_timeout(std::time::Duration::from_secs(1));
    let s = Server::start(setup).await;
    let mut customer = Client::new(&s);
    let r = customer
        .post(
            "/cobrowse/session",
            json!({"url": "/portal/", "label": "  Dana Scully ", "message": "hi"}),
        )
        .await;
    assert_eq!(r.head.status, 201, "{}", r.text());
    assert_eq!(r.json()["ping_every"], 333);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let mut ann = Client::new(&s);
    ann.sign_in("ann").await;
    let list = ann.get("/cobrowse/sessions").await.json();
    assert_eq!(list["sessions"][0]["label"], "Dana Scully");
    assert_eq!(list["sessions"][0]["online"], true);
    ann.post("/cobrowse/join", json!({"session": id})).await;
    customer
        .post("/cobrowse/event", json!({"type": "chat", "text": "hello"}))
        .await;
    let chat: Vec<Value> = ann
        .events(&format!("cb.{id}"))
        .await
        .iter()
        .filter(|e| e["type"] == "chat")
        .map(data)
        .collect();
    assert_eq!(chat[0]["by"], "Dana Scully");
    let r = customer.get("/cobrowse/session").await;
    assert_eq!(r.json()["chat"][0]["by"], "Dana Scully");

    // Pings keep the customer online past the timeout.
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let r = customer.post("/cobrowse/session/ping", json!({})).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
    }
    let last_list = |events: Vec<Value>| {
        let last = events
            .iter()
            .rev()
            .find(|e| e["type"] == "sessions")
            .unwrap()
            .clone();
        data(&last)["sessions"][0]["online"].clone()
    };
    assert_eq!(last_list(ann.events("cb.console").await), true);
    // Silence: gone within 1.25 s (the timeout and a quarter), on the
    // channel first (nobody asked for the list).
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    assert_eq!(last_list(ann.events("cb.console").await), false);
    let list = ann.get("/cobrowse/sessions").await.json();
    assert_eq!(list["sessions"][0]["online"], false);
    // Back.
    customer.post("/cobrowse/session/ping", json!({})).await;
    assert_eq!(last_list(ann.events("cb.console").await), true);
    // A ping without a session: 404.
    Client::new(&s)
        .post("/cobrowse/session/ping", json!({}))
        .await
        .expect_error(404, &["no help session"]);
}
