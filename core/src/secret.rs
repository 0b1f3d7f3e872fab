//! Key material: boxed, wiped on drop, never printed, compared in constant time.
//!
//! Every secret in byok-core is a [`SecretBytes`] or a type that owns one. Its bytes are
//! reachable only through [`SecretBytes::expose_secret`], so every use shows up in a grep. It has
//! no `Clone` (copies of keys are made on purpose, with [`SecretBytes::duplicate`]), its `Debug`
//! prints only the type name, and equality goes through [`subtle::ConstantTimeEq`].

use alloc::boxed::Box;
use alloc::vec::Vec;
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

/// A buffer of secret bytes of any length (a plaintext, a decoded secret), wiped when dropped:
/// its bytes and its spare capacity.
///
/// Why not `Zeroizing<Vec<u8>>`: zeroize 1.9 wipes a `Vec` one element at a time, each a
/// volatile store, so a 1 KiB plaintext cost about 0.15 µs per request on the data path, more
/// than the token check. This wipes the slice in bulk (zeroize's `fill` then an optimisation
/// barrier), which no compiler may remove either. It hands out only slices, never the `Vec`,
/// so nothing can grow it and leave an unwiped copy behind in a freed allocation.
#[derive(Default)]
pub struct SecretVec(Vec<u8>);

impl SecretVec {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        Self(alloc::vec![0; len])
    }

    /// `len` zero bytes, or `None` when the allocation fails: for a host whose memory is small
    /// and whose allocation failures abort (wasm), sizing a buffer by its caller's input.
    pub fn try_zeroed(len: usize) -> Option<Self> {
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).ok()?;
        bytes.resize(len, 0);
        Some(Self(bytes))
    }

    /// Takes `bytes` as they are (no copy): from now on they are wiped when dropped.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Keeps the first `len` bytes; the rest stay in the spare capacity and are wiped with it.
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    /// Gives up the buffer without wiping it, for a caller whose bytes are no longer secret
    /// (a plaintext sealed in place is a ciphertext now).
    pub fn into_public(mut self) -> Vec<u8> {
        core::mem::take(&mut self.0)
    }
}

impl core::ops::Deref for SecretVec {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl core::ops::DerefMut for SecretVec {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl SecretVec {
    /// Wipes every byte of the allocation: the spare capacity is taken into the length first
    /// (so every byte is an initialised one, which a test can read), then all of it is wiped
    /// behind zeroize's barrier.
    fn wipe(&mut self) {
        let capacity = self.0.capacity();
        self.0.resize(capacity, 0);
        self.0.as_mut_slice().zeroize();
    }
}

impl Drop for SecretVec {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl ZeroizeOnDrop for SecretVec {}

impl fmt::Debug for SecretVec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretVec({} bytes)", self.0.len())
    }
}

/// Appends `more` to `buf`, a buffer of secret bytes (an answer holding key material, read in
/// pieces). When it must grow, it grows into a new buffer and the old one is wiped: a `Vec`'s
/// own growth frees its old buffer unwiped, leaving a copy of what was read so far.
pub fn extend_wiped(buf: &mut zeroize::Zeroizing<Vec<u8>>, more: &[u8]) {
    let len = buf.len().saturating_add(more.len());
    if len > buf.capacity() {
        let room = len.max(buf.capacity().saturating_mul(2));
        let mut bigger = zeroize::Zeroizing::new(Vec::with_capacity(room));
        bigger.extend_from_slice(buf);
        // The old buffer is dropped here, wiped.
        *buf = bigger;
    }
    buf.extend_from_slice(more);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_too_large_to_allocate_is_none_not_an_abort() {
        let small = SecretVec::try_zeroed(10).expect("10 bytes");
        assert_eq!(&*small, &[0; 10]);
        // Over isize::MAX: refused by the allocator's size check, never attempted.
        assert!(SecretVec::try_zeroed(usize::MAX).is_none());
        assert!(SecretVec::try_zeroed(isize::MAX as usize + 1).is_none());
        assert!(crate::envelope::SealBuffer::try_zeroed(usize::MAX - 1).is_none());
        let mut buf = crate::envelope::SealBuffer::try_zeroed(5).expect("5 bytes");
        assert_eq!(buf.plaintext_len(), 5);
        assert_eq!(buf.plaintext_mut(), &[0; 5]);
    }

    #[test]
    fn a_wipe_reaches_the_bytes_cut_off_by_truncate() {
        let mut v = SecretVec::from_vec(alloc::vec![0xa5; 64]);
        v.truncate(10);
        v.wipe();
        // The 54 bytes cut off were spare capacity: the wipe reached them too.
        assert_eq!(v.len(), 64);
        assert!(v.iter().all(|&b| b == 0), "{:?}", &*v);
    }

    #[test]
    fn extend_wiped_keeps_every_piece_in_order_and_grows_by_doubling() {
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(4));
        let mut expect = Vec::new();
        for i in 0..200u8 {
            let piece = alloc::vec![i; usize::from(i % 7)];
            extend_wiped(&mut buf, &piece);
            expect.extend_from_slice(&piece);
            assert!(
                buf.capacity() <= 2 * buf.len().max(4) + 6,
                "{}",
                buf.capacity()
            );
        }
        assert_eq!(*buf, expect);
    }

    #[test]
    fn debug_shows_the_length_only() {
        let v = SecretVec::from_vec(alloc::vec![0x42; 3]);
        assert_eq!(alloc::format!("{v:?}"), "SecretVec(3 bytes)");
    }

    #[test]
    fn into_public_keeps_the_bytes() {
        let v = SecretVec::from_vec(alloc::vec![7; 5]);
        assert_eq!(v.into_public(), alloc::vec![7; 5]);
    }
}
