//! Credentials for calls made on an org's behalf, for any provider: the host runs the provider's
//! [`CredentialFlow`](byok_core::kms::provider::CredentialFlow) (core decides what to send and what the answers mean), supplying byok's
//! own OIDC tokens ([`TokenSource`]) and the vendor's signatures ([`AssertionSigner`]) when the
//! flow asks. Temporary credentials are cached until [`needs_refresh`] says they are close to
//! expiry, so a busy org costs one exchange per credential lifetime, not one per KMS call.
//!
//! Each cached entry has its own async lock: concurrent calls for one org wait for a single
//! exchange (no stampede), while orgs never wait on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byok_core::kms::provider::{Access, Credentials, Need, RoleTrust, Vendor, Wire, needs_refresh};
use byok_core::kms::{KmsError, KmsErrorKind};
use byok_core::retry::RetryPolicy;
use zeroize::Zeroizing;

use crate::kms_call::{Attempts, abandoned, call_counted, unix_now};
use crate::transport::Transport;

/// Mints the OIDC tokens byok presents to a cloud for an org. The issuer (keys, discovery
/// document, rotation) lives elsewhere; the cache only needs a fresh token when it must
/// refresh.
pub trait TokenSource: Send + Sync {
    /// A fresh token for `audience` whose subject is the org's (`kms::oidc::subject(org)`).
    /// The error message is shown to operators: no token bytes.
    fn token(&self, org: &str, audience: &str) -> Result<Zeroizing<String>, String>;
}

/// Signs the vendor's assertions (a GCP service account's JWT bearer grant, an Entra app's
/// certificate assertion) with a key only the host holds.
pub trait AssertionSigner: Send + Sync {
    /// The compact JWT of `claims`, with the header this key's provider expects. The error
    /// message names no key bytes.
    fn sign(&self, claims: &serde_json::Value) -> Result<Zeroizing<String>, String>;
}

/// What the host can supply to flows: the vendor's own principals, byok's tokens, signatures.
#[derive(Clone, Default)]
pub struct Sources {
    /// The vendor's principals (development, and AWS's external-id trust).
    pub vendor: Vendor,
    /// byok's OIDC issuer, with `--public-url`.
    pub tokens: Option<Arc<dyn TokenSource>>,
    /// The vendor's signing keys, by provider name (a GCP service account key, an Azure app's
    /// certificate).
    pub signers: std::collections::BTreeMap<&'static str, Arc<dyn AssertionSigner>>,
}

/// Credentials, when they expire (seconds since the epoch, capped at [`MAX_HELD_S`] on the
/// wall clock), and when they were obtained on the monotonic clock.
type Slot = Arc<tokio::sync::Mutex<Option<(Credentials, Option<u64>, Duration)>>>;

/// How long temporary credentials are used before they are exchanged again, whatever their
/// own lifetime (AWS sessions and GCP and Entra tokens last an hour): the bound on a
/// withdrawal made by removing the trust rather than the grant.
pub const MAX_HELD_S: u64 = 15 * 60;

/// How long before their expiry credentials are refreshed (`needs_refresh`).
const REFRESH_MARGIN_S: u64 = byok_core::kms::aws::sts::REFRESH_MARGIN.as_secs();
type SlotKey = (
    String,
    &'static str,
    Option<String>,
    RoleTrust,
    Option<String>,
    String,
);

/// A credential exchange made for an org (a role assumed, a token obtained): its audit log
/// lists it, as the customer's cloud does (CloudTrail's `AssumeRole*`, the sign-in logs of GCP
/// and Entra).
#[derive(Debug)]
pub struct Exchange {
    /// The org it was made for (`Access::org`).
    pub org: String,
    /// The provider (`aws`, `gcp`, `azure`).
    pub provider: &'static str,
    /// The customer's principal byok became (a role, a service account, an app), or `None` for
    /// the vendor's own.
    pub principal: Option<String>,
    /// How byok became it.
    pub trust: RoleTrust,
    /// Requests sent to the cloud, retries and a flow's several steps included (each is an
    /// event in its log); for one dropped mid-call, those sent before it was abandoned.
    pub attempts: u32,
    /// How it failed, if it did.
    pub error: Option<KmsError>,
}

/// Exchanges held for the audit log at most, and per org: a path that never hands them over
/// cannot grow the list without bound, and one org's flood drops its own oldest, never
/// another org's (`fair_queue`, with a warning).
const MAX_UNAUDITED: usize = 10_000;
const MAX_UNAUDITED_PER_ORG: usize = 1_000;

/// Temporary credentials per (org, provider, principal, how byok becomes it, audience,
/// credential scope), refreshed shortly before expiry. The trust is part of it: credentials a
/// role gave for its external id say nothing of whether it trusts byok's OIDC tokens, and a
/// validation of the other way must make its own exchange.
pub struct CredentialCache {
    transport: Transport,
    policy: RetryPolicy,
    slots: Mutex<HashMap<SlotKey, Slot>>,
    exchanges: std::sync::atomic::AtomicU64,
    unaudited: Mutex<std::collections::VecDeque<Exchange>>,
    clock: fn() -> Duration,
    steady: fn() -> Duration,
}

/// Notes an exchange for the audit log once its flow asked the cloud: with its outcome, or, if
/// the call waiting for it is dropped first (its client gone, its deadline passed), as one
/// whose answer byok never read. The cloud logged it either way.
struct Noting<'a> {
    cache: &'a CredentialCache,
    provider: &'static str,
    access: &'a Access,
    /// Requests sent so far (0: the flow has not asked its cloud).
    attempts: Attempts,
}

impl Noting<'_> {
    fn noted(self, error: Option<&KmsError>) {
        let attempts = self.attempts.get();
        // Noted here, not again when dropped.
        self.attempts.reset();
        if attempts > 0 {
            self.cache
                .note_exchange(self.provider, self.access, attempts, error);
        }
    }
}

impl Drop for Noting<'_> {
    fn drop(&mut self) {
        if self.attempts.get() > 0 {
            let dropped = abandoned(self.provider);
            self.cache.note_exchange(
                self.provider,
                self.access,
                self.attempts.get(),
                Some(&dropped),
            );
        }
    }
}

/// The monotonic clock, from the first reading in this process: [`MAX_HELD_S`] is measured on
/// it too, so that a wall clock stepped back does not stretch it.
fn steady_now() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

fn unavailable(provider: &'static str, code: &str, message: String) -> KmsError {
    KmsError {
        kind: KmsErrorKind::Unavailable,
        provider,
        code: code.into(),
        message,
        status: 0,
    }
}

impl CredentialCache {
    /// A cache that makes its exchanges through `transport`, retrying as `policy` allows.
    pub fn new(transport: Transport, policy: RetryPolicy) -> Self {
        Self::with_clocks(transport, policy, unix_now, steady_now)
    }

    /// A cache that reads the time (since the Unix epoch) from `clock` when deciding whether
    /// credentials need a refresh, and measures how long it held them on `steady` (a monotonic
    /// clock): tests move them instead of waiting an hour.
    pub fn with_clocks(
        transport: Transport,
        policy: RetryPolicy,
        clock: fn() -> Duration,
        steady: fn() -> Duration,
    ) -> Self {
        Self {
            transport,
            policy,
            slots: Mutex::new(HashMap::new()),
            exchanges: std::sync::atomic::AtomicU64::new(0),
            unaudited: Mutex::new(std::collections::VecDeque::new()),
            clock,
            steady,
        }
    }

    /// Credential exchanges made so far (attempts included), for metrics and tests.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The exchanges made for `org` since the last call, oldest first, for its audit log. Each
    /// is handed over once.
    pub fn take_exchanges(&self, org: &str) -> Vec<Exchange> {
        let mut held = self.unaudited.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, rest): (Vec<Exchange>, Vec<Exchange>) = std::mem::take(&mut *held)
            .into_iter()
            .partition(|e| e.org == org);
        *held = rest.into();
        mine
    }

    /// The orgs with exchanges not yet taken, each once.
    pub fn orgs_with_exchanges(&self) -> Vec<String> {
        let held = self.unaudited.lock().unwrap_or_else(|p| p.into_inner());
        let mut orgs: Vec<String> = held.iter().map(|e| e.org.clone()).collect();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }

    /// Puts back exchanges taken by [`Self::take_exchanges`] whose rows were not written, ahead
    /// of those made since.
    pub fn return_exchanges(&self, exchanges: Vec<Exchange>) {
        let mut held = self.unaudited.lock().unwrap_or_else(|p| p.into_inner());
        for e in exchanges.into_iter().rev() {
            held.push_front(e);
        }
        let dropped = crate::fair_queue::trim(
            &mut held,
            |e| e.org.clone(),
            MAX_UNAUDITED_PER_ORG,
            MAX_UNAUDITED,
        );
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "credential exchanges were dropped before their audit rows were written"
            );
        }
    }

    fn note_exchange(
        &self,
        provider: &'static str,
        access: &Access,
        attempts: u32,
        error: Option<&KmsError>,
    ) {
        let mut held = self.unaudited.lock().unwrap_or_else(|p| p.into_inner());
        let exchange = Exchange {
            org: access.org.clone(),
            provider,
            principal: access.role.clone(),
            trust: access.trust,
            attempts,
            error: error.cloned(),
        };
        let dropped = crate::fair_queue::push(
            &mut held,
            exchange,
            |e| e.org.clone(),
            MAX_UNAUDITED_PER_ORG,
            MAX_UNAUDITED,
        );
        if let Some(org) = dropped {
            tracing::warn!(org = %org, "a credential exchange was dropped before its audit row was written");
        }
    }

    /// Drops credentials held [`MAX_HELD_S`] or longer (on the monotonic clock): they would
    /// be exchanged again before any use, and a principal validated once and never attached
    /// would otherwise keep its temporary credentials in memory until a restart. A slot in
    /// use (an exchange running) stays. Run periodically.
    pub fn forget_stale(&self) {
        let now = (self.steady)();
        let max = Duration::from_secs(MAX_HELD_S);
        self.lock_slots().retain(|_, slot| match slot.try_lock() {
            Ok(held) => held
                .as_ref()
                .is_some_and(|(_, _, since)| now.saturating_sub(*since) < max),
            Err(_) => true,
        });
    }

    /// How many principals' credentials are held (for metrics and tests).
    pub fn held(&self) -> usize {
        self.lock_slots().len()
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, Slot>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removals), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Credentials for `access` to a key of `provider`.
    pub async fn get(
        &self,
        provider: &'static dyn Wire,
        access: &Access,
        sources: &Sources,
    ) -> Result<Credentials, KmsError> {
        let key = (
            access.org.clone(),
            provider.name(),
            access.role.clone(),
            access.trust,
            access.audience.clone(),
            provider.credential_scope(access),
        );
        let slot = self.lock_slots().entry(key.clone()).or_default().clone();
        let mut cached = slot.lock().await;
        if let Some((c, expires, since)) = cached.as_ref()
            && !needs_refresh(*expires, (self.clock)())
            && (self.steady)().saturating_sub(*since) < Duration::from_secs(MAX_HELD_S)
        {
            return Ok(c.clone());
        }
        let noting = Noting {
            cache: self,
            provider: provider.name(),
            access,
            attempts: Attempts::default(),
        };
        let outcome = self.run(provider, access, sources, &noting.attempts).await;
        noting.noted(outcome.as_ref().err());
        let (fresh, expires) = match outcome {
            Ok(got) => got,
            Err(e) => {
                // A slot that never held credentials goes: refused validations of made-up
                // principals leave nothing behind.
                if cached.is_none() {
                    drop(cached);
                    let mut slots = self.lock_slots();
                    if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                        slots.remove(&key);
                    }
                }
                return Err(e);
            }
        };
        // Held at most MAX_HELD_S (then refreshed as if it expired): a customer who removes
        // the trust instead of the grant (a role's trust policy, a workload identity pool) is
        // cut off within that, not within the credentials' own hour. Measured on both clocks:
        // the wall clock's, which the expiry is in, and the monotonic one, which a wall clock
        // stepped back (NTP correcting one that ran ahead) cannot stretch.
        let held_until = (self.clock)().as_secs() + MAX_HELD_S + REFRESH_MARGIN_S;
        *cached = Some((
            fresh.clone(),
            expires.map(|e| e.min(held_until)),
            (self.steady)(),
        ));
        Ok(fresh)
    }

    /// Runs the provider's flow to the end; counts in `attempts` the requests it sends its
    /// cloud, as it sends them.
    async fn run(
        &self,
        provider: &'static dyn Wire,
        access: &Access,
        sources: &Sources,
        attempts: &Attempts,
    ) -> Result<(Credentials, Option<u64>), KmsError> {
        let name = provider.name();
        let mut flow = provider.credentials(access, &sources.vendor)?;
        // For backoff jitter only; `Send`, unlike the thread-local generator.
        let mut rng: rand::rngs::StdRng = rand::make_rng();
        // A flow has at most a handful of steps; a provider that loops is a bug, not a hang.
        for _ in 0..8 {
            match flow.need((self.clock)()) {
                Need::Done => {
                    return flow.credentials().ok_or_else(|| {
                        unavailable(
                            name,
                            "CredentialFlow",
                            "the flow ended without credentials".into(),
                        )
                    });
                }
                Need::Token { audience } => {
                    // The server's configuration, not the customer withdrawing: a denial
                    // would be recorded against the customer's key (and every org's at once).
                    let tokens = sources.tokens.as_ref().ok_or_else(|| KmsError {
                        kind: KmsErrorKind::Unconfigured,
                        provider: name,
                        code: String::new(),
                        message: "this key trusts byok's OIDC issuer, but byok has none: the operator sets --public-url (BYOK_PUBLIC_URL)".into(),
                        status: 0,
                    })?;
                    let token = tokens
                        .token(&access.org, &audience)
                        .map_err(|m| unavailable(name, "TokenSource", m))?;
                    flow.supply(token);
                }
                Need::Sign { claims } => {
                    let signer = sources.signers.get(name).ok_or_else(|| KmsError {
                        kind: KmsErrorKind::Unconfigured,
                        provider: name,
                        code: String::new(),
                        message: format!("the server holds no key to sign the vendor's {} assertion (BYOK_GCP_SERVICE_ACCOUNT_FILE, BYOK_AZURE_CERTIFICATE_FILE)", provider.title()),
                        status: 0,
                    })?;
                    let jwt = signer
                        .sign(&claims)
                        .map_err(|m| unavailable(name, "AssertionSigner", m))?;
                    flow.supply(jwt);
                }
                Need::Exchange => {
                    let f = &*flow;
                    let called = call_counted(
                        &self.transport,
                        name,
                        &self.policy,
                        &mut rng,
                        attempts,
                        |now| f.request(now),
                        // Classified as the flow's endpoint speaks; the answer kept whole
                        // for the flow's next step (the clone is wiped on drop).
                        |resp| f.check(resp).map(|()| resp.clone()),
                    )
                    .await;
                    self.exchanges.fetch_add(
                        u64::from(called.attempts),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let resp = called.result?;
                    flow.answer(&resp, (self.clock)())?;
                }
            }
        }
        Err(unavailable(
            name,
            "CredentialFlow",
            "the credential exchange did not finish".into(),
        ))
    }
}
