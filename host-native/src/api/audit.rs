//! The audit log: read and verify (auditor, admin); checkpoints, proofs and the verifier key
//! of the transparency log; receipts of withdrawals.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use byok_core::ApiCode;
use byok_core::ScopeId;
use byok_core::audit_log::proof::{ConsistencyProof, InclusionProof};
use byok_core::audit_log::receipt::{Entry, Receipt};
use serde::Deserialize;

use super::AppState;
use super::auth::{AdminOrg, ReaderOrg, parse_id};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery};
use super::paths::OrgPath;
use crate::service::audit_log::Withdrawal;
use crate::store::{AuditFilter, AuditRow, TokenId, Verification};

/// Paging through the log, and what to look for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Return rows after this sequence number (default 0: from the start).
    pub after: Option<i64>,
    /// At most this many rows (1..=1000, default 100).
    pub limit: Option<i64>,
    /// Only events of this type.
    pub kind: Option<String>,
    /// Only events about this scope.
    pub scope: Option<String>,
    /// Only events written by requests with this token id.
    pub actor: Option<String>,
    /// Only rows at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Only rows before this time (ms since the epoch).
    pub until: Option<i64>,
    /// Only rows before this sequence number (to page back from the newest).
    pub before: Option<i64>,
    /// `true`: the newest rows first (the last `limit` that match). Default: oldest first.
    pub newest: Option<bool>,
}

/// Read the org's audit log, optionally filtered: "did token X touch scope Y since Z" is
/// `?actor=X&scope=Y&since=Z` (auditor, admin). Page on with `after` = the last `seq` seen.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "audit",
    params(OrgPath,
        ("after" = Option<i64>, Query, description = "rows after this sequence number (default 0)"),
        ("limit" = Option<i64>, Query, description = "at most this many rows, 1..=1000 (default 100)"),
        ("kind" = Option<String>, Query, description = "only events of this type (`scope_paused`, `lease_issued`, `scope_used`, ...)"),
        ("scope" = Option<String>, Query, description = "only events about this scope (32 hex digits)"),
        ("actor" = Option<String>, Query, description = "only events written by requests with this token id (16 hex digits)"),
        ("since" = Option<i64>, Query, description = "only rows at or after this time, ms since the epoch"),
        ("until" = Option<i64>, Query, description = "only rows before this time, ms since the epoch"),
        ("before" = Option<i64>, Query, description = "only rows before this sequence number (page back from the newest)"),
        ("newest" = Option<bool>, Query, description = "`true`: newest first, the last `limit` rows that match")),
    responses((status = 200, body = Vec<AuditRow>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn read(
    State(s): State<AppState>,
    ReaderOrg(org): ReaderOrg,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let scope = page
        .scope
        .map(|s| parse_id(&s, "scope").map(|id| id.to_string()))
        .transpose()?;
    let actor = page
        .actor
        .map(|a| {
            TokenId::parse(&a)
                .ok_or_else(|| ApiError::invalid("actor is a token id: 16 hex digits"))
        })
        .transpose()?;
    let filter = AuditFilter {
        kind: page.kind,
        scope,
        actor: actor.map(|a| a.to_string()),
        since: page.since,
        until: page.until,
        before: page.before,
        newest: page.newest.unwrap_or(false),
    };
    let rows = s
        .service
        .audit(
            org,
            page.after.unwrap_or(0).max(0),
            page_limit(page.limit)?,
            &filter,
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
    ReaderOrg(org): ReaderOrg,
) -> Result<Json<Verification>, ApiError> {
    Ok(Json(s.service.verify_audit(org).await?))
}

/// The log's public key, in the C2SP note verifier-key form.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct VerifierKey {
    /// `name+keyid+base64(0x01 || Ed25519 public key)`: pin it, and check checkpoints and
    /// receipts with it (`byok audit verify-receipt`).
    pub verifier_key: String,
}

/// The audit log's verifier key (no token needed: it is public).
#[utoipa::path(get, path = "/v1/audit/verifier-key", tag = "audit",
    responses((status = 200, body = VerifierKey)))]
pub async fn verifier_key(State(s): State<AppState>) -> Result<Json<VerifierKey>, ApiError> {
    Ok(Json(VerifierKey {
        verifier_key: s.service.verifier_key()?,
    }))
}

/// The org's newest signed checkpoint, a C2SP `tlog-checkpoint` in a `signed-note`, as text
/// (auditor, admin). Signed now if the log grew since the last one.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit/checkpoint", tag = "audit",
    params(OrgPath),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn checkpoint(
    State(s): State<AppState>,
    ReaderOrg(org): ReaderOrg,
) -> Result<Response, ApiError> {
    let cp = s.service.checkpoint(org).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        cp.note,
    )
        .into_response())
}

/// One signed checkpoint as the list shows it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CheckpointView {
    /// Tree size.
    pub size: u64,
    /// When signed, ms since the Unix epoch.
    pub at: i64,
    /// The signed note.
    pub note: String,
}

/// Paging through checkpoints.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPage {
    /// Checkpoints of a size above this (default 0).
    pub after: Option<u64>,
    /// At most this many (1..=1000, default 100).
    pub limit: Option<i64>,
}

/// Every checkpoint byok signed for the org, oldest first (auditor, admin): a verifier bisects
/// a rewritten log against them.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit/checkpoints", tag = "audit",
    params(OrgPath, CheckpointPage),
    responses((status = 200, body = Vec<CheckpointView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn checkpoints(
    State(s): State<AppState>,
    ReaderOrg(org): ReaderOrg,
    ApiQuery(page): ApiQuery<CheckpointPage>,
) -> Result<Json<Vec<CheckpointView>>, ApiError> {
    let list = s
        .service
        .checkpoints(org, page.after.unwrap_or(0), page_limit(page.limit)?)
        .await?;
    Ok(Json(
        list.into_iter()
            .map(|c| CheckpointView {
                size: c.size,
                at: c.at,
                note: c.note,
            })
            .collect(),
    ))
}

/// Which inclusion proof.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// The row's sequence number.
    pub seq: u64,
    /// The tree size (default: the newest checkpoint's).
    pub size: Option<u64>,
}

/// A row and its inclusion proof.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Included {
    /// The row as its leaf holds it (`seq`, `at`, `event`).
    pub entry: Entry,
    /// Its RFC 6962 inclusion proof.
    pub proof: InclusionProof,
}

/// One row and its RFC 6962 inclusion proof in the org's tree (auditor, admin).
#[utoipa::path(get, path = "/v1/orgs/{org}/audit/proof/inclusion", tag = "audit",
    params(OrgPath, InclusionQuery),
    responses((status = 200, body = Included), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn inclusion(
    State(s): State<AppState>,
    ReaderOrg(org): ReaderOrg,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<Included>, ApiError> {
    let proof = s.service.inclusion(org, q.seq, q.size).await?;
    let after = i64::try_from(proof.index).unwrap_or(i64::MAX);
    // The row right after `index` must be row `index + 1` itself: with rows missing from
    // storage the next one would be shown under this row's number.
    let row = s
        .service
        .audit(org, after, 1, &AuditFilter::default())
        .await?
        .into_iter()
        .next()
        .filter(|r| after.checked_add(1) == Some(r.seq))
        .ok_or_else(|| ApiError::new(ApiCode::NotFound, "no such row"))?;
    let entry = Entry {
        seq: proof.index + 1,
        at: row.at,
        event: row.event,
    };
    Ok(Json(Included { entry, proof }))
}

/// Which consistency proof.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The older tree's size: of a checkpoint you kept, which the newer tree must extend
    /// (0 proves nothing).
    pub from: u64,
    /// The newer tree's size (default: the newest checkpoint's).
    pub to: Option<u64>,
}

/// The RFC 6962 consistency proof between two sizes of the org's tree (auditor, admin).
#[utoipa::path(get, path = "/v1/orgs/{org}/audit/proof/consistency", tag = "audit",
    params(OrgPath, ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn consistency(
    State(s): State<AppState>,
    ReaderOrg(org): ReaderOrg,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    Ok(Json(s.service.consistency(org, q.from, q.to).await?))
}

/// The receipt of a withdrawal that just committed: `None` (and a warning in the logs) if the
/// log could not be signed; the withdrawal stands either way, and a proof of its event can be
/// fetched later.
pub(super) async fn receipt(s: &AppState, org: ScopeId, w: Withdrawal) -> Option<Receipt> {
    match s.service.receipt(org, w).await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(org = %org, error = ?e, "withdrawal committed, but its receipt could not be made");
            None
        }
    }
}

/// A witness key to register.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Witness {
    /// The witness's C2SP note verifier key for Ed25519 cosignatures:
    /// `name+keyid+base64(0x04 || public key)`.
    pub witness_key: String,
}

/// The witness registered.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WitnessView {
    /// Its name, as its cosignature lines carry it.
    pub witness: String,
}

/// Register the org's witness (admin): a cosigner the customer runs, whose cosignatures
/// (C2SP `tlog-cosignature`) byok then accepts and serves with its checkpoints.
#[utoipa::path(put, path = "/v1/orgs/{org}/audit/witness", tag = "audit", request_body = Witness,
    params(OrgPath),
    responses((status = 200, body = WitnessView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_witness(
    State(s): State<AppState>,
    AdminOrg(org): AdminOrg,
    ApiJson(req): ApiJson<Witness>,
) -> Result<Json<WitnessView>, ApiError> {
    let witness = s
        .service
        .set_witness(org, Some(&req.witness_key))
        .await?
        .unwrap_or_default();
    Ok(Json(WitnessView { witness }))
}

/// Forget the org's witness (admin); cosignatures already kept stay.
#[utoipa::path(delete, path = "/v1/orgs/{org}/audit/witness", tag = "audit",
    params(OrgPath),
    responses((status = 204, description = "forgotten"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_witness(
    State(s): State<AppState>,
    AdminOrg(org): AdminOrg,
) -> Result<StatusCode, ApiError> {
    s.service.set_witness(org, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A witness's cosignature of one checkpoint.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cosignature {
    /// The size of the checkpoint it cosigns (one byok signed).
    pub size: u64,
    /// The signature line: `— <witness name> base64(key id || timestamp || signature)`.
    pub cosignature: String,
}

/// Add the org's witness's cosignature to one of its checkpoints (auditor, admin): checked
/// against the registered witness key, then served with that checkpoint.
#[utoipa::path(post, path = "/v1/orgs/{org}/audit/cosignatures", tag = "audit", request_body = Cosignature,
    params(OrgPath),
    responses((status = 204, description = "kept"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cosign(
    State(s): State<AppState>,
    ReaderOrg(org): ReaderOrg,
    ApiJson(req): ApiJson<Cosignature>,
) -> Result<StatusCode, ApiError> {
    s.service.cosign(org, req.size, &req.cosignature).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page's `limit`: 1 to 1000, 100 when absent. Outside that range it is refused, not
/// clamped: a caller asking for 0 or 5000 rows is told, not handed another number.
fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=1000) => Ok(n),
        Some(n) => Err(ApiError::invalid(format!("limit is 1 to 1000; got {n}"))),
    }
}
