//! Azure Key Vault and Managed HSM (kms-wire.md section 5). So far: key URLs ([`KeyUrl`]),
//! parsed strictly against the known clouds' suffixes and Azure's name grammar; byok calls
//! only the URL rebuilt from the checked parts. Requests, errors, auth and the provider seam's
//! implementation come next (issue 17).

pub mod url;

pub use url::{Cloud, KeyUrl, Service, UrlError};
