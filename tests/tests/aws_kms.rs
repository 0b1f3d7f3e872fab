//! AWS KMS end to end: core's signed requests, the native transport, and a real KMS
//! implementation (moto's server) that checks every SigV4 signature and IAM policy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use byok_core::SecretBytes;
use byok_core::kms::aws::request::{
    AwsCredentials, CallContext, decrypt_request, describe_key_request, encrypt_request,
    generate_data_key_request, parse_decrypt, parse_describe, parse_encrypt,
    parse_generate_data_key,
};
use byok_core::kms::aws::sts::{RoleArn, assume_role_request, parse_assume_role};
use byok_core::kms::aws::{Aws, Endpoint, KeyArn};
use byok_core::kms::provider::Wire;
use byok_core::kms::validate::{Next, Outcome, Step, Validation};
use byok_core::kms::{HttpRequest, KmsError, KmsErrorKind};
use byok_server::transport::{Transport, TransportConfig};
use byok_tests::moto::{Moto, User};

fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn creds(u: &User) -> AwsCredentials {
    AwsCredentials::new(&u.access_key_id, &u.secret_access_key, None, None)
}

struct Env {
    moto: Moto,
    transport: Transport,
}

impl Env {
    fn endpoint(&self, arn: &KeyArn) -> Endpoint {
        Endpoint::danger_override(&self.moto.url, arn.region()).unwrap()
    }
    async fn send(&self, req: HttpRequest) -> byok_core::kms::HttpResponse {
        self.transport.execute(&req).await.unwrap()
    }
    async fn wrap(
        &self,
        arn: &KeyArn,
        u: &User,
        root: &SecretBytes,
        ctx: &CallContext,
    ) -> Result<Vec<u8>, KmsError> {
        let req = encrypt_request(arn, &self.endpoint(arn), root, ctx, &creds(u), now()).unwrap();
        parse_encrypt(&self.send(req).await).map(|(blob, _)| blob)
    }
    async fn unwrap(
        &self,
        arn: &KeyArn,
        u: &User,
        blob: &[u8],
        ctx: &CallContext,
    ) -> Result<SecretBytes, KmsError> {
        let req = decrypt_request(arn, &self.endpoint(arn), blob, ctx, &creds(u), now()).unwrap();
        parse_decrypt(&self.send(req).await).map(|(root, _)| root)
    }
    /// Runs the validation plan as a host does: perform each call it names.
    async fn validate(&self, identifier: &str, u: &User, ctx: &CallContext) -> Validation {
        let mut rng = byok_core::dev::TestRng::seeded(9);
        let mut v = Validation::start(
            &Aws,
            identifier,
            &["us-east-1"],
            "arn:aws:iam::123456789012:user/byok",
            &ctx.org,
            false,
            &mut rng,
        );
        loop {
            match v.next() {
                Next::Describe(arn) => {
                    let arn = KeyArn::parse(arn).unwrap();
                    let req =
                        describe_key_request(&arn, &self.endpoint(&arn), &creds(u), now()).unwrap();
                    let answer = Aws.parse_describe(&self.send(req).await, Duration::ZERO);
                    v.described(answer);
                }
                Next::Wrap(arn, probe) => {
                    let (arn, probe) = (KeyArn::parse(arn).unwrap(), probe.duplicate());
                    let answer = self.wrap(&arn, u, &probe, ctx).await;
                    v.wrapped(answer);
                }
                Next::Unwrap(arn, blob) => {
                    let (arn, blob) = (KeyArn::parse(arn).unwrap(), blob.to_vec());
                    let answer = self.unwrap(&arn, u, &blob, ctx).await;
                    v.unwrapped(answer);
                }
                Next::Done => return v,
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn aws_kms_against_moto_with_signatures_and_iam_checked() {
    let moto = Moto::start();
    let transport = Transport::new(TransportConfig {
        danger_allow_http: true,
        ..TransportConfig::default()
    })
    .unwrap();
    let env = Env { moto, transport };
    let key = KeyArn::parse(&env.moto.key_arn).unwrap();
    let alias = KeyArn::parse(&env.moto.alias_arn).unwrap();
    let ctx = CallContext {
        org: "0a".repeat(16),
        scope: "0b".repeat(16),
        version: None,
    };
    let root = SecretBytes::from_bytes(&mut [0x5au8; 32]);
    let byok = env.moto.byok.clone();

    // Wrap and unwrap the root key.
    let blob = env.wrap(&key, &byok, &root, &ctx).await.expect("wrap");
    assert_ne!(blob.as_slice(), root.expose_secret().as_slice());
    let back = env.unwrap(&key, &byok, &blob, &ctx).await.expect("unwrap");
    assert_eq!(back.expose_secret(), root.expose_secret());

    // GenerateDataKey: a root key born in the KMS, with its wrapped copy, in one call.
    let req =
        generate_data_key_request(&key, &env.endpoint(&key), &ctx, &creds(&byok), now()).unwrap();
    let (born, born_blob) = parse_generate_data_key(&env.send(req).await).unwrap();
    let again = env.unwrap(&key, &byok, &born_blob, &ctx).await.unwrap();
    assert_eq!(again.expose_secret(), born.expose_secret());

    // The alias ARN works for wrapping; the blob opens with the key ARN.
    let blob2 = env
        .wrap(&alias, &byok, &root, &ctx)
        .await
        .expect("wrap via alias");
    assert_eq!(
        env.unwrap(&key, &byok, &blob2, &ctx)
            .await
            .unwrap()
            .expose_secret(),
        root.expose_secret()
    );

    // DescribeKey: enabled, symmetric, for encryption.
    let req = describe_key_request(&key, &env.endpoint(&key), &creds(&byok), now()).unwrap();
    let meta = parse_describe(&env.send(req).await).unwrap();
    assert_eq!(meta.arn, env.moto.key_arn);
    assert_eq!(meta.usability(), Ok(()));
    // moto reports the disabled key's state correctly (it does not enforce it on Encrypt).
    let disabled = KeyArn::parse(&env.moto.disabled_key_arn).unwrap();
    let req =
        describe_key_request(&disabled, &env.endpoint(&disabled), &creds(&byok), now()).unwrap();
    assert_eq!(
        parse_describe(&env.send(req).await).unwrap().usability(),
        Err(KmsErrorKind::KeyDisabled)
    );

    // A wrong secret: the signature does not match.
    let wrong = User {
        secret_access_key: format!("{}x", byok.secret_access_key),
        ..byok.clone()
    };
    let err = env.wrap(&key, &wrong, &root, &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (KmsErrorKind::AccessDenied, "SignatureDoesNotMatch"),
        "{err}"
    );

    // An unknown access key.
    let unknown = User {
        access_key_id: "AKIAUNKNOWNUNKNOWN00".into(),
        ..byok.clone()
    };
    let err = env.wrap(&key, &unknown, &root, &ctx).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (KmsErrorKind::AccessDenied, "InvalidClientTokenId"),
        "{err}"
    );

    // A user whose IAM policy lacks kms:Decrypt: refused, naming the action.
    let no_decrypt = env.moto.no_decrypt.clone();
    let err = env
        .unwrap(&key, &no_decrypt, &blob, &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind, KmsErrorKind::AccessDenied, "{err}");
    assert!(err.message.contains("kms:Decrypt"), "{err}");
    assert!(
        err.to_string().contains("grant byok's principal"),
        "the hint names the fix: {err}"
    );

    // Another scope's context: the blob does not open.
    let other = CallContext {
        scope: "0c".repeat(16),
        ..ctx.clone()
    };
    let err = env.unwrap(&key, &byok, &blob, &other).await.unwrap_err();
    assert_eq!(err.kind, KmsErrorKind::InvalidCiphertext, "{err}");

    // The validation plan, run against the real KMS: every step passes for the right user...
    let v = env.validate(&env.moto.alias_arn, &byok, &ctx).await;
    assert!(v.ok(), "{:?}", v.report());
    // ...and for a user without kms:Decrypt it stops at the unwrap, with the statement to add.
    let v = env.validate(&env.moto.key_arn, &no_decrypt, &ctx).await;
    assert!(!v.ok());
    let (step, outcome) = &v.report()[4];
    assert_eq!(*step, Step::Unwrap);
    assert!(
        matches!(outcome, Outcome::Fail { fix, .. } if fix.contains("\"kms:Decrypt\"")),
        "{outcome:?}"
    );
    assert_eq!(
        v.report()[5],
        (Step::Compare, Outcome::Skipped(Step::Unwrap))
    );
    // A disabled key stops at describe (moto reports the state, byok enforces it).
    let v = env.validate(&env.moto.disabled_key_arn, &byok, &ctx).await;
    assert!(
        matches!(&v.report()[2], (Step::Describe, Outcome::Fail { .. })),
        "{:?}",
        v.report()
    );

    // AssumeRole with the org's external id: temporary credentials (a signed session token)
    // that work on the key; a wrong external id is refused.
    let role = RoleArn::parse(&env.moto.role_arn).unwrap();
    let sts = Endpoint::danger_override(&env.moto.url, key.region()).unwrap();
    let assume = |external_id: &str| {
        assume_role_request(
            &sts,
            &role,
            "byok-test",
            external_id,
            Duration::from_secs(3600),
            &creds(&byok),
            now(),
        )
        .unwrap()
    };
    let temp =
        parse_assume_role(&env.send(assume(&env.moto.external_id)).await).expect("assume role");
    assert!(temp.access_key_id.starts_with("ASIA"), "{temp:?}");
    assert!(!byok_core::kms::aws::sts::needs_refresh(
        temp.expires_at,
        now()
    ));
    let req = describe_key_request(&key, &env.endpoint(&key), &temp, now()).unwrap();
    assert_eq!(
        parse_describe(&env.send(req).await).unwrap().arn,
        env.moto.key_arn
    );
    let err = parse_assume_role(&env.send(assume("byok-wrong-external-id")).await).unwrap_err();
    assert_eq!(err.kind, KmsErrorKind::AccessDenied, "{err}");

    // An unknown key.
    let missing = KeyArn::parse(&format!(
        "arn:aws:kms:{}:{}:key/00000000-0000-4000-8000-000000000000",
        key.region(),
        key.account()
    ))
    .unwrap();
    let err = env.wrap(&missing, &byok, &root, &ctx).await.unwrap_err();
    assert_eq!(err.kind, KmsErrorKind::KeyNotFound, "{err}");
}
