//! AWS KMS requests (JSON 1.1 protocol, SigV4-signed with `aws-sigv4`, the time passed in) and
//! the parsing of their answers. Every call carries the encryption context
//! `{"byok:org": .., "byok:scope": ..}`, so CloudTrail names the scope and a key policy can
//! condition on it.
//!
//! The signing itself, and the credentials it needs, are in `signing.rs`; [`AwsCredentials`]
//! and [`SigningError`] are re-exported here, where callers have always found them.

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use base64ct::{Base64, Encoding};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::kms::aws::arn::{Endpoint, KeyArn};
use crate::kms::aws::error::parse_error;
use crate::kms::aws::signing::sign_request;
use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::http::{HttpRequest, HttpResponse, secret_body, take_secret};
use crate::secret::{KEY_LEN, SecretBytes};

pub use crate::kms::aws::signing::{AwsCredentials, SigningError};

/// What a KMS call is made for: names the org and scope in the encryption context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallContext {
    /// The org's id (hex).
    pub org: String,
    /// The scope's id (hex).
    pub scope: String,
    /// The root key version a copy holds (`byok:version`), so that a copy of one version cannot
    /// be passed off as another; `None` leaves it out.
    pub version: Option<u32>,
}

impl CallContext {
    fn json(&self) -> Value {
        match self.version {
            Some(v) => {
                json!({ "byok:org": self.org, "byok:scope": self.scope, "byok:version": v.to_string() })
            }
            None => json!({ "byok:org": self.org, "byok:scope": self.scope }),
        }
    }
}

/// Builds a signed JSON 1.1 KMS request for `target` (e.g. `TrentService.Encrypt`).
fn signed(
    endpoint: &Endpoint,
    target: &str,
    body: Vec<u8>,
    creds: &AwsCredentials,
    now: Duration,
) -> Result<HttpRequest, SigningError> {
    sign_request(
        endpoint,
        "kms",
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ],
        body,
        creds,
        now,
    )
}

/// `Encrypt`: wraps `plaintext` (an org root key) under the CMK.
pub fn encrypt_request(
    key: &KeyArn,
    endpoint: &Endpoint,
    plaintext: &SecretBytes,
    context: &CallContext,
    creds: &AwsCredentials,
    now: Duration,
) -> Result<HttpRequest, SigningError> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body<'a> {
        key_id: &'a str,
        plaintext: &'a str,
        encryption_context: Value,
    }
    let plain = Zeroizing::new(Base64::encode_string(plaintext.expose_secret()));
    let body = secret_body(&Body {
        key_id: &key.to_key_id(),
        plaintext: &plain,
        encryption_context: context.json(),
    });
    signed(endpoint, "TrentService.Encrypt", body, creds, now)
}

/// `Decrypt` of a wrapped root key. `KeyId` is always sent, so KMS refuses a blob made by
/// another key instead of silently using it.
pub fn decrypt_request(
    key: &KeyArn,
    endpoint: &Endpoint,
    blob: &[u8],
    context: &CallContext,
    creds: &AwsCredentials,
    now: Duration,
) -> Result<HttpRequest, SigningError> {
    let body = json!({
        "KeyId": key.to_key_id(),
        "CiphertextBlob": Base64::encode_string(blob),
        "EncryptionContext": context.json(),
    })
    .to_string();
    signed(
        endpoint,
        "TrentService.Decrypt",
        body.into_bytes(),
        creds,
        now,
    )
}

/// `GenerateDataKey` (32 bytes): a new org root key and its wrapped copy in one call, where
/// generating locally and calling `Encrypt` would take the same one call plus local randomness.
/// Used when a CMK is the org's first holder, so the root key is born in the customer's KMS.
pub fn generate_data_key_request(
    key: &KeyArn,
    endpoint: &Endpoint,
    context: &CallContext,
    creds: &AwsCredentials,
    now: Duration,
) -> Result<HttpRequest, SigningError> {
    let body = json!({
        "KeyId": key.to_key_id(),
        "NumberOfBytes": KEY_LEN,
        "EncryptionContext": context.json(),
    })
    .to_string();
    signed(
        endpoint,
        "TrentService.GenerateDataKey",
        body.into_bytes(),
        creds,
        now,
    )
}

/// The new key and its wrapped copy from a `GenerateDataKey` answer.
pub fn parse_generate_data_key(resp: &HttpResponse) -> Result<(SecretBytes, Vec<u8>), KmsError> {
    let mut m = json_ok(resp)?;
    Ok((key_field(resp, &mut m)?, blob_field(resp, &m)?))
}

/// `DescribeKey`.
pub fn describe_key_request(
    key: &KeyArn,
    endpoint: &Endpoint,
    creds: &AwsCredentials,
    now: Duration,
) -> Result<HttpRequest, SigningError> {
    let body = json!({ "KeyId": key.to_key_id() }).to_string();
    signed(
        endpoint,
        "TrentService.DescribeKey",
        body.into_bytes(),
        creds,
        now,
    )
}

pub(crate) fn malformed(resp: &HttpResponse, what: &str) -> KmsError {
    resp.malformed("aws", &alloc::format!("unexpected answer: {what}"))
}

fn json_ok(resp: &HttpResponse) -> Result<Map<String, Value>, KmsError> {
    resp.json_object("aws", |r| parse_error(r.status, &r.headers, &r.body))
}

fn b64_field(
    resp: &HttpResponse,
    m: &Map<String, Value>,
    field: &str,
) -> Result<Vec<u8>, KmsError> {
    let s = m
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(resp, field))?;
    Base64::decode_vec(s).map_err(|_| malformed(resp, field))
}

/// The wrapped blob from an `Encrypt` answer, and the key ARN KMS used (`KeyId`; empty when
/// the answer names none).
pub fn parse_encrypt(resp: &HttpResponse) -> Result<(Vec<u8>, String), KmsError> {
    let m = json_ok(resp)?;
    let blob = blob_field(resp, &m)?;
    Ok((blob, key_id_field(&m)))
}

/// `KeyId`: the ARN of the key that did the work; empty when the answer names none.
fn key_id_field(m: &Map<String, Value>) -> String {
    m.get("KeyId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `Plaintext`: exactly 32 bytes (an org root key), refused otherwise; taken out of the map,
/// and every copy (the base64, the decoded bytes) wiped.
fn key_field(resp: &HttpResponse, m: &mut Map<String, Value>) -> Result<SecretBytes, KmsError> {
    let text = take_secret(m, "Plaintext").ok_or_else(|| malformed(resp, "Plaintext"))?;
    let plain =
        Zeroizing::new(Base64::decode_vec(&text).map_err(|_| malformed(resp, "Plaintext"))?);
    let mut bytes: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| malformed(resp, "Plaintext is not 32 bytes"))?;
    Ok(SecretBytes::from_bytes(&mut bytes))
}

/// `CiphertextBlob`: 1..=6144 bytes, the KMS limit.
fn blob_field(resp: &HttpResponse, m: &Map<String, Value>) -> Result<Vec<u8>, KmsError> {
    let blob = b64_field(resp, m, "CiphertextBlob")?;
    if blob.is_empty() || blob.len() > 6144 {
        return Err(malformed(resp, "CiphertextBlob length"));
    }
    Ok(blob)
}

/// The 32-byte root key from a `Decrypt` answer, and the key ARN KMS used (`KeyId`; empty
/// when the answer names none). Anything but exactly 32 bytes is refused.
pub fn parse_decrypt(resp: &HttpResponse) -> Result<(SecretBytes, String), KmsError> {
    let mut m = json_ok(resp)?;
    let key = key_field(resp, &mut m)?;
    Ok((key, key_id_field(&m)))
}

/// The facts of `DescribeKey` that key validation and key health need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyMetadata {
    /// The key ARN.
    pub arn: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`, ...
    pub state: String,
    /// `ENCRYPT_DECRYPT` is the one byok can use.
    pub usage: String,
    /// `SYMMETRIC_DEFAULT` is the one byok can use.
    pub spec: String,
    /// Deletion date (seconds since the epoch) when pending deletion.
    pub deletion_date: Option<u64>,
    /// Whether it is a multi-region key.
    pub multi_region: bool,
}

impl KeyMetadata {
    /// The error a wrap or unwrap would meet, if the key's state or kind forbids it.
    pub fn usability(&self) -> Result<(), KmsErrorKind> {
        match self.state.as_str() {
            "Enabled" => {}
            "Disabled" => return Err(KmsErrorKind::KeyDisabled),
            "PendingDeletion" | "PendingReplicaDeletion" => {
                return Err(KmsErrorKind::KeyPendingDeletion);
            }
            // KMS's own transitions of a multi-Region key. `Unavailable` (a custom key store
            // the customer disconnected) falls to the denial below.
            "Creating" | "Updating" => return Err(KmsErrorKind::Unavailable),
            _ => return Err(KmsErrorKind::KeyDisabled),
        }
        if self.usage != "ENCRYPT_DECRYPT" || self.spec != "SYMMETRIC_DEFAULT" {
            return Err(KmsErrorKind::Malformed);
        }
        Ok(())
    }
}

/// KMS sends epoch seconds as a JSON number that may be fractional. Whole seconds are enough;
/// `as` floors, and saturates NaN, negative and huge values to 0 or `u64::MAX` rather than wrap.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "flooring, saturating conversion is the intent"
)]
fn epoch_seconds(d: f64) -> u64 {
    d as u64
}

/// The metadata from a `DescribeKey` answer.
pub fn parse_describe(resp: &HttpResponse) -> Result<KeyMetadata, KmsError> {
    let m = json_ok(resp)?;
    let meta = m
        .get("KeyMetadata")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(resp, "KeyMetadata"))?;
    let text = |k: &str| {
        meta.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let arn = text("Arn");
    if arn.is_empty() {
        return Err(malformed(resp, "KeyMetadata.Arn"));
    }
    let spec = meta
        .get("KeySpec")
        .or_else(|| meta.get("CustomerMasterKeySpec"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok(KeyMetadata {
        arn,
        state: text("KeyState"),
        usage: text("KeyUsage"),
        spec,
        deletion_date: meta
            .get("DeletionDate")
            .and_then(Value::as_f64)
            .map(epoch_seconds),
        multi_region: meta
            .get("MultiRegion")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn arn() -> KeyArn {
        KeyArn::parse("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
            .unwrap()
    }

    fn resp(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn encrypt_request_is_signed_json_with_the_context() {
        let creds = AwsCredentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
        );
        let ctx = CallContext {
            org: "o1".into(),
            scope: "s1".into(),
            version: None,
        };
        let k = arn();
        let ep = k.endpoint(Default::default()).unwrap();
        let secret = SecretBytes::from_bytes(&mut [7u8; 32]);
        let req = encrypt_request(
            &k,
            &ep,
            &secret,
            &ctx,
            &creds,
            Duration::from_secs(1_440_938_160),
        )
        .unwrap();
        assert_eq!(req.url, "https://kms.us-east-1.amazonaws.com/");
        let h = |n: &str| req.header(n).map(str::to_owned);
        assert_eq!(h("x-amz-target").as_deref(), Some("TrentService.Encrypt"));
        assert_eq!(h("x-amz-date").as_deref(), Some("20150830T123600Z"));
        let auth = h("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request"
            ),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target"),
            "{auth}"
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(
            body["EncryptionContext"],
            json!({"byok:org": "o1", "byok:scope": "s1"})
        );
        assert_eq!(body["KeyId"], k.to_key_id());
        // Debug never shows the body or the signature.
        let dbg = alloc::format!("{req:?} {creds:?}");
        assert!(
            !dbg.contains("Signature=") && !dbg.contains("Plaintext") && !dbg.contains("wJalr"),
            "{dbg}"
        );
    }

    #[test]
    fn session_tokens_are_signed() {
        let creds = AwsCredentials::new("ASIAEXAMPLE", "secret", Some("token-1".into()), Some(1));
        let k = arn();
        let ep = k.endpoint(Default::default()).unwrap();
        let req =
            describe_key_request(&k, &ep, &creds, Duration::from_secs(1_700_000_000)).unwrap();
        assert!(
            req.headers
                .iter()
                .any(|(k, v)| k == "x-amz-security-token" && v == "token-1")
        );
        let auth = req.header("authorization").unwrap();
        assert!(auth.contains("x-amz-security-token"), "{auth}");
    }

    /// The expected values were computed by botocore's `SigV4Auth` (the official SDK's signer);
    /// `tools/sigv4_kat.py`, run by the test command, recomputes them with botocore each time.
    #[test]
    fn sigv4_matches_botocore() {
        let cases = [
            (
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                AwsCredentials::new(
                    "AKIDEXAMPLE",
                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    None,
                    None,
                ),
                1_440_938_160,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
                 Signature=210629a49d2c28442f2cae2a9828b68c77eda57985f0812811baa19a822f06d2",
            ),
            (
                "arn:aws:kms:eu-west-1:111122223333:alias/byok-root",
                AwsCredentials::new(
                    "ASIAEXAMPLE",
                    "temporary-secret",
                    Some("session-token-value".into()),
                    None,
                ),
                1_795_543_205,
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261124/eu-west-1/kms/aws4_request, \
                 SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
                 Signature=88b4b14f35a5c55ae8c9c79787885e72a168c8a1d5b6e2ad2071bc39168d8da9",
            ),
        ];
        for (id, creds, now, expected) in cases {
            let k = KeyArn::parse(id).unwrap();
            let ep = k.endpoint(Default::default()).unwrap();
            let req = describe_key_request(&k, &ep, &creds, Duration::from_secs(now)).unwrap();
            let auth = req.header("authorization").unwrap();
            assert_eq!(auth, expected, "{id}");
        }
    }

    #[test]
    fn answers_are_parsed_strictly() {
        let ok = resp(
            200,
            r#"{"CiphertextBlob":"AQID","KeyId":"arn:aws:kms:us-east-1:1:key/x"}"#,
        );
        assert_eq!(parse_encrypt(&ok).unwrap().0, vec![1, 2, 3]);
        let key = Base64::encode_string(&[9u8; 32]);
        let ok = resp(
            200,
            &alloc::format!(r#"{{"Plaintext":"{key}","KeyId":"k"}}"#),
        );
        let (plain, by) = parse_decrypt(&ok).unwrap();
        assert_eq!((plain.expose_secret(), by.as_str()), (&[9u8; 32], "k"));
        let gdk = resp(
            200,
            &alloc::format!(r#"{{"Plaintext":"{key}","CiphertextBlob":"AQID"}}"#),
        );
        let (k, blob) = parse_generate_data_key(&gdk).unwrap();
        assert_eq!((k.expose_secret(), blob), (&[9u8; 32], vec![1, 2, 3]));
        let no_blob = resp(200, &alloc::format!(r#"{{"Plaintext":"{key}"}}"#));
        assert_eq!(
            parse_generate_data_key(&no_blob).unwrap_err().kind,
            KmsErrorKind::Malformed
        );
        let short = resp(200, r#"{"Plaintext":"AQID"}"#);
        assert_eq!(
            parse_decrypt(&short).unwrap_err().kind,
            KmsErrorKind::Malformed
        );
        assert_eq!(
            parse_encrypt(&resp(200, "<html>")).unwrap_err().kind,
            KmsErrorKind::Malformed
        );
        assert_eq!(
            parse_encrypt(&resp(200, r#"{"CiphertextBlob":"!!"}"#))
                .unwrap_err()
                .kind,
            KmsErrorKind::Malformed
        );
        let denied = resp(400, r#"{"__type":"AccessDeniedException","message":"no"}"#);
        assert_eq!(
            parse_decrypt(&denied).unwrap_err().kind,
            KmsErrorKind::AccessDenied
        );
        let d = resp(
            200,
            r#"{"KeyMetadata":{"KeyId":"x","Arn":"arn:a","KeyState":"PendingDeletion","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","DeletionDate":1700000000.5}}"#,
        );
        let meta = parse_describe(&d).unwrap();
        assert_eq!(meta.usability(), Err(KmsErrorKind::KeyPendingDeletion));
        assert_eq!(meta.deletion_date, Some(1_700_000_000));
        let state = |state: &str| KeyMetadata {
            state: state.into(),
            ..meta.clone()
        };
        // A disconnected custom key store is a withdrawal; KMS's own transitions are not.
        assert_eq!(
            state("Unavailable").usability(),
            Err(KmsErrorKind::KeyDisabled)
        );
        assert_eq!(
            state("PendingImport").usability(),
            Err(KmsErrorKind::KeyDisabled)
        );
        assert_eq!(
            state("Updating").usability(),
            Err(KmsErrorKind::Unavailable)
        );
        assert_eq!(state("Enabled").usability(), Ok(()));
    }
}
