//! tandem as a transparent reverse proxy in front of one web application.
//!
//! `tandem serve --upstream http://127.0.0.1:9000`, or in a program
//! [`crate::Service::with_proxy`]: tandem's own routes move under a prefix
//! (`/_tandem` by default) and every other request goes to the upstream over
//! hyper's HTTP/1 client, streamed both ways (nothing is buffered whole).
//!
//! * `config.rs`: [`Upstream`] and [`ProxyConfig`].
//! * `tls.rs`: TLS to an `https://` upstream (rustls; the system's CA
//!   certificates or `--upstream-ca`), set up once, a handshake per
//!   connection.
//! * `headers.rs`: hop-by-hop headers, `Location`, `Set-Cookie` (pure).
//! * `inject.rs`: the co-browsing scripts streamed into HTML pages, in any
//!   content encoding and charset, with the CSP adjusted (pure).
//! * this file: the refusals that keep it from being an open proxy, the
//!   request and response rewriting, the upstream connection pool, and
//!   `transform_body`, the one place where responses are changed: HTML
//!   pages get the co-browsing scripts (`inject.rs`).
//!
//! `docs/proxy.md` says what the proxy changes and what it refuses.

mod config;
mod headers;
pub(crate) mod inject;
mod tls;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self as client, SendRequest};
use hyper::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LOCATION, CONTENT_SECURITY_POLICY,
    CONTENT_SECURITY_POLICY_REPORT_ONLY, COOKIE, HOST, LOCATION, SET_COOKIE, TE, X_FRAME_OPTIONS,
};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

pub use config::{ProxyConfig, Upstream};

use crate::cobrowse::proxied::{self, Role};
use crate::error::Error;
use crate::http::{error_response, Body, BoxError, Forward, ForwardBody};
use crate::Service;

/// The client's address, put in a request's extensions by whoever accepted
/// the connection ([`crate::serve`] does; an embedder serving with hyper
/// directly inserts it itself). The proxy appends it to `X-Forwarded-For`;
/// without it, `X-Forwarded-For` is passed on as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// Marks a request that came over TLS (the service serving TLS connections
/// inserts it before forwarding): the upstream is told
/// `X-Forwarded-Proto: https`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverTls;

/// What a request body becomes on its way upstream.
type UpBody = ForwardBody;

/// Completes when the service shuts down.
type Stop = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Service {
    /// Puts this service in front of one web application as a transparent
    /// reverse proxy (validating the settings): tandem's own routes, and a
    /// mounted app's, move under [`ProxyConfig::prefix`] (`/_tandem` by
    /// default), and every other request goes to the upstream, streamed
    /// both ways. See `docs/proxy.md`.
    ///
    /// ```
    /// use tandem::proxy::ProxyConfig;
    /// let hub = tandem::Hub::new(tandem::Config::default()).unwrap();
    /// let proxy = ProxyConfig::new("http://127.0.0.1:9000".parse().unwrap())
    ///     .hosts(vec!["127.0.0.1:8080".into()]);
    /// let svc = tandem::Service::new(hub).with_proxy(proxy).unwrap();
    /// # drop(svc);
    /// ```
    pub fn with_proxy(self, config: ProxyConfig) -> Result<Service, crate::ConfigError> {
        let proxy = Arc::new(Proxy::new(config)?);
        let prefix = proxy.cfg.prefix.clone();
        Ok(self.with_forward(&prefix, Arc::new(Forwarder(proxy))))
    }
}

/// The proxy as the service's [`Forward`].
struct Forwarder(Arc<Proxy>);

impl Forward for Forwarder {
    fn forward(
        &self,
        req: Request<ForwardBody>,
        stop: Stop,
    ) -> Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>> {
        let proxy = Arc::clone(&self.0);
        Box::pin(async move { proxy.forward(req, stop).await })
    }
}

/// A configured proxy: the settings and the idle upstream connections.
pub(crate) struct Proxy {
    cfg: ProxyConfig,
    authority: HeaderValue,
    /// The TLS client of an `https://` upstream, built once.
    tls: Option<tls::Tls>,
    idle: Mutex<Vec<SendRequest<UpBody>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.cfg.upstream)
            .finish()
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Proxy {
    /// A proxy with these (validated) settings.
    pub(crate) fn new(cfg: ProxyConfig) -> Result<Proxy, crate::ConfigError> {
        cfg.validate()?;
        if let Some(cb) = &cfg.cobrowse {
            cb.keep_jars();
        }
        let authority = HeaderValue::from_str(&cfg.upstream.authority())
            .expect("a validated upstream is ascii");
        let tls = tls::Tls::new(&cfg)?;
        Ok(Proxy {
            cfg,
            authority,
            tls,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Answers a request outside tandem's prefix: refused if it could reach
    /// anything but the upstream, else the upstream's answer.
    async fn forward(self: &Arc<Self>, req: Request<UpBody>, stop: Stop) -> Response<Body> {
        match self.try_forward(req, stop).await {
            Ok(resp) => resp,
            Err(e) => {
                if e.is_bad_gateway() || e.is_gateway_timeout() {
                    log::warn!("proxy: {e}");
                }
                error_response(&e)
            }
        }
    }

    async fn try_forward(
        self: &Arc<Self>,
        req: Request<UpBody>,
        stop: Stop,
    ) -> Result<Response<Body>, Error> {
        let host = self.check(&req)?;
        let role = match &self.cfg.cobrowse {
            Some(cb) => {
                // With --redis: what the request names, and its jar, from Redis.
                cb.prepare_proxied(req.uri(), req.headers()).await?;
                cb.role(req.uri(), req.headers())?
            }
            None => Role::Plain,
        };
        // A HEAD answer has no page to put the scripts in.
        let head = req.method() == Method::HEAD;
        let (mut parts, body) = req.into_parts();
        let method = parts.method.clone();
        let path = parts.uri.path().to_string();
        let target = match &role {
            Role::View { .. } => proxied::without_view(&parts.uri),
            _ => parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
        };
        let hand_over = match self.cookies_for(&role, &method, &target, &path, &mut parts.headers) {
            Ok(lines) => lines,
            Err(e) => {
                // A refusal leaves once its audit line is written.
                self.audited().await;
                return Err(e);
            }
        };
        self.persist_jar(&role).await;
        let trailers = headers::wants_trailers(&parts.headers);
        headers::strip_hop_by_hop(&mut parts.headers);
        if trailers {
            parts
                .headers
                .insert(TE, HeaderValue::from_static("trailers"));
        }
        let h = &mut parts.headers;
        if let Some(ClientAddr(peer)) = parts.extensions.get::<ClientAddr>() {
            let ip = peer.ip().to_string();
            // Every earlier hop's, in order, then this client's.
            let mut joined: Vec<&str> = h
                .get_all(X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            joined.push(&ip);
            let joined = joined.join(", ");
            h.remove(X_FORWARDED_FOR);
            if let Ok(v) = HeaderValue::from_str(&joined) {
                h.insert(X_FORWARDED_FOR, v);
            }
        }
        let proto = match parts.extensions.get::<OverTls>() {
            Some(OverTls) => "https",
            None => "http",
        };
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        h.insert(X_FORWARDED_HOST, host);
        h.insert(HOST, self.authority.clone());
        parts.uri = Uri::try_from(target.as_str())
            .map_err(|_| Error::bad_request("invalid request target"))?;
        parts.version = hyper::Version::HTTP_11;
        parts.extensions = Default::default();
        // The upstream-timeout runs from the end of the request body: an
        // upload may take longer than that to send.
        let sent_whole = Arc::new(tokio::sync::Notify::new());
        let body = Tracked::new(body, Arc::clone(&sent_whole));
        let (mut sender, reused) = self.connection().await?;
        // A GET or HEAD without a body on a kept-alive connection may be
        // sent again if that connection turns out to be dead (the upstream
        // closed it as we wrote: RFC 9110 §9.2.2, idempotent), so keep its
        // head.
        let again = (reused
            && (parts.method == Method::GET || parts.method == Method::HEAD)
            && body.is_end_stream())
        .then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
        let req = Request::from_parts(parts, body.boxed_unsync());

        let timeout = self.cfg.response_timeout;
        let late = || {
            Error::gateway_timeout(format!(
                "upstream {} sent no answer within {timeout:?} (upstream-timeout)",
                self.cfg.upstream
            ))
        };
        let failed = |e: hyper::Error| {
            // The client's upload stopped: its fault, not the upstream's.
            if let Some(stalled) = stalled_body(&e) {
                return Error::request_timeout(stalled.to_string());
            }
            Error::bad_gateway(format!("upstream {} failed: {e}", self.cfg.upstream))
        };
        let deadline = || async {
            sent_whole.notified().await;
            tokio::time::sleep(timeout).await;
        };
        let sent = tokio::select! {
            r = sender.try_send_request(req) => Ok(r),
            () = deadline() => Err(()),
        };
        let resp = match sent {
            Err(()) => return Err(late()),
            Ok(Ok(r)) => r,
            // An idle connection the upstream had closed, noticed only now:
            // the request was not sent, so it goes once more on a new one.
            Ok(Err(mut e)) if reused && e.message().is_some() => {
                let req = e.take_message().expect("checked");
                log::debug!(
                    "proxy: idle upstream connection gone ({}); retrying",
                    e.error()
                );
                sender = self.connect().await?;
                tokio::select! {
                    r = sender.send_request(req) => r.map_err(failed)?,
                    () = deadline() => return Err(late()),
                }
            }
            // Sent on a kept-alive connection that was dead by then, with no
            // answer: a bodiless GET or HEAD goes once more on a new one.
            Ok(Err(e)) if again.is_some() && !e.error().is_parse() && !e.error().is_user() => {
                let (method, uri, headers) = again.expect("checked");
                log::debug!(
                    "proxy: kept-alive upstream connection died ({}); sending {method} again",
                    e.error()
                );
                let mut req = Request::new(
                    http_body_util::Empty::new()
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                );
                *req.method_mut() = method;
                *req.uri_mut() = uri;
                *req.headers_mut() = headers;
                sender = self.connect().await?;
                tokio::select! {
                    r = sender.send_request(req) => r.map_err(failed)?,
                    () = tokio::time::sleep(timeout) => return Err(late()),
                }
            }
            Ok(Err(e)) => return Err(failed(e.into_error())),
        };
        let (mut parts, body) = resp.into_parts();
        // The version is per hop: tandem answers in its own (hyper writes
        // HTTP/1.0 to a 1.0 client), whatever the upstream spoke.
        parts.version = hyper::Version::HTTP_11;
        self.rewrite_response(&mut parts.headers);
        let page = self.shared_answer(&role, &method, &target, &path, &mut parts, hand_over);
        self.persist_jar(&role).await;
        if matches!(role, Role::View { .. }) {
            // What was done with the customer's session is on record before
            // the agent sees it.
            self.audited().await;
        }
        let sender = if hyper::body::Body::is_end_stream(&body) {
            // Nothing to read (HEAD, 204, 304): the connection is free now.
            self.give_back(sender);
            None
        } else {
            Some(sender)
        };
        // An answer of known length is in flight and may finish within the
        // shutdown timeout; one without (a stream, perhaps endless) is cut
        // when the service shuts down, as tandem's own streams end then.
        let stop = body.size_hint().exact().is_none().then_some(stop);
        let body = Returning {
            body,
            sender,
            stop,
            proxy: Arc::clone(self),
        };
        Ok(self.transform_body(Response::from_parts(parts, body), page && !head))
    }

    /// With --redis, writes what the request or its answer changed in its
    /// help session's jar.
    async fn persist_jar(&self, role: &Role) {
        if let (Some(cb), Role::Customer(id) | Role::View { id, .. }) = (&self.cfg.cobrowse, role) {
            cb.persist_jar(id).await;
        }
    }

    /// Waits until co-browsing's audit lines so far are written.
    async fn audited(&self) {
        if let Some(cb) = &self.cfg.cobrowse {
            cb.audited().await;
        }
    }

    /// The `Cookie` header a request goes upstream with: without tandem's
    /// own cookies; for a page of an agent's view, the customer's from the
    /// jar (or the refusal of a method the customer has not allowed); for
    /// a customer, theirs, which the jar learns. Returns the `Set-Cookie`
    /// lines the customer's browser is to get with the answer (cookies the
    /// agent's view changed).
    fn cookies_for(
        &self,
        role: &Role,
        method: &Method,
        target: &str,
        path: &str,
        h: &mut hyper::HeaderMap,
    ) -> Result<Vec<String>, Error> {
        let Some(cb) = &self.cfg.cobrowse else {
            return Ok(Vec::new());
        };
        let mut hand_over = Vec::new();
        let ours = proxied::OWN_COOKIES.as_bytes();
        let carries_ours = h
            .get_all(COOKIE)
            .iter()
            .any(|v| v.as_bytes().windows(ours.len()).any(|w| w == ours));
        if *role == Role::Plain && !carries_ours {
            // The common case: nothing to learn, nothing to take out.
            return Ok(hand_over);
        }
        let sent = proxied::app_cookies(h);
        let replaced = match role {
            Role::View { id, agent } => Some(cb.view_request(id, agent, method, target, path)?),
            Role::Customer(id) => {
                let (instead, lines) = cb.customer_request(id, path, &sent);
                hand_over = lines;
                instead.map(Some)
            }
            Role::Plain => None,
        };
        let header = match replaced {
            Some(header) => header,
            // Untouched unless it carried one of tandem's own cookies.
            None if !carries_ours => return Ok(hand_over),
            None => Some(
                sent.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        h.remove(COOKIE);
        if let Some(v) = header
            .filter(|v| !v.is_empty())
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            h.insert(COOKIE, v);
        }
        Ok(hand_over)
    }

    /// Co-browsing's part of an answer, its headers already rewritten: the
    /// cookies the application set go into the help session's jar; an
    /// answer to an agent's view loses them (the agent's browser never gets
    /// a cookie of the customer's), stays in the view when it redirects,
    /// may be framed by the agent's console, is never stored, and is
    /// audited. Whether the answer gets the co-browsing scripts (pages of an
    /// agent's view do not: the console drives them from outside).
    fn shared_answer(
        &self,
        role: &Role,
        method: &Method,
        target: &str,
        path: &str,
        parts: &mut hyper::http::response::Parts,
        hand_over: Vec<String>,
    ) -> bool {
        let Some(cb) = &self.cfg.cobrowse else {
            return true;
        };
        let h = &mut parts.headers;
        let set = || -> Vec<String> {
            h.get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect()
        };
        match role {
            Role::Plain => true,
            Role::Customer(id) => {
                let set = set();
                cb.customer_answer(id, path, &set);
                if !hand_over.is_empty() {
                    // Ours first: the application's own word on a cookie comes later and wins.
                    let theirs: Vec<HeaderValue> = h.get_all(SET_COOKIE).iter().cloned().collect();
                    h.remove(SET_COOKIE);
                    for line in hand_over {
                        if let Ok(v) = HeaderValue::from_str(&line) {
                            h.append(SET_COOKIE, v);
                        }
                    }
                    for v in theirs {
                        h.append(SET_COOKIE, v);
                    }
                }
                true
            }
            Role::View { id, agent } => {
                let set = set();
                h.remove(SET_COOKIE);
                cb.view_answer(id, agent, method, target, path, parts.status.as_u16(), &set);
                let location = h
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| proxied::keep_in_view(l, id))
                    .and_then(|l| HeaderValue::from_str(&l).ok());
                if let Some(l) = location {
                    h.insert(LOCATION, l);
                }
                if h.contains_key(X_FRAME_OPTIONS) {
                    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
                }
                for name in [CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REPORT_ONLY] {
                    let policies: Vec<HeaderValue> = h
                        .get_all(&name)
                        .iter()
                        .map(|v| {
                            v.to_str()
                                .ok()
                                .and_then(headers::allow_self_framing)
                                .and_then(|p| HeaderValue::from_str(&p).ok())
                                .unwrap_or_else(|| v.clone())
                        })
                        .collect();
                    h.remove(&name);
                    for p in policies {
                        h.append(&name, p);
                    }
                }
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                false
            }
        }
    }

    /// Every response from the upstream passes through here, its headers
    /// already rewritten and its body still a stream: an HTML page gets the
    /// co-browsing scripts (`inject.rs`: streaming, in its content encoding
    /// and charset, the CSP given a nonce for them), so "Get help" appears
    /// without changing the application; anything else passes as it is.
    fn transform_body<B>(&self, resp: Response<B>, page: bool) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: Into<inject::BoxError>,
    {
        if !page || !inject::is_page(resp.status(), resp.headers()) {
            return resp.map(|b| Body::proxied(b.map_err(Into::into)));
        }
        let prefix = &self.cfg.prefix;
        let scripts = inject::Scripts::new(&[
            &format!("{prefix}/tandem.js"),
            &format!("{prefix}/cobrowse.js"),
        ]);
        inject::inject(resp, &scripts).map(Body::proxied)
    }

    /// The refusals that keep this from being an open proxy; the `Host`
    /// the client named, when it is one the proxy answers to.
    fn check<B>(&self, req: &Request<B>) -> Result<HeaderValue, Error> {
        if req.method() == Method::CONNECT {
            return Err(Error::method_not_allowed(
                "connect is refused: tandem is a reverse proxy for its one upstream, not a forward proxy",
            ));
        }
        let uri = req.uri();
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Err(Error::bad_request(
                "absolute-form request targets are refused: tandem is a reverse proxy for its one upstream, not a forward proxy",
            ));
        }
        if !uri.path().starts_with('/') {
            return Err(Error::bad_request("request target must be a path"));
        }
        let mut hosts = req.headers().get_all(HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return Err(Error::bad_request(
                "exactly one host header is required in front of the upstream",
            ));
        };
        match host.to_str() {
            Ok(h) if self.cfg.accepts_host(h) => Ok(host.clone()),
            _ => Err(Error::forbidden(format!(
                "host {:?} is not one this proxy answers to (see --public-host)",
                String::from_utf8_lossy(host.as_bytes())
            ))),
        }
    }

    fn rewrite_response(&self, h: &mut hyper::HeaderMap) {
        headers::strip_hop_by_hop(h);
        let up = &self.cfg.upstream;
        for name in [LOCATION, CONTENT_LOCATION] {
            let new = h
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| headers::rewrite_location(v, up));
            if let Some(v) = new.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert(name, v);
            }
        }
        if h.contains_key(SET_COOKIE) {
            let cookies: Vec<HeaderValue> = h
                .get_all(SET_COOKIE)
                .iter()
                .map(|v| {
                    v.to_str()
                        .ok()
                        .and_then(|s| headers::rewrite_set_cookie(s, up))
                        .and_then(|s| HeaderValue::from_str(&s).ok())
                        .unwrap_or_else(|| v.clone())
                })
                .collect();
            h.remove(SET_COOKIE);
            for c in cookies {
                h.append(SET_COOKIE, c);
            }
        }
    }

    /// An upstream connection ready for a request: an idle one (`true`), or
    /// a new one.
    async fn connection(&self) -> Result<(SendRequest<UpBody>, bool), Error> {
        loop {
            let Some(s) = self.idle.lock().pop() else {
                break;
            };
            if s.is_ready() && !s.is_closed() {
                return Ok((s, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    /// A new upstream connection (over TLS to an `https://` upstream; the
    /// connect timeout covers the TLS handshake too).
    async fn connect(&self) -> Result<SendRequest<UpBody>, Error> {
        let up = &self.cfg.upstream;
        let timeout = self.cfg.connect_timeout;
        let addr = (up.host().trim_matches(['[', ']']), up.port());
        // TCP and TLS together within the connect timeout.
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await
        {
            Err(_) => {
                return Err(Error::gateway_timeout(format!(
                    "upstream {up} did not accept a connection within {timeout:?}"
                )))
            }
            Ok(Err(e)) => {
                return Err(Error::bad_gateway(format!(
                    "upstream {up} unreachable: {e}"
                )))
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => self.handshake(TokioIo::new(stream)).await,
            Some(tls) => {
                let stream = tls.handshake(stream, up, deadline).await?;
                self.handshake(TokioIo::new(stream)).await
            }
        }
    }

    /// hyper's HTTP/1 client on a new connection, its connection task spawned.
    async fn handshake<I>(&self, io: I) -> Result<SendRequest<UpBody>, Error>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let up = &self.cfg.upstream;
        let (sender, conn) = client::Builder::new()
            .handshake::<_, UpBody>(io)
            .await
            .map_err(|e| Error::bad_gateway(format!("upstream {up} unreachable: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("proxy: upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Puts a connection whose answer was read whole back for reuse, once
    /// hyper says it can take another request (at once, usually; later if
    /// the request body is still being sent). A closed one is dropped.
    fn give_back(self: &Arc<Self>, mut sender: SendRequest<UpBody>) {
        if sender.is_closed() {
            return;
        }
        let proxy = Arc::clone(self);
        tokio::spawn(async move {
            if sender.ready().await.is_err() {
                return;
            }
            let mut idle = proxy.idle.lock();
            if idle.len() < proxy.cfg.max_idle {
                idle.push(sender);
            }
        });
    }
}

/// The client's body that stopped arriving, if that is why a request to
/// the upstream failed (`http::read::Stalling`'s error, among the sources).
fn stalled_body(e: &hyper::Error) -> Option<&crate::http::BodyStalled> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(stalled) = s.downcast_ref::<crate::http::BodyStalled>() {
            return Some(stalled);
        }
        source = s.source();
    }
    None
}

/// A request body on its way upstream that says when it has been sent
/// whole (hyper stops polling at `is_end_stream`, so that counts too).
struct Tracked {
    body: UpBody,
    done: Option<Arc<tokio::sync::Notify>>,
}

impl Tracked {
    fn new(body: UpBody, done: Arc<tokio::sync::Notify>) -> Tracked {
        let mut t = Tracked {
            body,
            done: Some(done),
        };
        if t.body.is_end_stream() {
            t.finish();
        }
        t
    }

    fn finish(&mut self) {
        if let Some(n) = self.done.take() {
            // Kept as a permit if nobody waits yet.
            n.notify_one();
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The upstream's response body, frame by frame; when it ends, its
/// connection goes back to the pool (a body dropped early closes it).
struct Returning {
    body: Incoming,
    sender: Option<SendRequest<UpBody>>,
    stop: Option<Stop>,
    proxy: Arc<Proxy>,
}

impl hyper::body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(stop) = self.stop.as_mut() {
            if stop.as_mut().poll(cx).is_ready() {
                // An error, not an end: the client must not take a cut
                // stream for a complete answer.
                self.stop = None;
                self.sender = None;
                return Poll::Ready(Some(Err("tandem is shutting down".into())));
            }
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                if let Some(s) = self.sender.take() {
                    self.proxy.give_back(s);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.sender = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                // hyper stops polling a body that says it has ended (all of
                // its Content-Length read), so the end is noticed here too.
                if self.body.is_end_stream() {
                    if let Some(s) = self.sender.take() {
                        self.proxy.give_back(s);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
