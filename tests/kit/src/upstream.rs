//! A small web application for the proxy tests to put tandem in front of
//! (`tandem serve --upstream`): a plain hyper server on `127.0.0.1:0`,
//! nothing of tandem's. It records every request it sees, and the tests
//! steer its streaming routes (a gated download, an SSE feed).
//!
//! Routes:
//!
//! * `GET /page`: a small HTML page.
//! * `GET /redirect/relative`, `/redirect/own`, `/redirect/other`: 302 to
//!   `/page`, to `http://{its own address}/page?from=own`, and to
//!   `http://other.example/elsewhere`.
//! * `GET /cookie`: `Set-Cookie` with `Domain={its host}` and with
//!   `Domain=other.example`, and a `Content-Location` on its own origin.
//! * `GET /download?bytes=N[&gate=1]`: `N` bytes (`i % 251`) in 64 KiB
//!   chunks, `Content-Length: N`; with `gate=1` it stops after the first
//!   MiB until [`Upstream::release`].
//! * `POST /echo`: the request body back, streamed as it arrives (the
//!   bytes received so far: [`Upstream::received`]).
//! * `GET /events`: its own SSE stream; [`Upstream::push`] sends an event.
//! * `POST /form`: `form: {body}` as text, 201.
//! * `GET /status/{code}`: that status, a text body and `X-Upstream-Odd`.
//! * `GET /binary`: bytes 0 to 255, `application/octet-stream`, an ETag.
//! * `GET /hop`: hop-by-hop headers in the response (`Connection: X-Secret`,
//!   `X-Secret`, `Keep-Alive`, `Proxy-Authenticate`) and `X-Kept`.
//! * `GET /trailers`: a body and an `X-Checksum: 42` trailer.
//! * `GET /slow`: answers after 3 s.
//! * A small application with users (for co-browsing through the proxy):
//!   * `GET /signin`: a sign-in form; `POST /signin` (`user=NAME`, a form)
//!     sets an `HttpOnly` session cookie `sid` and redirects (303) to
//!     `/account`.
//!   * `GET /account`: that user's page (name and notes, a notes form, a
//!     link to `/orders`), brotli-encoded when the request accepts `br`,
//!     with `Content-Security-Policy: script-src 'nonce-app';
//!     frame-ancestors 'none'` and `X-Frame-Options: DENY`, an inline
//!     script with that nonce (sets `appRan`) and one without (would set
//!     `inlineRan`); "not signed in" without a session.
//!   * `GET /orders`: that user's orders page, gzip-encoded when accepted.
//!   * `POST /notes` (`text=...`, a form): adds a note, 303 to `/account`
//!     (401 without a session).
//!   * `GET /whoami`: the user's name as text, or `nobody`.
//!   * `POST /rotate`: a new session cookie for the same user.
//! * anything else: 200 `upstream saw {METHOD} {target}`.
//!
//! [`Upstream::start_tls`] serves the same routes over TLS (rustls), with a
//! certificate made at start by `rcgen` for `127.0.0.1` and `localhost`,
//! signed by a CA made then too, whose PEM is written to a temporary file
//! ([`Upstream::ca_file`], what `--upstream-ca` takes). Its own-origin
//! URLs (`/redirect/own`, `/cookie`) are `https://` then.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;

/// A request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as received.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of a header (case-insensitive name).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// The one value of a header, if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} more than once: {all:?}");
        all.first().copied()
    }
}

struct State {
    addr: SocketAddr,
    /// `http` or `https`: the scheme of its own-origin URLs.
    scheme: &'static str,
    seen: Mutex<Vec<Seen>>,
    release: Notify,
    sse: broadcast::Sender<String>,
    received: AtomicU64,
    connections: AtomicU64,
    /// Close the connection of the next request without an answer.
    drop_next: std::sync::atomic::AtomicBool,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Session cookie value → user name.
    users: Mutex<std::collections::HashMap<String, String>>,
    /// User name → notes.
    notes: Mutex<std::collections::HashMap<String, Vec<String>>>,
    sids: AtomicU64,
}

/// The test application, served until dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
    /// The CA's PEM file of a TLS upstream (removed on drop).
    ca_file: Option<PathBuf>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(f) = &self.ca_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A CA and a server certificate it signed for `names` (IP addresses
/// become IP SANs, the rest DNS names): the server's settings, and the
/// CA's certificate as PEM.
fn tls_for(names: &[&str]) -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tandem test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca certificate");
    let issuer = Issuer::new(ca, ca_key);
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut leaf = CertificateParams::new(names.clone()).expect("server names");
    leaf.distinguished_name.push(DnType::CommonName, &names[0]);
    let key = KeyPair::generate().expect("server key");
    let cert = leaf.signed_by(&key, &issuer).expect("server certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server certificate and key");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(cfg), ca_cert.pem())
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

impl Upstream {
    /// Starts it on `127.0.0.1:0`.
    pub async fn start() -> Upstream {
        Upstream::serve(None).await
    }

    /// Starts it on `127.0.0.1:0` over TLS, with a certificate for
    /// `127.0.0.1` and `localhost` signed by a CA of its own
    /// ([`ca_file`](Self::ca_file)).
    pub async fn start_tls() -> Upstream {
        Upstream::start_tls_for(&["127.0.0.1", "localhost"]).await
    }

    /// Starts it over TLS with a certificate for these names only (IP
    /// addresses or DNS names), signed by a CA of its own.
    pub async fn start_tls_for(names: &[&str]) -> Upstream {
        let (cfg, ca_pem) = tls_for(names);
        let mut up = Upstream::serve(Some(tokio_rustls::TlsAcceptor::from(cfg))).await;
        static N: AtomicU64 = AtomicU64::new(0);
        let file = std::env::temp_dir().join(format!(
            "tandem-kit-ca-{}-{}-{}.pem",
            std::process::id(),
            up.addr.port(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&file, ca_pem).expect("write the CA's PEM file");
        up.ca_file = Some(file);
        up
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            addr,
            scheme: if tls.is_some() { "https" } else { "http" },
            seen: Mutex::new(Vec::new()),
            release: Notify::new(),
            sse: broadcast::channel(64).0,
            received: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            drop_next: std::sync::atomic::AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            users: Mutex::new(Default::default()),
            notes: Mutex::new(Default::default()),
            sids: AtomicU64::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st2 = st.clone();
                let tls = tls.clone();
                let task = tokio::spawn(async move {
                    match tls {
                        None => serve_connection(stream, st2).await,
                        // A client that refuses the certificate ends here.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                serve_connection(stream, st2).await;
                            }
                        }
                    }
                });
                st.tasks.lock().unwrap().push(task.abort_handle());
            }
        });
        Upstream {
            addr,
            state,
            task,
            ca_file: None,
        }
    }

    /// `http://127.0.0.1:port` (`https://` over TLS), what `--upstream`
    /// takes.
    pub fn url(&self) -> String {
        format!("{}://{}", self.state.scheme, self.addr)
    }

    /// The PEM file of the CA that signed a TLS upstream's certificate,
    /// what `--upstream-ca` takes.
    pub fn ca_file(&self) -> &Path {
        self.ca_file
            .as_deref()
            .expect("only a TLS upstream (start_tls) has a CA")
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The last request seen for this path (target without the query).
    pub fn last(&self, path: &str) -> Seen {
        self.seen()
            .into_iter()
            .rev()
            .find(|s| s.target.split('?').next() == Some(path))
            .unwrap_or_else(|| panic!("the upstream saw no request for {path}"))
    }

    /// Lets a gated download send the rest.
    pub fn release(&self) {
        self.state.release.notify_one();
    }

    /// Sends an event on `/events` to every open stream.
    pub fn push(&self, data: &str) {
        let _ = self.state.sse.send(data.to_string());
    }

    /// How many `/events` streams are open.
    pub fn sse_streams(&self) -> usize {
        self.state.sse.receiver_count()
    }

    /// Closes every connection it has (as an upstream closing idle
    /// keep-alive connections does).
    pub fn close_connections(&self) {
        for t in self.state.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// The notes of a user of the small application.
    pub fn notes(&self, user: &str) -> Vec<String> {
        self.state
            .notes
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// The next request's connection is closed once the request is read,
    /// with no answer (an upstream dying under a kept-alive connection).
    pub fn drop_next(&self) {
        self.state.drop_next.store(true, Ordering::SeqCst);
    }

    /// Bytes of `/echo` request bodies received so far.
    pub fn received(&self) -> u64 {
        self.state.received.load(Ordering::SeqCst)
    }
}

/// Serves the routes on one connection, plain or TLS.
async fn serve_connection<I>(io: I, st: Arc<State>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let st = st.clone();
        async move {
            if st.drop_next.swap(false, Ordering::SeqCst) {
                // hyper closes the connection, answering nothing.
                return Err(std::io::Error::other("told to drop this connection"));
            }
            Ok::<_, std::io::Error>(route(&st, req).await)
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// A body fed by a channel, frame by frame as the sender sends.
struct Channel(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Channel {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c))))
    }
}

/// A body of these frames (data and trailers).
struct Frames(std::collections::VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// The request body back, counted into `received` as it passes.
struct Echo(Incoming, Arc<State>);

impl hyper::body::Body for Echo {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            return match Pin::new(&mut self.0).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => {
                        self.1.received.fetch_add(d.len() as u64, Ordering::SeqCst);
                        Poll::Ready(Some(Ok(Frame::data(d))))
                    }
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

fn respond(status: u16, content_type: &str, body: Body) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .expect("valid response")
}

async fn route(st: &Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let target = req.uri().to_string();
    st.seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        target: target.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let redirect = |to: String| {
        Response::builder()
            .status(302)
            .header("location", to)
            .body(full(""))
            .expect("valid")
    };
    match path.as_str() {
        "/page" => respond(
            200,
            "text/html; charset=utf-8",
            full("<!doctype html><title>upstream page</title><p>hello from upstream</p>"),
        ),
        "/redirect/relative" => redirect("/page".into()),
        "/redirect/own" => redirect(format!("{}://{}/page?from=own", st.scheme, st.addr)),
        "/redirect/other" => redirect("http://other.example/elsewhere".into()),
        "/cookie" => Response::builder()
            .header(
                "set-cookie",
                format!("sid=abc; Domain={}; Path=/; HttpOnly", st.addr.ip()),
            )
            .header("set-cookie", "theme=dark; Domain=other.example; Path=/")
            .header("set-cookie", "plain=1; Path=/")
            .header(
                "content-location",
                format!("{}://{}/cookie/here", st.scheme, st.addr),
            )
            .body(full("cookies"))
            .expect("valid"),
        "/download" => {
            let mut n = 0usize;
            let mut gate = false;
            for kv in query.split('&') {
                match kv.split_once('=') {
                    Some(("bytes", v)) => n = v.parse().expect("bytes=N"),
                    Some(("gate", "1")) => gate = true,
                    _ => {}
                }
            }
            let (tx, rx) = mpsc::channel(4);
            let st = st.clone();
            tokio::spawn(async move {
                let mut sent = 0usize;
                while sent < n {
                    if gate && sent == 1 << 20 {
                        st.release.notified().await;
                    }
                    let len = (64 * 1024).min(n - sent);
                    let chunk: Vec<u8> = (sent..sent + len).map(|i| (i % 251) as u8).collect();
                    if tx.send(Bytes::from(chunk)).await.is_err() {
                        return;
                    }
                    sent += len;
                }
            });
            let mut r = respond(200, "application/octet-stream", Channel(rx).boxed());
            r.headers_mut()
                .insert("content-length", n.to_string().parse().expect("digits"));
            r
        }
        "/echo" => {
            let ct = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_string();
            respond(200, &ct, Echo(req.into_body(), st.clone()).boxed())
        }
        "/events" => {
            let mut rx = st.sse.subscribe();
            let (tx, body) = mpsc::channel(16);
            tokio::spawn(async move {
                if tx.send(Bytes::from_static(b": open\n\n")).await.is_err() {
                    return;
                }
                while let Ok(msg) = rx.recv().await {
                    if tx
                        .send(Bytes::from(format!("data: {msg}\n\n")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let mut r = respond(200, "text/event-stream", Channel(body).boxed());
            r.headers_mut()
                .insert("cache-control", "no-cache".parse().expect("static"));
            r
        }
        "/form" => {
            let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
                return respond(400, "text/plain", full("incomplete form body"));
            };
            respond(
                201,
                "text/plain",
                full(format!("form: {}", String::from_utf8_lossy(&body))),
            )
        }
        "/binary" => {
            let mut r = respond(
                200,
                "application/octet-stream",
                full((0..=255u8).collect::<Vec<u8>>()),
            );
            r.headers_mut()
                .insert("etag", "\"v1-binary\"".parse().expect("static"));
            r
        }
        "/hop" => Response::builder()
            .header("connection", "X-Secret")
            .header("x-secret", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic realm=\"x\"")
            .header("x-kept", "yes")
            .body(full("hop"))
            .expect("valid"),
        "/trailers" => {
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("x-checksum", "42".parse().expect("static"));
            let frames = vec![
                Frame::data(Bytes::from_static(b"with trailers")),
                Frame::trailers(trailers),
            ];
            let mut r = respond(200, "text/plain", Frames(frames.into()).boxed());
            r.headers_mut()
                .insert("trailer", "x-checksum".parse().expect("static"));
            r
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            respond(200, "text/plain", full("slow"))
        }
        "/signin" | "/account" | "/orders" | "/notes" | "/whoami" | "/rotate" => {
            users::route(st, req, &path).await
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().expect("a status");
            let mut r = respond(code, "text/plain", full(format!("upstream status {code}")));
            r.headers_mut()
                .insert("x-upstream-odd", "a  b,c;d".parse().expect("static"));
            r
        }
        _ => respond(
            200,
            "text/plain",
            full(format!("upstream saw {} {target}", req.method())),
        ),
    }
}

/// The small application with users (see the module's route list).
mod users {
    use super::*;
    use std::io::Write;

    /// The signed-in user of a request, and the session value.
    fn user(st: &State, req: &Request<Incoming>) -> Option<(String, String)> {
        let sid = req
            .headers()
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == "sid")
            .map(|(_, v)| v.to_string())?;
        let name = st.users.lock().unwrap().get(&sid).cloned()?;
        Some((name, sid))
    }

    fn new_sid(st: &State, name: &str) -> String {
        let n = st.sids.fetch_add(1, Ordering::SeqCst);
        let sid = format!("s{n:04}x{:x}", st.addr.port() as u64 * 7919 + n);
        st.users
            .lock()
            .unwrap()
            .insert(sid.clone(), name.to_string());
        sid
    }

    /// `key=value` of an urlencoded form (`+` and `%XX` decoded).
    fn form_field(body: &[u8], key: &str) -> Option<String> {
        let body = String::from_utf8_lossy(body);
        let raw = body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)?
            .1
            .replace('+', " ");
        let mut out = Vec::new();
        let b = raw.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&raw[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    fn see_other(to: &str, cookie: Option<String>) -> Response<Body> {
        let mut r = Response::builder().status(303).header("location", to);
        if let Some(c) = cookie {
            r = r.header("set-cookie", c);
        }
        r.body(full("")).expect("valid")
    }

    fn accepts(req: &Request<Incoming>, coding: &str) -> bool {
        req.headers()
            .get_all("accept-encoding")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|c| c.split(';').next().unwrap_or("").trim() == coding)
    }

    /// An HTML page, encoded with `coding` when the request accepts it.
    fn page(req: &Request<Incoming>, coding: &str, html: String) -> Response<Body> {
        let mut r = Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store");
        let body = if coding == "br" && accepts(req, "br") {
            r = r.header("content-encoding", "br");
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(html.as_bytes()).expect("brotli");
            }
            out
        } else if coding == "gzip" && accepts(req, "gzip") {
            r = r.header("content-encoding", "gzip");
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(html.as_bytes()).expect("gzip");
            w.finish().expect("gzip")
        } else {
            html.into_bytes()
        };
        r.body(full(body)).expect("valid")
    }

    pub(super) async fn route(
        st: &Arc<State>,
        req: Request<Incoming>,
        path: &str,
    ) -> Response<Body> {
        let me = user(st, &req);
        let method = req.method().clone();
        match (method.as_str(), path) {
            ("GET", "/signin") => page(
                &req,
                "",
                "<!doctype html><html><head><title>Sign in</title></head><body>\
                 <form method=\"post\" action=\"/signin\"><label>Name <input id=\"user\" name=\"user\"></label>\
                 <button id=\"signin\">Sign in</button></form></body></html>"
                    .into(),
            ),
            ("POST", "/signin") => {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let Some(name) = body.ok().and_then(|b| form_field(&b, "user")) else {
                    return respond(400, "text/plain", full("user is required"));
                };
                let sid = new_sid(st, &name);
                see_other(
                    "/account",
                    Some(format!("sid={sid}; Path=/; HttpOnly; SameSite=Lax")),
                )
            }
            ("GET", "/account") => {
                let html = match &me {
                    None => "<!doctype html><html><head><title>Not signed in</title></head><body>\
                             <p id=\"who\">not signed in</p><a href=\"/signin\">Sign in</a></body></html>"
                        .to_string(),
                    Some((name, _)) => {
                        let notes: String = st
                            .notes
                            .lock()
                            .unwrap()
                            .get(name)
                            .map(|n| n.iter().map(|t| format!("<li>{}</li>", escape(t))).collect())
                            .unwrap_or_default();
                        format!(
                            "<!doctype html><html><head><title>Account of {n}</title></head><body>\
                             <h1 id=\"who\">Account of {n}</h1><ul id=\"notes\">{notes}</ul>\
                             <form method=\"post\" action=\"/notes\"><input id=\"note\" name=\"text\">\
                             <button id=\"add-note\">Add note</button></form>\
                             <p><a id=\"to-orders\" href=\"/orders\">Your orders</a></p>\
                             <script nonce=\"app\">window.appRan = true;</script>\
                             <script>window.inlineRan = true;</script></body></html>",
                            n = escape(name)
                        )
                    }
                };
                let mut r = page(&req, "br", html);
                let h = r.headers_mut();
                h.insert(
                    "content-security-policy",
                    "script-src 'nonce-app'; frame-ancestors 'none'".parse().expect("static"),
                );
                h.insert("x-frame-options", "DENY".parse().expect("static"));
                r
            }
            ("GET", "/orders") => {
                let name = me.map_or("nobody".to_string(), |(n, _)| n);
                page(
                    &req,
                    "gzip",
                    format!(
                        "<!doctype html><html><head><title>Orders of {n}</title></head><body>\
                         <h1 id=\"who\">Orders of {n}</h1><p>order 1 for {n}</p>\
                         <p><a id=\"to-account\" href=\"/account\">Your account</a></p></body></html>",
                        n = escape(&name)
                    ),
                )
            }
            ("POST", "/notes") => {
                let Some((name, _)) = me else {
                    return respond(401, "text/plain", full("not signed in"));
                };
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let text = body.ok().and_then(|b| form_field(&b, "text")).unwrap_or_default();
                st.notes.lock().unwrap().entry(name).or_default().push(text);
                see_other("/account", None)
            }
            ("GET", "/whoami") => respond(
                200,
                "text/plain",
                full(me.map_or("nobody".to_string(), |(n, _)| n)),
            ),
            ("POST", "/rotate") => {
                let Some((name, old)) = me else {
                    return respond(401, "text/plain", full("not signed in"));
                };
                st.users.lock().unwrap().remove(&old);
                let sid = new_sid(st, &name);
                Response::builder()
                    .header("set-cookie", format!("sid={sid}; Path=/; HttpOnly"))
                    .header("content-type", "text/plain")
                    .body(full(format!("rotated for {name}")))
                    .expect("valid")
            }
            _ => respond(405, "text/plain", full("method not allowed")),
        }
    }
}
