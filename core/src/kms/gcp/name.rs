//! Cloud KMS resource names (kms-wire.md section 4):
//! `projects/P/locations/L/keyRings/R/cryptoKeys/K`, with `/cryptoKeyVersions/V` allowed for a
//! key version. Parsed strictly, part by part, so that a pasted name can only ever name a key:
//! nothing of it reaches a URL but these checked parts, and the host byok calls is fixed
//! ([`ENDPOINT_HOST`]), never taken from the name.
//!
//! The full-URL forms people paste (`https://cloudkms.googleapis.com/v1/projects/...` and the
//! console's `//cloudkms.googleapis.com/projects/...`) are accepted and reduced to the name.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// The one host byok calls for Cloud KMS (global endpoint).
pub const ENDPOINT_HOST: &str = "cloudkms.googleapis.com";

/// A Cloud KMS CryptoKey, or one of its versions. Its parts are read through methods: only
/// [`KeyName::parse`] makes one, so every part of the request path is one the parser checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyName {
    project: String,
    location: String,
    key_ring: String,
    crypto_key: String,
    version: Option<u64>,
}

/// Why a name was refused: the part, what was found (escaped, at most 64 characters), and what
/// is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    /// The part at fault: `format`, `project`, `location`, `key ring`, `crypto key`, `version`.
    pub part: &'static str,
    /// What was found there.
    pub found: String,
    /// What is expected, and what to do.
    pub expected: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cloud KMS key name, {}: found \"{}\"; expected {}",
            self.part, self.found, self.expected
        )
    }
}

impl core::error::Error for NameError {}

fn err(part: &'static str, found: &str, expected: &'static str) -> NameError {
    NameError {
        part,
        found: found
            .chars()
            .take(64)
            .flat_map(char::escape_debug)
            .collect(),
        expected,
    }
}

/// A project id: 6 to 30 of `a-z0-9-`, starting with a letter, not ending with a hyphen;
/// optionally after a domain and a colon (`example.com:my-project`, legacy domain-scoped).
fn project_ok(p: &str) -> bool {
    let (domain, id) = match p.rsplit_once(':') {
        Some((d, id)) => (Some(d), id),
        None => (None, p),
    };
    let id_ok = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let domain_ok = domain.is_none_or(|d| {
        (1..=63).contains(&d.len())
            && d.contains('.')
            && !d.starts_with(['.', '-'])
            && !d.ends_with(['.', '-'])
            && d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    });
    id_ok && domain_ok
}

/// A location: `global`, or a lower-case region or multi-region name (`europe-west1`, `us`,
/// `nam4`): letters, digits and inner hyphens, at most 30.
fn location_ok(l: &str) -> bool {
    (2..=30).contains(&l.len())
        && l.starts_with(|c: char| c.is_ascii_lowercase())
        && !l.ends_with('-')
        && !l.contains("--")
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A key ring or crypto key id: 1 to 63 of `A-Za-z0-9_-` (Cloud KMS's own rule).
fn id_ok(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl KeyName {
    /// The project id (`my-project`, or a domain-scoped `example.com:my-project`).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The location: `global`, a region (`europe-west1`) or a multi-region (`eur4`, `us`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The key ring id.
    pub fn key_ring(&self) -> &str {
        &self.key_ring
    }

    /// The crypto key id.
    pub fn crypto_key(&self) -> &str {
        &self.crypto_key
    }

    /// The version, if one was named (decrypt picks the version itself; byok stores the key).
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Parses a pasted key or key version name (whitespace around it ignored).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let s = input.trim();
        let name = s
            .strip_prefix("https://cloudkms.googleapis.com/v1/")
            .or_else(|| s.strip_prefix("//cloudkms.googleapis.com/"))
            .unwrap_or(s);
        let parts: alloc::vec::Vec<&str> = name.split('/').collect();
        const FORMAT: &str = "projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY (optionally /cryptoKeyVersions/N): copy it from the key's page in the Cloud console, or `gcloud kms keys describe KEY --keyring RING --location LOCATION --format 'value(name)'`";
        let labels = ["projects", "locations", "keyRings", "cryptoKeys"];
        if !(parts.len() == 8 || parts.len() == 10)
            || parts
                .iter()
                .step_by(2)
                .zip(labels.iter().chain(core::iter::once(&"cryptoKeyVersions")))
                .any(|(got, want)| got != want)
        {
            return Err(err("format", s, FORMAT));
        }
        let part = |i: usize| parts.get(i).copied().unwrap_or_default();
        let (project, location, key_ring, crypto_key) = (part(1), part(3), part(5), part(7));
        if !project_ok(project) {
            return Err(err(
                "project",
                project,
                "a project id: 6 to 30 lower-case letters, digits and hyphens, starting with a letter (the id, not the project's display name or number)",
            ));
        }
        if !location_ok(location) {
            return Err(err(
                "location",
                location,
                "`global`, a region such as `europe-west1`, or a multi-region such as `us` or `eur4`",
            ));
        }
        if !id_ok(key_ring) {
            return Err(err(
                "key ring",
                key_ring,
                "1 to 63 letters, digits, underscores or hyphens",
            ));
        }
        if !id_ok(crypto_key) {
            return Err(err(
                "crypto key",
                crypto_key,
                "1 to 63 letters, digits, underscores or hyphens",
            ));
        }
        let version = match parts.get(9) {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|n| {
                        // Digits only: `parse` also takes a leading `+`.
                        *n > 0
                            && v.bytes().all(|b| b.is_ascii_digit())
                            && !v.starts_with('0')
                            && v.len() <= 19
                    })
                    .ok_or_else(|| err("version", v, "a key version number (1, 2, ...)"))?,
            ),
        };
        Ok(Self {
            project: project.to_string(),
            location: location.to_string(),
            key_ring: key_ring.to_string(),
            crypto_key: crypto_key.to_string(),
            version,
        })
    }

    /// The CryptoKey's name (without a version): what byok stores and encrypts with.
    pub fn key(&self) -> String {
        format!(
            "projects/{}/locations/{}/keyRings/{}/cryptoKeys/{}",
            self.project, self.location, self.key_ring, self.crypto_key
        )
    }

    /// The name as pasted, reduced: the key, and the version if one was named.
    pub fn to_name(&self) -> String {
        match self.version {
            Some(v) => format!("{}/cryptoKeyVersions/{v}", self.key()),
            None => self.key(),
        }
    }

    /// The request path of `method` (`encrypt`, `decrypt`) on the key: `/v1/{key}:{method}`.
    /// Every part is checked, so nothing needs escaping, and the host is [`ENDPOINT_HOST`].
    pub fn path(&self, method: &str) -> String {
        format!("/v1/{}:{method}", self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/acme-prod-123/locations/europe-west1/keyRings/byok/cryptoKeys/root";

    #[test]
    fn names_parse_in_every_pasted_form_and_reduce_to_the_key() {
        let k = KeyName::parse(KEY).unwrap();
        assert_eq!(
            (
                k.project.as_str(),
                k.location.as_str(),
                k.key_ring.as_str(),
                k.crypto_key.as_str(),
                k.version
            ),
            ("acme-prod-123", "europe-west1", "byok", "root", None)
        );
        assert_eq!(k.key(), KEY);
        assert_eq!(k.path("encrypt"), format!("/v1/{KEY}:encrypt"));
        for pasted in [
            format!("  {KEY}\n"),
            format!("https://cloudkms.googleapis.com/v1/{KEY}"),
            format!("//cloudkms.googleapis.com/{KEY}"),
        ] {
            assert_eq!(KeyName::parse(&pasted).unwrap(), k, "{pasted}");
        }
        let v = KeyName::parse(&format!("{KEY}/cryptoKeyVersions/7")).unwrap();
        assert_eq!((v.version, v.key()), (Some(7), KEY.to_string()));
        assert_eq!(v.to_name(), format!("{KEY}/cryptoKeyVersions/7"));
        let scoped = KeyName::parse(
            "projects/example.com:acme-prod/locations/global/keyRings/r_1/cryptoKeys/K-2",
        )
        .unwrap();
        assert_eq!(scoped.project, "example.com:acme-prod");
    }

    /// Hostile and mistaken names, each refused naming the part at fault.
    #[test]
    fn hostile_names_are_refused_by_part() {
        let base = |p: &str, l: &str, r: &str, k: &str| {
            format!("projects/{p}/locations/{l}/keyRings/{r}/cryptoKeys/{k}")
        };
        let cases: &[(String, &str)] = &[
            ("".into(), "format"),
            ("root".into(), "format"),
            (
                "projects/acme-prod/locations/global/keyRings/byok".into(),
                "format",
            ),
            (format!("{KEY}/"), "format"),
            (format!("/{KEY}"), "format"),
            (format!("{KEY}/cryptoKeyVersions"), "format"),
            (format!("{KEY}/cryptoKeyVersions/1/x"), "format"),
            (KEY.replace("keyRings", "keyrings"), "format"),
            (KEY.replace("projects/", "project/"), "format"),
            (format!("https://evil.example/v1/{KEY}"), "format"),
            (
                format!("https://cloudkms.googleapis.com.evil.example/v1/{KEY}"),
                "format",
            ),
            (format!("http://cloudkms.googleapis.com/v1/{KEY}"), "format"),
            (
                KEY.replace("/cryptoKeys/root", "/cryptoKeys/root?x=1"),
                "crypto key",
            ),
            (
                KEY.replace("/cryptoKeys/root", "/cryptoKeys/root#f"),
                "crypto key",
            ),
            (
                KEY.replace("/cryptoKeys/root", "/cryptoKeys/ro%2Fot"),
                "crypto key",
            ),
            (
                KEY.replace("/cryptoKeys/root", "/cryptoKeys/.."),
                "crypto key",
            ),
            (
                KEY.replace("/cryptoKeys/root", "/cryptoKeys/root:decrypt"),
                "crypto key",
            ),
            (
                KEY.replace("/cryptoKeys/root", "/cryptoKeys/"),
                "crypto key",
            ),
            (
                KEY.replace(
                    "/cryptoKeys/root",
                    &format!("/cryptoKeys/{}", "k".repeat(64)),
                ),
                "crypto key",
            ),
            (KEY.replace("/keyRings/byok", "/keyRings/by ok"), "key ring"),
            (KEY.replace("/keyRings/byok", "/keyRings/bÿok"), "key ring"),
            (base("123456789012", "global", "r", "k"), "project"),
            (base("Acme-Prod", "global", "r", "k"), "project"),
            (base("acme", "global", "r", "k"), "project"),
            (base("acme-prod-", "global", "r", "k"), "project"),
            (base(&"a".repeat(31), "global", "r", "k"), "project"),
            (
                base("evil.example/x:acme-prod", "global", "r", "k"),
                "format",
            ),
            (base(":acme-prod", "global", "r", "k"), "project"),
            (base("acme-prod", "Global", "r", "k"), "location"),
            (base("acme-prod", "europe-west1-", "r", "k"), "location"),
            (base("acme-prod", "eu..west", "r", "k"), "location"),
            (base("acme-prod", "x", "r", "k"), "location"),
            (format!("{KEY}/cryptoKeyVersions/0"), "version"),
            (format!("{KEY}/cryptoKeyVersions/01"), "version"),
            (format!("{KEY}/cryptoKeyVersions/-1"), "version"),
            (format!("{KEY}/cryptoKeyVersions/+7"), "version"),
            (
                format!("{KEY}/cryptoKeyVersions/99999999999999999999"),
                "version",
            ),
        ];
        for (name, part) in cases {
            let e = KeyName::parse(name).expect_err(name);
            assert_eq!(e.part, *part, "{name}: {e}");
            assert!(e.found.chars().count() <= 64 * 2, "{name}");
        }
    }
}
