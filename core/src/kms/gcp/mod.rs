//! Google Cloud KMS (kms-wire.md section 4): key names ([`KeyName`]), parsed strictly and
//! reduced to the CryptoKey byok stores, the host byok calls fixed, never taken from a name;
//! with the `kms` feature, the requests and their answers (`request`, CRC32C checked both
//! ways), error classification (`error`), access tokens (`auth`: workload identity federation
//! with byok's OIDC token, or the vendor's service account), the IAM bindings to grant
//! (`policy`), and the provider seam's implementation (`provider`).

#[cfg(feature = "kms")]
pub mod auth;
#[cfg(feature = "kms")]
pub mod error;
pub mod name;
#[cfg(feature = "kms")]
pub mod policy;
#[cfg(feature = "kms")]
mod provider;
#[cfg(feature = "kms")]
pub mod request;

#[cfg(feature = "kms")]
pub use auth::ServiceAccount;
pub use name::{ENDPOINT_HOST, KeyName, NameError};
#[cfg(feature = "kms")]
pub use provider::Gcp;
