//! TLS: the accept loop's optional wrap, HTTP/1.1 or HTTP/2 by ALPN.
//!
//! A TLS connection is handshaken here (rustls, with the `ring` provider
//! tandem already uses for its https upstreams, driven by `tls_stream.rs`
//! so that an idle connection holds no buffers), then:
//!
//! * ALPN `http/1.1` (or none): the decrypted stream goes to the same
//!   connection code as a TCP socket (`super::connection`), so streams and
//!   publishes keep the lean paths; only rustls' state is added per
//!   connection.
//! * ALPN `h2`: hyper's HTTP/2 server with the same `Service`, so a browser
//!   holds all its streams to one origin on one connection.
//!
//! The certificate sits behind a resolver read at every handshake:
//! [`TlsConfig::reload`] (the binary calls it on SIGHUP) reads the files
//! again and swaps the key in; open connections keep the session they
//! have, and a bad new file leaves the old certificate in place.
//!
//! Answers over TLS get `Secure` on every cookie and, when asked for,
//! `Strict-Transport-Security` (the service clone the TLS connections use is
//! marked, see `Service::over_tls`).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use hyper::header::HeaderValue;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::{Mutex, RwLock};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::tls_stream::TlsAcceptor;
use crate::http::limits::Limits;
use crate::http::{Body, BoxError, Service};

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings for [`crate::serve`]: a certificate chain and its private
/// key, read from PEM files, that can be read again while serving.
///
/// ```no_run
/// # async fn demo(service: tandem::Service) -> Result<(), Box<dyn std::error::Error>> {
/// let tls = tandem::TlsConfig::from_pem_files("cert.pem", "key.pem")?
///     .with_hsts(std::time::Duration::from_secs(31_536_000));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
/// let reload = tls.clone(); // call reload.reload() on SIGHUP
/// tandem::serve(listener, service).with_tls(tls).await?;
/// # Ok(()) }
/// ```
///
/// Clones share the certificate: [`reload`](Self::reload) on any clone
/// changes what every later handshake presents.
#[derive(Clone)]
pub struct TlsConfig {
    certs: Arc<Certs>,
    hsts: Option<Duration>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cert", &self.certs.cert)
            .field("key", &self.certs.key)
            .field("hsts", &self.hsts)
            .finish()
    }
}

/// Why a certificate or key could not be used: names the file and the
/// problem.
#[derive(Debug, Clone)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl TlsConfig {
    /// Reads a PEM certificate chain (the server's certificate first) and a
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), and checks that they match.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        let (cert, key) = (cert.as_ref().to_path_buf(), key.as_ref().to_path_buf());
        let current = load(&cert, &key)?;
        Ok(TlsConfig {
            certs: Arc::new(Certs {
                cert,
                key,
                current: RwLock::new(Arc::new(current)),
            }),
            hsts: None,
        })
    }

    /// Adds `Strict-Transport-Security: max-age=N` to every answer over TLS
    /// (off unless set: once a browser has seen it, the host is HTTPS-only
    /// for it for `max_age`).
    pub fn with_hsts(mut self, max_age: Duration) -> TlsConfig {
        self.hsts = Some(max_age);
        self
    }

    /// Reads the certificate and key files again. On success, every new
    /// handshake presents the new certificate, and connections already open
    /// carry on; on error, the old certificate stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.certs.cert, &self.certs.key)?;
        *self.certs.current.write() = Arc::new(fresh);
        Ok(())
    }

    /// rustls' settings: the reloadable certificate, ALPN `h2` then
    /// `http/1.1`.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.certs.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsAcceptor::new(Arc::new(cfg))
    }

    /// The `Strict-Transport-Security` value, if HSTS is on.
    pub(super) fn hsts_header(&self) -> Option<HeaderValue> {
        self.hsts.map(|d| {
            HeaderValue::from_str(&format!("max-age={}", d.as_secs())).expect("ascii digits")
        })
    }
}

/// The certificate every handshake presents, swapped by `reload`.
struct Certs {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for Certs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certs").field("cert", &self.cert).finish()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// Reads and checks a certificate chain and its key.
fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| TlsError(format!("certificate file {}: {e}", cert.display())))?;
    let key_pem =
        std::fs::read(key).map_err(|e| TlsError(format!("key file {}: {e}", key.display())))?;
    from_pem(&cert_pem, &key_pem).map_err(|e| {
        TlsError(match e {
            PemError::Cert(e) => format!("certificate file {}: {e}", cert.display()),
            PemError::Key(e) => format!("key file {}: {e}", key.display()),
            PemError::Mismatch(e) => format!(
                "key file {} does not match certificate file {}: {e}",
                key.display(),
                cert.display()
            ),
        })
    })
}

/// What is wrong with PEM contents, by file.
#[derive(Debug)]
pub(crate) enum PemError {
    Cert(String),
    Key(String),
    Mismatch(String),
}

/// A certificate chain and its key from PEM contents (what `load` read;
/// the fuzz target `tls_config` feeds it anything).
pub(crate) fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PemError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Cert(format!("not PEM: {e:?}")))?;
    if chain.is_empty() {
        return Err(PemError::Cert("no PEM CERTIFICATE block in it".into()));
    }
    let der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            PemError::Key("no PEM PRIVATE KEY block in it".into())
        }
        e => PemError::Key(format!("not PEM: {e:?}")),
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| PemError::Key(format!("unusable key: {e}")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| PemError::Mismatch(e.to_string()))?;
    Ok(certified)
}

/// Serves one TLS connection: the handshake, then HTTP/1.1 on tandem's
/// connection paths or HTTP/2 through hyper, as ALPN chose.
pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    svc: Service,
    limits: Arc<Limits>,
) {
    // Plaintext HTTP to the TLS port (an `http://` URL): say so, instead
    // of a handshake error the client cannot show.
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
            let body = "this port speaks HTTPS: use an https:// URL\n";
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut stream = stream;
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, answer.as_bytes()).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return;
        }
        Ok(Ok(1)) => {}
        _ => return,
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            log::debug!("tls handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => {
            log::debug!("tls handshake with {peer} timed out");
            return;
        }
    };
    // The stream comes boxed: it moves down through the connection's
    // futures, and each keeps a slot of its size (this one's `tls`,
    // `connection`'s and `serve_stream`'s parameters), so inline rustls'
    // connection state would be held several times over for the life of
    // the connection.
    if tls.alpn_protocol() == Some(b"h2") {
        Box::pin(serve_h2(tls, peer, svc)).await;
    } else {
        super::connection(tls, peer, svc, limits).await;
    }
}

/// A TLS connection over the limit: after the handshake, `503` with
/// `Retry-After` to its first request (every request, over h2), then closed.
pub(super) async fn refuse(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    e: crate::Error,
    alive: tokio::sync::mpsc::Sender<()>,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
        return;
    };
    if tls.alpn_protocol() == Some(b"h2") {
        let answered = Arc::new(tokio::sync::Notify::new());
        let told = answered.clone();
        let refuse = hyper::service::service_fn(move |_req| {
            told.notify_one();
            let resp = super::refusal(&e);
            async move { Ok::<_, std::convert::Infallible>(resp) }
        });
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(1)
            .serve_connection(TokioIo::new(tls), refuse);
        let mut conn = std::pin::pin!(conn);
        // The first answer, then GOAWAY (the stream answered completes); a
        // client that sends nothing is cut at the handshake timeout.
        let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            tokio::select! {
                _ = conn.as_mut() => {}
                () = answered.notified() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
        })
        .await;
        drop(alive);
    } else {
        super::refuse(tls, e, alive).await;
    }
}

/// HTTP/2 through hyper: every request (streams included) is a hyper
/// stream on the one connection. A connection with no request in flight for
/// `--idle-timeout` is closed (GOAWAY), as an idle HTTP/1.1 one is.
async fn serve_h2(io: impl super::Io, peer: SocketAddr, svc: Service) {
    let idle = svc.config().idle_timeout;
    let stopped = svc.shutdown().clone();
    let stopped = stopped.wait();
    let activity = Arc::new(Mutex::new(Activity {
        in_flight: 0,
        since: Instant::now(),
    }));
    // The head limit of HTTP/1.1 holds here too: h2 answers a larger
    // header list with 431 (hyper's default would be 16 KiB). h2 counts a
    // field as its name, its value and 32 bytes.
    let max_head = u32::try_from(svc.config().max_head_bytes).unwrap_or(u32::MAX);
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(max_head)
        .serve_connection(
            TokioIo::new(io),
            H2(
                crate::http::PeerService::counted(svc, peer),
                activity.clone(),
            ),
        );
    let mut conn = std::pin::pin!(conn);
    let mut stopped = std::pin::pin!(stopped);
    let mut timer = std::pin::pin!(tokio::time::sleep(idle));
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            () = &mut stopped => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
            () = &mut timer => {
                let a = *activity.lock();
                let due = a.since + idle;
                if a.in_flight == 0 && Instant::now() >= due {
                    log::debug!("closing an h2 connection idle for {idle:?}: {peer}");
                    conn.as_mut().graceful_shutdown();
                    break conn.await;
                }
                let next = if a.in_flight == 0 { due } else { Instant::now() + idle };
                timer.as_mut().reset(next);
            }
        }
    };
    match result {
        Ok(()) => log::debug!("h2 connection closed: {peer}"),
        Err(e) => log::debug!("h2 connection closed: {peer}: {e}"),
    }
}

/// An h2 connection's requests in flight (from the call to the end of the
/// answer's body), and since when it has had none.
#[derive(Clone, Copy)]
struct Activity {
    in_flight: usize,
    since: Instant,
}

/// One request in flight, until dropped.
struct Active(Arc<Mutex<Activity>>);

impl Active {
    fn new(activity: &Arc<Mutex<Activity>>) -> Active {
        activity.lock().in_flight += 1;
        Active(activity.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let mut a = self.0.lock();
        a.in_flight -= 1;
        if a.in_flight == 0 {
            a.since = Instant::now();
        }
    }
}

/// An answer's body that counts as activity until it ends or is dropped.
struct Tracked {
    body: Body,
    _active: Active,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// An HTTP/2 request names its host in `:authority` and comes with an
/// absolute URI; the rest of tandem reads `Host` (same-origin checks, the
/// proxy) and expects a path (the proxy refuses absolute-form targets, as
/// from a forward-proxy client). So each request is given the shape of its
/// HTTP/1.1 equivalent: `Host` from the authority, the URI reduced to its
/// path and query.
struct H2(crate::http::PeerService, Arc<Mutex<Activity>>);

/// An HTTP/2 request as the service reads HTTP/1.1 ones: `Host` from
/// `:authority` when the client sent no `Host`, and the URI cut to its
/// path and query (hyper gives HTTP/2 requests absolute URIs). The fuzz
/// target `tls_config` checks it on any URI and `Host`.
pub(crate) fn as_http1(uri: &mut hyper::Uri, headers: &mut hyper::HeaderMap) {
    if !headers.contains_key(hyper::header::HOST) {
        if let Some(host) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(hyper::header::HOST, host);
        }
    }
    if uri.scheme().is_some() {
        let mut parts = hyper::http::uri::Parts::default();
        // An empty path (`https://host`, `https://host?q`, `https://host#x`)
        // is `/`, as an HTTP/1.1 client must send it (RFC 9112, 3.2.1):
        // never an empty target.
        // Made again from its text: `http` keeps `https://host#x`'s path
        // as an empty one that shows as `/` but writes as nothing.
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        parts.path_and_query = if target.starts_with('/') || target == "*" {
            target.parse().ok()
        } else {
            format!("/{target}").parse().ok()
        };
        if let Ok(short) = hyper::Uri::from_parts(parts) {
            *uri = short;
        }
    }
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for H2 {
    type Response = hyper::Response<Tracked>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<hyper::Response<Tracked>, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let active = Active::new(&self.1);
        let (mut parts, body) = req.into_parts();
        as_http1(&mut parts.uri, &mut parts.headers);
        let req = hyper::Request::from_parts(parts, body);
        let answer = hyper::service::Service::call(&self.0, req);
        Box::pin(async move {
            let resp = answer.await?;
            Ok(resp.map(|body| Tracked {
                body,
                _active: active,
            }))
        })
    }
}
