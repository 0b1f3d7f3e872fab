//! # byok-core
//!
//! The sans-IO heart of byok: the v1 ciphertext format, envelope and streaming encryption, and
//! the key types, shared byte for byte by the server, the browser and edge functions.
//!
//! ## What this crate never does
//!
//! No sockets, no files, no clock, no randomness of its own, no global state. Randomness comes
//! in as a [`rand_core::CryptoRng`] the host provides; time (where later modules need it) as an
//! argument. So the same code runs in a server, a browser tab and a wasm edge isolate, and
//! tests are deterministic.
//!
//! The base crate is `#![no_std]` + `alloc` (CI builds it for `wasm32v1-none`, which has no
//! `std`). The `kms` feature adds the providers' request building, which needs `std`; the
//! `aws-lc` feature adds the accelerated native AEAD backend.
//!
//! ## Example
//!
//! ```
//! use byok_core::{Context, KeyId, ScopeId, ScopeKey, envelope};
//! # let mut rng = byok_core::dev::TestRng::seeded(7);
//! let key = ScopeKey::random(KeyId::new(ScopeId::random(&mut rng), 1), &mut rng);
//! let ctx = Context::from_pairs([("tenant", "acme"), ("table", "notes")]).unwrap();
//!
//! let ct = envelope::encrypt(&key, &ctx, b"hello", &mut rng).unwrap();
//! // A host reads the key id from the header to find the key, then decrypts.
//! let (header, _) = byok_core::Header::parse(&ct).unwrap();
//! assert_eq!(header.key, key.id());
//! assert_eq!(envelope::decrypt(&key, &ctx, &ct).unwrap(), b"hello");
//! // The same bytes with another context do not decrypt.
//! assert!(envelope::decrypt(&key, &byok_core::Context::new(), &ct).is_err());
//! ```
//!
//! The format is specified in `docs/format.md`; `manual` explains the design decisions.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
// Library code handles untrusted bytes: no panicking shortcuts, no silent truncation, and no std
// item where core or alloc has it (the base crate is no_std). Tests and examples may unwrap.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod api_code;
#[cfg(feature = "audit-log")]
pub mod audit_log;
pub mod context;
pub mod crypto;
pub mod datakey;
pub mod envelope;
pub mod error;
pub mod format;
pub mod grace;
pub mod key_id;
pub mod kms;
pub mod lease;
pub mod manual;
pub mod retry;
pub mod scope;
pub mod secret;
pub mod stream;
pub mod validate;

#[cfg(feature = "dev")]
pub mod dev;

pub use api_code::ApiCode;
pub use context::Context;
pub use crypto::{AeadBackend, DefaultBackend, ScopeKey};
pub use datakey::DataKey;
pub use envelope::Envelope;
pub use error::{Error, FormatError, Misuse, Unsupported};
pub use format::{FrameSize, Header, Mode};
pub use key_id::{KeyId, ScopeId};
pub use lease::Lease;
pub use secret::{SecretBytes, SecretVec};
