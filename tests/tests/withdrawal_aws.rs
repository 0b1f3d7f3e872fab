//! Withdrawal through the customer's AWS account: a real `byok serve`, moto with signatures
//! and IAM on, the key-state front before it. The customer removes byok's IAM grant (boto3, as
//! their IAM administrator): after the TTL every data call fails with 424, going back to the
//! managed key fails and changes nothing (a fresh unwrap, never the cache), a refused enable
//! leaves nothing pending, and restoring the grant restores access. Offline, `managed.key` and
//! the database open no root copy of a BYOK org.

use std::time::Duration;

use base64ct::{Base64, Encoding};
use byok_core::scope::{MANAGED_SCOPE, managed_root_context};
use byok_core::{Envelope, KeyId, ScopeId, ScopeKey, SecretBytes};
use byok_server::service::aws::{Aws, AwsSettings, KeyAccess};
use byok_tests::aws_stack::AwsStack;
use byok_tests::server::{Api, temp_dir};
use byok_tests::server::{error_code as code, field as s};
use serde_json::{Value, json};

struct Org {
    id: String,
    admin: String,
    service: String,
    sealed: String,
}

async fn org(api: &Api, operator: &str, ttl_ms: u64) -> Org {
    let (id, admin, service) = api.org_with_service(operator, ttl_ms).await;
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{id}/scopes"),
            &admin,
            &json!({ "parent": id, "name": "team" }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let team = s(&v, "id");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{id}/scopes/{team}/encrypt"),
            &service,
            &json!({ "plaintext": Base64::encode_string(b"customer data") }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    Org {
        sealed: s(&v, "ciphertext"),
        id,
        admin,
        service,
    }
}

async fn decrypt(api: &Api, o: &Org) -> (u16, Value) {
    api.post(
        &format!("/v1/orgs/{}/decrypt", o.id),
        &o.service,
        &json!({ "ciphertext": o.sealed }),
    )
    .await
}

async fn keys(api: &Api, o: &Org) -> Value {
    let (st, v) = api.get(&format!("/v1/orgs/{}/keys", o.id), &o.admin).await;
    assert_eq!(st, 200, "{v}");
    v
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

async fn attach_and_default(api: &Api, o: &Org, name: &str, arn: &str, n: u32) {
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys", o.id),
            &o.admin,
            &json!({ "name": name, "provider": "aws", "key_arn": arn }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/cmk:{n}/default", o.id),
            &o.admin,
            &json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawing_the_grant_cuts_the_vendor_off() {
    let stack = AwsStack::start().await;
    let moto = &stack.moto;
    let dir = temp_dir("withdrawal-aws");
    let data = dir.join("data");
    let mut server = stack.server(&data);
    let operator = server.operator_token.clone().unwrap();
    let mut api = Api::new(&server.url);

    // Org A, 1 s TTL: attached through its alias; stored by the key ARN DescribeKey gave.
    let a = org(&api, &operator, 1000).await;
    assert_eq!(keys(&api, &a).await["vendor_can_decrypt"], true);
    attach_and_default(&api, &a, "prod", &moto.alias_arn, 1).await;
    let v = keys(&api, &a).await;
    let cmk = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "cmk:1")
        .unwrap()
        .clone();
    assert_eq!(cmk["key_arn"], json!(moto.key_arn), "{v}");
    assert_eq!(cmk["alias_arn"], json!(moto.alias_arn), "{v}");
    assert_eq!(v["vendor_can_decrypt"], false, "BYOK is exclusive: {v}");
    let managed = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "managed")
        .unwrap();
    assert_eq!(managed["state"], "disabled", "{v}");
    assert_eq!(decrypt(&api, &a).await.0, 200);
    // A second key, attached and disabled (re-encryption to cmk:1), for the enable case.
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys", a.id),
            &a.admin,
            &json!({ "name": "second", "provider": "aws", "key_arn": moto.second_key_arn }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/cmk:2/disable", a.id),
            &a.admin,
            &json!({ "target": "cmk:1" }),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // Org B, TTL 0: every use asks the KMS.
    let b = org(&api, &operator, 0).await;
    attach_and_default(&api, &b, "prod", &moto.key_arn, 1).await;
    // Org C, a long TTL: its cache is warm when the grant goes.
    let c = org(&api, &operator, 600_000).await;
    attach_and_default(&api, &c, "prod", &moto.key_arn, 1).await;
    assert_eq!(decrypt(&api, &c).await.0, 200);

    // Offline: with the server stopped, managed.key and the database open no root copy of a
    // BYOK org (every row is tried, whatever holder it claims).
    server.kill9();
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
    server.restart();
    api = Api::new(&server.url);
    assert_eq!(decrypt(&api, &a).await.0, 200);
    assert_eq!(decrypt(&api, &c).await.0, 200);

    // The health check alone evicts: the customer disables the key, a check sees it, and org C's
    // warm 10-minute cache is dropped at once.
    moto.key_admin("disable_key", &moto.key_arn);
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/check", c.id),
            &c.admin,
            &json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = decrypt(&api, &c).await;
    assert_eq!((st, code(&v).as_str()), (424, "kms_key_disabled"), "{v}");
    moto.key_admin("enable_key", &moto.key_arn);
    assert_eq!(decrypt(&api, &c).await.0, 200);

    // The customer removes byok's grant.
    moto.grant(false);
    // TTL 0: refused at once.
    let (st, v) = decrypt(&api, &b).await;
    assert_eq!((st, code(&v).as_str()), (424, "kms_access_denied"), "{v}");
    // A warm cache is no way back to the managed key: disable-all unwraps through the KMS now,
    // fails, changes nothing, and the denial evicts the org's cache at once (the TTL is 10 min).
    let before = keys(&api, &c).await;
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/disable-all", c.id),
            &c.admin,
            &json!({}),
        )
        .await;
    assert_eq!((st, code(&v).as_str()), (424, "kms_access_denied"), "{v}");
    let (st, v) = decrypt(&api, &c).await;
    assert_eq!(
        (st, code(&v).as_str()),
        (424, "kms_access_denied"),
        "evicted: {v}"
    );
    let after = keys(&api, &c).await;
    assert_eq!(shape(&after), shape(&before), "nothing changed");
    assert_eq!(after["vendor_can_decrypt"], false);
    // After the TTL, org A's data calls fail; managed as default fails; nothing changes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, v) = decrypt(&api, &a).await;
    assert_eq!((st, code(&v).as_str()), (424, "kms_access_denied"), "{v}");
    let before = keys(&api, &a).await;
    for path in ["keys/managed/default", "keys/disable-all"] {
        let (st, v) = api
            .post(&format!("/v1/orgs/{}/{path}", a.id), &a.admin, &json!({}))
            .await;
        assert_eq!(
            (st, code(&v).as_str()),
            (424, "kms_access_denied"),
            "{path}: {v}"
        );
    }
    // A refused enable changes nothing, now or later: no pending job, the key stays disabled.
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/cmk:2/enable", a.id),
            &a.admin,
            &json!({}),
        )
        .await;
    assert_eq!((st, code(&v).as_str()), (424, "kms_access_denied"), "{v}");
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/managed/enable", a.id),
            &a.admin,
            &json!({}),
        )
        .await;
    assert_eq!((st, code(&v).as_str()), (400, "invalid_request"), "{v}");
    let (_, job) = api.get(&format!("/v1/orgs/{}/job", a.id), &a.admin).await;
    assert_eq!(job, Value::Null, "no pending wrap after a refused call");
    let after = keys(&api, &a).await;
    assert_eq!(shape(&after), shape(&before), "nothing changed");
    assert_eq!(after["vendor_can_decrypt"], false);

    // The grant comes back: access comes back; a health check does not enable cmk:2.
    moto.grant(true);
    for o in [&a, &b, &c] {
        let (st, v) = decrypt(&api, o).await;
        assert_eq!(st, 200, "{v}");
    }
    let (_, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/check", a.id),
            &a.admin,
            &json!({}),
        )
        .await;
    let cmk2 = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "cmk:2")
        .unwrap();
    assert_eq!(cmk2["state"], "disabled", "{v}");
    // Going back to the managed key, with the grant in place, works and says so.
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{}/keys/managed/default", a.id),
            &a.admin,
            &json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["vendor_can_decrypt"], true, "{v}");
    assert_eq!(decrypt(&api, &a).await.0, 200);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
