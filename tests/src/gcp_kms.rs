//! A local Google Cloud KMS, because no emulator of it exists: written from the public REST
//! reference (kms-wire.md sections 4 and 6), and proven to speak the real wire format by the
//! official Python client (`google-cloud-kms` over REST, with `google-auth`) in
//! `tests/tests/gcp_kms.rs` before byok is tested against it.
//!
//! What it serves, on one loopback port:
//! - `POST /token`: the OAuth 2 JWT bearer grant of a service account (RS256 assertion checked
//!   against the account's public key: `kid`, `iss`, `aud`, a lifetime of at most an hour).
//! - `POST /v1/token`: Google STS token exchange, for one workload identity pool provider that
//!   trusts one issuer: the subject token is checked against the issuer's keys (signature,
//!   `iss`, `aud`, `exp`) and the provider's attribute condition (`assertion.sub == ...`).
//! - `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`: impersonation, for
//!   principals granted `roles/iam.workloadIdentityUser` on the account.
//! - `POST /v1/{key}:encrypt`, `POST /v1/{key}:decrypt`, `GET /v1/{key}`: AES-256-GCM under
//!   per-version keys, with AAD, CRC32C checked both ways, key versions that can be disabled,
//!   scheduled for destruction and destroyed, IAM on each key, throttling and corruption on
//!   demand.
//!
//! Errors are `google.rpc.Status` bodies (`{"error": {"code", "message", "status", "details"}}`)
//! or, from the token endpoints, OAuth 2 errors, with Cloud KMS's own messages.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64, Encoding};
use serde_json::{Value, json};

use crate::local::{Serving, random_hex, serve, unix_now as now};

/// Encrypt and decrypt.
pub const CRYPTO_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypterDecrypter";
/// GET of a key.
pub const VIEW_ROLE: &str = "roles/cloudkms.viewer";
/// Encrypt only: a customer may bind it to take decrypting away and leave encrypting.
pub const ENCRYPT_ROLE: &str = "roles/cloudkms.cryptoKeyEncrypter";

/// How subject tokens of the pool's issuer are verified.
#[derive(Clone)]
pub enum IssuerKey {
    /// RS256 with the key the token's `kid` names in the JWKS at this URL, fetched per token
    /// as Google does: byok's own issuer. Set once byok listens.
    Jwks(Arc<OnceLock<String>>),
    /// RS256 with this public key (PKCS#1 DER): the SDK proof's own tokens.
    Rsa(Vec<u8>),
}

/// A workload identity pool provider trusting one OIDC issuer.
#[derive(Clone)]
pub struct Pool {
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`.
    pub audience: String,
    /// The issuer tokens must name.
    pub issuer: Arc<OnceLock<String>>,
    /// How their signature is checked.
    pub key: IssuerKey,
    /// The attribute condition: the one `sub` accepted.
    pub subject: Arc<OnceLock<String>>,
    /// The provider's `allowedAudiences`; empty: the provider's own name, with or without
    /// `https:`, as Google defaults.
    pub allowed_audiences: Vec<String>,
    /// How far Google's clock runs ahead of the test's, in seconds: a token whose `exp` is
    /// before that moment has expired.
    pub clock_ahead: Arc<std::sync::atomic::AtomicU64>,
}

impl Pool {
    /// A pool provider `audience` trusting `issuer` (its keys at the JWKS URL `jwks`, set once
    /// the issuer listens) for `subject` only, with Google's default audiences and clock.
    pub fn trusting(
        audience: &str,
        issuer: &str,
        jwks: &Arc<OnceLock<String>>,
        subject: &str,
    ) -> Self {
        let iss = Arc::new(OnceLock::new());
        let _ = iss.set(issuer.to_owned());
        let sub = Arc::new(OnceLock::new());
        let _ = sub.set(subject.to_owned());
        Self {
            audience: audience.into(),
            issuer: iss,
            key: IssuerKey::Jwks(jwks.clone()),
            subject: sub,
            allowed_audiences: Vec::new(),
            clock_ahead: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// The pool principal of `subject`.
    pub fn principal(&self, subject: &str) -> String {
        let parts: Vec<&str> = self.audience.split('/').collect();
        let (number, pool) = (
            parts.get(4).copied().unwrap_or_default(),
            parts.get(8).copied().unwrap_or_default(),
        );
        format!(
            "principal://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{pool}/subject/{subject}"
        )
    }
}

struct Version {
    state: String,
    material: [u8; 32],
}

struct Key {
    versions: BTreeMap<u32, Version>,
    primary: u32,
    purpose: String,
    /// role -> members
    iam: HashMap<String, HashSet<String>>,
    /// The key's labels (`gcloud kms keys update --update-labels`).
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct Inner {
    /// email -> (kid, RSA public key as PKCS#1 DER)
    accounts: HashMap<String, (String, Vec<u8>)>,
    pool: Option<Pool>,
    /// service account email -> principals that may impersonate it
    impersonators: HashMap<String, HashSet<String>>,
    /// access token -> (principal, expiry in seconds since the epoch, its OAuth scopes)
    tokens: HashMap<String, (String, u64, String)>,
    keys: HashMap<String, Key>,
    throttle: u32,
    corrupt: u32,
    kms_calls: u64,
    token_calls: u64,
}

/// The local Cloud KMS. Dropping it stops the server.
pub struct GcpKms {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    _serving: Serving,
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}.{}", random_hex(24))
}

fn crc(bytes: &[u8]) -> String {
    crc32c::crc32c(bytes).to_string()
}

/// A `google.rpc.Status` answer.
fn status(code: StatusCode, canonical: &str, message: &str, reason: Option<&str>) -> Response {
    let mut error = json!({ "code": code.as_u16(), "message": message, "status": canonical });
    if let Some(r) = reason {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": r,
            "domain": "cloudkms.googleapis.com",
        }]);
    }
    (code, axum::Json(json!({ "error": error }))).into_response()
}

/// An OAuth 2 error answer.
fn oauth_error(code: StatusCode, error: &str, description: &str) -> Response {
    (
        code,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn form_decode(body: &[u8]) -> HashMap<String, String> {
    crate::sts_front::form_decode(body).unwrap_or_default()
}

fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl GcpKms {
    /// Starts the server on a loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = inner.clone();
        let (url, serving) = serve(|url| {
            Router::new()
                .fallback(handle)
                .with_state((state, url.to_owned()))
        })
        .await;
        Self {
            url,
            inner,
            _serving: serving,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates an `ENCRYPT_DECRYPT` key `name` with one enabled version, and binds both roles
    /// to `members`.
    pub fn create_key(&self, name: &str, members: &[&str]) {
        self.create_key_with_purpose(name, "ENCRYPT_DECRYPT", members);
    }

    /// Creates a key of `purpose` (`ASYMMETRIC_SIGN` is one byok cannot use).
    pub fn create_key_with_purpose(&self, name: &str, purpose: &str, members: &[&str]) {
        let mut material = [0u8; 32];
        rand::fill(&mut material);
        let mut versions = BTreeMap::new();
        versions.insert(
            1,
            Version {
                state: "ENABLED".into(),
                material,
            },
        );
        let iam = [CRYPTO_ROLE, VIEW_ROLE]
            .iter()
            .map(|r| {
                (
                    (*r).to_owned(),
                    members.iter().map(|m| (*m).to_owned()).collect(),
                )
            })
            .collect();
        self.lock().keys.insert(
            name.into(),
            Key {
                versions,
                primary: 1,
                purpose: purpose.into(),
                iam,
                labels: BTreeMap::new(),
            },
        );
    }

    /// Sets label `label` of key `name` to `value`, as `gcloud kms keys update
    /// --update-labels` would (`None`: `--remove-labels`).
    pub fn set_label(&self, name: &str, label: &str, value: Option<&str>) {
        let mut g = self.lock();
        let labels = &mut g.keys.get_mut(name).expect("no such key").labels;
        match value {
            Some(v) => labels.insert(label.into(), v.into()),
            None => labels.remove(label),
        };
    }

    /// Grants (`true`) or revokes `role` on key `name` for `member`, as
    /// `gcloud kms keys add-iam-policy-binding` / `remove-iam-policy-binding` would.
    pub fn bind(&self, name: &str, role: &str, member: &str, on: bool) {
        let mut g = self.lock();
        let members = g
            .keys
            .get_mut(name)
            .expect("no such key")
            .iam
            .entry(role.into())
            .or_default();
        if on {
            members.insert(member.into());
        } else {
            members.remove(member);
        }
    }

    /// Sets version `v` of key `name` to `state` (`ENABLED`, `DISABLED`, `DESTROY_SCHEDULED`,
    /// `DESTROYED`; a destroyed version's material is gone for good).
    pub fn set_state(&self, name: &str, v: u32, state: &str) {
        let mut g = self.lock();
        let version = g
            .keys
            .get_mut(name)
            .expect("no such key")
            .versions
            .get_mut(&v)
            .expect("no such version");
        version.state = state.into();
        if state == "DESTROYED" {
            version.material = [0; 32];
        }
    }

    /// Adds a version to key `name` and makes it primary (the customer rotates); returns it.
    pub fn rotate(&self, name: &str) -> u32 {
        let mut g = self.lock();
        let key = g.keys.get_mut(name).expect("no such key");
        let v = key.versions.keys().next_back().copied().unwrap_or(0) + 1;
        let mut material = [0u8; 32];
        rand::fill(&mut material);
        key.versions.insert(
            v,
            Version {
                state: "ENABLED".into(),
                material,
            },
        );
        key.primary = v;
        v
    }

    /// Accepts JWT bearer grants of service account `email`, signed with key `kid` whose RSA
    /// public key is `public_pkcs1` (DER).
    pub fn add_service_account(&self, email: &str, kid: &str, public_pkcs1: &[u8]) {
        self.lock()
            .accounts
            .insert(email.into(), (kid.into(), public_pkcs1.to_vec()));
    }

    /// Serves STS token exchange for `pool`.
    pub fn set_pool(&self, pool: Pool) {
        self.lock().pool = Some(pool);
    }

    /// Lets `principal` impersonate service account `email` (`roles/iam.workloadIdentityUser`),
    /// or no longer.
    pub fn allow_impersonation(&self, email: &str, principal: &str, on: bool) {
        let mut g = self.lock();
        let set = g.impersonators.entry(email.into()).or_default();
        if on {
            set.insert(principal.into());
        } else {
            set.remove(principal);
        }
    }

    /// The next `n` key operations answer 429 `RESOURCE_EXHAUSTED`.
    pub fn throttle(&self, n: u32) {
        self.lock().throttle = n;
    }

    /// The next `n` encrypt answers carry a wrong `ciphertextCrc32c`, as if corrupted in
    /// transit.
    pub fn corrupt(&self, n: u32) {
        self.lock().corrupt = n;
    }

    /// Key operations and token exchanges answered so far.
    pub fn calls(&self) -> (u64, u64) {
        let g = self.lock();
        (g.kms_calls, g.token_calls)
    }
}

type St = (Arc<Mutex<Inner>>, String);

async fn handle(
    State((inner, _url)): State<St>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = crate::sts_front::percent_decode(uri.path()).unwrap_or_default();
    if method == Method::POST && path == "/token" {
        return jwt_grant(&inner, &body);
    }
    if method == Method::POST && path == "/v1/token" {
        return sts_exchange(&inner, &body).await;
    }
    if let Some(rest) = path.strip_prefix("/v1/projects/-/serviceAccounts/")
        && let Some(email) = rest.strip_suffix(":generateAccessToken")
        && method == Method::POST
    {
        return impersonate(&inner, email, &headers, &body);
    }
    let Some(resource) = path.strip_prefix("/v1/") else {
        return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method", None);
    };
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    g.kms_calls += 1;
    let Some((principal, scopes)) = bearer(&g, &headers) else {
        return status(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            Some("ACCESS_TOKEN_TYPE_UNSUPPORTED"),
        );
    };
    if !has_scope(&scopes, &["cloudkms", "cloud-platform"]) {
        return insufficient_scopes();
    }
    if g.throttle > 0 {
        g.throttle -= 1;
        return status(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute'.",
            Some("RATE_LIMIT_EXCEEDED"),
        );
    }
    let (name, op) = match resource.rsplit_once(':') {
        Some((n, op)) if method == Method::POST => (n.to_owned(), op.to_owned()),
        None if method == Method::GET => (resource.to_owned(), "get".to_owned()),
        _ => return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method", None),
    };
    let (permission, role) = match op.as_str() {
        "encrypt" => ("cloudkms.cryptoKeyVersions.useToEncrypt", CRYPTO_ROLE),
        "decrypt" => ("cloudkms.cryptoKeyVersions.useToDecrypt", CRYPTO_ROLE),
        "get" => ("cloudkms.cryptoKeys.get", VIEW_ROLE),
        _ => return status(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method", None),
    };
    let corrupt = op == "encrypt" && g.corrupt > 0;
    if corrupt {
        g.corrupt -= 1;
    }
    let Some(key) = g.keys.get(&name) else {
        return status(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("CryptoKey {name} not found."),
            None,
        );
    };
    let bound = |role: &str| key.iam.get(role).is_some_and(|m| m.contains(&principal));
    if !(bound(role) || (op == "encrypt" && bound(ENCRYPT_ROLE))) {
        return status(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "Permission '{permission}' denied on resource '{name}' (or it may not exist)."
            ),
            Some("IAM_PERMISSION_DENIED"),
        );
    }
    if op == "get" {
        return get_key(&name, key);
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
            None,
        );
    };
    if op == "encrypt" {
        encrypt(&name, key, &req, corrupt)
    } else {
        decrypt(&name, key, &req)
    }
}

/// The principal a bearer token stands for and the OAuth scopes it carries, if it is live.
fn bearer(g: &Inner, headers: &HeaderMap) -> Option<(String, String)> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    match g.tokens.get(token) {
        Some((principal, exp, scopes)) => {
            (*exp > now()).then(|| (principal.clone(), scopes.clone()))
        }
        None => self_signed(g, token),
    }
}

/// Whether space-separated `scopes` hold one of Google's `https://www.googleapis.com/auth/X`
/// for an X in `any`.
fn has_scope(scopes: &str, any: &[&str]) -> bool {
    scopes.split(' ').any(|s| {
        s.strip_prefix("https://www.googleapis.com/auth/")
            .is_some_and(|x| any.contains(&x))
    })
}

/// Google's answer to a token without the scope a method needs.
fn insufficient_scopes() -> Response {
    status(
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        "Request had insufficient authentication scopes.",
        Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
    )
}

#[derive(serde::Deserialize)]
struct SelfSigned {
    iss: String,
    sub: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    aud: Option<String>,
}

/// A self-signed JWT used as the access token (AIP-4111, what Google's client libraries send
/// for a service account by default): RS256 by the account's key, `iss` = `sub` = its email,
/// and a Cloud KMS scope or the Cloud KMS audience, unexpired.
fn self_signed(g: &Inner, token: &str) -> Option<(String, String)> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let (email, der) = g
        .accounts
        .iter()
        .find(|(_, (k, _))| *k == kid)
        .map(|(e, (_, der))| (e.clone(), der.clone()))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_required_spec_claims(&["exp", "iss", "sub"]);
    v.validate_aud = false;
    v.leeway = 0;
    let c = jsonwebtoken::decode::<SelfSigned>(
        token,
        &jsonwebtoken::DecodingKey::from_rsa_der(&der),
        &v,
    )
    .ok()?
    .claims;
    // A token aimed at Cloud KMS by its audience carries its scope.
    let scopes = if c.aud.as_deref() == Some("https://cloudkms.googleapis.com/") {
        "https://www.googleapis.com/auth/cloudkms".to_owned()
    } else {
        c.scope
    };
    (c.iss == email && c.sub == email).then(|| (format!("serviceAccount:{email}"), scopes))
}

/// An RSA-2048 key: its PKCS#8 PEM and its public key (PKCS#1 DER).
pub fn rsa() -> (String, Vec<u8>) {
    let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = pair.as_der().unwrap();
    let b64 = Base64::encode_string(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    (pem, pair.public_key().as_ref().to_vec())
}

/// A service account key file for `email`, as the Cloud console downloads it.
pub fn key_file(email: &str, kid: &str, pem: &str, token_uri: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": "vendor-prod",
        "private_key_id": kid,
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "token_uri": token_uri,
    })
}

fn version_name(name: &str, v: u32) -> String {
    format!("{name}/cryptoKeyVersions/{v}")
}

fn get_key(name: &str, key: &Key) -> Response {
    let mut body = json!({
        "name": name,
        "purpose": key.purpose,
        "createTime": "2026-01-01T00:00:00Z",
        "versionTemplate": { "protectionLevel": "SOFTWARE", "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION" },
        "destroyScheduledDuration": "2592000s",
    });
    if !key.labels.is_empty() {
        body["labels"] = json!(key.labels);
    }
    if key.purpose == "ENCRYPT_DECRYPT"
        && let Some(v) = key.versions.get(&key.primary)
    {
        body["primary"] = json!({
            "name": version_name(name, key.primary),
            "state": v.state,
            "protectionLevel": "SOFTWARE",
            "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
            "createTime": "2026-01-01T00:00:00Z",
        });
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

#[allow(
    clippy::result_large_err,
    reason = "the error is the answer itself, made once per request"
)]
/// A bytes field and whether its CRC32C was sent (and matched): `Err` with Cloud KMS's answer
/// when it does not match or the field is not base64.
fn field(
    req: &Value,
    name: &str,
    crc_name: &str,
    required: bool,
) -> Result<(Vec<u8>, bool), Response> {
    let bytes = match req.get(name).and_then(Value::as_str) {
        Some(s) => Base64::decode_vec(s).map_err(|_| {
            status(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("Invalid value at '{name}' (TYPE_BYTES), Base64 decoding failed"),
                None,
            )
        })?,
        None if required => {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("{name} is required."),
                None,
            ));
        }
        None => Vec::new(),
    };
    let sent = match req.get(crc_name) {
        None => return Ok((bytes, false)),
        Some(Value::String(s)) => s.parse::<u32>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(_) => None,
    };
    if sent == Some(crc32c::crc32c(&bytes)) {
        Ok((bytes, true))
    } else {
        Err(status(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!(
                "The checksum in field {} did not match the data in field {}.",
                snake(crc_name),
                snake(name)
            ),
            None,
        ))
    }
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn not_enabled(name: &str, v: u32, state: &str) -> Response {
    status(
        StatusCode::BAD_REQUEST,
        "FAILED_PRECONDITION",
        &format!(
            "{} is not enabled, current state is: {state}.",
            version_name(name, v)
        ),
        None,
    )
}

fn aead(material: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, material).expect("a 32-byte key"))
}

fn encrypt(name: &str, key: &Key, req: &Value, corrupt: bool) -> Response {
    let (plain, plain_checked) = match field(req, "plaintext", "plaintextCrc32c", true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (aad, aad_checked) = match field(
        req,
        "additionalAuthenticatedData",
        "additionalAuthenticatedDataCrc32c",
        false,
    ) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(v) = key.versions.get(&key.primary) else {
        return not_enabled(name, key.primary, "DESTROYED");
    };
    if v.state != "ENABLED" {
        return not_enabled(name, key.primary, &v.state);
    }
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let mut sealed = plain;
    aead(&v.material)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut sealed,
        )
        .expect("seal");
    let mut ct = key.primary.to_be_bytes().to_vec();
    ct.extend_from_slice(&nonce);
    ct.extend_from_slice(&sealed);
    let ct_crc = if corrupt {
        crc(b"corrupted in transit")
    } else {
        crc(&ct)
    };
    let body = json!({
        "name": version_name(name, key.primary),
        "ciphertext": Base64::encode_string(&ct),
        "ciphertextCrc32c": ct_crc,
        "verifiedPlaintextCrc32c": plain_checked,
        "verifiedAdditionalAuthenticatedDataCrc32c": aad_checked,
        "protectionLevel": "SOFTWARE",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn decrypt(name: &str, key: &Key, req: &Value) -> Response {
    let (ct, _) = match field(req, "ciphertext", "ciphertextCrc32c", true) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (aad, _) = match field(
        req,
        "additionalAuthenticatedData",
        "additionalAuthenticatedDataCrc32c",
        false,
    ) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let failed = || {
        status(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
            None,
        )
    };
    let (Some(head), Some(nonce), Some(sealed)) = (
        ct.get(..4),
        ct.get(4..4 + NONCE_LEN),
        ct.get(4 + NONCE_LEN..),
    ) else {
        return failed();
    };
    let v = u32::from_be_bytes(head.try_into().expect("4 bytes"));
    let Some(version) = key.versions.get(&v) else {
        return failed();
    };
    if version.state != "ENABLED" {
        return not_enabled(name, v, &version.state);
    }
    let mut buf = sealed.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).expect("12 bytes");
    let Ok(plain) = aead(&version.material).open_in_place(nonce, Aad::from(&aad), &mut buf) else {
        return failed();
    };
    let body = json!({
        "plaintext": Base64::encode_string(plain),
        "plaintextCrc32c": crc(plain),
        "usedPrimary": v == key.primary,
        "protectionLevel": "SOFTWARE",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn issue(g: &mut Inner, principal: String, lifetime: u64, scopes: String) -> (String, u64) {
    let token = random_token("ya29.local");
    let exp = now() + lifetime;
    g.tokens.insert(token.clone(), (principal, exp, scopes));
    (token, exp)
}

#[derive(serde::Deserialize)]
struct GrantClaims {
    iss: String,
    iat: u64,
    exp: u64,
    #[serde(default)]
    scope: String,
}

const SHORT_LIVED: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";

fn jwt_grant(inner: &Mutex<Inner>, body: &[u8]) -> Response {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    g.token_calls += 1;
    let form = form_decode(body);
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type.",
        );
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let kid = jsonwebtoken::decode_header(&assertion)
        .ok()
        .and_then(|h| h.kid);
    let Some((email, der)) = g.accounts.iter().find_map(|(email, (k, der))| {
        (Some(k) == kid.as_ref()).then(|| (email.clone(), der.clone()))
    }) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT Signature.",
        );
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[&email]);
    // Google's token endpoint, wherever the grant is sent (google-auth and byok alike).
    v.set_audience(&["https://oauth2.googleapis.com/token"]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.leeway = 0;
    let claims = match jsonwebtoken::decode::<GrantClaims>(
        &assertion,
        &jsonwebtoken::DecodingKey::from_rsa_der(&der),
        &v,
    ) {
        Ok(t) => t.claims,
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid JWT Signature.",
            );
        }
        Err(_) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", SHORT_LIVED),
    };
    if claims.exp.saturating_sub(claims.iat) > 3600 || claims.iss != email {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", SHORT_LIVED);
    }
    let (token, _) = issue(
        &mut g,
        format!("serviceAccount:{email}"),
        3600,
        claims.scope,
    );
    (
        StatusCode::OK,
        axum::Json(json!({ "access_token": token, "expires_in": 3599, "token_type": "Bearer" })),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct SubjectClaims {
    sub: String,
    exp: u64,
}

pub(crate) async fn subject_key(key: &IssuerKey, token: &str) -> Option<jsonwebtoken::DecodingKey> {
    match key {
        IssuerKey::Rsa(der) => Some(jsonwebtoken::DecodingKey::from_rsa_der(der)),
        IssuerKey::Jwks(url) => {
            crate::sts_front::jwks_key(url.get().map(String::as_str), token).await
        }
    }
}

async fn sts_exchange(inner: &Mutex<Inner>, body: &[u8]) -> Response {
    let pool = {
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.token_calls += 1;
        g.pool.clone()
    };
    let form = form_decode(body);
    let Some(pool) = pool else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "No pool.");
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:token-exchange")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type.",
        );
    }
    if form.get("audience") != Some(&pool.audience) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.",
        );
    }
    let token = form.get("subject_token").cloned().unwrap_or_default();
    if !matches!(
        form.get("subject_token_type").map(String::as_str),
        Some("urn:ietf:params:oauth:token-type:jwt" | "urn:ietf:params:oauth:token-type:id_token")
    ) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid subject_token_type.",
        );
    }
    let issuer = pool.issuer.get().cloned().unwrap_or_default();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[&issuer]);
    if pool.allowed_audiences.is_empty() {
        v.set_audience(&[pool.audience.clone(), format!("https:{}", pool.audience)]);
    } else {
        v.set_audience(&pool.allowed_audiences);
    }
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v.leeway = 0;
    // Expiry is checked below, against Google's clock.
    v.validate_exp = false;
    let decoded = match subject_key(&pool.key, &token).await {
        Some(k) => jsonwebtoken::decode::<SubjectClaims>(&token, &k, &v),
        None => Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into()),
    };
    let ahead = pool.clock_ahead.load(std::sync::atomic::Ordering::SeqCst);
    let claims = match decoded {
        Ok(t) if t.claims.exp <= now() + ahead => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The ID Token has expired.",
            );
        }
        Ok(t) => t.claims,
        Err(e) => {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "The ID Token has expired.",
                K::InvalidAudience => {
                    "The audience in ID Token does not match the expected audience."
                }
                K::InvalidIssuer => "The issuer in ID Token does not match the provider's issuer.",
                _ => "Invalid ID Token signature.",
            };
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
        }
    };
    if pool.subject.get() != Some(&claims.sub) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "The given credential is rejected by the attribute condition.",
        );
    }
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    let scopes = form.get("scope").cloned().unwrap_or_default();
    let (token, _) = issue(&mut g, pool.principal(&claims.sub), 3600, scopes);
    (
        StatusCode::OK,
        axum::Json(json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        })),
    )
        .into_response()
}

fn impersonate(inner: &Mutex<Inner>, email: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    g.token_calls += 1;
    let Some((principal, scopes)) = bearer(&g, headers) else {
        return status(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            None,
        );
    };
    // IAM Credentials wants a token for IAM (google-auth scopes the source credentials of an
    // impersonation to `iam`); a Cloud KMS token is refused.
    if !has_scope(&scopes, &["iam", "cloud-platform"]) {
        return insufficient_scopes();
    }
    if !g
        .impersonators
        .get(email)
        .is_some_and(|s| s.contains(&principal))
    {
        return status(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            Some("IAM_PERMISSION_DENIED"),
        );
    }
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let lifetime = req
        .get("lifetime")
        .and_then(Value::as_str)
        .and_then(|l| l.strip_suffix('s'))
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(3600)
        .min(3600);
    let scopes = req
        .get("scope")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let (token, exp) = issue(&mut g, format!("serviceAccount:{email}"), lifetime, scopes);
    (
        StatusCode::OK,
        axum::Json(json!({ "accessToken": token, "expireTime": rfc3339(exp) })),
    )
        .into_response()
}
