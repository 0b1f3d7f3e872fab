//! A local Azure Key Vault and Managed HSM with Entra ID's token endpoint, because no emulator
//! of them exists: written from the public REST reference (kms-wire.md sections 5 and 6), and
//! proven to speak the real wire format by the official Python SDK (`azure-keyvault-keys` with
//! `azure-identity`, over HTTPS with a test CA, which the SDK requires) in
//! `tests/tests/azure_kv.rs` before byok is tested against it.
//!
//! What it serves, on one loopback port:
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration`: the tenant's discovery document,
//!   which msal reads before its first token request.
//! - `POST /{tenant}/oauth2/v2.0/token`: Entra's client-credentials grant, for app
//!   registrations that exist in the tenant (their own, or consented to), proven by a client
//!   secret, a certificate assertion (PS256 with `x5t#S256`, or RS256 with `x5t`; `iss` = `sub`
//!   = the app, `aud` = the token endpoint) or a federated credential (an assertion of a trusted
//!   issuer, checked against its JWKS, its subject and audience). Tokens are scoped to one
//!   service (vault or Managed HSM) in one tenant.
//! - `/keys/{name}[/{version}][/wrapkey|/unwrapkey]?api-version=...`: GET of a key,
//!   `wrapkey` and `unwrapkey` with RSA-OAEP-256 on RSA keys and A256KW (RFC 3394) on `oct-HSM`
//!   keys, real crypto per version. A request without a token gets 401 with the
//!   `WWW-Authenticate` challenge naming the key's tenant and service. Per key: RBAC (the apps
//!   assigned the crypto role), `key_ops`, enabled, `nbf`/`exp`, soft delete and recovery,
//!   rotation, and throttling (429 with `Retry-After`) on demand.
//!
//! Errors are Key Vault's `{"error": {"code", "message", "innererror": {"code"}}}` or Entra's
//! `{"error", "error_description": "AADSTSnnnn: ...", "error_codes"}`, with their own words.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Value, json};

use crate::gcp_kms::IssuerKey;
use crate::local::{Serving, random_hex, serve, serve_tls, unix_now as now};

/// The vault service's resource (public cloud).
pub const VAULT_RESOURCE: &str = "https://vault.azure.net";
/// Managed HSM's.
pub const HSM_RESOURCE: &str = "https://managedhsm.azure.net";
/// The audience of federated credentials' assertions.
pub const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// A federated identity credential on an app: assertions of `issuer` for `subject`.
#[derive(Clone)]
pub struct Federated {
    /// The issuer (set once byok listens).
    pub issuer: Arc<OnceLock<String>>,
    /// The one subject accepted.
    pub subject: Arc<OnceLock<String>>,
    /// How the issuer's signatures are checked.
    pub key: IssuerKey,
    /// How far Entra's clock runs ahead of the test's, in seconds.
    pub clock_ahead: Arc<std::sync::atomic::AtomicU64>,
}

impl Federated {
    /// A credential trusting `issuer`'s tokens for `subject`, their signatures checked with
    /// `key`, on Entra's clock.
    pub fn trusting(issuer: &str, subject: &str, key: IssuerKey) -> Self {
        let (iss, sub) = (Arc::new(OnceLock::new()), Arc::new(OnceLock::new()));
        let _ = iss.set(issuer.to_owned());
        let _ = sub.set(subject.to_owned());
        Self {
            issuer: iss,
            subject: sub,
            key,
            clock_ahead: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }
}

struct Certificate {
    /// SHA-256 and SHA-1 thumbprints of the certificate's DER, base64url.
    s256: String,
    sha1: String,
    /// Its RSA public key, PKCS#1 DER.
    public: Vec<u8>,
}

#[derive(Default)]
struct App {
    /// Tenants where the app has a service principal (its home, and those that consented).
    tenants: HashSet<String>,
    secrets: Vec<String>,
    certificates: Vec<Certificate>,
    federated: Vec<Federated>,
}

enum Material {
    /// The private and public halves, and the public key's `n` and `e` (base64url).
    Rsa(
        Box<(OaepPrivateDecryptingKey, OaepPublicEncryptingKey)>,
        String,
        String,
    ),
    Oct([u8; 32]),
}

struct Key {
    base: String,
    resource: &'static str,
    tenant: String,
    kty: String,
    ops: Vec<String>,
    /// Versions, oldest first; the last is current.
    versions: Vec<(String, Material)>,
    enabled: bool,
    /// Versions disabled on their own (`az keyvault key set-attributes --version`).
    disabled_versions: HashSet<String>,
    nbf: Option<u64>,
    exp: Option<u64>,
    deleted: bool,
    /// Apps assigned the crypto role on the key.
    rbac: HashSet<String>,
    /// The key's tags (`az keyvault key set-attributes --tags`).
    tags: BTreeMap<String, String>,
}

struct Token {
    app: String,
    tenant: String,
    resource: String,
    exp: u64,
}

#[derive(Default)]
struct Inner {
    apps: HashMap<String, App>,
    keys: HashMap<String, Key>,
    tokens: HashMap<String, Token>,
    /// The tenant a challenge names for a key that does not exist: the first key's (a vault
    /// belongs to one tenant).
    home: Option<String>,
    throttle: u32,
    vault_calls: u64,
    token_calls: u64,
}

/// The local Key Vault. Dropping it stops the server.
pub struct AzureKv {
    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` from [`Self::start_tls`].
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    _serving: Serving,
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// A Key Vault error answer.
fn kv_error(code: StatusCode, outer: &str, inner: Option<&str>, message: &str) -> Response {
    let mut error = json!({ "code": outer, "message": message });
    if let Some(i) = inner {
        error["innererror"] = json!({ "code": i });
    }
    (code, axum::Json(json!({ "error": error }))).into_response()
}

/// An Entra error answer: `AADSTSnnnn: text`.
fn entra_error(code: StatusCode, error: &str, aadsts: u32, text: &str) -> Response {
    (
        code,
        axum::Json(json!({
            "error": error,
            "error_description": format!("AADSTS{aadsts}: {text} Trace ID: 00000000-0000-0000-0000-000000000000"),
            "error_codes": [aadsts],
            "timestamp": "2026-12-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        })),
    )
        .into_response()
}

fn rsa_material() -> Material {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA generation");
    let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
    let n = b64(public.modulus().big_endian_without_leading_zero());
    let e = b64(public.exponent().big_endian_without_leading_zero());
    let der = pair.as_der().expect("PKCS#8");
    let private = PrivateDecryptingKey::from_pkcs8(der.as_ref()).expect("RSA key");
    let public = OaepPublicEncryptingKey::new(private.public_key()).expect("RSA key");
    let private = OaepPrivateDecryptingKey::new(private).expect("RSA key");
    Material::Rsa(Box::new((private, public)), n, e)
}

fn material(kty: &str) -> Material {
    if kty.starts_with("oct") {
        let mut k = [0u8; 32];
        rand::fill(&mut k);
        Material::Oct(k)
    } else {
        rsa_material()
    }
}

impl AzureKv {
    /// Starts the server on a loopback port, plain HTTP (byok's tests allow it for emulators).
    pub async fn start() -> Self {
        Self::start_on(false).await.0
    }

    /// Starts the server over HTTPS, with a certificate for 127.0.0.1 from a fresh test CA;
    /// returns the CA's PEM for the client to trust.
    pub async fn start_tls() -> (Self, String) {
        let (kv, ca) = Self::start_on(true).await;
        (kv, ca.unwrap_or_default())
    }

    async fn start_on(tls: bool) -> (Self, Option<String>) {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = inner.clone();
        let router = |url: &str| {
            Router::new()
                .fallback(handle)
                .with_state((state, url.to_owned()))
        };
        let (url, serving, ca) = if tls {
            let (url, serving, ca) = serve_tls(router).await;
            (url, serving, Some(ca))
        } else {
            let (url, serving) = serve(router).await;
            (url, serving, None)
        };
        let kv = Self {
            url,
            inner,
            _serving: serving,
        };
        (kv, ca)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers app `client_id` in `tenant` (its home).
    pub fn add_app(&self, client_id: &str, tenant: &str) {
        self.lock()
            .apps
            .entry(client_id.into())
            .or_default()
            .tenants
            .insert(tenant.into());
    }

    /// `tenant` consents to the (multi-tenant) app: it gets a service principal there.
    pub fn consent(&self, client_id: &str, tenant: &str) {
        self.add_app(client_id, tenant);
    }

    /// Adds a client secret to the app.
    pub fn add_secret(&self, client_id: &str, secret: &str) {
        self.lock()
            .apps
            .entry(client_id.into())
            .or_default()
            .secrets
            .push(secret.into());
    }

    /// Uploads a certificate (DER) to the app, with its RSA public key (PKCS#1 DER).
    pub fn add_certificate(&self, client_id: &str, cert_der: &[u8], public_pkcs1: &[u8]) {
        use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
        self.lock()
            .apps
            .entry(client_id.into())
            .or_default()
            .certificates
            .push(Certificate {
                s256: b64(digest(&SHA256, cert_der).as_ref()),
                sha1: b64(digest(&SHA1_FOR_LEGACY_USE_ONLY, cert_der).as_ref()),
                public: public_pkcs1.to_vec(),
            });
    }

    /// Adds a federated identity credential to the app.
    pub fn add_federated(&self, client_id: &str, f: Federated) {
        self.lock()
            .apps
            .entry(client_id.into())
            .or_default()
            .federated
            .push(f);
    }

    /// Removes the app's federated credentials (the customer withdraws the trust).
    pub fn remove_federated(&self, client_id: &str) {
        if let Some(a) = self.lock().apps.get_mut(client_id) {
            a.federated.clear();
        }
    }

    /// Creates key `name` of type `kty` (`RSA`, `RSA-HSM`, `oct-HSM`, `EC`) at `base`
    /// (`https://acme.vault.azure.net`: the vault or Managed HSM it belongs to, as its `kid`s
    /// name it) in `tenant`, with `wrapKey` and `unwrapKey` allowed and the crypto role
    /// assigned to `apps`. Returns its first version.
    pub fn create_key(
        &self,
        base: &str,
        name: &str,
        kty: &str,
        tenant: &str,
        apps: &[&str],
    ) -> String {
        let resource = if base.contains(".managedhsm.") {
            HSM_RESOURCE
        } else {
            VAULT_RESOURCE
        };
        let version = random_hex(16);
        let mut g = self.lock();
        g.home.get_or_insert_with(|| tenant.to_owned());
        g.keys.insert(
            name.into(),
            Key {
                base: base.trim_end_matches('/').into(),
                resource,
                tenant: tenant.into(),
                kty: kty.into(),
                ops: vec!["wrapKey".into(), "unwrapKey".into()],
                versions: vec![(version.clone(), material(kty))],
                enabled: true,
                disabled_versions: HashSet::new(),
                nbf: None,
                exp: None,
                deleted: false,
                rbac: apps.iter().map(|a| (*a).to_owned()).collect(),
                tags: BTreeMap::new(),
            },
        );
        version
    }

    fn with_key<T>(&self, name: &str, f: impl FnOnce(&mut Key) -> T) -> T {
        f(self.lock().keys.get_mut(name).expect("no such key"))
    }

    /// A new current version (the customer rotates); returns it.
    pub fn rotate(&self, name: &str) -> String {
        self.with_key(name, |k| {
            let v = random_hex(16);
            let m = material(&k.kty);
            k.versions.push((v.clone(), m));
            v
        })
    }

    /// Sets the key's tags, replacing all of them (`az keyvault key set-attributes --tags`).
    pub fn set_tags(&self, name: &str, tags: &[(&str, &str)]) {
        self.with_key(name, |k| {
            k.tags = tags
                .iter()
                .map(|(t, v)| ((*t).to_owned(), (*v).to_owned()))
                .collect();
        });
    }

    /// Enables or disables the key (`az keyvault key set-attributes --enabled`).
    pub fn set_enabled(&self, name: &str, on: bool) {
        self.with_key(name, |k| k.enabled = on);
    }

    /// Enables or disables one version of the key.
    pub fn set_version_enabled(&self, name: &str, version: &str, on: bool) {
        self.with_key(name, |k| {
            if on {
                k.disabled_versions.remove(version);
            } else {
                k.disabled_versions.insert(version.into());
            }
        });
    }

    /// Sets the key's activation and expiry dates (seconds since the epoch).
    pub fn set_dates(&self, name: &str, nbf: Option<u64>, exp: Option<u64>) {
        self.with_key(name, |k| (k.nbf, k.exp) = (nbf, exp));
    }

    /// Soft-deletes (`true`) or recovers (`false`) the key.
    pub fn set_deleted(&self, name: &str, deleted: bool) {
        self.with_key(name, |k| k.deleted = deleted);
    }

    /// Sets the key's allowed operations.
    pub fn set_ops(&self, name: &str, ops: &[&str]) {
        self.with_key(name, |k| {
            k.ops = ops.iter().map(|o| (*o).to_owned()).collect()
        });
    }

    /// Assigns (`true`) or removes the crypto role on the key for `app`.
    pub fn assign(&self, name: &str, app: &str, on: bool) {
        self.with_key(name, |k| {
            if on {
                k.rbac.insert(app.into());
            } else {
                k.rbac.remove(app);
            }
        });
    }

    /// The next `n` key operations answer 429 with `Retry-After: 1`.
    pub fn throttle(&self, n: u32) {
        self.lock().throttle = n;
    }

    /// Key operations (challenges included) and token requests answered so far.
    pub fn calls(&self) -> (u64, u64) {
        let g = self.lock();
        (g.vault_calls, g.token_calls)
    }
}

type St = (Arc<Mutex<Inner>>, String);

async fn handle(
    State((inner, url)): State<St>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::POST
        && let Some(tenant) = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
    {
        return token(&inner, &url, tenant, &body).await;
    }
    // msal's tenant discovery, before its first token request.
    if method == Method::GET
        && let Some(tenant) = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/v2.0/.well-known/openid-configuration"))
    {
        return axum::Json(json!({
            "issuer": format!("{url}/{tenant}/v2.0"),
            "authorization_endpoint": format!("{url}/{tenant}/oauth2/v2.0/authorize"),
            "token_endpoint": format!("{url}/{tenant}/oauth2/v2.0/token"),
            "jwks_uri": format!("{url}/{tenant}/discovery/v2.0/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU",
        }))
        .into_response();
    }
    if let Some(rest) = path.strip_prefix("/keys/") {
        let query = uri.query().unwrap_or_default();
        return vault(&inner, &method, rest, query, &headers, &body);
    }
    kv_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        None,
        "The requested resource was not found.",
    )
}

fn challenge(tenant: &str, resource: &str) -> Response {
    let mut r = kv_error(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        None,
        "AKV10000: Request is missing a Bearer or PoP token.",
    );
    r.headers_mut().insert(
        "www-authenticate",
        format!(r#"Bearer authorization="https://login.microsoftonline.com/{tenant}", resource="{resource}""#)
            .parse()
            .unwrap(),
    );
    r
}

fn vault(
    inner: &Mutex<Inner>,
    method: &Method,
    rest: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    g.vault_calls += 1;
    let mut parts = rest.split('/');
    let name = parts.next().unwrap_or_default().to_owned();
    let version = parts.next().unwrap_or_default().to_owned();
    let op = parts.next().unwrap_or_default().to_owned();
    if parts.next().is_some() {
        return kv_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            None,
            "No such operation.",
        );
    }
    if !query
        .split('&')
        .any(|p| p.starts_with("api-version=") && p.len() > 12)
    {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            None,
            "The request URI must include api-version.",
        );
    }
    // The challenge names the vault's tenant and service, known from the key's vault.
    let (tenant, resource) = g
        .keys
        .get(&name)
        .map(|k| (k.tenant.clone(), k.resource))
        .unwrap_or_else(|| (g.home.clone().unwrap_or_default(), VAULT_RESOURCE));
    let Some(presented) = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return challenge(&tenant, resource);
    };
    let app = match g.tokens.get(presented) {
        None => return challenge(&tenant, resource),
        Some(t) if t.exp <= now() => {
            let mut r = challenge(&tenant, resource);
            *r.body_mut() = json!({"error":{"code":"Unauthorized","message":"AKV10022: Invalid audience or the token is expired."}}).to_string().into();
            return r;
        }
        Some(t) if t.resource != resource => {
            return kv_error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                None,
                &format!(
                    "AKV10022: Invalid audience. Expected {resource}, found: {}.",
                    t.resource
                ),
            );
        }
        Some(t) if t.tenant != tenant => {
            return kv_error(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                None,
                &format!(
                    "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/{tenant}/, found https://sts.windows.net/{}/.",
                    t.tenant
                ),
            );
        }
        Some(t) => t.app.clone(),
    };
    if g.throttle > 0 {
        g.throttle -= 1;
        let mut r = kv_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            None,
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        );
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return r;
    }
    let Some(key) = g.keys.get(&name).filter(|k| !k.deleted) else {
        return kv_error(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            None,
            &format!(
                "A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command."
            ),
        );
    };
    let action = match (method.as_str(), op.as_str()) {
        ("GET", "") => "read",
        ("POST", "wrapkey") => "wrap/action",
        ("POST", "unwrapkey") => "unwrap/action",
        _ => {
            return kv_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                None,
                "No such operation.",
            );
        }
    };
    if !key.rbac.contains(&app) {
        let kind = if key.resource == HSM_RESOURCE {
            "managedHsm"
        } else {
            "vaults"
        };
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("ForbiddenByRbac"),
            &format!(
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={app}\r\nAction: 'Microsoft.KeyVault/{kind}/keys/{action}'\r\nResource: '/keys/{name}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: local;location=local\r\n"
            ),
        );
    }
    let found = if version.is_empty() {
        key.versions.last()
    } else {
        key.versions.iter().find(|(v, _)| *v == version)
    };
    let Some((version, material)) = found else {
        return kv_error(
            StatusCode::NOT_FOUND,
            "KeyNotFound",
            None,
            &format!("A key with (name/id) {name}/{version} was not found in this key vault."),
        );
    };
    let kid = format!("{}/keys/{name}/{version}", key.base);
    if op.is_empty() {
        return describe(
            key,
            &kid,
            material,
            !key.disabled_versions.contains(version.as_str()),
        );
    }
    let (op_name, verb) = if op == "wrapkey" {
        ("wrapKey", "wrap")
    } else {
        ("unwrapKey", "unwrap")
    };
    if !key.ops.iter().any(|o| o == op_name) {
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("KeyOperationForbidden"),
            &format!("Operation \"{op_name}\" is not allowed by the key's operations."),
        );
    }
    // Disabled keys still wrap (Azure/azure-sdk-for-python#45342) but never unwrap.
    let enabled = key.enabled && !key.disabled_versions.contains(version.as_str());
    if !enabled && op == "unwrapkey" {
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("KeyDisabled"),
            &format!("Operation {op_name} is not allowed on a disabled key."),
        );
    }
    let t = now();
    if key.exp.is_some_and(|e| t >= e) || key.nbf.is_some_and(|n| t < n) {
        return kv_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            None,
            &format!(
                "Operation {op_name} is not allowed on an expired key or a key that is not yet valid."
            ),
        );
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            None,
            "The request body is not valid JSON.",
        );
    };
    let alg = req.get("alg").and_then(Value::as_str).unwrap_or_default();
    let Some(value) = req
        .get("value")
        .and_then(Value::as_str)
        .and_then(|v| Base64UrlUnpadded::decode_vec(v).ok())
    else {
        return kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            None,
            "Property 'value' is missing or not base64url.",
        );
    };
    let out = match (material, alg) {
        (Material::Rsa(pair, ..), "RSA-OAEP-256") => {
            let (private, public) = &**pair;
            if op == "wrapkey" {
                let mut out = vec![0u8; public.ciphertext_size()];
                public
                    .encrypt(&OAEP_SHA256_MGF1SHA256, &value, &mut out, None)
                    .map(|c| c.to_vec())
                    .ok()
            } else {
                let mut out = vec![0u8; private.min_output_size()];
                private
                    .decrypt(&OAEP_SHA256_MGF1SHA256, &value, &mut out, None)
                    .map(|p| p.to_vec())
                    .ok()
            }
        }
        (Material::Oct(k), "A256KW") => {
            let kek = KeyEncryptionKey::new(&AES_256, k).unwrap();
            let mut out = vec![0u8; value.len() + 16];
            if op == "wrapkey" {
                kek.wrap(&value, &mut out).map(|c| c.to_vec()).ok()
            } else {
                kek.unwrap(&value, &mut out).map(|p| p.to_vec()).ok()
            }
        }
        _ => {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                None,
                &format!(
                    "The algorithm {alg} is not supported for a key of type {}.",
                    key.kty
                ),
            );
        }
    };
    match out {
        Some(v) => (
            StatusCode::OK,
            axum::Json(json!({ "kid": kid, "value": b64(&v) })),
        )
            .into_response(),
        None => kv_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            None,
            &format!(
                "Error occurred while trying to {verb} the key: the value is not a wrapped key of this key version."
            ),
        ),
    }
}

fn describe(key: &Key, kid: &str, material: &Material, version_enabled: bool) -> Response {
    let mut k = json!({ "kid": kid, "kty": key.kty, "key_ops": key.ops });
    if let Material::Rsa(_, n, e) = material {
        k["n"] = json!(n);
        k["e"] = json!(e);
    }
    let mut attributes = json!({
        "enabled": key.enabled && version_enabled,
        "created": 1_767_225_600u64,
        "updated": 1_767_225_600u64,
        "recoveryLevel": "Recoverable",
        "recoverableDays": 90,
        "exportable": false,
    });
    if let Some(n) = key.nbf {
        attributes["nbf"] = json!(n);
    }
    if let Some(e) = key.exp {
        attributes["exp"] = json!(e);
    }
    let mut bundle = json!({ "key": k, "attributes": attributes });
    if !key.tags.is_empty() {
        bundle["tags"] = json!(key.tags);
    }
    (StatusCode::OK, axum::Json(bundle)).into_response()
}

#[derive(serde::Deserialize)]
struct AssertionClaims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    sub: String,
    #[serde(default)]
    aud: Value,
    /// msal sends fractional seconds.
    #[serde(default)]
    exp: f64,
}

fn audiences(aud: &Value) -> Vec<String> {
    match aud {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

async fn token(inner: &Mutex<Inner>, url: &str, tenant: &str, body: &[u8]) -> Response {
    let form = crate::sts_front::form_decode(body).unwrap_or_default();
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let client_id = field("client_id");
    // What the app may prove itself with, read under the lock, checked after it.
    let (federated, certificates, secret_ok) = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.token_calls += 1;
        if field("grant_type") != "client_credentials" {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
        let Some(app) = g
            .apps
            .get(&client_id)
            .filter(|a| a.tenants.contains(tenant))
        else {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                &format!(
                    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."
                ),
            );
        };
        let secret = form.get("client_secret");
        (
            app.federated.clone(),
            app.certificates
                .iter()
                .map(|c| (c.s256.clone(), c.sha1.clone(), c.public.clone()))
                .collect::<Vec<_>>(),
            secret.map(|s| app.secrets.contains(s)),
        )
    };
    let scope = field("scope");
    let resource = match scope.as_str() {
        "https://vault.azure.net/.default" => VAULT_RESOURCE,
        "https://managedhsm.azure.net/.default" => HSM_RESOURCE,
        _ => {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                70011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            );
        }
    };
    match secret_ok {
        Some(true) => return issue(inner, &client_id, tenant, resource),
        Some(false) => {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
        None => {}
    }
    if field("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let assertion = field("client_assertion");
    let Ok(header) = jsonwebtoken::decode_header(&assertion) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        );
    };
    if header.x5t_s256.is_some() || header.x5t.is_some() {
        // msal sends the thumbprint base64url with padding; byok without.
        let unpadded =
            |t: &Option<String>| t.as_deref().map(|t| t.trim_end_matches('=').to_owned());
        let (s256_sent, sha1_sent) = (unpadded(&header.x5t_s256), unpadded(&header.x5t));
        let found = certificates.iter().find(|(s256, sha1, _)| {
            s256_sent.as_ref() == Some(s256) || sha1_sent.as_ref() == Some(sha1)
        });
        let Some((_, _, public)) = found else {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700027,
                &format!(
                    "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{}']",
                    header.x5t_s256.or(header.x5t).unwrap_or_default()
                ),
            );
        };
        if !matches!(
            header.alg,
            jsonwebtoken::Algorithm::PS256 | jsonwebtoken::Algorithm::RS256
        ) {
            return entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                5002738,
                "Invalid JWT token. The signing algorithm is not supported.",
            );
        }
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&[
            format!("{url}/{tenant}/oauth2/v2.0/token"),
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token/"),
        ]);
        v.set_issuer(&[&client_id]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        v.leeway = 0;
        match jsonwebtoken::decode::<AssertionClaims>(
            &assertion,
            &jsonwebtoken::DecodingKey::from_rsa_der(public),
            &v,
        ) {
            Ok(t) if t.claims.sub == client_id => issue(inner, &client_id, tenant, resource),
            Ok(_) => entra_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                700023,
                "Client assertion audience claim does not match Realm issuer, or its subject is not the client.",
            ),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.",
                ),
                jsonwebtoken::errors::ErrorKind::InvalidAudience => entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    700212,
                    "No matching audience found in the client assertion.",
                ),
                other => entra_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    700027,
                    &format!("Client assertion failed signature validation. ({other:?})"),
                ),
            },
        }
    } else {
        // A federated credential: byok's token for the org, from a trusted issuer.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<AssertionClaims>(&assertion)
            .map(|t| t.claims);
        let Ok(c) = unverified else {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed.",
            );
        };
        let aud = audiences(&c.aud);
        let matching = federated.iter().find(|f| {
            f.issuer.get() == Some(&c.iss)
                && f.subject.get() == Some(&c.sub)
                && aud.iter().any(|a| a == EXCHANGE_AUDIENCE)
        });
        let Some(f) = matching else {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                70021,
                &format!(
                    "No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'.",
                    c.iss,
                    c.sub,
                    aud.join(",")
                ),
            );
        };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_issuer(&[&c.iss]);
        v.set_audience(&[EXCHANGE_AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 0;
        v.validate_exp = false;
        let verified = match crate::gcp_kms::subject_key(&f.key, &assertion).await {
            Some(k) => jsonwebtoken::decode::<AssertionClaims>(&assertion, &k, &v).is_ok(),
            None => false,
        };
        if !verified {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                50013,
                "Assertion failed signature validation.",
            );
        }
        let ahead = f.clock_ahead.load(std::sync::atomic::Ordering::SeqCst);
        if c.exp <= (now() + ahead) as f64 {
            return entra_error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
        issue(inner, &client_id, tenant, resource)
    }
}

fn issue(inner: &Mutex<Inner>, app: &str, tenant: &str, resource: &str) -> Response {
    let token = format!("eyJ0.local.{}", random_hex(24));
    inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .tokens
        .insert(
            token.clone(),
            Token {
                app: app.into(),
                tenant: tenant.into(),
                resource: resource.into(),
                exp: now() + 3600,
            },
        );
    (
        StatusCode::OK,
        axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": token,
        })),
    )
        .into_response()
}
