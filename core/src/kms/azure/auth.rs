//! Entra ID tokens for Key Vault (kms-wire.md section 5), as a [`CredentialFlow`], and the
//! vault's 401 challenge, checked against the key's cloud.
//!
//! - **Federated credential** (production; no secret): byok's own OIDC token for the org,
//!   audience `api://AzureADTokenExchange`, presented as the client assertion of the customer's
//!   app registration, which trusts byok's issuer for this org's subject.
//! - **Client secret** (development): the vendor's own app and secret.
//!
//! The token endpoint is the cloud's login host (`login.microsoftonline.com`, `.us`,
//! `login.chinacloudapi.cn`), never one a challenge names: a challenge is only read to learn the
//! tenant, and refused if its authority or resource belongs to another cloud.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use core::time::Duration;

use zeroize::Zeroizing;

use crate::kms::azure::error::parse_error;
use crate::kms::azure::url::{Cloud, KeyUrl};
use crate::kms::error::{KmsError, clean_text};
use crate::kms::http::{HttpRequest, HttpResponse, form_encode};
use crate::kms::provider::{CredentialFlow, Credentials, Need, RequestError, oauth_access_token};

/// The audience Entra expects in a federated credential's assertion.
pub const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The cloud's Entra login host.
pub const fn login_host(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Public => "login.microsoftonline.com",
        Cloud::China => "login.chinacloudapi.cn",
        Cloud::UsGov => "login.microsoftonline.us",
    }
}

/// A tenant id: a GUID, or a verified domain (`contoso.onmicrosoft.com`). It goes into the token
/// URL's path, so nothing else is accepted.
pub fn tenant_ok(t: &str) -> bool {
    let guid = t.len() == 36
        && t.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let domain = (4..=253).contains(&t.len())
        && t.contains('.')
        && !t.starts_with(['.', '-'])
        && !t.ends_with(['.', '-'])
        && !t.contains("..")
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    guid || domain
}

/// What a vault's `WWW-Authenticate: Bearer ...` challenge says, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The tenant the vault belongs to.
    pub tenant: String,
    /// The token scope to ask for.
    pub scope: String,
}

/// Reads a 401 challenge for `key`: the authority must be the key's cloud's login host, the
/// resource (or scope) the key's service in that cloud. Anything else is refused with the
/// reason: a vault cannot send byok's token requests elsewhere.
pub fn parse_challenge(key: &KeyUrl, header: &str) -> Result<Challenge, String> {
    let params = header
        .trim()
        .strip_prefix("Bearer ")
        .ok_or("not a Bearer challenge")?;
    let mut authority = None;
    let mut resource = None;
    let mut scope = None;
    for part in params.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim() {
            "authorization" | "authorization_uri" => authority = Some(v),
            "resource" => resource = Some(v),
            "scope" => scope = Some(v),
            _ => {}
        }
    }
    let authority = authority.ok_or("the challenge names no authority")?;
    let login = format!("https://{}/", login_host(key.cloud));
    let tenant = authority
        .strip_prefix(&login)
        .map(|t| t.trim_end_matches('/'))
        .filter(|t| tenant_ok(t))
        .ok_or_else(|| {
            format!(
                "the challenge's authority {} is not {login}TENANT",
                clean_text(&authority)
            )
        })?;
    let want = key.token_scope();
    let asked = match (scope, resource) {
        (Some(s), _) => s,
        (None, Some(r)) => format!("{}/.default", r.trim_end_matches('/')),
        (None, None) => return Err("the challenge names no resource".into()),
    };
    if asked != want {
        return Err(format!(
            "the challenge asks for a token for {}, not for this key's service ({want})",
            clean_text(&asked)
        ));
    }
    Ok(Challenge {
        tenant: tenant.to_owned(),
        scope: want,
    })
}

/// How byok proves it is the app.
pub enum ClientProof {
    /// byok's OIDC token (asked for with [`Need::Token`]): a federated credential.
    Federated,
    /// A client secret (development).
    Secret(Zeroizing<String>),
}

/// The client-credentials grant of app `client_id` in `tenant`, for a key's scope.
pub struct EntraFlow {
    token_url: String,
    client_id: String,
    scope: String,
    proof: ClientProof,
    assertion: Option<Zeroizing<String>>,
    got: Option<(Zeroizing<String>, u64)>,
}

impl EntraFlow {
    /// A flow for `key` through app `client_id` of `tenant`. `danger_base` (tests only, from
    /// server configuration) replaces the login host.
    pub fn new(
        key: &KeyUrl,
        tenant: &str,
        client_id: &str,
        proof: ClientProof,
        danger_base: Option<&str>,
    ) -> Result<Self, String> {
        if !tenant_ok(tenant) {
            return Err(format!("{} is not a tenant id", clean_text(tenant)));
        }
        let host = match danger_base {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None => format!("https://{}", login_host(key.cloud)),
        };
        Ok(Self {
            token_url: format!("{host}/{tenant}/oauth2/v2.0/token"),
            client_id: client_id.to_owned(),
            scope: key.token_scope(),
            proof,
            assertion: None,
            got: None,
        })
    }
}

fn malformed(resp: &HttpResponse, what: &str) -> KmsError {
    resp.malformed("azure", &format!("unexpected token answer: {what}"))
}

impl CredentialFlow for EntraFlow {
    fn need(&self, _: Duration) -> Need {
        match (&self.got, &self.proof, &self.assertion) {
            (Some(_), ..) => Need::Done,
            (None, ClientProof::Federated, None) => Need::Token {
                audience: FEDERATION_AUDIENCE.into(),
            },
            _ => Need::Exchange,
        }
    }

    fn supply(&mut self, value: Zeroizing<String>) {
        self.assertion = Some(value);
    }

    fn request(&self, _: Duration) -> Result<HttpRequest, RequestError> {
        let mut pairs = alloc::vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", self.scope.as_str()),
        ];
        match (&self.proof, &self.assertion) {
            (ClientProof::Secret(s), _) => pairs.push(("client_secret", s.as_str())),
            (ClientProof::Federated, Some(a)) => {
                pairs.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
                pairs.push(("client_assertion", a.as_str()));
            }
            (ClientProof::Federated, None) => {
                return Err(RequestError("byok's OIDC token was not supplied".into()));
            }
        }
        let body = Zeroizing::new(form_encode(&pairs));
        Ok(HttpRequest {
            method: "POST",
            url: self.token_url.clone(),
            headers: alloc::vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into()
            )],
            body: body.as_bytes().to_vec(),
        })
    }

    fn check(&self, resp: &HttpResponse) -> Result<(), KmsError> {
        if (200..300).contains(&resp.status) {
            Ok(())
        } else {
            Err(parse_error(resp.status, &resp.body))
        }
    }

    fn answer(&mut self, resp: &HttpResponse, now: Duration) -> Result<(), KmsError> {
        self.check(resp)?;
        let got = oauth_access_token(&resp.body, now).map_err(|what| malformed(resp, what))?;
        self.got = Some(got);
        Ok(())
    }

    fn credentials(&self) -> Option<(Credentials, Option<u64>)> {
        self.got
            .as_ref()
            .map(|(t, at)| (Credentials::Bearer(t.clone()), Some(*at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::error::KmsErrorKind;

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn key(url: &str) -> KeyUrl {
        KeyUrl::parse(url).unwrap()
    }

    #[test]
    fn challenges_are_read_only_within_the_keys_cloud() {
        let k = key("https://acme.vault.azure.net/keys/k");
        let ok = format!(
            r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net""#
        );
        assert_eq!(
            parse_challenge(&k, &ok).unwrap(),
            Challenge {
                tenant: TENANT.into(),
                scope: "https://vault.azure.net/.default".into()
            }
        );
        let with_scope = format!(
            r#"Bearer authorization_uri="https://login.microsoftonline.com/{TENANT}/", scope="https://vault.azure.net/.default""#
        );
        assert!(parse_challenge(&k, &with_scope).is_ok());
        for bad in [
            format!(r#"Bearer authorization="https://login.evil.example/{TENANT}", resource="https://vault.azure.net""#),
            format!(r#"Bearer authorization="https://login.microsoftonline.us/{TENANT}", resource="https://vault.azure.net""#),
            format!(r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.cn""#),
            format!(r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://managedhsm.azure.net""#),
            r#"Bearer authorization="https://login.microsoftonline.com/../x", resource="https://vault.azure.net""#.into(),
            r#"Bearer resource="https://vault.azure.net""#.into(),
            format!(r#"Basic authorization="https://login.microsoftonline.com/{TENANT}""#),
        ] {
            assert!(parse_challenge(&k, &bad).is_err(), "{bad}");
        }
        let hsm = key("https://acme.managedhsm.usgovcloudapi.net/keys/k");
        let gov = format!(
            r#"Bearer authorization="https://login.microsoftonline.us/{TENANT}", resource="https://managedhsm.usgovcloudapi.net""#
        );
        assert_eq!(
            parse_challenge(&hsm, &gov).unwrap().scope,
            "https://managedhsm.usgovcloudapi.net/.default"
        );
    }

    #[test]
    fn a_federated_flow_presents_byoks_token_to_the_clouds_login_host() {
        let k = key("https://acme.vault.azure.cn/keys/k");
        let mut f = EntraFlow::new(
            &k,
            TENANT,
            "11111111-2222-3333-4444-555555555555",
            ClientProof::Federated,
            None,
        )
        .unwrap();
        assert!(
            matches!(f.need(Duration::ZERO), Need::Token { audience } if audience == FEDERATION_AUDIENCE)
        );
        f.supply(Zeroizing::new("byok.jwt".into()));
        let req = f.request(Duration::ZERO).unwrap();
        assert_eq!(
            req.url,
            format!("https://login.chinacloudapi.cn/{TENANT}/oauth2/v2.0/token")
        );
        let body = String::from_utf8(req.body.clone()).unwrap();
        assert!(body.contains("client_assertion=byok.jwt"), "{body}");
        assert!(
            body.contains("scope=https%3A%2F%2Fvault.azure.cn%2F.default"),
            "{body}"
        );
        let answer = |status: u16, body: &str| HttpResponse {
            status,
            headers: alloc::vec::Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let e = f
            .answer(&answer(400, r#"{"error":"invalid_client","error_description":"AADSTS70021: No matching federated identity record found."}"#), Duration::ZERO)
            .unwrap_err();
        assert_eq!(
            (e.kind, e.code.as_str()),
            (KmsErrorKind::AccessDenied, "AADSTS70021")
        );
        f.answer(
            &answer(
                200,
                r#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0"}"#,
            ),
            Duration::from_secs(100),
        )
        .unwrap();
        assert!(
            matches!(f.credentials(), Some((Credentials::Bearer(t), Some(3699))) if t.as_str() == "eyJ0")
        );
        // A tenant that is not one is refused before any URL is made.
        assert!(EntraFlow::new(&k, "evil.example/x?", "c", ClientProof::Federated, None).is_err());
        assert!(EntraFlow::new(&k, "../", "c", ClientProof::Federated, None).is_err());
    }
}
