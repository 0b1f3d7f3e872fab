//! Key derivation for suite 1.
//!
//! ```text
//! PRK        = HKDF-Extract(salt = "byok/v1/suite1/scope-key", IKM = scope key)   once per key
//! OKM (64 B) = HKDF-Expand(PRK, info = header[6..60], 64)                          per message
//! message key = OKM[0..32], commitment = OKM[32..64]
//! ```
//!
//! Why Extract runs once per scope key, with a constant salt, and the per-message salt goes into
//! `info` (not into Extract's salt, as a textbook layout would have it): HKDF-Expand is a PRF
//! keyed by PRK, so a fresh random value in `info` gives a fresh, independent message key just
//! as well; and a fixed PRK lets us key HMAC once and clone its state per message. That removes
//! the Extract step (three SHA-256 compressions) and HMAC key setup (two more) from every message;
//! a 54-byte `info` keeps the rest at five compressions. That is what makes small messages fast
//! enough (see `docs/format.md`, "Why this derivation").

use core::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::Error;
use crate::format::header::{COMMITMENT_LEN, KDF_INFO_LEN};
use crate::key_id::KeyId;
use crate::secret::{KEY_LEN, SecretBytes};

/// HKDF-Extract salt: names the purpose of the PRK so that the same scope key used by another
/// construction (wrapping child keys, a future suite) derives unrelated keys.
const EXTRACT_SALT: &[u8] = b"byok/v1/suite1/scope-key";

/// A scope key (one version of one scope's key), ready to seal and open messages.
///
/// Holds the 32 key bytes and the HMAC state keyed with their HKDF PRK; both are wiped on drop.
/// `Debug` prints only the key id.
pub struct ScopeKey {
    id: KeyId,
    secret: SecretBytes,
    prk: Hkdf<Sha256>,
}

impl ScopeKey {
    /// Prepares key `secret` as version `id.version` of scope `id.scope`.
    pub fn new(id: KeyId, secret: SecretBytes) -> Self {
        let prk = Hkdf::<Sha256>::new(Some(EXTRACT_SALT), secret.expose_secret());
        Self { id, secret, prk }
    }

    /// Draws a fresh random key for `id`.
    pub fn random(id: KeyId, rng: &mut impl rand_core::CryptoRng) -> Self {
        Self::new(id, SecretBytes::random(rng))
    }

    /// Which scope and version this key is.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key bytes, for wrapping the key under its parent. Every call site moves key material
    /// out of this type: keep them few.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.secret.expose_secret()
    }

    /// A second owner of the key bytes (for wrapping the key, or handing it to a KMS), copied
    /// heap to heap with no stack copy; wiped when dropped like the first.
    pub fn duplicate_secret(&self) -> SecretBytes {
        self.secret.duplicate()
    }

    /// The HKDF-Extract output (PRK) of this key, for the known-answer vectors' intermediate
    /// values. Recomputed, not read from the prepared HMAC state.
    #[cfg(feature = "dev")]
    pub(crate) fn prk(&self) -> Zeroizing<[u8; 32]> {
        let (prk, _) = Hkdf::<Sha256>::extract(Some(EXTRACT_SALT), self.secret.expose_secret());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(prk.as_slice());
        out
    }

    /// Derives the message key and commitment for the header whose bytes 6..60 are `info`.
    pub(crate) fn derive(&self, info: &[u8; KDF_INFO_LEN]) -> Result<MessageSecrets, Error> {
        let mut okm = Zeroizing::new([0u8; KEY_LEN + COMMITMENT_LEN]);
        self.prk
            .expand(info, okm.as_mut_slice())
            .map_err(|_| Error::Internal("hkdf: 64-byte expand refused"))?;
        let (key, commitment) = okm.split_at(KEY_LEN);
        let mut secrets = MessageSecrets {
            key: [0; KEY_LEN],
            commitment: [0; COMMITMENT_LEN],
        };
        secrets.key.copy_from_slice(key);
        secrets.commitment.copy_from_slice(commitment);
        Ok(secrets)
    }
}

impl fmt::Debug for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeKey({}, ..)", self.id)
    }
}

/// A message's AES key and key commitment. The key is wiped on drop.
pub(crate) struct MessageSecrets {
    pub(crate) key: [u8; KEY_LEN],
    pub(crate) commitment: [u8; COMMITMENT_LEN],
}

impl MessageSecrets {
    /// Whether `commitment` (from a header) equals the derived one, in constant time.
    pub(crate) fn commitment_matches(&self, commitment: &[u8; COMMITMENT_LEN]) -> bool {
        self.commitment.ct_eq(commitment).into()
    }
}

impl Drop for MessageSecrets {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ZeroizeOnDrop for MessageSecrets {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_id::ScopeId;

    fn key(byte: u8) -> ScopeKey {
        ScopeKey::new(
            KeyId::new(ScopeId::from_bytes([1; 16]), 1),
            SecretBytes::from_bytes(&mut [byte; 32]),
        )
    }

    /// The derivation is plain RFC 5869 HKDF-SHA256; this pins it against an independent
    /// computation (Python `cryptography`, HKDF(SHA256, 64, salt, info).derive(ikm)).
    #[test]
    fn derivation_is_rfc5869_hkdf() {
        let info = [0x5a; KDF_INFO_LEN];
        let s = key(0x11).derive(&info).unwrap();
        let mut okm = [0u8; 64];
        okm[..32].copy_from_slice(&s.key);
        okm[32..].copy_from_slice(&s.commitment);
        assert_eq!(
            hex::encode(okm),
            "be328ef5991afffcd5ed11c12c61f8d56abae85a7841ea4cfc220b0a074370c0\
             e4cd0e51c3c1829d32d291cca394bb8437be77ead81526b01788bcace4b089ae"
        );
    }

    #[test]
    fn debug_is_redacted() {
        let k = key(0x42);
        let s = alloc::format!("{k:?}");
        assert!(s.starts_with("ScopeKey(01010101"), "{s}");
        assert!(!s.contains("42"), "{s}");
    }

    #[test]
    fn different_info_gives_different_keys() {
        let k = key(3);
        let a = k.derive(&[0; KDF_INFO_LEN]).unwrap();
        let b = k.derive(&[1; KDF_INFO_LEN]).unwrap();
        assert_ne!(a.key, b.key);
        assert_ne!(a.commitment, b.commitment);
    }
}
