//! `byok-compare`: byok's envelope encryption against raw AES-256-GCM (aws-lc-rs, RustCrypto
//! aes-gcm) and the AWS Encryption SDK for Rust, in one process.
//!
//! Prints one JSON object per line:
//! `{"tool":..,"variant":..,"op":"encrypt|decrypt","size":..,"ops_per_s":..,"mb_per_s":..,
//!   "min_ops_per_s":..,"max_ops_per_s":..,"rounds":..}`
//! (MB = 10^6 bytes of plaintext). Run it pinned to one core (`taskset -c 1`), as
//! `scripts/bench-compare.sh` does.
//!
//! Timing: the cells of one size (every tool, both ops) form a group. Each cell warms up (at
//! least `BENCH_WARMUP` s, default 0.3) and sizes its batch to about 10 ms. Then the group runs
//! `BENCH_ROUNDS` rounds (default 5), each giving every cell in turn `BENCH_SECONDS / rounds` of
//! wall time (default 2 s in all per cell) after one untimed batch; a cell's rate in a round is
//! ops / time inside its batches, and `ops_per_s` is the median over rounds. Interleaving the
//! tools this way means a slow spell of the machine (a shared VM, another build) hits them all
//! alike, so the ratios stay meaningful. In-place decryption needs the ciphertext back after
//! each op: it works through a pool of copies and refills the pool outside the timed part.
//! Every tool's decryption is checked against the plaintext before its cells run.
//!
//! Usage: `byok-compare [--seconds S] [--rounds R] [--sizes 64,1024,...] [--only SUBSTRING]`

use std::collections::HashMap;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use byok_core::crypto::backend::{AwsLc, RustCrypto};
use byok_core::{AeadBackend, Context, Envelope, KeyId, ScopeId, ScopeKey};

const DEFAULT_SIZES: [usize; 4] = [64, 1024, 64 * 1024, 1024 * 1024];
/// In-place decryption keeps about this many bytes of ciphertext copies (at most 256 copies).
const POOL_BYTES: usize = 256 * 1024;
const CTX: (&str, &str) = ("tenant", "acme");
const ESDK_VARIANT: &str = "raw AES keyring, commit-key no-sig, current_thread block_on per batch";

type BoxError = Box<dyn std::error::Error>;
type Run = Box<dyn FnMut(u64) -> Duration>;

struct Config {
    seconds: f64,
    warmup: f64,
    rounds: u32,
    sizes: Vec<usize>,
    only: Option<String>,
}

impl Config {
    fn from_env_and_args() -> Result<Self, BoxError> {
        fn env<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BoxError>
        where
            T::Err: std::error::Error + 'static,
        {
            match std::env::var(name) {
                Ok(v) => Ok(v.parse()?),
                Err(_) => Ok(default),
            }
        }
        let mut cfg = Config {
            seconds: env("BENCH_SECONDS", 2.0)?,
            warmup: env("BENCH_WARMUP", 0.3)?,
            rounds: env("BENCH_ROUNDS", 5)?,
            sizes: DEFAULT_SIZES.to_vec(),
            only: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
            match a.as_str() {
                "--seconds" => cfg.seconds = value()?.parse()?,
                "--rounds" => cfg.rounds = value()?.parse()?,
                "--sizes" => {
                    cfg.sizes = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--only" => cfg.only = Some(value()?),
                "-h" | "--help" => {
                    eprintln!(
                        "byok-compare [--seconds S] [--rounds R] [--sizes 64,1024,...] [--only SUBSTRING]"
                    );
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        cfg.rounds = cfg.rounds.max(1);
        Ok(cfg)
    }

    fn wants(&self, tool: &str, variant: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|s| format!("{tool} {variant}").contains(s))
    }
}

/// One measured cell. `run(n)` performs `n` operations and returns the time they took
/// (excluding any untimed setup it does between them).
struct Cell {
    tool: &'static str,
    variant: String,
    op: &'static str,
    size: usize,
    run: Run,
}

/// The cells of one group, built by the `*_cells` functions.
struct Group<'a> {
    cfg: &'a Config,
    cells: Vec<Cell>,
}

impl Group<'_> {
    fn add(
        &mut self,
        tool: &'static str,
        variant: &str,
        op: &'static str,
        size: usize,
        run: impl FnMut(u64) -> Duration + 'static,
    ) {
        if self.cfg.wants(tool, variant) {
            self.cells.push(Cell {
                tool,
                variant: variant.to_string(),
                op,
                size,
                run: Box::new(run),
            });
        }
    }

    /// Warms up and calibrates every cell, runs the interleaved rounds, prints the results.
    fn run(mut self) {
        let cfg = self.cfg;
        let target = Duration::from_millis(10);
        let batches: Vec<u64> = self
            .cells
            .iter_mut()
            .map(|c| {
                let warm_start = Instant::now();
                let mut n = 1u64;
                loop {
                    let d = (c.run)(n);
                    if d < target {
                        n = n.saturating_mul(2);
                    } else if warm_start.elapsed().as_secs_f64() >= cfg.warmup {
                        break n;
                    }
                }
            })
            .collect();
        let slice = cfg.seconds / f64::from(cfg.rounds);
        let mut rates = vec![Vec::new(); self.cells.len()];
        for _ in 0..cfg.rounds {
            for ((c, &n), r) in self.cells.iter_mut().zip(&batches).zip(&mut rates) {
                (c.run)(n); // settle caches after the previous cell; not counted
                let start = Instant::now();
                let (mut ops, mut timed) = (0u64, Duration::ZERO);
                while start.elapsed().as_secs_f64() < slice || ops == 0 {
                    timed += (c.run)(n);
                    ops += n;
                }
                r.push(ops as f64 / timed.as_secs_f64());
            }
        }
        for (c, mut r) in self.cells.into_iter().zip(rates) {
            r.sort_by(f64::total_cmp);
            let median = if r.len() % 2 == 1 {
                r[r.len() / 2]
            } else {
                (r[r.len() / 2 - 1] + r[r.len() / 2]) / 2.0
            };
            let mb_per_s = median * c.size as f64 / 1e6;
            println!(
                "{{\"tool\":\"{}\",\"variant\":\"{}\",\"op\":\"{}\",\"size\":{},\
                 \"ops_per_s\":{median:.1},\"mb_per_s\":{mb_per_s:.2},\
                 \"min_ops_per_s\":{:.1},\"max_ops_per_s\":{:.1},\"rounds\":{}}}",
                c.tool,
                c.variant,
                c.op,
                c.size,
                r[0],
                r[r.len() - 1],
                r.len()
            );
        }
    }
}

/// Times `n` calls of `op` as one block.
fn timed(n: u64, mut op: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        op();
    }
    t.elapsed()
}

/// Copies of one ciphertext for in-place decryption: each op consumes one; refilling the pool
/// is not timed.
struct Pool {
    template: Vec<u8>,
    bufs: Vec<Vec<u8>>,
    next: usize,
}

impl Pool {
    fn new(template: Vec<u8>) -> Self {
        let count = (POOL_BYTES / template.len().max(1)).clamp(1, 256);
        Pool {
            bufs: vec![template.clone(); count],
            template,
            next: 0,
        }
    }

    /// Runs `op` on `n` fresh copies, timing only the ops.
    fn run(&mut self, n: u64, mut op: impl FnMut(&mut [u8])) -> Duration {
        let mut left = n as usize;
        let mut total = Duration::ZERO;
        while left > 0 {
            if self.next == self.bufs.len() {
                for b in &mut self.bufs {
                    b.copy_from_slice(&self.template);
                }
                self.next = 0;
            }
            let k = left.min(self.bufs.len() - self.next);
            let t = Instant::now();
            for b in &mut self.bufs[self.next..self.next + k] {
                op(b.as_mut_slice());
            }
            total += t.elapsed();
            self.next += k;
            left -= k;
        }
        total
    }
}

fn plaintext(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 + 7) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// byok

fn byok_cells<B: AeadBackend + 'static>(
    g: &mut Group<'_>,
    backend: &str,
    size: usize,
) -> Result<(), BoxError> {
    let tool = "byok";
    let mut rng = rand::rng();
    let key = Rc::new(ScopeKey::random(
        KeyId::new(ScopeId::random(&mut rng), 1),
        &mut rng,
    ));
    let ctx = Rc::new(Context::from_pairs([CTX]).map_err(byok_core::Error::from)?);
    let alloc = format!("{backend} alloc");
    let inplace = format!("{backend} in-place");
    let pt = Rc::new(plaintext(size));

    // Allocating API: what a server does per request.
    let ct = Rc::new(Envelope::<B>::encrypt(&key, &ctx, &pt, &mut rng)?);
    assert_eq!(
        Envelope::<B>::decrypt(&key, &ctx, &ct)?,
        *pt,
        "byok {alloc} round trip"
    );
    {
        let (key, ctx, pt, mut rng) = (key.clone(), ctx.clone(), pt.clone(), rand::rng());
        g.add(tool, &alloc, "encrypt", size, move |n| {
            timed(n, || {
                let ct = Envelope::<B>::encrypt(&key, &ctx, black_box(&pt), &mut rng).unwrap();
                black_box(ct);
            })
        });
    }
    {
        let (key, ctx, ct) = (key.clone(), ctx.clone(), ct.clone());
        g.add(tool, &alloc, "decrypt", size, move |n| {
            timed(n, || {
                black_box(Envelope::<B>::decrypt(&key, &ctx, black_box(&ct)).unwrap());
            })
        });
    }

    // In place: the caller's buffer, no allocation.
    let mut buf = pt.to_vec();
    let d = Envelope::<B>::encrypt_detached(&key, &ctx, &mut buf, &mut rng)?;
    let whole = [&d.header[..], &buf, &d.tag].concat();
    assert_eq!(whole.len(), ct.len());
    let mut check = whole.clone();
    assert_eq!(
        Envelope::<B>::decrypt_in_place(&key, &ctx, &mut check)?,
        &pt[..],
        "byok {inplace} round trip"
    );
    {
        let (key, ctx, mut buf, mut rng) = (key.clone(), ctx.clone(), pt.to_vec(), rand::rng());
        g.add(tool, &inplace, "encrypt", size, move |n| {
            timed(n, || {
                let d = Envelope::<B>::encrypt_detached(&key, &ctx, black_box(&mut buf), &mut rng)
                    .unwrap();
                black_box(d);
            })
        });
    }
    let mut pool = Pool::new(whole);
    g.add(tool, &inplace, "decrypt", size, move |n| {
        pool.run(n, |b| {
            black_box(Envelope::<B>::decrypt_in_place(&key, &ctx, b).unwrap());
        })
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Raw AES-256-GCM: fixed key, counter nonce, empty AAD, in place. The ceiling.

fn counter_nonce(c: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&c.to_be_bytes());
    n
}

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut k);
    k
}

fn raw_aws_lc_cells(g: &mut Group<'_>, size: usize) -> Result<(), BoxError> {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let (tool, variant) = ("aws-lc-rs", "raw AES-256-GCM in-place");
    let key = Rc::new(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &random_key()).map_err(|e| format!("aws-lc key: {e}"))?,
    ));
    let pt = plaintext(size);
    let mut buf = pt.clone();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(counter_nonce(0)),
            Aad::empty(),
            &mut buf,
        )
        .map_err(|e| format!("aws-lc seal: {e}"))?;
    buf.extend_from_slice(tag.as_ref());
    let mut check = buf.clone();
    let opened = key
        .open_in_place(
            Nonce::assume_unique_for_key(counter_nonce(0)),
            Aad::empty(),
            &mut check,
        )
        .map_err(|e| format!("aws-lc open: {e}"))?;
    assert_eq!(opened, &pt[..], "aws-lc-rs round trip");

    {
        let (key, mut work, mut counter) = (key.clone(), pt, 1u64);
        g.add(tool, variant, "encrypt", size, move |n| {
            timed(n, || {
                counter += 1;
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(counter_nonce(counter)),
                        Aad::empty(),
                        black_box(&mut work),
                    )
                    .unwrap();
                let _ = black_box(tag);
            })
        });
    }
    let mut pool = Pool::new(buf);
    g.add(tool, variant, "decrypt", size, move |n| {
        pool.run(n, |b| {
            let pt = key
                .open_in_place(
                    Nonce::assume_unique_for_key(counter_nonce(0)),
                    Aad::empty(),
                    b,
                )
                .unwrap();
            black_box(pt);
        })
    });
    Ok(())
}

fn raw_aes_gcm_cells(g: &mut Group<'_>, size: usize) -> Result<(), BoxError> {
    use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
    let (tool, variant) = ("aes-gcm (RustCrypto)", "raw AES-256-GCM in-place");
    let key =
        Rc::new(Aes256Gcm::new_from_slice(&random_key()).map_err(|e| format!("aes-gcm key: {e}"))?);
    let pt = plaintext(size);
    let mut buf = pt.clone();
    let n0 = counter_nonce(0);
    let tag = key
        .encrypt_inout_detached((&n0).into(), b"", buf.as_mut_slice().into())
        .map_err(|e| format!("aes-gcm seal: {e}"))?;
    buf.extend_from_slice(&tag);
    let mut check = buf.clone();
    let (ct, t) = check.split_at_mut(size);
    let t: &[u8; 16] = (&*t).try_into()?;
    key.decrypt_inout_detached((&n0).into(), b"", ct.into(), t.into())
        .map_err(|e| format!("aes-gcm open: {e}"))?;
    assert_eq!(ct, &pt[..], "aes-gcm round trip");

    {
        let (key, mut work, mut counter) = (key.clone(), pt, 1u64);
        g.add(tool, variant, "encrypt", size, move |n| {
            timed(n, || {
                counter += 1;
                let nonce = counter_nonce(counter);
                let tag = key
                    .encrypt_inout_detached((&nonce).into(), b"", black_box(&mut work[..]).into())
                    .unwrap();
                black_box(tag);
            })
        });
    }
    let mut pool = Pool::new(buf);
    g.add(tool, variant, "decrypt", size, move |n| {
        pool.run(n, |b| {
            let (ct, t) = b.split_at_mut(size);
            let t: &[u8; 16] = (&*t).try_into().unwrap();
            key.decrypt_inout_detached((&n0).into(), b"", ct.into(), t.into())
                .unwrap();
            black_box(ct);
        })
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// AWS Encryption SDK for Rust: raw AES keyring, committing suite without signature.

struct Esdk {
    rt: tokio::runtime::Runtime,
    client: aws_esdk::client::Client,
    keyring: aws_esdk::material_providers::types::keyring::KeyringRef,
    ec: HashMap<String, String>,
}

fn esdk_setup() -> Result<Rc<Esdk>, BoxError> {
    use aws_esdk::material_providers::client as mpl_client;
    use aws_esdk::material_providers::types::material_providers_config::MaterialProvidersConfig;
    use aws_esdk::material_providers::types::{AesWrappingAlg, EsdkCommitmentPolicy};
    use aws_esdk::types::aws_encryption_sdk_config::AwsEncryptionSdkConfig;

    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let client = aws_esdk::client::Client::from_conf(
        AwsEncryptionSdkConfig::builder()
            .commitment_policy(EsdkCommitmentPolicy::RequireEncryptRequireDecrypt)
            .build()?,
    )?;
    let mpl = mpl_client::Client::from_conf(MaterialProvidersConfig::builder().build()?)?;
    let keyring = rt.block_on(
        mpl.create_raw_aes_keyring()
            .key_name("bench-key")
            .key_namespace("byok-compare")
            .wrapping_key(random_key().to_vec())
            .wrapping_alg(AesWrappingAlg::AlgAes256GcmIv12Tag16)
            .send(),
    )?;
    let ec = HashMap::from([(CTX.0.to_string(), CTX.1.to_string())]);
    Ok(Rc::new(Esdk {
        rt,
        client,
        keyring,
        ec,
    }))
}

fn esdk_cells(g: &mut Group<'_>, e: &Rc<Esdk>, size: usize) -> Result<(), BoxError> {
    use aws_esdk::material_providers::types::EsdkAlgorithmSuiteId;
    use aws_smithy_types::Blob;

    let tool = "aws-esdk";
    let suite = EsdkAlgorithmSuiteId::AlgAes256GcmHkdfSha512CommitKey;
    let pt = Rc::new(plaintext(size));
    let ct: Blob =
        e.rt.block_on(
            e.client
                .encrypt()
                .plaintext(pt.to_vec())
                .keyring(e.keyring.clone())
                .encryption_context(e.ec.clone())
                .algorithm_suite_id(suite.clone())
                .send(),
        )?
        .ciphertext
        .ok_or("aws-esdk: no ciphertext")?;
    let back =
        e.rt.block_on(
            e.client
                .decrypt()
                .ciphertext(ct.clone())
                .keyring(e.keyring.clone())
                .encryption_context(e.ec.clone())
                .send(),
        )?
        .plaintext
        .ok_or("aws-esdk: no plaintext")?;
    assert_eq!(back.as_ref(), &pt[..], "aws-esdk round trip");

    // The API takes owned Blobs: the copy of the input is part of each op.
    {
        let e = e.clone();
        g.add(tool, ESDK_VARIANT, "encrypt", size, move |n| {
            e.rt.block_on(async {
                let t = Instant::now();
                for _ in 0..n {
                    let out = e
                        .client
                        .encrypt()
                        .plaintext(black_box(&pt[..]).to_vec())
                        .keyring(e.keyring.clone())
                        .encryption_context(e.ec.clone())
                        .algorithm_suite_id(suite.clone())
                        .send()
                        .await
                        .unwrap();
                    black_box(out);
                }
                t.elapsed()
            })
        });
    }
    let e = e.clone();
    g.add(tool, ESDK_VARIANT, "decrypt", size, move |n| {
        e.rt.block_on(async {
            let t = Instant::now();
            for _ in 0..n {
                let out = e
                    .client
                    .decrypt()
                    .ciphertext(black_box(&ct).clone())
                    .keyring(e.keyring.clone())
                    .encryption_context(e.ec.clone())
                    .send()
                    .await
                    .unwrap();
                black_box(out);
            }
            t.elapsed()
        })
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The steps of one byok message besides AES-GCM over the body, timed alone (op "step", size 0):
// where the fixed per-message cost goes.

fn step_cells(g: &mut Group<'_>) -> Result<(), BoxError> {
    use aes_gcm::{Aes256Gcm, KeyInit};
    use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
    use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
    use hkdf::Hkdf;
    use sha2::Sha256;

    struct Len64;
    impl KeyType for Len64 {
        fn len(&self) -> usize {
            64
        }
    }

    let tool = "byok steps";
    let secret = random_key();
    let info = [0x5au8; 54]; // KDF_INFO_LEN: mode, frame, scope id, version, salt
    let salt = b"byok/v1/suite1/scope-key";
    let prk = Hkdf::<Sha256>::new(Some(salt), &secret);
    let aws_prk = Salt::new(HKDF_SHA256, salt).extract(&secret);
    let mut okm = [0u8; 64];
    let mut aws_okm = [0u8; 64];
    prk.expand(&info, &mut okm)
        .map_err(|e| format!("hkdf: {e}"))?;
    aws_prk
        .expand(&[&info], Len64)
        .and_then(|o| o.fill(&mut aws_okm))
        .map_err(|e| format!("aws-lc hkdf: {e}"))?;
    assert_eq!(okm, aws_okm, "HKDF implementations agree");
    let key_bytes: [u8; 32] = okm[..32].try_into()?;

    g.add(
        tool,
        "HKDF-SHA256 expand 64 B (hkdf+sha2, as byok-core)",
        "step",
        0,
        move |n| {
            timed(n, || {
                prk.expand(black_box(&info), &mut okm).unwrap();
                black_box(&okm);
            })
        },
    );
    g.add(
        tool,
        "HKDF-SHA256 expand 64 B (aws-lc-rs, for comparison)",
        "step",
        0,
        move |n| {
            timed(n, || {
                aws_prk
                    .expand(&[black_box(&info)], Len64)
                    .and_then(|o| o.fill(&mut aws_okm))
                    .unwrap();
                black_box(&aws_okm);
            })
        },
    );
    g.add(
        tool,
        "AES-256-GCM key setup (aws-lc-rs LessSafeKey)",
        "step",
        0,
        move |n| {
            timed(n, || {
                let k =
                    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, black_box(&key_bytes)).unwrap());
                black_box(k);
            })
        },
    );
    g.add(
        tool,
        "AES-256-GCM key setup (aes-gcm)",
        "step",
        0,
        move |n| {
            timed(n, || {
                black_box(Aes256Gcm::new_from_slice(black_box(&key_bytes)).unwrap());
            })
        },
    );
    let (mut rng, mut salt) = (rand::rng(), [0u8; 32]);
    g.add(
        tool,
        "salt: 32 B from rand::rng() (ThreadRng)",
        "step",
        0,
        move |n| {
            timed(n, || {
                rand::Rng::fill_bytes(&mut rng, &mut salt);
                black_box(&salt);
            })
        },
    );
    let buf = vec![0u8; 1024 + 108];
    g.add(
        tool,
        "allocate + copy 1 KiB + 108 B (Vec)",
        "step",
        0,
        move |n| {
            timed(n, || {
                let mut v = Vec::with_capacity(1024 + 108);
                v.extend_from_slice(black_box(&buf[..]));
                black_box(v);
            })
        },
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let cfg = Config::from_env_and_args()?;
    let esdk = if cfg.wants("aws-esdk", ESDK_VARIANT) {
        Some(esdk_setup()?)
    } else {
        None
    };
    for &size in &cfg.sizes {
        let mut g = Group {
            cfg: &cfg,
            cells: Vec::new(),
        };
        byok_cells::<AwsLc>(&mut g, "AwsLc", size)?;
        byok_cells::<RustCrypto>(&mut g, "RustCrypto", size)?;
        raw_aws_lc_cells(&mut g, size)?;
        raw_aes_gcm_cells(&mut g, size)?;
        if let Some(e) = &esdk {
            esdk_cells(&mut g, e, size)?;
        }
        g.run();
    }
    let mut g = Group {
        cfg: &cfg,
        cells: Vec::new(),
    };
    step_cells(&mut g)?;
    g.run();
    Ok(())
}
