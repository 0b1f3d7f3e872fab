//! Orgs and tokens.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::{AdminCaller, Caller, OperatorCaller};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath};
use super::paths::OrgPath;
use super::secret_json::SecretJson;
use crate::store::Role;

/// Creates an org.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Display name.
    pub name: String,
    /// How long unwrapped keys stay in memory, in ms (0: ask the key holder on every use).
    /// Defaults to the server's setting.
    pub unwrap_cache_ttl_ms: Option<u64>,
    /// How long an edge lease lasts, in ms (default 60000; 0: no leases). It bounds how long an
    /// edge keeps using a key after a pause or revoke.
    pub lease_ttl_ms: Option<u64>,
    /// Outage grace, in ms (default 0; at most 86400000, one day; needs a cache TTL above 0):
    /// how long past the cache TTL cached keys keep serving while the customer's KMS is
    /// unreachable. Never after a denial; it adds to the withdrawal bound of a customer who
    /// withdraws by making their KMS unreachable (disable the key or remove the grant instead).
    pub outage_grace_ms: Option<u64>,
}

/// Changes an org's settings (org admin). A field left out keeps its value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    /// Unwrap cache TTL, in ms (0: ask the key holder on every use), at most
    /// `max_unwrap_cache_ttl_ms`. The withdrawal bound: lower it to have a withdrawal obeyed
    /// sooner, at the price of more calls to your KMS.
    pub unwrap_cache_ttl_ms: Option<u64>,
    /// Edge lease TTL, in ms (0: no leases), at most `max_lease_ttl_ms`. Leases already issued
    /// keep their end.
    pub lease_ttl_ms: Option<u64>,
    /// Outage grace, in ms (0: none; at most 86400000, one day; needs a cache TTL above 0).
    pub outage_grace_ms: Option<u64>,
}

/// A new org and its first admin token (shown once).
#[derive(Serialize, ToSchema)]
pub struct OrgCreated {
    /// The org id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The first admin token. Store it now: it is not shown again.
    #[schema(value_type = String)]
    pub admin_token: zeroize::Zeroizing<String>,
}

/// An org's summary.
#[derive(Serialize, ToSchema)]
pub struct OrgInfo {
    /// The org id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The key that wraps its root key by default (`managed` or `cmk:N`).
    pub default_key: String,
    /// Unwrap cache TTL in ms.
    pub unwrap_cache_ttl_ms: u64,
    /// Outage grace in ms: how long past the TTL cached keys keep serving while the KMS is
    /// unreachable (0: none).
    pub outage_grace_ms: u64,
    /// Edge lease TTL in ms (0: no leases).
    pub lease_ttl_ms: u64,
    /// The most the org's admin may set `unwrap_cache_ttl_ms` to (what the operator created
    /// the org with).
    pub max_unwrap_cache_ttl_ms: u64,
    /// The most the org's admin may set `lease_ttl_ms` to.
    pub max_lease_ttl_ms: u64,
    /// Number of scopes, the org scope included.
    pub scopes: u64,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// When the customer last claimed the org (`POST /v1/orgs/{org}/tokens/claim`), ms since
    /// the epoch; `null` if never: the admin token the operator was handed may still work.
    pub claimed_at: Option<i64>,
    /// Stored data keys the org keeps.
    pub stored_keys: u64,
    /// The most it may keep (`--max-stored-keys`); `null`: no limit.
    pub max_stored_keys: Option<u64>,
}

/// Create an org (operator token).
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = OrgCreated), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_org(
    State(s): State<AppState>,
    _: OperatorCaller,
    ApiJson(req): ApiJson<CreateOrg>,
) -> Result<(StatusCode, SecretJson<OrgCreated>), ApiError> {
    let ttl = req.unwrap_cache_ttl_ms.map(Duration::from_millis);
    if ttl.is_some_and(|t| t > Duration::from_secs(86_400)) {
        return Err(ApiError::invalid("unwrap_cache_ttl_ms is at most one day"));
    }
    let lease = req.lease_ttl_ms.map(Duration::from_millis);
    if lease.is_some_and(|t| t > Duration::from_secs(3600)) {
        return Err(ApiError::invalid("lease_ttl_ms is at most one hour"));
    }
    let grace = req.outage_grace_ms.map(Duration::from_millis);
    let (id, token) = s.service.create_org(&req.name, ttl, lease, grace).await?;
    tracing::info!(org = %id, "organization created");
    Ok((
        StatusCode::CREATED,
        SecretJson::new(
            OrgCreated {
                id: id.to_string(),
                name: req.name,
                admin_token: token,
            },
            512,
        ),
    ))
}

/// An org's summary (any token of the org).
#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "orgs",
    params(OrgPath),
    responses((status = 200, body = OrgInfo), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_org(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<OrgInfo>, ApiError> {
    let org = caller.org(&org, &[Role::Admin, Role::Service, Role::Auditor])?;
    Ok(Json(org_info(&s, org).await?))
}

/// Change an org's settings (admin): the unwrap cache TTL and lease TTL (up to what the org
/// was created with) and the outage grace. Answers with the org as it is now; a change is
/// audited (`org_settings_changed`).
#[utoipa::path(patch, path = "/v1/orgs/{org}", tag = "orgs", request_body = UpdateOrg,
    params(OrgPath),
    responses((status = 200, body = OrgInfo), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_org(
    State(s): State<AppState>,
    AdminCaller(org, _): AdminCaller,
    ApiJson(req): ApiJson<UpdateOrg>,
) -> Result<Json<OrgInfo>, ApiError> {
    let change = crate::service::SettingsChange {
        unwrap_cache_ttl: req.unwrap_cache_ttl_ms.map(Duration::from_millis),
        lease_ttl: req.lease_ttl_ms.map(Duration::from_millis),
        outage_grace: req.outage_grace_ms.map(Duration::from_millis),
    };
    s.service.update_org(org, change).await?;
    Ok(Json(org_info(&s, org).await?))
}

async fn org_info(s: &AppState, org: byok_core::ScopeId) -> Result<OrgInfo, ApiError> {
    let cell = s.service.org(org).await?;
    let meta = cell.meta();
    let snap = cell.snapshot();
    Ok(OrgInfo {
        id: org.to_string(),
        name: meta.name,
        default_key: crate::store::holder_name(snap.default_holder()),
        unwrap_cache_ttl_ms: meta.unwrap_cache_ttl_ms,
        outage_grace_ms: meta.outage_grace_ms,
        lease_ttl_ms: meta.lease_ttl_ms,
        max_unwrap_cache_ttl_ms: meta.max_unwrap_cache_ttl_ms,
        max_lease_ttl_ms: meta.max_lease_ttl_ms,
        scopes: u64::try_from(snap.len()).unwrap_or(u64::MAX),
        created_at: meta.created_at,
        claimed_at: s.service.claimed_at(org).await?,
        stored_keys: s.service.stored_keys(org).await?,
        max_stored_keys: s.service.max_stored_keys(),
    })
}
