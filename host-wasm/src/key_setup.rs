//! Key setup in the browser, by the same core the server runs: the pasted identifier parsed as
//! the admin types (what it names, or which part is wrong and why), the validation steps that
//! need no KMS (parse, region) in the server's report shape, and the exact grant for this org.
//! The live steps (describe, wrap, unwrap, compare) run on the server, which holds the
//! credentials; the browser never calls a KMS.

use byok_core::ApiCode;
use byok_core::kms::aws::Aws;
use byok_core::kms::aws::policy::{self, RoleTrust, VendorConfig};
use byok_core::kms::aws::sts::RoleArn;
use byok_core::kms::aws::{Fips, IdentifierError, KeyArn, KeyRef};
use byok_core::kms::validate::Validation;
use byok_core::validate::{StepReport, report};
use serde::Serialize;

use crate::edge::EdgeError;

/// What a key identifier names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParsedKey {
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: &'static str,
    /// The region.
    pub region: String,
    /// The 12-digit account id.
    pub account: String,
    /// `key` or `alias`.
    pub kind: &'static str,
    /// The key id or the alias name.
    pub name: String,
    /// The identifier as byok stores and sends it.
    pub key_id: String,
    /// The KMS endpoint byok will call for it (made from the partition and region only).
    pub endpoint: String,
}

/// Why an identifier was refused, part by part: `invalid_request`, as the server answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentifierProblem {
    /// The part of the identifier at fault (`partition`, `region`, `account`, ...).
    pub part: &'static str,
    /// What was found there, escaped and shortened.
    pub found: String,
    /// What is expected, and what to do.
    pub expected: &'static str,
    /// The whole sentence.
    pub message: String,
}

impl From<IdentifierError> for IdentifierProblem {
    fn from(e: IdentifierError) -> Self {
        Self {
            message: e.to_string(),
            part: e.part,
            found: e.found,
            expected: e.expected,
        }
    }
}

impl From<IdentifierProblem> for EdgeError {
    fn from(p: IdentifierProblem) -> Self {
        EdgeError::new(ApiCode::InvalidRequest, p.message)
    }
}

/// Parses a pasted AWS KMS key or alias ARN.
pub fn parse_key(identifier: &str) -> Result<ParsedKey, IdentifierProblem> {
    let arn = KeyArn::parse(identifier)?;
    let endpoint = arn.endpoint(Fips::default())?;
    let (kind, name) = match &arn.key() {
        KeyRef::Key(id) => ("key", id.clone()),
        KeyRef::Alias(name) => ("alias", name.clone()),
    };
    Ok(ParsedKey {
        partition: arn.partition().name(),
        key_id: arn.to_key_id(),
        endpoint: endpoint.url().to_owned(),
        region: arn.region().to_owned(),
        account: arn.account().to_owned(),
        kind,
        name,
    })
}

/// The grant for a key, as the server's `GET .../keys/policy` answers it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrantView {
    /// The principal the key policy grants.
    pub principal: String,
    /// Statements to add to the key's key policy.
    pub key_policy_statements: serde_json::Value,
    /// With a role: its permissions policy.
    pub role_policy: Option<serde_json::Value>,
    /// With a role: its trust policy.
    pub trust_policy: Option<serde_json::Value>,
    /// The org's external id.
    pub external_id: String,
}

/// What [`grant`] needs: the key, the role if byok assumes one, and what the server says about
/// the vendor and the org (its principal, the org's external id).
#[derive(Clone, Debug)]
pub struct GrantRequest<'a> {
    /// The key or alias ARN.
    pub key_arn: &'a str,
    /// The customer's role byok assumes, if any.
    pub role_arn: Option<&'a str>,
    /// The vendor's principal (from the server's policy answer).
    pub vendor_principal: &'a str,
    /// The org's external id (from the server's policy answer).
    pub external_id: &'a str,
    /// The org id.
    pub org: &'a str,
    /// How byok assumes the role (the server's policy answer says which it defaults to).
    pub role_trust: RoleTrust,
    /// byok's OIDC issuer without the scheme (the server's policy answer; empty if none).
    pub issuer: &'a str,
}

/// The exact grant for `r`, by core's [`policy::grant`] (the server's own function).
pub fn grant(r: &GrantRequest<'_>) -> Result<GrantView, IdentifierProblem> {
    let key = KeyArn::parse(r.key_arn)?;
    let role = r.role_arn.map(RoleArn::parse).transpose()?;
    let vendor = VendorConfig {
        principal_arn: r.vendor_principal.into(),
        issuer_host_path: r.issuer.into(),
    };
    let g = policy::grant(
        &key,
        role.as_ref().map(RoleArn::as_str),
        r.role_trust,
        &vendor,
        r.external_id,
        r.org,
    );
    Ok(GrantView {
        principal: g.principal,
        key_policy_statements: g.key_policy_statements,
        role_policy: g.role_policy,
        trust_policy: g.trust_policy,
        external_id: r.external_id.into(),
    })
}

/// What a Cloud KMS key name names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParsedGcpKey {
    /// The project id.
    pub project: String,
    /// The location (region, multi-region or `global`).
    pub location: String,
    /// The key ring.
    pub key_ring: String,
    /// The crypto key.
    pub crypto_key: String,
    /// The version named, if one was (byok stores the key: decrypt picks the version).
    pub version: Option<u64>,
    /// The CryptoKey name byok stores and calls.
    pub key: String,
    /// The host byok calls (fixed: never taken from the name).
    pub endpoint: String,
}

/// Parses a pasted Cloud KMS key or key version name (the console's and REST URL forms too).
pub fn parse_gcp_key(identifier: &str) -> Result<ParsedGcpKey, IdentifierProblem> {
    let n = byok_core::kms::gcp::KeyName::parse(identifier).map_err(|e| IdentifierProblem {
        message: e.to_string(),
        part: e.part,
        found: e.found,
        expected: e.expected,
    })?;
    Ok(ParsedGcpKey {
        key: n.key(),
        endpoint: format!("https://{}/", byok_core::kms::gcp::ENDPOINT_HOST),
        project: n.project().to_owned(),
        location: n.location().to_owned(),
        key_ring: n.key_ring().to_owned(),
        crypto_key: n.crypto_key().to_owned(),
        version: n.version(),
    })
}

/// What an Azure key URL names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParsedAzureKey {
    /// `vault` or `managed_hsm`.
    pub service: &'static str,
    /// `Azure`, `Azure China` or `Azure Government`.
    pub cloud: String,
    /// The vault or Managed HSM name.
    pub vault: String,
    /// The key name.
    pub name: String,
    /// The version named, if one was (byok keeps the key: each copy names its version).
    pub version: Option<String>,
    /// How byok wraps with it: `RSA-OAEP-256` (vault) or `A256KW` (Managed HSM).
    pub algorithm: &'static str,
    /// The key URL byok stores.
    pub key: String,
    /// The host byok calls (rebuilt from the checked parts, never taken from the paste).
    pub endpoint: String,
}

/// Parses a pasted Azure Key Vault or Managed HSM key URL, with or without a version.
pub fn parse_azure_key(identifier: &str) -> Result<ParsedAzureKey, IdentifierProblem> {
    use byok_core::kms::azure::{KeyUrl, Service};
    use byok_core::kms::provider::Provider;
    let url = KeyUrl::parse(identifier).map_err(|e| IdentifierProblem {
        message: e.to_string(),
        part: e.part,
        found: e.found.clone(),
        expected: e.expected,
    })?;
    let stored = byok_core::kms::azure::Azure
        .parse_key(identifier)
        .map_err(|e| IdentifierProblem {
            message: e.to_string(),
            part: e.part,
            found: e.found,
            expected: e.expected,
        })?;
    let (service, algorithm) = match url.service() {
        Service::Vault => ("vault", "RSA-OAEP-256"),
        Service::ManagedHsm => ("managed_hsm", "A256KW"),
    };
    Ok(ParsedAzureKey {
        service,
        cloud: stored.location,
        endpoint: format!("{}/", url.base_url()),
        vault: url.name().to_owned(),
        name: url.key().to_owned(),
        version: url.version().map(str::to_owned),
        algorithm,
        key: stored.key,
    })
}

/// A grant for any provider, as the server's `GET .../keys/policy` answers it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProviderGrant {
    /// Who the key's policy names.
    pub principal: String,
    /// What to add to the key's policy (GCP: IAM bindings).
    pub key_policy_statements: serde_json::Value,
    /// With an AWS role: its permissions policy.
    pub role_policy: Option<serde_json::Value>,
    /// How byok becomes the principal (GCP: the service account's impersonation binding).
    pub trust_policy: Option<serde_json::Value>,
    /// The commands that apply it.
    pub commands: Vec<String>,
}

/// What [`provider_grant`] needs, from the admin's fields and the server's grant facts.
#[derive(Clone, Debug, Default)]
pub struct ProviderGrantRequest {
    /// `aws`, `gcp`, `azure`.
    pub provider: String,
    /// The key identifier.
    pub key: String,
    /// The customer's principal byok becomes, if any.
    pub role: Option<String>,
    /// Where byok's token is exchanged (GCP pool provider; Azure tenant), if anywhere.
    pub audience: Option<String>,
    /// How byok becomes the role.
    pub role_trust: Option<RoleTrust>,
    /// The org id.
    pub org: String,
    /// The org's external id.
    pub external_id: String,
    /// byok's issuer URL, if it is one.
    pub issuer_url: Option<String>,
    /// The vendor's principal for this provider, if configured.
    pub vendor_principal: Option<String>,
}

/// The exact grant for `r`, by the provider's own `grant` (the server's function).
pub fn provider_grant(r: &ProviderGrantRequest) -> Result<ProviderGrant, EdgeError> {
    use byok_core::kms::provider::{self, Access, GrantFor, Vendor};
    let invalid = |m: String| EdgeError::new(ApiCode::InvalidRequest, m);
    let p =
        provider::provider(&r.provider).ok_or_else(|| invalid(provider::unknown(&r.provider)))?;
    let parsed = p.parse_key(&r.key).map_err(|e| invalid(e.to_string()))?;
    let role = r
        .role
        .as_deref()
        .map(|x| p.parse_role(x))
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    let audience = r
        .audience
        .as_deref()
        .map(|x| p.parse_audience(x))
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    let mut vendor = Vendor::default();
    match (p.name(), &r.vendor_principal) {
        ("aws", Some(v)) => vendor.aws_principal = Some(v.clone()),
        ("gcp", Some(v)) => {
            vendor.gcp = Some(byok_core::kms::gcp::ServiceAccount {
                client_email: v.trim_start_matches("serviceAccount:").to_owned(),
                private_key_id: String::new(),
            });
        }
        ("azure", Some(v)) => {
            vendor.azure = Some(byok_core::kms::azure::auth::VendorApp {
                client_id: v.clone(),
                secret: None,
            });
        }
        _ => {}
    }
    let access = Access {
        org: r.org.clone(),
        key: parsed.key,
        role,
        trust: r.role_trust.unwrap_or(RoleTrust::ExternalId),
        external_id: r.external_id.clone(),
        audience,
        danger_base: None,
    };
    let g = p
        .grant(&GrantFor {
            access: &access,
            vendor: &vendor,
            issuer: r.issuer_url.as_deref(),
        })
        .map_err(|m| EdgeError::new(ApiCode::NotConfigured, m))?;
    Ok(ProviderGrant {
        principal: g.principal,
        key_policy_statements: g.key_policy,
        role_policy: g.role_policy,
        trust_policy: g.trust_policy,
        commands: g.commands,
    })
}

/// The validation steps that run without a KMS (parse identifier, region allowed), with the
/// steps after them skipped if one failed: the first lines of the server's report, word for word.
/// `regions` is the org's allowed regions (empty: any).
pub fn offline_steps(
    identifier: &str,
    regions: &[&str],
    principal: &str,
    org: &str,
    rng: &mut impl rand_core::CryptoRng,
) -> Vec<StepReport> {
    // Parse and region only; describe, where a shared principal's key must name the org,
    // runs where the KMS is called.
    report(Validation::start(&Aws, identifier, regions, principal, org, false, rng).report())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:eu-west-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn a_gcp_key_and_its_grant_through_federation() {
        let k = parse_gcp_key("//cloudkms.googleapis.com/projects/acme-prod/locations/eur4/keyRings/r/cryptoKeys/k/cryptoKeyVersions/3").unwrap();
        assert_eq!((&k.location[..], k.version), ("eur4", Some(3)));
        assert_eq!(
            k.key,
            "projects/acme-prod/locations/eur4/keyRings/r/cryptoKeys/k"
        );
        assert_eq!(
            parse_gcp_key("projects/x/locations/l/keyRings/r/cryptoKeys/k")
                .unwrap_err()
                .part,
            "project"
        );
        let pool = "//iam.googleapis.com/projects/1234/locations/global/workloadIdentityPools/byok/providers/byok-issuer";
        let mut r = ProviderGrantRequest {
            provider: "gcp".into(),
            key: k.key.clone(),
            audience: Some(pool.into()),
            org: "00aa".into(),
            issuer_url: Some("https://byok.example".into()),
            ..Default::default()
        };
        let g = provider_grant(&r).unwrap();
        assert!(
            g.principal
                .ends_with("/workloadIdentityPools/byok/subject/org:00aa"),
            "{}",
            g.principal
        );
        assert!(
            g.commands
                .iter()
                .any(|c| c.contains("--issuer-uri 'https://byok.example'"))
        );
        assert_eq!(
            g.trust_policy, None,
            "no service account: nothing to impersonate"
        );
        // Without an issuer, federation cannot be set up: the server's own refusal.
        r.issuer_url = None;
        assert_eq!(provider_grant(&r).unwrap_err().code, ApiCode::NotConfigured);
        r.provider = "oci".into();
        assert_eq!(
            provider_grant(&r).unwrap_err().code,
            ApiCode::InvalidRequest
        );
    }

    #[test]
    fn an_azure_key_url_and_its_federated_grant() {
        let v = "0123456789abcdef0123456789abcdef";
        let k = parse_azure_key(&format!(
            " https://Acme.managedhsm.azure.cn/keys/root/{v}\n"
        ))
        .unwrap();
        assert_eq!(
            (
                k.service,
                &k.cloud[..],
                &k.vault[..],
                &k.name[..],
                k.algorithm
            ),
            ("managed_hsm", "Azure China", "acme", "root", "A256KW")
        );
        assert_eq!(k.version.as_deref(), Some(v));
        assert_eq!(k.key, "https://acme.managedhsm.azure.cn/keys/root");
        assert_eq!(k.endpoint, "https://acme.managedhsm.azure.cn/");
        let e = parse_azure_key("https://acme.vault.azure.net.evil.example/keys/root").unwrap_err();
        assert_eq!(e.part, "host");
        let app = "44444444-4444-4444-8444-444444444444";
        let mut r = ProviderGrantRequest {
            provider: "azure".into(),
            key: "https://acme.vault.azure.net/keys/root".into(),
            role: Some(app.into()),
            org: "00aa".into(),
            issuer_url: Some("https://byok.example".into()),
            ..Default::default()
        };
        let g = provider_grant(&r).unwrap();
        assert_eq!(g.principal, app);
        assert_eq!(g.trust_policy.as_ref().unwrap()["subject"], "org:00aa");
        assert!(g.commands[1].contains("Key Vault Crypto Service Encryption User"));
        // The vendor's own app instead: consent and the role, no federated credential.
        r.role = None;
        r.vendor_principal = Some(app.into());
        let g = provider_grant(&r).unwrap();
        assert_eq!(g.commands[0], format!("az ad sp create --id {app}"));
        r.vendor_principal = None;
        assert_eq!(provider_grant(&r).unwrap_err().code, ApiCode::NotConfigured);
    }

    #[test]
    fn a_key_arn_is_read_part_by_part() {
        let k = parse_key(&format!("  {ARN}\n")).unwrap();
        assert_eq!(
            (k.partition, &k.region[..], &k.account[..], k.kind),
            ("aws", "eu-west-1", "444455556666", "key")
        );
        assert_eq!(k.name, "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert_eq!(k.endpoint, "https://kms.eu-west-1.amazonaws.com/");
        let a = parse_key("arn:aws-cn:kms:cn-north-1:444455556666:alias/byok").unwrap();
        assert_eq!((a.kind, &a.name[..]), ("alias", "byok"));
        assert_eq!(a.endpoint, "https://kms.cn-north-1.amazonaws.com.cn/");
    }

    #[test]
    fn a_bad_identifier_names_its_part() {
        let p = parse_key("arn:aws:kms:eu-west-1:4444:key/x").unwrap_err();
        assert_eq!(p.part, "account");
        assert!(p.message.contains("4444"), "{}", p.message);
        let e: EdgeError = p.into();
        assert_eq!(e.code, ApiCode::InvalidRequest);
        assert_eq!(
            parse_key("arn:aws:kms:evil.example/x:444455556666:key/x")
                .unwrap_err()
                .part,
            "region"
        );
    }

    #[test]
    fn offline_steps_are_the_first_lines_of_the_servers_report() {
        let rng = &mut rand_core::UnwrapErr(getrandom::SysRng);
        let ok = offline_steps(ARN, &[], "P", "00ff", rng);
        let words = |r: &[StepReport]| {
            r.iter()
                .map(|s| (s.step.clone(), s.outcome.as_str()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words(&ok),
            [
                ("parse identifier".to_owned(), "pass"),
                ("region allowed".to_owned(), "pass")
            ]
        );
        let far = offline_steps(ARN, &["us-east-1"], "P", "00ff", rng);
        assert_eq!(far[1].outcome.as_str(), "fail");
        assert_eq!(
            far[1].fix.as_deref(),
            Some("use a key in one of: us-east-1")
        );
        assert!(far[2..].iter().all(|s| s.outcome.as_str() == "skipped"));
        assert_eq!(far.len(), 6);
        let bad = offline_steps("arn:nope", &[], "P", "00ff", rng);
        assert_eq!(bad[0].outcome.as_str(), "fail");
        assert_eq!(bad.len(), 6);
    }

    #[test]
    fn the_grant_is_the_servers() {
        let g = grant(&GrantRequest {
            key_arn: ARN,
            role_arn: Some("arn:aws:iam::444455556666:role/byok-access"),
            vendor_principal: "arn:aws:iam::111122223333:role/byok",
            external_id: "ext-1",
            org: "00ff",
            role_trust: RoleTrust::ExternalId,
            issuer: "",
        })
        .unwrap();
        assert_eq!(g.principal, "arn:aws:iam::444455556666:role/byok-access");
        assert_eq!(
            g.trust_policy.unwrap()["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
            "ext-1"
        );
        assert_eq!(
            grant(&GrantRequest {
                key_arn: ARN,
                role_arn: Some("arn:aws:iam::1:role/x"),
                vendor_principal: "v",
                external_id: "e",
                org: "o",
                role_trust: RoleTrust::ExternalId,
                issuer: "",
            })
            .unwrap_err()
            .part,
            "account"
        );
    }
}
