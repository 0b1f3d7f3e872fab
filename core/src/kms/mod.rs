//! Key management services: identifiers, and (with the `kms` feature) the request builders and
//! response parsers a host executes. Nothing here opens a connection; see the crate docs.
//!
//! So far: AWS KMS identifiers and endpoints ([`aws`]). The request signing, error
//! classification and validation plan follow in the AWS provider work.

pub mod aws;
pub mod error;
pub mod http;

pub use error::{KmsError, KmsErrorKind};
pub use http::{HttpRequest, HttpResponse};
