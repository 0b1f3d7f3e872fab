//! Cloud KMS REST v1 requests (kms-wire.md section 4) and the reading of their answers:
//! `:encrypt` and `:decrypt` of org root keys, and GET of the CryptoKey for health.
//!
//! Integrity: every request carries the CRC32C of its plaintext or ciphertext and of its
//! additional authenticated data, and every answer is checked both ways (the `verified…`
//! flags must be `true`, the answer's own CRC32C must match its bytes). An answer that fails a
//! check is discarded as [`CRC_MISMATCH`], a transient failure: the request is retried.
//!
//! Binding: the additional authenticated data is [`aad`] of the org, scope and root version,
//! so a copy made for one of them cannot be unwrapped as another (Cloud KMS's `Decryption
//! failed` otherwise).

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use base64ct::{Base64, Encoding};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::kms::error::{KmsError, KmsErrorKind, clean_text};
use crate::kms::gcp::error::parse_error;
use crate::kms::gcp::name::{ENDPOINT_HOST, KeyName};
use crate::kms::http::{HttpRequest, HttpResponse, secret_body, take_secret};
use crate::kms::provider::Binding;
use crate::secret::{KEY_LEN, SecretBytes};

/// The provider code of an answer whose CRC32C did not check out.
pub const CRC_MISMATCH: &str = "Crc32cMismatch";

/// Cloud KMS ciphertexts are at most this long (64 KiB plaintext plus overhead); byok's are
/// about 100 bytes.
const MAX_CIPHERTEXT: usize = 65_536 + 1024;

/// The additional authenticated data of a copy: [`Binding::to_bytes`],
/// `byok:org=<org>;byok:scope=<scope>;byok:version=<n>`.
pub fn aad(binding: &Binding) -> Vec<u8> {
    binding.to_bytes()
}

/// CRC32C (Castagnoli) as Cloud KMS sends it: a decimal string.
fn crc(bytes: &[u8]) -> String {
    crc32c::crc32c(bytes).to_string()
}

/// The base URL: Cloud KMS's one global host, or the test override.
fn base(danger_base: Option<&str>) -> String {
    match danger_base {
        Some(b) => b.trim_end_matches('/').to_owned(),
        None => format!("https://{ENDPOINT_HOST}"),
    }
}

fn request(method: &'static str, url: String, token: &str, body: Vec<u8>) -> HttpRequest {
    let mut headers = alloc::vec![("authorization".to_owned(), format!("Bearer {token}"))];
    if method == "POST" {
        headers.push(("content-type".into(), "application/json".into()));
    }
    HttpRequest {
        method,
        url,
        headers,
        body,
    }
}

/// `:encrypt` of `plaintext` (an org root key) under the CryptoKey's primary version.
pub fn encrypt_request(
    key: &KeyName,
    plaintext: &SecretBytes,
    binding: &Binding,
    token: &str,
    danger_base: Option<&str>,
) -> HttpRequest {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        plaintext: &'a str,
        plaintext_crc32c: String,
        additional_authenticated_data: String,
        additional_authenticated_data_crc32c: String,
    }
    let aad = aad(binding);
    let plain = Zeroizing::new(Base64::encode_string(plaintext.expose_secret()));
    let body = secret_body(&Body {
        plaintext: &plain,
        plaintext_crc32c: crc(plaintext.expose_secret()),
        additional_authenticated_data: Base64::encode_string(&aad),
        additional_authenticated_data_crc32c: crc(&aad),
    });
    request(
        "POST",
        format!("{}{}", base(danger_base), key.path("encrypt")),
        token,
        body,
    )
}

/// `:decrypt` of `blob`; Cloud KMS picks the version that made it.
pub fn decrypt_request(
    key: &KeyName,
    blob: &[u8],
    binding: &Binding,
    token: &str,
    danger_base: Option<&str>,
) -> HttpRequest {
    let aad = aad(binding);
    let body = json!({
        "ciphertext": Base64::encode_string(blob),
        "ciphertextCrc32c": crc(blob),
        "additionalAuthenticatedData": Base64::encode_string(&aad),
        "additionalAuthenticatedDataCrc32c": crc(&aad),
    })
    .to_string();
    request(
        "POST",
        format!("{}{}", base(danger_base), key.path("decrypt")),
        token,
        body.into_bytes(),
    )
}

/// GET of the CryptoKey.
pub fn get_key_request(key: &KeyName, token: &str, danger_base: Option<&str>) -> HttpRequest {
    request(
        "GET",
        format!("{}/v1/{}", base(danger_base), key.key()),
        token,
        Vec::new(),
    )
}

fn malformed(resp: &HttpResponse, what: &str) -> KmsError {
    resp.malformed("gcp", &format!("unexpected answer: {what}"))
}

fn mismatch(resp: &HttpResponse, what: &str) -> KmsError {
    KmsError {
        kind: KmsErrorKind::Unavailable,
        provider: "gcp",
        code: CRC_MISMATCH.into(),
        message: clean_text(&format!(
            "{what}: the answer was corrupted in transit and is discarded"
        )),
        status: resp.status,
    }
}

fn json_ok(resp: &HttpResponse) -> Result<Map<String, Value>, KmsError> {
    resp.json_object("gcp", |r| parse_error(r.status, &r.body))
}

fn b64(resp: &HttpResponse, m: &Map<String, Value>, field: &str) -> Result<Vec<u8>, KmsError> {
    let s = m
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(resp, field))?;
    Base64::decode_vec(s).map_err(|_| malformed(resp, field))
}

/// An `int64` CRC field: a JSON string (the REST mapping) or, leniently, a number.
fn crc_field(m: &Map<String, Value>, field: &str) -> Option<u64> {
    match m.get(field)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The ciphertext from an `:encrypt` answer, after checking that Cloud KMS verified both CRCs
/// it was sent, that the ciphertext matches its CRC, and that the version used belongs to
/// `key`.
pub fn parse_encrypt(key: &KeyName, resp: &HttpResponse) -> Result<Vec<u8>, KmsError> {
    let m = json_ok(resp)?;
    let verified = |f: &str| m.get(f).and_then(Value::as_bool) == Some(true);
    if !verified("verifiedPlaintextCrc32c")
        || !verified("verifiedAdditionalAuthenticatedDataCrc32c")
    {
        return Err(mismatch(
            resp,
            "Cloud KMS did not verify the request's CRC32C",
        ));
    }
    let blob = b64(resp, &m, "ciphertext")?;
    if blob.is_empty() || blob.len() > MAX_CIPHERTEXT {
        return Err(malformed(resp, "ciphertext length"));
    }
    if crc_field(&m, "ciphertextCrc32c") != Some(u64::from(crc32c::crc32c(&blob))) {
        return Err(mismatch(
            resp,
            "ciphertextCrc32c does not match the ciphertext",
        ));
    }
    let used = m.get("name").and_then(Value::as_str).unwrap_or_default();
    let prefix = format!("{}/cryptoKeyVersions/", key.key());
    if !used.starts_with(&prefix) {
        return Err(malformed(resp, "the version used is not one of this key's"));
    }
    Ok(blob)
}

/// The 32-byte root from a `:decrypt` answer, after checking its CRC32C. Anything but 32
/// bytes is refused; decoded copies are wiped.
pub fn parse_decrypt(resp: &HttpResponse) -> Result<SecretBytes, KmsError> {
    let mut m = json_ok(resp)?;
    let text = take_secret(&mut m, "plaintext").ok_or_else(|| malformed(resp, "plaintext"))?;
    let plain =
        Zeroizing::new(Base64::decode_vec(&text).map_err(|_| malformed(resp, "plaintext"))?);
    if crc_field(&m, "plaintextCrc32c") != Some(u64::from(crc32c::crc32c(&plain))) {
        return Err(mismatch(
            resp,
            "plaintextCrc32c does not match the plaintext",
        ));
    }
    let mut bytes: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| malformed(resp, "plaintext is not 32 bytes"))?;
    Ok(SecretBytes::from_bytes(&mut bytes))
}

/// The facts of a CryptoKey that validation and health need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoKey {
    /// Its name.
    pub name: String,
    /// `ENCRYPT_DECRYPT` is the one byok can use.
    pub purpose: String,
    /// The primary version's state (`ENABLED`, `DISABLED`, `DESTROY_SCHEDULED`, ...); empty
    /// without a primary.
    pub primary_state: String,
    /// The primary version's name.
    pub primary: String,
    /// `SOFTWARE`, `HSM`, `EXTERNAL`, ...
    pub protection_level: String,
    /// Its label [`crate::kms::provider::ORG_CLAIM`], if set.
    pub org_claim: Option<String>,
}

impl CryptoKey {
    /// The error a wrap would meet, if the key's purpose or primary version forbids it.
    pub fn usability(&self) -> Result<(), KmsErrorKind> {
        if self.purpose != "ENCRYPT_DECRYPT" {
            return Err(KmsErrorKind::Malformed);
        }
        match self.primary_state.as_str() {
            "ENABLED" => Ok(()),
            "DESTROY_SCHEDULED" => Err(KmsErrorKind::KeyPendingDeletion),
            "DESTROYED" => Err(KmsErrorKind::KeyNotFound),
            "PENDING_GENERATION" => Err(KmsErrorKind::Unavailable),
            _ => Err(KmsErrorKind::KeyDisabled),
        }
    }
}

/// The CryptoKey from a GET answer. Enums may come as names or (with `enum-encoding=int`) as
/// numbers; byok asks for names and reads names.
pub fn parse_get_key(resp: &HttpResponse) -> Result<CryptoKey, KmsError> {
    let m = json_ok(resp)?;
    let text = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let name = text(&m, "name");
    if name.is_empty() {
        return Err(malformed(resp, "name"));
    }
    let primary = m.get("primary").and_then(Value::as_object);
    Ok(CryptoKey {
        purpose: text(&m, "purpose"),
        primary_state: primary.map(|p| text(p, "state")).unwrap_or_default(),
        primary: primary.map(|p| text(p, "name")).unwrap_or_default(),
        protection_level: primary
            .map(|p| text(p, "protectionLevel"))
            .unwrap_or_default(),
        org_claim: crate::kms::provider::org_claim_in(m.get("labels")),
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root";

    fn key() -> KeyName {
        KeyName::parse(KEY).unwrap()
    }

    fn ok(body: Value) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn crc32c_known_answers() {
        // kms-wire.md section 4.
        assert_eq!(crc(b"hello"), "2591144780");
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn encrypt_sends_crcs_and_the_binding() {
        let root = SecretBytes::from_bytes(&mut [9; 32]);
        let b = Binding::root("00aa", 2);
        let req = encrypt_request(&key(), &root, &b, "tok", None);
        assert_eq!(
            req.url,
            format!("https://cloudkms.googleapis.com/v1/{KEY}:encrypt")
        );
        assert_eq!(req.header("authorization"), Some("Bearer tok"));
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let aad =
            Base64::decode_vec(body["additionalAuthenticatedData"].as_str().unwrap()).unwrap();
        assert_eq!(aad, b"byok:org=00aa;byok:scope=00aa;byok:version=2");
        assert_eq!(body["additionalAuthenticatedDataCrc32c"], crc(&aad));
        assert_eq!(body["plaintextCrc32c"], crc(&[9; 32]));
        // The test override replaces the host only.
        let req = get_key_request(&key(), "t", Some("http://127.0.0.1:9/"));
        assert_eq!(req.url, format!("http://127.0.0.1:9/v1/{KEY}"));
        assert_eq!(req.method, "GET");
    }

    #[test]
    fn encrypt_answers_are_checked_both_ways() {
        let blob = b"ciphertext-bytes".to_vec();
        let good = json!({
            "name": format!("{KEY}/cryptoKeyVersions/3"),
            "ciphertext": Base64::encode_string(&blob),
            "ciphertextCrc32c": crc(&blob),
            "verifiedPlaintextCrc32c": true,
            "verifiedAdditionalAuthenticatedDataCrc32c": true,
        });
        assert_eq!(parse_encrypt(&key(), &ok(good.clone())).unwrap(), blob);
        // Each failed check discards the answer.
        for (field, value) in [
            ("verifiedPlaintextCrc32c", json!(false)),
            ("verifiedAdditionalAuthenticatedDataCrc32c", Value::Null),
            ("ciphertextCrc32c", json!("1")),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            let e = parse_encrypt(&key(), &ok(bad)).unwrap_err();
            assert_eq!(
                (e.kind, e.code.as_str()),
                (KmsErrorKind::Unavailable, CRC_MISMATCH),
                "{field}"
            );
        }
        let mut other = good;
        other["name"] = json!(
            "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/rootx/cryptoKeyVersions/1"
        );
        assert_eq!(
            parse_encrypt(&key(), &ok(other)).unwrap_err().kind,
            KmsErrorKind::Malformed
        );
    }

    #[test]
    fn decrypt_answers_are_checked() {
        let plain = [5u8; 32];
        let good =
            json!({ "plaintext": Base64::encode_string(&plain), "plaintextCrc32c": crc(&plain) });
        assert_eq!(parse_decrypt(&ok(good)).unwrap().expose_secret(), &plain);
        let flipped =
            json!({ "plaintext": Base64::encode_string(&plain), "plaintextCrc32c": crc(&[6; 32]) });
        assert_eq!(parse_decrypt(&ok(flipped)).unwrap_err().code, CRC_MISMATCH);
        let short = json!({ "plaintext": Base64::encode_string(&[1; 16]), "plaintextCrc32c": crc(&[1; 16]) });
        assert_eq!(
            parse_decrypt(&ok(short)).unwrap_err().kind,
            KmsErrorKind::Malformed
        );
    }

    #[test]
    fn key_states() {
        let k = |purpose: &str, state: &str| {
            parse_get_key(&ok(json!({
                "name": KEY, "purpose": purpose,
                "primary": { "name": format!("{KEY}/cryptoKeyVersions/1"), "state": state, "protectionLevel": "HSM" }
            })))
            .unwrap()
            .usability()
        };
        assert_eq!(k("ENCRYPT_DECRYPT", "ENABLED"), Ok(()));
        assert_eq!(
            k("ENCRYPT_DECRYPT", "DISABLED"),
            Err(KmsErrorKind::KeyDisabled)
        );
        assert_eq!(
            k("ENCRYPT_DECRYPT", "DESTROY_SCHEDULED"),
            Err(KmsErrorKind::KeyPendingDeletion)
        );
        assert_eq!(
            k("ENCRYPT_DECRYPT", "DESTROYED"),
            Err(KmsErrorKind::KeyNotFound)
        );
        assert_eq!(
            k("ASYMMETRIC_SIGN", "ENABLED"),
            Err(KmsErrorKind::Malformed)
        );
        let no_primary =
            parse_get_key(&ok(json!({ "name": KEY, "purpose": "ENCRYPT_DECRYPT" }))).unwrap();
        assert_eq!(no_primary.usability(), Err(KmsErrorKind::KeyDisabled));
    }
}
