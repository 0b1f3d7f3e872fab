//! Key management services: identifiers, and (with the `kms` feature) the request builders and
//! response parsers a host executes. Nothing here opens a connection; see the crate docs.
//!
//! Providers: AWS KMS ([`aws`]) and Google Cloud KMS ([`gcp`]): key identifiers and the
//! grants a customer adds; with `kms`, each behind the provider seam ([`provider`]): requests
//! and the reading of their answers, error classification, credential exchanges. Provider-
//! neutral: the seam, the classified error ([`KmsError`]), the request and response a host
//! executes ([`http`]), the key validation plan ([`validate`]) and byok's OIDC issuer
//! ([`oidc`]).

pub mod aws;
pub mod azure;
pub mod error;
pub mod gcp;
pub mod http;
#[cfg(feature = "kms")]
pub mod oidc;
#[cfg(feature = "kms")]
pub mod provider;
pub mod trust;
#[cfg(feature = "kms")]
pub mod validate;

pub use error::{KmsError, KmsErrorKind};
pub use http::{HttpRequest, HttpResponse};
