//! `byok serve` end to end: a real server process, real HTTP, real SQLite. Managed-mode orgs
//! (AWS keys are added through the API in their own test).

use base64ct::{Base64, Encoding};
use byok_tests::server::{Api, Server, metric, temp_dir};
use byok_tests::server::{error_code as code, field as s};
use serde_json::{Value, json};

/// An org with admin, service and auditor tokens.
struct Org {
    id: String,
    admin: String,
    service: String,
    auditor: String,
}

async fn org(api: &Api, operator: &str, name: &str, ttl_ms: u64) -> Org {
    let (st, v) = api
        .post(
            "/v1/orgs",
            operator,
            &json!({ "name": name, "unwrap_cache_ttl_ms": ttl_ms }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (id, admin) = (s(&v, "id"), s(&v, "admin_token"));
    let mut tokens = Vec::new();
    for role in ["service", "auditor"] {
        let (st, v) = api
            .post(
                &format!("/v1/orgs/{id}/tokens"),
                &admin,
                &json!({ "role": role, "name": role }),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        tokens.push(s(&v, "token"));
    }
    let auditor = tokens.pop().unwrap();
    let service = tokens.pop().unwrap();
    Org {
        id,
        admin,
        service,
        auditor,
    }
}

async fn scope(api: &Api, o: &Org, parent: &str, name: &str) -> String {
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/scopes", o.id),
            &o.admin,
            &json!({ "parent": parent, "name": name }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    s(&v, "id")
}

async fn encrypt(api: &Api, o: &Org, scope: &str, data: &[u8]) -> (u16, Value) {
    api.post(
        &format!("/v1/orgs/{}/scopes/{scope}/encrypt", o.id),
        &o.service,
        &json!({ "plaintext": Base64::encode_string(data), "context": { "tenant": "t1" } }),
    )
    .await
}

async fn decrypt(api: &Api, o: &Org, ct: &str) -> (u16, Value) {
    api.post(
        &format!("/v1/orgs/{}/decrypt", o.id),
        &o.service,
        &json!({ "ciphertext": ct, "context": { "tenant": "t1" } }),
    )
    .await
}

async fn opens(api: &Api, o: &Org, ct: &str, data: &[u8]) -> Result<(), (u16, Value)> {
    let (st, v) = decrypt(api, o, ct).await;
    if st == 200 {
        assert_eq!(Base64::decode_vec(&s(&v, "plaintext")).unwrap(), data);
        Ok(())
    } else {
        Err((st, v))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_tree_pause_resume_revoke_and_restart() {
    let dir = temp_dir("tree");
    let mut server = Server::start(&dir.join("data"), &[]);
    let operator = server
        .operator_token
        .clone()
        .expect("first start prints a token");
    let mut api = Api::new(&server.url);
    let o = org(&api, &operator, "acme", 300_000).await;

    // org → team-a → thread-1, and a sibling team-b.
    let team_a = scope(&api, &o, &o.id, "team-a").await;
    let thread = scope(&api, &o, &team_a, "thread-1").await;
    let team_b = scope(&api, &o, &o.id, "team-b").await;
    let mut sealed = Vec::new();
    for (i, sc) in [&o.id, &team_a, &thread, &team_b].into_iter().enumerate() {
        let data = format!("secret at level {i}").into_bytes();
        let (st, v) = encrypt(&api, &o, sc, &data).await;
        assert_eq!(st, 200, "{v}");
        let ct = s(&v, "ciphertext");
        assert!(ct.starts_with("byok:v1:"));
        opens(&api, &o, &ct, &data).await.unwrap();
        sealed.push((sc.clone(), ct, data));
    }

    // Pause the middle: its subtree fails naming team-a, the sibling and the org still work.
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/scopes/{team_a}/pause", o.id),
            &o.admin,
            &json!({}),
        )
        .await;
    assert_eq!((st, s(&v, "effective")), (200, "paused".into()), "{v}");
    for (sc, ct, data) in &sealed {
        let under = sc == &team_a || sc == &thread;
        match opens(&api, &o, ct, data).await {
            Ok(()) => assert!(!under, "{sc} decrypted while paused"),
            Err((st, v)) => {
                assert!(under, "{sc} failed: {v}");
                assert_eq!((st, code(&v).as_str()), (409, "scope_paused"), "{v}");
                let msg = v.pointer("/error/message").unwrap().as_str().unwrap();
                assert!(msg.contains(&team_a), "the paused scope is named: {msg}");
            }
        }
    }
    let (st, v) = encrypt(&api, &o, &thread, b"x").await;
    assert_eq!((st, code(&v).as_str()), (409, "scope_paused"), "{v}");
    let (_, v) = api
        .get(&format!("/v1/orgs/{}/scopes/{thread}", o.id), &o.admin)
        .await;
    assert_eq!(
        (s(&v, "state"), s(&v, "effective"), s(&v, "effective_by")),
        ("active".into(), "paused".into(), team_a.clone())
    );
    // Resuming the child does not bypass the paused parent.
    api.post(
        &format!("/v1/orgs/{}/scopes/{thread}/resume", o.id),
        &o.admin,
        &json!({}),
    )
    .await;
    assert!(opens(&api, &o, &sealed[2].1, &sealed[2].2).await.is_err());
    let (st, _) = api
        .post(
            &format!("/v1/orgs/{}/scopes/{team_a}/resume", o.id),
            &o.admin,
            &json!({}),
        )
        .await;
    assert_eq!(st, 200);
    for (_, ct, data) in &sealed {
        opens(&api, &o, ct, data).await.unwrap();
    }

    // Rotation: new data uses v2, old data still opens.
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/scopes/{team_b}/rotate", o.id),
            &o.admin,
            &json!({}),
        )
        .await;
    assert_eq!((st, v["key_version"].as_u64()), (200, Some(2)), "{v}");
    opens(&api, &o, &sealed[3].1, &sealed[3].2).await.unwrap();
    let (_, v) = encrypt(&api, &o, &team_b, b"after rotation").await;
    opens(&api, &o, &s(&v, "ciphertext"), b"after rotation")
        .await
        .unwrap();

    // Stored data keys under the thread, to be destroyed with it.
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/scopes/{thread}/datakeys", o.id),
            &o.service,
            &json!({ "count": 3 }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let stored_ids: Vec<String> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| s(k, "id"))
        .collect();

    // Revoke needs the id typed back; then the subtree is gone, also after a restart.
    let revoke = format!("/v1/orgs/{}/scopes/{team_a}/revoke", o.id);
    let (st, v) = api
        .post(&revoke, &o.admin, &json!({ "confirm": "yes" }))
        .await;
    assert_eq!((st, code(&v).as_str()), (400, "confirmation_mismatch"));
    let (st, v) = api
        .post(&revoke, &o.admin, &json!({ "confirm": team_a }))
        .await;
    assert_eq!((st, s(&v, "effective")), (200, "revoked".into()), "{v}");
    server.restart();
    api = Api::new(&server.url);
    for (sc, ct, data) in &sealed {
        let gone = sc == &team_a || sc == &thread;
        match opens(&api, &o, ct, data).await {
            Ok(()) => assert!(!gone, "{sc} decrypted after revocation"),
            Err((st, v)) => {
                assert!(gone, "{sc} failed after restart: {v}");
                assert_eq!((st, code(&v).as_str()), (410, "scope_revoked"), "{v}");
            }
        }
    }
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/scopes/{team_a}/resume", o.id),
            &o.admin,
            &json!({}),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_str()),
        (410, "scope_revoked"),
        "final: {v}"
    );
    let (st, v) = encrypt(&api, &o, &thread, b"x").await;
    assert_eq!((st, code(&v).as_str()), (410, "scope_revoked"), "{v}");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/datakeys/get", o.id),
            &o.service,
            &json!({ "ids": stored_ids }),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_str()),
        (404, "not_found"),
        "destroyed: {v}"
    );

    // The tree as listed, and the audit chain over all of it.
    let (st, v) = api
        .get(&format!("/v1/orgs/{}/scopes", o.id), &o.auditor)
        .await;
    assert_eq!((st, v.as_array().map(Vec::len)), (200, Some(4)), "{v}");
    let (st, v) = api
        .get(&format!("/v1/orgs/{}/audit/verify", o.id), &o.auditor)
        .await;
    assert_eq!((st, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let (_, rows) = api
        .get(&format!("/v1/orgs/{}/audit?limit=1000", o.id), &o.auditor)
        .await;
    let types: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["type"].as_str().unwrap())
        .collect();
    for t in [
        "org_created",
        "scope_created",
        "scope_paused",
        "scope_resumed",
        "key_rotated",
        "scope_revoked",
        "root_unwrapped",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }
    // No key bytes or tokens anywhere in the log.
    let log = server.log();
    for secret in [&operator, &o.admin, &o.service] {
        assert!(!log.contains(secret.as_str()), "a token reached the log");
    }
    drop(server);

    // Tamper with one row in the database: verify names it.
    let db = format!("sqlite://{}", dir.join("data/byok.db").display());
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    sqlx::query(
        r#"UPDATE audit SET event = replace(event, '"auditor"', '"admin"') WHERE org_id = ? AND seq = 5"#,
    )
    .bind(&o.id)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let server = Server::start(&dir.join("data"), &[]);
    let api = Api::new(&server.url);
    let (_, v) = api
        .get(&format!("/v1/orgs/{}/audit/verify", o.id), &o.auditor)
        .await;
    assert_eq!(
        (v["ok"].as_bool(), v["first_broken"].as_i64()),
        (Some(false), Some(5)),
        "{v}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_are_isolated_and_bad_input_gets_typed_4xx() {
    let dir = temp_dir("isolation");
    let server = Server::start(&dir.join("data"), &[]);
    let operator = server.operator_token.clone().unwrap();
    let api = Api::new(&server.url);
    let a = org(&api, &operator, "a", 300_000).await;
    let b = org(&api, &operator, "b", 300_000).await;
    let a_team = scope(&api, &a, &a.id, "team").await;
    let (_, v) = encrypt(&api, &a, &a_team, b"a's data").await;
    let a_ct = s(&v, "ciphertext");
    let mut statuses = Vec::new();

    // Every token of org b, on every endpoint of org a: not found, never data.
    let a_paths = [
        ("GET", format!("/v1/orgs/{}", a.id)),
        ("GET", format!("/v1/orgs/{}/scopes", a.id)),
        ("GET", format!("/v1/orgs/{}/scopes/{a_team}", a.id)),
        ("POST", format!("/v1/orgs/{}/scopes/{a_team}/pause", a.id)),
        ("POST", format!("/v1/orgs/{}/scopes/{a_team}/encrypt", a.id)),
        ("POST", format!("/v1/orgs/{}/decrypt", a.id)),
        ("POST", format!("/v1/orgs/{}/tokens", a.id)),
        ("GET", format!("/v1/orgs/{}/audit", a.id)),
        ("GET", format!("/v1/orgs/{}/audit/verify", a.id)),
    ];
    let body = json!({ "ciphertext": a_ct, "plaintext": "AA==", "role": "admin", "name": "x" });
    for token in [&b.admin, &b.service, &b.auditor] {
        for (m, p) in &a_paths {
            let (st, v) = if *m == "GET" {
                api.get(p, token).await
            } else {
                api.post(p, token, &body).await
            };
            assert!(st == 404 || st == 400, "{m} {p}: {st} {v}");
            assert!(v.get("error").is_some(), "{v}");
            statuses.push(st);
        }
    }
    // Org b's own decrypt with a's ciphertext: b cannot learn a's scope exists.
    let (st, v) = decrypt(&api, &b, &a_ct).await;
    assert_eq!((st, code(&v).as_str()), (404, "not_found"), "{v}");
    // The operator cannot read org data either.
    let (st, _) = api
        .get(&format!("/v1/orgs/{}/scopes", a.id), &operator)
        .await;
    assert_eq!(st, 404);

    // Roles within the org.
    let (st, v) = encrypt(
        &api,
        &Org {
            service: a.auditor.clone(),
            ..org_copy(&a)
        },
        &a_team,
        b"x",
    )
    .await;
    assert_eq!((st, code(&v).as_str()), (403, "forbidden"), "{v}");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/scopes/{a_team}/pause", a.id),
            &a.service,
            &json!({}),
        )
        .await;
    assert_eq!((st, code(&v).as_str()), (403, "forbidden"), "{v}");
    let (st, v) = api
        .post("/v1/orgs", &a.admin, &json!({ "name": "x" }))
        .await;
    assert_eq!((st, code(&v).as_str()), (403, "forbidden"), "{v}");

    // Missing, forged and malformed tokens.
    let p = format!("/v1/orgs/{}/scopes", a.id);
    for auth in [
        None,
        Some("byok_forged0000000000000000000000000000000000"),
        Some("not-a-token"),
        Some(""),
    ] {
        let (st, v) = api.raw("GET", &p, auth, None).await;
        assert_eq!(
            (st, code(&v).as_str()),
            (401, "unauthenticated"),
            "{auth:?}"
        );
    }

    // Malformed bodies, ids, ciphertexts and contexts.
    let enc = format!("/v1/orgs/{}/scopes/{a_team}/encrypt", a.id);
    let dec = format!("/v1/orgs/{}/decrypt", a.id);
    // (method, path, content type, body, status, code)
    type Case<'a> = (&'a str, String, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            enc.clone(),
            "application/json",
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            enc.clone(),
            "application/json",
            b"[]".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            enc.clone(),
            "text/plain",
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            enc.clone(),
            "application/json",
            br#"{"plaintext":"!!"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            enc.clone(),
            "application/json",
            br#"{"plaintext":"AA==","extra":1}"#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            enc.clone(),
            "application/json",
            br#"{"plaintext":"AA==","context":{"byok:org":"x"}}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            enc.clone(),
            "application/json",
            vec![b' '; (6 << 20) + 64],
            413,
            "too_large",
        ),
        (
            "POST",
            dec.clone(),
            "application/json",
            br#"{"ciphertext":"byok:v1:AAAA"}"#.to_vec(),
            400,
            "malformed_ciphertext",
        ),
        (
            "POST",
            dec.clone(),
            "application/json",
            br#"{"ciphertext":"hello"}"#.to_vec(),
            400,
            "malformed_ciphertext",
        ),
        (
            "POST",
            dec.clone(),
            "application/json",
            json!({"ciphertext": a_ct, "context": {"tenant": "other"}})
                .to_string()
                .into_bytes(),
            400,
            "decrypt_failed",
        ),
        (
            "POST",
            format!("/v1/orgs/{}/scopes/zz/encrypt", a.id),
            "application/json",
            br#"{"plaintext":"AA=="}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            format!("/v1/orgs/{}/scopes/{}/encrypt", a.id, "0".repeat(32)),
            "application/json",
            br#"{"plaintext":"AA=="}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/orgs/..%2f..%2fetc/scopes".into(),
            "",
            vec![],
            400,
            "invalid_request",
        ),
        ("GET", "/v1/nothing".into(), "", vec![], 404, "not_found"),
        (
            "DELETE",
            format!("/v1/orgs/{}", a.id),
            "",
            vec![],
            405,
            "method_not_allowed",
        ),
    ];
    for (m, p, ct, b, want, want_code) in cases {
        let body = (!ct.is_empty()).then_some((ct, b));
        // The server answers an oversized body before reading it and closes that connection;
        // a fresh client keeps the pooled one out of the race.
        let oversized = body.as_ref().is_some_and(|(_, b)| b.len() > 6 << 20);
        let (st, v) = if oversized {
            Api::new(&api.url).raw(m, &p, Some(&a.service), body).await
        } else {
            api.raw(m, &p, Some(&a.service), body).await
        };
        let got_code = code(&v);
        assert_eq!((st, got_code.as_str()), (want, want_code), "{m} {p}: {v}");
        assert!(v.pointer("/error/request_id").is_some(), "{v}");
        statuses.push(st);
    }
    // A flipped byte anywhere in a ciphertext: a typed 400, never a 5xx.
    let raw = byok_core::format::armor::decode(&a_ct).unwrap();
    for i in (0..raw.len()).step_by(7) {
        let mut t = raw.clone();
        t[i] ^= 0x01;
        let (st, v) = decrypt(&api, &a, &byok_core::format::armor::encode(&t)).await;
        assert!((400..500).contains(&st), "byte {i}: {st} {v}");
        statuses.push(st);
    }
    assert!(statuses.iter().all(|s| *s < 500));
    assert!(!server.log().contains("panicked"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn org_copy(o: &Org) -> Org {
    Org {
        id: o.id.clone(),
        admin: o.admin.clone(),
        service: o.service.clone(),
        auditor: o.auditor.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwrap_cache_ttl_bounds_root_unwraps() {
    let dir = temp_dir("ttl");
    let server = Server::start(&dir.join("data"), &[]);
    let operator = server.operator_token.clone().unwrap();
    let api = Api::new(&server.url);
    let unwraps = async || metric(&server.url, "byok_root_unwraps_total").await;
    // TTL 0: every use goes back to the root holder.
    let strict = org(&api, &operator, "strict", 0).await;
    let before = unwraps().await;
    for _ in 0..5 {
        let (st, _) = encrypt(&api, &strict, &strict.id, b"x").await;
        assert_eq!(st, 200);
    }
    assert_eq!(unwraps().await - before, 5);
    // TTL 5 min: one unwrap for many uses.
    let cached = org(&api, &operator, "cached", 300_000).await;
    let before = unwraps().await;
    for _ in 0..20 {
        let (st, _) = encrypt(&api, &cached, &cached.id, b"x").await;
        assert_eq!(st, 200);
    }
    assert_eq!(unwraps().await - before, 1);
    // Data keys: fresh key and wrapped form; unwrapping gives the same key; the wrapped form
    // is not a ciphertext the decrypt call opens.
    let (st, dk) = api
        .post(
            &format!("/v1/orgs/{}/scopes/{}/datakey", cached.id, cached.id),
            &cached.service,
            &json!({ "context": { "file": "a" } }),
        )
        .await;
    assert_eq!(st, 200, "{dk}");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/datakey/unwrap", cached.id),
            &cached.service,
            &json!({ "wrapped": s(&dk, "wrapped"), "context": { "file": "a" } }),
        )
        .await;
    assert_eq!((st, s(&v, "key")), (200, s(&dk, "key")), "{v}");
    let (st, _) = api
        .post(
            &format!("/v1/orgs/{}/datakey/unwrap", cached.id),
            &cached.service,
            &json!({ "wrapped": s(&dk, "wrapped"), "context": { "file": "b" } }),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = api
        .post(
            &format!("/v1/orgs/{}/decrypt", cached.id),
            &cached.service,
            &json!({ "ciphertext": s(&dk, "wrapped"), "context": { "file": "a" } }),
        )
        .await;
    assert_eq!(st, 400);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_leases_and_streaming_cli() {
    let dir = temp_dir("lease");
    let server = Server::start(&dir.join("data"), &[]);
    let operator = server.operator_token.clone().unwrap();
    let api = Api::new(&server.url);
    let o = org(&api, &operator, "edge", 300_000).await;
    let team = scope(&api, &o, &o.id, "team").await;
    let lease_path = |sc: &str| format!("/v1/orgs/{}/scopes/{sc}/lease", o.id);

    // A lease holds every live version of the scope's key, never the root key.
    let (st, v) = api.post(&lease_path(&team), &o.service, &json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["current_version"], 1);
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    assert!(v["expires_at"].as_i64().unwrap() > 0);
    let (st, v) = api.post(&lease_path(&o.id), &o.service, &json!({})).await;
    assert_eq!((st, code(&v).as_str()), (400, "invalid_request"), "{v}");
    let (st, _) = api.post(&lease_path(&team), &o.admin, &json!({})).await;
    assert_eq!(st, 403, "leases are for service tokens");

    // The CLI streams a file through a lease: constant memory, same format, any size.
    let input = dir.join("input.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(byok_tests::server::binary())
            .args(args)
            .env("BYOK_SERVER", &server.url)
            .env("BYOK_TOKEN", &o.service)
            .output()
            .unwrap()
    };
    let sealed = dir.join("sealed.byok");
    let out = cli(&[
        "encrypt",
        "--org",
        &o.id,
        "--scope",
        &team,
        "--stream",
        "--context",
        "file=a",
        input.to_str().unwrap(),
        "-o",
        sealed.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opened = dir.join("opened.bin");
    let out = cli(&[
        "decrypt",
        "--org",
        &o.id,
        "--context",
        "file=a",
        sealed.to_str().unwrap(),
        "-o",
        opened.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&opened).unwrap(), data);
    // A wrong context fails with exit code 1 and leaves no output file.
    let refused = dir.join("refused.bin");
    let out = cli(&[
        "decrypt",
        "--org",
        &o.id,
        "--context",
        "file=b",
        sealed.to_str().unwrap(),
        "-o",
        refused.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!refused.exists());

    // Paused: renewal is refused, and so is the CLI.
    api.post(
        &format!("/v1/orgs/{}/scopes/{team}/pause", o.id),
        &o.admin,
        &json!({}),
    )
    .await;
    let (st, v) = api.post(&lease_path(&team), &o.service, &json!({})).await;
    assert_eq!((st, code(&v).as_str()), (409, "scope_paused"), "{v}");
    let out = cli(&[
        "decrypt",
        "--org",
        &o.id,
        "--context",
        "file=a",
        sealed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scope_paused"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
