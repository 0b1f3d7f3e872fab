//! Pipes N bytes (default 1 GiB) through a framed encryptor straight into a decryptor, with the
//! push API and 1 MiB input chunks, checks every byte, and prints the peak resident memory:
//!
//!     cargo run --release -p byok-core --features dev --example stream_rss -- [bytes]
//!
//! The stream never exists whole in memory; peak RSS must stay flat whatever the size, and the
//! example fails (exit 1) above 64 MiB.

use byok_core::dev::TestRng;
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{Context, DefaultBackend, FrameSize, Header, KeyId, ScopeId, ScopeKey};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1 << 30);
    let mut rng = TestRng::seeded(1);
    let key = ScopeKey::random(KeyId::new(ScopeId::random(&mut rng), 1), &mut rng);
    let ctx = Context::from_pairs([("object", "snapshot.tar")]).unwrap();
    let mut enc =
        StreamEncryptor::<DefaultBackend>::new(&key, &ctx, FrameSize::DEFAULT, &mut rng).unwrap();
    let (header, _) = Header::parse(enc.header()).unwrap();
    let mut dec = StreamDecryptor::<DefaultBackend>::new(&key, &ctx, &header).unwrap();

    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let (mut ct, mut pt) = (Vec::new(), Vec::new());
    let (mut fed, mut checked) = (0u64, 0u64);
    let start = std::time::Instant::now();
    let check = |pt: &mut Vec<u8>, checked: &mut u64| {
        for (j, b) in pt.iter().enumerate() {
            assert_eq!(
                *b,
                ((*checked as usize + j) % (1 << 20) % 251) as u8,
                "byte {}",
                *checked as usize + j
            );
        }
        *checked += pt.len() as u64;
        pt.clear();
    };
    while fed < total {
        let n = chunk.len().min((total - fed) as usize);
        enc.update(&chunk[..n], &mut ct).unwrap();
        dec.update(&ct, &mut pt).unwrap();
        ct.clear();
        check(&mut pt, &mut checked);
        fed += n as u64;
    }
    enc.finish(&mut ct).unwrap();
    dec.update(&ct, &mut pt).unwrap();
    dec.finish(&mut pt).unwrap();
    check(&mut pt, &mut checked);
    assert_eq!(checked, total);
    let secs = start.elapsed().as_secs_f64();
    let peak = peak_rss_kib();
    println!(
        "stream_rss: {total} bytes encrypted and decrypted in {secs:.2} s ({:.2} GiB/s each way, pipelined), peak RSS {} KiB",
        total as f64 / secs / (1u64 << 30) as f64,
        peak
    );
    // The format promises constant memory; 64 MiB is the bound the design sets for 1 GiB.
    if peak > 64 * 1024 {
        eprintln!("stream_rss: peak RSS {peak} KiB exceeds 64 MiB");
        std::process::exit(1);
    }
}
