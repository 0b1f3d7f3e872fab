//! AWS KMS behind the provider seam: the builders and parsers of this module's siblings, and the
//! credential flow (static vendor keys, `AssumeRole` with the org's external id, or
//! `AssumeRoleWithWebIdentity` with byok's OIDC token).

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use zeroize::Zeroizing;

use crate::kms::aws::arn::{Endpoint, IdentifierError, KeyArn, KeyRef};
use crate::kms::aws::policy::{self, RoleTrust, VendorConfig, missing_statement};
use crate::kms::aws::request::{
    self, AwsCredentials, SigningError, decrypt_request, describe_key_request, encrypt_request,
};
use crate::kms::aws::sts::{self, RoleArn};
use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::http::{HttpRequest, HttpResponse};
use crate::kms::provider::{
    Access, BadIdentifier, Binding, Call, CredentialFlow, Credentials, Grant, GrantFor, KeyState,
    Need, Op, ParsedKey, Provider, Ready, RequestError, Unusable, Vendor, Wire, local_error,
};
use crate::secret::SecretBytes;

/// Temporary credentials are asked for this long.
pub const SESSION_DURATION: Duration = Duration::from_secs(3600);

/// The audience AWS STS expects in byok's token.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// AWS KMS.
pub struct Aws;

/// Why no policy naming the vendor can be generated yet.
pub(crate) const NO_VENDOR_PRINCIPAL: &str = "the server has no vendor AWS principal to name in the policy: the byok operator must set --aws-principal-arn (BYOK_AWS_PRINCIPAL_ARN) first";

/// Why a role cannot trust byok's issuer yet.
pub(crate) const NO_ISSUER: &str = "role_trust `oidc` needs byok to be an OIDC issuer: the operator sets --public-url (BYOK_PUBLIC_URL)";

impl From<IdentifierError> for BadIdentifier {
    fn from(e: IdentifierError) -> Self {
        Self {
            what: "AWS KMS key identifier",
            part: e.part,
            found: e.found,
            expected: e.expected,
        }
    }
}

impl From<SigningError> for RequestError {
    fn from(e: SigningError) -> Self {
        Self(e.0)
    }
}

fn key(call_key: &str) -> Result<KeyArn, RequestError> {
    KeyArn::parse(call_key).map_err(|e| RequestError(e.to_string()))
}

/// The KMS endpoint of `key`, or the test override.
fn endpoint(key: &KeyArn, danger_base: Option<&str>) -> Result<Endpoint, RequestError> {
    match danger_base {
        Some(base) => Endpoint::danger_override(base, key.region()),
        None => key.endpoint(Default::default()),
    }
    .map_err(|e| RequestError(e.to_string()))
}

fn sigv4(creds: &Credentials) -> Result<&AwsCredentials, RequestError> {
    match creds {
        Credentials::SigV4(c) => Ok(c),
        Credentials::Bearer(_) => Err(RequestError(
            "AWS requests are signed with AWS keys, not a bearer token".into(),
        )),
    }
}

fn context(call: &Call<'_>) -> request::CallContext {
    request::CallContext {
        org: call.binding.org.clone(),
        scope: call.binding.scope.clone(),
        version: call.binding.version,
    }
}

impl Provider for Aws {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn title(&self) -> &'static str {
        "AWS KMS"
    }

    fn parse_key(&self, identifier: &str) -> Result<ParsedKey, BadIdentifier> {
        let arn = KeyArn::parse(identifier)?;
        Ok(ParsedKey {
            key: arn.to_key_id(),
            summary: format!("{} key in {}", arn.partition().name(), arn.region()),
            location: arn.region().to_owned(),
        })
    }

    fn parse_role(&self, role: &str) -> Result<String, BadIdentifier> {
        Ok(RoleArn::parse(role)?.as_str().to_owned())
    }

    fn parse_audience(&self, audience: &str) -> Result<String, BadIdentifier> {
        Err(BadIdentifier {
            what: "AWS role trust",
            part: "audience",
            found: audience
                .chars()
                .take(64)
                .flat_map(char::escape_debug)
                .collect(),
            expected: "nothing: AWS roles take byok's token for sts.amazonaws.com; leave the audience out",
        })
    }

    fn fix(&self, kind: KmsErrorKind) -> String {
        match kind {
            KmsErrorKind::AccessDenied => "grant byok's principal kms:Encrypt, kms:Decrypt and kms:DescribeKey on the key (use the policy byok generates), and, through a role, check its trust policy: byok's OIDC provider and this org's subject (role_trust oidc) or the org's external id (external_id)".into(),
            KmsErrorKind::KeyDisabled => "enable the key (EnableKey: aws kms enable-key --key-id KEY)".into(),
            KmsErrorKind::KeyNotFound => "check the key ARN, its region and account; the key may have been deleted".into(),
            KmsErrorKind::KeyPendingDeletion => "cancel the scheduled deletion (CancelKeyDeletion: aws kms cancel-key-deletion --key-id KEY), then enable the key".into(),
            other => other.hint().into(),
        }
    }

    fn missing_grant(&self, op: Op, _key: &str, principal: &str, org: &str) -> String {
        let action = match op {
            Op::Describe => "kms:DescribeKey",
            Op::Wrap => "kms:Encrypt",
            Op::Unwrap => "kms:Decrypt",
        };
        format!(
            "Add this statement to the key policy: {}",
            missing_statement(action, principal, org)
        )
    }

    fn resolved(&self, pasted: &ParsedKey, described: &str) -> Result<String, String> {
        let p = KeyArn::parse(&pasted.key).map_err(|e| e.to_string())?;
        KeyArn::parse(described)
            .ok()
            .filter(|k| {
                k.partition() == p.partition()
                    && k.region() == p.region()
                    && k.account() == p.account()
                    && k.to_key_id() == described
            })
            .map(|k| k.to_key_id())
            .ok_or_else(|| {
                format!(
                    "the KMS described {} as {described:?}, which is not a key in the same account and region",
                    pasted.key
                )
            })
    }

    fn principal(&self, access: &Access, vendor: &Vendor) -> Result<String, String> {
        match (&access.role, &vendor.aws_principal) {
            (Some(r), _) => Ok(r.clone()),
            (None, Some(p)) => Ok(p.clone()),
            (None, None) => Err(NO_VENDOR_PRINCIPAL.into()),
        }
    }

    fn grant(&self, g: &GrantFor<'_>) -> Result<Grant, String> {
        let key = KeyArn::parse(&g.access.key).map_err(|e| e.to_string())?;
        let role = g.access.role.as_deref();
        let needs_vendor = role.is_none() || g.access.trust == RoleTrust::ExternalId;
        let issuer_host_path = g
            .issuer
            .map(|i| i.split_once("://").map_or(i, |(_, rest)| rest).to_owned())
            .unwrap_or_default();
        if role.is_some() && g.access.trust == RoleTrust::Oidc && issuer_host_path.is_empty() {
            return Err(NO_ISSUER.into());
        }
        let vendor = VendorConfig {
            principal_arn: match &g.vendor.aws_principal {
                Some(p) => p.clone(),
                None if needs_vendor => return Err(NO_VENDOR_PRINCIPAL.into()),
                None => String::new(),
            },
            issuer_host_path,
        };
        let grant = policy::grant(
            &key,
            role,
            g.access.trust,
            &vendor,
            &g.access.external_id,
            &g.access.org,
        );
        let commands = match (role, g.access.trust) {
            (Some(r), RoleTrust::Oidc) => {
                policy::oidc_setup_commands(&vendor, r.rsplit('/').next().unwrap_or(r))
            }
            _ => Vec::new(),
        };
        Ok(Grant {
            principal: grant.principal,
            key_policy: grant.key_policy_statements,
            role_policy: grant.role_policy,
            trust_policy: grant.trust_policy,
            commands,
        })
    }
}

/// Checks that an answer was made by the key asked for (`key`): its `KeyId` is that key's ARN,
/// or, for an alias (a validation probe), a key in the alias's partition, region and account.
/// The request names the key, so AWS itself refuses a copy made under another; this holds
/// the answer to it too, whatever endpoint gave it. A mismatch is malformed: never retried,
/// never served from an outage grace.
fn answered_by(key: &str, named: &str, resp: &HttpResponse) -> Result<(), KmsError> {
    let asked = KeyArn::parse(key).map_err(|_| request::malformed(resp, "the key asked for"))?;
    let same = KeyArn::parse(named).is_ok_and(|by| {
        matches!(by.key(), KeyRef::Key(_))
            && match asked.key() {
                KeyRef::Key(_) => by.to_key_id() == asked.to_key_id() && by.to_key_id() == named,
                KeyRef::Alias(_) => {
                    by.partition() == asked.partition()
                        && by.region() == asked.region()
                        && by.account() == asked.account()
                        && by.to_key_id() == named
                }
            }
    });
    if same {
        Ok(())
    } else {
        Err(request::malformed(
            resp,
            &format!("KeyId {named:?} is not the key asked for ({key})"),
        ))
    }
}

impl Wire for Aws {
    fn wrap_request(
        &self,
        call: &Call<'_>,
        root: &SecretBytes,
        now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        let arn = key(call.key)?;
        let ep = endpoint(&arn, call.danger_base)?;
        Ok(encrypt_request(
            &arn,
            &ep,
            root,
            &context(call),
            sigv4(call.creds)?,
            now,
        )?)
    }

    fn parse_wrap(&self, key: &str, resp: &HttpResponse) -> Result<Vec<u8>, KmsError> {
        let (blob, by) = request::parse_encrypt(resp)?;
        answered_by(key, &by, resp)?;
        Ok(blob)
    }

    fn unwrap_request(
        &self,
        call: &Call<'_>,
        blob: &[u8],
        now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        let arn = key(call.key)?;
        let ep = endpoint(&arn, call.danger_base)?;
        Ok(decrypt_request(
            &arn,
            &ep,
            blob,
            &context(call),
            sigv4(call.creds)?,
            now,
        )?)
    }

    fn parse_unwrap(
        &self,
        key: &str,
        _: &Binding,
        resp: &HttpResponse,
    ) -> Result<SecretBytes, KmsError> {
        let (root, by) = request::parse_decrypt(resp)?;
        answered_by(key, &by, resp)?;
        Ok(root)
    }

    fn describe_request(
        &self,
        call: &Call<'_>,
        now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        let arn = key(call.key)?;
        let ep = endpoint(&arn, call.danger_base)?;
        Ok(describe_key_request(&arn, &ep, sigv4(call.creds)?, now)?)
    }

    fn parse_describe(&self, resp: &HttpResponse, _now: Duration) -> Result<KeyState, KmsError> {
        let meta = request::parse_describe(resp)?;
        let unusable = meta.usability().err().map(|kind| Unusable {
            kind,
            problem: format!(
                "the key is {} (usage {}, spec {}); byok needs an enabled SYMMETRIC_DEFAULT key with usage ENCRYPT_DECRYPT",
                meta.state, meta.usage, meta.spec
            ),
            fix: match kind {
                KmsErrorKind::Malformed => "create a symmetric encryption key (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT)".into(),
                other => self.fix(other),
            },
        });
        Ok(KeyState {
            detail: format!("{} is enabled, symmetric, for encryption", meta.arn),
            key: meta.arn,
            unusable,
            version: None,
            // The grant binds the org (`byok:org`), and the KMS enforces it.
            org_claim: None,
        })
    }

    fn credentials(
        &self,
        access: &Access,
        vendor: &Vendor,
    ) -> Result<Box<dyn CredentialFlow>, KmsError> {
        let vendor_keys = || {
            vendor.aws.clone().ok_or_else(|| {
                // The operator's gap, not the customer's withdrawal: no key of any org is
                // evicted or marked denied for it.
                local_error(
                    "aws",
                    KmsErrorKind::Unconfigured,
                    "the server has no AWS credentials configured (BYOK_AWS_ACCESS_KEY_ID, BYOK_AWS_SECRET_ACCESS_KEY)",
                )
            })
        };
        let Some(role) = &access.role else {
            return Ok(Box::new(Ready(Credentials::SigV4(vendor_keys()?))));
        };
        let bad = |e: IdentifierError| local_error("aws", KmsErrorKind::Malformed, &e.to_string());
        let role = RoleArn::parse(role).map_err(bad)?;
        let arn = KeyArn::parse(&access.key).map_err(bad)?;
        let sts = match &access.danger_base {
            Some(base) => Endpoint::danger_override(base, arn.region()).map_err(bad)?,
            None => arn.sts_endpoint(),
        };
        let how = match access.trust {
            RoleTrust::ExternalId => How::AssumeRole {
                vendor: vendor_keys()?,
                external_id: access.external_id.clone(),
            },
            RoleTrust::Oidc => How::WebIdentity { token: None },
        };
        Ok(Box::new(AssumeFlow {
            sts,
            role,
            session: session_name(&access.org),
            how,
            got: None,
        }))
    }
}

enum How {
    AssumeRole {
        vendor: AwsCredentials,
        external_id: String,
    },
    WebIdentity {
        token: Option<Zeroizing<String>>,
    },
}

/// One STS exchange: `AssumeRole` or `AssumeRoleWithWebIdentity`.
struct AssumeFlow {
    sts: Endpoint,
    role: RoleArn,
    session: String,
    how: How,
    got: Option<AwsCredentials>,
}

impl CredentialFlow for AssumeFlow {
    fn need(&self, _: Duration) -> Need {
        match (&self.got, &self.how) {
            (Some(_), _) => Need::Done,
            (None, How::WebIdentity { token: None }) => Need::Token {
                audience: STS_AUDIENCE.into(),
            },
            (None, _) => Need::Exchange,
        }
    }

    fn supply(&mut self, value: Zeroizing<String>) {
        if let How::WebIdentity { token } = &mut self.how {
            *token = Some(value);
        }
    }

    fn request(&self, now: Duration) -> Result<HttpRequest, RequestError> {
        match &self.how {
            How::AssumeRole {
                vendor,
                external_id,
            } => Ok(sts::assume_role_request(
                &self.sts,
                &self.role,
                &self.session,
                external_id,
                SESSION_DURATION,
                vendor,
                now,
            )?),
            How::WebIdentity { token: Some(t) } => Ok(sts::assume_role_with_web_identity_request(
                &self.sts,
                &self.role,
                &self.session,
                t,
                SESSION_DURATION,
            )),
            How::WebIdentity { token: None } => {
                Err(RequestError("byok's OIDC token was not supplied".into()))
            }
        }
    }

    fn check(&self, resp: &HttpResponse) -> Result<(), KmsError> {
        if (200..300).contains(&resp.status) {
            return Ok(());
        }
        Err(crate::kms::aws::error::parse_error(
            resp.status,
            &resp.headers,
            &resp.body,
        ))
    }

    fn answer(&mut self, resp: &HttpResponse, _: Duration) -> Result<(), KmsError> {
        self.got = Some(sts::parse_assume_role(resp)?);
        Ok(())
    }

    fn credentials(&self) -> Option<(Credentials, Option<u64>)> {
        self.got
            .as_ref()
            .map(|c| (Credentials::SigV4(c.clone()), c.expires_at))
    }
}

/// `byok-` and the org id, cut to STS's 64-character limit; CloudTrail in the customer's account
/// shows it, so the customer sees which org a call was for.
pub fn session_name(org: &str) -> String {
    let mut s: String = format!("byok-{org}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .collect();
    s.truncate(64);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::provider::Binding;

    const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("0a1b"), "byok-0a1b");
        assert_eq!(session_name(&"f".repeat(200)).len(), 64);
        assert_eq!(session_name("a b/c"), "byok-abc");
    }

    #[test]
    fn requests_go_to_the_keys_region_and_carry_the_binding() {
        let creds = Credentials::SigV4(AwsCredentials::new("AKIA", "s", None, None));
        let binding = Binding::root("00aa", 3);
        let call = Call {
            key: KEY,
            binding: &binding,
            creds: &creds,
            danger_base: None,
        };
        let root = SecretBytes::from_bytes(&mut [7; 32]);
        let req = Aws
            .wrap_request(&call, &root, Duration::from_secs(1_700_000_000))
            .unwrap();
        assert_eq!(req.url, "https://kms.eu-west-1.amazonaws.com/");
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["EncryptionContext"]["byok:version"], "3");
        assert_eq!(body["EncryptionContext"]["byok:org"], "00aa");
        // A bearer token cannot sign an AWS request.
        let bearer = Credentials::Bearer(Zeroizing::new("t".into()));
        let call = Call {
            creds: &bearer,
            ..call
        };
        let e = Aws.describe_request(&call, Duration::ZERO).unwrap_err();
        assert_eq!(
            e.0,
            "AWS requests are signed with AWS keys, not a bearer token"
        );
    }

    /// An answer made by another key than the one asked for is refused as malformed (never
    /// retried, never served from a grace): another account's, another region's, an alias
    /// where a key was asked for, or none named. For an alias (a validation probe), any key
    /// of its account and region answers.
    #[test]
    fn answers_from_another_key_are_refused() {
        use base64ct::{Base64, Encoding};
        let answer = |key_id: Option<&str>| {
            let mut body = serde_json::json!({
                "Plaintext": Base64::encode_string(&[9u8; 32]),
                "CiphertextBlob": Base64::encode_string(&[1u8; 40]),
            });
            if let Some(k) = key_id {
                body["KeyId"] = k.into();
            }
            HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: body.to_string().into_bytes(),
            }
        };
        let binding = Binding::root("00aa", 1);
        let alias = "arn:aws:kms:eu-west-1:111122223333:alias/root";
        let same = answer(Some(KEY));
        assert_eq!(
            Aws.parse_unwrap(KEY, &binding, &same)
                .unwrap()
                .expose_secret(),
            &[9u8; 32]
        );
        assert_eq!(Aws.parse_wrap(KEY, &same).unwrap(), [1u8; 40]);
        let other_key =
            "arn:aws:kms:eu-west-1:111122223333:key/99999999-12ab-34cd-56ef-1234567890ab";
        assert!(
            Aws.parse_unwrap(alias, &binding, &answer(Some(other_key)))
                .is_ok()
        );
        for (asked, named) in [
            (KEY, Some(other_key)),
            (
                KEY,
                Some("arn:aws:kms:eu-west-1:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            ),
            (
                KEY,
                Some("arn:aws:kms:eu-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            ),
            (KEY, Some(alias)),
            (
                KEY,
                Some(
                    " arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                ),
            ),
            (KEY, Some("1234abcd-12ab-34cd-56ef-1234567890ab")),
            (KEY, None),
            (
                alias,
                Some("arn:aws:kms:eu-west-1:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
            ),
            (alias, Some(alias)),
        ] {
            let resp = answer(named);
            let e = Aws.parse_unwrap(asked, &binding, &resp).unwrap_err();
            assert_eq!(e.kind, KmsErrorKind::Malformed, "{asked} {named:?}");
            let e = Aws.parse_wrap(asked, &resp).unwrap_err();
            assert_eq!(e.kind, KmsErrorKind::Malformed, "{asked} {named:?}");
        }
    }

    #[test]
    fn flows_follow_the_trust() {
        let mut access = Access {
            org: "00aa".into(),
            key: KEY.into(),
            role: None,
            trust: RoleTrust::Oidc,
            external_id: "byok-x".into(),
            audience: None,
            danger_base: None,
        };
        // No role and no vendor keys: refused with the variables to set, as the operator's
        // gap (not the customer's denial).
        let e = Aws.credentials(&access, &Vendor::default()).err().unwrap();
        assert_eq!(e.kind, KmsErrorKind::Unconfigured);
        assert!(e.message.contains("BYOK_AWS_ACCESS_KEY_ID"));
        // A role trusting byok's issuer: a token for STS first, then the exchange.
        access.role = Some("arn:aws:iam::111122223333:role/byok".into());
        let mut flow = Aws.credentials(&access, &Vendor::default()).unwrap();
        assert!(
            matches!(flow.need(Duration::ZERO), Need::Token { audience } if audience == STS_AUDIENCE)
        );
        flow.supply(Zeroizing::new("tok".into()));
        assert!(matches!(flow.need(Duration::ZERO), Need::Exchange));
        let req = flow.request(Duration::ZERO).unwrap();
        assert_eq!(req.url, "https://sts.eu-west-1.amazonaws.com/");
        let body = String::from_utf8(req.body.clone()).unwrap();
        assert!(body.contains("WebIdentityToken=tok"), "{body}");
        // The external-id trust needs the vendor's keys.
        access.trust = RoleTrust::ExternalId;
        let e = Aws.credentials(&access, &Vendor::default()).err().unwrap();
        assert_eq!(e.kind, KmsErrorKind::Unconfigured);
        assert!(
            e.message.contains("BYOK_AWS_ACCESS_KEY_ID"),
            "{}",
            e.message
        );
    }
}
