//! Writes `vectors/*.json`: `cargo run -p byok-core --example gen_vectors --features dev -- vectors`.
//!
//! Run it only when the format changes on purpose; the committed files are the known answers,
//! checked by the native tests (both backends), the wasm tests, and independently of this code
//! by `tools/verify_vectors.py` (Python `cryptography`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;

use aes_gcm::aes::cipher::KeyInit;
use aes_gcm::{AeadInOut, Aes256Gcm};
use byok_core::crypto::backend::RustCrypto;
use byok_core::dev::{ReplayRng, TestRng, pattern};
use byok_core::format::armor;
use byok_core::format::header::KDF_INFO;
use byok_core::{Context, Envelope, FrameSize, KeyId, ScopeId, ScopeKey, SecretBytes, stream};
use hkdf::Hkdf;
use rand_core::{Rng, TryCryptoRng, TryRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The HKDF-Extract salt of docs/format.md, section 1.
const EXTRACT_SALT: &[u8] = b"byok/v1/suite1/scope-key";

/// Records what an encryption draws, so the vector can replay it.
struct Recording<'a> {
    inner: &'a mut TestRng,
    drawn: Vec<u8>,
}

impl TryRng for Recording<'_> {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        unreachable!("byok-core draws bytes only")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        unreachable!("byok-core draws bytes only")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.inner.fill_bytes(dst);
        self.drawn.extend_from_slice(dst);
        Ok(())
    }
}
impl TryCryptoRng for Recording<'_> {}

#[derive(Clone)]
struct Caller {
    key: [u8; 32],
    scope: [u8; 16],
    version: u32,
    context: BTreeMap<String, String>,
    /// The context as the caller gives it, in order (maybe unsorted, maybe with a repeated
    /// key): written as `context_pairs` instead of `context`.
    pairs: Option<Vec<(String, String)>>,
}

impl Caller {
    fn new(rng: &mut TestRng, version: u32, context: &[(&str, &str)]) -> Self {
        let mut key = [0u8; 32];
        let mut scope = [0u8; 16];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut scope);
        let context = context
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            key,
            scope,
            version,
            context,
            pairs: None,
        }
    }
    /// The same key, with the context given as `pairs` in this order.
    fn with_pairs(&self, pairs: &[(&str, &str)]) -> Self {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            context: pairs.iter().cloned().collect(),
            pairs: Some(pairs),
            ..self.clone()
        }
    }
    fn scope_key(&self) -> ScopeKey {
        let mut k = self.key;
        ScopeKey::new(
            KeyId::new(ScopeId::from_bytes(self.scope), self.version),
            SecretBytes::from_bytes(&mut k),
        )
    }
    fn ctx(&self) -> Context {
        match &self.pairs {
            Some(pairs) => Context::from_pairs(pairs.clone()).unwrap(),
            None => Context::from_pairs(self.context.clone()).unwrap(),
        }
    }
    fn fields(&self) -> Value {
        let mut v = json!({
            "key": hex::encode(self.key),
            "scope_id": hex::encode(self.scope),
            "key_version": self.version,
        });
        let o = v.as_object_mut().unwrap();
        match &self.pairs {
            Some(pairs) => o.insert("context_pairs".into(), json!(pairs)),
            None => o.insert("context".into(), json!(self.context)),
        };
        v
    }
    /// HKDF-Extract of the key (the PRK), computed here with the hkdf crate directly.
    fn prk(&self) -> Vec<u8> {
        Hkdf::<Sha256>::extract(Some(EXTRACT_SALT), &self.key)
            .0
            .to_vec()
    }
    /// OKM = HKDF-Expand(PRK, info, 64): (message key, commitment).
    fn okm(&self, info: &[u8]) -> ([u8; 32], [u8; 32]) {
        let mut okm = [0u8; 64];
        Hkdf::<Sha256>::new(Some(EXTRACT_SALT), &self.key)
            .expand(info, &mut okm)
            .unwrap();
        (okm[..32].try_into().unwrap(), okm[32..].try_into().unwrap())
    }
}

struct Positive {
    caller: Caller,
    operation: &'static str,
    frame_log2: Option<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
}

fn positive(
    rng: &mut TestRng,
    caller: &Caller,
    operation: &'static str,
    frame_log2: Option<u8>,
    plaintext: &[u8],
) -> (Positive, Vec<u8>) {
    let mut rec = Recording {
        inner: rng,
        drawn: Vec::new(),
    };
    let key = caller.scope_key();
    let ctx = caller.ctx();
    let (ciphertext, plaintext) = match operation {
        "decrypt" => (
            Envelope::<RustCrypto>::encrypt(&key, &ctx, plaintext, &mut rec).unwrap(),
            plaintext.to_vec(),
        ),
        "stream_decrypt" => {
            let fs = FrameSize::from_log2(frame_log2.unwrap()).unwrap();
            (
                stream::encrypt_with::<RustCrypto>(&key, &ctx, fs, plaintext, &mut rec).unwrap(),
                plaintext.to_vec(),
            )
        }
        "unwrap_data_key" => {
            let (dk, wrapped) =
                Envelope::<RustCrypto>::generate_data_key(&key, &ctx, &mut rec).unwrap();
            (wrapped, dk.expose_secret().to_vec())
        }
        _ => unreachable!(),
    };
    let drawn = rec.drawn;
    (
        Positive {
            caller: caller.clone(),
            operation,
            frame_log2,
            plaintext,
            ciphertext,
        },
        drawn,
    )
}

fn ok_vector(name: &str, comment: &str, p: &Positive, rng_bytes: &[u8]) -> Value {
    let mut v = ok_common(name, comment, p, rng_bytes);
    let o = v.as_object_mut().unwrap();
    o.insert("ciphertext".into(), json!(hex::encode(&p.ciphertext)));
    v
}

/// A positive vector whose input is the text armor of `p`'s ciphertext.
fn ok_armor_vector(name: &str, comment: &str, p: &Positive, rng_bytes: &[u8]) -> Value {
    let mut v = ok_common(name, comment, p, rng_bytes);
    let o = v.as_object_mut().unwrap();
    o.insert("armor".into(), json!(armor::encode(&p.ciphertext)));
    v
}

fn ok_common(name: &str, comment: &str, p: &Positive, rng_bytes: &[u8]) -> Value {
    let mut v = p.caller.fields();
    let o = v.as_object_mut().unwrap();
    o.insert("name".into(), json!(name));
    o.insert("comment".into(), json!(comment));
    o.insert("operation".into(), json!(p.operation));
    o.insert("rng".into(), json!(hex::encode(rng_bytes)));
    // Intermediate values, for an implementation to debug against.
    o.insert("prk".into(), json!(hex::encode(p.caller.prk())));
    let (message_key, commitment) = p.caller.okm(&p.ciphertext[KDF_INFO]);
    assert_eq!(commitment, p.ciphertext[60..92], "{name}: commitment");
    o.insert("message_key".into(), json!(hex::encode(message_key)));
    o.insert(
        "context_encoding".into(),
        json!(hex::encode(p.caller.ctx().encoded())),
    );
    if let Some(l) = p.frame_log2 {
        o.insert("frame_log2".into(), json!(l));
    }
    let pattern_ok = p.plaintext.len() > 1024 && p.plaintext == pattern(p.plaintext.len());
    if pattern_ok {
        o.insert("plaintext_len".into(), json!(p.plaintext.len()));
    } else {
        o.insert("plaintext".into(), json!(hex::encode(&p.plaintext)));
    }
    o.insert(
        "plaintext_sha256".into(),
        json!(hex::encode(Sha256::digest(&p.plaintext))),
    );
    o.insert("expect".into(), json!("ok"));
    v
}

/// A failing vector: `p`'s caller and operation, input `input`, expected class `expect`.
fn bad(
    name: &str,
    comment: &str,
    caller: &Caller,
    operation: &str,
    input: Input,
    expect: &str,
) -> Value {
    let mut v = caller.fields();
    let o = v.as_object_mut().unwrap();
    o.insert("name".into(), json!(name));
    o.insert("comment".into(), json!(comment));
    o.insert("operation".into(), json!(operation));
    match input {
        Input::Bytes(b) => o.insert("ciphertext".into(), json!(hex::encode(b))),
        Input::Armor(t) => o.insert("armor".into(), json!(t)),
    };
    o.insert("expect".into(), json!(expect));
    v
}

enum Input {
    Bytes(Vec<u8>),
    Armor(String),
}

fn with(bytes: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Input {
    let mut b = bytes.to_vec();
    f(&mut b);
    Input::Bytes(b)
}

fn write(dir: &Path, name: &str, description: &str, vectors: Vec<Value>) {
    let file = json!({ "name": name, "description": description, "vectors": vectors });
    let text = serde_json::to_string_pretty(&file).unwrap() + "\n";
    std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
    eprintln!(
        "{name}: {} vectors",
        file["vectors"].as_array().unwrap().len()
    );
}

const SOURCE: &str = "Generated by core/examples/gen_vectors.rs from a seeded ChaCha20 RNG; \
    verified independently by tools/verify_vectors.py (Python cryptography: HKDF-SHA256, AES-256-GCM). \
    Spec: docs/format.md.";

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "vectors".into());
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = TestRng::seeded(0x6279_6f6b_7631); // "byokv1"
    // Draws for the vectors added by issue #12 ("a format spec that stands alone") come from
    // their own RNG, so that every older vector keeps its bytes.
    let mut fresh = TestRng::seeded(12);

    // ---- single ---------------------------------------------------------------------------
    let plain = Caller::new(&mut rng, 1, &[]);
    let tenant = Caller::new(&mut rng, 7, &[("tenant", "acme"), ("table", "notes")]);
    let unicode = Caller::new(
        &mut rng,
        0,
        &[("ключ", "значение"), ("🔑", "✓"), ("", "empty key")],
    );
    let long_values: Vec<(String, String)> = (0..40)
        .map(|i| (format!("k{i:02}"), "v".repeat(100 + i)))
        .collect();
    let mut large = Caller::new(&mut rng, u32::MAX, &[]);
    large.context = long_values.into_iter().collect();

    let mut single = Vec::new();
    let mut keep = None;
    for len in [
        0usize, 1, 15, 16, 17, 31, 32, 33, 255, 256, 257, 1024, 4096, 65536,
    ] {
        let caller = if len == 1024 { &tenant } else { &plain };
        let (p, drawn) = positive(&mut rng, caller, "decrypt", None, &pattern(len));
        single.push(ok_vector(
            &format!("len_{len}"),
            "pattern plaintext",
            &p,
            &drawn,
        ));
        if len == 33 {
            keep = Some(p);
        }
    }
    for (name, caller) in [
        ("context_empty", &plain),
        ("context_two_pairs", &tenant),
        ("context_unicode", &unicode),
        ("context_large_40_pairs_4kib", &large),
    ] {
        let (p, drawn) = positive(&mut rng, caller, "decrypt", None, b"context test");
        single.push(ok_vector(
            name,
            "context variants; key version 0 and u32::MAX covered",
            &p,
            &drawn,
        ));
    }
    // Contexts (docs/format.md, section 5). Given unsorted, with keys whose UTF-8 byte order
    // (U+FF61 < U+1F511) differs from their UTF-16 code-unit order (D83D.. < FF61): a reader
    // must sort by UTF-8 bytes, whatever order the pairs come in.
    let unsorted = plain.with_pairs(&[
        ("\u{1F511}", "key"),
        ("\u{FF61}", "halfwidth ideographic full stop"),
        ("b", "2"),
        ("a", "1"),
    ]);
    // No Unicode normalisation: "é" precomposed (U+00E9) and decomposed (e, U+0301) are two
    // different keys, and a value keeps its exact bytes.
    let nfc_nfd = tenant.with_pairs(&[
        ("\u{e9}", "precomposed"),
        ("e\u{301}", "decomposed e\u{301}"),
    ]);
    // The format has no size limit below 2^32 - 1: more pairs and longer keys and values than
    // byok's API accepts from a caller, and a key with the reserved prefix.
    let mut beyond = plain.clone();
    beyond.context = (0..65)
        .map(|i| (format!("p{i:02}"), String::new()))
        .chain([
            ("k".repeat(257), "v".repeat(1025)),
            ("byok:purpose".to_string(), "data-key".to_string()),
        ])
        .collect();
    for (name, comment, caller) in [
        (
            "context_unsorted_utf8_not_utf16_order",
            "context_pairs given unsorted; sorted by UTF-8 bytes the order is a, b, U+FF61, U+1F511 (UTF-16 order would put U+1F511 first)",
            &unsorted,
        ),
        (
            "context_not_normalised",
            "keys U+00E9 and e U+0301 are distinct keys (a reader that normalises sees a duplicate); values keep their bytes",
            &nfc_nfd,
        ),
        (
            "context_beyond_caller_limits",
            "65 pairs, a 257-byte key, a 1025-byte value and a byok: key: beyond byok's API limits, within the format's",
            &beyond,
        ),
    ] {
        let (p, drawn) = positive(&mut fresh, caller, "decrypt", None, b"context test");
        single.push(ok_vector(name, comment, &p, &drawn));
    }
    write(
        dir,
        "single",
        &format!("Single-shot messages (mode 1), all sizes and contexts. {SOURCE}"),
        single,
    );

    // ---- negative -------------------------------------------------------------------------
    let (p, _) = positive(&mut rng, &tenant, "decrypt", None, b"attack at dawn");
    let ct = p.ciphertext.clone();
    let c = &tenant;
    let d = "decrypt";
    let mut neg = vec![
        bad(
            "empty_input",
            "no bytes",
            c,
            d,
            Input::Bytes(vec![]),
            "format",
        ),
        bad(
            "bad_magic",
            "not BYOK",
            c,
            d,
            with(&ct, |b| b[0] = b'X'),
            "format",
        ),
        bad(
            "foreign_file",
            "a PNG signature",
            c,
            d,
            Input::Bytes(b"\x89PNG\r\n\x1a\n".to_vec()),
            "format",
        ),
        bad(
            "version_2",
            "newer format version",
            c,
            d,
            with(&ct, |b| b[4] = 2),
            "unsupported",
        ),
        bad(
            "version_0",
            "version 0",
            c,
            d,
            with(&ct, |b| b[4] = 0),
            "unsupported",
        ),
        bad(
            "suite_2",
            "unknown suite",
            c,
            d,
            with(&ct, |b| b[5] = 2),
            "unsupported",
        ),
        bad(
            "mode_0",
            "mode 0 is not defined",
            c,
            d,
            with(&ct, |b| b[6] = 0),
            "unsupported",
        ),
        bad(
            "mode_4",
            "mode 4 is not defined",
            c,
            d,
            with(&ct, |b| b[6] = 4),
            "unsupported",
        ),
        bad(
            "frame_log2_nonzero_in_single",
            "reserved byte set",
            c,
            d,
            with(&ct, |b| b[7] = 16),
            "format",
        ),
        bad(
            "header_truncated_in_salt",
            "cut at byte 50",
            c,
            d,
            with(&ct, |b| b.truncate(50)),
            "format",
        ),
        bad(
            "header_truncated_in_commitment",
            "cut at byte 91",
            c,
            d,
            with(&ct, |b| b.truncate(91)),
            "format",
        ),
        bad(
            "tag_truncated",
            "body shorter than a tag",
            c,
            d,
            with(&ct, |b| b.truncate(92 + 15)),
            "format",
        ),
        bad(
            "tag_missing_byte",
            "last byte removed",
            c,
            d,
            with(&ct, |b| {
                b.pop();
            }),
            "decrypt",
        ),
        bad(
            "trailing_byte",
            "one byte appended",
            c,
            d,
            with(&ct, |b| b.push(0)),
            "decrypt",
        ),
        bad(
            "salt_flipped",
            "one salt bit",
            c,
            d,
            with(&ct, |b| b[40] ^= 1),
            "decrypt",
        ),
        bad(
            "commitment_flipped",
            "one commitment bit",
            c,
            d,
            with(&ct, |b| b[70] ^= 0x80),
            "decrypt",
        ),
        bad(
            "ciphertext_flipped",
            "one ciphertext bit",
            c,
            d,
            with(&ct, |b| b[92] ^= 1),
            "decrypt",
        ),
        bad(
            "tag_flipped",
            "one tag bit",
            c,
            d,
            with(&ct, |b| *b.last_mut().unwrap() ^= 1),
            "decrypt",
        ),
        bad(
            "scope_id_mismatch",
            "header names another scope than the caller's key",
            c,
            d,
            with(&ct, |b| b[8] ^= 1),
            "wrong_key",
        ),
        bad(
            "key_version_mismatch",
            "header names another key version",
            c,
            d,
            with(&ct, |b| b[27] ^= 1),
            "wrong_key",
        ),
    ];
    // Header edited to name a scope/version, and the caller holds that scope's key with the
    // original bytes: the derivation binds the header, so the commitment no longer matches.
    let mut moved = tenant.clone();
    moved.scope[0] ^= 1;
    neg.push(bad(
        "moved_to_other_scope",
        "scope id edited, key of that scope given (same bytes)",
        &moved,
        d,
        with(&ct, |b| b[8] ^= 1),
        "decrypt",
    ));
    let mut bumped = tenant.clone();
    bumped.version ^= 1;
    neg.push(bad(
        "moved_to_other_version",
        "key version edited, key of that version given (same bytes)",
        &bumped,
        d,
        with(&ct, |b| b[27] ^= 1),
        "decrypt",
    ));
    let mut wrong_bytes = tenant.clone();
    wrong_bytes.key[0] ^= 1;
    neg.push(bad(
        "wrong_key_bytes",
        "right key id, other key bytes",
        &wrong_bytes,
        d,
        Input::Bytes(ct.clone()),
        "decrypt",
    ));
    let mut ctx_changed = tenant.clone();
    ctx_changed.context.insert("tenant".into(), "acmf".into());
    neg.push(bad(
        "context_value_changed",
        "one context value differs",
        &ctx_changed,
        d,
        Input::Bytes(ct.clone()),
        "decrypt",
    ));
    let mut ctx_added = tenant.clone();
    ctx_added.context.insert("extra".into(), "".into());
    neg.push(bad(
        "context_pair_added",
        "one more context pair",
        &ctx_added,
        d,
        Input::Bytes(ct.clone()),
        "decrypt",
    ));
    let mut ctx_removed = tenant.clone();
    ctx_removed.context.remove("table");
    neg.push(bad(
        "context_pair_removed",
        "one context pair fewer",
        &ctx_removed,
        d,
        Input::Bytes(ct.clone()),
        "decrypt",
    ));
    let mut ctx_empty = tenant.clone();
    ctx_empty.context.clear();
    neg.push(bad(
        "context_empty",
        "no context given",
        &ctx_empty,
        d,
        Input::Bytes(ct.clone()),
        "decrypt",
    ));
    let mut ctx_swapped = tenant.clone();
    ctx_swapped.context = [
        ("tenant".to_string(), "notes".to_string()),
        ("table".to_string(), "acme".to_string()),
    ]
    .into();
    neg.push(bad(
        "context_values_swapped",
        "same values under swapped keys",
        &ctx_swapped,
        d,
        Input::Bytes(ct.clone()),
        "decrypt",
    ));
    // Armor.
    let keep = keep.unwrap();
    let text = armor::encode(&keep.ciphertext);
    let ac = &keep.caller;
    neg.push(bad(
        "armor_uppercase_prefix",
        "prefix is case-sensitive",
        ac,
        d,
        Input::Armor(text.replacen("byok", "BYOK", 1)),
        "format",
    ));
    neg.push(bad(
        "armor_version_label_v2",
        "label v2",
        ac,
        d,
        Input::Armor(text.replacen("v1:", "v2:", 1)),
        "format",
    ));
    // Padding: the 122-byte message is 2 bytes past a multiple of 3, so its padded base64url
    // ends in one '='. (The 141-byte one above needs none.)
    assert_eq!(ct.len() % 3, 2);
    neg.push(bad(
        "armor_padding",
        "the standard padded form: one '=' that a 122-byte ciphertext's base64url would carry",
        &tenant,
        d,
        Input::Armor(format!("{}=", armor::encode(&ct))),
        "format",
    ));
    neg.push(bad(
        "armor_equals_appended",
        "'=' after a 141-byte ciphertext, whose base64url needs no padding",
        ac,
        d,
        Input::Armor(format!("{text}=")),
        "format",
    ));
    neg.push(bad(
        "armor_standard_alphabet",
        "'+' is not base64url",
        ac,
        d,
        Input::Armor(format!("{}+", &text[..text.len() - 1])),
        "format",
    ));
    neg.push(bad(
        "armor_whitespace",
        "trailing newline",
        ac,
        d,
        Input::Armor(format!("{text}\n")),
        "format",
    ));
    neg.push(bad(
        "armor_truncated_char",
        "one character removed",
        ac,
        d,
        Input::Armor(text[..text.len() - 1].to_string()),
        "format",
    ));
    neg.push(bad(
        "armor_label_payload_mismatch",
        "label v1, header version 2",
        ac,
        d,
        Input::Armor(armor::encode(&with_bytes(&keep.ciphertext, |b| b[4] = 2))),
        "format",
    ));
    // Mode confusion.
    let (wk, _) = positive(&mut rng, &tenant, "unwrap_data_key", None, &[]);
    neg.push(bad(
        "wrapped_key_as_message",
        "a wrapped data key given to decrypt",
        &tenant,
        "decrypt",
        Input::Bytes(wk.ciphertext.clone()),
        "format",
    ));
    neg.push(bad(
        "message_as_wrapped_key",
        "a message given to unwrap_data_key",
        &tenant,
        "unwrap_data_key",
        Input::Bytes(ct.clone()),
        "format",
    ));
    neg.push(bad(
        "message_as_stream",
        "a single message given to stream_decrypt",
        &tenant,
        "stream_decrypt",
        Input::Bytes(ct.clone()),
        "format",
    ));
    // A single message of 32 bytes is 140 bytes, as long as a wrapped key: relabelled as one,
    // it passes every structural check, and the key derivation (the mode is in `info`) refuses it.
    let (m32, _) = positive(&mut fresh, &tenant, "decrypt", None, &pattern(32));
    neg.push(bad(
        "mode_byte_single_to_wrapped",
        "a 140-byte single message (32-byte plaintext), mode byte edited 1 -> 3, given to unwrap_data_key: the commitment refuses it",
        &tenant,
        "unwrap_data_key",
        with(&m32.ciphertext, |b| b[6] = 3),
        "decrypt",
    ));
    neg.push(bad(
        "wrapped_key_mode_edited_to_unwrap",
        "a wrapped key, mode byte edited 3 -> 1, given to unwrap_data_key: the header names another mode",
        &tenant,
        "unwrap_data_key",
        with(&wk.ciphertext, |b| b[6] = 1),
        "format",
    ));
    neg.push(bad(
        "wrapped_key_mode_edited",
        "mode byte 3 -> 1, given to decrypt",
        &tenant,
        "decrypt",
        with(&wk.ciphertext, |b| b[6] = 1),
        "decrypt",
    ));
    // Precedence (docs/format.md, section 8). The header is judged field by field as soon as
    // each field is present; then the mode, the key id, the commitment, and only then the body.
    let other = &plain; // holds another scope's key than `tenant`
    for (name, comment, bytes, expect) in [
        (
            "truncated_3_bytes_of_magic",
            "BYO",
            b"BYO".to_vec(),
            "format",
        ),
        (
            "truncated_5_bytes_version_2",
            "BYOK 02: the version is known to be unsupported before the input ends",
            b"BYOK\x02".to_vec(),
            "unsupported",
        ),
        (
            "truncated_6_bytes_version_2",
            "BYOK 02 01",
            b"BYOK\x02\x01".to_vec(),
            "unsupported",
        ),
        (
            "truncated_6_bytes_suite_2",
            "BYOK 01 02",
            b"BYOK\x01\x02".to_vec(),
            "unsupported",
        ),
        (
            "truncated_7_bytes_mode_4",
            "BYOK 01 01 04: the mode byte is judged before frame_log2 is missed",
            b"BYOK\x01\x01\x04".to_vec(),
            "unsupported",
        ),
        (
            "truncated_7_bytes_mode_1",
            "BYOK 01 01 01: nothing unsupported yet, so truncated",
            b"BYOK\x01\x01\x01".to_vec(),
            "format",
        ),
        (
            "truncated_91_bytes_version_2",
            "the version byte decides before the missing commitment byte",
            with_bytes(&ct[..91], |b| b[4] = 2),
            "unsupported",
        ),
        (
            "bad_magic_and_version_2",
            "magic first",
            with_bytes(&ct, |b| {
                b[0] = b'X';
                b[4] = 2;
            }),
            "format",
        ),
        (
            "version_2_and_frame_log2_7",
            "version before frame_log2",
            with_bytes(&ct, |b| {
                b[4] = 2;
                b[7] = 7;
            }),
            "unsupported",
        ),
        (
            "mode_4_and_frame_log2_7",
            "mode before frame_log2",
            with_bytes(&ct, |b| {
                b[6] = 4;
                b[7] = 7;
            }),
            "unsupported",
        ),
    ] {
        neg.push(bad(name, comment, c, d, Input::Bytes(bytes), expect));
    }
    for (name, comment, caller, operation, bytes, expect) in [
        (
            "suite_2_and_other_scope_key",
            "header before key id",
            other,
            d,
            with_bytes(&ct, |b| b[5] = 2),
            "unsupported",
        ),
        (
            "frame_log2_nonzero_and_other_scope_key",
            "header before key id",
            other,
            d,
            with_bytes(&ct, |b| b[7] = 16),
            "format",
        ),
        (
            "wrong_mode_and_other_scope_key",
            "a wrapped key given to decrypt by another scope's key: mode before key id",
            other,
            d,
            wk.ciphertext.clone(),
            "format",
        ),
        (
            "other_scope_key_and_body_shorter_than_tag",
            "header and 15 bytes, another scope's key: key id before body",
            other,
            d,
            ct[..92 + 15].to_vec(),
            "wrong_key",
        ),
        (
            "other_scope_key_and_commitment_flipped",
            "key id before commitment",
            other,
            d,
            with_bytes(&ct, |b| b[70] ^= 0x80),
            "wrong_key",
        ),
        (
            "commitment_flipped_and_body_shorter_than_tag",
            "header and 15 bytes, commitment flipped: commitment before body",
            c,
            d,
            with_bytes(&ct[..92 + 15], |b| b[70] ^= 0x80),
            "decrypt",
        ),
        (
            "header_only_other_scope_key",
            "92 bytes, another scope's key",
            other,
            d,
            ct[..92].to_vec(),
            "wrong_key",
        ),
        (
            "header_only",
            "92 bytes, the right key: the body has no tag",
            c,
            d,
            ct[..92].to_vec(),
            "format",
        ),
    ] {
        neg.push(bad(
            name,
            comment,
            caller,
            operation,
            Input::Bytes(bytes),
            expect,
        ));
    }
    neg.push(bad(
        "commitment_wrong_tag_valid",
        "commitment bit flipped and the GCM tag recomputed over the edited header with the caller's key: only the commitment check refuses it",
        c,
        d,
        Input::Bytes(valid_tag_wrong_commitment(
            &mut fresh,
            c,
            1,
            0,
            b"attack at dawn",
        )),
        "decrypt",
    ));
    // The caller's context is checked before the input: a repeated key is the caller's error.
    let dup = tenant.with_pairs(&[("tenant", "acme"), ("table", "notes"), ("tenant", "acme")]);
    neg.push(bad(
        "context_duplicate_key",
        "the caller gives key tenant twice (same value): refused, never merged",
        &dup,
        d,
        Input::Bytes(ct.clone()),
        "misuse",
    ));
    let dup2 = tenant.with_pairs(&[("tenant", "acme"), ("tenant", "other"), ("table", "notes")]);
    neg.push(bad(
        "context_duplicate_key_and_bad_input",
        "a repeated key with two values, and an input that is not a ciphertext: the context is checked first",
        &dup2,
        d,
        Input::Bytes(b"\x89PNG".to_vec()),
        "misuse",
    ));
    // No normalisation: sealed with a precomposed value, opened with the decomposed one.
    let nfc = tenant.with_pairs(&[("name", "Ren\u{e9}e")]);
    let nfd = tenant.with_pairs(&[("name", "Rene\u{301}e")]);
    let (sealed_nfc, _) = positive(&mut fresh, &nfc, "decrypt", None, b"normalisation");
    neg.push(bad(
        "context_value_nfd_for_nfc",
        "sealed with name = Ren U+00E9 e, opened with name = Rene U+0301 e: no normalisation",
        &nfd,
        d,
        Input::Bytes(sealed_nfc.ciphertext.clone()),
        "decrypt",
    ));
    write(
        dir,
        "negative",
        &format!(
            "Single-shot and armor failures, one defect each, with the error class expected. {SOURCE}"
        ),
        neg,
    );

    // ---- framed ---------------------------------------------------------------------------
    let mut framed = Vec::new();
    let mut three = None;
    let mut two_full = None;
    for len in [0usize, 1, 255, 256, 257, 511, 512, 513, 767, 768, 769] {
        let (p, drawn) = positive(&mut rng, &plain, "stream_decrypt", Some(8), &pattern(len));
        framed.push(ok_vector(
            &format!("f256_len_{len}"),
            "256-byte frames: boundaries -1, 0, +1",
            &p,
            &drawn,
        ));
        if len == 512 {
            two_full = Some(p.ciphertext.clone());
        }
        if len == 769 {
            three = Some(p);
        }
    }
    for len in [65535usize, 65536, 65537] {
        let (p, drawn) = positive(&mut rng, &tenant, "stream_decrypt", Some(16), &pattern(len));
        framed.push(ok_vector(
            &format!("f64k_len_{len}"),
            "default 64 KiB frames",
            &p,
            &drawn,
        ));
    }
    let (p, drawn) = positive(&mut rng, &large, "stream_decrypt", Some(10), &pattern(3000));
    framed.push(ok_vector(
        "f1k_large_context",
        "1 KiB frames, 4 KiB context",
        &p,
        &drawn,
    ));
    // Failures: a 769-byte message in 256-byte frames is frames of 256, 256, 256, 1 (+16 each).
    let three = three.unwrap();
    let ct = &three.ciphertext;
    let s = "stream_decrypt";
    let c = &plain;
    let fr = |i: usize| 92 + i * 272..92 + (i + 1) * 272;
    let frame = |i: usize| ct[fr(i)].to_vec();
    let rebuild = |frames: &[Vec<u8>], last: &[u8]| {
        let mut b = ct[..92].to_vec();
        for f in frames {
            b.extend_from_slice(f);
        }
        b.extend_from_slice(last);
        Input::Bytes(b)
    };
    let last = ct[92 + 3 * 272..].to_vec();
    framed.push(bad(
        "frames_swapped",
        "frames 0 and 1 exchanged",
        c,
        s,
        rebuild(&[frame(1), frame(0), frame(2)], &last),
        "decrypt",
    ));
    framed.push(bad(
        "frame_dropped",
        "frame 1 removed",
        c,
        s,
        rebuild(&[frame(0), frame(2)], &last),
        "decrypt",
    ));
    framed.push(bad(
        "frame_duplicated",
        "frame 1 twice",
        c,
        s,
        rebuild(&[frame(0), frame(1), frame(1), frame(2)], &last),
        "decrypt",
    ));
    framed.push(bad(
        "final_frame_dropped",
        "truncated at a frame boundary",
        c,
        s,
        rebuild(&[frame(0), frame(1), frame(2)], &[]),
        "decrypt",
    ));
    framed.push(bad(
        "truncated_inside_final_tag",
        "last byte removed: the 17-byte final frame becomes an empty one",
        c,
        s,
        with(ct, |b| {
            b.pop();
        }),
        "format",
    ));
    framed.push(bad(
        "truncated_inside_frame_2",
        "final frame and 5 bytes of frame 2 removed: frame 2's rest is read as the final frame",
        c,
        s,
        with(ct, |b| b.truncate(b.len() - 22)),
        "decrypt",
    ));
    framed.push(bad(
        "body_empty",
        "header only",
        c,
        s,
        Input::Bytes(ct[..92].to_vec()),
        "format",
    ));
    framed.push(bad(
        "body_shorter_than_tag",
        "header and 15 bytes",
        c,
        s,
        Input::Bytes(ct[..92 + 15].to_vec()),
        "format",
    ));
    framed.push(bad(
        "trailing_bytes",
        "16 zero bytes after the final frame",
        c,
        s,
        with(ct, |b| b.extend_from_slice(&[0; 16])),
        "decrypt",
    ));
    framed.push(bad(
        "frame_bit_flipped",
        "one bit in frame 2",
        c,
        s,
        with(ct, |b| b[92 + 2 * 272 + 5] ^= 4),
        "decrypt",
    ));
    framed.push(bad(
        "frame_log2_edited",
        "frame size 2^8 -> 2^9",
        c,
        s,
        with(ct, |b| b[7] = 9),
        "decrypt",
    ));
    framed.push(bad(
        "frame_log2_too_small",
        "2^7",
        c,
        s,
        with(ct, |b| b[7] = 7),
        "format",
    ));
    framed.push(bad(
        "frame_log2_too_large",
        "2^25",
        c,
        s,
        with(ct, |b| b[7] = 25),
        "format",
    ));
    // Splice: frame 1 from another message under the same key and context.
    let (other, _) = positive(&mut rng, &plain, "stream_decrypt", Some(8), &pattern(769));
    let foreign = other.ciphertext[fr(1)].to_vec();
    framed.push(bad(
        "frame_spliced_from_other_message",
        "frame 1 taken from another message, same key and context",
        c,
        s,
        rebuild(&[frame(0), foreign, frame(2)], &last),
        "decrypt",
    ));
    let mut ctx_other = plain.clone();
    ctx_other.context.insert("x".into(), "y".into());
    framed.push(bad(
        "stream_context_changed",
        "context differs",
        &ctx_other,
        s,
        Input::Bytes(ct.clone()),
        "decrypt",
    ));
    framed.push(bad(
        "stream_as_message",
        "a framed message given to decrypt",
        c,
        "decrypt",
        Input::Bytes(ct.clone()),
        "format",
    ));
    // Bytes after a stream that fills whole frames (docs/format.md, section 6): the last full
    // frame is then not the last, so it is opened as non-final and fails first.
    let two_full = two_full.unwrap();
    for n in [1usize, 15, 16] {
        framed.push(bad(
            &format!("appended_{n}_bytes_after_whole_frames"),
            "a 512-byte message in two full 256-byte frames, then n zero bytes: frame 1 (sealed final) is read as non-final",
            c,
            s,
            with(&two_full, |b| b.extend(std::iter::repeat_n(0, n))),
            "decrypt",
        ));
    }
    // A final frame shorter than a tag after full frames that open: malformed.
    for n in [1usize, 15] {
        framed.push(bad(
            &format!("final_frame_len_{n}_after_full_frames"),
            "frames 0..2 intact (non-final), then the first n bytes of the final frame",
            c,
            s,
            with(ct, |b| b.truncate(92 + 3 * 272 + n)),
            "format",
        ));
    }
    // The body is judged after the key id and the commitment, frame by frame.
    let mut other_key = plain.clone();
    other_key.scope[0] ^= 1;
    framed.push(bad(
        "header_only_other_scope_key",
        "92 bytes, another scope's key: key id before body",
        &other_key,
        s,
        Input::Bytes(ct[..92].to_vec()),
        "wrong_key",
    ));
    framed.push(bad(
        "header_only_commitment_flipped",
        "92 bytes, commitment flipped: commitment before body",
        c,
        s,
        with(&ct[..92], |b| b[70] ^= 0x80),
        "decrypt",
    ));
    framed.push(bad(
        "commitment_wrong_tag_valid",
        "300 bytes in 256-byte frames, commitment bit flipped and both frame tags recomputed over the edited header: only the commitment check refuses it",
        c,
        s,
        Input::Bytes(valid_tag_wrong_commitment(
            &mut fresh,
            c,
            2,
            8,
            &pattern(300),
        )),
        "decrypt",
    ));
    write(
        dir,
        "framed",
        &format!(
            "Framed messages (mode 2): frame boundaries, sizes, and frame-level attacks. {SOURCE}"
        ),
        framed,
    );

    // ---- data keys ------------------------------------------------------------------------
    let mut dk = Vec::new();
    for (name, caller) in [
        ("datakey_empty_context", &plain),
        ("datakey_context", &tenant),
        ("datakey_large_context", &large),
    ] {
        let (p, drawn) = positive(&mut rng, caller, "unwrap_data_key", None, &[]);
        dk.push(ok_vector(name, "plaintext is the data key", &p, &drawn));
    }
    let (p, _) = positive(&mut rng, &tenant, "unwrap_data_key", None, &[]);
    let w = &p.ciphertext;
    let u = "unwrap_data_key";
    dk.push(bad(
        "wrapped_truncated",
        "139 bytes",
        &tenant,
        u,
        with(w, |b| {
            b.pop();
        }),
        "format",
    ));
    dk.push(bad(
        "wrapped_extended",
        "141 bytes",
        &tenant,
        u,
        with(w, |b| b.push(0)),
        "format",
    ));
    dk.push(bad(
        "wrapped_bit_flipped",
        "one bit of the sealed key",
        &tenant,
        u,
        with(w, |b| b[100] ^= 1),
        "decrypt",
    ));
    dk.push(bad(
        "wrapped_other_scope_key",
        "the key of another scope",
        &plain,
        u,
        Input::Bytes(w.clone()),
        "wrong_key",
    ));
    let mut ctx_other = tenant.clone();
    ctx_other.context.insert("tenant".into(), "other".into());
    dk.push(bad(
        "wrapped_other_tenant",
        "context names another tenant",
        &ctx_other,
        u,
        Input::Bytes(w.clone()),
        "decrypt",
    ));
    // The length of a wrapped key is judged after the key id and the commitment.
    dk.push(bad(
        "wrapped_extended_other_scope_key",
        "141 bytes, another scope's key: key id before length",
        &plain,
        u,
        with(w, |b| b.push(0)),
        "wrong_key",
    ));
    dk.push(bad(
        "wrapped_truncated_commitment_flipped",
        "139 bytes, commitment flipped: commitment before length",
        &tenant,
        u,
        with(w, |b| {
            b.pop();
            b[70] ^= 0x80;
        }),
        "decrypt",
    ));
    let mut data_key = [0u8; 32];
    fresh.fill_bytes(&mut data_key);
    dk.push(bad(
        "commitment_wrong_tag_valid",
        "commitment bit flipped and the GCM tag recomputed over the edited header: only the commitment check refuses it",
        &tenant,
        u,
        Input::Bytes(valid_tag_wrong_commitment(
            &mut fresh,
            &tenant,
            3,
            0,
            &data_key,
        )),
        "decrypt",
    ));
    write(
        dir,
        "datakey",
        &format!("Wrapped data keys (mode 3). {SOURCE}"),
        dk,
    );

    // ---- armor ----------------------------------------------------------------------------
    // Positive vectors of every mode, read from the text armor (docs/format.md, section 7), and
    // the armor rules a reader must apply before the binary reader runs.
    let mut arm = Vec::new();
    let mut by_len = BTreeMap::new();
    for len in [0usize, 1, 2] {
        let (p, drawn) = positive(&mut fresh, &plain, "decrypt", None, &pattern(len));
        arm.push(ok_armor_vector(
            &format!("armor_single_len_{len}"),
            "ciphertext of 108 + len bytes: 0, 1 and 2 bytes past a multiple of 3, so the base64url ends in a full group, 2 or 3 characters",
            &p,
            &drawn,
        ));
        by_len.insert(len, p);
    }
    for (name, comment, caller, operation, frame_log2, plaintext) in [
        (
            "armor_single_context",
            "a context, as byok's API returns ciphertexts",
            &tenant,
            "decrypt",
            None,
            b"hello".to_vec(),
        ),
        (
            "armor_datakey",
            "a wrapped data key (140 bytes), as byok's API returns them",
            &tenant,
            "unwrap_data_key",
            None,
            vec![],
        ),
        (
            "armor_framed",
            "framed, 300 bytes in 256-byte frames: any mode may be armored",
            &plain,
            "stream_decrypt",
            Some(8),
            pattern(300),
        ),
    ] {
        let (p, drawn) = positive(&mut fresh, caller, operation, frame_log2, &plaintext);
        arm.push(ok_armor_vector(name, comment, &p, &drawn));
    }
    let one = &by_len[&1].ciphertext;
    let one_text = armor::encode(one);
    let c = &plain;
    let d = "decrypt";
    let b64 = |b: &[u8]| armor::encode(b)["byok:v1:".len()..].to_string();
    // The last character of a 109-byte ciphertext's armor carries 2 bits and 4 unused ones.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = alphabet.find(one_text.chars().last().unwrap()).unwrap();
    assert_eq!(last % 16, 0);
    let non_canonical = format!(
        "{}{}",
        &one_text[..one_text.len() - 1],
        &alphabet[last + 1..last + 2]
    );
    for (name, comment, text, expect) in [
        (
            "armor_padding_two",
            "the standard padded form of a 109-byte ciphertext: '=='",
            format!("{one_text}=="),
            "format",
        ),
        (
            "armor_non_canonical_last_char",
            "the last character's unused low bits are not zero (same bytes, another text)",
            non_canonical,
            "format",
        ),
        (
            "armor_label_v2_payload_v2",
            "byok:v2: and a version-2 header: the label is literal byok:v1:, so format, not unsupported",
            format!("byok:v2:{}", b64(&with_bytes(one, |b| b[4] = 2))),
            "format",
        ),
        (
            "armor_label_v01",
            "byok:v01: is not byok:v1:",
            format!("byok:v01:{}", b64(one)),
            "format",
        ),
        (
            "armor_label_uppercase_v",
            "byok:V1: is not byok:v1:",
            format!("byok:V1:{}", b64(one)),
            "format",
        ),
        (
            "armor_payload_5_bytes_version_2",
            "BYOK 02 under byok:v1:: the label/header mismatch is an armor error, checked before the header (binary BYOK 02 would be unsupported)",
            armor::encode(b"BYOK\x02"),
            "format",
        ),
        (
            "armor_suite_2",
            "label and version agree, so the binary reader runs and finds suite 2",
            armor::encode(&with_bytes(one, |b| b[5] = 2)),
            "unsupported",
        ),
        (
            "armor_payload_4_bytes",
            "BYOK only: too short for the version check, so the binary reader reports it truncated",
            armor::encode(b"BYOK"),
            "format",
        ),
        (
            "armor_empty_payload",
            "byok:v1: and nothing",
            "byok:v1:".to_string(),
            "format",
        ),
        (
            "armor_prefix_without_version",
            "byok: and base64url",
            format!("byok:{}", b64(one)),
            "format",
        ),
        (
            "armor_leading_bom",
            "U+FEFF before the prefix",
            format!("\u{feff}{one_text}"),
            "format",
        ),
    ] {
        arm.push(bad(name, comment, c, d, Input::Armor(text), expect));
    }
    let (wrapped, _) = positive(&mut fresh, c, "unwrap_data_key", None, &[]);
    arm.push(bad(
        "armor_wrapped_key_given_to_decrypt",
        "the armor decodes; the binary reader refuses the mode",
        c,
        d,
        Input::Armor(armor::encode(&wrapped.ciphertext)),
        "format",
    ));
    write(
        dir,
        "armor",
        &format!(
            "Text armor (section 7): positive vectors of every mode read from armor, and armor failures. {SOURCE}"
        ),
        arm,
    );
}

fn with_bytes(bytes: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = bytes.to_vec();
    f(&mut b);
    b
}

/// Seals as docs/format.md says, with the hkdf and aes-gcm crates directly rather than through
/// byok-core, after `edit` has had its way with the commitment. The GCM tags are computed over
/// the edited header, so they are valid: only a reader that checks the commitment refuses an
/// edited result.
fn seal_raw(
    c: &Caller,
    mode: u8,
    frame_log2: u8,
    salt: &[u8; 32],
    plaintext: &[u8],
    edit: impl FnOnce(&mut [u8; 32]),
) -> Vec<u8> {
    let mut info = vec![mode, frame_log2];
    info.extend_from_slice(&c.scope);
    info.extend_from_slice(&c.version.to_be_bytes());
    info.extend_from_slice(salt);
    let (key, mut commitment) = c.okm(&info);
    edit(&mut commitment);
    let mut out = b"BYOK\x01\x01".to_vec();
    out.extend_from_slice(&info);
    out.extend_from_slice(&commitment);
    let mut aad = out.clone();
    aad.extend_from_slice(c.ctx().encoded());
    let chunks: Vec<&[u8]> = if mode == 2 && !plaintext.is_empty() {
        plaintext.chunks(1 << frame_log2).collect()
    } else {
        vec![plaintext]
    };
    let aes = Aes256Gcm::new(&key.into());
    for (i, chunk) in chunks.iter().enumerate() {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        nonce[11] = u8::from(i + 1 == chunks.len());
        let mut buf = chunk.to_vec();
        let tag = aes
            .encrypt_inout_detached(&nonce.into(), &aad, (&mut buf[..]).into())
            .unwrap();
        out.extend_from_slice(&buf);
        out.extend_from_slice(&tag);
    }
    out
}

/// A ciphertext under `c` whose GCM tags are valid but whose commitment is wrong (one bit).
/// First checks that [`seal_raw`] without the edit gives byok-core's bytes for the same draws.
fn valid_tag_wrong_commitment(
    rng: &mut TestRng,
    c: &Caller,
    mode: u8,
    frame_log2: u8,
    plaintext: &[u8],
) -> Vec<u8> {
    let mut salt = [0u8; 32];
    rng.fill_bytes(&mut salt);
    let key = c.scope_key();
    let ctx = c.ctx();
    let replay = |first: &[u8]| ReplayRng::new([first, &salt[..]].concat());
    let honest = match mode {
        1 => Envelope::<RustCrypto>::encrypt(&key, &ctx, plaintext, &mut replay(&[])),
        2 => stream::encrypt_with::<RustCrypto>(
            &key,
            &ctx,
            FrameSize::from_log2(frame_log2).unwrap(),
            plaintext,
            &mut replay(&[]),
        ),
        3 => Envelope::<RustCrypto>::generate_data_key(&key, &ctx, &mut replay(plaintext))
            .map(|(_, wrapped)| wrapped),
        _ => unreachable!(),
    }
    .unwrap();
    assert_eq!(
        seal_raw(c, mode, frame_log2, &salt, plaintext, |_| {}),
        honest,
        "seal_raw agrees with byok-core"
    );
    seal_raw(c, mode, frame_log2, &salt, plaintext, |k| k[0] ^= 1)
}
