//! Test support shared by native and wasm tests (feature `dev`): deterministic RNGs and the
//! runner for the vectors in `vectors/*.json`.
//!
//! Every host runs the same files through [`run_vectors`], as every RustCrypto cipher crate
//! runs `aead::dev`, so a wasm build that disagrees with native by one byte fails.
//!
//! A vector file is `{ "name", "description", "vectors": [ ... ] }`; each vector's fields are
//! described in `docs/format.md`, section 9 (and on [`Vector`]). In short: the caller's key and
//! context, the input (hex `ciphertext` or `armor` text), the operation, and `expect`: `ok` or
//! the error class (`format`, `unsupported`, `wrong_key`, `decrypt`, `misuse`).
//!
//! An `ok` vector is checked both ways: decryption gives the plaintext, and encryption with an
//! RNG that replays `rng` gives the input byte for byte (armored again, for an `armor` input).
//! Its intermediate values (`prk`, `message_key`, `context_encoding`) are checked too.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::convert::Infallible;

use rand_chacha::ChaCha20Rng;
use rand_core::{SeedableRng, TryCryptoRng, TryRng};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::crypto::{AeadBackend, ScopeKey};
use crate::envelope::Envelope;
use crate::error::{Error, FormatError, Unsupported};
use crate::format::header::{KDF_INFO, KDF_INFO_LEN};
use crate::format::{FrameSize, armor};
use crate::key_id::{KeyId, ScopeId};
use crate::secret::SecretBytes;
use crate::stream;

/// A seeded ChaCha20 RNG: deterministic, for tests and examples only.
pub struct TestRng(ChaCha20Rng);

impl TestRng {
    /// The RNG for `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }
}

impl TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.0.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0.try_next_u64()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.try_fill_bytes(dst)
    }
}

impl TryCryptoRng for TestRng {}

/// Replays fixed bytes, then zeros: reproduces an encryption whose random draws are known.
/// For known-answer tests only.
pub struct ReplayRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl ReplayRng {
    /// An RNG that returns `bytes` in order.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Whether every byte was drawn.
    pub fn exhausted(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

impl TryRng for ReplayRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            *d = self.bytes.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
        }
        Ok(())
    }
}

impl TryCryptoRng for ReplayRng {}

/// One vector (`docs/format.md`, section 9).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// Name: the defect or size under test.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub comment: String,
    /// `decrypt`, `stream_decrypt` or `unwrap_data_key`.
    pub operation: String,
    /// The caller's key, 32 bytes hex.
    pub key: String,
    /// The caller's scope id, 16 bytes hex.
    pub scope_id: String,
    /// The caller's key version.
    pub key_version: u32,
    /// The caller's encryption context, as an object.
    #[serde(default)]
    pub context: Option<BTreeMap<String, String>>,
    /// The caller's encryption context as `[key, value]` pairs in the order the caller gives
    /// them (unsorted, or with a repeated key); instead of `context`.
    #[serde(default)]
    pub context_pairs: Option<Vec<(String, String)>>,
    /// Input bytes, hex.
    #[serde(default)]
    pub ciphertext: Option<String>,
    /// Input text armor.
    #[serde(default)]
    pub armor: Option<String>,
    /// What the encryptor drew from its RNG, hex.
    #[serde(default)]
    pub rng: Option<String>,
    /// Frame size exponent used to encrypt (stream vectors).
    #[serde(default)]
    pub frame_log2: Option<u8>,
    /// Plaintext, hex.
    #[serde(default)]
    pub plaintext: Option<String>,
    /// Length of a pattern plaintext (`i % 251`).
    #[serde(default)]
    pub plaintext_len: Option<usize>,
    /// SHA-256 of the plaintext, hex.
    #[serde(default)]
    pub plaintext_sha256: Option<String>,
    /// Intermediate: HKDF-Extract(salt, scope key), hex.
    #[serde(default)]
    pub prk: Option<String>,
    /// Intermediate: the first 32 bytes of HKDF-Expand(PRK, header[6..60], 64), hex.
    #[serde(default)]
    pub message_key: Option<String>,
    /// Intermediate: the canonical encoding of the context, hex.
    #[serde(default)]
    pub context_encoding: Option<String>,
    /// Expected outcome.
    pub expect: String,
}

/// A vector file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// File name without extension.
    pub name: String,
    /// What the file covers and where its vectors come from.
    pub description: String,
    /// The vectors.
    pub vectors: Vec<Vector>,
}

/// Whether `e` is the refusal a change of byte `i` of a ciphertext must give (the tamper and
/// property tests): that of the first check that reads
/// byte `i`, in the order of `docs/format.md`, section 8 (magic, version, suite, mode, frame
/// size, key id, then the commitment and tag, which say only `Decrypt`).
pub fn tamper_refusal_fits(i: usize, e: &Error) -> bool {
    match i {
        0..4 => matches!(e, Error::Format(FormatError::BadMagic { .. })),
        4 => matches!(e, Error::Unsupported(Unsupported::Version(_))),
        5 => matches!(e, Error::Unsupported(Unsupported::Suite(_))),
        // An undefined mode; a defined one this call does not open; or one whose frame size
        // byte does not fit it (framed turned into another mode keeps its frame size).
        6 => matches!(
            e,
            Error::Unsupported(Unsupported::Mode(_))
                | Error::Format(
                    FormatError::WrongMode { .. }
                        | FormatError::InvalidField {
                            field: "header.frame_log2",
                            ..
                        }
                )
        ),
        // A frame size no mode allows here, or (framed) another valid one, which the key
        // derivation binds.
        7 => matches!(
            e,
            Error::Format(FormatError::InvalidField {
                field: "header.frame_log2",
                ..
            }) | Error::Decrypt
        ),
        8..28 => matches!(e, Error::WrongKey { .. }),
        _ => *e == Error::Decrypt,
    }
}

/// The pattern plaintext of `len` bytes: byte `i` is `i % 251` (a prime, so frames of a
/// power-of-two size all differ).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect()
}

/// The outcome class of an error, as vectors name it.
pub fn class(e: &Error) -> &'static str {
    match e {
        Error::Format(_) => "format",
        Error::Unsupported(_) => "unsupported",
        Error::Decrypt => "decrypt",
        Error::WrongKey { .. } => "wrong_key",
        Error::Misuse(_) => "misuse",
        Error::Scope(_) => "scope",
        Error::Internal(_) => "internal",
    }
}

fn unhex(field: &str, s: &str) -> Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("{field}: bad hex: {e}"))
}

impl Vector {
    /// The scope key the caller holds.
    pub fn scope_key(&self) -> Result<ScopeKey, String> {
        let mut key: [u8; 32] = unhex("key", &self.key)?
            .try_into()
            .map_err(|_| "key: need 32 bytes".to_string())?;
        let scope: [u8; 16] = unhex("scope_id", &self.scope_id)?
            .try_into()
            .map_err(|_| "scope_id: need 16 bytes".to_string())?;
        let id = KeyId::new(ScopeId::from_bytes(scope), self.key_version);
        Ok(ScopeKey::new(id, SecretBytes::from_bytes(&mut key)))
    }

    /// The caller's context. A repeated key in `context_pairs` is the caller's error
    /// ([`crate::error::Misuse::DuplicateContextKey`]), found before the input is looked at.
    pub fn context(&self) -> Result<Result<Context, Error>, String> {
        match (&self.context, &self.context_pairs) {
            (Some(map), None) => Ok(Ok(Context::from_map(map.clone()))),
            (None, Some(pairs)) => Ok(Context::from_pairs(pairs.clone()).map_err(Error::from)),
            (None, None) => Ok(Ok(Context::new())),
            (Some(_), Some(_)) => Err("give context or context_pairs, not both".into()),
        }
    }

    /// The input bytes (decoding the armor if that is what the vector gives).
    pub fn input(&self) -> Result<Result<Vec<u8>, Error>, String> {
        match (&self.ciphertext, &self.armor) {
            (Some(hex), None) => Ok(Ok(unhex("ciphertext", hex)?)),
            (None, Some(text)) => Ok(armor::decode(text)),
            _ => Err("need exactly one of ciphertext, armor".into()),
        }
    }

    /// The expected plaintext of an `ok` vector.
    pub fn expected_plaintext(&self) -> Result<Vec<u8>, String> {
        match (&self.plaintext, self.plaintext_len) {
            (Some(hex), None) => unhex("plaintext", hex),
            (None, Some(len)) => Ok(pattern(len)),
            _ => Err("ok vector needs exactly one of plaintext, plaintext_len".into()),
        }
    }
}

/// Runs `operation` of vector `v` with backend `B`, on `input`, with context `ctx`.
pub fn open<B: AeadBackend>(
    v: &Vector,
    ctx: &Context,
    input: &[u8],
) -> Result<Result<Vec<u8>, Error>, String> {
    let key = v.scope_key()?;
    Ok(match v.operation.as_str() {
        "decrypt" => Envelope::<B>::decrypt(&key, ctx, input),
        "stream_decrypt" => stream::decrypt_with::<B>(&key, ctx, input),
        "unwrap_data_key" => {
            Envelope::<B>::unwrap_data_key(&key, ctx, input).map(|k| k.expose_secret().to_vec())
        }
        other => return Err(format!("unknown operation {other}")),
    })
}

/// Re-encrypts an `ok` vector's plaintext with its recorded RNG output.
pub fn seal<B: AeadBackend>(
    v: &Vector,
    ctx: &Context,
    plaintext: &[u8],
) -> Result<Vec<u8>, String> {
    let key = v.scope_key()?;
    let rng_bytes = unhex("rng", v.rng.as_deref().ok_or("ok vector needs rng")?)?;
    let mut rng = ReplayRng::new(rng_bytes);
    let out = match v.operation.as_str() {
        "decrypt" => Envelope::<B>::encrypt(&key, ctx, plaintext, &mut rng),
        "stream_decrypt" => {
            let log2 = v.frame_log2.ok_or("stream vector needs frame_log2")?;
            let fs = FrameSize::from_log2(log2).map_err(|e| format!("frame_log2: {e}"))?;
            stream::encrypt_with::<B>(&key, ctx, fs, plaintext, &mut rng)
        }
        "unwrap_data_key" => {
            // The data key is the RNG's first 32 bytes; the plaintext must be that key.
            Envelope::<B>::generate_data_key(&key, ctx, &mut rng).map(|(_, wrapped)| wrapped)
        }
        other => return Err(format!("unknown operation {other}")),
    };
    if !rng.exhausted() {
        return Err("encryption drew fewer random bytes than the vector records".into());
    }
    out.map_err(|e| format!("encrypt failed: {e}"))
}

/// Compares an `ok` vector's recorded intermediate values with the ones computed from its key,
/// context and input.
fn check_intermediates(v: &Vector, ctx: &Context, input: &[u8]) -> Result<(), String> {
    let key = v.scope_key()?;
    let info: &[u8; KDF_INFO_LEN] = input
        .get(KDF_INFO)
        .and_then(|s| s.try_into().ok())
        .ok_or("ok vector shorter than a header")?;
    let computed = [
        ("prk", &v.prk, hex::encode(*key.prk())),
        (
            "message_key",
            &v.message_key,
            hex::encode(key.derive(info).map_err(|e| e.to_string())?.key),
        ),
        (
            "context_encoding",
            &v.context_encoding,
            hex::encode(ctx.encoded()),
        ),
    ];
    for (field, recorded, got) in computed {
        match recorded {
            None => return Err(format!("ok vector needs {field}")),
            Some(want) if *want != got => return Err(format!("{field}: computed {got}")),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks one vector with backend `B`, in the order of `docs/format.md`, section 8: the
/// caller's context, the armor, then the binary reader.
pub fn check<B: AeadBackend>(v: &Vector) -> Result<(), String> {
    let refused = |e: Error| {
        if class(&e) == v.expect {
            Ok(())
        } else {
            Err(format!("expected {}, got {} ({e})", v.expect, class(&e)))
        }
    };
    let ctx = match v.context()? {
        Ok(ctx) => ctx,
        Err(e) => return refused(e),
    };
    let input = match v.input()? {
        Ok(bytes) => bytes,
        Err(e) => return refused(e),
    };
    let result = open::<B>(v, &ctx, &input)?;
    match (v.expect.as_str(), result) {
        ("ok", Ok(plain)) => {
            let expected = v.expected_plaintext()?;
            if plain != expected {
                return Err("decrypted plaintext differs".into());
            }
            if let Some(sum) = &v.plaintext_sha256 {
                let got = hex::encode(Sha256::digest(&plain));
                if &got != sum {
                    return Err(format!("plaintext_sha256 {got} != {sum}"));
                }
            }
            check_intermediates(v, &ctx, &input)?;
            let resealed = seal::<B>(v, &ctx, &expected)?;
            let same = match &v.armor {
                Some(text) => armor::encode(&resealed) == *text,
                None => resealed == input,
            };
            if !same {
                return Err("re-encryption with the recorded rng differs".into());
            }
            Ok(())
        }
        ("ok", Err(e)) => Err(format!("expected ok, got {} ({e})", class(&e))),
        (want, Ok(_)) => Err(format!("expected {want}, but it decrypted")),
        (_, Err(e)) => refused(e),
    }
}

/// Parses a vector file and checks every vector with backend `B`. Returns how many ran, or
/// every failure, one per line.
pub fn run_vectors<B: AeadBackend>(json: &str) -> Result<usize, String> {
    let file: VectorFile = serde_json::from_str(json).map_err(|e| format!("parse: {e}"))?;
    let mut failures = Vec::new();
    for v in &file.vectors {
        if let Err(e) = check::<B>(v) {
            failures.push(format!("{}/{}: {e}", file.name, v.name));
        }
    }
    if failures.is_empty() {
        Ok(file.vectors.len())
    } else {
        Err(failures.join("\n"))
    }
}
