//! AWS Signature Version 4: the credentials a request is signed with and the signing itself,
//! done by `aws-sigv4` with the time passed in. Kept apart from [`super::request`] (what KMS is
//! asked) because STS calls are signed the same way and because this is the part a reviewer
//! checks against AWS's published test suite (the tests at the end of this file).

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;
use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::kms::aws::arn::Endpoint;
use crate::kms::http::HttpRequest;

/// AWS credentials: static keys (development), or the temporary ones STS hands out.
/// `Debug` shows the access key id only.
#[derive(Clone)]
pub struct AwsCredentials {
    /// Access key id (`AKIA...` static, `ASIA...` temporary).
    pub access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
    /// When temporary credentials expire (seconds since the Unix epoch).
    pub expires_at: Option<u64>,
}

impl AwsCredentials {
    /// Credentials from their parts.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expires_at: Option<u64>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: session_token.map(Zeroizing::new),
            expires_at,
        }
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A request could not be built (bad signing input). Never caused by KMS answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningError(pub String);

impl fmt::Display for SigningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot sign the AWS request: {}", self.0)
    }
}

impl core::error::Error for SigningError {}

/// SigV4-signs a `POST /` to `endpoint` for AWS service `service` with `extra_headers`
/// (lower-case names) and `body`, at time `now` (since the Unix epoch).
pub(crate) fn sign_request(
    endpoint: &Endpoint,
    service: &str,
    extra_headers: &[(&str, &str)],
    body: Vec<u8>,
    creds: &AwsCredentials,
    now: Duration,
) -> Result<HttpRequest, SigningError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let url = endpoint.url().to_owned();
    let host = endpoint.host.clone();
    let mut headers = vec![("host".to_owned(), host)];
    headers.extend(
        extra_headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.as_str(),
        creds.session_token.as_ref().map(|t| t.as_str().to_owned()),
        None,
        "byok",
    )
    .into();
    let time = SystemTime::UNIX_EPOCH + now;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&endpoint.signing_region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SigningError(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&body),
    )
    .map_err(|e| SigningError(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| SigningError(e.to_string()))?
        .into_parts();
    let (signed_headers, _params) = instructions.into_parts();
    for h in signed_headers {
        headers.push((h.name().to_owned(), h.value().to_owned()));
    }
    Ok(HttpRequest {
        method: "POST",
        url,
        headers,
        body,
    })
}

/// The `POST /` cases of AWS's published Signature Version 4 test suite
/// (`aws-sig-v4-test-suite`: region `us-east-1`, service `service`, 2015-08-30T12:36:00Z), run
/// through the same [`sign_request`] every KMS and STS call goes through.
#[cfg(test)]
mod sigv4_suite {
    use super::*;
    use alloc::format;

    const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    struct Case {
        name: &'static str,
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
        token: Option<&'static str>,
        signed: &'static str,
        signature: &'static str,
    }

    const CASES: &[Case] = &[
        Case {
            name: "post-vanilla",
            headers: &[],
            body: "",
            token: None,
            signed: "host;x-amz-date",
            signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        },
        Case {
            name: "post-header-value-case",
            headers: &[("my-header1", "VALUE1")],
            body: "",
            token: None,
            signed: "host;my-header1;x-amz-date",
            signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        },
        Case {
            name: "post-x-www-form-urlencoded",
            headers: &[("content-type", "application/x-www-form-urlencoded")],
            body: "Param1=value1",
            token: None,
            signed: "content-type;host;x-amz-date",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        },
        Case {
            name: "post-sts-header-before",
            headers: &[],
            body: "",
            token: Some(STS_TOKEN),
            signed: "host;x-amz-date;x-amz-security-token",
            signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        },
    ];

    #[test]
    fn published_post_cases() {
        let endpoint = Endpoint::danger_override("https://example.amazonaws.com", "us-east-1")
            .expect("suite host");
        // 2015-08-30T12:36:00Z
        let now = Duration::from_secs(1_440_938_160);
        for case in CASES {
            let creds = AwsCredentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                case.token.map(String::from),
                None,
            );
            let req = sign_request(
                &endpoint,
                "service",
                case.headers,
                case.body.as_bytes().to_vec(),
                &creds,
                now,
            )
            .unwrap();
            let expected = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={}, Signature={}",
                case.signed, case.signature
            );
            assert_eq!(
                req.header("authorization"),
                Some(expected.as_str()),
                "{}",
                case.name
            );
            assert_eq!(
                req.header("x-amz-date"),
                Some("20150830T123600Z"),
                "{}",
                case.name
            );
        }
    }
}
