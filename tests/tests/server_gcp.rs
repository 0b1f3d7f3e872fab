//! Google Cloud KMS through `byok serve`, beside AWS: byok as an OIDC issuer, trusted by the
//! customer's workload identity pool (the local Cloud KMS checks byok's tokens against byok's
//! own JWKS), impersonating the customer's service account; no GCP secret anywhere. An org with
//! an AWS key and a GCP key switches its default across them, disables AWS with re-encryption to
//! GCP, and loses access when the GCP grant is removed, within its cache TTL.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use byok_core::kms::oidc::subject as oidc_subject;
use byok_tests::aws_stack::{IssuerOrg, TEST_ISSUER as ISSUER, issuer_org};
use byok_tests::fixtures::{OrgSettings, assert_error, assert_status, key, query_encode as enc};
use byok_tests::gcp_kms::{CRYPTO_ROLE, ENCRYPT_ROLE, GcpKms, Pool};
use byok_tests::server::cli_json;
use serde_json::{Value, json};

const KEY: &str = "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root";
const CUSTOMER: &str = "byok-access@acme-prod.iam.gserviceaccount.com";
const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/byok/providers/byok-issuer";

fn pool(jwks: &Arc<OnceLock<String>>, subject: &str) -> Pool {
    Pool::trusting(POOL, ISSUER, jwks, subject)
}

/// The GCP key as this org attaches it: through the pool, impersonating the customer's
/// service account.
fn gcp_key(name: &str) -> Value {
    json!({ "name": name, "provider": "gcp", "key": format!("{KEY}/cryptoKeyVersions/1"),
            "role": CUSTOMER, "audience": POOL })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_with_aws_and_gcp_keys_switches_between_them_and_a_removed_gcp_grant_wins() {
    let gcp = GcpKms::start().await;
    let ttl = 1000;
    let IssuerOrg {
        stack,
        ts,
        org: o,
        subject,
        jwks,
    } = issuer_org(
        "server-gcp",
        &[("BYOK_DANGER_GCP_ENDPOINT", &gcp.url)],
        OrgSettings::named("acme").cache_ttl_ms(ttl),
    )
    .await;
    let p = pool(&jwks, &subject);
    gcp.allow_impersonation(CUSTOMER, &p.principal(&subject), true);
    gcp.set_pool(p.clone());
    gcp.create_key(KEY, &[&format!("serviceAccount:{CUSTOMER}")]);

    // The grant, for this org: the bindings on the key, the pool provider trusting byok's
    // issuer for this org's subject only, the impersonation binding.
    let path = o.path(&format!(
        "/keys/policy?provider=gcp&key={}&role={}&audience={}",
        enc(KEY),
        enc(CUSTOMER),
        enc(POOL)
    ));
    let g = assert_status(&ts.get(&path, &o.admin).await, 200);
    assert_eq!(g["principal"], format!("serviceAccount:{CUSTOMER}"), "{g}");
    assert_eq!(
        g["key_policy_statements"]["bindings"][0],
        json!({ "role": CRYPTO_ROLE, "members": [format!("serviceAccount:{CUSTOMER}")] })
    );
    assert_eq!(
        g["trust_policy"]["bindings"][0]["members"][0],
        p.principal(&subject)
    );
    let commands = g["commands"].to_string();
    assert!(
        commands.contains(&format!("--issuer-uri '{ISSUER}'"))
            && commands.contains(&format!("assertion.sub=='{subject}'")),
        "{commands}"
    );

    // AWS first, as the default; then GCP, validated live through the pool.
    stack.attach_default_key(&ts, &o).await;
    let added = assert_status(
        &ts.post(&o.path("/keys"), &o.admin, &gcp_key("gcp")).await,
        201,
    );
    let k = &added["key"];
    assert_eq!(
        (k["id"].clone(), k["type"].clone(), k["key"].clone()),
        (json!("cmk:2"), json!("gcp"), json!(KEY)),
        "the CryptoKey is stored, not the version pasted: {added}"
    );
    assert_eq!(
        (k["role"].clone(), k["audience"].clone()),
        (json!(CUSTOMER), json!(POOL))
    );
    let under_aws = o.seal(&ts, &o.id, b"sealed under AWS").await;

    // The default switches across the two providers, each proven by an unwrap through it.
    for default in ["cmk:2", "cmk:1", "cmk:2"] {
        assert_status(&o.key_action(&ts, default, "default", json!({})).await, 200);
        assert_eq!(key(&o.keys(&ts).await, default)["default"], true);
    }
    let under_gcp = o.seal(&ts, &o.id, b"sealed under GCP").await;

    // AWS disabled with re-encryption to GCP: the vendor cannot decrypt, all data opens.
    let body = json!({ "target": "cmk:2" });
    assert_status(&o.key_action(&ts, "cmk:1", "disable", body).await, 200);
    let body = json!({ "target": "cmk:2" });
    assert_status(&o.key_action(&ts, "managed", "disable", body).await, 200);
    let keys = o.keys(&ts).await;
    assert_eq!(keys["vendor_can_decrypt"], false, "{keys}");
    assert_eq!(key(&keys, "cmk:1")["state"], "disabled");
    for sealed in [&under_aws, &under_gcp] {
        assert_status(&o.decrypt(&ts, sealed).await, 200);
    }

    // Key health through the same seam: the customer disables the primary version, a check
    // describes the key, records GCP's state and drops the org's cache at once; enabled again,
    // healthy again.
    gcp.set_state(KEY, 1, "DISABLED");
    let checked = assert_status(
        &ts.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
    let k = key(&checked, "cmk:2");
    assert_eq!(k["health"], "key_disabled", "{checked}");
    assert!(
        k["health_detail"].as_str().unwrap().contains("DISABLED"),
        "{checked}"
    );
    assert_error(&o.decrypt(&ts, &under_gcp).await, 424, "kms_key_disabled");
    gcp.set_state(KEY, 1, "ENABLED");
    let checked = assert_status(
        &ts.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
    assert_eq!(key(&checked, "cmk:2")["health"], "ok", "{checked}");
    assert_status(&o.decrypt(&ts, &under_gcp).await, 200);

    // The CLI speaks GCP too: the policy with the gcloud commands, and a live validation.
    let cli = |args: &[&str]| {
        let gcp = [
            "--provider",
            "gcp",
            "--key",
            KEY,
            "--role",
            CUSTOMER,
            "--audience",
            POOL,
            "--json",
        ];
        cli_json(&[args, &gcp].concat(), &o.cli_env(&ts.url, &o.admin))
    };
    let policy = cli(&["key", "policy"]);
    assert_eq!(policy["key_policy_statements"], g["key_policy_statements"]);
    let report = cli(&["key", "validate"]);
    assert_eq!(report["ok"], true, "{report}");

    // The customer removes the grant: within the TTL at most, byok refuses with GCP's code and
    // fix; the grant back, access back.
    gcp.bind(
        KEY,
        CRYPTO_ROLE,
        &format!("serviceAccount:{CUSTOMER}"),
        false,
    );
    tokio::time::sleep(Duration::from_millis(ttl + 200)).await;
    let v = assert_error(&o.decrypt(&ts, &under_gcp).await, 424, "kms_access_denied");
    let text = v.to_string();
    assert!(
        text.contains("PERMISSION_DENIED")
            && text.contains("roles/cloudkms.cryptoKeyEncrypterDecrypter"),
        "{v}"
    );
    gcp.bind(
        KEY,
        CRYPTO_ROLE,
        &format!("serviceAccount:{CUSTOMER}"),
        true,
    );
    assert_status(&o.decrypt(&ts, &under_gcp).await, 200);

    // Google's STS checks byok's tokens: another org's subject, an audience the provider does
    // not allow, and an expired token are each refused, and nothing is attached.
    let other = ts.org(OrgSettings::named("other")).await;
    let validate = |org: &byok_tests::fixtures::TestOrg| {
        let path = org.path("/keys/validate");
        let body = gcp_key("x");
        let token = org.admin.clone();
        let api = &ts;
        async move {
            let mut body = body;
            body.as_object_mut().unwrap().remove("name");
            assert_status(&api.post(&path, &token, &body).await, 200)
        }
    };
    let refused = |v: &Value, code: &str, words: &str| {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["steps"][2]["outcome"], "fail", "{v}");
        let detail = v["steps"][2]["detail"].as_str().unwrap();
        assert!(detail.contains(code) && detail.contains(words), "{detail}");
    };
    refused(
        &validate(&other).await,
        "unauthorized_client",
        "rejected by the attribute condition",
    );
    let mut narrow = pool(&jwks, &oidc_subject(&other.id));
    narrow.allowed_audiences = vec!["https://elsewhere.example".into()];
    gcp.allow_impersonation(CUSTOMER, &narrow.principal(&oidc_subject(&other.id)), true);
    gcp.set_pool(narrow.clone());
    refused(&validate(&other).await, "invalid_grant", "audience");
    narrow.allowed_audiences.clear();
    narrow.clock_ahead.store(3600, Ordering::SeqCst);
    gcp.set_pool(narrow.clone());
    refused(&validate(&other).await, "invalid_grant", "expired");
    // The same pool on time: the other org's own token passes.
    narrow.clock_ahead.store(0, Ordering::SeqCst);
    assert_eq!(validate(&other).await["ok"], true);
    assert_eq!(other.keys(&ts).await["keys"].as_array().unwrap().len(), 1);
}

/// The vendor's own service account (`BYOK_GCP_SERVICE_ACCOUNT_FILE`) is the same principal for
/// every org: a key granted to it names no org. Through `byok serve`, such a key attaches only
/// to the org its `byok-org` label names. Another org is refused (422, the describe step failing
/// with the command that would name it, no KMS call after the describe, nothing stored); the
/// named org attaches it. The policy endpoint lists that command with the grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendors_service_account_attaches_a_key_only_to_the_org_it_names() {
    use byok_tests::gcp_kms::{key_file, rsa};
    use std::os::unix::fs::PermissionsExt;
    const VENDOR: &str = "byok-vendor@vendor-prod.iam.gserviceaccount.com";
    let gcp = GcpKms::start().await;
    let (pem, public) = rsa();
    gcp.add_service_account(VENDOR, "vendor-key-1", &public);
    gcp.create_key(KEY, &[&format!("serviceAccount:{VENDOR}")]);
    let dir = byok_tests::server::temp_dir("gcp-vendor-sa");
    let file = dir.join("vendor.json");
    let token_uri = format!("{}/token", gcp.url);
    std::fs::write(
        &file,
        key_file(VENDOR, "vendor-key-1", &pem, &token_uri).to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let ts = byok_tests::fixtures::TestServer::start_with("server-gcp-vendor", |data| {
        byok_tests::server::Server::start(
            data,
            &[
                ("BYOK_DANGER_GCP_ENDPOINT", &gcp.url),
                ("BYOK_GCP_SERVICE_ACCOUNT_FILE", &file),
            ],
        )
    });
    let acme = ts.org(OrgSettings::named("acme")).await;
    let other = ts.org(OrgSettings::named("other")).await;
    let label = |org: &str| {
        format!(
            "gcloud kms keys update root --keyring byok --location europe-west1 --project acme-prod --update-labels byok-org={org}"
        )
    };
    let g = assert_status(
        &ts.get(
            &acme.path(&format!("/keys/policy?provider=gcp&key={}", enc(KEY))),
            &acme.admin,
        )
        .await,
        200,
    );
    assert_eq!(g["principal"], format!("serviceAccount:{VENDOR}"), "{g}");
    assert_eq!(
        g["commands"].as_array().unwrap().last(),
        Some(&json!(label(&acme.id)))
    );

    // The customer granted the vendor's account and labelled the key for acme.
    gcp.set_label(KEY, "byok-org", Some(&acme.id));
    let body = json!({ "name": "gcp", "provider": "gcp", "key": KEY });
    let calls = gcp.calls().0;
    let e = assert_error(
        &ts.post(&other.path("/keys"), &other.admin, &body).await,
        422,
        "key_validation_failed",
    );
    let step = &e["error"]["details"][2];
    assert_eq!(
        (step["step"].clone(), step["outcome"].clone()),
        (json!("describe key"), json!("fail")),
        "{e}"
    );
    assert_eq!(step["fix"], label(&other.id), "{e}");
    assert_eq!(e["error"]["details"][3]["outcome"], "skipped", "{e}");
    assert_eq!(
        gcp.calls().0 - calls,
        1,
        "the describe only: no probe wrapped"
    );
    assert_eq!(other.keys(&ts).await["keys"].as_array().unwrap().len(), 1);

    // The org the key names attaches it, validated live.
    let added = assert_status(&ts.post(&acme.path("/keys"), &acme.admin, &body).await, 201);
    assert_eq!(added["key"]["id"], "cmk:1", "{added}");
    assert_eq!(acme.keys(&ts).await["keys"].as_array().unwrap().len(), 2);
}

/// A recorded denial is cleared only by an unwrap that succeeds. The customer leaves byok
/// encrypting with their GCP key and takes decrypting away; a revalidation meets the refused
/// decrypt and records it. Disabled and enabled again, the key's roots are wrapped anew (an
/// encrypt, which succeeds): before, that success cleared the denial, the key showed healthy
/// while every unwrap through it failed, and the periodic check stopped confirming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypt_that_succeeds_does_not_clear_a_decrypt_denial() {
    let gcp = GcpKms::start().await;
    let IssuerOrg {
        stack,
        ts,
        org: o,
        subject,
        jwks,
    } = issuer_org(
        "server-gcp-encrypt-only",
        &[("BYOK_DANGER_GCP_ENDPOINT", &gcp.url)],
        OrgSettings::named("acme"),
    )
    .await;
    let p = pool(&jwks, &subject);
    gcp.allow_impersonation(CUSTOMER, &p.principal(&subject), true);
    gcp.set_pool(p.clone());
    let member = format!("serviceAccount:{CUSTOMER}");
    gcp.create_key(KEY, &[&member]);
    stack.attach_default_key(&ts, &o).await;
    assert_status(
        &ts.post(&o.path("/keys"), &o.admin, &gcp_key("gcp")).await,
        201,
    );
    let health = |keys: Value| key(&keys, "cmk:2")["health"].clone();
    gcp.bind(KEY, CRYPTO_ROLE, &member, false);
    gcp.bind(KEY, ENCRYPT_ROLE, &member, true);
    let v = assert_status(
        &ts.post(&o.path("/keys/cmk:2/validate"), &o.admin, &json!({}))
            .await,
        200,
    );
    assert_eq!(v["ok"], json!(false), "{v}");
    assert_eq!(health(o.keys(&ts).await), json!("access_denied"));
    let target = json!({ "target": "cmk:1" });
    assert_status(&o.key_action(&ts, "cmk:2", "disable", target).await, 200);
    assert_status(&o.key_action(&ts, "cmk:2", "enable", json!({})).await, 200);
    let keys = o.keys(&ts).await;
    assert_eq!(key(&keys, "cmk:2")["state"], "ready", "{keys}");
    assert_eq!(
        health(keys),
        json!("access_denied"),
        "cleared by an encrypt"
    );
    // The periodic check confirms it by an unwrap, which still fails; given back, it clears.
    let (check_path, nothing) = (o.path("/keys/check"), json!({}));
    let check = || ts.post(&check_path, &o.admin, &nothing);
    assert_status(&check().await, 200);
    assert_eq!(health(o.keys(&ts).await), json!("access_denied"));
    gcp.bind(KEY, CRYPTO_ROLE, &member, true);
    assert_status(&check().await, 200);
    assert_eq!(health(o.keys(&ts).await), json!("ok"));
}
