//! Azure Key Vault and Managed HSM key URLs (kms-wire.md section 5):
//! `https://NAME.vault.azure.net/keys/KEY[/VERSION]` and
//! `https://NAME.managedhsm.azure.net/keys/KEY[/VERSION]`, in the public, China and US Government
//! clouds. The URL a customer pastes names the host byok will call, so it is parsed strictly,
//! part by part: the host must be a vault or HSM name (Azure's grammar) under one of the known
//! suffixes, and nothing else of the URL survives (no port, user, query or fragment). byok calls
//! only the URL it rebuilds from the checked parts ([`KeyUrl::key_id`]).

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// A vault or a Managed HSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// Key Vault (RSA keys; `RSA-OAEP-256`).
    Vault,
    /// Managed HSM (also `oct-HSM` keys; `A256KW`).
    ManagedHsm,
}

/// An Azure cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// Azure (public).
    Public,
    /// Azure operated by 21Vianet (China).
    China,
    /// Azure Government (US).
    UsGov,
}

/// The known hosts: (suffix after `NAME.`, service, cloud).
const SUFFIXES: [(&str, Service, Cloud); 6] = [
    ("vault.azure.net", Service::Vault, Cloud::Public),
    ("managedhsm.azure.net", Service::ManagedHsm, Cloud::Public),
    ("vault.azure.cn", Service::Vault, Cloud::China),
    ("managedhsm.azure.cn", Service::ManagedHsm, Cloud::China),
    ("vault.usgovcloudapi.net", Service::Vault, Cloud::UsGov),
    (
        "managedhsm.usgovcloudapi.net",
        Service::ManagedHsm,
        Cloud::UsGov,
    ),
];

/// A checked key URL. Its parts are read through methods: only [`KeyUrl::parse`] makes one, so
/// the vault name and cloud in the host byok calls are always ones the parser checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyUrl {
    service: Service,
    cloud: Cloud,
    name: String,
    key: String,
    version: Option<String>,
}

/// Why a key URL was refused: the part, what was found (escaped, at most 64 characters), and
/// what is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    /// The part at fault: `scheme`, `host`, `vault name`, `port`, `path`, `key name`,
    /// `version`, `query`.
    pub part: &'static str,
    /// What was found there.
    pub found: String,
    /// What is expected, and what to do.
    pub expected: &'static str,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Azure key URL, {}: found \"{}\"; expected {}",
            self.part, self.found, self.expected
        )
    }
}

impl core::error::Error for UrlError {}

fn err(part: &'static str, found: &str, expected: &'static str) -> UrlError {
    let mut shown = String::new();
    for (i, c) in found.chars().enumerate() {
        if i >= 64 {
            shown.push_str("...");
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            shown.push(c);
        } else {
            // Control characters, and look-alikes outside ASCII, made visible.
            shown.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    UrlError {
        part,
        found: shown,
        expected,
    }
}

const FORMAT: &str = "https://NAME.vault.azure.net/keys/KEY or https://NAME.vault.azure.net/keys/KEY/VERSION (the key's identifier from the portal or `az keyvault key show --query key.kid`); Managed HSM: NAME.managedhsm.azure.net";

/// A vault or HSM name: 3 to 24 of letters, digits and hyphens, starting with a letter, ending
/// with a letter or digit, without two hyphens in a row (Azure's rule).
fn vault_name_ok(n: &str) -> bool {
    (3..=24).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !n.contains("--")
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A key name: 1 to 127 of letters, digits and hyphens.
fn key_name_ok(k: &str) -> bool {
    (1..=127).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl KeyUrl {
    /// Vault or Managed HSM.
    pub fn service(&self) -> Service {
        self.service
    }

    /// Which cloud.
    pub fn cloud(&self) -> Cloud {
        self.cloud
    }

    /// The vault or HSM name (lower case).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The version (32 lower-case hex digits), if one was named.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Takes the version out, leaving the key: what byok stores (the host is unchanged).
    pub fn take_version(&mut self) -> Option<String> {
        self.version.take()
    }

    /// Parses a pasted key URL (whitespace around it ignored; the host's case too).
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let s = input.trim();
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
            Some((scheme, _)) => {
                return Err(err(
                    "scheme",
                    scheme,
                    "https: Key Vault answers over HTTPS only",
                ));
            }
            None => return Err(err("format", s, FORMAT)),
        };
        if let Some(i) = rest.find(['?', '#']) {
            return Err(err(
                "query",
                rest.get(i..).unwrap_or_default(),
                "nothing after the key's path: the API version is byok's to choose",
            ));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(err(
                "host",
                authority,
                "a vault host without a user name or password",
            ));
        }
        if authority.contains(':') {
            return Err(err(
                "port",
                authority,
                "the vault's host alone: Key Vault listens on 443",
            ));
        }
        let host = authority.to_ascii_lowercase();
        let Some((name, suffix)) = host.split_once('.') else {
            return Err(err("host", authority, FORMAT));
        };
        let Some((_, service, cloud)) = SUFFIXES.iter().find(|(sfx, ..)| *sfx == suffix) else {
            let expected = if suffix == "vault.microsoftazure.de" {
                "a vault in a current cloud: Azure Germany is retired"
            } else {
                "a host ending in vault.azure.net, managedhsm.azure.net, vault.azure.cn, managedhsm.azure.cn, vault.usgovcloudapi.net or managedhsm.usgovcloudapi.net"
            };
            return Err(err("host", authority, expected));
        };
        if !vault_name_ok(name) {
            return Err(err(
                "vault name",
                name,
                "3 to 24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, no two hyphens in a row",
            ));
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut parts = path.split('/');
        if parts.next() != Some("keys") {
            return Err(err(
                "path",
                path,
                "/keys/KEY or /keys/KEY/VERSION (a key, not a secret or certificate)",
            ));
        }
        let key = parts.next().unwrap_or_default();
        if !key_name_ok(key) {
            return Err(err("key name", key, "1 to 127 letters, digits and hyphens"));
        }
        let version = match parts.next() {
            None => None,
            // Identifiers compare as case-insensitive strings (Key Vault's rule): a version in
            // upper case is the same version, kept in lower case as the vault writes it.
            Some(v) if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(v.to_ascii_lowercase())
            }
            Some(v) => {
                return Err(err(
                    "version",
                    v,
                    "32 hexadecimal digits, or no version (the key's current one)",
                ));
            }
        };
        if let Some(extra) = parts.next() {
            return Err(err(
                "path",
                extra,
                "nothing after the version: /keys/KEY/VERSION",
            ));
        }
        Ok(Self {
            service: *service,
            cloud: *cloud,
            name: name.to_string(),
            key: key.to_string(),
            version,
        })
    }

    /// The host's suffix (`vault.azure.net`, ...).
    pub fn suffix(&self) -> &'static str {
        SUFFIXES
            .iter()
            .find(|(_, s, c)| *s == self.service && *c == self.cloud)
            .map_or("vault.azure.net", |(sfx, ..)| *sfx)
    }

    /// `https://NAME.SUFFIX`: the only host byok calls for this key.
    pub fn base_url(&self) -> String {
        format!("https://{}.{}", self.name, self.suffix())
    }

    /// The key's identifier as byok stores it and as Key Vault's `kid` names it: the base URL,
    /// `/keys/KEY`, and `/VERSION` if one was named.
    pub fn key_id(&self) -> String {
        match &self.version {
            Some(v) => format!("{}/keys/{}/{v}", self.base_url(), self.key),
            None => format!("{}/keys/{}", self.base_url(), self.key),
        }
    }

    /// The OAuth scope of a token for this key's service and cloud.
    pub fn token_scope(&self) -> String {
        let resource = self.suffix();
        format!("https://{resource}/.default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn vault_and_hsm_urls_in_three_clouds() {
        let k = KeyUrl::parse(&format!(
            " https://Acme-Prod.vault.azure.net/keys/byok-root/{V}\n"
        ))
        .unwrap();
        assert_eq!((k.service, k.cloud), (Service::Vault, Cloud::Public));
        assert_eq!((&k.name[..], &k.key[..]), ("acme-prod", "byok-root"));
        assert_eq!(
            k.key_id(),
            format!("https://acme-prod.vault.azure.net/keys/byok-root/{V}")
        );
        assert_eq!(k.token_scope(), "https://vault.azure.net/.default");
        let h = KeyUrl::parse("https://acme.managedhsm.usgovcloudapi.net/keys/root/").unwrap();
        assert_eq!(
            (h.service, h.cloud, h.version.clone()),
            (Service::ManagedHsm, Cloud::UsGov, None)
        );
        assert_eq!(
            h.key_id(),
            "https://acme.managedhsm.usgovcloudapi.net/keys/root"
        );
        assert_eq!(
            h.token_scope(),
            "https://managedhsm.usgovcloudapi.net/.default"
        );
        let c = KeyUrl::parse("https://acme.vault.azure.cn/keys/root").unwrap();
        assert_eq!(c.cloud, Cloud::China);
        // A version in upper case is the same version, kept as the vault writes it.
        let upper = format!(
            "https://acme.vault.azure.net/keys/root/{}",
            V.to_ascii_uppercase()
        );
        assert_eq!(KeyUrl::parse(&upper).unwrap().version(), Some(V));
        // Round trip.
        for k in [k, h, c] {
            assert_eq!(KeyUrl::parse(&k.key_id()).unwrap(), k);
        }
    }

    #[test]
    fn hostile_urls_are_refused_with_the_part_at_fault() {
        let table = [
            ("http://acme.vault.azure.net/keys/k", "scheme"),
            ("acme.vault.azure.net/keys/k", "format"),
            ("https://acme.vault.azure.net.evil.example/keys/k", "host"),
            ("https://evil.example/.vault.azure.net/keys/k", "host"),
            ("https://acme.vault.azure.net@evil.example/keys/k", "host"),
            ("https://user:pw@acme.vault.azure.net/keys/k", "host"),
            ("https://acme.vault.azure.net:8443/keys/k", "port"),
            ("https://169.254.169.254/keys/k", "host"),
            ("https://[::1]/keys/k", "port"),
            ("https://acme.vault.microsoftazure.de/keys/k", "host"),
            ("https://a.vault.azure.net/keys/k", "vault name"),
            ("https://acme--prod.vault.azure.net/keys/k", "vault name"),
            ("https://1acme.vault.azure.net/keys/k", "vault name"),
            ("https://acme-.vault.azure.net/keys/k", "vault name"),
            ("https://ac\u{0435}me.vault.azure.net/keys/k", "vault name"),
            ("https://x.y.vault.azure.net/keys/k", "host"),
            ("https://acme.vault.azure.net/secrets/k", "path"),
            ("https://acme.vault.azure.net/keys/../secrets/k", "key name"),
            ("https://acme.vault.azure.net/keys/k%2Fx", "key name"),
            ("https://acme.vault.azure.net/keys/k_x", "key name"),
            ("https://acme.vault.azure.net/keys/", "key name"),
            ("https://acme.vault.azure.net/keys//wrapkey", "key name"),
            ("https://acme.vault.azure.net/keys/k/123", "version"),
            (
                "https://acme.vault.azure.net/keys/k/0123456789abcdef0123456789abcdeg",
                "version",
            ),
            (
                "https://acme.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef/wrapkey",
                "path",
            ),
            (
                "https://acme.vault.azure.net/keys/k?api-version=7.4",
                "query",
            ),
            ("https://acme.vault.azure.net/keys/k#frag", "query"),
            ("https://acme.vault.azure.net\\keys\\k", "host"),
            ("https://acme.vault.azure.net/keys/k\u{0}", "key name"),
        ];
        for (url, part) in table {
            let e = KeyUrl::parse(url).unwrap_err();
            assert_eq!(e.part, part, "{url}: {e}");
            assert!(!e.to_string().contains('\u{0}'), "{e}");
        }
        let long = format!("https://acme.vault.azure.net/keys/{}", "k".repeat(128));
        assert_eq!(KeyUrl::parse(&long).unwrap_err().part, "key name");
        assert!(
            KeyUrl::parse(&format!(
                "https://acme.vault.azure.net/keys/{}",
                "k".repeat(127)
            ))
            .is_ok()
        );
    }

    proptest::proptest! {
        /// Whatever is pasted: no panic, and an accepted URL rebuilds to one under a known
        /// suffix whose path holds only the checked parts.
        #[test]
        fn anything_is_refused_or_names_a_known_vault(s in "\\PC{0,160}", tail in "[a-z0-9./:@%?#-]{0,40}") {
            for input in [s.clone(), format!("https://acme.vault.azure.net/keys/k{tail}"), format!("https://acme.vault.azure.net{tail}")] {
                if let Ok(k) = KeyUrl::parse(&input) {
                    let id = k.key_id();
                    proptest::prop_assert_eq!(KeyUrl::parse(&id).unwrap(), k.clone());
                    let host = id.strip_prefix("https://").unwrap().split('/').next().unwrap();
                    proptest::prop_assert!(SUFFIXES.iter().any(|(sfx, ..)| host.ends_with(&format!(".{sfx}"))), "{}", id);
                    proptest::prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-./:".contains(&b)), "{}", id);
                    proptest::prop_assert!(!id.contains(".."));
                }
            }
        }
    }
}
