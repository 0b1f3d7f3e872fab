//! The provider seam: what byok needs from a KMS, whichever cloud runs it. Each provider
//! (`kms/<provider>/`) implements [`Provider`] once: it parses its key identifiers, builds the
//! wrap, unwrap and describe requests (the time passed in, nothing sent), reads their answers
//! into byok's classes ([`KmsError`]) and says what fixes each class, and runs its credential
//! exchanges as a [`CredentialFlow`]. A host holds no provider-specific code beyond its
//! configuration: it executes what the provider builds and applies what it concludes.
//!
//! ```text
//!   host                              core: provider (by name, from PROVIDERS)
//!   credentials? ──────────────────▶  credentials(access, vendor) -> flow
//!      loop: flow.need()              Token{aud} | Sign{claims} | Exchange | Done
//!   wrap/unwrap/describe ──────────▶  *_request(call, .., now) -> HttpRequest
//!   answer ────────────────────────▶  parse_*(resp) -> value | KmsError{kind, code, fix}
//! ```
//!
//! Adding a provider: a module under `kms/`, its `impl Provider` and `impl Wire`, and one line
//! in each of [`PROVIDERS`] and `WIRES` (CONTRIBUTING.md walks through it).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::kms::aws::request::AwsCredentials;
use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::http::{HttpRequest, HttpResponse};
use crate::secret::SecretBytes;

/// Every provider byok speaks, by name: one registration line per provider here, and one in
/// `WIRES`.
pub static PROVIDERS: &[&dyn Provider] = &[
    &crate::kms::aws::Aws,
    &crate::kms::gcp::Gcp,
    &crate::kms::azure::Azure,
];

/// Every provider's calls. A separate list so that code which only sets keys up (the browser)
/// does not link the request builders, signers and parsers.
static WIRES: &[&dyn Wire] = &[
    &crate::kms::aws::Aws,
    &crate::kms::gcp::Gcp,
    &crate::kms::azure::Azure,
];

/// The provider named `name` (`aws`, `gcp`, `azure`), if byok speaks it.
pub fn provider(name: &str) -> Option<&'static dyn Provider> {
    PROVIDERS.iter().copied().find(|p| p.name() == name)
}

/// The calls of the provider named `name`.
pub fn wire(name: &str) -> Option<&'static dyn Wire> {
    WIRES.iter().copied().find(|p| p.name() == name)
}

/// The names of every provider, for error messages and help.
pub fn names() -> Vec<&'static str> {
    PROVIDERS.iter().map(|p| p.name()).collect()
}

/// What a wrapped root copy is bound to: the org, the scope, and the root version it holds.
/// Each provider binds these in its own way (AWS: encryption context; GCP: additional
/// authenticated data), so that a copy made for one org, scope or version cannot be unwrapped
/// as another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The org's id (hex).
    pub org: String,
    /// The scope's id (hex).
    pub scope: String,
    /// The root key version; `None` leaves it out.
    pub version: Option<u32>,
}

impl Binding {
    /// An org root copy of `version` (`0` is the validation probe, never a root version).
    pub fn root(org: &str, version: u32) -> Self {
        Self {
            org: org.into(),
            scope: org.into(),
            version: Some(version),
        }
    }

    /// The binding as bytes, for providers that bind with additional data or an envelope:
    /// `byok:org=<org>;byok:scope=<scope>;byok:version=<n>` (the version left out when
    /// `None`). Every part is hex or digits, so the encoding is unambiguous.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("byok:org={};byok:scope={}", self.org, self.scope);
        if let Some(v) = self.version {
            s.push_str(&format!(";byok:version={v}"));
        }
        s.into_bytes()
    }
}

/// A pasted identifier, refused: which part, what was found (escaped, shortened), and what is
/// expected. `what` names the kind of identifier (`AWS KMS key identifier`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadIdentifier {
    /// The kind of identifier.
    pub what: &'static str,
    /// The part at fault.
    pub part: &'static str,
    /// What was found there.
    pub found: String,
    /// What is expected, and what to do.
    pub expected: &'static str,
}

impl fmt::Display for BadIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}: found \"{}\"; expected {}",
            self.what, self.part, self.found, self.expected
        )
    }
}

impl core::error::Error for BadIdentifier {}

/// A key identifier as a provider understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedKey {
    /// The identifier byok stores and calls with (trimmed, the URL forms reduced).
    pub key: String,
    /// Where the key material lives (region or location), for the org's residency rule.
    pub location: String,
    /// One line for the admin: what it names.
    pub summary: String,
}

/// The credentials a request is made with.
#[derive(Clone)]
pub enum Credentials {
    /// AWS keys, for SigV4.
    SigV4(AwsCredentials),
    /// An OAuth 2 bearer token (GCP, Azure).
    Bearer(Zeroizing<String>),
}

impl Credentials {
    /// The bearer token, for a provider (`title`) whose requests carry one; AWS keys are a
    /// request the host built wrong.
    pub fn bearer(&self, title: &str) -> Result<&str, RequestError> {
        match self {
            Self::Bearer(t) => Ok(t.as_str()),
            Self::SigV4(_) => Err(RequestError(format!(
                "{title} requests carry a bearer token, not AWS keys"
            ))),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SigV4(c) => f.debug_tuple("SigV4").field(c).finish(),
            Self::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// How byok reaches an org's key: who it acts as and how it becomes that principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The org's id (hex): the subject of byok's tokens, the session name.
    pub org: String,
    /// The key (as [`ParsedKey::key`]).
    pub key: String,
    /// The customer's principal byok becomes: an AWS role ARN, a GCP service account email;
    /// `None` for byok's own principal.
    pub role: Option<String>,
    /// How byok becomes `role`.
    pub trust: RoleTrust,
    /// The org's external id (AWS `AssumeRole`).
    pub external_id: String,
    /// Where byok's token is exchanged: GCP's workload identity pool provider
    /// (`//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`).
    pub audience: Option<String>,
    /// **Tests only**, from server configuration (never from input): the base URL every call
    /// of this provider goes to.
    pub danger_base: Option<String>,
}

pub use crate::kms::trust::RoleTrust;

/// What the vendor holds for its own principal, per provider. Only for development and the
/// external-id trust: production trusts byok's OIDC issuer and needs none of it.
#[derive(Clone, Debug, Default)]
pub struct Vendor {
    /// AWS keys of the vendor's principal.
    pub aws: Option<AwsCredentials>,
    /// The vendor's AWS principal ARN, which policies name (`--aws-principal-arn`).
    pub aws_principal: Option<String>,
    /// The vendor's GCP service account (its private key stays with the host, which signs
    /// the assertion the flow asks for).
    pub gcp: Option<crate::kms::gcp::ServiceAccount>,
    /// The vendor's Azure app (a certificate's private key stays with the host, which signs
    /// the assertion the flow asks for).
    pub azure: Option<crate::kms::azure::auth::VendorApp>,
}

/// What a [`CredentialFlow`] needs next.
#[derive(Debug)]
pub enum Need {
    /// byok's OIDC token for the org, with this audience: [`CredentialFlow::supply`] it.
    Token {
        /// The `aud` claim.
        audience: String,
    },
    /// The vendor's signature over these JWT claims, with the key the host holds for this
    /// provider (a GCP service account key: RS256 with its `kid`; an Azure app's certificate:
    /// PS256 with its `x5t#S256`): [`CredentialFlow::supply`] the compact JWT.
    Sign {
        /// The claims.
        claims: serde_json::Value,
    },
    /// An exchange: send [`CredentialFlow::request`], then give the answer to
    /// [`CredentialFlow::answer`].
    Exchange,
    /// Finished: [`CredentialFlow::credentials`].
    Done,
}

/// A provider's credential exchanges for one access, as a sans-IO state machine.
pub trait CredentialFlow: Send + Sync {
    /// What to do next, at time `now` (since the Unix epoch).
    fn need(&self, now: Duration) -> Need;
    /// A token or signature asked for by [`Need::Token`] or [`Need::Sign`].
    fn supply(&mut self, value: Zeroizing<String>);
    /// The request of a [`Need::Exchange`], built for time `now` (again on each retry).
    fn request(&self, now: Duration) -> Result<HttpRequest, RequestError>;
    /// Whether an answer to the exchange is a refusal, classified (retries are decided on it).
    fn check(&self, resp: &HttpResponse) -> Result<(), KmsError>;
    /// The answer to the exchange, received at `now`: an error (classified) ends the flow.
    fn answer(&mut self, resp: &HttpResponse, now: Duration) -> Result<(), KmsError>;
    /// The credentials, once [`Need::Done`], and when they expire (seconds since the epoch).
    fn credentials(&self) -> Option<(Credentials, Option<u64>)>;
}

/// A request could not be built (bad signing input, missing credentials). Never caused by a
/// KMS answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError(pub String);

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One call on a key.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    /// The key (as [`ParsedKey::key`]).
    pub key: &'a str,
    /// What the copy is bound to.
    pub binding: &'a Binding,
    /// The credentials.
    pub creds: &'a Credentials,
    /// **Tests only**: see [`Access::danger_base`].
    pub danger_base: Option<&'a str>,
}

/// Which key operation a permission is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Describe the key.
    Describe,
    /// Wrap a root key.
    Wrap,
    /// Unwrap a root copy.
    Unwrap,
}

/// What describing a key found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyState {
    /// The key as the KMS names it (an AWS alias resolved to its key): what byok stores.
    pub key: String,
    /// What was checked, for the admin (`... is enabled, symmetric, for encryption`).
    pub detail: String,
    /// Why byok cannot use it as it is, or `None` when it is usable.
    pub unusable: Option<Unusable>,
    /// The key's current version, for providers whose copies name the version that made them
    /// ([`Wire::copy_version`]); `None` where the KMS picks versions itself (AWS, GCP).
    pub version: Option<String>,
    /// The org the key's owner named on it for byok, by the label or tag [`ORG_CLAIM`] (GCP,
    /// Azure); `None` when it names none, or the provider has no such field (AWS).
    pub org_claim: Option<String>,
}

/// The GCP label and Azure tag by which a key's owner names the one org that may attach it,
/// when byok reaches the key as a principal every org shares ([`Provider::shared_principal`]).
pub const ORG_CLAIM: &str = "byok-org";

/// The org a key's labels (GCP) or tags (Azure), as its describe answer gives them, name under
/// [`ORG_CLAIM`].
pub fn org_claim_in(labels: Option<&serde_json::Value>) -> Option<String> {
    labels?
        .as_object()?
        .get(ORG_CLAIM)?
        .as_str()
        .map(String::from)
}

/// Whether any of `copies` (a holder's stored root copies) was made by another version than
/// the key's current one, as `state` describes it: the customer rotated the key, and the
/// copies must be wrapped again (`Org::refresh_holder`) so that the old version can go.
pub fn copies_behind<'a>(
    wire: &dyn Wire,
    state: &KeyState,
    mut copies: impl Iterator<Item = &'a [u8]>,
) -> bool {
    let Some(current) = &state.version else {
        return false;
    };
    copies.any(|c| wire.copy_version(c).is_some_and(|v| &v != current))
}

/// Why a described key cannot wrap and unwrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unusable {
    /// The class (`KeyDisabled`, `KeyPendingDeletion`; `Malformed` for the wrong kind of key).
    pub kind: KmsErrorKind,
    /// What is wrong, in the provider's words.
    pub problem: String,
    /// The fix.
    pub fix: String,
}

/// What a grant is generated for.
#[derive(Clone, Debug)]
pub struct GrantFor<'a> {
    /// How byok reaches the key ([`Access::key`] as parsed).
    pub access: &'a Access,
    /// The vendor's principals.
    pub vendor: &'a Vendor,
    /// byok's OIDC issuer URL (`https://host[/path]`), if it is one.
    pub issuer: Option<&'a str>,
}

/// Everything a customer grants for one key, as the server's policy endpoint answers it and
/// the setup page shows it while the admin types.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// Who the key's policy names: the customer's principal byok becomes, or the vendor's.
    pub principal: String,
    /// What to add to the key's policy (AWS statements; GCP IAM bindings).
    pub key_policy: serde_json::Value,
    /// With an AWS role: its permissions policy.
    pub role_policy: Option<serde_json::Value>,
    /// How byok becomes the principal: an AWS role's trust policy, a GCP service account's
    /// impersonation binding.
    pub trust_policy: Option<serde_json::Value>,
    /// The commands that apply it, for the admin to paste.
    pub commands: Vec<String>,
}

/// A KMS, as byok sets it up: its identifiers, the grants a customer adds, the fixes it names.
/// What hosts that never call a KMS (the browser's setup page) use; [`Wire`] adds the calls.
/// Implementations hold no state: one static value per provider.
pub trait Provider: Send + Sync {
    /// Its name in the API and the store: `aws`, `gcp`.
    fn name(&self) -> &'static str;
    /// Its name for people: `AWS KMS`, `Google Cloud KMS`.
    fn title(&self) -> &'static str;
    /// Parses a pasted key identifier.
    fn parse_key(&self, identifier: &str) -> Result<ParsedKey, BadIdentifier>;
    /// Checks a pasted principal byok becomes (AWS role ARN, GCP service account email), and
    /// returns it as stored.
    fn parse_role(&self, role: &str) -> Result<String, BadIdentifier>;
    /// Checks an exchange audience (GCP workload identity provider), as stored.
    fn parse_audience(&self, audience: &str) -> Result<String, BadIdentifier>;
    /// The one fix for an error of class `kind`, in this provider's terms.
    fn fix(&self, kind: KmsErrorKind) -> String;
    /// The exact grant that `principal` lacks for `op` on the key (a policy statement, an IAM
    /// binding), for a validation step that was denied.
    fn missing_grant(&self, op: Op, key: &str, principal: &str, org: &str) -> String;
    /// The key to store for `pasted` once its KMS described it as `described` (an AWS alias
    /// resolved to its key), or why the description does not fit what was pasted.
    fn resolved(&self, pasted: &ParsedKey, described: &str) -> Result<String, String>;
    /// Who the key's policy must name for `access`; the error says which setting is missing.
    fn principal(&self, access: &Access, vendor: &Vendor) -> Result<String, String>;
    /// The grant for `g`.
    fn grant(&self, g: &GrantFor<'_>) -> Result<Grant, String>;
    /// Whether byok reaches the key for `access` as a principal that every org shares (the
    /// vendor's own GCP service account or Entra app). Nothing in such a grant names the org,
    /// so any org could attach a key another org's customer granted to that principal (and
    /// have its own roots wrapped by it, on that customer's bill and in its logs). The key must
    /// then name the org itself ([`KeyState::org_claim`]), which only its owner can set.
    /// AWS binds the org in the grant instead (the key policy's `byok:org` condition), which
    /// its KMS enforces on every call.
    fn shared_principal(&self, _access: &Access) -> bool {
        false
    }
    /// The command that names `org` on `key` ([`ORG_CLAIM`]), for providers whose shared
    /// principal needs it.
    fn claim_command(&self, _key: &str, _org: &str) -> String {
        String::new()
    }
}

/// A KMS's calls: the requests that wrap, unwrap and describe (the time passed in), the reading
/// of their answers, and the credential exchanges. Kept apart from [`Provider`] so that a host
/// that never calls a KMS links none of it (the setup page's wasm stays small).
pub trait Wire: Provider {
    /// The request that wraps `root` under the key.
    fn wrap_request(
        &self,
        call: &Call<'_>,
        root: &SecretBytes,
        now: Duration,
    ) -> Result<HttpRequest, RequestError>;
    /// The wrapped copy from the answer to a wrap under `key`.
    fn parse_wrap(&self, key: &str, resp: &HttpResponse) -> Result<Vec<u8>, KmsError>;
    /// The request that unwraps `blob`.
    fn unwrap_request(
        &self,
        call: &Call<'_>,
        blob: &[u8],
        now: Duration,
    ) -> Result<HttpRequest, RequestError>;
    /// The 32-byte root from an unwrap answer for a copy under `key` bound to `binding`
    /// (providers whose answers name the key check it; those that bind with an envelope check
    /// the envelope).
    fn parse_unwrap(
        &self,
        key: &str,
        binding: &Binding,
        resp: &HttpResponse,
    ) -> Result<SecretBytes, KmsError>;
    /// The request that describes the key.
    fn describe_request(&self, call: &Call<'_>, now: Duration)
    -> Result<HttpRequest, RequestError>;
    /// What a describe answer received at `now` (since the epoch) says: a key past its expiry
    /// date is unusable.
    fn parse_describe(&self, resp: &HttpResponse, now: Duration) -> Result<KeyState, KmsError>;
    /// The key version that made a stored copy, for providers whose copies record it (Azure):
    /// compared with [`KeyState::version`] to find copies to wrap again after a rotation.
    fn copy_version(&self, _copy: &[u8]) -> Option<String> {
        None
    }
    /// What credentials for `access` are good for, beyond the org, principal and audience:
    /// keys whose scopes differ need their own (an Entra token is for one service in one
    /// cloud: a vault's is refused by Managed HSM). Empty when one credential serves every
    /// key of the provider.
    fn credential_scope(&self, _access: &Access) -> String {
        String::new()
    }
    /// The credential exchanges for `access`.
    fn credentials(
        &self,
        access: &Access,
        vendor: &Vendor,
    ) -> Result<Box<dyn CredentialFlow>, KmsError>;
}

/// A flow that needs nothing: credentials the vendor already holds.
pub struct Ready(pub Credentials);

impl CredentialFlow for Ready {
    fn need(&self, _: Duration) -> Need {
        Need::Done
    }
    fn supply(&mut self, _: Zeroizing<String>) {}
    fn request(&self, _: Duration) -> Result<HttpRequest, RequestError> {
        Err(RequestError("no exchange is needed".into()))
    }
    fn check(&self, _: &HttpResponse) -> Result<(), KmsError> {
        Ok(())
    }
    fn answer(&mut self, _: &HttpResponse, _: Duration) -> Result<(), KmsError> {
        Ok(())
    }
    fn credentials(&self) -> Option<(Credentials, Option<u64>)> {
        Some((self.0.clone(), None))
    }
}

/// Whether credentials expiring at `expires_at` (seconds since the epoch) must be refreshed at
/// `now`: five minutes ahead. Credentials without expiry never need it.
pub fn needs_refresh(expires_at: Option<u64>, now: Duration) -> bool {
    crate::kms::aws::sts::needs_refresh(expires_at, now)
}

/// A fresh external id for an org (AWS `AssumeRole`'s confused-deputy defence): `byok-` and 32 random hex digits. Random, so that it cannot
/// be guessed from the org's id; stored with the org and shown to its admin once.
pub fn new_external_id(rng: &mut impl CryptoRng) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("byok-{hex}")
}

/// `access_token` and its expiry (`now` + `expires_in`, which may come as a number or, from
/// some token services, a string) from an OAuth 2 token answer's `body`; the field at fault
/// otherwise. Shared by every provider whose credentials are bearer tokens.
pub fn oauth_access_token(
    body: &[u8],
    now: Duration,
) -> Result<(Zeroizing<String>, u64), &'static str> {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| "body is not JSON")?;
    // Taken out of the map, not copied: the map would drop its copy unwiped.
    let token = crate::kms::http::take_secret(&mut v, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or("access_token")?;
    let secs = match v.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or("expires_in")?;
    Ok((token, now.as_secs().saturating_add(secs)))
}

/// A classified error made locally (no KMS answer): status 0, no provider code.
pub fn local_error(provider: &'static str, kind: KmsErrorKind, message: &str) -> KmsError {
    KmsError {
        kind,
        provider,
        code: String::new(),
        message: crate::kms::error::clean_text(message),
        status: 0,
    }
}

/// `provider` is not one byok speaks: the message lists those it does.
pub fn unknown(provider: &str) -> String {
    format!(
        "unknown KMS provider \"{}\": expected one of {}",
        crate::kms::error::clean_text(provider),
        names().join(", ")
    )
}
