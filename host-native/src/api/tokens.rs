//! Tokens: create (with an optional expiry), list, revoke; the operator rotates its own token
//! and lists and revokes its peers. A revoked or expired token gets 401 on its next request.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use byok_core::ApiCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::audit::receipt;
use super::auth::{AdminCaller, Caller};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::paths::OrgPath;
use super::secret_json::SecretJson;
use crate::service::TokenView;
use crate::service::audit_log::Withdrawal;
use crate::store::{self, Role, TokenId};
use byok_core::audit_log::receipt::Receipt;

/// The longest a token may be created for: ten years, in seconds.
const MAX_EXPIRES_IN_S: u64 = 10 * 365 * 86_400;

/// Creates a token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `admin`, `service` or `auditor`.
    pub role: Role,
    /// What it is for (shown in the audit log and the token list).
    pub name: String,
    /// Seconds until it stops working (default: never). At most ten years.
    pub expires_in_s: Option<u64>,
}

/// A new token (shown once).
#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    /// The token. Store it now: only its hash is kept.
    #[schema(value_type = String)]
    pub token: zeroize::Zeroizing<String>,
    /// Its id, to list and revoke it by.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// When it stops working, if ever (ms since the epoch).
    pub expires_at: Option<i64>,
}

fn token_id(id: &str) -> Result<TokenId, ApiError> {
    TokenId::parse(id).ok_or_else(|| ApiError::invalid("token id must be 16 hex digits"))
}

fn operator(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Operator {
        Ok(())
    } else {
        Err(ApiError::new(
            ApiCode::Forbidden,
            "only an operator token manages operator tokens",
        ))
    }
}

/// Create a token for the org (admin).
#[utoipa::path(post, path = "/v1/orgs/{org}/tokens", tag = "tokens", request_body = CreateToken,
    params(OrgPath),
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    AdminCaller(org, caller): AdminCaller,
    ApiJson(req): ApiJson<CreateToken>,
) -> Result<(StatusCode, SecretJson<TokenCreated>), ApiError> {
    let expires_at = match req.expires_in_s {
        None => None,
        Some(0) => return Err(ApiError::invalid("expires_in_s must be at least 1")),
        Some(n) if n > MAX_EXPIRES_IN_S => {
            return Err(ApiError::invalid("expires_in_s is at most ten years"));
        }
        Some(n) => Some(store::now_ms().saturating_add(i64::try_from(n * 1000).unwrap_or(0))),
    };
    // A token never makes one that outlives it: an admin token about to expire would otherwise
    // leave an admin token that never does. Without a requested expiry, the creator's applies.
    let expires_at = match (expires_at, caller.auth.grant.expires_at) {
        (Some(asked), Some(own)) if asked > own => {
            return Err(ApiError::invalid(format!(
                "a token cannot outlive the token that creates it: this one expires in {} s; ask for expires_in_s up to that",
                (own - store::now_ms()).max(0) / 1000
            )));
        }
        (None, own) => own,
        (asked, _) => asked,
    };
    let (id, token) = s
        .service
        .create_token(org, req.role, &req.name, expires_at)
        .await?;
    Ok((
        StatusCode::CREATED,
        SecretJson::new(
            TokenCreated {
                token,
                id: id.to_string(),
                role: req.role,
                expires_at,
            },
            256,
        ),
    ))
}

/// Takes the org over from whoever created it.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ClaimOrg {
    /// The new admin token's name (default `admin`).
    pub name: Option<String>,
}

/// The org claimed: its one admin token now (shown once), and the admin tokens revoked.
#[derive(Serialize, ToSchema)]
pub struct OrgClaimed {
    /// The new admin token. Store it now: only its hash is kept.
    #[schema(value_type = String)]
    pub token: zeroize::Zeroizing<String>,
    /// Its id.
    pub id: String,
    /// When it stops working, if ever (ms since the epoch): when the calling token does.
    pub expires_at: Option<i64>,
    /// The admin tokens revoked, the calling one included.
    pub revoked: Vec<String>,
    /// The withdrawal's receipt (`org_claimed`, the revoked tokens; see `ScopeWithdrawn`):
    /// proof that the revocations are in the org's log. `null` only if the log could not be
    /// signed.
    pub receipt: Option<Receipt>,
}

/// Claim the org (admin): a new admin token, and every other admin token of the org revoked,
/// the caller's included, in one step. The operator who created the org was handed its first
/// admin token; after a claim, no admin token anyone else may have seen works. Service and
/// auditor tokens stay. Audited (`token_revoked` and `token_created`, with `claim`); the
/// answer carries the receipt (`byok audit verify-receipt` checks it offline).
#[utoipa::path(post, path = "/v1/orgs/{org}/tokens/claim", tag = "tokens",
    request_body = ClaimOrg, params(OrgPath),
    responses((status = 201, body = OrgClaimed), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn claim(
    State(s): State<AppState>,
    AdminCaller(org, caller): AdminCaller,
    ApiJson(req): ApiJson<ClaimOrg>,
) -> Result<(StatusCode, SecretJson<OrgClaimed>), ApiError> {
    let name = req.name.as_deref().unwrap_or("admin");
    let (id, token, revoked) = s.service.claim_org(&caller.auth, org, name).await?;
    let revoked: Vec<String> = revoked.iter().map(ToString::to_string).collect();
    let w = Withdrawal::Claim {
        revoked: revoked.clone(),
    };
    let receipt = receipt(&s, org, w).await;
    // The receipt's proof and checkpoint: a few KiB.
    let room = 8192 + 40 * revoked.len();
    Ok((
        StatusCode::CREATED,
        SecretJson::new(
            OrgClaimed {
                token,
                id: id.to_string(),
                expires_at: caller.auth.grant.expires_at,
                revoked,
                receipt,
            },
            room,
        ),
    ))
}

/// The org's tokens (admin): name, role, created, last used, expiry; never the secret.
#[utoipa::path(get, path = "/v1/orgs/{org}/tokens", tag = "tokens",
    params(OrgPath),
    responses((status = 200, body = [TokenView]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    Ok(Json(s.service.list_tokens(Some(org)).await?))
}

/// Who a token is: what a client that holds only the token (the setup page, a script) needs
/// to find its org and know what it may do.
#[derive(Serialize, ToSchema)]
pub struct Whoami {
    /// The token's org (32 hex digits); `null` for an operator token.
    pub org: Option<String>,
    /// Its role.
    pub role: Role,
    /// The token's id (16 hex digits), as the token list shows it.
    pub token_id: String,
    /// Its name.
    pub name: String,
    /// When it stops working, if ever (ms since the epoch).
    pub expires_at: Option<i64>,
}

/// The calling token: its org, role, id and name (any token). A revoked or expired token gets
/// 401 here as everywhere.
#[utoipa::path(get, path = "/v1/whoami", tag = "tokens",
    responses((status = 200, body = Whoami), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn whoami(caller: Caller) -> Json<Whoami> {
    Json(Whoami {
        org: caller.org.map(|o| o.to_string()),
        role: caller.role,
        token_id: caller.auth.grant.id.to_string(),
        name: caller.auth.grant.name.clone(),
        expires_at: caller.auth.grant.expires_at,
    })
}

/// A token revoked, with the withdrawal's receipt.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TokenRevoked {
    /// The token's id.
    pub id: String,
    /// The receipt (see `ScopeWithdrawn`); `null` only if the log could not be signed.
    pub receipt: Option<Receipt>,
}

/// Revoke one of the org's tokens (admin). Its next request gets 401. The answer carries the
/// receipt.
#[utoipa::path(delete, path = "/v1/orgs/{org}/tokens/{id}", tag = "tokens",
    params(OrgPath,
        ("id" = String, Path, description = "token id (16 hex digits)", pattern = "^[0-9a-fA-F]{16}$")),
    responses((status = 200, body = TokenRevoked), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((org, id)): ApiPath<(String, String)>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    let id = token_id(&id)?;
    s.service.revoke_token(Some(org), id).await?;
    let w = Withdrawal::Token { id: id.to_string() };
    Ok(Json(TokenRevoked {
        id: id.to_string(),
        receipt: receipt(&s, org, w).await,
    }))
}

/// The operator tokens (operator).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = [TokenView]), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_operator(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    operator(&caller)?;
    Ok(Json(s.service.list_tokens(None).await?))
}

/// Revoke an operator token (operator). If the last one goes, the next start prints a new one.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "token id (16 hex digits)", pattern = "^[0-9a-fA-F]{16}$")),
    responses((status = 204, description = "revoked"), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_operator(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    operator(&caller)?;
    s.service.revoke_token(None, token_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the calling operator token (operator): a new one is returned (shown once) and the
/// calling one stops working at once.
#[utoipa::path(post, path = "/v1/tokens/rotate", tag = "tokens",
    responses((status = 201, body = TokenCreated), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_operator(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, SecretJson<TokenCreated>), ApiError> {
    operator(&caller)?;
    let (id, token, expires_at) = s.service.rotate_operator(&caller.auth).await?;
    Ok((
        StatusCode::CREATED,
        SecretJson::new(
            TokenCreated {
                token,
                id: id.to_string(),
                role: Role::Operator,
                expires_at,
            },
            256,
        ),
    ))
}
