//! What the API does, without HTTP: orgs, scopes and their transitions, the key cache, and
//! the data operations. Each org lives in memory (loaded on first use) behind a lock; a
//! transition runs on a copy, is stored in one transaction with its audit events, and only then
//! replaces the live value, so no request ever sees a state that was not committed.

mod apply;
pub mod aws;
mod cmk;
mod data;
mod events;
mod keys;
mod lease;
mod retire;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use byok_core::scope::{Effect, Effective, Org, ScopeError, ScopeState};

pub(crate) use apply::Extra;
use byok_core::{Error as CoreError, KeyId, ScopeId, ScopeKey};
use serde_json::json;
use zeroize::Zeroizing;

pub use cmk::{JobView, KeyView, KeysView, PolicyView, StepView, is_denial, kind_code};
pub use data::{DataKeyOut, MAX_PLAINTEXT};
pub use keys::KeyCache;
pub use retire::{MAX_KEYS_PER_CALL, StoredKey};
pub use tokens::TokenView;

use crate::store::cmk_rows::{self, CmkRow};
use crate::store::{self, Database, OrgMeta, Role, StoreError, audit, org_rows};

/// Why an operation failed. The API maps each to a status and a stable code.
#[derive(Debug)]
pub enum ServiceError {
    /// No such org, scope or key visible to the caller (other orgs' included: same answer).
    NotFound(String),
    /// The scope rules refused (paused, revoked, confirmation, ...).
    Scope(ScopeError),
    /// A ciphertext or wrapped key did not open, or is malformed.
    Crypto(CoreError),
    /// The request is invalid; the message says how.
    Invalid(String),
    /// Storage failed (logged with the request id; callers see `internal`).
    Store(StoreError),
    /// A customer's KMS refused or failed.
    Kms(byok_core::kms::KmsError),
    /// Key validation failed: nothing was changed; the report says which step and the fix.
    Validation(Vec<StepView>),
}

impl From<byok_core::kms::KmsError> for ServiceError {
    fn from(e: byok_core::kms::KmsError) -> Self {
        Self::Kms(e)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<CoreError> for ServiceError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Scope(s) => Self::Scope(s),
            other => Self::Crypto(other),
        }
    }
}

impl From<ScopeError> for ServiceError {
    fn from(e: ScopeError) -> Self {
        Self::Scope(e)
    }
}

/// A service result.
pub type Result<T> = std::result::Result<T, ServiceError>;

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
}

/// One org in memory.
pub struct OrgCell {
    org: RwLock<Arc<Org>>,
    meta: RwLock<OrgMeta>,
    names: RwLock<BTreeMap<ScopeId, String>>,
    cmks: RwLock<BTreeMap<u32, CmkRow>>,
    /// Root unwraps of one org take turns, so that when a cached root expires under load one
    /// request asks the key holder and the others wait for its answer (no stampede of KMS calls).
    unwrap_turn: tokio::sync::Mutex<()>,
    /// At most one job runner per org (API call, start-up resume or periodic retry).
    job_runner: tokio::sync::Mutex<()>,
    /// Transitions of one org take turns.
    turn: tokio::sync::Mutex<()>,
    /// Withdrawal wins over work in flight: a transition commits and publishes its new state
    /// holding this for writing; a data operation checks the published state and releases key
    /// material (and appends its audit event) holding it for reading ([`Service::admit`]). So
    /// nothing that checked the state before a pause or revoke committed hands out a key after
    /// it, and the audit log orders them the way they happened.
    gate: tokio::sync::RwLock<()>,
}

impl OrgCell {
    /// The current committed value.
    pub fn snapshot(&self) -> Arc<Org> {
        self.org.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn ttl(&self) -> Duration {
        Duration::from_millis(
            self.meta
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_cache_ttl_ms,
        )
    }

    /// The org's metadata.
    pub fn meta(&self) -> OrgMeta {
        self.meta.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A scope's name.
    pub fn name(&self, id: ScopeId) -> String {
        self.names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}

/// A scope as the API shows it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ScopeView {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its parent's id (`null` for the org scope).
    pub parent: Option<String>,
    /// Its name.
    pub name: String,
    /// The state set on it: `active`, `paused` or `revoked`.
    pub state: String,
    /// The state that applies to it: `active`, `paused` or `revoked`.
    pub effective: String,
    /// The scope whose pause or revocation applies, if any.
    pub effective_by: Option<String>,
    /// Its newest key version (`null` once revoked).
    pub key_version: Option<u32>,
    /// Depth below the org scope.
    pub depth: u16,
}

fn state_str(s: ScopeState) -> &'static str {
    match s {
        ScopeState::Active => "active",
        ScopeState::Paused => "paused",
        ScopeState::Revoked => "revoked",
    }
}

/// The server's state: the store, the managed key, orgs in memory and the key cache.
pub struct Service {
    store: Database,
    managed: ScopeKey,
    aws: aws::Aws,
    orgs: RwLock<HashMap<ScopeId, Arc<OrgCell>>>,
    cache: KeyCache,
    /// Token grants by token hash, so that authenticating a request does not read the database
    /// (revoking a token drops its entry at once; see `tokens.rs`).
    grants: RwLock<HashMap<[u8; 32], Arc<store::TokenRow>>>,
    default_ttl: Duration,
    /// Orgs whose jobs should run now (a resume or a revoke may have unblocked them); the
    /// server's background task reads them ([`Service::take_kicks`]).
    kicks: tokio::sync::mpsc::UnboundedSender<ScopeId>,
    kick_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<ScopeId>>>,
    /// Counters.
    pub metrics: Metrics,
}

impl Service {
    /// A service over `store`, with the managed key, the default unwrap cache TTL for new
    /// orgs, and the vendor's AWS settings.
    pub fn new(
        store: Database,
        managed: ScopeKey,
        default_ttl: Duration,
        aws: aws::AwsSettings,
    ) -> std::result::Result<Self, String> {
        let metrics = Metrics::default();
        let (kicks, kick_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            kicks,
            kick_rx: std::sync::Mutex::new(Some(kick_rx)),
            store,
            managed,
            aws: aws::Aws::new(aws, metrics.kms_calls.clone())?,
            orgs: RwLock::new(HashMap::new()),
            cache: KeyCache::default(),
            grants: RwLock::new(HashMap::new()),
            default_ttl,
            metrics,
        })
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

    /// Admits a data operation on `keys` of `org`: waits for any transition to finish
    /// publishing, then checks, on the state now published, that each key's scope is usable
    /// and its version live. Hold the guard until the key material has left (and its audit
    /// event is appended): a pause, revoke or retirement cannot commit in between.
    pub(crate) async fn admit<'a>(
        &self,
        cell: &'a OrgCell,
        keys: &[KeyId],
    ) -> Result<tokio::sync::RwLockReadGuard<'a, ()>> {
        let guard = cell.gate.read().await;
        let snap = cell.snapshot();
        for k in keys {
            check_live(&snap, *k)?;
        }
        Ok(guard)
    }

    /// Creates the first operator token if there is none; returns it (to print once).
    pub async fn bootstrap_operator(&self) -> Result<Option<Zeroizing<String>>> {
        if store::tokens::has_operator(self.store.pool()).await? {
            return Ok(None);
        }
        let mut w = self.store.write().await?;
        let (_, t) = store::tokens::create(
            &mut w.tx,
            None,
            Role::Operator,
            "first operator",
            store::now_ms(),
            None,
        )
        .await?;
        w.commit().await?;
        Ok(Some(t))
    }

    /// Org `id`, loading it on first use.
    pub async fn org(&self, id: ScopeId) -> Result<Arc<OrgCell>> {
        if let Some(c) = self.orgs.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(c.clone());
        }
        let (org, meta, names) = org_rows::load(self.store.pool(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("organization not found".into()))?;
        let cmks = cmk_rows::list(self.store.pool(), id)
            .await?
            .into_iter()
            .map(|r| (r.n, r))
            .collect();
        let cell = Arc::new(OrgCell {
            org: RwLock::new(Arc::new(org)),
            meta: RwLock::new(meta),
            names: RwLock::new(names),
            cmks: RwLock::new(cmks),
            unwrap_turn: tokio::sync::Mutex::new(()),
            job_runner: tokio::sync::Mutex::new(()),
            turn: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
        });
        Ok(self
            .orgs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(cell)
            .clone())
    }

    /// Creates an org in managed mode with its first admin token. Returns (org id, token).
    pub async fn create_org(
        &self,
        name: &str,
        ttl: Option<Duration>,
        lease_ttl: Option<Duration>,
    ) -> Result<(ScopeId, Zeroizing<String>)> {
        check_name(name)?;
        // The thread-local generator is not `Send`: use it before any await.
        let (id, org, effects) = {
            let mut rng = rand::rng();
            let id = loop {
                let id = ScopeId::random(&mut rng);
                if id != byok_core::scope::MANAGED_SCOPE {
                    break id;
                }
            };
            let (org, _root, effects) = Org::create(id, &self.managed, &mut rng)?;
            (id, org, effects)
        };
        let ttl = ttl.unwrap_or(self.default_ttl);
        let meta = OrgMeta {
            name: name.to_owned(),
            unwrap_cache_ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            created_at: store::now_ms(),
            lease_ttl_ms: lease_ttl
                .map_or(60_000, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        let names = BTreeMap::from([(id, name.to_owned())]);
        let mut w = self.store.write().await?;
        org_rows::insert_org(&mut w.tx, id, &meta).await?;
        let at = store::now_ms();
        audit::append(
            &mut w.tx,
            id,
            at,
            &json!({ "type": "org_created", "name": name, "unwrap_cache_ttl_ms": meta.unwrap_cache_ttl_ms }),
        )
        .await?;
        // Nothing is cached or running for a new org: only the storage half applies.
        let _ = apply::write(&mut w, id, &effects, &names, &Extra::None, at).await?;
        drop(org);
        let (_, token) =
            store::tokens::create(&mut w.tx, Some(id), Role::Admin, "first admin", at, None)
                .await?;
        audit::append(
            &mut w.tx,
            id,
            at,
            &json!({ "type": "token_created", "role": "admin", "name": "first admin" }),
        )
        .await?;
        w.commit().await?;
        Ok((id, token))
    }

    /// The view of scope `id`.
    pub fn view(&self, cell: &OrgCell, org: &Org, id: ScopeId) -> Result<ScopeView> {
        let scope = org
            .scope(id)
            .ok_or_else(|| ServiceError::NotFound("scope not found".into()))?;
        let (effective, by) = match org.effective(id)? {
            Effective::Active => ("active", None),
            Effective::Paused { by } => ("paused", Some(by.to_string())),
            Effective::Revoked { by } => ("revoked", Some(by.to_string())),
        };
        Ok(ScopeView {
            id: id.to_string(),
            parent: scope.parent.map(|p| p.to_string()),
            name: cell.name(id),
            state: state_str(scope.state).into(),
            effective: effective.into(),
            effective_by: by,
            key_version: scope.current_version(),
            depth: scope.depth,
        })
    }

    /// Every scope of `org`, parents before children.
    pub async fn list_scopes(&self, org: ScopeId) -> Result<Vec<ScopeView>> {
        let cell = self.org(org).await?;
        let snap = cell.snapshot();
        let mut out = Vec::with_capacity(snap.len());
        let mut queue = std::collections::VecDeque::from([snap.id()]);
        while let Some(id) = queue.pop_front() {
            out.push(self.view(&cell, &snap, id)?);
            if let Some(s) = snap.scope(id) {
                queue.extend(s.children.iter().copied());
            }
        }
        Ok(out)
    }

    /// One scope of `org`.
    pub async fn get_scope(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        let cell = self.org(org).await?;
        let snap = cell.snapshot();
        self.view(&cell, &snap, id)
    }

    /// Resolves `key` of `org`: from the cache, or from the root key down (unwrapping the root
    /// if needed). The scope's effective state and the version's liveness are checked on every
    /// call, cached or not. A resolved child key is cached only until its root expires.
    pub async fn scope_key(&self, cell: &OrgCell, key: KeyId) -> Result<Arc<ScopeKey>> {
        let snap = cell.snapshot();
        check_live(&snap, key)?;
        let ttl = cell.ttl();
        if let Some((k, _)) = self.cache.get(key) {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(k);
        }
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        let org = snap.id();
        let root_id = snap.root_of(key)?;
        let (root, expires) = match self.cache.get(root_id) {
            Some(r) => r,
            // Nothing is cached: no one to wait for.
            None if ttl.is_zero() => (
                Arc::new(self.unwrap_root(cell, &snap, root_id).await?),
                std::time::Instant::now(),
            ),
            None => {
                let _turn = cell.unwrap_turn.lock().await;
                match self.cache.get(root_id) {
                    Some(r) => r,
                    None => {
                        let r = Arc::new(self.unwrap_root(cell, &snap, root_id).await?);
                        let expires = std::time::Instant::now() + ttl;
                        self.cache.put(org, r.clone(), expires);
                        (r, expires)
                    }
                }
            }
        };
        if root_id == key {
            return Ok(root);
        }
        let k = Arc::new(snap.resolve(key, &root)?);
        self.cache.put(org, k.clone(), expires);
        Ok(k)
    }

    /// The newest key of `scope` in `org`, resolved (its effective state checked).
    pub(crate) async fn current_key(
        &self,
        org: ScopeId,
        scope: ScopeId,
    ) -> Result<(Arc<OrgCell>, Arc<ScopeKey>)> {
        let cell = self.org(org).await?;
        let snap = cell.snapshot();
        if snap.scope(scope).is_none() {
            return Err(ServiceError::NotFound("scope not found".into()));
        }
        // Paused or revoked: the typed error naming the scope that decided it.
        snap.check_usable(scope)?;
        let key_id = snap.current_key_id(scope)?;
        let key = self.scope_key(&cell, key_id).await?;
        Ok((cell, key))
    }

    /// Opens root version `root.version` from the default holder (the managed key locally, a
    /// CMK through its KMS), and records it in the audit log: every unwrap is an event.
    async fn unwrap_root(&self, cell: &OrgCell, org: &Org, root: KeyId) -> Result<ScopeKey> {
        self.unwrap_root_with(cell, org, org.default_holder(), root)
            .await
    }

    /// Opens root version `root.version` from `holder`'s copy, at this moment (a KMS call for a
    /// CMK, never the cache), audited like every unwrap.
    async fn unwrap_root_with(
        &self,
        cell: &OrgCell,
        org: &Org,
        holder: byok_core::scope::HolderId,
        root: KeyId,
    ) -> Result<ScopeKey> {
        let (key, event) = match holder {
            byok_core::scope::HolderId::Managed => (
                org.unwrap_root_managed(&self.managed, root.version)?,
                json!({ "type": "root_unwrapped", "holder": "managed", "version": root.version }),
            ),
            byok_core::scope::HolderId::Cmk(n) => {
                let copy = org
                    .holders()
                    .find(|h| h.id == holder)
                    .and_then(|h| h.copies.get(&root.version))
                    .cloned()
                    .ok_or(ServiceError::Scope(ScopeError::HolderNotReady(holder)))?;
                let access = self.access(cell, org.id(), n).await?;
                let answer = self
                    .aws
                    .decrypt(&org.id().to_string(), &access, &copy, root.version)
                    .await;
                self.kms_answered(cell, org.id(), n, "Decrypt", answer.as_ref().err())
                    .await?;
                let secret = answer?;
                (
                    ScopeKey::new(root, secret),
                    json!({ "type": "root_unwrapped", "holder": store::holder_name(holder), "version": root.version }),
                )
            }
        };
        self.metrics.root_unwraps.fetch_add(1, Ordering::Relaxed);
        let mut w = self.store.write().await?;
        audit::append(&mut w.tx, org.id(), store::now_ms(), &event).await?;
        w.commit().await?;
        Ok(key)
    }

    /// Runs transition `f` on a copy of org `org`, stores the result with its audit events in one
    /// transaction, then makes it live and evicts what it names. `new_names` names scopes the
    /// transition creates.
    async fn transition<T>(
        &self,
        org: ScopeId,
        new_names: BTreeMap<ScopeId, String>,
        f: impl FnOnce(&mut Org) -> Result<(T, Vec<Effect>)>,
    ) -> Result<T> {
        self.transition_with(org, new_names, Extra::None, f).await
    }

    /// [`Self::transition`], also writing `extra` in the same transaction.
    async fn transition_with<T>(
        &self,
        org: ScopeId,
        new_names: BTreeMap<ScopeId, String>,
        extra: Extra,
        f: impl FnOnce(&mut Org) -> Result<(T, Vec<Effect>)>,
    ) -> Result<T> {
        let cell = self.org(org).await?;
        let _turn = cell.turn.lock().await;
        let mut next: Org = (*cell.snapshot()).clone();
        let (out, effects) = f(&mut next)?;
        // From here until the new state is published, no data operation of this org is admitted.
        let gate = cell.gate.write().await;
        let mut w = self.store.write().await?;
        let after =
            apply::write(&mut w, org, &effects, &new_names, &extra, store::now_ms()).await?;
        w.commit().await?;
        // Committed: make it live, then do what the effects ask outside storage.
        let next = Arc::new(next);
        *cell.org.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        cell.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(new_names);
        if let Extra::InsertCmk(row) = extra {
            cell.cmks
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(row.n, row);
        }
        // Evicted before the gate opens: no request admitted after the change finds a key the
        // change withdrew.
        self.evict(&next, &after);
        drop(gate);
        self.after_publish(org, &after).await;
        Ok(out)
    }

    /// Creates scope `name` under `parent`.
    pub async fn create_scope(
        &self,
        org: ScopeId,
        parent: ScopeId,
        name: &str,
    ) -> Result<ScopeView> {
        check_name(name)?;
        let cell = self.org(org).await?;
        let snap = cell.snapshot();
        if snap.scope(parent).is_none() {
            return Err(ServiceError::NotFound("parent scope not found".into()));
        }
        let parent_key = self.scope_key(&cell, snap.current_key_id(parent)?).await?;
        let id = ScopeId::random(&mut rand::rng());
        let names = BTreeMap::from([(id, name.to_owned())]);
        self.transition(org, names, |o| {
            let (_key, effects) = o.create_scope(id, parent, &parent_key, &mut rand::rng())?;
            Ok(((), effects))
        })
        .await?;
        self.get_scope(org, id).await
    }

    /// Pauses a scope and its subtree.
    pub async fn pause(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        self.transition(org, BTreeMap::new(), |o| Ok(((), o.pause(id)?)))
            .await?;
        self.get_scope(org, id).await
    }

    /// Resumes a scope.
    pub async fn resume(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        self.transition(org, BTreeMap::new(), |o| Ok(((), o.resume(id)?)))
            .await?;
        self.get_scope(org, id).await
    }

    /// Revokes a scope and its subtree, for good; `confirm` must be the scope id.
    pub async fn revoke(&self, org: ScopeId, id: ScopeId, confirm: &str) -> Result<ScopeView> {
        self.transition(org, BTreeMap::new(), |o| Ok(((), o.revoke(id, confirm)?)))
            .await?;
        self.get_scope(org, id).await
    }

    /// Adds a key version to a (child) scope.
    pub async fn rotate(&self, org: ScopeId, id: ScopeId) -> Result<ScopeView> {
        let cell = self.org(org).await?;
        let snap = cell.snapshot();
        let parent = snap
            .scope(id)
            .ok_or_else(|| ServiceError::NotFound("scope not found".into()))?
            .parent
            .ok_or(ServiceError::Scope(ScopeError::RootRotation))?;
        let parent_key = self.scope_key(&cell, snap.current_key_id(parent)?).await?;
        self.transition(org, BTreeMap::new(), |o| {
            let (_key, effects) = o.rotate(id, &parent_key, &mut rand::rng())?;
            Ok(((), effects))
        })
        .await?;
        self.get_scope(org, id).await
    }

    /// Rows of the org's audit log.
    pub async fn audit(
        &self,
        org: ScopeId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<audit::AuditRow>> {
        self.org(org).await?;
        Ok(audit::read(self.store.pool(), org, after, limit.clamp(1, 1000)).await?)
    }

    /// Checks the org's audit chain.
    pub async fn verify_audit(&self, org: ScopeId) -> Result<audit::Verification> {
        self.org(org).await?;
        Ok(audit::verify(self.store.pool(), org).await?)
    }
}

/// `key`'s scope is usable (not paused or revoked, nor under such a scope) and its version is
/// live (not retired).
fn check_live(org: &Org, key: KeyId) -> Result<()> {
    let scope = org
        .scope(key.scope)
        .ok_or_else(|| ServiceError::NotFound("scope not found".into()))?;
    org.check_usable(key.scope)?;
    if !scope.versions.contains_key(&key.version) {
        return Err(ServiceError::Scope(ScopeError::UnknownVersion(key)));
    }
    Ok(())
}

/// Names: 1 to 200 characters, no control characters.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "name must be 1 to 200 characters without control characters".into(),
        ));
    }
    Ok(())
}
