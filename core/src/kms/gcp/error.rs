//! GCP error answers, classified (kms-wire.md section 4): Cloud KMS and IAM Credentials send a
//! `google.rpc.Status` (`{"error": {"code", "message", "status", "details"}}`); the OAuth token
//! endpoint and STS send OAuth 2 errors (`{"error": "invalid_grant", "error_description"}`).
//! The provider code kept is the canonical status (`PERMISSION_DENIED`) or the OAuth error.

use alloc::string::{String, ToString};

use serde_json::Value;

use crate::kms::error::{KmsError, KmsErrorKind, clean_text};

/// At most this much of an error body is parsed.
const MAX_BODY: usize = 64 * 1024;

/// Classifies a non-2xx GCP answer.
pub fn parse_error(status: u16, body: &[u8]) -> KmsError {
    let body = body.get(..MAX_BODY).unwrap_or(body);
    let (code, message, reason) = read(body).unwrap_or_default();
    KmsError {
        kind: classify(&code, &message, &reason, status),
        provider: "gcp",
        code: clean_text(&code),
        message: clean_text(&message),
        status,
    }
}

/// `(status or OAuth error, message, ErrorInfo reason)` from either error shape.
fn read(body: &[u8]) -> Option<(String, String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    if let Some(oauth) = err.as_str() {
        let description = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Some((oauth.to_string(), description.to_string(), String::new()));
    }
    let text = |k: &str| {
        err.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let details = err.get("details").and_then(Value::as_array);
    let reason = details
        .and_then(|d| d.iter().find_map(|x| x.get("reason")?.as_str()))
        .unwrap_or_default()
        .to_string();
    // A `PreconditionFailure`'s violation types (Cloud EKM's "error domain" is the second),
    // joined: the reason, when there is no `ErrorInfo`.
    let violations = details
        .into_iter()
        .flatten()
        .filter_map(|x| x.get("violations")?.as_array())
        .flatten()
        .filter_map(|v| v.get("type")?.as_str())
        .collect::<alloc::vec::Vec<_>>()
        .join(" ");
    let reason = if reason.is_empty() {
        violations
    } else {
        reason
    };
    Some((text("status"), text("message"), reason))
}

/// Whether a `FAILED_PRECONDITION` is Cloud EKM failing to reach or hear from the customer's
/// external key manager (a timeout, the network, the manager overloaded or failing): Google
/// lists those as retriable, an outage, not the customer's withdrawal. Read from the error
/// domain (the violation's type) and, failing that, the documented messages. A permission
/// denied or a key disabled at the external manager is not among them: that stays a denial.
fn ekm_unreachable(message: &str, reason: &str) -> bool {
    const DOMAINS: [&str; 6] = [
        "TIMEOUT",
        "UNREACHABLE",
        "NETWORK",
        "OVERLOADED",
        "RESOURCE_EXHAUSTED",
        "SERVER_ERROR",
    ];
    const MESSAGES: [&str; 4] = [
        "Timed out when trying to",
        "Could not reach",
        "external networking error",
        "is overloaded",
    ];
    let denied = reason.contains("PERMISSION_DENIED") || reason.contains("DISABLED");
    !denied
        && (DOMAINS.iter().any(|d| reason.contains(d))
            || MESSAGES.iter().any(|m| message.contains(m)))
}

fn classify(code: &str, message: &str, reason: &str, status: u16) -> KmsErrorKind {
    use KmsErrorKind as K;
    match code {
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => K::AccessDenied,
        // byok's own assertion refused for its times ("Invalid JWT: Token must be a
        // short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp
        // values ..."): byok stamps them from its own clock, minutes before the exchange, so it
        // is this server's clock, for every org at once, not a customer's withdrawal; malformed,
        // whose fix names the clock (as AWS's "Signature expired").
        "invalid_grant" if message.contains("reasonable timeframe") => K::Malformed,
        // OAuth and STS: the assertion or token was refused (wrong audience, expired, a
        // subject the pool's condition rejects, a disabled service account).
        "invalid_grant" | "unauthorized_client" | "access_denied" | "invalid_client" => {
            K::AccessDenied
        }
        // STS: "the pool or provider is disabled or deleted or ... doesn't exist". Disabling
        // or deleting byok's pool provider is a documented way to withdraw (docs/providers.md).
        "invalid_target" => K::AccessDenied,
        "NOT_FOUND" => K::KeyNotFound,
        "RESOURCE_EXHAUSTED" => K::Throttled,
        "INTERNAL"
        | "UNAVAILABLE"
        | "DEADLINE_EXCEEDED"
        | "ABORTED"
        | "temporarily_unavailable" => K::Unavailable,
        // "... is not enabled, current state is: DISABLED" and its kin.
        "FAILED_PRECONDITION"
            if reason == "SERVICE_DISABLED" || message.contains("API has not been used") =>
        {
            K::AccessDenied
        }
        "FAILED_PRECONDITION" if ekm_unreachable(message, reason) => K::Unavailable,
        "FAILED_PRECONDITION" if message.contains("DESTROY_SCHEDULED") => K::KeyPendingDeletion,
        "FAILED_PRECONDITION" if message.contains("DESTROYED") => K::KeyNotFound,
        "FAILED_PRECONDITION" => K::KeyDisabled,
        "INVALID_ARGUMENT" if message.starts_with("Decryption failed") => K::InvalidCiphertext,
        _ => K::of_status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, status: &str, message: &str) -> KmsError {
        let body = serde_json::json!({
            "error": { "code": code, "message": message, "status": status }
        });
        parse_error(code, body.to_string().as_bytes())
    }

    #[test]
    fn canonical_statuses_map_to_byoks_classes() {
        use KmsErrorKind as K;
        let table = [
            (
                403,
                "PERMISSION_DENIED",
                "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied",
                K::AccessDenied,
            ),
            (
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
                K::AccessDenied,
            ),
            (
                404,
                "NOT_FOUND",
                "CryptoKey projects/p/locations/l/keyRings/r/cryptoKeys/k not found.",
                K::KeyNotFound,
            ),
            (
                400,
                "FAILED_PRECONDITION",
                "projects/.../cryptoKeyVersions/1 is not enabled, current state is: DISABLED.",
                K::KeyDisabled,
            ),
            (
                400,
                "FAILED_PRECONDITION",
                "projects/.../cryptoKeyVersions/1 is not enabled, current state is: DESTROY_SCHEDULED.",
                K::KeyPendingDeletion,
            ),
            (
                400,
                "FAILED_PRECONDITION",
                "projects/.../cryptoKeyVersions/1 is not enabled, current state is: DESTROYED.",
                K::KeyNotFound,
            ),
            (
                400,
                "INVALID_ARGUMENT",
                "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
                K::InvalidCiphertext,
            ),
            (
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'plaintext'",
                K::Malformed,
            ),
            (429, "RESOURCE_EXHAUSTED", "Quota exceeded", K::Throttled),
            (
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                K::Unavailable,
            ),
            (
                504,
                "DEADLINE_EXCEEDED",
                "Deadline exceeded",
                K::Unavailable,
            ),
        ];
        for (code, st, message, want) in table {
            let e = status(code, st, message);
            assert_eq!(e.kind, want, "{st}: {message}");
            assert_eq!(e.code, st);
            assert_eq!(e.provider, "gcp");
            assert_eq!(e.status, code);
        }
    }

    /// Cloud EKM failing to reach the customer's external key manager answers
    /// `FAILED_PRECONDITION` too (Google's EKM error reference: retriable): an outage, with
    /// grace, not the key disabled. A permission denied at the external manager stays a
    /// denial, and so does a Cloud KMS version's own state.
    #[test]
    fn cloud_ekm_outages_are_not_a_disabled_key() {
        use KmsErrorKind as K;
        let ekm = |message: &str, domain: &str| {
            let body = serde_json::json!({ "error": {
                "code": 400, "status": "FAILED_PRECONDITION", "message": message,
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                    "violations": [
                        { "type": "EKM_KEY_STATE", "subject": "k", "description": "" },
                        { "type": domain, "subject": "k", "description": "" },
                    ],
                }],
            }});
            parse_error(400, body.to_string().as_bytes()).kind
        };
        for (message, domain) in [
            (
                "Timed out when trying to access the key. Retry the request.",
                "EXTERNAL_TIMEOUT",
            ),
            (
                "Could not reach the EKM due to an external networking error.",
                "EXTERNAL_UNREACHABLE_NETWORK",
            ),
            ("The EKM is overloaded.", "OVERLOADED_EKM"),
            ("The EKM answered with an error.", "EXTERNAL_SERVER_ERROR"),
        ] {
            assert_eq!(ekm(message, domain), K::Unavailable, "{domain}");
            // The message alone decides when no domain is given.
            if message.starts_with("Timed") || message.starts_with("Could") {
                assert_eq!(ekm(message, ""), K::Unavailable, "{message}");
            }
        }
        assert_eq!(
            ekm(
                "Permission was denied when accessing the key.",
                "EXTERNAL_PERMISSION_DENIED"
            ),
            K::KeyDisabled
        );
        assert_eq!(
            ekm(
                "projects/.../cryptoKeyVersions/1 is not enabled, current state is: DISABLED.",
                ""
            ),
            K::KeyDisabled
        );
    }

    #[test]
    fn oauth_errors_and_odd_bodies() {
        let e = parse_error(
            400,
            br#"{"error":"invalid_grant","error_description":"The audience in ID Token does not match the expected audience."}"#,
        );
        assert_eq!(e.kind, KmsErrorKind::AccessDenied);
        assert_eq!(e.code, "invalid_grant");
        assert!(e.message.contains("audience"));
        // byok's own assertion refused for its times: this server's clock, no denial.
        let e = parse_error(
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."}"#,
        );
        assert_eq!(e.kind, KmsErrorKind::Malformed, "{e}");
        assert!(e.to_string().contains("check the server clock"), "{e}");
        // byok's pool provider disabled or deleted by the customer: a withdrawal.
        let e = parse_error(
            400,
            br#"{"error":"invalid_target","error_description":"The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist."}"#,
        );
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::AccessDenied, "invalid_target")
        );
        // Not JSON at all: the status decides.
        assert_eq!(
            parse_error(502, b"<html>bad gateway").kind,
            KmsErrorKind::Unavailable
        );
        assert_eq!(parse_error(418, b"").kind, KmsErrorKind::Malformed);
        // A hostile message cannot inject lines.
        let e = status(403, "PERMISSION_DENIED", "a\nb\u{1b}[31m");
        assert!(!e.message.contains('\n') && !e.message.contains('\u{1b}'));
    }
}
