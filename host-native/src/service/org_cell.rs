//! One org in memory, and how it changes: loaded on first use, changed only by a transition
//! that runs on a copy, is written through the effect executor in one transaction
//! ([`super::apply`]), and is published only once committed, so no request ever sees a state
//! that was not committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use byok_core::scope::{Effect, Org};
use byok_core::{KeyId, ScopeId};

use super::apply::{self, Extra};
use super::resolve::check_live;
use super::tokens::Authenticated;
use super::{Result, Service, ServiceError};
use crate::store::keys::{self, CmkRow};
use crate::store::{self, OrgMeta, org_rows};

/// One org in memory.
pub struct OrgCell {
    pub(super) org: RwLock<Arc<Org>>,
    pub(super) meta: RwLock<OrgMeta>,
    pub(super) names: RwLock<BTreeMap<ScopeId, String>>,
    pub(super) cmks: RwLock<BTreeMap<u32, CmkRow>>,
    /// Root unwraps of one org take turns, so that when a cached root expires under load one
    /// request asks the key holder and the others wait for its answer (no stampede of KMS calls).
    pub(super) unwrap_turn: tokio::sync::Mutex<()>,
    /// Transitions of one org take turns.
    pub(super) turn: tokio::sync::Mutex<()>,
    /// Withdrawal wins over work in flight: a transition commits and publishes its new state
    /// holding this for writing; a data operation checks the published state and releases key
    /// material (and appends its audit event) holding it for reading ([`Service::admit`]). So
    /// nothing that checked the state before a pause or revoke committed hands out a key after
    /// it, and the audit log orders them the way they happened.
    ///
    /// The gate is the org's, not the cell's: a cell loaded while an older one of the org is
    /// still held shares its gate ([`Gates`]). A change holding the gate of a cell retired
    /// under it (another replica's change, an interrupted one) so still holds off the calls
    /// admitted on the org's next cell until it has committed and published.
    pub(super) gate: Arc<Gate>,
    /// Set while the org serves cached roots past their TTL because its KMS is unreachable
    /// (`grace.rs`).
    pub(super) outage: std::sync::Mutex<Option<super::grace::Outage>>,
    /// Set when storage may hold a state this cell never saw: a transition was dropped between
    /// its commit and publishing it (the client hung up, or the request deadline passed), or
    /// another replica changed the org ([`Service::forget_cell`]). The cell is then out of the
    /// map, so the next use reloads the org from storage; whoever still holds this one is
    /// refused ([`ServiceError::Reloading`]) instead of acting on it.
    pub(super) stale: AtomicBool,
    /// The org's version in storage that this cell holds (`orgs.version`): every committed
    /// change bumps it, so a cell behind it is out of date (another replica changed the org).
    pub(super) version: AtomicI64,
}

/// Armed from the moment a change starts writing until its new state is published; if it
/// fails or its future is dropped in between, takes the cell out of use ([`OrgCell::stale`])
/// and drops the org's cached keys, before the gate opens (it is declared after the gate guard,
/// so it is dropped first). Changes outside transitions (a token revoke, a setting, a key's
/// health) arm it before they set the cell's version ahead of their commit: a commit that
/// then fails would otherwise leave the cell claiming a version storage never reached, and
/// the other replica's change that does reach it would be taken for one already seen.
pub(super) struct Unpublished<'a> {
    service: &'a Service,
    org: ScopeId,
    cell: &'a OrgCell,
    armed: bool,
}

impl<'a> Unpublished<'a> {
    /// Armed for a change of `org` held in `cell`.
    pub(super) fn arm(service: &'a Service, org: ScopeId, cell: &'a OrgCell) -> Self {
        Self {
            service,
            org,
            cell,
            armed: true,
        }
    }

    /// The change is committed and published (or was never written): nothing to undo.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Unpublished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Marked before the cell goes, so that no load can start between the two unwarned.
        self.service.unsettled.mark(self.org);
        self.service.forget_cell(self.org, self.cell);
        tracing::warn!(org = %self.org, "a change was interrupted before it was published: the org is reloaded from storage");
    }
}

/// Orgs with a change interrupted after it began writing, each with a count of such
/// interruptions. Storage may still be finishing that change: a dropped future may have sent
/// its commit (SQLite's thread runs it anyway; PostgreSQL runs what reached it), and an
/// ambiguous commit error may hide a commit that landed. A cell loaded before it lands would
/// hold the state from before it (a pause missed) and, on SQLite, where no notification comes,
/// keep serving it. So the next load of such an org waits for that change to end
/// ([`Service::load_org`]).
#[derive(Default)]
pub(super) struct Unsettled(std::sync::Mutex<std::collections::HashMap<ScopeId, u64>>);

impl Unsettled {
    /// A change of `org` was interrupted.
    fn mark(&self, org: ScopeId) {
        *self.lock().entry(org).or_default() += 1;
    }

    /// How many interruptions of `org` are not settled yet (`None`: none).
    fn get(&self, org: ScopeId) -> Option<u64> {
        self.lock().get(&org).copied()
    }

    /// `org` was loaded as it stands after the interruptions counted `seen`; one counted since
    /// keeps it unsettled.
    fn settled(&self, org: ScopeId, seen: u64) {
        let mut map = self.lock();
        if map.get(&org) == Some(&seen) {
            map.remove(&org);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ScopeId, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The withdrawal gate of one org ([`OrgCell::gate`]).
pub(super) type Gate = tokio::sync::RwLock<()>;

/// The gate of each org whose cells are held anywhere: a cell loaded while another of its org
/// is still held (by a change or a call that took it before it was retired) gets the same gate.
/// Weak, so an org no one holds costs an entry until the next prune and nothing more.
#[derive(Default)]
pub(super) struct Gates(std::sync::Mutex<GateMap>);

#[derive(Default)]
struct GateMap {
    gates: std::collections::HashMap<ScopeId, std::sync::Weak<Gate>>,
    /// The map is pruned of orgs no one holds when it reaches this size (then twice what is
    /// left, at least 64): amortized, one pass per doubling.
    prune_at: usize,
}

impl Gates {
    /// The gate of `org`: the one its cells held anywhere use, or a new one.
    pub(super) fn of(&self, org: ScopeId) -> Arc<Gate> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(gate) = map.gates.get(&org).and_then(std::sync::Weak::upgrade) {
            return gate;
        }
        if map.gates.len() >= map.prune_at {
            map.gates.retain(|_, g| g.strong_count() > 0);
            map.prune_at = (map.gates.len() * 2).max(64);
        }
        let gate = Arc::new(Gate::default());
        map.gates.insert(org, Arc::downgrade(&gate));
        gate
    }
}

/// How many cells each org has had taken out of use (striped: orgs share a counter by their id's
/// first byte, which costs at worst a needless reload). A load notes the count before it reads
/// storage and keeps its cell only if the count has not moved: a cell retired meanwhile may have
/// held a change committed after that read (a pause, then a failed or interrupted change that
/// retired the cell), and a cell loaded from before it would serve the org without the change.
pub(super) struct Retired([AtomicU64; 64]);

impl Default for Retired {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Retired {
    fn of(&self, org: ScopeId) -> &AtomicU64 {
        &self.0[usize::from(org.as_bytes()[0]) % self.0.len()]
    }

    /// The count for `org` now.
    pub(super) fn count(&self, org: ScopeId) -> u64 {
        self.of(org).load(Ordering::SeqCst)
    }

    /// A cell of `org` was taken out of use (or one another replica changed was not held here).
    /// Called holding the orgs map's write lock, which a load also holds to check and insert.
    pub(super) fn note(&self, org: ScopeId) {
        self.of(org).fetch_add(1, Ordering::SeqCst);
    }
}

impl OrgCell {
    /// The current committed value.
    pub fn snapshot(&self) -> Arc<Org> {
        self.org.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The org's metadata.
    pub fn meta(&self) -> OrgMeta {
        self.meta.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The stored version this cell holds.
    pub fn version(&self) -> i64 {
        self.version.load(Ordering::SeqCst)
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

impl Service {
    /// Admits a data operation of `who` on `keys` of `org`: waits for any transition (or
    /// token revoke) to finish publishing, then checks, on the state now published, that each
    /// key's scope is usable and its version live, and that `who`'s token still stands. Hold
    /// the guard until the key material has left (and its audit event is appended): a pause,
    /// revoke, retirement or token revoke cannot commit in between.
    pub(crate) async fn admit<'a>(
        &self,
        cell: &'a OrgCell,
        keys: &[KeyId],
        who: &Authenticated,
    ) -> Result<tokio::sync::RwLockReadGuard<'a, ()>> {
        let guard = cell.gate.read().await;
        if cell.stale.load(Ordering::SeqCst) {
            return Err(ServiceError::Reloading);
        }
        if self.replica_behind() {
            return Err(ServiceError::ReplicaBehind);
        }
        let snap = cell.snapshot();
        for k in keys {
            check_live(&snap, *k)?;
        }
        if !self.granted_in_memory(who) {
            Box::pin(self.still_in_force(who)).await?;
        }
        Ok(guard)
    }

    /// Takes `cell` out of use because storage moved past it, or may have (another replica
    /// changed the org, or a change here was interrupted): the next use loads the org from
    /// storage, the org's cached keys go now, and whoever still holds the cell is refused
    /// ([`ServiceError::Reloading`]) when it asks to be admitted. Requests already admitted
    /// (the gate's read guard held, the check done) finish: they were checked before this
    /// replica knew of the change. One still resolving a key (a KMS call can take seconds) was
    /// not, and must not be admitted on the state it holds, which may predate a pause.
    pub(super) fn forget_cell(&self, org: ScopeId, cell: &OrgCell) {
        cell.stale.store(true, Ordering::SeqCst);
        {
            let mut orgs = self.orgs.write().unwrap_or_else(|p| p.into_inner());
            if orgs.get(&org).is_some_and(|c| std::ptr::eq(&**c, cell)) {
                orgs.remove(&org);
            }
            // Also for a cell no longer in the map: a load under way may have read storage
            // before the change this cell held.
            self.retired.note(org);
        }
        self.cache.evict_org(org);
        // Storage moved past the cell: a token of the org revoked there may be among the
        // grants held here, read before it (see [`Service::org_changed`]).
        self.grants.retain(|_, g| g.org != Some(org));
    }

    /// Org `id` as storage has it now: the cell held here, or a fresh one when another replica
    /// changed the org since (one read of its version), for a change to start from.
    ///
    /// Only a version *ahead* of the cell's is another replica's: a change of this replica
    /// sets the cell's version just before its commit, so until that commit lands storage is
    /// one behind. Taking that for a change elsewhere would retire a cell in the middle of
    /// being changed and load, from storage, the state before the change, which would then be
    /// served after the change committed.
    pub(super) async fn current_org(&self, id: ScopeId) -> Result<Arc<OrgCell>> {
        let cell = self.org(id).await?;
        match org_rows::version(self.store.pool(), id).await? {
            Some(v) if v > cell.version() => {
                self.forget_cell(id, &cell);
                self.org(id).await
            }
            _ => Ok(cell),
        }
    }

    /// Org `id`, loading it on first use.
    pub async fn org(&self, id: ScopeId) -> Result<Arc<OrgCell>> {
        if let Some(c) = self.orgs.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(c.clone());
        }
        // Boxed: the load's state would otherwise size every caller's future (see
        // docs/design-notes.md, "Cold paths are boxed").
        Box::pin(self.load_org(id)).await
    }

    /// Loads org `id` from storage into memory (once: a concurrent load's cell wins).
    async fn load_org(&self, id: ScopeId) -> Result<Arc<OrgCell>> {
        for _ in 0..3 {
            let (cell, retired) = self.read_cell(id).await?;
            if let Some(kept) = self.keep_cell(id, cell, retired) {
                return Ok(kept);
            }
        }
        // A cell retired under every read (other replicas busy with this org): the caller
        // retries.
        Err(ServiceError::Reloading)
    }

    /// A cell of org `id` as storage has it, and the org's retired count noted before the read
    /// (for [`Self::keep_cell`]).
    async fn read_cell(&self, id: ScopeId) -> Result<(Arc<OrgCell>, u64)> {
        let retired = self.retired.count(id);
        let (org, meta, names, version) = self.load_settled(id).await?;
        let cmks = keys::list(self.store.pool(), id)
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
            turn: tokio::sync::Mutex::new(()),
            gate: self.gates.of(id),
            stale: AtomicBool::new(false),
            outage: std::sync::Mutex::new(None),
            version: AtomicI64::new(version),
        });
        Ok((cell, retired))
    }

    /// Puts `cell`, read with the org's retired count at `retired`, in use, unless another cell
    /// already is (that one wins) or a cell of the org was retired since the read (`None`: read
    /// again). That cell may have held a change committed after the read, and nothing on
    /// SQLite would ever tell this one of it.
    fn keep_cell(&self, id: ScopeId, cell: Arc<OrgCell>, retired: u64) -> Option<Arc<OrgCell>> {
        let mut orgs = self.orgs.write().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = orgs.get(&id) {
            return Some(held.clone());
        }
        if self.retired.count(id) != retired {
            return None;
        }
        orgs.insert(id, cell.clone());
        Some(cell)
    }

    /// Org `id`'s rows as they stand. After an interrupted change ([`Unsettled`]) the load is
    /// checked under the writer's turn and the org's row lock, which wait for that change to
    /// commit or roll back: the version then read must be the one loaded, or the org is read
    /// again.
    async fn load_settled(&self, id: ScopeId) -> Result<org_rows::Loaded> {
        let unsettled = self.unsettled.get(id);
        for _ in 0..3 {
            let loaded = org_rows::load(self.store.pool(), id)
                .await?
                .ok_or_else(|| ServiceError::NotFound("organization not found".into()))?;
            let Some(seen) = unsettled else {
                return Ok(loaded);
            };
            let mut w = self.store.write_org(id).await?;
            let now = w.lock_org(id).await?;
            drop(w);
            if now == loaded.3 {
                self.unsettled.settled(id, seen);
                return Ok(loaded);
            }
        }
        // Changed under every read (other replicas busy with this org): the caller retries.
        Err(ServiceError::Reloading)
    }

    /// Runs transition `f` on a copy of org `org`, stores the result with its audit events in one
    /// transaction, then makes it live and evicts what it names. `new_names` names scopes the
    /// transition creates.
    pub(super) async fn transition<T>(
        &self,
        org: ScopeId,
        new_names: BTreeMap<ScopeId, String>,
        f: impl FnOnce(&mut Org) -> Result<(T, Vec<Effect>)>,
    ) -> Result<T> {
        self.transition_with(org, new_names, Extra::None, f).await
    }

    /// [`Self::transition`], also writing `extra` in the same transaction.
    pub(super) async fn transition_with<T>(
        &self,
        org: ScopeId,
        new_names: BTreeMap<ScopeId, String>,
        extra: Extra,
        f: impl FnOnce(&mut Org) -> Result<(T, Vec<Effect>)>,
    ) -> Result<T> {
        self.transition_deciding(org, new_names, |o| {
            f(o).map(|(out, effects)| (out, effects, extra))
        })
        .await
    }

    /// [`Self::transition_with`], with `extra` decided by `f` on the state it transitions: a
    /// host row that must agree with that state (a retirement's target version) cannot then
    /// be made from an older snapshot.
    pub(super) async fn transition_deciding<T>(
        &self,
        org: ScopeId,
        new_names: BTreeMap<ScopeId, String>,
        f: impl FnOnce(&mut Org) -> Result<(T, Vec<Effect>, Extra)>,
    ) -> Result<T> {
        let cell = self.current_org(org).await?;
        let _turn = cell.turn.lock().await;
        if cell.stale.load(Ordering::SeqCst) {
            // An interrupted change (or another replica's) retired this cell while we waited:
            // never decide on it.
            return Err(ServiceError::Reloading);
        }
        let mut next: Org = (*cell.snapshot()).clone();
        let (out, effects, extra) = f(&mut next)?;
        // From here until the new state is published, no data operation of this org is admitted.
        let gate = cell.gate.write().await;
        let mut unpublished = Unpublished {
            service: self,
            org,
            cell: &cell,
            armed: true,
        };
        let mut w = self.store.write_org(org).await?;
        // The caller's token first, then the org's row (the order a revoke takes them in).
        if let Err(e) = Self::actor_still_in_force(&mut w).await {
            unpublished.armed = false;
            return Err(e);
        }
        if w.lock_org(org).await? != cell.version() {
            // Another replica committed a change since the check above: this one was decided
            // on a state that is gone. Nothing is written; the next use loads the org.
            unpublished.armed = false;
            drop(w);
            self.forget_cell(org, &cell);
            return Err(ServiceError::Reloading);
        }
        let after =
            apply::write(&mut w, org, &effects, &new_names, &extra, store::now_ms()).await?;
        if after.scrub {
            w.destroys_keys();
        }
        // Recorded before the commit: the commit's own notification may arrive before the
        // line after it runs, and must find this cell current. If the commit fails,
        // `unpublished` retires the cell anyway.
        cell.version
            .store(w.bump_org(org).await?.to, Ordering::SeqCst);
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
        unpublished.armed = false;
        drop(unpublished);
        drop(gate);
        self.after_publish(org, &after).await;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use byok_core::envelope::SealBuffer;
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    use byok_core::scope::{ScopeError, managed_key};
    use byok_core::{ScopeId, SecretBytes};

    use super::super::kms::KmsSettings;
    use super::super::{Authenticated, Service, ServiceError};
    use crate::store::{Database, org_rows};

    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Polls `fut` `polls` times, each time waiting for its wake-up (the database thread
    /// finishing a step), then drops it there: as a client that hangs up, or the request
    /// deadline, would. True if it finished first.
    async fn drop_after(fut: impl Future, polls: usize) -> bool {
        drop_at(fut, polls, true).await
    }

    /// [`drop_after`], or with `settled` false, dropped right after the last poll: with the
    /// statement it sent still running on the database's thread.
    async fn drop_at(fut: impl Future, polls: usize, settled: bool) -> bool {
        let mut fut = std::pin::pin!(fut);
        let woken = Arc::new(Woken(AtomicBool::new(false)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        for poll in 0..polls {
            woken.0.store(false, Ordering::SeqCst);
            if fut.as_mut().poll(&mut cx).is_ready() {
                return true;
            }
            if !settled && poll + 1 == polls {
                break;
            }
            for _ in 0..2000 {
                if woken.0.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        false
    }

    /// An encrypt of `team`, once more if the first found the org being reloaded.
    async fn encrypt_once_more(
        svc: &Service,
        who: &Authenticated,
        org: ScopeId,
        team: ScopeId,
    ) -> Result<(), ServiceError> {
        let encrypt = || svc.encrypt(who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new());
        match encrypt().await {
            Err(ServiceError::Reloading) => encrypt().await.map(drop),
            answer => answer.map(drop),
        }
    }

    /// A pause dropped at every one of its await points in turn, the commit's included: the
    /// org is then served exactly as storage has it. Either the pause did not commit and the
    /// scope works, or it did and nothing opens (never a committed pause that memory missed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_dropped_anywhere_is_served_as_stored() {
        // Whether a drop lands between the commit and its publishing, or while the commit
        // runs, depends on the database thread's timing: rounds repeat until every case was
        // seen (not paused; paused and dropped after the commit; paused and dropped during it).
        let mut saw = [false; 3];
        let rounds = (0..20)
            .flat_map(|_| 1..=12)
            .flat_map(|p| [(p, true), (p, false)]);
        for (polls, settled) in rounds {
            if saw == [true; 3] {
                break;
            }
            // On disk: a commit that waits for the file system is a step of its own.
            let dir = std::env::temp_dir().join(format!(
                "byok-drop-{}-{polls}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let db = Database::open_dir(&dir).await.unwrap();
            let managed = managed_key(SecretBytes::random(&mut rand::rng()), 1);
            let svc =
                Service::new(db, managed, Duration::from_secs(60), KmsSettings::default()).unwrap();
            let (org, _) = svc.create_org("org", None, None, None).await.unwrap();
            let team = svc.create_scope(org, org, "team").await.unwrap();
            let team = ScopeId::parse_hex(&team.id).unwrap();
            let who = crate::service::test_caller(&svc, org).await;
            // The team's key is cached: the stale path a missed pause would take.
            svc.encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
                .await
                .unwrap();
            let finished = drop_at(svc.pause(org, team), polls, settled).await;
            // At once: a commit the dropped future had sent may still be running on the
            // database's thread, and the org must not be loaded from before it.
            let first = encrypt_once_more(&svc, &who, org, team).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let stored = org_rows::load(svc.store().pool(), org)
                .await
                .unwrap()
                .unwrap()
                .0;
            let paused_in_storage = stored.check_usable(team).is_err();
            // And later, from the cell then in memory.
            let answer = encrypt_once_more(&svc, &who, org, team).await;
            if paused_in_storage {
                for answer in [first, answer] {
                    assert!(
                        matches!(answer, Err(ServiceError::Scope(ScopeError::Paused { .. }))),
                        "dropped after {polls} polls: paused in storage, but {answer:?}"
                    );
                }
                saw[if settled { 1 } else { 2 }] |= !finished;
            } else {
                assert!(answer.is_ok(), "after {polls} polls: {answer:?}");
                saw[0] = true;
            }
            drop(svc);
            let _ = std::fs::remove_dir_all(&dir);
        }
        assert!(
            saw == [true; 3],
            "the drops did not cover every side of the commit: {saw:?}"
        );
    }

    /// A change outside transitions (an outage grace setting, a token revoke) dropped at every
    /// one of its await points, the commit's included: the org is then held as storage has it,
    /// its version too. A cell left ahead of storage (its version set for a commit that never
    /// landed) would take another replica's next change for one already seen; a cell left
    /// behind on the setting (a commit that landed unseen) would serve the old grace.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_setting_or_token_revoke_dropped_anywhere_leaves_the_org_as_stored() {
        // On SQLite a dropped commit still lands (its thread finishes it); on PostgreSQL a drop
        // can also stop it from being sent, leaving the cell's version ahead of storage.
        dropped_changes_leave_the_org_as_stored(None).await;
        if let Some(url) = crate::store::test_postgres_url().await {
            dropped_changes_leave_the_org_as_stored(Some(url)).await;
        }
    }

    async fn dropped_changes_leave_the_org_as_stored(postgres: Option<String>) {
        let mut saw = [(false, false); 2];
        let shared = match &postgres {
            Some(url) => Some(Database::open(url).await.unwrap()),
            None => None,
        };
        for (round, polls) in (0..20).flat_map(|r| (1..=12).map(move |p| (r, p))) {
            if saw.iter().all(|s| s.0 && s.1) {
                break;
            }
            let dir = std::env::temp_dir().join(format!(
                "byok-drop-setting-{}-{round}-{polls}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            let db = match &shared {
                Some(db) => db.clone(),
                None => {
                    std::fs::create_dir_all(&dir).unwrap();
                    Database::open_dir(&dir).await.unwrap()
                }
            };
            let managed = managed_key(SecretBytes::random(&mut rand::rng()), 1);
            let svc =
                Service::new(db, managed, Duration::from_secs(60), KmsSettings::default()).unwrap();
            let (org, _) = svc.create_org("org", None, None, None).await.unwrap();
            let (id, _) = svc
                .create_token(org, crate::store::Role::Service, "app", None)
                .await
                .unwrap();
            let before = svc.org(org).await.unwrap().version();
            let which = (round + polls) % 2;
            let finished = if which == 0 {
                let grace = crate::service::SettingsChange {
                    outage_grace: Some(Duration::from_secs(600)),
                    ..Default::default()
                };
                drop_after(svc.update_org(org, grace), polls).await
            } else {
                drop_after(svc.revoke_token(Some(org), id), polls).await
            };
            tokio::time::sleep(Duration::from_millis(50)).await;
            let stored = org_rows::load(svc.store().pool(), org)
                .await
                .unwrap()
                .unwrap();
            let committed = if which == 0 {
                stored.1.outage_grace_ms == 600_000
            } else {
                stored.3 > before
            };
            let cell = svc.org(org).await.unwrap();
            assert_eq!(
                (cell.version(), cell.meta()),
                (stored.3, stored.1),
                "{} dropped after {polls} polls (committed: {committed}, finished: {finished}, \
                 on PostgreSQL: {})",
                ["the grace change", "the token revoke"][which],
                postgres.is_some()
            );
            saw[which].0 |= !committed;
            saw[which].1 |= committed && !finished;
            drop(svc);
            let _ = std::fs::remove_dir_all(&dir);
        }
        // Both sides of the commit were reached for each change, or the test proved little.
        assert!(
            saw.iter().all(|s| s.0 && s.1),
            "the drops did not cover both sides of the commit: {saw:?}"
        );
    }

    /// A token revoke whose commit fails (here a deferred trigger raises at commit; in life a
    /// connection lost or a failover) after the revoke moved the cell's version ahead for it:
    /// the cell is not left claiming a version storage never reached, which would make this
    /// replica take another replica's next change for one already seen and miss it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_revoke_whose_commit_fails_leaves_the_org_as_stored() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let db = Database::open(&url).await.unwrap();
        for sql in [
            "CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'the commit fails'; END $$",
            "CREATE CONSTRAINT TRIGGER fail_commit AFTER DELETE ON tokens \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit()",
        ] {
            sqlx::query(sql).execute(db.pool()).await.unwrap();
        }
        let managed = managed_key(SecretBytes::random(&mut rand::rng()), 1);
        let svc =
            Service::new(db, managed, Duration::from_secs(60), KmsSettings::default()).unwrap();
        let (org, _) = svc.create_org("org", None, None, None).await.unwrap();
        let (id, _) = svc
            .create_token(org, crate::store::Role::Service, "app", None)
            .await
            .unwrap();
        let before = svc.org(org).await.unwrap().version();
        let failed = svc.revoke_token(Some(org), id).await;
        assert!(matches!(failed, Err(ServiceError::Store(_))), "{failed:?}");
        let stored = org_rows::version(svc.store().pool(), org).await.unwrap();
        assert_eq!(stored, Some(before), "rolled back");
        assert_eq!(svc.org(org).await.unwrap().version(), before);
    }

    /// Another replica changed the org: requests still holding the old cell are refused, also
    /// on a cache hit, where a key put back by a resolve racing the change would otherwise be
    /// served on the old state.
    #[tokio::test]
    async fn a_cell_taken_out_of_use_serves_no_key_even_from_the_cache() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let managed = managed_key(SecretBytes::random(&mut rand::rng()), 1);
        let svc =
            Service::new(db, managed, Duration::from_secs(60), KmsSettings::default()).unwrap();
        let (org, team) = crate::service::test_team(&svc, None).await;
        let who = crate::service::test_caller(&svc, org).await;
        let old = svc.org(org).await.unwrap();
        let key = old.snapshot().current_key_id(team).unwrap();
        let k = svc.scope_key(&old, key).await.unwrap();
        // Another replica's change arrives: the cell is forgotten and the keys evicted.
        assert!(svc.org_changed(org, old.version() + 1));
        // A resolve that raced it puts the key back (the cache refuses a key from a call sent
        // before the eviction; this put reads the count after it, to test the next guard).
        let now = svc.now();
        svc.cache().put(
            org,
            k,
            byok_core::grace::Freshness::unwrapped(now),
            now + Duration::from_secs(60),
            now,
            svc.cache().evictions(org),
        );
        let answer = svc.admitted_key(&old, key, &who).await.map(|_| ());
        assert!(
            matches!(answer, Err(ServiceError::Reloading)),
            "served from a cell taken out of use: {answer:?}"
        );
    }

    /// A load that read the org before a change must not put its cell in use once the cell that
    /// took the change has been retired (a later change on it failed or was dropped): nothing on
    /// SQLite would ever tell the loaded cell of the change, and a pause would be missed for
    /// good. The load reads again instead. The same for another replica's change of an org this
    /// one does not hold.
    #[tokio::test]
    async fn a_load_that_read_before_a_retired_cells_change_reads_again() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = super::super::test_service(&db, 3);
        let (org, team) = crate::service::test_team(&svc, None).await;
        let who = crate::service::test_caller(&svc, org).await;
        // The org is out of memory (as after a restart); a request loading it has read it.
        let first = svc.org(org).await.unwrap();
        svc.forget_cell(org, &first);
        let (early, retired) = svc.read_cell(org).await.unwrap();
        // Meanwhile an admin's pause loads the org again and commits; its cell is then retired.
        svc.pause(org, team).await.unwrap();
        let paused = svc.org(org).await.unwrap();
        svc.forget_cell(org, &paused);
        assert!(
            svc.keep_cell(org, early, retired).is_none(),
            "a cell read before the pause was put in use"
        );
        let answer = svc
            .encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
            .await;
        assert!(
            matches!(answer, Err(ServiceError::Scope(ScopeError::Paused { .. }))),
            "{answer:?}"
        );
        // Another replica's change, of an org not held here while a load is under way.
        let held = svc.org(org).await.unwrap();
        svc.forget_cell(org, &held);
        let (early, retired) = svc.read_cell(org).await.unwrap();
        assert!(svc.org_changed(org, held.version() + 1));
        assert!(
            svc.keep_cell(org, early, retired).is_none(),
            "a cell read before another replica's change was put in use"
        );
        // With nothing retired since its read, a load is kept; a cell already held wins.
        let (cell, retired) = svc.read_cell(org).await.unwrap();
        let kept = svc.keep_cell(org, cell.clone(), retired).unwrap();
        assert!(Arc::ptr_eq(&kept, &cell));
        let (other, retired) = svc.read_cell(org).await.unwrap();
        let kept = svc.keep_cell(org, other, retired).unwrap();
        assert!(Arc::ptr_eq(&kept, &cell), "the cell in use was replaced");
    }

    /// A change holding the org's gate holds off every call of the org, also one on a cell
    /// loaded after the change's own cell was retired (another replica changed the org, or a
    /// change here was interrupted): the gate is the org's. A token revoke holds it across its
    /// commit, so a call admitted on the new cell could otherwise hand out a key after the
    /// revoke committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gate_outlives_the_cell_that_took_it() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = Arc::new(super::super::test_service(&db, 3));
        let (org, team) = crate::service::test_team(&svc, None).await;
        let who = crate::service::test_caller(&svc, org).await;
        let old = svc.org(org).await.unwrap();
        let held = old.gate.write().await;
        svc.forget_cell(org, &old);
        let new = svc.org(org).await.unwrap();
        assert!(!Arc::ptr_eq(&old, &new), "the org was not loaded again");
        let call = tokio::spawn({
            let svc = svc.clone();
            async move {
                svc.encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
                    .await
                    .map(drop)
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !call.is_finished(),
            "a call was admitted while a change held the org's gate"
        );
        drop(held);
        call.await.unwrap().unwrap();
        // Once no cell of the org is held, its gate goes; the map keeps no org for good.
        drop((old, new));
        let gates = super::Gates::default();
        let kept = gates.of(org);
        assert!(Arc::ptr_eq(&kept, &gates.of(org)));
        drop(kept);
        for _ in 0..200 {
            drop(gates.of(ScopeId::random(&mut rand::rng())));
        }
        assert!(
            gates.0.lock().unwrap().gates.len() <= 128,
            "orgs no one holds are kept"
        );
    }

    /// A change of this replica sets its cell's version just before its commit, so storage is
    /// one behind while the commit runs. Another change starting then (a job step, an admin's
    /// call) must not take that for another replica's change: it would retire the cell being
    /// changed and load the state from before the change, to be served after it commits.
    #[tokio::test]
    async fn a_change_in_flight_here_is_not_taken_for_another_replicas() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = super::super::test_service(&db, 3);
        let (org, _) = svc.create_org("org", None, None, None).await.unwrap();
        let cell = svc.org(org).await.unwrap();
        // As `transition_with` leaves it between `bump_org` and the commit.
        cell.version.fetch_add(1, Ordering::SeqCst);
        let current = svc.current_org(org).await.unwrap();
        assert!(Arc::ptr_eq(&cell, &current), "the cell was replaced");
        assert!(!cell.stale.load(Ordering::SeqCst), "the cell was retired");
        // Storage ahead of it is another replica's change: a fresh cell.
        cell.version.fetch_sub(2, Ordering::SeqCst);
        let current = svc.current_org(org).await.unwrap();
        assert!(!Arc::ptr_eq(&cell, &current) && cell.stale.load(Ordering::SeqCst));
    }

    /// Two replicas: two services, each with its own connections to one PostgreSQL database
    /// and nothing telling one of the other's changes. A change made through the one whose
    /// copy of the org is out of date starts from storage, not from that copy; and changes
    /// racing from both keep the org's audit log one chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_behind_storage_decides_on_storage_and_the_log_stays_one_chain() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let replica = |db| {
            let key = managed_key(SecretBytes::from_bytes(&mut [4; 32]), 1);
            Service::new(db, key, Duration::from_secs(60), KmsSettings::default()).unwrap()
        };
        let a = replica(Database::open(&url).await.unwrap());
        let b = replica(Database::open(&url).await.unwrap());
        let (org, _) = a.create_org("org", None, None, None).await.unwrap();
        a.create_scope(org, org, "team").await.unwrap();
        // B adds scope `b`; A's copy has never heard of it.
        let made_on_b = b.create_scope(org, org, "b").await.unwrap();
        let under_b = ScopeId::parse_hex(&made_on_b.id).unwrap();
        assert!(
            a.org(org)
                .await
                .unwrap()
                .snapshot()
                .scope(under_b)
                .is_none()
        );
        // A child of `b` made through A: decided on storage's org, not A's copy.
        let child = a.create_scope(org, under_b, "child").await.unwrap();
        assert_eq!(child.parent.as_deref(), Some(made_on_b.id.as_str()));
        // Both change the org at once: every change lands once (or is refused whole with
        // `reloading`, and made again), and the log verifies as one chain.
        async fn make(s: &Service, org: ScopeId, prefix: &str) {
            for i in 0..10 {
                loop {
                    match s.create_scope(org, org, &format!("{prefix}{i}")).await {
                        Err(ServiceError::Reloading) => continue,
                        made => {
                            made.unwrap();
                            break;
                        }
                    }
                }
            }
        }
        tokio::join!(make(&a, org, "a"), make(&b, org, "b"));
        // Counted in storage: nothing tells either service of the other's last changes here
        // (no listener in this test), so their copies may each miss some.
        let (stored, ..) = org_rows::load(a.store().pool(), org)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            stored.scopes().count(),
            1 + 1 + 1 + 1 + 20,
            "org, team, b, child and 20 more"
        );
        let verified = crate::store::audit::verify(a.store().pool(), org)
            .await
            .unwrap();
        assert!(verified.ok, "{verified:?}");
    }
}
