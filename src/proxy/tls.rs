//! TLS to an `https://` upstream: the rustls client settings, built once
//! when the proxy starts, and the handshake on each new connection.
//!
//! The upstream's certificate is checked against the CA certificates of
//! [`ProxyConfig::upstream_ca`] (`--upstream-ca`, a PEM file) when given,
//! else against the system's, for the upstream's host: a DNS name, or an IP
//! address matched against the certificate's IP addresses. The roots, the
//! rustls settings (HTTP/1.1 by ALPN, the `ring` provider) and what cannot
//! be skipped are `src/tls_roots.rs`'s, shared with `tandem::client`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::RootCertStore;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::config::{ProxyConfig, Upstream};
use crate::config::ConfigError;
use crate::error::Error;
use crate::tls_roots;

/// The TLS side of an `https://` upstream: the client settings and the name
/// its certificate must carry.
pub(crate) struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
    /// The connect timeout, for the message when it runs out.
    timeout: Duration,
}

/// Checks what can be checked without building the client: the upstream's
/// host is a name TLS can verify, and the CA file (if any) gives roots.
pub(crate) fn check(cfg: &ProxyConfig) -> Result<(), ConfigError> {
    server_name(&cfg.upstream)?;
    if let Some(path) = &cfg.upstream_ca {
        roots_from_file(path)?;
    }
    Ok(())
}

impl Tls {
    /// The client for `cfg`'s upstream: `None` for a plain `http://` one.
    /// Reads the CA file, or the system's CA certificates, once.
    pub(crate) fn new(cfg: &ProxyConfig) -> Result<Option<Tls>, ConfigError> {
        if !cfg.upstream.is_https() {
            return Ok(None);
        }
        let name = server_name(&cfg.upstream)?;
        let roots = match &cfg.upstream_ca {
            Some(path) => roots_from_file(path)?,
            None => tls_roots::system("proxy", "name a CA file with --upstream-ca"),
        };
        let client = tls_roots::client_config(roots)
            .map_err(|e| ConfigError::new(format!("upstream {}: TLS: {e}", cfg.upstream)))?;
        Ok(Some(Tls {
            connector: TlsConnector::from(Arc::new(client)),
            name,
            timeout: cfg.connect_timeout,
        }))
    }

    /// The TLS handshake on a new connection to `up`, finished by
    /// `deadline` (the connect timeout covers TCP and TLS together).
    pub(crate) async fn handshake(
        &self,
        stream: TcpStream,
        up: &Upstream,
        deadline: Instant,
    ) -> Result<TlsStream<TcpStream>, Error> {
        let shake = self.connector.connect(self.name.clone(), stream);
        match tokio::time::timeout_at(deadline, shake).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(Error::bad_gateway(format!(
                "upstream {up}: TLS handshake failed: {}",
                tls_roots::reason(&e)
            ))),
            Err(_) => Err(Error::gateway_timeout(format!(
                "upstream {up} did not accept a connection and finish its TLS handshake within {:?}",
                self.timeout
            ))),
        }
    }
}

/// The name the upstream's certificate must carry: its host, a DNS name or
/// an IP address (an IPv6 one without its brackets).
fn server_name(up: &Upstream) -> Result<ServerName<'static>, ConfigError> {
    let host = up.host().trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        ConfigError::new(format!(
            "upstream {up}: {host:?} is not a name a TLS certificate can be checked for"
        ))
    })
}

/// The CA certificates of `--upstream-ca`.
fn roots_from_file(path: &Path) -> Result<RootCertStore, ConfigError> {
    tls_roots::from_file(path).map_err(|e| ConfigError::new(format!("upstream-ca {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        let name = |u: &str| server_name(&u.parse().unwrap());
        assert!(matches!(
            name("https://[::1]:8443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            name("https://127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            name("https://App.Internal").unwrap(),
            ServerName::DnsName(_)
        ));
        let e = name("https://a..b").unwrap_err().to_string();
        assert!(e.contains("\"a..b\" is not a name"), "{e}");
    }

    #[test]
    fn a_client_only_for_https() {
        let cfg = |u: &str| ProxyConfig::new(u.parse().unwrap()).hosts(vec!["h".into()]);
        assert!(Tls::new(&cfg("http://127.0.0.1:9000")).unwrap().is_none());
        assert!(Tls::new(&cfg("https://127.0.0.1:9443")).unwrap().is_some());
        let e = cfg("http://127.0.0.1:9000")
            .upstream_ca("/x.pem")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("is for an https upstream"), "{e}");
    }
}
