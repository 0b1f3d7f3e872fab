//! `byok serve` with customer keys in AWS KMS: a real server process, moto's KMS with signature
//! and IAM checks on, and the state-enforcing front before it (moto alone would keep using a
//! disabled key).

use std::time::Duration;

use byok_tests::aws_stack::AwsStack;
use byok_tests::fixtures::{
    OrgSettings, TestOrg, TestServer, assert_error, assert_status, error_message, key,
};
use byok_tests::server::{field as s, metric};
use serde_json::json;

async fn kms_calls(url: &str) -> u64 {
    metric(url, "byok_kms_calls_total").await
}

/// An AWS stack and a server on it with org `acme` (1 s unwrap cache).
async fn aws_org(name: &str) -> (AwsStack, TestServer, TestOrg) {
    let stack = AwsStack::start().await;
    let ts = TestServer::start_with(name, |data| stack.server(data));
    let o = ts.org(OrgSettings::named("acme").cache_ttl_ms(1000)).await;
    (stack, ts, o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_or_malformed_key_is_refused_with_the_fix_and_nothing_is_attached() {
    let (stack, ts, o) = aws_org("aws-validate").await;
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
async fn customer_keys_end_to_end() {
    let (stack, mut ts, o) = aws_org("aws").await;
    let moto = &stack.moto;
    let (org, admin) = (o.id.clone(), o.admin.clone());
    let keys_path = o.path("/keys");

    // A 3-level tree with data at every level (sealed while the managed key is the default).
    let team = o.scope(&ts, &org, "team").await;
    let thread = o.scope(&ts, &team, "thread").await;
    let mut sealed = Vec::new();
    for (scope, data) in [
        (&org, "org level"),
        (&team, "level 0"),
        (&thread, "level 1"),
    ] {
        sealed.push((o.seal(&ts, scope, data.as_bytes()).await, data));
    }
    let all_open = async |ts: &TestServer| -> Result<(), (u16, serde_json::Value)> {
        for (ct, data) in &sealed {
            o.opens_in(ts, ct, &json!({}), data.as_bytes()).await?;
        }
        Ok(())
    };

    // Attach the key (validated live, then it wraps the root), make it the default.
    let v = assert_status(&o.attach_aws_key(&ts, "prod", &moto.alias_arn).await, 201);
    assert_eq!(
        (s(&v["key"], "id"), s(&v["key"], "state")),
        ("cmk:1".into(), "ready".into()),
        "{v}"
    );
    let v = assert_status(&o.key_action(&ts, "cmk:1", "default", json!({})).await, 200);
    assert_eq!(key(&v, "cmk:1")["default"], true);
    all_open(&ts).await.unwrap();

    // Pause the middle (team): team and thread fail naming it, the org level still works.
    assert_status(&o.act(&ts, &team, "pause", json!({})).await, 200);
    for (i, (ct, _)) in sealed.iter().enumerate() {
        let answer = o.decrypt(&ts, ct).await;
        if i == 0 {
            assert_status(&answer, 200);
        } else {
            let v = assert_error(&answer, 409, "scope_paused");
            assert!(error_message(&v).contains(&team));
        }
    }
    o.act(&ts, &team, "resume", json!({})).await;
    all_open(&ts).await.unwrap();

    // KMS calls are bounded by the TTL, not by traffic.
    let before = kms_calls(&ts.url).await;
    for _ in 0..30 {
        all_open(&ts).await.unwrap();
    }
    assert!(
        kms_calls(&ts.url).await - before <= 1,
        "cached root: at most one unwrap within the TTL"
    );

    // The customer disables the key in KMS: after the TTL everything fails, health says why.
    // The server reads the wall clock for its unwrap cache: waiting out the org's 1 s TTL is
    // the behaviour under test.
    moto.key_admin("disable_key", &moto.key_arn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_error(&all_open(&ts).await.unwrap_err(), 424, "kms_key_disabled");
    let (_, v) = ts
        .post(&format!("{keys_path}/check"), &admin, &json!({}))
        .await;
    assert_eq!(key(&v, "cmk:1")["health"], "key_disabled", "{v}");
    let (st, v) = ts
        .post(&format!("{keys_path}/cmk:1/validate"), &admin, &json!({}))
        .await;
    assert_eq!((st, v["ok"].clone()), (200, json!(false)), "{v}");
    moto.key_admin("enable_key", &moto.key_arn);
    let (_, v) = ts
        .post(&format!("{keys_path}/cmk:1/validate"), &admin, &json!({}))
        .await;
    assert_eq!(v["ok"], true, "{v}");
    all_open(&ts).await.unwrap();
    let (_, v) = ts
        .post(&format!("{keys_path}/check"), &admin, &json!({}))
        .await;
    assert_eq!(key(&v, "cmk:1")["health"], "ok", "{v}");

    // A second key; make it the default; disable the first with re-encryption to it.
    assert_status(
        &o.attach_aws_key(&ts, "second", &moto.second_key_arn).await,
        201,
    );
    let (st, v) = ts
        .post(
            &format!("{keys_path}/cmk:1/disable"),
            &admin,
            &json!({ "target": "cmk:2" }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            key(&v, "cmk:1")["state"].clone(),
            key(&v, "cmk:2")["default"].clone()
        ),
        (json!("disabled"), json!(true)),
        "{v}"
    );
    // The first key's copy is gone: even with it disabled in KMS, everything opens via cmk:2.
    // Past the TTL, so that the opens below unwrap again (through cmk:2).
    moto.key_admin("disable_key", &moto.key_arn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    all_open(&ts).await.unwrap();
    ts.restart();
    all_open(&ts).await.unwrap();

    // Disable all: back to the managed key, which needs no KMS at all.
    let (st, v) = ts
        .post(&format!("{keys_path}/disable-all"), &admin, &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(key(&v, "managed")["default"], true, "{v}");
    assert_eq!(key(&v, "cmk:2")["state"], "disabled", "{v}");
    // Past the TTL again: the opens below unwrap with the managed key.
    moto.key_admin("disable_key", &moto.second_key_arn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    all_open(&ts).await.unwrap();

    // Every KMS call is in the verified audit log.
    let (_, v) = ts
        .get(&format!("/v1/orgs/{org}/audit/verify"), &admin)
        .await;
    assert_eq!(v["ok"], true, "{v}");
    let rows = o.audit(&ts, &admin).await;
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
