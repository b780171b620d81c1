//! What the browser tests share beside the test kit (whose `kit::Server`
//! can be restarted on the same port with the same hub): a proxy that cuts
//! every connection on demand, a limit on concurrent browsers, page helpers
//! around tandem.js, and solid-colour PNGs.

#![allow(dead_code)] // not every test module uses every helper

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;

use crate::webdriver::Browser;

/// Chromium instances running at once in this binary. Two cores, and the
/// tests time things (stream sensing): more would only make them contend.
/// `TANDEM_BROWSERS=N` overrides.
pub async fn browser_slot() -> SemaphorePermit<'static> {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    let n = std::env::var("TANDEM_BROWSERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    SLOTS
        .get_or_init(|| Semaphore::new(n))
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

/// A TCP proxy in front of an address that forwards bytes both ways and,
/// on [`CutProxy::cut`], drops every connection it holds at once, mid-stream
/// (as a crashed server, a restarted load balancer or a lost network would).
pub struct CutProxy {
    pub addr: SocketAddr,
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (cut, cut_rx) = watch::channel(0u64);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let mut cut_rx = cut_rx.clone();
                cut_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(upstream).await else {
                        return; // the server is down: the client sees a closed connection
                    };
                    let _ = client.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut up) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        CutProxy { addr, cut, task }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Drops every connection now open.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

/// Polls `f` until it returns `Some`, at most `timeout`; panics with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Loads `/tandem.js` into the current page (of the server at `origin`).
pub async fn load_client(b: &Browser) {
    let ok = b
        .exec_async(
            "var done = arguments[arguments.length - 1];
             var s = document.createElement('script');
             s.src = '/tandem.js';
             s.onload = function () { done(typeof tandem === 'object'); };
             s.onerror = function () { done(false); };
             document.head.appendChild(s);",
            json!([]),
        )
        .await;
    assert_eq!(ok, json!(true), "/tandem.js did not load");
}

/// Opens `url` (a page of the server) and starts a tandem connection there
/// with `options` (JSON; functions are added here). The page keeps what it
/// gets in `window.T`: `got` (events), `statuses` ([status, transport,
/// reason]), `pubs` (publish results).
pub async fn open_page(b: &Browser, url: &str, channel: &str, options: Value) {
    b.goto(url).await;
    load_client(b).await;
    b.exec(
        "var opts = arguments[1];
         window.T = {got: [], statuses: [], pubs: []};
         opts.onEvent = function (ev) { T.got.push(ev); };
         opts.onStatus = function (s, info) {
           T.statuses.push([s, info.transport || '', info.reason || '']);
         };
         T.conn = tandem.connect(arguments[0], opts);",
        json!([channel, options]),
    )
    .await;
}

/// The statuses the page's connection reported so far.
pub async fn statuses(b: &Browser) -> Vec<(String, String, String)> {
    let v = b.exec("return T.statuses;", json!([])).await;
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| {
            (
                s[0].as_str().unwrap_or("").to_string(),
                s[1].as_str().unwrap_or("").to_string(),
                s[2].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits until the connection's latest status is `open`, with `transport`.
pub async fn wait_open(b: &Browser, transport: &str) {
    let want = transport.to_string();
    let mut last = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            last = statuses(b).await;
            if last
                .last()
                .is_some_and(|(s, t, _)| s == "open" && *t == want)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "the connection did not open with {transport}; statuses: {last:?}"
    );
}

/// An event as the page got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub id: Option<u64>,
    pub kind: String,
    pub data: String,
    pub base64: bool,
    pub from: Option<String>,
    pub gap: Option<(u64, u64)>,
}

/// How many events the page has got.
pub async fn got_count(b: &Browser) -> usize {
    b.exec("return T.got.length;", json!([]))
        .await
        .as_u64()
        .expect("a number") as usize
}

/// Every event the page has got, in order.
pub async fn got(b: &Browser) -> Vec<Got> {
    let v = b.exec("return T.got;", json!([])).await;
    v.as_array()
        .expect("an array")
        .iter()
        .map(|e| Got {
            id: e["id"].as_u64(),
            kind: e["type"].as_str().unwrap_or("").to_string(),
            data: e["data"].as_str().unwrap_or("").to_string(),
            base64: e["base64"] == json!(true),
            from: e["from"].as_str().map(String::from),
            gap: (e["type"] == "gap").then(|| {
                (
                    e["from"].as_u64().unwrap_or(0),
                    e["to"].as_u64().unwrap_or(0),
                )
            }),
        })
        .collect()
}

/// Waits until the page has got at least `n` events.
pub async fn wait_got(b: &Browser, n: usize, timeout: Duration) -> Vec<Got> {
    let mut have = 0;
    let waited = tokio::time::timeout(timeout, async {
        loop {
            have = got_count(b).await;
            if have >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if waited.is_err() {
        let st = statuses(b).await;
        panic!("the page got {have} of {n} events in {timeout:?}; statuses: {st:?}");
    }
    got(b).await
}

/// Checks that `got` holds exactly the ids `first..=last`, in order, once
/// each, and no gap.
pub fn assert_exactly_once(got: &[Got], first: u64, last: u64) {
    let ids: Vec<Option<u64>> = got.iter().map(|g| g.id).collect();
    let want: Vec<Option<u64>> = (first..=last).map(Some).collect();
    if ids != want {
        let gaps: Vec<_> = got.iter().filter(|g| g.gap.is_some()).collect();
        let dups = ids.len() - {
            let mut d = ids.clone();
            d.sort();
            d.dedup();
            d.len()
        };
        panic!(
            "expected ids {first}..={last} once each in order; got {} events ({dups} repeated, gaps {gaps:?}): {:?}",
            ids.len(),
            ids
        );
    }
}

/// A solid-colour RGB PNG: stored (uncompressed) deflate blocks, so no
/// compressor is needed.
pub fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    // Each row: filter type 0 (none), then the pixels.
    let row: Vec<u8> = std::iter::once(0)
        .chain((0..width).flat_map(|_| rgb))
        .collect();
    let raw = row.repeat(height as usize);
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + x as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}
