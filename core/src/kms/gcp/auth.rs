//! How byok gets a Cloud KMS access token (kms-wire.md section 4), as a [`CredentialFlow`]:
//!
//! - **Workload identity federation** (production; no secret anywhere): byok's own OIDC token
//!   for the org, audience the customer's pool provider, exchanged at Google's STS for a
//!   federated token; then, if the customer named a service account, `generateAccessToken` on
//!   it (impersonation). Without one, the federated token is used directly, and the key's IAM
//!   policy names the pool principal of this org's subject.
//! - **The vendor's service account** (development): a JWT bearer grant, RS256-signed by the
//!   host with the key it holds (`jsonwebtoken`), at the OAuth token endpoint.
//!
//! Hosts are fixed (`oauth2`, `sts`, `iamcredentials` on `googleapis.com`); only server
//! configuration can point them elsewhere, for tests.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use core::time::Duration;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::kms::error::KmsError;
use crate::kms::gcp::error::parse_error;
use crate::kms::http::{HttpRequest, HttpResponse, form_encode};
use crate::kms::provider::{CredentialFlow, Credentials, Need, RequestError, oauth_access_token};

/// The OAuth scope byok asks for: Cloud KMS only, not all of Cloud Platform.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";

/// The scope of the federated token that impersonates a customer's service account: IAM
/// Credentials' `generateAccessToken` refuses a Cloud KMS token
/// (`ACCESS_TOKEN_SCOPE_INSUFFICIENT`); google-auth scopes an impersonation's source
/// credentials to this one. The token it returns is scoped to [`SCOPE`] again.
pub const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";

/// Tokens are asked for this long (Google's maximum without an org policy exception).
pub const LIFETIME: Duration = Duration::from_secs(3600);

const OAUTH_TOKEN: &str = "https://oauth2.googleapis.com/token";
const STS_TOKEN: &str = "https://sts.googleapis.com/v1/token";
const IAM_CREDENTIALS: &str = "https://iamcredentials.googleapis.com";

/// The vendor's service account, from its key file; the private key stays with the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccount {
    /// `client_email`.
    pub client_email: String,
    /// `private_key_id`: the `kid` of the assertions.
    pub private_key_id: String,
}

fn url(danger_base: Option<&str>, real: &str, path: &str) -> String {
    match danger_base {
        Some(b) => format!("{}{path}", b.trim_end_matches('/')),
        None => real.to_owned(),
    }
}

fn post_form(url: String, body: String) -> HttpRequest {
    HttpRequest {
        method: "POST",
        url,
        headers: alloc::vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into()
        )],
        body: body.into_bytes(),
    }
}

fn malformed(resp: &HttpResponse, what: &str) -> KmsError {
    resp.malformed("gcp", &format!("unexpected token answer: {what}"))
}

fn json_ok(resp: &HttpResponse) -> Result<serde_json::Map<String, Value>, KmsError> {
    resp.json_object("gcp", |r| parse_error(r.status, &r.body))
}

/// `access_token` and its expiry from a token answer (OAuth or STS).
fn oauth_answer(resp: &HttpResponse, now: Duration) -> Result<(Zeroizing<String>, u64), KmsError> {
    check(resp)?;
    oauth_access_token(&resp.body, now).map_err(|what| malformed(resp, what))
}

/// `accessToken` and `expireTime` (RFC 3339) of a `generateAccessToken` answer.
fn impersonation_answer(resp: &HttpResponse) -> Result<(Zeroizing<String>, u64), KmsError> {
    let mut m = json_ok(resp)?;
    // Taken out of the map, not copied: the map would drop its copy unwiped.
    let token = crate::kms::http::take_secret(&mut m, "accessToken")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed(resp, "accessToken"))?;
    let at = m
        .get("expireTime")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(resp, "expireTime"))?;
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| malformed(resp, "expireTime is not an RFC 3339 time"))?
        .unix_timestamp();
    let at = u64::try_from(at).map_err(|_| malformed(resp, "expireTime before 1970"))?;
    Ok((token, at))
}

fn check(resp: &HttpResponse) -> Result<(), KmsError> {
    if (200..300).contains(&resp.status) {
        Ok(())
    } else {
        Err(parse_error(resp.status, &resp.body))
    }
}

/// The vendor's service account: one JWT bearer grant.
pub struct VendorGrant {
    account: ServiceAccount,
    danger_base: Option<String>,
    assertion: Option<Zeroizing<String>>,
    got: Option<(Zeroizing<String>, u64)>,
}

impl VendorGrant {
    /// A grant for `account`.
    pub fn new(account: ServiceAccount, danger_base: Option<String>) -> Self {
        Self {
            account,
            danger_base,
            assertion: None,
            got: None,
        }
    }

    fn token_url(&self) -> String {
        url(self.danger_base.as_deref(), OAUTH_TOKEN, "/token")
    }
}

/// The claims of a JWT bearer grant by `account`, issued at `now`. The audience is Google's
/// token endpoint whatever URL the grant is sent to (as google-auth does; the endpoint checks
/// it).
pub fn grant_claims(account: &ServiceAccount, now: Duration) -> Value {
    let iat = now.as_secs();
    json!({
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": OAUTH_TOKEN,
        "iat": iat,
        "exp": iat + LIFETIME.as_secs(),
    })
}

impl CredentialFlow for VendorGrant {
    fn need(&self, now: Duration) -> Need {
        match (&self.got, &self.assertion) {
            (Some(_), _) => Need::Done,
            (None, None) => Need::Sign {
                claims: grant_claims(&self.account, now),
            },
            (None, Some(_)) => Need::Exchange,
        }
    }

    fn supply(&mut self, value: Zeroizing<String>) {
        self.assertion = Some(value);
    }

    fn request(&self, _: Duration) -> Result<HttpRequest, RequestError> {
        let assertion = self
            .assertion
            .as_ref()
            .ok_or_else(|| RequestError("the assertion was not supplied".into()))?;
        let body = form_encode(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ]);
        Ok(post_form(self.token_url(), body))
    }

    /// A refusal here is of byok's own service account (its key deleted or rotated away, the
    /// account disabled): the vendor's doing, for every org on it at once, never a customer's
    /// withdrawal (a customer withdraws at their key's IAM policy, which the KMS call answers).
    /// So it is `Unconfigured`, not `AccessDenied`: no denial is recorded against the
    /// customers' keys, and their cached keys are not evicted for it.
    fn check(&self, resp: &HttpResponse) -> Result<(), KmsError> {
        check(resp).map_err(|mut e| {
            if e.kind == crate::kms::error::KmsErrorKind::AccessDenied {
                e.kind = crate::kms::error::KmsErrorKind::Unconfigured;
            }
            e
        })
    }

    fn answer(&mut self, resp: &HttpResponse, now: Duration) -> Result<(), KmsError> {
        self.got = Some(oauth_answer(resp, now)?);
        Ok(())
    }

    fn credentials(&self) -> Option<(Credentials, Option<u64>)> {
        self.got
            .as_ref()
            .map(|(t, at)| (Credentials::Bearer(t.clone()), Some(*at)))
    }
}

/// Workload identity federation: byok's token → STS → (optionally) impersonation.
pub struct Federation {
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`.
    audience: String,
    service_account: Option<String>,
    danger_base: Option<String>,
    subject_token: Option<Zeroizing<String>>,
    federated: Option<Zeroizing<String>>,
    got: Option<(Zeroizing<String>, u64)>,
}

impl Federation {
    /// A flow through pool provider `audience`, impersonating `service_account` if given.
    pub fn new(
        audience: String,
        service_account: Option<String>,
        danger_base: Option<String>,
    ) -> Self {
        Self {
            audience,
            service_account,
            danger_base,
            subject_token: None,
            federated: None,
            got: None,
        }
    }
}

/// The `aud` of byok's token for pool provider `audience`: its full resource name with the
/// HTTPS prefix, which a provider accepts when no allowed audiences are configured.
pub fn token_audience(audience: &str) -> String {
    format!("https:{audience}")
}

impl CredentialFlow for Federation {
    fn need(&self, _: Duration) -> Need {
        if self.got.is_some() {
            Need::Done
        } else if self.subject_token.is_none() {
            Need::Token {
                audience: token_audience(&self.audience),
            }
        } else {
            Need::Exchange
        }
    }

    fn supply(&mut self, value: Zeroizing<String>) {
        self.subject_token = Some(value);
    }

    fn request(&self, _: Duration) -> Result<HttpRequest, RequestError> {
        let base = self.danger_base.as_deref();
        if let (Some(federated), Some(sa)) = (&self.federated, &self.service_account) {
            let body = json!({ "scope": [SCOPE], "lifetime": format!("{}s", LIFETIME.as_secs()) })
                .to_string();
            return Ok(HttpRequest {
                method: "POST",
                url: format!(
                    "{}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken",
                    url(base, IAM_CREDENTIALS, "")
                ),
                headers: alloc::vec![
                    (
                        "authorization".into(),
                        format!("Bearer {}", federated.as_str())
                    ),
                    ("content-type".into(), "application/json".into()),
                ],
                body: body.into_bytes(),
            });
        }
        let token = self
            .subject_token
            .as_ref()
            .ok_or_else(|| RequestError("byok's OIDC token was not supplied".into()))?;
        let body = form_encode(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", &self.audience),
            (
                "scope",
                if self.service_account.is_some() {
                    IAM_SCOPE
                } else {
                    SCOPE
                },
            ),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ]);
        Ok(post_form(url(base, STS_TOKEN, "/v1/token"), body))
    }

    fn check(&self, resp: &HttpResponse) -> Result<(), KmsError> {
        check(resp)
    }

    fn answer(&mut self, resp: &HttpResponse, now: Duration) -> Result<(), KmsError> {
        if self.federated.is_some() {
            self.got = Some(impersonation_answer(resp)?);
            return Ok(());
        }
        let (token, at) = oauth_answer(resp, now)?;
        if self.service_account.is_some() {
            self.federated = Some(token);
        } else {
            self.got = Some((token, at));
        }
        Ok(())
    }

    fn credentials(&self) -> Option<(Credentials, Option<u64>)> {
        self.got
            .as_ref()
            .map(|(t, at)| (Credentials::Bearer(t.clone()), Some(*at)))
    }
}

/// A boxed flow, for the provider.
pub(crate) fn boxed(flow: impl CredentialFlow + 'static) -> Box<dyn CredentialFlow> {
    Box::new(flow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::error::KmsErrorKind;

    const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/byok/providers/byok-issuer";
    const NOW: Duration = Duration::from_secs(1_800_000_000);

    fn resp(status: u16, body: Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: alloc::vec::Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    fn form_of(req: &HttpRequest) -> String {
        String::from_utf8(req.body.clone()).unwrap()
    }

    #[test]
    fn vendor_grant_signs_then_exchanges() {
        let sa = ServiceAccount {
            client_email: "byok@vendor-prod.iam.gserviceaccount.com".into(),
            private_key_id: "k1".into(),
        };
        let mut f = VendorGrant::new(sa, None);
        let Need::Sign { claims } = f.need(NOW) else {
            panic!()
        };
        assert_eq!(claims["aud"], OAUTH_TOKEN);
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"].as_u64(), Some(NOW.as_secs() + 3600));
        f.supply(Zeroizing::new("a.b.c".into()));
        let req = f.request(NOW).unwrap();
        assert_eq!(req.url, OAUTH_TOKEN);
        assert!(form_of(&req).ends_with("&assertion=a.b.c"));
        f.answer(
            &resp(
                200,
                json!({"access_token": "ya29", "expires_in": 3599, "token_type": "Bearer"}),
            ),
            NOW,
        )
        .unwrap();
        let (Credentials::Bearer(t), Some(at)) = f.credentials().unwrap() else {
            panic!()
        };
        assert_eq!((t.as_str(), at), ("ya29", NOW.as_secs() + 3599));
    }

    /// Google refusing byok's own service account (its key deleted: "Invalid JWT
    /// Signature.") is the vendor's doing, for every org at once: not a customer's denial.
    /// A token endpoint's outage stays an outage.
    #[test]
    fn a_refused_vendor_grant_is_no_customers_denial() {
        let sa = ServiceAccount {
            client_email: "byok@vendor-prod.iam.gserviceaccount.com".into(),
            private_key_id: "k1".into(),
        };
        let f = VendorGrant::new(sa, None);
        let refused = resp(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        );
        let e = f.check(&refused).unwrap_err();
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::Unconfigured, "invalid_grant")
        );
        assert!(!e.kind.is_denial());
        let down = resp(503, json!({"error": "temporarily_unavailable"}));
        assert_eq!(f.check(&down).unwrap_err().kind, KmsErrorKind::Unavailable);
    }

    #[test]
    fn federation_exchanges_then_impersonates() {
        let sa = "byok-access@acme-prod.iam.gserviceaccount.com";
        let mut f = Federation::new(POOL.into(), Some(sa.into()), None);
        assert!(
            matches!(f.need(NOW), Need::Token { audience } if audience == format!("https:{POOL}"))
        );
        f.supply(Zeroizing::new("byok-jwt".into()));
        let sts = f.request(NOW).unwrap();
        assert_eq!(sts.url, STS_TOKEN);
        let body = form_of(&sts);
        assert!(body.contains("subject_token=byok-jwt"), "{body}");
        assert!(
            body.contains("audience=%2F%2Fiam.googleapis.com%2Fprojects%2F123456789012"),
            "{body}"
        );
        // The federated token is for IAM Credentials, which refuses a Cloud KMS one.
        assert!(
            body.contains("&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fiam&"),
            "{body}"
        );
        // STS sometimes sends expires_in as a string.
        f.answer(&resp(200, json!({"access_token": "fed", "expires_in": "3600", "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})), NOW)
            .unwrap();
        assert!(matches!(f.need(NOW), Need::Exchange));
        let imp = f.request(NOW).unwrap();
        assert_eq!(
            imp.url,
            format!("{IAM_CREDENTIALS}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken")
        );
        assert_eq!(imp.header("authorization"), Some("Bearer fed"));
        let asked: Value = serde_json::from_slice(&imp.body).unwrap();
        assert_eq!(
            asked["scope"],
            json!([SCOPE]),
            "the key's token: Cloud KMS only"
        );
        f.answer(
            &resp(
                200,
                json!({"accessToken": "ya29.sa", "expireTime": "2027-01-15T08:00:00Z"}),
            ),
            NOW,
        )
        .unwrap();
        let (Credentials::Bearer(t), Some(at)) = f.credentials().unwrap() else {
            panic!()
        };
        assert_eq!(t.as_str(), "ya29.sa");
        assert_eq!(at, 1_800_000_000, "expireTime, not now + lifetime");
    }

    #[test]
    fn refusals_are_classified() {
        let mut f = Federation::new(POOL.into(), None, Some("http://127.0.0.1:9".into()));
        f.supply(Zeroizing::new("t".into()));
        let sts = f.request(NOW).unwrap();
        assert_eq!(sts.url, "http://127.0.0.1:9/v1/token");
        // No service account: the pool's principal calls Cloud KMS with the token itself.
        let body = form_of(&sts);
        assert!(
            body.contains("&scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fcloudkms&"),
            "{body}"
        );
        let e = f
            .answer(&resp(400, json!({"error": "invalid_grant", "error_description": "The audience in ID Token does not match"})), NOW)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::AccessDenied, "invalid_grant")
        );
        assert!(f.credentials().is_none());
    }
}
