//! Encrypt, decrypt and data keys (service tokens). Binary values travel as standard base64;
//! ciphertexts as the `byok:v1:` text armor.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use base64ct::{Base64, Encoding};
use byok_core::ApiCode;
use byok_core::context::{MAX_CALLER_KEY_LEN, MAX_CALLER_PAIRS};
use byok_core::envelope::SealBuffer;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::AppState;
use super::auth::{ServiceOrg, parse_id};
use super::error::{ApiError, DataErrors, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::paths::{OrgPath, ScopePath};
use super::secret_json::SecretJson;
use crate::service::MAX_KEYS_PER_CALL;

/// Reads a context object, refusing a key given twice: the format has one value per key
/// (docs/format.md §5), and JSON readers disagree on which of two values they keep, so a
/// caller and byok could otherwise bind different contexts without noticing.
fn unique_pairs<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of string keys and string values")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = m.next_key::<String>()? {
                if out.len() > MAX_CALLER_PAIRS {
                    // Refused as too many by the context's own check; the rest is read
                    // without being kept (a body of tiny pairs would otherwise cost ten times
                    // its size in memory first).
                    m.next_value::<serde::de::IgnoredAny>()?;
                    continue;
                }
                let v = m.next_value::<String>()?;
                if out.contains_key(&k) {
                    // Shown no longer than a key may be (as core shows it): a key of
                    // megabytes is not echoed back whole.
                    let shown: String = k.chars().take(MAX_CALLER_KEY_LEN).collect();
                    return Err(serde::de::Error::custom(format!(
                        "context key {shown:?} is given twice; give each key once"
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs)
}

/// Reads a list of stored key ids, keeping at most one past [`MAX_KEYS_PER_CALL`]: more are
/// refused by the call's own check (`invalid_request`), and the rest is read without being
/// kept, so a body of a million tiny ids costs no more memory than one of a thousand.
fn capped_ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Ids;
    impl<'de> serde::de::Visitor<'de> for Ids {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of data key ids")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while out.len() <= MAX_KEYS_PER_CALL {
                match seq.next_element::<String>()? {
                    Some(id) => out.push(id),
                    None => return Ok(out),
                }
            }
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(out)
        }
    }
    d.deserialize_seq(Ids)
}

/// Encrypts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// The plaintext, base64 (at most 4 MiB decoded).
    pub plaintext: String,
    /// Encryption context: the same pairs must be given to decrypt. Keys may not start with
    /// `byok:`.
    #[serde(default, deserialize_with = "unique_pairs")]
    pub context: BTreeMap<String, String>,
}

/// A ciphertext.
#[derive(Serialize, ToSchema)]
pub struct EncryptResponse {
    /// `byok:v1:` and base64url: store it as is.
    pub ciphertext: String,
}

/// Decrypts.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecryptRequest {
    /// A ciphertext from `encrypt` (`byok:v1:...`).
    pub ciphertext: String,
    /// The context it was encrypted with.
    #[serde(default, deserialize_with = "unique_pairs")]
    pub context: BTreeMap<String, String>,
}

/// A plaintext.
#[derive(Serialize, ToSchema)]
pub struct DecryptResponse {
    /// The plaintext, base64.
    pub plaintext: String,
}

/// Asks for a data key.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DataKeyRequest {
    /// Context the wrapped key is bound to (needed again to unwrap it).
    #[serde(default, deserialize_with = "unique_pairs")]
    pub context: BTreeMap<String, String>,
}

/// A data key.
#[derive(Serialize, ToSchema)]
pub struct DataKeyResponse {
    /// The 32-byte key, base64: use it, then drop it.
    #[schema(value_type = String)]
    pub key: Zeroizing<String>,
    /// Its wrapped form, `byok:v1:...`: store it beside the data.
    pub wrapped: String,
    /// The scope key version it is wrapped under.
    pub version: u32,
}

/// Unwraps a data key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnwrapRequest {
    /// The wrapped form from `datakey`.
    pub wrapped: String,
    /// The context it was bound to.
    #[serde(default, deserialize_with = "unique_pairs")]
    pub context: BTreeMap<String, String>,
}

/// An unwrapped data key.
#[derive(Serialize, ToSchema)]
pub struct UnwrapResponse {
    /// The 32-byte key, base64.
    #[schema(value_type = String)]
    pub key: Zeroizing<String>,
}

/// Decodes the `byok:v1:` text armor, naming the field in the error.
fn armor_decode(text: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    byok_core::format::armor::decode(text).map_err(|e| {
        ApiError::new(
            ApiCode::MalformedCiphertext,
            format!("{what} is not `byok:v1:` text: {e}"),
        )
    })
}

/// Encrypt under a scope's newest key (service).
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/encrypt", tag = "data", request_body = EncryptRequest,
    params(ScopePath),
    responses((status = 200, body = EncryptResponse), DataErrors,
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn encrypt(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiPath((_, scope)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<EncryptRequest>,
) -> Result<Json<EncryptResponse>, ApiError> {
    let scope = parse_id(&scope, "scope")?;
    // Decoded straight into the buffer that is sealed in place: one allocation for the
    // plaintext and its ciphertext, wiped if anything fails before sealing.
    let mut plaintext = SealBuffer::zeroed(req.plaintext.len() / 4 * 3 + 3);
    let len = Base64::decode(&req.plaintext, plaintext.plaintext_mut())
        .map_err(|_| ApiError::invalid("plaintext must be standard base64"))?
        .len();
    plaintext.truncate(len);
    let ct = s
        .service
        .encrypt(&who, org, scope, plaintext, req.context)
        .await?;
    Ok(Json(EncryptResponse {
        ciphertext: byok_core::format::armor::encode(&ct),
    }))
}

/// Decrypt a ciphertext of this org (service).
#[utoipa::path(post, path = "/v1/orgs/{org}/decrypt", tag = "data", request_body = DecryptRequest,
    params(OrgPath),
    responses((status = 200, body = DecryptResponse), DataErrors),
    security(("bearer" = [])))]
pub async fn decrypt(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiJson(req): ApiJson<DecryptRequest>,
) -> Result<Json<DecryptResponse>, ApiError> {
    let ct = armor_decode(&req.ciphertext, "ciphertext")?;
    let pt = s.service.decrypt(&who, org, ct, req.context).await?;
    Ok(Json(DecryptResponse {
        plaintext: Base64::encode_string(&pt),
    }))
}

/// A fresh data key under a scope's newest key (service).
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/datakey", tag = "data", request_body = DataKeyRequest,
    params(ScopePath),
    responses((status = 200, body = DataKeyResponse), DataErrors),
    security(("bearer" = [])))]
pub async fn datakey(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiPath((_, scope)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<DataKeyRequest>,
) -> Result<SecretJson<DataKeyResponse>, ApiError> {
    let scope = parse_id(&scope, "scope")?;
    let out = s.service.datakey(&who, org, scope, req.context).await?;
    let wrapped = byok_core::format::armor::encode(&out.wrapped);
    let room = wrapped.len() + 128;
    let answer = DataKeyResponse {
        key: Zeroizing::new(Base64::encode_string(out.key.expose_secret())),
        wrapped,
        version: out.version,
    };
    Ok(SecretJson::new(answer, room))
}

/// Unwrap a data key of this org (service).
#[utoipa::path(post, path = "/v1/orgs/{org}/datakey/unwrap", tag = "data", request_body = UnwrapRequest,
    params(OrgPath),
    responses((status = 200, body = UnwrapResponse), DataErrors),
    security(("bearer" = [])))]
pub async fn unwrap_datakey(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiJson(req): ApiJson<UnwrapRequest>,
) -> Result<SecretJson<UnwrapResponse>, ApiError> {
    let wrapped = armor_decode(&req.wrapped, "wrapped")?;
    let key = s
        .service
        .unwrap_datakey(&who, org, &wrapped, req.context)
        .await?;
    let answer = UnwrapResponse {
        key: Zeroizing::new(Base64::encode_string(key.expose_secret())),
    };
    Ok(SecretJson::new(answer, 64))
}

/// Creates stored data keys.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStored {
    /// How many (1..=1000, default 1). Rate limits count one request for every ten keys (a
    /// thousand: a hundred requests); a call the rate limit's burst cannot pay for whole is
    /// refused (`invalid_request`, naming the most keys a call may carry).
    pub count: Option<usize>,
}

/// Reads stored data keys.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetStored {
    /// Their ids (1..=1000). Rate limits count one request for every ten.
    #[serde(deserialize_with = "capped_ids")]
    pub ids: Vec<String>,
}

/// Stored data keys in the clear.
#[derive(Serialize, ToSchema)]
pub struct StoredKeys {
    /// The keys.
    pub keys: Vec<crate::service::StoredKey>,
}

impl StoredKeys {
    fn answer(keys: Vec<crate::service::StoredKey>) -> SecretJson<Self> {
        // An entry is under 160 bytes: a 32-digit id and scope, a 44-byte key, a u32, the names.
        let room = 16 + 160 * keys.len();
        SecretJson::new(Self { keys }, room)
    }
}

/// Create data keys that byok stores (wrapped) and rewraps on rotation (service).
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/datakeys", tag = "data", request_body = CreateStored,
    params(ScopePath),
    responses((status = 201, body = StoredKeys), DataErrors),
    security(("bearer" = [])))]
pub async fn create_stored(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiPath((_, scope)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateStored>,
) -> Result<(axum::http::StatusCode, SecretJson<StoredKeys>), ApiError> {
    let scope = parse_id(&scope, "scope")?;
    let count = req.count.unwrap_or(1);
    // A count out of range is refused before it is paid for: it would cost the token (and
    // the org) keys' units for nothing.
    crate::service::check_key_count(count)?;
    s.rate.pay_for_keys(org, &who.hash, count).await?;
    let keys = s
        .service
        .create_stored_keys(&who, org, scope, count)
        .await?;
    Ok((axum::http::StatusCode::CREATED, StoredKeys::answer(keys)))
}

/// Read stored data keys by id (service).
#[utoipa::path(post, path = "/v1/orgs/{org}/datakeys/get", tag = "data", request_body = GetStored,
    params(OrgPath),
    responses((status = 200, body = StoredKeys), DataErrors),
    security(("bearer" = [])))]
pub async fn get_stored(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiJson(req): ApiJson<GetStored>,
) -> Result<SecretJson<StoredKeys>, ApiError> {
    // Ids that are no ids are refused before they are paid for.
    let ids = crate::service::stored_ids(&req.ids)?;
    s.rate.pay_for_keys(org, &who.hash, ids.len()).await?;
    let keys = s.service.get_stored_keys(&who, org, &ids).await?;
    Ok(StoredKeys::answer(keys))
}

/// Stored data keys to delete.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteStored {
    /// Their ids (1..=1000). Rate limits count one request for every ten.
    #[serde(deserialize_with = "capped_ids")]
    pub ids: Vec<String>,
}

/// How many stored data keys a delete removed.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// Keys deleted; ids not stored (never, already deleted, or another org's) are skipped.
    pub deleted: u64,
}

/// Delete stored data keys by id, for good (service): what was sealed under one can never be
/// opened again, by anyone (a record's crypto-shredding). The org's room for stored keys grows
/// by as many. Recorded in the audit log (`data_keys_deleted`, with the count and the ids).
#[utoipa::path(post, path = "/v1/orgs/{org}/datakeys/delete", tag = "data", request_body = DeleteStored,
    params(OrgPath),
    responses((status = 200, body = Deleted), DataErrors),
    security(("bearer" = [])))]
pub async fn delete_stored(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiJson(req): ApiJson<DeleteStored>,
) -> Result<Json<Deleted>, ApiError> {
    let ids = crate::service::stored_ids(&req.ids)?;
    s.rate.pay_for_keys(org, &who.hash, ids.len()).await?;
    let deleted = s.service.delete_stored_keys(org, &ids).await?;
    Ok(Json(Deleted { deleted }))
}

/// Asks for a lease.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// Who the lease is for: the edge deployment asking (1 to 128 of `A-Z a-z 0-9 . _ : / -`),
    /// recorded in the lease's audit event, so that the log says which edge holds keys.
    pub audience: Option<String>,
}

/// Lease a scope's keys for the edge (service): every live version, until `expires_at`. Never
/// for the org scope (its key is the root key). Renewal is refused once the scope is paused or
/// revoked, so the lease TTL bounds how long an edge keeps using a key after either.
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/lease", tag = "data", request_body = LeaseRequest,
    params(ScopePath),
    responses((status = 200, body = byok_core::lease::Document), DataErrors),
    security(("bearer" = [])))]
pub async fn lease(
    State(s): State<AppState>,
    ServiceOrg(org, who): ServiceOrg,
    ApiPath((_, scope)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<LeaseRequest>,
) -> Result<axum::response::Response, ApiError> {
    let scope = parse_id(&scope, "scope")?;
    let bad = req.audience.as_deref().is_some_and(|a| {
        !(1..=128).contains(&a.len())
            || !a
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b))
    });
    if bad {
        return Err(ApiError::invalid(
            "audience is 1 to 128 of A-Z a-z 0-9 . _ : / - (the edge deployment asking)",
        ));
    }
    let lease = s
        .service
        .lease(
            &who,
            org,
            scope,
            &super::error::request_id(),
            req.audience.as_deref(),
        )
        .await?;
    // Core writes the document to one buffer, sized up front: the body owns it and wipes it.
    Ok(super::secret_json::wiped_body(lease.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists past their limits are read whole but not kept: one element past the limit is, so
    /// that the call's own check refuses them with its code and message.
    #[test]
    fn long_lists_are_kept_only_to_one_past_their_limit() {
        let ids = format!("{{\"ids\": [{}\"x\"]}}", "\"x\",".repeat(200_000));
        let got: GetStored = serde_json::from_str(&ids).unwrap();
        assert_eq!(got.ids.len(), MAX_KEYS_PER_CALL + 1);
        let got: DeleteStored = serde_json::from_str(&ids).unwrap();
        assert_eq!(got.ids.len(), MAX_KEYS_PER_CALL + 1);
        let few: GetStored = serde_json::from_str(r#"{"ids": ["a", "b"]}"#).unwrap();
        assert_eq!(few.ids, ["a", "b"]);
        let pairs: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\": \"v\"")).collect();
        let body = format!(
            "{{\"plaintext\": \"\", \"context\": {{{}}}}}",
            pairs.join(",")
        );
        let got: EncryptRequest = serde_json::from_str(&body).unwrap();
        assert_eq!(got.context.len(), MAX_CALLER_PAIRS + 1);
        // Within the limit a key given twice is still refused.
        let twice = r#"{"plaintext": "", "context": {"a": "1", "a": "2"}}"#;
        let e = serde_json::from_str::<EncryptRequest>(twice).err().unwrap();
        assert!(e.to_string().contains("given twice"), "{e}");
        // A long key given twice is named, not echoed whole.
        let long = "k".repeat(100_000);
        let twice = format!(r#"{{"plaintext": "", "context": {{"{long}": "1", "{long}": "2"}}}}"#);
        let e = serde_json::from_str::<EncryptRequest>(&twice)
            .err()
            .unwrap();
        assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
        // And what is past the limit must still be JSON.
        let broken = format!("{{\"ids\": [{}{{]}}", "\"x\",".repeat(2_000));
        assert!(serde_json::from_str::<GetStored>(&broken).is_err());
    }
}
