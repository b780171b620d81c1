//! The proxy's settings: the one upstream, tandem's own prefix, the hosts
//! the proxy answers to, timeouts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{check, setters, ConfigError};

/// The one application behind the proxy: `http://host:port`.
///
/// Only plain `http://` for now; `https://` upstreams (verified with the
/// system's or a given CA) come later, and are refused with a message that
/// says so.
///
/// ```
/// let up: tandem::proxy::Upstream = "http://127.0.0.1:9000".parse().unwrap();
/// assert_eq!(up.authority(), "127.0.0.1:9000");
/// assert!("https://app.example".parse::<tandem::proxy::Upstream>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    host: String,
    port: u16,
}

impl Upstream {
    /// The upstream's host name or address (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The upstream's port (80 when the URL names none).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// `host:port`, what the proxy sends upstream as `Host` and connects to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    /// Whether an authority (`host[:port]`, as in a URL) names this upstream.
    pub(crate) fn is(&self, authority: &str) -> bool {
        let (host, port) = split_authority(authority, 80);
        port == Some(self.port) && host.eq_ignore_ascii_case(&self.host)
    }
}

/// `host[:port]` split; `None` for the port when it is there but not a number.
pub(crate) fn split_authority(a: &str, default_port: u16) -> (&str, Option<u16>) {
    let colon = if a.starts_with('[') {
        a.find(']').and_then(|e| a[e..].find(':').map(|c| e + c))
    } else {
        a.rfind(':')
    };
    match colon {
        Some(c) => (&a[..c], a[c + 1..].parse().ok()),
        None => (a, Some(default_port)),
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

impl FromStr for Upstream {
    type Err = ConfigError;

    /// Parses `http://host[:port]` (a trailing `/` is allowed; nothing else
    /// after the authority).
    fn from_str(s: &str) -> Result<Upstream, ConfigError> {
        let bad = || format!("upstream {s:?} must be http://host:port (no path, query or user)");
        if s.len() >= 8 && s[..8].eq_ignore_ascii_case("https://") {
            check(false, || {
                format!("upstream {s:?}: https upstreams are not supported yet (they come later); use http://host:port")
            })?;
        }
        check(s.len() > 7 && s[..7].eq_ignore_ascii_case("http://"), bad)?;
        let authority = s[7..].strip_suffix('/').unwrap_or(&s[7..]);
        check(
            !authority.is_empty()
                && !authority.contains(['/', '?', '#', '@', ' '])
                && authority.is_ascii(),
            bad,
        )?;
        let (host, port) = split_authority(authority, 80);
        let Some(port) = port.filter(|&p| p != 0) else {
            return Err(check(false, || format!("upstream {s:?} has a bad port")).unwrap_err());
        };
        check(!host.is_empty(), bad)?;
        Ok(Upstream {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// How tandem runs as a reverse proxy in front of one application
/// (`tandem serve --upstream http://127.0.0.1:9000`): every request outside
/// [`prefix`](Self::prefix) goes to the upstream, tandem's own routes live
/// under the prefix. Given to [`crate::Service::with_proxy`], which
/// validates it.
///
/// ```
/// use tandem::proxy::ProxyConfig;
/// let cfg = ProxyConfig::new("http://127.0.0.1:9000".parse().unwrap())
///     .hosts(vec!["127.0.0.1:8080".into(), "app.example".into()]);
/// cfg.validate().unwrap();
/// assert_eq!(cfg.prefix, "/_tandem");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Co-browsing to share customers' sessions with, set by
    /// [`cobrowse`](Self::cobrowse).
    pub(crate) cobrowse: Option<crate::cobrowse::Cobrowse>,
    /// The application every request outside the prefix goes to.
    pub upstream: Upstream,
    /// Where tandem's own routes live (channels, `tandem.js`, co-browsing):
    /// `/_tandem` by default, so `/_tandem/ch/news/sse`.
    pub prefix: String,
    /// The `Host` values the proxy answers to: `host` (any port) or
    /// `host:port` (that port only). A request naming another host is
    /// refused, never forwarded. The binary puts its listen address here,
    /// and each `--public-host`. At least one is needed.
    pub hosts: Vec<String>,
    /// How long connecting to the upstream may take (then 504).
    pub connect_timeout: Duration,
    /// How long the upstream may take to send its response head (then 504).
    /// The body, once it flows, has no limit: streams stay open.
    pub response_timeout: Duration,
    /// Idle upstream connections kept for reuse.
    pub max_idle: usize,
}

impl ProxyConfig {
    /// A proxy in front of `upstream`, with the default prefix and timeouts
    /// and no accepted host yet (add them with [`hosts`](Self::hosts)).
    pub fn new(upstream: Upstream) -> ProxyConfig {
        ProxyConfig {
            upstream,
            prefix: "/_tandem".into(),
            hosts: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            max_idle: 32,
            cobrowse: None,
        }
    }

    /// Shares the application with `cobrowse`'s agents: a customer who asks
    /// for help has their cookies on the application kept server-side, and
    /// a joined agent's view of their pages goes through the proxy with
    /// them (GET and HEAD only, unless the customer hands over control).
    /// Mount the same `Cobrowse` with [`crate::Service::with_app`].
    /// `docs/proxy.md`, "Sharing the customer's session".
    pub fn cobrowse(mut self, cobrowse: crate::cobrowse::Cobrowse) -> ProxyConfig {
        self.cobrowse = Some(cobrowse);
        self
    }

    /// Checks every setting; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.prefix;
        check(
            p.len() > 1
                && p.starts_with('/')
                && !p.ends_with('/')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-.~".contains(&b)),
            || {
                format!(
                    "tandem-prefix {p:?} must be a path like /_tandem (not /, no trailing slash)"
                )
            },
        )?;
        check(!self.hosts.is_empty(), || {
            "the proxy needs at least one accepted host (the listen address or a public-host)"
                .into()
        })?;
        for h in &self.hosts {
            let (host, port) = split_authority(h, 80);
            check(
                !host.is_empty()
                    && port.is_some()
                    && h.is_ascii()
                    && !h.contains(['/', '?', '#', '@', ' ']),
                || format!("public-host {h:?} must be host or host:port"),
            )?;
        }
        for (name, d) in [
            ("upstream-connect-timeout", self.connect_timeout),
            ("upstream-timeout", self.response_timeout),
        ] {
            check(
                (Duration::from_millis(10)..=Duration::from_secs(86_400)).contains(&d),
                || format!("{name} must be between 10 ms and 1 day"),
            )?;
        }
        Ok(())
    }

    /// Whether a request's `Host` is one the proxy answers to.
    pub(crate) fn accepts_host(&self, host: &str) -> bool {
        let (name, port) = split_authority(host, 80);
        let Some(port) = port else { return false };
        self.hosts.iter().any(|h| {
            let (hn, hp) = if h.contains(':') && !h.ends_with(']') {
                split_authority(h, 80)
            } else {
                // A bare name: any port.
                (h.as_str(), Some(port))
            };
            hp == Some(port) && hn.eq_ignore_ascii_case(name)
        })
    }
}

setters!(ProxyConfig {
    prefix: String,
    hosts: Vec<String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    max_idle: usize,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams() {
        let u: Upstream = "http://LocalHost:9000/".parse().unwrap();
        assert_eq!(u.authority(), "localhost:9000");
        assert_eq!("http://a.example".parse::<Upstream>().unwrap().port(), 80);
        assert_eq!(
            "http://[::1]:81".parse::<Upstream>().unwrap().authority(),
            "[::1]:81"
        );
        let e = |s: &str| s.parse::<Upstream>().unwrap_err().to_string();
        assert!(e("https://a.example").contains("https upstreams are not supported yet"));
        assert!(e("http://a.example/app").contains("must be http://host:port"));
        assert!(e("ftp://a").contains("must be http://host:port"));
        assert!(e("http://a:x").contains("bad port"));
        assert!(u.is("localhost:9000") && u.is("LOCALHOST:9000") && !u.is("localhost"));
        let u80: Upstream = "http://a.example".parse().unwrap();
        assert!(u80.is("a.example") && u80.is("a.example:80"));
    }

    #[test]
    fn hosts_and_prefix() {
        let up: Upstream = "http://127.0.0.1:9000".parse().unwrap();
        let c = ProxyConfig::new(up.clone());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("accepted host"));
        let c = c.hosts(vec!["127.0.0.1:8080".into(), "app.example".into()]);
        c.validate().unwrap();
        assert!(c.accepts_host("127.0.0.1:8080"));
        assert!(!c.accepts_host("127.0.0.1:8081"));
        assert!(c.accepts_host("APP.example") && c.accepts_host("app.example:443"));
        assert!(!c.accepts_host("evil.example") && !c.accepts_host("127.0.0.1:9000"));
        for p in ["/", "", "x", "/a/", "/a b"] {
            let e = c.clone().prefix(p.into()).validate().unwrap_err();
            assert!(e.to_string().contains("tandem-prefix"), "{p}");
        }
        c.clone().prefix("/push/v1".into()).validate().unwrap();
    }
}
