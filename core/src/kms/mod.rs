//! Key management services: identifiers, and (with the `kms` feature) the request builders and
//! response parsers a host executes. Nothing here opens a connection; see the crate docs.
//!
//! One provider so far, AWS KMS ([`aws`]): key identifiers and endpoints, and the key policy a
//! customer adds; with `kms`, the SigV4-signed requests and the parsing of their answers, error
//! classification, STS `AssumeRole`, and the key validation plan. Provider-neutral: the
//! classified error ([`KmsError`]) and the request and response a host executes ([`http`]).

pub mod aws;
pub mod error;
pub mod gcp;
pub mod http;
#[cfg(feature = "kms")]
pub mod oidc;

pub use error::{KmsError, KmsErrorKind};
pub use http::{HttpRequest, HttpResponse};
