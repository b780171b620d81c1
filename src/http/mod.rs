//! The HTTP face of the router: a hyper `Service` and its response body.
//!
//! * `config.rs`: [`HttpConfig`], this layer's settings.
//! * `route.rs`: path and query parsing (pure, fuzzed).
//! * `service.rs`: dispatch, the subscribe and long-poll handlers, publish.
//! * `publish.rs`: the three publish body formats (pure, fuzzed).
//! * `stream.rs`: the endless body of a streamed subscription, heartbeats and
//!   shutdown included.
//! * `cors.rs`: allowed origins and preflights.
//! * `body.rs`: the one response body type and response helpers.
//! * `error.rs`: the status and JSON body each refusal is answered with.
//! * `read.rs`: reading a whole request body within a limit.
//! * `limits.rs`: per-client-address limits (connections, publishes, new
//!   sessions) and the client's address behind a trusted proxy.
//! * `peer.rs`: [`PeerService`], the service for one connection with those
//!   limits (`Service::for_peer`: what `serve` uses, and an embedder's
//!   hyper server can).
//! * `app.rs`: the hook for an application mounted beside the push routes
//!   (its own paths, and a gate on every channel access).
//! * `assets.rs`: the browser client and demo pages, embedded from `src/web/`.
//!
//! Every refusal is an [`crate::Error`] answered as `{"error":"..."}` with the
//! status that fits; no refusal touches the router or another client.

mod app;
mod assets;
mod body;
mod config;
mod cors;
mod error;
pub(crate) mod limits;
mod peer;
pub(crate) mod publish;
mod read;
pub(crate) mod route;
pub(crate) mod service;
mod stream;

pub use app::{Access, App, AppFuture, GateFuture, MAX_APP_BODY};
pub use body::Body;
pub(crate) use body::BoxError;
pub use config::HttpConfig;
pub use error::{error_json, error_response, status_of};
pub use peer::PeerService;
pub(crate) use service::{Forward, ForwardBody};
pub use service::{Service, DEFAULT_CALLBACK};

pub(crate) use body::{decimal, no_cache as no_store};
pub(crate) use read::{seconds, too_slow, BodyStalled};

/// Set by the [`Service`] in the extensions of a request it hands to an
/// [`App`] when the request's `Origin` is neither this server's nor allowed
/// by [`HttpConfig::allow_origins`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct OriginDenied;

/// Whether a request handed to an app came from an origin that is neither
/// this server's nor allowed.
pub(crate) fn origin_denied<B>(req: &hyper::Request<B>) -> bool {
    req.extensions().get::<OriginDenied>().is_some()
}
