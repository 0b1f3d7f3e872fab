//! AWS KMS: key identifiers and the endpoints they imply.

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
