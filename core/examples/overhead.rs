//! Splits the per-message overhead of sealing into its parts (derivation, AES key setup, RNG,
//! allocation), to see where the time goes:
//!
//!     taskset -c 1 cargo run --release -p byok-core --features dev,aws-lc --example overhead

use std::hint::black_box;
use std::time::Instant;

use byok_core::crypto::backend::{AwsLc, RustCrypto};
use byok_core::{AeadBackend, Context, Envelope, KeyId, ScopeId, ScopeKey};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::Rng;

fn time(name: &str, n: u32, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    println!(
        "{name:<40} {:>8.1} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}

fn main() {
    let n = 2_000_000;
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = ScopeKey::random(KeyId::new(ScopeId::random(&mut rng), 1), &mut rng);
    let ctx = Context::from_pairs([("tenant", "acme"), ("scope", "thread-42")]).unwrap();
    let pt = vec![0u8; 1024];
    time("rng: 32 bytes (StdRng)", n, || {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        black_box(b);
    });
    time("aws-lc: expand AES-256-GCM key", n, || {
        black_box(AwsLc::key(black_box(&[7u8; 32])).unwrap());
    });
    time("rustcrypto: expand AES-256-GCM key", n, || {
        black_box(RustCrypto::key(black_box(&[7u8; 32])).unwrap());
    });
    time("vec: alloc 1132 + copy 1024", n, || {
        let mut v = Vec::with_capacity(1132);
        v.resize(92, 0);
        v.extend_from_slice(&pt);
        black_box(v);
    });
    let ct = Envelope::<AwsLc>::encrypt(&key, &ctx, &pt, &mut rng).unwrap();
    time("byok-aws-lc encrypt 1 KiB (total)", n, || {
        black_box(Envelope::<AwsLc>::encrypt(&key, &ctx, &pt, &mut rng).unwrap());
    });
    time("byok-aws-lc decrypt 1 KiB (total)", n, || {
        black_box(Envelope::<AwsLc>::decrypt(&key, &ctx, &ct).unwrap());
    });
    time("header parse", n, || {
        black_box(byok_core::Header::parse(black_box(&ct)).unwrap());
    });
}
