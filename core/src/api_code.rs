//! The API's error codes: one exhaustive list shared by the server (which answers with them)
//! and the wasm host (which turns the server's answer back into this enum).
//!
//! A code is the stable, machine-readable half of an error answer
//! (`{"error": {"code", "message", "request_id"}}`): clients branch on it, so a code's string
//! never changes once released. Each code has one HTTP status; the codes that are worth retrying
//! (429 and 503) carry a `Retry-After` of [`RETRY_AFTER_SECS`].
//!
//! Every error byok-core returns names its code ([`crate::Error::api_code`],
//! [`crate::scope::ScopeError::api_code`], [`crate::kms::KmsErrorKind::api_code`]) through
//! exhaustive matches, so a new error variant does not compile until it has one.

use alloc::format;
use alloc::string::String;

/// Seconds a client should wait before retrying an answer whose code is
/// [`ApiCode::retryable`] (sent as `Retry-After`). The server has already retried the KMS with
/// backoff for up to its deadline; two seconds more is the cap of one backoff step.
pub const RETRY_AFTER_SECS: u32 = 2;

macro_rules! api_codes {
    ($($(#[$attr:meta])* $variant:ident => $code:literal, $status:literal, $meaning:literal;)*) => {
        /// A stable error code of the API, with its HTTP status and meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ApiCode {
            $(
                #[doc = concat!("`", $code, "` (", stringify!($status), "): ", $meaning, ".")]
                $(#[$attr])*
                $variant,
            )*
        }

        impl ApiCode {
            /// Every code, in the order of the documentation's table.
            pub const ALL: &'static [ApiCode] = &[$(Self::$variant),*];

            /// The code on the wire (snake case), e.g. `scope_paused`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The HTTP status of an answer with this code.
            pub const fn http_status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)*
                }
            }

            /// What the code means and what to do, in one line.
            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $meaning,)*
                }
            }
        }
    };
}

api_codes! {
    Unauthenticated => "unauthenticated", 401, "no valid token: send `Authorization: Bearer byok_...`";
    Forbidden => "forbidden", 403, "the token's role may not do this";
    NotFound => "not_found", 404,
        "no such org (for this token), scope, key version, key or endpoint";
    InvalidRequest => "invalid_request", 400, "a field or path parameter is invalid: the message says which";
    MalformedJson => "malformed_json", 400, "the body is not the JSON this call takes";
    MethodNotAllowed => "method_not_allowed", 405, "the endpoint does not take this method";
    UnsupportedMediaType => "unsupported_media_type", 415,
        "send the body with `Content-Type: application/json`";
    RequestTimeout => "request_timeout", 408,
        "the request did not complete within the server's deadline (a slow body, or a slow KMS): retry";
    RateLimited => "rate_limited", 429,
        "this token or org sent more requests (or asked for more stored data keys, ten to a request) than its rate limit: wait `Retry-After` seconds";
    TooLarge => "too_large", 413, "body over 6 MiB (4 MiB of plaintext): use the streaming format";
    MalformedCiphertext => "malformed_ciphertext", 400, "not a byok v1 ciphertext (or not `byok:v1:` text)";
    UnsupportedCiphertext => "unsupported_ciphertext", 400,
        "a version, suite or mode this build does not read: upgrade the server";
    DecryptFailed => "decrypt_failed", 400, "the ciphertext was modified, or the context differs";
    LeaseExpired => "lease_expired", 401,
        "an edge lease ended: its keys are no longer used; ask for a new lease (a refusal means the scope was paused or revoked)";
    Unreachable => "unreachable", 503,
        "an edge could not reach byok for a lease and holds no live one: retry";
    EdgeTokenRefused => "edge_token_refused", 502,
        "byok refused an edge function's own service token (revoked, or wrong in its settings): the edge serves nothing until its operator sets a valid one; its callers cannot fix it";
    ConfirmationMismatch => "confirmation_mismatch", 400, "revoking needs the scope id typed back exactly";
    Unsupported => "unsupported", 400, "scopes cannot move: create one under the new parent and re-encrypt";
    RootRotation => "root_rotation", 400, "the org scope's key is the root key: use the root rotation";
    TooDeep => "too_deep", 400, "the scope tree is at its maximum depth";
    TooManyVersions => "too_many_versions", 409,
        "the scope keeps as many key versions as allowed: retire old ones before rotating";
    ScopePaused => "scope_paused", 409, "the scope or the named ancestor is paused";
    ScopeRevoked => "scope_revoked", 410, "the scope or the named ancestor is revoked, for good";
    ScopeExists => "scope_exists", 409, "a scope with this id exists already";
    VersionIsCurrent => "version_is_current", 409,
        "the newest key version cannot be retired: rotate first";
    VersionInUse => "version_in_use", 409,
        "child keys are still wrapped under this version: run the rewrap job first";
    KeyExists => "key_exists", 409, "this customer key is attached already";
    KeyNotReady => "key_not_ready", 409, "the key does not hold a copy of the root key yet";
    KeyIsDefault => "key_is_default", 409, "the default key cannot be disabled: set another default first";
    KeyProofFailed => "key_proof_failed", 409,
        "the key did not give back the root key when unwrapped just now";
    ManagedUnderByok => "managed_under_byok", 409,
        "a customer key is the default: the managed key may not hold the root";
    TokenQuota => "token_quota", 409,
        "the org holds as many tokens as allowed: revoke unused ones first";
    StoredKeyQuota => "stored_key_quota", 409,
        "the org keeps as many stored data keys as the server allows (the message says how many): delete stored keys it no longer needs, revoke scopes it no longer needs, or ask the byok operator";
    JobRunning => "job_running", 409, "a re-encryption job is running for this org: wait for it";
    NoSuchJob => "no_such_job", 409, "no re-encryption job is running, or the step is not its own";
    KeyValidationFailed => "key_validation_failed", 422,
        "`details` has every validation step with its fix";
    KmsAccessDenied => "kms_access_denied", 424,
        "byok may not use the customer's key: the message has the provider's code and the fix";
    KmsKeyDisabled => "kms_key_disabled", 424, "the customer's key is disabled in its KMS";
    KmsKeyNotFound => "kms_key_not_found", 424, "the customer's key does not exist (or is not visible)";
    KmsKeyPendingDeletion => "kms_key_pending_deletion", 424,
        "the customer's key is scheduled for deletion";
    KmsInvalidCiphertext => "kms_invalid_ciphertext", 424,
        "the customer's KMS does not open this wrapped key under this key and context";
    KmsError => "kms_error", 502,
        "the KMS refused byok's request as invalid: check the server clock";
    KmsUnavailable => "kms_unavailable", 503, "the KMS throttled or is down, after retries";
    Reloading => "reloading", 503,
        "the org's state is being reloaded (another replica changed it, or a change was interrupted): retry";
    DatabaseUnavailable => "database_unavailable", 503,
        "byok's database is unreachable (restarting, failing over): calls the key cache can serve still work; retry";
    NotConfigured => "not_configured", 501,
        "the server lacks a setting this call needs (the message names it): ask the byok operator";
    Internal => "internal", 500, "logged with the request id; nothing else is said";
}

impl ApiCode {
    /// Whether the same request may succeed later: the 429 and 503 codes, which carry
    /// `Retry-After` ([`Self::retry_after_secs`]).
    pub const fn retryable(self) -> bool {
        matches!(self.http_status(), 429 | 503)
    }

    /// The `Retry-After` seconds to send with this code, if it is [`Self::retryable`].
    pub const fn retry_after_secs(self) -> Option<u32> {
        if self.retryable() {
            Some(RETRY_AFTER_SECS)
        } else {
            None
        }
    }

    /// The `WWW-Authenticate` value an answer of `status` carries: every 401 says how to
    /// authenticate (RFC 9110, 15.5.2), here with a bearer token, on the server and at the
    /// edge alike.
    pub const fn www_authenticate(status: u16) -> Option<&'static str> {
        if status == 401 {
            Some("Bearer realm=\"byok\"")
        } else {
            None
        }
    }

    /// The HTTP status an edge function answers with this code. At the edge an expired lease
    /// is a service unavailable for now (503), not an authentication failure of the caller;
    /// every other code keeps the server's status.
    pub const fn edge_status(self) -> u16 {
        match self {
            Self::LeaseExpired => 503,
            _ => self.http_status(),
        }
    }

    /// The code whose [`Self::as_str`] is `code`, if any.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// The Markdown table of every code (the one in `docs/server.md`), one row per code.
    pub fn markdown_table() -> String {
        let mut out = String::from("| code | status | retry | meaning |\n|---|---|---|---|\n");
        for c in Self::ALL {
            let retry = match c.retry_after_secs() {
                Some(s) => format!("`Retry-After: {s}`"),
                None => String::from("no"),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.as_str(),
                c.http_status(),
                retry,
                c.description()
            ));
        }
        out
    }
}

impl core::fmt::Display for ApiCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeSet;

    use super::ApiCode;

    #[test]
    fn every_code_round_trips() {
        for &c in ApiCode::ALL {
            assert_eq!(ApiCode::from_code(c.as_str()), Some(c));
        }
        assert_eq!(ApiCode::from_code("conflict"), None);
        assert_eq!(ApiCode::from_code(""), None);
    }

    #[test]
    fn codes_are_unique_snake_case_and_complete() {
        let codes: BTreeSet<_> = ApiCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ApiCode::ALL.len(), "a code is listed twice");
        let variants: BTreeSet<_> = ApiCode::ALL.iter().collect();
        assert_eq!(
            variants.len(),
            ApiCode::ALL.len(),
            "a variant is listed twice"
        );
        for c in &codes {
            assert!(
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{c}"
            );
        }
    }

    #[test]
    fn statuses_are_errors_and_only_429_503_retry() {
        for &c in ApiCode::ALL {
            assert!((400..600).contains(&c.http_status()), "{c}");
            assert_eq!(c.retry_after_secs().is_some(), c.retryable(), "{c}");
            assert!(
                !c.description().is_empty() && !c.description().contains('|'),
                "{c}"
            );
        }
        assert_eq!(ApiCode::KmsUnavailable.http_status(), 503);
        assert_eq!(
            ApiCode::KmsUnavailable.retry_after_secs(),
            Some(super::RETRY_AFTER_SECS)
        );
        assert_eq!(ApiCode::Internal.retry_after_secs(), None);
    }

    #[test]
    fn only_401s_carry_a_challenge() {
        use ApiCode::{LeaseExpired, Unauthenticated};
        for &c in ApiCode::ALL {
            let challenged = ApiCode::www_authenticate(c.http_status()).is_some();
            assert_eq!(
                challenged,
                matches!(c, Unauthenticated | LeaseExpired),
                "{c}"
            );
            assert_eq!(
                ApiCode::www_authenticate(c.edge_status()).is_some(),
                c == Unauthenticated,
                "{c} at the edge"
            );
        }
        assert_eq!(
            ApiCode::www_authenticate(401),
            Some("Bearer realm=\"byok\"")
        );
    }

    /// Every error variant's code and status, written out: the statuses clients and the
    /// server's tests rely on, so a changed mapping shows here first.
    #[test]
    fn every_error_has_its_code_and_status() {
        use crate::error::{ArmorError, FormatError, Misuse, Unsupported};
        use crate::kms::KmsErrorKind as K;
        use crate::scope::HolderId;
        use crate::scope::ScopeError as S;
        use crate::{Error, KeyId, ScopeId};

        let s = ScopeId::from_bytes([1; 16]);
        let k = KeyId::new(s, 1);
        let h = HolderId::Cmk(1);
        let scope: &[(S, &str, u16)] = &[
            (S::UnknownScope(s), "not_found", 404),
            (S::ScopeExists(s), "scope_exists", 409),
            (S::Paused { scope: s, by: s }, "scope_paused", 409),
            (S::Revoked { scope: s, by: s }, "scope_revoked", 410),
            (
                S::ConfirmationMismatch { scope: s },
                "confirmation_mismatch",
                400,
            ),
            (S::MoveNotSupported, "unsupported", 400),
            (S::RootRotation, "root_rotation", 400),
            (S::TooDeep { max: 8 }, "too_deep", 400),
            (
                S::TooManyVersions {
                    scope: k.scope,
                    max: 1000,
                },
                "too_many_versions",
                409,
            ),
            (S::UnknownVersion(k), "not_found", 404),
            (S::RetireCurrent(k), "version_is_current", 409),
            (
                S::VersionInUse {
                    key: k,
                    children: 1,
                },
                "version_in_use",
                409,
            ),
            (
                S::WrongKey {
                    expected: k,
                    provided: k,
                },
                "internal",
                500,
            ),
            (S::UnknownHolder(h), "not_found", 404),
            (S::HolderExists(h), "key_exists", 409),
            (S::HolderNotReady(h), "key_not_ready", 409),
            (S::DisableDefault(h), "key_is_default", 409),
            (S::JobRunning, "job_running", 409),
            (
                S::ProofMismatch {
                    holder: h,
                    version: 1,
                },
                "key_proof_failed",
                409,
            ),
            (S::ManagedUnderByok, "managed_under_byok", 409),
            (S::NoSuchJob, "no_such_job", 409),
            (S::Unwrap(k), "internal", 500),
            (S::RootCheckFailed(k), "internal", 500),
            (S::RootUnchecked(k), "internal", 500),
            (S::Inconsistent("x"), "internal", 500),
        ];
        for (e, code, status) in scope {
            let c = e.api_code();
            assert_eq!((c.as_str(), c.http_status()), (*code, *status), "{e:?}");
            let c = Error::Scope(e.clone()).api_code();
            assert_eq!((c.as_str(), c.http_status()), (*code, *status), "{e:?}");
        }

        let core: &[(Error, &str, u16)] = &[
            (
                Error::Format(FormatError::Armor(ArmorError::Base64)),
                "malformed_ciphertext",
                400,
            ),
            (
                Error::Unsupported(Unsupported::Version(2)),
                "unsupported_ciphertext",
                400,
            ),
            (Error::Decrypt, "decrypt_failed", 400),
            (
                Error::WrongKey {
                    header: k,
                    provided: k,
                },
                "decrypt_failed",
                400,
            ),
            (Error::Misuse(Misuse::StreamClosed), "invalid_request", 400),
            (Error::Internal("x"), "internal", 500),
        ];
        for (e, code, status) in core {
            let c = e.api_code();
            assert_eq!((c.as_str(), c.http_status()), (*code, *status), "{e:?}");
        }

        let kms: &[(K, &str, u16)] = &[
            (K::AccessDenied, "kms_access_denied", 424),
            (K::KeyDisabled, "kms_key_disabled", 424),
            (K::KeyNotFound, "kms_key_not_found", 424),
            (K::KeyPendingDeletion, "kms_key_pending_deletion", 424),
            (K::InvalidCiphertext, "kms_invalid_ciphertext", 424),
            (K::Throttled, "kms_unavailable", 503),
            (K::Unavailable, "kms_unavailable", 503),
            (K::Malformed, "kms_error", 502),
        ];
        for (kind, code, status) in kms {
            let c = kind.api_code();
            assert_eq!((c.as_str(), c.http_status()), (*code, *status), "{kind:?}");
            assert_eq!(c.retryable(), kind.is_transient(), "{kind:?}");
        }
    }
}
