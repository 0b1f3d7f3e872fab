//! The vendor's own GCP service account key, for development: loaded from its JSON key file
//! (`--gcp-service-account-file`), it signs the JWT bearer grants that core's GCP credential
//! flow asks for. The private key stays here: core sees the account's email and key id only.
//! Production needs no such file: customers trust byok's OIDC issuer (workload identity
//! federation).

use byok_core::kms::gcp::ServiceAccount;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pkcs8::der::Decode;
use pkcs8::{PrivateKeyInfo, SecretDocument};
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
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
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
}
