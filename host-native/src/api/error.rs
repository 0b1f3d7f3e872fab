//! API errors: JSON `{"error": {"code", "message", "request_id"}}` with a stable `code` that
//! clients branch on, a message a person can act on, and the request id that finds the matching
//! log line. Nothing secret goes in: store and internal failures are logged, and the caller sees
//! only `internal` with the request id.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use byok_core::ApiCode;
use byok_core::Error as CoreError;
use byok_core::kms::KmsError;
use byok_core::scope::ScopeError;
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};

use crate::service::ServiceError;

tokio::task_local! {
    /// The id of the request being served (set by the request-id middleware).
    pub static REQUEST_ID: RequestId;
}

/// A request id: 64 random bits, shown as 16 hex digits. Copied, not allocated, per request;
/// formatted only where it is shown (a header, an error, a log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The current request id, or `-` outside a request.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.to_string())
        .unwrap_or_else(|_| "-".into())
}

/// An error answer. Its HTTP status is its code's ([`ApiCode::http_status`]).
#[derive(Debug)]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: ApiCode,
    /// What went wrong and what to do.
    pub message: String,
    /// Structured detail (a key validation report).
    pub details: Option<serde_json::Value>,
    /// `Retry-After` seconds when they differ from the code's default (a rate limit's wait).
    retry_after: Option<u32>,
}

/// The error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What a call on an org's data (encrypt, decrypt, data keys, leases) can fail with, listed once
/// for the OpenAPI document: every one of them authenticates, checks the org and the role,
/// checks the scope's state and may need the customer's KMS. The error table in
/// `docs/server.md` names the codes behind each status.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // read by the OpenAPI derive only
pub enum DataErrors {
    /// A malformed request, body, id or ciphertext.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid token.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The token's role may not do this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such org, scope or key for this token.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The scope is paused, or the key is not usable now.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The scope is revoked: its data is gone for good.
    #[response(status = 410)]
    Gone(ErrorBody),
    /// The customer's KMS refused (grant removed, key disabled or deleted).
    #[response(status = 424)]
    KmsDenied(ErrorBody),
    /// The customer's KMS could not be reached; retry after `Retry-After`.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The error's fields.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `scope_paused`, `not_found`, `unauthenticated`; the table in
    /// `docs/server.md` lists each with its status.
    #[schema(schema_with = code_schema)]
    pub code: String,
    /// Human-readable message with the fix.
    pub message: String,
    /// The request id (also in the `x-request-id` header and the server's logs).
    pub request_id: String,
    /// Structured detail, when there is some (a key validation report: each step with its fix).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// `ErrorDetail.code` in the OpenAPI document: a string, one of [`ApiCode::ALL`].
fn code_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .description(Some(
            "Stable code, e.g. `scope_paused`, `not_found`, `unauthenticated`; clients branch on it.",
        ))
        .enum_values(Some(ApiCode::ALL.iter().map(|c| c.as_str())))
}

/// What the caller sees of an internal failure: the fact and the request id, nothing else.
const INTERNAL_MESSAGE: &str =
    "internal error; the operator can find it in the logs by the request id";

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ApiCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Sets the `Retry-After` seconds (for a retryable code).
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The `Retry-After` seconds this answer carries, if any.
    pub fn retry_after_secs(&self) -> Option<u32> {
        self.code
            .retry_after_secs()
            .map(|default| self.retry_after.unwrap_or(default))
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ApiCode::InvalidRequest, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ApiCode::NotFound, message)
    }

    /// 500 `internal`: logs `error` under the request id; the caller sees neither.
    fn internal(what: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(request_id = %request_id(), error = %error, "{what}");
        Self::new(ApiCode::Internal, INTERNAL_MESSAGE)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after_secs();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().into(),
                message: self.message,
                request_id: request_id(),
                details: self.details,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = ApiCode::www_authenticate(status.as_u16()) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

impl From<ScopeError> for ApiError {
    fn from(e: ScopeError) -> Self {
        match e.api_code() {
            ApiCode::Internal => Self::internal("stored key state damaged, or a host bug", &e),
            code => Self::new(code, e.to_string()),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let code = e.api_code();
        match e {
            CoreError::Scope(s) => s.into(),
            CoreError::Format(f) => Self::new(code, format!("not a byok v1 ciphertext: {f}")),
            CoreError::Unsupported(u) => Self::new(code, u.to_string()),
            CoreError::Decrypt | CoreError::WrongKey { .. } => Self::new(
                code,
                "the ciphertext does not open: it was modified, or the context differs from the one it was encrypted with",
            ),
            CoreError::Misuse(m) => Self::new(code, m.to_string()),
            other if code == ApiCode::Internal => Self::internal("internal error", &other),
            other => Self::new(code, other.to_string()),
        }
    }
}

impl From<KmsError> for ApiError {
    fn from(k: KmsError) -> Self {
        let code = k.kind.api_code();
        tracing::warn!(request_id = %request_id(), code = code.as_str(), provider_code = %k.code, "KMS call failed");
        Self::new(code, k.to_string())
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => Self::not_found(m),
            ServiceError::Scope(s) => s.into(),
            ServiceError::Crypto(c) => c.into(),
            ServiceError::Invalid(m) => Self::invalid(m),
            ServiceError::TooLarge(m) => Self::new(ApiCode::TooLarge, m),
            ServiceError::Quota(m) => Self::new(ApiCode::StoredKeyQuota, m),
            ServiceError::TokenQuota(m) => Self::new(ApiCode::TokenQuota, m),
            ServiceError::Store(s) if s.is_conflict() => Self::new(
                ApiCode::Reloading,
                "another change of this org ran at the same time and this one gave way: retry",
            ),
            ServiceError::Store(s) if s.is_unavailable() => {
                tracing::warn!(request_id = %request_id(), error = %s, "database unavailable");
                Self::new(
                    ApiCode::DatabaseUnavailable,
                    "byok's database is unreachable just now; retry shortly",
                )
            }
            ServiceError::Store(s) => Self::internal("store failure", &s),
            ServiceError::Kms(k) => k.into(),
            ServiceError::Reloading => Self::new(
                ApiCode::Reloading,
                "this org's state is being reloaded (another replica changed it, or a change was interrupted); retry",
            ),
            ServiceError::NotConfigured(n) => Self::new(ApiCode::NotConfigured, n),
            ServiceError::Unauthenticated(m) => Self::new(ApiCode::Unauthenticated, m),
            ServiceError::ReplicaBehind => Self::new(
                ApiCode::DatabaseUnavailable,
                "this replica has not heard of the other replicas' changes for too long (the database's org versions do not read); retry shortly",
            ),
            ServiceError::IssuerBehind => Self::new(
                ApiCode::DatabaseUnavailable,
                "this replica has not read the issuer's keys for too long (is the database reachable?): it publishes none until it has, since one may have been replaced; retry shortly",
            ),
            ServiceError::Validation(steps) => Self {
                code: ApiCode::KeyValidationFailed,
                message: steps
                    .iter()
                    .find(|s| s.outcome == "fail")
                    .map(|s| format!("{}: {}", s.step, s.detail))
                    .unwrap_or_else(|| "key validation failed".into()),
                details: serde_json::to_value(&steps).ok(),
                retry_after: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use byok_core::kms::{KmsError, KmsErrorKind};
    use byok_core::scope::{HolderId, ScopeError};
    use byok_core::{ApiCode, ScopeId};

    use super::{ApiError, INTERNAL_MESSAGE};
    use crate::service::ServiceError;
    use crate::store::StoreError;

    fn kms(kind: KmsErrorKind) -> ServiceError {
        ServiceError::Kms(KmsError {
            kind,
            provider: "aws",
            code: "X".into(),
            message: String::new(),
            status: 500,
        })
    }

    #[test]
    fn kms_unavailable_is_503_with_retry_after() {
        for kind in [KmsErrorKind::Throttled, KmsErrorKind::Unavailable] {
            let e = ApiError::from(kms(kind));
            assert_eq!(e.code, ApiCode::KmsUnavailable);
            let resp = e.into_response();
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                resp.headers().get(header::RETRY_AFTER).unwrap(),
                &byok_core::api_code::RETRY_AFTER_SECS.to_string()
            );
        }
        let resp = ApiError::from(kms(KmsErrorKind::KeyDisabled)).into_response();
        assert_eq!(resp.status(), StatusCode::FAILED_DEPENDENCY);
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn status_comes_from_the_code() {
        let s = ScopeId::from_bytes([7; 16]);
        for (e, code, status) in [
            (ScopeError::ScopeExists(s), "scope_exists", 409),
            (
                ScopeError::HolderExists(HolderId::Cmk(2)),
                "key_exists",
                409,
            ),
            (ScopeError::NoSuchJob, "no_such_job", 409),
            (
                ScopeError::Revoked { scope: s, by: s },
                "scope_revoked",
                410,
            ),
        ] {
            let resp = ApiError::from(ServiceError::Scope(e)).into_response();
            assert_eq!(resp.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn internal_failures_say_nothing() {
        let e = ApiError::from(ServiceError::Store(StoreError::Corrupt(
            "secret row".into(),
        )));
        assert_eq!(
            (e.code, e.message.as_str()),
            (ApiCode::Internal, INTERNAL_MESSAGE)
        );
        let e = ApiError::from(ScopeError::Inconsistent("parent missing"));
        assert_eq!(
            (e.code, e.message.as_str()),
            (ApiCode::Internal, INTERNAL_MESSAGE)
        );
        let e = ApiError::from(byok_core::Error::Internal("bug"));
        assert_eq!(
            (e.code, e.message.as_str()),
            (ApiCode::Internal, INTERNAL_MESSAGE)
        );
        assert_eq!(
            e.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
