//! Tests across the parts of co-browsing: races over the whole app, driven
//! through its `App` face (the calls the HTTP service makes) on a
//! multi-threaded runtime.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use serde_json::{json, Value};

use super::console::CONSOLE_CHANNEL;
use super::{verify_audit, Cobrowse, CobrowseConfig};
use crate::http::App;
use crate::{Config, Delivery, Hub, SubscribeOptions};

const KEY: &str = "race-agent-key-0123456789";

/// One request to the app: its status, the cookies it set, its JSON body.
async fn call(
    cb: &Cobrowse,
    method: &str,
    path: &str,
    cookies: &str,
    body: Value,
) -> (u16, Vec<String>, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if !cookies.is_empty() {
        req = req.header("cookie", cookies);
    }
    let req = req
        .body(Bytes::from(if method == "POST" {
            body.to_string()
        } else {
            String::new()
        }))
        .unwrap();
    let resp = cb.serve(path, req).await;
    let status = resp.status().as_u16();
    let set: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, set, v)
}

/// The list carried by the newest event on `cb.console`.
fn last_console_list(hub: &Hub) -> Value {
    let last = hub.info(CONSOLE_CHANNEL).last_id;
    let mut sub = hub
        .subscribe(
            CONSOLE_CHANNEL,
            SubscribeOptions {
                since: Some(crate::Cursor::bare(last.saturating_sub(1))),
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    match sub.try_next() {
        Some(Delivery::Event(e)) => {
            let v: Value = serde_json::from_slice(e.data()).unwrap();
            v["sessions"].clone()
        }
        other => panic!("no console event: {other:?}"),
    }
}

/// Many customers ask, agents join, both end, all at once: whatever order
/// the changes land in, the newest event on `cb.console` is the list as it
/// is once they are all done. Each round starts every change together (a
/// barrier), so the last few of a round race each other, and is checked.
/// (Before the console got one publisher, this failed in 20 runs out of 20,
/// most often in its first rounds.) The audit log, written by all of them
/// at once, still verifies, with every line in it.
#[test]
fn the_console_list_is_never_left_stale() {
    const TASKS: usize = 12;
    const ROUNDS: usize = 40;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(TASKS)
        .build()
        .unwrap();
    rt.block_on(async {
        let hub = Hub::new(Config::default()).unwrap();
        let dir = std::env::temp_dir().join(format!("tandem-cb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let audit = dir.join("race-audit.log");
        let _ = std::fs::remove_file(&audit);
        let settings = CobrowseConfig::default().agent_key(KEY).audit_file(&audit);
        let cb = Cobrowse::new(hub.clone(), settings).unwrap();
        let signin = json!({"key": KEY, "name": "ann"});
        let (_, set, _) = call(&cb, "POST", "/agent/signin", "", signin).await;
        let agent = Arc::new(set[0].clone());
        // A crowd already waiting makes each published list longer to build.
        for _ in 0..30 {
            call(&cb, "POST", "/cobrowse/session", "", json!({"url": "/"})).await;
        }
        for round in 0..ROUNDS {
            let start = Arc::new(tokio::sync::Barrier::new(TASKS));
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let (cb, agent, start) = (cb.clone(), agent.clone(), start.clone());
                tasks.push(tokio::spawn(async move {
                    let ask = json!({"url": "/"});
                    let (s, set, v) = call(&cb, "POST", "/cobrowse/session", "", ask).await;
                    assert_eq!(s, 201);
                    let id = v["id"].as_str().unwrap().to_string();
                    let customer = set[0].clone();
                    if (t + round) % 4 == 2 {
                        let join = json!({"session": id});
                        call(&cb, "POST", "/cobrowse/join", &agent, join).await;
                    }
                    start.wait().await;
                    let (path, who, body) = match (t + round) % 4 {
                        0 => ("/cobrowse/join", &*agent, json!({"session": id})),
                        1 => ("/cobrowse/event", &customer, json!({"type": "end"})),
                        2 => (
                            "/cobrowse/event",
                            &*agent,
                            json!({"type": "end", "session": id}),
                        ),
                        _ => (
                            "/cobrowse/event",
                            &customer,
                            json!({"type": "nav", "url": format!("/page/{t}/{round}")}),
                        ),
                    };
                    let (s, _, v) = call(&cb, "POST", path, who, body).await;
                    assert_eq!(s, 200, "{path}: {v}");
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let (_, _, now) = call(&cb, "GET", "/cobrowse/sessions", &agent, Value::Null).await;
            assert_eq!(
                last_console_list(&hub),
                now["sessions"],
                "round {round}: the last list published is the current one"
            );
        }
        // Every answer followed its audit lines: all of them are in the file.
        // One sign-in, the crowd, then each round every task asks for help
        // (`created`) and, by its case, is joined (`joined`), ends
        // (`ended`), is joined then ended (both), or moves (no line).
        let lines = 1 + 30 + ROUNDS * (TASKS + TASKS / 4 * (1 + 1 + 2));
        assert_eq!(verify_audit(&audit).unwrap().lines, lines);
        let _ = std::fs::remove_file(&audit);
    });
}
