//! Google Cloud KMS behind the provider seam.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::gcp::auth::{Federation, VendorGrant, boxed};
use crate::kms::gcp::name::{KeyName, NameError};
use crate::kms::gcp::policy::{self, Member, PoolProvider, key_bindings, parse_service_account};
use crate::kms::gcp::request;
use crate::kms::http::{HttpRequest, HttpResponse};
use crate::kms::provider::{
    Access, BadIdentifier, Binding, Call, CredentialFlow, Grant, GrantFor, KeyState, Op, ParsedKey,
    Provider, RequestError, Unusable, Vendor, Wire, local_error,
};
use crate::secret::SecretBytes;

/// Google Cloud KMS.
pub struct Gcp;

/// Why workload identity federation cannot be set up yet.
pub(crate) const NO_ISSUER: &str = "workload identity federation needs byok to be an OIDC issuer: the operator sets --public-url (BYOK_PUBLIC_URL)";

/// Who byok is to the key for `access`: the customer's service account it impersonates, the
/// pool principal of this org's subject, or the vendor's service account.
fn member(access: &Access, vendor: &Vendor) -> Result<Member, String> {
    match (&access.role, &access.audience) {
        (Some(sa), _) => Ok(Member::ServiceAccount(
            parse_service_account(sa).map_err(|e| e.to_string())?,
        )),
        (None, Some(aud)) => Ok(Member::Pool(
            PoolProvider::parse(aud)
                .map_err(|e| e.to_string())?
                .principal(&crate::kms::oidc::subject(&access.org)),
        )),
        (None, None) => vendor
            .gcp
            .as_ref()
            .map(|sa| Member::ServiceAccount(sa.client_email.clone()))
            .ok_or_else(|| "the server has no GCP service account to name (BYOK_GCP_SERVICE_ACCOUNT_FILE); use workload identity federation: give the pool provider (audience)".into()),
    }
}

impl From<NameError> for BadIdentifier {
    fn from(e: NameError) -> Self {
        Self {
            what: "Cloud KMS key name",
            part: e.part,
            found: e.found,
            expected: e.expected,
        }
    }
}

fn key(call_key: &str) -> Result<KeyName, RequestError> {
    KeyName::parse(call_key).map_err(|e| RequestError(e.to_string()))
}

impl Provider for Gcp {
    fn name(&self) -> &'static str {
        "gcp"
    }

    fn title(&self) -> &'static str {
        "Google Cloud KMS"
    }

    fn parse_key(&self, identifier: &str) -> Result<ParsedKey, BadIdentifier> {
        let name = KeyName::parse(identifier)?;
        Ok(ParsedKey {
            // byok stores the CryptoKey: a named version is dropped (decrypt picks the version
            // itself; encrypt uses the primary, which the customer rotates).
            key: name.key(),
            summary: format!(
                "key {} in ring {} of project {}, {}",
                name.crypto_key(),
                name.key_ring(),
                name.project(),
                name.location()
            ),
            location: name.location().into(),
        })
    }

    fn parse_role(&self, role: &str) -> Result<String, BadIdentifier> {
        parse_service_account(role)
    }

    fn parse_audience(&self, audience: &str) -> Result<String, BadIdentifier> {
        PoolProvider::parse(audience).map(|p| p.audience())
    }

    fn fix(&self, kind: KmsErrorKind) -> String {
        match kind {
            KmsErrorKind::AccessDenied => "grant byok's principal roles/cloudkms.cryptoKeyEncrypterDecrypter and roles/cloudkms.viewer on the key (use the bindings byok generates); with workload identity federation, check the pool provider trusts byok's issuer for this org's subject, and that the principal may impersonate the service account".into(),
            KmsErrorKind::KeyDisabled => "enable the key's primary version (gcloud kms keys versions enable VERSION --key KEY --keyring RING --location LOCATION), or make an enabled version primary".into(),
            KmsErrorKind::KeyNotFound => "check the key name and project; the key or its version may have been destroyed".into(),
            KmsErrorKind::KeyPendingDeletion => "restore the version before its destruction (gcloud kms keys versions restore VERSION ...), then enable it".into(),
            other => other.hint().into(),
        }
    }

    fn missing_grant(&self, op: Op, key: &str, principal: &str, _org: &str) -> String {
        // The principal as `Provider::principal` names it (an IAM member), or a bare email.
        let member = if principal.starts_with("principal://") {
            Member::Pool(principal.into())
        } else {
            Member::ServiceAccount(
                principal
                    .strip_prefix("serviceAccount:")
                    .unwrap_or(principal)
                    .into(),
            )
        };
        let role = match op {
            Op::Describe => policy::VIEW_ROLE,
            Op::Wrap | Op::Unwrap => policy::CRYPTO_ROLE,
        };
        let cmd = KeyName::parse(key)
            .map(|k| {
                policy::key_commands(&k, &member)
                    .into_iter()
                    .find(|c| c.ends_with(role))
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let binding = key_bindings(&member)
            .get("bindings")
            .and_then(serde_json::Value::as_array)
            .and_then(|b| b.iter().find(|x| x["role"] == role).cloned())
            .unwrap_or_default();
        format!("Add this binding on the key: {binding} ({cmd})")
    }

    fn resolved(&self, pasted: &ParsedKey, described: &str) -> Result<String, String> {
        if described == pasted.key {
            Ok(pasted.key.clone())
        } else {
            Err(format!(
                "Cloud KMS described {} as {described:?}, another key",
                pasted.key
            ))
        }
    }

    fn principal(&self, access: &Access, vendor: &Vendor) -> Result<String, String> {
        Ok(member(access, vendor)?.iam())
    }

    /// The vendor's own service account (no pool, no customer account): the one principal
    /// byok calls as for every such org.
    fn shared_principal(&self, access: &Access) -> bool {
        access.role.is_none() && access.audience.is_none()
    }

    fn claim_command(&self, key: &str, org: &str) -> String {
        KeyName::parse(key)
            .map(|k| policy::claim_command(&k, org))
            .unwrap_or_else(|e| e.to_string())
    }

    fn grant(&self, g: &GrantFor<'_>) -> Result<Grant, String> {
        let key = KeyName::parse(&g.access.key).map_err(|e| e.to_string())?;
        let m = member(g.access, g.vendor)?;
        let mut commands = policy::key_commands(&key, &m);
        let mut trust_policy = None;
        if let Some(aud) = &g.access.audience {
            let pool = PoolProvider::parse(aud).map_err(|e| e.to_string())?;
            let issuer = g.issuer.ok_or(NO_ISSUER)?;
            let subject = crate::kms::oidc::subject(&g.access.org);
            let mut fed =
                policy::federation_commands(&pool, issuer, &subject, g.access.role.as_deref());
            fed.append(&mut commands);
            commands = fed;
            if g.access.role.is_some() {
                trust_policy = Some(policy::impersonation_binding(&pool, &subject));
            }
        }
        if self.shared_principal(g.access) {
            commands.push(policy::claim_command(&key, &g.access.org));
        }
        Ok(Grant {
            principal: m.iam(),
            key_policy: key_bindings(&m),
            role_policy: None,
            trust_policy,
            commands,
        })
    }
}

impl Wire for Gcp {
    fn wrap_request(
        &self,
        call: &Call<'_>,
        root: &SecretBytes,
        _now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        Ok(request::encrypt_request(
            &key(call.key)?,
            root,
            call.binding,
            call.creds.bearer(self.title())?,
            call.danger_base,
        ))
    }

    fn parse_wrap(&self, key: &str, resp: &HttpResponse) -> Result<Vec<u8>, KmsError> {
        let name = KeyName::parse(key)
            .map_err(|e| local_error("gcp", KmsErrorKind::Malformed, &e.to_string()))?;
        request::parse_encrypt(&name, resp)
    }

    fn unwrap_request(
        &self,
        call: &Call<'_>,
        blob: &[u8],
        _now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        Ok(request::decrypt_request(
            &key(call.key)?,
            blob,
            call.binding,
            call.creds.bearer(self.title())?,
            call.danger_base,
        ))
    }

    /// A decrypt answer names no key: the additional data bound the copy to this org.
    fn parse_unwrap(
        &self,
        _key: &str,
        _: &Binding,
        resp: &HttpResponse,
    ) -> Result<SecretBytes, KmsError> {
        request::parse_decrypt(resp)
    }

    fn describe_request(
        &self,
        call: &Call<'_>,
        _now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        Ok(request::get_key_request(
            &key(call.key)?,
            call.creds.bearer(self.title())?,
            call.danger_base,
        ))
    }

    fn parse_describe(&self, resp: &HttpResponse, _now: Duration) -> Result<KeyState, KmsError> {
        let k = request::parse_get_key(resp)?;
        let unusable = k.usability().err().map(|kind| Unusable {
            kind,
            problem: format!(
                "the key's purpose is {} and its primary version {} is {}; byok needs an ENCRYPT_DECRYPT key with an ENABLED primary version",
                if k.purpose.is_empty() { "unknown" } else { &k.purpose },
                if k.primary.is_empty() { "(none)" } else { &k.primary },
                if k.primary_state.is_empty() { "absent" } else { &k.primary_state },
            ),
            fix: match kind {
                KmsErrorKind::Malformed => "create a symmetric encryption key (gcloud kms keys create KEY --keyring RING --location LOCATION --purpose encryption); if Google refused byok's token as not in a reasonable timeframe, check the server clock".into(),
                other => self.fix(other),
            },
        });
        Ok(KeyState {
            detail: format!(
                "{} is for encryption, its primary version enabled ({})",
                k.name, k.protection_level
            ),
            key: KeyName::parse(&k.name).map(|n| n.key()).unwrap_or(k.name),
            unusable,
            version: None,
            org_claim: k.org_claim,
        })
    }

    fn credentials(
        &self,
        access: &Access,
        vendor: &Vendor,
    ) -> Result<Box<dyn CredentialFlow>, KmsError> {
        let bad = |e: BadIdentifier| local_error("gcp", KmsErrorKind::Malformed, &e.to_string());
        match &access.audience {
            Some(aud) => {
                let pool = PoolProvider::parse(aud).map_err(bad)?;
                let sa = match &access.role {
                    Some(r) => Some(parse_service_account(r).map_err(bad)?),
                    None => None,
                };
                Ok(boxed(Federation::new(
                    pool.audience(),
                    sa,
                    access.danger_base.clone(),
                )))
            }
            // The admin's input, not the customer's withdrawal: never recorded as a denial.
            None if access.role.is_some() => Err(local_error(
                "gcp",
                KmsErrorKind::Malformed,
                "a customer service account is reached through workload identity federation: give the pool provider (audience) too",
            )),
            None => {
                let sa = vendor.gcp.clone().ok_or_else(|| {
                    // The operator's gap, not the customer's withdrawal.
                    local_error(
                        "gcp",
                        KmsErrorKind::Unconfigured,
                        "the server has no GCP service account configured (BYOK_GCP_SERVICE_ACCOUNT_FILE); use workload identity federation instead",
                    )
                })?;
                Ok(boxed(VendorGrant::new(sa, access.danger_base.clone())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::aws::policy::RoleTrust;
    use crate::kms::provider::{Binding, Credentials, Need};
    use zeroize::Zeroizing;

    const KEY: &str = "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root";

    #[test]
    fn a_named_version_is_reduced_to_its_key() {
        let p = Gcp
            .parse_key(&format!("{KEY}/cryptoKeyVersions/4"))
            .unwrap();
        assert_eq!(p.key, KEY);
        assert_eq!(p.location, "europe-west1");
        let e = Gcp.parse_key("arn:aws:kms:eu-west-1:1:key/x").unwrap_err();
        assert_eq!((e.what, e.part), ("Cloud KMS key name", "format"));
    }

    #[test]
    fn wrap_answers_must_name_this_providers_key() {
        let creds = Credentials::Bearer(Zeroizing::new("t".into()));
        let b = Binding::root("00aa", 1);
        let call = Call {
            key: KEY,
            binding: &b,
            creds: &creds,
            danger_base: None,
        };
        let req = Gcp
            .wrap_request(
                &call,
                &SecretBytes::from_bytes(&mut [1; 32]),
                Duration::ZERO,
            )
            .unwrap();
        assert!(req.url.ends_with(":encrypt"));
        let aws = Credentials::SigV4(crate::kms::aws::request::AwsCredentials::new(
            "A", "s", None, None,
        ));
        let call = Call {
            creds: &aws,
            ..call
        };
        let e = Gcp.unwrap_request(&call, b"x", Duration::ZERO).unwrap_err();
        assert!(e.0.contains("carry a bearer token, not AWS keys"), "{e}");
        let denied = HttpResponse {
            status: 403,
            headers: Vec::new(),
            body: br#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"denied"}}"#
                .to_vec(),
        };
        assert_eq!(
            Gcp.parse_wrap(KEY, &denied).unwrap_err().kind,
            KmsErrorKind::AccessDenied
        );
    }

    /// Org `00aa`'s access to `KEY` as the vendor's own service account (no pool, no role).
    fn vendor_access() -> Access {
        Access {
            org: "00aa".into(),
            key: KEY.into(),
            role: None,
            trust: RoleTrust::Oidc,
            external_id: String::new(),
            audience: None,
            danger_base: None,
        }
    }

    #[test]
    fn flows_follow_the_access() {
        let mut access = vendor_access();
        // The vendor's service account is not configured: the operator's gap.
        let e = Gcp.credentials(&access, &Vendor::default()).err().unwrap();
        assert_eq!(e.kind, KmsErrorKind::Unconfigured);
        access.audience = Some("//iam.googleapis.com/projects/1234/locations/global/workloadIdentityPools/byok/providers/byok-issuer".into());
        let flow = Gcp.credentials(&access, &Vendor::default()).unwrap();
        assert!(matches!(flow.need(Duration::ZERO), Need::Token { .. }));
        access.audience = None;
        access.role = Some("byok-access@acme-prod.iam.gserviceaccount.com".into());
        let e = Gcp.credentials(&access, &Vendor::default()).err().unwrap();
        assert!(e.message.contains("audience"));
        // The admin's input, never recorded as the customer's denial.
        assert_eq!(e.kind, KmsErrorKind::Malformed);
    }

    #[test]
    fn missing_grants_name_the_role_for_the_step() {
        let g = Gcp.missing_grant(
            Op::Describe,
            KEY,
            "byok@vendor-prod.iam.gserviceaccount.com",
            "00aa",
        );
        assert!(
            g.contains("roles/cloudkms.viewer") && !g.contains("EncrypterDecrypter"),
            "{g}"
        );
        assert!(
            g.contains("gcloud kms keys add-iam-policy-binding root"),
            "{g}"
        );
        let g = Gcp.missing_grant(Op::Unwrap, KEY, "principal://iam.googleapis.com/x", "00aa");
        assert!(
            g.contains("cryptoKeyEncrypterDecrypter") && g.contains("'principal://"),
            "{g}"
        );
    }

    /// The vendor's own service account is every org's: its grant ends with the label that
    /// names the org, and describe reads that label. A pool principal or a customer's account
    /// is this org's own: no label.
    #[test]
    fn the_vendors_account_needs_the_key_to_name_the_org() {
        let mut access = vendor_access();
        let vendor = Vendor {
            gcp: Some(crate::kms::gcp::ServiceAccount {
                client_email: "byok@vendor-prod.iam.gserviceaccount.com".into(),
                private_key_id: "k1".into(),
            }),
            ..Vendor::default()
        };
        let grant = |access: &Access| {
            Gcp.grant(&GrantFor {
                access,
                vendor: &vendor,
                issuer: Some("https://byok.example"),
            })
            .unwrap()
        };
        let label = "gcloud kms keys update root --keyring byok --location europe-west1 --project acme-prod --update-labels byok-org=00aa";
        assert!(Gcp.shared_principal(&access));
        let g = grant(&access);
        assert_eq!(g.commands.last().map(String::as_str), Some(label));
        assert_eq!(Gcp.claim_command(KEY, "00aa"), label);
        access.audience = Some(
            "//iam.googleapis.com/projects/1234/locations/global/workloadIdentityPools/byok/providers/byok-issuer".into(),
        );
        assert!(!Gcp.shared_principal(&access));
        let g = grant(&access);
        assert!(!g.commands.iter().any(|c| c.contains("byok-org")), "{g:?}");

        let described = |labels: serde_json::Value| {
            let body = serde_json::json!({
                "name": KEY, "purpose": "ENCRYPT_DECRYPT", "labels": labels,
                "primary": { "name": format!("{KEY}/cryptoKeyVersions/1"), "state": "ENABLED" },
            });
            Gcp.parse_describe(
                &HttpResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: body.to_string().into_bytes(),
                },
                Duration::ZERO,
            )
            .unwrap()
            .org_claim
        };
        assert_eq!(
            described(serde_json::json!({ "byok-org": "00aa", "env": "prod" })),
            Some("00aa".into())
        );
        assert_eq!(described(serde_json::json!({ "env": "prod" })), None);
        assert_eq!(described(serde_json::Value::Null), None);
    }
}
