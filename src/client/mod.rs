//! A Rust client for tandem servers: subscribe to a channel over HTTP or
//! HTTPS on any transport, publish to it.
//!
//! ```no_run
//! use tandem::client::{Client, Delivery};
//! use tandem::NewEvent;
//!
//! # async fn demo() -> Result<(), tandem::client::Error> {
//! let client = Client::new();
//! let mut orders = client.subscribe("http://127.0.0.1:8080/ch/orders/sse").await?;
//! let id = client
//!     .publish("http://127.0.0.1:8080/ch/orders", NewEvent::message("order 1 shipped"))
//!     .await?;
//! while let Some(delivery) = orders.next().await {
//!     match delivery? {
//!         Delivery::Event(e) => println!("{} {}: {:?}", e.cursor(), e.kind, e.text()),
//!         Delivery::Gap(g) => println!("lost {} events", g.lost()),
//!     }
//! }
//! # let _ = id;
//! # Ok(())
//! # }
//! ```
//!
//! A [`Subscription`] is a `futures_core::Stream` of [`Delivery`]: the
//! events in order, each once, and a [`Gap`] wherever some were lost or the
//! channel started over. It keeps a [`Cursor`] (the channel's incarnation and
//! the last id accounted for) and when a connection breaks or a stream ends,
//! it connects again with `?since=CURSOR` after a backoff with jitter, so a
//! network cut or a server restart loses nothing the server still buffers,
//! and says so when it does. It yields an error only when it gives up.
//!
//! The parts, one file per idea:
//!
//! * `mod.rs` (here): [`Client`], its settings, and the two ways in.
//! * `target.rs`: a channel URL taken apart (host, prefix, channel,
//!   transport, query).
//! * `cursor.rs`: [`Cursor`] (`EPOCH:ID` or `ID`) and [`Epoch`], the
//!   crate's own, read off the wire as this module's errors.
//! * `transport.rs`: [`Transport`] and how each one's bytes become wire
//!   events, with the parsers of `src/wire.rs`.
//! * `delivery.rs`: [`Delivery`], [`Event`], [`Gap`], made from wire events;
//!   `cursor_of` is the one place that reads a cursor off the wire.
//! * `subscription.rs`: [`Subscribe`], awaited to fix where a subscription
//!   starts, and the [`Subscription`] state machine: connect, read, skip
//!   duplicates, move the cursor, back off, resume.
//! * `publish.rs`: [`Client::publish`].
//! * `conn.rs`: HTTP/1 with hyper's client connections over TCP, a small
//!   pool of keep-alive connections for publishes and polls.
//! * `tls.rs`: `https://`, the TLS handshake on a new connection, checked
//!   against a CA file ([`Client::with_ca_file`]) or the system's CAs.
//! * `token.rs`: channel tokens, fixed or from a source asked again ahead
//!   of expiry, sent as `Authorization: Bearer`.
//! * `error.rs`: [`Error`], asked with `is_*()`.

mod conn;
mod cursor;
mod delivery;
mod error;
mod publish;
mod subscription;
mod target;
mod tls;
mod token;
mod transport;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use cursor::{Cursor, Epoch};
pub use delivery::{Delivery, Event, Gap};
pub use error::Error;
pub use subscription::{Subscribe, Subscription};
pub use transport::Transport;

/// `docs/rust-client.md`, compiled and run as doctests so its code stays true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/rust-client.md")]
pub struct Guide;

/// Subscribes and publishes over HTTP. Cheap to clone: clones share the pool
/// of idle connections. Settings are copied into each subscription when it
/// is made.
#[derive(Clone, Default)]
pub struct Client {
    settings: Settings,
    pool: Arc<conn::Pool>,
}

/// What a [`Client`] can be told; the defaults suit a server with the
/// default settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) poll_timeout: Duration,
    pub(crate) retry_delay: Duration,
    pub(crate) max_retry_delay: Duration,
    pub(crate) retries: Option<u32>,
    /// `https` servers' certificates are checked against this CA file's
    /// certificates; `None`: the system's.
    pub(crate) ca: Option<tls::CaFile>,
    /// The channel token sent with every request, if any.
    pub(crate) token: Option<token::Tokens>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            // Three of the server's default heartbeats (15 s).
            idle_timeout: Duration::from_secs(45),
            poll_timeout: Duration::from_secs(25),
            retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(10),
            retries: Some(10),
            ca: None,
            token: None,
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the default settings.
    pub fn new() -> Client {
        Client::default()
    }

    /// Subscribes to a channel URL: `http://host:port/ch/NAME/TRANSPORT`
    /// or `https://...` (see [`Client::with_ca_file`]), the transport
    /// `sse`, `multipart`, `mixed`, `poll`, `jsonp` or `iframe`, or
    /// `/ch/NAME` for SSE. A prefix before `/ch/` is kept, as are query
    /// parameters such as `client=ID` (echo suppression) and `backlog=N`;
    /// `since=CURSOR` sets where to start. Set the cursor and transport
    /// with [`Subscribe::since`] and [`Subscribe::transport`] too, then
    /// `.await` it:
    ///
    /// ```no_run
    /// # async fn demo(client: tandem::client::Client, stored: tandem::client::Cursor)
    /// # -> Result<(), tandem::client::Error> {
    /// use tandem::client::Transport;
    /// let news = client.subscribe("http://127.0.0.1:8080/ch/news").await?;
    /// let resumed = client
    ///     .subscribe("http://127.0.0.1:8080/ch/news")
    ///     .since(stored)
    ///     .transport(Transport::Poll)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe<'a>(&'a self, url: &'a str) -> Subscribe<'a> {
        Subscribe::new(self, url)
    }

    /// How long connecting may take (default 10 s).
    pub fn with_connect_timeout(mut self, d: Duration) -> Client {
        self.settings.connect_timeout = d;
        self
    }

    /// How long a publish, or a stream's answer head, may take (default 30 s;
    /// a long-poll gets its hold time on top).
    pub fn with_request_timeout(mut self, d: Duration) -> Client {
        self.settings.request_timeout = d;
        self
    }

    /// How long a stream may send nothing, not even a heartbeat, before it
    /// is taken for dead and opened again (default 45 s, three of the
    /// server's default heartbeats).
    pub fn with_idle_timeout(mut self, d: Duration) -> Client {
        self.settings.idle_timeout = d;
        self
    }

    /// How long a long-poll asks the server to hold (default 25 s; servers
    /// cap it, by default at 120 s).
    pub fn with_poll_timeout(mut self, d: Duration) -> Client {
        self.settings.poll_timeout = d;
        self
    }

    /// The backoff between reconnects: starts at `first`, doubles after
    /// each failure up to `max`, and each wait is a random 50 to 100% of
    /// that (default 250 ms to 10 s).
    pub fn with_retry_delay(mut self, first: Duration, max: Duration) -> Client {
        self.settings.retry_delay = first;
        self.settings.max_retry_delay = max.max(first);
        self
    }

    /// Checks the certificates of `https://` servers against the CA
    /// certificates of this PEM file instead of the system's (a server with
    /// a certificate of your own CA, or a self-signed one named as its own
    /// CA). The file is read now: one that cannot be read, holds no
    /// certificate or holds one that is not a CA is an input error. There
    /// is no way to skip the check.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), tandem::client::Error> {
    /// let client = tandem::client::Client::new().with_ca_file("/etc/tandem/ca.pem")?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn with_ca_file(mut self, path: impl AsRef<Path>) -> Result<Client, Error> {
        self.settings.ca = Some(tls::CaFile::read(path.as_ref())?);
        Ok(self)
    }

    /// Sends this channel token with every request, in `Authorization:
    /// Bearer` (for a server with `--secret-file`; docs/security.md,
    /// Channel tokens). When it expires, the server ends streams and
    /// refuses requests with `403 token expired`: for a client that outlives
    /// its token, use [`Client::with_token_source`].
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.settings.token = Some(token::Tokens::fixed(token.into()));
        self
    }

    /// Gets channel tokens from `source` (your application's endpoint that
    /// mints them, a file a sidecar renews...): asked before the first
    /// request, then again whenever the token it gave has a third of its
    /// life (and at most 30 s) left, so a long-lived subscription never
    /// sends an expired one. A stream the server ends at its token's expiry
    /// opens again with the fresh token from its cursor, losing nothing.
    /// Clones of the client share the token. A source that fails is an
    /// error (`is_token()`) that a subscription retries with its backoff.
    ///
    /// ```no_run
    /// # async fn mint() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// # fn demo() {
    /// let client = tandem::client::Client::new()
    ///     .with_token_source(|| async { Ok(mint().await?) });
    /// # let _ = client; }
    /// ```
    pub fn with_token_source<F, Fut>(mut self, source: F) -> Client
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<String, Box<dyn std::error::Error + Send + Sync>>>
            + Send
            + 'static,
    {
        self.settings.token = Some(token::Tokens::source(source));
        self
    }

    /// How many failed attempts in a row a subscription makes before it
    /// yields the error and ends (default 10; `None`: never give up). An
    /// attempt that reaches the server starts the count again. A
    /// subscription that has never reached the server gives up at once
    /// when it cannot connect: a wrong address fails fast.
    pub fn with_retries(mut self, retries: Option<u32>) -> Client {
        self.settings.retries = retries;
        self
    }
}
