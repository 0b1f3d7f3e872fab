//! Withdrawal through the customer's AWS account: a real `byok serve`, moto with signatures
//! and IAM on, the key-state front before it. The customer removes byok's IAM grant (boto3, as
//! their IAM administrator): after the TTL every data call fails with 424, going back to the
//! managed key fails and changes nothing (a fresh unwrap, never the cache), a refused enable
//! leaves nothing pending, and restoring the grant restores access. Offline, `managed.key` and
//! the database open no root copy of a BYOK org.

use std::ops::Deref;
use std::time::Duration;

use byok_core::scope::{MANAGED_SCOPE, managed_root_context};
use byok_core::{Envelope, KeyId, ScopeId, ScopeKey, SecretBytes};
use byok_server::service::aws::{Aws, AwsSettings, KeyAccess};
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

async fn org(ts: &TestServer, ttl_ms: u64) -> Org {
    let o = ts
        .org(OrgSettings::named("acme").cache_ttl_ms(ttl_ms))
        .await;
    let team = o.scope(ts, &o.id, "team").await;
    let sealed = o.seal(ts, &team, b"customer data").await;
    Org { o, sealed }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawing_the_grant_cuts_the_vendor_off() {
    let stack = AwsStack::start().await;
    let moto = &stack.moto;
    let mut ts = TestServer::start_with("withdrawal-aws", |data| stack.server(data));
    let data = ts.data();

    // Org A, 1 s TTL: attached through its alias; stored by the key ARN DescribeKey gave.
    let a = org(&ts, 1000).await;
    assert_eq!(keys(&ts, &a).await["vendor_can_decrypt"], true);
    a.attach_default(&ts, "prod", &moto.alias_arn, 1).await;
    let v = keys(&ts, &a).await;
    let cmk = key(&v, "cmk:1").clone();
    assert_eq!(cmk["key_arn"], json!(moto.key_arn), "{v}");
    assert_eq!(cmk["alias_arn"], json!(moto.alias_arn), "{v}");
    assert_eq!(v["vendor_can_decrypt"], false, "BYOK is exclusive: {v}");
    let managed = key(&v, "managed");
    assert_eq!(managed["state"], "disabled", "{v}");
    assert_eq!(decrypt(&ts, &a).await.0, 200);
    // A second key, attached and disabled (re-encryption to cmk:1), for the enable case.
    assert_status(
        &a.attach_aws_key(&ts, "second", &moto.second_key_arn).await,
        201,
    );
    let (st, v) = a
        .key_action(&ts, "cmk:2", "disable", json!({ "target": "cmk:1" }))
        .await;
    assert_eq!(st, 200, "{v}");

    // Org B, TTL 0: every use asks the KMS.
    let b = org(&ts, 0).await;
    b.attach_default(&ts, "prod", &moto.key_arn, 1).await;
    // Org C, a long TTL: its cache is warm when the grant goes.
    let c = org(&ts, 600_000).await;
    c.attach_default(&ts, "prod", &moto.key_arn, 1).await;
    assert_eq!(decrypt(&ts, &c).await.0, 200);

    // Offline: with the server stopped, managed.key and the database open no root copy of a
    // BYOK org (every row is tried, whatever holder it claims).
    ts.server.kill9();
    let managed_key = {
        let bytes = std::fs::read(data.join("managed.key")).unwrap();
        let mut k: [u8; 32] = bytes.as_slice().try_into().unwrap();
        ScopeKey::new(
            KeyId::new(MANAGED_SCOPE, 1),
            SecretBytes::from_bytes(&mut k),
        )
    };
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("byok.db").display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, i64, Vec<u8>)> =
        sqlx::query_as("SELECT org_id, holder, version, wrapped FROM root_copies")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut tried = 0;
    for o in [&a, &b, &c] {
        let org_id = ScopeId::parse_hex(&o.id).unwrap();
        for (row_org, holder, version, wrapped) in rows.iter().filter(|r| r.0 == o.id) {
            let ctx = managed_root_context(org_id, u32::try_from(*version).unwrap());
            let opened =
                Envelope::<byok_core::DefaultBackend>::unwrap_secret(&managed_key, &ctx, wrapped);
            assert!(
                opened.is_err(),
                "{row_org} {holder} v{version} opened offline"
            );
            assert_ne!(holder, "managed", "a managed copy survived under BYOK");
            tried += 1;
        }
    }
    assert!(tried >= 3, "every BYOK org has its customer copy ({tried})");
    // Each customer copy is bound to its org and root version in the KMS encryption context:
    // it opens through the KMS as version 1 of org A, and as nothing else.
    let (_, _, _, copy) = rows
        .iter()
        .find(|r| r.0 == a.id && r.1 == "cmk:1" && r.2 == 1)
        .unwrap();
    let kms = Aws::new(
        AwsSettings {
            vendor: Some(byok_core::kms::aws::request::AwsCredentials::new(
                &moto.byok.access_key_id,
                &moto.byok.secret_access_key,
                None,
                None,
            )),
            principal_arn: String::new(),
            danger_endpoint: Some(moto.url.clone()),
        },
        Default::default(),
    )
    .unwrap();
    let access = KeyAccess {
        arn: byok_core::kms::aws::KeyArn::parse(&moto.key_arn).unwrap(),
        role: None,
        external_id: String::new(),
    };
    assert!(kms.decrypt(&a.id, &access, copy, 1).await.is_ok());
    for (org, version) in [(&a.id, 2), (&b.id, 1)] {
        let e = kms.decrypt(org, &access, copy, version).await.unwrap_err();
        assert_eq!(
            e.kind,
            byok_core::kms::KmsErrorKind::InvalidCiphertext,
            "{e}"
        );
    }
    pool.close().await;
    ts.restart();
    assert_eq!(decrypt(&ts, &a).await.0, 200);
    assert_eq!(decrypt(&ts, &c).await.0, 200);

    // The health check alone evicts: the customer disables the key, a check sees it, and org C's
    // warm 10-minute cache is dropped at once.
    moto.key_admin("disable_key", &moto.key_arn);
    assert_status(
        &ts.post(&c.path("/keys/check"), &c.admin, &json!({})).await,
        200,
    );
    let (st, v) = decrypt(&ts, &c).await;
    assert_error(&(st, v), 424, "kms_key_disabled");
    moto.key_admin("enable_key", &moto.key_arn);
    assert_eq!(decrypt(&ts, &c).await.0, 200);

    // The customer removes byok's grant.
    moto.grant(false);
    // TTL 0: refused at once.
    let (st, v) = decrypt(&ts, &b).await;
    assert_error(&(st, v), 424, "kms_access_denied");
    // A warm cache is no way back to the managed key: disable-all unwraps through the KMS now,
    // fails, changes nothing, and the denial evicts the org's cache at once (the TTL is 10 min).
    let before = keys(&ts, &c).await;
    let (st, v) = ts
        .post(&c.path("/keys/disable-all"), &c.admin, &json!({}))
        .await;
    assert_error(&(st, v), 424, "kms_access_denied");
    // Evicted: the 10-minute cache no longer answers.
    assert_error(&decrypt(&ts, &c).await, 424, "kms_access_denied");
    let after = keys(&ts, &c).await;
    assert_eq!(shape(&after), shape(&before), "nothing changed");
    assert_eq!(after["vendor_can_decrypt"], false);
    // After the TTL, org A's data calls fail; managed as default fails; nothing changes. The
    // server's unwrap cache reads the wall clock: waiting out org A's 1 s TTL is what is tested.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, v) = decrypt(&ts, &a).await;
    assert_error(&(st, v), 424, "kms_access_denied");
    let before = keys(&ts, &a).await;
    for path in ["/keys/managed/default", "/keys/disable-all"] {
        let answer = ts.post(&a.path(path), &a.admin, &json!({})).await;
        assert_eq!(answer.0, 424, "{path}: {answer:?}");
        assert_error(&answer, 424, "kms_access_denied");
    }
    // A refused enable changes nothing, now or later: no pending job, the key stays disabled.
    let (st, v) = a.key_action(&ts, "cmk:2", "enable", json!({})).await;
    assert_error(&(st, v), 424, "kms_access_denied");
    let (st, v) = a.key_action(&ts, "managed", "enable", json!({})).await;
    assert_error(&(st, v), 400, "invalid_request");
    let job = a.job(&ts).await;
    assert_eq!(job, Value::Null, "no pending wrap after a refused call");
    let after = keys(&ts, &a).await;
    assert_eq!(shape(&after), shape(&before), "nothing changed");
    assert_eq!(after["vendor_can_decrypt"], false);

    // The grant comes back: access comes back; a health check does not enable cmk:2.
    moto.grant(true);
    for o in [&a, &b, &c] {
        let (st, v) = decrypt(&ts, o).await;
        assert_eq!(st, 200, "{v}");
    }
    let (_, v) = ts.post(&a.path("/keys/check"), &a.admin, &json!({})).await;
    let cmk2 = key(&v, "cmk:2");
    assert_eq!(cmk2["state"], "disabled", "{v}");
    // Going back to the managed key, with the grant in place, works and says so.
    let (st, v) = a.key_action(&ts, "managed", "default", json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["vendor_can_decrypt"], true, "{v}");
    assert_eq!(decrypt(&ts, &a).await.0, 200);
}
