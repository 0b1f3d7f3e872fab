//! Stream framing. The input's first bytes choose a frame size and how to cut the rest into
//! `update` calls; the rest is a body placed after a *valid* header for a fixed key, so the
//! fuzzer gets past the commitment and exercises the frame splitter, the final-frame rules and
//! the error paths. Also: a round trip of the input as plaintext, fed in the same pieces.
#![no_main]
use byok_core::dev::TestRng;
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{Context, FrameSize, Header, KeyId, ScopeId, ScopeKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut, body)) = rest.split_first() else {
        return;
    };
    let log2 = 8 + sel % 3;
    let fs = FrameSize::from_log2(log2).unwrap();
    let piece = usize::from(cut).max(1) * 7;
    let mut rng = TestRng::seeded(1);
    let key = ScopeKey::random(KeyId::new(ScopeId::from_bytes([1; 16]), 1), &mut rng);
    let ctx = Context::new();

    // Arbitrary body after a valid header: must fail cleanly or (never, in practice) succeed.
    let enc = StreamEncryptor::<byok_core::DefaultBackend>::new(&key, &ctx, fs, &mut rng).unwrap();
    let (header, _) = Header::parse(enc.header()).unwrap();
    let mut dec = StreamDecryptor::<byok_core::DefaultBackend>::new(&key, &ctx, &header).unwrap();
    let mut out = Vec::new();
    let mut failed = false;
    for chunk in body.chunks(piece) {
        if dec.update(chunk, &mut out).is_err() {
            failed = true;
            break;
        }
    }
    if !failed {
        let _ = dec.finish(&mut out);
    }

    // Round trip of the body as plaintext, in the same pieces, both directions.
    let mut enc =
        StreamEncryptor::<byok_core::DefaultBackend>::new(&key, &ctx, fs, &mut rng).unwrap();
    let mut ct = enc.header().to_vec();
    for chunk in body.chunks(piece) {
        enc.update(chunk, &mut ct).unwrap();
    }
    enc.finish(&mut ct).unwrap();
    let (header, ct_body) = Header::parse(&ct).unwrap();
    let mut dec = StreamDecryptor::<byok_core::DefaultBackend>::new(&key, &ctx, &header).unwrap();
    let mut plain = Vec::new();
    for chunk in ct_body.chunks(piece + 3) {
        dec.update(chunk, &mut plain).unwrap();
    }
    dec.finish(&mut plain).unwrap();
    assert_eq!(plain, body);
});
