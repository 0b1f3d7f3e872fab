//! Property tests: round trips for any input and any chunking, both backends give the same
//! bytes, any mutation fails, and one ciphertext never opens under two keys.

use byok_core::crypto::backend::{AwsLc, RustCrypto};
use byok_core::dev::{ReplayRng, TestRng, tamper_refusal_fits};
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{
    Context, Envelope, Error, FormatError, FrameSize, Header, KeyId, ScopeId, ScopeKey,
    SecretBytes, stream,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn key_from(bytes: [u8; 32], scope: [u8; 16], version: u32) -> ScopeKey {
    let mut b = bytes;
    ScopeKey::new(
        KeyId::new(ScopeId::from_bytes(scope), version),
        SecretBytes::from_bytes(&mut b),
    )
}

fn context() -> impl Strategy<Value = Context> {
    btree_map(".{0,12}", ".{0,40}", 0..6).prop_map(|m| Context::from_pairs(m).unwrap())
}

/// Splits `data` at the given (sorted, deduplicated) cut points.
fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for p in points {
        out.push(&data[prev..p]);
        prev = p;
    }
    out.push(&data[prev..]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn single_round_trip_and_backends_agree(
        k in any::<[u8; 32]>(), scope in any::<[u8; 16]>(), version in any::<u32>(),
        ctx in context(), plain in vec(any::<u8>(), 0..3000), salt in any::<[u8; 32]>(),
    ) {
        let key = key_from(k, scope, version);
        let a = Envelope::<RustCrypto>::encrypt(&key, &ctx, &plain, &mut ReplayRng::new(salt.to_vec())).unwrap();
        let b = Envelope::<AwsLc>::encrypt(&key, &ctx, &plain, &mut ReplayRng::new(salt.to_vec())).unwrap();
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.len(), plain.len() + byok_core::envelope::OVERHEAD);
        prop_assert_eq!(&Envelope::<AwsLc>::decrypt(&key, &ctx, &a).unwrap(), &plain);
        prop_assert_eq!(&Envelope::<RustCrypto>::decrypt(&key, &ctx, &b).unwrap(), &plain);
        let (h, _) = Header::parse(&a).unwrap();
        prop_assert_eq!(h.key, key.id());
        // The armor round-trips too.
        let text = byok_core::format::armor::encode(&a);
        prop_assert_eq!(byok_core::format::armor::decode(&text).unwrap(), a);
    }

    #[test]
    fn stream_any_chunking_round_trips(
        k in any::<[u8; 32]>(), log2 in 8u8..=11, ctx in context(),
        plain in vec(any::<u8>(), 0..9000), cuts in vec(any::<usize>(), 0..8),
        cuts2 in vec(any::<usize>(), 0..8), seed in any::<u64>(),
    ) {
        let key = key_from(k, [9; 16], 1);
        let fs = FrameSize::from_log2(log2).unwrap();
        let whole = stream::encrypt_with::<AwsLc>(&key, &ctx, fs, &plain, &mut TestRng::seeded(seed)).unwrap();
        prop_assert_eq!(whole.len() as u64, stream::ciphertext_len(plain.len() as u64, fs));
        // Same RNG, input fed in arbitrary pieces: same bytes.
        let mut enc = StreamEncryptor::<RustCrypto>::new(&key, &ctx, fs, &mut TestRng::seeded(seed)).unwrap();
        let mut pieced = enc.header().to_vec();
        for c in chunks(&plain, &cuts) {
            enc.update(c, &mut pieced).unwrap();
        }
        enc.finish(&mut pieced).unwrap();
        prop_assert_eq!(&pieced, &whole);
        // Decrypt fed in arbitrary pieces.
        let (header, body) = Header::parse(&whole).unwrap();
        let mut dec = StreamDecryptor::<RustCrypto>::new(&key, &ctx, &header).unwrap();
        let mut out = Vec::new();
        for c in chunks(body, &cuts2) {
            dec.update(c, &mut out).unwrap();
        }
        dec.finish(&mut out).unwrap();
        prop_assert_eq!(out, plain);
    }

    #[test]
    fn any_mutation_fails(
        k in any::<[u8; 32]>(), plain in vec(any::<u8>(), 0..600), framed in any::<bool>(),
        pos in any::<usize>(), xor in 1u8..=255, cut in any::<usize>(), insert in any::<u8>(),
    ) {
        let key = key_from(k, [1; 16], 1);
        let ctx = Context::from_pairs([("a", "b")]).unwrap();
        let mut rng = TestRng::seeded(5);
        let fs = FrameSize::from_log2(8).unwrap();
        let ct = if framed {
            stream::encrypt(&key, &ctx, fs, &plain, &mut rng).unwrap()
        } else {
            Envelope::<AwsLc>::encrypt(&key, &ctx, &plain, &mut rng).unwrap()
        };
        let open = |c: &[u8]| if framed { stream::decrypt(&key, &ctx, c) } else { byok_core::envelope::decrypt(&key, &ctx, c) };
        prop_assert_eq!(open(&ct), Ok(plain));
        // Flip some bits of one byte: refused by the check that reads it.
        let mut m = ct.clone();
        let i = pos % m.len();
        m[i] ^= xor;
        let e = open(&m).unwrap_err();
        prop_assert!(tamper_refusal_fits(i, &e), "byte {} ^ {}: {:?}", i, xor, e);
        // Truncate anywhere: a header cut short is truncated; a body cut short, truncated or
        // (cut at a frame's end, or inside a tag) unauthenticated; a framed body cut one tag
        // past full frames reads as an empty final frame, which the format refuses as such.
        let cut = cut % ct.len();
        let e = open(&ct[..cut]).unwrap_err();
        if cut < 92 {
            prop_assert!(matches!(e, Error::Format(FormatError::Truncated { .. })), "cut {}: {:?}", cut, e);
        } else {
            let empty_final = framed && e == Error::Format(FormatError::EmptyFinalFrame);
            prop_assert!(empty_final || matches!(e, Error::Decrypt | Error::Format(FormatError::Truncated { .. })), "cut {}: {:?}", cut, e);
        }
        // Insert a byte anywhere: refused as input, never as a misuse or a bug.
        let mut ins = ct.clone();
        ins.insert(pos % (ct.len() + 1), insert);
        let e = open(&ins).unwrap_err();
        prop_assert!(!matches!(e, Error::Misuse(_) | Error::Internal(_) | Error::Scope(_)), "{:?}", e);
    }

    /// Key commitment: a ciphertext made under one key never opens under another key with the
    /// same id, and the refusal is the opaque Decrypt error.
    #[test]
    fn no_ciphertext_opens_under_two_keys(
        k1 in any::<[u8; 32]>(), k2 in any::<[u8; 32]>(), plain in vec(any::<u8>(), 0..200),
    ) {
        prop_assume!(k1 != k2);
        let a = key_from(k1, [2; 16], 4);
        let b = key_from(k2, [2; 16], 4);
        let ctx = Context::new();
        let ct = Envelope::<AwsLc>::encrypt(&a, &ctx, &plain, &mut TestRng::seeded(6)).unwrap();
        prop_assert_eq!(Envelope::<AwsLc>::decrypt(&b, &ctx, &ct), Err(Error::Decrypt));
        let (_, w) = Envelope::<AwsLc>::generate_data_key(&a, &ctx, &mut TestRng::seeded(7)).unwrap();
        prop_assert_eq!(Envelope::<AwsLc>::unwrap_data_key(&b, &ctx, &w).unwrap_err(), Error::Decrypt);
    }

    /// Arbitrary bytes never panic any parser or decryptor.
    #[test]
    fn arbitrary_input_never_panics(bytes in vec(any::<u8>(), 0..400), text in ".{0,200}") {
        let key = key_from([0; 32], [0; 16], 0);
        let ctx = Context::new();
        let _ = Header::parse(&bytes);
        let _ = byok_core::envelope::decrypt(&key, &ctx, &bytes);
        let _ = stream::decrypt(&key, &ctx, &bytes);
        let _ = Envelope::<RustCrypto>::unwrap_data_key(&key, &ctx, &bytes);
        let _ = byok_core::format::armor::decode(&text);
        let mut prefixed = b"BYOK\x01\x01".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = byok_core::envelope::decrypt(&key, &ctx, &prefixed);
        let _ = stream::decrypt(&key, &ctx, &prefixed);
    }
}
