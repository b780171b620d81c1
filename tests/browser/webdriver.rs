//! The browser the tests drive: Debian's chromedriver and headless Chromium,
//! through the `fantoccini` WebDriver client (plain HTTP to chromedriver on
//! loopback, no TLS stack).
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

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fantoccini::elements::Element;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// The bound on one WebDriver command (a navigation included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long chromedriver may take to start a session.
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
    client: Option<Client>,
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

/// Runs one WebDriver command, bounded by [`CALL_TIMEOUT`]; panics with
/// `what` and the error if it fails.
async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    call: impl Future<Output = Result<T, E>>,
) -> T {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("webdriver: {what}: {e}"),
        Err(_) => panic!("webdriver: {what}: no answer in {CALL_TIMEOUT:?}"),
    }
}

/// A script's arguments as WebDriver takes them: a JSON array's items.
fn script_args(args: Value) -> Vec<Value> {
    match args {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        one => vec![one],
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
                client: None,
                profile: profile.clone(),
            };
            match browser
                .open_session(port, chromium, extra_args, page_load)
                .await
            {
                Ok(()) => return browser,
                Err(e) => last_err = e, // dropping `browser` kills this chromedriver
            }
        }
        panic!("could not start a Chromium session: {last_err}");
    }

    async fn open_session(
        &mut self,
        port: u16,
        chromium: &str,
        extra_args: &[&str],
        page_load: &str,
    ) -> Result<(), String> {
        let mut args: Vec<String> = BASE_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.profile.display()));
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": page_load,
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "timeouts": {"script": 30_000, "pageLoad": 30_000}
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: retry until it answers.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(format!("chromedriver exited ({status})"));
            }
            match tokio::time::timeout(CALL_TIMEOUT, builder.connect(&url)).await {
                Ok(Ok(client)) => {
                    self.client = Some(client);
                    return Ok(());
                }
                Ok(Err(e)) if Instant::now() > deadline => {
                    return Err(format!("no session after {START_TIMEOUT:?}: {e}"))
                }
                Err(_) => return Err(format!("no session in {CALL_TIMEOUT:?}")),
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Navigates the current window and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        bounded(&format!("goto {url}"), self.client().goto(url)).await
    }

    /// Runs `script` (a function body; `arguments` are `args`, a JSON array)
    /// and returns what it returns.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        bounded("execute", self.client().execute(script, script_args(args))).await
    }

    /// Runs `script`, which calls its last argument with the result.
    pub async fn exec_async(&self, script: &str, args: Value) -> Value {
        let call = self.client().execute_async(script, script_args(args));
        bounded("execute async", call).await
    }

    /// The handle of the current window.
    pub async fn window(&self) -> String {
        bounded("window", self.client().window()).await.into()
    }

    /// Opens a new tab and returns its handle (the current window stays).
    pub async fn new_tab(&self) -> String {
        let tab = bounded("new tab", self.client().new_window(true)).await;
        tab.handle.into()
    }

    /// Makes `handle` the window commands go to.
    pub async fn switch_to(&self, handle: &str) {
        let handle = WindowHandle::try_from(handle).expect("a window handle");
        bounded("switch window", self.client().switch_to_window(handle)).await
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Element {
        bounded(
            &format!("find {css}"),
            self.client().find(Locator::Css(css)),
        )
        .await
    }

    /// Types `text` into an element (for a file input: a path to upload).
    pub async fn send_keys(&self, element: &Element, text: &str) {
        bounded("send keys", element.send_keys(text)).await
    }

    /// Clicks an element the way a user does (scrolled into view, real events).
    pub async fn click(&self, element: &Element) {
        bounded("click", element.click()).await
    }

    /// The names of every cookie the browser holds for the current page's
    /// site, `HttpOnly` ones included (WebDriver sees them all).
    pub async fn cookie_names(&self) -> Vec<String> {
        bounded("cookies", self.client().get_all_cookies())
            .await
            .iter()
            .map(|c| c.name().to_string())
            .collect()
    }

    /// Whether the cookie `name` of the current page's site is `Secure`
    /// (`None`: no such cookie).
    pub async fn cookie_secure(&self, name: &str) -> Option<bool> {
        bounded("cookies", self.client().get_all_cookies())
            .await
            .iter()
            .find(|c| c.name() == name)
            .map(|c| c.secure().unwrap_or(false))
    }

    /// A PNG of the current window (for looking at a failing page).
    pub async fn screenshot(&self) -> Vec<u8> {
        bounded("screenshot", self.client().screenshot()).await
    }

    /// Ends the session (Chromium exits); Drop then stops chromedriver.
    pub async fn quit(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(CALL_TIMEOUT, client.close()).await;
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
