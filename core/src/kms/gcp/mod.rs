//! Google Cloud KMS (kms-wire.md section 4). So far: key names ([`KeyName`]), parsed strictly
//! and reduced to the CryptoKey byok stores; the host byok calls is fixed, never taken from a
//! name. Requests, answers, errors and the validation plan come with the provider seam.

pub mod name;

pub use name::{ENDPOINT_HOST, KeyName, NameError};
