//! Withdrawal on a real `byok serve` (managed key, no KMS needed): retired versions stop at
//! once, revoke wins over a job waiting on a paused scope, a resume runs the waiting job at
//! once, a pause racing leases and decrypts hands out no key after it, revoked and expired
//! tokens get 401, destroyed keys are in no file of the data directory, and a missing
//! `managed.key` is never silently replaced.

use std::time::Duration;

use base64ct::{Base64, Encoding};
use byok_tests::fixtures::{OrgSettings, TestOrg, TestServer, assert_error, assert_status, now_ms};
use byok_tests::server::{Api, binary, field as s};
use serde_json::{Value, json};

/// A server with org `acme` (unwrap cache TTL `ttl_ms`).
struct Fixture {
    ts: TestServer,
    o: TestOrg,
}

async fn fixture(name: &str, ttl_ms: u64) -> Fixture {
    let ts = TestServer::start(name);
    let o = ts
        .org(OrgSettings::named("acme").cache_ttl_ms(ttl_ms))
        .await;
    Fixture { ts, o }
}

impl Fixture {
    async fn scope(&self, parent: &str, name: &str) -> String {
        self.o.scope(&self.ts, parent, name).await
    }
    async fn act(&self, scope: &str, action: &str, body: Value) -> (u16, Value) {
        self.o.act(&self.ts, scope, action, body).await
    }
    async fn encrypt(&self, scope: &str) -> String {
        self.o.seal(&self.ts, scope, b"data").await
    }
    async fn decrypt(&self, ct: &str) -> (u16, Value) {
        self.o.decrypt(&self.ts, ct).await
    }
    async fn job(&self) -> Value {
        self.o.job(&self.ts).await
    }
    async fn job_done(&self) {
        self.o.job_done(&self.ts).await;
    }
    /// Retires `version` of `scope`: accepted as a job.
    async fn retire(&self, scope: &str, version: u32) {
        let answer = self
            .act(scope, "retire", json!({ "version": version }))
            .await;
        assert_status(&answer, 202);
    }
    /// A team with a thread below it (whose key is wrapped under the team's v1), the team
    /// rotated to v2, the thread paused, and a retirement of the team's v1 waiting on the
    /// thread, saying so. Returns (team, thread, a ciphertext under v1).
    async fn retirement_waiting_on_a_pause(&self) -> (String, String, String) {
        let team = self.scope(&self.o.id, "team").await;
        let thread = self.scope(&team, "thread").await;
        let sealed = self.encrypt(&team).await;
        assert_status(&self.act(&team, "rotate", json!({})).await, 200);
        assert_status(&self.act(&thread, "pause", json!({})).await, 200);
        self.retire(&team, 1).await;
        let job = self
            .o
            .job_reaches(&self.ts, &format!("waiting on paused scope {thread}"))
            .await;
        assert_eq!(job["waiting_on"], json!(thread), "{job}");
        (team, thread, sealed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_version_stops_opening_at_once_even_when_cached() {
    // A 10-minute TTL: everything below must hold without waiting for it.
    let f = fixture("withdrawal-retire", 600_000).await;
    let team = f.scope(&f.o.id, "team").await;
    let old = f.encrypt(&team).await;
    f.o.datakeys(&f.ts, &team, 3).await;
    assert_eq!(f.decrypt(&old).await.0, 200, "cached now");
    // Retire v1: the cached key goes with it; decrypting with it is refused at once.
    assert_status(&f.act(&team, "rotate", json!({})).await, 200);
    f.retire(&team, 1).await;
    f.job_done().await;
    assert_error(&f.decrypt(&old).await, 404, "not_found");
    // Asked for by the admin, logged as such when asked (the job's own rows have no actor).
    let asked: Vec<Value> =
        f.o.audit(&f.ts, &f.o.auditor)
            .await
            .into_iter()
            .filter(|r| r["event"]["type"] == "key_retire_started")
            .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    let event = &asked[0]["event"];
    assert_eq!(
        (&event["scope"], &event["version"], &event["to"]),
        (&json!(team), &json!(1), &json!(2))
    );
    assert_eq!(event["actor"]["role"], "admin", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retirement_reaching_a_paused_scope_waits_naming_it_and_a_resume_runs_it() {
    // The thread's key is wrapped under the team's v1, and the thread is paused.
    let f = fixture("withdrawal-wait", 600_000).await;
    let (_, thread, older) = f.retirement_waiting_on_a_pause().await;
    assert_eq!(
        f.decrypt(&older).await.0,
        200,
        "v1 still live while the job waits"
    );
    // The resume runs it at once (the periodic retry is an hour away).
    assert_status(&f.act(&thread, "resume", json!({})).await, 200);
    f.job_done().await;
    let answer = f.decrypt(&older).await;
    assert_eq!(answer.0, 404, "v1 retired after the resume");
    assert_error(&answer, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_wins_over_a_retirement_waiting_on_a_pause_and_cancels_it() {
    let f = fixture("withdrawal-revoke", 600_000).await;
    let (team, thread, _) = f.retirement_waiting_on_a_pause().await;
    assert!(!f.job().await.is_null(), "waiting");
    let (st, v) = f.act(&team, "revoke", json!({ "confirm": team })).await;
    assert_eq!(st, 200, "revoke always wins: {v}");
    assert!(f.job().await.is_null(), "the job went with the subtree");
    assert_error(
        &f.act(&thread, "rotate", json!({})).await,
        410,
        "scope_revoked",
    );
    // Later retirements work.
    let other = f.scope(&f.o.id, "other").await;
    assert_status(&f.act(&other, "rotate", json!({})).await, 200);
    f.retire(&other, 1).await;
    f.job_done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_keys_are_in_no_file() {
    let f = fixture("withdrawal-scrub", 600_000).await;
    let team = f.scope(&f.o.id, "team").await;
    let thread = f.scope(&team, "thread").await;
    f.encrypt(&thread).await;
    let pool = f.ts.db(true).await;
    let wrapped: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT wrapped FROM scope_keys WHERE org_id = $1 AND scope_id IN ($2, $3)",
    )
    .bind(&f.o.id)
    .bind(&team)
    .bind(&thread)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(wrapped.len(), 2);
    assert_status(
        &f.act(&team, "revoke", json!({ "confirm": team })).await,
        200,
    );
    assert_in_no_file(&f, &wrapped, "a destroyed wrapped key");
}

/// Asserts that no file of the server's data directory (database, WAL, shared memory, key
/// file), read while the server runs, holds any of `wrapped`: its tag and ciphertext tail,
/// unique random bytes. `what` names them in the failure.
fn assert_in_no_file(f: &Fixture, wrapped: &[Vec<u8>], what: &str) {
    let mut scanned = 0;
    for entry in std::fs::read_dir(f.ts.data()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for w in wrapped {
            let needle = &w[w.len() - 48..];
            assert!(
                !bytes.windows(needle.len()).any(|x| x == needle),
                "{what} survives in {}",
                path.display()
            );
        }
        scanned += 1;
    }
    assert!(scanned >= 2, "database and key file scanned");
}

/// A stored data key deleted by id leaves no trace of its wrapped form in any file of the
/// data directory (database, write-ahead log) while the server runs: the scope key that could
/// open it still lives, so a copy left behind would undo the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stored_key_is_in_no_file() {
    let f = fixture("withdrawal-delete-scrub", 600_000).await;
    let team = f.scope(&f.o.id, "team").await;
    let keys = f.o.datakeys(&f.ts, &team, 2).await;
    let pool = f.ts.db(true).await;
    let wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM data_keys WHERE id = $1")
        .bind(&keys[0].id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let answer =
        f.ts.post(
            &f.o.path("/datakeys/delete"),
            &f.o.service,
            &json!({ "ids": [keys[0].id] }),
        )
        .await;
    assert_eq!(assert_status(&answer, 200), json!({ "deleted": 1 }));
    assert_in_no_file(&f, &[wrapped], "a deleted stored key");
    // The other key still opens.
    assert_status(
        &f.o.get_datakeys(&f.ts, std::slice::from_ref(&keys[1].id))
            .await,
        200,
    );
}

/// Creates a token in `f`'s org with `body` as the admin: (id, secret, `expires_at`).
async fn token(f: &Fixture, body: Value) -> (String, String, Option<i64>) {
    let answer = f.ts.post(&f.o.path("/tokens"), &f.o.admin, &body).await;
    let v = assert_status(&answer, 201);
    (s(&v, "id"), s(&v, "token"), v["expires_at"].as_i64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_with_name_role_and_last_use_but_never_the_secret() {
    let f = fixture("withdrawal-token-list", 1000).await;
    let (id, token, _) = token(&f, json!({ "role": "service", "name": "batch" })).await;
    assert_status(&f.ts.get(&f.o.path(""), &token).await, 200);
    let list = assert_status(&f.ts.get(&f.o.path("/tokens"), &f.o.admin).await, 200);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_token_may_not_list_tokens() {
    let f = fixture("withdrawal-token-role", 1000).await;
    let answer = f.ts.get(&f.o.path("/tokens"), &f.o.service).await;
    assert_error(&answer, 403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once_and_after_a_restart() {
    let mut f = fixture("withdrawal-token-revoke", 1000).await;
    let (id, token, _) = token(&f, json!({ "role": "service", "name": "batch" })).await;
    let org_path = f.o.path("");
    assert_eq!(f.ts.get(&org_path, &token).await.0, 200, "cached now");
    // Revoked: the next request is 401, although it was authenticated a moment ago.
    let one = f.o.path(&format!("/tokens/{id}"));
    let (st, body) = f.ts.raw("DELETE", &one, Some(&f.o.admin), None).await;
    assert_eq!(st, 200);
    // The answer carries the revocation receipt.
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["receipt"]["entry"]["event"]["action"], "token_revoked");
    assert_error(&f.ts.get(&org_path, &token).await, 401, "unauthenticated");
    let answer = f.ts.raw("DELETE", &one, Some(&f.o.admin), None).await;
    assert_eq!(answer.0, 404, "gone");
    assert_error(&answer, 404, "not_found");
    // Revocations survive a restart.
    f.ts.restart();
    assert_error(&f.ts.get(&org_path, &token).await, 401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_revoked_by_its_sixteen_digits_in_either_case() {
    let f = fixture("withdrawal-token-id", 1000).await;
    let (id, token, _) = token(&f, json!({ "role": "service", "name": "batch" })).await;
    for bad in [&id[1..], &format!("+{}", &id[1..]), &format!("{id}0")] {
        let answer =
            f.ts.raw(
                "DELETE",
                &f.o.path(&format!("/tokens/{bad}")),
                Some(&f.o.admin),
                None,
            )
            .await;
        assert_error(&answer, 400, "invalid_request");
    }
    assert_eq!(f.ts.get(&f.o.path(""), &token).await.0, 200, "still works");
    // The id as the OpenAPI pattern allows it, in capitals: the same token.
    let upper = f.o.path(&format!("/tokens/{}", id.to_ascii_uppercase()));
    let (st, body) = f.ts.raw("DELETE", &upper, Some(&f.o.admin), None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["id"], json!(id), "named as listed");
    assert_error(
        &f.ts.get(&f.o.path(""), &token).await,
        401,
        "unauthenticated",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_expires_at_its_expiry_time() {
    let f = fixture("withdrawal-token-expiry", 1000).await;
    let body = json!({ "role": "auditor", "name": "short", "expires_in_s": 1 });
    let issued_after = now_ms();
    let (_, short, expires_at) = token(&f, body).await;
    let issued_before = now_ms();
    let expires_at = expires_at.expect("a token made with expires_in_s has expires_at");
    assert!(
        (issued_after + 1000..=issued_before + 1000).contains(&expires_at),
        "expires_at {expires_at} is not issue time + 1 s ({issued_after}..={issued_before})"
    );
    let org_path = f.o.path("");
    assert_eq!(f.ts.get(&org_path, &short).await.0, 200);
    // The server reads the wall clock for token expiry and the shortest lifetime the API takes
    // is one second: this waits for real time, to just past the expiry the server announced.
    let left = u64::try_from(expires_at + 50 - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(left)).await;
    assert_error(&f.ts.get(&org_path, &short).await, 401, "unauthenticated");
}

/// A token never makes one that outlives it: an admin token about to expire cannot leave an
/// admin token behind that never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cannot_make_one_that_outlives_it() {
    let f = fixture("withdrawal-token-outlive", 1000).await;
    let body = json!({ "role": "admin", "name": "brief", "expires_in_s": 600 });
    let (_, brief, expires_at) = token(&f, body).await;
    let (ts, path) = (&f.ts, f.o.path("/tokens"));
    let make = |body: Value| {
        let (path, brief) = (path.clone(), brief.clone());
        async move { ts.post(&path, &brief, &body).await }
    };
    let forever = make(json!({ "role": "admin", "name": "forever" })).await;
    assert_eq!(
        assert_status(&forever, 201)["expires_at"].as_i64(),
        expires_at,
        "made without an expiry, it ends with its maker"
    );
    let later = make(json!({ "role": "admin", "name": "later", "expires_in_s": 3600 })).await;
    assert_error(&later, 400, "invalid_request");
    let sooner = make(json!({ "role": "service", "name": "sooner", "expires_in_s": 60 })).await;
    assert_status(&sooner, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_rotates_its_token_and_the_old_one_stops_at_once() {
    let mut f = fixture("withdrawal-token-rotate", 1000).await;
    let operator = f.ts.operator.clone();
    let v = assert_status(&f.ts.get("/v1/tokens", &operator).await, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    let rotated = f.ts.post("/v1/tokens/rotate", &operator, &json!({})).await;
    let fresh = s(&assert_status(&rotated, 201), "token");
    let answer = f.ts.get("/v1/tokens", &operator).await;
    assert_eq!(answer.0, 401, "the rotated token is dead");
    assert_error(&answer, 401, "unauthenticated");
    assert_eq!(f.ts.get("/v1/tokens", &fresh).await.0, 200);
    // The rotation survives a restart.
    f.ts.restart();
    assert_error(
        &f.ts.get("/v1/tokens", &operator).await,
        401,
        "unauthenticated",
    );
    assert_eq!(f.ts.get("/v1/tokens", &fresh).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_racing_leases_and_decrypts_wins() {
    let f = fixture("withdrawal-race", 600_000).await;
    let team = f.scope(&f.o.id, "team").await;
    let ct = f.encrypt(&team).await;
    let http = reqwest::Client::new();
    let lease_url = format!("{}{}", f.ts.url, f.o.scope_path(&team, "lease"));
    let decrypt_url = format!("{}{}", f.ts.url, f.o.path("/decrypt"));
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
                f.o.service.clone(),
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
        assert_status(&f.act(&team, "pause", json!({})).await, 200);
        // Anything sent after the pause answered is refused, without key material.
        assert_error(&f.decrypt(&ct).await, 409, "scope_paused");
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
                409 => {
                    assert!(v.get("keys").is_none() && v.get("plaintext").is_none());
                    assert_error(&(st, v), 409, "scope_paused");
                }
                other => panic!("unexpected {other}: {v}"),
            }
        }
        assert_eq!(f.act(&team, "resume", json!({})).await.0, 200);
    }
    // The audit log orders every lease that carried keys before the pause of its round.
    let rows = f.o.audit(&f.ts, &f.o.admin).await;
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
    let ct = f.o.seal(&f.ts, &f.o.id, b"data").await;
    f.ts.server.kill9();
    let data = f.ts.data();
    let key = data.join("managed.key");
    let saved = data.with_extension("saved-key");
    std::fs::rename(&key, &saved).unwrap();
    let run = |env: Option<&str>| {
        let mut cmd = std::process::Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env_remove("BYOK_MANAGED_KEY");
        // The same database as the server's (PostgreSQL when the suite runs on it).
        if let Some(url) = f.ts.server.database_url() {
            cmd.env("BYOK_DATABASE_URL", url);
        }
        if let Some(e) = env {
            cmd.env("BYOK_MANAGED_KEY", e);
        }
        cmd.output().unwrap()
    };
    let out = run(None);
    // 1: the server itself stopped (the configuration was fine).
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("restore the file"), "{err}");
    assert!(!key.exists(), "no new managed key was made");
    // Another key is refused by its check value.
    let out = run(Some(&Base64::encode_string(&[7u8; 32])));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the one this database was made with"),
        "{err}"
    );
    // The right key back: everything opens.
    std::fs::rename(&saved, &key).unwrap();
    f.ts.restart();
    assert_eq!(f.decrypt(&ct).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_data_keys_are_never_lost_to_a_retire_or_revoke_race() {
    let f = fixture("withdrawal-datakeys", 600_000).await;
    let team = f.scope(&f.o.id, "team").await;
    let child = f.scope(&team, "child").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let revoked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Creators store keys in the team (retired under them) and in the child (revoked under
    // them), as fast as they can.
    let mut creators = Vec::new();
    for i in 0..4 {
        let (api, o, stop) = (Api::new(&f.ts.url), f.o.clone(), stop.clone());
        let revoked = revoked.clone();
        let scope = if i % 2 == 0 {
            team.clone()
        } else {
            child.clone()
        };
        creators.push(tokio::spawn(async move {
            let mut made = Vec::new();
            let path = o.scope_path(&scope, "datakeys");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Sent after the revoke's answer: nothing may be stored in the child (its
                // rows are no longer deleted by the revoke itself, but swept after it).
                let after = revoked.load(std::sync::atomic::Ordering::SeqCst);
                let (st, v) = api.post(&path, &o.service, &json!({ "count": 20 })).await;
                assert!(
                    !(after && st == 201 && i % 2 == 1),
                    "keys stored in the child after its revoke: {v}"
                );
                match st {
                    201 => made.extend(
                        v["keys"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|k| (s(k, "id"), s(k, "scope"))),
                    ),
                    404 => drop(assert_error(&(st, v), 404, "not_found")),
                    409 => drop(assert_error(&(st, v), 409, "scope_paused")),
                    410 => drop(assert_error(&(st, v), 410, "scope_revoked")),
                    other => panic!("{other}: {v}"),
                }
            }
            made
        }));
    }
    // Rotate and retire the team's old version, again and again, while keys land.
    for v in 1..=12u32 {
        assert_status(&f.act(&team, "rotate", json!({})).await, 200);
        f.retire(&team, v).await;
        f.job_done().await;
        if v == 6 {
            let confirm = json!({ "confirm": child });
            assert_status(&f.act(&child, "revoke", confirm).await, 200);
            revoked.store(true, std::sync::atomic::Ordering::SeqCst);
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
        assert_status(&f.o.get_datakeys(&f.ts, chunk).await, 200);
    }
    // The revoked child has no stored key left once swept (whatever was in flight: none
    // landed after the revoke), and no key is left under a retired version.
    let pool = f.ts.db(true).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (left, old): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM data_keys WHERE org_id = $1 AND scope_id = $2), \
             (SELECT COUNT(*) FROM data_keys WHERE org_id = $1 AND scope_id = $3 AND version < 13)",
        )
        .bind(&f.o.id)
        .bind(&child)
        .bind(&team)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(old, 0, "keys under a retired version");
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} keys of the revoked scope never swept"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
}
