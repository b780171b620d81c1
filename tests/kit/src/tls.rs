//! Certificates for tandem's TLS tests: a CA of the test's own (trusted
//! by the test's clients only) and server certificates it signs, written
//! as the PEM files `--tls-cert` and `--tls-key` read.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::conn::within;

/// A CA and the server certificates it signs, as PEM files in a directory
/// of the test's own.
pub struct Pki {
    pub dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    /// A new CA, and a directory for the server's files.
    pub fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tandem-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tandem tls test CA");
        let key = KeyPair::generate().unwrap();
        let cert = ca.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(ca, key),
            ca_der: cert.der().clone(),
        }
    }

    /// Writes a new certificate for 127.0.0.1 and localhost to `cert.pem`
    /// and `key.pem` (replacing any there); returns its DER, to recognize
    /// it in a handshake.
    pub fn issue(&self) -> Vec<u8> {
        let mut leaf =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "127.0.0.1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &self.issuer).unwrap();
        // Written beside and renamed, as a deployment tool would.
        std::fs::write(self.dir.join("cert.tmp"), cert.pem()).unwrap();
        std::fs::write(self.dir.join("key.tmp"), key.serialize_pem()).unwrap();
        std::fs::rename(self.dir.join("cert.tmp"), self.cert()).unwrap();
        std::fs::rename(self.dir.join("key.tmp"), self.key()).unwrap();
        cert.der().to_vec()
    }

    /// The server certificate's PEM file.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The CA's certificate as a PEM file (what a client is told to trust).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server key's PEM file.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// A client trusting this CA only, offering these ALPN protocols.
    pub fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }

    /// A TLS connection to `port` offering these ALPN protocols.
    pub async fn connect(&self, port: u16, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        within("the tls handshake", self.client(alpn).connect(name, tcp))
            .await
            .expect("handshake")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
