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

pub use crate::kms::azure::challenge::{Challenge, login_host, parse_challenge, tenant_ok};
use crate::kms::azure::error::parse_error;
use crate::kms::azure::url::KeyUrl;
use crate::kms::error::{KmsError, clean_text};
use crate::kms::http::{HttpRequest, HttpResponse, form_encode};
use crate::kms::provider::{CredentialFlow, Credentials, Need, RequestError, oauth_access_token};

/// The audience Entra expects in a federated credential's assertion.
pub const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// How byok proves it is the app.
pub enum ClientProof {
    /// byok's OIDC token (asked for with [`Need::Token`]): a federated credential.
    Federated,
    /// A certificate of the vendor's app: the host holds its private key and signs the
    /// assertion the flow asks for with [`Need::Sign`] (PS256, `x5t#S256` in the header).
    Certificate,
    /// A client secret (development).
    Secret(Zeroizing<String>),
}

/// The vendor's own app registration (`--azure-client-id` with a certificate or, for
/// development, a secret): a multi-tenant app that a customer consents to and grants a role on
/// the key. Production needs none: customers trust byok's OIDC issuer.
#[derive(Clone)]
pub struct VendorApp {
    /// The app's client (application) id.
    pub client_id: String,
    /// The app's secret; `None` means the host holds a certificate and signs.
    pub secret: Option<Zeroizing<String>>,
}

impl core::fmt::Debug for VendorApp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VendorApp")
            .field("client_id", &self.client_id)
            .field(
                "proof",
                &if self.secret.is_some() {
                    "secret"
                } else {
                    "certificate"
                },
            )
            .finish()
    }
}

/// How long a certificate assertion is valid (msal's choice).
const ASSERTION_LIFETIME: u64 = 600;

/// The client-credentials grant of app `client_id` for a key's scope. The tenant is the
/// customer's (given, or learned from the vault's challenge, checked against the key's cloud);
/// the token endpoint is always the key's cloud's login host.
pub struct EntraFlow {
    key: KeyUrl,
    vault_base: String,
    login_base: String,
    tenant: Option<String>,
    client_id: String,
    proof: ClientProof,
    assertion: Option<Zeroizing<String>>,
    got: Option<(Zeroizing<String>, u64)>,
}

impl EntraFlow {
    /// A flow for `key` through app `client_id`, in `tenant` (`None`: ask the vault, which
    /// answers an unauthenticated request with a challenge naming its tenant). `danger_base`
    /// (tests only, from server configuration) replaces both the vault and the login host.
    pub fn new(
        key: &KeyUrl,
        tenant: Option<&str>,
        client_id: &str,
        proof: ClientProof,
        danger_base: Option<&str>,
    ) -> Result<Self, String> {
        if let Some(t) = tenant
            && !tenant_ok(t)
        {
            return Err(format!("{} is not a tenant id", clean_text(t)));
        }
        let (vault_base, login_base) = match danger_base {
            Some(b) => {
                let b = b.trim_end_matches('/').to_owned();
                (b.clone(), b)
            }
            None => (
                key.base_url(),
                format!("https://{}", login_host(key.cloud())),
            ),
        };
        Ok(Self {
            key: key.clone(),
            vault_base,
            login_base,
            tenant: tenant.map(str::to_owned),
            client_id: client_id.to_owned(),
            proof,
            assertion: None,
            got: None,
        })
    }

    fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.login_base)
    }

    /// The claims of a certificate assertion made at `now`: `iss` = `sub` = the app, `aud` =
    /// the token endpoint, ten minutes. `jti` is unique per app and nanosecond (it serves
    /// replay detection, not secrecy).
    fn certificate_claims(&self, tenant: &str, now: Duration) -> serde_json::Value {
        use sha2::Digest;
        let h = sha2::Sha256::new()
            .chain_update(self.client_id.as_bytes())
            .chain_update(now.as_nanos().to_be_bytes())
            .finalize();
        // A UUID's shape: 16 bytes as 8-4-4-4-12 hex digits.
        let mut jti = String::with_capacity(36);
        for (i, b) in h.iter().take(16).enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                jti.push('-');
            }
            jti.push_str(&format!("{b:02x}"));
        }
        let t = now.as_secs();
        serde_json::json!({
            "aud": self.token_url(tenant),
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": jti,
            "iat": t,
            "nbf": t,
            "exp": t + ASSERTION_LIFETIME,
        })
    }
}

fn malformed(resp: &HttpResponse, what: &str) -> KmsError {
    resp.malformed("azure", &format!("unexpected token answer: {what}"))
}

impl CredentialFlow for EntraFlow {
    fn need(&self, now: Duration) -> Need {
        match (&self.got, &self.tenant, &self.proof, &self.assertion) {
            (Some(_), ..) => Need::Done,
            (None, None, ..) => Need::Exchange,
            (None, Some(_), ClientProof::Federated, None) => Need::Token {
                audience: FEDERATION_AUDIENCE.into(),
            },
            (None, Some(t), ClientProof::Certificate, None) => Need::Sign {
                claims: self.certificate_claims(t, now),
            },
            _ => Need::Exchange,
        }
    }

    fn supply(&mut self, value: Zeroizing<String>) {
        self.assertion = Some(value);
    }

    fn request(&self, _: Duration) -> Result<HttpRequest, RequestError> {
        let Some(tenant) = &self.tenant else {
            // The challenge probe: the key's GET with no token and no body, as Azure's SDKs
            // send it. The vault answers 401 and names its tenant.
            return Ok(HttpRequest {
                method: "GET",
                url: format!(
                    "{}/keys/{}/?api-version={}",
                    self.vault_base,
                    self.key.key(),
                    super::request::API_VERSION
                ),
                headers: alloc::vec::Vec::new(),
                body: alloc::vec::Vec::new(),
            });
        };
        let scope = self.key.token_scope();
        let mut pairs = alloc::vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        match (&self.proof, &self.assertion) {
            (ClientProof::Secret(s), _) => pairs.push(("client_secret", s.as_str())),
            (ClientProof::Federated | ClientProof::Certificate, Some(a)) => {
                pairs.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
                pairs.push(("client_assertion", a.as_str()));
            }
            (ClientProof::Federated | ClientProof::Certificate, None) => {
                return Err(RequestError("the client assertion was not supplied".into()));
            }
        }
        let body = Zeroizing::new(form_encode(&pairs));
        Ok(HttpRequest {
            method: "POST",
            url: self.token_url(tenant),
            headers: alloc::vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into()
            )],
            body: body.as_bytes().to_vec(),
        })
    }

    fn check(&self, resp: &HttpResponse) -> Result<(), KmsError> {
        match (&self.tenant, resp.status) {
            // The probe's expected answer is the challenge.
            (None, 401) if resp.header("www-authenticate").is_some() => Ok(()),
            (None, s) if (200..300).contains(&s) => Err(resp.malformed(
                "azure",
                "the vault answered a request without a token: it is not Key Vault",
            )),
            (Some(_), s) if (200..300).contains(&s) => Ok(()),
            (_, s) => Err(parse_error(s, &resp.body)),
        }
    }

    fn answer(&mut self, resp: &HttpResponse, now: Duration) -> Result<(), KmsError> {
        self.check(resp)?;
        if self.tenant.is_none() {
            let header = resp.header("www-authenticate").unwrap_or_default();
            let c = parse_challenge(&self.key, header).map_err(|why| {
                resp.malformed(
                    "azure",
                    &format!("the vault's challenge was refused: {why}"),
                )
            })?;
            self.tenant = Some(c.tenant);
            return Ok(());
        }
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
    fn a_federated_flow_presents_byoks_token_to_the_clouds_login_host() {
        let k = key("https://acme.vault.azure.cn/keys/k");
        let mut f = EntraFlow::new(
            &k,
            Some(TENANT),
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
        for bad in ["evil.example/x?", "../"] {
            assert!(EntraFlow::new(&k, Some(bad), "c", ClientProof::Federated, None).is_err());
        }
    }

    #[test]
    fn the_tenant_comes_from_the_vaults_challenge_and_a_certificate_signs_for_it() {
        let k = key("https://acme.vault.azure.net/keys/root");
        let app = "11111111-2222-3333-4444-555555555555";
        let mut f = EntraFlow::new(&k, None, app, ClientProof::Certificate, None).unwrap();
        let now = Duration::from_secs(1_800_000_000);
        assert!(matches!(f.need(now), Need::Exchange));
        let probe = f.request(now).unwrap();
        assert_eq!(
            (
                probe.method,
                probe.url.as_str(),
                probe.headers.len(),
                probe.body.len()
            ),
            (
                "GET",
                "https://acme.vault.azure.net/keys/root/?api-version=7.6",
                0,
                0
            ),
            "no token, no body"
        );
        let challenge = |v: &str| {
            HttpResponse {
            status: 401,
            headers: alloc::vec![("WWW-Authenticate".into(), v.into())],
            body: br#"{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}"#.to_vec(),
        }
        };
        // A challenge naming another cloud's login host is refused: byok never asks it.
        let mut evil = EntraFlow::new(&k, None, app, ClientProof::Certificate, None).unwrap();
        let e = evil
            .answer(
                &challenge(&format!(
                    r#"Bearer authorization="https://login.evil.example/{TENANT}", resource="https://vault.azure.net""#
                )),
                now,
            )
            .unwrap_err();
        assert_eq!(e.kind, KmsErrorKind::Malformed, "{e:?}");
        assert!(matches!(evil.need(now), Need::Exchange));
        // A vault that answers without a token is not one.
        let open = HttpResponse {
            status: 200,
            headers: alloc::vec::Vec::new(),
            body: b"{}".to_vec(),
        };
        assert_eq!(f.check(&open).unwrap_err().kind, KmsErrorKind::Malformed);
        f.answer(
            &challenge(&format!(
                r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net""#
            )),
            now,
        )
        .unwrap();
        let Need::Sign { claims } = f.need(now) else {
            panic!("a certificate flow asks for a signature")
        };
        let token_url = format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token");
        assert_eq!(claims["aud"], token_url.as_str());
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some(app), Some(app))
        );
        assert_eq!(claims["exp"].as_u64(), Some(now.as_secs() + 600));
        let jti = claims["jti"].as_str().unwrap().to_owned();
        assert_eq!(jti.len(), 36);
        let Need::Sign { claims: later } = f.need(now + Duration::from_nanos(1)) else {
            panic!()
        };
        assert_ne!(
            later["jti"].as_str(),
            Some(jti.as_str()),
            "one jti per assertion"
        );
        f.supply(Zeroizing::new("signed.jwt".into()));
        let req = f.request(now).unwrap();
        assert_eq!(req.url, token_url);
        let body = String::from_utf8(req.body.clone()).unwrap();
        assert!(body.contains("client_assertion=signed.jwt"), "{body}");
        assert!(!body.contains("client_secret"), "{body}");
    }
}
