//! Azure Key Vault through `byok serve`, beside AWS and GCP: byok as an OIDC issuer, trusted by
//! the customer's app registration through a federated credential (the local Entra checks
//! byok's tokens against byok's own JWKS); the tenant learned from the vault's challenge; no
//! Azure secret anywhere. One org holds a key in each of the three clouds, switches its default
//! across them, loses access when each provider's grant is removed (within its cache TTL, with
//! that provider's fix), and disables AWS → GCP → Azure with re-encryption while all its data
//! keeps opening.

use std::time::Duration;

use byok_tests::aws_stack::{IssuerOrg, TEST_ISSUER as ISSUER, issuer_org};
use byok_tests::azure_kv::{AzureKv, Federated};
use byok_tests::fixtures::{
    OrgSettings, TestOrg, TestServer, assert_error, assert_status, key, query_encode as enc,
};
use byok_tests::gcp_kms::{CRYPTO_ROLE, GcpKms, IssuerKey, Pool};
use byok_tests::server::{binary, cli_json};
use serde_json::{Value, json};

const GCP_KEY: &str = "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root";
const GCP_SA: &str = "byok-access@acme-prod.iam.gserviceaccount.com";
const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/byok/providers/byok-issuer";
const VAULT: &str = "https://acme.vault.azure.net";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP: &str = "44444444-4444-4444-8444-444444444444";
const TTL: u64 = 1000;

fn azure_key(version: &str) -> Value {
    json!({ "name": "azure", "provider": "azure", "key": format!("{VAULT}/keys/root/{version}"),
            "role": APP })
}

/// Decrypts each of `sealed`, all expected to open.
async fn all_open(ts: &TestServer, o: &TestOrg, sealed: &[&String]) {
    for s in sealed {
        assert_status(&o.decrypt(ts, s).await, 200);
    }
}

/// Runs the key health check and returns what it says of key `key_id`.
async fn checked_health(ts: &TestServer, o: &TestOrg, key_id: &str) -> Value {
    let checked = assert_status(
        &ts.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
    key(&checked, key_id)["health"].clone()
}

/// Removing a grant refuses the org's data once its cache TTL has passed, with the provider's
/// own code and words; `restore` puts it back and access returns.
async fn withdrawn(
    ts: &TestServer,
    o: &TestOrg,
    sealed: &str,
    words: &[&str],
    remove: impl FnOnce(),
    restore: impl FnOnce(),
) {
    assert_status(&o.decrypt(ts, sealed).await, 200);
    remove();
    tokio::time::sleep(Duration::from_millis(TTL + 200)).await;
    let v = assert_error(&o.decrypt(ts, sealed).await, 424, "kms_access_denied");
    let text = v.to_string();
    for w in words {
        assert!(text.contains(w), "{w:?} not in {v}");
    }
    restore();
    assert_status(&o.decrypt(ts, sealed).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_with_keys_in_three_clouds_moves_across_them_and_each_withdrawal_wins() {
    let gcp = GcpKms::start().await;
    let kv = AzureKv::start().await;
    let IssuerOrg {
        stack,
        ts,
        org: o,
        subject,
        jwks,
    } = issuer_org(
        "server-azure",
        &[
            ("BYOK_DANGER_GCP_ENDPOINT", &gcp.url),
            ("BYOK_DANGER_AZURE_ENDPOINT", &kv.url),
        ],
        OrgSettings::named("acme").cache_ttl_ms(TTL),
    )
    .await;

    // GCP as in server_gcp.rs; Azure: the customer's app trusts byok's issuer for this org.
    let p = Pool::trusting(POOL, ISSUER, &jwks, &subject);
    gcp.allow_impersonation(GCP_SA, &p.principal(&subject), true);
    gcp.set_pool(p);
    gcp.create_key(GCP_KEY, &[&format!("serviceAccount:{GCP_SA}")]);
    kv.add_app(APP, TENANT);
    let trust = || Federated::trusting(ISSUER, &subject, IssuerKey::Jwks(jwks.clone()));
    kv.add_federated(APP, trust());
    let version = kv.create_key(VAULT, "root", "RSA-HSM", TENANT, &[APP]);

    // The grant for Azure: the federated credential for this org's subject, and the crypto
    // role on the key only.
    let path = o.path(&format!(
        "/keys/policy?provider=azure&key={}&role={APP}&audience={TENANT}",
        enc(&format!("{VAULT}/keys/root"))
    ));
    let g = assert_status(&ts.get(&path, &o.admin).await, 200);
    assert_eq!(g["principal"], APP, "{g}");
    assert_eq!(g["trust_policy"]["subject"], subject);
    assert_eq!(g["trust_policy"]["issuer"], ISSUER);
    assert_eq!(
        g["trust_policy"]["audiences"][0],
        "api://AzureADTokenExchange"
    );
    assert_eq!(
        g["key_policy_statements"]["roleAssignment"]["role"],
        "Key Vault Crypto Service Encryption User"
    );
    let commands = g["commands"].to_string();
    assert!(
        commands.contains("az ad app federated-credential create")
            && commands.contains("/keys/root"),
        "{commands}"
    );

    // AWS (cmk:1, default), GCP (cmk:2), Azure (cmk:3), each validated live. Azure's tenant is
    // not given: byok learns it from the vault's challenge.
    stack.attach_default_key(&ts, &o).await;
    let gcp_body = json!({ "name": "gcp", "provider": "gcp", "key": GCP_KEY, "role": GCP_SA,
                           "audience": POOL });
    assert_status(&ts.post(&o.path("/keys"), &o.admin, &gcp_body).await, 201);
    let added = assert_status(
        &ts.post(&o.path("/keys"), &o.admin, &azure_key(&version))
            .await,
        201,
    );
    let k = &added["key"];
    assert_eq!(
        (k["id"].clone(), k["type"].clone(), k["key"].clone()),
        (
            json!("cmk:3"),
            json!("azure"),
            json!(format!("{VAULT}/keys/root"))
        ),
        "the key is stored without the pasted version: {added}"
    );
    assert_eq!(k["role"], APP);

    // The default goes round the three clouds; data sealed under each.
    let mut sealed = vec![o.seal(&ts, &o.id, b"under AWS").await];
    for default in ["cmk:2", "cmk:3", "cmk:1", "cmk:3"] {
        assert_status(&o.key_action(&ts, default, "default", json!({})).await, 200);
        assert_eq!(key(&o.keys(&ts).await, default)["default"], true);
        sealed.push(o.seal(&ts, &o.id, default.as_bytes()).await);
    }
    let all: Vec<&String> = sealed.iter().collect();
    all_open(&ts, &o, &all).await;

    // Each provider's grant removed while its key is the default: 424 after the TTL, with the
    // provider's code and fix; back, and access is back.
    let last = sealed.last().unwrap().clone();
    withdrawn(
        &ts,
        &o,
        &last,
        &[
            "ForbiddenByRbac",
            "Key Vault Crypto Service Encryption User",
        ],
        || kv.assign("root", APP, false),
        || kv.assign("root", APP, true),
    )
    .await;
    // Removing the federated credential stops new tokens, not the one byok holds: Entra's
    // access tokens live about an hour, as in Azure itself. The key's role is the immediate
    // lever (above); docs/providers.md says so. A fresh exchange is refused at once (the other
    // org, below, is refused the same way).
    kv.remove_federated(APP);
    tokio::time::sleep(Duration::from_millis(TTL + 200)).await;
    assert_status(&o.decrypt(&ts, &last).await, 200);
    let mut body = azure_key(&version);
    body.as_object_mut().unwrap().remove("name");
    let v = assert_status(
        &ts.post(&o.path("/keys/validate"), &o.admin, &body).await,
        200,
    );
    assert_eq!(v["ok"], true, "validation reuses the cached token too: {v}");
    kv.add_federated(APP, trust());
    assert_status(&o.key_action(&ts, "cmk:2", "default", json!({})).await, 200);
    withdrawn(
        &ts,
        &o,
        &last,
        &["PERMISSION_DENIED", CRYPTO_ROLE],
        || {
            gcp.bind(
                GCP_KEY,
                CRYPTO_ROLE,
                &format!("serviceAccount:{GCP_SA}"),
                false,
            )
        },
        || {
            gcp.bind(
                GCP_KEY,
                CRYPTO_ROLE,
                &format!("serviceAccount:{GCP_SA}"),
                true,
            )
        },
    )
    .await;
    assert_status(&o.key_action(&ts, "cmk:1", "default", json!({})).await, 200);
    withdrawn(
        &ts,
        &o,
        &last,
        &["403 AccessDenied", "kms:Decrypt"],
        || stack.moto.grant(false),
        || stack.moto.grant(true),
    )
    .await;

    // Key health through Azure. The customer disables the key in the vault, or takes wrapKey
    // and unwrapKey out of its permitted operations (as much a withdrawal). Either way a check
    // says so and drops the warm cache at once, the unwrap that follows is refused as the
    // key's setting (403 KeyDisabled, KeyOperationForbidden), not as byok's error, and once
    // the customer gives it back the check clears it (by an unwrap).
    assert_status(&o.key_action(&ts, "cmk:3", "default", json!({})).await, 200);
    let disable = |on: bool| kv.set_enabled("root", on);
    let ops = |on: bool| match on {
        true => kv.set_ops("root", &["wrapKey", "unwrapKey"]),
        false => kv.set_ops("root", &["encrypt", "decrypt"]),
    };
    let withdrawals: [&dyn Fn(bool); 2] = [&disable, &ops];
    for allow in withdrawals {
        assert_status(&o.decrypt(&ts, &last).await, 200);
        allow(false);
        assert_eq!(checked_health(&ts, &o, "cmk:3").await, "key_disabled");
        assert_error(&o.decrypt(&ts, &last).await, 424, "kms_key_disabled");
        allow(true);
        assert_eq!(checked_health(&ts, &o, "cmk:3").await, "ok");
    }

    // The customer rotates the key: the next health check wraps the org's roots again under
    // the new version (a job, audited), after which the old version can be disabled and
    // everything still opens.
    let v2 = kv.rotate("root");
    assert_status(
        &ts.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
    let audit = o.audit(&ts, &o.admin).await;
    assert!(
        audit
            .iter()
            .any(|e| e["event"]["type"] == "key_rotated_by_customer"
                && e["event"]["holder"] == "cmk:3"),
        "no key_rotated_by_customer event"
    );
    assert!(
        o.job(&ts).await.is_null(),
        "the refresh finished in its transition"
    );
    kv.set_version_enabled("root", &version, false);
    tokio::time::sleep(Duration::from_millis(TTL + 200)).await;
    all_open(&ts, &o, &all).await;
    // A second check finds nothing to do: the copies name the current version.
    let before = kv.calls().0;
    assert_status(
        &ts.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
    assert_eq!(kv.calls().0 - before, 1, "one describe, no wraps");
    let _ = v2;

    // Disable with re-encryption AWS → GCP → Azure, then the managed key: the vendor cannot
    // decrypt, and everything sealed under any of them still opens.
    assert_status(&o.key_action(&ts, "cmk:2", "default", json!({})).await, 200);
    for (from, to) in [("cmk:1", "cmk:2"), ("cmk:2", "cmk:3"), ("managed", "cmk:3")] {
        let body = json!({ "target": to });
        assert_status(&o.key_action(&ts, from, "disable", body).await, 200);
        all_open(&ts, &o, &all).await;
    }
    let keys = o.keys(&ts).await;
    assert_eq!(keys["vendor_can_decrypt"], false, "{keys}");
    assert_eq!(key(&keys, "cmk:3")["default"], true, "{keys}");
    for id in ["cmk:1", "cmk:2"] {
        assert_eq!(key(&keys, id)["state"], "disabled", "{keys}");
    }

    // The CLI speaks Azure: the policy, and a live validation (tenant from the challenge).
    let root = format!("{VAULT}/keys/root");
    let report = cli_json(
        &[
            "key",
            "validate",
            "--provider",
            "azure",
            "--key",
            &root,
            "--role",
            APP,
            "--json",
        ],
        &o.cli_env(&ts.url, &o.admin),
    );
    assert_eq!(report["ok"], true, "{report}");

    // Another org's token is not this org's subject: Entra refuses it, nothing is attached.
    let other = ts.org(OrgSettings::named("other")).await;
    let mut body = azure_key(&version);
    body.as_object_mut().unwrap().remove("name");
    let v = assert_status(
        &ts.post(&other.path("/keys/validate"), &other.admin, &body)
            .await,
        200,
    );
    assert_eq!(v["ok"], false, "{v}");
    assert!(v.to_string().contains("AADSTS70021"), "{v}");
    assert_eq!(other.keys(&ts).await["keys"].as_array().unwrap().len(), 1);
}

/// The vendor's own Entra app is refused at start without its proof, or with a client id that
/// is not one: before anything is served, with the setting to give.
#[test]
fn the_vendors_azure_app_needs_a_client_id_and_its_certificate_or_secret() {
    let run = |args: &[&str]| {
        let dir = byok_tests::server::temp_dir("azure-vendor-app");
        let out = std::process::Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .args(args)
            .env_remove("BYOK_AZURE_CLIENT_SECRET")
            .env_remove("BYOK_AZURE_CERTIFICATE_FILE")
            .output()
            .unwrap();
        // 1: serve refuses the vendor's app as it starts (the flags themselves parse).
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--azure-client-id", APP]);
    assert!(
        e.contains("--azure-certificate-file") && e.contains("BYOK_AZURE_CLIENT_SECRET"),
        "{e}"
    );
    let e = run(&["--azure-client-id", "my-app"]);
    assert!(
        e.contains("--azure-client-id") && e.contains("client id"),
        "{e}"
    );
    let e = run(&[
        "--azure-client-id",
        APP,
        "--azure-certificate-file",
        "/nonexistent/app.pem",
    ]);
    assert!(e.contains("/nonexistent/app.pem"), "{e}");
}
