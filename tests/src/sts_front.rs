//! `AssumeRoleWithWebIdentity` for the tests' front, because moto cannot serve it here: with
//! authentication on, moto demands a SigV4 signature on every request (this call has none: the
//! token is the credential) and answers 500, and it never checks the token anyway.
//!
//! Written from the STS API reference for `AssumeRoleWithWebIdentity`: the token must be a JWT
//! signed by the trusted issuer's key, unexpired, with the issuer and the `sts.amazonaws.com`
//! audience; the role's trust policy must accept its subject. Refusals are STS's query-protocol
//! XML errors: `InvalidIdentityToken` and `ExpiredTokenException` (400), `AccessDenied` (403).
//! A token that passes is turned into a signed `AssumeRole` of the same role, sent to moto as
//! the `sts-front` user, and moto's own answer (real temporary credentials, which moto then
//! checks on every KMS call) is relayed.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use byok_core::kms::aws::Endpoint;
use byok_core::kms::aws::request::AwsCredentials;
use byok_core::kms::aws::sts::{RoleArn, assume_role_request};
use byok_server::transport::{Transport, TransportConfig};

/// How the front checks a token's signature.
#[derive(Clone)]
pub enum Verifier {
    /// ES256 with this public key, the uncompressed P-256 point (65 bytes): the credential
    /// cache's own tests sign their tokens.
    Es256(Vec<u8>),
    /// RS256 with the key the token's `kid` names in the JWKS at this URL, fetched for each
    /// token as an IAM OIDC provider fetches it: byok's own issuer. Set once byok listens.
    Jwks(Arc<OnceLock<String>>),
}

/// Who the front's STS trusts, as an IAM OIDC provider plus the role's trust policy would.
#[derive(Clone)]
pub struct OidcTrust {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// How their signature is checked.
    pub verifier: Verifier,
    /// The only `sub` the role trusts.
    pub subject: Arc<OnceLock<String>>,
    /// The role that trusts the issuer.
    pub role_arn: String,
    /// How the account's IAM OIDC provider and STS see tokens (tests change them while the
    /// front runs).
    pub knobs: StsKnobs,
    /// moto user the front assumes the role as.
    pub relay: AwsCredentials,
}

/// What the IAM OIDC provider lists and when STS thinks it is, changeable while the front runs.
#[derive(Clone)]
pub struct StsKnobs {
    /// The provider's `ClientIDList`: the audiences it accepts.
    pub clients: Arc<std::sync::Mutex<Vec<String>>>,
    /// How far STS's clock runs ahead of the test's, in seconds.
    pub clock_ahead: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for StsKnobs {
    fn default() -> Self {
        Self {
            clients: Arc::new(std::sync::Mutex::new(vec!["sts.amazonaws.com".into()])),
            clock_ahead: Arc::default(),
        }
    }
}

/// A raw HTTP/1.1 answer.
pub(crate) fn http_answer(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn sts_error(status: u16, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>00000000-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
    );
    http_answer(status, "text/xml", body.as_bytes())
}

/// `application/x-www-form-urlencoded` to pairs; `None` if malformed.
pub(crate) fn form_decode(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Some(out)
}

pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        bytes.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [it.next()?, it.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(bytes).ok()
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// The key the token's `kid` names in the JWKS at `url`, if there is one (RS256 only).
pub(crate) async fn jwks_key(url: Option<&str>, token: &str) -> Option<jsonwebtoken::DecodingKey> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let jwks: serde_json::Value =
        serde_json::from_slice(&reqwest::get(url?).await.ok()?.bytes().await.ok()?).ok()?;
    let jwk = jwks["keys"]
        .as_array()?
        .iter()
        .find(|k| k["kid"] == kid.as_str() && k["kty"] == "RSA" && k["alg"] == "RS256")?;
    jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str()?, jwk["e"].as_str()?).ok()
}

/// The answer to `body` if it is an `AssumeRoleWithWebIdentity` request, else `None`.
pub(crate) async fn answer(body: &[u8], upstream: &str, trust: &OidcTrust) -> Option<Vec<u8>> {
    let form = form_decode(body)?;
    if form.get("Action").map(String::as_str) != Some("AssumeRoleWithWebIdentity") {
        return None;
    }
    let (Some(role), Some(session), Some(token)) = (
        form.get("RoleArn"),
        form.get("RoleSessionName"),
        form.get("WebIdentityToken"),
    ) else {
        return Some(sts_error(
            400,
            "ValidationError",
            "RoleArn, RoleSessionName and WebIdentityToken are required",
        ));
    };
    let (alg, key) = match &trust.verifier {
        Verifier::Es256(public) => (
            jsonwebtoken::Algorithm::ES256,
            Some(jsonwebtoken::DecodingKey::from_ec_der(public)),
        ),
        Verifier::Jwks(url) => (
            jsonwebtoken::Algorithm::RS256,
            jwks_key(url.get().map(String::as_str), token).await,
        ),
    };
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_issuer(&[&trust.issuer]);
    let clients = trust
        .knobs
        .clients
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    validation.set_audience(&clients);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    let decoded = match &key {
        Some(key) => jsonwebtoken::decode::<Claims>(token, key, &validation),
        None => Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into()),
    };
    let ahead = trust
        .knobs
        .clock_ahead
        .load(std::sync::atomic::Ordering::SeqCst);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = match decoded {
        Ok(t) if t.claims.exp <= now + ahead => {
            return Some(sts_error(
                400,
                "ExpiredTokenException",
                "Token expired: current date/time must be before the expiration date/time.",
            ));
        }
        Ok(t) => t.claims,
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
            return Some(sts_error(
                400,
                "ExpiredTokenException",
                "Token expired: current date/time must be before the expiration date/time.",
            ));
        }
        Err(_) => {
            return Some(sts_error(
                400,
                "InvalidIdentityToken",
                "The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request.",
            ));
        }
    };
    if trust.subject.get() != Some(&claims.sub) || *role != trust.role_arn {
        return Some(sts_error(
            403,
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        ));
    }
    let duration = form
        .get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3600);
    let relayed = async {
        let endpoint =
            Endpoint::danger_override(&format!("http://{upstream}"), "us-east-1").ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let req = assume_role_request(
            &endpoint,
            &RoleArn::parse(role).ok()?,
            session,
            "sts-front",
            Duration::from_secs(duration),
            &trust.relay,
            now,
        )
        .ok()?;
        let transport = Transport::new(TransportConfig {
            danger_allow_http: true,
            ..Default::default()
        })
        .ok()?;
        let resp = transport.execute(&req).await.ok()?;
        Some(http_answer(resp.status, "text/xml", &resp.body))
    };
    Some(relayed.await.unwrap_or_else(|| {
        sts_error(
            503,
            "ServiceUnavailable",
            "the tests' STS front could not reach moto",
        )
    }))
}
