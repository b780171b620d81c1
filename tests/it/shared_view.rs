//! Co-browsing through the proxy (`--upstream`): the customer's cookies on
//! the application are kept server-side per help session, the agent's view
//! of the customer's pages is served with them (and never sees one), only
//! GET and HEAD reach the application from the view until the customer
//! hands over control, and every request made with the customer's session
//! is audited. Against the kit's small application with users.

use serde_json::{json, Value};

use kit::{config, Req, Response, Server, Upstream};

const KEY: &str = "test-agent-key-0123456789";

/// A browser: every cookie it is given, sent back with every request.
struct Browser<'a> {
    server: &'a Server,
    cookies: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a Server) -> Browser<'a> {
        Browser {
            server,
            cookies: Vec::new(),
        }
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    async fn send(&mut self, mut req: Req) -> Response {
        if !self.cookies.is_empty() {
            let c = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header("Cookie", &c);
        }
        let r = self.server.send(req).await;
        for (k, v) in &r.head.headers {
            if !k.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let (name, value) = v.split(';').next().unwrap().split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !v.contains("Max-Age=0") {
                self.cookies.push((name.into(), value.into()));
            }
        }
        r
    }

    async fn get(&mut self, path: &str) -> Response {
        self.send(Req::get(path)).await
    }

    async fn json(&mut self, path: &str, body: Value) -> Response {
        self.send(
            Req::post(path, body.to_string().as_bytes()).header("Content-Type", "application/json"),
        )
        .await
    }

    async fn form(&mut self, path: &str, body: &str) -> Response {
        self.send(
            Req::post(path, body.as_bytes())
                .header("Content-Type", "application/x-www-form-urlencoded"),
        )
        .await
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-it-view-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// A customer signed in to the application as `user`, who asks for help;
/// an agent `ann` who joined. Returns the session id.
async fn helped<'a>(srv: &'a Server, user: &str) -> (Browser<'a>, Browser<'a>, String) {
    let mut customer = Browser::new(srv);
    let r = customer.form("/signin", &format!("user={user}")).await;
    assert_eq!(r.head.status, 303, "{}", r.head.raw);
    assert!(r.head.raw.contains("HttpOnly"), "{}", r.head.raw);
    assert!(customer.cookie("sid").is_some());
    assert!(customer
        .get("/account")
        .await
        .text()
        .contains(&format!("Account of {user}")));
    let r = customer
        .json(
            "/_tandem/cobrowse/session",
            json!({"url": "/account", "title": "Account", "message": format!("help {user}")}),
        )
        .await;
    assert_eq!(r.head.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let mut agent = Browser::new(srv);
    let r = agent
        .json("/_tandem/agent/signin", json!({"key": KEY, "name": "ann"}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let r = agent
        .json("/_tandem/cobrowse/join", json!({"session": id}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    (customer, agent, id)
}

#[tokio::test]
async fn the_agents_view_has_the_customers_session_and_never_its_cookies() {
    let up = Upstream::start().await;
    let audit = temp("audit.log");
    let srv = Server::start(
        config()
            .agent_key(Some(KEY.into()))
            .audit_file(Some(audit.clone()))
            .proxy(&up.url()),
    )
    .await;
    let (mut customer, mut agent, id) = helped(&srv, "carol").await;
    let sid = customer.cookie("sid").unwrap().to_string();

    // The view: the customer's page, with the customer's session.
    let page = agent.get(&format!("/account?tandem_view={id}")).await;
    assert_eq!(page.head.status, 200, "{}", page.head.raw);
    assert!(page.text().contains("Account of carol"), "{}", page.text());
    assert!(!page.head.has("set-cookie"));
    assert!(!page.head.raw.contains(&sid) && !page.text().contains(&sid));
    page.head.expect("cache-control", "no-store");
    // The agent's console may frame it; nothing else may.
    page.head.expect("x-frame-options", "SAMEORIGIN");
    page.head.expect(
        "content-security-policy",
        "script-src 'nonce-app'; frame-ancestors 'self'",
    );
    // The console drives the view from outside: no widget in it.
    assert!(!page.text().contains("/_tandem/cobrowse.js"));
    // The application saw the customer's cookie, none of tandem's, and not
    // the view parameter.
    let seen = up.last("/account");
    assert_eq!(seen.target, "/account");
    assert_eq!(seen.header("cookie"), Some(format!("sid={sid}").as_str()));
    for s in up.seen() {
        for c in s.all("cookie") {
            assert!(
                !c.contains("tandem_"),
                "tandem's cookie reached the application: {c}"
            );
        }
    }

    // The page's own requests (an image, a script, its data) name the view
    // in their Referer.
    let host = srv.host();
    let who = agent
        .send(Req::get("/whoami").header(
            "Referer",
            &format!("http://{host}/account?tandem_view={id}"),
        ))
        .await;
    assert_eq!(who.text(), "carol");
    // Without naming the view, the agent is the agent (not signed in).
    assert_eq!(agent.get("/whoami").await.text(), "nobody");
    // A Referer from another site names nothing.
    let who = agent
        .send(Req::get("/whoami").header(
            "Referer",
            &format!("http://evil.example/account?tandem_view={id}"),
        ))
        .await;
    assert_eq!(who.text(), "nobody");

    // Changing things needs the customer's leave.
    let seen_before = up.seen().len();
    let r = agent
        .form(&format!("/notes?tandem_view={id}"), "text=from+ann")
        .await;
    r.expect_error(403, &["POST refused", "control"]);
    assert_eq!(
        up.seen().len(),
        seen_before,
        "nothing reached the application"
    );
    assert!(up.notes("carol").is_empty());
    // The customer hands over control: everyone on the session hears it.
    let r = customer
        .json("/_tandem/cobrowse/control", json!({"granted": true}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let r = agent
        .form(&format!("/notes?tandem_view={id}"), "text=from+ann")
        .await;
    assert_eq!(r.head.status, 303, "{}", r.head.raw);
    // A redirect stays in the view.
    r.head
        .expect("location", &format!("/account?tandem_view={id}"));
    assert_eq!(up.notes("carol"), vec!["from ann".to_string()]);
    // The customer sees it in their own session.
    assert!(customer.get("/account").await.text().contains("from ann"));
    // And takes control back.
    customer
        .json("/_tandem/cobrowse/control", json!({"granted": false}))
        .await;
    agent
        .form(&format!("/notes?tandem_view={id}"), "text=again")
        .await
        .expect_error(403, &["control"]);
    assert_eq!(up.notes("carol").len(), 1);
    let events = agent
        .get(&format!("/_tandem/ch/cb.{id}/poll?since=0&timeout=0"))
        .await
        .json();
    let control: Vec<Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "control")
        .map(|e| {
            serde_json::from_str::<Value>(e["data"].as_str().unwrap()).unwrap()["granted"].clone()
        })
        .collect();
    assert_eq!(control, vec![json!(true), json!(false)]);

    // The audit log has every request made with the customer's session,
    // and the refusals, and no cookie value.
    let log = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let on_behalf: Vec<(String, String, u64)> = lines
        .iter()
        .filter(|l| l["event"] == "on_behalf")
        .map(|l| {
            (
                l["method"].as_str().unwrap().to_string(),
                l["target"].as_str().unwrap().to_string(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        on_behalf,
        vec![
            ("GET".into(), "/account".into(), 200),
            ("GET".into(), "/whoami".into(), 200),
            ("POST".into(), "/notes".into(), 303),
        ],
        "{log}"
    );
    let refused = lines
        .iter()
        .filter(|l| l["event"] == "on_behalf_refused")
        .count();
    assert_eq!(refused, 2, "{log}");
    for e in ["control_granted", "control_revoked"] {
        assert!(lines.iter().any(|l| l["event"] == e), "{e} in {log}");
    }
    assert!(!log.contains(&sid), "no cookie value in the audit log");
}

#[tokio::test]
async fn only_joined_agents_see_the_view_and_the_customer_keeps_one_session() {
    let up = Upstream::start().await;
    let srv = Server::start(config().agent_key(Some(KEY.into())).proxy(&up.url())).await;
    let (mut customer, mut agent, id) = helped(&srv, "dave").await;

    // Strangers and agents who did not join are refused, and reach nothing.
    let seen_before = up.seen().len();
    let mut stranger = Browser::new(&srv);
    stranger
        .get(&format!("/account?tandem_view={id}"))
        .await
        .expect_error(403, &["agent who joined"]);
    let mut bob = Browser::new(&srv);
    bob.json("/_tandem/agent/signin", json!({"key": KEY, "name": "bob"}))
        .await;
    bob.get(&format!("/account?tandem_view={id}"))
        .await
        .expect_error(403, &["join this help session first"]);
    assert_eq!(up.seen().len(), seen_before);

    // The application rotates the session in answer to the agent's view:
    // the agent's browser gets nothing, the customer's gets the new cookie
    // with its next answer, and both stay signed in.
    customer
        .json("/_tandem/cobrowse/control", json!({"granted": true}))
        .await;
    let old = customer.cookie("sid").unwrap().to_string();
    let r = agent
        .send(Req::post(&format!("/rotate?tandem_view={id}"), b""))
        .await;
    assert_eq!(r.text(), "rotated for dave");
    assert!(!r.head.has("set-cookie"));
    assert!(agent.cookie("sid").is_none());
    assert_eq!(
        agent.get(&format!("/whoami?tandem_view={id}")).await.text(),
        "dave"
    );
    let who = customer.get("/whoami").await;
    assert_eq!(who.text(), "dave", "the application saw the new session");
    let new = customer.cookie("sid").unwrap().to_string();
    assert_ne!(new, old, "the customer's browser has the new cookie");
    assert_eq!(
        up.last("/whoami").header("cookie"),
        Some(format!("sid={new}").as_str())
    );
    assert_eq!(customer.get("/whoami").await.text(), "dave");

    // The customer signs in as someone else: the view follows their browser.
    customer.form("/signin", "user=erin").await;
    assert_eq!(customer.get("/whoami").await.text(), "erin");
    assert_eq!(
        agent.get(&format!("/whoami?tandem_view={id}")).await.text(),
        "erin"
    );

    // Only the customer hands over control.
    agent
        .json("/_tandem/cobrowse/control", json!({"granted": true}))
        .await
        .expect_error(403, &["only the customer"]);
    customer
        .json("/_tandem/cobrowse/control", json!({"granted": "yes"}))
        .await
        .expect_error(400, &["granted"]);

    // Once the session ends, the view is gone.
    customer
        .json("/_tandem/cobrowse/event", json!({"type": "end"}))
        .await;
    agent
        .get(&format!("/account?tandem_view={id}"))
        .await
        .expect_error(403, &["ended"]);
}
