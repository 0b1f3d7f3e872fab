//! Calls to customers' keys, whichever provider: wrap and unwrap org root keys, describe for
//! health, and the validation plan. The provider (core's seam) builds every request and reads
//! every answer; this module runs them with retries and credentials and counts them. Endpoints
//! come only from the validated key identifier (or, in tests, from the server's configuration
//! per provider); every wrapped copy is bound to its org, scope and root version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use byok_core::SecretBytes;
use byok_core::kms::provider::{
    Access, Binding, Call, Credentials, Grant, GrantFor, KeyState, Provider, RequestError, Wire,
};
use byok_core::kms::validate::{Next, Validation};
use byok_core::kms::{HttpRequest, HttpResponse, KmsError};
use byok_core::retry::RetryPolicy;

use crate::credentials::{CredentialCache, Sources};
use crate::kms_call::{Attempts, Called, call_counted, unix_now};
use crate::transport::{Transport, TransportConfig};

/// The vendor's KMS settings.
#[derive(Clone, Default)]
pub struct KmsSettings {
    /// What the vendor holds for its own principals, byok's issuer and the vendor's signer.
    pub sources: Sources,
    /// **Tests only**: send every call of a provider (`aws`, `gcp`) to this `http(s)://host:port`.
    pub danger_endpoints: BTreeMap<String, String>,
}

/// How byok reaches one key.
#[derive(Clone)]
pub struct KeyAccess {
    /// The key's provider, with its calls.
    pub provider: &'static dyn Wire,
    /// The key, the principal, the trust.
    pub access: Access,
}

impl std::fmt::Debug for KeyAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAccess")
            .field("provider", &self.provider.name())
            .field("access", &self.access)
            .finish()
    }
}

/// The executor.
pub struct Kms {
    settings: KmsSettings,
    transport: Transport,
    policy: RetryPolicy,
    creds: CredentialCache,
    calls: Arc<AtomicU64>,
}

impl Kms {
    /// An executor with `settings`; counts KMS and credential exchanges in `calls`.
    pub fn new(settings: KmsSettings, calls: Arc<AtomicU64>) -> Result<Self, String> {
        let danger_allow_http = settings
            .danger_endpoints
            .values()
            .any(|u| u.starts_with("http://"));
        let transport = Transport::new(TransportConfig {
            danger_allow_http,
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        let policy = RetryPolicy::default();
        Ok(Self {
            creds: CredentialCache::new(transport.clone(), policy),
            settings,
            transport,
            policy,
            calls,
        })
    }

    /// Presents `tokens` (byok's OIDC issuer) to clouds that trust it.
    pub fn with_tokens(mut self, tokens: Arc<dyn crate::credentials::TokenSource>) -> Self {
        self.settings.sources.tokens = Some(tokens);
        self
    }

    /// Whether byok is an OIDC issuer here.
    pub fn is_issuer(&self) -> bool {
        self.settings.sources.tokens.is_some()
    }

    /// The test override for `provider`, from the server's configuration only.
    pub fn danger_base(&self, provider: &dyn Provider) -> Option<String> {
        self.settings.danger_endpoints.get(provider.name()).cloned()
    }

    /// Who a generated grant names for `key` (the error says which setting is missing).
    pub fn principal(&self, key: &KeyAccess) -> Result<String, String> {
        self.principal_of(key.provider, &key.access)
    }

    /// Who a grant of `provider` names for `access`.
    pub fn principal_of(&self, provider: &dyn Provider, access: &Access) -> Result<String, String> {
        provider.principal(access, &self.settings.sources.vendor)
    }

    /// The grant for `key`, with byok's issuer URL if it is one.
    pub fn grant(&self, key: &KeyAccess, issuer: Option<&str>) -> Result<Grant, String> {
        key.provider.grant(&GrantFor {
            access: &key.access,
            vendor: &self.settings.sources.vendor,
            issuer,
        })
    }

    /// The credential exchanges made for `org` since the last call (see
    /// [`CredentialCache::take_exchanges`]).
    pub fn take_exchanges(&self, org: byok_core::ScopeId) -> Vec<crate::credentials::Exchange> {
        self.creds.take_exchanges(&org.to_string())
    }

    /// Drops credentials held past their use ([`crate::credentials::CredentialCache::forget_stale`]).
    pub fn forget_stale_credentials(&self) {
        self.creds.forget_stale();
    }

    /// The orgs with exchanges whose rows are not written yet.
    pub fn orgs_with_exchanges(&self) -> Vec<byok_core::ScopeId> {
        self.creds
            .orgs_with_exchanges()
            .iter()
            .filter_map(|o| byok_core::ScopeId::parse_hex(o))
            .collect()
    }

    /// Hands `exchanges` back, oldest first, when their rows could not be written: the next
    /// write of the org's log takes them.
    pub fn return_exchanges(&self, exchanges: Vec<crate::credentials::Exchange>) {
        self.creds.return_exchanges(exchanges);
    }

    async fn credentials(&self, key: &KeyAccess) -> Result<Credentials, KmsError> {
        self.creds
            .get(key.provider, &key.access, &self.settings.sources)
            .await
    }

    /// One exchange with retries (`build` signs afresh each attempt), counting in `sent` the
    /// requests as they go out.
    async fn exchange<T>(
        &self,
        provider: &'static dyn Wire,
        sent: &Attempts,
        build: impl FnMut(std::time::Duration) -> Result<HttpRequest, RequestError>,
        parse: impl Fn(&HttpResponse) -> Result<T, KmsError>,
    ) -> Called<T> {
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let called = call_counted(
            &self.transport,
            provider.name(),
            &self.policy,
            &mut rng,
            sent,
            build,
            parse,
        )
        .await;
        self.calls
            .fetch_add(u64::from(called.attempts), Ordering::Relaxed);
        called
    }

    /// One call on `key` for root version `version`: credentials, the binding, the request
    /// `build` makes (again on each retry), the answer `parse` reads. Without credentials no
    /// request is sent: no attempt.
    async fn on_key<T>(
        &self,
        key: &KeyAccess,
        version: u32,
        sent: &Attempts,
        build: impl Fn(&Call<'_>, std::time::Duration) -> Result<HttpRequest, RequestError>,
        parse: impl Fn(&HttpResponse) -> Result<T, KmsError>,
    ) -> Called<T> {
        let creds = match self.credentials(key).await {
            Ok(c) => c,
            Err(e) => {
                return Called {
                    result: Err(e),
                    attempts: 0,
                };
            }
        };
        let binding = Binding::root(&key.access.org, version);
        let call = Call {
            key: &key.access.key,
            binding: &binding,
            creds: &creds,
            danger_base: key.access.danger_base.as_deref(),
        };
        self.exchange(key.provider, sent, |now| build(&call, now), parse)
            .await
    }

    /// Wraps `root` (org root key version `version`) under the key.
    pub async fn wrap(
        &self,
        key: &KeyAccess,
        root: &SecretBytes,
        version: u32,
    ) -> Result<Vec<u8>, KmsError> {
        self.wrap_counted(key, root, version, &Attempts::default())
            .await
            .result
    }

    /// [`Self::wrap`], counting in `sent` the requests it sends as they go out (each is an
    /// event in the customer's log, whether or not this call is then dropped).
    pub async fn wrap_counted(
        &self,
        key: &KeyAccess,
        root: &SecretBytes,
        version: u32,
        sent: &Attempts,
    ) -> Called<Vec<u8>> {
        let p = key.provider;
        self.on_key(
            key,
            version,
            sent,
            |call, now| p.wrap_request(call, root, now),
            |resp| p.parse_wrap(&key.access.key, resp),
        )
        .await
    }

    /// Unwraps a root copy of version `version` made by [`Self::wrap`].
    pub async fn unwrap(
        &self,
        key: &KeyAccess,
        blob: &[u8],
        version: u32,
    ) -> Result<SecretBytes, KmsError> {
        self.unwrap_counted(key, blob, version, &Attempts::default())
            .await
            .result
    }

    /// [`Self::unwrap`], counting in `sent` the requests it sends as they go out.
    pub async fn unwrap_counted(
        &self,
        key: &KeyAccess,
        blob: &[u8],
        version: u32,
        sent: &Attempts,
    ) -> Called<SecretBytes> {
        let p = key.provider;
        let binding = Binding::root(&key.access.org, version);
        self.on_key(
            key,
            version,
            sent,
            |call, now| p.unwrap_request(call, blob, now),
            |resp| p.parse_unwrap(&key.access.key, &binding, resp),
        )
        .await
    }

    /// Describes the key (health). The binding is unused: describe carries none.
    pub async fn describe(&self, key: &KeyAccess) -> Result<KeyState, KmsError> {
        self.describe_counted(key, &Attempts::default())
            .await
            .result
    }

    /// [`Self::describe`], counting in `sent` the requests it sends as they go out.
    pub async fn describe_counted(&self, key: &KeyAccess, sent: &Attempts) -> Called<KeyState> {
        let p = key.provider;
        self.on_key(
            key,
            0,
            sent,
            |call, now| p.describe_request(call, now),
            |resp| p.parse_describe(resp, unix_now()),
        )
        .await
    }

    /// Runs the validation plan for `identifier` (a key of `key.provider`) as `key.access`
    /// says byok reaches it, with byok named as `principal`. Also returns the first thing the
    /// key's KMS said that withdraws access, if any: for a key already attached, that is the
    /// customer withdrawing, and the caller must act on it as on any other call's. And the
    /// calls it made, which the caller audits.
    pub async fn validate(
        &self,
        key: &KeyAccess,
        identifier: &str,
        principal: &str,
    ) -> (Validation, Option<Withdrew>, Vec<ValidationCall>) {
        let log = CallLog::new(key.provider.name());
        let (v, denial) = self.validate_logged(key, identifier, principal, &log).await;
        (v, denial, log.calls())
    }

    /// [`Self::validate`], recording each call in `log` as it is made: the caller's audit row
    /// is written from it even if this is dropped mid-way.
    pub async fn validate_logged(
        &self,
        key: &KeyAccess,
        identifier: &str,
        principal: &str,
        log: &CallLog,
    ) -> (Validation, Option<Withdrew>) {
        let mut denial = None;
        let mut v = {
            let mut rng = rand::rng();
            Validation::start(
                key.provider,
                identifier,
                &[],
                principal,
                &key.access.org,
                key.provider.shared_principal(&key.access),
                &mut rng,
            )
        };
        loop {
            let target = |k: &str| KeyAccess {
                provider: key.provider,
                access: Access {
                    key: k.to_owned(),
                    ..key.access.clone()
                },
            };
            match v.next() {
                Next::Describe(k) => {
                    let sent = log.start("Describe");
                    let answer = self.describe_counted(&target(k), sent).await.result;
                    log.end(answer.as_ref().err());
                    note_denial(&mut denial, answer.as_ref().err());
                    if denial.is_none()
                        && let Ok(state) = &answer
                        && let Some(u) = state.unusable.as_ref().filter(|u| u.kind.is_denial())
                    {
                        denial = Some(Withdrew::Unusable {
                            kind: u.kind,
                            detail: format!("{}: {}", state.key, u.problem),
                        });
                    }
                    v.described(answer);
                }
                Next::Wrap(k, probe) => {
                    let (access, probe) = (target(k), probe.duplicate());
                    // Version 0 is never a root version: the binding says it is a probe.
                    let sent = log.start("Encrypt");
                    let answer = self.wrap_counted(&access, &probe, 0, sent).await.result;
                    log.end(answer.as_ref().err());
                    note_denial(&mut denial, answer.as_ref().err());
                    v.wrapped(answer);
                }
                Next::Unwrap(k, blob) => {
                    let (access, blob) = (target(k), blob.to_vec());
                    let sent = log.start("Decrypt");
                    let answer = self.unwrap_counted(&access, &blob, 0, sent).await.result;
                    log.end(answer.as_ref().err());
                    note_denial(&mut denial, answer.as_ref().err());
                    v.unwrapped(answer);
                }
                Next::Done => return (v, denial),
            }
        }
    }
}

/// A call a validation made ([`Kms::validate`]), for the audit log: the customer's KMS logs
/// it too (a probe's binding names root version 0, which no root has).
#[derive(Clone, Debug)]
pub struct ValidationCall {
    /// `Describe`, `Encrypt` or `Decrypt`, as `kms_call` events name them.
    pub op: &'static str,
    /// Requests sent for it, retries included (0: no credentials, nothing sent).
    pub attempts: u32,
    /// How it failed, if it did ([`crate::kms_call::abandoned`] if its answer was never read).
    pub error: Option<KmsError>,
}

/// How a call of a validation ended: the requests it sent and its error, if any (`None` while
/// it is on its way).
type Answer = Option<(u32, Option<KmsError>)>;

/// The calls a validation makes, recorded as it makes them ([`Kms::validate`]): its audit
/// row is written from this, also when the request that asked for the validation is dropped
/// before it ends (`service/call_rows.rs`).
#[derive(Debug)]
pub struct CallLog {
    provider: &'static str,
    /// Each call made, with its answer (`None` while on its way).
    calls: std::sync::Mutex<Vec<(&'static str, Answer)>>,
    /// The requests the call on its way has sent.
    sent: Attempts,
}

impl CallLog {
    /// An empty log for a validation of a key of `provider`.
    pub fn new(provider: &'static str) -> Self {
        Self {
            provider,
            calls: std::sync::Mutex::new(Vec::new()),
            sent: Attempts::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, Answer)>> {
        // Entries are pushed and set whole: a poisoned lock holds a consistent list.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call `op` starts: returns the counter its requests go in.
    fn start(&self, op: &'static str) -> &Attempts {
        self.sent.reset();
        self.lock().push((op, None));
        &self.sent
    }

    /// The call started last was answered (or failed) as `error` says.
    fn end(&self, error: Option<&KmsError>) {
        let attempts = self.sent.get();
        if let Some((_, answer)) = self.lock().last_mut() {
            *answer = Some((attempts, error.cloned()));
        }
    }

    /// The calls so far. One still on its way shows the requests it sent and that its answer
    /// was not read; one that sent nothing yet is left out (the customer's KMS saw nothing).
    pub fn calls(&self) -> Vec<ValidationCall> {
        let on_its_way = self.sent.get();
        self.lock()
            .iter()
            .filter_map(|(op, answer)| match answer {
                Some((attempts, error)) => Some(ValidationCall {
                    op,
                    attempts: *attempts,
                    error: error.clone(),
                }),
                None if on_its_way > 0 => Some(ValidationCall {
                    op,
                    attempts: on_its_way,
                    error: Some(crate::kms_call::abandoned(self.provider)),
                }),
                None => None,
            })
            .collect()
    }
}

/// What a validation met that withdraws access to the key ([`Kms::validate`]).
#[derive(Debug)]
pub enum Withdrew {
    /// A call was refused (access denied, key disabled, not found, ...).
    Refused(KmsError),
    /// The key was described as unusable (disabled, pending deletion).
    Unusable {
        /// The class.
        kind: byok_core::kms::KmsErrorKind,
        /// The key and what is wrong with it.
        detail: String,
    },
}

/// Keeps `e` in `first` if it is a denial and nothing was kept yet.
fn note_denial(first: &mut Option<Withdrew>, e: Option<&KmsError>) {
    if first.is_none()
        && let Some(e) = e.filter(|e| e.kind.is_denial())
    {
        *first = Some(Withdrew::Refused(e.clone()));
    }
}

/// A setting the operator has not given, named with the flag and variable that give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotConfigured(pub String);
