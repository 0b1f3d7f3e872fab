//! AWS KMS: key identifiers and the endpoints they imply, and the key policy a customer adds;
//! with the `kms` feature, the requests (`request`, signed in `signing`), their error answers
//! (`error`), STS `AssumeRole` (`sts`), and the provider seam's implementation (`provider`).

pub mod arn;
#[cfg(feature = "kms")]
pub mod error;
pub mod policy;
#[cfg(feature = "kms")]
mod provider;
#[cfg(feature = "kms")]
pub mod request;
#[cfg(feature = "kms")]
mod signing;
#[cfg(feature = "kms")]
pub mod sts;

pub use arn::{Endpoint, Fips, IdentifierError, KeyArn, KeyRef, Partition};
#[cfg(feature = "kms")]
pub use provider::{Aws, SESSION_DURATION, STS_AUDIENCE, session_name};
