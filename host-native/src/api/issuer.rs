//! byok's OIDC issuer, public: the discovery document and the JWKS the clouds fetch to check
//! the tokens byok presents to their STS (`--public-url`). No token is needed and none is
//! minted here: tokens are made only inside byok, for its own exchanges. Like every answer
//! they carry `Cache-Control: no-store`; the clouds cache JWKS documents on their own terms,
//! which is why a new key is published a day before it signs. The operator can replace every
//! key at once when one may have leaked.

use axum::Json;
use axum::extract::State;
use byok_core::ApiCode;
use serde_json::Value;

use super::AppState;
use super::auth::OperatorCaller;
use super::error::{ApiError, ErrorBody};
use crate::service::issuer::{IssuerKeys, IssuerKeysReplaced};

fn not_an_issuer() -> ApiError {
    ApiError::new(
        ApiCode::NotFound,
        "byok is not an OIDC issuer here: the operator sets --public-url (BYOK_PUBLIC_URL)",
    )
}

/// The OIDC discovery document (no token needed): `issuer`, `jwks_uri`, RS256.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "issuer",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn discovery(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    s.service
        .issuer_discovery()
        .map(Json)
        .ok_or_else(not_an_issuer)
}

/// The issuer's public keys (no token needed): every key a live token may name, and the next
/// one a day before it signs. A replica that has not read the keys for five minutes (its
/// database away) answers 503 instead: one may have been replaced since.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "issuer",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn jwks(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    s.service
        .issuer_jwks_to_publish()?
        .map(Json)
        .ok_or_else(not_an_issuer)
}

/// The issuer's signing keys (operator token): each with its role now (`signing`, `next`,
/// `retiring`, `expired`, or `refused` for a row byok cannot open under its managed key), and
/// the key the answering replica signs with.
#[utoipa::path(get, path = "/v1/issuer/keys", tag = "issuer",
    responses((status = 200, body = IssuerKeys), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn keys(
    State(s): State<AppState>,
    _: OperatorCaller,
) -> Result<Json<IssuerKeys>, ApiError> {
    Ok(Json(s.service.issuer_keys().await?))
}

/// Replace the issuer's keys at once (operator token): for a signing key that may have leaked.
///
/// Every key goes (the signer and any successor already published) and a new one signs from
/// now, the only one published; the other replicas switch within a minute. Tokens the old keys
/// signed stop verifying as each cloud fetches the JWKS again. Until a cloud has fetched it,
/// it refuses byok's new tokens too, and keys reached through byok's issuer answer as
/// withdrawn (424) for that while: the price of cutting a leaked key off now.
#[utoipa::path(post, path = "/v1/issuer/keys/replace", tag = "issuer",
    responses((status = 200, body = IssuerKeysReplaced), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn replace_keys(
    State(s): State<AppState>,
    _: OperatorCaller,
) -> Result<Json<IssuerKeysReplaced>, ApiError> {
    if s.service.issuer_path().is_none() {
        return Err(not_an_issuer());
    }
    Ok(Json(s.service.replace_issuer_keys().await?))
}
