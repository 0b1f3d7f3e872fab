//! Suite 1: per-message keys and key commitment from HKDF-SHA256, sealing with AES-256-GCM.
//!
//! [`ScopeKey`] holds a scope key and its HKDF pseudo-random key, prepared once. Each message
//! derives 64 bytes from it: an AES-256 key used for that message only, and a 32-byte key
//! commitment written in the header. Callers never see a nonce: with one key per message the
//! nonce only numbers frames (`nonce(index, final)`, see `docs/format.md`).
//!
//! Two interchangeable AEAD backends produce the same bytes: [`backend::RustCrypto`] (portable,
//! pure Rust, every target) and, with the `aws-lc` feature, [`backend::AwsLc`] (native, AES-NI
//! and VAES/AVX-512 GCM). [`DefaultBackend`] is the faster one that is compiled in.

pub mod backend;
mod kdf;

pub use backend::{AeadBackend, DefaultBackend};
pub use kdf::ScopeKey;

/// The 12-byte AES-GCM nonce of frame `index` of a message.
///
/// `0x000000 | index (u64 big endian) | final (0x01 for the last frame, else 0x00)`.
/// Single-shot messages and wrapped keys are frame 0, final. The final flag makes a stream
/// truncated at a frame boundary fail, as in the STREAM construction (Hoang, Reyhanitabar,
/// Rogaway, Vizár 2015).
pub(crate) fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    let (_, rest) = n.split_at_mut(3);
    let (counter, flag) = rest.split_at_mut(8);
    counter.copy_from_slice(&index.to_be_bytes());
    flag.copy_from_slice(&[u8::from(last)]);
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn nonce_layout() {
        assert_eq!(super::nonce(0, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(
            super::nonce(0x0102, false),
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0]
        );
    }
}
