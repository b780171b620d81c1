//! The HTTP layer's settings: connections, request limits, timeouts,
//! allowed origins.

use std::time::Duration;

use crate::config::{check, setters, ConfigError};

/// The settings of the HTTP layer, held by a [`crate::Service`] and read by
/// [`crate::serve`]'s accept loop.
///
/// ```
/// use std::time::Duration;
/// let http = tandem::http::HttpConfig::default()
///     .max_connections(20_000)
///     .allow_origins(vec!["https://app.example".into()]);
/// let hub = tandem::Hub::new(tandem::Config::default()).unwrap();
/// let svc = tandem::Service::new(hub).with_config(http).unwrap(); // validates
/// assert_eq!(svc.config().max_connections, 20_000);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Open connections beyond which new ones get 503 (by [`crate::serve`]).
    pub max_connections: usize,
    /// How long a connection may go without sending a complete request head:
    /// from its opening, or from the last answer on a keep-alive connection.
    /// Then it is closed. (Streams and held long-polls are answers in
    /// progress; this does not apply to them.)
    pub idle_timeout: Duration,
    /// Origins allowed by CORS. Empty means same origin only; `*` allows any.
    pub allow_origins: Vec<String>,
    /// How long graceful shutdown waits for connections to finish.
    pub shutdown_timeout: Duration,
    /// Largest request head (request line and headers) taken, in bytes; a
    /// larger one is answered 431. The same on every connection path and
    /// for every request of a connection (`server/sniff.rs` reads every
    /// head; over HTTP/2 it is h2's header list limit; in your own hyper
    /// server, give hyper this as its `max_header_size`).
    pub max_head_bytes: usize,
    /// Longest request target (path and query) taken, in bytes; a longer
    /// one is answered 414.
    pub max_url_bytes: usize,
    /// How long a request head may take from its first byte to its end
    /// (slowloris): then the connection is answered 408 and closed, for
    /// every request of a connection (`server/sniff.rs` reads every head).
    pub head_timeout: Duration,
    /// How long a request body (with `Content-Length` or chunked) may take
    /// to arrive whole, from the first wait for it: then the request is
    /// answered 408 and the connection closed.
    pub body_timeout: Duration,
    /// Open connections one client address may hold; beyond, new ones get
    /// 429 (by [`crate::serve`]). A trusted proxy's are not counted.
    pub max_connections_per_addr: usize,
    /// Publishes one client address may make per second (in bursts of as
    /// many), beyond which they get 429 with `Retry-After`; 0: no limit.
    pub publishes_per_second: u32,
    /// New sessions (an app's, such as co-browsing's help sessions and
    /// classes: [`crate::http::App::opens_session`]) one client address may
    /// open per minute, beyond which 429 with `Retry-After`; 0: no limit.
    pub sessions_per_minute: u32,
    /// Peers (addresses or CIDR blocks) whose `Forwarded` /
    /// `X-Forwarded-For` name the client; from any other peer those headers
    /// are ignored. Loopback by default (a proxy on the same host).
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(75),
            allow_origins: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            max_head_bytes: 32 * 1024,
            max_url_bytes: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections_per_addr: 1000,
            publishes_per_second: 0,
            sessions_per_minute: 10,
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

setters!(HttpConfig {
    max_connections: usize,
    idle_timeout: Duration,
    allow_origins: Vec<String>,
    shutdown_timeout: Duration,
    max_head_bytes: usize,
    max_url_bytes: usize,
    head_timeout: Duration,
    body_timeout: Duration,
    max_connections_per_addr: usize,
    publishes_per_second: u32,
    sessions_per_minute: u32,
    trusted_proxies: Vec<String>,
});

impl HttpConfig {
    /// Checks every setting; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self.max_connections >= 1, || {
            "max-connections must be at least 1".into()
        })?;
        check(
            (Duration::from_millis(100)..=Duration::from_secs(86_400)).contains(&self.idle_timeout),
            || "idle-timeout must be between 100 ms and 1 day".into(),
        )?;
        check((1024..=1024 * 1024).contains(&self.max_head_bytes), || {
            "max-head-bytes must be between 1024 and 1048576".into()
        })?;
        check(
            self.max_url_bytes >= 64 && self.max_url_bytes < self.max_head_bytes,
            || "max-url-bytes must be at least 64 and less than max-head-bytes".into(),
        )?;
        for (name, d) in [
            ("head-timeout", self.head_timeout),
            ("body-timeout", self.body_timeout),
        ] {
            check(
                (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d),
                || format!("{name} must be between 100 ms and 1 hour"),
            )?;
        }
        check(self.max_connections_per_addr >= 1, || {
            "max-connections-per-addr must be at least 1".into()
        })?;
        for p in &self.trusted_proxies {
            check(super::limits::Cidr::parse(p).is_some(), || {
                format!("trusted-proxy {p:?} must be an IP address or a CIDR block (10.0.0.0/8, fd00::/8)")
            })?;
        }
        for o in &self.allow_origins {
            check(
                o == "*"
                    || ((o.starts_with("http://") || o.starts_with("https://"))
                        && !o.ends_with('/')),
                || {
                    format!("allow-origin {o:?} must be * or a scheme://host[:port] origin without a path")
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_limit() {
        HttpConfig::default().validate().unwrap();
        let e = |c: HttpConfig| c.validate().unwrap_err().to_string();
        assert!(
            e(HttpConfig::default().allow_origins(vec!["http://a/".into()]))
                .contains("allow-origin")
        );
        assert_eq!(
            e(HttpConfig::default().idle_timeout(Duration::ZERO)),
            "idle-timeout must be between 100 ms and 1 day"
        );
        assert_eq!(
            e(HttpConfig::default().max_connections(0)),
            "max-connections must be at least 1"
        );
        assert_eq!(
            e(HttpConfig::default().max_head_bytes(100)),
            "max-head-bytes must be between 1024 and 1048576"
        );
        assert!(e(HttpConfig::default()
            .max_head_bytes(4096)
            .max_url_bytes(4096))
        .contains("max-url-bytes"));
    }
}
