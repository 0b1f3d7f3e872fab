//! `byok serve` end to end: a real server process, real HTTP, real SQLite. Managed-mode orgs
//! (AWS keys are added through the API in their own test). Each test is named after what it
//! proves, and pins every refusal to its exact status and error code.

use std::path::PathBuf;
use std::process::Output;

use byok_tests::fixtures::{
    OrgSettings, TestOrg, TestServer, assert_error, assert_status, error_message, now_ms,
};
use byok_tests::server::{Api, binary, cli_ok, field as s, metric};
use serde_json::{Value, json};

/// The context every ciphertext of these tests is sealed with.
fn t1() -> Value {
    json!({ "tenant": "t1" })
}

/// org → team-a → thread-1, and a sibling team-b, with data sealed at every level.
struct Tree {
    ts: TestServer,
    o: TestOrg,
    team_a: String,
    thread: String,
    team_b: String,
    /// (scope, ciphertext, plaintext) at the org, team-a, thread-1 and team-b.
    sealed: Vec<(String, String, Vec<u8>)>,
}

impl Tree {
    async fn new(name: &str) -> Self {
        let ts = TestServer::start(name);
        let o = ts.org(OrgSettings::named("acme")).await;
        let team_a = o.scope(&ts, &o.id, "team-a").await;
        let thread = o.scope(&ts, &team_a, "thread-1").await;
        let team_b = o.scope(&ts, &o.id, "team-b").await;
        let mut sealed = Vec::new();
        for (i, sc) in [&o.id, &team_a, &thread, &team_b].into_iter().enumerate() {
            let data = format!("secret at level {i}").into_bytes();
            let v = assert_status(&o.encrypt_in(&ts, sc, &data, &t1()).await, 200);
            let ct = s(&v, "ciphertext");
            assert!(ct.starts_with("byok:v1:"), "{ct}");
            o.opens_in(&ts, &ct, &t1(), &data).await.unwrap();
            sealed.push((sc.clone(), ct, data));
        }
        Self {
            ts,
            o,
            team_a,
            thread,
            team_b,
            sealed,
        }
    }

    async fn opens(&self, i: usize) -> Result<(), (u16, Value)> {
        let (_, ct, data) = &self.sealed[i];
        self.o.opens_in(&self.ts, ct, &t1(), data).await
    }

    async fn all_open(&self) {
        for i in 0..self.sealed.len() {
            self.opens(i).await.unwrap();
        }
    }

    async fn act(&self, scope: &str, action: &str, body: Value) -> (u16, Value) {
        self.o.act(&self.ts, scope, action, body).await
    }

    async fn pause_team_a(&self) {
        let v = assert_status(&self.act(&self.team_a, "pause", json!({})).await, 200);
        assert_eq!(s(&v, "effective"), "paused", "{v}");
    }

    async fn revoke_team_a(&self) {
        let confirm = json!({ "confirm": self.team_a });
        let v = assert_status(&self.act(&self.team_a, "revoke", confirm).await, 200);
        assert_eq!(s(&v, "effective"), "revoked", "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_level_of_a_scope_tree_seals_and_opens() {
    Tree::new("tree-levels").await.all_open().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_team_refuses_its_subtree_with_scope_paused_naming_it() {
    let t = Tree::new("tree-pause").await;
    t.pause_team_a().await;
    // Its subtree fails naming team-a; the sibling and the org still work.
    for (i, (sc, _, _)) in t.sealed.iter().enumerate() {
        let under = sc == &t.team_a || sc == &t.thread;
        match t.opens(i).await {
            Ok(()) => assert!(!under, "{sc} decrypted while paused"),
            Err(answer) => {
                assert!(under, "{sc} failed: {answer:?}");
                let v = assert_error(&answer, 409, "scope_paused");
                let msg = error_message(&v);
                assert!(msg.contains(&t.team_a), "the paused scope is named: {msg}");
            }
        }
    }
    let encrypt = t.o.encrypt_in(&t.ts, &t.thread, b"x", &t1()).await;
    assert_error(&encrypt, 409, "scope_paused");
    let path = t.o.path(&format!("/scopes/{}", t.thread));
    let v = assert_status(&t.ts.get(&path, &t.o.admin).await, 200);
    assert_eq!(
        (s(&v, "state"), s(&v, "effective"), s(&v, "effective_by")),
        ("active".into(), "paused".into(), t.team_a.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_child_does_not_bypass_a_paused_parent() {
    let t = Tree::new("tree-resume").await;
    t.pause_team_a().await;
    t.act(&t.thread, "resume", json!({})).await;
    assert_error(&t.opens(2).await.unwrap_err(), 409, "scope_paused");
    // Resuming the paused parent itself opens everything again.
    assert_status(&t.act(&t.team_a, "resume", json!({})).await, 200);
    t.all_open().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_scope_seals_under_v2_and_still_opens_v1_data() {
    let t = Tree::new("tree-rotate").await;
    let v = assert_status(&t.act(&t.team_b, "rotate", json!({})).await, 200);
    assert_eq!(v["key_version"].as_u64(), Some(2), "{v}");
    t.opens(3).await.unwrap();
    let v = assert_status(
        &t.o.encrypt_in(&t.ts, &t.team_b, b"after rotation", &t1())
            .await,
        200,
    );
    let fresh = s(&v, "ciphertext");
    t.o.opens_in(&t.ts, &fresh, &t1(), b"after rotation")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_needs_the_scope_id_typed_back() {
    let t = Tree::new("tree-confirm").await;
    let wrong = t
        .act(&t.team_a, "revoke", json!({ "confirm": "yes" }))
        .await;
    assert_error(&wrong, 400, "confirmation_mismatch");
    t.all_open().await;
    t.revoke_team_a().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_subtree_and_its_stored_keys_stay_gone_after_a_restart() {
    let mut t = Tree::new("tree-revoke").await;
    let stored: Vec<String> =
        t.o.datakeys(&t.ts, &t.thread, 3)
            .await
            .into_iter()
            .map(|k| k.id)
            .collect();
    t.revoke_team_a().await;
    t.ts.restart();
    for (i, (sc, _, _)) in t.sealed.iter().enumerate() {
        let gone = sc == &t.team_a || sc == &t.thread;
        match t.opens(i).await {
            Ok(()) => assert!(!gone, "{sc} decrypted after revocation"),
            Err(answer) => {
                assert!(gone, "{sc} failed after restart: {answer:?}");
                assert_error(&answer, 410, "scope_revoked");
            }
        }
    }
    let resume = t.act(&t.team_a, "resume", json!({})).await;
    assert_error(&resume, 410, "scope_revoked");
    // A call on a descendant names the scope whose revoke decided it, as a decrypt does.
    let encrypt = t.o.encrypt_in(&t.ts, &t.thread, b"x", &t1()).await;
    let v = assert_error(&encrypt, 410, "scope_revoked");
    let under = format!("scope {} is under revoked scope {}", t.thread, t.team_a);
    assert!(s(&v["error"], "message").starts_with(&under), "{v}");
    assert_error(&t.o.get_datakeys(&t.ts, &stored).await, 404, "not_found");
}

/// An org keeps at most `--max-stored-keys` stored data keys: a call that would pass the limit
/// gets `409 stored_key_quota` saying how many, and stores none; revoking a scope gives its
/// keys' room back. Another org has room of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_keeps_at_most_its_stored_key_limit_and_a_revoke_gives_room_back() {
    let ts = TestServer::start_with("stored-key-quota", |data| {
        byok_tests::server::Server::start(data, &[("BYOK_MAX_STORED_KEYS", "25")])
    });
    let o = ts.org(OrgSettings::named("acme")).await;
    let other = ts.org(OrgSettings::named("other")).await;
    let (team, gone) = (
        o.scope(&ts, &o.id, "team").await,
        o.scope(&ts, &o.id, "gone").await,
    );
    let ask = |org: &TestOrg, scope: &str, count: usize| {
        let path = org.scope_path(scope, "datakeys");
        let (ts, token) = (&ts, org.service.clone());
        async move { ts.post(&path, &token, &json!({ "count": count })).await }
    };
    assert_eq!(o.datakeys(&ts, &team, 10).await.len(), 10);
    assert_eq!(o.datakeys(&ts, &gone, 10).await.len(), 10);
    let refused = ask(&o, &team, 6).await;
    let v = assert_error(&refused, 409, "stored_key_quota");
    assert!(
        error_message(&v).starts_with("the org keeps 20 stored data keys and may keep 25: 6 more"),
        "{v}"
    );
    // Nothing was stored by the refused call: five more still fit, then none. The org's
    // summary says how many it keeps, of how many.
    assert_eq!(o.datakeys(&ts, &team, 5).await.len(), 5);
    let info = assert_status(&ts.get(&o.path(""), &o.admin).await, 200);
    assert_eq!(
        (&info["stored_keys"], &info["max_stored_keys"]),
        (&json!(25), &json!(25)),
        "{info}"
    );
    assert_error(&ask(&o, &team, 1).await, 409, "stored_key_quota");
    // A refused call is no use of the scope's key: a token that was only refused has no
    // `scope_used` mark (the quota is checked before the mark is written).
    let (refused_id, refused_token) = o.token(&ts, "service", "refused").await;
    let path = o.scope_path(&team, "datakeys");
    let refused = ts.post(&path, &refused_token, &json!({ "count": 1 })).await;
    assert_error(&refused, 409, "stored_key_quota");
    let marks = || async {
        o.audit(&ts, &o.auditor)
            .await
            .into_iter()
            .filter(|r| r["event"]["type"] == "scope_used")
            .filter(|r| r["event"]["actor"]["token"] == refused_id.as_str())
            .count()
    };
    assert_eq!(marks().await, 0, "a refused call marked a use");
    let elsewhere = other.scope(&ts, &other.id, "team").await;
    assert_eq!(other.datakeys(&ts, &elsewhere, 25).await.len(), 25);
    // Revoking `gone` destroys its ten keys (none opens from the revoke on) and frees their
    // room as the sweep deletes their rows, in the background at once.
    let confirm = json!({ "confirm": gone });
    assert_status(&o.act(&ts, &gone, "revoke", confirm).await, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let info = assert_status(&ts.get(&o.path(""), &o.admin).await, 200);
        if info["stored_keys"] == json!(15) {
            break;
        }
        assert_eq!(info["stored_keys"], json!(25), "{info}");
        assert!(std::time::Instant::now() < deadline, "never swept: {info}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_status(
        &ts.post(&path, &refused_token, &json!({ "count": 1 })).await,
        201,
    );
    assert_eq!(marks().await, 1, "an admitted call is marked");
    assert_eq!(o.datakeys(&ts, &team, 9).await.len(), 9);
    assert_error(&ask(&o, &team, 1).await, 409, "stored_key_quota");
}

/// A stored data key deleted by id never opens again, for anyone; the others stay; the org's
/// room grows by as many; the log says how many went. Deleting is idempotent, for service
/// tokens only, and never reaches another org's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stored_key_never_opens_again_and_frees_its_room() {
    let ts = TestServer::start("stored-key-delete");
    let o = ts.org(OrgSettings::named("acme")).await;
    let other = ts.org(OrgSettings::named("other")).await;
    let team = o.scope(&ts, &o.id, "team").await;
    let keys = o.datakeys(&ts, &team, 3).await;
    let ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
    let delete = |org: &TestOrg, token: &str, ids: Vec<String>| {
        let path = org.path("/datakeys/delete");
        let (ts, token) = (&ts, token.to_owned());
        async move { ts.post(&path, &token, &json!({ "ids": ids })).await }
    };
    // Another org's service token, on its own org: none of these ids is its.
    let v = assert_status(&delete(&other, &other.service, ids.clone()).await, 200);
    assert_eq!(v, json!({ "deleted": 0 }));
    assert_error(&delete(&o, &o.admin, ids.clone()).await, 403, "forbidden");
    assert_error(
        &delete(&o, &o.service, vec!["not-an-id".into()]).await,
        400,
        "invalid_request",
    );
    // Two of them (one named in upper case), and an id never stored.
    let unknown = "0123456789abcdef0123456789abcdef".to_owned();
    let named = vec![ids[0].to_ascii_uppercase(), ids[1].clone(), unknown];
    let v = assert_status(&delete(&o, &o.service, named.clone()).await, 200);
    assert_eq!(v, json!({ "deleted": 2 }));
    for id in &ids[..2] {
        assert_error(
            &o.get_datakeys(&ts, std::slice::from_ref(id)).await,
            404,
            "not_found",
        );
    }
    let kept = assert_status(&o.get_datakeys(&ts, &ids[2..]).await, 200);
    assert_eq!(kept["keys"][0]["key"], json!(*keys[2].key), "{kept}");
    let v = assert_status(&delete(&o, &o.service, named).await, 200);
    assert_eq!(v, json!({ "deleted": 0 }), "deleting again");
    let info = assert_status(&ts.get(&o.path(""), &o.admin).await, 200);
    assert_eq!(info["stored_keys"], json!(1), "{info}");
    let log = assert_status(
        &ts.get(&o.path("/audit?kind=data_keys_deleted"), &o.admin)
            .await,
        200,
    );
    let events: Vec<(&Value, &Value)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e["event"]["count"], &e["event"]["ids"]))
        .collect();
    // The ids deleted, sorted, in lower case: not the unknown one.
    let mut gone = ids[..2].to_vec();
    gone.sort();
    assert_eq!(events, [(&json!(2), &json!(gone))], "{log}");
    // The CLI's `datakey delete`.
    let out = cli_ok(
        &["datakey", "delete", "--org", &o.id, &ids[2]],
        &[("BYOK_SERVER", &ts.url), ("BYOK_TOKEN", &o.service)],
    );
    assert_eq!(String::from_utf8(out).unwrap().trim(), "deleted 1");
    assert_error(&o.get_datakeys(&ts, &ids[2..]).await, 404, "not_found");
}

/// Ctrl-C while a streamed encrypt writes its output file (its temporary file holding the
/// header and frames so far, the input still open) ends byok with 130 and leaves neither the
/// target nor the temporary file: no destructor runs on a signal, so the CLI removes the files
/// it is writing before it exits. (A decrypt's temporary file holds plaintext.) A signal it
/// was started with ignored (`nohup`: SIGHUP) stays ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_leaves_no_partial_output_file() {
    use std::io::Write as _;
    let ts = TestServer::start("cli-interrupt");
    let o = ts.org(OrgSettings::named("acme")).await;
    let team = o.scope(&ts, &o.id, "team").await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.byok");
    let (url, service, org) = (ts.url.clone(), o.service.clone(), o.id.clone());
    let listed = dir.path().to_owned();
    let status = tokio::task::spawn_blocking(move || {
        // Under nohup: SIGHUP ignored, as it must stay.
        let mut child = std::process::Command::new("nohup")
            .arg(binary())
            .env("BYOK_SERVER", url)
            .env("BYOK_TOKEN", service)
            .args(["encrypt", "--stream", "--org", &org, "--scope", &team, "-o"])
            .arg(&target)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(&vec![7u8; 300 * 1024]).unwrap();
        // Frames reach the temporary file while the input stays open.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let written = std::fs::read_dir(&listed).unwrap().any(|e| {
                let e = e.unwrap();
                e.file_name().to_string_lossy().ends_with(".byok-tmp")
                    && e.metadata().unwrap().len() > 64 * 1024
            });
            if written {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no frame was written");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let pid = child.id().to_string();
        let kill = |signal: &str| {
            // The shell's own `kill` (sh is always there; /bin/kill is procps, not essential).
            let sent = std::process::Command::new("sh")
                .args(["-c", &format!("kill {signal} {pid}")])
                .status()
                .unwrap();
            assert!(sent.success());
        };
        kill("-HUP");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "an ignored SIGHUP ended byok"
        );
        kill("-INT");
        let out = child.wait_with_output().unwrap();
        drop(input);
        out
    })
    .await
    .unwrap();
    assert_eq!(
        status.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The CLI's commands that print secrets (they print from the answer's own bytes, wiped when
/// dropped) print what the API gives: a new token that works, a data key and its wrapped form,
/// stored keys that `datakey get` gives back the same, a lease of the scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_secrets_it_is_asked_for() {
    let ts = TestServer::start("cli-secrets");
    let o = ts.org(OrgSettings::named("acme")).await;
    let team = o.scope(&ts, &o.id, "team").await;
    let run = |token: &str, args: &[&str]| {
        let out = cli_ok(args, &[("BYOK_SERVER", &ts.url), ("BYOK_TOKEN", token)]);
        String::from_utf8(out).unwrap()
    };
    // A service token made by the CLI (human output: its last word is the token) works.
    let made = run(
        &o.admin,
        &[
            "token", "create", "--org", &o.id, "--role", "service", "--name", "cli",
        ],
    );
    assert!(made.starts_with("service token "), "{made}");
    let service = made.split_whitespace().last().unwrap().to_owned();
    let key = run(
        &service,
        &["datakey", "new", "--org", &o.id, "--scope", &team],
    );
    let lines: Vec<&str> = key.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].starts_with("key ") && lines[1].starts_with("wrapped "),
        "{key}"
    );
    let created = run(
        &service,
        &[
            "datakey", "create", "--org", &o.id, "--scope", &team, "--count", "2", "--json",
        ],
    );
    let created: Value = serde_json::from_str(&created).unwrap();
    let first = &created["keys"][0];
    let got = run(
        &service,
        &["datakey", "get", "--org", &o.id, &s(first, "id")],
    );
    assert_eq!(
        got.trim(),
        format!("{}  {}  v1", s(first, "id"), s(first, "key")),
        "{got}"
    );
    let lease = run(&service, &["scope", "lease", "--org", &o.id, &team]);
    let lease: Value = serde_json::from_str(&lease).unwrap();
    assert_eq!(s(&lease, "scope"), team, "{lease}");
    // `org create`'s first admin token (the last word of its second line) works.
    let made = run(&ts.operator, &["org", "create", "beta"]);
    let admin = made.split_whitespace().last().unwrap();
    assert!(
        made.starts_with("org ") && admin.starts_with("byok_"),
        "{made}"
    );
    let id = made.split_whitespace().nth(1).unwrap();
    let shown = run(admin, &["org", "show", "--org", id, "--json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(s(&shown, "name"), "beta", "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_the_trees_history_and_no_token_reaches_the_log() {
    let t = Tree::new("tree-audit").await;
    t.pause_team_a().await;
    assert_status(&t.act(&t.team_a, "resume", json!({})).await, 200);
    assert_status(&t.act(&t.team_b, "rotate", json!({})).await, 200);
    t.revoke_team_a().await;
    let (ts, o) = (&t.ts, &t.o);
    let v = assert_status(&ts.get(&o.path("/scopes"), &o.auditor).await, 200);
    assert_eq!(v.as_array().map(Vec::len), Some(4), "{v}");
    let v = assert_status(&ts.get(&o.path("/audit/verify"), &o.auditor).await, 200);
    assert_eq!(v["ok"].as_bool(), Some(true), "{v}");
    let rows = o.audit(ts, &o.auditor).await;
    let types: Vec<&str> = rows
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
    let log = ts.server.log();
    for secret in [&ts.operator, &o.admin, &o.service] {
        assert!(!log.contains(secret.as_str()), "a token reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_a_row_tampered_with_in_the_database() {
    let mut ts = TestServer::start("audit-tamper");
    let o = ts.org(OrgSettings::named("acme")).await;
    ts.server.kill9();
    let pool = ts.db(false).await;
    sqlx::query(
        r#"UPDATE audit SET event = replace(event, '"auditor"', '"admin"') WHERE org_id = $1 AND seq = 5"#,
    )
    .bind(&o.id)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    ts.restart();
    let (_, v) = ts.get(&o.path("/audit/verify"), &o.auditor).await;
    assert_eq!(
        (v["ok"].as_bool(), v["first_broken"].as_i64()),
        (Some(false), Some(5)),
        "{v}"
    );
}

/// Two orgs, `a` with a scope `team` and a ciphertext sealed in it, and `b`.
struct TwoOrgs {
    ts: TestServer,
    a: TestOrg,
    b: TestOrg,
    a_team: String,
    a_ct: String,
}

impl TwoOrgs {
    async fn new(name: &str) -> Self {
        let ts = TestServer::start(name);
        let a = ts.org(OrgSettings::named("a")).await;
        let b = ts.org(OrgSettings::named("b")).await;
        let a_team = a.scope(&ts, &a.id, "team").await;
        let v = assert_status(&a.encrypt_in(&ts, &a_team, b"a's data", &t1()).await, 200);
        let a_ct = s(&v, "ciphertext");
        Self {
            ts,
            a,
            b,
            a_team,
            a_ct,
        }
    }

    /// Asserts that the server logged no panic.
    fn no_panic(&self) {
        assert!(!self.ts.server.log().contains("panicked"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_orgs_tokens_get_not_found_on_every_endpoint() {
    let t = TwoOrgs::new("isolation-tokens").await;
    let (a, team) = (&t.a, &t.a_team);
    // Each call with a body this endpoint takes, so that only the org can be wrong.
    let none = json!({});
    let encrypt = json!({ "plaintext": "AA==" });
    let decrypt = json!({ "ciphertext": t.a_ct, "context": t1() });
    let token = json!({ "role": "admin", "name": "x" });
    let a_paths = [
        ("GET", a.path(""), &none),
        ("GET", a.path("/scopes"), &none),
        ("GET", a.path(&format!("/scopes/{team}")), &none),
        ("POST", a.scope_path(team, "pause"), &none),
        ("POST", a.scope_path(team, "encrypt"), &encrypt),
        ("POST", a.path("/decrypt"), &decrypt),
        ("POST", a.path("/tokens"), &token),
        ("GET", a.path("/audit"), &none),
        ("GET", a.path("/audit/verify"), &none),
    ];
    for token in [&t.b.admin, &t.b.service, &t.b.auditor] {
        for (m, p, body) in &a_paths {
            let answer = if *m == "GET" {
                t.ts.get(p, token).await
            } else {
                t.ts.post(p, token, body).await
            };
            assert_eq!(answer.0, 404, "{m} {p}: {answer:?}");
            assert_error(&answer, 404, "not_found");
        }
    }
    t.no_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_org_cannot_learn_that_a_ciphertexts_scope_exists() {
    let t = TwoOrgs::new("isolation-ciphertext").await;
    let answer = t.b.decrypt_in(&t.ts, &t.a_ct, &t1()).await;
    assert_error(&answer, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_cannot_read_org_data() {
    let t = TwoOrgs::new("isolation-operator").await;
    let answer = t.ts.get(&t.a.path("/scopes"), &t.ts.operator).await;
    assert_error(&answer, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_forbidden_what_it_may_not_do() {
    let t = TwoOrgs::new("isolation-roles").await;
    let (ts, a) = (&t.ts, &t.a);
    // An auditor does not encrypt.
    let as_auditor = TestOrg {
        service: a.auditor.clone(),
        ..a.clone()
    };
    let answer = as_auditor.encrypt_in(ts, &t.a_team, b"x", &t1()).await;
    assert_error(&answer, 403, "forbidden");
    // A service token does not pause.
    let answer = ts
        .post(&a.scope_path(&t.a_team, "pause"), &a.service, &json!({}))
        .await;
    assert_error(&answer, 403, "forbidden");
    // An org admin does not create orgs.
    let answer = ts.post("/v1/orgs", &a.admin, &json!({ "name": "x" })).await;
    assert_error(&answer, 403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_and_malformed_tokens_are_unauthenticated() {
    let t = TwoOrgs::new("isolation-auth").await;
    let p = t.a.path("/scopes");
    for auth in [
        None,
        Some("byok_forged0000000000000000000000000000000000"),
        Some("not-a-token"),
        Some(""),
    ] {
        let answer = t.ts.raw("GET", &p, auth, None).await;
        assert_eq!(answer.0, 401, "{auth:?}");
        assert_error(&answer, 401, "unauthenticated");
    }
    // Every 401 says how to authenticate (RFC 9110); other refusals carry no challenge.
    let reply = t.ts.reply(&p, "byok_forged", None).await;
    assert_eq!(
        (reply.status, reply.header("www-authenticate")),
        (401, Some("Bearer realm=\"byok\""))
    );
    let reply = t.ts.reply(&t.a.path("/tokens"), &t.a.service, None).await;
    assert_eq!(
        (reply.status, reply.header("www-authenticate")),
        (403, None)
    );
    let reply = t.ts.reply(&t.b.path("/scopes"), &t.a.admin, None).await;
    assert_eq!(
        (reply.status, reply.header("www-authenticate")),
        (404, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_ids_ciphertexts_and_contexts_get_typed_errors() {
    let t = TwoOrgs::new("isolation-malformed").await;
    let (ts, a) = (&t.ts, &t.a);
    let enc = a.scope_path(&t.a_team, "encrypt");
    let dec = a.path("/decrypt");
    let json_ct = "application/json";
    let wrong_context = json!({"ciphertext": t.a_ct, "context": {"tenant": "other"}});
    // (method, path, content type, body, status, code)
    type Case<'a> = (&'a str, String, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            enc.clone(),
            json_ct,
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            enc.clone(),
            json_ct,
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
            json_ct,
            br#"{"plaintext":"!!"}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            enc.clone(),
            json_ct,
            br#"{"plaintext":"AA==","extra":1}"#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            enc.clone(),
            json_ct,
            br#"{"plaintext":"AA==","context":{"byok:org":"x"}}"#.to_vec(),
            400,
            "invalid_request",
        ),
        // A context key given twice is refused, not silently reduced to one value.
        (
            "POST",
            enc.clone(),
            json_ct,
            br#"{"plaintext":"AA==","context":{"k":"1","k":"2"}}"#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            dec.clone(),
            json_ct,
            br#"{"ciphertext":"x","context":{"k":"1","k":"1"}}"#.to_vec(),
            400,
            "malformed_json",
        ),
        (
            "POST",
            enc.clone(),
            json_ct,
            vec![b' '; (6 << 20) + 64],
            413,
            "too_large",
        ),
        // A body under the 6 MiB limit whose plaintext is over 4 MiB: too large as well.
        (
            "POST",
            enc.clone(),
            json_ct,
            format!(
                r#"{{"plaintext":"{}"}}"#,
                <base64ct::Base64 as base64ct::Encoding>::encode_string(&vec![7u8; (4 << 20) + 3])
            )
            .into_bytes(),
            413,
            "too_large",
        ),
        (
            "POST",
            dec.clone(),
            json_ct,
            br#"{"ciphertext":"byok:v1:AAAA"}"#.to_vec(),
            400,
            "malformed_ciphertext",
        ),
        (
            "POST",
            dec.clone(),
            json_ct,
            br#"{"ciphertext":"hello"}"#.to_vec(),
            400,
            "malformed_ciphertext",
        ),
        (
            "POST",
            dec.clone(),
            json_ct,
            wrong_context.to_string().into_bytes(),
            400,
            "decrypt_failed",
        ),
        (
            "POST",
            a.scope_path("zz", "encrypt"),
            json_ct,
            br#"{"plaintext":"AA=="}"#.to_vec(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            a.scope_path(&"0".repeat(32), "encrypt"),
            json_ct,
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
        ("DELETE", a.path(""), "", vec![], 405, "method_not_allowed"),
        // A path segment that is not UTF-8: the API's error, not axum's plain text.
        (
            "POST",
            a.scope_path("%FF", "datakey"),
            json_ct,
            b"{}".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "POST",
            a.scope_path("%FF", "pause"),
            json_ct,
            b"{}".to_vec(),
            400,
            "invalid_request",
        ),
    ];
    for (m, p, ct, b, want, want_code) in cases {
        let body = (!ct.is_empty()).then_some((ct, b));
        // The server answers an oversized body before reading it and closes that connection;
        // a fresh client keeps the pooled one out of the race.
        let oversized = body.as_ref().is_some_and(|(_, b)| b.len() > 6 << 20);
        let answer = if oversized {
            Api::new(&ts.url).raw(m, &p, Some(&a.service), body).await
        } else {
            ts.raw(m, &p, Some(&a.service), body).await
        };
        assert_eq!(answer.0, want, "{m} {p}: {answer:?}");
        assert_error(&answer, want, want_code);
    }
    // A query parameter of the wrong type, likewise.
    let answer = ts.get(&a.path("/audit?limit=many"), &a.admin).await;
    assert_error(&answer, 400, "invalid_request");
    // An admin route refuses another role before it reads the body: 403, not a parse error.
    for p in [
        a.path("/tokens"),
        a.path("/scopes"),
        a.path("/keys"),
        a.path("/keys/validate"),
        a.path("/keys/cmk:1/disable"),
        a.scope_path(&a.id, "revoke"),
        a.scope_path(&a.id, "retire"),
    ] {
        let body = Some(("application/json", b"{".to_vec()));
        let answer = ts.raw("POST", &p, Some(&a.service), body).await;
        assert_error(&answer, 403, "forbidden");
    }
    let body = Some(("application/json", b"{".to_vec()));
    let answer = ts.raw("PATCH", &a.path(""), Some(&a.service), body).await;
    assert_error(&answer, 403, "forbidden");
    // Likewise the operator's route, for an org's admin.
    let body = Some(("application/json", b"{".to_vec()));
    let answer = ts.raw("POST", "/v1/orgs", Some(&a.admin), body).await;
    assert_error(&answer, 403, "forbidden");
    // Out of range: refused, not clamped to another number.
    for limit in ["0", "1001", "-5"] {
        for page in ["/audit", "/audit/checkpoints"] {
            let answer = ts
                .get(&a.path(&format!("{page}?limit={limit}")), &a.admin)
                .await;
            assert_error(&answer, 400, "invalid_request");
        }
    }
    t.no_panic();
}

/// What decrypting a ciphertext with byte `i` flipped must answer (docs/format.md, section 2:
/// magic 0..4, version 4, suite 5, mode 6, frame_log2 7, scope id 8..24, key version 24..28,
/// then salt, commitment, nonce-free body and tag, all authenticated).
fn flipped_byte_answer(i: usize) -> (u16, &'static str) {
    match i {
        0..=3 | 6 | 7 => (400, "malformed_ciphertext"),
        4 | 5 => (400, "unsupported_ciphertext"),
        8..=27 => (404, "not_found"),
        _ => (400, "decrypt_failed"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_anywhere_in_a_ciphertext_gets_its_typed_4xx() {
    let t = TwoOrgs::new("isolation-tamper").await;
    let raw = byok_core::format::armor::decode(&t.a_ct).unwrap();
    for i in (0..raw.len()).step_by(7) {
        let mut flipped = raw.clone();
        flipped[i] ^= 0x01;
        let ct = byok_core::format::armor::encode(&flipped);
        let answer = t.a.decrypt_in(&t.ts, &ct, &t1()).await;
        let (status, code) = flipped_byte_answer(i);
        assert_eq!(answer.0, status, "byte {i}: {answer:?}");
        assert_error(&answer, status, code);
    }
    t.no_panic();
}

async fn root_unwraps(ts: &TestServer) -> u64 {
    metric(&ts.url, &ts.operator, "byok_root_unwraps_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_unwrap_cache_ttl_unwraps_the_root_on_every_use() {
    let ts = TestServer::start("ttl-zero");
    let strict = ts.org(OrgSettings::named("strict").cache_ttl_ms(0)).await;
    let before = root_unwraps(&ts).await;
    for _ in 0..5 {
        strict.seal(&ts, &strict.id, b"x").await;
    }
    assert_eq!(root_unwraps(&ts).await - before, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_minute_unwrap_cache_ttl_unwraps_the_root_once_for_many_uses() {
    let ts = TestServer::start("ttl-cached");
    let cached = ts.org(OrgSettings::named("cached")).await;
    let before = root_unwraps(&ts).await;
    for _ in 0..20 {
        cached.seal(&ts, &cached.id, b"x").await;
    }
    assert_eq!(root_unwraps(&ts).await - before, 1);
}

/// A fresh data key in org scope `o` for context `file=a`: (key, wrapped).
async fn datakey(ts: &TestServer, o: &TestOrg) -> (String, String) {
    let answer = ts
        .post(
            &o.scope_path(&o.id, "datakey"),
            &o.service,
            &json!({ "context": { "file": "a" } }),
        )
        .await;
    let dk = assert_status(&answer, 200);
    (s(&dk, "key"), s(&dk, "wrapped"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_data_key_unwraps_to_the_same_key_in_its_own_context_only() {
    let ts = TestServer::start("datakey-unwrap");
    let o = ts.org(OrgSettings::named("cached")).await;
    let (key, wrapped) = datakey(&ts, &o).await;
    let unwrap = async |file: &str| {
        let body = json!({ "wrapped": wrapped, "context": { "file": file } });
        ts.post(&o.path("/datakey/unwrap"), &o.service, &body).await
    };
    let v = assert_status(&unwrap("a").await, 200);
    assert_eq!(s(&v, "key"), key, "{v}");
    assert_error(&unwrap("b").await, 400, "decrypt_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_data_key_is_not_a_ciphertext_decrypt_opens() {
    let ts = TestServer::start("datakey-decrypt");
    let o = ts.org(OrgSettings::named("cached")).await;
    let (_, wrapped) = datakey(&ts, &o).await;
    let answer = o.decrypt_in(&ts, &wrapped, &json!({ "file": "a" })).await;
    assert_error(&answer, 400, "malformed_ciphertext");
}

/// A server with org `edge` (default lease TTL) and its scope `team`.
async fn edge(name: &str) -> (TestServer, TestOrg, String) {
    TestServer::edge(name, OrgSettings::named("edge").lease_ttl_ms).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holds_every_live_version_until_issue_time_plus_the_lease_ttl() {
    let (ts, o, team) = edge("lease-expiry").await;
    let issued_after = now_ms();
    let answer = ts
        .post(&o.scope_path(&team, "lease"), &o.service, &json!({}))
        .await;
    let issued_before = now_ms();
    let v = assert_status(&answer, 200);
    assert_eq!(v["current_version"], 1);
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    let ttl = i64::try_from(o.lease_ttl_ms).unwrap();
    let expires_at = v["expires_at"].as_i64().unwrap();
    // The server stamps expiry on its monotonic clock mapped to the wall clock at its start:
    // allow the two clocks a few ms apart.
    assert!(
        (issued_after + ttl - 20..=issued_before + ttl + 20).contains(&expires_at),
        "expires_at {expires_at} is not issue time + {ttl} ms (issued in {issued_after}..={issued_before})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_never_outlives_the_cached_root_its_keys_come_from() {
    // A 3 s unwrap cache and a 60 s lease: the lease ends with the root's TTL, so a withdrawal
    // at the key holder reaches an edge within the cache TTL, as it reaches the server.
    let ts = TestServer::start("lease-root-ttl");
    let settings = OrgSettings {
        lease_ttl_ms: 60_000,
        ..OrgSettings::named("edge").cache_ttl_ms(3_000)
    };
    let o = ts.org(settings).await;
    let team = o.scope(&ts, &o.id, "team").await;
    for round in 0..2 {
        let issued_after = now_ms();
        let v = assert_status(
            &ts.post(&o.scope_path(&team, "lease"), &o.service, &json!({}))
                .await,
            200,
        );
        let issued_before = now_ms();
        let expires_at = v["expires_at"].as_i64().unwrap();
        assert!(
            expires_at > issued_after && expires_at <= issued_before + 3_000 + 20,
            "round {round}: expires_at {expires_at}, issued in {issued_after}..={issued_before}"
        );
        // Past the TTL the root is unwrapped again, and the next lease gets a new TTL's worth.
        tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    }
    // An org that asks its key holder on every use gets no lease: an edge could not ask.
    let every_use = ts
        .org(OrgSettings {
            lease_ttl_ms: 60_000,
            ..OrgSettings::named("every-use").cache_ttl_ms(0)
        })
        .await;
    let scope = every_use.scope(&ts, &every_use.id, "team").await;
    let v = assert_error(
        &ts.post(
            &every_use.scope_path(&scope, "lease"),
            &every_use.service,
            &json!({}),
        )
        .await,
        400,
        "invalid_request",
    );
    assert!(
        error_message(&v).contains("unwrap_cache_ttl_ms is 0"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_scope_is_never_leased() {
    let (ts, o, _) = edge("lease-root").await;
    let answer = ts
        .post(&o.scope_path(&o.id, "lease"), &o.service, &json!({}))
        .await;
    assert_error(&answer, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_names_its_audience_in_the_log_and_a_bad_one_is_refused() {
    let (ts, o, team) = edge("lease-audience").await;
    let path = o.scope_path(&team, "lease");
    for bad in [
        json!({ "audience": "" }),
        json!({ "audience": "a b" }),
        json!({ "audience": "x".repeat(129) }),
    ] {
        assert_error(
            &ts.post(&path, &o.service, &bad).await,
            400,
            "invalid_request",
        );
    }
    assert_error(
        &ts.post(&path, &o.service, &json!({ "audiences": "x" }))
            .await,
        400,
        "malformed_json",
    );
    let body = json!({ "audience": "workers/eu-west:prod-1" });
    assert_status(&ts.post(&path, &o.service, &body).await, 200);
    let issued: Vec<Value> = o
        .audit(&ts, &o.auditor)
        .await
        .into_iter()
        .filter(|r| r["event"]["type"] == "lease_issued")
        .collect();
    assert_eq!(issued.len(), 1, "refusals grant nothing: {issued:?}");
    assert_eq!(issued[0]["event"]["audience"], "workers/eu-west:prod-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_for_service_tokens_only() {
    let (ts, o, team) = edge("lease-role").await;
    let answer = ts
        .post(&o.scope_path(&team, "lease"), &o.admin, &json!({}))
        .await;
    assert_error(&answer, 403, "forbidden");
}

/// A file streamed through the CLI into `sealed.byok` under `team` with context `file=a`.
struct Streamed {
    ts: TestServer,
    o: TestOrg,
    team: String,
    data: Vec<u8>,
    sealed: PathBuf,
}

impl Streamed {
    async fn new(name: &str) -> Self {
        let (ts, o, team) = edge(name).await;
        let input = ts.dir.join("input.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&input, &data).unwrap();
        let sealed = ts.dir.join("sealed.byok");
        let s = Self {
            ts,
            o,
            team,
            data,
            sealed,
        };
        let out = s.cli(&[
            "encrypt",
            "--org",
            &s.o.id,
            "--scope",
            &s.team,
            "--stream",
            "--context",
            "file=a",
            input.to_str().unwrap(),
            "-o",
            s.sealed.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        s
    }

    fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(binary())
            .args(args)
            .env("BYOK_SERVER", &self.ts.url)
            .env("BYOK_TOKEN", &self.o.service)
            .output()
            .unwrap()
    }

    /// `byok decrypt` of the sealed file with `context`, to `out` if given.
    fn decrypt(&self, context: &str, out: Option<&PathBuf>) -> Output {
        let mut args = vec!["decrypt", "--org", &self.o.id, "--context", context];
        args.push(self.sealed.to_str().unwrap());
        if let Some(out) = out {
            args.extend(["-o", out.to_str().unwrap()]);
        }
        self.cli(&args)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_streams_a_file_through_a_lease_and_opens_it() {
    let s = Streamed::new("cli-stream").await;
    let opened = s.ts.dir.join("opened.bin");
    let out = s.decrypt("file=a", Some(&opened));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&opened).unwrap(), s.data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_fails_a_wrong_context_with_exit_1_and_no_output_file() {
    let s = Streamed::new("cli-context").await;
    let refused = s.ts.dir.join("refused.bin");
    let out = s.decrypt("file=b", Some(&refused));
    assert_eq!(out.status.code(), Some(1));
    assert!(!refused.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_scope_refuses_lease_renewal_and_the_cli_says_scope_paused() {
    let s = Streamed::new("cli-paused").await;
    assert_status(&s.o.act(&s.ts, &s.team, "pause", json!({})).await, 200);
    let answer =
        s.ts.post(&s.o.scope_path(&s.team, "lease"), &s.o.service, &json!({}))
            .await;
    assert_error(&answer, 409, "scope_paused");
    let out = s.decrypt("file=a", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scope_paused"));
}

/// The `org_settings_changed` events of `o`'s audit log.
/// The org's `org_settings_changed` events, each checked to name the admin who made it as its
/// actor, which is then left out.
async fn settings_changes(ts: &TestServer, o: &TestOrg) -> Vec<Value> {
    o.audit(ts, &o.auditor)
        .await
        .into_iter()
        .map(|row| row["event"].clone())
        .filter(|e| e["type"] == "org_settings_changed")
        .map(|mut e| {
            assert_eq!(e["actor"]["role"], "admin", "{e}");
            e.as_object_mut().unwrap().remove("actor");
            e
        })
        .collect()
}

/// A server named `name` with org `acme` (unwrap cache TTL one minute), the org's path, and
/// its summary as the org's admin reads it.
async fn org_with_a_minute_ttl(name: &str) -> (TestServer, TestOrg, String, Value) {
    let ts = TestServer::start(name);
    let o = ts
        .org(OrgSettings::named("acme").cache_ttl_ms(60_000))
        .await;
    let org = o.path("");
    let v = assert_status(&ts.get(&org, &o.admin).await, 200);
    (ts, o, org, v)
}

/// The org's admin tightens the withdrawal bound (the unwrap cache TTL, down to 0: every use
/// asks the key holder) and the lease TTL, at once, and may loosen them back up to what the
/// operator created the org with, never past it. Audited, and kept across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_tightens_the_withdrawal_bound_never_past_the_operators() {
    let (mut ts, o, org, v) = org_with_a_minute_ttl("ttl-settings").await;
    assert_eq!(
        (&v["max_unwrap_cache_ttl_ms"], &v["max_lease_ttl_ms"]),
        (&json!(60_000), &json!(60_000)),
        "{v}"
    );
    let unwraps = async || {
        let rows = o.audit(&ts, &o.auditor).await;
        rows.iter()
            .filter(|r| r["event"]["type"] == "root_unwrapped")
            .count()
    };
    let team = o.scope(&ts, &o.id, "team").await;
    let sealed = o.seal(&ts, &team, b"x").await;
    o.seal(&ts, &team, b"y").await;
    let cached = unwraps().await;
    o.seal(&ts, &team, b"z").await;
    assert_eq!(unwraps().await, cached, "the root is cached for a minute");

    // Down to 0: from the next call on, every use asks the key holder.
    let none = json!({ "unwrap_cache_ttl_ms": 0 });
    let v = assert_status(&ts.patch(&org, &o.admin, &none).await, 200);
    assert_eq!(v["unwrap_cache_ttl_ms"], 0, "{v}");
    assert_status(&o.decrypt(&ts, &sealed).await, 200);
    assert_status(&o.decrypt(&ts, &sealed).await, 200);
    assert_eq!(unwraps().await, cached + 2, "a key was used from the cache");
    // No grace without a cache, in the same call or after.
    let both = json!({ "unwrap_cache_ttl_ms": 0, "outage_grace_ms": 1 });
    assert_error(
        &ts.patch(&org, &o.admin, &both).await,
        400,
        "invalid_request",
    );

    // Back up to the operator's setting, not past it; the lease TTL likewise.
    for (field, over) in [("unwrap_cache_ttl_ms", 60_001), ("lease_ttl_ms", 60_001)] {
        let answer = ts.patch(&org, &o.admin, &json!({ field: over })).await;
        assert_error(&answer, 400, "invalid_request");
        let message = error_message(&answer.1);
        assert!(
            message.contains(&format!("{field} is at most 60000")),
            "{message}"
        );
    }
    let back = json!({ "unwrap_cache_ttl_ms": 60_000, "lease_ttl_ms": 5_000 });
    let v = assert_status(&ts.patch(&org, &o.admin, &back).await, 200);
    assert_eq!(
        (&v["unwrap_cache_ttl_ms"], &v["lease_ttl_ms"]),
        (&json!(60_000), &json!(5_000))
    );
    assert_error(&ts.patch(&org, &o.service, &none).await, 403, "forbidden");
    assert_eq!(
        settings_changes(&ts, &o).await,
        vec![
            json!({ "type": "org_settings_changed",
                "unwrap_cache_ttl_ms": { "from": 60_000, "to": 0 } }),
            json!({ "type": "org_settings_changed",
                "unwrap_cache_ttl_ms": { "from": 0, "to": 60_000 },
                "lease_ttl_ms": { "from": 60_000, "to": 5_000 } }),
        ]
    );
    ts.restart();
    let v = assert_status(&ts.get(&org, &o.admin).await, 200);
    assert_eq!(
        (&v["lease_ttl_ms"], &v["max_lease_ttl_ms"]),
        (&json!(5_000), &json!(60_000)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outage_grace_is_set_at_creation_changed_by_the_admin_only_and_audited() {
    let (mut ts, o, org, v) = org_with_a_minute_ttl("grace-settings").await;
    assert_eq!(
        (&v["unwrap_cache_ttl_ms"], &v["outage_grace_ms"]),
        (&json!(60_000), &json!(0)),
        "no grace unless chosen: {v}"
    );
    // Only the org's admin changes it, up to one day, and only what the call names.
    let set = json!({ "outage_grace_ms": 30_000 });
    assert_error(&ts.patch(&org, &o.service, &set).await, 403, "forbidden");
    assert_error(&ts.patch(&org, &o.auditor, &set).await, 403, "forbidden");
    assert_error(&ts.patch(&org, &ts.operator, &set).await, 404, "not_found");
    let too_long = json!({ "outage_grace_ms": 86_400_001u64 });
    let answer = ts.patch(&org, &o.admin, &too_long).await;
    assert_error(&answer, 400, "invalid_request");
    assert!(error_message(&answer.1).contains("86400000"), "{answer:?}");
    let unknown = json!({ "cache_ttl": 1 });
    assert_error(
        &ts.patch(&org, &o.admin, &unknown).await,
        400,
        "malformed_json",
    );
    let v = assert_status(&ts.patch(&org, &o.admin, &set).await, 200);
    assert_eq!(v["outage_grace_ms"], 30_000, "{v}");
    // The same value again, or nothing: no change, no event.
    assert_status(&ts.patch(&org, &o.admin, &set).await, 200);
    assert_status(&ts.patch(&org, &o.admin, &json!({})).await, 200);
    assert_eq!(
        settings_changes(&ts, &o).await,
        vec![json!({ "type": "org_settings_changed",
            "outage_grace_ms": { "from": 0, "to": 30_000 } })]
    );
    // Stored: a restart keeps it.
    ts.restart();
    let v = assert_status(&ts.get(&org, &o.admin).await, 200);
    assert_eq!(v["outage_grace_ms"], 30_000, "{v}");

    // At creation: at most one day, and only with a cache to serve from.
    let create = async |body: Value| ts.post("/v1/orgs", &ts.operator, &body).await;
    let answer = create(json!({ "name": "b", "outage_grace_ms": 86_400_001u64 })).await;
    assert_error(&answer, 400, "invalid_request");
    let answer =
        create(json!({ "name": "b", "unwrap_cache_ttl_ms": 0, "outage_grace_ms": 1 })).await;
    assert_error(&answer, 400, "invalid_request");
    assert!(
        error_message(&answer.1).contains("unwrap_cache_ttl_ms is 0"),
        "{answer:?}"
    );
    let day = json!({ "name": "b", "unwrap_cache_ttl_ms": 1000, "outage_grace_ms": 86_400_000u64 });
    let v = assert_status(&create(day).await, 201);
    let b_admin = s(&v, "admin_token");
    let b = format!("/v1/orgs/{}", s(&v, "id"));
    assert_eq!(
        assert_status(&ts.get(&b, &b_admin).await, 200)["outage_grace_ms"],
        86_400_000u64
    );
    // An org without a cache cannot get a grace later either.
    let none = ts.org(OrgSettings::named("c").cache_ttl_ms(0)).await;
    let answer = ts.patch(&none.path(""), &none.admin, &set).await;
    assert_error(&answer, 400, "invalid_request");
    assert_status(
        &ts.patch(
            &none.path(""),
            &none.admin,
            &json!({ "outage_grace_ms": 0 }),
        )
        .await,
        200,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_shows_and_updates_the_org_settings() {
    let ts = TestServer::start("grace-cli");
    let cli = |token: &str, args: &[&str]| {
        let out = cli_ok(args, &[("BYOK_SERVER", &ts.url), ("BYOK_TOKEN", token)]);
        String::from_utf8(out).unwrap()
    };
    let out = cli(
        &ts.operator,
        &[
            "org",
            "create",
            "acme",
            "--unwrap-cache-ttl-ms",
            "60000",
            "--outage-grace-ms",
            "5000",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let (id, admin) = (s(&v, "id"), s(&v, "admin_token"));
    let shown = cli(&admin, &["org", "show", "--org", &id]);
    assert!(
        shown.contains(
            "cache ttl 60000 ms (at most 60000)  lease ttl 60000 ms (at most 60000)  outage grace 5000 ms  not claimed (byok token claim)"
        ),
        "{shown}"
    );
    let out = cli(
        &admin,
        &[
            "org",
            "update",
            "--org",
            &id,
            "--outage-grace-ms",
            "0",
            "--json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outage_grace_ms"], 0, "{v}");
    // The withdrawal bound, tightened by the admin; only the flags given change.
    let args = [
        "org",
        "update",
        "--org",
        &id,
        "--unwrap-cache-ttl-ms",
        "1000",
    ];
    cli(&admin, &args);
    let shown = cli(&admin, &["org", "show", "--org", &id]);
    assert!(
        shown.contains("cache ttl 1000 ms (at most 60000)  lease ttl 60000 ms (at most 60000)  outage grace 0 ms"),
        "{shown}"
    );
}

/// The customer claims the org the operator created: one call gives it a new admin token and
/// revokes every other admin token (the first one the operator was handed, and any made with
/// it), so no admin token anyone else may have seen works; service and auditor tokens stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_claims_its_org_from_the_operator() {
    let ts = TestServer::start("claim");
    let o = ts.org(OrgSettings::named("acme")).await;
    let tokens = o.path("/tokens");
    let kept = json!({ "role": "admin", "name": "kept by the vendor" });
    let kept = s(
        &assert_status(&ts.post(&tokens, &o.admin, &kept).await, 201),
        "token",
    );
    let team = o.scope(&ts, &o.id, "team").await;
    let claimed_at = |v: &Value| v["claimed_at"].clone();
    let before = assert_status(&ts.get(&o.path(""), &o.admin).await, 200);
    assert_eq!(claimed_at(&before), Value::Null, "{before}");
    let claim = o.path("/tokens/claim");
    for other in [&o.service, &o.auditor] {
        assert_error(&ts.post(&claim, other, &json!({})).await, 403, "forbidden");
    }
    let asked = now_ms();
    let v = assert_status(
        &ts.post(&claim, &o.admin, &json!({ "name": "ours" })).await,
        201,
    );
    assert_eq!(v["revoked"].as_array().unwrap().len(), 2, "{v}");
    // Its receipt names the revoked tokens, and verifies offline.
    let event = &v["receipt"]["entry"]["event"];
    assert_eq!(event["action"], "org_claimed", "{v}");
    assert_eq!(event["subject"]["tokens"], v["revoked"], "{v}");
    let answer = ts.dir.join("claim.json");
    std::fs::write(&answer, v.to_string()).unwrap();
    let (st, key) = ts.raw("GET", "/v1/audit/verifier-key", None, None).await;
    assert_eq!(st, 200, "{key}");
    let vkey = s(&key, "verifier_key");
    let checked = cli_ok(
        &[
            "audit",
            "--json",
            "verify-receipt",
            answer.to_str().unwrap(),
            "--verifier-key",
            &vkey,
            "--org",
            &o.id,
        ],
        &[("BYOK_SERVER", "http://127.0.0.1:9")],
    );
    let checked: Value = serde_json::from_slice(&checked).unwrap();
    assert_eq!(checked["action"], "org_claimed", "{checked}");
    let ours = s(&v, "token");
    for gone in [&o.admin, &kept] {
        assert_error(&ts.get(&o.path(""), gone).await, 401, "unauthenticated");
    }
    let after = assert_status(&ts.get(&o.path(""), &ours).await, 200);
    let at = claimed_at(&after).as_i64().expect("claimed_at");
    assert!((asked..=now_ms()).contains(&at), "{after}");
    o.seal(&ts, &team, b"the application still works").await;
    assert_status(&ts.get(&o.path("/audit"), &o.auditor).await, 200);
    let list = assert_status(&ts.get(&tokens, &ours).await, 200);
    let admins: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "admin")
        .collect();
    assert_eq!(admins.len(), 1, "{list}");
    assert_eq!(admins[0]["name"], "ours");
    let events: Vec<Value> = o
        .audit(&ts, &o.auditor)
        .await
        .into_iter()
        .map(|r| r["event"].clone())
        .filter(|e| e["claim"] == true)
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        events,
        [
            json!("token_revoked"),
            json!("token_revoked"),
            json!("token_created")
        ]
    );
    // The CLI: the same, with the token the last claim gave.
    let out = cli_ok(
        &["token", "claim", "--org", &o.id, "--json"],
        &[("BYOK_SERVER", &ts.url), ("BYOK_TOKEN", &ours)],
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["revoked"], json!([s(admins[0], "id")]), "{v}");
    assert_error(&ts.get(&o.path(""), &ours).await, 401, "unauthenticated");
}
