//! Three `byok serve` replicas on loopback over one PostgreSQL (issue 18): a pause, a resume or
//! a token revoke made through one replica stops (or restores) use on the other two, by NOTIFY
//! within milliseconds, and by the version poll when a notification is lost. Needs the test
//! cluster (`BYOK_TEST_POSTGRES_URL`, started by the test command); skipped without it unless
//! `BYOK_TEST_REQUIRE_POSTGRES` is set. A job runs on one replica at a time, and when that
//! replica is killed, another finishes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use byok_tests::fixtures::{OrgSettings, TestOrg, assert_error, assert_status};
use byok_tests::pg_cluster::Cluster;
use byok_tests::replicas::{Replicas, until};
use byok_tests::server::{Api, field};
use serde_json::json;

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// With the poll an hour away, only the notification can stop B and C: each pause through A
/// is refused by both with `scope_paused` within 2 s (in practice milliseconds), and each
/// resume opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_on_one_replica_stops_the_others_by_notification() {
    let Some(r) = Replicas::start("replicas-notify", 3_600_000) else {
        return;
    };
    let (o, team, cts) = r.org().await;
    // 20 rounds here; `scripts/bench-replicas.sh` asks for 200 (BYOK_REPLICA_ROUNDS).
    let rounds: usize = std::env::var("BYOK_REPLICA_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let mut took = Vec::new();
    for round in 0..rounds {
        let paused = o.act(&r.a.api, &team, "pause", json!({})).await;
        assert_status(&paused, 200);
        if round == 0 {
            // The receipt's end of access counts the replicas: the poll (an hour here) plus
            // the usage window.
            let entry = &paused.1["receipt"]["entry"];
            let at = entry["at"].as_i64().expect("the receipt's time");
            assert_eq!(entry["event"]["replicas_stop_by"], json!(at + 3_660_000));
            assert_eq!(entry["event"]["access_ends_at"], json!(at + 3_660_000));
        }
        for (_, api) in &r.others {
            took.push(
                until(
                    &o,
                    api,
                    &cts[0],
                    (409, "scope_paused"),
                    Duration::from_secs(2),
                )
                .await,
            );
            assert_error(&o.decrypt(api, &cts[1]).await, 409, "scope_paused");
        }
        assert_status(&o.act(&r.a.api, &team, "resume", json!({})).await, 200);
        for (_, api) in &r.others {
            until(&o, api, &cts[2], (200, ""), Duration::from_secs(2)).await;
        }
    }
    eprintln!(
        "pause on A until refused on B and C: p50 {:?}, p99 {:?} ({} samples)",
        percentile(&mut took, 0.5),
        percentile(&mut took, 0.99),
        took.len()
    );
}

/// A change that reaches storage with no notification (as when the listening connection is
/// down) is found by the poll: B and C refuse within the poll interval. Killing the listening
/// connections then only delays: they come back, and a pause is again seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_notification_is_covered_by_the_poll() {
    let Some(r) = Replicas::start("replicas-poll", 500) else {
        return;
    };
    let (o, team, cts) = r.org().await;
    // Paused in the database by hand: the rows and the version move, nothing is sent.
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&r.url).await.unwrap();
    sqlx::query("UPDATE scopes SET state = 'paused' WHERE org_id = $1 AND id = $2")
        .bind(&o.id)
        .bind(&team)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE orgs SET version = version + 1 WHERE id = $1")
        .bind(&o.id)
        .execute(&db)
        .await
        .unwrap();
    for (_, api) in &r.others {
        let took = until(
            &o,
            api,
            &cts[0],
            (409, "scope_paused"),
            Duration::from_secs(3),
        )
        .await;
        eprintln!("refused by the poll after {took:?} (poll every 500 ms)");
        assert_error(&o.decrypt(api, &cts[1]).await, 409, "scope_paused");
    }
    // Every replica's listening connection is killed; they reconnect.
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'byok-listen' AND datname = current_database()",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(killed, 3, "one listening connection per replica");
    assert_status(&o.act(&r.a.api, &team, "resume", json!({})).await, 200);
    for (_, api) in &r.others {
        until(&o, api, &cts[0], (200, ""), Duration::from_secs(3)).await;
    }
}

/// A service token revoked through A gets 401 from B and C, although they had it cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_replica_is_refused_by_the_others() {
    let Some(r) = Replicas::start("replicas-token", 3_600_000) else {
        return;
    };
    let (o, _team, cts) = r.org().await;
    let listed = r.a.api.get(&o.path("/tokens"), &o.admin).await;
    let tokens = assert_status(&listed, 200);
    let id = tokens
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "app"))
        .map(|t| field(t, "id"))
        .expect("the service token");
    assert_status(
        &r.a.api
            .raw(
                "DELETE",
                &o.path(&format!("/tokens/{id}")),
                Some(&o.admin),
                None,
            )
            .await,
        200,
    );
    for (_, api) in &r.others {
        let start = Instant::now();
        loop {
            let answer = o.decrypt(api, &cts[0]).await;
            if answer.0 == 401 {
                assert_error(&answer, 401, "unauthenticated");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(2), "{answer:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Stored data keys the job test retires: enough for the retirement to take a few seconds.
const JOB_KEYS: usize = 30_000;

/// `kill -9` of the replica running a retirement (it holds the org's job lease, mid-batch):
/// when its lease expires, another replica claims the job and finishes it from the stored
/// cursor. No data key is lost or changed, the old version is gone, the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_replica_dies_is_finished_by_another() {
    let Some(mut r) = Replicas::start_with("replicas-job", 500, &[("BYOK_JOB_LEASE_MS", "2000")])
    else {
        return;
    };
    let o = r.a.org(OrgSettings::named("acme")).await;
    let team = o.scope(&r.a.api, &o.id, "team").await;
    let thread = o.scope(&r.a.api, &team, "thread").await;
    let mut keys: HashMap<String, String> = HashMap::with_capacity(JOB_KEYS);
    while keys.len() < JOB_KEYS {
        for k in o.datakeys(&r.a.api, &team, 1000).await {
            keys.insert(k.id, k.key);
        }
    }
    let b = &r.others[0].1;
    let thread_ct = o.seal(b, &thread, b"under the child").await;
    assert_status(&o.act(&r.a.api, &team, "rotate", json!({})).await, 200);

    // A runs the retirement it was asked for; it is killed once it holds the lease and has
    // moved some keys but not all.
    assert_status(
        &o.act(&r.a.api, &team, "retire", json!({ "version": 1 }))
            .await,
        202,
    );
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&r.url).await.unwrap();
    let a_name = format!("byok-{}-", r.a.server.pid());
    let start = Instant::now();
    let done_at_kill = loop {
        let row: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT l.owner, j.done, j.total FROM job_leases l JOIN retire_jobs j ON j.org_id = l.org_id WHERE l.org_id = $1",
        )
        .bind(&o.id)
        .fetch_optional(&db)
        .await
        .unwrap();
        if let Some((owner, done, total)) = row
            && done > 0
        {
            assert!(
                owner.starts_with(&a_name),
                "A runs the job it started: {owner}"
            );
            assert!(done < total, "killed before the end");
            r.a.server.kill9();
            break done;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the job never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("replica A killed with {done_at_kill} of {JOB_KEYS} data keys moved");

    // B or C takes it over once A's lease expires (2 s), and finishes it.
    let killed_at = Instant::now();
    o.job_done_within(b, Duration::from_secs(60)).await;
    eprintln!(
        "finished by another replica {:?} after the kill",
        killed_at.elapsed()
    );
    let logs: String = r.others.iter().map(|(s, _)| s.log()).collect();
    assert!(logs.contains("resuming a job"), "B or C resumed it");

    for chunk in keys.keys().cloned().collect::<Vec<_>>().chunks(1000) {
        let v = assert_status(&o.get_datakeys(b, chunk).await, 200);
        for k in v["keys"].as_array().unwrap() {
            assert_eq!(k["version"], 2, "{k}");
            assert_eq!(
                &field(k, "key"),
                &keys[&field(k, "id")],
                "key {} changed",
                field(k, "id")
            );
        }
    }
    o.opens_in(&r.others[1].1, &thread_ct, &json!({}), b"under the child")
        .await
        .unwrap();
    assert_error(
        &o.act(b, &team, "retire", json!({ "version": 1 })).await,
        404,
        "not_found",
    );
    let (_, v) = b.get(&o.path("/audit/verify"), &o.admin).await;
    assert_eq!(v["ok"], true, "{v}");
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, COUNT(*) FROM data_keys GROUP BY version")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(rows, vec![(2, i64::try_from(JOB_KEYS).unwrap())]);
    // The finishing replica gives the lease up as its turn ends (not waiting for the expiry).
    let given_up = Instant::now();
    loop {
        let leases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_leases")
            .fetch_one(&db)
            .await
            .unwrap();
        if leases == 0 {
            break;
        }
        assert!(
            given_up.elapsed() < Duration::from_secs(1),
            "the lease was kept"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the load saw: each answer's status and error code, counted; the ciphertexts whose
/// encrypt answered 200; and how many decrypts answered 200 while the database was down.
#[derive(Default)]
struct Seen {
    /// By phase (0 before the stop, 1 down, 2 restarted, 3 recovered), status and code.
    answers: BTreeMap<(u8, u16, String), usize>,
    sealed: Vec<(String, Vec<u8>)>,
    served_while_down: usize,
    created: Vec<String>,
}

/// One load client on one replica: encrypts and decrypts under `team` (served from the key
/// cache, the use already marked) until `stop`; client 0 also makes a scope (a write) every
/// tenth round (one writer: changes racing through several replicas are refused with
/// `reloading` by design, which is not what this test is about).
async fn load(
    url: String,
    o: TestOrg,
    team: String,
    ct: String,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    n: usize,
) -> Seen {
    let api = Api::new(&url);
    let mut seen = Seen::default();
    let count = |seen: &mut Seen, p: u8, a: &(u16, serde_json::Value)| {
        let code = a.1["error"]["code"].as_str().unwrap_or("").to_owned();
        *seen.answers.entry((p, a.0, code)).or_default() += 1;
    };
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let plain = format!("client {n} round {round}").into_bytes();
        let p = phase.load(Ordering::Relaxed);
        let e = o.encrypt(&api, &team, &plain).await;
        count(&mut seen, p.max(phase.load(Ordering::Relaxed)), &e);
        if e.0 == 200 {
            seen.sealed.push((field(&e.1, "ciphertext"), plain));
        }
        let p = phase.load(Ordering::Relaxed);
        let d = o.decrypt(&api, &ct).await;
        let q = phase.load(Ordering::Relaxed);
        count(&mut seen, p.max(q), &d);
        if d.0 == 200 && p == 1 && q == 1 {
            seen.served_while_down += 1;
        }
        if n == 0 && round.is_multiple_of(10) {
            let p = phase.load(Ordering::Relaxed);
            let name = format!("c{n}r{round}");
            let c = api
                .post(
                    &o.path("/scopes"),
                    &o.admin,
                    &json!({ "parent": team, "name": name }),
                )
                .await;
            count(&mut seen, p.max(phase.load(Ordering::Relaxed)), &c);
            if c.0 == 200 || c.0 == 201 {
                seen.created.push(field(&c.1, "id"));
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    seen
}

/// Whether every replica's `/readyz` answers `status`.
async fn all_ready(urls: &[String], status: u16) -> bool {
    for u in urls {
        let (s, _) = Api::new(u).raw("GET", "/readyz", None, None).await;
        if s != status {
            return false;
        }
    }
    true
}

/// PostgreSQL stopped as in a crash (`-m immediate`) for 3 s under load through all three
/// replicas, then started again. While it is down, `/readyz` says so and the calls the key
/// cache can serve keep answering 200; a call that needs the database gets
/// `503 database_unavailable` (with `Retry-After`), never a 500. Once it is back the replicas
/// recover by themselves within seconds, and nothing is lost: every ciphertext that was
/// answered opens, every scope that was answered exists, the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_is_survived_without_a_500() {
    let Some(cluster) = Cluster::start("replicas-pg-restart") else {
        return;
    };
    let r = Replicas::on(&cluster.admin_url(), "replicas-outage", 500, &[]);
    let (o, team, cts) = r.org().await;
    let urls = r.urls();
    let (phase, stop) = (Arc::new(AtomicU8::new(0)), Arc::new(AtomicBool::new(false)));
    let clients: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(load(
                urls[n % 3].clone(),
                o.clone(),
                team.clone(),
                cts[n % 3].clone(),
                phase.clone(),
                stop.clone(),
                n,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    phase.store(1, Ordering::Relaxed);
    cluster.down();
    let stopped = Instant::now();
    // Not ready, said within the pool's wait (3 s) plus a margin.
    while !all_ready(&urls, 503).await {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "still ready with the database down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api = Api::new(&urls[1]);
    let body = json!({ "parent": team, "name": "while-down" });
    let fresh = api.reply(&o.path("/scopes"), &o.admin, Some(&body)).await;
    assert_error(&fresh.json(), 503, "database_unavailable");
    assert!(
        fresh.header("retry-after").is_some(),
        "a 503 says when to retry"
    );
    let until_down = Duration::from_secs(3).saturating_sub(stopped.elapsed());
    tokio::time::sleep(until_down).await;

    cluster.up();
    phase.store(2, Ordering::Relaxed);
    let started = Instant::now();
    // Recovery without a restart: ready again, and a write through every replica lands.
    while !all_ready(&urls, 200).await {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not ready again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (i, u) in urls.iter().enumerate() {
        let api = Api::new(u);
        loop {
            let c = api
                .post(
                    &o.path("/scopes"),
                    &o.admin,
                    &json!({ "parent": team, "name": format!("after-{i}") }),
                )
                .await;
            if c.0 == 201 || c.0 == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no write after recovery: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let recovered = started.elapsed();
    phase.store(3, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Seen::default();
    for c in clients {
        let s = c.await.unwrap();
        for (k, n) in s.answers {
            *all.answers.entry(k).or_default() += n;
        }
        all.sealed.extend(s.sealed);
        all.created.extend(s.created);
        all.served_while_down += s.served_while_down;
    }
    eprintln!(
        "answers {:?}; {} decrypts served from the cache while down; ready and writing again {recovered:?} after the start",
        all.answers, all.served_while_down
    );
    for ((phase, status, code), n) in &all.answers {
        // Before the stop and once recovered, everything is answered; in between, only what
        // needs the database is refused, and with a code that says retry. Once recovered, a
        // data call may still meet an org moved by the writes that proved the recovery (one
        // through each replica, their notifications landing just after): `reloading`, retry,
        // by design (see `load`); never `database_unavailable` and never a 500.
        let ok = matches!(status, 200 | 201)
            || (matches!(phase, 1 | 2)
                && *status == 503
                && (code == "database_unavailable" || code == "reloading"))
            || (*phase == 3 && *status == 503 && code == "reloading");
        assert!(ok, "{n} answers {status} {code} in phase {phase}");
    }
    assert!(
        all.served_while_down > 0,
        "the key cache served nothing while the database was down"
    );

    // Nothing lost: every answered ciphertext opens on every replica, every answered scope is
    // stored, and the log verifies.
    for (ct, plain) in all.sealed.iter().step_by(50) {
        for u in &urls {
            o.opens_in(&Api::new(u), ct, &json!({}), plain)
                .await
                .unwrap();
        }
    }
    let db = {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&r.url).await.unwrap()
    };
    for id in &all.created {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM scopes WHERE org_id = $1 AND id = $2")
                .bind(&o.id)
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(n, 1, "scope {id} was answered but not stored");
    }
    let (_, v) = r.a.api.get(&o.path("/audit/verify"), &o.admin).await;
    assert_eq!(v["ok"], true, "{v}");
}
