//! Data keys: a fresh random key for the caller to encrypt large objects with, plus the same key
//! sealed under a scope key for storage beside the object.
//!
//! ```text
//! wrapped = header (92 bytes, mode 3) | AES-256-GCM(message key, nonce(0, final), aad, data key) | tag
//!         = 140 bytes
//! ```
//!
//! The mode byte is part of the key derivation, so a wrapped data key never opens as a message
//! and a message never opens as a data key.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::context::Context;
use crate::crypto::{AeadBackend, ScopeKey};
use crate::envelope::{Envelope, check_unit, open_checked, seal_to_vec};
use crate::error::{Error, FormatError};
use crate::format::header::{HEADER_LEN, Mode, TAG_LEN};
use crate::secret::{KEY_LEN, SecretBytes};

/// Length of a wrapped data key.
pub const WRAPPED_LEN: usize = HEADER_LEN + KEY_LEN + TAG_LEN;

/// A 32-byte data key in the clear, wiped on drop. Use it, then drop it; store only the
/// wrapped form.
pub struct DataKey(SecretBytes);

impl DataKey {
    /// The key bytes, to hand to the cipher that uses them.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl PartialEq for DataKey {
    /// Constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for DataKey {}

impl<B: AeadBackend> Envelope<B> {
    /// Draws a fresh data key and seals it under `key`, bound to `context`. Returns the key and
    /// its 140-byte wrapped form.
    pub fn generate_data_key(
        key: &ScopeKey,
        context: &Context,
        rng: &mut impl CryptoRng,
    ) -> Result<(DataKey, Vec<u8>), Error> {
        let data_key = SecretBytes::random(rng);
        let wrapped = Self::wrap_secret(key, context, &data_key, rng)?;
        Ok((DataKey(data_key), wrapped))
    }

    /// Opens a wrapped data key sealed under `key` with `context`.
    pub fn unwrap_data_key(
        key: &ScopeKey,
        context: &Context,
        wrapped: &[u8],
    ) -> Result<DataKey, Error> {
        Self::unwrap_secret(key, context, wrapped).map(DataKey)
    }

    /// Seals 32 secret bytes (a data key, a child scope key, an org root key) under `key`,
    /// bound to `context`: the 140-byte mode-3 form. Every key byok stores is stored this way.
    pub fn wrap_secret(
        key: &ScopeKey,
        context: &Context,
        secret: &SecretBytes,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, Error> {
        seal_to_vec::<B>(key, context, Mode::WrappedKey, secret.expose_secret(), rng)
    }

    /// Opens 32 secret bytes sealed by [`Self::wrap_secret`].
    pub fn unwrap_secret(
        key: &ScopeKey,
        context: &Context,
        wrapped: &[u8],
    ) -> Result<SecretBytes, Error> {
        // Header, mode, key id and commitment first, then the body's length
        // (`docs/format.md`, section 8): a wrong-length input under another key is wrong_key,
        // as it would be for a single message.
        let (aead_key, ct_len) = check_unit::<B>(key, context, Mode::WrappedKey, wrapped)?;
        if wrapped.len() != WRAPPED_LEN {
            return Err(FormatError::InvalidField {
                field: "wrapped_key.length",
                found: u32::try_from(wrapped.len()).unwrap_or(u32::MAX),
                expected: "140 bytes",
            }
            .into());
        }
        let mut buf = [0u8; WRAPPED_LEN];
        buf.copy_from_slice(wrapped);
        let result = open_checked::<B>(&aead_key, ct_len, context, &mut buf).and_then(|plain| {
            let bytes = <&mut [u8; KEY_LEN]>::try_from(plain)
                .map_err(|_| Error::Internal("datakey: body length"))?;
            Ok(SecretBytes::from_bytes(bytes))
        });
        zeroize::Zeroize::zeroize(&mut buf);
        result
    }
}
