//! Crash recovery: `kill -9` of the server at random points while it retires a key version
//! that wraps 100 000 stored data keys (and a child scope's key). Each restart resumes the job;
//! at the end every data key opens to the same bytes under the newest version, none is lost or
//! moved twice, the old version is gone, and the audit chain verifies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use byok_tests::server::field as s;
use byok_tests::server::{Api, Server, temp_dir};
use rand::RngExt;
use serde_json::json;

const KEYS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_rotation_rewrap_of_100k_data_keys() {
    let dir = temp_dir("crash");
    let data = dir.join("data");
    let mut server = Server::start(&data, &[]);
    let operator = server.operator_token.clone().unwrap();
    let mut api = Api::new(&server.url);
    let (_, v) = api
        .post("/v1/orgs", &operator, &json!({ "name": "crash" }))
        .await;
    let (org, admin) = (s(&v, "id"), s(&v, "admin_token"));
    let (_, v) = api
        .post(
            &format!("/v1/orgs/{org}/tokens"),
            &admin,
            &json!({ "role": "service", "name": "svc" }),
        )
        .await;
    let service = s(&v, "token");
    let (_, v) = api
        .post(
            &format!("/v1/orgs/{org}/scopes"),
            &admin,
            &json!({ "parent": org, "name": "team" }),
        )
        .await;
    let team = s(&v, "id");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{org}/scopes"),
            &admin,
            &json!({ "parent": team, "name": "thread" }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let thread = s(&v, "id");

    // 100 000 stored data keys under team v1.
    let mut keys: HashMap<String, String> = HashMap::with_capacity(KEYS);
    while keys.len() < KEYS {
        let (st, v) = api
            .post(
                &format!("/v1/orgs/{org}/scopes/{team}/datakeys"),
                &service,
                &json!({ "count": 1000 }),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        for k in v["keys"].as_array().unwrap() {
            assert_eq!(k["version"], 1);
            keys.insert(s(k, "id"), s(k, "key"));
        }
    }
    // Data under the child scope, whose key is wrapped under team v1 too.
    let (_, v) = api
        .post(
            &format!("/v1/orgs/{org}/scopes/{thread}/encrypt"),
            &service,
            &json!({ "plaintext": "aGVsbG8=" }),
        )
        .await;
    let thread_ct = s(&v, "ciphertext");

    // Rotate, then retire v1; kill -9 at random points while it runs, three times.
    let (st, _) = api
        .post(
            &format!("/v1/orgs/{org}/scopes/{team}/rotate"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{org}/scopes/{team}/retire"),
            &admin,
            &json!({ "version": 1 }),
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let mut rng = rand::rng();
    let mut kills_mid_job = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..2500))).await;
        let (_, job) = api.get(&format!("/v1/orgs/{org}/job"), &admin).await;
        server.kill9();
        if !job.is_null() {
            kills_mid_job += 1;
            eprintln!("kill -9 during the job at {}/{}", job["done"], job["total"]);
        }
        server.restart();
        api = Api::new(&server.url);
    }
    assert!(
        kills_mid_job >= 1,
        "at least one kill landed during the job"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (st, job) = api.get(&format!("/v1/orgs/{org}/job"), &admin).await;
        assert_eq!(st, 200);
        if job.is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every key opens to the same bytes, now under v2.
    let ids: Vec<&String> = keys.keys().collect();
    for chunk in ids.chunks(1000) {
        let (st, v) = api
            .post(
                &format!("/v1/orgs/{org}/datakeys/get"),
                &service,
                &json!({ "ids": chunk }),
            )
            .await;
        assert_eq!(st, 200, "{v}");
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
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{org}/decrypt"),
            &service,
            &json!({ "ciphertext": thread_ct }),
        )
        .await;
    assert_eq!((st, s(&v, "plaintext")), (200, "aGVsbG8=".into()), "{v}");
    // v1 is gone: retiring it again names an unknown version.
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{org}/scopes/{team}/retire"),
            &admin,
            &json!({ "version": 1 }),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    let (_, v) = api
        .get(&format!("/v1/orgs/{org}/audit/verify"), &admin)
        .await;
    assert_eq!(v["ok"], true, "{v}");
    drop(server);

    // In the database: exactly the keys created, all under v2, no v1 key version left.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("byok.db").display()))
        .await
        .unwrap();
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT version, COUNT(*) FROM data_keys GROUP BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, vec![(2, i64::try_from(KEYS).unwrap())]);
    let v1: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM scope_keys WHERE scope_id = ? AND version = 1")
            .bind(&team)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(v1, 0);
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
