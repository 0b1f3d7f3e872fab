//! Framed encryption for objects of any size in constant memory.
//!
//! ```text
//! ciphertext = header (92 bytes, mode 2, frame_log2 = n) | frame 0 | frame 1 | ... | frame k
//! frame i    = AES-256-GCM(message key, nonce(i, i == k), aad, plaintext[i*F .. (i+1)*F]) | tag
//! aad        = header | canonical encoding of the encryption context      (F = 2^n bytes)
//! ```
//!
//! Every frame but the last carries exactly F plaintext bytes; the last carries 1..=F (0 only
//! when the whole plaintext is empty). The frame index and the final flag are in the nonce, so
//! reordering, dropping, duplicating or truncating frames fails authentication, and the message
//! key is unique per message (fresh salt), so a frame spliced in from another message fails too.
//!
//! Two ways to drive it:
//! - push: [`StreamEncryptor::update`] / [`StreamEncryptor::finish`] take input of any length
//!   and append output to a `Vec`; they hold back at most one frame.
//! - in place: [`StreamEncryptor::seal_frame`] / [`StreamDecryptor::open_frame`] work on a
//!   frame buffer the caller owns (no copies), when the caller knows where frames end.
//!
//! A decryptor appends a frame's plaintext to the output only after its tag verified; after any
//! error the stream is closed and every later call fails with [`Misuse::StreamClosed`].

use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::context::Context;
use crate::crypto::{AeadBackend, DefaultBackend, ScopeKey, nonce};
use crate::envelope::{new_message, open_message};
use crate::error::{Error, FormatError, Misuse};
use crate::format::header::{FrameSize, HEADER_LEN, Header, Mode, TAG_LEN};
use crate::secret::extend_wiped;

/// At most 2^32 frames per message (256 TiB at the default 64 KiB frames), far inside
/// AES-GCM's per-key limits. A writer refuses to seal frame 2^32 ([`Misuse::TooManyFrames`]);
/// a reader refuses a stream that goes on past it ([`FormatError::TooManyFrames`]) before any
/// AES-GCM work on that frame.
pub const MAX_FRAMES: u64 = 1 << 32;

/// The length of a framed ciphertext of `plaintext_len` bytes in frames of `frame_size`.
pub fn ciphertext_len(plaintext_len: u64, frame_size: FrameSize) -> u64 {
    let f = frame_size.bytes() as u64;
    let frames = plaintext_len.div_ceil(f).max(1);
    HEADER_LEN as u64 + plaintext_len + frames * TAG_LEN as u64
}

/// State shared by both directions: the message key, the AAD and the frame counter.
struct Frames<B: AeadBackend> {
    key: B::Key,
    aad: Vec<u8>,
    frame_size: usize,
    next: u64,
    closed: bool,
    /// Input held back until more bytes (or the end) show whether it is the last frame: up to
    /// a frame of plaintext when encrypting, so it grows and is emptied wiped (see [`feed`]),
    /// and is wiped when dropped (a finished or abandoned stream).
    pending: Zeroizing<Vec<u8>>,
}

impl<B: AeadBackend> Frames<B> {
    fn new(
        key: B::Key,
        header: &[u8; HEADER_LEN],
        context: &Context,
        frame_size: FrameSize,
    ) -> Self {
        let mut aad = Vec::with_capacity(HEADER_LEN + context.encoded().len());
        aad.extend_from_slice(header);
        aad.extend_from_slice(context.encoded());
        Self {
            key,
            aad,
            frame_size: frame_size.bytes(),
            next: 0,
            closed: false,
            pending: Zeroizing::new(Vec::new()),
        }
    }

    /// Checks that a frame of `len` plaintext bytes may come next and returns its nonce.
    fn next_nonce(&mut self, len: usize, last: bool) -> Result<[u8; 12], Error> {
        if self.closed {
            return Err(Misuse::StreamClosed.into());
        }
        if len > self.frame_size || (!last && len != self.frame_size) {
            return Err(Misuse::FrameLength {
                len,
                frame_size: self.frame_size,
            }
            .into());
        }
        if self.next >= MAX_FRAMES {
            return Err(Misuse::TooManyFrames.into());
        }
        Ok(nonce(self.next, last))
    }

    /// Runs `step`, then advances (or closes the stream on the last frame or on any error).
    fn advance<T>(&mut self, last: bool, step: Result<T, Error>) -> Result<T, Error> {
        match step {
            Ok(v) => {
                self.next += 1;
                self.closed = last;
                Ok(v)
            }
            Err(e) => {
                self.closed = true;
                Err(e)
            }
        }
    }
}

/// Splits a byte stream into units of `unit` bytes and passes each complete unit that is known
/// not to be the last one to `emit`. The last bytes (up to a whole unit) stay in `pending`
/// until more input shows they are not the end. Holds at most `unit` bytes.
///
/// `pending` holds plaintext when encrypting: it grows through [`extend_wiped`] (a `Vec`'s own
/// growth would free each smaller buffer unwiped), and is wiped when dropped.
fn feed(
    pending: &mut Zeroizing<Vec<u8>>,
    unit: usize,
    mut input: &[u8],
    mut emit: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    if !pending.is_empty() {
        let take = unit.saturating_sub(pending.len()).min(input.len());
        let (head, tail) = input.split_at(take);
        extend_wiped(pending, head);
        input = tail;
        if input.is_empty() {
            return Ok(());
        }
        // `pending` is a whole unit and more bytes follow: it is not the last.
        emit(pending)?;
        // Its bytes stay until overwritten by the next frame or wiped with the buffer: it
        // is freed only through `extend_wiped` or `Zeroizing`'s drop, which wipe it.
        pending.clear();
    }
    while input.len() > unit {
        let (head, tail) = input.split_at(unit);
        emit(head)?;
        input = tail;
    }
    extend_wiped(pending, input);
    Ok(())
}

/// Encrypts a stream into frames. Write [`StreamEncryptor::header`] first, then what
/// `update`/`finish` or `seal_frame` produce.
pub struct StreamEncryptor<B: AeadBackend = DefaultBackend> {
    frames: Frames<B>,
}

impl<B: AeadBackend> StreamEncryptor<B> {
    /// Starts a framed message under `key`, bound to `context`, in frames of `frame_size`.
    pub fn new(
        key: &ScopeKey,
        context: &Context,
        frame_size: FrameSize,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, Error> {
        context.check_encodable()?;
        let (header, aead_key) = new_message::<B>(key, Mode::Framed(frame_size), rng)?;
        Ok(Self {
            frames: Frames::new(aead_key, &header, context, frame_size),
        })
    }

    /// The 92 header bytes, to write before the first frame.
    pub fn header(&self) -> &[u8] {
        self.frames.aad.get(..HEADER_LEN).unwrap_or_default()
    }

    /// Plaintext bytes per frame.
    pub fn frame_size(&self) -> usize {
        self.frames.frame_size
    }

    /// Encrypts one frame in place and returns its tag (write it right after the frame).
    ///
    /// A non-final frame must be exactly [`Self::frame_size`] bytes; the final one 1..=that,
    /// or 0 if it is the only frame. After the final frame the stream is closed.
    pub fn seal_frame(&mut self, frame: &mut [u8], last: bool) -> Result<[u8; TAG_LEN], Error> {
        let f = &mut self.frames;
        let nonce = f.next_nonce(frame.len(), last)?;
        if last && frame.is_empty() && f.next != 0 {
            // Would be an empty final frame after full ones, which readers refuse.
            return Err(Misuse::FrameLength {
                len: 0,
                frame_size: f.frame_size,
            }
            .into());
        }
        let step = B::seal(&f.key, &nonce, &f.aad, frame);
        f.advance(last, step)
    }

    /// Encrypts `input`, appending whole frames to `out`. Holds back up to one frame, since
    /// only more input (or [`Self::finish`]) shows whether it is the last (wiped when sealed,
    /// and when the encryptor is dropped).
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.frames.closed {
            return Err(Misuse::StreamClosed.into());
        }
        let mut pending = core::mem::take(&mut self.frames.pending);
        let unit = self.frames.frame_size;
        let result = feed(&mut pending, unit, input, |frame| {
            self.seal_into(frame, false, out)
        });
        self.frames.pending = pending;
        result
    }

    /// Encrypts what is held back as the final frame and closes the stream.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let pending = core::mem::take(&mut self.frames.pending);
        self.seal_into(&pending, true, out)
    }

    fn seal_into(&mut self, frame: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.extend_from_slice(frame);
        let region = out
            .get_mut(start..)
            .ok_or(Error::Internal("stream: output offset"))?;
        match self.seal_frame(region, last) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(e) => {
                // The frame's plaintext was copied there: wiped, not only cut off.
                if let Some(region) = out.get_mut(start..) {
                    region.zeroize();
                }
                out.truncate(start);
                Err(e)
            }
        }
    }
}

/// Decrypts a framed stream. Parse the header with [`Header::parse`], look up the key it names,
/// then feed the bytes after the header.
pub struct StreamDecryptor<B: AeadBackend = DefaultBackend> {
    frames: Frames<B>,
}

impl<B: AeadBackend> StreamDecryptor<B> {
    /// Checks `header` against `key` (key id, then commitment, in constant time) and prepares
    /// to open its frames.
    pub fn new(key: &ScopeKey, context: &Context, header: &Header) -> Result<Self, Error> {
        context.check_encodable()?;
        let Mode::Framed(frame_size) = header.mode else {
            return Err(FormatError::WrongMode {
                found: header.mode.name(),
                expected: "framed",
            }
            .into());
        };
        let aead_key = open_message::<B>(key, header, "framed", true)?;
        Ok(Self {
            frames: Frames::new(aead_key, &header.encode(), context, frame_size),
        })
    }

    /// Plaintext bytes per frame.
    pub fn frame_size(&self) -> usize {
        self.frames.frame_size
    }

    /// Opens one frame in place. `frame` is ciphertext then tag; returns the plaintext length
    /// (the plaintext is `frame[..len]`). On failure the frame is zeroed and the stream closed.
    pub fn open_frame(&mut self, frame: &mut [u8], last: bool) -> Result<usize, Error> {
        let f = &mut self.frames;
        let Some(ct_len) = frame.len().checked_sub(TAG_LEN) else {
            f.closed = true;
            return Err(FormatError::Truncated {
                field: "body.frame_tag",
                needed: TAG_LEN,
                got: frame.len(),
            }
            .into());
        };
        if f.next >= MAX_FRAMES {
            // The input, not the caller, is at fault: a frame past the format's limit.
            f.closed = true;
            return Err(FormatError::TooManyFrames.into());
        }
        let nonce = f.next_nonce(ct_len, last)?;
        if last && ct_len == 0 && f.next != 0 {
            f.closed = true;
            return Err(FormatError::EmptyFinalFrame.into());
        }
        let (ct, tag) = frame.split_at_mut(ct_len);
        let step = match <&[u8; TAG_LEN]>::try_from(&*tag) {
            Ok(tag) => B::open(&f.key, &nonce, &f.aad, ct, tag),
            Err(_) => Err(Error::Internal("stream: tag length")),
        };
        f.advance(last, step).map(|()| ct_len)
    }

    /// Decrypts `input` (bytes after the header), appending authenticated plaintext to `out`.
    ///
    /// Reserve `out`'s room first (a frame, or what the input will open to): a `Vec` that
    /// grows frees its old buffer, with the plaintext already in it, unwiped.
    pub fn update(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.frames.closed {
            return Err(Misuse::StreamClosed.into());
        }
        let mut pending = core::mem::take(&mut self.frames.pending);
        let unit = self.frames.frame_size + TAG_LEN;
        let result = feed(&mut pending, unit, input, |frame| {
            self.open_into(frame, false, out)
        });
        self.frames.pending = pending;
        result
    }

    /// Opens what is held back as the final frame. Fails if the stream was cut short.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.frames.closed {
            return Err(Misuse::StreamClosed.into());
        }
        let pending = core::mem::take(&mut self.frames.pending);
        self.open_into(&pending, true, out)
    }

    fn open_into(&mut self, frame: &[u8], last: bool, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.extend_from_slice(frame);
        let region = out
            .get_mut(start..)
            .ok_or(Error::Internal("stream: output offset"))?;
        match self.open_frame(region, last) {
            Ok(len) => {
                out.truncate(start + len);
                Ok(())
            }
            Err(e) => {
                // The region was zeroed by the backend or never decrypted; drop it either way.
                out.truncate(start);
                Err(e)
            }
        }
    }
}

/// Encrypts all of `plaintext` as a framed message with the [`DefaultBackend`].
pub fn encrypt(
    key: &ScopeKey,
    context: &Context,
    frame_size: FrameSize,
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, Error> {
    encrypt_with::<DefaultBackend>(key, context, frame_size, plaintext, rng)
}

/// Encrypts all of `plaintext` as a framed message with backend `B`.
pub fn encrypt_with<B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    frame_size: FrameSize,
    plaintext: &[u8],
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, Error> {
    let mut enc = StreamEncryptor::<B>::new(key, context, frame_size, rng)?;
    let cap = usize::try_from(ciphertext_len(plaintext.len() as u64, frame_size)).unwrap_or(0);
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(enc.header());
    enc.update(plaintext, &mut out)?;
    enc.finish(&mut out)?;
    Ok(out)
}

/// Decrypts a whole framed message held in memory with the [`DefaultBackend`].
pub fn decrypt(key: &ScopeKey, context: &Context, ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
    decrypt_with::<DefaultBackend>(key, context, ciphertext)
}

/// Decrypts a whole framed message held in memory with backend `B`.
pub fn decrypt_with<B: AeadBackend>(
    key: &ScopeKey,
    context: &Context,
    ciphertext: &[u8],
) -> Result<Vec<u8>, Error> {
    // The caller's context before the input (docs/format.md, section 8).
    context.check_encodable()?;
    let (header, body) = Header::parse(ciphertext)?;
    let mut dec = StreamDecryptor::<B>::new(key, context, &header)?;
    let mut out = Vec::with_capacity(body.len());
    dec.update(body, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::crypto::backend::RustCrypto;
    use crate::dev::TestRng;
    use crate::key_id::{KeyId, ScopeId};

    fn key(rng: &mut TestRng) -> ScopeKey {
        ScopeKey::random(KeyId::new(ScopeId::from_bytes([5; 16]), 1), rng)
    }

    /// 2^32 frames cannot be written in a test (1 TiB even at 256-byte frames), so the frame
    /// counter of both sides is moved to the last frame the format allows, 2^32 - 1.
    #[test]
    fn frame_2_pow_32_is_refused_by_writer_and_reader() {
        let mut rng = TestRng::seeded(32);
        let k = key(&mut rng);
        let ctx = Context::new();
        let fs = FrameSize::from_log2(8).unwrap();

        // The writer seals frame 2^32 - 1, then refuses frame 2^32.
        let mut enc = StreamEncryptor::<RustCrypto>::new(&k, &ctx, fs, &mut rng).unwrap();
        let header = enc.header().to_vec();
        enc.frames.next = MAX_FRAMES - 1;
        let mut last_allowed = vec![7u8; 256];
        let tag = enc.seal_frame(&mut last_allowed, false).unwrap();
        last_allowed.extend_from_slice(&tag);
        assert_eq!(
            enc.seal_frame(&mut [7u8; 1], true).unwrap_err(),
            Error::Misuse(Misuse::TooManyFrames)
        );

        let (parsed, _) = Header::parse(&header).unwrap();
        let reader = |next: u64| {
            let mut dec = StreamDecryptor::<RustCrypto>::new(&k, &ctx, &parsed).unwrap();
            dec.frames.next = next;
            dec
        };

        // The reader opens frame 2^32 - 1 (not final), then refuses whatever follows it as
        // malformed input, before any AES-GCM work, whether or not it could be a final frame.
        for after in [&[0u8; 17][..], &[0u8; 16], &[0u8; 272], &[0u8; 300]] {
            let mut dec = reader(MAX_FRAMES - 1);
            let mut out = Vec::new();
            let mut body = last_allowed.clone();
            body.extend_from_slice(after);
            let result = dec
                .update(&body, &mut out)
                .and_then(|()| dec.finish(&mut out));
            assert_eq!(
                result.unwrap_err(),
                Error::Format(FormatError::TooManyFrames),
                "{} bytes after frame 2^32 - 1",
                after.len()
            );
            assert_eq!(out, [7u8; 256], "frame 2^32 - 1 itself opened");
        }

        // A stream that ends at frame 2^32 - 1 is within the limit.
        let mut enc = StreamEncryptor::<RustCrypto>::new(&k, &ctx, fs, &mut rng).unwrap();
        enc.frames.next = MAX_FRAMES - 1;
        let header = enc.header().to_vec();
        let mut body = vec![9u8; 3];
        let tag = enc.seal_frame(&mut body, true).unwrap();
        body.extend_from_slice(&tag);
        let (parsed, _) = Header::parse(&header).unwrap();
        let mut dec = StreamDecryptor::<RustCrypto>::new(&k, &ctx, &parsed).unwrap();
        dec.frames.next = MAX_FRAMES - 1;
        let mut out = Vec::new();
        dec.update(&body, &mut out).unwrap();
        dec.finish(&mut out).unwrap();
        assert_eq!(out, [9u8; 3]);
    }
}
