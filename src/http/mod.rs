//! The HTTP face of the router: a hyper `Service` and its response body.
//!
//! * `route.rs`: path and query parsing (pure, fuzzed).
//! * `service.rs`: dispatch, the subscribe and long-poll handlers, publish.
//! * `publish.rs`: the three publish body formats (pure, fuzzed).
//! * `stream.rs`: the endless body of a streamed subscription, heartbeats and
//!   shutdown included.
//! * `cors.rs`: allowed origins and preflights.
//! * `body.rs`: the one response body type and response helpers.
//! * `read.rs`: reading a whole request body within a limit.
//! * `app.rs`: the hook for an application mounted beside the push routes
//!   (its own paths, and a gate on every channel access).
//! * `assets.rs`: the browser client and demo pages, embedded from `src/web/`.
//!
//! Every refusal is an [`crate::Error`] answered as `{"error":"..."}` with the
//! status that fits; no refusal touches the router or another client.

pub mod app;
mod assets;
mod body;
mod cors;
pub mod publish;
mod read;
pub mod route;
mod service;
mod stream;

pub use app::{Access, App, AppFuture, MAX_APP_BODY};
pub use body::Body;
pub use service::{Service, DEFAULT_CALLBACK};

pub(crate) use body::{decimal, error as body_error, no_cache as no_store};

/// Whether a request's `Origin` is neither this server's nor allowed.
pub(crate) fn origin_denied(headers: &hyper::HeaderMap, cfg: &crate::Config) -> bool {
    cors::classify(headers, cfg) == cors::Origin::Denied
}
