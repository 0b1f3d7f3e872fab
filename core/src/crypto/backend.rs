//! AES-256-GCM backends. Both seal and open in place with a detached 16-byte tag, and produce
//! identical bytes; the vectors run against each.
//!
//! The trait is sealed: a backend is part of the security boundary, not an extension point.

use crate::error::Error;
use crate::format::header::TAG_LEN;
use crate::secret::KEY_LEN;

mod sealed {
    pub trait Sealed {}
}

/// An AES-256-GCM implementation.
pub trait AeadBackend: sealed::Sealed {
    /// An expanded key (round keys, GHASH tables), wiped on drop by the implementation.
    type Key;

    /// Expands a 32-byte key.
    fn key(bytes: &[u8; KEY_LEN]) -> Result<Self::Key, Error>;

    /// Encrypts `buf` in place and returns the tag.
    fn seal(
        key: &Self::Key,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error>;

    /// Checks `tag` and decrypts `buf` in place. On failure `buf` is zeroed (some
    /// implementations decrypt before they compare the tag), and the error is
    /// [`Error::Decrypt`].
    fn open(
        key: &Self::Key,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error>;
}

/// No AES at all: the expanded "key" is the raw 32-byte message key, for hosts that run the
/// AES-256-GCM step themselves (WebCrypto; see [`crate::envelope::AesStep`]). Never used to seal
/// or open in core.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawKey;

impl sealed::Sealed for RawKey {}

impl AeadBackend for RawKey {
    type Key = crate::SecretBytes;

    fn key(bytes: &[u8; KEY_LEN]) -> Result<Self::Key, Error> {
        let mut copy = *bytes;
        Ok(crate::SecretBytes::from_bytes(&mut copy))
    }

    fn seal(_: &Self::Key, _: &[u8; 12], _: &[u8], _: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        Err(Error::Internal("the raw-key backend runs no AES"))
    }

    fn open(
        _: &Self::Key,
        _: &[u8; 12],
        _: &[u8],
        _: &mut [u8],
        _: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        Err(Error::Internal("the raw-key backend runs no AES"))
    }
}

/// A backend whose every seal and open fails (feature `dev`, tests only): for the paths that
/// must clean up after a failed AES step, such as a stream frame's plaintext already copied
/// into the caller's output.
#[cfg(feature = "dev")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Failing;

#[cfg(feature = "dev")]
impl sealed::Sealed for Failing {}

#[cfg(feature = "dev")]
impl AeadBackend for Failing {
    type Key = crate::SecretBytes;

    fn key(bytes: &[u8; KEY_LEN]) -> Result<Self::Key, Error> {
        let mut copy = *bytes;
        Ok(crate::SecretBytes::from_bytes(&mut copy))
    }

    fn seal(_: &Self::Key, _: &[u8; 12], _: &[u8], _: &mut [u8]) -> Result<[u8; TAG_LEN], Error> {
        Err(Error::Internal("the failing backend fails"))
    }

    fn open(
        _: &Self::Key,
        _: &[u8; 12],
        _: &[u8],
        buf: &mut [u8],
        _: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        buf.fill(0);
        Err(Error::Decrypt)
    }
}

/// RustCrypto's `aes-gcm`: pure Rust, constant time, runs on every target (AES-NI and CLMUL
/// when the CPU has them, bitsliced software otherwise, as in wasm).
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl sealed::Sealed for RustCrypto {}

impl AeadBackend for RustCrypto {
    type Key = aes_gcm::Aes256Gcm;

    fn key(bytes: &[u8; KEY_LEN]) -> Result<Self::Key, Error> {
        use aes_gcm::KeyInit;
        aes_gcm::Aes256Gcm::new_from_slice(bytes)
            .map_err(|_| Error::Internal("aes-gcm: 32-byte key refused"))
    }

    fn seal(
        key: &Self::Key,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        use aes_gcm::AeadInOut;
        let tag = key
            .encrypt_inout_detached(nonce.into(), aad, buf.into())
            // aes-gcm refuses only inputs over its length limit, which callers check first.
            .map_err(|_| Error::Internal("aes-gcm: seal refused"))?;
        Ok(tag.into())
    }

    fn open(
        key: &Self::Key,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        use aes_gcm::AeadInOut;
        match key.decrypt_inout_detached(nonce.into(), aad, (&mut *buf).into(), tag.into()) {
            Ok(()) => Ok(()),
            Err(_) => {
                buf.fill(0);
                Err(Error::Decrypt)
            }
        }
    }
}

/// AWS-LC's AES-256-GCM through `aws-lc-rs`: AES-NI, VAES and AVX-512 code paths on x86-64.
#[cfg(feature = "aws-lc")]
#[derive(Clone, Copy, Debug, Default)]
pub struct AwsLc;

#[cfg(feature = "aws-lc")]
impl sealed::Sealed for AwsLc {}

#[cfg(feature = "aws-lc")]
impl AeadBackend for AwsLc {
    type Key = aws_lc_rs::aead::LessSafeKey;

    fn key(bytes: &[u8; KEY_LEN]) -> Result<Self::Key, Error> {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| Error::Internal("aws-lc: 32-byte key refused"))?;
        Ok(LessSafeKey::new(unbound))
    }

    fn seal(
        key: &Self::Key,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        use aws_lc_rs::aead::{Aad, Nonce};
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
            .map_err(|_| Error::Internal("aws-lc: seal refused"))?;
        let mut out = [0u8; TAG_LEN];
        let tag = tag.as_ref();
        if tag.len() != TAG_LEN {
            return Err(Error::Internal("aws-lc: tag is not 16 bytes"));
        }
        out.copy_from_slice(tag);
        Ok(out)
    }

    fn open(
        key: &Self::Key,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        use aws_lc_rs::aead::{Aad, Nonce};
        match key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            tag,
            buf,
        ) {
            Ok(_) => Ok(()),
            Err(_) => {
                buf.fill(0);
                Err(Error::Decrypt)
            }
        }
    }
}

/// The fastest backend compiled in: [`AwsLc`] with the `aws-lc` feature, else [`RustCrypto`].
#[cfg(feature = "aws-lc")]
pub type DefaultBackend = AwsLc;
/// The fastest backend compiled in: [`AwsLc`] with the `aws-lc` feature, else [`RustCrypto`].
#[cfg(not(feature = "aws-lc"))]
pub type DefaultBackend = RustCrypto;
