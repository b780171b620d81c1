//! The service for one client connection: the per-address limits for an
//! embedder's own hyper server.
//!
//! `tandem::serve` knows each connection's peer and applies the limits of
//! `limits.rs` itself. A [`Service`] mounted in someone else's hyper server
//! sees requests, not connections; [`Service::for_peer`] gives it the
//! connection's address: the connection is counted against its address
//! (`max_connections_per_addr`) for as long as hyper holds the returned
//! service, publishes and new help sessions are held to their per-address
//! rates, the client address comes from `Forwarded`/`X-Forwarded-For` only
//! behind a trusted proxy, and the reverse proxy's `X-Forwarded-For` names
//! the client. The limits are the service's own ([`HttpConfig`]), shared by
//! every connection made from its clones.
//!
//! [`HttpConfig`]: super::HttpConfig

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONNECTION, RETRY_AFTER};
use hyper::{Request, Response};

use super::limits::{Counted, Limits};
use super::{Body, Service};

/// A [`Service`] for the requests of one connection from `peer`; made by
/// [`Service::for_peer`]. A hyper service, as [`Service`] is.
///
/// ```no_run
/// # async fn demo(svc: tandem::Service, listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// loop {
///     let (stream, peer) = listener.accept().await?;
///     let conn = svc.for_peer(peer); // counted until hyper drops it
///     tokio::spawn(
///         hyper::server::conn::http1::Builder::new()
///             .serve_connection(hyper_util::rt::TokioIo::new(stream), conn),
///     );
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct PeerService {
    svc: Service,
    peer: SocketAddr,
    limits: Arc<Limits>,
    /// The connection's place in its address's count (none for a trusted
    /// proxy, or when the accept loop counted it); a refusal if the
    /// address had its share open already: every request is answered
    /// with it, and the connection closed.
    counted: Result<Option<Arc<Counted>>, crate::Error>,
}

impl std::fmt::Debug for PeerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerService")
            .field("peer", &self.peer)
            .finish()
    }
}

impl Service {
    /// This service for one connection from `peer`, with the per-address
    /// limits `tandem::serve` applies (see the module notes): keep the
    /// returned service for as long as the connection is open (hyper
    /// does, when it is given to `serve_connection`).
    pub fn for_peer(&self, peer: SocketAddr) -> PeerService {
        let limits = self.limits().clone();
        let counted = limits.open(peer.ip()).map(|c| c.map(Arc::new));
        PeerService {
            svc: self.clone(),
            peer,
            limits,
            counted,
        }
    }
}

impl PeerService {
    /// For a connection `serve`'s accept loop has counted already (it
    /// refuses one over its address's share before reading a byte).
    pub(crate) fn counted(svc: Service, peer: SocketAddr) -> PeerService {
        PeerService {
            limits: svc.limits().clone(),
            svc,
            peer,
            counted: Ok(None),
        }
    }

    /// The service it calls.
    pub(crate) fn service(&self) -> &Service {
        &self.svc
    }

    /// The service and its limits' answer to `req`: a refusal, or `None`
    /// to serve it (with the client's address added for the proxy).
    pub(crate) fn admit<B>(&self, req: &mut Request<B>) -> Option<Response<Body>> {
        if let Err(e) = &self.counted {
            // As `serve` answers such a connection: try again in a second,
            // on another connection.
            let mut resp = super::error_response(e);
            let h = resp.headers_mut();
            h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            h.insert(CONNECTION, HeaderValue::from_static("close"));
            return Some(resp);
        }
        if let Some(refusal) = self.limits.check(&self.svc, self.peer.ip(), req) {
            return Some(refusal);
        }
        if self.svc.is_proxy() {
            req.extensions_mut()
                .insert(crate::proxy::ClientAddr(self.peer));
        }
        None
    }
}

impl<B> hyper::service::Service<Request<B>> for PeerService
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = <Service as hyper::service::Service<Request<B>>>::Future;

    fn call(&self, mut req: Request<B>) -> Self::Future {
        if let Some(refusal) = self.admit(&mut req) {
            return Box::pin(async move { Ok(refusal) });
        }
        hyper::service::Service::call(&self.svc, req)
    }
}
