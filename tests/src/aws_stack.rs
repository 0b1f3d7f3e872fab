//! moto behind the key-state front (moto alone keeps using a disabled key), and `byok serve`
//! wired to it as moto's user `byok`: what every server test with customer keys starts from.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use byok_core::kms::aws::request::AwsCredentials;
use serde_json::json;

use crate::fault_front::{FaultFront, StateCheck};
use crate::fixtures::{OrgSettings, TestOrg, TestServer, assert_status};
use crate::moto::Moto;
use crate::server::{Api, Server};
use crate::sts_front::{OidcTrust, StsKnobs, Verifier};

/// A value known only once something else has started (byok's JWKS URL, an org's subject).
type Late = Arc<OnceLock<String>>;

/// moto and the front before it.
pub struct AwsStack {
    /// The moto server.
    pub moto: Moto,
    /// The key-state front every AWS call of the server goes through.
    pub front: FaultFront,
    /// The front's STS: the audiences its OIDC provider lists, its clock.
    pub sts: StsKnobs,
}

impl AwsStack {
    /// Starts moto (prepared, auth on) and the front.
    pub async fn start() -> Self {
        Self::start_with_oidc(None).await
    }

    /// The same, with the front also serving `AssumeRoleWithWebIdentity` of moto's
    /// `byok-oidc` role for tokens of `issuer` checked against the JWKS at `jwks` (set once
    /// byok listens) whose subject is `subject` (set once the org exists).
    pub async fn start_with_issuer(
        issuer: &str,
        jwks: Arc<OnceLock<String>>,
        subject: Arc<OnceLock<String>>,
    ) -> Self {
        Self::start_with_oidc(Some((issuer.to_owned(), jwks, subject))).await
    }

    async fn start_with_oidc(oidc: Option<(String, Late, Late)>) -> Self {
        let moto = Moto::start();
        let knobs = StsKnobs::default();
        let trust = oidc.map(|(issuer, jwks, subject)| OidcTrust {
            issuer,
            verifier: Verifier::Jwks(jwks),
            subject,
            role_arn: moto.oidc_role_arn.clone(),
            knobs: knobs.clone(),
            relay: AwsCredentials::new(
                &moto.sts_front.access_key_id,
                &moto.sts_front.secret_access_key,
                None,
                None,
            ),
        });
        let front = FaultFront::start_full(
            moto.url.trim_start_matches("http://").to_owned(),
            Some(StateCheck {
                creds: AwsCredentials::new(
                    &moto.byok.access_key_id,
                    &moto.byok.secret_access_key,
                    None,
                    None,
                ),
            }),
            trust,
        )
        .await;
        Self {
            moto,
            front,
            sts: knobs,
        }
    }

    /// A server on `data` whose AWS calls go through the front as user `byok`; the periodic
    /// key health check is an hour away, so tests decide when health is checked.
    pub fn server(&self, data: &Path) -> Server {
        self.server_with(data, &[])
    }

    /// The same with `extra` settings in its environment.
    pub fn server_with(&self, data: &Path, extra: &[(&str, &str)]) -> Server {
        let mut env = self.env();
        env.extend_from_slice(extra);
        Server::start(data, &env)
    }

    /// The settings a server on this stack runs with (see [`Self::server`]).
    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("BYOK_DANGER_AWS_ENDPOINT", &self.front.url),
            ("BYOK_AWS_ACCESS_KEY_ID", &self.moto.byok.access_key_id),
            (
                "BYOK_AWS_SECRET_ACCESS_KEY",
                &self.moto.byok.secret_access_key,
            ),
            (
                "BYOK_AWS_PRINCIPAL_ARN",
                "arn:aws:iam::123456789012:user/byok",
            ),
            ("BYOK_KEY_HEALTH_INTERVAL_MS", "3600000"),
        ]
    }

    /// A [`TestServer`] on this stack (see [`Self::server`]) in a temp dir named after `name`.
    pub fn test_server(&self, name: &str) -> TestServer {
        TestServer::start_with(name, |data| self.server(data))
    }

    /// Attaches the stack's test key to `o` through its alias as `prod` (the server validates
    /// it live and wraps the org's root under it) and makes it the default: `cmk:1`.
    pub async fn attach_default_key(&self, api: &Api, o: &TestOrg) {
        o.attach_default(api, "prod", &self.moto.alias_arn, 1).await;
    }

    /// Attaches the stack's second key to `o` as `second` (`cmk:2`, after
    /// [`Self::attach_default_key`]) and disables it at once, re-encrypting to `cmk:1`: a
    /// disabled customer key, for what must not enable it.
    pub async fn attach_disabled_second_key(&self, api: &Api, o: &TestOrg) {
        assert_status(
            &o.attach_aws_key(api, "second", &self.moto.second_key_arn)
                .await,
            201,
        );
        let body = json!({ "target": "cmk:1" });
        assert_status(&o.key_action(api, "cmk:2", "disable", body).await, 200);
    }
}

/// A fresh stack, a server on it in a temp dir named after `name`, and an org made with
/// `settings` whose default key is still the managed one.
pub async fn aws_org(name: &str, settings: OrgSettings<'_>) -> (AwsStack, TestServer, TestOrg) {
    let stack = AwsStack::start().await;
    let ts = stack.test_server(name);
    let o = ts.org(settings).await;
    (stack, ts, o)
}

/// The same with the stack's test key validated, attached and made the org's default
/// (`cmk:1`, see [`AwsStack::attach_default_key`]).
pub async fn byok_org(name: &str, settings: OrgSettings<'_>) -> (AwsStack, TestServer, TestOrg) {
    let (stack, ts, o) = aws_org(name, settings).await;
    stack.attach_default_key(&ts, &o).await;
    (stack, ts, o)
}

/// byok's issuer URL in the tests: loopback, where the local clouds reach its JWKS.
pub const TEST_ISSUER: &str = "http://127.0.0.1";

/// A server that is an OIDC issuer: what the GCP and Azure tests start from.
pub struct IssuerOrg {
    /// The AWS stack (a server always has one).
    pub stack: AwsStack,
    /// The server, issuing as [`TEST_ISSUER`].
    pub ts: TestServer,
    /// An org on it.
    pub org: TestOrg,
    /// The org's subject in byok's tokens.
    pub subject: String,
    /// The server's JWKS URL, for a local cloud to check byok's tokens with.
    pub jwks: Late,
}

/// A fresh stack, a server on it in a temp dir named after `name` that is an OIDC issuer with
/// `extra` settings (a local cloud's test endpoint), and an org made with `settings`.
pub async fn issuer_org(
    name: &str,
    extra: &[(&str, &str)],
    settings: OrgSettings<'_>,
) -> IssuerOrg {
    let stack = AwsStack::start().await;
    let jwks: Late = Arc::new(OnceLock::new());
    let mut env = vec![("BYOK_PUBLIC_URL", TEST_ISSUER)];
    env.extend_from_slice(extra);
    let ts = TestServer::start_with(name, |data| stack.server_with(data, &env));
    let _ = jwks.set(format!("{}/.well-known/jwks.json", ts.url));
    let org = ts.org(settings).await;
    let subject = byok_core::kms::oidc::subject(&org.id);
    IssuerOrg {
        stack,
        ts,
        org,
        subject,
        jwks,
    }
}
