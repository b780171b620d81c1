//! TLS to an `https://` upstream: the rustls client settings, built once
//! when the proxy starts, and the handshake on each new connection.
//!
//! The upstream's certificate is checked against the CA certificates of
//! [`ProxyConfig::upstream_ca`] (`--upstream-ca`, a PEM file) when given,
//! else against the system's (`rustls-native-certs`), for the upstream's
//! host: a DNS name, or an IP address matched against the certificate's IP
//! addresses. There is no way to skip the check: an application with a
//! self-signed certificate names that certificate as its CA.
//!
//! Only `http/1.1` is offered by ALPN: the proxy speaks HTTP/1.1 upstream
//! (hyper's HTTP/1 client over the TLS stream, pooled as plain connections
//! are). The cryptography is rustls' `ring` provider, named here rather than
//! taken from a process-wide default, so an embedder's own choice of
//! provider does not matter.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::config::{ProxyConfig, Upstream};
use crate::config::{check as ensure, ConfigError};
use crate::error::Error;

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
            None => system_roots(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new(format!("upstream {}: TLS: {e}", cfg.upstream)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
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
                reason(&e)
            ))),
            Err(_) => Err(Error::gateway_timeout(format!(
                "upstream {up} did not accept a connection and finish its TLS handshake within {:?}",
                self.timeout
            ))),
        }
    }
}

/// What went wrong in a handshake: rustls' own error when there is one
/// (`invalid peer certificate: UnknownIssuer`), else the I/O error.
fn reason(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
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

/// The CA certificates of a PEM file, every one of them usable as a root.
fn roots_from_file(path: &Path) -> Result<RootCertStore, ConfigError> {
    let named = |what: String| ConfigError::new(format!("upstream-ca {}: {what}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| named(unpem(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(unpem(e)))?;
    ensure(!certs.is_empty(), || {
        format!(
            "upstream-ca {}: no certificate in it (a PEM file of -----BEGIN CERTIFICATE----- blocks)",
            path.display()
        )
    })?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| named(format!("certificate {} is not a usable CA: {e}", i + 1)))?;
    }
    Ok(roots)
}

/// A PEM reading error as a phrase (an unreadable file says why).
fn unpem(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read it: {e}"),
        e => format!("not a PEM file of certificates: {e}"),
    }
}

/// The system's CA certificates. One that does not parse is skipped, and
/// an empty store is not fatal here: every handshake then fails with
/// `UnknownIssuer`, which the 502 names, and the log says why at start.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("proxy: reading the system's CA certificates: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, skipped) = roots.add_parsable_certificates(found.certs);
    if skipped > 0 {
        log::debug!("proxy: {skipped} of the system's CA certificates skipped (unparsable)");
    }
    if added == 0 {
        log::warn!(
            "proxy: no CA certificates found in the system's store: no https upstream can be verified; install them or name a CA file with --upstream-ca"
        );
    }
    roots
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
