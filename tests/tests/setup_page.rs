//! The key-setup page: `byok serve` serves it at `/ui/` from files embedded at build time, with
//! a strict CSP and `X-Frame-Options: DENY`. In headless Chromium, against a real server (and
//! moto behind it where a customer key is involved), an admin signs in with a pasted token and
//! does everything the page offers; each stage is a run of
//! `host-wasm/tests/browser/setup_page_flow.mjs`, which acts, checks what the page shows, runs
//! axe-core on every screen and saves screenshots under `target/tmp/setup-page/`. This file sets
//! up what each stage needs and checks the page's claims against the server.

use std::path::PathBuf;
use std::process::Command;

use byok_tests::aws_stack::{IssuerOrg, TEST_ISSUER, aws_org, byok_org, issuer_org};
use byok_tests::azure_kv::{AzureKv, Federated};
use byok_tests::fixtures::{
    OrgSettings, TestServer, assert_error, assert_status, key, query_encode,
};
use byok_tests::gcp_kms::{GcpKms, IssuerKey, Pool};
use serde_json::{Value, json};

/// The page's exact policy: scripts and styles from this origin, wasm may compile, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                   img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_its_csp_and_never_framed() {
    let ts = TestServer::start("setup-page");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| http.get(format!("{}{path}", ts.url)).send();

    let r = get("/ui").await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/ui/");

    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/pkg/byok_wasm_bg.wasm", "application/wasm"),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["strict-transport-security"], "max-age=31536000", "{path}");
    }
    // Only the embedded files: nothing else of the server's disk, however the path is spelled.
    for path in [
        "/ui/nope.js",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
        "/ui/pkg/",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_page_loads_its_wasm_under_the_csp_from_this_origin_only() {
    let ts = TestServer::start("setup-page-chromium");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../host-wasm/tests/browser/setup_page_live.mjs");
    let out = Command::new("node")
        .arg(script)
        .arg(&ts.url)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["csp"], CSP, "{v}");
    assert_eq!(v["foreign"], serde_json::json!([]), "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    let requests = v["requests"].as_array().unwrap();
    assert!(
        requests
            .iter()
            .any(|u| u.as_str().unwrap().ends_with("/ui/pkg/byok_wasm_bg.wasm")),
        "{v}"
    );
}

/// Runs `stage` of the flow script with `args` (the server's URL added); its JSON line, after
/// the checks every stage shares: nothing fetched from another origin, no console error, and
/// no serious or critical axe-core violation on any screen it visited.
fn flow(url: &str, stage: &str, mut args: Value) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // One directory per stage and width: two tests may run one stage at two widths at once.
    let dir = match args.pointer("/viewport/width") {
        Some(w) => format!("{stage}-{w}px"),
        None => stage.to_owned(),
    };
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("setup-page")
        .join(dir);
    let _ = std::fs::remove_dir_all(&artifacts);
    args["url"] = json!(url);
    let out = Command::new("node")
        .arg(root.join("host-wasm/tests/browser/setup_page_flow.mjs"))
        .arg(stage)
        .arg(args.to_string())
        .arg(&artifacts)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "stage {stage} failed (screenshots in {}):\n{}\n{}",
        artifacts.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    assert_eq!(v["foreign"], json!([]), "{stage}: {v}");
    assert_eq!(v["problems"], json!([]), "{stage}: {v}");
    let axe = v["axe"].as_object().expect("axe results");
    assert!(!axe.is_empty(), "{stage}: no screen was checked");
    for (screen, violations) in axe {
        assert_eq!(violations, &json!([]), "{stage}: axe on {screen}");
    }
    assert!(v["shots"].as_u64().unwrap_or(0) > 0, "{stage}: screenshots");
    v
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_screen_passes_axe_and_the_token_is_kept_nowhere() {
    let ts = TestServer::start("setup-page-tour");
    let o = ts.org(OrgSettings::named("acme")).await;
    o.scope(&ts, &o.id, "team").await;
    let v = flow(&ts.url, "tour", json!({ "admin": o.admin }));
    let screens: Vec<&String> = v["axe"].as_object().unwrap().keys().collect();
    assert_eq!(
        screens,
        [
            "add-key", "audit", "keys", "overview", "scopes", "sign-in", "tokens"
        ],
        "{v}"
    );
    // The overview states the managed mode, that the vendor can decrypt, and the bounds.
    let main = str_of(&v, "/main");
    for claim in [
        "Managed: the vendor holds the key",
        "Can the vendor decrypt without your KMS?Yes.",
        "stops reading your data within 5 min",
        "stop within 60 s (the lease)",
    ] {
        assert!(main.contains(claim), "{claim:?} in {main}");
    }
    assert_eq!(v["wide"], json!({}), "{}", v["wide"]);
    // Signed in, and nothing of the token in any storage; no layout shift on load.
    assert_eq!(
        v["stored"],
        json!({ "cls": 0, "local": 0, "session": 0, "cookies": "", "databases": 0 }),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_360_px_every_screen_fits_and_passes_axe() {
    let ts = TestServer::start("setup-page-narrow");
    // Names with no place to break, in the widest letters: they must wrap, not widen the page.
    let wide = "W".repeat(40);
    let o = ts.org(OrgSettings::named(&wide)).await;
    let team = o.scope(&ts, &o.id, &wide).await;
    o.scope(&ts, &team, "thread").await;
    let v = flow(
        &ts.url,
        "tour",
        json!({ "admin": o.admin, "viewport": { "width": 360, "height": 740 } }),
    );
    assert_eq!(
        v["wide"],
        json!({}),
        "nothing wider than 360 px: {}",
        v["wide"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_arn_and_a_missing_grant_each_show_their_fix_and_nothing_is_attached() {
    let (stack, ts, o) = aws_org("setup-page-fixes", OrgSettings::named("acme")).await;
    stack.moto.grant(false);
    let v = flow(
        &ts.url,
        "fixes",
        json!({ "admin": o.admin, "key_arn": stack.moto.key_arn, "org": o.id }),
    );
    assert_eq!(str_of(&v, "/csp"), CSP);
    assert_eq!(str_of(&v, "/xfo"), "DENY");
    // The malformed ARN: the field names the account and the server's code.
    let malformed = str_of(&v, "/malformed");
    assert!(malformed.contains("account"), "{malformed}");
    assert!(malformed.ends_with("(invalid_request)"), "{malformed}");
    assert!(str_of(&v, "/part").contains("the account"), "{v}");
    // The key as parsed in the browser, and the grant for this org.
    let arn = &stack.moto.key_arn;
    let parts: Vec<&str> = arn.split(':').collect();
    assert_eq!(
        v["parsed"],
        json!({ "region": parts[3], "account": parts[4], "name": arn.rsplit('/').next().unwrap() })
    );
    // The grant is core's: the same statements the server's policy endpoint answers.
    let server = assert_status(
        &ts.get(&o.path(&format!("/keys/policy?key_arn={arn}")), &o.admin)
            .await,
        200,
    );
    assert_eq!(v["policy"], server["key_policy_statements"], "{v}");
    assert!(
        str_of(&v, "/cli").contains(&format!(
            "byok key add --org {} --name 'prod' --key-arn {arn}",
            o.id
        )),
        "{v}"
    );
    // The missing grant: the page shows the server's failing step and its fix, word for word.
    let report = assert_status(
        &ts.post(
            &o.path("/keys/validate"),
            &o.admin,
            &json!({ "key_arn": arn }),
        )
        .await,
        200,
    );
    let failed: Vec<Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "fail")
        .map(
            |s| json!({ "step": s["step"], "fix": format!("Fix: {}", s["fix"].as_str().unwrap()) }),
        )
        .collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(v["failed"], json!(failed), "{v}");
    assert!(str_of(&v, "/failed/0/fix").contains("kms:"), "{v}");
    assert!(
        str_of(&v, "/refused").contains("(key_validation_failed)"),
        "{v}"
    );
    // An add refused after the identifier changed is said of the key typed before, in the
    // result line only.
    assert_eq!(v["staleAdd"]["invalid"], Value::Null, "{v}");
    assert_eq!(str_of(&v, "/staleAdd/focused"), "key-arn", "{v}");
    assert_eq!(str_of(&v, "/staleAdd/report"), "", "{v}");
    assert!(
        str_of(&v, "/staleAdd/shown").ends_with("(key_validation_failed)"),
        "{v}"
    );
    // A validation answered after the identifier changed shows nowhere.
    assert_eq!(str_of(&v, "/stale"), "", "{v}");
    // The KMS away is no fault of the identifier: said in the result line, which has focus.
    assert_eq!(
        v["away"],
        json!({ "shown": "the KMS throttled or is down, after retries (kms_unavailable)",
                "invalid": null, "focused": "add-error" }),
        "{v}"
    );
    // Nothing attached.
    assert_eq!(o.keys(&ts).await["keys"].as_array().unwrap().len(), 1);
}

/// The end of a provider's add-key stage `v`: the commands shown hold each of `wants`, every
/// live check passed, and the key was attached as `cmk:1` of `provider`, stored as `stored`.
async fn validated_and_added(
    v: &Value,
    wants: &[String],
    ts: &TestServer,
    o: &byok_tests::fixtures::TestOrg,
    provider: &str,
    stored: &str,
) {
    let cli = str_of(v, "/cli");
    for want in wants {
        assert!(cli.contains(want.as_str()), "{want} in {cli}");
    }
    assert!(
        str_of(v, "/summary").starts_with("Every check passed"),
        "{v}"
    );
    assert!(str_of(v, "/result").contains("Attached as cmk:1"), "{v}");
    let k = key(&o.keys(ts).await, "cmk:1").clone();
    assert_eq!(
        (k["type"].clone(), k["key"].clone()),
        (json!(provider), json!(stored))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcp_key_is_parsed_granted_validated_and_added_through_federation() {
    const KEY: &str = "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root";
    const SA: &str = "byok-access@acme-prod.iam.gserviceaccount.com";
    const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/byok/providers/byok-issuer";
    let gcp = GcpKms::start().await;
    let IssuerOrg {
        ts,
        org: o,
        subject,
        jwks,
        ..
    } = issuer_org(
        "setup-page-gcp",
        &[("BYOK_DANGER_GCP_ENDPOINT", &gcp.url)],
        OrgSettings::named("acme"),
    )
    .await;
    let pool = Pool::trusting(POOL, TEST_ISSUER, &jwks, &subject);
    gcp.allow_impersonation(SA, &pool.principal(&subject), true);
    gcp.set_pool(pool.clone());
    gcp.create_key(KEY, &[&format!("serviceAccount:{SA}")]);

    let v = flow(
        &ts.url,
        "gcp",
        json!({ "admin": o.admin, "key": KEY, "sa": SA, "pool": POOL }),
    );
    assert!(str_of(&v, "/malformed").contains("project"), "{v}");
    assert_eq!(
        v["parsed"],
        json!({ "project": "acme-prod", "location": "europe-west1", "name": "root" })
    );
    // The grant computed in the browser is the server's, field for field.
    let path = o.path(&format!(
        "/keys/policy?provider=gcp&key={KEY}&role={SA}&audience={}",
        POOL.replace('/', "%2F")
    ));
    let server = assert_status(&ts.get(&path, &o.admin).await, 200);
    assert_eq!(v["bindings"], server["key_policy_statements"], "{v}");
    assert_eq!(v["trust"], server["trust_policy"], "{v}");
    assert_eq!(
        v["trust"]["bindings"][0]["members"][0],
        json!(pool.principal(&subject))
    );
    let wants = [
        format!("--attribute-condition \"assertion.sub=='{subject}'\""),
        "--issuer-uri 'http://127.0.0.1'".to_owned(),
        format!(
            "byok key add --org {} --name 'prod' --provider gcp --key '{KEY}'",
            o.id
        ),
    ];
    validated_and_added(&v, &wants, &ts, &o, "gcp", KEY).await;
    // The list names the customer's key by its provider, never as the vendor's.
    assert_eq!(str_of(&v, "/provider"), "Google Cloud KMS", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_key_url_is_parsed_granted_validated_and_added_through_a_federated_credential() {
    const VAULT: &str = "https://acme.vault.azure.net";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const APP: &str = "44444444-4444-4444-8444-444444444444";
    let kv = AzureKv::start().await;
    let IssuerOrg {
        ts,
        org: o,
        subject,
        jwks,
        ..
    } = issuer_org(
        "setup-page-azure",
        &[("BYOK_DANGER_AZURE_ENDPOINT", &kv.url)],
        OrgSettings::named("acme"),
    )
    .await;
    kv.add_app(APP, TENANT);
    kv.add_federated(
        APP,
        Federated::trusting(TEST_ISSUER, &subject, IssuerKey::Jwks(jwks.clone())),
    );
    let version = kv.create_key(VAULT, "root", "RSA-HSM", TENANT, &[APP]);

    let v = flow(
        &ts.url,
        "azure",
        json!({ "admin": o.admin, "key": format!("{VAULT}/keys/root/{version}"), "app": APP }),
    );
    assert!(str_of(&v, "/malformed").contains("host"), "{v}");
    assert_eq!(
        v["parsed"],
        json!({ "vault": "acme", "cloud": "Azure", "name": "root", "algorithm": "RSA-OAEP-256" })
    );
    // The grant computed in the browser is the server's, field for field.
    let path = o.path(&format!(
        "/keys/policy?provider=azure&key={}&role={APP}",
        query_encode(&format!("{VAULT}/keys/root"))
    ));
    let server = assert_status(&ts.get(&path, &o.admin).await, 200);
    assert_eq!(v["assignment"], server["key_policy_statements"], "{v}");
    assert_eq!(v["credential"], server["trust_policy"], "{v}");
    assert_eq!(v["credential"]["subject"], json!(subject));
    let wants = [
        "az ad app federated-credential create --id 44444444-4444-4444-8444-444444444444"
            .to_owned(),
        "az role assignment create --role \"Key Vault Crypto Service Encryption User\"".to_owned(),
        format!(
            "byok key add --org {} --name 'prod' --provider azure --key '{VAULT}/keys/root' --role '{APP}'",
            o.id
        ),
    ];
    validated_and_added(&v, &wants, &ts, &o, "azure", &format!("{VAULT}/keys/root")).await;
    assert_eq!(str_of(&v, "/provider"), "Azure Key Vault", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_keyboard_only_a_key_is_validated_attached_and_made_default() {
    let (stack, ts, o) = aws_org("setup-page-keyboard", OrgSettings::named("acme")).await;
    let v = flow(
        &ts.url,
        "keyboard",
        json!({ "admin": o.admin, "key_arn": stack.moto.alias_arn }),
    );
    assert!(
        str_of(&v, "/summary").starts_with("Every check passed"),
        "{v}"
    );
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "{v}");
    assert!(steps.iter().all(|s| s[1] == "step-pass"), "{v}");
    assert!(
        str_of(&v, "/attached").starts_with("Attached as cmk:1"),
        "{v}"
    );
    assert!(
        str_of(&v, "/result").contains("(cmk:1) is attached and is the default"),
        "{v}"
    );
    let row = str_of(&v, "/row");
    assert!(row.contains("Default") && row.contains("ready"), "{row}");
    // The server agrees.
    let keys = o.keys(&ts).await;
    let k = key(&keys, "cmk:1");
    assert_eq!(
        (k["default"].clone(), k["state"].clone()),
        (json!(true), json!("ready")),
        "{keys}"
    );
    assert_eq!(k["key_pasted"], json!(stack.moto.alias_arn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_follows_a_job_and_a_key_is_disabled_with_reencryption() {
    let (stack, ts, o) = byok_org("setup-page-job", OrgSettings::named("acme")).await;
    assert_status(
        &o.attach_aws_key(&ts, "second", &stack.moto.second_key_arn)
            .await,
        201,
    );
    // A retirement of team's v1 waiting on its paused thread: a job the banner must show.
    let team = o.scope(&ts, &o.id, "team").await;
    let thread = o.scope(&ts, &team, "thread").await;
    let sealed = o.seal(&ts, &team, b"kept").await;
    assert_status(&o.act(&ts, &team, "rotate", json!({})).await, 200);
    let fresh = o.seal(&ts, &team, b"fresh").await;
    assert_status(&o.act(&ts, &thread, "pause", json!({})).await, 200);
    assert_status(
        &o.act(&ts, &team, "retire", json!({ "version": 1 })).await,
        202,
    );
    o.job_reaches(&ts, &format!("waiting on paused scope {thread}"))
        .await;
    let v = flow(
        &ts.url,
        "job",
        json!({ "admin": o.admin, "team": team, "thread": thread }),
    );
    let waiting = str_of(&v, "/waiting");
    assert!(waiting.contains(&format!("retire {team}")), "{waiting}");
    assert!(
        waiting.contains(&format!("Waiting on paused scope {thread}")),
        "{waiting}"
    );
    assert_eq!(
        str_of(&v, "/after"),
        "",
        "the banner goes when the job ends"
    );
    assert_eq!(str_of(&v, "/checked"), "“prod” passed every check.", "{v}");
    assert!(str_of(&v, "/rows/first").contains("disabled"), "{v}");
    // After each action focus stays where the admin was: the key's row, then (its button gone)
    // the message saying what happened.
    assert_eq!(str_of(&v, "/focusAfterDisable"), "cmk:1", "{v}");
    assert_eq!(str_of(&v, "/focusAfterAll"), "keys-live", "{v}");
    assert!(str_of(&v, "/rows/second").contains("Default"), "{v}");
    // Then disable all: the consequence was spelled out, and the page says what it is now.
    assert!(
        str_of(&v, "/consequence").contains("the vendor can decrypt your data without your KMS"),
        "{v}"
    );
    assert_eq!(
        str_of(&v, "/vendor"),
        "The vendor can decrypt your data without your KMS (the managed key holds a copy)."
    );
    // The server agrees: no job; both keys disabled, the managed key the default; v2 data
    // opens and the retired v1 does not.
    assert_eq!(o.job(&ts).await, Value::Null);
    let keys = o.keys(&ts).await;
    assert_eq!(key(&keys, "cmk:1")["state"], json!("disabled"), "{keys}");
    assert_eq!(key(&keys, "cmk:2")["state"], json!("disabled"), "{keys}");
    assert_eq!(key(&keys, "managed")["default"], json!(true), "{keys}");
    assert_eq!(keys["vendor_can_decrypt"], json!(true), "{keys}");
    assert_status(&o.decrypt(&ts, &fresh).await, 200);
    // v1 is retired: its key is gone, so the ciphertext names a key that no longer exists.
    assert_error(&o.decrypt(&ts, &sealed).await, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_360_px_the_tree_pauses_and_revokes_with_the_id_typed_back() {
    let ts = TestServer::start("setup-page-tree");
    let o = ts.org(OrgSettings::named("acme")).await;
    let team_a = o.scope(&ts, &o.id, "team-a").await;
    let thread = o.scope(&ts, &team_a, "thread-1").await;
    let team_b = o.scope(&ts, &o.id, "team-b").await;
    let v = flow(
        &ts.url,
        "tree",
        json!({ "admin": o.admin, "team_a": team_a, "thread": thread, "team_b": team_b,
                "viewport": { "width": 360, "height": 740 } }),
    );
    assert_eq!(
        v["width"],
        json!([360, 360]),
        "nothing wider than the screen"
    );
    assert!(
        str_of(&v, "/paused/thread").contains("effective: paused (by team-a)"),
        "{v}"
    );
    let wrong = str_of(&v, "/wrong");
    assert!(wrong.ends_with("(confirmation_mismatch)"), "{wrong}");
    assert!(str_of(&v, "/warning").contains("final"), "{v}");
    assert_eq!(
        v["revokes"],
        json!(1),
        "Enter pressed again sent another revoke: {v}"
    );
    // The server agrees: the thread refuses as paused by team-a, team-b as revoked.
    assert_error(&o.encrypt(&ts, &thread, b"x").await, 409, "scope_paused");
    assert_error(&o.encrypt(&ts, &team_b, b"x").await, 410, "scope_revoked");
}

/// The page's own token revoked by another admin while it is open: the next button pressed
/// gets 401 and the page signs out, instead of looking signed in with a dead token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_token_is_revoked_elsewhere_signs_out_at_its_next_call() {
    let ts = TestServer::start("setup-page-revoked");
    let o = ts.org(OrgSettings::named("acme")).await;
    let (id, page_token) = o.token(&ts, "admin", "the page").await;
    let v = flow(
        &ts.url,
        "revokedElsewhere",
        json!({ "admin": page_token, "other": o.admin, "tokenId": id, "org": o.id }),
    );
    assert_eq!(v["signedOut"], json!(true), "{v}");
    assert_error(
        &ts.get("/v1/whoami", &page_token).await,
        401,
        "unauthenticated",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_from_the_page_stops_working_and_the_audit_shows_it() {
    let ts = TestServer::start("setup-page-tokens");
    let o = ts.org(OrgSettings::named("acme")).await;
    let v = flow(&ts.url, "tokenCreate", json!({ "admin": o.admin }));
    // byok away at sign-in is said in the status line; the token is not marked wrong.
    assert_eq!(
        v["away"],
        json!({ "status": "byok's database is unreachable (database_unavailable)",
                "invalid": null, "beside": "" }),
        "{v}"
    );
    // Enter pressed twice while the token was checked: one sign-in.
    assert_eq!(v["signIns"], json!(1), "{v}");
    assert!(str_of(&v, "/noName").ends_with("(invalid_request)"), "{v}");
    // The token quota is not the name's fault: said above the form.
    assert_eq!(
        v["quota"],
        json!({ "shown": "the org holds 100 tokens, the most allowed (token_quota)",
                "invalid": null, "beside": "" }),
        "{v}"
    );
    let token = str_of(&v, "/token").to_owned();
    let who = assert_status(&ts.get("/v1/whoami", &token).await, 200);
    assert_eq!(
        (who["role"].clone(), who["name"].clone()),
        (json!("service"), json!("ci"))
    );
    assert!(
        str_of(&v, "/listed").contains(str_of(&who, "/token_id")),
        "{v}"
    );
    let v = flow(
        &ts.url,
        "tokenRevoke",
        json!({ "admin": o.admin, "name": "ci" }),
    );
    assert_error(&ts.get("/v1/whoami", &token).await, 401, "unauthenticated");
    // A double-click armed the revoke; the next press sent it.
    assert_eq!(
        str_of(&v, "/armedByDouble"),
        "Press again to revoke “ci”: its next request gets 401.",
        "{v}"
    );
    assert_eq!(v["listedAfterDouble"], json!(1), "{v}");
    assert!(str_of(&v, "/newest").contains("token_revoked"), "{v}");
    assert!(str_of(&v, "/verdict").starts_with("Verified:"), "{v}");
    assert!(
        str_of(&v, "/badActor").ends_with("(invalid_request)"),
        "{v}"
    );
}

/// The customer's first steps on the page: the overview says the org is not claimed; the
/// withdrawal bounds are shortened (never past the operator's ceilings); the org is claimed,
/// and the page carries on with the new admin token while the one the vendor handed over
/// stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_customer_shortens_the_bounds_and_claims_the_org_from_the_page() {
    let ts = TestServer::start("setup-page-claim");
    let o = ts.org(OrgSettings::named("acme")).await;
    let v = flow(
        &ts.url,
        "claim",
        json!({ "admin": o.admin, "cacheSeconds": 30, "leaseSeconds": 0 }),
    );
    assert!(str_of(&v, "/notYet").starts_with("Not yet"), "{v}");
    assert!(
        str_of(&v, "/unclaimed").starts_with("Not claimed yet"),
        "{v}"
    );
    assert_eq!(
        str_of(&v, "/tooLong"),
        "At most 300 s: the most your operator allows.",
        "{v}"
    );
    assert!(
        str_of(&v, "/bounds").contains("within 30 s (its unwrap cache)"),
        "{v}"
    );
    assert!(
        str_of(&v, "/bounds").contains("no edge lease is issued"),
        "{v}"
    );
    assert!(
        str_of(&v, "/confirm").starts_with("Press again to claim"),
        "{v}"
    );
    assert_eq!(
        v["claims"],
        json!(1),
        "presses while on its way sent another: {v}"
    );
    assert_eq!(
        str_of(&v, "/live"),
        "The org is claimed: 1 admin token revoked. The receipt is row 9 of the audit log.",
        "{v}"
    );
    assert!(str_of(&v, "/claimed").starts_with("Yes, on "), "{v}");
    assert_ne!(str_of(&v, "/whoBefore"), str_of(&v, "/whoAfter"), "{v}");
    // What the server holds now.
    let ours = str_of(&v, "/token");
    assert_error(
        &ts.get("/v1/whoami", &o.admin).await,
        401,
        "unauthenticated",
    );
    let who = assert_status(&ts.get("/v1/whoami", ours).await, 200);
    assert_eq!((&who["role"], &who["org"]), (&json!("admin"), &json!(o.id)));
    let org = assert_status(&ts.get(&o.path(""), ours).await, 200);
    assert_eq!(
        (&org["unwrap_cache_ttl_ms"], &org["lease_ttl_ms"]),
        (&json!(30_000), &json!(0)),
        "{org}"
    );
    assert!(org["claimed_at"].is_i64(), "{org}");
}
