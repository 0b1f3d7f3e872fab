//! Azure Key Vault and Managed HSM (kms-wire.md section 5): key URLs ([`KeyUrl`]), parsed
//! strictly against the known clouds' suffixes and Azure's name grammar (byok calls only the
//! URL rebuilt from the checked parts); with the `kms` feature, error classification (`error`),
//! the envelope that binds a wrapped root to its org, scope and version, since `wrapkey` has no
//! additional data (`envelope`), the `wrapkey`, `unwrapkey` and GET requests with the reading of
//! their answers (`request`), Entra tokens (a federated credential with byok's own token, the
//! vendor app's certificate or secret) and the vault's challenge checked against the key's
//! cloud (`auth`), and both halves of the provider seam (`Azure`).

#[cfg(feature = "kms")]
pub mod auth;
pub mod challenge;
#[cfg(feature = "kms")]
pub mod envelope;
#[cfg(feature = "kms")]
pub mod error;
#[cfg(feature = "kms")]
mod provider;
#[cfg(feature = "kms")]
pub mod request;
pub mod url;

#[cfg(feature = "kms")]
pub use provider::{Azure, HSM_ROLE, HSM_ROLE_ID, VAULT_ROLE, VAULT_ROLE_ID};
pub use url::{Cloud, KeyUrl, Service, UrlError};
