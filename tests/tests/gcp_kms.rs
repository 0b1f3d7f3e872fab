//! Google Cloud KMS: the local conformance server (`tests/src/gcp_kms.rs`) proven against
//! Google's own client libraries, then byok's GCP provider against the same server: the vendor's
//! service account, CRC32C both ways, the binding of copies, key states, refused grants,
//! throttling and corrupted answers.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use byok_core::SecretBytes;
use byok_core::kms::KmsErrorKind;
use byok_core::kms::gcp::Gcp;
use byok_core::kms::provider::{Access, RoleTrust};
use byok_core::validate::{Outcome, Step};
use byok_server::credentials::AssertionSigner;
use byok_server::service::kms::{KeyAccess, Kms, KmsSettings, Withdrew};
use byok_server::vendor_key::ServiceAccountKey;
use byok_tests::fixtures::assert_copy_bound;
use byok_tests::gcp_kms::{CRYPTO_ROLE, GcpKms, IssuerKey, Pool, VIEW_ROLE, key_file, rsa};
use byok_tests::local::unix_now;
use byok_tests::moto::sdk_check;
use serde_json::{Value, json};

const KEY: &str = "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root";
const VENDOR: &str = "byok-vendor@vendor-prod.iam.gserviceaccount.com";
const CUSTOMER: &str = "byok-access@acme-prod.iam.gserviceaccount.com";
const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/byok/providers/byok-issuer";
const ISSUER: &str = "https://issuer.example";
const SUBJECT: &str = "org:00aa";

/// The server, a key granted to the vendor's and the customer's service accounts, and a pool
/// trusting `ISSUER` for `SUBJECT`; returns the vendor's key file and the issuer's PEM.
async fn server() -> (GcpKms, Value, String) {
    let gcp = GcpKms::start().await;
    let (vendor_pem, vendor_pub) = rsa();
    gcp.add_service_account(VENDOR, "vendor-key-1", &vendor_pub);
    let (issuer_pem, issuer_pub) = rsa();
    let subject = Arc::new(OnceLock::new());
    subject.set(SUBJECT.to_owned()).unwrap();
    let issuer = Arc::new(OnceLock::new());
    issuer.set(ISSUER.to_owned()).unwrap();
    let pool = Pool {
        audience: POOL.into(),
        issuer,
        key: IssuerKey::Rsa(issuer_pub),
        subject,
        allowed_audiences: Vec::new(),
        clock_ahead: Arc::new(AtomicU64::new(0)),
    };
    gcp.allow_impersonation(CUSTOMER, &pool.principal(SUBJECT), true);
    gcp.set_pool(pool);
    gcp.create_key(
        KEY,
        &[
            &format!("serviceAccount:{VENDOR}"),
            &format!("serviceAccount:{CUSTOMER}"),
        ],
    );
    let file = key_file(
        VENDOR,
        "vendor-key-1",
        &vendor_pem,
        &format!("{}/token", gcp.url),
    );
    (gcp, file, issuer_pem)
}

/// Runs tools/gcp_sdk_check.py `phase` against the server; its JSON answer.
fn sdk(phase: &str, config: &std::path::Path) -> Value {
    sdk_check("gcp_sdk_check.py", phase, config, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_own_client_speaks_to_the_local_cloud_kms() {
    let (gcp, vendor_file, issuer_pem) = server().await;
    let dir = byok_tests::server::temp_dir("gcp-sdk");
    // The customer's subject token, as byok's issuer would mint it.
    let now = unix_now();
    let claims = json!({ "iss": ISSUER, "sub": SUBJECT, "aud": format!("https:{POOL}"), "iat": now, "exp": now + 600 });
    // Signed as byok's issuer signs (RS256, the host's jsonwebtoken signer).
    let issuer_key = ServiceAccountKey::from_json(
        &key_file(VENDOR, "issuer-1", &issuer_pem, ISSUER).to_string(),
    )
    .unwrap();
    let token = issuer_key.sign(&claims).unwrap();
    let token_file = dir.join("subject-token.jwt");
    std::fs::write(&token_file, token.as_bytes()).unwrap();
    let config = dir.join("config.json");
    let cfg = json!({
        "url": gcp.url, "key": KEY, "service_account": vendor_file, "pool": POOL,
        "subject_token_file": token_file, "impersonate": CUSTOMER,
    });
    std::fs::write(&config, cfg.to_string()).unwrap();
    // The label by which a key names the org the vendor's own service account may attach it to.
    gcp.set_label(KEY, "byok-org", Some("00aa"));

    // Get, encrypt and decrypt with CRC32C both ways: as the vendor's service account (JWT
    // grant), and federated (STS exchange of the subject token, then impersonation).
    let happy = sdk("happy", &config);
    for who in ["self_signed", "service_account", "federated"] {
        let r = &happy[who];
        assert_eq!(r["purpose"], "ENCRYPT_DECRYPT", "{who}: {r}");
        assert_eq!(r["primary_state"], "ENABLED", "{who}: {r}");
        assert_eq!(r["labels"], json!({ "byok-org": "00aa" }), "{who}: {r}");
        assert_eq!(r["version"], format!("{KEY}/cryptoKeyVersions/1"));
        for check in [
            "verified_plaintext_crc32c",
            "verified_aad_crc32c",
            "ciphertext_crc32c_ok",
            "plaintext_ok",
            "plaintext_crc32c_ok",
            "used_primary",
        ] {
            assert_eq!(r[check], true, "{who}: {check}: {r}");
        }
    }
    // One JWT grant, one exchange, one impersonation.
    assert_eq!(gcp.calls().1, 3);

    // Refusals surface as the client's own exceptions (classed by HTTP status, as its REST
    // transport does) with Cloud KMS's words; the status byok classifies by is in the same
    // body (`tests/src/gcp_kms.rs`), which the client reads for its message and reason.
    let refused = sdk("refused", &config);
    let check = |e: &Value, class: &str, code: u16, words: &str| {
        assert_eq!(e["class"], class, "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert!(e["message"].as_str().unwrap().contains(words), "{e}");
    };
    check(
        &refused["wrong_aad"],
        "BadRequest",
        400,
        "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
    );
    check(
        &refused["bad_crc"],
        "BadRequest",
        400,
        "The checksum in field plaintext_crc32c did not match",
    );
    check(&refused["missing"], "NotFound", 404, "not found");
    gcp.set_state(KEY, 1, "DISABLED");
    let disabled = sdk("disabled", &config);
    check(
        &disabled["encrypt"],
        "BadRequest",
        400,
        "is not enabled, current state is: DISABLED.",
    );
    gcp.set_state(KEY, 1, "ENABLED");
    gcp.bind(KEY, CRYPTO_ROLE, &format!("serviceAccount:{VENDOR}"), false);
    let denied = sdk("denied", &config);
    check(
        &denied["encrypt"],
        "Forbidden",
        403,
        "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied",
    );
    assert_eq!(denied["encrypt"]["reason"], "IAM_PERMISSION_DENIED");
}

/// byok's executor as the vendor's service account, against `gcp`.
fn vendor_kms(gcp: &GcpKms, key_file: &Value) -> (Kms, KeyAccess) {
    let key = ServiceAccountKey::from_json(&key_file.to_string()).unwrap();
    let mut settings = KmsSettings::default();
    settings.sources.vendor.gcp = Some(key.account().clone());
    settings.sources.signers.insert("gcp", Arc::new(key));
    settings
        .danger_endpoints
        .insert("gcp".into(), gcp.url.clone());
    let kms = Kms::new(settings, Arc::default()).unwrap();
    let access = KeyAccess {
        provider: &Gcp,
        access: Access {
            org: "00aa".into(),
            key: KEY.into(),
            role: None,
            trust: RoleTrust::Oidc,
            external_id: String::new(),
            audience: None,
            danger_base: Some(gcp.url.clone()),
        },
    };
    (kms, access)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byok_wraps_and_unwraps_as_the_vendors_service_account() {
    let (gcp, key_file, _) = server().await;
    let (kms, access) = vendor_kms(&gcp, &key_file);
    let root = SecretBytes::from_bytes(&mut [0x42; 32]);

    // A copy opens as its own org and version only (the AAD binds them).
    let copy = kms.wrap(&access, &root, 3).await.expect("wrap");
    assert_copy_bound(&kms, &access, &copy, &root, "INVALID_ARGUMENT").await;
    // One JWT grant per org served every call since (cached until near its expiry).
    assert_eq!(gcp.calls().1, 2);

    // The vendor's service account is every org's: the key attaches only to the org its
    // `byok-org` label names (set by the key's owner; byok may read labels, not set them).
    // Neither unlabeled nor labeled for another org: the describe step fails with the command
    // that names this org, the rest is skipped, and nothing is withdrawn.
    let claim = "gcloud kms keys update root --keyring byok --location europe-west1 --project acme-prod --update-labels byok-org=00aa";
    for label in [None, Some("00bb")] {
        gcp.set_label(KEY, "byok-org", label);
        let (v, denial, _) = kms.validate(&access, KEY, VENDOR).await;
        assert!(denial.is_none(), "{denial:?}");
        let (step, outcome) = &v.report()[2];
        assert_eq!(*step, Step::Describe);
        let Outcome::Fail { problem, fix } = outcome else {
            panic!("{label:?}: {:?}", v.report())
        };
        assert_eq!(fix, claim, "{label:?}");
        assert!(problem.contains("00aa"), "{problem}");
        assert_eq!(
            v.report()[3],
            (Step::Wrap, Outcome::Skipped(Step::Describe))
        );
    }
    gcp.set_label(KEY, "byok-org", Some("00aa"));

    // Validation: every step passes, the described key is the CryptoKey.
    let (v, denial, calls) = kms
        .validate(&access, &format!("{KEY}/cryptoKeyVersions/1"), VENDOR)
        .await;
    assert!(v.ok(), "{:?}", v.report());
    assert!(denial.is_none(), "{denial:?}");
    // Each call made, for the org's audit log.
    let ops: Vec<_> = calls.iter().map(|c| (c.op, c.error.is_none())).collect();
    assert_eq!(
        ops,
        [("Describe", true), ("Encrypt", true), ("Decrypt", true)]
    );
    assert_eq!(v.described_key(), Some(KEY));

    // Throttled twice, then served: retried with backoff. A corrupted answer (its CRC32C does
    // not match) is discarded and the call made again.
    let before = gcp.calls().0;
    gcp.throttle(2);
    kms.wrap(&access, &root, 1).await.expect("after throttling");
    assert_eq!(gcp.calls().0 - before, 3);
    gcp.corrupt(1);
    let before = gcp.calls().0;
    kms.wrap(&access, &root, 1)
        .await
        .expect("after a corrupted answer");
    assert_eq!(gcp.calls().0 - before, 2);

    // The customer rotates: new copies use the new primary, old copies still open.
    assert_eq!(gcp.rotate(KEY), 2);
    let copy2 = kms.wrap(&access, &root, 3).await.unwrap();
    assert_eq!(&copy2[..4], &2u32.to_be_bytes(), "made by version 2");
    kms.unwrap(&access, &copy, 3)
        .await
        .expect("version 1 still opens");

    // Key states: the primary disabled, scheduled for destruction, destroyed. Each is a
    // withdrawal with GCP's fix; describe says the same.
    for (state, kind, fix) in [
        (
            "DISABLED",
            KmsErrorKind::KeyDisabled,
            "gcloud kms keys versions enable",
        ),
        (
            "DESTROY_SCHEDULED",
            KmsErrorKind::KeyPendingDeletion,
            "gcloud kms keys versions restore",
        ),
        ("DESTROYED", KmsErrorKind::KeyNotFound, "destroyed"),
    ] {
        gcp.set_state(KEY, 2, state);
        let e = kms.wrap(&access, &root, 3).await.unwrap_err();
        assert_eq!(
            (e.kind, e.code.as_str()),
            (kind, "FAILED_PRECONDITION"),
            "{state}: {e}"
        );
        assert!(e.kind.is_denial());
        assert!(e.to_string().contains(fix), "{state}: {e}");
        let described = kms.describe(&access).await.unwrap();
        let u = described.unusable.expect("unusable");
        assert_eq!(u.kind, kind, "{state}");
        assert!(u.problem.contains(state), "{}", u.problem);
        if state == "DESTROY_SCHEDULED" {
            // Restored in time: its copies open again.
            gcp.set_state(KEY, 2, "ENABLED");
            kms.unwrap(&access, &copy2, 3).await.expect("restored");
        }
    }
    // Destroyed is final: its copies never open again.
    let e = kms.unwrap(&access, &copy2, 3).await.unwrap_err();
    assert_eq!(e.kind, KmsErrorKind::KeyNotFound, "{e}");
    gcp.rotate(KEY);

    // The binding removed: access denied, and validation names the binding to add back.
    gcp.bind(KEY, CRYPTO_ROLE, &format!("serviceAccount:{VENDOR}"), false);
    let e = kms.wrap(&access, &root, 3).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str(), e.status),
        (KmsErrorKind::AccessDenied, "PERMISSION_DENIED", 403)
    );
    let (v, denial, _) = kms
        .validate(&access, KEY, &format!("serviceAccount:{VENDOR}"))
        .await;
    // The denial is handed back too: for an attached key, the customer withdrawing.
    let Some(Withdrew::Refused(denial)) = denial else {
        panic!("the wrap's denial: {denial:?}")
    };
    assert_eq!(
        (denial.kind, denial.code.as_str()),
        (KmsErrorKind::AccessDenied, "PERMISSION_DENIED")
    );
    let (_, wrap) = &v.report()[3];
    let Outcome::Fail { fix, .. } = wrap else {
        panic!("{wrap:?}")
    };
    assert!(
        fix.contains(&format!("gcloud kms keys add-iam-policy-binding root --keyring byok --location europe-west1 --project acme-prod --member 'serviceAccount:{VENDOR}' --role {CRYPTO_ROLE}")),
        "{fix}"
    );
    gcp.bind(KEY, VIEW_ROLE, &format!("serviceAccount:{VENDOR}"), false);
    let (v, _, _) = kms.validate(&access, KEY, VENDOR).await;
    assert!(matches!(&v.report()[2].1, Outcome::Fail { fix, .. } if fix.contains(VIEW_ROLE)));

    // A forged grant: the assertion signed by another key is refused at the token endpoint.
    // That is byok's own account refused (its key rotated away): the vendor's doing, for
    // every org at once, not a customer's denial to record against their key.
    let (other_pem, _) = rsa();
    let forged = key_file_with(&key_file, &other_pem);
    let (kms, access) = vendor_kms(&gcp, &forged);
    let e = kms.wrap(&access, &root, 1).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (KmsErrorKind::Unconfigured, "invalid_grant"),
        "{e}"
    );
}

fn key_file_with(file: &Value, pem: &str) -> Value {
    let mut f = file.clone();
    f["private_key"] = json!(pem);
    f
}
