//! `byok serve` with customer keys in AWS KMS: a real server process, moto's KMS with signature
//! and IAM checks on, and the state-enforcing front before it (moto alone would keep using a
//! disabled key). Each test starts its own stack: disabling a key in moto is seen by every
//! server on it.

use std::time::Duration;

use byok_tests::aws_stack::{AwsStack, aws_org, byok_org};
use byok_tests::fault_front::{Fault, TrailEntry};
use byok_tests::fixtures::{
    OrgSettings, SealedTree, TestOrg, TestServer, assert_error, assert_status, error_message, key,
};
use byok_tests::server::{field as s, metric};
use serde_json::json;

async fn kms_calls(ts: &TestServer) -> u64 {
    metric(&ts.url, &ts.operator, "byok_kms_calls_total").await
}

/// Org `acme` with a 1 s unwrap cache: short enough to wait out.
const ONE_SECOND_TTL: OrgSettings<'static> = OrgSettings::named("acme").cache_ttl_ms(1000);

/// Org `acme` with no unwrap cache: every use unwraps through the KMS, so no test has to wait
/// for a cached root to expire.
const NO_CACHE: OrgSettings<'static> = OrgSettings::named("acme").cache_ttl_ms(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_or_malformed_key_is_refused_with_the_fix_and_nothing_is_attached() {
    let (stack, ts, o) = aws_org("aws-validate", ONE_SECOND_TTL).await;
    let moto = &stack.moto;
    // The policy to grant names the org in the encryption context.
    let policy = ts
        .get(
            &o.path(&format!("/keys/policy?key_arn={}", moto.key_arn)),
            &o.admin,
        )
        .await;
    let v = assert_status(&policy, 200);
    assert_eq!(
        v.pointer("/key_policy_statements/0/Condition/StringEquals/kms:EncryptionContext:byok:org"),
        Some(&json!(o.id))
    );
    // Validation: a disabled key fails at describe with the fix, and attaching it changes
    // nothing.
    let body = json!({ "key_arn": moto.disabled_key_arn });
    let v = assert_status(
        &ts.post(&o.path("/keys/validate"), &o.admin, &body).await,
        200,
    );
    assert_eq!(v["ok"].as_bool(), Some(false), "{v}");
    assert_eq!(v.pointer("/steps/2/outcome"), Some(&json!("fail")), "{v}");
    let answer = o.attach_aws_key(&ts, "bad", &moto.disabled_key_arn).await;
    let v = assert_error(&answer, 422, "key_validation_failed");
    assert!(v.pointer("/error/details/2/fix").is_some(), "{v}");
    let keys = o.keys(&ts).await;
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        1,
        "nothing attached: {keys}"
    );
    for bad in [
        "alias/byok-root",
        "arn:aws:kms:us-east-1:123456789012:key/../../evil",
        "https://169.254.169.254/latest",
    ] {
        let answer = o.attach_aws_key(&ts, "x", bad).await;
        assert_eq!(answer.0, 422, "{bad}: {answer:?}");
        let v = assert_error(&answer, 422, "key_validation_failed");
        assert_eq!(v.pointer("/error/details/0/outcome"), Some(&json!("fail")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attached_default_key_takes_over_and_data_sealed_before_still_opens() {
    let (stack, ts, o) = aws_org("aws-attach", ONE_SECOND_TTL).await;
    // A 3-level tree with data at every level, sealed while the managed key is the default.
    let tree = SealedTree::seal(&ts, &o).await;
    // Attach the key (validated live, then it wraps the root), make it the default.
    let v = assert_status(
        &o.attach_aws_key(&ts, "prod", &stack.moto.alias_arn).await,
        201,
    );
    assert_eq!(
        (s(&v["key"], "id"), s(&v["key"], "state")),
        ("cmk:1".into(), "ready".into()),
        "{v}"
    );
    let v = assert_status(&o.key_action(&ts, "cmk:1", "default", json!({})).await, 200);
    assert_eq!(key(&v, "cmk:1")["default"], true);
    tree.open_all(&ts, &o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_scope_refuses_its_subtree_naming_itself_until_resumed() {
    let (_stack, ts, o) = byok_org("aws-pause", ONE_SECOND_TTL).await;
    let tree = SealedTree::seal(&ts, &o).await;
    // Pause the middle (team): team and thread fail naming it, the org level still works.
    assert_status(&o.act(&ts, &tree.team, "pause", json!({})).await, 200);
    for (i, (ct, _)) in tree.sealed.iter().enumerate() {
        let answer = o.decrypt(&ts, ct).await;
        if i == 0 {
            assert_status(&answer, 200);
        } else {
            let v = assert_error(&answer, 409, "scope_paused");
            assert!(error_message(&v).contains(&tree.team));
        }
    }
    assert_status(&o.act(&ts, &tree.team, "resume", json!({})).await, 200);
    tree.open_all(&ts, &o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_calls_are_bounded_by_the_cache_ttl_not_by_traffic() {
    let (_stack, ts, o) = byok_org("aws-bounded", ONE_SECOND_TTL).await;
    let tree = SealedTree::seal(&ts, &o).await;
    tree.open_all(&ts, &o).await.unwrap();
    let before = kms_calls(&ts).await;
    for _ in 0..30 {
        tree.open_all(&ts, &o).await.unwrap();
    }
    assert!(
        kms_calls(&ts).await - before <= 1,
        "cached root: at most one unwrap within the TTL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_disabled_in_kms_fails_calls_once_the_ttl_passes_until_it_is_enabled_again() {
    let (stack, ts, o) = byok_org("aws-disabled", ONE_SECOND_TTL).await;
    let moto = &stack.moto;
    let tree = SealedTree::seal(&ts, &o).await;
    tree.open_all(&ts, &o).await.unwrap();
    // The customer disables the key in KMS: after the TTL everything fails, health says why.
    // The server reads the wall clock for its unwrap cache: waiting out the org's 1 s TTL is
    // the behaviour under test.
    moto.key_admin("disable_key", &moto.key_arn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_error(
        &tree.open_all(&ts, &o).await.unwrap_err(),
        424,
        "kms_key_disabled",
    );
    let v = assert_status(
        &ts.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
    assert_eq!(key(&v, "cmk:1")["health"], "key_disabled", "{v}");
    let v = assert_status(
        &o.key_action(&ts, "cmk:1", "validate", json!({})).await,
        200,
    );
    assert_eq!(v["ok"], false, "{v}");
    // Enabled again: validation passes, data opens, health is back.
    moto.key_admin("enable_key", &moto.key_arn);
    let v = assert_status(
        &o.key_action(&ts, "cmk:1", "validate", json!({})).await,
        200,
    );
    assert_eq!(v["ok"], true, "{v}");
    tree.open_all(&ts, &o).await.unwrap();
    let v = assert_status(
        &ts.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
    assert_eq!(key(&v, "cmk:1")["health"], "ok", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_key_onto_a_target_moves_the_root_so_its_kms_key_is_not_needed() {
    let (stack, mut ts, o) = byok_org("aws-retarget", NO_CACHE).await;
    let moto = &stack.moto;
    let tree = SealedTree::seal(&ts, &o).await;
    // A second key; disable the first with re-encryption to it, which makes it the default.
    assert_status(
        &o.attach_aws_key(&ts, "second", &moto.second_key_arn).await,
        201,
    );
    let body = json!({ "target": "cmk:2" });
    let v = assert_status(&o.key_action(&ts, "cmk:1", "disable", body).await, 200);
    assert_eq!(
        (
            key(&v, "cmk:1")["state"].clone(),
            key(&v, "cmk:2")["default"].clone()
        ),
        (json!("disabled"), json!(true)),
        "{v}"
    );
    // The answer carries the disable's receipt, which names the key.
    let event = &v["receipt"]["entry"]["event"];
    assert_eq!(
        (&event["action"], &event["subject"]["key"]),
        (&json!("key_disabled"), &json!("cmk:1")),
        "{v}"
    );
    // The first key's copy is gone: even with it disabled in KMS, everything opens via cmk:2
    // (no cache: every open unwraps), after a restart too.
    moto.key_admin("disable_key", &moto.key_arn);
    tree.open_all(&ts, &o).await.unwrap();
    ts.restart();
    tree.open_all(&ts, &o).await.unwrap();
}

/// The default key disabled in KMS while a second key holds every root: the org is refused
/// until the customer makes the second key the default, which works although the first can
/// no longer give back the roots to compare with (they are checked against the scope keys
/// they wrap). Then everything opens through the second key, after a restart too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_key_disabled_in_kms_a_second_key_takes_over() {
    let (stack, mut ts, o) = byok_org("aws-takeover", NO_CACHE).await;
    let moto = &stack.moto;
    let tree = SealedTree::seal(&ts, &o).await;
    assert_status(
        &o.attach_aws_key(&ts, "second", &moto.second_key_arn).await,
        201,
    );
    moto.key_admin("disable_key", &moto.key_arn);
    assert_error(
        &tree.open_all(&ts, &o).await.unwrap_err(),
        424,
        "kms_key_disabled",
    );
    let v = assert_status(&o.key_action(&ts, "cmk:2", "default", json!({})).await, 200);
    assert_eq!(
        (
            key(&v, "cmk:1")["default"].clone(),
            key(&v, "cmk:2")["default"].clone()
        ),
        (json!(false), json!(true)),
        "{v}"
    );
    tree.open_all(&ts, &o).await.unwrap();
    ts.restart();
    tree.open_all(&ts, &o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_all_goes_back_to_the_managed_key_which_needs_no_kms() {
    let (stack, ts, o) = byok_org("aws-disable-all", NO_CACHE).await;
    let moto = &stack.moto;
    let tree = SealedTree::seal(&ts, &o).await;
    // Not while the org is paused: the managed key would open it without the customer's KMS,
    // and no later CMK disable could take that back.
    assert_status(&o.act(&ts, &o.id, "pause", json!({})).await, 200);
    for path in ["/keys/disable-all", "/keys/managed/default"] {
        assert_error(
            &ts.post(&o.path(path), &o.admin, &json!({})).await,
            409,
            "scope_paused",
        );
    }
    let v = assert_status(&ts.get(&o.path("/keys"), &o.admin).await, 200);
    assert_eq!(key(&v, "cmk:1")["default"], true, "nothing changed: {v}");
    assert_status(&o.act(&ts, &o.id, "resume", json!({})).await, 200);
    let v = assert_status(
        &ts.post(&o.path("/keys/disable-all"), &o.admin, &json!({}))
            .await,
        200,
    );
    assert_eq!(key(&v, "managed")["default"], true, "{v}");
    assert_eq!(key(&v, "cmk:1")["state"], "disabled", "{v}");
    assert_eq!(
        v["receipt"]["entry"]["event"]["subject"]["key"], "all",
        "{v}"
    );
    // With the customer key disabled in KMS, everything opens (no cache: every open unwraps,
    // with the managed key).
    moto.key_admin("disable_key", &moto.key_arn);
    tree.open_all(&ts, &o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kms_call_is_in_the_verified_audit_log() {
    let (stack, ts, o) = byok_org("aws-audit", NO_CACHE).await;
    let moto = &stack.moto;
    let tree = SealedTree::seal(&ts, &o).await;
    // Attaching wrapped the root (Encrypt); a refused unwrap is logged too.
    moto.key_admin("disable_key", &moto.key_arn);
    assert_error(
        &tree.open_all(&ts, &o).await.unwrap_err(),
        424,
        "kms_key_disabled",
    );
    let v = assert_status(&ts.get(&o.path("/audit/verify"), &o.admin).await, 200);
    assert_eq!(v["ok"], true, "{v}");
    let rows = o.audit(&ts, &o.admin).await;
    let kms: Vec<&serde_json::Value> = rows
        .iter()
        .filter(|r| r["event"]["type"] == "kms_call")
        .collect();
    assert!(
        kms.iter()
            .any(|r| r["event"]["ok"] == false && r["event"]["error"] == "key_disabled"),
        "{kms:?}"
    );
    assert!(kms.iter().any(|r| r["event"]["op"] == "Encrypt"));
}

/// The customer's own log of KMS calls (CloudTrail; here the front before moto, which sees
/// every call the server makes) and byok's audit log list the same calls: attaching (its
/// validation's describe and probes, then the root's wrap), a dry-run validation of another
/// key, a revalidation, data calls that unwrap, a refused one, and a revalidation of the
/// disabled key. Each validation is one `key_validation` row listing its calls, in order; its
/// probes carry `byok:version` 0 in their encryption context, which no root version has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kms_call_in_the_customers_log_is_in_byoks() {
    let (stack, ts, o) = byok_org("aws-trail", NO_CACHE).await;
    let moto = &stack.moto;
    let tree = SealedTree::seal(&ts, &o).await;
    // A throttled call is retried: each attempt is an event of the customer's log, and one
    // `attempts` of byok's row. Here a data call's Decrypt and a dry run's Describe.
    stack.front.inject([Fault::Throttle, Fault::Throttle]);
    tree.open_all(&ts, &o).await.unwrap();
    let other = json!({ "provider": "aws", "key": moto.second_key_arn });
    stack.front.inject([Fault::Throttle]);
    let dry = assert_status(
        &ts.post(&o.path("/keys/validate"), &o.admin, &other).await,
        200,
    );
    assert_eq!(dry["ok"], true, "{dry}");
    let again = assert_status(
        &o.key_action(&ts, "cmk:1", "validate", json!({})).await,
        200,
    );
    assert_eq!(again["ok"], true, "{again}");
    moto.key_admin("disable_key", &moto.key_arn);
    assert_error(
        &tree.open_all(&ts, &o).await.unwrap_err(),
        424,
        "kms_key_disabled",
    );
    let disabled = assert_status(
        &o.key_action(&ts, "cmk:1", "validate", json!({})).await,
        200,
    );
    assert_eq!(disabled["ok"], false, "{disabled}");

    let trail = stack.front.trail();
    let rows = o.audit(&ts, &o.admin).await;
    let events: Vec<&serde_json::Value> = rows.iter().map(|r| &r["event"]).collect();
    let validations: Vec<&serde_json::Value> = events
        .iter()
        .copied()
        .filter(|e| e["type"] == "key_validation")
        .collect();
    assert_logs_agree(&events, &trail);
    // The attach's, the dry run's, the two revalidations': the first three described, wrapped
    // and unwrapped a probe; the last found the key disabled and went no further.
    let keys: Vec<&str> = validations
        .iter()
        .map(|v| v["key"].as_str().unwrap())
        .collect();
    // The attach's names the key as pasted (an alias), the others as given.
    assert_eq!(
        keys,
        [
            moto.alias_arn.as_str(),
            &moto.second_key_arn,
            "cmk:1",
            "cmk:1"
        ]
    );
    let ops = |v: &serde_json::Value| -> Vec<String> {
        v["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| s(c, "op"))
            .collect()
    };
    for v in &validations[..3] {
        assert_eq!(ops(v), ["Describe", "Encrypt", "Decrypt"], "{v}");
        assert_eq!(v["ok"], true);
    }
    assert_eq!(ops(validations[3]), ["Describe"]);
    assert_eq!(validations[3]["ok"], false);
    assert_eq!(
        validations[1]["calls"][0]["attempts"], 2,
        "{}",
        validations[1]
    );
    let retried: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "kms_call" && e["attempts"] != 1)
        .collect();
    assert_eq!(retried.len(), 1, "{retried:?}");
    assert_eq!(
        (s(retried[0], "op"), &retried[0]["attempts"]),
        ("Decrypt".into(), &json!(3))
    );
    let probes = trail
        .iter()
        .filter(|e| e.version.as_deref() == Some("0"))
        .count();
    assert_eq!(probes, 6, "{trail:?}");
}

/// Asserts that the KMS requests `events` (an org's audit log) record, retries included,
/// are the ones the customer's KMS received (`trail`), operation by operation.
fn assert_logs_agree(events: &[&serde_json::Value], trail: &[TrailEntry]) {
    let logged = |op: &str| -> u64 {
        let calls = events
            .iter()
            .copied()
            .filter(|e| e["type"] == "kms_call" && e["op"] == op);
        let probes = events
            .iter()
            .filter(|e| e["type"] == "key_validation")
            .flat_map(|v| v["calls"].as_array().unwrap())
            .filter(|c| c["op"] == op);
        calls
            .chain(probes)
            .map(|c| c["attempts"].as_u64().unwrap())
            .sum()
    };
    let received = |op: &str| trail.iter().filter(|e| e.op == op).count() as u64;
    for (ours, theirs) in [
        ("Describe", "DescribeKey"),
        ("Encrypt", "Encrypt"),
        ("Decrypt", "Decrypt"),
    ] {
        assert_eq!(
            logged(ours),
            received(theirs),
            "{ours}: {trail:?} {events:?}"
        );
    }
}

/// A call whose request is dropped before its answer is read (here: the KMS hangs, and the
/// request's deadline passes) is still in the org's log: the customer's KMS logged it. Its
/// row, written with the org's next row, says how many requests it sent and that byok never
/// read the answer (`Dropped`). So is a validation cut off the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_by_its_deadline_is_still_in_the_log() {
    let (stack, ts, o, tree) = cut_off_calls("aws-cut-off", 60_000).await;
    // The next call's row comes with them.
    tree.open_all(&ts, &o).await.unwrap();
    let rows = o.audit(&ts, &o.admin).await;
    assert_cut_off_rows(&stack, &rows, &stack.front.trail());
}

/// Rows of calls cut off mid-way in an org no one uses again are not held in memory for
/// good: the round before each checkpoint writes them, without another call of the org.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_reaches_the_log_by_the_next_checkpoint() {
    let (stack, ts, o, _tree) = cut_off_calls("aws-cut-off-tick", 1_000).await;
    let mut rows = o.audit(&ts, &o.admin).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let validated = |rows: &[serde_json::Value]| {
        rows.iter()
            .any(|r| r["event"]["key"] == stack.moto.second_key_arn)
    };
    // The validation was cut off last.
    while !validated(&rows) {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint round wrote the held rows: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = o.audit(&ts, &o.admin).await;
    }
    assert_cut_off_rows(&stack, &rows, &stack.front.trail());
}

/// A server stopped as a service manager stops it (SIGTERM) writes the rows it still holds
/// before it exits: a restart loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cut_off_before_a_stop_are_in_the_log_after_it() {
    // No checkpoint round before the stop: only the shutdown can write them.
    let (stack, mut ts, o, _tree) = cut_off_calls("aws-cut-off-stop", 3_600_000).await;
    // (The restarted server's first health check describes the key: no row, by design.)
    let trail = stack.front.trail();
    ts.stop_and_start();
    assert_cut_off_rows(&stack, &o.audit(&ts, &o.admin).await, &trail);
}

/// A server on an org with its own key, checkpoints every `checkpoint_ms`, where one data call
/// and one validation of another key were cut off by their deadline while the KMS hung.
async fn cut_off_calls(
    name: &str,
    checkpoint_ms: u64,
) -> (AwsStack, TestServer, TestOrg, SealedTree) {
    let stack = AwsStack::start().await;
    let checkpoint_ms = checkpoint_ms.to_string();
    let ts = TestServer::start_with(name, |data| {
        stack.server_with(
            data,
            &[
                ("BYOK_REQUEST_TIMEOUT_MS", "2000"),
                ("BYOK_CHECKPOINT_INTERVAL_MS", &checkpoint_ms),
            ],
        )
    });
    let o = ts.org(NO_CACHE).await;
    stack.attach_default_key(&ts, &o).await;
    let tree = SealedTree::seal(&ts, &o).await;
    stack.front.inject([Fault::Hang]);
    assert_error(
        &tree.open_all(&ts, &o).await.unwrap_err(),
        408,
        "request_timeout",
    );
    let other = json!({ "provider": "aws", "key": stack.moto.second_key_arn });
    stack.front.inject([Fault::Hang]);
    assert_error(
        &ts.post(&o.path("/keys/validate"), &o.admin, &other).await,
        408,
        "request_timeout",
    );
    (stack, ts, o, tree)
}

/// `rows` (the org's log after [`cut_off_calls`]) hold the cut-off data call and validation,
/// and every request the customer's KMS received (`trail`).
fn assert_cut_off_rows(stack: &AwsStack, rows: &[serde_json::Value], trail: &[TrailEntry]) {
    let events: Vec<&serde_json::Value> = rows.iter().map(|r| &r["event"]).collect();
    let dropped: Vec<_> = events
        .iter()
        .filter(|e| e["provider_code"] == "Dropped")
        .map(|e| (s(e, "op"), e["attempts"].clone(), e["ok"].clone()))
        .collect();
    assert_eq!(dropped, [("Decrypt".into(), json!(1), json!(false))]);
    let cut: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "key_validation" && e["key"] == stack.moto.second_key_arn)
        .collect();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0]["ok"], false);
    assert_eq!(
        cut[0]["calls"],
        json!([{ "op": "Describe", "attempts": 1, "ok": false,
            "error": "unavailable", "provider_code": "Dropped" }])
    );
    assert_logs_agree(&events, trail);
}

/// A recorded denial stands until a call of the kind it refused succeeds. A health check
/// that cannot reach the KMS (an outage) does not overwrite it; nor does the next check's
/// describe alone clear it while the customer still refuses Decrypt: that check unwraps to
/// confirm. Given back, the next check clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_does_not_clear_a_recorded_denial() {
    let (stack, ts, o) = byok_org("aws-denial-stands", NO_CACHE).await;
    let tree = SealedTree::seal(&ts, &o).await;
    stack.moto.grant_only(&["kms:DescribeKey"]);
    assert_error(
        &tree.open_all(&ts, &o).await.unwrap_err(),
        424,
        "kms_access_denied",
    );
    let health = |keys: serde_json::Value| key(&keys, "cmk:1")["health"].clone();
    assert_eq!(health(o.keys(&ts).await), json!("access_denied"));
    let (check_path, nothing) = (o.path("/keys/check"), json!({}));
    let check = || ts.post(&check_path, &o.admin, &nothing);
    stack.front.set_down(Some(Fault::Unavailable));
    assert_status(&check().await, 200);
    stack.front.set_down(None);
    assert_eq!(health(o.keys(&ts).await), json!("access_denied"));
    let decrypts = || {
        let trail = stack.front.trail();
        trail.iter().filter(|e| e.op == "Decrypt").count()
    };
    let before = decrypts();
    assert_status(&check().await, 200);
    assert_eq!(health(o.keys(&ts).await), json!("access_denied"));
    assert_eq!(decrypts(), before + 1, "the check unwrapped to confirm");
    stack.moto.grant(true);
    assert_status(&check().await, 200);
    assert_eq!(health(o.keys(&ts).await), json!("ok"));
    tree.open_all(&ts, &o).await.unwrap();
}

/// A paused org asks no key for its root: making another key the default, re-enabling one,
/// attaching one are refused with `scope_paused`, before any KMS call (each would put the
/// root in the vendor's memory, if only to compare or wrap it). Disabling a key only takes
/// access away and works. A recorded denial stands: the health check does not unwrap to clear
/// it until the org is resumed. Then all of it works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_org_asks_no_key_for_its_root() {
    let (stack, ts, o) = byok_org("aws-paused-keys", NO_CACHE).await;
    let moto = &stack.moto;
    let tree = SealedTree::seal(&ts, &o).await;
    assert_status(
        &o.attach_aws_key(&ts, "second", &moto.second_key_arn).await,
        201,
    );
    // A denial recorded by a data call: the customer took Decrypt away, then gave it back.
    moto.grant_only(&["kms:DescribeKey"]);
    assert_error(
        &tree.open_all(&ts, &o).await.unwrap_err(),
        424,
        "kms_access_denied",
    );
    moto.grant(true);
    let health = |keys: serde_json::Value| key(&keys, "cmk:1")["health"].clone();
    assert_eq!(health(o.keys(&ts).await), json!("access_denied"));
    assert_status(&o.act(&ts, &o.id, "pause", json!({})).await, 200);
    let since = o.audit(&ts, &o.admin).await.len();
    let paused = |answer| {
        assert_error(&answer, 409, "scope_paused");
    };
    paused(o.key_action(&ts, "cmk:2", "default", json!({})).await);
    // Refused before the new key's live validation: no call, no `key_validation` row.
    let calls = kms_calls(&ts).await;
    paused(o.attach_aws_key(&ts, "third", &moto.key_arn).await);
    assert_eq!(kms_calls(&ts).await, calls, "the attach asked a KMS");
    let (check_path, nothing) = (o.path("/keys/check"), json!({}));
    let check = || ts.post(&check_path, &o.admin, &nothing);
    assert_status(&check().await, 200);
    assert_eq!(health(o.keys(&ts).await), json!("access_denied"));
    let target = json!({ "target": "cmk:1" });
    assert_status(&o.key_action(&ts, "cmk:2", "disable", target).await, 200);
    paused(o.key_action(&ts, "cmk:2", "enable", json!({})).await);
    let rows = o.audit(&ts, &o.admin).await;
    let unwraps: Vec<&serde_json::Value> = rows[since..]
        .iter()
        .filter(|r| r["event"]["type"] == "kms_call")
        .filter(|r| r["event"]["op"] == "Decrypt" || r["event"]["op"] == "Encrypt")
        .collect();
    assert!(unwraps.is_empty(), "KMS asked while paused: {unwraps:?}");
    let validated = rows[since..]
        .iter()
        .filter(|r| r["event"]["type"] == "key_validation");
    assert_eq!(validated.count(), 0, "a key validated while paused");
    assert_status(&o.act(&ts, &o.id, "resume", json!({})).await, 200);
    assert_status(&check().await, 200);
    assert_eq!(health(o.keys(&ts).await), json!("ok"));
    assert_status(&o.key_action(&ts, "cmk:2", "enable", json!({})).await, 200);
    assert_status(&o.key_action(&ts, "cmk:2", "default", json!({})).await, 200);
    tree.open_all(&ts, &o).await.unwrap();
}
