//! `https://` for the client: the TLS handshake on each new connection.
//!
//! The server's certificate is checked against the CA file of
//! [`Client::with_ca_file`](super::Client::with_ca_file) when one was
//! given, else against the system's CA certificates (read once per
//! process, at the first `https` connection). The roots and rustls'
//! settings (HTTP/1.1 by ALPN, the `ring` provider, no way to skip the
//! check) are `src/tls_roots.rs`'s, shared with the co-browsing proxy.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::Error;
use super::target::Endpoint;
use crate::tls_roots;

/// The rustls settings of a CA file, read when the client was told of it.
#[derive(Clone)]
pub(crate) struct CaFile {
    path: PathBuf,
    client: Arc<ClientConfig>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CaFile").field(&self.path).finish()
    }
}

impl CaFile {
    /// Reads the CA certificates of a PEM file; an unreadable file, one
    /// with no certificate or one that is not a CA is a clear input error.
    pub(crate) fn read(path: &Path) -> Result<CaFile, Error> {
        let roots = tls_roots::from_file(path).map_err(|e| Error::input(format!("CA file {e}")))?;
        let client = tls_roots::client_config(roots)
            .map_err(|e| Error::input(format!("CA file {}: {e}", path.display())))?;
        Ok(CaFile {
            path: path.to_path_buf(),
            client: Arc::new(client),
        })
    }
}

/// The settings with the system's CA certificates, made once.
fn system() -> Arc<ClientConfig> {
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let roots = tls_roots::system(
                "client",
                "name a CA file (Client::with_ca_file, tandem sub --ca FILE)",
            );
            // The ring provider supports the safe default versions: this
            // cannot fail.
            Arc::new(tls_roots::client_config(roots).expect("rustls ring defaults"))
        })
        .clone()
}

/// The TLS handshake over `tcp` with the server of `ep`, whose certificate
/// must carry `name`. The caller bounds it with the connect timeout.
pub(crate) async fn handshake(
    tcp: TcpStream,
    ep: &Endpoint,
    name: &str,
    ca: Option<&CaFile>,
) -> Result<TlsStream<TcpStream>, Error> {
    let server = ServerName::try_from(name.to_string()).map_err(|_| {
        Error::input(format!(
            "{name:?} is not a name a TLS certificate can be checked for"
        ))
    })?;
    let client = ca.map_or_else(system, |ca| ca.client.clone());
    TlsConnector::from(client)
        .connect(server, tcp)
        .await
        .map_err(|e| {
            Error::connect(
                &ep.addr,
                format!("TLS handshake failed: {}", tls_roots::reason(&e)),
            )
        })
}
