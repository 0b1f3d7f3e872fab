//! Key Vault and Managed HSM requests (kms-wire.md section 5) and the reading of their answers:
//! `wrapkey` and `unwrapkey` of a root's binding envelope ([`super::envelope`]), and GET of the
//! key for validation and health. Every request goes to the host rebuilt from the checked key
//! URL, with the API version byok pins ([`API_VERSION`]).
//!
//! A stored copy names how it was made, so that it can be unwrapped after the customer rotates
//! the key (Key Vault keeps old versions usable):
//!
//! ```text
//! alg byte (1: RSA-OAEP-256, 2: A256KW) | version (32 ASCII hex) | the wrapped value
//! ```

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::kms::azure::error::parse_error;
use crate::kms::azure::url::KeyUrl;
use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::http::{HttpRequest, HttpResponse, secret_body, take_secret};

/// The Key Vault REST API version byok speaks (stable; Managed HSM accepts it too).
pub const API_VERSION: &str = "7.6";

/// How a root envelope is wrapped: decided by the key's type, from its description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapAlg {
    /// RSA-OAEP with SHA-256 and MGF1-SHA-256: RSA keys (vaults and Managed HSM).
    RsaOaep256,
    /// AES key wrap (RFC 3394) with a 256-bit key: `oct-HSM` keys on Managed HSM.
    A256Kw,
}

impl WrapAlg {
    /// The algorithm for a key of type `kty`, if byok can wrap with it.
    pub fn for_kty(kty: &str) -> Option<Self> {
        match kty {
            "RSA" | "RSA-HSM" => Some(Self::RsaOaep256),
            "oct-HSM" | "oct" => Some(Self::A256Kw),
            _ => None,
        }
    }

    /// Its JWA name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RsaOaep256 => "RSA-OAEP-256",
            Self::A256Kw => "A256KW",
        }
    }

    const fn tag(self) -> u8 {
        match self {
            Self::RsaOaep256 => 1,
            Self::A256Kw => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        [Self::RsaOaep256, Self::A256Kw]
            .into_iter()
            .find(|a| a.tag() == tag)
    }
}

fn base(key: &KeyUrl, danger_base: Option<&str>) -> String {
    match danger_base {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None => key.base_url(),
    }
}

fn post(url: String, token: &str, body: Vec<u8>) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url,
        headers: alloc::vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("content-type".into(), "application/json".into()),
        ],
        body,
    }
}

/// `wrapkey` of `envelope` with `version` of the key (the one describe named) and `alg`.
pub fn wrap_request(
    key: &KeyUrl,
    version: &str,
    alg: WrapAlg,
    envelope: &[u8],
    token: &str,
    danger_base: Option<&str>,
) -> HttpRequest {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        alg: &'a str,
        value: &'a str,
    }
    let value = Zeroizing::new(Base64UrlUnpadded::encode_string(envelope));
    let body = secret_body(&Body {
        alg: alg.name(),
        value: &value,
    });
    post(
        format!(
            "{}/keys/{}/{version}/wrapkey?api-version={API_VERSION}",
            base(key, danger_base),
            key.key()
        ),
        token,
        body,
    )
}

/// `unwrapkey` of a stored copy (its algorithm and version are in it).
pub fn unwrap_request(
    key: &KeyUrl,
    copy: &[u8],
    token: &str,
    danger_base: Option<&str>,
) -> Result<HttpRequest, String> {
    let (alg, version, wrapped) = split_copy(copy)?;
    let body = json!({ "alg": alg.name(), "value": Base64UrlUnpadded::encode_string(wrapped) })
        .to_string();
    Ok(post(
        format!(
            "{}/keys/{}/{version}/unwrapkey?api-version={API_VERSION}",
            base(key, danger_base),
            key.key()
        ),
        token,
        body.into_bytes(),
    ))
}

/// GET of the key (its current version, or the one the URL names).
pub fn get_key_request(key: &KeyUrl, token: &str, danger_base: Option<&str>) -> HttpRequest {
    let version = key.version().unwrap_or_default();
    HttpRequest {
        method: "GET",
        url: format!(
            "{}/keys/{}/{version}?api-version={API_VERSION}",
            base(key, danger_base),
            key.key()
        ),
        headers: alloc::vec![("authorization".into(), format!("Bearer {token}"))],
        body: Vec::new(),
    }
}

fn malformed(resp: &HttpResponse, what: &str) -> KmsError {
    resp.malformed("azure", &format!("unexpected answer: {what}"))
}

fn json_ok(resp: &HttpResponse) -> Result<Map<String, Value>, KmsError> {
    resp.json_object("azure", |r| parse_error(r.status, &r.body))
}

/// The version of `kid` if it names a version of `key` (same host and key name), else `None`.
/// Key Vault's identifiers compare as case-insensitive strings ("always compare them as
/// case-insensitive strings", its documentation): a key pasted as `Root` is answered with the
/// `kid` of `root` (host and version are kept in lower case by the parser).
fn version_of(key: &KeyUrl, kid: &str) -> Option<String> {
    let named = KeyUrl::parse(kid).ok()?;
    (named.service() == key.service()
        && named.cloud() == key.cloud()
        && named.name() == key.name()
        && named.key().eq_ignore_ascii_case(key.key()))
    .then(|| named.version().map(str::to_owned))
    .flatten()
}

/// The stored copy from a `wrapkey` answer: the algorithm, the version Key Vault used (its
/// `kid`, which must be a version of this key), and the wrapped value.
pub fn parse_wrap(key: &KeyUrl, alg: WrapAlg, resp: &HttpResponse) -> Result<Vec<u8>, KmsError> {
    let m = json_ok(resp)?;
    let kid = m.get("kid").and_then(Value::as_str).unwrap_or_default();
    let version =
        version_of(key, kid).ok_or_else(|| malformed(resp, "kid is not a version of this key"))?;
    let value = m
        .get("value")
        .and_then(Value::as_str)
        .and_then(|v| Base64UrlUnpadded::decode_vec(v).ok())
        .filter(|v| !v.is_empty() && v.len() <= 1024)
        .ok_or_else(|| malformed(resp, "value"))?;
    let mut copy = Vec::with_capacity(1 + 32 + value.len());
    copy.push(alg.tag());
    copy.extend_from_slice(version.as_bytes());
    copy.extend_from_slice(&value);
    Ok(copy)
}

/// A stored copy's parts: algorithm, version, wrapped value.
pub fn split_copy(copy: &[u8]) -> Result<(WrapAlg, &str, &[u8]), String> {
    let (tag, rest) = copy.split_first().ok_or("an empty copy")?;
    let alg = WrapAlg::from_tag(*tag).ok_or("a copy of an unknown algorithm")?;
    let (version, wrapped) = rest.split_at_checked(32).ok_or("a copy cut short")?;
    let version = core::str::from_utf8(version)
        .ok()
        .filter(|v| {
            v.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or("a copy without its key version")?;
    if wrapped.is_empty() {
        return Err("a copy without its wrapped value".to_string());
    }
    Ok((alg, version, wrapped))
}

/// The unwrapped envelope from an `unwrapkey` answer (to open with [`super::envelope::open`]).
pub fn parse_unwrap(resp: &HttpResponse) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let mut m = json_ok(resp)?;
    take_secret(&mut m, "value")
        .and_then(|v| Base64UrlUnpadded::decode_vec(&v).ok())
        .map(Zeroizing::new)
        .ok_or_else(|| malformed(resp, "value"))
}

/// The facts of a key that validation and health need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    /// Its `kid`, with the version.
    pub kid: String,
    /// `RSA`, `RSA-HSM`, `oct-HSM`, `EC`, ...
    pub kty: String,
    /// The operations it allows.
    pub key_ops: Vec<String>,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// `attributes.nbf` and `attributes.exp` (seconds since the epoch), if set.
    pub not_before: Option<u64>,
    /// See `not_before`.
    pub expires: Option<u64>,
    /// `attributes.recoveryLevel` (soft delete and purge protection).
    pub recovery_level: String,
    /// Its tag [`crate::kms::provider::ORG_CLAIM`], if set.
    pub org_claim: Option<String>,
}

impl KeyFacts {
    /// How byok would wrap with it, or why it cannot use it at time `now` (seconds).
    pub fn usability(&self, now: u64) -> Result<WrapAlg, KmsErrorKind> {
        if !self.enabled
            || self.not_before.is_some_and(|t| now < t)
            || self.expires.is_some_and(|t| now >= t)
        {
            return Err(KmsErrorKind::KeyDisabled);
        }
        let alg = WrapAlg::for_kty(&self.kty).ok_or(KmsErrorKind::Malformed)?;
        // Operations taken out of an attached key are the customer's setting, as `enabled`
        // is: a withdrawal (see `error::classify` for `KeyOperationForbidden`).
        if !self.allows_wrapping() {
            return Err(KmsErrorKind::KeyDisabled);
        }
        Ok(alg)
    }

    /// Whether the key's permitted operations include both that byok needs.
    pub fn allows_wrapping(&self) -> bool {
        let can = |op: &str| self.key_ops.iter().any(|o| o == op);
        can("wrapKey") && can("unwrapKey")
    }
}

/// The key's facts from a GET answer.
pub fn parse_get_key(resp: &HttpResponse) -> Result<KeyFacts, KmsError> {
    let m = json_ok(resp)?;
    let key = m
        .get("key")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(resp, "key"))?;
    let attrs = m.get("attributes").and_then(Value::as_object);
    let text = |o: &Map<String, Value>, k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let kid = text(key, "kid");
    if kid.is_empty() {
        return Err(malformed(resp, "key.kid"));
    }
    Ok(KeyFacts {
        kid,
        kty: text(key, "kty"),
        key_ops: key
            .get("key_ops")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        enabled: attrs
            .and_then(|a| a.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        not_before: attrs.and_then(|a| a.get("nbf")).and_then(Value::as_u64),
        expires: attrs.and_then(|a| a.get("exp")).and_then(Value::as_u64),
        recovery_level: attrs.map(|a| text(a, "recoveryLevel")).unwrap_or_default(),
        org_claim: crate::kms::provider::org_claim_in(m.get("tags")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0123456789abcdef0123456789abcdef";

    fn key() -> KeyUrl {
        KeyUrl::parse("https://acme.vault.azure.net/keys/byok-root").unwrap()
    }

    fn ok(body: Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn wrap_goes_to_the_key_version_with_the_alg_and_base64url() {
        let req = wrap_request(&key(), V, WrapAlg::RsaOaep256, &[0xfb; 3], "t", None);
        assert_eq!(
            req.url,
            format!("https://acme.vault.azure.net/keys/byok-root/{V}/wrapkey?api-version=7.6")
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body, json!({ "alg": "RSA-OAEP-256", "value": "-_v7" }));
        assert_eq!(req.header("authorization"), Some("Bearer t"));
        let get = get_key_request(&key(), "t", Some("https://127.0.0.1:9/"));
        assert_eq!(
            get.url,
            "https://127.0.0.1:9/keys/byok-root/?api-version=7.6"
        );
    }

    #[test]
    fn a_copy_carries_its_alg_and_version_and_unwraps_with_them() {
        let answer = ok(json!({
            "kid": format!("https://acme.vault.azure.net/keys/byok-root/{V}"),
            "value": Base64UrlUnpadded::encode_string(&[9; 256]),
        }));
        let copy = parse_wrap(&key(), WrapAlg::RsaOaep256, &answer).unwrap();
        let (alg, version, wrapped) = split_copy(&copy).unwrap();
        assert_eq!((alg, version, wrapped.len()), (WrapAlg::RsaOaep256, V, 256));
        let req = unwrap_request(&key(), &copy, "t", None).unwrap();
        assert!(
            req.url
                .ends_with(&format!("/keys/byok-root/{V}/unwrapkey?api-version=7.6")),
            "{}",
            req.url
        );
        // Key Vault's identifiers compare as case-insensitive strings: a kid spelling the key
        // or the version in another case names the same version (kept in lower case).
        let upper = V.to_ascii_uppercase();
        for kid in [
            format!("https://ACME.vault.azure.net/keys/BYOK-Root/{V}"),
            format!("https://acme.vault.azure.net/keys/byok-root/{upper}"),
        ] {
            let a = ok(json!({ "kid": kid, "value": "AAAA" }));
            let copy = parse_wrap(&key(), WrapAlg::RsaOaep256, &a).expect(&kid);
            assert_eq!(split_copy(&copy).unwrap().1, V, "{kid}");
        }
        // A kid of another key, vault or cloud is refused.
        for kid in [
            format!("https://acme.vault.azure.net/keys/other/{V}"),
            format!("https://evil.vault.azure.net/keys/byok-root/{V}"),
            format!("https://acme.vault.azure.cn/keys/byok-root/{V}"),
            "https://acme.vault.azure.net/keys/byok-root".into(),
        ] {
            let a = ok(json!({ "kid": kid, "value": "AAAA" }));
            assert_eq!(
                parse_wrap(&key(), WrapAlg::RsaOaep256, &a)
                    .unwrap_err()
                    .kind,
                KmsErrorKind::Malformed,
                "{kid}"
            );
        }
        // A damaged copy is refused before any call.
        for bad in [&b""[..], &[3u8; 40][..], &copy[..20], &copy[..33]] {
            assert!(split_copy(bad).is_err());
        }
    }

    #[test]
    fn key_facts_decide_usability() {
        let facts = |kty: &str, ops: &[&str], attrs: Value| {
            parse_get_key(&ok(json!({
                "key": { "kid": format!("https://acme.vault.azure.net/keys/byok-root/{V}"), "kty": kty, "key_ops": ops },
                "attributes": attrs,
            })))
            .unwrap()
        };
        let now = 1_800_000_000;
        let good = facts(
            "RSA-HSM",
            &["wrapKey", "unwrapKey"],
            json!({ "enabled": true, "recoveryLevel": "Recoverable" }),
        );
        assert_eq!(good.usability(now), Ok(WrapAlg::RsaOaep256));
        assert_eq!(good.recovery_level, "Recoverable");
        let hsm = facts(
            "oct-HSM",
            &["wrapKey", "unwrapKey"],
            json!({ "enabled": true }),
        );
        assert_eq!(hsm.usability(now), Ok(WrapAlg::A256Kw));
        let cases = [
            (
                facts(
                    "RSA",
                    &["wrapKey", "unwrapKey"],
                    json!({ "enabled": false }),
                ),
                KmsErrorKind::KeyDisabled,
            ),
            (
                facts(
                    "RSA",
                    &["wrapKey", "unwrapKey"],
                    json!({ "enabled": true, "exp": now - 1 }),
                ),
                KmsErrorKind::KeyDisabled,
            ),
            (
                facts(
                    "RSA",
                    &["wrapKey", "unwrapKey"],
                    json!({ "enabled": true, "nbf": now + 60 }),
                ),
                KmsErrorKind::KeyDisabled,
            ),
            (
                facts("EC", &["wrapKey", "unwrapKey"], json!({ "enabled": true })),
                KmsErrorKind::Malformed,
            ),
            (
                facts("RSA", &["encrypt", "decrypt"], json!({ "enabled": true })),
                KmsErrorKind::KeyDisabled,
            ),
        ];
        for (f, kind) in cases {
            assert_eq!(f.usability(now), Err(kind), "{f:?}");
        }
        let missing = ok(json!({ "attributes": {} }));
        assert_eq!(
            parse_get_key(&missing).unwrap_err().kind,
            KmsErrorKind::Malformed
        );
    }
}
