//! byok as an OIDC issuer, from outside: with `--public-url` a live server publishes the
//! discovery document and the JWKS the clouds fetch (no token needed, cacheable); without it
//! both are 404; a public URL the clouds would refuse stops the server at start, with the
//! reason. (Tokens are minted only inside byok: see `host-native/src/service/issuer.rs`.)

use std::process::Command;

use byok_tests::fixtures::{TestServer, assert_error};
use byok_tests::server::{Server, binary, temp_dir};
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
}

#[test]
fn a_public_url_the_clouds_would_refuse_stops_the_server_with_the_reason() {
    let dir = temp_dir("issuer-refused");
    for (url, why) in [
        ("http://byok.vendor.example", "must be https"),
        ("https://byok.vendor.example:8443", "must have no port"),
        ("https://byok.vendor.example/?x=1", "no query"),
    ] {
        let out = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .env("BYOK_PUBLIC_URL", url)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{url}: {err}");
    }
}
