//! Every single-bit flip of a ciphertext, at every byte position, must fail to decrypt, with a
//! typed error and no panic, on both backends and in every mode. Failed in-place decryption
//! leaves no plaintext behind.

use byok_core::crypto::backend::{AwsLc, RustCrypto};
use byok_core::dev::{TestRng, pattern, tamper_refusal_fits};
use byok_core::{
    AeadBackend, Context, Envelope, Error, FrameSize, KeyId, ScopeId, ScopeKey, stream,
};

fn key(rng: &mut TestRng) -> ScopeKey {
    ScopeKey::random(KeyId::new(ScopeId::random(rng), 3), rng)
}

fn ctx() -> Context {
    Context::from_pairs([("tenant", "acme"), ("row", "42")]).unwrap()
}

/// Opens `ct` to `plain`, then flips each bit of `ct` in turn and asserts that `open` refuses
/// every variant with the refusal that names what was changed.
fn every_bit_flip_fails(ct: &[u8], plain: &[u8], open: impl Fn(&[u8]) -> Result<Vec<u8>, Error>) {
    assert_eq!(
        open(ct).as_deref(),
        Ok(plain),
        "the unmodified ciphertext must open"
    );
    let mut buf = ct.to_vec();
    for i in 0..ct.len() {
        for bit in 0..8 {
            buf[i] ^= 1 << bit;
            match open(&buf) {
                Ok(_) => panic!("flip of byte {i} bit {bit} was accepted"),
                Err(e) => assert!(
                    tamper_refusal_fits(i, &e),
                    "flip of byte {i} bit {bit}: {e:?}"
                ),
            }
            buf[i] ^= 1 << bit;
        }
    }
}

fn single<B: AeadBackend>() {
    let mut rng = TestRng::seeded(1);
    let k = key(&mut rng);
    for len in [0usize, 1, 100] {
        let ct = Envelope::<B>::encrypt(&k, &ctx(), &pattern(len), &mut rng).unwrap();
        every_bit_flip_fails(&ct, &pattern(len), |c| {
            Envelope::<B>::decrypt(&k, &ctx(), c)
        });
    }
}

fn framed<B: AeadBackend>() {
    let mut rng = TestRng::seeded(2);
    let k = key(&mut rng);
    let fs = FrameSize::from_log2(8).unwrap();
    // 0 bytes (one empty frame), exactly two frames, and four frames with a short last one.
    for len in [0usize, 512, 769] {
        let ct = stream::encrypt_with::<B>(&k, &ctx(), fs, &pattern(len), &mut rng).unwrap();
        every_bit_flip_fails(&ct, &pattern(len), |c| {
            stream::decrypt_with::<B>(&k, &ctx(), c)
        });
    }
}

fn wrapped<B: AeadBackend>() {
    let mut rng = TestRng::seeded(3);
    let k = key(&mut rng);
    let (data_key, wrapped) = Envelope::<B>::generate_data_key(&k, &ctx(), &mut rng).unwrap();
    every_bit_flip_fails(&wrapped, data_key.expose_secret(), |c| {
        Envelope::<B>::unwrap_data_key(&k, &ctx(), c).map(|d| d.expose_secret().to_vec())
    });
}

#[test]
fn single_rustcrypto() {
    single::<RustCrypto>();
}
#[test]
fn single_aws_lc() {
    single::<AwsLc>();
}
#[test]
fn framed_rustcrypto() {
    framed::<RustCrypto>();
}
#[test]
fn framed_aws_lc() {
    framed::<AwsLc>();
}
#[test]
fn wrapped_rustcrypto() {
    wrapped::<RustCrypto>();
}
#[test]
fn wrapped_aws_lc() {
    wrapped::<AwsLc>();
}

/// A failed in-place decryption zeroes the body: no unauthenticated plaintext is left for a
/// caller that ignores the error. (aws-lc decrypts before it compares the tag.)
fn no_plaintext_after_failure<B: AeadBackend>() {
    let mut rng = TestRng::seeded(4);
    let k = key(&mut rng);
    let plain = vec![0x41u8; 4096];
    let mut ct = Envelope::<B>::encrypt(&k, &ctx(), &plain, &mut rng).unwrap();
    let last = ct.len() - 1;
    ct[last] ^= 1; // tag
    let err = Envelope::<B>::decrypt_in_place(&k, &ctx(), &mut ct).unwrap_err();
    assert_eq!(err, Error::Decrypt);
    assert!(
        ct[92..ct.len() - 16].iter().all(|&b| b == 0),
        "body not wiped after failure"
    );

    // Streams: a frame that fails adds nothing to the output.
    let fs = FrameSize::from_log2(8).unwrap();
    let mut ct = stream::encrypt_with::<B>(&k, &ctx(), fs, &plain, &mut rng).unwrap();
    let pos = 92 + 3 * 272 + 10; // inside frame 3
    ct[pos] ^= 1;
    let (header, body) = byok_core::Header::parse(&ct).unwrap();
    let mut dec = stream::StreamDecryptor::<B>::new(&k, &ctx(), &header).unwrap();
    let mut out = Vec::new();
    assert_eq!(dec.update(body, &mut out).unwrap_err(), Error::Decrypt);
    assert_eq!(
        out.len(),
        3 * 256,
        "only the three authenticated frames were released"
    );
    assert!(out.iter().all(|&b| b == 0x41));
    // And the stream is closed.
    assert!(matches!(dec.update(&[0], &mut out), Err(Error::Misuse(_))));
}

#[test]
fn no_plaintext_after_failure_rustcrypto() {
    no_plaintext_after_failure::<RustCrypto>();
}
#[test]
fn no_plaintext_after_failure_aws_lc() {
    no_plaintext_after_failure::<AwsLc>();
}
