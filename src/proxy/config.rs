//! The proxy's settings: the one upstream, tandem's own prefix, the hosts
//! the proxy answers to, timeouts, the CA an `https://` upstream is checked
//! against.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{check, setters, ConfigError};

/// The one application behind the proxy: `http://host:port` or
/// `https://host:port`.
///
/// An `https://` upstream is reached over TLS (rustls), its certificate
/// checked against the system's CA certificates or those of
/// [`ProxyConfig::upstream_ca`], for the upstream's host (a DNS name, or an
/// IP address against the certificate's IP addresses). See `src/proxy/tls.rs`.
///
/// ```
/// let up: tandem::proxy::Upstream = "http://127.0.0.1:9000".parse().unwrap();
/// assert_eq!(up.authority(), "127.0.0.1:9000");
/// let tls: tandem::proxy::Upstream = "https://app.example".parse().unwrap();
/// assert!(tls.is_https());
/// assert_eq!(tls.to_string(), "https://app.example:443");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    host: String,
    port: u16,
    https: bool,
}

impl Upstream {
    /// The upstream's host name or address (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The upstream's port (80, or 443 for `https://`, when the URL names
    /// none).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Whether the upstream is reached over TLS (`https://`).
    pub fn is_https(&self) -> bool {
        self.https
    }
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }
    /// `host:port`, what the proxy sends upstream as `Host` and connects to.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    /// The port a URL of this upstream's scheme means when it names none.
    pub(crate) fn default_port(&self) -> u16 {
        if self.https {
            443
        } else {
            80
        }
    }
    /// Whether an authority (`host[:port]`, as in a URL of the upstream's
    /// scheme) names this upstream.
    pub(crate) fn is(&self, authority: &str) -> bool {
        let (host, port) = split_authority(authority, self.default_port());
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
        write!(f, "{}://{}:{}", self.scheme(), self.host, self.port)
    }
}

impl FromStr for Upstream {
    type Err = ConfigError;

    /// Parses `http://host[:port]` or `https://host[:port]` (a trailing `/`
    /// is allowed; nothing else after the authority).
    fn from_str(s: &str) -> Result<Upstream, ConfigError> {
        let bad = || {
            format!(
                "upstream {s:?} must be http://host:port or https://host:port (no path, query or user)"
            )
        };
        let scheme = |p: &str| s.len() > p.len() && s[..p.len()].eq_ignore_ascii_case(p);
        let (https, rest) = if scheme("https://") {
            (true, &s[8..])
        } else if scheme("http://") {
            (false, &s[7..])
        } else {
            return Err(check(false, bad).unwrap_err());
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        check(
            !authority.is_empty()
                && !authority.contains(['/', '?', '#', '@', ' '])
                && authority.is_ascii(),
            bad,
        )?;
        let (host, port) = split_authority(authority, if https { 443 } else { 80 });
        let Some(port) = port.filter(|&p| p != 0) else {
            return Err(check(false, || format!("upstream {s:?} has a bad port")).unwrap_err());
        };
        check(!host.is_empty(), bad)?;
        Ok(Upstream {
            host: host.to_ascii_lowercase(),
            port,
            https,
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
    /// Idle upstream connections kept for reuse (256). Fewer than the
    /// requests usually in flight means opening and closing connections
    /// all the time: at 50 busy clients and 32 kept, one request in five
    /// paid for a new connection (`docs/benchmarks.md`).
    pub max_idle: usize,
    /// For an `https://` upstream: a PEM file of the CA certificates its
    /// certificate is checked against, instead of the system's
    /// (`--upstream-ca`). Set it with [`upstream_ca`](Self::upstream_ca).
    /// Read when the proxy starts; an unreadable file, or one without a
    /// certificate, is a [`ConfigError`].
    pub upstream_ca: Option<PathBuf>,
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
            max_idle: 256,
            cobrowse: None,
            upstream_ca: None,
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

    /// Checks an `https://` upstream's certificate against the CA
    /// certificates in this PEM file (one or more `CERTIFICATE` blocks)
    /// instead of the system's: for an application whose certificate comes
    /// from a private CA. There is no way to skip the check.
    ///
    /// ```
    /// use tandem::proxy::ProxyConfig;
    /// let cfg = ProxyConfig::new("https://app.internal:8443".parse().unwrap())
    ///     .hosts(vec!["127.0.0.1:8080".into()])
    ///     .upstream_ca("/no/such/ca.pem");
    /// let e = cfg.validate().unwrap_err().to_string();
    /// assert!(e.starts_with("upstream-ca /no/such/ca.pem: "), "{e}");
    /// ```
    #[must_use]
    pub fn upstream_ca(mut self, pem_file: impl Into<PathBuf>) -> ProxyConfig {
        self.upstream_ca = Some(pem_file.into());
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
        if let Some(path) = &self.upstream_ca {
            check(self.upstream.is_https(), || {
                format!(
                    "upstream-ca {} is for an https upstream; {} is plain http",
                    path.display(),
                    self.upstream
                )
            })?;
        }
        if self.upstream.is_https() {
            super::tls::check(self)?;
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
        assert!(e("http://a.example/app").contains("must be http://host:port"));
        assert!(e("https://a.example/app").contains("or https://host:port"));
        assert!(e("ftp://a").contains("must be http://host:port"));
        assert!(e("https://").contains("must be http://host:port"));
        assert!(e("http://a:x").contains("bad port"));
        assert!(u.is("localhost:9000") && u.is("LOCALHOST:9000") && !u.is("localhost"));
        assert!(!u.is_https() && u.to_string() == "http://localhost:9000");
        let u80: Upstream = "http://a.example".parse().unwrap();
        assert!(u80.is("a.example") && u80.is("a.example:80"));
        let tls: Upstream = "HTTPS://A.example/".parse().unwrap();
        assert!(tls.is_https());
        assert_eq!(tls.port(), 443);
        assert_eq!(tls.to_string(), "https://a.example:443");
        assert!(tls.is("a.example") && tls.is("a.example:443") && !tls.is("a.example:80"));
        let tls: Upstream = "https://[::1]:8443".parse().unwrap();
        assert_eq!((tls.host(), tls.port()), ("[::1]", 8443));
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
