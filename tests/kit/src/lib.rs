//! tandem's test kit: what the `it` and `browser` test binaries share, and
//! the raw HTTP/1 that loadgen shares with them.
//!
//! * [`http1`]: HTTP/1 without I/O. [`Req`] writes a request byte by byte,
//!   [`Head::parse`] reads a response head, [`Decoder`] undoes chunked,
//!   Content-Length and close-delimited bodies strictly.
//! * [`conn`]: a raw client connection for tests. [`Conn`] sends bytes and
//!   reads responses; every read is bounded by [`IO_TIMEOUT`] (a bug fails
//!   with a message, never a hang) or by a deadline the test gives (`_by`
//!   methods answer [`Stop`] instead of panicking).
//! * [`events`]: events out of a streamed body ([`Events`] over the parsers
//!   of `tandem::__private::wire`).
//! * [`server`]: a tandem [`Server`] on `127.0.0.1:0`, of either [`Flavor`]:
//!   `tandem::serve`, or `tandem::Service` in a plain hyper server as an
//!   embedder runs it. [`both_flavors!`] runs a test against each.
//! * [`tls`]: a CA and server certificates made at test time ([`Pki`]),
//!   and TLS clients that trust only it.
//! * [`upstream`]: a small web application (plain hyper, nothing of
//!   tandem's) for the proxy tests to put tandem in front of.
//!
//! Tests check what goes over the wire, so nothing here is an HTTP library:
//! the bytes a test writes are the bytes sent, and a response is decoded
//! exactly as framed.

pub mod conn;
pub mod events;
pub mod http1;
pub mod redis;
pub mod server;
pub mod tls;
pub mod upstream;

pub use conn::{wait_until, within, BodyReader, Conn, Response, Stop, IO_TIMEOUT};
pub use events::{delimiter, ids, some_ids, text, AnyParser, Events, Feed, IframeParser};
pub use http1::{count, find, form_data, Decoder, Framing, Head, Part, Req};
pub use redis::{RedisCluster, RedisOpts, RedisServer};
pub use server::{browser_config, config, serve_hyper, Flavor, Server, Setup};
pub use tls::Pki;
pub use upstream::Upstream;

/// Runs async test functions once per server [`Flavor`]. Each `name` is an
/// `async fn name(flavor: Flavor)` in scope; the macro adds a module `name`
/// with the tests `serve` and `hyper`, so `cargo test name::hyper` runs one.
/// An attribute in front (`#[tokio::test(flavor = "multi_thread")]`)
/// replaces the default `#[tokio::test]` for the names after it.
///
/// ```text
/// async fn streams_deliver(flavor: Flavor) {
///     let srv = flavor.with_defaults().await;
///     // ...
/// }
/// kit::both_flavors!(streams_deliver);
/// ```
#[macro_export]
macro_rules! both_flavors {
    (#[$attr:meta] $($name:ident),+ $(,)?) => {
        $( $crate::both_flavors!(@one [$attr] $name); )+
    };
    ($($name:ident),+ $(,)?) => {
        $( $crate::both_flavors!(@one [tokio::test] $name); )+
    };
    (@one [$attr:meta] $name:ident) => {
        mod $name {
            #[$attr]
            async fn serve() {
                super::$name($crate::Flavor::Serve).await
            }
            #[$attr]
            async fn hyper() {
                super::$name($crate::Flavor::Hyper).await
            }
        }
    };
}
