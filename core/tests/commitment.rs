//! Key commitment, tested against a real attack.
//!
//! AES-GCM alone is not key-committing: for two keys one can solve a linear equation over
//! GF(2^128) and get one ciphertext with one tag that authenticates under both ("invisible
//! salamanders", Dodis et al. 2018; Len, Grubbs, Ristenpart 2021). byok's header commitment
//! is there to refuse exactly that. Flipping bits cannot show it works (the commitment is also
//! in the AAD, so GCM alone catches flips); this test builds a true two-key GCM ciphertext,
//! shows plain AES-GCM accepts it under both message keys, and that byok refuses the second.

use aes_gcm::aes::Aes256;
use aes_gcm::aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_gcm::{AeadInOut, Aes256Gcm};
use byok_core::format::header::{HEADER_LEN, KDF_INFO};
use byok_core::{Context, Envelope, Error, Header, KeyId, ScopeId, ScopeKey, SecretBytes};
use hkdf::Hkdf;
use sha2::Sha256;

/// Multiplication in GCM's GF(2^128) (NIST SP 800-38D, algorithm 1), blocks as big-endian u128.
fn gf_mul(x: u128, y: u128) -> u128 {
    let r: u128 = 0xE1 << 120;
    let (mut z, mut v) = (0u128, y);
    for i in 0..128 {
        if (x >> (127 - i)) & 1 == 1 {
            z ^= v;
        }
        v = if v & 1 == 1 { (v >> 1) ^ r } else { v >> 1 };
    }
    z
}

fn gf_pow(mut x: u128, mut e: u128) -> u128 {
    let mut acc = 1u128 << 127; // the field's one, in GCM's bit order
    while e > 0 {
        if e & 1 == 1 {
            acc = gf_mul(acc, x);
        }
        x = gf_mul(x, x);
        e >>= 1;
    }
    acc
}

fn gf_inv(x: u128) -> u128 {
    gf_pow(x, u128::MAX - 1) // x^(2^128 - 2)
}

fn block(bytes: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b[..bytes.len()].copy_from_slice(bytes);
    u128::from_be_bytes(b)
}

fn ghash(h: u128, aad: &[u8], ct: &[u8]) -> u128 {
    let mut y = 0u128;
    for chunk in aad.chunks(16).chain(ct.chunks(16)) {
        y = gf_mul(y ^ block(chunk), h);
    }
    let lens = ((aad.len() as u128 * 8) << 64) | (ct.len() as u128 * 8);
    gf_mul(y ^ lens, h)
}

fn aes_block(key: &[u8; 32], input: u128) -> u128 {
    let aes = Aes256::new(key.into());
    let mut b = input.to_be_bytes().into();
    aes.encrypt_block(&mut b);
    u128::from_be_bytes(b.into())
}

/// The spec's message key for scope key `k` and header prefix `info`.
fn message_key(k: &[u8; 32], info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 64];
    Hkdf::<Sha256>::new(Some(b"byok/v1/suite1/scope-key"), k)
        .expand(info, &mut okm)
        .unwrap();
    okm[..32].try_into().unwrap()
}

#[test]
fn a_two_key_gcm_ciphertext_is_refused_by_the_commitment() {
    let id = KeyId::new(ScopeId::from_bytes([5; 16]), 2);
    let (k1, k2) = ([0x11u8; 32], [0x22u8; 32]);
    let scope_key = |k: [u8; 32]| {
        let mut b = k;
        ScopeKey::new(id, SecretBytes::from_bytes(&mut b))
    };
    let ctx = Context::from_pairs([("tenant", "acme")]).unwrap();

    // A genuine header under k1 (its commitment is k1's), with an empty body we replace.
    let mut rng = byok_core::dev::TestRng::seeded(8);
    let template =
        Envelope::<aes_gcm_backend::B>::encrypt(&scope_key(k1), &ctx, &[], &mut rng).unwrap();
    let header: [u8; HEADER_LEN] = template[..HEADER_LEN].try_into().unwrap();
    let (m1, m2) = (
        message_key(&k1, &header[KDF_INFO]),
        message_key(&k2, &header[KDF_INFO]),
    );
    let mut aad = header.to_vec();
    aad.extend_from_slice(ctx.encoded());
    let nonce = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let j0 = (block(&nonce) & !0xffff_ffff) | 1;

    // Two ciphertext blocks; solve for the first so both tags agree.
    let (h1, h2) = (aes_block(&m1, 0), aes_block(&m2, 0));
    let (e1, e2) = (aes_block(&m1, j0), aes_block(&m2, j0));
    let mut ct = [0u8; 32];
    let (g1, g2) = (ghash(h1, &aad, &ct), ghash(h2, &aad, &ct));
    let m = aad.len().div_ceil(16) as u128 + 2 + 1; // AAD blocks, two ciphertext blocks, lengths
    let p = m - (aad.len().div_ceil(16) as u128 + 1) + 1; // exponent of H for ciphertext block 1
    let x = gf_mul(g1 ^ g2 ^ e1 ^ e2, gf_inv(gf_pow(h1, p) ^ gf_pow(h2, p)));
    ct[..16].copy_from_slice(&x.to_be_bytes());
    let tag = (ghash(h1, &aad, &ct) ^ e1).to_be_bytes();
    assert_eq!(
        ghash(h2, &aad, &ct) ^ e2,
        u128::from_be_bytes(tag),
        "tags agree under both keys"
    );

    // Plain AES-GCM accepts it under both message keys: a real salamander.
    for m in [m1, m2] {
        let mut buf = ct;
        Aes256Gcm::new(&m.into())
            .decrypt_inout_detached(&nonce.into(), &aad, (&mut buf[..]).into(), &tag.into())
            .expect("GCM alone accepts the two-key ciphertext");
    }

    let mut message = header.to_vec();
    message.extend_from_slice(&ct);
    message.extend_from_slice(&tag);
    let (parsed, _) = Header::parse(&message).unwrap();
    assert_eq!(parsed.key, id);
    // byok opens it under k1, whose commitment the header carries...
    assert!(Envelope::<aes_gcm_backend::B>::decrypt(&scope_key(k1), &ctx, &message).is_ok());
    assert!(
        Envelope::<byok_core::crypto::backend::AwsLc>::decrypt(&scope_key(k1), &ctx, &message)
            .is_ok()
    );
    // ...and refuses it under k2, on both backends: only the commitment stands in the way.
    assert_eq!(
        Envelope::<aes_gcm_backend::B>::decrypt(&scope_key(k2), &ctx, &message),
        Err(Error::Decrypt)
    );
    assert_eq!(
        Envelope::<byok_core::crypto::backend::AwsLc>::decrypt(&scope_key(k2), &ctx, &message),
        Err(Error::Decrypt)
    );
}

mod aes_gcm_backend {
    pub(crate) type B = byok_core::crypto::backend::RustCrypto;
}
