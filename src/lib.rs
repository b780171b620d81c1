//! tandem: a firewall-friendly HTTP push server, no WebSockets.
//!
//! Browsers keep an ordinary HTTP request open (multipart/x-mixed-replace,
//! multipart/mixed, Server-Sent Events, long-poll, JSONP, a forever iframe)
//! and the server pushes events they did not ask for; clients publish with
//! plain POSTs. Four ways in, from least to most HTTP:
//!
//! * [`Hub`]: the event router alone. Channels, each a ring of recent events
//!   and the wakers of waiting subscribers behind one `parking_lot` mutex;
//!   [`Hub::publish`] (async: the backplane may wait for a shared store) and
//!   [`Hub::subscribe`], whose [`Subscription`] is a cursor and a `Stream`.
//!   [`Hub::new`] keeps everything in this process; [`Hub::with_redis`]
//!   shares every channel with the other nodes on one Redis.
//! * [`Service`]: tandem's routes as a hyper service, to mount in your own
//!   server. It serves channels and nothing else unless you mount an
//!   [`http::App`] on it, such as [`cobrowse::Cobrowse`].
//! * [`serve`]: the whole server on your listener, with its lean paths for
//!   streams and publishes: `serve(listener, service)
//!   .with_graceful_shutdown(signal).await`. A [`Shutdown`] ends it.
//! * [`client`]: the Rust client of a tandem server, on any transport.
//!
//! The map inside, each layer using only those above it: `config.rs`
//! ([`Config`], the core settings), `error.rs` ([`Error`]), `event.rs`
//! ([`Event`], [`Cursor`], [`Epoch`]), `router/` (with `backplane.rs`, the
//! seam where ids, storage and announcing live, and `redis.rs`, the shared
//! engine), `transport/` (one file per
//! wire format), [`http`] (the [`Service`], [`http::HttpConfig`], how an
//! error is answered), [`proxy`] (tandem in front of one web application),
//! `shutdown.rs`, `server/`, [`status`], [`cobrowse`], `wire.rs` (parsers,
//! client side), `tls_roots.rs` (the TLS client settings the proxy and the
//! client share) and [`client`]. What the fuzz targets
//! and tests reach inside is in the hidden `__private` module, not the API.
//!
//! `src/main.rs` lays the flags over the defaults and assembles what the
//! binary serves. `docs/architecture.md` has the map with "where to change
//! what", and follows one publish to 10,000 subscribers.
#![deny(missing_docs)]

pub mod client;
pub mod cobrowse;
mod config;
mod error;
mod event;
pub mod http;
mod json_escape;
mod metrics;
pub mod proxy;
mod router;
mod server;
mod shutdown;
pub mod status;
mod tls_roots;
pub mod token;
mod transport;
mod wire;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use config::{Config, ConfigError};
pub use error::Error;
pub use event::{
    check_channel, check_type, Cursor, Delivery, Epoch, Event, Gap, NewEvent, MAX_CHANNEL_LEN,
    MAX_TYPE_LEN,
};
pub use http::{Body, Service};
pub use metrics::{Counter, Metrics};
pub use router::{
    ChannelInfo, Cluster, Hub, RedisOptions, SubscribeOptions, Subscription, Transport,
};
pub use server::{serve, Serve, TlsConfig, TlsError};
pub use shutdown::Shutdown;
pub use token::{Signer, Token};

/// `docs/embedding.md`, compiled and run as doctests so its code stays true.
#[cfg(doctest)]
#[doc = include_str!("../docs/embedding.md")]
pub struct EmbeddingGuide;

/// `docs/cobrowse.md`, whose library example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/cobrowse.md")]
pub struct CobrowseGuide;
