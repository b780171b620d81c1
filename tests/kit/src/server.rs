//! A tandem server in the test's runtime, on `127.0.0.1` with an OS-chosen
//! port, started one of two ways ([`Flavor`]): `tandem::serve` (the binary's
//! accept loop, with its lean paths for streams and publishes) or
//! `tandem::Service` mounted in a plain hyper server, as an embedder does.
//! It can be shut down, joined, and restarted on the same port with the same
//! hub.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tandem::__private::wire::{MultipartParser, SseParser};
use tandem::cobrowse::{Cobrowse, CobrowseConfig};
use tandem::http::HttpConfig;
use tandem::proxy::ProxyConfig;
use tandem::{Config, Hub, NewEvent, Service, Transport};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::conn::{wait_until, BodyReader, Conn, Response};
use crate::events::{Events, IframeParser};
use crate::http1::{Head, Req};

/// What a test server runs with: each layer's settings, built with one
/// chain of setters whichever layer a setting belongs to
/// (`config().buffer_events(8).max_connections(5)`).
#[derive(Clone, Debug)]
pub struct Setup {
    /// The router and transports.
    pub core: Config,
    /// Connections, timeouts, origins.
    pub http: HttpConfig,
    /// Co-browsing (mounted by the `Serve` flavor, as the binary does).
    pub cobrowse: CobrowseConfig,
    /// In front of an upstream (`--upstream`): the server's own address is
    /// added to the accepted hosts when it starts.
    pub proxy: Option<ProxyConfig>,
    /// Share the channels through this Redis (`--redis`).
    pub redis: Option<String>,
    /// Or through a Redis as these say (a cluster, a password, TLS).
    pub redis_options: Option<tandem::RedisOptions>,
    /// Serve TLS only, with this certificate (`--tls-cert`; the `Serve`
    /// flavor).
    pub tls: Option<tandem::TlsConfig>,
    /// Require signed channel tokens (`--secret-file`, `--tokens-for`).
    pub tokens: Option<tandem::token::TokenPolicy>,
}

macro_rules! forward {
    ($layer:ident { $($field:ident: $t:ty),* $(,)? }) => {
        impl Setup {
            $(
                pub fn $field(mut self, value: $t) -> Setup {
                    self.$layer = self.$layer.$field(value);
                    self
                }
            )*
        }
    };
}

forward!(core {
    buffer_events: usize,
    buffer_age: Duration,
    max_event_bytes: usize,
    max_parts: usize,
    poll_batch: usize,
    poll_timeout: Duration,
    poll_timeout_max: Duration,
    heartbeat: Duration,
    stream_padding: usize,
    sse_retry: Duration,
    sweep_interval: Duration,
    max_channels: usize,
});
forward!(http {
    max_connections: usize,
    idle_timeout: Duration,
    allow_origins: Vec<String>,
    shutdown_timeout: Duration,
    max_head_bytes: usize,
    max_url_bytes: usize,
    head_timeout: Duration,
    body_timeout: Duration,
    max_connections_per_addr: usize,
    publishes_per_second: u32,
    sessions_per_minute: u32,
    trusted_proxies: Vec<String>,
});

impl Setup {
    /// A node sharing its channels through a Redis as `options` say (a
    /// cluster, a password, TLS).
    pub fn redis_options(mut self, options: tandem::RedisOptions) -> Setup {
        self.redis_options = Some(options);
        self
    }

    /// Serves TLS only with this certificate (`--tls-cert`, `--tls-key`).
    pub fn tokens(mut self, policy: tandem::token::TokenPolicy) -> Setup {
        self.tokens = Some(policy);
        self
    }

    pub fn tls(mut self, tls: tandem::TlsConfig) -> Setup {
        self.tls = Some(tls);
        self
    }

    /// A node sharing its channels through the Redis at `url` (`--redis`).
    pub fn redis(mut self, url: &str) -> Setup {
        self.redis = Some(url.to_string());
        self
    }
    /// tandem as a reverse proxy in front of `upstream` (`http://host:port`).
    pub fn proxy(mut self, upstream: &str) -> Setup {
        self.proxy = Some(ProxyConfig::new(upstream.parse().expect("valid upstream")));
        self
    }
    /// With [`proxy`](Self::proxy) (given first): the CA file an https
    /// upstream's certificate is checked against (`--upstream-ca`).
    pub fn upstream_ca(mut self, pem_file: &std::path::Path) -> Setup {
        let proxy = self.proxy.take().expect("upstream_ca after proxy");
        self.proxy = Some(proxy.upstream_ca(pem_file));
        self
    }
    /// tandem as a reverse proxy with these settings.
    pub fn proxy_config(mut self, cfg: ProxyConfig) -> Setup {
        self.proxy = Some(cfg);
        self
    }
    pub fn agent_key(mut self, key: Option<String>) -> Setup {
        if let Some(k) = key {
            self.cobrowse = self.cobrowse.agent_key(k);
        }
        self
    }
    pub fn agents_file(mut self, path: Option<PathBuf>) -> Setup {
        if let Some(p) = path {
            self.cobrowse = self.cobrowse.agents_file(p);
        }
        self
    }
    pub fn audit_file(mut self, path: Option<PathBuf>) -> Setup {
        if let Some(p) = path {
            self.cobrowse = self.cobrowse.audit_file(p);
        }
        self
    }
    pub fn canned_file(mut self, path: Option<PathBuf>) -> Setup {
        if let Some(p) = path {
            self.cobrowse = self.cobrowse.canned_file(p);
        }
        self
    }
}

/// Small values so tests are quick. The heartbeat is long so it stays out
/// of byte-exact checks; tests about heartbeats set their own.
pub fn config() -> Setup {
    Setup {
        core: Config::default(),
        http: HttpConfig::default(),
        cobrowse: CobrowseConfig::default(),
        proxy: None,
        redis: None,
        redis_options: None,
        tls: None,
        tokens: None,
    }
    .buffer_events(64)
    .heartbeat(Duration::from_secs(30))
    .poll_timeout(Duration::from_secs(1))
    .poll_timeout_max(Duration::from_secs(30))
    .stream_padding(2048)
    .sse_retry(Duration::from_millis(1500))
    .shutdown_timeout(Duration::from_secs(3))
    .max_connections(1000)
}

/// Settings for browser tests: short heartbeats and retries, so that
/// reconnects and idle detection happen within a test's time.
pub fn browser_config() -> Setup {
    config()
        .buffer_events(1024)
        .heartbeat(Duration::from_millis(500))
        .poll_timeout(Duration::from_secs(5))
        .sse_retry(Duration::from_millis(300))
        .shutdown_timeout(Duration::from_secs(2))
}

/// How a test server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `tandem::serve`: the accept loop with the connection limit and the
    /// lean paths for streams and publishes.
    Serve,
    /// `tandem::Service` in a plain hyper HTTP/1 server (the accept loop in
    /// [`serve_hyper`]): what an embedder runs, hyper on every request.
    Hyper,
}

impl Flavor {
    /// Starts a server of this flavor.
    pub async fn start(self, setup: Setup) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hub = hub_for(&setup).await;
        let mut server = Server {
            addr,
            hub,
            setup,
            flavor: self,
            service: None,
            stop: None,
            task: None,
        };
        server.serve(listener);
        server
    }

    /// Starts a server of this flavor with [`config`].
    pub async fn with_defaults(self) -> Server {
        self.start(config()).await
    }
}

/// A new hub for `setup`: on its Redis (one server or a cluster), or in
/// memory.
async fn hub_for(setup: &Setup) -> Hub {
    let options = (setup.redis_options.clone())
        .or_else(|| setup.redis.as_deref().map(tandem::RedisOptions::new));
    match options {
        Some(options) => Hub::with_redis_options(setup.core.clone(), options)
            .await
            .expect("the test's redis"),
        None => Hub::new(setup.core.clone()).expect("valid test config"),
    }
}

/// A tandem server running in the test's runtime; shut down on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub setup: Setup,
    pub flavor: Flavor,
    /// A clone of the service it serves (clones share their state).
    service: Option<Service>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Starts `tandem::serve` with `setup`.
    pub async fn start(setup: Setup) -> Server {
        Flavor::Serve.start(setup).await
    }

    /// Starts `tandem::serve` with [`config`].
    pub async fn with_defaults() -> Server {
        Server::start(config()).await
    }

    fn serve(&mut self, listener: TcpListener) {
        let (tx, rx) = oneshot::channel::<()>();
        let stop = async {
            let _ = rx.await;
        };
        let mut service = Service::new(self.hub.clone())
            .with_config(self.setup.http.clone())
            .expect("valid test http config");
        if let Some(policy) = self.setup.tokens.clone() {
            service = service.with_tokens(policy);
        }
        // What the binary serves: channels, co-browsing with its demo
        // portal (sharing the proxied application, when there is one), and
        // the live status feed.
        let cb = (self.flavor == Flavor::Serve).then(|| {
            Cobrowse::new(self.hub.clone(), self.setup.cobrowse.clone())
                .expect("valid test co-browsing config")
                .with_portal()
        });
        if let Some(mut proxy) = self.setup.proxy.clone() {
            proxy.hosts.push(self.addr.to_string());
            if let Some(cb) = &cb {
                proxy = proxy.cobrowse(cb.clone());
            }
            service = service.with_proxy(proxy).expect("valid test proxy config");
        }
        self.stop = Some(tx);
        self.task = Some(match cb {
            Some(cb) => {
                let service = service.with_app(Arc::new(cb));
                self.service = Some(service.clone());
                tokio::spawn(tandem::status::run(
                    self.hub.clone(),
                    service.shutdown().clone(),
                ));
                let serve = tandem::serve(listener, service).with_graceful_shutdown(stop);
                let serve = match self.setup.tls.clone() {
                    Some(tls) => serve.with_tls(tls),
                    None => serve,
                };
                tokio::spawn(serve.into_future())
            }
            None => {
                self.service = Some(service.clone());
                tokio::spawn(serve_hyper(listener, service, stop))
            }
        });
    }

    /// The service it serves (a clone: what it changes, the server sees).
    pub fn service(&self) -> &Service {
        self.service.as_ref().expect("the server is serving")
    }

    /// Completes the shutdown future the server was given.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server to return; panics if it takes longer than `bound`.
    pub async fn join(&mut self, bound: Duration) -> io::Result<()> {
        let task = self.task.take().expect("serve task already joined");
        tokio::time::timeout(bound, task)
            .await
            .unwrap_or_else(|_| panic!("serve did not return within {bound:?}"))
            .expect("serve task panicked")
    }

    /// Shuts down gracefully (every stream and connection ends) and waits
    /// until the server has drained.
    pub async fn shutdown(&mut self) {
        self.trigger_shutdown();
        if self.task.is_some() {
            self.join(Duration::from_secs(10)).await.expect("serve");
        }
    }

    /// Shuts down gracefully, waits for it, and listens again on the same
    /// port with the same hub (every connection is dropped, no event is lost).
    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.listen_again().await;
    }

    /// A node restart: shuts down gracefully, drops the hub (and with it
    /// everything this node held in memory), and starts a new hub, on the
    /// same Redis when the setup has one, listening on the same port.
    pub async fn replace(&mut self) {
        self.shutdown().await;
        self.hub = hub_for(&self.setup).await;
        self.listen_again().await;
    }

    /// Binds the same address again (the old socket may take a moment to
    /// go) and serves.
    async fn listen_again(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:port{path}` (`https://` when serving TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.setup.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    pub async fn connect(&self) -> Conn {
        Conn::connect(self.addr).await
    }

    /// Sends one request on a new connection and reads the whole response.
    pub async fn send(&self, req: Req) -> Response {
        let mut conn = self.connect().await;
        conn.request(&req.host(&self.host())).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Req::get(path)).await
    }

    /// A raw publish: `content_type` (if any) and the body as given.
    pub async fn post(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Response {
        let mut req = Req::post(path, body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        self.send(req).await
    }

    /// Publishes text over HTTP with `tandem::client` and returns its id
    /// (a refusal panics with the server's message).
    pub async fn publish(&self, channel: &str, data: &str) -> u64 {
        // A publish whose bytes no test looks at goes through tandem's own
        // Rust client. A fresh one each time: no idle keep-alive connection
        // of its pool outlives the call (tests count open connections).
        let mut event = NewEvent::message(data.to_string());
        event.content_type = Some("text/plain; charset=utf-8".into());
        tandem::client::Client::new()
            .publish(&self.url(&format!("/ch/{channel}")), event)
            .await
            .unwrap_or_else(|e| panic!("publish to {channel}: {e}"))
    }

    /// Publishes straight into the hub; returns the event's id.
    pub async fn publish_event(&self, channel: &str, event: NewEvent) -> u64 {
        self.hub
            .publish(channel, event)
            .await
            .expect("publish")
            .id()
    }

    /// Opens a streamed GET and reads its head.
    pub async fn open(&self, req: Req) -> (Head, BodyReader) {
        let mut conn = self.connect().await;
        let method = req.method.clone();
        conn.send(&req.host(&self.host()).to_bytes()).await;
        let head = conn.read_head().await;
        let body = conn.into_body(&head, &method);
        (head, body)
    }

    /// Opens an SSE stream and checks it was accepted.
    pub async fn sse(&self, path: &str) -> Events<SseParser> {
        self.sse_with(Req::get(path)).await
    }

    pub async fn sse_with(&self, req: Req) -> Events<SseParser> {
        let (head, body) = self.open(req).await;
        assert_eq!(head.status, 200, "{}", head.raw);
        Events::new(head, body, SseParser::new())
    }

    /// Opens a multipart (x-mixed-replace or mixed) stream.
    pub async fn multipart(&self, path: &str) -> Events<MultipartParser> {
        let (head, body) = self.open(Req::get(path)).await;
        assert_eq!(head.status, 200, "{}", head.raw);
        let parser = MultipartParser::new(tandem::__private::BOUNDARY);
        Events::new(head, body, parser)
    }

    /// Opens a forever-iframe page.
    pub async fn iframe(&self, path: &str, callback: &str) -> Events<IframeParser> {
        let (head, body) = self.open(Req::get(path)).await;
        assert_eq!(head.status, 200, "{}", head.raw);
        Events::new(head, body, IframeParser::new(callback))
    }

    /// `GET /ch/{c}/info` as JSON.
    pub async fn info(&self, channel: &str) -> Value {
        let r = self.get(&format!("/ch/{channel}/info")).await;
        assert_eq!(r.head.status, 200, "{}", r.text());
        r.json()
    }

    /// The channel's current epoch, straight from the hub (it must exist).
    pub fn epoch(&self, channel: &str) -> String {
        let info = self.hub.info(channel);
        info.epoch.expect("the channel exists").to_string()
    }

    /// `EPOCH:ID` in the channel's current epoch.
    pub fn cursor(&self, channel: &str, id: u64) -> String {
        format!("{}:{id}", self.epoch(channel))
    }

    /// Live subscribers of a channel on one transport, straight from the hub.
    pub fn subscribers(&self, channel: &str, t: Transport) -> usize {
        self.hub.info(channel).subscribers[t as usize]
    }

    /// Sends a long-poll on `conn` from `since`, held up to 30 s, and waits
    /// until the server holds it (the channel then has one more poller).
    pub async fn hold_poll(&self, conn: &mut Conn, channel: &str, since: u64) {
        let before = self.subscribers(channel, Transport::Poll);
        let path = format!("/ch/{channel}/poll?timeout=30&since={since}");
        conn.send(&Req::get(&path).host(&self.host()).to_bytes())
            .await;
        self.wait_subscribers(channel, Transport::Poll, before + 1)
            .await;
    }

    /// Waits (bounded) until the channel has `n` subscribers on transport `t`.
    pub async fn wait_subscribers(&self, channel: &str, t: Transport, n: usize) {
        wait_until(
            &format!("{n} {} subscriber(s) on {channel}", t.name()),
            || {
                let ok = self.subscribers(channel, t) == n;
                async move { ok }
            },
        )
        .await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// `tandem::Service` in a plain hyper server, the way the docs tell an
/// embedder to run it: hyper's HTTP/1 connection on each accepted socket,
/// no lean paths, no connection limit. When `shutdown` completes it stops
/// accepting, tells the service (streams end, long-polls answer) and every
/// connection (hyper's graceful shutdown: requests in flight finish), and
/// waits for them at most the config's `shutdown_timeout`.
pub async fn serve_hyper(
    listener: TcpListener,
    service: Service,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let service = service.clone();
        let stop = service.shutdown().wait();
        connections.spawn(async move {
            // As the docs tell an embedder: hyper's head limit and head
            // timeout are the service's (tandem refuses long URLs itself),
            // and the service for the peer applies the per-address limits.
            let conn = http1::Builder::new()
                .max_header_size(service.config().max_head_bytes)
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(service.config().head_timeout)
                .serve_connection(TokioIo::new(stream), service.for_peer(peer));
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    // Ends the streams, answers the long-polls; connections then close.
    service.shutdown().trigger();
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(service.config().shutdown_timeout, drained).await;
    // Dropping the set aborts whatever did not drain in time.
    Ok(())
}
