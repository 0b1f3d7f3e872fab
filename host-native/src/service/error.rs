//! Why a service operation failed, sorted by whose fault it is; the API maps each to one
//! [`byok_core::ApiCode`].

use byok_core::Error as CoreError;
use byok_core::scope::ScopeError;

use crate::store::StoreError;

use super::StepView;

/// Why an operation failed. The API maps each to a status and a stable code.
#[derive(Debug)]
pub enum ServiceError {
    /// No such org, scope or key visible to the caller (other orgs' included: same answer).
    NotFound(String),
    /// The scope rules refused (paused, revoked, confirmation, ...).
    Scope(ScopeError),
    /// A ciphertext or wrapped key did not open, or is malformed.
    Crypto(CoreError),
    /// The request is invalid; the message says how.
    Invalid(String),
    /// The request is larger than a single call takes (`too_large`); the message says the
    /// limit and what to use instead.
    TooLarge(String),
    /// The org keeps as many stored data keys as the server allows (`stored_key_quota`); the
    /// message says how many.
    Quota(String),
    /// The org holds as many tokens as the server allows (`token_quota`); the message says
    /// how many.
    TokenQuota(String),
    /// Storage failed (logged with the request id; callers see `internal`).
    Store(StoreError),
    /// A customer's KMS refused or failed.
    Kms(byok_core::kms::KmsError),
    /// Key validation failed: nothing was changed; the report says which step and the fix.
    Validation(Vec<StepView>),
    /// The org's in-memory state was retired (another replica changed the org, or a change
    /// was interrupted) and is being reloaded from storage: retry.
    Reloading,
    /// The operator has not configured what this call needs.
    NotConfigured(String),
    /// The caller's token stopped working while the request was served (revoked meanwhile).
    Unauthenticated(String),
    /// This replica has not read the orgs' versions for longer than the bound withdrawal
    /// receipts state for the other replicas: it cannot vouch that none was withdrawn
    /// elsewhere, and serves no key until a poll succeeds (`database_unavailable`).
    ReplicaBehind,
    /// This replica has not read the issuer's keys for longer than it may publish them
    /// (`PUBLISHES_WITHOUT_REFRESH_MS`): one may have been replaced since, because it may have
    /// leaked (`database_unavailable`).
    IssuerBehind,
}

impl From<byok_core::kms::KmsError> for ServiceError {
    fn from(e: byok_core::kms::KmsError) -> Self {
        Self::Kms(e)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<CoreError> for ServiceError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Scope(s) => Self::Scope(s),
            other => Self::Crypto(other),
        }
    }
}

impl From<ScopeError> for ServiceError {
    fn from(e: ScopeError) -> Self {
        Self::Scope(e)
    }
}

/// A service result.
pub type Result<T> = std::result::Result<T, ServiceError>;
