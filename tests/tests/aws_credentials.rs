//! AWS credentials end to end: `AssumeRoleWithWebIdentity` with an ES256 OIDC token from a
//! token-provider, and `AssumeRole` with the org's external id, both through the host's
//! credential cache. STS is moto (real temporary credentials that moto then checks on every KMS
//! call), behind the tests' front for the web-identity exchange moto cannot serve with auth on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use byok_core::kms::KmsErrorKind;
use byok_core::kms::aws::policy::oidc_subject;
use byok_core::kms::aws::request::{AwsCredentials, describe_key_request, parse_describe};
use byok_core::kms::aws::{Aws, Endpoint, KeyArn};
use byok_core::kms::provider::{Access, Credentials, RoleTrust, Vendor};
use byok_core::retry::RetryPolicy;
use byok_server::credentials::{CredentialCache, MAX_HELD_S, Sources, TokenSource};
use byok_server::transport::{Transport, TransportConfig};
use byok_tests::fault_front::FaultFront;
use byok_tests::moto::{Moto, User};
use byok_tests::sts_front::{OidcTrust, Verifier};
use zeroize::Zeroizing;

const ISSUER: &str = "https://byok.example/oidc";

fn creds(u: &User) -> AwsCredentials {
    AwsCredentials::new(&u.access_key_id, &u.secret_access_key, None, None)
}

fn unix() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// A P-256 key: PKCS#8 for signing, the uncompressed point for the front to verify with.
fn keypair() -> (Vec<u8>, Vec<u8>) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
}

/// Stands in for byok's OIDC issuer: mints ES256 tokens, optionally wrong on purpose.
struct Issuer {
    pkcs8: Vec<u8>,
    lifetime: i64,
    subject: Option<String>,
    minted: AtomicU64,
}

impl Issuer {
    fn new(pkcs8: &[u8]) -> Self {
        Self {
            pkcs8: pkcs8.to_vec(),
            lifetime: 300,
            subject: None,
            minted: AtomicU64::new(0),
        }
    }
}

impl TokenSource for Issuer {
    fn token(&self, org: &str, audience: &str) -> Result<Zeroizing<String>, String> {
        assert_eq!(
            audience, "sts.amazonaws.com",
            "the audience AWS STS expects"
        );
        self.minted.fetch_add(1, Ordering::SeqCst);
        let now = unix();
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": self.subject.clone().unwrap_or_else(|| oidc_subject(org)),
            "aud": "sts.amazonaws.com",
            "iat": now,
            "exp": now + self.lifetime,
        });
        let key = jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8);
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &key,
        )
        .map(Zeroizing::new)
        .map_err(|e| e.to_string())
    }
}

fn sigv4(c: Credentials) -> AwsCredentials {
    match c {
        Credentials::SigV4(c) => c,
        Credentials::Bearer(_) => panic!("AWS credentials expected"),
    }
}

/// A token source that is down.
struct Broken;

impl TokenSource for Broken {
    fn token(&self, _org: &str, _audience: &str) -> Result<Zeroizing<String>, String> {
        Err("signing key unavailable".into())
    }
}

/// The cache's clock: the real time plus an offset the test moves.
static SKEW: AtomicU64 = AtomicU64::new(0);

fn skewed_clock() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
        + Duration::from_secs(SKEW.load(Ordering::SeqCst))
}

/// The cache's monotonic clock, moved by the test alone (seconds).
static STEADY: AtomicU64 = AtomicU64::new(0);

fn steady_clock() -> Duration {
    Duration::from_secs(STEADY.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_identity_and_assume_role_through_the_cache() {
    let moto = Moto::start();
    let (pkcs8, public) = keypair();
    let org = "0a1b2c3d";
    let front = FaultFront::start_full(
        moto.url.trim_start_matches("http://").to_owned(),
        None,
        Some(OidcTrust {
            issuer: ISSUER.into(),
            verifier: Verifier::Es256(public),
            subject: Arc::new(oidc_subject(org).into()),
            role_arn: moto.oidc_role_arn.clone(),
            knobs: Default::default(),
            relay: creds(&moto.sts_front),
        }),
    )
    .await;
    let transport = Transport::new(TransportConfig {
        danger_allow_http: true,
        ..Default::default()
    })
    .unwrap();
    let cache = Arc::new(CredentialCache::with_clocks(
        transport.clone(),
        RetryPolicy::default(),
        skewed_clock,
        steady_clock,
    ));
    // The credential flows reach STS at the front; the KMS calls below go to moto directly.
    let access = |org: &str, role: &str, trust: RoleTrust, external_id: &str| Access {
        org: org.into(),
        key: moto.key_arn.clone(),
        role: Some(role.into()),
        trust,
        external_id: external_id.into(),
        audience: None,
        danger_base: Some(front.url.clone()),
    };
    let web = |org: &str| access(org, &moto.oidc_role_arn, RoleTrust::Oidc, "");
    let sources = |tokens: Arc<dyn TokenSource>| Sources {
        vendor: Vendor {
            aws: Some(creds(&moto.byok)),
            ..Vendor::default()
        },
        tokens: Some(tokens),
        signers: Default::default(),
    };
    let key = KeyArn::parse(&moto.key_arn).unwrap();
    let kms = Endpoint::danger_override(&moto.url, key.region()).unwrap();
    let describe = |c: AwsCredentials| {
        let (transport, key, kms) = (transport.clone(), key.clone(), kms.clone());
        async move {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let req = describe_key_request(&key, &kms, &c, now).unwrap();
            parse_describe(&transport.execute(&req).await.unwrap())
        }
    };

    // Web identity: the token is accepted, the credentials work on the key (moto checks their
    // signature and session token), and a second call is served from the cache.
    let issuer = Arc::new(Issuer::new(&pkcs8));
    let with_issuer = sources(issuer.clone());
    let first = sigv4(
        cache
            .get(&Aws, &web(org), &with_issuer)
            .await
            .expect("web identity"),
    );
    assert!(first.access_key_id.starts_with("ASIA"), "{first:?}");
    assert!(first.expires_at.is_some());
    assert_eq!(describe(first.clone()).await.unwrap().arn, moto.key_arn);
    let again = sigv4(cache.get(&Aws, &web(org), &with_issuer).await.unwrap());
    assert_eq!(again.access_key_id, first.access_key_id);
    assert_eq!(
        (cache.exchanges(), issuer.minted.load(Ordering::SeqCst)),
        (1, 1)
    );
    // The exchange is handed over once for the org's audit log: whom byok became, and how.
    let noted = cache.take_exchanges(org);
    let seen: Vec<_> = noted
        .iter()
        .map(|x| {
            (
                x.provider,
                x.principal.as_deref(),
                x.trust,
                x.error.is_none(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(
            "aws",
            Some(moto.oidc_role_arn.as_str()),
            RoleTrust::Oidc,
            true
        )]
    );
    assert!(cache.take_exchanges(org).is_empty(), "handed over twice");
    // A server started without its issuer (no --public-url) is byok's configuration, not the
    // customer withdrawing: unconfigured, never a denial recorded against the customer's key.
    let no_issuer = Sources {
        tokens: None,
        ..sources(issuer.clone())
    };
    let e = cache
        .get(&Aws, &web("org-without-issuer"), &no_issuer)
        .await
        .unwrap_err();
    assert_eq!(e.kind, KmsErrorKind::Unconfigured, "{e}");
    assert!(e.message.contains("--public-url"), "{e}");
    // Refused before STS was asked: no exchange to log.
    assert!(cache.take_exchanges("org-without-issuer").is_empty());

    // Held at most MAX_HELD_S, though valid for an hour: a trust removed (rather than the
    // grant) stops byok within it. Then exchanged again, with a new token.
    SKEW.store(MAX_HELD_S - 30, Ordering::SeqCst);
    let held = sigv4(cache.get(&Aws, &web(org), &with_issuer).await.unwrap());
    assert_eq!(held.access_key_id, first.access_key_id);
    SKEW.store(MAX_HELD_S + 1, Ordering::SeqCst);
    let rotated = sigv4(cache.get(&Aws, &web(org), &with_issuer).await.unwrap());
    assert_ne!(rotated.access_key_id, first.access_key_id);
    assert_eq!(
        (cache.exchanges(), issuer.minted.load(Ordering::SeqCst)),
        (2, 2)
    );
    // Within the refresh margin of the expiry, the cache asks STS again (with a new token).
    let left = first.expires_at.unwrap() - skewed_clock().as_secs() + SKEW.load(Ordering::SeqCst);
    SKEW.store(left - 60, Ordering::SeqCst);
    let refreshed = sigv4(cache.get(&Aws, &web(org), &with_issuer).await.unwrap());
    assert_ne!(refreshed.access_key_id, rotated.access_key_id);
    assert_eq!(
        (cache.exchanges(), issuer.minted.load(Ordering::SeqCst)),
        (3, 3)
    );
    // The wall clock stepped back an hour (NTP correcting one that ran ahead): the wall-clock
    // cap moved with it, the monotonic one did not. Held until MAX_HELD_S on the monotonic
    // clock, then exchanged again.
    SKEW.store(0, Ordering::SeqCst);
    STEADY.store(MAX_HELD_S - 30, Ordering::SeqCst);
    let held = sigv4(cache.get(&Aws, &web(org), &with_issuer).await.unwrap());
    assert_eq!(held.access_key_id, refreshed.access_key_id);
    STEADY.store(MAX_HELD_S, Ordering::SeqCst);
    let stepped = sigv4(cache.get(&Aws, &web(org), &with_issuer).await.unwrap());
    assert_ne!(stepped.access_key_id, refreshed.access_key_id);
    assert_eq!(
        (cache.exchanges(), issuer.minted.load(Ordering::SeqCst)),
        (4, 4)
    );
    // Credentials no call used for MAX_HELD_S leave memory at the next sweep; those held less
    // stay.
    assert_eq!(cache.held(), 1);
    cache.forget_stale();
    assert_eq!(cache.held(), 1, "held for no time yet");
    STEADY.store(2 * MAX_HELD_S, Ordering::SeqCst);
    cache.forget_stale();
    assert_eq!(cache.held(), 0, "held past their use");

    // Tokens STS refuses, each classified with STS's code; nothing is cached for them. A token
    // expired is byok's own doing (its clock, its token's life), not the customer's refusal.
    let (other_pkcs8, _) = keypair();
    let refused = [
        (
            Issuer::new(&other_pkcs8),
            "InvalidIdentityToken",
            KmsErrorKind::AccessDenied,
        ),
        (
            Issuer {
                lifetime: -120,
                ..Issuer::new(&pkcs8)
            },
            "ExpiredTokenException",
            KmsErrorKind::Unconfigured,
        ),
        (
            Issuer {
                subject: Some(oidc_subject("another-org")),
                ..Issuer::new(&pkcs8)
            },
            "AccessDenied",
            KmsErrorKind::AccessDenied,
        ),
    ];
    for (i, (bad, code, kind)) in refused.into_iter().enumerate() {
        let org = format!("refused{i}");
        let err = cache
            .get(&Aws, &web(&org), &sources(Arc::new(bad)))
            .await
            .unwrap_err();
        assert_eq!((err.kind, err.code.as_str()), (kind, code), "{err}");
        // STS refused it: an exchange all the same, logged with STS's code.
        let noted = cache.take_exchanges(&org);
        let codes: Vec<_> = noted
            .iter()
            .map(|x| x.error.as_ref().map(|e| e.code.clone()))
            .collect();
        assert_eq!(codes, [Some(code.to_owned())], "{org}");
    }
    let err = cache
        .get(&Aws, &web("broken"), &sources(Arc::new(Broken)))
        .await
        .unwrap_err();
    assert_eq!(err.code, "TokenSource", "{err}");
    assert!(err.message.contains("signing key unavailable"), "{err}");

    // AssumeRole with the external id: eight concurrent callers share one STS exchange.
    let assume = access(
        "org-ext",
        &moto.role_arn,
        RoleTrust::ExternalId,
        &moto.external_id,
    );
    let vendor_only = sources(Arc::new(Broken));
    let before = cache.exchanges();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, assume, src) = (cache.clone(), assume.clone(), vendor_only.clone());
            tokio::spawn(async move { cache.get(&Aws, &assume, &src).await.map(sigv4) })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap().expect("assume role").access_key_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one set of credentials for all callers");
    assert_eq!(cache.exchanges() - before, 1, "one STS call");
    // The same role by byok's OIDC token instead: what the external id gave says nothing of
    // whether the role trusts the token, so it is an exchange of its own.
    let before = cache.exchanges();
    let by_token = access("org-ext", &moto.role_arn, RoleTrust::Oidc, "");
    let _ = cache.get(&Aws, &by_token, &with_issuer).await;
    assert!(
        cache.exchanges() > before,
        "served from the external id's credentials"
    );

    // A wrong external id is refused and not cached: asked again, it is exchanged again.
    let wrong = access(
        "org-wrong",
        &moto.role_arn,
        RoleTrust::ExternalId,
        "byok-wrong",
    );
    let err = cache.get(&Aws, &wrong, &vendor_only).await.unwrap_err();
    assert_eq!(err.kind, KmsErrorKind::AccessDenied, "{err}");
    let before = cache.exchanges();
    let err = cache.get(&Aws, &wrong, &vendor_only).await.unwrap_err();
    assert_eq!(err.kind, KmsErrorKind::AccessDenied, "{err}");
    assert_eq!(
        cache.exchanges() - before,
        1,
        "a refusal was served from the cache"
    );
}

/// An exchange whose call is dropped while STS has the request (its client gone, its deadline
/// passed) reached the customer's cloud all the same: it is noted for the org's log, as one
/// whose answer byok never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_whose_call_is_dropped_is_noted_all_the_same() {
    // STS that takes the request and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let (got, mut asked) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Ok((conn, _)) = silent.accept().await {
            let _ = got.send(()).await;
            // Held open, unanswered, until the test ends.
            std::mem::forget(conn);
        }
    });
    let transport = Transport::new(TransportConfig {
        danger_allow_http: true,
        ..Default::default()
    })
    .unwrap();
    let cache = CredentialCache::new(transport, RetryPolicy::default());
    let access = Access {
        org: "org-dropped".into(),
        key: "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555".into(),
        role: Some("arn:aws:iam::123456789012:role/byok".into()),
        trust: RoleTrust::ExternalId,
        external_id: "byok-0123".into(),
        audience: None,
        danger_base: Some(url),
    };
    let sources = Sources {
        vendor: Vendor {
            aws: Some(AwsCredentials::new(
                "AKIAVENDOR",
                "vendor-secret",
                None,
                None,
            )),
            ..Vendor::default()
        },
        ..Sources::default()
    };
    let call = cache.get(&Aws, &access, &sources);
    tokio::select! {
        _ = call => panic!("a silent STS answered"),
        _ = asked.recv() => {}
    }
    // The call was dropped by the select once STS had the request.
    let noted = cache.take_exchanges("org-dropped");
    let seen: Vec<_> = noted
        .iter()
        .map(|x| {
            (
                x.principal.as_deref(),
                x.error.as_ref().map(|e| e.code.as_str()),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(Some("arn:aws:iam::123456789012:role/byok"), Some("Dropped"))]
    );
}
