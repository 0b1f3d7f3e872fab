//! Azure error answers, classified (kms-wire.md section 5): Key Vault's
//! `{"error": {"code", "message", "innererror": {"code"}}}` (the inner code is the precise one:
//! `ForbiddenByRbac`, `KeyDisabled`, ...) and Entra ID's OAuth errors
//! (`{"error": "invalid_client", "error_description": "AADSTS7000215: ..."}`). The provider code
//! kept is the inner code when there is one, else the outer code, else the `AADSTS` number.

use alloc::string::{String, ToString};

use serde_json::Value;

use crate::kms::error::{KmsError, KmsErrorKind, clean_text};

/// At most this much of an error body is parsed.
const MAX_BODY: usize = 64 * 1024;

/// Classifies a non-2xx Azure answer.
pub fn parse_error(status: u16, body: &[u8]) -> KmsError {
    let body = body.get(..MAX_BODY).unwrap_or(body);
    let (code, message) = read(body).unwrap_or_default();
    KmsError {
        kind: classify(&code, &message, status),
        provider: "azure",
        code: clean_text(&code),
        message: clean_text(&message),
        status,
    }
}

fn read(body: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error")?;
    if let Some(oauth) = err.as_str() {
        let description = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // `AADSTS7000215: Invalid client secret provided. ...`: the number says what.
        let code = description
            .split(':')
            .next()
            .filter(|c| c.starts_with("AADSTS"))
            .unwrap_or(oauth);
        return Some((code.to_string(), description.to_string()));
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let inner = err.get("innererror").and_then(|i| text(i, "code"));
    let code = inner.or_else(|| text(err, "code")).unwrap_or_default();
    Some((code, text(err, "message").unwrap_or_default()))
}

fn classify(code: &str, message: &str, status: u16) -> KmsErrorKind {
    use KmsErrorKind as K;
    // A key past its expiry or before its activation date refuses operations with a bare
    // `Forbidden`; only the message tells it from a missing role.
    if status == 403
        && (message.contains("expired key")
            || message.contains("not yet valid")
            || message.contains("disabled key"))
    {
        return K::KeyDisabled;
    }
    match code {
        "KeyDisabled" => K::KeyDisabled,
        "KeyNotFound" | "KeyVaultNotFound" | "ResourceNotFound" => K::KeyNotFound,
        // The key exists but was deleted and is recoverable: pending deletion in byok's terms.
        "KeyDeleted" | "ObjectIsDeletedButRecoverable" => K::KeyPendingDeletion,
        "Forbidden"
        | "ForbiddenByRbac"
        | "ForbiddenByPolicy"
        | "ForbiddenByFirewall"
        | "ForbiddenByConnection"
        | "AccessDenied"
        | "Unauthorized" => K::AccessDenied,
        // The key's `key_ops` lacks the operation. On a key byok already uses, only the
        // customer can have taken it out (`az keyvault key set-attributes --ops`): a withdrawal
        // like disabling the key, so it evicts at once and gets no outage grace. A key that
        // never allowed it is caught by the describe at setup, with its own fix.
        "KeyOperationForbidden" => K::KeyDisabled,
        "Throttled" | "TooManyRequests" => K::Throttled,
        // Entra ID: a bad secret or assertion, an app not in the tenant, no federated
        // credential matching byok's issuer, subject or audience.
        // Entra's own outage carries an AADSTS number too (`server_error`, 5xx): the status
        // decides, so that an outage is not taken for every org's withdrawal.
        // And Entra's throttling too (429, AADSTS50196 and kin): retried, never a denial.
        // Except an assertion out of its time range (AADSTS700024 for a client assertion,
        // AADSTS500133 for a federated one): byok stamps `iat`/`exp` from its own clock, so
        // that is this server's clock, for every org at once, not a customer's withdrawal to
        // record against their key; malformed, whose fix names the clock (as AWS's
        // "Signature expired").
        "AADSTS700024" | "AADSTS500133" => K::Malformed,
        // byok's own credential refused: the vendor app's secret wrong or expired
        // (AADSTS7000215, AADSTS7000222), its certificate not registered or the assertion's
        // signature not matching it (AADSTS700027). Those live on the vendor's app, in the
        // vendor's tenant: the operator's doing, for every org at once, never a customer's
        // withdrawal (removing the app from their tenant or its role is AADSTS700016 and
        // kin, or the vault's 403).
        "AADSTS7000215" | "AADSTS7000222" | "AADSTS700027" => K::Unconfigured,
        c if c.starts_with("AADSTS") && status < 500 && status != 429 => K::AccessDenied,
        "invalid_client" | "invalid_grant" | "unauthorized_client" => K::AccessDenied,
        "BadParameter" if message.contains("decrypt") || message.contains("unwrap") => {
            K::InvalidCiphertext
        }
        _ => K::of_status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_vault_and_entra_errors_map_to_byoks_classes() {
        use KmsErrorKind as K;
        let vault = |status: u16, code: &str, inner: Option<&str>, message: &str| {
            let mut e = json!({ "code": code, "message": message });
            if let Some(i) = inner {
                e["innererror"] = json!({ "code": i });
            }
            parse_error(status, json!({ "error": e }).to_string().as_bytes())
        };
        let table = [
            (
                vault(
                    403,
                    "Forbidden",
                    Some("ForbiddenByRbac"),
                    "Caller is not authorized to perform action on resource.",
                ),
                K::AccessDenied,
                "ForbiddenByRbac",
            ),
            (
                vault(
                    403,
                    "Forbidden",
                    Some("KeyDisabled"),
                    "Operation unwrapKey is not allowed on a disabled key.",
                ),
                K::KeyDisabled,
                "KeyDisabled",
            ),
            (
                vault(
                    403,
                    "Forbidden",
                    None,
                    "Operation unwrapKey is not allowed on an expired key or a key that is not yet valid.",
                ),
                K::KeyDisabled,
                "Forbidden",
            ),
            (
                vault(
                    403,
                    "Forbidden",
                    Some("KeyOperationForbidden"),
                    "Operation wrapKey is not allowed on this key.",
                ),
                K::KeyDisabled,
                "KeyOperationForbidden",
            ),
            (
                vault(
                    404,
                    "KeyNotFound",
                    None,
                    "A key with (name/id) k was not found in this key vault.",
                ),
                K::KeyNotFound,
                "KeyNotFound",
            ),
            (
                vault(
                    400,
                    "BadParameter",
                    None,
                    "The parameter value is invalid: failed to unwrap",
                ),
                K::InvalidCiphertext,
                "BadParameter",
            ),
            (
                vault(400, "BadParameter", None, "Invalid algorithm"),
                K::Malformed,
                "BadParameter",
            ),
            (
                vault(
                    429,
                    "Throttled",
                    None,
                    "Request was not processed because too many requests were received.",
                ),
                K::Throttled,
                "Throttled",
            ),
            (
                vault(503, "ServiceUnavailable", None, ""),
                K::Unavailable,
                "ServiceUnavailable",
            ),
            (
                vault(
                    401,
                    "Unauthorized",
                    None,
                    "AKV10000: Request is missing a Bearer or PoP token.",
                ),
                K::AccessDenied,
                "Unauthorized",
            ),
        ];
        for (e, kind, code) in table {
            assert_eq!(
                (e.kind, e.code.as_str(), e.provider),
                (kind, code, "azure"),
                "{e}"
            );
        }
        let entra = parse_error(
            400,
            br#"{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found for presented assertion.","error_codes":[70021]}"#,
        );
        assert_eq!(
            (entra.kind, entra.code.as_str()),
            (K::AccessDenied, "AADSTS70021")
        );
        // Entra down: a 5xx with an AADSTS number is an outage, not a refusal.
        let down = parse_error(
            503,
            br#"{"error":"server_error","error_description":"AADSTS50000: There was an error issuing a token or an issue with our sign-in service."}"#,
        );
        assert_eq!(down.kind, K::Unavailable, "{down}");
        // Entra throttling byok: retried, not every org's withdrawal.
        let busy = parse_error(
            429,
            br#"{"error":"temporarily_unavailable","error_description":"AADSTS50196: The server terminated an operation because it encountered a client request loop."}"#,
        );
        assert_eq!(
            (busy.kind, busy.code.as_str()),
            (K::Throttled, "AADSTS50196")
        );
        assert_eq!(parse_error(502, b"bad gateway").kind, K::Unavailable);
        assert_eq!(parse_error(418, b"").kind, K::Malformed);
        // byok's clock off: its assertion refused as out of range is no customer's denial.
        for body in [
            &br#"{"error":"invalid_client","error_description":"AADSTS700024: Client assertion is not within its valid time range. Current time: 2026-12-04T10:00:00Z, assertion valid from 2026-12-04T10:20:00Z, expiry time of assertion 2026-12-04T10:30:00Z.","error_codes":[700024]}"#[..],
            &br#"{"error":"invalid_grant","error_description":"AADSTS500133: Assertion is not within its valid time range. Ensure that the access token is not expired before using it for user assertion, or request a new token.","error_codes":[500133]}"#[..],
        ] {
            let skewed = parse_error(400, body);
            assert_eq!(skewed.kind, K::Malformed, "{skewed}");
            assert!(skewed.to_string().contains("check the server clock"), "{skewed}");
        }
        // byok's own app credential refused: the vendor's doing, no customer's denial.
        for (body, code) in [
            (&br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.","error_codes":[7000215]}"#[..], "AADSTS7000215"),
            (&br#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app '00000000-0000-0000-0000-000000000000' are expired.","error_codes":[7000222]}"#[..], "AADSTS7000222"),
            (&br#"{"error":"invalid_client","error_description":"AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.","error_codes":[700027]}"#[..], "AADSTS700027"),
        ] {
            let e = parse_error(401, body);
            assert_eq!((e.kind, e.code.as_str()), (K::Unconfigured, code), "{e}");
            assert!(!e.kind.is_denial());
        }
        // The app taken out of the customer's tenant stays their withdrawal.
        let gone = parse_error(
            400,
            br#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'acme'.","error_codes":[700016]}"#,
        );
        assert_eq!(gone.kind, K::AccessDenied, "{gone}");
    }
}
