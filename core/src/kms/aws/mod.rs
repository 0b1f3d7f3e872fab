//! AWS KMS: key identifiers and the endpoints they imply.

pub mod arn;

pub use arn::{Endpoint, Fips, IdentifierError, KeyArn, KeyRef, Partition};
