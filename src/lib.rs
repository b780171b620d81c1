//! tandem: a firewall-friendly HTTP push server, no WebSockets.
//!
//! Browsers keep an ordinary HTTP request open (multipart/x-mixed-replace,
//! multipart/mixed, Server-Sent Events, long-poll, JSONP, a forever iframe)
//! and the server pushes events they did not ask for; clients publish with
//! plain POSTs. The map of the crate, each layer using only those above it:
//!
//! * [`router`]: the hand-rolled event router. [`Hub`] holds channels, each a
//!   ring of recent events and the wakers of waiting subscribers behind one
//!   `parking_lot` mutex; a [`Subscription`] is a cursor and an async stream.
//!   No HTTP in here: embed it anywhere.
//! * [`event`](Event): the event, its id/type/data, and the name rules.
//! * [`transport`]: one file per wire format, turning an event into bytes
//!   once and sharing them with every subscriber.
//! * [`http`]: the hyper [`Service`] (routes, publish bodies, limits, CORS).
//! * [`cobrowse`]: co-browsing and web assistance on tandem's channels: help
//!   sessions, agents, the channel gate, the audit log, the demo portal.
//! * [`server`](serve): the accept loop, the lean paths for streams and
//!   publishes (hyper for the rest), connection limit, graceful shutdown.
//! * [`status`]: the live status feed the server publishes for `/status.html`.
//! * [`wire`]: parsers for every format, the client side.
//! * [`Config`]: every setting, validated once and passed down.
//!
//! `src/main.rs` only turns flags into a `Config` and calls [`serve`].
//! `docs/architecture.md` follows one publish to 10,000 subscribers.
#![deny(missing_docs)]

pub mod client;
pub mod cobrowse;
mod config;
mod error;
mod event;
pub mod http;
mod json_escape;
mod metrics;
mod router;
mod server;
mod shutdown;
pub mod status;
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
pub use router::{ChannelInfo, Hub, SubscribeOptions, Subscription, Transport};
pub use server::{serve, Serve};
pub use shutdown::Shutdown;

/// `docs/embedding.md`, compiled and run as doctests so its code stays true.
#[cfg(doctest)]
#[doc = include_str!("../docs/embedding.md")]
pub struct EmbeddingGuide;

/// `docs/cobrowse.md`, whose library example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/cobrowse.md")]
pub struct CobrowseGuide;
