//! The hyper `Service`: routes, subscribe and publish handlers, limits.
//!
//! One `Service` value is cloned into every connection. It holds the hub, the
//! path prefix it is mounted under and, when run by [`crate::serve`], the
//! shutdown signal that ends streams and long-polls.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, ALLOW, CONTENT_LENGTH, CONTENT_TYPE,
};
use hyper::{Method, Request, Response, StatusCode};

use super::app::{Access, App};
use super::body::{self, Body};
use super::config::HttpConfig;
use super::cors::{self, Origin};
use super::publish::{parse_form, parse_multipart, BodyKind};
use super::read::{read_all, ReadError};
use super::route::{parse_path, Query, Route, Sub};
use super::stream::{EventStream, OpenGuard, ShutdownSignal, Style};
use crate::config::ConfigError;
use crate::error::Error;
use crate::event::{check_type, Cursor, Delivery, NewEvent};
use crate::router::{Hub, SubscribeOptions, Transport};
use crate::shutdown::Shutdown;
use crate::transport::{self, iframe, json, multipart, sse, Format};

/// What one publish request carries.
enum Events {
    One(NewEvent),
    Many(Vec<NewEvent>),
}

/// `{"id":N}`, a publish's answer, written without the formatting machinery
/// (and in one allocation: this is the hottest response).
fn id_json(id: u64) -> Bytes {
    let mut digits = [0u8; 20];
    let d = body::decimal(id, &mut digits);
    let mut answer = [0u8; 32];
    answer[..6].copy_from_slice(b"{\"id\":");
    answer[6..6 + d.len()].copy_from_slice(d);
    answer[6 + d.len()] = b'}';
    Bytes::copy_from_slice(&answer[..7 + d.len()])
}

/// An answer over TLS: `Secure` on every cookie that lacks it (co-browsing's,
/// and the proxied application's), and HSTS when configured.
fn secure_answer(resp: &mut Response<Body>, hsts: Option<&HeaderValue>) {
    use hyper::header::{SET_COOKIE, STRICT_TRANSPORT_SECURITY};
    if let Some(hsts) = hsts {
        resp.headers_mut()
            .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    let insecure = |v: &HeaderValue| {
        !v.as_bytes()
            .split(|&b| b == b';')
            .skip(1)
            .any(|attr| attr.trim_ascii().eq_ignore_ascii_case(b"secure"))
    };
    if !resp.headers().get_all(SET_COOKIE).iter().any(insecure) {
        return;
    }
    let cookies: Vec<HeaderValue> = match resp.headers_mut().entry(SET_COOKIE) {
        hyper::header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
        hyper::header::Entry::Vacant(_) => return,
    };
    for c in cookies {
        let c = if insecure(&c) {
            let mut v = c.as_bytes().to_vec();
            v.extend_from_slice(b"; Secure");
            HeaderValue::from_bytes(&v).unwrap_or(c)
        } else {
            c
        };
        resp.headers_mut().append(SET_COOKIE, c);
    }
}

/// The default JSONP and iframe callback.
pub const DEFAULT_CALLBACK: &str = "tandemEvent";

/// tandem as a hyper service, to serve directly or mount in another server.
///
/// ```no_run
/// # async fn demo(hub: tandem::Hub, io: hyper_util::rt::TokioIo<tokio::net::TcpStream>) {
/// let svc = tandem::Service::new(hub).with_prefix("/push");
/// hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await.ok();
/// # }
/// ```
#[derive(Clone)]
pub struct Service {
    hub: Hub,
    config: Arc<HttpConfig>,
    prefix: Arc<str>,
    shutdown: Shutdown,
    app: Option<Arc<dyn App>>,
    /// Where requests outside the prefix go (`crate::proxy` sets it).
    proxy: Option<Arc<dyn Forward>>,
    /// Set on the clone that serves TLS connections: `Some(hsts)`.
    tls: Option<Option<HeaderValue>>,
    /// Signed channel tokens required, on which channels.
    /// (Behind a lock so that the secret can be rotated while serving:
    /// read for the microsecond of a check, never across an await.)
    tokens: Option<Arc<parking_lot::RwLock<TokenState>>>,
    /// The per-address limits of every connection this service (and its
    /// clones) serves, from `config` (`limits.rs`, `peer.rs`).
    limits: Arc<super::limits::Limits>,
}

/// The token policy, and for each secret it accepts a signal that fires
/// when that secret is dropped (`rotate_token_secret`), ending at once the
/// streams its tokens opened.
struct TokenState {
    policy: crate::token::TokenPolicy,
    current: Shutdown,
    previous: Shutdown,
}

/// What ends a stream opened with a token, besides shutdown: the token's
/// expiry (unix seconds), or the secret that signed it being dropped.
struct TokenEnd {
    expires: u64,
    dropped: Shutdown,
}

/// A request body on its way elsewhere, boxed whatever it was.
pub(crate) type ForwardBody = http_body_util::combinators::UnsyncBoxBody<Bytes, super::BoxError>;

/// Where a [`Service`] sends the requests outside its prefix: the reverse
/// proxy (`crate::proxy`, which sets it with `Service::with_proxy`). A
/// trait here so that this layer does not depend on the proxy's.
pub(crate) trait Forward: Send + Sync + 'static {
    /// The answer to a request outside the prefix. `stop` completes when
    /// the service shuts down.
    fn forward(
        &self,
        req: Request<ForwardBody>,
        stop: ShutdownSignal,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("prefix", &self.prefix)
            .finish()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<B> hyper::service::Service<Request<B>> for Service
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn call(&self, req: Request<B>) -> BoxFuture {
        let svc = self.clone();
        Box::pin(async move { Ok(svc.handle(req).await) })
    }
}

impl Service {
    /// A service over this hub, mounted at the root.
    pub fn new(hub: Hub) -> Service {
        let config = HttpConfig::default();
        Service {
            hub,
            limits: Arc::new(super::limits::Limits::new(&config)),
            config: Arc::new(config),
            prefix: Arc::from(""),
            shutdown: Shutdown::new(),
            app: None,
            proxy: None,
            tls: None,
            tokens: None,
        }
    }

    /// Requires signed channel tokens (`crate::token`) on the channels the
    /// policy names, on every subscribe, poll, info and publish.
    pub fn with_tokens(mut self, policy: crate::token::TokenPolicy) -> Service {
        self.tokens = Some(Arc::new(parking_lot::RwLock::new(TokenState {
            policy,
            current: Shutdown::new(),
            previous: Shutdown::new(),
        })));
        self
    }

    /// Rotates the token secret while serving ([`Signer::rotated`]): from
    /// now on tokens of `next`'s secret are accepted, and those of the
    /// secret before it still are, until the next rotation. Rotating to the
    /// same secret again refuses the previous one's tokens. Streams already
    /// open go on until their tokens expire, except those whose tokens the
    /// dropped secret signed: they end at once (cleanly; the client's next
    /// request needs a token of a secret still accepted). Every clone of
    /// this service (every connection) sees it. Returns whether a previous
    /// secret is still accepted; `false`, and nothing done, for a service
    /// without tokens.
    ///
    /// [`Signer::rotated`]: crate::token::Signer::rotated
    pub fn rotate_token_secret(&self, next: crate::token::Signer) -> bool {
        let Some(tokens) = &self.tokens else {
            return false;
        };
        let mut state = tokens.write();
        let same = state.policy.signer.same_secret(&next);
        state.policy.signer = state.policy.signer.rotated(next);
        // The previous secret, if there was one, is no longer accepted.
        std::mem::take(&mut state.previous).trigger();
        if !same {
            state.previous = std::mem::take(&mut state.current);
        }
        state.policy.signer.accepts_previous()
    }

    /// This service for connections over TLS: every cookie it sets gets
    /// `Secure`, and every answer `Strict-Transport-Security` if `hsts`.
    pub(crate) fn over_tls(mut self, hsts: Option<HeaderValue>) -> Service {
        self.tls = Some(hsts);
        self
    }

    /// Uses these HTTP settings (validated here) instead of the defaults.
    pub fn with_config(mut self, config: HttpConfig) -> Result<Service, ConfigError> {
        config.validate()?;
        self.limits = Arc::new(super::limits::Limits::new(&config));
        self.config = Arc::new(config);
        Ok(self)
    }

    /// The per-address limits (made from the config).
    pub(crate) fn limits(&self) -> &Arc<super::limits::Limits> {
        &self.limits
    }

    /// The HTTP settings this service runs with.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Mounts an application beside the push routes (see [`App`]): it answers
    /// the paths it claims and gates every channel access.
    pub fn with_app(mut self, app: Arc<dyn App>) -> Service {
        self.app = Some(app);
        self
    }

    /// Serves under a path prefix such as `/push`: `/push/ch/demo/sse`. Paths
    /// outside the prefix get 404 (or go to the upstream, with
    /// [`with_proxy`](Self::with_proxy), which sets its own prefix).
    pub fn with_prefix(mut self, prefix: &str) -> Service {
        self.prefix = Arc::from(prefix.trim_end_matches('/'));
        self
    }

    /// Sends every request outside `prefix` to `to` (the reverse proxy's
    /// `Service::with_proxy`, in `src/proxy/mod.rs`).
    pub(crate) fn with_forward(mut self, prefix: &str, to: Arc<dyn Forward>) -> Service {
        self.prefix = Arc::from(prefix);
        self.proxy = Some(to);
        self
    }

    /// The path with the prefix taken off, if it is one of tandem's own
    /// (`/push` and `/push/...` for the prefix `/push`, not `/pushy`).
    fn own_path<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(&*self.prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// Whether a request goes to tandem's own routes, not to the proxy's
    /// upstream (always, without a proxy). Only these may take the lean
    /// connection paths: a proxied answer streams through hyper.
    pub(crate) fn is_own_request(&self, uri: &hyper::Uri) -> bool {
        self.proxy.is_none() || self.own_path(uri.path()).is_some()
    }

    /// Whether requests outside the prefix go to an upstream.
    pub(crate) fn is_proxy(&self) -> bool {
        self.proxy.is_some()
    }

    /// Uses this shutdown signal instead of the service's own, to share it
    /// with other parts of a program.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Service {
        self.shutdown = shutdown;
        self
    }

    /// The signal that ends this service's streams and answers its
    /// long-polls at once: [`crate::serve`] triggers it on its graceful
    /// shutdown; an embedder serving with hyper directly triggers it itself.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The hub this service serves.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn shutdown_signal(&self) -> Option<ShutdownSignal> {
        Some(Box::pin(self.shutdown.wait()))
    }

    /// What ends a stream: shutdown, its token's expiry (unix seconds) or
    /// the secret that signed the token being dropped, whichever comes
    /// first. Each ends it cleanly (the format's closing bytes), so the
    /// client reconnects and resumes from its cursor.
    fn stream_end(&self, token: Option<TokenEnd>) -> Option<ShutdownSignal> {
        let Some(token) = token else {
            return self.shutdown_signal();
        };
        let stop = self.shutdown.wait();
        let dropped = token.dropped.wait();
        let left = time_left(token.expires);
        Some(Box::pin(async move {
            tokio::select! {
                _ = stop => {}
                _ = dropped => {}
                _ = tokio::time::sleep(left) => {}
            }
        }))
    }

    /// How a request (by method, path and `Accept`) subscribes, if it does:
    /// `Some(true)` for an endless stream (a GET of `/multipart`, `/mixed`,
    /// `/sse`, `/iframe`, or of `/ch/{c}` negotiated to one of them),
    /// `Some(false)` for a long-poll (`/poll`, `/jsonp`, or negotiated). The
    /// server serves both on its lean connection path (`server/lean.rs`)
    /// instead of through hyper.
    pub(crate) fn subscribes(
        &self,
        method: &Method,
        uri: &hyper::Uri,
        headers: &HeaderMap,
    ) -> Option<bool> {
        if method != Method::GET {
            return None;
        }
        let path = self.own_path(uri.path())?;
        let sub = match parse_path(path) {
            Ok(Some(Route::Subscribe(_, sub))) => sub,
            Ok(Some(Route::Channel(_))) => negotiate(headers),
            _ => return None,
        };
        Some(!matches!(sub, Sub::Poll | Sub::Jsonp))
    }

    /// Whether a POST to `uri` is a publish (for the per-address limit):
    /// `/ch/{c}` by its shape, whatever `c` is (a POST with a bad name is
    /// refused, and counts like any other). No `parse_path`: it allocates
    /// the name, a tenth of a publish's cost.
    pub(crate) fn is_publish_request(&self, uri: &hyper::Uri) -> bool {
        self.own_path(uri.path())
            .and_then(|p| p.strip_prefix("/ch/"))
            .is_some_and(|c| !c.is_empty() && !c.contains('/'))
    }

    /// Whether a request opens a session of the mounted app (for the
    /// per-address limit). The app's own test first: it is a comparison of
    /// two paths, where `claims` may look further.
    pub(crate) fn opens_session(&self, method: &Method, uri: &hyper::Uri) -> bool {
        match (&self.app, self.own_path(uri.path())) {
            (Some(app), Some(path)) => app.opens_session(method, path) && app.claims(path),
            _ => false,
        }
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut resp = self.answer(req).await;
        if let Some(hsts) = &self.tls {
            secure_answer(&mut resp, hsts.as_ref());
        }
        resp
    }

    async fn answer<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(e) = self.url_too_long(req.uri()) {
            return super::error_response(&e);
        }
        if let Some(proxy) = &self.proxy {
            if self.own_path(req.uri().path()).is_none() {
                use http_body_util::BodyExt;
                // An upload that stops is cut after `--body-timeout`
                // without a byte (the proxy answers 408).
                let stall = self.config.body_timeout;
                let mut req =
                    req.map(|b| super::read::Stalling::new(Box::pin(b), stall).boxed_unsync());
                if self.tls.is_some() {
                    req.extensions_mut().insert(crate::proxy::OverTls);
                }
                return proxy.forward(req, Box::pin(self.shutdown.wait())).await;
            }
        }
        let origin = cors::classify(req.headers(), &self.config);
        let mut resp = match self.route(req, &origin).await {
            Ok(r) => r,
            Err(e) => super::error_response(&e),
        };
        cors::decorate(&mut resp, &origin);
        resp
    }

    /// A request target over `max_url_bytes`, on whichever path the
    /// request came (a head too large as a whole is refused before it gets
    /// here: `server/sniff.rs`, or hyper's `max_header_size`).
    fn url_too_long(&self, uri: &hyper::Uri) -> Option<Error> {
        let max = self.config.max_url_bytes;
        let len = uri.path_and_query().map_or(0, |p| p.as_str().len())
            + uri.authority().map_or(0, |a| a.as_str().len());
        (len > max).then(|| Error::uri_too_long(format!("url too long (max {max} bytes)")))
    }

    async fn route<B>(&self, req: Request<B>, origin: &Origin) -> Result<Response<Body>, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let not_found = || Error::not_found("no such route (see GET / for the routes)");
        let path = self.own_path(req.uri().path()).ok_or_else(not_found)?;
        if let Some(app) = self.app.as_ref().filter(|a| a.claims(path)) {
            let path = path.to_string();
            let mut req = req;
            if *origin == Origin::Denied {
                req.extensions_mut().insert(super::OriginDenied);
            }
            return Ok(app
                .serve(
                    &path,
                    super::app::read_body(req, self.config.body_timeout).await?,
                )
                .await);
        }
        let route = parse_path(path)?.ok_or_else(not_found)?;
        let query = Query::parse(req.uri().query().unwrap_or(""))?;
        let method = req.method().clone();
        // (allowed list, POST, HEAD, OPTIONS)
        let (allow, post, head, options) = match &route {
            Route::Channel(_) => ("GET, POST, OPTIONS", true, false, true),
            Route::Subscribe(..) => ("GET, OPTIONS", false, false, true),
            // Monitoring and proxies probe with HEAD; hyper sends no body for it.
            _ => ("GET, HEAD", false, true, false),
        };
        if method == Method::OPTIONS && options {
            return Ok(cors::preflight(origin, allow));
        }
        let allowed = method == Method::GET
            || (method == Method::POST && post)
            || (method == Method::HEAD && head);
        if !allowed {
            let mut resp = super::error_response(&Error::method_not_allowed(format!(
                "method {method} not allowed here (allowed: {allow})"
            )));
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return Ok(resp);
        }
        if let (Some(app), Route::Channel(c) | Route::Subscribe(c, _) | Route::Info(c)) =
            (&self.app, &route)
        {
            let write = method == Method::POST && matches!(route, Route::Channel(_));
            let access = if write { Access::Write } else { Access::Read };
            if let Some(ready) = app.before_gate(c, req.headers()) {
                ready.await?;
            }
            app.gate(c, access, req.headers())?;
        }
        // Signed channel tokens: on every request, whichever path it came by
        // (the lean paths call `handle` too); a stream ends at the expiry.
        let mut token = None;
        if let (Some(tokens), Route::Channel(c) | Route::Subscribe(c, _) | Route::Info(c)) =
            (&self.tokens, &route)
        {
            // An app's own channels are guarded by its credentials instead.
            let app_gated = self.app.as_ref().is_some_and(|a| a.gates_channel(c));
            if !app_gated {
                let publish = method == Method::POST && matches!(route, Route::Channel(_));
                let right = if publish {
                    crate::token::Right::Publish
                } else {
                    crate::token::Right::Subscribe
                };
                let state = tokens.read();
                let checked = state.policy.check(
                    c,
                    right,
                    req.headers(),
                    req.uri().query(),
                    query.client.as_deref(),
                )?;
                token = checked.map(|c| TokenEnd {
                    expires: c.expires,
                    dropped: match c.by_previous {
                        true => state.previous.clone(),
                        false => state.current.clone(),
                    },
                });
            }
        }
        match route {
            Route::Static(path) => {
                let asset = super::assets::find(&path).ok_or_else(not_found)?;
                let mut resp = body::with_type(
                    StatusCode::OK,
                    asset.content_type,
                    Bytes::from_static(asset.bytes),
                );
                resp.headers_mut().insert(
                    hyper::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache"),
                );
                Ok(resp)
            }
            Route::Health if self.hub.backplane_up() => {
                Ok(body::json(StatusCode::OK, "{\"status\":\"ok\"}"))
            }
            Route::Health => Err(Error::unavailable(
                "the backplane (redis) is unreachable: publishes are refused until it is back",
            )),
            Route::Metrics => {
                let mut text = self.hub.metrics().render(self.hub.channel_count());
                // A node cut off from Redis still tells its own figures.
                if let Some(Ok(c)) = self.hub.cluster(None).await {
                    text.push_str(&format!(
                        "# HELP tandem_cluster_nodes Nodes sharing the channels through redis that reported lately.\n# TYPE tandem_cluster_nodes gauge\ntandem_cluster_nodes {}\n\
                         # HELP tandem_cluster_subscribers Subscribers on all those nodes.\n# TYPE tandem_cluster_subscribers gauge\ntandem_cluster_subscribers {}\n",
                        c.nodes, c.subscribers
                    ));
                }
                let mut resp = body::with_type(StatusCode::OK, "text/plain; version=0.0.4", text);
                body::no_cache(&mut resp);
                Ok(resp)
            }
            Route::Info(c) => {
                // A node cut off from Redis still tells its own figures.
                let cluster = self.hub.cluster(Some(&c)).await.and_then(Result::ok);
                Ok(self.info(&c, cluster))
            }
            Route::Channel(c) if method == Method::POST => {
                self.publish(&c, &query, req, origin).await
            }
            Route::Channel(c) => {
                let sub = negotiate(req.headers());
                self.subscribe(&c, sub, &query, req.headers(), token).await
            }
            Route::Subscribe(c, sub) => self.subscribe(&c, sub, &query, req.headers(), token).await,
        }
    }

    fn info(&self, channel: &str, cluster: Option<crate::Cluster>) -> Response<Body> {
        let info = self.hub.info(channel);
        // `null` for a channel that does not exist (yet).
        let epoch = info
            .epoch
            .map_or_else(|| "null".to_string(), |e| format!("\"{e}\""));
        let mut s = format!(
            "{{\"channel\":\"{channel}\",\"epoch\":{epoch},\"last_id\":{},\"buffered\":{},\"subscribers\":{{",
            info.last_id, info.buffered
        );
        for (i, t) in Transport::ALL.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("\"{}\":{}", t.name(), info.subscribers[i]));
        }
        s.push_str(&format!(
            "}},\"total\":{}",
            info.subscribers.iter().sum::<usize>()
        ));
        if let Some(c) = cluster {
            // With --redis: every node's subscribers, as they last reported.
            s.push_str(&format!(
                ",\"cluster\":{{\"nodes\":{},\"subscribers\":{}}}",
                c.nodes, c.subscribers
            ));
        }
        s.push('}');
        body::json(StatusCode::OK, s)
    }

    async fn publish<B>(
        &self,
        channel: &str,
        query: &Query,
        req: Request<B>,
        origin: &Origin,
    ) -> Result<Response<Body>, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if *origin == Origin::Denied {
            return Err(Error::forbidden("origin not allowed (see --allow-origin)"));
        }
        let cfg = self.hub.config();
        let headers = req.headers();
        let kind = BodyKind::from_content_type(match headers.get(CONTENT_TYPE) {
            Some(v) => Some(v.to_str().map_err(|_| {
                Error::bad_request("invalid content-type header (printable ascii only)")
            })?),
            None => None,
        })?;
        // A constant name: looking up by `&str` parses and hashes it anew.
        const EVENT_TYPE: HeaderName = HeaderName::from_static("event-type");
        let header_type = match headers.get(EVENT_TYPE) {
            Some(v) => {
                let t = v
                    .to_str()
                    .map_err(|_| Error::bad_request("invalid Event-Type header"))?;
                check_type(t)?;
                Some(t.to_string())
            }
            None => None,
        };
        let default_type = query
            .kind
            .clone()
            .or(header_type)
            .unwrap_or_else(|| "message".into());
        let max = kind.max_body(cfg);
        let too_large = || match kind {
            BodyKind::Multipart(_) => Error::too_large(format!("body too large (max {max} bytes)")),
            _ => Error::too_large(format!(
                "event too large (max {} bytes)",
                cfg.max_event_bytes
            )),
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let data = match read_all(req.into_body(), max, self.config.body_timeout).await {
            Ok(data) => data,
            Err(ReadError::TooLarge) => return Err(too_large()),
            Err(ReadError::TooSlow) => return Err(super::read::too_slow(self.config.body_timeout)),
            Err(ReadError::Failed) => {
                return Err(Error::bad_request("could not read the request body"))
            }
        };
        let mut events = match kind {
            // One event (raw or form): no list to allocate on the hot path.
            BodyKind::Raw(content_type) => Events::One(NewEvent {
                kind: default_type,
                data,
                content_type,
                from: None,
            }),
            BodyKind::Form => Events::One(parse_form(&data, &default_type, cfg)?),
            BodyKind::Multipart(boundary) => {
                Events::Many(parse_multipart(data, &boundary, &default_type, cfg).await?)
            }
        };
        let list = match &mut events {
            Events::One(e) => std::slice::from_mut(e),
            Events::Many(v) => v.as_mut_slice(),
        };
        for e in list.iter_mut() {
            e.from = query.client.clone();
            self.hub.validate(channel, e)?;
        }
        // Every event was validated above: publish them all or none.
        let body = match events {
            Events::One(e) => id_json(self.hub.publish_checked(channel, e).await?.id()),
            Events::Many(list) => {
                let mut ids = Vec::with_capacity(list.len());
                for e in list {
                    ids.push(self.hub.publish_checked(channel, e).await?.id().to_string());
                }
                Bytes::from(format!("{{\"ids\":[{}]}}", ids.join(",")))
            }
        };
        // A POST answer is never cached (RFC 9111 needs explicit freshness for
        // that), so it goes without the stream headers: this is the hot
        // response of a publisher, and each header costs on every publish.
        let mut resp = body::with_type(StatusCode::ACCEPTED, "application/json", body);
        resp.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        Ok(resp)
    }

    async fn subscribe(
        &self,
        channel: &str,
        sub: Sub,
        query: &Query,
        headers: &HeaderMap,
        token: Option<TokenEnd>,
    ) -> Result<Response<Body>, Error> {
        let cfg = self.hub.config();
        // `EPOCH:ID` (what an SSE stream's `id:` lines carry) or a bare `ID`.
        let last_event_id = match headers.get("last-event-id") {
            Some(v) => Some(Cursor::parse_in(
                "Last-Event-ID",
                String::from_utf8_lossy(v.as_bytes()).trim(),
            )?),
            None => None,
        };
        let transport = match sub {
            Sub::Multipart => Transport::Multipart,
            Sub::Mixed => Transport::Mixed,
            Sub::Sse => Transport::Sse,
            Sub::Poll => Transport::Poll,
            Sub::Jsonp => Transport::Jsonp,
            Sub::Iframe => Transport::Iframe,
        };
        let opts = SubscribeOptions {
            since: query.since.or(last_event_id),
            backlog: query.backlog,
            client: query.client.clone(),
            transport,
        };
        let subscription = self.hub.subscribe(channel, opts)?;
        let guard = OpenGuard::new(&self.hub, transport);
        let callback = query.callback.as_deref().unwrap_or(DEFAULT_CALLBACK);
        let padding = cfg.stream_padding;
        let (content_type, style, prelude) = match sub {
            Sub::Poll | Sub::Jsonp => {
                return Ok(self
                    .poll(
                        subscription,
                        sub,
                        query,
                        callback,
                        guard,
                        token.map(|t| t.expires),
                    )
                    .await)
            }
            Sub::Multipart => (
                multipart::content_type(false),
                Style::Multipart {
                    image: wants_image(headers),
                },
                multipart::prelude(padding),
            ),
            Sub::Mixed => (
                multipart::content_type(true),
                Style::Multipart { image: false },
                multipart::prelude(padding),
            ),
            Sub::Sse => {
                let retry_ms = cfg.sse_retry.as_millis() as u64;
                (
                    sse::CONTENT_TYPE.to_string(),
                    Style::Sse {
                        retry_ms,
                        envelope: query.envelope,
                    },
                    if query.envelope {
                        sse::envelope_prelude(padding, retry_ms)
                    } else {
                        sse::prelude(padding, retry_ms)
                    },
                )
            }
            Sub::Iframe => (
                iframe::CONTENT_TYPE.to_string(),
                Style::Iframe {
                    open: iframe::script_open(callback),
                },
                iframe::prelude(padding),
            ),
        };
        let stream = EventStream::new(
            subscription,
            style,
            prelude,
            cfg.heartbeat,
            self.stream_end(token),
            guard,
        );
        let mut resp = Response::new(Body::stream(stream));
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&content_type).expect("ascii content type"),
        );
        resp.headers_mut().insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        body::no_cache(&mut resp);
        Ok(resp)
    }

    async fn poll(
        &self,
        mut subscription: crate::router::Subscription,
        sub: Sub,
        query: &Query,
        callback: &str,
        _guard: OpenGuard,
        expires: Option<u64>,
    ) -> Response<Body> {
        let cfg = self.hub.config();
        let mut timeout = query
            .timeout
            .unwrap_or(cfg.poll_timeout)
            .min(cfg.poll_timeout_max);
        // A poll held past its token's expiry would read as the token's
        // holder for longer than it was allowed: it is answered (empty, with
        // its cursor) at the expiry, as a stream ends then, and the client
        // polls again with a fresh token.
        if let Some(exp) = expires {
            timeout = timeout.min(time_left(exp));
        }
        let first = match subscription.try_next() {
            Some(d) => Some(d),
            None if timeout.is_zero() => None,
            None => {
                tokio::select! {
                    // `None` when the channel is closed: answer at once.
                    d = std::future::poll_fn(|cx| {
                        futures_core::Stream::poll_next(Pin::new(&mut subscription), cx)
                    }) => d,
                    _ = tokio::time::sleep(timeout) => None,
                    _ = self.shutdown.wait() => None,
                }
            }
        };
        let mut frames = Vec::new();
        let mut next = first;
        while let Some(d) = next {
            frames.push(match d {
                Delivery::Event(e) => transport::frame(&e, Format::Json),
                Delivery::Gap(g) => json::encode_gap(&g),
            });
            next = if frames.len() < cfg.poll_batch {
                subscription.try_next()
            } else {
                None
            };
        }
        let mut chunks = json::poll_chunks(frames, subscription.cursor());
        let mut resp = if sub == Sub::Jsonp {
            chunks.insert(0, Bytes::from(format!("/**/{callback}(")));
            chunks.push(Bytes::from_static(b");"));
            body::with_type(
                StatusCode::OK,
                "application/javascript; charset=utf-8",
                Body::chunks(chunks),
            )
        } else {
            body::with_type(StatusCode::OK, "application/json", Body::chunks(chunks))
        };
        self.hub.metrics().bytes_written.add(
            hyper::body::Body::size_hint(resp.body())
                .exact()
                .unwrap_or(0),
        );
        resp.headers_mut().insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        body::no_cache(&mut resp);
        resp
    }
}

/// How long until `exp` (unix seconds), zero once it has passed.
fn time_left(exp: u64) -> std::time::Duration {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp);
    at.duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
}

/// Whether a request comes from an `<img>`: every browser's image `Accept`
/// starts with `image/` (`image/avif,image/webp,...,*/*;q=0.8`), and nothing
/// else's does. See `Style::Multipart` for what changes.
fn wants_image(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.trim_start().to_ascii_lowercase().starts_with("image/"))
}

/// The transport `GET /ch/{c}` picks from `Accept`.
pub(crate) fn negotiate(headers: &HeaderMap) -> Sub {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if accept.contains("text/event-stream") {
        Sub::Sse
    } else if accept.contains("multipart/mixed") {
        Sub::Mixed
    } else if accept.contains("multipart/x-mixed-replace") {
        Sub::Multipart
    } else {
        Sub::Poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_answers() {
        for id in [0, 1, 9, 10, 12_345, u64::MAX] {
            assert_eq!(&id_json(id)[..], format!("{{\"id\":{id}}}").as_bytes());
        }
    }
}
