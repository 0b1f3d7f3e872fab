//! An edge's use of a lease: encrypt with the scope's current key, decrypt with the version the
//! header names, and never after the lease expired. Time is passed in (ms since the epoch): the
//! JS bindings pass `Date.now()`. Contexts follow the caller rules the server applies
//! ([`Context::from_caller`]), so a ciphertext made at the edge opens on the server with the
//! same context, and the reverse.

use zeroize::Zeroizing;

use byok_core::envelope::{AesStep, SealBuffer};
use byok_core::format::HEADER_LEN;
use byok_core::lease::{Deadline, Lease};
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{ApiCode, Context, FrameSize, Header, ScopeKey, SecretVec, envelope, format};

/// An error as the server would answer it: its code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    /// The API code (`decrypt_failed`, `lease_expired`, ...).
    pub code: ApiCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl EdgeError {
    pub(crate) fn new(code: ApiCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for EdgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for EdgeError {}

impl From<byok_core::Error> for EdgeError {
    fn from(e: byok_core::Error) -> Self {
        Self::new(e.api_code(), e.to_string())
    }
}

impl From<byok_core::lease::LeaseError> for EdgeError {
    fn from(e: byok_core::lease::LeaseError) -> Self {
        Self::new(e.api_code(), e.to_string())
    }
}

/// A lease held at the edge, in memory only.
#[derive(Debug)]
pub struct EdgeLease {
    lease: Lease,
}

/// A caller context from its pairs, by the server's rules (a key given twice is refused).
pub fn context(pairs: impl IntoIterator<Item = (String, String)>) -> Result<Context, EdgeError> {
    Context::from_caller(pairs).map_err(|e| EdgeError::new(ApiCode::InvalidRequest, e.to_string()))
}

/// A ciphertext given as bytes or as `byok:v1:` text, as bytes.
pub fn dearmor(text: &str) -> Result<Vec<u8>, EdgeError> {
    let mut out = room(format::armor::decoded_len_max(text))?;
    out.resize(out.capacity(), 0);
    let len = format::armor::decode_into(text, &mut out)?.len();
    out.truncate(len);
    Ok(out)
}

/// What [`dearmor`] says of a text that is not all ASCII (no armor is), from `copied`, its
/// start up to its first character outside ASCII or past it: the prefix checks core makes
/// first, else not base64 (as core says of the whole text). For a host that copies text in
/// by the engine's encoder into as many bytes as the text has code units, which stops there.
pub fn dearmor_refusal(copied: &str) -> EdgeError {
    use byok_core::error::{ArmorError, FormatError};
    let armor = |e| byok_core::Error::Format(FormatError::Armor(e));
    match format::armor::decode_into(copied, &mut []) {
        Err(e @ byok_core::Error::Format(FormatError::Armor(ArmorError::MissingPrefix)))
        | Err(e @ byok_core::Error::Format(FormatError::Armor(ArmorError::Version))) => e.into(),
        _ => armor(ArmorError::Base64).into(),
    }
}

/// `ciphertext` armored as `byok:v1:` text, in memory reserved fallibly: a text too large for
/// this module's memory is refused as `too_large`, not an abort.
pub fn armor(ciphertext: &[u8]) -> Result<String, EdgeError> {
    let mut out = room(format::armor::encoded_len(ciphertext.len()))?;
    out.resize(out.capacity(), 0);
    format::armor::encode_into(ciphertext, &mut out)?;
    String::from_utf8(out)
        .map_err(|_| EdgeError::new(ApiCode::Internal, "the armored text is not text"))
}

impl EdgeLease {
    /// Parses the lease document the server answered (`POST .../scopes/{scope}/lease`), which
    /// arrived at `received_ms` by this host's lease clock, `clock_ahead_ms` ahead of its wall
    /// clock (the lease ends by it, see core's `lease`).
    pub fn parse(json: &[u8], received_ms: i64, clock_ahead_ms: i64) -> Result<Self, EdgeError> {
        Ok(Self {
            lease: Lease::parse(json, received_ms, clock_ahead_ms)?,
        })
    }

    /// The lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Encrypts `plaintext` with `ctx` under the scope's current key, if the lease is live at
    /// `now_ms`.
    pub fn encrypt(
        &self,
        ctx: &Context,
        plaintext: &[u8],
        now_ms: i64,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Vec<u8>, EdgeError> {
        encrypt(&self.lease, ctx, plaintext, now_ms, rng)
    }

    /// [`Self::encrypt`] of the plaintext in `buf`, sealed in place: the ciphertext is returned
    /// in `buf`'s allocation, and a host that filled `buf` from its caller's bytes made the one
    /// copy. On a failure the plaintext is wiped as `buf` drops.
    pub fn encrypt_buffer(
        &self,
        ctx: &Context,
        buf: SealBuffer,
        now_ms: i64,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Vec<u8>, EdgeError> {
        self.lease.check_live(now_ms)?;
        Ok(
            envelope::Envelope::<byok_core::DefaultBackend>::seal_buffer(
                self.lease.current_key(),
                ctx,
                buf,
                rng,
            )?,
        )
    }

    /// Decrypts `ciphertext` with `ctx` under the key version its header names, if the lease is
    /// live at `now_ms` and the ciphertext is of the lease's scope: in place, the plaintext
    /// wiped when dropped.
    pub fn decrypt(
        &self,
        ctx: &Context,
        ciphertext: Vec<u8>,
        now_ms: i64,
    ) -> Result<SecretVec, EdgeError> {
        decrypt(&self.lease, ctx, ciphertext, now_ms)
    }

    /// The AES-256-GCM step of sealing `len` bytes with `ctx`, for a host that runs AES in
    /// WebCrypto (same bytes as [`Self::encrypt`]).
    pub fn seal_step(
        &self,
        ctx: &Context,
        len: usize,
        now_ms: i64,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<AesStep, EdgeError> {
        self.lease.check_live(now_ms)?;
        Ok(AesStep::seal(self.lease.current_key(), ctx, len, rng)?)
    }

    /// The AES-256-GCM step of opening `ciphertext` with `ctx`, after every check
    /// [`Self::decrypt`] makes first.
    pub fn open_step(
        &self,
        ctx: &Context,
        ciphertext: &[u8],
        now_ms: i64,
    ) -> Result<AesStep, EdgeError> {
        let key = key_for(&self.lease, ciphertext, now_ms)?;
        Ok(AesStep::open(key, ctx, ciphertext)?)
    }

    /// [`Self::open_step`] from the ciphertext's first [`HEADER_LEN`] bytes (all of it if
    /// shorter) and its length: what the checks read, so the body need not enter wasm memory.
    pub fn open_step_header(
        &self,
        ctx: &Context,
        head: &[u8],
        ciphertext_len: usize,
        now_ms: i64,
    ) -> Result<AesStep, EdgeError> {
        let key = key_for(&self.lease, head, now_ms)?;
        Ok(AesStep::open_header(key, ctx, head, ciphertext_len)?)
    }
}

/// A copy of `lease` (its keys duplicated, each wiped on drop) for a stream that outlives the
/// caller's borrow of it. The copy ends when the lease does: a stream never runs past the
/// lease's expiry, so a withdrawal stops it within one TTL too.
fn copy_of(lease: &Lease) -> Lease {
    // Sized first: a vector grown as it is filled would leave copies of the keys (their
    // HKDF states) in the allocations it moved out of, freed unwiped.
    let mut keys = Vec::with_capacity(lease.versions().count());
    keys.extend(
        lease
            .versions()
            .filter_map(|v| lease.key(v))
            .map(|k| ScopeKey::new(k.id(), k.duplicate_secret())),
    );
    Lease::new(
        lease.scope(),
        lease.current_version(),
        keys,
        lease.expires_at(),
        lease.ttl_ms(),
    )
    .unwrap_or_else(|_| unreachable!("a copy of a checked lease is a checked lease"))
}

/// Encrypts a stream of any length in constant memory (the framed format, 64 KiB frames, as
/// `byok encrypt --stream` and the server make), with a lease that must stay live throughout.
/// It keeps the stream's own key and the lease's end, not the lease's keys; both go at the
/// lease's end or the first failure.
pub struct EdgeSealer {
    deadline: Deadline,
    header: Option<Vec<u8>>,
    frames: Option<StreamEncryptor>,
}

impl EdgeSealer {
    /// Starts sealing under `lease`'s current key with `ctx`, if the lease is live at `now_ms`.
    pub fn new(
        lease: &Lease,
        ctx: &Context,
        now_ms: i64,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Self, EdgeError> {
        lease.check_live(now_ms)?;
        let frames = StreamEncryptor::new(lease.current_key(), ctx, FrameSize::DEFAULT, rng)?;
        Ok(Self {
            deadline: lease.deadline(),
            header: Some(frames.header().to_vec()),
            frames: Some(frames),
        })
    }

    /// The ciphertext bytes `chunk` completes (the header first; whole frames after it).
    pub fn push(&mut self, chunk: &[u8], now_ms: i64) -> Result<Vec<u8>, EdgeError> {
        self.live(now_ms)?;
        let frames = self.frames.as_mut().ok_or_else(closed)?;
        // Whole frames out of what is held back (under a frame) and `chunk`, each with its
        // tag: reserved up front, so that the growth cannot be an allocation that aborts.
        let whole = chunk.len().saturating_add(frames.frame_size());
        let bound = whole.saturating_add((whole / frames.frame_size() + 1) * format::TAG_LEN);
        let mut out = room(bound.saturating_add(HEADER_LEN))?;
        out.extend(self.header.take().unwrap_or_default());
        if let Err(e) = frames.update(chunk, &mut out) {
            self.frames = None;
            return Err(e.into());
        }
        Ok(out)
    }

    /// The last bytes: what is held back, as the final frame.
    pub fn finish(&mut self, now_ms: i64) -> Result<Vec<u8>, EdgeError> {
        self.live(now_ms)?;
        let mut out = self.header.take().unwrap_or_default();
        self.frames.take().ok_or_else(closed)?.finish(&mut out)?;
        Ok(out)
    }

    fn live(&mut self, now_ms: i64) -> Result<(), EdgeError> {
        if let Err(e) = self.deadline.check(now_ms) {
            self.frames = None;
            return Err(e.into());
        }
        Ok(())
    }
}

/// Decrypts a framed stream in constant memory: plaintext is handed out frame by frame, each
/// only after its tag verified; a stream cut short fails at [`EdgeOpener::finish`].
///
/// It keeps a copy of the lease's keys only until the header names the one it needs, then the
/// stream's own key and the lease's end; everything goes at the lease's end or the first
/// failure.
pub struct EdgeOpener {
    keys: Option<Lease>,
    deadline: Deadline,
    ctx: Context,
    pending: Vec<u8>,
    frames: Option<StreamDecryptor>,
    failed: bool,
}

impl EdgeOpener {
    /// Starts opening with `lease` and `ctx`, if the lease is live at `now_ms`.
    pub fn new(lease: &Lease, ctx: Context, now_ms: i64) -> Result<Self, EdgeError> {
        lease.check_live(now_ms)?;
        Ok(Self {
            keys: Some(copy_of(lease)),
            deadline: lease.deadline(),
            ctx,
            pending: Vec::new(),
            frames: None,
            failed: false,
        })
    }

    /// The plaintext that `chunk` completes (whole verified frames only), wiped when dropped.
    pub fn push(&mut self, chunk: &[u8], now_ms: i64) -> Result<SecretVec, EdgeError> {
        let r = self.step(chunk, now_ms);
        if r.is_err() {
            self.fail();
        }
        r
    }

    /// Ends the stream for good: its keys are wiped now.
    fn fail(&mut self) {
        self.failed = true;
        self.keys = None;
        self.frames = None;
    }

    fn step(&mut self, chunk: &[u8], now_ms: i64) -> Result<SecretVec, EdgeError> {
        if self.failed {
            return Err(closed());
        }
        self.deadline.check(now_ms)?;
        // Plaintext is at most the ciphertext it comes from: what is held back (the header's
        // bytes, or a partial frame) and `chunk`. Sized for that, `out` never grows, so no
        // copy of plaintext is left in a freed allocation; it is wiped as it drops, on a
        // failure too.
        let held = self
            .frames
            .as_ref()
            .map_or(0, |f| f.frame_size() + format::TAG_LEN);
        let capacity = chunk.len() + self.pending.len() + held;
        let mut out = Zeroizing::new(room(capacity)?);
        match &mut self.frames {
            Some(frames) => frames.update(chunk, &mut out)?,
            None => {
                // Only the header's bytes are held back (at most `HEADER_LEN`): the rest of the
                // chunk goes to the frames from where it is. A copy of the whole chunk would be
                // an allocation no `room` checked, whose failure aborts the module.
                let (head, rest) = chunk.split_at(
                    HEADER_LEN
                        .saturating_sub(self.pending.len())
                        .min(chunk.len()),
                );
                self.pending.extend_from_slice(head);
                if self.pending.len() < HEADER_LEN {
                    return Ok(SecretVec::default());
                }
                let (header, _) = Header::parse(&self.pending)?;
                let keys = self.keys.take().ok_or_else(closed)?;
                let mut frames =
                    StreamDecryptor::new(key_named(&keys, &header), &self.ctx, &header)?;
                // The stream's key is derived: the lease's keys are wiped here.
                drop(keys);
                self.pending = Vec::new();
                frames.update(rest, &mut out)?;
                self.frames = Some(frames);
            }
        }
        debug_assert_eq!(out.capacity(), capacity, "the plaintext buffer grew");
        Ok(SecretVec::from_vec(std::mem::take(&mut *out)))
    }

    /// The last plaintext, wiped when dropped; fails if the stream was cut short or altered.
    pub fn finish(&mut self, now_ms: i64) -> Result<SecretVec, EdgeError> {
        if self.failed {
            return Err(closed());
        }
        let frames = self.frames.take();
        self.fail();
        self.deadline.check(now_ms)?;
        let Some(frames) = frames else {
            // Fewer bytes than a header: the header parser says what is missing.
            Header::parse(&self.pending)?;
            return Err(closed());
        };
        // What is held back is one frame at most: `out` never grows (see `step`).
        let capacity = frames.frame_size() + format::TAG_LEN;
        let mut out = Zeroizing::new(room(capacity)?);
        frames.finish(&mut out)?;
        debug_assert_eq!(out.capacity(), capacity, "the plaintext buffer grew");
        Ok(SecretVec::from_vec(std::mem::take(&mut *out)))
    }
}

/// An empty buffer with room for `capacity` bytes, or `too_large` when this host's memory
/// cannot hold them: on wasm an allocation that fails aborts the module in the middle of a
/// call, leaving the lease it was made on borrowed, its keys out of `free()`'s reach.
pub(crate) fn room(capacity: usize) -> Result<Vec<u8>, EdgeError> {
    let mut out = Vec::new();
    out.try_reserve_exact(capacity).map_err(|_| {
        EdgeError::new(
            ApiCode::TooLarge,
            format!("no memory here for {capacity} bytes: send smaller chunks"),
        )
    })?;
    Ok(out)
}

fn closed() -> EdgeError {
    EdgeError::new(
        ApiCode::InvalidRequest,
        "the stream is finished or failed: start a new one",
    )
}

/// Encrypts `plaintext` with `ctx` under the scope's current key of `lease`, if it is live at
/// `now_ms`.
pub fn encrypt(
    lease: &Lease,
    ctx: &Context,
    plaintext: &[u8],
    now_ms: i64,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Vec<u8>, EdgeError> {
    lease.check_live(now_ms)?;
    Ok(envelope::encrypt(lease.current_key(), ctx, plaintext, rng)?)
}

/// Decrypts `ciphertext` with `ctx` under the key version its header names, if `lease` is live
/// at `now_ms` and the ciphertext is of the lease's scope. In place: the plaintext is returned
/// in the ciphertext's allocation and wiped when dropped (on a failure, before this returns).
pub fn decrypt(
    lease: &Lease,
    ctx: &Context,
    ciphertext: Vec<u8>,
    now_ms: i64,
) -> Result<SecretVec, EdgeError> {
    let key = key_for(lease, &ciphertext, now_ms)?;
    Ok(envelope::Envelope::<byok_core::DefaultBackend>::decrypt_owned(key, ctx, ciphertext)?)
}

/// The key for `ciphertext`, if the lease is live at `now_ms`: the version its header names. A
/// ciphertext of another scope, or of a version the lease lacks (retired, or newer: renew), gets
/// the current key: core then reports what the format spec says comes first (a malformed header
/// before a wrong key), and the mismatch as a wrong key.
fn key_for<'l>(
    lease: &'l Lease,
    ciphertext: &[u8],
    now_ms: i64,
) -> Result<&'l ScopeKey, EdgeError> {
    lease.check_live(now_ms)?;
    let (header, _) = Header::parse(ciphertext)?;
    Ok(key_named(lease, &header))
}

/// The key `header` names, or the current key when the lease lacks it (see [`key_for`]).
fn key_named<'l>(lease: &'l Lease, header: &Header) -> &'l ScopeKey {
    (header.key.scope == lease.scope())
        .then(|| lease.key(header.key.version))
        .flatten()
        .unwrap_or_else(|| lease.current_key())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn lease(expires_at: i64) -> EdgeLease {
        let doc = serde_json::json!({
            "scope": "d05d3b7582186f01f52b381653c90d31",
            "current_version": 2,
            "keys": [
                { "version": 1, "key": "8V7adkDbjY5N2XMFGMtOzIda4+uJtCmEOzxWm1NCV8I=" },
                { "version": 2, "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }
            ],
            "expires_at": expires_at,
            "ttl_ms": 60_000
        });
        EdgeLease::parse(doc.to_string().as_bytes(), 0, 0).unwrap()
    }

    fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
        rand_core::UnwrapErr(getrandom::SysRng)
    }

    #[test]
    fn a_live_lease_round_trips_and_an_expired_one_is_refused_by_code() {
        let l = lease(1_000);
        let ctx = context(BTreeMap::from([("tenant".into(), "acme".into())])).unwrap();
        let ct = l.encrypt(&ctx, b"hi", 999, &mut rng()).unwrap();
        assert_eq!(&*l.decrypt(&ctx, ct.clone(), 999).unwrap(), b"hi");
        assert_eq!(
            l.decrypt(&ctx, ct.clone(), 1_000).unwrap_err().code,
            ApiCode::LeaseExpired
        );
        assert_eq!(
            l.encrypt(&ctx, b"hi", 1_000, &mut rng()).unwrap_err().code,
            ApiCode::LeaseExpired
        );
        let other = context(BTreeMap::new()).unwrap();
        assert_eq!(
            l.decrypt(&other, ct.clone(), 999).unwrap_err().code,
            ApiCode::DecryptFailed
        );
    }

    #[test]
    fn reserved_contexts_and_bad_documents_are_invalid_requests() {
        let reserved = BTreeMap::from([("byok:purpose".into(), "data-key".into())]);
        assert_eq!(context(reserved).unwrap_err().code, ApiCode::InvalidRequest);
        assert_eq!(
            EdgeLease::parse(b"{}", 0, 0).unwrap_err().code,
            ApiCode::InvalidRequest
        );
    }

    #[test]
    fn streams_cross_with_core_in_any_chunking_and_stop_at_expiry() {
        let l = lease(1_000);
        let ctx = context(BTreeMap::from([("tenant".into(), "acme".into())])).unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut sealer = EdgeSealer::new(l.lease(), &ctx, 0, &mut rng()).unwrap();
        let mut ct = Vec::new();
        for chunk in data.chunks(7_777) {
            ct.extend(sealer.push(chunk, 1).unwrap());
        }
        ct.extend(sealer.finish(1).unwrap());
        // What core (the server, the CLI) reads.
        let key = l.lease().current_key();
        assert_eq!(byok_core::stream::decrypt(key, &ctx, &ct).unwrap(), data);
        // Opened at the edge, a byte at a time through the header, then in big chunks.
        let mut opener = EdgeOpener::new(l.lease(), ctx.clone(), 0).unwrap();
        let mut pt = Vec::new();
        for b in &ct[..100] {
            pt.extend_from_slice(&opener.push(std::slice::from_ref(b), 1).unwrap());
        }
        for chunk in ct[100..].chunks(50_000) {
            pt.extend_from_slice(&opener.push(chunk, 1).unwrap());
        }
        pt.extend_from_slice(&opener.finish(1).unwrap());
        assert_eq!(pt, data);

        // Cut short: refused at the end, by code, and nothing after.
        let mut opener = EdgeOpener::new(l.lease(), ctx.clone(), 0).unwrap();
        opener.push(&ct[..ct.len() - 10], 1).unwrap();
        assert_eq!(opener.finish(1).unwrap_err().code, ApiCode::DecryptFailed);
        assert_eq!(
            opener.push(b"x", 1).unwrap_err().code,
            ApiCode::InvalidRequest
        );
        // A flipped bit in a frame: decrypt_failed.
        let mut bad = ct.clone();
        bad[HEADER_LEN + 10] ^= 1;
        let mut opener = EdgeOpener::new(l.lease(), ctx.clone(), 0).unwrap();
        assert_eq!(
            opener.push(&bad, 1).unwrap_err().code,
            ApiCode::DecryptFailed
        );
        // The lease ends mid-stream: so does the stream, both ways.
        let mut sealer = EdgeSealer::new(l.lease(), &ctx, 0, &mut rng()).unwrap();
        sealer.push(b"first", 999).unwrap();
        assert_eq!(
            sealer.push(b"late", 1_000).unwrap_err().code,
            ApiCode::LeaseExpired
        );
        assert_eq!(
            sealer.finish(999).unwrap_err().code,
            ApiCode::InvalidRequest
        );
        let mut opener = EdgeOpener::new(l.lease(), ctx, 0).unwrap();
        assert_eq!(
            opener.push(&ct, 1_000).unwrap_err().code,
            ApiCode::LeaseExpired
        );
        assert!(
            opener.keys.is_none(),
            "an ended stream kept the lease's keys"
        );
    }

    /// A stream keeps no copy of the lease's keys beyond what it needs: an opener drops its copy
    /// once the header named the key (the stream's own key is derived then), and at once when
    /// it fails first.
    #[test]
    fn an_opener_keeps_the_leases_keys_only_until_the_header() {
        let l = lease(1_000);
        let ctx = context(BTreeMap::new()).unwrap();
        let mut sealer = EdgeSealer::new(l.lease(), &ctx, 0, &mut rng()).unwrap();
        let mut ct = sealer.push(b"data", 1).unwrap();
        ct.extend(sealer.finish(1).unwrap());
        let mut opener = EdgeOpener::new(l.lease(), ctx.clone(), 0).unwrap();
        opener.push(&ct[..HEADER_LEN - 1], 1).unwrap();
        assert!(opener.keys.is_some(), "the header is not complete yet");
        let mut out = opener.push(&ct[HEADER_LEN - 1..], 1).unwrap().to_vec();
        assert!(
            opener.keys.is_none(),
            "the lease's keys outlived the header"
        );
        out.extend_from_slice(&opener.finish(1).unwrap());
        assert_eq!(out, b"data");
        let mut bad = EdgeOpener::new(l.lease(), ctx, 0).unwrap();
        assert!(bad.push(&[0xff; HEADER_LEN], 1).is_err());
        assert!(bad.keys.is_none(), "a failed stream kept the lease's keys");
    }
}
