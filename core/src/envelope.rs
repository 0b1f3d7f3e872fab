//! Single-shot encryption: one message, one AES-GCM invocation.
//!
//! ```text
//! ciphertext = header (92 bytes, mode 1) | AES-256-GCM(message key, nonce(0, final), aad, plaintext) | tag (16)
//! aad        = header | canonical encoding of the encryption context
//! ```
//!
//! Decryption parses the header, checks that the caller's key is the one it names, derives the
//! message key and commitment, compares the commitment in constant time, and only then runs
//! AES-GCM. Every failure of the last two steps is the same [`Error::Decrypt`].
//!
//! Use [`crate::stream`] for objects too large to hold in memory.

use alloc::vec::Vec;
use core::marker::PhantomData;

use rand_core::CryptoRng;

use crate::context::Context;
use crate::crypto::{AeadBackend, DefaultBackend, ScopeKey, nonce};
use crate::error::{Error, FormatError, Misuse};
use crate::format::header::{HEADER_LEN, Header, Mode, SALT_LEN, Suite, TAG_LEN};
use crate::secret::SecretVec;

/// Largest single-shot plaintext: AES-GCM allows 2^39 - 256 bits per invocation.
pub const MAX_PLAINTEXT_LEN: u64 = (1 << 36) - 32;

/// Bytes a single-shot ciphertext adds to its plaintext: the header and the tag.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Header and tag of a message sealed in place with [`Envelope::encrypt_detached`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detached {
    /// The 92 header bytes, to write before the ciphertext.
    pub header: [u8; HEADER_LEN],
    /// The tag, to write after it.
    pub tag: [u8; TAG_LEN],
}

/// A plaintext laid out to be sealed in place ([`Envelope::seal_buffer`]): room for the header
/// before it and for the tag after it, so the ciphertext is written over it in the same
/// allocation. Wiped when dropped, as a [`SecretVec`].
#[derive(Debug)]
pub struct SealBuffer(SecretVec);

impl SealBuffer {
    /// Room for a plaintext of `len` bytes, zeroed; fill it through [`Self::plaintext_mut`].
    pub fn zeroed(len: usize) -> Self {
        Self(SecretVec::zeroed(len.saturating_add(OVERHEAD)))
    }

    /// [`Self::zeroed`], or `None` when the allocation fails (see [`SecretVec::try_zeroed`]).
    pub fn try_zeroed(len: usize) -> Option<Self> {
        SecretVec::try_zeroed(len.checked_add(OVERHEAD)?).map(Self)
    }

    /// A copy of `plaintext`.
    pub fn copy_of(plaintext: &[u8]) -> Self {
        let mut buf = Self::zeroed(plaintext.len());
        buf.plaintext_mut().copy_from_slice(plaintext);
        buf
    }

    /// The plaintext's bytes.
    pub fn plaintext_mut(&mut self) -> &mut [u8] {
        let end = self.0.len().saturating_sub(TAG_LEN);
        self.0.get_mut(HEADER_LEN..end).unwrap_or_default()
    }

    /// The plaintext's length.
    pub fn plaintext_len(&self) -> usize {
        self.0.len().saturating_sub(OVERHEAD)
    }

    /// Shortens the plaintext to `len` bytes (after decoding into room that was an upper
    /// bound); the bytes cut off are wiped with the buffer.
    pub fn truncate(&mut self, len: usize) {
        let len = len.min(self.plaintext_len());
        self.0.truncate(HEADER_LEN + len + TAG_LEN);
    }
}

/// Single-shot encryption and data keys with AEAD backend `B`.
///
/// `Envelope::<RustCrypto>::encrypt(..)` picks a backend; the free functions [`encrypt`] and
/// [`decrypt`] use [`DefaultBackend`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Envelope<B: AeadBackend = DefaultBackend>(PhantomData<B>);

impl<B: AeadBackend> Envelope<B> {
    /// Encrypts `plaintext` under `key`, bound to `context`.
    pub fn encrypt(
        key: &ScopeKey,
        context: &Context,
        plaintext: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, Error> {
        seal_to_vec::<B>(key, context, Mode::Single, plaintext, rng)
    }

    /// Encrypts `buf` in place and returns the header and tag to write around it.
    ///
    /// For large buffers the caller already owns: no copy, no allocation.
    pub fn encrypt_detached(
        key: &ScopeKey,
        context: &Context,
        buf: &mut [u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Detached, Error> {
        seal_unit::<B>(key, context, Mode::Single, buf, rng)
    }

    /// Decrypts a single-shot ciphertext.
    pub fn decrypt(key: &ScopeKey, context: &Context, ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
        let (aead_key, ct_len) = check_unit::<B>(key, context, Mode::Single, ciphertext)?;
        let (header, body) = split_header(ciphertext)?;
        let (ct, tag) = body
            .split_at_checked(ct_len)
            .ok_or(Error::Internal("envelope: body length"))?;
        // Only the ciphertext is copied, straight into the buffer that becomes the plaintext.
        let mut out = ct.to_vec();
        open_detached::<B>(&aead_key, header, context, &mut out, tag)?;
        Ok(out)
    }

    /// Seals the plaintext in `buf` in place and returns the ciphertext in the same allocation:
    /// no second buffer, no copy of the plaintext. If sealing fails, `buf` is wiped as it drops.
    pub fn seal_buffer(
        key: &ScopeKey,
        context: &Context,
        buf: SealBuffer,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, Error> {
        seal_in::<B>(key, context, Mode::Single, buf, rng)
    }

    /// Decrypts a single-shot ciphertext in place, in the caller's buffer: the plaintext is
    /// returned in the same allocation, wiped when dropped (on failure, before this returns).
    pub fn decrypt_owned(
        key: &ScopeKey,
        context: &Context,
        ciphertext: Vec<u8>,
    ) -> Result<SecretVec, Error> {
        let mut buf = SecretVec::from_vec(ciphertext);
        let len = open_unit::<B>(key, context, Mode::Single, &mut buf)?.len();
        buf.copy_within(HEADER_LEN..HEADER_LEN + len, 0);
        buf.truncate(len);
        Ok(buf)
    }

    /// Decrypts the whole ciphertext in `buf` in place and returns the plaintext part of it.
    ///
    /// On failure the body of `buf` is zeroed: no byte of unauthenticated plaintext is left.
    pub fn decrypt_in_place<'a>(
        key: &ScopeKey,
        context: &Context,
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], Error> {
        open_unit::<B>(key, context, Mode::Single, buf)
    }
}

/// The AES-256-GCM step of one single-shot message, for a host that runs AES itself
/// (WebCrypto in browsers and Workers, where it is many times faster than AES in wasm).
///
/// Core keeps everything the format adds to AES-GCM: it builds the header, derives the message
/// key and, before an open, checks mode, key id, commitment and tag length. The host then runs
/// AES-256-GCM with `key`, `nonce` and `aad` (128-bit tag):
/// - sealing: the ciphertext is `header | AES-GCM output (ciphertext then tag)`, byte for byte
///   what [`encrypt`] makes;
/// - opening: AES-GCM decrypt of the ciphertext after its header; a failure there is
///   `decrypt_failed`, as in [`decrypt`].
///
/// The key is wiped on drop and never shown by `Debug`; a host that copies it out (into
/// WebCrypto) wipes its copy too.
pub struct AesStep {
    /// The message's header (the ciphertext's first [`HEADER_LEN`] bytes).
    pub header: [u8; HEADER_LEN],
    /// The AES-256 message key.
    pub key: crate::SecretBytes,
    /// The 12-byte nonce.
    pub nonce: [u8; 12],
    /// The additional data: the header, then the context's encoding.
    pub aad: Vec<u8>,
}

impl core::fmt::Debug for AesStep {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AesStep").finish_non_exhaustive()
    }
}

impl AesStep {
    /// The step to seal a plaintext of `len` bytes under `key` with `context`.
    pub fn seal(
        key: &ScopeKey,
        context: &Context,
        len: usize,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, Error> {
        context.check_encodable()?;
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        if len > MAX_PLAINTEXT_LEN {
            return Err(Misuse::PlaintextTooLong {
                len,
                max: MAX_PLAINTEXT_LEN,
            }
            .into());
        }
        let (header, key) = new_message::<crate::crypto::backend::RawKey>(key, Mode::Single, rng)?;
        let aad = with_aad(&header, context, <[u8]>::to_vec);
        Ok(Self {
            header,
            key,
            nonce: nonce(0, true),
            aad,
        })
    }

    /// The step to open `ciphertext` under `key` with `context`, after every check the format
    /// puts before AES (the same order and errors as [`decrypt`]).
    pub fn open(key: &ScopeKey, context: &Context, ciphertext: &[u8]) -> Result<Self, Error> {
        let head = ciphertext.get(..HEADER_LEN).unwrap_or(ciphertext);
        Self::open_header(key, context, head, ciphertext.len())
    }

    /// [`Self::open`] from the ciphertext's first [`HEADER_LEN`] bytes (all of it, if shorter)
    /// and its length: the checks need no more, so a host whose AES runs elsewhere (WebCrypto)
    /// need not copy the body into wasm memory and back out.
    pub fn open_header(
        key: &ScopeKey,
        context: &Context,
        head: &[u8],
        ciphertext_len: usize,
    ) -> Result<Self, Error> {
        let (key, _) = check_unit_parts::<crate::crypto::backend::RawKey>(
            key,
            context,
            Mode::Single,
            head,
            ciphertext_len.saturating_sub(HEADER_LEN),
        )?;
        let (header, _) = split_header(head)?;
        Ok(Self {
            header: *header,
            key,
            nonce: nonce(0, true),
            aad: with_aad(header, context, <[u8]>::to_vec),
        })
    }
}

/// Encrypts with the [`DefaultBackend`]; see [`Envelope::encrypt`].
pub fn encrypt(
    key: &ScopeKey,
    context: &Context,
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, Error> {
    Envelope::<DefaultBackend>::encrypt(key, context, plaintext, rng)
}

/// Decrypts with the [`DefaultBackend`]; see [`Envelope::decrypt`].
pub fn decrypt(key: &ScopeKey, context: &Context, ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
    Envelope::<DefaultBackend>::decrypt(key, context, ciphertext)
}

/// Calls `f` with `header | context` as one slice: on the stack when it fits (every small
/// message), so the hot path does not allocate for it.
pub(crate) fn with_aad<R>(
    header: &[u8; HEADER_LEN],
    context: &Context,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    let encoded = context.encoded();
    let len = HEADER_LEN + encoded.len();
    // Sized for the header and a typical context (a few short pairs); larger ones allocate.
    let mut stack = [0u8; 256];
    match stack.get_mut(..len) {
        Some(aad) => {
            let (h, c) = aad.split_at_mut(HEADER_LEN);
            h.copy_from_slice(header);
            c.copy_from_slice(encoded);
            f(aad)
        }
        None => {
            let mut aad = Vec::with_capacity(len);
            aad.extend_from_slice(header);
            aad.extend_from_slice(encoded);
            f(&aad)
        }
    }
}

/// Builds the header of a new message under `key`: fresh salt, derived commitment. Returns it
/// with the expanded message key.
pub(crate) fn new_message<B: AeadBackend>(
    key: &ScopeKey,
    mode: Mode,
    rng: &mut impl CryptoRng,
) -> Result<([u8; HEADER_LEN], B::Key), Error> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    let mut header = Header {
        suite: Suite::Aes256GcmHkdfSha256,
        mode,
        key: key.id(),
        salt,
        commitment: [0; 32],
    };
    let info = header.kdf_info();
    let secrets = key.derive(&info)?;
    header.commitment = secrets.commitment;
    Ok((header.encode_with_info(&info), B::key(&secrets.key)?))
}

/// Checks a parsed header against the caller's key and expectations, then the commitment, and
/// returns the expanded message key. The commitment is compared before any AES-GCM work.
pub(crate) fn open_message<B: AeadBackend>(
    key: &ScopeKey,
    header: &Header,
    expected: &'static str,
    mode_ok: bool,
) -> Result<B::Key, Error> {
    if !mode_ok {
        return Err(FormatError::WrongMode {
            found: header.mode.name(),
            expected,
        }
        .into());
    }
    if header.key != key.id() {
        return Err(Error::WrongKey {
            header: header.key,
            provided: key.id(),
        });
    }
    let secrets = key.derive(&header.kdf_info())?;
    if !secrets.commitment_matches(&header.commitment) {
        return Err(Error::Decrypt);
    }
    B::key(&secrets.key)
}

/// Seals one unit (a single message or a wrapped key) in place.
pub(crate) fn seal_unit<B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    mode: Mode,
    buf: &mut [u8],
    rng: &mut impl CryptoRng,
) -> Result<Detached, Error> {
    context.check_encodable()?;
    let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
    if len > MAX_PLAINTEXT_LEN {
        return Err(Misuse::PlaintextTooLong {
            len,
            max: MAX_PLAINTEXT_LEN,
        }
        .into());
    }
    let (header, aead_key) = new_message::<B>(key, mode, rng)?;
    let tag = with_aad(&header, context, |aad| {
        B::seal(&aead_key, &nonce(0, true), aad, buf)
    })?;
    Ok(Detached { header, tag })
}

/// Checks that `context` can be encoded, then parses a unit (single message or wrapped key) and
/// checks, in order: mode, key id, the commitment in constant time, then that the body holds a
/// tag. Returns the expanded message key and the ciphertext length. No AES-GCM work happens
/// before the commitment matched.
///
/// This is the order of `docs/format.md`, section 8: the header and what it names (mode, key,
/// commitment) decide before anything about the body.
pub(crate) fn check_unit<B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    mode: Mode,
    bytes: &[u8],
) -> Result<(B::Key, usize), Error> {
    let head = bytes.get(..HEADER_LEN).unwrap_or(bytes);
    check_unit_parts::<B>(
        key,
        context,
        mode,
        head,
        bytes.len().saturating_sub(HEADER_LEN),
    )
}

/// [`check_unit`] from the unit's header bytes (`head`: the first [`HEADER_LEN`] bytes, or all
/// of a shorter unit) and the length of what follows them: the checks read nothing else.
fn check_unit_parts<B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    mode: Mode,
    head: &[u8],
    body_len: usize,
) -> Result<(B::Key, usize), Error> {
    context.check_encodable()?;
    let (header, _) = Header::parse(head)?;
    let aead_key = open_message::<B>(key, &header, mode.name(), header.mode == mode)?;
    let ct_len = body_len
        .checked_sub(TAG_LEN)
        .ok_or(FormatError::Truncated {
            field: "body.tag",
            needed: TAG_LEN,
            got: body_len,
        })?;
    Ok((aead_key, ct_len))
}

fn split_header(bytes: &[u8]) -> Result<(&[u8; HEADER_LEN], &[u8]), Error> {
    let (head, body) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(Error::Internal("envelope: header length"))?;
    let head = head
        .try_into()
        .map_err(|_| Error::Internal("envelope: header length"))?;
    Ok((head, body))
}

/// AES-GCM open of `ct` in place with `tag`, under the unit's AAD (`header | context`). On
/// failure `ct` is zeroed.
fn open_detached<B: AeadBackend>(
    aead_key: &B::Key,
    header: &[u8; HEADER_LEN],
    context: &Context,
    ct: &mut [u8],
    tag: &[u8],
) -> Result<(), Error> {
    let tag: &[u8; TAG_LEN] = tag
        .try_into()
        .map_err(|_| Error::Internal("envelope: tag length"))?;
    with_aad(header, context, |aad| {
        B::open(aead_key, &nonce(0, true), aad, ct, tag)
    })
}

/// Seals `plaintext` as one unit into a new `Vec`: header | ciphertext | tag. The copy is
/// wiped if sealing fails (it may hold key material being wrapped).
pub(crate) fn seal_to_vec<B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    mode: Mode,
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, Error> {
    seal_in::<B>(key, context, mode, SealBuffer::copy_of(plaintext), rng)
}

/// Seals the plaintext in `buf` as one unit in place and returns the allocation, now
/// header | ciphertext | tag. On failure `buf` drops, and with it every byte it held.
fn seal_in<B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    mode: Mode,
    mut buf: SealBuffer,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, Error> {
    let len = buf.plaintext_len();
    let (head, rest) = buf
        .0
        .split_at_mut_checked(HEADER_LEN)
        .ok_or(Error::Internal("envelope: header room"))?;
    let (body, tag) = rest
        .split_at_mut_checked(len)
        .ok_or(Error::Internal("envelope: tag room"))?;
    let sealed = seal_unit::<B>(key, context, mode, body, rng)?;
    head.copy_from_slice(&sealed.header);
    tag.copy_from_slice(&sealed.tag);
    Ok(buf.0.into_public())
}

/// Opens one unit in place: `buf` is header | ciphertext | tag. Returns the plaintext.
pub(crate) fn open_unit<'a, B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    mode: Mode,
    buf: &'a mut [u8],
) -> Result<&'a mut [u8], Error> {
    let (aead_key, ct_len) = check_unit::<B>(key, context, mode, buf)?;
    open_checked::<B>(&aead_key, ct_len, context, buf)
}

/// The AES-GCM step of [`open_unit`], for a `buf` that [`check_unit`] already accepted (and
/// that returned `aead_key` and `ct_len`).
pub(crate) fn open_checked<'a, B: AeadBackend>(
    aead_key: &B::Key,
    ct_len: usize,
    context: &Context,
    buf: &'a mut [u8],
) -> Result<&'a mut [u8], Error> {
    let (head, body) = buf
        .split_at_mut_checked(HEADER_LEN)
        .ok_or(Error::Internal("envelope: header length"))?;
    let header: &[u8; HEADER_LEN] = (&*head)
        .try_into()
        .map_err(|_| Error::Internal("envelope: header length"))?;
    let (ct, tag) = body
        .split_at_mut_checked(ct_len)
        .ok_or(Error::Internal("envelope: body length"))?;
    open_detached::<B>(aead_key, header, context, ct, tag)?;
    Ok(ct)
}

#[cfg(test)]
mod aes_step_tests {
    use super::*;
    use crate::KeyId;
    use crate::ScopeId;
    use crate::crypto::backend::RustCrypto;
    use alloc::format;

    fn key() -> ScopeKey {
        ScopeKey::new(
            KeyId::new(ScopeId::from_bytes([3; 16]), 2),
            crate::SecretBytes::from_bytes(&mut [9; 32]),
        )
    }

    /// AES-256-GCM run outside the envelope, as a host would with the step's inputs.
    fn seal_elsewhere(step: &AesStep, plaintext: &[u8]) -> Vec<u8> {
        let k = RustCrypto::key(step.key.expose_secret()).unwrap();
        let mut buf = plaintext.to_vec();
        let tag = RustCrypto::seal(&k, &step.nonce, &step.aad, &mut buf).unwrap();
        [&step.header[..], &buf, &tag].concat()
    }

    fn open_elsewhere(step: &AesStep, body: &[u8]) -> Vec<u8> {
        let k = RustCrypto::key(step.key.expose_secret()).unwrap();
        let (ct, tag) = body.split_at(body.len() - TAG_LEN);
        let mut buf = ct.to_vec();
        RustCrypto::open(
            &k,
            &step.nonce,
            &step.aad,
            &mut buf,
            tag.try_into().unwrap(),
        )
        .unwrap();
        buf
    }

    #[test]
    fn a_step_sealed_elsewhere_is_the_same_message_and_opens_both_ways() {
        let ctx = Context::from_pairs([("tenant", "acme")]).unwrap();
        let mut rng = crate::dev::TestRng::seeded(5);
        let step = AesStep::seal(&key(), &ctx, 11, &mut rng).unwrap();
        let ct = seal_elsewhere(&step, b"hello there");
        // The same bytes core makes from the same randomness.
        let mut rng = crate::dev::TestRng::seeded(5);
        assert_eq!(encrypt(&key(), &ctx, b"hello there", &mut rng).unwrap(), ct);
        assert_eq!(decrypt(&key(), &ctx, &ct).unwrap(), b"hello there");
        let open = AesStep::open(&key(), &ctx, &ct).unwrap();
        assert_eq!(open_elsewhere(&open, &ct[HEADER_LEN..]), b"hello there");
        assert!(!format!("{open:?}").contains('9'));
    }

    #[test]
    fn an_open_step_checks_what_decrypt_checks_first() {
        let ctx = Context::new();
        let ct = encrypt(&key(), &ctx, b"x", &mut crate::dev::TestRng::seeded(1)).unwrap();
        let mut bad = ct.clone();
        bad[40] ^= 1; // in the commitment
        assert_eq!(
            AesStep::open(&key(), &ctx, &bad).unwrap_err().api_code(),
            decrypt(&key(), &ctx, &bad).unwrap_err().api_code()
        );
        assert!(matches!(
            AesStep::open(&key(), &ctx, &ct[..50]),
            Err(Error::Format(FormatError::Truncated { .. }))
        ));
        let other = ScopeKey::new(
            KeyId::new(ScopeId::from_bytes([4; 16]), 2),
            crate::SecretBytes::from_bytes(&mut [9; 32]),
        );
        assert!(matches!(
            AesStep::open(&other, &ctx, &ct),
            Err(Error::WrongKey { .. })
        ));
    }
}

#[cfg(test)]
mod in_place_tests {
    use super::*;
    use crate::crypto::backend::RustCrypto;
    use crate::{KeyId, ScopeId};

    fn key() -> ScopeKey {
        ScopeKey::new(
            KeyId::new(ScopeId::from_bytes([4; 16]), 1),
            crate::SecretBytes::from_bytes(&mut [5; 32]),
        )
    }

    fn ctx() -> Context {
        let mut c = Context::new();
        c.insert("tenant", "a");
        c
    }

    #[test]
    fn a_sealed_buffer_is_a_message_every_reader_opens() {
        let mut rng = rand::rng();
        for len in [0usize, 1, 15, 16, 17, 1024, 4099] {
            let pt: Vec<u8> = (0..len).map(|i| (i % 251).to_le_bytes()[0]).collect();
            let ct = Envelope::<RustCrypto>::seal_buffer(
                &key(),
                &ctx(),
                SealBuffer::copy_of(&pt),
                &mut rng,
            )
            .unwrap();
            assert_eq!(ct.len(), len + OVERHEAD);
            assert_eq!(
                Envelope::<RustCrypto>::decrypt(&key(), &ctx(), &ct).unwrap(),
                pt
            );
            let opened = Envelope::<RustCrypto>::decrypt_owned(&key(), &ctx(), ct).unwrap();
            assert_eq!(&*opened, pt.as_slice());
        }
    }

    #[test]
    fn a_decoded_plaintext_shorter_than_its_room_is_sealed_at_its_length() {
        let mut buf = SealBuffer::zeroed(10);
        buf.plaintext_mut()[..4].copy_from_slice(b"abcd");
        buf.truncate(4);
        assert_eq!(buf.plaintext_len(), 4);
        let ct =
            Envelope::<RustCrypto>::seal_buffer(&key(), &ctx(), buf, &mut rand::rng()).unwrap();
        assert_eq!(
            Envelope::<RustCrypto>::decrypt(&key(), &ctx(), &ct).unwrap(),
            b"abcd"
        );
    }

    #[test]
    fn a_tampered_or_misbound_ciphertext_is_refused_in_place() {
        let mut rng = rand::rng();
        let ct = Envelope::<RustCrypto>::encrypt(&key(), &ctx(), b"hello there", &mut rng).unwrap();
        for i in [HEADER_LEN, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(matches!(
                Envelope::<RustCrypto>::decrypt_owned(&key(), &ctx(), bad),
                Err(Error::Decrypt)
            ));
        }
        assert!(matches!(
            Envelope::<RustCrypto>::decrypt_owned(&key(), &Context::new(), ct),
            Err(Error::Decrypt)
        ));
    }
}
