//! Co-browsing across nodes (`--redis`): a customer on node 1 and an agent
//! on node 2 work together, phone codes and their limits hold across
//! nodes, an end on any node ends the session everywhere, a node replaced
//! by a fresh one on the same Redis loses no session, and sign-ins and
//! sessions expire as Redis keeps them. Three in-process nodes on a real
//! `redis-server` the test starts; the raw HTTP protocol with the kit's
//! client, one cookie jar per browser sent to whichever node.

use std::time::Duration;

use serde_json::{json, Value};

use kit::{config, wait_until, RedisCluster, RedisServer, Req, Response, Server, Setup, Upstream};

const KEY: &str = "test-agent-key-0123456789";

/// A node on `redis`, every node with the same agent key.
fn setup(redis: &RedisServer) -> Setup {
    config().agent_key(Some(KEY.into())).redis(&redis.url())
}

async fn node(redis: &RedisServer) -> Server {
    Server::start(setup(redis)).await
}

/// One browser: its cookies, sent with every request to any node.
#[derive(Default)]
struct Browser {
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn with_cookies(&self, mut req: Req) -> Req {
        if !self.cookies.is_empty() {
            req = req.header("Cookie", &self.cookie_header());
        }
        req
    }

    async fn send(&mut self, srv: &Server, req: Req) -> Response {
        let r = srv.send(self.with_cookies(req)).await;
        for (k, v) in &r.head.headers {
            if !k.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let Some((name, value)) = v.split(';').next().and_then(|c| c.split_once('=')) else {
                continue;
            };
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !v.contains("Max-Age=0") {
                self.cookies.push((name.into(), value.into()));
            }
        }
        r
    }

    /// A GET that leaves the cookies as they are.
    async fn peek(&self, srv: &Server, path: &str) -> Response {
        srv.send(self.with_cookies(Req::get(path))).await
    }

    async fn get(&mut self, srv: &Server, path: &str) -> Response {
        self.send(srv, Req::get(path)).await
    }

    async fn post(&mut self, srv: &Server, path: &str, body: Value) -> Response {
        let req =
            Req::post(path, body.to_string().as_bytes()).header("Content-Type", "application/json");
        self.send(srv, req).await
    }

    /// Every event buffered on a channel of `srv` (a long-poll from 0 that
    /// does not wait).
    async fn events(&mut self, srv: &Server, channel: &str) -> Vec<Value> {
        let r = self
            .get(srv, &format!("/ch/{channel}/poll?since=0&timeout=0"))
            .await;
        assert_eq!(r.head.status, 200, "poll {channel}: {}", r.text());
        r.json()["events"].as_array().unwrap().clone()
    }

    /// The events of a channel on `srv` once there are at least `n`.
    async fn events_by(&mut self, srv: &Server, channel: &str, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let evs = self.events(srv, channel).await;
            if evs.len() >= n {
                return evs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{channel}: {} events of {n}: {evs:?}",
                evs.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ask_for_help(&mut self, srv: &Server, message: &str) -> String {
        let r = self
            .post(
                srv,
                "/cobrowse/session",
                json!({"url": "/portal/cart", "title": "Your cart", "message": message}),
            )
            .await;
        assert_eq!(r.head.status, 201, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_string()
    }

    async fn sign_in(&mut self, srv: &Server, name: &str) {
        let r = self
            .post(srv, "/agent/signin", json!({"key": KEY, "name": name}))
            .await;
        assert_eq!(r.head.status, 200, "{}", r.text());
    }

    async fn code(&mut self, srv: &Server) -> String {
        let r = self.post(srv, "/cobrowse/session/code", json!({})).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
        r.json()["code"].as_str().unwrap().to_string()
    }
}

/// Events without their `time` (each node's copy stamps its own arrival).
fn without_time(evs: Vec<Value>) -> Vec<Value> {
    evs.into_iter()
        .map(|mut e| {
            e.as_object_mut().unwrap().remove("time");
            e
        })
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn data(e: &Value) -> Value {
    serde_json::from_str(e["data"].as_str().unwrap()).unwrap()
}

/// Whether the last console list on `srv` shows session `id`.
async fn console_shows(agent: &mut Browser, srv: &Server, id: &str) -> bool {
    let evs = agent.events(srv, "cb.console").await;
    evs.last().is_some_and(|e| {
        data(e)["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id)
    })
}

/// The whole story with the customer on node 1 and the agent on node 2
/// (and node 3 for the gate): the console list (answer and live stream),
/// joining from the list, chat both ways, push, pull and a click, then the
/// customer ends on node 1 and every node refuses the channel afterwards.
#[tokio::test]
async fn a_customer_on_one_node_and_an_agent_on_another_work_together() {
    let redis = RedisServer::start();
    let (n1, n2, n3) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let mut agent = Browser::default();
    agent.sign_in(&n2, "ann").await;
    // The agent's console on node 2 is open before the customer asks.
    let mut console = n2
        .sse_with(agent.with_cookies(Req::get("/ch/cb.console/sse")))
        .await;
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "where is my cart?").await;
    let ch = format!("cb.{id}");
    // The live list on node 2 shows the session asked for on node 1.
    loop {
        let e = console.next_event().await;
        let list: Value = serde_json::from_slice(&e.data).unwrap();
        if let Some(s) = list["sessions"].as_array().unwrap().first() {
            assert_eq!(s["id"], id.as_str());
            assert_eq!(s["state"], "waiting");
            assert_eq!(s["url"], "/portal/cart");
            assert_eq!(s["message"], "where is my cart?");
            break;
        }
    }
    let list = agent.get(&n2, "/cobrowse/sessions").await;
    assert_eq!(list.head.status, 200, "{}", list.text());
    // The nodes' notices to each other are no client's to read.
    for srv in [&n1, &n2] {
        agent
            .get(srv, "/ch/cb.sync/poll?since=0&timeout=0")
            .await
            .expect_error(403, &["nodes"]);
    }
    assert_eq!(list.json()["sessions"][0]["id"], id.as_str());
    // Join from the list, on node 2.
    let j = agent
        .post(&n2, "/cobrowse/join", json!({"session": id}))
        .await;
    assert_eq!(j.head.status, 200, "{}", j.text());
    assert_eq!(j.json()["channel"], ch.as_str());
    // Node 1 tells the customer who joined; node 2's console says active.
    let mine = customer.get(&n1, "/cobrowse/session").await.json();
    assert_eq!(mine["state"], "active");
    assert_eq!(mine["agents"], json!(["ann"]));
    loop {
        let e = console.next_event().await;
        let list: Value = serde_json::from_slice(&e.data).unwrap();
        if list["sessions"][0]["state"] == "active" {
            break;
        }
    }
    // Chat both ways, push, pull, pulled, a click: each from its node.
    for body in [
        json!({"session": id, "type": "chat", "text": "hello from node 2"}),
        json!({"session": id, "type": "push", "url": "/portal/help"}),
        json!({"session": id, "type": "pull"}),
    ] {
        let r = agent.post(&n2, "/cobrowse/event", body).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
    }
    for body in [
        json!({"type": "chat", "text": "hi from node 1"}),
        json!({"type": "pulled", "url": "/portal/help", "title": "Help"}),
        json!({"type": "click", "url": "/portal/cart", "title": "Cart", "text": "Cart"}),
    ] {
        let r = customer.post(&n1, "/cobrowse/event", body).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
    }
    let want = ["joined", "chat", "push", "pull", "chat", "pulled", "click"];
    // The same events in the same order on both nodes, from both sides.
    let on_1 = customer.events_by(&n1, &ch, want.len()).await;
    let on_2 = agent.events_by(&n2, &ch, want.len()).await;
    assert_eq!(types(&on_1), want);
    assert_eq!(types(&on_2), want);
    assert_eq!(without_time(on_1.clone()), without_time(on_2.clone()));
    assert_eq!(data(&on_1[1])["n"], 1);
    assert_eq!(data(&on_1[4])["n"], 2, "one chat sequence for both nodes");
    assert_eq!(on_1[4]["from"], "customer");
    assert_eq!(on_2[3]["from"], "agent:ann");
    // The kept chat, as the customer's next page on node 1 gets it.
    let mine = customer.get(&n1, "/cobrowse/session").await.json();
    assert_eq!(
        mine["chat"],
        json!([
            {"n": 1, "by": "ann", "from": "agent:ann", "text": "hello from node 2"},
            {"n": 2, "by": "visitor 1", "from": "customer", "text": "hi from node 1"},
        ])
    );
    // Node 3, where neither was before, lets both read the channel, and
    // gives the agent the list.
    assert_eq!(customer.events(&n3, &ch).await.len(), want.len());
    assert_eq!(agent.events(&n3, &ch).await.len(), want.len());
    let l3 = agent.get(&n3, "/cobrowse/sessions").await.json();
    assert_eq!(l3["sessions"][0]["agents"], json!(["ann"]));
    // A stream on node 3 hears the end said on node 1, then ends.
    let mut stream = n3
        .sse_with(agent.with_cookies(Req::get(&format!("/ch/{ch}/sse"))))
        .await;
    // And the customer's own stream on node 1, where the end is said.
    let mut own = n1
        .sse_with(customer.with_cookies(Req::get(&format!("/ch/{ch}/sse"))))
        .await;
    // The customer's cookie as it was (the end clears it in the browser).
    let old_customer = Browser {
        cookies: customer.cookies.clone(),
    };
    let r = customer
        .post(&n1, "/cobrowse/event", json!({"type": "end"}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let end = loop {
        let e = stream.next_event().await;
        if e.kind == "end" {
            break e;
        }
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&end.data).unwrap()["by"],
        "customer"
    );
    kit::within("the stream on node 3 ends", stream.finish()).await;
    let rest = kit::within("the stream on node 1 ends", own.finish()).await;
    assert!(
        rest.iter().any(|e| e.kind == "end"),
        "the stream on the node that ended it got the end: {rest:?}"
    );
    // Every node refuses the ended session's channel, to both, and its list is empty.
    for srv in [&n1, &n2, &n3] {
        wait_until("the end reached every node", || async {
            let r = agent
                .peek(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
                .await;
            r.head.status == 403
        })
        .await;
        let r = agent
            .post(
                srv,
                "/cobrowse/event",
                json!({"session": id, "type": "chat", "text": "hello?"}),
            )
            .await;
        r.expect_error(404, &["ended"]);
        old_customer
            .peek(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
            .await
            .expect_error(403, &["not a participant"]);
        old_customer
            .peek(srv, "/cobrowse/session")
            .await
            .expect_error(404, &[]);
        let l = agent.get(srv, "/cobrowse/sessions").await.json();
        assert_eq!(l["sessions"], json!([]));
    }
    assert!(!console_shows(&mut agent, &n2, &id).await);
}

/// A phone code shown on node 1 works once, on any node; wrong codes typed
/// on nodes 2 and 3 count together against the limit; the agent ends on
/// node 3 and every node refuses the session afterwards.
#[tokio::test]
async fn phone_codes_and_their_limit_hold_across_nodes() {
    let redis = RedisServer::start();
    let (n1, n2, n3) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "on the phone").await;
    let code = customer.code(&n1).await;
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    let mut bea = Browser::default();
    bea.sign_in(&n2, "bea").await;
    let r = bea.post(&n2, "/cobrowse/join", json!({"code": code})).await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], id.as_str());
    // Spent once used: on node 3, and on node 2 again.
    let mut carl = Browser::default();
    carl.sign_in(&n3, "carl").await;
    carl.post(&n3, "/cobrowse/join", json!({"code": code}))
        .await
        .expect_error(404, &["6 digits"]);
    carl.post(&n2, "/cobrowse/join", json!({"code": code}))
        .await
        .expect_error(404, &["6 digits"]);
    // A fresh code: the old one stays spent, the new one works on node 3.
    let code2 = customer.code(&n1).await;
    let wrong = ["000000", "000001", "000002"]
        .into_iter()
        .find(|w| *w != code2)
        .unwrap();
    // Carl typed 2 wrong codes above; 1 more on node 2, 2 on node 3: five.
    carl.post(&n2, "/cobrowse/join", json!({"code": wrong}))
        .await
        .expect_error(404, &[]);
    for _ in 0..2 {
        carl.post(&n3, "/cobrowse/join", json!({"code": wrong}))
            .await
            .expect_error(404, &[]);
    }
    // The sixth is refused on every node, even the right code.
    for srv in [&n2, &n3, &n1] {
        carl.post(srv, "/cobrowse/join", json!({"code": code2}))
            .await
            .expect_error(429, &["max 5"]);
    }
    // Another agent is not limited by carl's guesses.
    let mut dan = Browser::default();
    dan.sign_in(&n2, "dan").await;
    let r = dan
        .post(&n3, "/cobrowse/join", json!({"code": code2}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    // The agent (bea, joined on node 2) ends it on node 3; the customer's
    // stream on node 1 hears it.
    let ch = format!("cb.{id}");
    assert_eq!(
        types(&customer.events_by(&n1, &ch, 2).await),
        ["joined", "joined"]
    );
    let mut stream = n1
        .sse_with(customer.with_cookies(Req::get(&format!("/ch/{ch}/sse"))))
        .await;
    let r = bea
        .post(
            &n3,
            "/cobrowse/event",
            json!({"session": id, "type": "end"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.json()["ended"], true);
    let end = loop {
        let e = stream.next_event().await;
        if e.kind == "end" {
            break e;
        }
    };
    assert_eq!(
        serde_json::from_slice::<Value>(&end.data).unwrap()["by"],
        "bea"
    );
    kit::within("the stream on node 1 ends", stream.finish()).await;
    for srv in [&n1, &n2, &n3] {
        wait_until("the end reached every node", || async {
            let r = customer
                .peek(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
                .await;
            r.head.status == 403
        })
        .await;
        let r = dan
            .get(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
            .await;
        r.expect_error(403, &["not a participant"]);
    }
    let r = customer.get(&n2, "/cobrowse/session").await;
    r.expect_error(404, &["ask for help"]);
}

/// Presence is the customer's, whichever node hears them: a customer who
/// pings node 1 only shows online in node 2's list, and one who stops
/// shows gone there.
#[tokio::test]
async fn presence_is_heard_across_nodes() {
    let redis = RedisServer::start();
    let quick = || {
        let mut s = setup(&redis);
        s.cobrowse = s.cobrowse.presence_timeout(Duration::from_secs(1));
        s
    };
    let n1 = Server::start(quick()).await;
    let n2 = Server::start(quick()).await;
    let mut agent = Browser::default();
    agent.sign_in(&n2, "ann").await;
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "am I here?").await;
    let online = |list: Value| list["sessions"][0]["online"].as_bool();
    // Silent: gone, in node 2's list and on its console channel.
    wait_until("the silent customer shows gone on node 2", || async {
        online(agent.peek(&n2, "/cobrowse/sessions").await.json()) == Some(false)
    })
    .await;
    wait_until("the console channel on node 2 says gone", || async {
        let r = agent
            .peek(&n2, "/ch/cb.console/poll?since=0&timeout=0")
            .await
            .json();
        let evs = r["events"].as_array().unwrap().clone();
        evs.last().is_some_and(|e| {
            online(data(e)) == Some(false) && data(e)["sessions"][0]["id"] == id.as_str()
        })
    })
    .await;
    // Pinging node 1 only, for three presence timeouts: online on node 2 throughout.
    let r = customer
        .post(&n1, "/cobrowse/session/ping", json!({}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    wait_until("back online on node 2", || async {
        online(agent.peek(&n2, "/cobrowse/sessions").await.json()) == Some(true)
    })
    .await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        customer
            .post(&n1, "/cobrowse/session/ping", json!({}))
            .await;
        let l = agent.get(&n2, "/cobrowse/sessions").await.json();
        assert_eq!(online(l), Some(true), "node 2 hears node 1's pings");
    }
}

/// The demo portal stands for the customer's application: with `--redis`
/// its sessions are shared too, so the agent viewing the customer's cart
/// from node 2 or 3 sees what the customer put in it on node 1, and what
/// the agent adds there (the customer handed over nothing else) the
/// customer sees on any node.
#[tokio::test]
async fn the_agent_sees_the_customers_cart_from_another_node() {
    let redis = RedisServer::start();
    let (n1, n2, n3) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let form = |path: &str, body: &str| {
        Req::post(path, body.as_bytes()).header("Content-Type", "application/x-www-form-urlencoded")
    };
    let mut customer = Browser::default();
    let r = customer
        .send(&n1, form("/portal/cart/add", "product=2"))
        .await;
    assert_eq!(r.head.status, 303);
    assert!(customer.cookies.iter().any(|(k, _)| k == "tandem_portal"));
    let id = customer.ask_for_help(&n1, "my cart").await;
    let mut agent = Browser::default();
    agent.sign_in(&n2, "ann").await;
    let j = agent
        .post(&n2, "/cobrowse/join", json!({"session": id}))
        .await;
    assert_eq!(j.head.status, 200, "{}", j.text());
    for srv in [&n2, &n3] {
        let page = agent
            .get(srv, &format!("/portal/cart?tandem_view={id}"))
            .await;
        assert!(page.text().contains("Reading lamp"), "{}", page.text());
        assert!(page.text().contains("shared-view"));
    }
    let r = agent
        .send(
            &n3,
            form(&format!("/portal/cart/add?tandem_view={id}"), "product=1"),
        )
        .await;
    assert_eq!(r.head.status, 303);
    for srv in [&n1, &n2] {
        let page = customer.get(srv, "/portal/cart").await.text();
        assert!(
            page.contains("Reading lamp") && page.contains("Blue kettle"),
            "{page}"
        );
    }
    // The agent's own (empty) cart, on any node, without naming the session.
    assert!(agent
        .get(&n1, "/portal/cart")
        .await
        .text()
        .contains("id=\"empty\""));
}

/// Classroom mode across nodes: a class opened on node 1 is joined by code
/// on node 2 and by link on node 3; the presenter's pages reach both;
/// control handed on node 1 lets the follower steer from node 2 and stops
/// the presenter; wrong class codes on two nodes count together; a follower
/// who left on node 3 and, after the end on node 1, everyone is refused on
/// every node.
#[tokio::test]
async fn a_class_spans_the_nodes() {
    let redis = RedisServer::start();
    let (n1, n2, n3) = (node(&redis).await, node(&redis).await, node(&redis).await);
    let mut presenter = Browser::default();
    let r = presenter
        .post(
            &n1,
            "/cobrowse/class",
            json!({"url": "/portal/", "title": "Shop", "name": "Pat"}),
        )
        .await;
    assert_eq!(r.head.status, 201, "{}", r.text());
    let class = r.json();
    let id = class["id"].as_str().unwrap().to_string();
    let ch = class["channel"].as_str().unwrap().to_string();
    let code = class["code"].as_str().unwrap().to_string();
    let link = class["link"].as_str().unwrap().to_string();
    let key = link.split_once("#tandem-class=").unwrap().1.to_string();
    let mut amy = Browser::default();
    let r = amy
        .post(
            &n2,
            "/cobrowse/class/join",
            json!({"code": code, "name": "Amy"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.json()["me"], "f1");
    let mut bob = Browser::default();
    let r = bob
        .post(&n3, "/cobrowse/class/join", json!({"code": key}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.json()["me"], "f2");
    assert_eq!(r.json()["name"], "learner 2");
    assert_eq!(r.json()["count"], 2);
    // The presenter on node 1 sees both followers.
    let view = presenter.get(&n1, "/cobrowse/class").await.json();
    assert_eq!(
        view["followers"],
        json!([{"id": "f1", "name": "Amy"}, {"id": "f2", "name": "learner 2"}])
    );
    // The presenter steers from node 1; both followers' nodes carry it.
    let steer = |url: &str| json!({"type": "nav", "url": url, "title": "t", "text": ""});
    let r = presenter
        .post(&n1, "/cobrowse/class/event", steer("/portal/cart"))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let navs = |evs: &[Value]| {
        evs.iter()
            .filter(|e| e["type"] == "nav")
            .map(|e| data(e)["url"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(navs(&amy.events_by(&n2, &ch, 3).await), ["/portal/cart"]);
    assert_eq!(navs(&bob.events_by(&n3, &ch, 3).await), ["/portal/cart"]);
    // A follower loading a page on node 3 is told the class's current page.
    assert_eq!(
        bob.get(&n3, "/cobrowse/class").await.json()["url"],
        "/portal/cart"
    );
    // Control to Amy (node 1); Amy steers from node 2, the presenter may not.
    let r = presenter
        .post(&n1, "/cobrowse/class/control", json!({"to": "f1"}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let r = amy
        .post(&n2, "/cobrowse/class/event", steer("/portal/help"))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    presenter
        .post(&n3, "/cobrowse/class/event", steer("/portal/"))
        .await
        .expect_error(403, &["Amy"]);
    bob.post(&n3, "/cobrowse/class/event", steer("/portal/"))
        .await
        .expect_error(403, &["Amy"]);
    assert_eq!(
        navs(&presenter.events_by(&n1, &ch, 5).await),
        ["/portal/cart", "/portal/help"]
    );
    // Wrong codes on nodes 2 and 3 count together (10 a minute for all).
    let wrong = if code.replace(' ', "") == "000000000" {
        "000000001"
    } else {
        "000000000"
    };
    let mut guesser = Browser::default();
    for i in 0..10 {
        guesser
            .post(
                [&n2, &n3][i % 2],
                "/cobrowse/class/join",
                json!({"code": wrong}),
            )
            .await
            .expect_error(404, &[]);
    }
    guesser
        .post(&n1, "/cobrowse/class/join", json!({"code": code}))
        .await
        .expect_error(429, &["max 10"]);
    // Bob leaves on node 3: refused on every node.
    let bob_cookie = bob.cookies.clone();
    let r = bob.post(&n3, "/cobrowse/class/end", json!({})).await;
    assert_eq!(r.json()["left"], true);
    let gone_bob = Browser {
        cookies: bob_cookie,
    };
    for srv in [&n1, &n2, &n3] {
        wait_until("bob's leaving reached every node", || async {
            gone_bob
                .peek(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
                .await
                .head
                .status
                == 403
        })
        .await;
    }
    // The presenter ends on node 1: Amy is refused on every node.
    let r = presenter.post(&n1, "/cobrowse/class/end", json!({})).await;
    assert_eq!(r.json()["ended"], true, "{}", r.text());
    for srv in [&n1, &n2, &n3] {
        wait_until("the end reached every node", || async {
            amy.peek(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
                .await
                .head
                .status
                == 403
        })
        .await;
        amy.peek(srv, "/cobrowse/class")
            .await
            .expect_error(404, &[]);
    }
    // And nothing of the class is left in Redis.
    let key = format!("tandem:cb:class:{{{id}}}:h");
    assert_eq!(redis.command(&["EXISTS", &key]), ":0");
}

/// Redis is the store of record: should a node miss the notice of a change
/// (here the keys are deleted behind the nodes' backs, with no notice at
/// all), what it had cached is asked again within 10 s, and refused.
#[tokio::test]
async fn what_redis_no_longer_has_is_refused_within_ten_seconds() {
    let redis = RedisServer::start();
    let (n1, n2) = (node(&redis).await, node(&redis).await);
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "x").await;
    let mut agent = Browser::default();
    agent.sign_in(&n2, "ann").await;
    let r = agent
        .post(&n2, "/cobrowse/join", json!({"session": id}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let ch = format!("cb.{id}");
    assert_eq!(
        customer
            .peek(&n1, &format!("/ch/{ch}/poll?since=0&timeout=0"))
            .await
            .head
            .status,
        200
    );
    assert_eq!(agent.peek(&n2, "/agent/me").await.head.status, 200);
    let wipe =
        "for _,k in ipairs(redis.call('KEYS','tandem:cb:*')) do redis.call('DEL',k) end return 1";
    assert_eq!(redis.command(&["EVAL", wipe, "0"]), ":1");
    let started = std::time::Instant::now();
    wait_until_for(
        Duration::from_secs(15),
        "the customer refused on node 1",
        || async {
            customer
                .peek(&n1, &format!("/ch/{ch}/poll?since=0&timeout=0"))
                .await
                .head
                .status
                == 403
        },
    )
    .await;
    wait_until_for(
        Duration::from_secs(15),
        "the agent refused on node 2",
        || async { agent.peek(&n2, "/agent/me").await.head.status == 401 },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

/// `wait_until` with a longer bound.
async fn wait_until_for<F, Fut>(bound: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + bound;
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Co-browsing through the proxy (`--upstream`) across nodes: the customer
/// signed in to the application through node 1, the agent's view of the
/// customer's pages served by node 2 with the customer's session from the
/// jar in Redis; control handed over on node 1 lets the agent's POST
/// through on node 2, and taken back stops it.
#[tokio::test]
async fn the_agents_view_through_the_proxy_works_from_another_node() {
    let up = Upstream::start().await;
    let redis = RedisServer::start();
    let (n1, n2) = (
        Server::start(setup(&redis).proxy(&up.url())).await,
        Server::start(setup(&redis).proxy(&up.url())).await,
    );
    let form = |path: &str, body: &str| {
        Req::post(path, body.as_bytes()).header("Content-Type", "application/x-www-form-urlencoded")
    };
    let mut customer = Browser::default();
    let r = customer.send(&n1, form("/signin", "user=carol")).await;
    assert_eq!(r.head.status, 303, "{}", r.head.raw);
    let sid = customer
        .cookies
        .iter()
        .find(|(k, _)| k == "sid")
        .expect("the application's cookie")
        .1
        .clone();
    let r = customer
        .post(
            &n1,
            "/_tandem/cobrowse/session",
            json!({"url": "/account", "title": "Account"}),
        )
        .await;
    assert_eq!(r.head.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let mut agent = Browser::default();
    let r = agent
        .post(
            &n2,
            "/_tandem/agent/signin",
            json!({"key": KEY, "name": "ann"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let r = agent
        .post(&n2, "/_tandem/cobrowse/join", json!({"session": id}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.json()["can_control"], true);
    // The view on node 2: the customer's page with the customer's session.
    let page = agent.get(&n2, &format!("/account?tandem_view={id}")).await;
    assert_eq!(page.head.status, 200, "{}", page.head.raw);
    assert!(page.text().contains("Account of carol"), "{}", page.text());
    assert!(!page.head.raw.contains(&sid) && !page.text().contains(&sid));
    assert_eq!(
        up.last("/account").header("cookie"),
        Some(format!("sid={sid}").as_str())
    );
    // No control yet: refused on node 2.
    agent
        .send(&n2, form(&format!("/notes?tandem_view={id}"), "text=early"))
        .await
        .expect_error(403, &["control"]);
    // Handed over on node 1: node 2 lets it through.
    let r = customer
        .post(&n1, "/_tandem/cobrowse/control", json!({"granted": true}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = agent
        .send(
            &n2,
            form(&format!("/notes?tandem_view={id}"), "text=from+ann"),
        )
        .await;
    assert_eq!(r.head.status, 303, "{}", r.head.raw);
    assert_eq!(up.notes("carol"), vec!["from ann".to_string()]);
    assert!(customer
        .get(&n1, "/account")
        .await
        .text()
        .contains("from ann"));
    // The application rotates the session in answer to the view on node 2:
    // the customer's browser gets the new cookie from node 1, and both stay
    // signed in, on both nodes.
    let r = agent
        .send(&n2, Req::post(&format!("/rotate?tandem_view={id}"), b""))
        .await;
    assert_eq!(r.text(), "rotated for carol");
    assert!(!r.head.has("set-cookie"));
    assert_eq!(customer.get(&n1, "/whoami").await.text(), "carol");
    let new = customer
        .cookies
        .iter()
        .find(|(k, _)| k == "sid")
        .unwrap()
        .1
        .clone();
    assert_ne!(new, sid, "the customer's browser has the new cookie");
    assert_eq!(
        up.last("/whoami").header("cookie"),
        Some(format!("sid={new}").as_str())
    );
    assert_eq!(
        agent
            .get(&n2, &format!("/whoami?tandem_view={id}"))
            .await
            .text(),
        "carol"
    );
    // Taken back on node 1: refused on node 2 again.
    customer
        .post(&n1, "/_tandem/cobrowse/control", json!({"granted": false}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent
        .send(&n2, form(&format!("/notes?tandem_view={id}"), "text=again"))
        .await
        .expect_error(403, &["control"]);
    assert_eq!(up.notes("carol").len(), 1);
    // Redis keeps the jar cookie by cookie, by the session's id.
    let fields = redis.command(&["HLEN", &format!("tandem:cb:{{{id}}}:j")]);
    assert_ne!(fields, ":0", "the jar is in redis");
}

/// Without an agents file each node makes its own per-run key and shows
/// its operator a link with it; with `--redis`, the key of any live node
/// signs in on every node (the nodes share the keys' digests), and a wrong
/// key still does not.
#[tokio::test]
async fn a_per_run_key_signs_in_on_every_node() {
    use std::sync::Arc;
    use tandem::cobrowse::{Cobrowse, CobrowseConfig};
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let hub = tandem::Hub::with_redis(config().core, &redis.url())
            .await
            .unwrap();
        let cb = Cobrowse::new(hub.clone(), CobrowseConfig::default()).unwrap();
        let key = cb.printable_key().expect("a per-run key").to_string();
        let service = tandem::Service::new(hub).with_app(Arc::new(cb));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(kit::serve_hyper(
            listener,
            service,
            std::future::pending::<()>(),
        ));
        nodes.push((addr, key));
    }
    let sign_in = |addr: std::net::SocketAddr, key: String| async move {
        let body = json!({"key": key, "name": "ann"}).to_string();
        let req = Req::post("/agent/signin", body.as_bytes())
            .header("Content-Type", "application/json")
            .host(&addr.to_string());
        kit::Conn::connect(addr).await.request(&req).await
    };
    assert_ne!(nodes[0].1, nodes[1].1, "each node made its own");
    for (on, key_of) in [(0, 1), (1, 0), (0, 0)] {
        let key = nodes[key_of].1.clone();
        let addr = nodes[on].0;
        let r = wait_for_sign_in(|| sign_in(addr, key.clone())).await;
        assert_eq!(
            r.head.status,
            200,
            "node {on}, key of node {key_of}: {}",
            r.text()
        );
    }
    sign_in(nodes[1].0, "not-a-key-of-any-node-0123".into())
        .await
        .expect_error(401, &["wrong"]);
}

/// The first 200 within 5 s (a node says its key when it starts).
async fn wait_for_sign_in<F, Fut>(mut f: F) -> Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = f().await;
        if r.head.status == 200 || std::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The same on a three-master Redis Cluster: a session's keys share one
/// hash tag (one shard, so its scripts run there), the shared keys and
/// counters live wherever their slot is, and the story holds: the console
/// list, a code shown on node 1 redeemed on node 2, chat both ways, the
/// end refused everywhere, and node 1 replaced keeps the session.
#[tokio::test]
async fn co_browsing_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let setup = || {
        config()
            .agent_key(Some(KEY.into()))
            .redis_options(tandem::RedisOptions::cluster(cluster.urls()))
    };
    let mut n1 = Server::start(setup()).await;
    let n2 = Server::start(setup()).await;
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "on a cluster").await;
    for suffix in ["a", "c", "j"] {
        assert_eq!(
            cluster.keyslot(&format!("tandem:cb:{{{id}}}:s")),
            cluster.keyslot(&format!("tandem:cb:{{{id}}}:{suffix}")),
        );
    }
    let mut agent = Browser::default();
    agent.sign_in(&n2, "ann").await;
    let l = agent.get(&n2, "/cobrowse/sessions").await.json();
    assert_eq!(l["sessions"][0]["id"], id.as_str());
    let code = customer.code(&n1).await;
    let r = agent
        .post(&n2, "/cobrowse/join", json!({"code": code}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    agent
        .post(&n1, "/cobrowse/join", json!({"code": code}))
        .await
        .expect_error(404, &[]);
    let r = customer
        .post(
            &n1,
            "/cobrowse/event",
            json!({"type": "chat", "text": "one"}),
        )
        .await;
    assert_eq!(r.json()["n"], 1);
    let r = agent
        .post(
            &n2,
            "/cobrowse/event",
            json!({"session": id, "type": "chat", "text": "two"}),
        )
        .await;
    assert_eq!(r.json()["n"], 2);
    let ch = format!("cb.{id}");
    assert_eq!(
        types(&customer.events_by(&n1, &ch, 3).await),
        ["joined", "chat", "chat"]
    );
    n1.replace().await;
    let mine = customer.get(&n1, "/cobrowse/session").await;
    assert_eq!(mine.head.status, 200, "{}", mine.text());
    let mine = mine.json();
    assert_eq!(mine["agents"], json!(["ann"]));
    assert_eq!(mine["chat"].as_array().unwrap().len(), 2);
    let r = agent
        .post(
            &n1,
            "/cobrowse/event",
            json!({"session": id, "type": "end"}),
        )
        .await;
    assert_eq!(r.json()["ended"], true, "{}", r.text());
    for srv in [&n1, &n2] {
        wait_until("the end reached every node", || async {
            customer
                .peek(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
                .await
                .head
                .status
                == 403
        })
        .await;
    }
}

/// Failed sign-ins on different nodes count together.
#[tokio::test]
async fn failed_sign_ins_count_across_nodes() {
    let redis = RedisServer::start();
    let nodes = [node(&redis).await, node(&redis).await, node(&redis).await];
    let mut eve = Browser::default();
    for i in 0..5 {
        let r = eve
            .post(
                &nodes[i % 3],
                "/agent/signin",
                json!({"key": "wrong-key-0123456789", "name": "eve"}),
            )
            .await;
        r.expect_error(401, &[]);
    }
    for srv in &nodes {
        let r = eve
            .post(srv, "/agent/signin", json!({"key": KEY, "name": "eve"}))
            .await;
        r.expect_error(429, &["max 5 per name"]);
    }
    // Another name still signs in.
    eve.sign_in(&nodes[1], "ann").await;
}

/// Node 1 (where the customer asked, the agent signed in and joined, the
/// chat was said) is dropped and a fresh node takes its place on the same
/// Redis: the customer's cookie, the chat, the agent's sign-in and the
/// channel's events are all still there; a sign-out on one node ends the
/// sign-in on every node.
#[tokio::test]
async fn a_fresh_node_on_the_same_redis_loses_no_session() {
    let redis = RedisServer::start();
    let mut n1 = node(&redis).await;
    let n2 = node(&redis).await;
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "before the restart").await;
    let mut agent = Browser::default();
    agent.sign_in(&n1, "ann").await;
    let r = agent
        .post(&n1, "/cobrowse/join", json!({"session": id}))
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    customer
        .post(
            &n1,
            "/cobrowse/event",
            json!({"type": "chat", "text": "one"}),
        )
        .await;
    agent
        .post(
            &n1,
            "/cobrowse/event",
            json!({"session": id, "type": "chat", "text": "two"}),
        )
        .await;
    let ch = format!("cb.{id}");
    let before = customer.events(&n1, &ch).await;
    assert_eq!(types(&before), ["joined", "chat", "chat"]);
    // Node 1 goes; a new one (new hub, new co-browsing state) comes.
    n1.shutdown().await;
    drop(n1);
    let n1 = node(&redis).await;
    let mine = customer.get(&n1, "/cobrowse/session").await;
    assert_eq!(mine.head.status, 200, "{}", mine.text());
    let mine = mine.json();
    assert_eq!(mine["id"], id.as_str());
    assert_eq!(mine["agents"], json!(["ann"]));
    assert_eq!(
        mine["chat"],
        json!([
            {"n": 1, "by": "visitor 1", "from": "customer", "text": "one"},
            {"n": 2, "by": "ann", "from": "agent:ann", "text": "two"},
        ])
    );
    let me = agent.get(&n1, "/agent/me").await;
    assert_eq!(me.head.status, 200, "{}", me.text());
    assert_eq!(me.json()["name"], "ann");
    let list = agent.get(&n1, "/cobrowse/sessions").await.json();
    assert_eq!(list["sessions"][0]["id"], id.as_str());
    // The channel kept its events, and both go on speaking on the new node.
    assert_eq!(
        without_time(customer.events(&n1, &ch).await),
        without_time(before)
    );
    let r = agent
        .post(
            &n1,
            "/cobrowse/event",
            json!({"session": id, "type": "chat", "text": "three"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.json()["n"], 3);
    let r = customer
        .post(
            &n1,
            "/cobrowse/event",
            json!({"type": "chat", "text": "four"}),
        )
        .await;
    assert_eq!(r.json()["n"], 4);
    assert_eq!(customer.events_by(&n2, &ch, 5).await.len(), 5);
    // Signed out on node 2 (which had the sign-in cached): out everywhere.
    assert_eq!(agent.get(&n2, "/agent/me").await.head.status, 200);
    let cookies = agent.cookies.clone();
    let r = agent.post(&n2, "/agent/signout", json!({})).await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let mut stolen = Browser { cookies };
    for srv in [&n1, &n2] {
        wait_until("the sign-out reached every node", || async {
            stolen.peek(srv, "/agent/me").await.head.status == 401
        })
        .await;
        stolen
            .get(srv, &format!("/ch/{ch}/poll?since=0&timeout=0"))
            .await
            .expect_error(401, &[]);
    }
}

/// A node restarted on its own address as a new process would be (a new
/// hub, nothing in memory; `Server::replace`): the customer's page
/// on it carries on with the agent on the other node.
#[tokio::test]
async fn a_node_restarted_in_place_carries_on() {
    let redis = RedisServer::start();
    let mut n1 = node(&redis).await;
    let n2 = node(&redis).await;
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "restart me").await;
    let mut agent = Browser::default();
    agent.sign_in(&n2, "ann").await;
    agent
        .post(&n2, "/cobrowse/join", json!({"session": id}))
        .await;
    let old_hub = n1.hub.clone();
    n1.replace().await;
    assert_ne!(old_hub.node(), n1.hub.node(), "a new node");
    let mine = customer.get(&n1, "/cobrowse/session").await;
    assert_eq!(mine.head.status, 200, "{}", mine.text());
    assert_eq!(mine.json()["agents"], json!(["ann"]));
    let since = mine.json()["since"].as_str().unwrap().to_string();
    let mut stream = n1
        .sse_with(customer.with_cookies(Req::get(&format!("/ch/cb.{id}/sse?since={since}"))))
        .await;
    let r = agent
        .post(
            &n2,
            "/cobrowse/event",
            json!({"session": id, "type": "chat", "text": "still here?"}),
        )
        .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let e = stream.next_event().await;
    assert_eq!(e.kind, "chat");
    assert_eq!(
        serde_json::from_slice::<Value>(&e.data).unwrap()["text"],
        "still here?"
    );
    let r = customer
        .post(
            &n1,
            "/cobrowse/event",
            json!({"type": "chat", "text": "yes"}),
        )
        .await;
    assert_eq!(r.json()["n"], 2);
}

/// Sign-ins and sessions expire as Redis keeps them (the shortest
/// lifetimes allowed, a minute): after it, the nodes that had them cached
/// and a node started afterwards all refuse them.
#[tokio::test]
async fn sign_ins_and_sessions_expire_on_every_node() {
    let redis = RedisServer::start();
    let short = |redis: &RedisServer| {
        let mut s = setup(redis);
        s.cobrowse = s
            .cobrowse
            .agent_session_ttl(Duration::from_secs(60))
            .help_session_ttl(Duration::from_secs(60));
        s
    };
    let n1 = Server::start(short(&redis)).await;
    let n2 = Server::start(short(&redis)).await;
    let mut customer = Browser::default();
    let id = customer.ask_for_help(&n1, "soon gone").await;
    let mut agent = Browser::default();
    agent.sign_in(&n1, "ann").await;
    agent
        .post(&n2, "/cobrowse/join", json!({"session": id}))
        .await;
    assert_eq!(
        customer.get(&n2, "/cobrowse/session").await.head.status,
        200
    );
    // Redis keeps them with their lifetimes.
    let ttl: i64 = redis.command(&["PTTL", &format!("tandem:cb:{{{id}}}:s")])[1..]
        .parse()
        .unwrap();
    assert!((50_000..=60_000).contains(&ttl), "{ttl}");
    let ttl: i64 = redis.command(&["PTTL", &format!("tandem:cb:{{{id}}}:a")])[1..]
        .parse()
        .unwrap();
    assert!((50_000..=60_000).contains(&ttl), "{ttl}");
    tokio::time::sleep(Duration::from_millis(61_000)).await;
    let n3 = Server::start(short(&redis)).await;
    for srv in [&n1, &n2, &n3] {
        agent
            .get(srv, "/agent/me")
            .await
            .expect_error(401, &["agents only"]);
        customer
            .get(srv, &format!("/ch/cb.{id}/poll?since=0&timeout=0"))
            .await
            .expect_error(403, &[]);
    }
    let mut fresh = Browser::default();
    fresh.sign_in(&n3, "bea").await;
    let l = fresh.get(&n2, "/cobrowse/sessions").await.json();
    assert_eq!(l["sessions"], json!([]));
    customer
        .get(&n3, "/cobrowse/session")
        .await
        .expect_error(404, &[]);
}

/// While Redis cannot be reached, asking for help is refused with 503 and
/// `Retry-After`, never a session the other nodes cannot see.
#[tokio::test]
async fn without_redis_no_session_is_claimed() {
    let mut redis = RedisServer::start();
    let n1 = node(&redis).await;
    redis.stop();
    let mut customer = Browser::default();
    let r = customer
        .post(
            &n1,
            "/cobrowse/session",
            json!({"url": "/portal/", "title": "t"}),
        )
        .await;
    r.expect_error(503, &["not stored", "redis"]);
    assert_eq!(r.head.header("retry-after"), Some("1"));
    assert!(
        customer.cookies.is_empty(),
        "no cookie for a session not stored"
    );
}
