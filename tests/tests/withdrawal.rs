//! Withdrawal on a real `byok serve` (managed key, no KMS needed): retired versions stop at
//! once, revoke wins over a job waiting on a paused scope, a resume runs the waiting job at
//! once, a pause racing leases and decrypts hands out no key after it, revoked and expired
//! tokens get 401, destroyed keys are in no file of the data directory, and a missing
//! `managed.key` is never silently replaced.

use std::time::Duration;

use base64ct::{Base64, Encoding};
use byok_tests::server::{Api, Server, binary, temp_dir};
use byok_tests::server::{error_code as code, field as s};
use serde_json::{Value, json};

struct Fixture {
    server: Server,
    api: Api,
    org: String,
    admin: String,
    service: String,
}

async fn fixture(name: &str, ttl_ms: u64) -> Fixture {
    let dir = temp_dir(name);
    let server = Server::start(
        &dir.join("data"),
        &[("BYOK_KEY_HEALTH_INTERVAL_MS", "3600000")],
    );
    let operator = server.operator_token.clone().unwrap();
    let api = Api::new(&server.url);
    let (org, admin, service) = api.org_with_service(&operator, ttl_ms).await;
    Fixture {
        server,
        api,
        org,
        admin,
        service,
    }
}

impl Fixture {
    async fn scope(&self, parent: &str, name: &str) -> String {
        let (st, v) = self
            .api
            .post(
                &format!("/v1/orgs/{}/scopes", self.org),
                &self.admin,
                &json!({ "parent": parent, "name": name }),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        s(&v, "id")
    }
    async fn act(&self, scope: &str, action: &str, body: Value) -> (u16, Value) {
        self.api
            .post(
                &format!("/v1/orgs/{}/scopes/{scope}/{action}", self.org),
                &self.admin,
                &body,
            )
            .await
    }
    async fn encrypt(&self, scope: &str) -> String {
        let (st, v) = self
            .api
            .post(
                &format!("/v1/orgs/{}/scopes/{scope}/encrypt", self.org),
                &self.service,
                &json!({ "plaintext": Base64::encode_string(b"data") }),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        s(&v, "ciphertext")
    }
    async fn decrypt(&self, ct: &str) -> (u16, Value) {
        self.api
            .post(
                &format!("/v1/orgs/{}/decrypt", self.org),
                &self.service,
                &json!({ "ciphertext": ct }),
            )
            .await
    }
    async fn job(&self) -> Value {
        self.api
            .get(&format!("/v1/orgs/{}/job", self.org), &self.admin)
            .await
            .1
    }
    async fn job_done(&self) {
        for _ in 0..100 {
            if self.job().await.is_null() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job still running: {}", self.job().await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_revoke_and_jobs_waiting_on_a_pause() {
    // A 10-minute TTL: everything below must hold without waiting for it.
    let f = fixture("withdrawal-jobs", 600_000).await;
    let team = f.scope(&f.org, "team").await;
    let thread = f.scope(&team, "thread").await;
    let old = f.encrypt(&team).await;
    let (st, v) = f
        .api
        .post(
            &format!("/v1/orgs/{}/scopes/{team}/datakeys", f.org),
            &f.service,
            &json!({ "count": 3 }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(f.decrypt(&old).await.0, 200, "cached now");

    // Retire v1: the cached key goes with it; decrypting with it is refused at once.
    assert_eq!(f.act(&team, "rotate", json!({})).await.0, 200);
    let (st, v) = f.act(&team, "retire", json!({ "version": 1 })).await;
    assert_eq!(st, 202, "{v}");
    f.job_done().await;
    let (st, v) = f.decrypt(&old).await;
    assert_eq!((st, code(&v).as_str()), (404, "not_found"), "{v}");

    // A retirement whose work reaches a paused scope waits, and says on which: the thread's
    // key is wrapped under the team's v2, and the thread is paused.
    let older = f.encrypt(&team).await;
    assert_eq!(f.act(&team, "rotate", json!({})).await.0, 200);
    assert_eq!(f.act(&thread, "pause", json!({})).await.0, 200);
    let (st, v) = f.act(&team, "retire", json!({ "version": 2 })).await;
    assert_eq!(st, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = f.job().await;
    assert_eq!(
        (job["status"].clone(), job["waiting_on"].clone()),
        (
            json!(format!("waiting on paused scope {thread}")),
            json!(thread)
        ),
        "{job}"
    );
    assert_eq!(
        f.decrypt(&older).await.0,
        200,
        "v2 still live while the job waits"
    );
    // The resume runs it at once (the periodic retry is an hour away).
    assert_eq!(f.act(&thread, "resume", json!({})).await.0, 200);
    f.job_done().await;
    let (st, _) = f.decrypt(&older).await;
    assert_eq!(st, 404, "v2 retired after the resume");

    // Revoke during a retirement waiting on the paused subtree: accepted, the job cancelled.
    assert_eq!(f.act(&team, "rotate", json!({})).await.0, 200);
    assert_eq!(f.act(&thread, "pause", json!({})).await.0, 200);
    let (st, v) = f.act(&team, "retire", json!({ "version": 3 })).await;
    assert_eq!(st, 202, "{v}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!f.job().await.is_null(), "waiting");
    let (st, v) = f.act(&team, "revoke", json!({ "confirm": team })).await;
    assert_eq!(st, 200, "revoke always wins: {v}");
    assert!(f.job().await.is_null(), "the job went with the subtree");
    let (st, v) = f.act(&thread, "rotate", json!({})).await;
    assert_eq!((st, code(&v).as_str()), (410, "scope_revoked"), "{v}");
    // Later retirements work.
    let other = f.scope(&f.org, "other").await;
    assert_eq!(f.act(&other, "rotate", json!({})).await.0, 200);
    let (st, v) = f.act(&other, "retire", json!({ "version": 1 })).await;
    assert_eq!(st, 202, "{v}");
    f.job_done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_keys_are_in_no_file() {
    let f = fixture("withdrawal-scrub", 600_000).await;
    let team = f.scope(&f.org, "team").await;
    let thread = f.scope(&team, "thread").await;
    f.encrypt(&thread).await;
    let db = f.server.data_dir.join("byok.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let wrapped: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT wrapped FROM scope_keys WHERE org_id = ? AND scope_id IN (?, ?)",
    )
    .bind(&f.org)
    .bind(&team)
    .bind(&thread)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(wrapped.len(), 2);
    let (st, v) = f.act(&team, "revoke", json!({ "confirm": team })).await;
    assert_eq!(st, 200, "{v}");
    // Every file of the data directory (database, WAL, shared memory), while the server runs.
    let mut scanned = 0;
    for entry in std::fs::read_dir(&f.server.data_dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for w in &wrapped {
            // The tag and ciphertext tail of the wrapped key: unique random bytes.
            let needle = &w[w.len() - 48..];
            assert!(
                !bytes.windows(needle.len()).any(|x| x == needle),
                "a destroyed wrapped key survives in {}",
                path.display()
            );
        }
        scanned += 1;
    }
    assert!(scanned >= 2, "database and key file scanned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_revoked_expire_and_rotate() {
    let mut f = fixture("withdrawal-tokens", 1000).await;
    let tokens = format!("/v1/orgs/{}/tokens", f.org);
    let (st, v) = f
        .api
        .post(
            &tokens,
            &f.admin,
            &json!({ "role": "service", "name": "batch" }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (id, token) = (s(&v, "id"), s(&v, "token"));
    let org_path = format!("/v1/orgs/{}", f.org);
    assert_eq!(f.api.get(&org_path, &token).await.0, 200, "cached now");
    let (st, list) = f.api.get(&tokens, &f.admin).await;
    assert_eq!(st, 200, "{list}");
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(
        (listed["name"].clone(), listed["role"].clone()),
        (json!("batch"), json!("service"))
    );
    assert!(listed["last_used_at"].is_i64(), "{listed}");
    assert!(!list.to_string().contains(&token), "never the secret");
    // Revoked: the next request is 401, although it was authenticated a moment ago.
    let (st, _) = f
        .api
        .raw("DELETE", &format!("{tokens}/{id}"), Some(&f.admin), None)
        .await;
    assert_eq!(st, 204);
    let (st, v) = f.api.get(&org_path, &token).await;
    assert_eq!((st, code(&v).as_str()), (401, "unauthenticated"), "{v}");
    let (st, _) = f
        .api
        .raw("DELETE", &format!("{tokens}/{id}"), Some(&f.admin), None)
        .await;
    assert_eq!(st, 404, "gone");
    // Expiry.
    let (_, v) = f
        .api
        .post(
            &tokens,
            &f.admin,
            &json!({ "role": "auditor", "name": "short", "expires_in_s": 1 }),
        )
        .await;
    let short = s(&v, "token");
    assert_eq!(f.api.get(&org_path, &short).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (st, v) = f.api.get(&org_path, &short).await;
    assert_eq!((st, code(&v).as_str()), (401, "unauthenticated"), "{v}");
    // Another org's admin cannot list or revoke these.
    let (st, _) = f.api.get(&tokens, &f.service).await;
    assert_eq!(st, 403);
    // The operator rotates its token: the old one stops at once.
    let operator = f.server.operator_token.clone().unwrap();
    let (st, v) = f.api.get("/v1/tokens", &operator).await;
    assert_eq!((st, v.as_array().map(Vec::len)), (200, Some(1)), "{v}");
    let (st, v) = f.api.post("/v1/tokens/rotate", &operator, &json!({})).await;
    assert_eq!(st, 201, "{v}");
    let fresh = s(&v, "token");
    let (st, _) = f.api.get("/v1/tokens", &operator).await;
    assert_eq!(st, 401, "the rotated token is dead");
    assert_eq!(f.api.get("/v1/tokens", &fresh).await.0, 200);
    // Revocations survive a restart.
    f.server.restart();
    f.api = Api::new(&f.server.url);
    assert_eq!(f.api.get(&org_path, &token).await.0, 401);
    assert_eq!(f.api.get("/v1/tokens", &operator).await.0, 401);
    assert_eq!(f.api.get("/v1/tokens", &fresh).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_racing_leases_and_decrypts_wins() {
    let f = fixture("withdrawal-race", 600_000).await;
    let team = f.scope(&f.org, "team").await;
    let ct = f.encrypt(&team).await;
    let http = reqwest::Client::new();
    let lease_url = format!("{}/v1/orgs/{}/scopes/{team}/lease", f.server.url, f.org);
    let decrypt_url = format!("{}/v1/orgs/{}/decrypt", f.server.url, f.org);
    let mut granted = Vec::new(); // request ids of leases that carried keys
    let mut late_decrypts = 0;
    const ROUNDS: usize = 300;
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for i in 0..64 {
            let (http, url, token) = (
                http.clone(),
                if i % 2 == 0 {
                    lease_url.clone()
                } else {
                    decrypt_url.clone()
                },
                f.service.clone(),
            );
            let body = if i % 2 == 0 {
                json!({})
            } else {
                json!({ "ciphertext": ct })
            };
            tasks.push(tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                let st = r.status().as_u16();
                let v: Value = serde_json::from_slice(&r.bytes().await.unwrap_or_default())
                    .unwrap_or(Value::Null);
                (i % 2 == 0, st, id, v)
            }));
        }
        // The pause lands in the middle of the burst.
        tokio::task::yield_now().await;
        let (st, v) = f.act(&team, "pause", json!({})).await;
        assert_eq!(st, 200, "{v}");
        // Anything sent after the pause answered is refused, without key material.
        let (st, v) = f.decrypt(&ct).await;
        assert_eq!((st, code(&v).as_str()), (409, "scope_paused"), "{v}");
        late_decrypts += 1;
        for t in tasks {
            let (lease, st, id, v) = t.await.unwrap();
            match st {
                200 => {
                    if lease {
                        assert!(v["keys"][0]["key"].is_string(), "{v}");
                        granted.push((round, id));
                    }
                }
                409 => assert!(v.get("keys").is_none() && v.get("plaintext").is_none()),
                other => panic!("unexpected {other}: {v}"),
            }
        }
        assert_eq!(f.act(&team, "resume", json!({})).await.0, 200);
    }
    // The audit log orders every lease that carried keys before the pause of its round.
    let mut rows = Vec::new();
    let mut after = 0;
    loop {
        let (st, page) = f
            .api
            .get(
                &format!("/v1/orgs/{}/audit?after={after}&limit=1000", f.org),
                &f.admin,
            )
            .await;
        assert_eq!(st, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["seq"].as_i64().unwrap();
        rows.extend(page);
    }
    let pauses: Vec<i64> = rows
        .iter()
        .filter(|r| r["event"]["type"] == "scope_paused")
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(pauses.len(), ROUNDS);
    for (round, id) in &granted {
        let seq = rows
            .iter()
            .find(|r| r["event"]["type"] == "lease_issued" && r["event"]["request_id"] == json!(id))
            .unwrap_or_else(|| panic!("lease {id} not audited"))["seq"]
            .as_i64()
            .unwrap();
        assert!(
            seq < pauses[*round],
            "lease {id} audited after the pause of round {round}"
        );
        if *round > 0 {
            assert!(seq > pauses[*round - 1], "lease {id} issued while paused");
        }
    }
    assert!(!granted.is_empty() && late_decrypts == ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_managed_key_is_never_replaced() {
    let mut f = fixture("withdrawal-managed", 1000).await;
    let ct = f.encrypt(&f.org).await;
    f.server.kill9();
    let data = f.server.data_dir.clone();
    let key = data.join("managed.key");
    let saved = data.with_extension("saved-key");
    std::fs::rename(&key, &saved).unwrap();
    let run = |env: Option<&str>| {
        let mut cmd = std::process::Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env_remove("BYOK_MANAGED_KEY");
        if let Some(e) = env {
            cmd.env("BYOK_MANAGED_KEY", e);
        }
        cmd.output().unwrap()
    };
    let out = run(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("restore the file"), "{err}");
    assert!(!key.exists(), "no new managed key was made");
    // Another key is refused by its check value.
    let out = run(Some(&Base64::encode_string(&[7u8; 32])));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the one this database was made with"),
        "{err}"
    );
    // The right key back: everything opens.
    std::fs::rename(&saved, &key).unwrap();
    f.server.restart();
    f.api = Api::new(&f.server.url);
    assert_eq!(f.decrypt(&ct).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_data_keys_are_never_lost_to_a_retire_or_revoke_race() {
    let f = fixture("withdrawal-datakeys", 600_000).await;
    let team = f.scope(&f.org, "team").await;
    let child = f.scope(&team, "child").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Creators store keys in the team (retired under them) and in the child (revoked under
    // them), as fast as they can.
    let mut creators = Vec::new();
    for i in 0..4 {
        let (url, token, stop) = (f.server.url.clone(), f.service.clone(), stop.clone());
        let (org, scope) = (
            f.org.clone(),
            if i % 2 == 0 {
                team.clone()
            } else {
                child.clone()
            },
        );
        creators.push(tokio::spawn(async move {
            let api = Api::new(&url);
            let mut made = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (st, v) = api
                    .post(
                        &format!("/v1/orgs/{org}/scopes/{scope}/datakeys"),
                        &token,
                        &json!({ "count": 20 }),
                    )
                    .await;
                match st {
                    201 => made.extend(
                        v["keys"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|k| (s(k, "id"), s(k, "scope"))),
                    ),
                    404 | 409 | 410 => {}
                    other => panic!("{other}: {v}"),
                }
            }
            made
        }));
    }
    // Rotate and retire the team's old version, again and again, while keys land.
    for v in 1..=12u32 {
        assert_eq!(f.act(&team, "rotate", json!({})).await.0, 200);
        let (st, body) = f.act(&team, "retire", json!({ "version": v })).await;
        assert_eq!(st, 202, "{body}");
        f.job_done().await;
        if v == 6 {
            let (st, body) = f.act(&child, "revoke", json!({ "confirm": child })).await;
            assert_eq!(st, 200, "{body}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut made = Vec::new();
    for c in creators {
        made.extend(c.await.unwrap());
    }
    // Every team key handed out still opens: none landed under a version that was destroyed.
    let team_ids: Vec<String> = made
        .iter()
        .filter(|(_, sc)| *sc == team)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        team_ids.len() > 100,
        "the race ran ({} keys)",
        team_ids.len()
    );
    for chunk in team_ids.chunks(1000) {
        let (st, v) = f
            .api
            .post(
                &format!("/v1/orgs/{}/datakeys/get", f.org),
                &f.service,
                &json!({ "ids": chunk }),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    // The revoked child has no stored key left, whatever was in flight.
    let db = f.server.data_dir.join("byok.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
        .await
        .unwrap();
    let (left, old): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM data_keys WHERE org_id = ?1 AND scope_id = ?2), \
         (SELECT COUNT(*) FROM data_keys WHERE org_id = ?1 AND scope_id = ?3 AND version < 13)",
    )
    .bind(&f.org)
    .bind(&child)
    .bind(&team)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(
        (left, old),
        (0, 0),
        "keys under a revoked scope or a retired version"
    );
}
