//! AWS KMS: key identifiers and the endpoints they imply, and the key policy a customer adds;
//! with the `kms` feature, the requests (`request`, signed in `signing`), their error answers
//! (`error`), STS `AssumeRole` (`sts`) and key validation (`validate`).

pub mod arn;
#[cfg(feature = "kms")]
pub mod error;
pub mod policy;
#[cfg(feature = "kms")]
pub mod request;
#[cfg(feature = "kms")]
mod signing;
#[cfg(feature = "kms")]
pub mod sts;
#[cfg(feature = "kms")]
pub mod validate;

pub use arn::{Endpoint, Fips, IdentifierError, KeyArn, KeyRef, Partition};
