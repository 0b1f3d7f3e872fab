//! Retries and deadlines, through a fault-injecting front before a real KMS (moto, with
//! signatures and IAM checked): transient faults are retried with backoff until the call goes
//! through; too many give up with the transient class; permanent errors are never retried; the
//! deadline bounds the total time.

use std::time::{Duration, Instant};

use byok_core::SecretBytes;
use byok_core::api_code::RETRY_AFTER_SECS;
use byok_core::dev::TestRng;
use byok_core::kms::KmsErrorKind;
use byok_core::kms::aws::request::{AwsCredentials, CallContext, encrypt_request, parse_encrypt};
use byok_core::kms::aws::{Endpoint, KeyArn};
use byok_core::retry::RetryPolicy;
use byok_server::kms_call::call;
use byok_server::transport::{Transport, TransportConfig};
use byok_tests::aws_stack::AwsStack;
use byok_tests::fault_front::{Fault, FaultFront};
use byok_tests::fixtures::{OrgSettings, TestServer, assert_error};
use byok_tests::moto::Moto;
use byok_tests::server::field;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_permanent_ones_are_not() {
    let moto = Moto::start();
    let front = FaultFront::start(moto.url.trim_start_matches("http://").to_owned()).await;
    let transport = Transport::new(TransportConfig {
        danger_allow_http: true,
        ..TransportConfig::default()
    })
    .unwrap();
    let key = KeyArn::parse(&moto.key_arn).unwrap();
    let endpoint = Endpoint::danger_override(&front.url, key.region()).unwrap();
    let ctx = CallContext {
        org: "aa".repeat(16),
        scope: "bb".repeat(16),
        version: None,
    };
    let root = SecretBytes::from_bytes(&mut [3u8; 32]);
    let good = AwsCredentials::new(
        &moto.byok.access_key_id,
        &moto.byok.secret_access_key,
        None,
        None,
    );
    let policy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(50),
        deadline: Duration::from_secs(5),
    };
    let mut rng = TestRng::seeded(1);
    let wrap = |creds: AwsCredentials| {
        let (key, endpoint, ctx, root) =
            (key.clone(), endpoint.clone(), ctx.clone(), root.duplicate());
        move |now| encrypt_request(&key, &endpoint, &root, &ctx, &creds, now).map_err(Into::into)
    };

    // Two throttles, then through: three attempts, and the wrap is real (moto answered).
    front.inject([Fault::Throttle, Fault::Unavailable]);
    let before = front.seen();
    let r = call(
        &transport,
        "aws",
        &policy,
        &mut rng,
        wrap(good.clone()),
        parse_encrypt,
    )
    .await;
    assert_eq!(r.attempts, 3, "{:?}", r.result);
    assert!(
        r.result.as_ref().is_ok_and(|(blob, _)| !blob.is_empty()),
        "{:?}",
        r.result
    );
    assert_eq!(front.seen() - before, 3);

    // Faults beyond the attempt budget: gives up with the transient class.
    front.inject([Fault::Throttle; 4]);
    let r = call(
        &transport,
        "aws",
        &policy,
        &mut rng,
        wrap(good.clone()),
        parse_encrypt,
    )
    .await;
    assert_eq!(r.attempts, 4);
    assert_eq!(r.result.unwrap_err().kind, KmsErrorKind::Throttled);

    // A permanent error (bad signature) is not retried.
    let bad = AwsCredentials::new(&moto.byok.access_key_id, "wrong-secret", None, None);
    let before = front.seen();
    let r = call(
        &transport,
        "aws",
        &policy,
        &mut rng,
        wrap(bad),
        parse_encrypt,
    )
    .await;
    assert_eq!((r.attempts, front.seen() - before), (1, 1));
    assert_eq!(r.result.unwrap_err().kind, KmsErrorKind::AccessDenied);

    // The deadline bounds the total time, whatever the attempt budget.
    let tight = RetryPolicy {
        max_attempts: 1000,
        base: Duration::from_millis(40),
        cap: Duration::from_millis(40),
        deadline: Duration::from_millis(300),
    };
    front.inject([Fault::Unavailable; 1000]);
    let started = Instant::now();
    let r = call(
        &transport,
        "aws",
        &tight,
        &mut rng,
        wrap(good),
        parse_encrypt,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.result.unwrap_err().kind, KmsErrorKind::Unavailable);
    assert!(
        r.attempts > 2 && r.attempts < 1000,
        "{} attempts",
        r.attempts
    );
    // The last sleep is planned to end before the deadline; the last attempt may run past it.
    assert!(
        took < Duration::from_millis(300) + Duration::from_secs(2),
        "{took:?}"
    );
}

/// moto never refuses Encrypt/Decrypt on disabled or pending-deletion keys; the state-enforcing
/// front answers as real KMS does, and byok classifies the answers. Without the front, moto
/// would wrap happily (checked first, so the test shows what the front adds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_pending_deletion_keys_are_refused() {
    use byok_tests::fault_front::StateCheck;
    let moto = Moto::start();
    let creds = AwsCredentials::new(
        &moto.byok.access_key_id,
        &moto.byok.secret_access_key,
        None,
        None,
    );
    let front = FaultFront::start_with(
        moto.url.trim_start_matches("http://").to_owned(),
        Some(StateCheck {
            creds: creds.clone(),
        }),
    )
    .await;
    let transport = Transport::new(TransportConfig {
        danger_allow_http: true,
        ..TransportConfig::default()
    })
    .unwrap();
    let ctx = CallContext {
        org: "aa".repeat(16),
        scope: "bb".repeat(16),
        version: None,
    };
    let root = SecretBytes::from_bytes(&mut [4u8; 32]);
    let policy = RetryPolicy::default();
    let mut rng = TestRng::seeded(2);
    for (arn, want) in [
        (&moto.disabled_key_arn, KmsErrorKind::KeyDisabled),
        (&moto.pending_key_arn, KmsErrorKind::KeyPendingDeletion),
    ] {
        let key = KeyArn::parse(arn).unwrap();
        let direct = Endpoint::danger_override(&moto.url, key.region()).unwrap();
        let fronted = Endpoint::danger_override(&front.url, key.region()).unwrap();
        let build = |ep: Endpoint| {
            let (key, ctx, root, creds) =
                (key.clone(), ctx.clone(), root.duplicate(), creds.clone());
            move |now| encrypt_request(&key, &ep, &root, &ctx, &creds, now).map_err(Into::into)
        };
        let r = call(
            &transport,
            "aws",
            &policy,
            &mut rng,
            build(direct),
            parse_encrypt,
        )
        .await;
        assert!(
            r.result.is_ok(),
            "moto alone does not enforce key state (kms-wire.md section 3)"
        );
        let r = call(
            &transport,
            "aws",
            &policy,
            &mut rng,
            build(fronted),
            parse_encrypt,
        )
        .await;
        let err = r.result.unwrap_err();
        assert_eq!((err.kind, r.attempts), (want, 1), "{err}");
        assert!(
            err.to_string()
                .contains(if want == KmsErrorKind::KeyDisabled {
                    "EnableKey"
                } else {
                    "CancelKeyDeletion"
                }),
            "{err}"
        );
    }
    // The enabled key still goes through the same front.
    let key = KeyArn::parse(&moto.key_arn).unwrap();
    let ep = Endpoint::danger_override(&front.url, key.region()).unwrap();
    let r = call(
        &transport,
        "aws",
        &policy,
        &mut rng,
        |now| encrypt_request(&key, &ep, &root, &ctx, &creds, now).map_err(Into::into),
        parse_encrypt,
    )
    .await;
    assert!(r.result.is_ok(), "{:?}", r.result);
}

/// Through the API: when the KMS stays unavailable past the server's retries, the caller gets
/// 503 `kms_unavailable` with `Retry-After`, and the same request goes through once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_unavailable_through_the_api_is_503_with_retry_after() {
    let stack = AwsStack::start().await;
    let ts = TestServer::start_with("kms-503", |data| stack.server(data));
    // No unwrap cache: every decrypt below unwraps the root through the KMS.
    let o = ts.org(OrgSettings::named("acme").cache_ttl_ms(0)).await;
    o.attach_default(&ts, "prod", &stack.moto.alias_arn, 1)
        .await;
    let ciphertext = o.seal(&ts, &o.id, b"hello").await;
    let (org, service) = (&o.id, &o.service);
    let decrypt = async || {
        let reply = ts
            .api
            .reply(
                &format!("/v1/orgs/{org}/decrypt"),
                service,
                Some(&json!({ "ciphertext": ciphertext })),
            )
            .await;
        let retry_after = reply.header("retry-after").map(str::to_owned);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        let status = reply.status;
        (status, retry_after, body)
    };

    // As many faults as the server makes attempts: it gives up with the transient class.
    let attempts = RetryPolicy::default().max_attempts as usize;
    let before = stack.front.seen();
    stack.front.inject(
        [Fault::Unavailable, Fault::Throttle].repeat(attempts / 2 + 1)[..attempts].to_vec(),
    );
    let (st, retry_after, v) = decrypt().await;
    assert_error(&(st, v.clone()), 503, "kms_unavailable");
    assert_eq!(
        retry_after.as_deref(),
        Some(RETRY_AFTER_SECS.to_string().as_str()),
        "{v}"
    );
    assert_eq!((stack.front.seen() - before) as usize, attempts);

    // The KMS is back: the same request goes through, with no Retry-After.
    let answer = decrypt().await;
    let (st, retry_after, v) = answer;
    assert_eq!((st, retry_after), (200, None), "{v}");
    assert_eq!(field(&v, "plaintext"), "aGVsbG8=");
}
