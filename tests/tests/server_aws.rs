//! `byok serve` with customer keys in AWS KMS: a real server process, moto's KMS with signature
//! and IAM checks on, and the state-enforcing front before it (moto alone would keep using a
//! disabled key).

use std::time::Duration;

use base64ct::{Base64, Encoding};
use byok_tests::aws_stack::AwsStack;
use byok_tests::server::{Api, metric, temp_dir};
use byok_tests::server::{error_code as code, field as s};
use serde_json::{Value, json};

fn key<'a>(keys: &'a Value, id: &str) -> &'a Value {
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {keys}"))
}

async fn kms_calls(url: &str) -> u64 {
    metric(url, "byok_kms_calls_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_keys_end_to_end() {
    let stack = AwsStack::start().await;
    let moto = &stack.moto;
    let dir = temp_dir("aws");
    let mut server = stack.server(&dir.join("data"));
    let operator = server.operator_token.clone().unwrap();
    let mut api = Api::new(&server.url);
    let (org, admin, service) = api.org_with_service(&operator, 1000).await;
    let keys_path = format!("/v1/orgs/{org}/keys");

    // A 3-level tree with data at every level (sealed while the managed key is the default).
    let mut parent = org.clone();
    let mut sealed = Vec::new();
    let mut scopes = vec![org.clone()];
    let (st, v) = api
        .post(
            &format!("/v1/orgs/{org}/scopes/{org}/encrypt"),
            &service,
            &json!({ "plaintext": Base64::encode_string(b"org level") }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    sealed.push((s(&v, "ciphertext"), "org level".to_owned()));
    for (i, name) in ["team", "thread"].into_iter().enumerate() {
        let (st, v) = api
            .post(
                &format!("/v1/orgs/{org}/scopes"),
                &admin,
                &json!({ "parent": parent, "name": name }),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        parent = s(&v, "id");
        scopes.push(parent.clone());
        let data = format!("level {i}");
        let (st, v) = api
            .post(
                &format!("/v1/orgs/{org}/scopes/{parent}/encrypt"),
                &service,
                &json!({ "plaintext": Base64::encode_string(data.as_bytes()) }),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        sealed.push((s(&v, "ciphertext"), data));
    }
    let all_open = async |api: &Api| -> Result<(), (u16, Value)> {
        for (ct, data) in &sealed {
            let (st, v) = api
                .post(
                    &format!("/v1/orgs/{org}/decrypt"),
                    &service,
                    &json!({ "ciphertext": ct }),
                )
                .await;
            if st != 200 {
                return Err((st, v));
            }
            assert_eq!(
                Base64::decode_vec(&s(&v, "plaintext")).unwrap(),
                data.as_bytes()
            );
        }
        Ok(())
    };

    // The policy to grant, and validation: a disabled key fails at describe with the fix, and
    // attaching it changes nothing.
    let (st, v) = api
        .get(
            &format!("{keys_path}/policy?key_arn={}", moto.key_arn),
            &admin,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v.pointer("/key_policy_statements/0/Condition/StringEquals/kms:EncryptionContext:byok:org"),
        Some(&json!(org))
    );
    let (st, v) = api
        .post(
            &format!("{keys_path}/validate"),
            &admin,
            &json!({ "key_arn": moto.disabled_key_arn }),
        )
        .await;
    assert_eq!((st, v["ok"].as_bool()), (200, Some(false)), "{v}");
    assert_eq!(v.pointer("/steps/2/outcome"), Some(&json!("fail")), "{v}");
    let (st, v) = api
        .post(
            &keys_path,
            &admin,
            &json!({ "name": "bad", "provider": "aws", "key_arn": moto.disabled_key_arn }),
        )
        .await;
    assert_eq!(
        (st, code(&v).as_str()),
        (422, "key_validation_failed"),
        "{v}"
    );
    assert!(v.pointer("/error/details/2/fix").is_some(), "{v}");
    let (_, keys) = api.get(&keys_path, &admin).await;
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
        let (st, v) = api
            .post(
                &keys_path,
                &admin,
                &json!({ "name": "x", "provider": "aws", "key_arn": bad }),
            )
            .await;
        assert_eq!(st, 422, "{bad}: {v}");
        assert_eq!(v.pointer("/error/details/0/outcome"), Some(&json!("fail")));
    }

    // Attach the key (validated live, then it wraps the root), make it the default.
    let (st, v) = api
        .post(
            &keys_path,
            &admin,
            &json!({ "name": "prod", "provider": "aws", "key_arn": moto.alias_arn }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (s(&v["key"], "id"), s(&v["key"], "state")),
        ("cmk:1".into(), "ready".into()),
        "{v}"
    );
    let (st, v) = api
        .post(&format!("{keys_path}/cmk:1/default"), &admin, &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(key(&v, "cmk:1")["default"], true);
    all_open(&api).await.unwrap();

    // Pause the middle (team): team and thread fail naming it, the org level still works.
    let team = scopes[1].clone();
    let (st, _) = api
        .post(
            &format!("/v1/orgs/{org}/scopes/{team}/pause"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(st, 200);
    for (i, (ct, _)) in sealed.iter().enumerate() {
        let (st, v) = api
            .post(
                &format!("/v1/orgs/{org}/decrypt"),
                &service,
                &json!({ "ciphertext": ct }),
            )
            .await;
        if i == 0 {
            assert_eq!(st, 200, "{v}");
        } else {
            assert_eq!((st, code(&v).as_str()), (409, "scope_paused"), "{v}");
            assert!(
                v.pointer("/error/message")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .contains(&team)
            );
        }
    }
    api.post(
        &format!("/v1/orgs/{org}/scopes/{team}/resume"),
        &admin,
        &json!({}),
    )
    .await;
    all_open(&api).await.unwrap();

    // KMS calls are bounded by the TTL, not by traffic.
    let before = kms_calls(&server.url).await;
    for _ in 0..30 {
        all_open(&api).await.unwrap();
    }
    assert!(
        kms_calls(&server.url).await - before <= 1,
        "cached root: at most one unwrap within the TTL"
    );

    // The customer disables the key in KMS: after the TTL everything fails, health says why.
    moto.key_admin("disable_key", &moto.key_arn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, v) = all_open(&api).await.unwrap_err();
    assert_eq!((st, code(&v).as_str()), (424, "kms_key_disabled"), "{v}");
    let (_, v) = api
        .post(&format!("{keys_path}/check"), &admin, &json!({}))
        .await;
    assert_eq!(key(&v, "cmk:1")["health"], "key_disabled", "{v}");
    let (st, v) = api
        .post(&format!("{keys_path}/cmk:1/validate"), &admin, &json!({}))
        .await;
    assert_eq!((st, v["ok"].clone()), (200, json!(false)), "{v}");
    moto.key_admin("enable_key", &moto.key_arn);
    let (_, v) = api
        .post(&format!("{keys_path}/cmk:1/validate"), &admin, &json!({}))
        .await;
    assert_eq!(v["ok"], true, "{v}");
    all_open(&api).await.unwrap();
    let (_, v) = api
        .post(&format!("{keys_path}/check"), &admin, &json!({}))
        .await;
    assert_eq!(key(&v, "cmk:1")["health"], "ok", "{v}");

    // A second key; make it the default; disable the first with re-encryption to it.
    let (st, v) = api
        .post(
            &keys_path,
            &admin,
            &json!({ "name": "second", "provider": "aws", "key_arn": moto.second_key_arn }),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
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
    moto.key_admin("disable_key", &moto.key_arn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    all_open(&api).await.unwrap();
    server.restart();
    api = Api::new(&server.url);
    all_open(&api).await.unwrap();

    // Disable all: back to the managed key, which needs no KMS at all.
    let (st, v) = api
        .post(&format!("{keys_path}/disable-all"), &admin, &json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(key(&v, "managed")["default"], true, "{v}");
    assert_eq!(key(&v, "cmk:2")["state"], "disabled", "{v}");
    moto.key_admin("disable_key", &moto.second_key_arn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    all_open(&api).await.unwrap();

    // Every KMS call is in the verified audit log.
    let (_, v) = api
        .get(&format!("/v1/orgs/{org}/audit/verify"), &admin)
        .await;
    assert_eq!(v["ok"], true, "{v}");
    let (_, rows) = api
        .get(&format!("/v1/orgs/{org}/audit?limit=1000"), &admin)
        .await;
    let kms: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["event"]["type"] == "kms_call")
        .collect();
    assert!(
        kms.iter()
            .any(|r| r["event"]["ok"] == false && r["event"]["error"] == "key_disabled"),
        "{kms:?}"
    );
    assert!(kms.iter().any(|r| r["event"]["op"] == "Encrypt"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
