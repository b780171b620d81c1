//! The TLS client side tandem's two clients share: the co-browsing proxy
//! (its `https://` upstream, `src/proxy/tls.rs`) and `tandem::client`
//! (`https://` channel URLs, `src/client/tls.rs`).
//!
//! A server's certificate is checked against the CA certificates of a PEM
//! file the user names, else against the system's (`rustls-native-certs`).
//! There is no way to skip the check: a server with a self-signed
//! certificate is reached by naming that certificate as the CA. Only
//! `http/1.1` is offered by ALPN (both clients speak HTTP/1.1), and the
//! cryptography is rustls' `ring` provider, named here rather than taken
//! from a process-wide default, so an embedder's own choice does not matter.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// rustls' client settings for these roots, offering HTTP/1.1.
pub(crate) fn client_config(roots: RootCertStore) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(client)
}

/// The CA certificates of a PEM file, every one of them usable as a root.
/// The error is a phrase starting with the file's path.
pub(crate) fn from_file(path: &Path) -> Result<RootCertStore, String> {
    let named = |what: String| format!("{}: {what}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| named(unpem(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| named(unpem(e)))?;
    if certs.is_empty() {
        return Err(named(
            "no certificate in it (a PEM file of -----BEGIN CERTIFICATE----- blocks)".into(),
        ));
    }
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
/// `UnknownIssuer`, which the error names, and the log says why (`who`
/// names the client, `hint` how to name a CA file instead).
pub(crate) fn system(who: &str, hint: &str) -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        log::warn!("{who}: reading the system's CA certificates: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, skipped) = roots.add_parsable_certificates(found.certs);
    if skipped > 0 {
        log::debug!("{who}: {skipped} of the system's CA certificates skipped (unparsable)");
    }
    if added == 0 {
        log::warn!(
            "{who}: no CA certificates found in the system's store: no https server can be verified; install them or {hint}"
        );
    }
    roots
}

/// What went wrong in a handshake: rustls' own error when there is one
/// (`invalid peer certificate: UnknownIssuer`), else the I/O error.
pub(crate) fn reason(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}
