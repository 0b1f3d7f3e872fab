//! Azure Key Vault and Managed HSM as byok sets them up: the [`Provider`] half of the seam
//! (identifiers, grants, fixes). Not registered in `PROVIDERS` yet: that waits for the `Wire`
//! half and its conformance tests (issue 17), so that no API or page offers Azure before byok
//! can call it.
//!
//! byok reaches an Azure key as the customer's own app registration (`role`: its client id) in
//! the customer's tenant (`audience`: the tenant id), through a federated credential that trusts
//! byok's issuer for this org's subject: no secret on either side.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;

use serde_json::json;

use crate::kms::azure::auth::{FEDERATION_AUDIENCE, tenant_ok};
use crate::kms::azure::url::{Cloud, KeyUrl, Service, UrlError};
use crate::kms::error::KmsErrorKind;
use crate::kms::provider::{
    Access, BadIdentifier, Grant, GrantFor, Op, ParsedKey, Provider, Vendor,
};

/// Azure Key Vault and Managed HSM.
pub struct Azure;

/// The built-in role for vaults: read, wrap and unwrap keys.
pub const VAULT_ROLE: &str = "Key Vault Crypto Service Encryption User";
/// Its id.
pub const VAULT_ROLE_ID: &str = "e147488a-f6f5-4113-8e2d-b22465e65bf6";
/// The Managed HSM local role with the same data actions.
pub const HSM_ROLE: &str = "Managed HSM Crypto Service Encryption User";
/// Its id.
pub const HSM_ROLE_ID: &str = "33413926-3206-4cdd-b39a-83574fe37a17";

const NO_ISSUER: &str = "a federated credential needs byok to be an OIDC issuer: the operator sets --public-url (BYOK_PUBLIC_URL)";
const NO_APP: &str = "byok reaches an Azure key as your app registration: give its client id (role) and your tenant id (audience)";

impl From<UrlError> for BadIdentifier {
    fn from(e: UrlError) -> Self {
        Self {
            what: "Azure key URL",
            part: e.part,
            found: e.found,
            expected: e.expected,
        }
    }
}

fn shown(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

/// A client (application) id: a GUID, stored in lower case.
fn parse_client_id(s: &str) -> Result<String, BadIdentifier> {
    let t = s.trim();
    let ok = t.len() == 36
        && t.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if ok {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(BadIdentifier {
            what: "Azure app registration",
            part: "client id",
            found: shown(t),
            expected: "the app's client (application) id, a GUID: az ad app show --id APP --query appId",
        })
    }
}

const fn cloud_name(c: Cloud) -> &'static str {
    match c {
        Cloud::Public => "Azure",
        Cloud::China => "Azure China",
        Cloud::UsGov => "Azure Government",
    }
}

impl Provider for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn title(&self) -> &'static str {
        "Azure Key Vault"
    }

    fn parse_key(&self, identifier: &str) -> Result<ParsedKey, BadIdentifier> {
        let mut url = KeyUrl::parse(identifier)?;
        let what = match url.service {
            Service::Vault => "vault",
            Service::ManagedHsm => "Managed HSM",
        };
        let summary = format!(
            "key {} in {what} {} ({})",
            url.key,
            url.name,
            cloud_name(url.cloud)
        );
        // byok keeps the key, not a version: every copy names the version that made it, so
        // rotation needs nothing and old copies keep opening.
        url.version = None;
        Ok(ParsedKey {
            key: url.key_id(),
            location: cloud_name(url.cloud).to_owned(),
            summary,
        })
    }

    fn parse_role(&self, role: &str) -> Result<String, BadIdentifier> {
        parse_client_id(role)
    }

    fn parse_audience(&self, audience: &str) -> Result<String, BadIdentifier> {
        let t = audience.trim();
        if tenant_ok(t) {
            Ok(t.to_owned())
        } else {
            Err(BadIdentifier {
                what: "Azure tenant",
                part: "tenant id",
                found: shown(t),
                expected: "your Entra tenant id (a GUID: az account show --query tenantId) or its verified domain",
            })
        }
    }

    fn fix(&self, kind: KmsErrorKind) -> String {
        match kind {
            KmsErrorKind::AccessDenied => format!("assign your app the {VAULT_ROLE} role on the key (Managed HSM: {HSM_ROLE}), or an access policy with get, wrapKey and unwrapKey; and check the app's federated credential: byok's issuer, this org's subject, audience {FEDERATION_AUDIENCE}"),
            KmsErrorKind::KeyDisabled => "enable the key and check its activation and expiry dates (az keyvault key set-attributes --vault-name VAULT --name KEY --enabled true)".into(),
            KmsErrorKind::KeyNotFound => "check the key URL; a deleted key can be recovered while soft delete keeps it (az keyvault key recover)".into(),
            KmsErrorKind::KeyPendingDeletion => "recover the deleted key (az keyvault key recover --vault-name VAULT --name KEY)".into(),
            KmsErrorKind::Malformed => "use an RSA key (vaults) or an RSA or oct-HSM key (Managed HSM) whose operations include wrapKey and unwrapKey".into(),
            other => other.hint().into(),
        }
    }

    fn missing_grant(&self, _op: Op, key: &str, principal: &str, _org: &str) -> String {
        match KeyUrl::parse(key) {
            Ok(url) => format!("Run: {}", role_command(&url, principal)),
            Err(_) => self.fix(KmsErrorKind::AccessDenied),
        }
    }

    fn resolved(&self, pasted: &ParsedKey, described: &str) -> Result<String, String> {
        let mut d = KeyUrl::parse(described).map_err(|e| e.to_string())?;
        d.version = None;
        if d.key_id() == pasted.key {
            Ok(pasted.key.clone())
        } else {
            Err(format!(
                "Key Vault described {} as {described:?}, another key",
                pasted.key
            ))
        }
    }

    fn principal(&self, access: &Access, _vendor: &Vendor) -> Result<String, String> {
        access.role.clone().ok_or_else(|| NO_APP.to_owned())
    }

    fn grant(&self, g: &GrantFor<'_>) -> Result<Grant, String> {
        let url = KeyUrl::parse(&g.access.key).map_err(|e| e.to_string())?;
        let app = g.access.role.as_deref().ok_or(NO_APP)?;
        let issuer = g.issuer.ok_or(NO_ISSUER)?;
        let subject = crate::kms::oidc::subject(&g.access.org);
        let credential = json!({
            "name": format!("byok-{}", g.access.org),
            "issuer": issuer,
            "subject": subject,
            "audiences": [FEDERATION_AUDIENCE],
            "description": "byok, for this org only",
        });
        let (role, role_id) = match url.service {
            Service::Vault => (VAULT_ROLE, VAULT_ROLE_ID),
            Service::ManagedHsm => (HSM_ROLE, HSM_ROLE_ID),
        };
        let mut commands = vec![
            format!("az ad app federated-credential create --id {app} --parameters '{credential}'"),
            role_command(&url, app),
        ];
        if url.service == Service::Vault {
            commands.push(format!(
                "# or, on a vault with access policies instead of RBAC:\naz keyvault set-policy --name {} --spn {app} --key-permissions get wrapKey unwrapKey",
                url.name
            ));
        }
        Ok(Grant {
            principal: app.to_owned(),
            key_policy: json!({
                "roleAssignment": { "role": role, "roleDefinitionId": role_id, "assignee": app, "scope": format!("/keys/{}", url.key) },
                "accessPolicy": { "permissions": { "keys": ["get", "wrapKey", "unwrapKey"] } },
            }),
            role_policy: None,
            trust_policy: Some(credential),
            commands,
        })
    }
}

/// The `az` command that gives `app` the crypto role on the key only.
fn role_command(url: &KeyUrl, app: &str) -> String {
    match url.service {
        Service::Vault => format!(
            "az role assignment create --role \"{VAULT_ROLE}\" --assignee {app} --scope \"$(az keyvault show --name {} --query id -o tsv)/keys/{}\"",
            url.name, url.key
        ),
        Service::ManagedHsm => format!(
            "az keyvault role assignment create --hsm-name {} --role \"{HSM_ROLE}\" --assignee {app} --scope /keys/{}",
            url.name, url.key
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::provider::RoleTrust;

    const APP: &str = "11111111-2222-3333-4444-555555555555";

    fn access(key: &str) -> Access {
        Access {
            org: "00aa".into(),
            key: key.into(),
            role: Some(APP.into()),
            trust: RoleTrust::Oidc,
            external_id: String::new(),
            audience: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            danger_base: None,
        }
    }

    #[test]
    fn a_pasted_version_is_dropped_and_the_described_one_must_be_this_key() {
        let p = Azure
            .parse_key("https://acme.vault.azure.net/keys/root/0123456789abcdef0123456789abcdef")
            .unwrap();
        assert_eq!(p.key, "https://acme.vault.azure.net/keys/root");
        assert_eq!(p.location, "Azure");
        assert_eq!(
            Azure.resolved(
                &p,
                "https://acme.vault.azure.net/keys/root/fedcba9876543210fedcba9876543210"
            ),
            Ok(p.key.clone())
        );
        assert!(
            Azure
                .resolved(
                    &p,
                    "https://acme.vault.azure.net/keys/other/fedcba9876543210fedcba9876543210"
                )
                .is_err()
        );
        let e = Azure
            .parse_key("https://acme.vault.azure.net:444/keys/root")
            .unwrap_err();
        assert_eq!((e.what, e.part), ("Azure key URL", "port"));
        assert_eq!(Azure.parse_role(&APP.to_uppercase()).unwrap(), APP);
        assert_eq!(Azure.parse_role("my-app").unwrap_err().part, "client id");
        assert_eq!(Azure.parse_audience("../x").unwrap_err().part, "tenant id");
    }

    #[test]
    fn the_grant_is_a_federated_credential_and_a_role_on_the_key_only() {
        let issuer = Some("https://byok.example");
        let vault = access("https://acme.vault.azure.net/keys/root");
        let g = Azure
            .grant(&GrantFor {
                access: &vault,
                vendor: &Vendor::default(),
                issuer,
            })
            .unwrap();
        let fic = g.trust_policy.as_ref().unwrap();
        assert_eq!(fic["subject"], "org:00aa");
        assert_eq!(fic["issuer"], "https://byok.example");
        assert_eq!(fic["audiences"][0], FEDERATION_AUDIENCE);
        assert_eq!(
            g.key_policy["roleAssignment"]["roleDefinitionId"],
            VAULT_ROLE_ID
        );
        assert!(
            g.commands[1].contains("/keys/root\"") && g.commands[1].contains(VAULT_ROLE),
            "{}",
            g.commands[1]
        );
        assert!(g.commands[2].contains("--key-permissions get wrapKey unwrapKey"));
        let hsm = access("https://acme.managedhsm.azure.net/keys/root");
        let g = Azure
            .grant(&GrantFor {
                access: &hsm,
                vendor: &Vendor::default(),
                issuer,
            })
            .unwrap();
        assert!(
            g.commands[1].starts_with("az keyvault role assignment create --hsm-name acme"),
            "{}",
            g.commands[1]
        );
        assert_eq!(g.commands.len(), 2, "Managed HSM has no access policies");
        // No issuer, no app: the setting to give.
        assert!(
            Azure
                .grant(&GrantFor {
                    access: &vault,
                    vendor: &Vendor::default(),
                    issuer: None
                })
                .unwrap_err()
                .contains("--public-url")
        );
        let mut no_app = vault.clone();
        no_app.role = None;
        assert!(
            Azure
                .principal(&no_app, &Vendor::default())
                .unwrap_err()
                .contains("client id")
        );
        assert!(
            Azure
                .missing_grant(Op::Wrap, &vault.key, APP, "00aa")
                .contains("az role assignment create")
        );
    }
}
