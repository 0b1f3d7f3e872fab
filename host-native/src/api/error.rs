//! API errors: JSON `{"error": {"code", "message", "request_id"}}` with a stable `code` that
//! clients branch on, a message a person can act on, and the request id that finds the matching
//! log line. Nothing secret goes in: store and internal failures are logged, and the caller sees
//! only `internal` with the request id.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use byok_core::Error as CoreError;
use byok_core::scope::ScopeError;
use serde::Serialize;

use crate::service::ServiceError;

tokio::task_local! {
    /// The id of the request being served (set by the request-id middleware).
    pub static REQUEST_ID: String;
}

/// The current request id, or `-` outside a request.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".into())
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// Structured detail (a key validation report).
    pub details: Option<serde_json::Value>,
}

/// The error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error's fields.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `scope_paused`, `not_found`, `unauthenticated`.
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

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                request_id: request_id(),
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

fn scope_error(e: ScopeError) -> ApiError {
    use StatusCode as S;
    let (status, code) = match &e {
        ScopeError::UnknownScope(_) | ScopeError::UnknownVersion(_) => (S::NOT_FOUND, "not_found"),
        ScopeError::UnknownHolder(_) => (S::NOT_FOUND, "not_found"),
        ScopeError::Paused { .. } => (S::CONFLICT, "scope_paused"),
        ScopeError::Revoked { .. } => (S::GONE, "scope_revoked"),
        ScopeError::ConfirmationMismatch { .. } => (S::BAD_REQUEST, "confirmation_mismatch"),
        ScopeError::MoveNotSupported => (S::BAD_REQUEST, "unsupported"),
        ScopeError::RootRotation => (S::BAD_REQUEST, "root_rotation"),
        ScopeError::TooDeep { .. } => (S::BAD_REQUEST, "too_deep"),
        ScopeError::JobRunning => (S::CONFLICT, "job_running"),
        ScopeError::HolderNotReady(_) => (S::CONFLICT, "key_not_ready"),
        ScopeError::DisableDefault(_) => (S::CONFLICT, "key_is_default"),
        ScopeError::ProofMismatch { .. } => (S::CONFLICT, "key_proof_failed"),
        ScopeError::ManagedUnderByok => (S::CONFLICT, "managed_under_byok"),
        ScopeError::Unwrap(_) | ScopeError::Inconsistent(_) => {
            tracing::error!(request_id = %request_id(), error = %e, "stored key state damaged");
            return ApiError::new(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the operator can find it in the logs by the request id",
            );
        }
        _ => (S::CONFLICT, "conflict"),
    };
    ApiError::new(status, code, e.to_string())
}

fn core_error(e: CoreError) -> ApiError {
    match e {
        CoreError::Scope(s) => scope_error(s),
        CoreError::Format(f) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_ciphertext",
            format!("not a byok v1 ciphertext: {f}"),
        ),
        CoreError::Unsupported(u) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_ciphertext",
            u.to_string(),
        ),
        CoreError::Decrypt | CoreError::WrongKey { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "decrypt_failed",
            "the ciphertext does not open: it was modified, or the context differs from the one it was encrypted with",
        ),
        CoreError::Misuse(m) => ApiError::invalid(m.to_string()),
        CoreError::Internal(what) => {
            tracing::error!(request_id = %request_id(), what, "internal error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
        other => {
            tracing::error!(request_id = %request_id(), error = %other, "unclassified error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => Self::not_found(m),
            ServiceError::Scope(s) => scope_error(s),
            ServiceError::Crypto(c) => core_error(c),
            ServiceError::Invalid(m) => Self::invalid(m),
            ServiceError::Store(s) => {
                tracing::error!(request_id = %request_id(), error = %s, "store failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the operator can find it in the logs by the request id",
                )
            }
            ServiceError::Kms(k) => {
                use byok_core::kms::KmsErrorKind as K;
                let status = match k.kind {
                    K::Throttled | K::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    K::Malformed => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::FAILED_DEPENDENCY,
                };
                let code = match crate::service::kind_code(&k) {
                    "access_denied" => "kms_access_denied",
                    "key_disabled" => "kms_key_disabled",
                    "key_not_found" => "kms_key_not_found",
                    "key_pending_deletion" => "kms_key_pending_deletion",
                    "invalid_ciphertext" => "kms_invalid_ciphertext",
                    "throttled" | "unavailable" => "kms_unavailable",
                    _ => "kms_error",
                };
                tracing::warn!(request_id = %request_id(), code, provider_code = %k.code, "KMS call failed");
                Self::new(status, code, k.to_string())
            }
            ServiceError::Validation(steps) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "key_validation_failed",
                message: steps
                    .iter()
                    .find(|s| s.outcome == "fail")
                    .map(|s| format!("{}: {}", s.step, s.detail))
                    .unwrap_or_else(|| "key validation failed".into()),
                details: serde_json::to_value(&steps).ok(),
            },
        }
    }
}
