//! Keys: attach a customer key (AWS KMS, Google Cloud KMS) after live validation, list with health, set the default, disable
//! with a re-encryption target, enable, fall back to the managed key; the policies to grant.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use byok_core::kms::provider::RoleTrust;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::audit::receipt;
use super::auth::{AdminCaller, Caller};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::paths::OrgPath;
use crate::service::audit_log::Withdrawal;
use crate::service::{GrantFacts, JobView, KeySpec, KeyView, KeysView, PolicyView, StepView};
use crate::store::Role;
use byok_core::ScopeId;
use byok_core::audit_log::receipt::Receipt;

/// Who may list the keys and follow the job; every other key call is the admin's.
const READERS: &[Role] = &[Role::Admin, Role::Auditor];

/// Attaches a key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    /// Display name.
    pub name: String,
    /// `aws`, `gcp` or `azure`.
    pub provider: String,
    /// The key: an AWS key or alias ARN, a GCP CryptoKey name, or an Azure Key Vault or
    /// Managed HSM key URL (`key_arn` is accepted too).
    #[serde(alias = "key_arn")]
    pub key: String,
    /// The customer's principal for byok to become: an AWS role ARN, a GCP service account
    /// email, or the client id of an Azure app with a federated credential that trusts byok's
    /// issuer (`role_arn` is accepted too); omit when the key grants byok's own principal.
    #[serde(alias = "role_arn")]
    pub role: Option<String>,
    /// How byok assumes an AWS role: `oidc` (its own OIDC token: no vendor secret; the default
    /// when byok is an issuer) or `external_id` (the vendor's credentials and the org's
    /// external id; the default otherwise).
    pub role_trust: Option<String>,
    /// GCP: the workload identity pool provider where byok's token is exchanged
    /// (`//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`).
    /// Azure: the customer's tenant id (without it, byok learns it from the vault's challenge).
    pub audience: Option<String>,
}

impl AddKey {
    fn spec(&self) -> Result<KeySpec<'_>, ApiError> {
        Ok(KeySpec {
            provider: &self.provider,
            key: &self.key,
            role: self.role.as_deref(),
            trust: role_trust(self.role_trust.as_deref())?,
            audience: self.audience.as_deref(),
        })
    }
}

/// `role_trust` from a request: `oidc`, `external_id`, or absent (the server's default).
fn role_trust(asked: Option<&str>) -> Result<Option<RoleTrust>, ApiError> {
    asked
        .map(|t| {
            RoleTrust::parse(t).ok_or_else(|| {
                ApiError::invalid(format!("role_trust {t:?} is not `oidc` or `external_id`"))
            })
        })
        .transpose()
}

/// A key to validate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateKey {
    /// `aws` (the default), `gcp` or `azure`.
    #[serde(default = "aws")]
    pub provider: String,
    /// The key (see `AddKey`).
    #[serde(alias = "key_arn")]
    pub key: String,
    /// The principal byok would become, if any (see `AddKey`).
    #[serde(alias = "role_arn")]
    pub role: Option<String>,
    /// How byok would assume it (see `AddKey`).
    pub role_trust: Option<String>,
    /// GCP: the workload identity pool provider; Azure: the tenant id (see `AddKey`).
    pub audience: Option<String>,
}

fn aws() -> String {
    "aws".into()
}

/// Which key takes over.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disable {
    /// The key (`managed` or `cmk:N`, ready) that keeps the root copies.
    pub target: String,
}

/// An attached key with the validation it passed.
#[derive(Serialize, ToSchema)]
pub struct KeyAdded {
    /// The key.
    pub key: KeyView,
    /// The validation report.
    pub validation: Vec<StepView>,
}

/// A validation report.
#[derive(Serialize, ToSchema)]
pub struct Validated {
    /// Whether every step passed.
    pub ok: bool,
    /// Each step with its outcome and, for a failure, the fix.
    pub steps: Vec<StepView>,
}

/// The policy query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    /// `aws` (the default), `gcp` or `azure`.
    #[serde(default = "aws")]
    pub provider: String,
    /// The key (see `AddKey`).
    #[serde(alias = "key_arn")]
    pub key: String,
    /// The principal byok would become.
    #[serde(alias = "role_arn")]
    pub role: Option<String>,
    /// How byok would assume it: `oidc` or `external_id` (default: `oidc` when byok is an
    /// issuer).
    pub role_trust: Option<String>,
    /// GCP: the workload identity pool provider; Azure: the tenant id.
    pub audience: Option<String>,
}

/// List the org's keys with state and health (admin, auditor).
#[utoipa::path(get, path = "/v1/orgs/{org}/keys", tag = "keys",
    params(OrgPath),
    responses((status = 200, body = KeysView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<KeysView>, ApiError> {
    Ok(Json(s.service.keys(caller.org(&org, READERS)?).await?))
}

/// Attach a customer key (admin). Validated live first; nothing changes if a step fails (422,
/// with the report and each fix).
#[utoipa::path(post, path = "/v1/orgs/{org}/keys", tag = "keys", request_body = AddKey,
    params(OrgPath),
    responses((status = 201, body = KeyAdded), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 424, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(s): State<AppState>,
    AdminCaller(org, _): AdminCaller,
    ApiJson(req): ApiJson<AddKey>,
) -> Result<(StatusCode, Json<KeyAdded>), ApiError> {
    let (key, validation) = s.service.add_key(org, &req.name, &req.spec()?).await?;
    Ok((StatusCode::CREATED, Json(KeyAdded { key, validation })))
}

/// Validate a key without attaching it (admin).
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/validate", tag = "keys", request_body = ValidateKey,
    params(OrgPath),
    responses((status = 200, body = Validated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn validate(
    State(s): State<AppState>,
    AdminCaller(org, _): AdminCaller,
    ApiJson(req): ApiJson<ValidateKey>,
) -> Result<Json<Validated>, ApiError> {
    let spec = KeySpec {
        provider: &req.provider,
        key: &req.key,
        role: req.role.as_deref(),
        trust: role_trust(req.role_trust.as_deref())?,
        audience: req.audience.as_deref(),
    };
    let (ok, steps) = s.service.validate(org, &spec).await?;
    Ok(Json(Validated { ok, steps }))
}

/// The policy statements to grant for a key (admin).
#[utoipa::path(get, path = "/v1/orgs/{org}/keys/policy", tag = "keys",
    params(OrgPath,
        ("provider" = Option<String>, Query, description = "`aws` (default), `gcp` or `azure`"),
        ("key" = String, Query, description = "AWS key or alias ARN, GCP CryptoKey name, Azure key URL (`key_arn` is accepted too)"),
        ("role" = Option<String>, Query, description = "AWS role, GCP service account or Azure app client id byok would become (`role_arn` is accepted too)"),
        ("role_trust" = Option<String>, Query, description = "`oidc` or `external_id` (default: `oidc` when byok is an OIDC issuer)"),
        ("audience" = Option<String>, Query, description = "GCP workload identity pool provider, or Azure tenant id")),
    responses((status = 200, body = PolicyView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn policy(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
    ApiQuery(q): ApiQuery<PolicyQuery>,
) -> Result<Json<PolicyView>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    let spec = KeySpec {
        provider: &q.provider,
        key: &q.key,
        role: q.role.as_deref(),
        trust: role_trust(q.role_trust.as_deref())?,
        audience: q.audience.as_deref(),
    };
    Ok(Json(s.service.policy(org, &spec).await?))
}

/// What the setup page needs to compute a grant in the browser for any provider: byok's
/// issuer, this org's subject and external id, the vendor's principals (admin).
#[utoipa::path(get, path = "/v1/orgs/{org}/keys/grant-facts", tag = "keys",
    params(OrgPath),
    responses((status = 200, body = GrantFacts), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn grant_facts(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<GrantFacts>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    Ok(Json(s.service.grant_facts(org).await?))
}

/// Check the org's keys now (describe) and list them (admin).
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/check", tag = "keys",
    params(OrgPath),
    responses((status = 200, body = KeysView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn check(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<KeysView>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    s.service.check_health_of(org).await?;
    Ok(Json(s.service.keys(org).await?))
}

/// Make a key the default (admin). It must hold every root version (state `ready`).
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/{key}/default", tag = "keys",
    params(OrgPath, ("key" = String, Path, description = "`managed` or `cmk:N`")),
    responses((status = 200, body = KeysView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 424, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn set_default(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((org, key)): ApiPath<(String, String)>,
) -> Result<Json<KeysView>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    s.service.set_default(org, &key).await?;
    Ok(Json(s.service.keys(org).await?))
}

/// Disable a key, re-encrypting to `target` (admin): the target keeps the root copies (and
/// becomes the default if this key was); this key's copies are destroyed.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/{key}/disable", tag = "keys", request_body = Disable,
    params(OrgPath, ("key" = String, Path, description = "`managed` or `cmk:N`")),
    responses((status = 200, body = KeysWithdrawn), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 424, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable(
    State(s): State<AppState>,
    AdminCaller(org, _): AdminCaller,
    ApiPath((_, key)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<Disable>,
) -> Result<Json<KeysWithdrawn>, ApiError> {
    s.service.disable(org, &key, &req.target).await?;
    let w = Withdrawal::Key { holder: key };
    withdrawn(&s, org, w).await
}

/// An org's keys after a disable, with the withdrawal's receipt.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct KeysWithdrawn {
    /// The keys as they are now.
    #[serde(flatten)]
    pub keys: KeysView,
    /// The receipt (see `ScopeWithdrawn`); `null` only if the log could not be signed.
    pub receipt: Option<Receipt>,
}

async fn withdrawn(
    s: &AppState,
    org: ScopeId,
    w: Withdrawal,
) -> Result<Json<KeysWithdrawn>, ApiError> {
    let receipt = receipt(s, org, w).await;
    Ok(Json(KeysWithdrawn {
        keys: s.service.keys(org).await?,
        receipt,
    }))
}

/// Enable a disabled key again (admin); it wraps the root key again.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/{key}/enable", tag = "keys",
    params(OrgPath, ("key" = String, Path, description = "`cmk:N`")),
    responses((status = 200, body = KeysView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 424, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn enable(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((org, key)): ApiPath<(String, String)>,
) -> Result<Json<KeysView>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    s.service.enable(org, &key).await?;
    Ok(Json(s.service.keys(org).await?))
}

/// Disable every customer key and fall back to the managed key (admin).
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/disable-all", tag = "keys",
    params(OrgPath),
    responses((status = 200, body = KeysWithdrawn), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 424, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable_all(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<KeysWithdrawn>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    s.service.disable_all(org).await?;
    let w = Withdrawal::Key {
        holder: "all".into(),
    };
    withdrawn(&s, org, w).await
}

/// The org's re-encryption job, if one is running (admin, auditor).
#[utoipa::path(get, path = "/v1/orgs/{org}/job", tag = "keys",
    params(OrgPath),
    responses((status = 200, body = Option<JobView>, description = "the running job, or null"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<Option<JobView>>, ApiError> {
    Ok(Json(s.service.job(caller.org(&org, READERS)?).await?))
}

/// Validate an attached key again, live, and record the result as its health (admin).
#[utoipa::path(post, path = "/v1/orgs/{org}/keys/{key}/validate", tag = "keys",
    params(OrgPath, ("key" = String, Path, description = "`cmk:N`")),
    responses((status = 200, body = Validated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revalidate(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath((org, key)): ApiPath<(String, String)>,
) -> Result<Json<Validated>, ApiError> {
    let org = caller.org(&org, &[Role::Admin])?;
    let (ok, steps) = s.service.revalidate(org, &key).await?;
    Ok(Json(Validated { ok, steps }))
}
