//! Azure Key Vault and Managed HSM: the local conformance server (`tests/src/azure_kv.rs`)
//! proven against Microsoft's own client libraries over HTTPS, then byok's Azure provider
//! against the same server: the challenge, a client secret, a certificate and a federated
//! credential, both wrap algorithms, the binding envelope, rotation, key states, refused grants
//! and throttling with `Retry-After`.

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use byok_core::SecretBytes;
use byok_core::kms::KmsErrorKind;
use byok_core::kms::azure::Azure;
use byok_core::kms::azure::auth::VendorApp;
use byok_core::kms::provider::{Access, RoleTrust};
use byok_core::validate::Outcome;
use byok_server::service::kms::{KeyAccess, Kms, KmsSettings, Withdrew};
use byok_server::vendor_key::AppCertificate;
use byok_tests::azure_kv::{AzureKv, Federated};
use byok_tests::fixtures::assert_copy_bound;
use byok_tests::gcp_kms::IssuerKey;
use byok_tests::local::unix_now;
use byok_tests::moto::sdk_check;
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SECRET_APP: &str = "11111111-1111-4111-8111-111111111111";
const CERT_APP: &str = "22222222-2222-4222-8222-222222222222";
const FED_APP: &str = "33333333-3333-4333-8333-333333333333";
const SECRET: &str = "local~secret.value";
const ISSUER: &str = "https://issuer.example";
const SUBJECT: &str = "org:00aa";
const VAULT: &str = "https://acme.vault.azure.net";
const HSM: &str = "https://acme.managedhsm.azure.net";

fn pem(label: &str, der: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    let b64 = Base64::encode_string(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An RSA key: (PKCS#8 DER, public key PKCS#1 DER).
fn rsa() -> (Vec<u8>, Vec<u8>) {
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    (
        pair.as_der().unwrap().as_ref().to_vec(),
        pair.public_key().as_ref().to_vec(),
    )
}

/// An app certificate as `az ad sp create-for-rbac --create-cert` writes it (key and
/// certificate in one PEM), registered on `app`.
fn app_certificate(kv: &AzureKv, app: &str) -> String {
    let (pkcs8, public) = rsa();
    let key = rcgen::KeyPair::from_pem_and_sign_algo(
        &pem("PRIVATE KEY", &pkcs8),
        &rcgen::PKCS_RSA_SHA256,
    )
    .unwrap();
    let cert = rcgen::CertificateParams::new(vec!["byok-vendor".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    kv.add_certificate(app, cert.der(), &public);
    format!("{}{}", pem("PRIVATE KEY", &pkcs8), cert.pem())
}

/// byok's OIDC token for `SUBJECT`, as the issuer would sign it: (token, issuer key).
fn issuer_token(exp: u64) -> (String, IssuerKey) {
    let (pkcs8, public) = rsa();
    let info = <pkcs8::PrivateKeyInfo as pkcs8::der::Decode>::from_der(&pkcs8).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_der(info.private_key);
    let claims = json!({
        "iss": ISSUER, "sub": SUBJECT, "aud": "api://AzureADTokenExchange",
        "iat": unix_now(), "exp": exp,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap();
    (token, IssuerKey::Rsa(public))
}

/// Runs tools/azure_sdk_check.py `phase`, trusting `ca`; its JSON answer.
fn sdk(phase: &str, config: &Value, ca: &str) -> Value {
    let dir = byok_tests::server::temp_dir("azure-sdk");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, config.to_string()).unwrap();
    sdk_check(
        "azure_sdk_check.py",
        phase,
        &cfg_path,
        &[("REQUESTS_CA_BUNDLE", &ca_path)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_own_client_speaks_to_the_local_key_vault() {
    let (kv, ca) = AzureKv::start_tls().await;
    let dir = byok_tests::server::temp_dir("azure-cert");
    for app in [SECRET_APP, CERT_APP, FED_APP] {
        kv.add_app(app, TENANT);
    }
    kv.add_secret(SECRET_APP, SECRET);
    let cert_pem = dir.join("app.pem");
    std::fs::write(&cert_pem, app_certificate(&kv, CERT_APP)).unwrap();
    let (assertion, issuer_key) = issuer_token(unix_now() + 600);
    kv.add_federated(FED_APP, Federated::trusting(ISSUER, SUBJECT, issuer_key));
    let all = [SECRET_APP, CERT_APP, FED_APP];
    let rsa_version = kv.create_key(&kv.url, "rsa", "RSA-HSM", TENANT, &all);
    let hsm_version = kv.create_key(&kv.url, "hsm", "oct-HSM", TENANT, &all);
    // The tag by which a key names the org the vendor's own app may attach it to.
    kv.set_tags("rsa", &[("byok-org", "00aa"), ("team", "payments")]);
    let config = json!({
        "authority": kv.url.trim_start_matches("https://"), "tenant": TENANT, "vault": kv.url,
        "secret_app": { "client_id": SECRET_APP, "secret": SECRET },
        "cert_app": { "client_id": CERT_APP, "pem": cert_pem },
        "federated_app": { "client_id": FED_APP, "assertion": assertion },
        "rsa_key": "rsa", "hsm_key": "hsm",
    });

    // Every credential, both keys: the client reads the key, wraps (RSA: locally, with the
    // n and e the server published), and the server unwraps.
    let happy = sdk("happy", &config, &ca);
    for how in ["secret", "certificate", "federated"] {
        let rsa = &happy[format!("{how}/rsa")];
        assert_eq!(rsa["round_trip"], true, "{how}: {rsa}");
        assert_eq!(rsa["kty"], "RSA-HSM");
        assert_eq!(rsa["kid"], format!("{}/keys/rsa/{rsa_version}", kv.url));
        assert_eq!(rsa["wrapped_len"], 256);
        assert_eq!(rsa["recovery_level"], "Recoverable");
        assert_eq!(rsa["ops"], json!(["unwrapKey", "wrapKey"]));
        assert_eq!(
            rsa["tags"],
            json!({ "byok-org": "00aa", "team": "payments" })
        );
        let hsm = &happy[format!("{how}/hsm")];
        assert_eq!(hsm["tags"], Value::Null, "no tags, none sent");
        assert_eq!(hsm["round_trip"], true, "{how}: {hsm}");
        assert_eq!(
            hsm["wrap_kid"],
            format!("{}/keys/hsm/{hsm_version}", kv.url)
        );
        assert_eq!(hsm["wrapped_len"], 40, "A256KW adds 8 bytes");
    }
    // Each credential asked Entra once per scope; every vault client met the challenge.
    assert!(kv.calls().1 >= 3, "{:?}", kv.calls());

    let refused = sdk("refused", &config, &ca);
    assert_eq!(refused["bad_secret"]["type"], "ClientAuthenticationError");
    assert!(
        refused["bad_secret"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS7000215"),
        "{}",
        refused["bad_secret"]
    );
    assert_eq!(refused["missing"]["status"], 404);
    assert_eq!(refused["missing"]["code"], "KeyNotFound");
    assert_eq!(refused["tampered"]["status"], 400);
    assert_eq!(refused["tampered"]["code"], "BadParameter");

    kv.set_enabled("rsa", false);
    let disabled = sdk("disabled", &config, &ca);
    assert_eq!(disabled["unwrap"]["status"], 403, "{disabled}");
    assert_eq!(disabled["unwrap"]["code"], "Forbidden");
    assert!(
        disabled["unwrap"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled key")
    );
    kv.set_enabled("rsa", true);
    kv.assign("rsa", SECRET_APP, false);
    let denied = sdk("denied", &config, &ca);
    assert_eq!(denied["unwrap"]["status"], 403, "{denied}");
    assert_eq!(denied["unwrap"]["code"], "Forbidden");
    assert!(
        denied["unwrap"]["message"]
            .as_str()
            .unwrap()
            .contains("keys/wrap/action")
    );
}

/// byok's executor as `role` (a customer's app, federated) or the vendor's app, against `kv`.
fn executor(
    kv: &AzureKv,
    key: &str,
    role: Option<&str>,
    vendor: Option<VendorApp>,
) -> (Kms, KeyAccess) {
    let mut settings = KmsSettings::default();
    settings.sources.vendor.azure = vendor;
    settings
        .danger_endpoints
        .insert("azure".into(), kv.url.clone());
    let kms = Kms::new(settings, Arc::default()).unwrap();
    let access = KeyAccess {
        provider: &Azure,
        access: Access {
            org: "00aa".into(),
            key: key.into(),
            role: role.map(str::to_owned),
            trust: RoleTrust::Oidc,
            external_id: String::new(),
            audience: None,
            danger_base: Some(kv.url.clone()),
        },
    };
    (kms, access)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byok_wraps_and_unwraps_as_the_vendors_app() {
    let kv = AzureKv::start().await;
    kv.add_app(SECRET_APP, "vendor-tenant.onmicrosoft.com");
    kv.consent(SECRET_APP, TENANT);
    kv.add_secret(SECRET_APP, SECRET);
    kv.create_key(VAULT, "root", "RSA-HSM", TENANT, &[SECRET_APP]);
    kv.create_key(HSM, "hroot", "oct-HSM", TENANT, &[SECRET_APP]);
    let vendor = VendorApp {
        client_id: SECRET_APP.into(),
        secret: Some(zeroize::Zeroizing::new(SECRET.into())),
    };
    let (kms, access) = executor(
        &kv,
        &format!("{VAULT}/keys/root"),
        None,
        Some(vendor.clone()),
    );
    let root = SecretBytes::from_bytes(&mut [0x42; 32]);

    // The tenant comes from the vault's challenge: one probe, one token, then the calls.
    let copy = kms.wrap(&access, &root, 3).await.expect("wrap");
    assert_eq!(kv.calls(), (2, 1), "a challenge probe, a token, a wrap");
    assert_eq!(copy[0], 1, "RSA-OAEP-256 on a vault");
    // The envelope binds the version and the org.
    assert_copy_bound(&kms, &access, &copy, &root, "EnvelopeMismatch").await;

    // Managed HSM: AES key wrap.
    let mut hsm = access.clone();
    hsm.access.key = format!("{HSM}/keys/hroot");
    let hcopy = kms.wrap(&hsm, &root, 3).await.expect("HSM wrap");
    assert_eq!(hcopy[0], 2, "A256KW on Managed HSM");
    assert_eq!(
        kms.unwrap(&hsm, &hcopy, 3).await.unwrap().expose_secret(),
        root.expose_secret()
    );

    // The vendor's app is every org's: the key attaches only to the org its `byok-org` tag
    // names (set by the key's owner). Untagged, or tagged for another org: the describe step
    // fails with the command that tags it for this org, and nothing is withdrawn.
    let pasted = format!("{VAULT}/keys/root/{}", "0".repeat(32));
    for tags in [&[("team", "payments")][..], &[("byok-org", "00bb")]] {
        kv.set_tags("root", tags);
        let (v, denial, _) = kms.validate(&access, &pasted, SECRET_APP).await;
        assert!(denial.is_none(), "{denial:?}");
        let Outcome::Fail { problem, fix } = &v.report()[2].1 else {
            panic!("{tags:?}: {:?}", v.report())
        };
        assert_eq!(
            fix,
            "az keyvault key set-attributes --vault-name acme --name root --tags byok-org=00aa",
            "{tags:?}"
        );
        assert!(
            problem.contains("00aa") && !problem.contains("00bb"),
            "{problem}"
        );
    }
    kv.set_tags("root", &[("byok-org", "00aa")]);

    // Validation: every step passes and the key is stored without the pasted version (copies
    // name theirs).
    let (v, denial, _) = kms
        .validate(
            &access,
            &format!("{VAULT}/keys/root/{}", "0".repeat(32)),
            SECRET_APP,
        )
        .await;
    assert!(v.ok(), "{:?}", v.report());
    assert!(denial.is_none(), "{denial:?}");
    assert_eq!(
        v.described_key(),
        Some(format!("{VAULT}/keys/root").as_str())
    );

    // Throttled twice (Retry-After: 1), then served: the waits honour the vault.
    let (before, _) = kv.calls();
    let started = std::time::Instant::now();
    kv.throttle(2);
    kms.wrap(&access, &root, 1).await.expect("after throttling");
    assert_eq!(kv.calls().0 - before, 3);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "Retry-After honoured"
    );

    // The customer rotates: new copies name the new version, old ones still open.
    let v2 = kv.rotate("root");
    let copy2 = kms.wrap(&access, &root, 3).await.unwrap();
    assert_eq!(&copy2[1..33], v2.as_bytes());
    kms.unwrap(&access, &copy, 3)
        .await
        .expect("the old version still opens");

    // Disabled, expired, not yet valid, deleted: withdrawals with Azure's fix; a removed role
    // is AccessDenied with the role to assign.
    kv.set_enabled("root", false);
    let e = kms.unwrap(&access, &copy, 3).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (KmsErrorKind::KeyDisabled, "KeyDisabled"),
        "{e}"
    );
    assert!(
        e.fix().contains("az keyvault key set-attributes"),
        "{}",
        e.fix()
    );
    let d = kms.describe(&access).await.unwrap();
    assert_eq!(d.unusable.unwrap().kind, KmsErrorKind::KeyDisabled);
    kv.set_enabled("root", true);
    kv.set_dates("root", None, Some(unix_now() - 1));
    let e = kms.unwrap(&access, &copy, 3).await.unwrap_err();
    assert_eq!(e.kind, KmsErrorKind::KeyDisabled, "{e}");
    kv.set_dates("root", Some(unix_now() + 3600), None);
    assert_eq!(
        kms.unwrap(&access, &copy, 3).await.unwrap_err().kind,
        KmsErrorKind::KeyDisabled
    );
    kv.set_dates("root", None, None);
    kv.set_deleted("root", true);
    let e = kms.unwrap(&access, &copy, 3).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (KmsErrorKind::KeyNotFound, "KeyNotFound"),
        "{e}"
    );
    kv.set_deleted("root", false);
    kv.assign("root", SECRET_APP, false);
    let e = kms.unwrap(&access, &copy, 3).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (KmsErrorKind::AccessDenied, "ForbiddenByRbac"),
        "{e}"
    );
    let (v, denial, _) = kms
        .validate(&access, &format!("{VAULT}/keys/root"), SECRET_APP)
        .await;
    assert!(!v.ok());
    let Some(Withdrew::Refused(denial)) = denial else {
        panic!("the denial handed back: {denial:?}")
    };
    assert_eq!(denial.kind, KmsErrorKind::AccessDenied, "{denial}");
    assert!(
        format!("{:?}", v.report()).contains(
            "az role assignment create --role \\\"Key Vault Crypto Service Encryption User\\\""
        ),
        "{:?}",
        v.report()
    );
    kv.assign("root", SECRET_APP, true);
    kms.unwrap(&access, &copy, 3)
        .await
        .expect("the role is back");

    // A wrong secret is refused by Entra, with its code: the vendor app's, so the operator's
    // doing, not a customer's denial.
    let bad = VendorApp {
        client_id: SECRET_APP.into(),
        secret: Some(zeroize::Zeroizing::new("wrong".into())),
    };
    let (kms2, access2) = executor(&kv, &format!("{VAULT}/keys/root"), None, Some(bad));
    let e = kms2.wrap(&access2, &root, 1).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (KmsErrorKind::Unconfigured, "AADSTS7000215"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byok_signs_with_the_vendors_certificate() {
    let kv = AzureKv::start().await;
    kv.add_app(CERT_APP, TENANT);
    let pem = app_certificate(&kv, CERT_APP);
    kv.create_key(VAULT, "root", "RSA", TENANT, &[CERT_APP]);
    let vendor = VendorApp {
        client_id: CERT_APP.into(),
        secret: None,
    };
    let (mut kms, mut access) = executor(
        &kv,
        &format!("{VAULT}/keys/root"),
        None,
        Some(vendor.clone()),
    );
    access.access.audience = Some(TENANT.into());
    let root = SecretBytes::from_bytes(&mut [7; 32]);
    // Without the certificate the host cannot sign: refused before any call, as the server's
    // configuration (not the customer withdrawing).
    let e = kms.wrap(&access, &root, 1).await.unwrap_err();
    assert_eq!(e.kind, KmsErrorKind::Unconfigured, "{e}");
    assert_eq!(kv.calls(), (0, 0));
    let mut settings = KmsSettings::default();
    settings.sources.vendor.azure = Some(vendor);
    settings
        .sources
        .signers
        .insert("azure", Arc::new(AppCertificate::from_pem(&pem).unwrap()));
    settings
        .danger_endpoints
        .insert("azure".into(), kv.url.clone());
    kms = Kms::new(settings, Arc::default()).unwrap();
    let copy = kms
        .wrap(&access, &root, 1)
        .await
        .expect("wrap with the certificate");
    assert_eq!(
        kv.calls(),
        (1, 1),
        "the tenant was given: no challenge probe"
    );
    assert_eq!(
        kms.unwrap(&access, &copy, 1).await.unwrap().expose_secret(),
        &[7; 32]
    );
    // Another app's certificate is not this app's: the vendor's setting, not a denial.
    let other = app_certificate(&kv, FED_APP);
    let mut settings = KmsSettings::default();
    settings.sources.vendor.azure = Some(VendorApp {
        client_id: CERT_APP.into(),
        secret: None,
    });
    settings
        .sources
        .signers
        .insert("azure", Arc::new(AppCertificate::from_pem(&other).unwrap()));
    settings
        .danger_endpoints
        .insert("azure".into(), kv.url.clone());
    let kms = Kms::new(settings, Arc::default()).unwrap();
    let e = kms.wrap(&access, &root, 1).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (KmsErrorKind::Unconfigured, "AADSTS700027"),
        "{e}"
    );
}
