//! The HTTP face of the router: a hyper `Service` and its response body.
//!
//! * `route.rs`: path and query parsing (pure, fuzzed).
//! * `service.rs`: dispatch, the subscribe and long-poll handlers, publish.
//! * `publish.rs`: the three publish body formats (pure, fuzzed).
//! * `stream.rs`: the endless body of a streamed subscription, heartbeats and
//!   shutdown included.
//! * `cors.rs`: allowed origins and preflights.
//! * `body.rs`: the one response body type and response helpers.
//! * `assets.rs`: the browser client and demo pages, embedded from `src/client/`.
//!
//! Every refusal is an [`crate::Error`] answered as `{"error":"..."}` with the
//! status that fits; no refusal touches the router or another client.

mod assets;
mod body;
mod cors;
pub mod publish;
pub mod route;
mod service;
mod stream;

pub use body::Body;
pub use service::{Service, DEFAULT_CALLBACK};
