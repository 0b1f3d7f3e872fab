//! The audit log: read and verify (auditor, admin).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::paths::OrgPath;
use crate::store::{AuditRow, Role, Verification};

/// Who may read and verify the log.
const READERS: &[Role] = &[Role::Auditor, Role::Admin];

/// Paging through the log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Return rows after this sequence number (default 0: from the start).
    pub after: Option<i64>,
    /// At most this many rows (1..=1000, default 100).
    pub limit: Option<i64>,
}

/// Read the org's audit log (auditor, admin).
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "audit",
    params(OrgPath,
        ("after" = Option<i64>, Query, description = "rows after this sequence number (default 0)"),
        ("limit" = Option<i64>, Query, description = "at most this many rows, 1..=1000 (default 100)")),
    responses((status = 200, body = Vec<AuditRow>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read(
    State(s): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
    Query(page): Query<Page>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let org = caller.org(&org, READERS)?;
    let rows = s
        .service
        .audit(
            org,
            page.after.unwrap_or(0).max(0),
            page.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(rows))
}

/// Check the org's audit chain; names the first broken row (auditor, admin).
#[utoipa::path(get, path = "/v1/orgs/{org}/audit/verify", tag = "audit",
    params(OrgPath),
    responses((status = 200, body = Verification), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn verify(
    State(s): State<AppState>,
    caller: Caller,
    Path(org): Path<String>,
) -> Result<Json<Verification>, ApiError> {
    let org = caller.org(&org, READERS)?;
    Ok(Json(s.service.verify_audit(org).await?))
}
