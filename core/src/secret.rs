//! Key material: boxed, wiped on drop, never printed, compared in constant time.
//!
//! Every secret in byok-core is a [`SecretBytes`] or a type that owns one. Its bytes are
//! reachable only through [`SecretBytes::expose_secret`], so every use shows up in a grep. It has
//! no `Clone` (copies of keys are made on purpose, with [`SecretBytes::duplicate`]), its `Debug`
//! prints only the type name, and equality goes through [`subtle::ConstantTimeEq`].

use alloc::boxed::Box;
use core::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every symmetric key in suite 1 (AES-256, HKDF-SHA256 input).
pub const KEY_LEN: usize = 32;

/// 32 secret bytes on the heap, wiped when dropped.
///
/// On the heap so that moving the owner does not leave copies on the stack.
pub struct SecretBytes(Box<[u8; KEY_LEN]>);

impl SecretBytes {
    /// Takes ownership of `bytes` and wipes the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; KEY_LEN]) -> Self {
        let mut boxed = Box::new([0u8; KEY_LEN]);
        boxed.copy_from_slice(bytes);
        bytes.zeroize();
        Self(boxed)
    }

    /// Draws 32 fresh random bytes.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut boxed = Box::new([0u8; KEY_LEN]);
        rng.fill_bytes(boxed.as_mut_slice());
        Self(boxed)
    }

    /// The secret bytes. Every call site is a place where key material leaves this type:
    /// keep them few and say why.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// An explicit copy, for the rare place that must keep two owners (a cache and a caller).
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SecretBytes {}

impl ConstantTimeEq for SecretBytes {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(..)")
    }
}
