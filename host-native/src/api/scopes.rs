//! The scope tree and its actions: create, list, get, pause, resume, revoke, rotate.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use byok_core::ScopeId;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::audit::receipt;
use super::auth::{AdminCaller, Caller, parse_id};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::paths::{OrgPath, ScopePath};
use crate::service::audit_log::Withdrawal;
use crate::service::{self, ScopeView};
use crate::store::Role;
use byok_core::audit_log::receipt::Receipt;

/// Creates a scope.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScope {
    /// The parent scope's id (the org id for a top-level scope).
    pub parent: String,
    /// Display name.
    pub name: String,
}

/// Confirms a revocation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// The scope id, typed again: revoking destroys the keys of the scope and its subtree for
    /// good.
    pub confirm: String,
}

/// Create a scope (admin).
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes", tag = "scopes", request_body = CreateScope,
    params(OrgPath),
    responses((status = 201, body = ScopeView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_scope(
    State(s): State<AppState>,
    AdminCaller(org, _): AdminCaller,
    ApiJson(req): ApiJson<CreateScope>,
) -> Result<(StatusCode, Json<ScopeView>), ApiError> {
    let parent = parse_id(&req.parent, "parent scope")?;
    let view = s.service.create_scope(org, parent, &req.name).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// List the org's scopes, parents before children (admin, auditor).
#[utoipa::path(get, path = "/v1/orgs/{org}/scopes", tag = "scopes",
    params(OrgPath),
    responses((status = 200, body = Vec<ScopeView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_scopes(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Vec<ScopeView>>, ApiError> {
    let org = caller.org(&org, &[Role::Admin, Role::Auditor])?;
    Ok(Json(s.service.list_scopes(org).await?))
}

/// One scope with its effective state (any token of the org).
#[utoipa::path(get, path = "/v1/orgs/{org}/scopes/{scope}", tag = "scopes",
    params(ScopePath),
    responses((status = 200, body = ScopeView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_scope(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((org, scope)): ApiPath<(String, String)>,
) -> Result<Json<ScopeView>, ApiError> {
    let org = caller.org(&org, &[Role::Admin, Role::Service, Role::Auditor])?;
    let scope = parse_id(&scope, "scope")?;
    Ok(Json(s.service.get_scope(org, scope).await?))
}

/// A scope after a pause or revoke, with the withdrawal's receipt.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ScopeWithdrawn {
    /// The scope as it is now.
    #[serde(flatten)]
    pub scope: ScopeView,
    /// The receipt: the logged withdrawal, its inclusion proof and a signed checkpoint
    /// (`byok audit verify-receipt` checks it offline). `null` only if the log could not be
    /// signed; the withdrawal stands either way.
    pub receipt: Option<Receipt>,
}

/// Pause a scope and everything under it (admin). Nothing is deleted; resume undoes it. The
/// answer carries the receipt.
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/pause", tag = "scopes",
    params(ScopePath),
    responses((status = 200, body = ScopeWithdrawn), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn pause(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((org, scope)): ApiPath<(String, String)>,
) -> Result<Json<ScopeWithdrawn>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    let scope = parse_id(&scope, "scope")?;
    let view = s.service.pause(org, scope).await?;
    let w = Withdrawal::Scope {
        action: "scope_paused",
        scope,
    };
    Ok(Json(ScopeWithdrawn {
        scope: view,
        receipt: receipt(&s, org, w).await,
    }))
}

/// Resume a paused scope (admin). A paused ancestor still applies.
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/resume", tag = "scopes",
    params(ScopePath),
    responses((status = 200, body = ScopeView), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(ids): ApiPath<(String, String)>,
) -> Result<Json<ScopeView>, ApiError> {
    admin_on_scope(&caller, ids, |org, scope| s.service.resume(org, scope)).await
}

/// What resume and rotate share: an admin call on one scope (the org checked first, then
/// the scope id parsed) that answers with the scope as it is afterwards.
async fn admin_on_scope<F>(
    caller: &Caller,
    (org, scope): (String, String),
    act: impl FnOnce(ScopeId, ScopeId) -> F,
) -> Result<Json<ScopeView>, ApiError>
where
    F: Future<Output = service::Result<ScopeView>>,
{
    let org = caller.org(&org, &[Role::Admin])?;
    Ok(Json(act(org, parse_id(&scope, "scope")?).await?))
}

/// Revoke a scope and everything under it, for good (admin): its keys are destroyed. The
/// answer carries the receipt.
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/revoke", tag = "scopes", request_body = Revoke,
    params(ScopePath),
    responses((status = 200, body = ScopeWithdrawn), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(s): State<AppState>,
    AdminCaller(org, _): AdminCaller,
    ApiPath((_, scope)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<Revoke>,
) -> Result<Json<ScopeWithdrawn>, ApiError> {
    let scope = parse_id(&scope, "scope")?;
    let view = s.service.revoke(org, scope, &req.confirm).await?;
    tracing::warn!(org = %org, scope = %scope, "scope revoked");
    let w = Withdrawal::Scope {
        action: "scope_revoked",
        scope,
    };
    Ok(Json(ScopeWithdrawn {
        scope: view,
        receipt: receipt(&s, org, w).await,
    }))
}

/// Add a key version to a scope (admin). New data uses it; old versions still decrypt.
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/rotate", tag = "scopes",
    params(ScopePath),
    responses((status = 200, body = ScopeView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(ids): ApiPath<(String, String)>,
) -> Result<Json<ScopeView>, ApiError> {
    admin_on_scope(&caller, ids, |org, scope| s.service.rotate(org, scope)).await
}

/// Retires a key version.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retire {
    /// The version to retire (not the newest).
    pub version: u32,
}

/// Retire an old key version of a scope (admin): stored data keys and child scope keys move to
/// the newest version in the background (follow it at `/v1/orgs/{org}/job`), then the old
/// version is destroyed. Resumes after a crash.
#[utoipa::path(post, path = "/v1/orgs/{org}/scopes/{scope}/retire", tag = "scopes", request_body = Retire,
    params(ScopePath),
    responses((status = 202, description = "started"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retire(
    State(s): State<AppState>,
    AdminCaller(org, _): AdminCaller,
    ApiPath((_, scope)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<Retire>,
) -> Result<StatusCode, ApiError> {
    let scope = parse_id(&scope, "scope")?;
    s.service.retire(org, scope, req.version).await?;
    let service = s.service.clone();
    // Stopped with the server (its KMS calls' rows then written before it ends).
    s.service.background().spawn(async move {
        if let Err(e) = service.run_retire(org).await {
            tracing::warn!(org = %org, error = ?e, "retirement stopped; it resumes on the next start");
        }
    });
    Ok(StatusCode::ACCEPTED)
}
