//! Criterion benchmarks of byok-core beside raw AES-256-GCM from the same libraries, so ratios
//! come from one run.
//!
//!     taskset -c 1 cargo bench -p byok-core --bench envelope
//!
//! Groups: `encrypt/<size>` and `decrypt/<size>` for 64 B, 1 KiB, 64 KiB, 1 MiB, each with
//! `byok-aws-lc`, `byok-rustcrypto`, `raw-aws-lc`, `raw-rustcrypto`; `stream-1GiB` encrypts a
//! 1 GiB framed stream through the in-place frame API with 64 KiB frames (one reused frame
//! buffer, as a reader-to-writer pipe does) and decrypts one in place in a 1 GiB buffer, each
//! beside raw aws-lc AES-256-GCM doing the same work on the same buffers.
//!
//! Small sizes use the allocating API (what a server does per request: a fresh `Vec` out);
//! 64 KiB and up use the in-place API, like the raw baselines. Randomness: `rand`'s `StdRng`
//! (ChaCha12), a real CSPRNG, as a host would use.

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use byok_core::crypto::backend::{AwsLc, RustCrypto};
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{AeadBackend, Context, Envelope, FrameSize, Header, KeyId, ScopeId, ScopeKey};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;

const SIZES: [usize; 4] = [64, 1024, 64 * 1024, 1024 * 1024];
const IN_PLACE_FROM: usize = 64 * 1024;

fn setup() -> (ScopeKey, Context, StdRng) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let key = ScopeKey::random(KeyId::new(ScopeId::random(&mut rng), 1), &mut rng);
    let ctx = Context::from_pairs([("tenant", "acme"), ("scope", "thread-42")]).unwrap();
    (key, ctx, rng)
}

fn byok_encrypt<B: AeadBackend>(c: &mut Criterion, name: &str) {
    let (key, ctx, mut rng) = setup();
    let mut g = c.benchmark_group("encrypt");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];
        g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
            if size >= IN_PLACE_FROM {
                b.iter(|| {
                    black_box(
                        Envelope::<B>::encrypt_detached(&key, &ctx, &mut buf, &mut rng).unwrap(),
                    )
                })
            } else {
                b.iter(|| black_box(Envelope::<B>::encrypt(&key, &ctx, &buf, &mut rng).unwrap()))
            }
        });
    }
}

fn byok_decrypt<B: AeadBackend>(c: &mut Criterion, name: &str) {
    let (key, ctx, mut rng) = setup();
    let mut g = c.benchmark_group("decrypt");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let ct = Envelope::<B>::encrypt(&key, &ctx, &vec![0x5au8; size], &mut rng).unwrap();
        g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
            if size >= IN_PLACE_FROM {
                b.iter_batched_ref(
                    || ct.clone(),
                    |buf| {
                        black_box(
                            Envelope::<B>::decrypt_in_place(&key, &ctx, buf)
                                .unwrap()
                                .len(),
                        )
                    },
                    BatchSize::LargeInput,
                )
            } else {
                b.iter(|| black_box(Envelope::<B>::decrypt(&key, &ctx, &ct).unwrap()))
            }
        });
    }
}

fn raw(c: &mut Criterion) {
    let key_bytes = [7u8; 32];
    let aws = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).unwrap());
    let rc = Aes256Gcm::new_from_slice(&key_bytes).unwrap();
    let nonce = [1u8; 12];
    let aad = [0u8; 92 + 40];
    for size in SIZES {
        let mut g = c.benchmark_group("encrypt");
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];
        g.bench_with_input(BenchmarkId::new("raw-aws-lc", size), &size, |b, _| {
            b.iter(|| {
                black_box(
                    aws.seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&aad),
                        &mut buf,
                    )
                    .unwrap(),
                )
            })
        });
        g.bench_with_input(BenchmarkId::new("raw-rustcrypto", size), &size, |b, _| {
            b.iter(|| {
                black_box(
                    rc.encrypt_inout_detached((&nonce).into(), &aad, (&mut buf[..]).into())
                        .unwrap(),
                )
            })
        });
        drop(g);
        let mut g = c.benchmark_group("decrypt");
        g.throughput(Throughput::Bytes(size as u64));
        let mut ct = vec![0x5au8; size];
        let tag = aws
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut ct,
            )
            .unwrap();
        let tag: [u8; 16] = tag.as_ref().try_into().unwrap();
        g.bench_with_input(BenchmarkId::new("raw-aws-lc", size), &size, |b, _| {
            b.iter_batched_ref(
                || ct.clone(),
                |buf| {
                    black_box(
                        aws.open_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from(&aad),
                            &tag,
                            buf,
                        )
                        .unwrap()
                        .len(),
                    )
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(BenchmarkId::new("raw-rustcrypto", size), &size, |b, _| {
            b.iter_batched_ref(
                || ct.clone(),
                |buf| {
                    rc.decrypt_inout_detached(
                        (&nonce).into(),
                        &aad,
                        (&mut buf[..]).into(),
                        (&tag).into(),
                    )
                    .unwrap();
                    black_box(buf.len())
                },
                BatchSize::LargeInput,
            )
        });
    }
}

/// 1 GiB through the in-place frame API, 64 KiB frames: the encryptor seals a reused frame
/// buffer 16384 times (constant memory); the decryptor opens a 1 GiB stream made beforehand.
fn stream_1gib(c: &mut Criterion) {
    const TOTAL: usize = 1 << 30;
    let (key, ctx, mut rng) = setup();
    let fs = FrameSize::DEFAULT;
    let frames = TOTAL / fs.bytes();
    let mut g = c.benchmark_group("stream-1GiB");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(TOTAL as u64));
    let mut frame = vec![0x5au8; fs.bytes()];
    g.bench_function("encrypt/byok-aws-lc", |b| {
        b.iter(|| {
            let mut enc = StreamEncryptor::<AwsLc>::new(&key, &ctx, fs, &mut rng).unwrap();
            for i in 0..frames {
                black_box(enc.seal_frame(&mut frame, i + 1 == frames).unwrap());
            }
        })
    });
    // Build the ciphertext once (1 GiB + tags) for the decrypt side.
    let mut enc = StreamEncryptor::<AwsLc>::new(&key, &ctx, fs, &mut rng).unwrap();
    let header_bytes = enc.header().to_vec();
    let mut ct = Vec::with_capacity(TOTAL + frames * 16);
    for i in 0..frames {
        let mut f = vec![0x5au8; fs.bytes()];
        let tag = enc.seal_frame(&mut f, i + 1 == frames).unwrap();
        ct.extend_from_slice(&f);
        ct.extend_from_slice(&tag);
    }
    let (header, _) = Header::parse(&header_bytes).unwrap();
    let unit = fs.bytes() + 16;
    // Both decrypt sides open 64 KiB frames in place in the same 1 GiB buffer (from DRAM, so
    // memory bandwidth is part of both figures); a fresh copy per sample is made untimed.
    g.bench_function("decrypt/byok-aws-lc", |b| {
        b.iter_batched_ref(
            || ct.clone(),
            |buf| {
                let mut dec = StreamDecryptor::<AwsLc>::new(&key, &ctx, &header).unwrap();
                for (i, f) in buf.chunks_mut(unit).enumerate() {
                    black_box(dec.open_frame(f, i + 1 == frames).unwrap());
                }
            },
            BatchSize::PerIteration,
        )
    });
    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let mut raw_ct = ct.clone();
    for (i, f) in raw_ct.chunks_mut(unit).enumerate() {
        let (body, tag) = f.split_at_mut(fs.bytes());
        let t = raw_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce_for(i)),
                Aad::from(&header_bytes),
                body,
            )
            .unwrap();
        tag.copy_from_slice(t.as_ref());
    }
    drop(ct);
    g.bench_function("decrypt/raw-aws-lc-64KiB-chunks", |b| {
        b.iter_batched_ref(
            || raw_ct.clone(),
            |buf| {
                for (i, f) in buf.chunks_mut(unit).enumerate() {
                    let (body, tag) = f.split_at_mut(fs.bytes());
                    let tag: &[u8] = tag;
                    black_box(
                        raw_key
                            .open_in_place_separate_tag(
                                Nonce::assume_unique_for_key(nonce_for(i)),
                                Aad::from(&header_bytes),
                                tag,
                                body,
                            )
                            .unwrap()
                            .len(),
                    );
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("encrypt/raw-aws-lc-64KiB-chunks", |b| {
        let aws = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
        b.iter(|| {
            for i in 0..frames {
                let mut n = [0u8; 12];
                n[4..].copy_from_slice(&(i as u64).to_be_bytes());
                let tag = aws
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(n),
                        Aad::from(&header_bytes),
                        &mut frame,
                    )
                    .unwrap();
                let _ = black_box(tag);
            }
        })
    });
}

fn nonce_for(i: usize) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&(i as u64).to_be_bytes());
    n
}

fn all(c: &mut Criterion) {
    raw(c);
    byok_encrypt::<AwsLc>(c, "byok-aws-lc");
    byok_decrypt::<AwsLc>(c, "byok-aws-lc");
    byok_encrypt::<RustCrypto>(c, "byok-rustcrypto");
    byok_decrypt::<RustCrypto>(c, "byok-rustcrypto");
    if std::env::var_os("BYOK_BENCH_SKIP_STREAM").is_none() {
        stream_1gib(c);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = all
}
criterion_main!(benches);
