//! byok as an OIDC issuer, from outside: with `--public-url` a live server publishes the
//! discovery document and the JWKS the clouds fetch (no token needed); without it both are
//! 404; a public URL the clouds would refuse stops the server at start, with the reason. And
//! AWS trusts it: a customer role whose trust policy names byok's issuer and the org's subject
//! is assumed with byok's own token (`AssumeRoleWithWebIdentity` through the tests' STS front,
//! which checks the token against byok's JWKS), with no vendor secret; another org's subject
//! is refused. (Tokens are minted only inside byok: see `host-native/src/service/issuer.rs`.)

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use byok_core::kms::aws::policy::oidc_subject;
use byok_tests::aws_stack::AwsStack;
use byok_tests::fault_front::Fault;
use byok_tests::fixtures::{OrgSettings, TestServer, assert_error, assert_status, key};
use byok_tests::server::{Server, binary, cli_json, cli_ok, field as s, temp_dir};
use serde_json::{Value, json};

async fn get(url: &str) -> (u16, Option<String>, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.bytes().await.unwrap();
    (
        status,
        cache,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_public_url_the_discovery_document_and_jwks_are_served() {
    let ts = TestServer::start_with("issuer", |data| {
        Server::start(data, &[("BYOK_PUBLIC_URL", "https://byok.vendor.example/")])
    });
    let (status, cache, doc) = get(&format!("{}/.well-known/openid-configuration", ts.url)).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(cache.as_deref(), Some("no-store"), "like every answer");
    assert_eq!(
        doc,
        json!({
            "issuer": "https://byok.vendor.example",
            "jwks_uri": "https://byok.vendor.example/.well-known/jwks.json",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["iss", "sub", "aud", "iat", "nbf", "exp", "jti"],
        })
    );
    let (status, _, jwks) = get(&format!("{}/.well-known/jwks.json", ts.url)).await;
    assert_eq!(status, 200, "{jwks}");
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let k = &keys[0];
    // Only the members Google's uploaded-JWKS form allows, an RSA-2048 key (256-byte modulus:
    // 342 base64url characters) and the usual exponent.
    let mut members: Vec<&String> = k.as_object().unwrap().keys().collect();
    members.sort();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    assert_eq!(
        (
            k["kty"].clone(),
            k["alg"].clone(),
            k["use"].clone(),
            k["e"].clone()
        ),
        (json!("RSA"), json!("RS256"), json!("sig"), json!("AQAB"))
    );
    assert_eq!(k["n"].as_str().unwrap().len(), 342);
    // A restart keeps the key.
    let mut ts = ts;
    let kid = k["kid"].clone();
    ts.restart();
    let (_, _, again) = get(&format!("{}/.well-known/jwks.json", ts.url)).await;
    assert_eq!(again["keys"][0]["kid"], kid);

    // The key may have leaked: the operator replaces it at once (an org's admin may not), and
    // the JWKS publishes the new key alone.
    let o = ts.org(OrgSettings::named("acme")).await;
    let operator = [
        ("BYOK_SERVER", ts.url.as_str()),
        ("BYOK_TOKEN", &ts.operator),
    ];
    let listed = |v: &Value| -> Vec<(String, String)> {
        let keys = v["keys"].as_array().unwrap().iter();
        keys.map(|k| (s(k, "kid"), s(k, "role"))).collect()
    };
    let before = cli_json(&["issuer", "keys", "--json"], &operator);
    assert_eq!(
        listed(&before),
        [(s(k, "kid"), "signing".into())],
        "{before}"
    );
    assert_eq!(before["signer_here"], kid, "{before}");
    for (method, path) in [
        ("GET", "/v1/issuer/keys"),
        ("POST", "/v1/issuer/keys/replace"),
    ] {
        let answer = ts.raw(method, path, Some(&o.admin), None).await;
        assert_error(&answer, 403, "forbidden");
    }
    let replaced = cli_json(&["issuer", "replace-keys", "--json"], &operator);
    assert_eq!(replaced["dropped"], json!([kid]), "{replaced}");
    let (_, _, after) = get(&format!("{}/.well-known/jwks.json", ts.url)).await;
    assert_eq!(
        after["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect::<Vec<_>>(),
        vec![replaced["kid"].clone()]
    );
    assert_ne!(replaced["kid"], kid);
    let after = cli_json(&["issuer", "keys", "--json"], &operator);
    let new = s(&replaced, "kid");
    assert_eq!(listed(&after), [(new.clone(), "signing".into())], "{after}");
    assert_eq!(after["signer_here"], replaced["kid"], "{after}");

    // A row someone wrote into the database, not sealed under byok's managed key: listed as
    // refused, never published.
    let db = ts.db(false).await;
    sqlx::query(
        "INSERT INTO issuer_key (kid, created_at, signs_from, n, e, wrapped) VALUES ('forged', 1, 1, 'AA', 'AQAB', $1)",
    )
    .bind(vec![0u8; 140])
    .execute(&db)
    .await
    .unwrap();
    let forged = cli_json(&["issuer", "keys", "--json"], &operator);
    assert_eq!(
        listed(&forged),
        [("forged".into(), "refused".into()), (new, "signing".into())],
        "{forged}"
    );
    let (_, _, published) = get(&format!("{}/.well-known/jwks.json", ts.url)).await;
    assert_eq!(
        published["keys"].as_array().unwrap().len(),
        1,
        "{published}"
    );
    // And the table a person reads.
    let table = String::from_utf8(cli_ok(&["issuer", "keys"], &operator)).unwrap();
    assert!(
        table.contains("forged") && table.contains("refused"),
        "{table}"
    );
    assert!(table.contains("1970-01-01T00:00:00.001Z"), "{table}");
}

/// An issuer URL with a path names its documents under that path, where the clouds fetch
/// them (`{issuer}/.well-known/...`); they are served there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_with_a_path_is_served_under_it() {
    let ts = TestServer::start_with("issuer-path", |data| {
        Server::start(
            data,
            &[("BYOK_PUBLIC_URL", "https://byok.vendor.example/oidc")],
        )
    });
    let (status, _, doc) = get(&format!("{}/oidc/.well-known/openid-configuration", ts.url)).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        doc["jwks_uri"], "https://byok.vendor.example/oidc/.well-known/jwks.json",
        "{doc}"
    );
    let (status, _, jwks) = get(&format!("{}/oidc/.well-known/jwks.json", ts.url)).await;
    assert_eq!(status, 200, "{jwks}");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_public_url_byok_is_no_issuer() {
    let ts = TestServer::start("issuer-none");
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        let answer = ts.raw("GET", path, None, None).await;
        let v = assert_error(&answer, 404, "not_found");
        assert!(v.to_string().contains("--public-url"), "{v}");
    }
    for (method, path) in [
        ("GET", "/v1/issuer/keys"),
        ("POST", "/v1/issuer/keys/replace"),
    ] {
        let answer = ts.raw(method, path, Some(&ts.operator), None).await;
        let v = assert_error(&answer, 404, "not_found");
        assert!(v.to_string().contains("--public-url"), "{v}");
    }
}

#[test]
fn a_public_url_the_clouds_would_refuse_stops_the_server_with_the_reason() {
    let dir = temp_dir("issuer-refused");
    for (url, why) in [
        ("http://byok.vendor.example", "must be https"),
        ("https://byok.vendor.example:8443", "must have no port"),
        ("https://byok.vendor.example/?x=1", "no query"),
        ("https://byok.vendor.example/{org}", "other than letters"),
    ] {
        let out = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .env("BYOK_PUBLIC_URL", url)
            .output()
            .unwrap();
        // 2: the configuration is refused before anything starts.
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{url}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_trusts_byoks_issuer_is_assumed_with_its_token_for_that_org_only() {
    let (jwks, subject) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
    let stack =
        AwsStack::start_with_issuer("http://127.0.0.1", jwks.clone(), subject.clone()).await;
    let ts = TestServer::start_with("issuer-aws", |data| {
        stack.server_with(data, &[("BYOK_PUBLIC_URL", "http://127.0.0.1")])
    });
    jwks.set(format!("{}/.well-known/jwks.json", ts.url))
        .unwrap();
    let o = ts.org(OrgSettings::named("acme").cache_ttl_ms(0)).await;
    subject.set(oidc_subject(&o.id)).unwrap();
    let role = &stack.moto.oidc_role_arn;

    // The policy offers byok's issuer first: the role trusts the IAM OIDC provider for byok,
    // for this org's subject and STS's audience; no external id in it.
    let path = o.path(&format!(
        "/keys/policy?key_arn={}&role_arn={role}",
        stack.moto.key_arn
    ));
    let p = assert_status(&ts.get(&path, &o.admin).await, 200);
    assert_eq!(
        (p["role_trust"].clone(), p["issuer"].clone()),
        (json!("oidc"), json!("127.0.0.1"))
    );
    let stmt = &p["trust_policy"]["Statement"][0];
    assert_eq!(
        stmt["Principal"]["Federated"],
        "arn:aws:iam::123456789012:oidc-provider/127.0.0.1"
    );
    assert_eq!(stmt["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(
        stmt["Condition"]["StringEquals"],
        json!({ "127.0.0.1:aud": "sts.amazonaws.com", "127.0.0.1:sub": oidc_subject(&o.id) })
    );

    // STS checks byok's tokens: an audience the account's OIDC provider does not list, and a
    // token expired by STS's clock, are each refused with STS's code; nothing is cached.
    let validate = json!({ "key": stack.moto.key_arn, "role": role });
    let refused = |v: &Value, code: &str| {
        assert_eq!(v["ok"], false, "{v}");
        let detail = v["steps"][2]["detail"].as_str().unwrap();
        assert!(detail.contains(code), "{detail}");
    };
    *stack.sts.clients.lock().unwrap() = vec!["another-client".into()];
    let v = assert_status(
        &ts.post(&o.path("/keys/validate"), &o.admin, &validate)
            .await,
        200,
    );
    refused(&v, "InvalidIdentityToken");
    *stack.sts.clients.lock().unwrap() = vec!["sts.amazonaws.com".into()];
    stack.sts.clock_ahead.store(3600, Ordering::SeqCst);
    let v = assert_status(
        &ts.post(&o.path("/keys/validate"), &o.admin, &validate)
            .await,
        200,
    );
    refused(&v, "ExpiredTokenException");
    stack.sts.clock_ahead.store(0, Ordering::SeqCst);

    // Attached through the role with byok's token: validated live, the root wrapped under it,
    // data sealed and opened through it (the org caches nothing: every use unwraps). STS is
    // unavailable at the first try: the exchange is retried.
    let body = json!({ "name": "prod", "provider": "aws", "key_arn": stack.moto.key_arn, "role_arn": role });
    stack.front.inject([Fault::Unavailable]);
    let added = assert_status(&ts.post(&o.path("/keys"), &o.admin, &body).await, 201);
    assert_eq!(added["key"]["role_trust"], "oidc", "{added}");
    assert_status(&o.key_action(&ts, "cmk:1", "default", json!({})).await, 200);
    assert_status(
        &o.key_action(&ts, "managed", "disable", json!({ "target": "cmk:1" }))
            .await,
        200,
    );
    let keys = o.keys(&ts).await;
    assert_eq!(keys["vendor_can_decrypt"], json!(false), "{keys}");
    assert_eq!(key(&keys, "cmk:1")["role_trust"], "oidc");
    let sealed = o.seal(&ts, &o.id, b"no vendor secret").await;
    assert_status(&o.decrypt(&ts, &sealed).await, 200);

    // Another org's token names another subject: the role refuses it, and nothing is attached.
    let other = ts.org(OrgSettings::named("other")).await;
    let answer = ts.post(&other.path("/keys"), &other.admin, &body).await;
    let v = assert_error(&answer, 422, "key_validation_failed");
    assert!(v.to_string().contains("AccessDenied"), "{v}");
    assert_eq!(other.keys(&ts).await["keys"].as_array().unwrap().len(), 1);

    // Each time byok asked STS for the role on an org's behalf is a row of that org's log, as
    // it is an event of the customer's CloudTrail: this org's two refusals and the exchange its
    // attach made (the credentials then served its every use); the other org's in its own log.
    // A row counts the requests it sent: the attach's two are two events of CloudTrail.
    let exchanges = |rows: Vec<Value>| -> Vec<(Value, Value, Value, Value)> {
        let rows = rows.into_iter().map(|r| r["event"].clone());
        rows.filter(|e| e["type"] == "credential_exchange")
            .map(|e| {
                let outcome = json!([e["ok"], e["attempts"]]);
                (
                    outcome,
                    e["provider_code"].clone(),
                    e["principal"].clone(),
                    e["trust"].clone(),
                )
            })
            .collect()
    };
    let (no, oidc) = (json!([false, 1]), json!("oidc"));
    assert_eq!(
        exchanges(o.audit(&ts, &o.admin).await),
        [
            (
                no.clone(),
                json!("InvalidIdentityToken"),
                json!(role),
                oidc.clone()
            ),
            (
                no.clone(),
                json!("ExpiredTokenException"),
                json!(role),
                oidc.clone()
            ),
            (json!([true, 2]), Value::Null, json!(role), oidc.clone()),
        ]
    );
    assert_eq!(
        exchanges(other.audit(&ts, &other.admin).await),
        [(no, json!("AccessDenied"), json!(role), oidc)]
    );
    let asked = stack.front.trail();
    let asked = asked.iter().filter(|e| e.op == "AssumeRoleWithWebIdentity");
    assert_eq!(asked.count(), 5);

    // Asking for `oidc` from a server that is no issuer is refused with the setting to change.
    let plain = stack.test_server("issuer-aws-plain");
    let p2 = plain.org(OrgSettings::named("acme")).await;
    let body = json!({ "key_arn": stack.moto.key_arn, "role_arn": role, "role_trust": "oidc" });
    let v = assert_error(
        &plain
            .post(&p2.path("/keys/validate"), &p2.admin, &body)
            .await,
        501,
        "not_configured",
    );
    assert!(v.to_string().contains("--public-url"), "{v}");
    let bad = json!({ "key_arn": stack.moto.key_arn, "role_arn": role, "role_trust": "saml" });
    assert_error(
        &plain
            .post(&p2.path("/keys/validate"), &p2.admin, &bad)
            .await,
        400,
        "invalid_request",
    );
}
