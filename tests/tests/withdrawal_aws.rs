//! Withdrawal through the customer's AWS account: a real `byok serve`, moto with signatures
//! and IAM on, the key-state front before it. The customer removes byok's IAM grant (boto3, as
//! their IAM administrator): after the TTL every data call fails with 424, going back to the
//! managed key fails and changes nothing (a fresh unwrap, never the cache), a refused enable
//! leaves nothing pending, and restoring the grant restores access. Offline, `managed.key` and
//! the database open no root copy of a BYOK org. Each test starts its own stack: the grant and
//! a key's state in moto are seen by every server on it.

use std::ops::Deref;
use std::time::Duration;

use byok_core::kms::KmsErrorKind;
use byok_core::kms::aws::Aws;
use byok_core::kms::aws::request::AwsCredentials;
use byok_core::kms::provider::{Access, RoleTrust};
use byok_core::scope::{MANAGED_SCOPE, managed_root_context};
use byok_core::{Envelope, Error, FormatError, KeyId, ScopeId, ScopeKey, SecretBytes};
use byok_server::service::kms::{KeyAccess, Kms, KmsSettings};
use byok_tests::aws_stack::AwsStack;
use byok_tests::fixtures::{OrgSettings, TestOrg, TestServer, assert_error, assert_status, key};
use byok_tests::server::Api;
use serde_json::{Value, json};

/// An org with a scope `team` and data sealed in it.
struct Org {
    o: TestOrg,
    sealed: String,
}

impl Deref for Org {
    type Target = TestOrg;
    fn deref(&self) -> &TestOrg {
        &self.o
    }
}

/// Org `acme` with an unwrap cache of `ttl_ms` and data sealed under the managed key.
async fn managed_org(ts: &TestServer, ttl_ms: u64) -> Org {
    let o = ts
        .org(OrgSettings::named("acme").cache_ttl_ms(ttl_ms))
        .await;
    let team = o.scope(ts, &o.id, "team").await;
    let sealed = o.seal(ts, &team, b"customer data").await;
    Org { o, sealed }
}

/// The same, then the stack's key attached and made the default (`cmk:1`).
async fn byok_org(stack: &AwsStack, ts: &TestServer, ttl_ms: u64) -> Org {
    let o = managed_org(ts, ttl_ms).await;
    stack.attach_default_key(ts, &o).await;
    o
}

/// A fresh stack, a server on it and one BYOK org (see [`byok_org`]).
async fn one_byok_org(name: &str, ttl_ms: u64) -> (AwsStack, TestServer, Org) {
    let stack = AwsStack::start().await;
    let ts = stack.test_server(name);
    let o = byok_org(&stack, &ts, ttl_ms).await;
    (stack, ts, o)
}

/// A cache TTL no test outlives: a root unwrapped once stays warm.
const WARM: u64 = 600_000;

async fn decrypt(api: &Api, o: &Org) -> (u16, Value) {
    o.decrypt(api, &o.sealed).await
}

async fn keys(api: &Api, o: &Org) -> Value {
    o.o.keys(api).await
}

/// What a refused call must not change: each key's state and which is the default, and
/// whether the vendor can decrypt (health may record the denial).
fn shape(keys: &Value) -> Value {
    let list: Vec<Value> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| json!([k["id"], k["state"], k["default"]]))
        .collect();
    json!({ "keys": list, "vendor_can_decrypt": keys["vendor_can_decrypt"] })
}

/// Asserts that `o`'s keys have the shape they had `before` and the vendor still cannot
/// decrypt.
async fn assert_unchanged(api: &Api, o: &Org, before: &Value) {
    let after = keys(api, o).await;
    assert_eq!(shape(&after), shape(before), "nothing changed");
    assert_eq!(after["vendor_can_decrypt"], false);
}

/// Every root copy in the server's database: (org, holder, version, wrapped).
async fn root_copies(ts: &TestServer) -> Vec<(String, String, i64, Vec<u8>)> {
    let pool = ts.db(true).await;
    let rows = sqlx::query_as("SELECT org_id, holder, version, wrapped FROM root_copies")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_attached_through_its_alias_is_stored_by_arn_and_ends_vendor_access() {
    let stack = AwsStack::start().await;
    let moto = &stack.moto;
    let ts = stack.test_server("withdrawal-aws-attach");
    let a = managed_org(&ts, 1000).await;
    assert_eq!(keys(&ts, &a).await["vendor_can_decrypt"], true);
    // Attached through its alias; stored by the key ARN DescribeKey gave.
    stack.attach_default_key(&ts, &a).await;
    let v = keys(&ts, &a).await;
    let cmk = key(&v, "cmk:1").clone();
    assert_eq!(cmk["key"], json!(moto.key_arn), "{v}");
    assert_eq!(cmk["key_pasted"], json!(moto.alias_arn), "{v}");
    assert_eq!(v["vendor_can_decrypt"], false, "BYOK is exclusive: {v}");
    let managed = key(&v, "managed");
    assert_eq!(managed["state"], "disabled", "{v}");
    assert_status(&decrypt(&ts, &a).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_the_managed_key_opens_no_root_copy_of_a_byok_org() {
    let stack = AwsStack::start().await;
    let mut ts = stack.test_server("withdrawal-aws-offline");
    let data = ts.data();
    // Three BYOK orgs: with a disabled second key, without a cache, with a warm cache.
    let a = byok_org(&stack, &ts, 1000).await;
    stack.attach_disabled_second_key(&ts, &a).await;
    let b = byok_org(&stack, &ts, 0).await;
    let c = byok_org(&stack, &ts, WARM).await;
    assert_status(&decrypt(&ts, &c).await, 200);

    // With the server stopped, managed.key and the database open no root copy of a BYOK org
    // (every row is tried, whatever holder it claims).
    ts.server.kill9();
    let managed_key = {
        let bytes = std::fs::read(data.join("managed.key")).unwrap();
        let mut k: [u8; 32] = bytes.as_slice().try_into().unwrap();
        ScopeKey::new(
            KeyId::new(MANAGED_SCOPE, 1),
            SecretBytes::from_bytes(&mut k),
        )
    };
    let rows = root_copies(&ts).await;
    let mut tried = 0;
    for o in [&a, &b, &c] {
        let org_id = ScopeId::parse_hex(&o.id).unwrap();
        for (row_org, holder, version, wrapped) in rows.iter().filter(|r| r.0 == o.id) {
            let ctx = managed_root_context(org_id, u32::try_from(*version).unwrap());
            let opened =
                Envelope::<byok_core::DefaultBackend>::unwrap_secret(&managed_key, &ctx, wrapped);
            // A customer copy is the KMS's ciphertext, not a byok envelope at all.
            assert!(
                matches!(opened, Err(Error::Format(FormatError::BadMagic { .. }))),
                "{row_org} {holder} v{version} opened offline, or not as KMS ciphertext: {:?}",
                opened.map(|_| "opened")
            );
            assert_ne!(holder, "managed", "a managed copy survived under BYOK");
            tried += 1;
        }
    }
    assert!(tried >= 3, "every BYOK org has its customer copy ({tried})");
    ts.restart();
    assert_status(&decrypt(&ts, &a).await, 200);
    assert_status(&decrypt(&ts, &c).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_copy_opens_through_the_kms_only_as_its_own_org_and_version() {
    let stack = AwsStack::start().await;
    let moto = &stack.moto;
    let ts = stack.test_server("withdrawal-aws-binding");
    let a = byok_org(&stack, &ts, 1000).await;
    let b = byok_org(&stack, &ts, 0).await;
    let rows = root_copies(&ts).await;
    // Each customer copy is bound to its org and root version in the KMS encryption context:
    // it opens through the KMS as version 1 of org A, and as nothing else.
    let (_, _, _, copy) = rows
        .iter()
        .find(|r| r.0 == a.id && r.1 == "cmk:1" && r.2 == 1)
        .unwrap();
    let mut settings = KmsSettings::default();
    settings.sources.vendor.aws = Some(AwsCredentials::new(
        &moto.byok.access_key_id,
        &moto.byok.secret_access_key,
        None,
        None,
    ));
    settings
        .danger_endpoints
        .insert("aws".into(), moto.url.clone());
    let kms = Kms::new(settings, Default::default()).unwrap();
    let access = |org: &str| KeyAccess {
        provider: &Aws,
        access: Access {
            org: org.into(),
            key: moto.key_arn.clone(),
            role: None,
            trust: RoleTrust::ExternalId,
            external_id: String::new(),
            audience: None,
            danger_base: Some(moto.url.clone()),
        },
    };
    if let Err(e) = kms.unwrap(&access(&a.id), copy, 1).await {
        panic!("org A's copy did not open as its version 1: {e}");
    }
    for (org, version) in [(&a.id, 2), (&b.id, 1)] {
        let e = kms.unwrap(&access(org), copy, version).await.unwrap_err();
        assert_eq!(e.kind, KmsErrorKind::InvalidCiphertext, "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_that_sees_the_key_disabled_drops_a_warm_cache_at_once() {
    let (stack, ts, c) = one_byok_org("withdrawal-aws-health", WARM).await;
    let moto = &stack.moto;
    assert_status(&decrypt(&ts, &c).await, 200);
    // The customer disables the key, a check sees it, and the warm 10-minute cache is dropped.
    moto.key_admin("disable_key", &moto.key_arn);
    assert_status(
        &ts.post(&c.path("/keys/check"), &c.admin, &json!({})).await,
        200,
    );
    assert_error(&decrypt(&ts, &c).await, 424, "kms_key_disabled");
    moto.key_admin("enable_key", &moto.key_arn);
    assert_status(&decrypt(&ts, &c).await, 200);
}

/// Validates `cmk:1` again, which fails; then the next decrypt is refused with `code`, and the
/// key's health is `health`.
async fn revalidation_withdraws(api: &Api, o: &Org, code: &str, health: &str) {
    let v = assert_status(
        &api.post(&o.path("/keys/cmk:1/validate"), &o.admin, &json!({}))
            .await,
        200,
    );
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_error(&decrypt(api, o).await, 424, code);
    let keys = keys(api, o).await;
    assert_eq!(key(&keys, "cmk:1")["health"], json!(health), "{keys}");
}

/// Validating an attached key again is a KMS call like any other: a denial it meets drops a
/// warm cache at once and is recorded as the key's health (not as a failed validation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_that_meets_the_key_disabled_drops_a_warm_cache_at_once() {
    let (stack, ts, c) = one_byok_org("withdrawal-aws-revalidate", WARM).await;
    let moto = &stack.moto;
    assert_status(&decrypt(&ts, &c).await, 200);
    moto.key_admin("disable_key", &moto.key_arn);
    revalidation_withdraws(&ts, &c, "kms_key_disabled", "key_disabled").await;
    moto.key_admin("enable_key", &moto.key_arn);
    assert_status(&decrypt(&ts, &c).await, 200);
}

/// The same with the grant removed instead of the key disabled: the validation's refused call
/// is a denial from the KMS like any other, and a warm cache goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revalidation_refused_by_the_kms_drops_a_warm_cache_at_once() {
    let (stack, ts, c) = one_byok_org("withdrawal-aws-revalidate-refused", WARM).await;
    assert_status(&decrypt(&ts, &c).await, 200);
    stack.moto.grant(false);
    revalidation_withdraws(&ts, &c, "kms_access_denied", "access_denied").await;
    stack.moto.grant(true);
    assert_status(&decrypt(&ts, &c).await, 200);
}

/// A describe is not a decrypt. The customer takes away only `kms:Decrypt` and leaves
/// `kms:DescribeKey`: the refused unwrap is recorded as the key's health, and the health check,
/// whose describe still succeeds, confirms the denial with an unwrap instead of clearing it
/// (which would show the key healthy while every unwrap fails). Once the grant is whole again,
/// the same check clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_keeps_a_decrypt_denial_its_describe_cannot_see() {
    let (stack, ts, c) = one_byok_org("withdrawal-aws-describe-only", 0).await;
    let health = |keys: Value| key(&keys, "cmk:1")["health"].clone();
    assert_status(&decrypt(&ts, &c).await, 200);
    stack.moto.grant_only(&["kms:DescribeKey"]);
    assert_error(&decrypt(&ts, &c).await, 424, "kms_access_denied");
    assert_eq!(health(keys(&ts, &c).await), json!("access_denied"));
    let (check_path, nothing) = (c.path("/keys/check"), json!({}));
    let check = || ts.post(&check_path, &c.admin, &nothing);
    assert_status(&check().await, 200);
    assert_eq!(health(keys(&ts, &c).await), json!("access_denied"));
    assert_error(&decrypt(&ts, &c).await, 424, "kms_access_denied");
    stack.moto.grant(true);
    assert_status(&check().await, 200);
    assert_eq!(health(keys(&ts, &c).await), json!("ok"));
    assert_status(&decrypt(&ts, &c).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_grant_refuses_an_org_without_a_cache_at_once() {
    let (stack, ts, b) = one_byok_org("withdrawal-aws-ttl0", 0).await;
    assert_status(&decrypt(&ts, &b).await, 200);
    stack.moto.grant(false);
    assert_error(&decrypt(&ts, &b).await, 424, "kms_access_denied");
    // The grant comes back: access comes back.
    stack.moto.grant(true);
    assert_status(&decrypt(&ts, &b).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_grant_stops_decrypt_once_the_cache_ttl_passes() {
    let (stack, ts, a) = one_byok_org("withdrawal-aws-ttl", 1000).await;
    assert_status(&decrypt(&ts, &a).await, 200);
    stack.moto.grant(false);
    // The server's unwrap cache reads the wall clock: waiting out org A's 1 s TTL is what is
    // tested.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_error(&decrypt(&ts, &a).await, 424, "kms_access_denied");
    // The grant comes back: access comes back.
    stack.moto.grant(true);
    assert_status(&decrypt(&ts, &a).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_grant_disable_all_fails_changes_nothing_and_evicts_a_warm_cache() {
    let (stack, ts, c) = one_byok_org("withdrawal-aws-warm", WARM).await;
    assert_status(&decrypt(&ts, &c).await, 200);
    stack.moto.grant(false);
    // A warm cache is no way back to the managed key: disable-all unwraps through the KMS now,
    // fails, changes nothing, and the denial evicts the org's cache at once (the TTL is 10 min).
    let before = keys(&ts, &c).await;
    let answer = ts
        .post(&c.path("/keys/disable-all"), &c.admin, &json!({}))
        .await;
    assert_error(&answer, 424, "kms_access_denied");
    // Evicted: the 10-minute cache no longer answers.
    assert_error(&decrypt(&ts, &c).await, 424, "kms_access_denied");
    assert_unchanged(&ts, &c, &before).await;
    // The grant comes back: access comes back.
    stack.moto.grant(true);
    assert_status(&decrypt(&ts, &c).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_grant_going_back_to_the_managed_key_fails_and_changes_nothing() {
    let (stack, ts, a) = one_byok_org("withdrawal-aws-back", WARM).await;
    // Warm: the refusals below must come from a fresh unwrap, never the cache.
    assert_status(&decrypt(&ts, &a).await, 200);
    stack.moto.grant(false);
    let before = keys(&ts, &a).await;
    for path in ["/keys/managed/default", "/keys/disable-all"] {
        let answer = ts.post(&a.path(path), &a.admin, &json!({})).await;
        assert_eq!(answer.0, 424, "{path}: {answer:?}");
        assert_error(&answer, 424, "kms_access_denied");
    }
    assert_unchanged(&ts, &a, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_enable_leaves_nothing_pending_even_after_the_grant_returns() {
    let (stack, ts, a) = one_byok_org("withdrawal-aws-enable", 0).await;
    stack.attach_disabled_second_key(&ts, &a).await;
    stack.moto.grant(false);
    // A refused enable changes nothing, now or later: no pending job, the key stays disabled.
    let before = keys(&ts, &a).await;
    let answer = a.key_action(&ts, "cmk:2", "enable", json!({})).await;
    assert_error(&answer, 424, "kms_access_denied");
    let answer = a.key_action(&ts, "managed", "enable", json!({})).await;
    assert_error(&answer, 400, "invalid_request");
    let job = a.job(&ts).await;
    assert_eq!(job, Value::Null, "no pending wrap after a refused call");
    assert_unchanged(&ts, &a, &before).await;
    // The grant comes back: access comes back; a health check does not enable cmk:2.
    stack.moto.grant(true);
    assert_status(&decrypt(&ts, &a).await, 200);
    let v = assert_status(
        &ts.post(&a.path("/keys/check"), &a.admin, &json!({})).await,
        200,
    );
    let cmk2 = key(&v, "cmk:2");
    assert_eq!(cmk2["state"], "disabled", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_grant_returns_going_back_to_the_managed_key_works_and_says_so() {
    let (stack, ts, a) = one_byok_org("withdrawal-aws-return", 0).await;
    stack.moto.grant(false);
    let answer = a.key_action(&ts, "managed", "default", json!({})).await;
    assert_error(&answer, 424, "kms_access_denied");
    stack.moto.grant(true);
    // Going back to the managed key, with the grant in place, works and says so.
    let v = assert_status(
        &a.key_action(&ts, "managed", "default", json!({})).await,
        200,
    );
    assert_eq!(v["vendor_can_decrypt"], true, "{v}");
    assert_status(&decrypt(&ts, &a).await, 200);
}
