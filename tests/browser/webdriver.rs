//! A minimal WebDriver client: just what the browser tests use, over hyper's
//! HTTP/1 client connection and serde_json.
//!
//! [`Browser::start`] spawns `chromedriver --port=<free port>` in a process
//! group of its own, opens one headless Chromium session with a fresh
//! profile in a temp dir, and gives back a handle that drives it. Dropping
//! the handle (also when a test panics) kills chromedriver and the Chromium
//! it started by that process group's id, reaps chromedriver and removes the
//! profile; [`Browser::quit`] ends the session politely first.
//!
//! Every call is bounded by [`CALL_TIMEOUT`], so a wedged browser fails the
//! test instead of hanging it.

#![allow(dead_code)] // not every test module uses every command

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// The bound on one WebDriver command (a navigation included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long chromedriver may take to answer `/status`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The arguments every session gets, before the test's own.
const BASE_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    // Two windows of one session take turns in the foreground: keep the one
    // in the background running at full speed (timers, network callbacks).
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
];

/// A chromedriver process and one Chromium session.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn chromium_binary() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// One HTTP request to chromedriver; the `value` of its JSON answer.
async fn call(port: u16, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    let run = async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect to chromedriver: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", format!("127.0.0.1:{port}"))
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!(
                "{} {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or("")
            ));
        }
        Ok(value)
    };
    match tokio::time::timeout(CALL_TIMEOUT, run).await {
        Ok(r) => r.map_err(|e| format!("{method} {path}: {e}")),
        Err(_) => Err(format!("{method} {path}: no answer in {CALL_TIMEOUT:?}")),
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with the base
    /// arguments plus `extra_args` (e.g. `--proxy-server=...`). Navigation
    /// waits for the page's `load` event.
    pub async fn start(extra_args: &[&str]) -> Browser {
        Browser::start_with(extra_args, "normal").await
    }

    /// Like [`Browser::start`], with a WebDriver page load strategy:
    /// `"eager"` returns from navigation once the document is parsed, for
    /// pages whose `load` never comes (an `<img>` of an endless multipart
    /// stream holds it forever, and with `"normal"` every command waits).
    pub async fn start_with(extra_args: &[&str], page_load: &str) -> Browser {
        let chromium = chromium_binary()
            .expect("chromium is not installed (Debian: apt-get install chromium chromium-driver)");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let profile = std::env::temp_dir().join(format!(
            "tandem-chromium-{}-{nanos}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&profile).expect("create the profile dir");
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new("chromedriver");
            cmd.arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            #[cfg(unix)]
            {
                // A group of its own: Chromium and its helpers join it, and
                // Drop kills the whole group by its id.
                use std::os::unix::process::CommandExt;
                cmd.process_group(0);
            }
            let driver = cmd
                .spawn()
                .expect("chromedriver is not installed (Debian: apt-get install chromium-driver)");
            let mut browser = Browser {
                driver,
                port,
                session: String::new(),
                profile: profile.clone(),
            };
            match browser.open_session(chromium, extra_args, page_load).await {
                Ok(()) => return browser,
                Err(e) => last_err = e, // dropping `browser` kills this chromedriver
            }
        }
        panic!("could not start a Chromium session: {last_err}");
    }

    async fn open_session(
        &mut self,
        chromium: &str,
        extra_args: &[&str],
        page_load: &str,
    ) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited ({status})"));
            }
            match call(self.port, Method::GET, "/status", None).await {
                Ok(v) if v["ready"] == json!(true) => break,
                _ if Instant::now() > deadline => {
                    return Err(format!("chromedriver not ready after {START_TIMEOUT:?}"))
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let mut args: Vec<String> = BASE_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.profile.display()));
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": page_load,
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                    "timeouts": {"script": 30_000, "pageLoad": 30_000}
                }
            }
        });
        let v = call(self.port, Method::POST, "/session", Some(caps)).await?;
        self.session = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {v}"))?
            .to_string();
        Ok(())
    }

    async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        call(self.port, method, &path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    /// Navigates the current window and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns
    /// what it returns.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script`, which calls its last argument with the result.
    pub async fn exec_async(&self, script: &str, args: Value) -> Value {
        self.cmd(
            Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The handle of the current window.
    pub async fn window(&self) -> String {
        let v = self.cmd(Method::GET, "/window", None).await;
        v.as_str().expect("a window handle").to_string()
    }

    /// Opens a new tab and returns its handle (the current window stays).
    pub async fn new_tab(&self) -> String {
        let v = self
            .cmd(Method::POST, "/window/new", Some(json!({"type": "tab"})))
            .await;
        v["handle"].as_str().expect("a window handle").to_string()
    }

    /// Makes `handle` the window commands go to.
    pub async fn switch_to(&self, handle: &str) {
        self.cmd(Method::POST, "/window", Some(json!({ "handle": handle })))
            .await;
    }

    /// The id of the first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element id in {v}"))
            .to_string()
    }

    /// Types `text` into an element (for a file input: a path to upload).
    pub async fn send_keys(&self, element: &str, text: &str) {
        self.cmd(
            Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks an element the way a user does (scrolled into view, real events).
    pub async fn click(&self, element: &str) {
        self.cmd(
            Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// A PNG of the current window (for looking at a failing page).
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.cmd(Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }

    /// Ends the session (Chromium exits); Drop then stops chromedriver.
    pub async fn quit(mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = call(self.port, Method::DELETE, &path, None).await;
            self.session.clear();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGKILL to chromedriver's process group, which we made and which
        // holds only it and the Chromium it started; then reap chromedriver.
        let pid = self.driver.id();
        #[cfg(unix)]
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium may still be writing its profile for a moment.
        for _ in 0..20 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
