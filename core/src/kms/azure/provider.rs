//! Azure Key Vault and Managed HSM behind the provider seam: identifiers, grants and fixes
//! ([`Provider`]), and the calls ([`Wire`]).
//!
//! byok reaches an Azure key as the customer's own app registration (`role`: its client id) in
//! the customer's tenant (`audience`: the tenant id, or learned from the vault's challenge),
//! through a federated credential that trusts byok's issuer for this org's subject: no secret
//! on either side. Without a `role`, as the vendor's own multi-tenant app (certificate, or a
//! secret for development).
//!
//! The wrap algorithm follows the service: RSA-OAEP-256 on vaults (whose keys that can wrap are
//! RSA), AES key wrap (A256KW) on Managed HSM, which needs an `oct-HSM` key; describe refuses a
//! key of another type with the fix. One rule per service keeps the request builder stateless
//! (no GET before every wrap), and every copy records the algorithm and the key version that
//! made it, so unwrapping never depends on the rule.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use serde_json::json;

use crate::kms::azure::auth::{ClientProof, EntraFlow, FEDERATION_AUDIENCE, tenant_ok};
use crate::kms::azure::envelope;
use crate::kms::azure::request::{self, WrapAlg};
use crate::kms::azure::url::{Cloud, KeyUrl, Service, UrlError};
use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::http::{HttpRequest, HttpResponse};
use crate::kms::provider::{
    Access, BadIdentifier, Binding, Call, CredentialFlow, Grant, GrantFor, KeyState, Op, ParsedKey,
    Provider, RequestError, Unusable, Vendor, Wire, local_error,
};
use crate::secret::SecretBytes;

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
        let what = match url.service() {
            Service::Vault => "vault",
            Service::ManagedHsm => "Managed HSM",
        };
        let summary = format!(
            "key {} in {what} {} ({})",
            url.key(),
            url.name(),
            cloud_name(url.cloud())
        );
        // byok keeps the key, not a version: every copy names the version that made it, so
        // rotation needs nothing and old copies keep opening.
        url.take_version();
        Ok(ParsedKey {
            key: url.key_id(),
            location: cloud_name(url.cloud()).to_owned(),
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
            KmsErrorKind::Malformed => "use an RSA key (vaults) or an RSA or oct-HSM key (Managed HSM) whose operations include wrapKey and unwrapKey; if Entra refused byok's assertion as out of its time range (AADSTS700024, AADSTS500133), check the server clock".into(),
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
        d.take_version();
        if d.key_id() == pasted.key {
            Ok(pasted.key.clone())
        } else {
            Err(format!(
                "Key Vault described {} as {described:?}, another key",
                pasted.key
            ))
        }
    }

    fn principal(&self, access: &Access, vendor: &Vendor) -> Result<String, String> {
        access
            .role
            .clone()
            .or_else(|| vendor.azure.as_ref().map(|v| v.client_id.clone()))
            .ok_or_else(|| NO_APP.to_owned())
    }

    /// The vendor's own app (no customer app federated for this org): the one principal byok
    /// calls as for every such org.
    fn shared_principal(&self, access: &Access) -> bool {
        access.role.is_none()
    }

    fn claim_command(&self, key: &str, org: &str) -> String {
        KeyUrl::parse(key)
            .map(|url| claim_command(&url, org))
            .unwrap_or_else(|e| e.to_string())
    }

    fn grant(&self, g: &GrantFor<'_>) -> Result<Grant, String> {
        let url = KeyUrl::parse(&g.access.key).map_err(|e| e.to_string())?;
        let (app, mut commands, credential) = match (&g.access.role, &g.vendor.azure) {
            (Some(app), _) => {
                let issuer = g.issuer.ok_or(NO_ISSUER)?;
                let credential = json!({
                    "name": format!("byok-{}", g.access.org),
                    "issuer": issuer,
                    "subject": crate::kms::oidc::subject(&g.access.org),
                    "audiences": [FEDERATION_AUDIENCE],
                    "description": "byok, for this org only",
                });
                let create = format!(
                    "az ad app federated-credential create --id {app} --parameters '{credential}'"
                );
                (app.as_str(), vec![create], Some(credential))
            }
            // The vendor's multi-tenant app: the customer consents to it in their tenant.
            (None, Some(v)) => (
                v.client_id.as_str(),
                vec![format!("az ad sp create --id {}", v.client_id)],
                None,
            ),
            (None, None) => return Err(NO_APP.into()),
        };
        let (role, role_id) = match url.service() {
            Service::Vault => (VAULT_ROLE, VAULT_ROLE_ID),
            Service::ManagedHsm => (HSM_ROLE, HSM_ROLE_ID),
        };
        commands.push(role_command(&url, app));
        if self.shared_principal(g.access) {
            commands.push(claim_command(&url, &g.access.org));
        }
        let custom = custom_role(url.service());
        let mut key_policy = json!({
            "roleAssignment": { "role": role, "roleDefinitionId": role_id, "assignee": app, "scope": format!("/keys/{}", url.key()) },
            "customRole": custom,
        });
        match url.service() {
            Service::Vault => {
                commands.push(format!(
                    "# or a custom role with exactly these data actions (then assign it as above):\naz role definition create --role-definition '{custom}'"
                ));
                commands.push(format!(
                    "# or, on a vault with access policies instead of RBAC:\naz keyvault set-policy --name {} --spn {app} --key-permissions get wrapKey unwrapKey",
                    url.name()
                ));
                if let Some(m) = key_policy.as_object_mut() {
                    m.insert(
                        "accessPolicy".into(),
                        json!({ "permissions": { "keys": ["get", "wrapKey", "unwrapKey"] } }),
                    );
                }
            }
            Service::ManagedHsm => commands.push(format!(
                "# or a custom role with exactly these data actions (then assign it as above):\naz keyvault role definition create --hsm-name {} --role-definition '{custom}'",
                url.name()
            )),
        }
        Ok(Grant {
            principal: app.to_owned(),
            key_policy,
            role_policy: None,
            trust_policy: credential,
            commands,
        })
    }
}

/// The wrap algorithm for a service (see the module's doc).
const fn alg_for(service: Service) -> WrapAlg {
    match service {
        Service::Vault => WrapAlg::RsaOaep256,
        Service::ManagedHsm => WrapAlg::A256Kw,
    }
}

fn key_url(key: &str) -> Result<KeyUrl, RequestError> {
    KeyUrl::parse(key).map_err(|e| RequestError(e.to_string()))
}

impl Wire for Azure {
    fn wrap_request(
        &self,
        call: &Call<'_>,
        root: &SecretBytes,
        _now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        let url = key_url(call.key)?;
        let sealed = envelope::seal(call.binding, root);
        // No version: the vault wraps with the key's current one and names it in `kid`,
        // which the copy keeps (Azure SDKs send the same `keys/NAME//wrapkey`).
        Ok(request::wrap_request(
            &url,
            "",
            alg_for(url.service()),
            &sealed,
            call.creds.bearer(self.title())?,
            call.danger_base,
        ))
    }

    fn parse_wrap(&self, key: &str, resp: &HttpResponse) -> Result<Vec<u8>, KmsError> {
        let url = KeyUrl::parse(key)
            .map_err(|e| local_error("azure", KmsErrorKind::Malformed, &e.to_string()))?;
        request::parse_wrap(&url, alg_for(url.service()), resp)
    }

    fn unwrap_request(
        &self,
        call: &Call<'_>,
        blob: &[u8],
        _now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        request::unwrap_request(
            &key_url(call.key)?,
            blob,
            call.creds.bearer(self.title())?,
            call.danger_base,
        )
        .map_err(|why| RequestError(format!("the stored Azure copy is unusable: {why}")))
    }

    /// An unwrap answer names no key: the envelope binds the copy to this org.
    fn parse_unwrap(
        &self,
        _key: &str,
        binding: &Binding,
        resp: &HttpResponse,
    ) -> Result<SecretBytes, KmsError> {
        let opened = request::parse_unwrap(resp)?;
        envelope::open(&opened, binding)
    }

    fn describe_request(
        &self,
        call: &Call<'_>,
        _now: Duration,
    ) -> Result<HttpRequest, RequestError> {
        Ok(request::get_key_request(
            &key_url(call.key)?,
            call.creds.bearer(self.title())?,
            call.danger_base,
        ))
    }

    fn parse_describe(&self, resp: &HttpResponse, now: Duration) -> Result<KeyState, KmsError> {
        let facts = request::parse_get_key(resp)?;
        let mut url = KeyUrl::parse(&facts.kid)
            .map_err(|_| resp.malformed("azure", "unexpected answer: key.kid is not a key URL"))?;
        let version = url.take_version().unwrap_or_default();
        let want = alg_for(url.service());
        let usable = facts.usability(now.as_secs()).and_then(|alg| {
            if alg == want {
                Ok(alg)
            } else {
                Err(KmsErrorKind::Malformed)
            }
        });
        let unusable = usable.err().map(|kind| Unusable {
            kind,
            problem: format!(
                "the key is {} ({}), its operations {}; byok needs an enabled {} key, within its activation and expiry dates, with wrapKey and unwrapKey",
                if facts.kty.is_empty() { "of unknown type" } else { &facts.kty },
                if facts.enabled { "enabled" } else { "disabled" },
                if facts.key_ops.is_empty() { "none".to_owned() } else { facts.key_ops.join(", ") },
                match url.service() {
                    Service::Vault => "RSA",
                    Service::ManagedHsm => "oct-HSM",
                },
            ),
            fix: match (kind, url.service()) {
                (KmsErrorKind::KeyDisabled, service) if facts.enabled && !facts.allows_wrapping() => format!(
                    "allow byok's operations on the key: az keyvault key set-attributes --{} {} --name KEY --ops wrapKey unwrapKey",
                    match service {
                        Service::Vault => "vault-name",
                        Service::ManagedHsm => "hsm-name",
                    },
                    url.name()
                ),
                (KmsErrorKind::Malformed, Service::Vault) => format!("create an RSA key for wrapping: az keyvault key create --vault-name {} --name KEY --kty RSA-HSM --size 3072 --ops wrapKey unwrapKey", url.name()),
                (KmsErrorKind::Malformed, Service::ManagedHsm) => format!("byok wraps with AES key wrap on Managed HSM: az keyvault key create --hsm-name {} --name KEY --kty oct-HSM --size 256 --ops wrapKey unwrapKey", url.name()),
                (other, _) => self.fix(other),
            },
        });
        Ok(KeyState {
            key: url.key_id(),
            detail: format!(
                "{} is {} with wrapKey and unwrapKey, current version {version}, deletion {}",
                url.key_id(),
                facts.kty,
                if facts.recovery_level.is_empty() {
                    "recovery unknown"
                } else {
                    &facts.recovery_level
                },
            ),
            unusable,
            version: Some(version),
            org_claim: facts.org_claim,
        })
    }

    fn copy_version(&self, copy: &[u8]) -> Option<String> {
        request::split_copy(copy).ok().map(|(_, v, _)| v.to_owned())
    }

    /// An Entra token is for one service in one cloud, and one tenant. Without a tenant given,
    /// each vault's challenge names its own, and two vaults may be in two tenants: a token is
    /// then kept per vault (one tenant's token shown to another's vault is refused, which
    /// would read as the customer withdrawing the key).
    fn credential_scope(&self, access: &Access) -> String {
        KeyUrl::parse(&access.key)
            .map(|u| match access.audience {
                Some(_) => u.token_scope(),
                None => format!("{} {}", u.token_scope(), u.base_url()),
            })
            .unwrap_or_default()
    }

    fn credentials(
        &self,
        access: &Access,
        vendor: &Vendor,
    ) -> Result<Box<dyn CredentialFlow>, KmsError> {
        let url = KeyUrl::parse(&access.key)
            .map_err(|e| local_error("azure", KmsErrorKind::Malformed, &e.to_string()))?;
        let tenant = access.audience.as_deref();
        let (client_id, proof) = match (&access.role, &vendor.azure) {
            (Some(app), _) => (app.as_str(), ClientProof::Federated),
            (None, Some(v)) => (
                v.client_id.as_str(),
                match &v.secret {
                    Some(s) => ClientProof::Secret(s.clone()),
                    None => ClientProof::Certificate,
                },
            ),
            (None, None) => {
                // The operator's gap, not the customer's withdrawal.
                return Err(local_error("azure", KmsErrorKind::Unconfigured, NO_APP));
            }
        };
        EntraFlow::new(
            &url,
            tenant,
            client_id,
            proof,
            access.danger_base.as_deref(),
        )
        .map(|f| Box::new(f) as Box<dyn CredentialFlow>)
        .map_err(|e| local_error("azure", KmsErrorKind::Malformed, &e))
    }
}

/// A custom role with exactly the data actions byok uses (read, wrap, unwrap), in the shape
/// each service's `role definition create` takes: the built-in role's actions, for customers
/// whose policy is custom roles only.
fn custom_role(service: Service) -> serde_json::Value {
    let description = "byok: read, wrap and unwrap keys, nothing else";
    match service {
        Service::Vault => json!({
            "Name": "byok key wrapping",
            "IsCustom": true,
            "Description": description,
            "Actions": [],
            "NotActions": [],
            "DataActions": [
                "Microsoft.KeyVault/vaults/keys/read",
                "Microsoft.KeyVault/vaults/keys/wrap/action",
                "Microsoft.KeyVault/vaults/keys/unwrap/action",
            ],
            "NotDataActions": [],
            "AssignableScopes": ["/subscriptions/SUBSCRIPTION_ID"],
        }),
        Service::ManagedHsm => json!({
            "roleName": "byok key wrapping",
            "description": description,
            "actions": [],
            "notActions": [],
            "dataActions": [
                "Microsoft.KeyVault/managedHsm/keys/read/action",
                "Microsoft.KeyVault/managedHsm/keys/wrap/action",
                "Microsoft.KeyVault/managedHsm/keys/unwrap/action",
            ],
            "notDataActions": [],
        }),
    }
}

/// The `az` command that gives `app` the crypto role on the key only.
/// The `az` command that names `org` on the key as the one org that may attach it
/// ([`crate::kms::provider::ORG_CLAIM`]), for the vendor's own app. `--tags` replaces the key's
/// tags: the admin adds any others to the same command.
fn claim_command(url: &KeyUrl, org: &str) -> String {
    format!(
        "az keyvault key set-attributes --{} {} --name {} --tags {}={org}",
        match url.service() {
            Service::Vault => "vault-name",
            Service::ManagedHsm => "hsm-name",
        },
        url.name(),
        url.key(),
        crate::kms::provider::ORG_CLAIM,
    )
}

fn role_command(url: &KeyUrl, app: &str) -> String {
    match url.service() {
        Service::Vault => format!(
            "az role assignment create --role \"{VAULT_ROLE}\" --assignee {app} --scope \"$(az keyvault show --name {} --query id -o tsv)/keys/{}\"",
            url.name(),
            url.key()
        ),
        Service::ManagedHsm => format!(
            "az keyvault role assignment create --hsm-name {} --role \"{HSM_ROLE}\" --assignee {app} --scope /keys/{}",
            url.name(),
            url.key()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::provider::{Credentials, RoleTrust};

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
        assert!(g.commands[2].contains("az role definition create"));
        assert_eq!(
            g.key_policy["customRole"]["DataActions"][2],
            "Microsoft.KeyVault/vaults/keys/unwrap/action"
        );
        assert!(g.commands[3].contains("--key-permissions get wrapKey unwrapKey"));
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
        assert_eq!(g.commands.len(), 3, "Managed HSM has no access policies");
        assert!(g.commands[2].contains("az keyvault role definition create --hsm-name acme"));
        assert_eq!(g.key_policy.get("accessPolicy"), None);
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
        // The vendor's own app is every org's: its grant ends with the tag that names the org.
        // A customer's app, federated for this org, needs none.
        assert!(!Azure.shared_principal(&vault) && Azure.shared_principal(&no_app));
        assert!(!g.commands.iter().any(|c| c.contains("byok-org")));
        let vendor = Vendor {
            azure: Some(crate::kms::azure::auth::VendorApp {
                client_id: APP.into(),
                secret: None,
            }),
            ..Vendor::default()
        };
        for (key, flag) in [(&vault.key, "--vault-name"), (&hsm.key, "--hsm-name")] {
            let access = Access {
                key: key.clone(),
                ..no_app.clone()
            };
            let g = Azure
                .grant(&GrantFor {
                    access: &access,
                    vendor: &vendor,
                    issuer: None,
                })
                .unwrap();
            let tag = format!(
                "az keyvault key set-attributes {flag} acme --name root --tags byok-org=00aa"
            );
            assert!(g.commands.contains(&tag), "{:?}", g.commands);
            assert_eq!(Azure.claim_command(key, "00aa"), tag);
        }
        assert!(
            Azure
                .missing_grant(Op::Wrap, &vault.key, APP, "00aa")
                .contains("az role assignment create")
        );
    }

    fn answer(status: u16, body: serde_json::Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn a_wrapped_envelope_unwraps_for_its_binding_only() {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let creds = Credentials::Bearer(zeroize::Zeroizing::new("tok".into()));
        let b3 = Binding::root("00aa", 3);
        for (key, alg) in [
            ("https://acme.vault.azure.net/keys/root", "RSA-OAEP-256"),
            ("https://acme.managedhsm.azure.net/keys/root", "A256KW"),
        ] {
            let call = Call {
                key,
                binding: &b3,
                creds: &creds,
                danger_base: None,
            };
            let root = SecretBytes::from_bytes(&mut [5; 32]);
            let req = Azure.wrap_request(&call, &root, Duration::ZERO).unwrap();
            assert_eq!(req.url, format!("{key}//wrapkey?api-version=7.6"));
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["alg"], alg);
            let sealed = Base64UrlUnpadded::decode_vec(body["value"].as_str().unwrap()).unwrap();
            // The vault hands the envelope back on unwrap: byok opens it for its binding.
            let back = answer(
                200,
                json!({ "kid": format!("{key}/{}", "ab".repeat(16)), "value": Base64UrlUnpadded::encode_string(&sealed) }),
            );
            assert_eq!(
                Azure.parse_unwrap(key, &b3, &back).unwrap().expose_secret(),
                &[5; 32]
            );
            let e = Azure
                .parse_unwrap(key, &Binding::root("00aa", 2), &back)
                .unwrap_err();
            assert_eq!(e.kind, KmsErrorKind::InvalidCiphertext);
            let copy = Azure.parse_wrap(key, &back).unwrap();
            let req = Azure.unwrap_request(&call, &copy, Duration::ZERO).unwrap();
            assert!(
                req.url
                    .ends_with(&format!("/{}/unwrapkey?api-version=7.6", "ab".repeat(16))),
                "{}",
                req.url
            );
            let aws = Credentials::SigV4(crate::kms::aws::request::AwsCredentials::new(
                "AKIA", "s", None, None,
            ));
            let call = Call {
                creds: &aws,
                ..call
            };
            let e = Azure.describe_request(&call, Duration::ZERO).unwrap_err();
            assert!(e.0.contains("carry a bearer token, not AWS keys"), "{e}");
        }
    }

    #[test]
    fn describe_wants_the_services_key_type_within_its_dates() {
        let now = Duration::from_secs(1_800_000_000);
        let v = "0123456789abcdef0123456789abcdef";
        let described = |host: &str, kty: &str, attrs: serde_json::Value| {
            Azure
                .parse_describe(
                    &answer(200, json!({
                        "key": { "kid": format!("https://acme.{host}/keys/root/{v}"), "kty": kty, "key_ops": ["wrapKey", "unwrapKey"] },
                        "attributes": attrs,
                    })),
                    now,
                )
                .unwrap()
        };
        let ok = described(
            "vault.azure.net",
            "RSA-HSM",
            json!({ "enabled": true, "recoveryLevel": "Recoverable" }),
        );
        assert_eq!(ok.key, "https://acme.vault.azure.net/keys/root");
        assert_eq!(ok.unusable, None);
        assert!(ok.detail.contains(v), "{}", ok.detail);
        assert_eq!(ok.org_claim, None, "no tags");
        let tagged = Azure
            .parse_describe(
                &answer(200, json!({
                    "key": { "kid": format!("https://acme.vault.azure.net/keys/root/{v}"), "kty": "RSA", "key_ops": ["wrapKey", "unwrapKey"] },
                    "attributes": { "enabled": true },
                    "tags": { "byok-org": "00aa", "team": "payments" },
                })),
                now,
            )
            .unwrap();
        assert_eq!(tagged.org_claim.as_deref(), Some("00aa"));
        let hsm = described(
            "managedhsm.azure.net",
            "oct-HSM",
            json!({ "enabled": true }),
        );
        assert_eq!(hsm.unusable, None);
        let rsa_on_hsm = described(
            "managedhsm.azure.net",
            "RSA-HSM",
            json!({ "enabled": true }),
        );
        let u = rsa_on_hsm.unusable.unwrap();
        assert_eq!(u.kind, KmsErrorKind::Malformed);
        assert!(u.fix.contains("--kty oct-HSM"), "{}", u.fix);
        let expired = described(
            "vault.azure.net",
            "RSA",
            json!({ "enabled": true, "exp": now.as_secs() }),
        );
        assert_eq!(expired.unusable.unwrap().kind, KmsErrorKind::KeyDisabled);
        let e = Azure
            .parse_describe(
                &answer(
                    200,
                    json!({ "key": { "kid": "https://evil.example/keys/root" } }),
                ),
                now,
            )
            .unwrap_err();
        assert_eq!(e.kind, KmsErrorKind::Malformed);
        let throttled = HttpResponse {
            status: 429,
            headers: vec![("Retry-After".into(), "7".into())],
            body: br#"{"error":{"code":"Throttled","message":"slow down"}}"#.to_vec(),
        };
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(
            Azure.parse_describe(&throttled, now).unwrap_err().kind,
            KmsErrorKind::Throttled
        );
    }

    #[test]
    fn credentials_are_the_customers_app_or_the_vendors() {
        use crate::kms::azure::auth::VendorApp;
        use crate::kms::provider::Need;
        let now = Duration::ZERO;
        let mut a = access("https://acme.vault.azure.net/keys/root");
        let f = Azure.credentials(&a, &Vendor::default()).unwrap();
        assert!(
            matches!(f.need(now), Need::Token { .. }),
            "tenant given: byok's token"
        );
        a.audience = None;
        let f = Azure.credentials(&a, &Vendor::default()).unwrap();
        assert!(
            matches!(f.need(now), Need::Exchange),
            "no tenant: the challenge first"
        );
        a.role = None;
        // No app of the customer's and none of the vendor's: the operator's gap.
        let e = Azure.credentials(&a, &Vendor::default()).err().unwrap();
        assert_eq!(e.kind, KmsErrorKind::Unconfigured);
        let vendor = Vendor {
            azure: Some(VendorApp {
                client_id: APP.into(),
                secret: Some(zeroize::Zeroizing::new("s3cret".into())),
            }),
            ..Vendor::default()
        };
        assert!(!format!("{vendor:?}").contains("s3cret"));
        a.audience = Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into());
        let f = Azure.credentials(&a, &vendor).unwrap();
        assert!(matches!(f.need(now), Need::Exchange));
        let body = String::from_utf8(f.request(now).unwrap().body.clone()).unwrap();
        assert!(body.contains("client_secret=s3cret"), "{body}");
        assert_eq!(Azure.principal(&a, &vendor).unwrap(), APP);
        let g = Azure
            .grant(&GrantFor {
                access: &a,
                vendor: &vendor,
                issuer: None,
            })
            .unwrap();
        assert_eq!(g.commands[0], format!("az ad sp create --id {APP}"));
        assert_eq!(g.trust_policy, None);
    }

    /// Tokens are kept per service and cloud, and, when the tenant is learned from each
    /// vault's challenge, per vault: two vaults may be in two tenants.
    #[test]
    fn credentials_are_kept_per_tenant() {
        let scope = |key: &str, tenant: bool| {
            let mut a = access(key);
            if !tenant {
                a.audience = None;
            }
            Azure.credential_scope(&a)
        };
        let (one, two) = (
            "https://one.vault.azure.net/keys/k",
            "https://two.vault.azure.net/keys/k",
        );
        let hsm = "https://one.managedhsm.azure.net/keys/k";
        assert_eq!(scope(one, true), scope(two, true), "one tenant, one cloud");
        assert_ne!(
            scope(one, true),
            scope(hsm, true),
            "a vault's token is not Managed HSM's"
        );
        assert_ne!(
            scope(one, false),
            scope(two, false),
            "tenants learned per vault"
        );
        assert_eq!(
            scope(one, false),
            scope("https://one.vault.azure.net/keys/other", false)
        );
    }
}
