//! Calls to customers' AWS KMS keys: wrap and unwrap org root keys, describe for health, and
//! the validation plan. Endpoints come only from the validated key ARN (or, in tests, from the
//! server's `danger_aws_endpoint`), credentials from the server's configuration and the org's
//! role; every call carries the `{byok:org, byok:scope, byok:version}` context.

use std::sync::Arc;

use byok_core::SecretBytes;
use byok_core::kms::aws::policy::RoleTrust;
use byok_core::kms::aws::request::SigningError;
use byok_core::kms::aws::request::{
    AwsCredentials, CallContext, KeyMetadata, decrypt_request, describe_key_request,
    encrypt_request, parse_decrypt, parse_describe, parse_encrypt,
};
use byok_core::kms::aws::sts::RoleArn;
use byok_core::kms::aws::validate::{Next, Validation};
use byok_core::kms::aws::{Endpoint, KeyArn};
use byok_core::kms::{HttpRequest, HttpResponse, KmsError, KmsErrorKind};
use byok_core::retry::RetryPolicy;

use crate::credentials::{CredentialCache, CredentialSource, WebIdentityTokenSource};
use crate::kms_call::call;
use crate::transport::{Transport, TransportConfig};

/// The vendor's AWS settings.
#[derive(Clone, Default)]
pub struct AwsSettings {
    /// The vendor's own credentials (static keys; for development and tests).
    pub vendor: Option<AwsCredentials>,
    /// The vendor's principal ARN, for the policies byok generates; `None` until the operator
    /// configures it (no policy is generated then: a placeholder must never be pasted into a
    /// real key policy).
    pub principal_arn: Option<String>,
    /// **Tests only**: send every AWS call (KMS and STS) to this `http(s)://host:port`.
    pub danger_endpoint: Option<String>,
}

/// How byok reaches one attached key.
#[derive(Clone, Debug)]
pub struct KeyAccess {
    /// The key.
    pub arn: KeyArn,
    /// The customer's role byok assumes, or `None` for byok's own principal.
    pub role: Option<RoleArn>,
    /// How byok assumes it: presenting the org's external id, or with its own OIDC token.
    pub trust: RoleTrust,
    /// The org's external id.
    pub external_id: String,
}

/// The AWS executor.
pub struct Aws {
    settings: AwsSettings,
    transport: Transport,
    policy: RetryPolicy,
    creds: CredentialCache,
    calls: Arc<std::sync::atomic::AtomicU64>,
    /// byok's OIDC tokens, when it is an issuer (`--public-url`): for roles that trust it.
    tokens: Option<Arc<dyn WebIdentityTokenSource>>,
}

fn local(kind: KmsErrorKind, message: impl Into<String>) -> KmsError {
    KmsError {
        kind,
        provider: "aws",
        code: String::new(),
        message: message.into(),
        status: 0,
    }
}

impl Aws {
    /// An executor with `settings`; counts KMS and STS exchanges in `calls`.
    pub fn new(
        settings: AwsSettings,
        calls: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Self, String> {
        let danger_allow_http = settings
            .danger_endpoint
            .as_deref()
            .is_some_and(|u| u.starts_with("http://"));
        let transport = Transport::new(TransportConfig {
            danger_allow_http,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        let policy = RetryPolicy::default();
        Ok(Self {
            creds: CredentialCache::new(transport.clone(), policy),
            settings,
            transport,
            policy,
            calls,
            tokens: None,
        })
    }

    /// Presents `tokens` (byok's OIDC issuer) for roles that trust it.
    pub fn with_tokens(mut self, tokens: Arc<dyn WebIdentityTokenSource>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Whether byok is an OIDC issuer here.
    pub fn is_issuer(&self) -> bool {
        self.tokens.is_some()
    }

    /// The principal a generated policy names: the customer's role when byok reaches the key
    /// through one, else the vendor's own principal, which must be configured.
    pub fn principal(&self, role: Option<&RoleArn>) -> Result<String, NotConfigured> {
        match (role, &self.settings.principal_arn) {
            (Some(r), _) => Ok(r.as_str().to_owned()),
            (None, Some(p)) => Ok(p.clone()),
            (None, None) => Err(NotConfigured::VENDOR_PRINCIPAL),
        }
    }

    fn endpoint(&self, key: &KeyArn) -> Result<Endpoint, KmsError> {
        match &self.settings.danger_endpoint {
            Some(url) => Endpoint::danger_override(url, &key.region)
                .map_err(|e| local(KmsErrorKind::Malformed, e.to_string())),
            None => key
                .endpoint(Default::default())
                .map_err(|e| local(KmsErrorKind::Malformed, e.to_string())),
        }
    }

    fn sts_endpoint(&self, key: &KeyArn) -> Result<Endpoint, KmsError> {
        match &self.settings.danger_endpoint {
            Some(_) => self.endpoint(key),
            None => Ok(key.sts_endpoint()),
        }
    }

    async fn credentials(&self, org: &str, access: &KeyAccess) -> Result<AwsCredentials, KmsError> {
        let vendor = || {
            self.settings.vendor.clone().ok_or_else(|| {
                local(
                    KmsErrorKind::AccessDenied,
                    "the server has no AWS credentials configured (BYOK_AWS_ACCESS_KEY_ID, BYOK_AWS_SECRET_ACCESS_KEY)",
                )
            })
        };
        let source = match (&access.role, access.trust) {
            (None, _) => CredentialSource::Static(vendor()?),
            (Some(role), RoleTrust::ExternalId) => CredentialSource::AssumeRole {
                vendor: vendor()?,
                role: role.clone(),
                external_id: access.external_id.clone(),
            },
            // No vendor secret at all: byok's own token for this org.
            (Some(role), RoleTrust::Oidc) => CredentialSource::WebIdentity {
                role: role.clone(),
                tokens: self.tokens.clone().ok_or_else(|| {
                    local(
                        KmsErrorKind::AccessDenied,
                        "this key's role trusts byok's OIDC issuer, but byok has none: the operator sets --public-url (BYOK_PUBLIC_URL)",
                    )
                })?,
            },
        };
        self.creds
            .get(org, &source, &self.sts_endpoint(&access.arn)?)
            .await
    }

    /// A root copy's KMS encryption context: the org, and the root version it holds, so that
    /// CloudTrail names both and a copy cannot stand in for another version.
    fn context(org: &str, version: u32) -> CallContext {
        CallContext {
            org: org.into(),
            scope: org.into(),
            version: Some(version),
        }
    }

    /// One KMS exchange with retries (`build` signs afresh each attempt); counts attempts.
    async fn exchange<T>(
        &self,
        build: impl FnMut(std::time::Duration) -> Result<HttpRequest, SigningError>,
        parse: impl Fn(&HttpResponse) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let called = call(&self.transport, "aws", &self.policy, &mut rng, build, parse).await;
        self.calls.fetch_add(
            u64::from(called.attempts),
            std::sync::atomic::Ordering::Relaxed,
        );
        called.result
    }

    /// Wraps `root` (org root key version `version`) under the key.
    pub async fn encrypt(
        &self,
        org: &str,
        access: &KeyAccess,
        root: &SecretBytes,
        version: u32,
    ) -> Result<Vec<u8>, KmsError> {
        let creds = self.credentials(org, access).await?;
        let endpoint = self.endpoint(&access.arn)?;
        let ctx = Self::context(org, version);
        self.exchange(
            |now| encrypt_request(&access.arn, &endpoint, root, &ctx, &creds, now),
            parse_encrypt,
        )
        .await
        .map(|(blob, _)| blob)
    }

    /// Unwraps a root copy of version `version` made by [`Self::encrypt`].
    pub async fn decrypt(
        &self,
        org: &str,
        access: &KeyAccess,
        blob: &[u8],
        version: u32,
    ) -> Result<SecretBytes, KmsError> {
        let creds = self.credentials(org, access).await?;
        let endpoint = self.endpoint(&access.arn)?;
        let ctx = Self::context(org, version);
        self.exchange(
            |now| decrypt_request(&access.arn, &endpoint, blob, &ctx, &creds, now),
            parse_decrypt,
        )
        .await
    }

    /// Describes the key (health).
    pub async fn describe(&self, org: &str, access: &KeyAccess) -> Result<KeyMetadata, KmsError> {
        let creds = self.credentials(org, access).await?;
        let endpoint = self.endpoint(&access.arn)?;
        self.exchange(
            |now| describe_key_request(&access.arn, &endpoint, &creds, now),
            parse_describe,
        )
        .await
    }

    /// Runs the validation plan for `identifier` as org `org` would use it.
    pub async fn validate(
        &self,
        org: &str,
        identifier: &str,
        role: Option<&RoleArn>,
        trust: RoleTrust,
        principal: &str,
        external_id: &str,
    ) -> Validation {
        let mut v = {
            let mut rng = rand::rng();
            Validation::start(identifier, &[], principal, org, &mut rng)
        };
        let access_for = |arn: &KeyArn| KeyAccess {
            arn: arn.clone(),
            role: role.cloned(),
            trust,
            external_id: external_id.into(),
        };
        loop {
            match v.next() {
                Next::Describe(arn) => {
                    let access = access_for(arn);
                    let answer = self.describe(org, &access).await;
                    v.described(answer);
                }
                Next::Wrap(arn, probe) => {
                    let access = access_for(arn);
                    let probe = probe.duplicate();
                    // Version 0 is never a root version: the probe's context says it is a probe.
                    let answer = self.encrypt(org, &access, &probe, 0).await;
                    v.wrapped(answer);
                }
                Next::Unwrap(arn, blob) => {
                    let access = access_for(arn);
                    let blob = blob.to_vec();
                    let answer = self.decrypt(org, &access, &blob, 0).await;
                    v.unwrapped(answer);
                }
                Next::Done => return v,
            }
        }
    }
}

/// A setting the operator has not given, named with the flag and variable that give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotConfigured(pub &'static str);

impl NotConfigured {
    /// The vendor's AWS principal.
    pub const VENDOR_PRINCIPAL: Self = Self(
        "the server has no vendor AWS principal to name in the policy: the byok operator must set --aws-principal-arn (BYOK_AWS_PRINCIPAL_ARN) first",
    );
}
