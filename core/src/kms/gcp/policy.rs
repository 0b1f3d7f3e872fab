//! What a customer grants so that byok can use a Cloud KMS key (kms-wire.md section 4): the
//! IAM bindings, as `gcloud` commands and as policy JSON, for one of three principals:
//!
//! - **a pool principal** (workload identity federation, no service account): byok's token for
//!   this org, exchanged in the customer's pool; the key names
//!   `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/org:ORG`.
//! - **the customer's service account**, impersonated by that pool principal (which needs
//!   `roles/iam.workloadIdentityUser` on it).
//! - **the vendor's service account** (development).
//!
//! Roles on the key: `roles/cloudkms.cryptoKeyEncrypterDecrypter` (encrypt, decrypt) and
//! `roles/cloudkms.viewer` (GET of the key, for validation and health; the first role does not
//! grant `cloudkms.cryptoKeys.get`).
//!
//! The pool's provider trusts byok's issuer for this org's subject only
//! (`--attribute-condition`), so another org's token is refused at the exchange.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use serde_json::{Value, json};

use crate::kms::gcp::name::KeyName;
use crate::kms::provider::BadIdentifier;

/// Encrypt and decrypt.
pub const CRYPTO_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";
/// GET of the key.
pub const VIEW_ROLE: &str = "roles/cloudkms.viewer";
/// Lets a pool principal impersonate a service account.
pub const IMPERSONATE_ROLE: &str = "roles/iam.workloadIdentityUser";

fn shown(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_debug).collect()
}

/// An id of `[a-z0-9-]`, `min..=max` long, starting with a letter, not ending with a hyphen.
fn id_ok(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks a service account email: `NAME@PROJECT.iam.gserviceaccount.com` (user-managed
/// accounts; the name 6 to 30, the project id 6 to 30 of `[a-z0-9-]`). It goes into the
/// `generateAccessToken` path, so nothing else is accepted.
pub fn parse_service_account(input: &str) -> Result<String, BadIdentifier> {
    let s = input.trim();
    let bad = |part, expected| BadIdentifier {
        what: "GCP service account",
        part,
        found: shown(s),
        expected,
    };
    let (name, domain) = s.split_once('@').ok_or_else(|| {
        bad(
            "email",
            "NAME@PROJECT.iam.gserviceaccount.com, the service account's email",
        )
    })?;
    let project = domain
        .strip_suffix(".iam.gserviceaccount.com")
        .ok_or_else(|| bad("domain", "an email ending in .iam.gserviceaccount.com"))?;
    if !id_ok(name, 6, 30) {
        return Err(bad(
            "name",
            "6 to 30 lower-case letters, digits and hyphens, starting with a letter",
        ));
    }
    if !id_ok(project, 6, 30) {
        return Err(bad(
            "project",
            "the project id: 6 to 30 lower-case letters, digits and hyphens",
        ));
    }
    Ok(s.into())
}

/// A workload identity pool provider, as the STS `audience` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolProvider {
    /// The project number.
    pub project_number: String,
    /// The pool id.
    pub pool: String,
    /// The provider id.
    pub provider: String,
}

impl PoolProvider {
    /// Parses `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`
    /// (or the same after `https:`, or without the host: `projects/N/...`).
    pub fn parse(input: &str) -> Result<Self, BadIdentifier> {
        let s = input.trim();
        let bad = |part, expected| BadIdentifier {
            what: "GCP workload identity provider",
            part,
            found: shown(s),
            expected,
        };
        const FORMAT: &str = "//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (gcloud iam workload-identity-pools providers describe PROVIDER --workload-identity-pool POOL --location global --format 'value(name)')";
        let rest = s
            .strip_prefix("https:")
            .unwrap_or(s)
            .strip_prefix("//iam.googleapis.com/")
            .unwrap_or(s);
        let parts: Vec<&str> = rest.split('/').collect();
        let [
            "projects",
            number,
            "locations",
            "global",
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ] = parts.as_slice()
        else {
            return Err(bad("format", FORMAT));
        };
        if number.is_empty()
            || number.len() > 20
            || !number.bytes().all(|b| b.is_ascii_digit())
            || number.starts_with('0')
        {
            return Err(bad(
                "project number",
                "the project's number (digits), not its id",
            ));
        }
        // Pool and provider ids: 4 to 32 of [a-z0-9-] (gcp- is reserved for pools).
        if !id_ok(pool, 4, 32) || pool.starts_with("gcp-") {
            return Err(bad(
                "pool",
                "4 to 32 lower-case letters, digits and hyphens, not starting with gcp-",
            ));
        }
        if !id_ok(provider, 4, 32) {
            return Err(bad(
                "provider",
                "4 to 32 lower-case letters, digits and hyphens",
            ));
        }
        Ok(Self {
            project_number: (*number).into(),
            pool: (*pool).into(),
            provider: (*provider).into(),
        })
    }

    /// The STS audience: `//iam.googleapis.com/projects/N/.../providers/X`.
    pub fn audience(&self) -> String {
        format!(
            "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/providers/{}",
            self.project_number, self.pool, self.provider
        )
    }

    /// The pool principal of `subject`.
    pub fn principal(&self, subject: &str) -> String {
        format!(
            "principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/subject/{subject}",
            self.project_number, self.pool
        )
    }
}

/// Who byok is to the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    /// A service account (the customer's, impersonated; or the vendor's).
    ServiceAccount(String),
    /// The pool principal of this org's subject.
    Pool(String),
}

impl Member {
    /// As IAM policies write it.
    pub fn iam(&self) -> String {
        match self {
            Self::ServiceAccount(e) => format!("serviceAccount:{e}"),
            Self::Pool(p) => p.clone(),
        }
    }
}

/// The IAM policy bindings to add on the key for `member`.
pub fn key_bindings(member: &Member) -> Value {
    json!({
        "bindings": [
            { "role": CRYPTO_ROLE, "members": [member.iam()] },
            { "role": VIEW_ROLE, "members": [member.iam()] },
        ]
    })
}

/// The `gcloud` commands that add [`key_bindings`].
pub fn key_commands(key: &KeyName, member: &Member) -> Vec<String> {
    [CRYPTO_ROLE, VIEW_ROLE]
        .iter()
        .map(|role| {
            format!(
                "gcloud kms keys add-iam-policy-binding {} --keyring {} --location {} --project {} --member '{}' --role {role}",
                key.crypto_key(),
                key.key_ring(),
                key.location(),
                key.project(),
                member.iam()
            )
        })
        .collect()
}

/// The `gcloud` command that names `org` on `key` as the one org that may attach it
/// ([`crate::kms::provider::ORG_CLAIM`]): for the vendor's own service account, which every
/// org shares. `--update-labels` keeps the key's other labels.
pub fn claim_command(key: &KeyName, org: &str) -> String {
    format!(
        "gcloud kms keys update {} --keyring {} --location {} --project {} --update-labels {}={org}",
        key.crypto_key(),
        key.key_ring(),
        key.location(),
        key.project(),
        crate::kms::provider::ORG_CLAIM,
    )
}

/// The binding on the customer's service account that lets the pool principal of `subject`
/// impersonate it.
pub fn impersonation_binding(pool: &PoolProvider, subject: &str) -> Value {
    json!({
        "bindings": [{ "role": IMPERSONATE_ROLE, "members": [pool.principal(subject)] }]
    })
}

/// The `gcloud` commands that create the pool provider trusting byok's issuer for this org's
/// subject only, and (with a service account) let it impersonate that account.
pub fn federation_commands(
    pool: &PoolProvider,
    issuer: &str,
    subject: &str,
    service_account: Option<&str>,
) -> Vec<String> {
    let p = &pool.project_number;
    let mut out = vec![
        format!(
            "gcloud iam workload-identity-pools create {} --location global --project {p}",
            pool.pool
        ),
        format!(
            "gcloud iam workload-identity-pools providers create-oidc {} --workload-identity-pool {} --location global --project {p} --issuer-uri '{issuer}' --attribute-mapping 'google.subject=assertion.sub' --attribute-condition \"assertion.sub=='{subject}'\"",
            pool.provider, pool.pool
        ),
    ];
    if let Some(sa) = service_account {
        out.push(format!(
            "gcloud iam service-accounts add-iam-policy-binding {sa} --role {IMPERSONATE_ROLE} --member '{}'",
            pool.principal(subject)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/byok/providers/byok-issuer";

    #[test]
    fn service_accounts_are_strict() {
        let ok = "byok-access@acme-prod.iam.gserviceaccount.com";
        assert_eq!(parse_service_account(&format!(" {ok}\n")).unwrap(), ok);
        for (bad, part) in [
            ("byok-access", "email"),
            ("byok-access@acme-prod.example.com", "domain"),
            ("byok/../x@acme-prod.iam.gserviceaccount.com", "name"),
            ("byok-access@ACME.iam.gserviceaccount.com", "project"),
            (
                "byok-access@acme-prod.iam.gserviceaccount.com:generateIdToken?x=",
                "domain",
            ),
            ("a@acme-prod.iam.gserviceaccount.com", "name"),
        ] {
            assert_eq!(parse_service_account(bad).unwrap_err().part, part, "{bad}");
        }
    }

    #[test]
    fn pool_providers_parse_in_their_three_forms() {
        let p = PoolProvider::parse(POOL).unwrap();
        assert_eq!(p.audience(), POOL);
        assert_eq!(PoolProvider::parse(&format!("https:{POOL}")).unwrap(), p);
        assert_eq!(
            PoolProvider::parse(POOL.trim_start_matches("//iam.googleapis.com/")).unwrap(),
            p
        );
        assert_eq!(
            p.principal("org:00aa"),
            "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/byok/subject/org:00aa"
        );
        for (bad, part) in [
            (
                "//iam.googleapis.com/projects/acme/locations/global/workloadIdentityPools/byok/providers/byok-issuer",
                "project number",
            ),
            (
                "//iam.googleapis.com/projects/1/locations/europe/workloadIdentityPools/byok/providers/byok-issuer",
                "format",
            ),
            (
                "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/gcp-x/providers/byok-issuer",
                "pool",
            ),
            (
                "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/byok/providers/B",
                "provider",
            ),
            (
                "//evil.example/projects/1/locations/global/workloadIdentityPools/byok/providers/byok-issuer",
                "format",
            ),
        ] {
            assert_eq!(PoolProvider::parse(bad).unwrap_err().part, part, "{bad}");
        }
    }

    #[test]
    fn bindings_and_commands_name_the_key_and_member() {
        let key = KeyName::parse(
            "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root",
        )
        .unwrap();
        let pool = PoolProvider::parse(POOL).unwrap();
        let m = Member::Pool(pool.principal("org:00aa"));
        let b = key_bindings(&m);
        assert_eq!(b["bindings"][0]["role"], CRYPTO_ROLE);
        assert_eq!(b["bindings"][1]["members"][0], pool.principal("org:00aa"));
        let cmds = key_commands(&key, &m);
        assert!(cmds[0].starts_with("gcloud kms keys add-iam-policy-binding root --keyring byok --location europe-west1 --project acme-prod"));
        let fed = federation_commands(
            &pool,
            "https://byok.vendor.example",
            "org:00aa",
            Some("sa-name@acme-prod.iam.gserviceaccount.com"),
        );
        assert!(
            fed[1].contains("--attribute-condition \"assertion.sub=='org:00aa'\""),
            "{}",
            fed[1]
        );
        assert!(fed[2].contains(IMPERSONATE_ROLE));
        let sa = Member::ServiceAccount("byok@vendor-prod.iam.gserviceaccount.com".into());
        assert_eq!(
            sa.iam(),
            "serviceAccount:byok@vendor-prod.iam.gserviceaccount.com"
        );
    }

    proptest::proptest! {
        /// Whatever is pasted: no panic, and what is accepted can only name an account or a
        /// pool provider (it goes into a URL path or a form field): no `/`, `?`, `#`, `%`, `:`
        /// or `..` beyond the fixed shape.
        #[test]
        fn hostile_principals_are_refused_or_safe(s in "\\PC{0,120}", tail in "[a-z0-9@./:%?#-]{0,40}") {
            for input in [s.clone(), format!("byok-access@acme-prod.iam.gserviceaccount.com{tail}"), format!("{POOL}{tail}")] {
                if let Ok(sa) = parse_service_account(&input) {
                    proptest::prop_assert!(sa.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-@.".contains(&b)), "{}", sa);
                    proptest::prop_assert!(!sa.contains(".."));
                    proptest::prop_assert_eq!(sa.matches('@').count(), 1);
                }
                if let Ok(p) = PoolProvider::parse(&input) {
                    let aud = p.audience();
                    proptest::prop_assert_eq!(PoolProvider::parse(&aud).unwrap(), p);
                    proptest::prop_assert!(aud.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/.".contains(&b)), "{}", aud);
                    proptest::prop_assert_eq!(aud.matches('/').count(), 10);
                }
            }
        }
    }
}
