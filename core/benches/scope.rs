//! Criterion benchmarks of the scope tree:
//!
//!     taskset -c 1 cargo bench -p byok-core --bench scope
//!
//! - `path10/*`: effective-state lookup and full key resolution (ten unwraps, from the root key)
//!   for a scope ten levels below the org;
//! - `tree-1M/*`: building an org of 1,000,000 scopes (100 teams x 100 threads x 100 connectors,
//!   each with a random key wrapped under its parent's), then lookups at random leaves.

use std::hint::black_box;
use std::time::Duration;

use byok_core::dev::TestRng;
use byok_core::scope::Org;
use byok_core::{KeyId, ScopeId, ScopeKey};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand_core::Rng;

fn sid(n: u64) -> ScopeId {
    // Byte 0 set: the all-zero id is reserved for the managed key.
    let mut b = [0u8; 16];
    b[0] = 1;
    b[8..].copy_from_slice(&n.to_be_bytes());
    ScopeId::from_bytes(b)
}

fn new_org(rng: &mut TestRng) -> (Org, ScopeKey) {
    let managed = byok_core::scope::managed_key(byok_core::SecretBytes::random(rng), 1);
    let (org, root, _) = Org::create(sid(0), &managed, rng).unwrap();
    (org, root)
}

fn path10(c: &mut Criterion) {
    let mut rng = TestRng::seeded(1);
    let (mut org, root) = new_org(&mut rng);
    let mut key = org.resolve(KeyId::new(sid(0), 1), &root).unwrap();
    for depth in 1..=10u64 {
        let (k, _) = org
            .create_scope(sid(depth), sid(depth - 1), &key, &mut rng)
            .unwrap();
        key = k;
    }
    let leaf = KeyId::new(sid(10), 1);
    let mut g = c.benchmark_group("path10");
    g.bench_function("effective", |b| {
        b.iter(|| black_box(org.effective(black_box(sid(10))).unwrap()))
    });
    g.bench_function("root_of", |b| {
        b.iter(|| black_box(org.root_of(black_box(leaf)).unwrap()))
    });
    g.bench_function("resolve", |b| {
        b.iter(|| black_box(org.resolve(black_box(leaf), &root).unwrap()))
    });
}

const FAN: u64 = 100;

/// 1 + 100 + 100^2 + 100^3 scopes: ids are 1-based positions in breadth-first order.
fn build_1m(rng: &mut TestRng) -> (Org, ScopeKey) {
    let (mut org, root) = new_org(rng);
    let root_key = org.resolve(KeyId::new(sid(0), 1), &root).unwrap();
    let mut next = 1u64;
    for t in 0..FAN {
        let team = sid(next);
        next += 1;
        let (team_key, _) = org.create_scope(team, sid(0), &root_key, rng).unwrap();
        for _ in 0..FAN {
            let thread = sid(next);
            next += 1;
            let (thread_key, _) = org.create_scope(thread, team, &team_key, rng).unwrap();
            for _ in 0..FAN {
                org.create_scope(sid(next), thread, &thread_key, rng)
                    .unwrap();
                next += 1;
            }
        }
        black_box(t);
    }
    (org, root)
}

fn tree_1m(c: &mut Criterion) {
    let mut g = c.benchmark_group("tree-1M");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.bench_function("build", |b| {
        b.iter_batched(
            || TestRng::seeded(2),
            |mut rng| {
                let (org, _) = build_1m(&mut rng);
                // Drop outside the timing would need another batch; dropping is part of the cost
                // of a tree this size and is small next to building it.
                black_box(org.len())
            },
            BatchSize::PerIteration,
        )
    });
    drop(g);
    let mut rng = TestRng::seeded(3);
    let (org, root) = build_1m(&mut rng);
    assert_eq!(org.len() as u64, 1 + FAN + FAN * FAN + FAN * FAN * FAN);
    let total = org.len() as u64;
    let mut g = c.benchmark_group("tree-1M");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("effective/random-leaf", |b| {
        b.iter(|| {
            let n = total - 1 - rng.next_u64() % (FAN * FAN * FAN);
            black_box(org.effective(sid(n)).unwrap())
        })
    });
    g.bench_function("resolve/random-leaf", |b| {
        b.iter(|| {
            let n = total - 1 - rng.next_u64() % (FAN * FAN * FAN);
            black_box(org.resolve(KeyId::new(sid(n), 1), &root).unwrap())
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = path10, tree_1m
}
criterion_main!(benches);
