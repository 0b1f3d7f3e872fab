//! The vendor's own keys for its cloud principals, which sign the assertions core's credential
//! flows ask for ([`AssertionSigner`]). The private keys stay here: core sees who they are only.
//!
//! - [`ServiceAccountKey`]: a GCP service account's JSON key file
//!   (`--gcp-service-account-file`), for development; RS256 with its `kid`.
//! - [`AppCertificate`]: an Entra app's certificate and key, one PEM file
//!   (`--azure-certificate-file`, as `az ad sp create-for-rbac --create-cert` writes it); PS256
//!   with the certificate's SHA-256 thumbprint (`x5t#S256`), as Entra expects.
//!
//! Production needs neither: customers trust byok's OIDC issuer (workload identity federation,
//! federated identity credentials).

use base64ct::{Base64UrlUnpadded, Encoding};
use byok_core::kms::gcp::ServiceAccount;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pkcs8::der::Decode;
use pkcs8::{PrivateKeyInfo, SecretDocument};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::credentials::AssertionSigner;

/// A service account key: who it is and the key that signs for it. `Debug` shows the email and
/// key id only.
pub struct ServiceAccountKey {
    account: ServiceAccount,
    key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct KeyFile {
    r#type: String,
    client_email: String,
    private_key_id: String,
    /// Moved into a `Zeroizing` at once (see `from_json`).
    private_key: String,
}

impl ServiceAccountKey {
    /// Reads a key file's JSON (`type` `service_account`, `client_email`, `private_key_id`,
    /// `private_key` as a PKCS#8 PEM). Errors name the field at fault, never key bytes.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(json).map_err(|e| {
            format!(
                "not a service account key file: {:?} error at line {}, column {}",
                e.classify(),
                e.line(),
                e.column()
            )
        })?;
        if file.r#type != "service_account" {
            return Err(format!(
                "the key file's type is {:?}, not \"service_account\"",
                file.r#type
            ));
        }
        let pem = Zeroizing::new(file.private_key);
        let doc = match SecretDocument::from_pem(&pem) {
            Ok(("PRIVATE KEY", doc)) => doc,
            _ => return Err("the key file's private_key is not a PKCS#8 PEM key".into()),
        };
        let info = PrivateKeyInfo::from_der(doc.as_bytes())
            .map_err(|_| "the key file's private_key is not a PKCS#8 key".to_owned())?;
        Ok(Self {
            account: ServiceAccount {
                client_email: file.client_email,
                private_key_id: file.private_key_id,
            },
            key: EncodingKey::from_rsa_der(info.private_key),
        })
    }

    /// Reads the key file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = crate::private_file::read(path, "a private key")?;
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Who it is.
    pub fn account(&self) -> &ServiceAccount {
        &self.account
    }
}

impl AssertionSigner for ServiceAccountKey {
    fn sign(&self, claims: &serde_json::Value) -> Result<Zeroizing<String>, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.account.private_key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map(Zeroizing::new)
            .map_err(|e| format!("signing the service account assertion failed: {e}"))
    }
}

/// An Entra app's certificate: its SHA-256 thumbprint and the key that signs for it. `Debug`
/// shows the thumbprint only.
pub struct AppCertificate {
    thumbprint: String,
    key: EncodingKey,
}

impl std::fmt::Debug for AppCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCertificate")
            .field("x5t#S256", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl AppCertificate {
    /// Reads a PEM bundle: the certificate (the first `CERTIFICATE` block: the one registered
    /// on the app) and its RSA key (`PRIVATE KEY`, PKCS#8, or `RSA PRIVATE KEY`, PKCS#1). Errors
    /// name the block at fault, never key bytes.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let mut thumbprint = None;
        let mut key = None;
        for text in pem_blocks(pem) {
            let (label, der) = pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|_| {
                "the certificate file has a PEM block that does not decode".to_owned()
            })?;
            let der = Zeroizing::new(der);
            match label {
                "CERTIFICATE" if thumbprint.is_none() => {
                    thumbprint = Some(Base64UrlUnpadded::encode_string(&Sha256::digest(&*der)));
                }
                "PRIVATE KEY" => {
                    let info = PrivateKeyInfo::from_der(&der).map_err(|_| {
                        "the certificate file's PRIVATE KEY is not a PKCS#8 key".to_owned()
                    })?;
                    key = Some(EncodingKey::from_rsa_der(info.private_key));
                }
                "RSA PRIVATE KEY" => key = Some(EncodingKey::from_rsa_der(&der)),
                _ => {}
            }
        }
        match (thumbprint, key) {
            (Some(thumbprint), Some(key)) => Ok(Self { thumbprint, key }),
            (None, _) => Err("the certificate file holds no CERTIFICATE block".into()),
            (_, None) => Err(
                "the certificate file holds no RSA private key (PRIVATE KEY or RSA PRIVATE KEY)"
                    .into(),
            ),
        }
    }

    /// Reads the PEM file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = crate::private_file::read(path, "a private key")?;
        Self::from_pem(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The certificate's SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

/// Each `-----BEGIN ...-----` to `-----END ...-----` block of a PEM bundle, in order.
fn pem_blocks(pem: &str) -> impl Iterator<Item = &str> {
    let mut rest = pem;
    std::iter::from_fn(move || {
        let start = rest.find("-----BEGIN ")?;
        let end_line = start + rest[start..].find("-----END ")?;
        let after = end_line + "-----END ".len();
        let end = after + rest[after..].find("-----")? + "-----".len();
        let block = &rest[start..end];
        rest = &rest[end..];
        Some(block)
    })
}

impl AssertionSigner for AppCertificate {
    fn sign(&self, claims: &serde_json::Value) -> Result<Zeroizing<String>, String> {
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map(Zeroizing::new)
            .map_err(|e| format!("signing the app's certificate assertion failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_checked_field_by_field() {
        let bad = [
            ("{", "not a service account key file"),
            (
                r#"{"type":"authorized_user","client_email":"a","private_key_id":"k","private_key":"x"}"#,
                "not \"service_account\"",
            ),
            (
                r#"{"type":"service_account","client_email":"a","private_key_id":"k","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
                "private_key",
            ),
        ];
        for (json, want) in bad {
            let e = ServiceAccountKey::from_json(json).unwrap_err();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("AAAA"), "no key bytes in errors: {e}");
        }
    }

    #[test]
    fn certificate_files_need_a_certificate_and_a_key() {
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let e = AppCertificate::from_pem(cert).unwrap_err();
        assert!(e.contains("no RSA private key"), "{e}");
        let e = AppCertificate::from_pem("").unwrap_err();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = AppCertificate::from_pem(
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(e.contains("does not decode"), "{e}");
        assert_eq!(pem_blocks(&format!("junk\n{cert}x{cert}")).count(), 2);
    }
}
