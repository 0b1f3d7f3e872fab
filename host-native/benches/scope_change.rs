//! Changing one scope in a big org: a pause and a resume of one thread in an org of N scopes
//! (the org scope, teams of 1000 threads), through the service, on SQLite on disk. Before each
//! size is measured, the org is written straight into the database (rows as the effect
//! executor writes them; the wrapped keys are random bytes, which a pause never opens) and
//! loaded once, as a server does on first use. What is measured is what a transition costs
//! beyond the few rows it writes: with a copy of the whole org per change it grows with N; a
//! change should cost O(depth).
//!
//!   cargo bench -p byok-server --bench scope_change
//!   BYOK_BENCH_SCOPES=1000,1000000 cargo bench -p byok-server --bench scope_change

use std::sync::Arc;
use std::time::{Duration, Instant};

use byok_core::ScopeId;
use byok_server::service::Service;
use byok_server::service::kms::KmsSettings;
use byok_server::store::Database;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::RngExt;

/// Threads per team.
const TEAM: usize = 1000;
/// Rows per INSERT statement.
const ROWS: usize = 500;

fn service(db: Database, managed: [u8; 32]) -> Service {
    let key =
        byok_core::scope::managed_key(byok_core::SecretBytes::from_bytes(&mut managed.clone()), 1);
    Service::new(db, key, Duration::from_secs(60), KmsSettings::default()).expect("a service")
}

/// An org of `n` scopes in a fresh database under `dir`; returns the service (the org loaded)
/// and one thread.
async fn big_org(dir: &std::path::Path, n: usize) -> (Arc<Service>, ScopeId, ScopeId) {
    let managed: [u8; 32] = rand::rng().random();
    let db = Database::open_dir(dir).await.expect("sqlite");
    let (org, _) = service(db.clone(), managed)
        .create_org("big", None, None, None)
        .await
        .expect("an org");
    // (id, parent, wrapped key): the org scope, then teams of TEAM threads.
    let mut rng = rand::rng();
    let mut rows: Vec<(ScopeId, ScopeId, Vec<u8>)> = Vec::with_capacity(n);
    let (mut team, mut leaf) = (org, org);
    for i in 1..n {
        let id = ScopeId::random(&mut rng);
        let parent = if i % (TEAM + 1) == 1 {
            team = id;
            org
        } else {
            leaf = id;
            team
        };
        rows.push((id, parent, (0..140).map(|_| rng.random()).collect()));
    }
    let org_hex = org.to_string();
    let mut w = db.write().await.expect("a write");
    for (first, chunk) in rows.chunks(ROWS).enumerate() {
        let marks = |per: usize, shape: &dyn Fn(usize) -> String| {
            (0..chunk.len())
                .map(|i| shape(i * per))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!(
            "INSERT INTO scopes (org_id, id, parent_id, name, state) VALUES {}",
            marks(3, &|b| format!(
                "($1, ${}, ${}, ${}, 'active')",
                b + 2,
                b + 3,
                b + 4
            ))
        );
        let mut q = sqlx::query(&sql).bind(org_hex.clone());
        for (k, (id, parent, _)) in chunk.iter().enumerate() {
            q = q
                .bind(id.to_string())
                .bind(parent.to_string())
                .bind(format!("s{}", first * ROWS + k));
        }
        q.execute(&mut *w.tx).await.expect("insert scopes");
        let sql = format!(
            "INSERT INTO scope_keys (org_id, scope_id, version, under_version, wrapped) VALUES {}",
            marks(2, &|b| format!("($1, ${}, 1, 1, ${})", b + 2, b + 3))
        );
        let mut q = sqlx::query(&sql).bind(org_hex.clone());
        for (id, _, wrapped) in chunk {
            q = q.bind(id.to_string()).bind(wrapped.clone());
        }
        q.execute(&mut *w.tx).await.expect("insert scope keys");
    }
    w.commit().await.expect("commit");
    // A fresh service, as a server started on this database.
    let s = Arc::new(service(db, managed));
    let start = Instant::now();
    s.org(org).await.expect("the org loads");
    eprintln!("org of {n} scopes loaded in {:?}", start.elapsed());
    (s, org, leaf)
}

fn scope_change(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("BYOK_BENCH_SCOPES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("scope_change");
    g.sample_size(10);
    for n in sizes {
        let dir =
            std::env::temp_dir().join(format!("byok-bench-scopes-{n}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let (s, org, leaf) = rt.block_on(big_org(&dir, n));
        g.bench_function(BenchmarkId::new("pause_and_resume_one_thread", n), |b| {
            b.iter(|| {
                rt.block_on(async {
                    s.pause(org, leaf).await.expect("paused");
                    s.resume(org, leaf).await.expect("resumed");
                })
            })
        });
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, scope_change);
criterion_main!(benches);
