//! Classroom mode over real TCP: a presenter, twenty followers each holding
//! a long-poll on the class's channel, control handed to one of them and
//! taken back, the limits (followers, wrong codes), the gate, the audit
//! lines. The browser story is in tests/browser/classroom.rs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tandem::Transport;

use kit::{config, Req, Response, Server};

const FOLLOWERS: usize = 20;

/// One browser of the class: its class cookie.
#[derive(Clone, Default)]
struct Who {
    cookie: Option<String>,
}

async fn post(s: &Server, who: &Who, path: &str, body: Value) -> Response {
    let mut req =
        Req::post(path, body.to_string().as_bytes()).header("Content-Type", "application/json");
    if let Some(c) = &who.cookie {
        req = req.header("Cookie", c);
    }
    s.send(req).await
}

async fn get(s: &Server, who: &Who, path: &str) -> Response {
    let mut req = Req::get(path);
    if let Some(c) = &who.cookie {
        req = req.header("Cookie", c);
    }
    s.send(req).await
}

/// Opens a class at `/portal/`; the presenter and the answer.
async fn open_class(s: &Server, name: &str) -> (Who, Value) {
    let r = post(
        s,
        &Who::default(),
        "/cobrowse/class",
        json!({"url": "/portal/", "title": "Shop", "name": name}),
    )
    .await;
    assert_eq!(r.head.status, 201, "{}", r.text());
    let c = r.head.header("set-cookie").unwrap().to_string();
    assert!(
        c.starts_with("tandem_present=") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );
    let token = r.set_cookie("tandem_present").unwrap();
    let token = token.split_once('.').unwrap().1;
    assert!(!r.text().contains(token), "no token in bodies");
    (
        Who {
            cookie: Some(format!(
                "tandem_present={}",
                r.set_cookie("tandem_present").unwrap()
            )),
        },
        r.json(),
    )
}

/// A follower joins with `code`; the follower and the answer.
async fn join(s: &Server, code: &str, name: &str) -> (Who, Value) {
    let r = post(
        s,
        &Who::default(),
        "/cobrowse/class/join",
        json!({"code": code, "name": name}),
    )
    .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let v = r.set_cookie("tandem_follow").expect("a follower cookie");
    (
        Who {
            cookie: Some(format!("tandem_follow={v}")),
        },
        r.json(),
    )
}

fn data(e: &Value) -> Value {
    serde_json::from_str(e["data"].as_str().unwrap()).unwrap()
}

/// Long-polls `channel` as `client` from `since` on one connection of its
/// own, keeping the nav, click, control and end events, until one is a
/// `control` back to the presenter (`to: null`) or `end`, or it has `most`.
fn follow(
    s: &Server,
    who: &Who,
    channel: &str,
    since: &str,
    client: &str,
    most: usize,
) -> tokio::task::JoinHandle<Vec<(String, Value)>> {
    let (addr, host): (std::net::SocketAddr, String) = (s.host().parse().unwrap(), s.host());
    let cookie = who.cookie.clone().unwrap();
    let (channel, client, mut since) = (channel.to_string(), client.to_string(), since.to_string());
    let deadline = Instant::now() + Duration::from_secs(60);
    tokio::spawn(async move {
        let mut conn = kit::Conn::connect(addr).await;
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "{client}: only {seen:?}");
            let req = Req::get(&format!(
                "/ch/{channel}/poll?since={since}&timeout=4&client={client}"
            ))
            .header("Cookie", &cookie)
            .host(&host);
            let r = conn.request(&req).await;
            assert_eq!(r.head.status, 200, "{client}: {}", r.text());
            let v = r.json();
            for e in v["events"].as_array().unwrap() {
                let kind = e["type"].as_str().unwrap().to_string();
                if ["nav", "click", "control", "end"].contains(&kind.as_str()) {
                    let d = data(e);
                    let last = kind == "end" || (kind == "control" && d["to"].is_null());
                    seen.push((kind, d));
                    if last || seen.len() == most {
                        return seen;
                    }
                }
            }
            since = v["next"].as_str().unwrap().to_string();
        }
    })
}

fn steer(kind: &str, url: &str) -> Value {
    json!({"type": kind, "url": url, "title": "t", "text": "a link"})
}

#[tokio::test]
async fn twenty_followers_on_long_poll_follow_the_presenter_and_whom_it_hands_control() {
    let audit = std::env::temp_dir().join(format!("tandem-it-class-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&audit);
    let s = Server::start(config().audit_file(Some(audit.clone()))).await;
    let (presenter, class) = open_class(&s, "Ms Lee").await;
    let code = class["code"].as_str().unwrap().to_string();
    assert!(
        code.len() == 11
            && code
                .split(' ')
                .all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())),
        "a code shown in three groups of three digits: {code}"
    );
    assert!(class["link"]
        .as_str()
        .unwrap()
        .starts_with("/portal/#tandem-class="));
    assert_eq!(class["role"], "presenter");
    let channel = class["channel"].as_str().unwrap().to_string();
    assert_eq!(
        channel,
        format!("cb.class.{}", class["id"].as_str().unwrap())
    );

    // Twenty followers join by the code (typed with dashes by some) and
    // each holds a long-poll on the class's channel.
    let mut followers = Vec::new();
    for i in 1..=FOLLOWERS {
        let typed = if i % 2 == 0 {
            code.replace(' ', "-")
        } else {
            code.clone()
        };
        let (who, v) = join(&s, &typed, &format!("learner {i}")).await;
        assert_eq!(v["role"], "follower");
        assert_eq!(v["me"], format!("f{i}"));
        assert_eq!(v["url"], "/portal/");
        assert_eq!(v["presenter"], "Ms Lee");
        assert!(
            v.get("code").is_none() && v.get("followers").is_none(),
            "{v}"
        );
        followers.push((who, v));
    }
    let polls: Vec<_> = followers
        .iter()
        .map(|(who, v)| {
            let me = v["me"].as_str().unwrap();
            follow(
                &s,
                who,
                &channel,
                v["since"].as_str().unwrap(),
                &format!("follower:{me}"),
                99,
            )
        })
        .collect();
    s.wait_subscribers(&channel, Transport::Poll, FOLLOWERS)
        .await;
    // The presenter listens too (to hear follower 3 while it leads).
    let since = get(&s, &presenter, "/cobrowse/class").await.json()["since"]
        .as_str()
        .unwrap()
        .to_string();
    let mine = follow(&s, &presenter, &channel, &since, "presenter", 1);
    s.wait_subscribers(&channel, Transport::Poll, FOLLOWERS + 1)
        .await;

    // The presenter moves and clicks a link.
    let r = post(
        &s,
        &presenter,
        "/cobrowse/class/event",
        steer("nav", "/portal/products/2"),
    )
    .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let r = post(
        &s,
        &presenter,
        "/cobrowse/class/event",
        steer("click", "/portal/help"),
    )
    .await;
    assert_eq!(r.head.status, 200, "{}", r.text());

    // A follower does not steer.
    let f3 = followers[2].0.clone();
    let f5 = followers[4].0.clone();
    let r = post(
        &s,
        &f5,
        "/cobrowse/class/event",
        steer("nav", "/portal/cart"),
    )
    .await;
    r.expect_error(403, &["only the presenter (or who holds control) steers"]);
    let r = post(&s, &f5, "/cobrowse/class/control", json!({"to": "f5"})).await;
    r.expect_error(403, &["only the presenter"]);
    let r = post(
        &s,
        &presenter,
        "/cobrowse/class/event",
        steer("nav", "//evil.example/"),
    )
    .await;
    r.expect_error(400, &["path within this site"]);

    // The presenter hands control to follower 3, whose page leads everyone.
    let r = post(
        &s,
        &presenter,
        "/cobrowse/class/control",
        json!({"to": "f3"}),
    )
    .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"to": "f3", "name": "learner 3"}));
    let r = post(
        &s,
        &f3,
        "/cobrowse/class/event",
        steer("nav", "/portal/cart"),
    )
    .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let r = post(
        &s,
        &presenter,
        "/cobrowse/class/event",
        steer("nav", "/portal/"),
    )
    .await;
    r.expect_error(403, &["learner 3 does now"]);
    let r = post(&s, &f5, "/cobrowse/class/event", steer("nav", "/portal/")).await;
    r.expect_error(403, &["only the presenter"]);
    // A follower who loads a page now is sent to the class's page.
    let late = get(&s, &followers[6].0, "/cobrowse/class").await.json();
    assert_eq!(late["url"], "/portal/cart");
    assert_eq!(late["control"], json!({"to": "f3", "name": "learner 3"}));

    // The presenter takes control back; follower 3 no longer steers.
    let r = post(
        &s,
        &presenter,
        "/cobrowse/class/control",
        json!({"to": null}),
    )
    .await;
    assert_eq!(r.json(), json!({"to": null, "name": "Ms Lee"}));
    let r = post(
        &s,
        &f3,
        "/cobrowse/class/event",
        steer("nav", "/portal/help"),
    )
    .await;
    r.expect_error(403, &["only the presenter (or who holds control) steers"]);

    // Every follower heard it all, in order; follower 3 not its own nav.
    let want = |me: &str| {
        let mut v = vec![
            ("nav", "/portal/products/2", "Ms Lee"),
            ("click", "/portal/help", "Ms Lee"),
            ("control", "", "learner 3"),
            ("nav", "/portal/cart", "learner 3"),
            ("control", "", "Ms Lee"),
        ];
        if me == "f3" {
            v.remove(3);
        }
        v
    };
    for (i, poll) in polls.into_iter().enumerate() {
        let me = format!("f{}", i + 1);
        let got = poll.await.unwrap();
        let got: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|(k, d)| {
                let who = if k == "control" { &d["name"] } else { &d["by"] };
                (
                    k.as_str(),
                    d["url"].as_str().unwrap_or(""),
                    who.as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want(&me), "follower {me}");
    }
    // The presenter heard follower 3's page (not its own events).
    let heard = mine.await.unwrap();
    assert_eq!(heard[0].0, "nav");
    assert_eq!(heard[0].1["url"], "/portal/cart");
    assert_eq!(heard[0].1["by"], "learner 3");

    // The presenter's view lists the followers, to hand control.
    let v = get(&s, &presenter, "/cobrowse/class").await.json();
    assert_eq!(v["count"], FOLLOWERS);
    assert_eq!(v["followers"][2], json!({"id": "f3", "name": "learner 3"}));

    // The gate: a stranger, a member of another class, a publisher.
    let poll = format!("/ch/{channel}/poll?since=0&timeout=0");
    get(&s, &Who::default(), &poll)
        .await
        .expect_error(401, &["join the class"]);
    let (other, other_class) = open_class(&s, "Mr Roe").await;
    get(&s, &other, &poll)
        .await
        .expect_error(403, &["not a member of this class"]);
    get(
        &s,
        &other,
        &format!(
            "/ch/{}/poll?since=0&timeout=0",
            other_class["channel"].as_str().unwrap()
        ),
    )
    .await;
    let r = s
        .send(
            Req::post(&format!("/ch/{channel}"), b"spoof")
                .header("Cookie", presenter.cookie.as_deref().unwrap()),
        )
        .await;
    r.expect_error(403, &["written by the server only"]);
    assert_eq!(get(&s, &f5, &poll).await.head.status, 200);

    // A follower leaves; the presenter ends the class: the rest hear it,
    // the code and the cookies open nothing any more.
    let r = post(&s, &f5, "/cobrowse/class/end", json!({})).await;
    assert_eq!(r.json(), json!({"left": true}));
    assert_eq!(r.set_cookie("tandem_follow").as_deref(), Some(""));
    let since = get(&s, &followers[0].0, "/cobrowse/class").await.json()["since"]
        .as_str()
        .unwrap()
        .to_string();
    let last = follow(&s, &followers[0].0, &channel, &since, "follower:f1", 99);
    s.wait_subscribers(&channel, Transport::Poll, 1).await;
    let r = post(&s, &presenter, "/cobrowse/class/end", json!({})).await;
    assert_eq!(r.json(), json!({"ended": true}));
    let heard = last.await.unwrap();
    assert_eq!(heard.last().unwrap().0, "end");
    assert_eq!(heard.last().unwrap().1["by"], "Ms Lee");
    get(&s, &followers[1].0, "/cobrowse/class")
        .await
        .expect_error(404, &["no class"]);
    get(&s, &followers[1].0, &poll)
        .await
        .expect_error(403, &["not a member"]);
    let r = post(
        &s,
        &Who::default(),
        "/cobrowse/class/join",
        json!({"code": code}),
    )
    .await;
    r.expect_error(404, &["no class has this code"]);

    // The audit log has the class's story.
    drop(s);
    let log = std::fs::read_to_string(&audit).unwrap();
    let events: Vec<String> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for e in [
        "class_opened",
        "class_joined",
        "control_handed",
        "class_clicked",
        "class_left",
        "class_ended",
    ] {
        assert!(events.iter().any(|x| x == e), "no {e} in {events:?}");
    }
    assert_eq!(
        events.iter().filter(|x| *x == "class_joined").count(),
        FOLLOWERS
    );
    assert_eq!(events.iter().filter(|x| *x == "control_handed").count(), 2);
    let _ = std::fs::remove_file(&audit);
}

#[tokio::test]
async fn followers_and_wrong_codes_are_limited() {
    let mut setup = config();
    setup.cobrowse = setup.cobrowse.max_class_followers(3);
    let s = Server::start(setup).await;
    let (_, a) = open_class(&s, "A").await;
    let code = a["code"].as_str().unwrap();
    for i in 0..3 {
        join(&s, code, &format!("learner {i}")).await;
    }
    let r = post(
        &s,
        &Who::default(),
        "/cobrowse/class/join",
        json!({"code": code}),
    )
    .await;
    r.expect_error(429, &["this class is full (max 3 followers)"]);

    // Wrong codes: ten a minute on the whole server, then even a right
    // one waits; the link's key (unguessable) still opens the class.
    let (_, b) = open_class(&s, "B").await;
    let code = b["code"].as_str().unwrap().replace(' ', "");
    let wrong = if code == "000000000" {
        "000000001"
    } else {
        "000000000"
    };
    for _ in 0..10 {
        let r = post(
            &s,
            &Who::default(),
            "/cobrowse/class/join",
            json!({"code": wrong}),
        )
        .await;
        r.expect_error(404, &["no class has this code"]);
    }
    let r = post(
        &s,
        &Who::default(),
        "/cobrowse/class/join",
        json!({"code": code}),
    )
    .await;
    r.expect_error(429, &["too many wrong class codes", "max 10 a minute"]);
    let key = b["link"]
        .as_str()
        .unwrap()
        .split("tandem-class=")
        .nth(1)
        .unwrap();
    let (_, v) = join(&s, key, "by the link").await;
    assert_eq!(v["id"], b["id"]);

    // Checked requests: a class needs a path within the site; nobody
    // without a class cookie gets one.
    let r = post(
        &s,
        &Who::default(),
        "/cobrowse/class",
        json!({"url": "https://evil.example/"}),
    )
    .await;
    r.expect_error(400, &["path within this site"]);
    get(&s, &Who::default(), "/cobrowse/class")
        .await
        .expect_error(404, &["no class"]);
    post(
        &s,
        &Who::default(),
        "/cobrowse/class/event",
        steer("nav", "/"),
    )
    .await
    .expect_error(401, &["open or join a class first"]);
    let r = s.send(Req::new("DELETE", "/cobrowse/class")).await;
    r.expect_error(405, &["allowed: GET, POST"]);
}

#[tokio::test]
async fn a_signed_in_agent_presents_under_its_name() {
    let key = "test-agent-key-0123456789";
    let s = Server::start(config().agent_key(Some(key.into()))).await;
    let r = post(
        &s,
        &Who::default(),
        "/agent/signin",
        json!({"key": key, "name": "ann"}),
    )
    .await;
    assert_eq!(r.head.status, 200, "{}", r.text());
    let agent = Who {
        cookie: Some(format!(
            "tandem_agent={}",
            r.set_cookie("tandem_agent").unwrap()
        )),
    };
    // The name in the body is the agent's own, whatever the page says.
    let r = post(
        &s,
        &agent,
        "/cobrowse/class",
        json!({"url": "/portal/", "name": "someone else"}),
    )
    .await;
    assert_eq!(r.head.status, 201, "{}", r.text());
    assert_eq!(r.json()["presenter"], "ann");
    let presenter = Who {
        cookie: Some(format!(
            "tandem_present={}",
            r.set_cookie("tandem_present").unwrap()
        )),
    };
    // Opening twice gives the same class.
    let again = post(
        &s,
        &presenter,
        "/cobrowse/class",
        json!({"url": "/portal/"}),
    )
    .await;
    assert_eq!(again.head.status, 200);
    assert_eq!(again.json()["id"], r.json()["id"]);
    // The agent's sign-in alone does not make it a member of the class.
    let channel = r.json()["channel"].as_str().unwrap().to_string();
    get(&s, &agent, &format!("/ch/{channel}/poll?since=0&timeout=0"))
        .await
        .expect_error(401, &["join the class"]);
    let (_, v) = join(&s, r.json()["code"].as_str().unwrap(), "").await;
    assert_eq!(v["name"], "learner 1", "a follower without a name gets one");
}
