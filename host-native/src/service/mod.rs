//! What the API does, without HTTP: orgs, scopes and their transitions, the key cache, and
//! the data operations. Each org lives in memory (loaded on first use, [`OrgCell`]); a
//! transition runs on a copy, is written through the effect executor (`apply.rs`) in one
//! transaction, and only then replaces the live value, so no request ever sees a state that was
//! not committed.

mod apply;
pub mod audit_log;
pub mod background;
mod cache;
mod call_rows;
mod data;
mod error;
mod events;
mod grace;
mod grants;
mod health;
pub mod issuer;
mod job_leases;
mod jobs;
mod keys;
pub mod kms;
mod lease;
mod org_cell;
mod orgs;
pub mod replicas;
mod resolve;
mod retire;
pub mod root_checks;
mod scopes;
mod signed_heads;
mod sweep;
mod tokens;
mod turns;
mod usage;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use byok_core::{ScopeId, ScopeKey};

pub(crate) use apply::Extra;
pub use error::{Result, ServiceError};
pub use org_cell::OrgCell;
pub use orgs::SettingsChange;
pub use root_checks::RootCheckReport;
pub use scopes::ScopeView;
use scopes::check_name;

pub use cache::KeyCache;
pub use data::{DataKeyOut, MAX_PLAINTEXT};
pub use grace::GraceView;
pub use health::{is_denial, kind_code};
pub use job_leases::DEFAULT_JOB_LEASE;
pub use jobs::JobView;
pub use keys::{GrantFacts, KeySpec, KeyView, KeysView, PolicyView, StepView};
pub use retire::{
    DEFAULT_MAX_STORED_KEYS, MAX_KEYS_PER_CALL, StoredKey, check_key_count, stored_ids,
};
pub use tokens::{Authenticated, TokenView};

use crate::store::{self, Database};

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Encrypt operations served.
    pub encrypts: AtomicU64,
    /// Decrypt operations served.
    pub decrypts: AtomicU64,
    /// Data keys handed out.
    pub datakeys: AtomicU64,
    /// Scope keys served from the cache.
    pub cache_hits: AtomicU64,
    /// Scope keys resolved from the root.
    pub cache_misses: AtomicU64,
    /// Root keys unwrapped (a KMS call for a CMK; local for the managed key).
    pub root_unwraps: AtomicU64,
    /// Edge leases issued.
    pub leases: AtomicU64,
    /// KMS and STS calls made (attempts included).
    pub kms_calls: Arc<AtomicU64>,
    /// Keys served past their TTL in outage grace.
    pub grace_serves: AtomicU64,
    /// Orgs in outage grace now (a gauge).
    pub orgs_in_grace: AtomicU64,
    /// Orgs dropped from memory because another replica changed them.
    pub remote_changes: AtomicU64,
}

/// The maps every data call reads (orgs, token grants, cached keys, usage marks), hashed with
/// foldhash instead of SipHash: about 20 ns less per lookup, four lookups per request. Their
/// keys are ids byok made (random scope ids, SHA-256 token hashes) and an entry is only added for
/// something that exists (a loaded org, a valid token, an unwrapped key, an admitted use), so no
/// caller chooses keys to collide; the seed is random per process all the same.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Whole-log reads at once in this process, of each kind (chain walks, filtered reads,
/// signings' checks; see `turns.rs`): six of the pool's connections at most (eight by
/// default), two left to the writer and the data path.
const AUDIT_TURNS: usize = 2;

/// The server's state: the store, the managed key, orgs in memory and the key cache.
pub struct Service {
    store: Database,
    managed: ScopeKey,
    /// Checks every root a holder gives back against the check value stored with its version
    /// (keyed from `managed`, which the database never holds: `core::scope::RootChecker`).
    root_checker: byok_core::scope::RootChecker,
    /// Whether root versions stored without a check value are used, and their checks recorded
    /// (`--record-root-checks`, which then exits without serving).
    accept_unchecked_roots: bool,
    kms: kms::Kms,
    orgs: RwLock<FastMap<ScopeId, Arc<OrgCell>>>,
    /// Orgs whose last change here was interrupted while storage may still be finishing it
    /// (`org_cell.rs`): their next load waits for it.
    unsettled: org_cell::Unsettled,
    /// How many cells each org has had taken out of use: a load that read storage before one
    /// was retired reads again (`org_cell.rs`).
    retired: org_cell::Retired,
    /// Each org's withdrawal gate, shared by its cells old and new (`org_cell.rs`).
    gates: org_cell::Gates,
    /// When each org's stopped job is tried again (`jobs.rs`).
    job_backoff: jobs::JobBackoff,
    cache: KeyCache,
    /// Token grants by token hash, so that authenticating a request does not read the database
    /// (revoking a token drops its entry at once, for good; see `grants.rs`).
    grants: grants::Grants,
    /// Turns for looking up tokens not in `grants` (at most half the pool: `tokens.rs`).
    lookups: tokens::TokenLookups,
    default_ttl: Duration,
    /// While an org serves in outage grace, its KMS is asked again at most this often.
    outage_retry: Duration,
    /// The start of the service's monotonic clock ([`Service::now`]).
    epoch: std::time::Instant,
    /// The wall clock, ms since the Unix epoch (`store::now_ms`; a test steps it).
    wall: fn() -> i64,
    /// Orgs whose jobs should run now (a resume or a revoke may have unblocked them); the
    /// server's background task reads them ([`Service::take_kicks`]).
    kicks: tokio::sync::mpsc::UnboundedSender<ScopeId>,
    kick_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ScopeId>>>,
    /// Usage marks already logged (see `usage.rs`).
    usage: usage::UsageMarks,
    /// With replicas (PostgreSQL), how long after a change here another replica may still
    /// serve what it withdrew, in ms: the version poll plus the usage window (a replica cut
    /// off from the database stops when its marks run out). 0 on SQLite.
    replicas_lag_ms: std::sync::atomic::AtomicI64,
    /// With replicas, when the orgs' versions were last read (a poll that succeeded, or the
    /// start of following), on the service's clock in ms ([`Service::replica_behind`]).
    last_poll_ms: std::sync::atomic::AtomicI64,
    /// This replica's name in job leases (`job_leases.rs`).
    replica: String,
    /// How long a job lease lasts without its heartbeat.
    job_lease: Duration,
    /// The most stored data keys an org keeps (`None`: no limit).
    max_stored_keys: Option<u64>,
    /// The orgs whose job runs in this process now.
    running_jobs: job_leases::Running,
    /// Jobs, health checks and retirements run beside the requests: stopped with the server
    /// before the last write of the rows held in memory.
    background: background::Background,
    /// The audit log's signing key, once loaded ([`Service::load_log_key`]).
    log_key: std::sync::OnceLock<Arc<byok_core::audit_log::log_key::LogKey>>,
    /// The newest checkpoint this process signed or checked per org (size, root): what the
    /// next one must extend even if its row was deleted from storage meanwhile.
    signed_heads: signed_heads::SignedHeads,
    /// Checkpoint signings take turns (`turns.rs`), one per org: each reads the rows since the
    /// newest checkpoint without the store's writer, and checks them against the heads this
    /// process holds, which a signing of the same org beside it could move past what its
    /// snapshot shows.
    signings: turns::Turns,
    /// Whole-chain audit verifications take turns (`turns.rs`): each reads the org's whole
    /// log through the pool, and a few at once (an auditor token may ask) would hold every
    /// connection, so that a pause or revoke waiting for one fails.
    audit_walks: turns::Turns,
    /// Audit reads that filter by a field no index covers (type, scope, actor, time) may scan
    /// an org's whole log: they take turns too, so that one tenant's auditor cannot hold every
    /// connection while another tenant's pause waits for one.
    audit_scans: turns::Turns,
    /// byok's OIDC issuer, with `--public-url` ([`Service::with_issuer`]).
    issuer: Option<Arc<issuer::Issuer>>,
    /// Audit rows of KMS calls whose request was dropped before they were written
    /// (`call_rows.rs`): the org's next write of its log takes them.
    unwritten: call_rows::Unwritten,
    /// Counters.
    pub metrics: Metrics,
}

impl Service {
    /// A service over `store`, with the managed key, the default unwrap cache TTL for new
    /// orgs, and the vendor's KMS settings.
    pub fn new(
        store: Database,
        managed: ScopeKey,
        default_ttl: Duration,
        kms: kms::KmsSettings,
    ) -> std::result::Result<Self, String> {
        let metrics = Metrics::default();
        let (kicks, kick_rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = store.pool().options();
        let lookups =
            tokens::TokenLookups::new(pool.get_max_connections(), pool.get_acquire_timeout());
        store.set_row_tagger(byok_core::audit_log::row_tag::RowTagger::new(&managed));
        Ok(Self {
            kicks,
            kick_rx: std::sync::Mutex::new(Some(kick_rx)),
            store,
            root_checker: byok_core::scope::RootChecker::new(&managed),
            accept_unchecked_roots: false,
            managed,
            kms: kms::Kms::new(kms, metrics.kms_calls.clone())?,
            orgs: RwLock::new(FastMap::default()),
            unsettled: org_cell::Unsettled::default(),
            retired: org_cell::Retired::default(),
            gates: org_cell::Gates::default(),
            job_backoff: jobs::JobBackoff::default(),
            cache: KeyCache::default(),
            grants: grants::Grants::default(),
            lookups,
            default_ttl,
            outage_retry: byok_core::grace::DEFAULT_RETRY_EVERY,
            epoch: std::time::Instant::now(),
            wall: store::now_ms,
            log_key: std::sync::OnceLock::new(),
            signed_heads: signed_heads::SignedHeads::default(),
            signings: turns::Turns::new(AUDIT_TURNS),
            audit_walks: turns::Turns::new(AUDIT_TURNS),
            audit_scans: turns::Turns::new(AUDIT_TURNS),
            issuer: None,
            usage: usage::UsageMarks::default(),
            unwritten: call_rows::Unwritten::default(),
            replicas_lag_ms: std::sync::atomic::AtomicI64::new(0),
            last_poll_ms: std::sync::atomic::AtomicI64::new(0),
            replica: job_leases::replica_name(),
            job_lease: DEFAULT_JOB_LEASE,
            max_stored_keys: Some(DEFAULT_MAX_STORED_KEYS),
            running_jobs: job_leases::Running::default(),
            background: background::Background::default(),
            metrics,
        })
    }

    /// Where work beside the requests runs ([`background::Background`]).
    pub fn background(&self) -> &background::Background {
        &self.background
    }

    /// The same, as an OIDC issuer at `url` (`--public-url`): its keys are made and loaded by
    /// [`Service::refresh_issuer`].
    pub fn with_issuer(mut self, url: byok_core::kms::oidc::IssuerUrl) -> Self {
        let issuer = Arc::new(issuer::Issuer::new(url));
        self.kms = self.kms.with_tokens(issuer.clone());
        self.issuer = Some(issuer);
        self
    }

    /// The same, asking an unreachable KMS again at most every `retry` while an org serves in
    /// outage grace (default [`byok_core::grace::DEFAULT_RETRY_EVERY`]).
    pub fn with_outage_retry(mut self, retry: Duration) -> Self {
        self.outage_retry = retry;
        self
    }

    /// The same, using root versions stored without a check value by an older byok, and
    /// recording their checks as it does (for `--record-root-checks` only: refused by default).
    pub fn with_unchecked_roots(mut self, accept: bool) -> Self {
        self.accept_unchecked_roots = accept;
        self
    }

    /// The same, keeping the audit log heads it signs or checks in the file at `path` as well
    /// as in memory, and starting from those the file holds (`signed_heads.rs`): the server
    /// gives `<data dir>/audit-heads`. The error names the file and what is wrong with it.
    pub fn with_signed_heads(
        mut self,
        path: &std::path::Path,
    ) -> std::result::Result<Self, String> {
        self.signed_heads = signed_heads::SignedHeads::open(path)?;
        Ok(self)
    }

    /// The same, with job leases lasting `lease` without a renewal (default
    /// [`DEFAULT_JOB_LEASE`]): how long a dead replica's job waits before another resumes it.
    pub fn with_job_lease(mut self, lease: Duration) -> Self {
        self.job_lease = lease;
        self
    }

    /// The same, with each org keeping at most `max` stored data keys (`None`: no limit;
    /// default [`DEFAULT_MAX_STORED_KEYS`]).
    pub fn with_max_stored_keys(mut self, max: Option<u64>) -> Self {
        self.max_stored_keys = max;
        self
    }

    /// Drops the credentials of customers' clouds held past their use (each key health tick):
    /// temporary credentials leave memory within a tick of their last use's end.
    pub fn forget_stale_credentials(&self) {
        self.kms.forget_stale_credentials();
    }

    /// The store.
    pub fn store(&self) -> &Database {
        &self.store
    }

    /// The key cache.
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    /// The orgs whose jobs should run now, for the one task that runs them (`None` after the
    /// first call).
    pub fn take_kicks(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<ScopeId>> {
        self.kick_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Asks the background task to run `org`'s jobs (a paused scope they waited on may be
    /// resumed).
    fn kick(&self, org: ScopeId) {
        let _ = self.kicks.send(org);
    }
}

/// A service over `db` with a managed key of 32 bytes `managed`, for the service's unit tests.
#[cfg(test)]
pub(crate) fn test_service(db: &Database, managed: u8) -> Service {
    let key =
        byok_core::scope::managed_key(byok_core::SecretBytes::from_bytes(&mut [managed; 32]), 1);
    Service::new(
        db.clone(),
        key,
        Duration::from_secs(60),
        kms::KmsSettings::default(),
    )
    .expect("a test service")
}

/// An org (leasing for `lease_ttl`, if given) with one scope `team` below it, for the
/// service's unit tests: `(org, team)`.
#[cfg(test)]
pub(crate) async fn test_team(svc: &Service, lease_ttl: Option<Duration>) -> (ScopeId, ScopeId) {
    let (org, _) = svc
        .create_org("org", None, lease_ttl, None)
        .await
        .expect("an org");
    let team = svc.create_scope(org, org, "team").await.expect("a scope");
    (org, ScopeId::parse_hex(&team.id).expect("its id"))
}

/// A service token of `org`, authenticated, for the service's unit tests of data calls.
#[cfg(test)]
pub(crate) async fn test_caller(svc: &Service, org: ScopeId) -> Authenticated {
    let (_, token) = svc
        .create_token(org, store::Role::Service, "test", None)
        .await
        .expect("a token");
    svc.authenticate(&token)
        .await
        .expect("authenticated")
        .expect("known")
}
