//! Writes `vectors/*.json`: `cargo run -p byok-core --example gen_vectors --features dev -- vectors`.
//!
//! Run it only when the format changes on purpose; the committed files are the known answers,
//! checked by the native tests (both backends), the wasm tests, and independently of this code
//! by `tools/verify_vectors.py` (Python `cryptography`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;

use byok_core::crypto::backend::RustCrypto;
use byok_core::dev::{TestRng, pattern};
use byok_core::format::armor;
use byok_core::{Context, Envelope, FrameSize, KeyId, ScopeId, ScopeKey, SecretBytes, stream};
use rand_core::{Rng, TryCryptoRng, TryRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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
        Context::from_pairs(self.context.clone()).unwrap()
    }
    fn fields(&self) -> Value {
        json!({
            "key": hex::encode(self.key),
            "scope_id": hex::encode(self.scope),
            "key_version": self.version,
            "context": self.context,
        })
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
    let mut v = p.caller.fields();
    let o = v.as_object_mut().unwrap();
    o.insert("name".into(), json!(name));
    o.insert("comment".into(), json!(comment));
    o.insert("operation".into(), json!(p.operation));
    o.insert("ciphertext".into(), json!(hex::encode(&p.ciphertext)));
    o.insert("rng".into(), json!(hex::encode(rng_bytes)));
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
    neg.push(bad(
        "armor_padding",
        "'=' padding",
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
    neg.push(bad(
        "mode_byte_single_to_wrapped",
        "mode byte edited 1 -> 3 with a 48-byte body",
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
    for len in [0usize, 1, 255, 256, 257, 511, 512, 513, 767, 768, 769] {
        let (p, drawn) = positive(&mut rng, &plain, "stream_decrypt", Some(8), &pattern(len));
        framed.push(ok_vector(
            &format!("f256_len_{len}"),
            "256-byte frames: boundaries -1, 0, +1",
            &p,
            &drawn,
        ));
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
    write(
        dir,
        "datakey",
        &format!("Wrapped data keys (mode 3). {SOURCE}"),
        dk,
    );
}

fn with_bytes(bytes: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = bytes.to_vec();
    f(&mut b);
    b
}
