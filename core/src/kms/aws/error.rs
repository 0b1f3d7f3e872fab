//! AWS error answers: JSON 1.1 bodies (`{"__type": "...", "message": "..."}`, the code also in
//! `X-Amzn-ErrorType`), and XML bodies (`<ErrorResponse>...<Code>..</Code><Message>..`), which
//! STS sends and which moto sends for authentication failures even on the JSON protocol.

use alloc::string::{String, ToString};

use crate::kms::error::{KmsError, KmsErrorKind, clean_text};

/// At most this much of an error body is parsed.
const MAX_BODY: usize = 64 * 1024;

/// Classifies a non-2xx AWS answer.
pub fn parse_error(status: u16, headers: &[(String, String)], body: &[u8]) -> KmsError {
    let body = body.get(..MAX_BODY).unwrap_or(body);
    let header_code = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amzn-errortype"))
        .map(|(_, v)| strip_code(v));
    let (body_code, message) = json_error(body)
        .or_else(|| xml_error(body))
        .unwrap_or_default();
    let code = header_code.filter(|c| !c.is_empty()).unwrap_or(body_code);
    let kind = classify(&code, &message, status);
    KmsError {
        kind,
        provider: "aws",
        code: clean_text(&code),
        message: clean_text(&message),
        status,
    }
}

/// `namespace#Code:url` -> `Code` (as botocore does).
fn strip_code(raw: &str) -> String {
    let after_hash = raw.rsplit('#').next().unwrap_or(raw);
    after_hash
        .split(':')
        .next()
        .unwrap_or(after_hash)
        .trim()
        .to_string()
}

fn json_error(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object()?;
    let code = obj
        .get("__type")
        .or_else(|| obj.get("code"))
        .and_then(|c| c.as_str())
        .map(strip_code)?;
    let message = obj
        .get("message")
        .or_else(|| obj.get("Message"))
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

/// The text of the first `Code` and `Message` elements, wherever they sit.
fn xml_error(body: &[u8]) -> Option<(String, String)> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let (mut code, mut message) = (None::<String>, None::<String>);
    let mut inside: Option<&'static str> = None;
    let mut buf = alloc::vec::Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                inside = match e.local_name().as_ref() {
                    "Code" if code.is_none() => Some("code"),
                    "Message" if message.is_none() => Some("message"),
                    _ => None,
                };
            }
            Ok(Event::Text(t)) => {
                if let Some(which) = inside {
                    // Entity references arrive as separate events; error codes and messages
                    // need none, and missing one only shortens a message.
                    let text = String::from(t.as_ref());
                    match which {
                        "code" => code = Some(text),
                        _ => message = Some(text),
                    }
                }
            }
            Ok(Event::End(_)) => inside = None,
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
        buf.clear();
    }
    Some((code?, message.unwrap_or_default()))
}

/// The code tables of `kms-wire.md` section 1, then the HTTP status as a fallback.
fn classify(code: &str, message: &str, status: u16) -> KmsErrorKind {
    use KmsErrorKind::*;
    match code {
        // This server's clock, not the customer: AWS refuses a request signed more than five
        // minutes from its own time ("Signature expired: ... is now earlier than ...", or "not
        // yet current"; KMS says InvalidSignatureException, STS SignatureDoesNotMatch). No
        // customer action causes it, so it is not a withdrawal to record against their key
        // (every org's at once), nor an outage to serve through: malformed, whose fix names the
        // clock.
        "InvalidSignatureException" | "SignatureDoesNotMatch"
            if message.contains("Signature expired")
                || message.contains("Signature not yet current") =>
        {
            Malformed
        }
        // An expired session token is byok's own (the vendor's session credentials, or a
        // role's cached ones past their end): nothing a customer does causes it. The
        // operator's to fix, not a withdrawal to record against every org's key.
        "ExpiredTokenException" | "ExpiredToken" => Unconfigured,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "InvalidIdentityToken"
        | "IDPRejectedClaim"
        | "RegionDisabledException" => AccessDenied,
        "DisabledException" => KeyDisabled,
        // KMS names the key's state in the message ("<arn> is pending deletion."). Only the
        // states KMS passes through on its own (a multi-Region key `Creating` or `Updating`)
        // are an outage. `Unavailable` is a custom key store the customer disconnected: the
        // way an XKS or CloudHSM customer withdraws, so it is a denial like `Disabled`, and no
        // outage grace may outlast it.
        "KMSInvalidStateException" => {
            let m = message.to_ascii_lowercase();
            if m.contains("pendingdeletion") || m.contains("pending deletion") {
                KeyPendingDeletion
            } else if m.contains(" is creating") || m.contains(" is updating") {
                // Named as the key's state ("<arn> is Creating."), not as any substring: the
                // message names the key too, and an outage class here would let outage grace
                // serve through a disabled key whose name held the word.
                Unavailable
            } else {
                KeyDisabled
            }
        }
        "NotFoundException" => KeyNotFound,
        "InvalidCiphertextException" | "IncorrectKeyException" => InvalidCiphertext,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestThrottledException"
        | "TooManyRequestsException"
        | "LimitExceededException" => Throttled,
        "KeyUnavailableException"
        | "DependencyTimeoutException"
        | "KMSInternalException"
        | "InternalFailure"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "IDPCommunicationError" => Unavailable,
        "InvalidArnException"
        | "InvalidKeyUsageException"
        | "InvalidGrantTokenException"
        | "ValidationException"
        | "SerializationException"
        | "RequestExpired" => Malformed,
        _ => match status {
            429 => Throttled,
            500..=599 => Unavailable,
            401 | 403 => AccessDenied,
            404 => KeyNotFound,
            _ => Malformed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn h(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.into(), v.into())]
    }
    use alloc::vec::Vec;

    #[test]
    fn json_bodies_and_header_codes() {
        let e = parse_error(400, &[], br#"{"__type":"com.amazonaws.kms#DisabledException","message":"arn:aws:kms:... is disabled."}"#);
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::KeyDisabled, "DisabledException")
        );
        assert!(e.message.contains("disabled"));
        let e = parse_error(
            400,
            &h(
                "X-Amzn-ErrorType",
                "ThrottlingException:http://internal.amazon.com/",
            ),
            b"{}",
        );
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::Throttled, "ThrottlingException")
        );
        // moto's InvalidCiphertextException has no message.
        let e = parse_error(400, &[], br#"{"__type":"InvalidCiphertextException"}"#);
        assert_eq!(e.kind, KmsErrorKind::InvalidCiphertext);
        // KMS names the key's state in the message. A disconnected custom key store
        // (`unavailable`) is the customer's withdrawal, not an outage; KMS's own passing states
        // of a multi-Region key are.
        for (state, kind) in [
            ("pending deletion", KmsErrorKind::KeyPendingDeletion),
            ("unavailable", KmsErrorKind::KeyDisabled),
            ("pending import", KmsErrorKind::KeyDisabled),
            ("disabled", KmsErrorKind::KeyDisabled),
            ("updating", KmsErrorKind::Unavailable),
            ("creating", KmsErrorKind::Unavailable),
        ] {
            let body = alloc::format!(
                r#"{{"__type":"KMSInvalidStateException","message":"arn:aws:kms:eu-west-1:111122223333:key/k is {state}."}}"#
            );
            assert_eq!(parse_error(400, &[], body.as_bytes()).kind, kind, "{state}");
        }
        // A disabled key whose name holds a passing state's word is still disabled.
        let body = br#"{"__type":"KMSInvalidStateException","message":"arn:aws:kms:eu-west-1:111122223333:alias/creating-keys is disabled."}"#;
        assert_eq!(parse_error(400, &[], body).kind, KmsErrorKind::KeyDisabled);
        let e = parse_error(
            500,
            &[],
            br#"{"__type":"KMSInternalException","Message":"x"}"#,
        );
        assert!(e.kind.is_transient());
    }

    /// Clock skew is the server's, not a withdrawal: KMS's JSON and STS's XML answers to a
    /// request dated too far from AWS's time. A wrong secret stays a denial.
    #[test]
    fn a_request_signed_on_a_skewed_clock_is_not_a_denial() {
        let kms = br#"{"__type":"InvalidSignatureException","message":"Signature expired: 20261202T150000Z is now earlier than 20261202T151000Z (20261202T151500Z - 5 min.)"}"#;
        let e = parse_error(400, &[], kms);
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::Malformed, "InvalidSignatureException")
        );
        assert!(e.to_string().contains("check the server clock"), "{e}");
        let ahead = br#"{"__type":"InvalidSignatureException","message":"Signature not yet current: 20261202T160000Z is still later than 20261202T155500Z (20261202T155000Z + 5 min.)"}"#;
        assert_eq!(parse_error(400, &[], ahead).kind, KmsErrorKind::Malformed);
        let sts = b"<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code><Message>Signature expired: 20261202T150000Z is now earlier than 20261202T151000Z (20261202T151500Z - 15 min.)</Message></Error><RequestId>r</RequestId></ErrorResponse>";
        assert_eq!(parse_error(403, &[], sts).kind, KmsErrorKind::Malformed);
        let wrong_secret = br#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match the signature you provided."}"#;
        assert_eq!(
            parse_error(400, &[], wrong_secret).kind,
            KmsErrorKind::AccessDenied
        );
        // byok's own session expired (the vendor's session token, a web identity token STS
        // finds expired): the operator's to fix, not the customer's denial.
        let expired = b"<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredTokenException</Code><Message>Token expired: current date/time must be before the expiration date/time.</Message></Error><RequestId>r</RequestId></ErrorResponse>";
        assert_eq!(
            parse_error(400, &[], expired).kind,
            KmsErrorKind::Unconfigured
        );
        let kms = br#"{"__type":"ExpiredTokenException","message":"The security token included in the request is expired"}"#;
        assert_eq!(parse_error(400, &[], kms).kind, KmsErrorKind::Unconfigured);
    }

    #[test]
    fn moto_and_sts_xml_bodies() {
        // moto's auth errors on the JSON protocol: ErrorResponse/Errors/Error.
        let body = b"<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message><Type>Sender</Type></Error></Errors></ErrorResponse>";
        let e = parse_error(403, &[], body);
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::AccessDenied, "SignatureDoesNotMatch")
        );
        let body = b"<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/byok is not authorized to perform: kms:Decrypt</Message></Error><RequestId>r</RequestId></ErrorResponse>";
        let e = parse_error(403, &[], body);
        assert_eq!(e.kind, KmsErrorKind::AccessDenied);
        assert!(e.message.contains("kms:Decrypt"), "{e}");
        assert!(
            e.to_string().contains("kms:DescribeKey"),
            "the hint names the fix: {e}"
        );
    }

    #[test]
    fn status_fallback_and_hostile_bodies() {
        assert_eq!(
            parse_error(503, &[], b"<html>busy</html>").kind,
            KmsErrorKind::Unavailable
        );
        assert_eq!(parse_error(429, &[], b"").kind, KmsErrorKind::Throttled);
        assert_eq!(
            parse_error(418, &[], b"\xff\xfe").kind,
            KmsErrorKind::Malformed
        );
        let e = parse_error(
            400,
            &[],
            b"{\"__type\":\"X\\r\\nInjected: 1\",\"message\":\"a\\u001b[31mred\"}",
        );
        assert!(
            !e.code.contains('\n') && !e.message.contains('\u{1b}'),
            "{e:?}"
        );
        let long = alloc::format!(
            "{{\"__type\":\"ValidationException\",\"message\":\"{}\"}}",
            "x".repeat(10_000)
        );
        assert!(parse_error(400, &[], long.as_bytes()).message.len() < 400);
    }
}
