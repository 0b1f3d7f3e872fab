//! The audit log as a transparency log (issue 13), from outside: checkpoints, proofs and
//! receipts checked by byok's CLI and by an independent verifier written from the C2SP and
//! RFC 6962 texts (`tools/audit_verify.py`); rows edited, reordered, cut and rewritten in the
//! database, each found with its first bad row.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use byok_core::audit_log::checkpoint;
use byok_tests::fixtures::{OrgSettings, TestOrg, TestServer, assert_error, assert_status};
use byok_tests::moto::python;
use byok_tests::server::{binary, cli_ok};
use serde_json::{Value, json};

fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/audit_verify.py")
}

/// The independent verifier's `cmd` with the verifier key and `files` (`--flag path`, or a
/// bare path for an empty flag): (exit ok, stdout JSON).
fn check_with(cmd: &str, vkey: &str, files: &[(&str, &Path)]) -> (bool, Value) {
    let mut args = vec![cmd.to_owned(), "--verifier-key".into(), vkey.to_owned()];
    for (flag, path) in files {
        if !flag.is_empty() {
            args.push(format!("--{flag}"));
        }
        args.push(path.to_str().unwrap().to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    independent(&args)
}

/// The independent verifier: (exit ok, stdout JSON).
fn independent(args: &[&str]) -> (bool, Value) {
    let out = Command::new(python())
        .arg(tool())
        .args(args)
        .output()
        .expect("run tools/audit_verify.py");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        // A refusal, not a crash (a Python traceback exits 1 too): the tool names its command
        // and the reason on stderr.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with(&format!("{}: ", args[0])) && !stderr.contains("Traceback"),
            "the verifier crashed: {stderr}"
        );
    }
    (out.status.success(), v)
}

struct Log {
    ts: TestServer,
    o: TestOrg,
    vkey: String,
}

impl Log {
    async fn start(name: &str) -> Self {
        let ts = TestServer::start(name);
        let o = ts
            .org(OrgSettings {
                lease_ttl_ms: 600_000,
                ..OrgSettings::named("acme")
            })
            .await;
        // Public: no token.
        let (st, v) = ts.raw("GET", "/v1/audit/verifier-key", None, None).await;
        assert_eq!(st, 200, "{v}");
        let vkey = v["verifier_key"].as_str().unwrap().to_owned();
        Self { ts, o, vkey }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.ts.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    async fn checkpoint(&self) -> String {
        let r = self
            .ts
            .reply(&self.o.path("/audit/checkpoint"), &self.o.auditor, None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        r.body
    }

    async fn rows(&self) -> Vec<Value> {
        let (st, v) = self
            .ts
            .get(&self.o.path("/audit?limit=1000"), &self.o.auditor)
            .await;
        assert_eq!(st, 200);
        v.as_array().unwrap().clone()
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary())
            .env("BYOK_SERVER", &self.ts.url)
            .env("BYOK_TOKEN", &self.o.auditor)
            .env("BYOK_ORG", &self.o.id)
            .env("BYOK_VERIFIER_KEY", &self.vkey)
            .stdin(Stdio::null())
            .args(args)
            .output()
            .unwrap()
    }

    /// `byok audit --json verify --checkpoint FILE`: (exit code, JSON).
    fn verify_kept(&self, kept: &Path) -> (i32, Value) {
        let out = self.cli(&[
            "audit",
            "--json",
            "verify",
            "--checkpoint",
            kept.to_str().unwrap(),
        ]);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    /// Some history: scopes made, paused, resumed.
    async fn history(&self, n: usize) {
        for i in 0..n {
            let s = self
                .o
                .scope(&self.ts, &self.o.id, &format!("team-{i}"))
                .await;
            if i % 3 == 0 {
                assert_status(&self.o.act(&self.ts, &s, "rotate", json!({})).await, 200);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_proofs_verify_with_byok_and_independently() {
    let log = Log::start("audit-log-proofs").await;
    let (ts, o) = (&log.ts, &log.o);
    log.history(3).await;
    let first = log.checkpoint().await;
    let kept = log.file("kept.txt", &first);
    let cp1 = checkpoint::verify(&first, &log.vkey).unwrap();
    assert_eq!(cp1.org.to_string(), o.id);
    assert_eq!(
        cp1.size,
        log.rows().await.len() as u64,
        "every row is a leaf"
    );
    let (ok, v) = check_with("checkpoint", &log.vkey, &[("note", &kept)]);
    assert!(ok, "{v}");
    assert_eq!(v["size"], json!(cp1.size));

    log.history(5).await;
    let second = log.checkpoint().await;
    let newer = log.file("newer.txt", &second);
    let cp2 = checkpoint::verify(&second, &log.vkey).unwrap();
    assert!(cp2.size > cp1.size);
    // Asking again without new rows gives the same checkpoint, not a new signature.
    assert_eq!(log.checkpoint().await, second);

    // Consistency, from the kept checkpoint to the newer one.
    let (st, proof) = ts
        .get(
            &o.path(&format!("/audit/proof/consistency?from={}", cp1.size)),
            &o.auditor,
        )
        .await;
    assert_eq!(st, 200, "{proof}");
    assert_eq!(proof["to"], json!(cp2.size));
    let pf = log.file("consistency.json", &proof.to_string());
    let files = [("old", kept.as_path()), ("new", &newer), ("proof", &pf)];
    let (ok, v) = check_with("consistency", &log.vkey, &files);
    assert!(ok, "{v}");

    // Inclusion of the first, a middle and the last row.
    let rows = log.rows().await;
    for seq in [1, cp2.size / 2, cp2.size] {
        let (st, proof) = ts
            .get(
                &o.path(&format!("/audit/proof/inclusion?seq={seq}")),
                &o.auditor,
            )
            .await;
        assert_eq!(st, 200, "{proof}");
        // The answer carries the row it proves: the same as the log shows.
        let row = &rows[seq as usize - 1];
        assert_eq!(
            (&proof["entry"]["at"], &proof["entry"]["event"]),
            (&row["at"], &row["event"])
        );
        let pf = log.file("inclusion.json", &proof["proof"].to_string());
        let ef = log.file("entry.json", &proof["entry"].to_string());
        let files = [
            ("checkpoint", newer.as_path()),
            ("proof", &pf),
            ("entry", &ef),
        ];
        let (ok, v) = check_with("inclusion", &log.vkey, &files);
        assert!(ok, "seq {seq}: {v}");
        let out = log.cli(&["audit", "prove", &seq.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The whole log against the newer checkpoint, independently; and byok's own check
    // against the kept one.
    let rf = log.file("rows.json", &Value::Array(rows).to_string());
    let (ok, v) = independent(&[
        "log",
        "--verifier-key",
        &log.vkey,
        "--checkpoint",
        newer.to_str().unwrap(),
        "--rows",
        rf.to_str().unwrap(),
    ]);
    assert!(ok, "{v}");
    let (code, v) = log.verify_kept(&kept);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], json!(true));

    // Bad requests and the wrong role get exact errors.
    let (st, v) = ts
        .get(
            &o.path(&format!("/audit/proof/inclusion?seq={}", cp2.size + 50)),
            &o.auditor,
        )
        .await;
    assert_error(&(st, v), 400, "invalid_request");
    assert_error(
        &ts.get(&o.path("/audit/checkpoint"), &o.service).await,
        403,
        "forbidden",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawals_answer_with_receipts_that_verify_offline() {
    let log = Log::start("audit-log-receipts").await;
    let (ts, o) = (&log.ts, &log.o);
    let team = o.scope(ts, &o.id, "team").await;
    let other = o.scope(ts, &o.id, "other").await;
    // An edge lease on the team: a pause cannot end it before it expires.
    let (st, lease) = ts
        .post(&o.scope_path(&team, "lease"), &o.service, &json!({}))
        .await;
    assert_eq!(st, 200, "{lease}");
    let lease_ends = lease["expires_at"].as_i64().unwrap();
    // And its length, for the edge to end it by its own clock: here the root's TTL left (5
    // minutes, the root just unwrapped), which ends it before the org's 10-minute lease TTL.
    let ttl = lease["ttl_ms"].as_u64().unwrap();
    assert!((290_000..=300_000).contains(&ttl), "{lease}");

    let paused = assert_status(&o.act(ts, &team, "pause", json!({})).await, 200);
    assert_eq!(
        paused["effective"], "paused",
        "the scope view is still there"
    );
    let receipt = &paused["receipt"];
    assert_eq!(receipt["format"], "byok-receipt/v1");
    let event = &receipt["entry"]["event"];
    assert_eq!(event["action"], "scope_paused");
    assert_eq!(event["subject"]["scope"], json!(team));
    assert_eq!(event["leases_outstanding"], json!(1));
    assert_eq!(
        event["access_ends_at"],
        json!(lease_ends),
        "the lease bounds it"
    );

    // A scope without leases: access ended when the revoke committed.
    let revoked = assert_status(
        &o.act(ts, &other, "revoke", json!({ "confirm": other }))
            .await,
        200,
    );
    let r2 = &revoked["receipt"];
    assert_eq!(r2["entry"]["event"]["action"], "scope_revoked");
    assert_eq!(r2["entry"]["event"]["leases_outstanding"], json!(0));
    assert_eq!(r2["entry"]["event"]["access_ends_at"], r2["entry"]["at"]);

    // Token revoke.
    let (id, _) = o.token(ts, "service", "batch").await;
    let (st, gone) = ts
        .raw(
            "DELETE",
            &o.path(&format!("/tokens/{id}")),
            Some(&o.admin),
            None,
        )
        .await;
    assert_eq!(st, 200, "{gone}");
    assert_eq!(gone["receipt"]["entry"]["event"]["action"], "token_revoked");

    let files: Vec<PathBuf> = [&paused, &revoked, &gone]
        .iter()
        .enumerate()
        .map(|(i, v)| log.file(&format!("answer-{i}.json"), &v.to_string()))
        .collect();
    let receipt_only = log.file("receipt.json", &receipt.to_string());
    // Offline: with the server gone.
    let mut ts = log.ts;
    ts.server.kill9();
    for f in files.iter().chain([&receipt_only]) {
        let out = Command::new(binary())
            .args([
                "audit",
                "--json",
                "verify-receipt",
                f.to_str().unwrap(),
                "--verifier-key",
                &log.vkey,
            ])
            .env("BYOK_SERVER", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["ok"], json!(true));
    }
    let (ok, v) = independent(&[
        "receipt",
        "--verifier-key",
        &log.vkey,
        receipt_only.to_str().unwrap(),
    ]);
    assert!(ok, "{v}");
    assert_eq!(v["access_ends_at"], json!(lease_ends));

    // A receipt whose promise was edited fails both checks.
    let mut edited = receipt.clone();
    edited["entry"]["event"]["access_ends_at"] = json!(lease_ends - 500_000);
    let ef = ts.dir.join("edited.json");
    std::fs::write(&ef, edited.to_string()).unwrap();
    let out = Command::new(binary())
        .args([
            "audit",
            "verify-receipt",
            ef.to_str().unwrap(),
            "--verifier-key",
            &log.vkey,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, _) = independent(&["receipt", "--verifier-key", &log.vkey, ef.to_str().unwrap()]);
    assert!(!ok, "the independent verifier refuses it too");
    // A valid receipt checked as another org's: refused (one log key signs every org's).
    let of_org = |org: &str| {
        Command::new(binary())
            .args(["audit", "verify-receipt"])
            .arg(&receipt_only)
            .args(["--verifier-key", &log.vkey, "--org", org])
            .output()
            .unwrap()
    };
    let other = of_org("ffffffffffffffffffffffffffffffff");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert_eq!(other.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("not of org ffffffffffffffffffffffffffffffff"),
        "{stderr}"
    );
    let own = of_org(&log.o.id);
    assert!(
        own.status.success() && String::from_utf8_lossy(&own.stdout).contains(&log.o.id),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    // The independent verifier too (it had no org check: another org's receipt passed).
    let receipt_path = receipt_only.to_str().unwrap();
    let independent_of = |org: &str| {
        independent(&[
            "receipt",
            "--verifier-key",
            &log.vkey,
            "--org",
            org,
            receipt_path,
        ])
    };
    let (ok, _) = independent_of("ffffffffffffffffffffffffffffffff");
    assert!(!ok, "the independent verifier took another org's receipt");
    let (ok, v) = independent_of(&log.o.id);
    assert!(ok, "{v}");
    ts.restart();
}

/// A withdrawal receipt is a checkpoint to verify the log against: the log grown since still
/// extends the receipt's checkpoint (so the withdrawal is in it, as signed), and `prove` finds
/// the withdrawal's row in it. A receipt that does not verify is refused before the log is
/// read; the withdrawal's row edited in storage is named as the first bad row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_is_a_checkpoint_to_verify_the_log_against() {
    let mut log = Log::start("audit-log-receipt-kept").await;
    let team = log.o.scope(&log.ts, &log.o.id, "team").await;
    let paused = assert_status(&log.o.act(&log.ts, &team, "pause", json!({})).await, 200);
    let seq = paused["receipt"]["entry"]["seq"].as_u64().unwrap();
    let answer = log.file("paused.json", &paused.to_string());
    log.history(3).await;
    let (code, v) = log.verify_kept(&answer);
    assert_eq!(code, 0, "{v}");
    let size = paused["receipt"]["inclusion"]["size"].clone();
    assert_eq!(v["kept_size"], size, "the receipt's checkpoint: {v}");
    let proved = log.cli(&[
        "audit",
        "--json",
        "prove",
        &seq.to_string(),
        "--checkpoint",
        answer.to_str().unwrap(),
    ]);
    assert!(
        proved.status.success(),
        "{}",
        String::from_utf8_lossy(&proved.stderr)
    );
    let proved: Value = serde_json::from_slice(&proved.stdout).unwrap();
    assert_eq!(
        (proved["size"].clone(), proved["event"]["action"].clone()),
        (size, json!("scope_paused"))
    );

    let mut edited = paused.clone();
    edited["receipt"]["entry"]["event"]["access_ends_at"] = json!(0);
    let out = log.cli(&[
        "audit",
        "verify",
        "--checkpoint",
        log.file("edited.json", &edited.to_string())
            .to_str()
            .unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("the receipt does not verify"), "{stderr}");

    let org = log.o.id.clone();
    tamper(
        &mut log,
        &[&format!(
            "UPDATE audit SET event = replace(event, 'scope_paused', 'scope_resumed') WHERE org_id = '{org}' AND seq = {seq}"
        )],
    )
    .await;
    let (code, v) = log.verify_kept(&answer);
    assert_eq!((code, &v["first_bad"]), (4, &json!(seq)), "{v}");
}

/// Restarts the server without the audit heads it kept in its data directory, as a replica
/// that never saw them (or lost the file).
fn forget_heads(log: &mut Log) {
    log.ts.server.kill9();
    std::fs::remove_file(log.ts.data().join("audit-heads")).unwrap();
    log.ts.restart();
}

/// Runs `sql` on the stopped server's database, then starts it again.
async fn tamper(log: &mut Log, sql: &[&str]) {
    log.ts.server.kill9();
    let db = log.ts.db(false).await;
    for q in sql {
        sqlx::query(q).execute(&db).await.unwrap();
    }
    db.close().await;
    log.ts.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_reordered_cut_and_rewritten_logs_name_their_first_bad_row() {
    let mut log = Log::start("audit-log-tamper").await;
    log.history(2).await;
    // A checkpoint byok signed early (the bisection's anchor for a rewrite).
    let early = checkpoint::verify(&log.checkpoint().await, &log.vkey).unwrap();
    log.history(6).await;
    let kept_note = log.checkpoint().await;
    let kept = log.file("kept.txt", &kept_note);
    let size = checkpoint::verify(&kept_note, &log.vkey).unwrap().size;
    assert!(size > early.size + 3);
    let (code, v) = log.verify_kept(&kept);
    assert_eq!(code, 0, "untouched: {v}");
    let org = log.o.id.clone();
    let original: Vec<(i64, String)> = {
        let db = log.ts.db(true).await;
        let rows = sqlx::query_as("SELECT seq, event FROM audit WHERE org_id = $1 ORDER BY seq")
            .bind(&org)
            .fetch_all(&db)
            .await
            .unwrap();
        db.close().await;
        rows
    };
    let event = |seq: usize| original[seq - 1].1.replace('\'', "''");
    // Any event, changed: its type renamed.
    let forged = |seq: usize| event(seq).replacen("\"type\":\"", "\"type\":\"forged_", 1);
    let set = |seq: usize, text: &str| {
        format!("UPDATE audit SET event = '{text}' WHERE org_id = '{org}' AND seq = {seq}")
    };
    let independent_log = |log: &Log, kept: &Path| {
        let rows = Value::Array(tailed_rows(log));
        let rf = log.file("rows.json", &rows.to_string());
        independent(&[
            "log",
            "--verifier-key",
            &log.vkey,
            "--checkpoint",
            kept.to_str().unwrap(),
            "--rows",
            rf.to_str().unwrap(),
        ])
    };

    // An edited row.
    let edited = forged(4);
    assert_ne!(edited, event(4));
    tamper(&mut log, &[&set(4, &edited)]).await;
    let (code, v) = log.verify_kept(&kept);
    assert_eq!((code, &v["first_bad"]), (4, &json!(4)), "{v}");
    assert_eq!(v["first_bad_at_most"], Value::Null, "exact: {v}");
    let (ok, v) = independent_log(&log, &kept);
    assert_eq!((ok, &v["first_bad_seq"]), (false, &json!(4)), "{v}");
    tamper(&mut log, &[&set(4, &event(4))]).await;
    assert_eq!(log.verify_kept(&kept).0, 0, "restored");

    // Two rows swapped.
    tamper(&mut log, &[&set(5, &event(6)), &set(6, &event(5))]).await;
    let (code, v) = log.verify_kept(&kept);
    assert_eq!((code, &v["first_bad"]), (4, &json!(5)), "{v}");
    tamper(&mut log, &[&set(5, &event(5)), &set(6, &event(6))]).await;
    assert_eq!(log.verify_kept(&kept).0, 0, "restored");

    // A rewrite that also rebuilt the tree and dropped the checkpoints it broke: the tree is
    // rebuilt from the rows at start (as for a database from before the tree). The restarted
    // server kept the heads it signed in its data directory: it signs nothing over the
    // rewrite, even once the log grows.
    let rewrite = early.size as usize + 1;
    tamper(
        &mut log,
        &[
            &set(rewrite, &forged(rewrite)),
            &format!("DELETE FROM audit_tree WHERE org_id = '{org}'"),
            &format!(
                "DELETE FROM audit_checkpoint WHERE org_id = '{org}' AND size > {}",
                early.size
            ),
        ],
    )
    .await;
    log.history(1).await;
    let answer = log
        .ts
        .raw(
            "GET",
            &log.o.path("/audit/checkpoint"),
            Some(&log.o.auditor),
            None,
        )
        .await;
    assert_error(&answer, 500, "internal");
    // A replica that never saw those heads (or lost its file) refuses too: the rewritten
    // row's tag was made over the leaf byok wrote. The CLI judges the rows by the customer's
    // checkpoint, larger than any the server still lists, and finds the rewrite.
    forget_heads(&mut log);
    let (code, v) = log.verify_kept(&kept);
    assert_eq!((code, &v["first_bad"]), (4, &json!(rewrite)), "{v}");
    // Only a range can be named: between the last signed checkpoint that still matches and
    // the kept one.
    assert_eq!(v["first_bad_at_most"], json!(size), "{v}");
    let (ok, v) = independent_log(&log, &kept);
    assert!(!ok, "{v}");

    // The tail cut off (rows, their tree hashes and the checkpoints past them), found by the
    // customer's checkpoint at a replica that never saw the heads.
    let keep = size - 3;
    tamper(
        &mut log,
        &[
            &format!("DELETE FROM audit WHERE org_id = '{org}' AND seq > {keep}"),
            &format!("DELETE FROM audit_tree WHERE org_id = '{org}'"),
            &format!("DELETE FROM audit_checkpoint WHERE org_id = '{org}' AND size > {keep}"),
        ],
    )
    .await;
    forget_heads(&mut log);
    let (code, v) = log.verify_kept(&kept);
    assert_eq!((code, &v["first_bad"]), (4, &json!(keep + 1)), "{v}");
    let (ok, v) = independent_log(&log, &kept);
    assert_eq!((ok, &v["first_bad_seq"]), (false, &json!(keep + 1)), "{v}");
}

/// Rows after the kept checkpoint rewritten, the tree rebuilt and every checkpoint past the
/// kept one deleted: the server still holds the head it signed and refuses to sign (500).
/// Nothing the CLI can read contradicts the kept checkpoint, but that refusal is no pass:
/// exit 1, saying the server refuses and which rows went unchecked (the first fallback to the
/// listed checkpoints answered exit 0 here, "every row checked").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_to_sign_is_never_a_pass() {
    let mut log = Log::start("audit-log-refused").await;
    log.history(2).await;
    let kept_note = log.checkpoint().await;
    let kept = log.file("kept.txt", &kept_note);
    let k = checkpoint::verify(&kept_note, &log.vkey).unwrap().size;
    log.history(6).await;
    log.checkpoint().await;
    let org = log.o.id.clone();
    let row = k + 2;
    tamper(
        &mut log,
        &[
            &format!(
                "UPDATE audit SET event = '{{\"type\":\"forged\"}}' WHERE org_id = '{org}' AND seq = {row}"
            ),
            &format!("DELETE FROM audit_tree WHERE org_id = '{org}'"),
            &format!("DELETE FROM audit_checkpoint WHERE org_id = '{org}' AND size > {k}"),
        ],
    )
    .await;
    let out = log.cli(&["audit", "verify", "--checkpoint", kept.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refuses to sign") && stderr.contains(&format!("rows up to {k}")),
        "{stderr}"
    );
}

/// A rewrite after the checkpoint the customer kept, of rows a later checkpoint signed: the
/// kept one still matches the rows, but the CLI checks every checkpoint byok signed, so the
/// rewrite is found, within the range the signed checkpoints allow. And byok signs nothing
/// over the rewritten tree (it refuses as soon as it sees it): a second, contradicting signed
/// head would be the vendor's signature on a forgery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_past_the_kept_checkpoint_contradicts_a_later_signed_one() {
    let mut log = Log::start("audit-log-fork").await;
    log.history(2).await;
    let kept_note = log.checkpoint().await;
    let kept = log.file("kept.txt", &kept_note);
    let k = checkpoint::verify(&kept_note, &log.vkey).unwrap().size;
    log.history(6).await;
    let m = checkpoint::verify(&log.checkpoint().await, &log.vkey)
        .unwrap()
        .size;
    assert!(m > k + 3);
    let org = log.o.id.clone();
    let (event,): (String,) =
        sqlx::query_as("SELECT event FROM audit WHERE org_id = $1 AND seq = $2")
            .bind(&org)
            .bind(i64::try_from(k + 1).unwrap())
            .fetch_one(&log.ts.db(true).await)
            .await
            .unwrap();
    let forged = event
        .replacen("\"type\":\"", "\"type\":\"forged_", 1)
        .replace('\'', "''");
    // Row k+1 rewritten and the tree dropped (rebuilt from the rows at start); the signed
    // checkpoints left as they are.
    tamper(
        &mut log,
        &[
            &format!(
                "UPDATE audit SET event = '{forged}' WHERE org_id = '{org}' AND seq = {}",
                k + 1
            ),
            &format!("DELETE FROM audit_tree WHERE org_id = '{org}'"),
        ],
    )
    .await;
    let (code, v) = log.verify_kept(&kept);
    assert_eq!(code, 4, "the kept checkpoint alone passes: {v}");
    assert_eq!(
        (&v["first_bad"], &v["first_bad_at_most"]),
        (&json!(k + 1), &json!(m)),
        "{v}"
    );
    assert_eq!(v["verifier_key_pinned"], json!(true), "{v}");
    // The log grows; no checkpoint is signed over the rewritten tree.
    log.history(1).await;
    let answer = log
        .ts
        .get(&log.o.path("/audit/checkpoint"), &log.o.auditor)
        .await;
    assert_error(&answer, 500, "internal");
    // Nor does verify pass: the server will not give it a head over the rewritten tree (the
    // 500 above), and the CLI judges the rows by the newest checkpoint the server lists, with
    // the same verdict (4), not an error without one (1, before: a monitor watching for 4
    // missed it).
    let (code, v) = log.verify_kept(&kept);
    assert_eq!(code, 4, "{v}");
    assert_eq!(
        (&v["first_bad"], &v["first_bad_at_most"]),
        (&json!(k + 1), &json!(m)),
        "{v}"
    );
}

/// Rows cut between the kept checkpoint and the newest, with the tree and the checkpoints left:
/// the first missing row is named, in JSON too (the newest root cannot be computed from the
/// rows, which once ended the check with no answer on stdout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_cut_after_the_kept_checkpoint_are_named() {
    let mut log = Log::start("audit-log-cut").await;
    log.history(2).await;
    let kept_note = log.checkpoint().await;
    let kept = log.file("kept.txt", &kept_note);
    let k = checkpoint::verify(&kept_note, &log.vkey).unwrap().size;
    log.history(6).await;
    log.checkpoint().await;
    let org = log.o.id.clone();
    tamper(
        &mut log,
        &[&format!(
            "DELETE FROM audit WHERE org_id = '{org}' AND seq > {}",
            k + 1
        )],
    )
    .await;
    let (code, v) = log.verify_kept(&kept);
    assert_eq!((code, &v["first_bad"]), (4, &json!(k + 2)), "{v}");
}

/// A row missing from storage in the middle of the log: asked for its inclusion proof, the
/// server answers 404, not the next row under the missing one's number; the next row is still
/// answered as itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_missing_from_storage_is_not_answered_by_the_next() {
    let mut log = Log::start("audit-log-gap").await;
    log.history(2).await;
    let size = checkpoint::verify(&log.checkpoint().await, &log.vkey)
        .unwrap()
        .size;
    let org = log.o.id.clone();
    let gap = size - 1;
    tamper(
        &mut log,
        &[&format!(
            "DELETE FROM audit WHERE org_id = '{org}' AND seq = {gap}"
        )],
    )
    .await;
    let (ts, o) = (&log.ts, &log.o);
    let inclusion = |seq: u64| o.path(&format!("/audit/proof/inclusion?seq={seq}"));
    assert_error(&ts.get(&inclusion(gap), &o.auditor).await, 404, "not_found");
    let v = assert_status(&ts.get(&inclusion(gap + 1), &o.auditor).await, 200);
    assert_eq!(v["entry"]["seq"], json!(gap + 1), "{v}");
}

/// The rows as `byok audit tail` prints them (JSON lines).
fn tailed_rows(log: &Log) -> Vec<Value> {
    let out = cli_ok(
        &["audit", "--json", "tail"],
        &log.o.cli_env(&log.ts.url, &log.o.auditor),
    );
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_used_which_scope_since_when_is_in_the_log() {
    let log = Log::start("audit-log-usage").await;
    let (ts, o) = (&log.ts, &log.o);
    let team = o.scope(ts, &o.id, "team").await;
    let other = o.scope(ts, &o.id, "other").await;
    let (a_id, a) = o.token(ts, "service", "a").await;
    let (b_id, b) = o.token(ts, "service", "b").await;
    let before = byok_tests::fixtures::now_ms();
    let encrypt = |scope: &str, token: &str| {
        let path = o.scope_path(scope, "encrypt");
        let token = token.to_owned();
        async move {
            assert_status(
                &ts.post(&path, &token, &json!({ "plaintext": "aGk=" }))
                    .await,
                200,
            )
        }
    };
    // Token a uses team three times (one mark: a minute's uses share it), b uses other.
    for _ in 0..3 {
        encrypt(&team, &a).await;
    }
    encrypt(&other, &b).await;
    let query = |q: String| async move {
        let (st, v) = ts.get(&o.path(&format!("/audit?{q}")), &o.auditor).await;
        assert_eq!(st, 200, "{v}");
        v.as_array().unwrap().clone()
    };
    let used = query(format!(
        "kind=scope_used&actor={a_id}&scope={team}&since={before}"
    ))
    .await;
    assert_eq!(used.len(), 1, "{used:?}");
    assert_eq!(used[0]["event"]["actor"]["token"], json!(a_id));
    assert_eq!(used[0]["event"]["actor"]["role"], "service");
    assert!(
        query(format!("actor={b_id}&scope={team}")).await.is_empty(),
        "b never used team"
    );
    assert_eq!(
        query(format!("actor={b_id}&scope={other}&kind=scope_used"))
            .await
            .len(),
        1
    );
    assert!(
        query(format!("actor={a_id}&until={before}"))
            .await
            .is_empty(),
        "nothing before"
    );
    // Marks are per token: b's first use of team gets its own, though a's covers the window.
    encrypt(&team, &b).await;
    assert_eq!(
        query(format!("actor={b_id}&scope={team}&kind=scope_used"))
            .await
            .len(),
        1
    );
    // The admin's actions carry the admin as actor too.
    let created = query(format!("kind=scope_created&scope={team}")).await;
    assert_eq!(created[0]["event"]["actor"]["role"], "admin", "{created:?}");
    // The CLI asks the same, with an RFC 3339 time.
    let out = log.cli(&[
        "audit",
        "--json",
        "read",
        "--actor",
        &a_id,
        "--scope",
        &team,
        "--kind",
        "scope_used",
        "--since",
        "2020-01-01T00:00:00Z",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // A filter that is not an id is refused by name.
    let (st, v) = ts.get(&o.path("/audit?actor=zz"), &o.auditor).await;
    assert_error(&(st, v), 400, "invalid_request");
    // The newest first (the setup page's "recent events"), and paging back with `before`.
    let all = query("limit=1000".into()).await;
    let seqs = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let newest = query("newest=true&limit=3".into()).await;
    let last: Vec<i64> = seqs(&all).into_iter().rev().take(3).collect();
    assert_eq!(seqs(&newest), last, "the last three, newest first");
    let before = query(format!("newest=true&limit=2&before={}", last[2])).await;
    assert_eq!(seqs(&before), vec![last[2] - 1, last[2] - 2]);
    let filtered = query("newest=true&limit=1&kind=scope_created".into()).await;
    assert_eq!(filtered[0]["event"]["scope"], json!(other), "{filtered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_calling_token_and_a_revoked_one_gets_401() {
    let log = Log::start("audit-log-whoami").await;
    let (ts, o) = (&log.ts, &log.o);
    let (id, token) = o.token(ts, "service", "ci").await;
    let v = assert_status(&ts.get("/v1/whoami", &token).await, 200);
    assert_eq!(
        v,
        json!({ "org": o.id, "role": "service", "token_id": id, "name": "ci", "expires_at": null })
    );
    let v = assert_status(&ts.get("/v1/whoami", &ts.operator).await, 200);
    assert_eq!(
        (v["org"].clone(), v["role"].clone()),
        (json!(null), json!("operator"))
    );
    let path = o.path(&format!("/tokens/{id}"));
    assert_status(&ts.raw("DELETE", &path, Some(&o.admin), None).await, 200);
    assert_error(&ts.get("/v1/whoami", &token).await, 401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grown_logs_get_a_checkpoint_without_being_asked() {
    let ts = TestServer::start_with("audit-log-periodic", |data| {
        byok_tests::server::Server::start(
            data,
            &[
                ("BYOK_KEY_HEALTH_INTERVAL_MS", "3600000"),
                ("BYOK_CHECKPOINT_INTERVAL_MS", "1000"),
            ],
        )
    });
    let o = ts.org(OrgSettings::named("acme")).await;
    o.scope(&ts, &o.id, "team").await;
    let (_, rows) = ts.get(&o.path("/audit?limit=1000"), &o.auditor).await;
    let size = rows.as_array().unwrap().len() as u64;
    // The list only shows what was signed; it signs nothing itself.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (st, list) = ts.get(&o.path("/audit/checkpoints"), &o.auditor).await;
        assert_eq!(st, 200, "{list}");
        if list
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["size"] == json!(size))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of size {size}: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A witness the customer runs: its verifier key, and its cosignature of `note` at `time`,
/// made here from the C2SP `tlog-cosignature` text.
fn witness(note: &str, time: u64) -> (String, String) {
    witness_of(42, "witness.acme.example/w1", note, time)
}

/// [`witness`], of witness `name` with key seed `seed`.
fn witness_of(seed: u8, name: &str, note: &str, time: u64) -> (String, String) {
    use base64ct::{Base64, Encoding};
    use ed25519_dalek::Signer;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let mut raw = vec![0x04];
    raw.extend_from_slice(sk.verifying_key().as_bytes());
    let id_hash = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &[name.as_bytes(), b"\n", &raw].concat(),
    );
    let id = &id_hash.as_ref()[..4];
    let vkey = format!("{name}+{}+{}", hex(id), Base64::encode_string(&raw));
    let body = &note[..note.find("\n\n").unwrap() + 1];
    let sig = sk.sign(format!("cosignature/v1\ntime {time}\n{body}").as_bytes());
    let line = format!(
        "\u{2014} {name} {}",
        Base64::encode_string(&[id, &time.to_be_bytes(), &sig.to_bytes()].concat())
    );
    (vkey, line)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_cosignature_is_checked_and_served_with_its_checkpoint() {
    let log = Log::start("audit-log-witness").await;
    let (ts, o) = (&log.ts, &log.o);
    log.history(2).await;
    let note = log.checkpoint().await;
    let size = checkpoint::verify(&note, &log.vkey).unwrap().size;
    let (vkey, line) = witness(&note, 1_764_500_000);
    let post = |body: Value| async move {
        ts.post(&o.path("/audit/cosignatures"), &o.auditor, &body)
            .await
    };
    let cosig = json!({ "size": size, "cosignature": line });
    // No witness registered yet.
    assert_error(&post(cosig.clone()).await, 400, "invalid_request");
    let witness_path = o.path("/audit/witness");
    let put = |body: Value| {
        let witness_path = witness_path.clone();
        async move {
            let body = Some(("application/json", body.to_string().into_bytes()));
            ts.raw("PUT", &witness_path, Some(&o.admin), body).await
        }
    };
    // byok's own key is no witness key.
    assert_error(
        &put(json!({ "witness_key": log.vkey })).await,
        400,
        "invalid_request",
    );
    let (st, v) = put(json!({ "witness_key": vkey })).await;
    assert_eq!(
        (st, &v["witness"]),
        (200, &json!("witness.acme.example/w1")),
        "{v}"
    );
    // A cosignature with a broken signature is refused; the right one is kept.
    let mut bad = line.clone();
    bad.pop();
    bad.push(if line.ends_with('A') { 'B' } else { 'A' });
    assert_error(
        &post(json!({ "size": size, "cosignature": bad })).await,
        400,
        "invalid_request",
    );
    assert_error(
        &post(json!({ "size": size + 99, "cosignature": line })).await,
        404,
        "not_found",
    );
    assert_eq!(post(cosig.clone()).await.0, 204);
    // Posted again: a retry, nothing more. Another line of the same witness for the same
    // checkpoint (a later time): refused, so no one can pile lines onto a note (it carries at
    // most 100 signatures, past which no verifier reads it).
    assert_eq!(post(cosig).await.0, 204);
    let (_, later) = witness(&note, 1_764_500_001);
    assert_error(
        &post(json!({ "size": size, "cosignature": later })).await,
        400,
        "invalid_request",
    );
    // Served with the checkpoint: byok's signature first, the witness's after it. (Registering
    // and cosigning are logged, so the newest checkpoint is a later one.)
    let (_, list) = ts.get(&o.path("/audit/checkpoints"), &o.auditor).await;
    let served = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["size"] == json!(size))
        .map(|c| c["note"].as_str().unwrap().to_owned())
        .unwrap();
    assert_eq!(served, format!("{note}{line}\n"));
    let v = checkpoint::verify(&served, &log.vkey).unwrap();
    assert_eq!(v.other_signatures.len(), 1, "{v:?}");
    let f = log.file("cosigned.txt", &served);
    let (ok, v) = check_with("checkpoint", &log.vkey, &[("note", &f)]);
    assert!(ok, "{v}");
    assert_eq!(v["other_signatures"].as_array().unwrap().len(), 1, "{v}");
    let events = log.rows().await;
    assert!(
        events
            .iter()
            .any(|r| r["event"]["type"] == "checkpoint_cosigned")
    );
    witnesses_are_required_by_the_verifiers(&log, &note, &served, &vkey, size).await;
}

/// A customer who trusts the witness has both verifiers require its cosignature: byok's CLI
/// (`verify --checkpoint --witness-key`: a checkpoint at least as large as the kept one,
/// cosigned, that the rows give) and the independent one (`checkpoint --witness-key`).
async fn witnesses_are_required_by_the_verifiers(
    log: &Log,
    note: &str,
    served: &str,
    vkey: &str,
    size: u64,
) {
    let verify = |kept: &Path, extra: &[&str]| {
        let mut args = vec!["audit", "--json", "verify", "--checkpoint"];
        args.push(kept.to_str().unwrap());
        args.extend(extra);
        let out = log.cli(&args);
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), v, stderr)
    };
    let (other_vkey, _) = witness_of(7, "witness.other.example/w2", note, 1);
    let kept = log.file("kept-then.txt", note);
    let (code, v, err) = verify(&kept, &["--witness-key", vkey]);
    assert_eq!(code, 0, "{v} {err}");
    assert_eq!(
        v["witnesses"],
        json!([{ "name": "witness.acme.example/w1", "cosigned_size": size, "cosigned_at": 1_764_500_000u64 }]),
        "{v}"
    );
    // Two witnesses, one of which cosigned nothing: all are required unless told otherwise.
    let both = ["--witness-key", vkey, "--witness-key", &other_vkey];
    let (code, v, _) = verify(&kept, &both);
    assert_eq!(code, 4, "{v}");
    assert_eq!(v["ok"], false);
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("1 of the 2 witness(es) you require cosigned a checkpoint covering yours (size {size}): witness.acme.example/w1 up to size {size}, witness.other.example/w2 nothing")),
        "{reason}"
    );
    let (code, v, _) = verify(&kept, &[&both[..], &["--min-cosignatures", "1"]].concat());
    assert_eq!(code, 0, "{v}");
    // The newest checkpoint kept: larger than anything the witness cosigned.
    let newest = log.checkpoint().await;
    let newest_size = checkpoint::verify(&newest, &log.vkey).unwrap().size;
    assert!(newest_size > size);
    let (code, v, _) = verify(&log.file("kept-now.txt", &newest), &["--witness-key", vkey]);
    assert_eq!(code, 4, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("0 of the 1 witness(es)"),
        "{v}"
    );
    // A kept note whose witness line was altered: refused, whatever else cosigned.
    let (_, line) = witness(note, 1_764_500_000);
    let (_, retimed) = witness(note, 1_764_500_001);
    let forged_line = format!(
        "{}{}",
        &retimed[..retimed.len() - 88],
        &line[line.len() - 88..]
    );
    assert_ne!(forged_line, line);
    let forged = log.file("kept-forged.txt", &served.replace(&line, &forged_line));
    let (code, _, err) = verify(&forged, &["--witness-key", vkey]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("witness witness.acme.example/w1's cosignature on the checkpoint of size")
            && err.contains("does not verify"),
        "{err}"
    );
    // Usage errors: a witness named twice, more required than given.
    let (code, _, err) = verify(&kept, &["--witness-key", vkey, "--witness-key", vkey]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = verify(&kept, &["--witness-key", vkey, "--min-cosignatures", "2"]);
    assert_eq!(code, 2, "{err}");
    // The independent verifier, on the note as served.
    let f = log.file("served.txt", served);
    let args = |extra: &[&str]| {
        let mut a = vec!["checkpoint", "--verifier-key", &log.vkey, "--note"];
        a.push(f.to_str().unwrap());
        a.extend(extra);
        a.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>()
    };
    let run = |a: Vec<String>| independent(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, v) = run(args(&["--witness-key", vkey]));
    assert!(ok, "{v}");
    assert_eq!(v["cosigned_by"][0]["time"], json!(1_764_500_000u64), "{v}");
    assert!(!run(args(&["--witness-key", &other_vkey])).0);
    let (ok, v) = run(args(&[
        "--witness-key",
        vkey,
        "--witness-key",
        &other_vkey,
        "--min-cosignatures",
        "1",
    ]));
    assert!(ok, "{v}");
    let f2 = log.file("forged.txt", &std::fs::read_to_string(&forged).unwrap());
    let mut a = args(&["--witness-key", vkey]);
    let at = a.iter().position(|x| x == f.to_str().unwrap()).unwrap();
    a[at] = f2.to_str().unwrap().to_owned();
    assert!(!run(a).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_the_log_from_where_a_siem_left_off() {
    use std::io::{BufRead, BufReader};
    let log = Log::start("audit-log-tail").await;
    let (ts, o) = (&log.ts, &log.o);
    let before = log.rows().await.len();
    // Resume after the rows the SIEM already has, and keep following.
    let mut child = Command::new(binary())
        .env("BYOK_SERVER", &ts.url)
        .env("BYOK_TOKEN", &o.auditor)
        .env("BYOK_ORG", &o.id)
        .args([
            "audit",
            "tail",
            "--follow",
            "--interval-ms",
            "100",
            "--after",
        ])
        .arg(before.to_string())
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let team = o.scope(ts, &o.id, "team").await;
    let lines = tokio::task::spawn_blocking({
        let stdout = child.stdout.take().unwrap();
        move || {
            let mut seen = Vec::new();
            for l in BufReader::new(stdout).lines() {
                let v: Value = serde_json::from_str(&l.unwrap()).unwrap();
                let done = v["event"]["type"] == "scope_created";
                seen.push(v);
                if done {
                    break;
                }
            }
            seen
        }
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(30), lines)
        .await
        .expect("a new row reaches tail --follow")
        .unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    // From the next row on, in order, up to the new scope.
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (before as u64 + 1..).take(lines.len()).collect();
    assert_eq!(seqs, want, "{lines:?}");
    assert_eq!(lines.last().unwrap()["event"]["scope"], json!(team));
}
