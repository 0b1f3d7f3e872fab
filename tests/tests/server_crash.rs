//! Crash recovery: `kill -9` of the server at random points while it retires a key version
//! that wraps 100 000 stored data keys (and a child scope's key). Each restart resumes the job;
//! at the end every data key opens to the same bytes under the newest version, none is lost or
//! moved twice, the old version is gone, and the audit chain verifies.

use std::collections::HashMap;
use std::time::Duration;

use byok_tests::fixtures::{OrgSettings, TestServer, assert_error, assert_status};
use byok_tests::server::Server;
use byok_tests::server::field as s;
use rand::RngExt;
use serde_json::json;

const KEYS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_rotation_rewrap_of_100k_data_keys() {
    let mut ts = TestServer::start_with("crash", |data| Server::start(data, &[]));
    let o = ts.org(OrgSettings::named("crash")).await;
    let (org, admin) = (o.id.clone(), o.admin.clone());
    let team = o.scope(&ts, &org, "team").await;
    let thread = o.scope(&ts, &team, "thread").await;

    // 100 000 stored data keys under team v1.
    let mut keys: HashMap<String, String> = HashMap::with_capacity(KEYS);
    while keys.len() < KEYS {
        for k in o.datakeys(&ts, &team, 1000).await {
            assert_eq!(k.version, 1);
            keys.insert(k.id, k.key);
        }
    }
    // Data under the child scope, whose key is wrapped under team v1 too.
    let thread_ct = o.seal(&ts, &thread, b"hello").await;

    // Rotate, then retire v1; kill -9 at random points while it runs, three times.
    assert_status(&o.act(&ts, &team, "rotate", json!({})).await, 200);
    let retire = async |ts: &TestServer| o.act(ts, &team, "retire", json!({ "version": 1 })).await;
    assert_status(&retire(&ts).await, 202);
    let mut rng = rand::rng();
    let mut kills_mid_job = 0;
    for _ in 0..3 {
        // Real time on purpose: the kill must land at a random point of the running job.
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..2500))).await;
        let job = o.job(&ts).await;
        ts.server.kill9();
        if !job.is_null() {
            kills_mid_job += 1;
            eprintln!("kill -9 during the job at {}/{}", job["done"], job["total"]);
        }
        ts.restart();
    }
    assert!(
        kills_mid_job >= 1,
        "at least one kill landed during the job"
    );
    o.job_done_within(&ts, Duration::from_secs(120)).await;

    // Every key opens to the same bytes, now under v2.
    let ids: Vec<&String> = keys.keys().collect();
    for chunk in ids.chunks(1000) {
        let ids: Vec<String> = chunk.iter().map(|id| (*id).clone()).collect();
        let v = assert_status(&o.get_datakeys(&ts, &ids).await, 200);
        for k in v["keys"].as_array().unwrap() {
            assert_eq!(k["version"], 2, "{k}");
            assert_eq!(
                &s(k, "key"),
                &keys[&s(k, "id")],
                "key {} changed",
                s(k, "id")
            );
        }
    }
    o.opens_in(&ts, &thread_ct, &json!({}), b"hello")
        .await
        .unwrap();
    // v1 is gone: retiring it again names an unknown version.
    assert_error(&retire(&ts).await, 404, "not_found");
    let (_, v) = ts.get(&o.path("/audit/verify"), &admin).await;
    assert_eq!(v["ok"], true, "{v}");
    ts.server.kill9();

    // In the database: exactly the keys created, all under v2, no v1 key version left.
    let pool = ts.db(false).await;
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, COUNT(*) FROM data_keys GROUP BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(2, i64::try_from(KEYS).unwrap())]);
    let v1: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM scope_keys WHERE scope_id = $1 AND version = 1")
            .bind(&team)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(v1, 0);
    pool.close().await;
}

/// A second `byok serve` on a SQLite data directory in use refuses to start, naming the
/// directory: nothing would carry one server's changes (a pause, a revoke) to the other's
/// memory. Once the first is gone (a crash included), a server starts on it again.
#[tokio::test]
async fn a_second_server_on_a_data_directory_in_use_refuses_to_start() {
    let mut ts = TestServer::start_with("one-server", |data| Server::start(data, &[]));
    if ts.server.database_url().is_some() {
        return; // PostgreSQL: replicas are the point, and there is no lock.
    }
    let data = ts.dir.join("data");
    let mut second = std::process::Command::new(byok_tests::server::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("BYOK_MANAGED_KEY")
        .env_remove("BYOK_DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run byok serve");
    let mut exited = None;
    for _ in 0..100 {
        exited = second.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exited else {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second server started on a data directory in use");
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another byok serve is using the data directory")
            && stderr.contains(&data.display().to_string()),
        "{stderr}"
    );
    // Still one server: it answers. After a kill -9 the lock is gone with it.
    assert_status(&ts.api.get("/healthz", "").await, 200);
    ts.server.restart();
    ts.api = byok_tests::server::Api::new(&ts.server.url);
    assert_status(&ts.api.get("/healthz", "").await, 200);
}

/// A database an older byok left: root versions stored without check values, and no mark of
/// the upgrade pass. The start says so with the fix, and their orgs' data calls are refused;
/// `byok serve --record-root-checks` records them through the key holder, prints how many and
/// exits without serving; the next start serves the org as before. After that, a version
/// without a check value is a modified database: the start says so, and the pass refuses.
#[tokio::test]
async fn record_root_checks_brings_an_older_database_over() {
    let mut ts = TestServer::start("root-checks");
    let o = ts.org(OrgSettings::named("old")).await;
    let team = o.scope(&ts, &o.id, "team").await;
    let ct = o.seal(&ts, &team, b"kept").await;
    ts.server.kill9();
    forget_root_checks(&ts, true).await;
    ts.restart();
    let log = ts.server.log();
    assert!(
        log.contains("stored without a check value") && log.contains("--record-root-checks"),
        "{log}"
    );
    assert_error(&o.decrypt(&ts, &ct).await, 500, "internal");
    ts.server.kill9();

    let url = ts.server.database_url();
    // A mistyped data directory: refused, and nothing is made there.
    let elsewhere = ts.dir.join("typo");
    if ts.server.database_url().is_none() {
        let out = record_pass(&elsewhere, url.as_deref());
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no byok database"));
        assert!(!elsewhere.exists(), "a data directory was made");
    } else {
        // A mistyped database URL: refused before it is opened, so not migrated (before, it
        // was given byok's tables, then refused).
        let admin = std::env::var("BYOK_TEST_POSTGRES_URL").unwrap();
        let wrong = byok_tests::local::fresh_postgres(&admin);
        let out = record_pass(&elsewhere, Some(&wrong));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("never started by byok serve"), "{stderr}");
        let db = sqlx::AnyPool::connect(&wrong).await.unwrap();
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        db.close().await;
        assert_eq!(tables, 0, "the wrong database was migrated");
    }
    let out = record_pass(&ts.data(), url.as_deref());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "root check values: 1 recorded, 0 left without one\n",
        "{stderr}"
    );

    ts.restart();
    assert!(o.opens_in(&ts, &ct, &json!({}), b"kept").await.is_ok());
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM scope_keys WHERE root_check IS NOT NULL")
            .fetch_one(&ts.db(true).await)
            .await
            .unwrap();
    assert_eq!(stored, 1);

    // The pass is done: a check value removed now is a modified database, never recorded.
    ts.server.kill9();
    forget_root_checks(&ts, false).await;
    ts.restart();
    assert!(ts.server.log().contains("the database was modified"));
    assert_error(&o.decrypt(&ts, &ct).await, 500, "internal");
    ts.server.kill9();
    let out = record_pass(&ts.data(), url.as_deref());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the pass completed already"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the server's rows look as an older byok left them: root check values gone, and (if
/// `marker`) no mark of the upgrade pass.
async fn forget_root_checks(ts: &TestServer, marker: bool) {
    let db = ts.db(false).await;
    sqlx::query("UPDATE scope_keys SET root_check = NULL")
        .execute(&db)
        .await
        .unwrap();
    if marker {
        sqlx::query("DELETE FROM server_meta WHERE name = 'root_checks_complete'")
            .execute(&db)
            .await
            .unwrap();
    }
    db.close().await;
}

/// Runs `byok serve --record-root-checks` on `data` (and the PostgreSQL database `url`).
fn record_pass(data: &std::path::Path, url: Option<&str>) -> std::process::Output {
    let mut pass = std::process::Command::new(byok_tests::server::binary());
    pass.args(["serve", "--record-root-checks", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data)
        .env_remove("BYOK_MANAGED_KEY")
        .env_remove("BYOK_DATABASE_URL");
    if let Some(url) = url {
        pass.env("BYOK_DATABASE_URL", url);
    }
    pass.output().expect("run byok serve --record-root-checks")
}
