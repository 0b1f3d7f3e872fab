//! TLS for `byok serve` (rustls, aws-lc-rs): the certificate chain and key from PEM files,
//! reloaded on SIGHUP without dropping a connection.
//!
//! A reload that fails (a missing file, a key that does not match the certificate, a leaf that
//! has expired or is not valid yet) keeps the certificate in use and logs why: a botched renewal
//! must not take the server down. A leaf within [`EXPIRY_WARNING`] of its end is logged at start
//! and on each reload. Only TLS 1.2 and 1.3 with rustls' default suites; HTTP/1.1 is the only
//! protocol offered.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};

/// The server's certificate, swapped whole on reload.
#[derive(Debug)]
pub struct Certificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Loads the chain and the key; an error names the file and the fix.
    ///
    /// An expired leaf is served with an error in the log: refusing to start would not bring
    /// a valid certificate either, and the operator may be restarting to install one.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, String> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let key = read(cert_path, key_path, &provider)?;
        if let Err(e) = check_validity(cert_path, &key, now()) {
            tracing::error!(error = %e, "serving a TLS certificate clients will refuse");
        }
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let key = read(&self.cert_path, &self.key_path, &self.provider)?;
        check_validity(&self.cert_path, &key, now())?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// The rustls configuration that serves this certificate (and its reloads).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// How long before its end a leaf certificate is logged as expiring.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// Seconds since the epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `Err` if the leaf of `key`'s chain is not valid at `now` (seconds since the epoch); a warning
/// in the log if it ends within [`EXPIRY_WARNING`].
fn check_validity(cert_path: &Path, key: &CertifiedKey, now: i64) -> Result<(), String> {
    let leaf = key
        .end_entity_cert()
        .map_err(|e| format!("TLS certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        format!(
            "cannot read the leaf certificate in {}: {e}",
            cert_path.display()
        )
    })?;
    let validity = cert.validity();
    let (from, until) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let (from_text, until_text) = (
        validity.not_before.to_string(),
        validity.not_after.to_string(),
    );
    if now > until {
        return Err(format!(
            "the certificate in {} expired on {until_text}: install a renewed one",
            cert_path.display()
        ));
    }
    if now < from {
        return Err(format!(
            "the certificate in {} is not valid until {from_text} (is this machine's clock right?)",
            cert_path.display()
        ));
    }
    let warn = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    if until - now < warn {
        tracing::warn!(certificate = %cert_path.display(), expires = %until_text, "the TLS certificate expires soon: renew it, then send SIGHUP");
    }
    Ok(())
}

fn read(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read the TLS certificate chain {}: {e} (give PEM `CERTIFICATE` blocks, leaf first)",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (give the chain, leaf first)",
            cert_path.display()
        ));
    }
    let pem = crate::private_file::read(key_path, "a private key")?;
    // The error names the file only: a key parser's message could quote key bytes.
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        format!(
            "cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1) from {}",
            key_path.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        format!(
            "the TLS key {} does not fit the certificate {}: {e}",
            key_path.display(),
            cert_path.display()
        )
    })
}
