//! From a key id to the key: the cache, or the root key (unwrapped from its holder, a KMS call
//! for a customer key) and the wrapped keys down the tree. The scope's state and the version's
//! liveness are checked on every call, cached or not.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use byok_core::grace::{AfterFailure, CachePolicy, Freshness, Lookup};
use byok_core::scope::{Org, ScopeError};
use byok_core::{KeyId, ScopeId, ScopeKey};
use serde_json::json;

use super::cache::Evictions;
use super::grace::GraceEnd;
use super::org_cell::OrgCell;
use super::tokens::Authenticated;
use super::{Result, Service, ServiceError};
use crate::store::{self, audit};

/// A key resolved for a use after waits, with what [`Service::still_usable`] checks then.
pub(crate) struct ForUse {
    /// The key.
    pub key: Arc<ScopeKey>,
    /// The org's eviction count read before it was resolved.
    since: Evictions,
    /// The freshness of the root it came from.
    root: Freshness,
}

impl Service {
    /// Key `key` of the org in `cell`, admitted for a data operation: the guard (see
    /// [`Self::admit`]) is held, and the scope's state and the version were checked once, on
    /// the state it keeps published. The common case (the key is cached) takes one check and
    /// no await but the gate's; otherwise the key is resolved first (a KMS call may be made, so
    /// no gate is held meanwhile) and then admitted.
    pub(crate) async fn admitted_key<'a>(
        &self,
        cell: &'a OrgCell,
        key: KeyId,
        who: &Authenticated,
    ) -> Result<(Arc<ScopeKey>, tokio::sync::RwLockReadGuard<'a, ()>)> {
        {
            let guard = cell.gate.read().await;
            // As in `admit`: a cell taken out of use may hold a state from before a pause, and
            // the key it finds may have been put back by a resolve that raced the pause.
            if cell.stale.load(Ordering::SeqCst) {
                return Err(ServiceError::Reloading);
            }
            if self.replica_behind() {
                return Err(ServiceError::ReplicaBehind);
            }
            let snap = cell.snapshot();
            check_live(&snap, key)?;
            // The freshness is dropped here: kept in the `if let`, it would be held across the
            // awaits below and grow every data call's future.
            let hit = self.fresh(cell, key).map(|(k, _)| k);
            if let Some(k) = hit {
                let mut waited = false;
                if !self.granted_in_memory(who) {
                    Box::pin(self.still_in_force(who)).await?;
                    waited = true;
                }
                self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                // Admitted: marked before the key is used (a map lookup when already marked).
                waited |= self.mark_use(snap.id(), key.scope).await?;
                // A wait for the store (a token's row, a usage mark's write) can be long: a
                // denial that evicted the key meanwhile, or its TTL's end, is obeyed here, as
                // the key leaves. The gate held keeps pauses and revokes out already.
                if waited && self.fresh(cell, key).is_none() {
                    return Err(ServiceError::Reloading);
                }
                return Ok((k, guard));
            }
        }
        // The miss is boxed: its state (a KMS call, audit writes) would otherwise size the
        // future of every data call, hits included.
        Box::pin(async {
            let org = cell.snapshot().id();
            // Read before the holder is asked. Between its answer and the key's use come waits
            // for the store (the unwrap's audit write, the token's row, the usage mark): a
            // denial recorded by then evicted the org, and is obeyed as on a hit. The call is
            // decided again, and its retry asks the holder anew (a withdrawn CMK refuses).
            // Its root's TTL (or grace) may end during those waits too: past it the key is
            // not used either (core's `may_use`; with TTL 0 a call uses its own answer).
            let k = self.resolve_for_use(cell, key).await?;
            let guard = self.admit(cell, &[key], who).await?;
            self.mark_use(org, key.scope).await?;
            self.still_usable(cell, org, [&k])?;
            Ok((k.key, guard))
        })
        .await
    }

    /// Resolves `key` for a call that uses it only after waits (the gate, a usage mark, the
    /// store's writer), then asks [`Self::still_usable`].
    pub(super) async fn resolve_for_use(&self, cell: &OrgCell, key: KeyId) -> Result<ForUse> {
        // Read before the holder is asked: see `admitted_key`.
        let since = self.cache.evictions(cell.snapshot().id());
        let (key, root) = self.resolve(cell, key).await?;
        Ok(ForUse { key, since, root })
    }

    /// `Reloading` if keys resolved by [`Self::resolve_for_use`] may no longer be used: the
    /// org's keys were evicted since (a denial recorded meanwhile: the call is decided again,
    /// and its retry asks the holder anew, which refuses), or a root's TTL (or grace) ended
    /// during the waits (core's `may_use`). Called after the last wait, before the keys leave.
    pub(super) fn still_usable<'k>(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        keys: impl IntoIterator<Item = &'k ForUse>,
    ) -> Result<()> {
        let (policy, now) = (self.cache_policy(cell), self.now());
        let usable =
            |k: &ForUse| !self.cache.evicted_since(org, k.since) && policy.may_use(k.root, now);
        if keys.into_iter().all(usable) {
            Ok(())
        } else {
            Err(ServiceError::Reloading)
        }
    }

    /// The newest key of `scope`, admitted as by [`Self::admitted_key`]: an unknown scope is
    /// `not found`, a paused or revoked one the typed error naming the scope that decided it.
    pub(crate) async fn admitted_current_key<'a>(
        &self,
        cell: &'a OrgCell,
        scope: ScopeId,
        who: &Authenticated,
    ) -> Result<(Arc<ScopeKey>, tokio::sync::RwLockReadGuard<'a, ()>)> {
        let key = {
            let snap = cell.snapshot();
            if snap.scope(scope).is_none() {
                return Err(ServiceError::NotFound("scope not found".into()));
            }
            snap.current_key_id(scope)?
        };
        self.admitted_key(cell, key, who).await
    }

    /// Resolves `key` of `org`: from the cache, or from the root key down (unwrapping the root
    /// if needed). The scope's effective state and the version's liveness are checked on every
    /// call, cached or not. A resolved child key is cached only until its root expires.
    pub async fn scope_key(&self, cell: &OrgCell, key: KeyId) -> Result<Arc<ScopeKey>> {
        Ok(self.resolve(cell, key).await?.0)
    }

    /// [`Self::scope_key`], with the freshness of the root it came from (grace included): what
    /// decides how long the key may still be used.
    async fn resolve(&self, cell: &OrgCell, key: KeyId) -> Result<(Arc<ScopeKey>, Freshness)> {
        let snap = cell.snapshot();
        check_live(&snap, key)?;
        if let Some(hit) = self.fresh(cell, key) {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(hit);
        }
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        // The eviction counts, then the state they go with: a transition publishes its state
        // before it evicts, so one that evicts after this read finds what is fetched below
        // kept out of the cache, and one that evicted before it is in the state read next.
        // (Read after the state, a pause between the two would leave a key cached that was
        // unwrapped on the state before it.)
        let since = self.cache.evictions(snap.id());
        // A cell retired meanwhile (another replica's change heard, an interrupted one here)
        // keeps its old state: nothing is unwrapped on it. `forget_cell` marks it before it
        // evicts, so an eviction this read missed has left the mark.
        if cell.stale.load(Ordering::SeqCst) {
            return Err(ServiceError::Reloading);
        }
        let snap = cell.snapshot();
        check_live(&snap, key)?;
        let policy = self.cache_policy(cell);
        let root_id = snap.root_of(key)?;
        let (root, freshness) = self.root(cell, &snap, root_id, &policy, since).await?;
        if root_id == key {
            return Ok((root, freshness));
        }
        let k = Arc::new(snap.resolve(key, &root)?);
        // A child inherits its root's last unwrap: it never outlives it, grace included.
        let f = Freshness::unwrapped(freshness.unwrapped_at);
        self.cache.put(
            snap.id(),
            k.clone(),
            f,
            policy.keep_until(f.unwrapped_at),
            self.now(),
            since,
        );
        Ok((k, freshness))
    }

    /// `key` from the cache, with its freshness, if it is within its TTL now.
    fn fresh(&self, cell: &OrgCell, key: KeyId) -> Option<(Arc<ScopeKey>, Freshness)> {
        let now = self.now();
        let c = self.cache.get(key, now)?;
        self.cache_policy(cell)
            .is_fresh(c.freshness.unwrapped_at, now)
            .then_some((c.key, c.freshness))
    }

    /// Root `root_id` as core's rule ([`byok_core::grace`]) allows it now: cached within its
    /// TTL; or unwrapped again from the default holder (one request per org asks, the others
    /// wait for its answer); or, when that fails because the KMS is unreachable and the org
    /// chose an outage grace, the cached root past its TTL, until TTL + grace after its last
    /// successful unwrap. A denial evicts the org's keys and serves nothing; an evicted entry is
    /// never served again. Returns the root with its freshness.
    ///
    /// `since` is the org's eviction counts, read before `snap`: an eviction after it keeps
    /// what this fetches out of the cache.
    async fn root(
        &self,
        cell: &OrgCell,
        snap: &Org,
        root_id: KeyId,
        policy: &CachePolicy,
        since: Evictions,
    ) -> Result<(Arc<ScopeKey>, Freshness)> {
        let org = snap.id();
        if let Some(r) = self.cached_root(cell, root_id, policy) {
            return Ok(r);
        }
        if policy.ttl.is_zero() {
            // Nothing is kept: no one to wait for, nothing to fall back on.
            let (r, answered) = self.unwrap_root(cell, snap, root_id).await?;
            return Ok((Arc::new(r), Freshness::unwrapped(answered)));
        }
        let _turn = cell.unwrap_turn.lock().await;
        // Another request may have refreshed it (or failed to) while this one waited.
        if let Some(r) = self.cached_root(cell, root_id, policy) {
            return Ok(r);
        }
        // The wait may have been a KMS call long: the holder is asked on the state published
        // now, so a pause or revoke of the org made meanwhile asks it nothing. A denial (or
        // any eviction) after `since`, recorded while the answer is on its way or being
        // audited, keeps the answer out of the cache; it is still returned, and a data call
        // then refuses to use it and asks again ([`Self::admitted_key`]).
        let now_published = cell.snapshot();
        // Retired while this waited for its turn: its state may be one storage no longer has.
        if cell.stale.load(Ordering::SeqCst) {
            return Err(ServiceError::Reloading);
        }
        let answer = self.unwrap_root(cell, &now_published, root_id).await;
        let now = self.now();
        let err = match answer {
            Ok((r, answered)) => {
                let r = Arc::new(r);
                // Its TTL runs from the holder's answer, not from after the audit write that
                // followed it (which can wait seconds for the store's writer): a withdrawal
                // just after that answer ends its use within the TTL, as stated.
                let f = Freshness::unwrapped(answered);
                let kept =
                    self.cache
                        .put(org, r.clone(), f, policy.keep_until(answered), now, since);
                if kept {
                    let by = now_published.default_holder();
                    self.end_grace(cell, org, GraceEnd::Recovered { by, since })
                        .await?;
                }
                return Ok((r, f));
            }
            Err(ServiceError::Kms(e)) => e,
            Err(other) => return Err(other),
        };
        // The entry as it is now: one evicted while the KMS was asked stays evicted.
        let cached = self.cache.get(root_id, now);
        match policy.after_failure(cached.as_ref().map(|c| c.freshness), err.kind, now) {
            AfterFailure::Stale { freshness, .. } => {
                if let Some(c) = cached
                    && self.cache.set_freshness(root_id, freshness)
                {
                    self.serving_in_grace(cell, org, snap.default_holder(), &err, freshness, since)
                        .await?;
                    return Ok((c.key, freshness));
                }
                Err(err.into())
            }
            AfterFailure::Evict => {
                // `kms_answered` evicted already; a denial wins whatever the class said there.
                self.cache.evict_org(org);
                self.end_grace(cell, org, GraceEnd::Denied).await?;
                Err(err.into())
            }
            AfterFailure::Fail => {
                self.cache.evict_key(root_id);
                self.expire_grace(cell, org).await?;
                Err(err.into())
            }
        }
    }

    /// Root `root_id` from the cache, if core's rule lets it serve now without asking the KMS:
    /// within its TTL, or in grace with a refresh failed less than the retry interval ago.
    fn cached_root(
        &self,
        cell: &OrgCell,
        root_id: KeyId,
        policy: &CachePolicy,
    ) -> Option<(Arc<ScopeKey>, Freshness)> {
        let now = self.now();
        let c = self.cache.get(root_id, now)?;
        match policy.lookup(c.freshness, now) {
            Lookup::Fresh => Some((c.key, c.freshness)),
            Lookup::Stale => {
                self.served_stale(cell);
                Some((c.key, c.freshness))
            }
            Lookup::Refresh => None,
            Lookup::Expired => {
                self.cache.evict_key(root_id);
                None
            }
        }
    }

    /// The newest key of `scope` in `org`, resolved (its effective state checked) for a use
    /// after waits ([`Self::resolve_for_use`]).
    pub(crate) async fn current_key(
        &self,
        org: ScopeId,
        scope: ScopeId,
    ) -> Result<(Arc<OrgCell>, ForUse)> {
        let cell = self.org(org).await?;
        let key_id = {
            let snap = cell.snapshot();
            if snap.scope(scope).is_none() {
                return Err(ServiceError::NotFound("scope not found".into()));
            }
            // Paused or revoked: the typed error naming the scope that decided it.
            snap.check_usable(scope)?;
            snap.current_key_id(scope)?
        };
        let key = self.resolve_for_use(&cell, key_id).await?;
        Ok((cell, key))
    }

    /// Opens root version `root.version` from the default holder (the managed key locally, a
    /// CMK through its KMS), and records it in the audit log: every unwrap is an event. Also
    /// returns when the holder answered (the service's clock), which its TTL runs from.
    pub(super) async fn unwrap_root(
        &self,
        cell: &OrgCell,
        org: &Org,
        root: KeyId,
    ) -> Result<(ScopeKey, Duration)> {
        self.unwrap_root_with(cell, org, org.default_holder(), root)
            .await
    }

    /// Opens root version `root.version` from `holder`'s copy, at this moment (a KMS call for a
    /// CMK, never the cache), audited like every unwrap; and when the holder answered.
    pub(super) async fn unwrap_root_with(
        &self,
        cell: &OrgCell,
        org: &Org,
        holder: byok_core::scope::HolderId,
        root: KeyId,
    ) -> Result<(ScopeKey, Duration)> {
        // Every root a holder gives back passes here (data calls, proofs, the way back to the
        // managed key): none while the org is paused, not even one that is then discarded.
        org.check_key_work()?;
        let mut answered = self.now();
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
                let sent = self.cache.evictions(org.id());
                let call = self.kms_call(org.id(), n, &access, "Decrypt");
                let answer = self
                    .kms
                    .unwrap_counted(&access, &copy, root.version, &call.sent)
                    .await;
                answered = self.now();
                self.kms_answered(cell, call, answer.result.as_ref().err(), sent)
                    .await?;
                let secret = answer.result?;
                (
                    ScopeKey::new(root, secret),
                    json!({ "type": "root_unwrapped", "holder": store::holder_name(holder), "version": root.version }),
                )
            }
        };
        self.metrics.root_unwraps.fetch_add(1, Ordering::Relaxed);
        let mut w = self.store.write_org(org.id()).await?;
        audit::append(&mut w, org.id(), store::now_ms(), &event).await?;
        w.commit().await?;
        self.check_root(org, &key).await?;
        Ok((key, answered))
    }
}

/// `key`'s scope is usable (not paused or revoked, nor under such a scope) and its version is
/// live (not retired).
pub(super) fn check_live(org: &Org, key: KeyId) -> Result<()> {
    let scope = org
        .scope(key.scope)
        .ok_or_else(|| ServiceError::NotFound("scope not found".into()))?;
    org.check_usable(key.scope)?;
    if !scope.versions.contains_key(&key.version) {
        return Err(ServiceError::Scope(ScopeError::UnknownVersion(key)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use byok_core::envelope::SealBuffer;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use byok_core::scope::{ScopeError, managed_key};
    use byok_core::{KeyId, ScopeId, SecretBytes};

    use super::super::kms::KmsSettings;
    use super::super::{Service, ServiceError};
    use crate::store::Database;

    /// An org with scope `team` on a database on disk, its keys evicted, and an encrypt on
    /// `team` under way whose root unwrap has been answered and whose audit write waits for the
    /// store's writer, held here (release it by dropping `writer`).
    struct WaitingOnTheWriter {
        svc: std::sync::Arc<Service>,
        org: ScopeId,
        team: ScopeId,
        writer: Option<crate::store::WriteTx>,
        encrypt: tokio::task::JoinHandle<Result<(), ServiceError>>,
        dir: std::path::PathBuf,
    }

    impl WaitingOnTheWriter {
        async fn start(name: &str) -> Self {
            Self::start_with(name, Duration::from_secs(60)).await
        }

        /// [`Self::start`], for an org whose unwrap cache TTL is `ttl`.
        async fn start_with(name: &str, ttl: Duration) -> Self {
            use std::sync::atomic::Ordering;
            let dir = std::env::temp_dir().join(format!(
                "byok-{name}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let db = Database::open_dir(&dir).await.unwrap();
            let svc = std::sync::Arc::new(crate::service::test_service(&db, 3));
            let (org, _) = svc.create_org("org", Some(ttl), None, None).await.unwrap();
            let team = svc.create_scope(org, org, "team").await.unwrap();
            let team = ScopeId::parse_hex(&team.id).unwrap();
            let who = crate::service::test_caller(&svc, org).await;
            svc.cache().evict_org(org);
            let writer = Some(svc.store().write().await.unwrap());
            let unwraps = svc.metrics.root_unwraps.load(Ordering::SeqCst);
            let encrypt = tokio::spawn({
                let svc = svc.clone();
                async move {
                    svc.encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
                        .await
                        .map(|_| ())
                }
            });
            // Counted when the holder has answered, before the audit write.
            while svc.metrics.root_unwraps.load(Ordering::SeqCst) == unwraps {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Self {
                svc,
                org,
                team,
                writer,
                encrypt,
                dir,
            }
        }

        /// Releases the writer and waits for the encrypt's answer.
        async fn finish(&mut self) -> Result<(), ServiceError> {
            self.writer = None;
            (&mut self.encrypt).await.unwrap()
        }
    }

    impl Drop for WaitingOnTheWriter {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The TTL of an unwrapped root runs from the holder's answer, not from the end of the audit
    /// write after it, which waits for the store's one writer (seconds, at worst): else a
    /// withdrawal just after the answer would be served past the TTL by that wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_roots_ttl_runs_from_the_holders_answer_not_from_its_audit_write() {
        let mut w = WaitingOnTheWriter::start("answered").await;
        let answered_by = w.svc.now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.finish().await.unwrap();
        let snap = w.svc.org(w.org).await.unwrap().snapshot();
        let root = snap.root_of(snap.current_key_id(w.team).unwrap()).unwrap();
        let cached = w.svc.cache().get(root, w.svc.now()).expect("cached");
        assert!(
            cached.freshness.unwrapped_at <= answered_by,
            "the TTL runs from {:?}, after the answer ({answered_by:?})",
            cached.freshness.unwrapped_at
        );
    }

    /// A root whose unwrap was answered before the org's keys were evicted whole (a denial
    /// recorded meanwhile by the key health check, say), and whose audit write came after, is
    /// neither put back in the cache nor used: the call is decided again and asks the holder
    /// anew (here the managed key, which answers; a withdrawn CMK would refuse), and only that
    /// second answer is cached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_root_answered_before_an_eviction_is_neither_cached_nor_used() {
        use std::sync::atomic::Ordering;
        let mut w = WaitingOnTheWriter::start("evicted").await;
        let unwraps = w.svc.metrics.root_unwraps.load(Ordering::SeqCst);
        let evicted_at = w.svc.now();
        w.svc.cache().evict_org(w.org);
        w.finish().await.unwrap();
        assert_eq!(
            w.svc.metrics.root_unwraps.load(Ordering::SeqCst),
            unwraps + 1,
            "the key answered before the eviction was used, or not asked for again"
        );
        let snap = w.svc.org(w.org).await.unwrap().snapshot();
        let root = snap.root_of(snap.current_key_id(w.team).unwrap()).unwrap();
        let cached = w
            .svc
            .cache()
            .get(root, w.svc.now())
            .expect("the retry's root");
        assert!(
            cached.freshness.unwrapped_at >= evicted_at,
            "the eviction was undone"
        );
    }

    /// A root answered within its TTL whose use then waits for the store's writer past that
    /// TTL is not used (a withdrawal at the key holder after the answer would be obeyed late by
    /// the wait): the call is decided again and asks the holder anew.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_root_whose_ttl_ends_while_its_use_waits_is_not_used() {
        use std::sync::atomic::Ordering;
        let ttl = Duration::from_millis(500);
        let mut w = WaitingOnTheWriter::start_with("ttl-ends", ttl).await;
        let unwraps = w.svc.metrics.root_unwraps.load(Ordering::SeqCst);
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        w.finish().await.unwrap();
        assert_eq!(
            w.svc.metrics.root_unwraps.load(Ordering::SeqCst),
            unwraps + 1,
            "a root past its TTL was used"
        );
    }

    /// A cached key whose use waits for the store's writer (the token's first usage mark in the
    /// window) while a denial evicts the org's keys is not used after that wait: the call is
    /// decided again, and its retry asks the key holder (here the managed key, which answers;
    /// a CMK that was withdrawn would refuse).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_evicted_while_its_use_waits_for_the_writer_is_not_used() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = std::sync::Arc::new(crate::service::test_service(&db, 3));
        let (org, team) = crate::service::test_team(&svc, None).await;
        let warm = crate::service::test_caller(&svc, org).await;
        let encrypt = |who: crate::service::tokens::Authenticated| {
            let svc = svc.clone();
            // As a request: the token is the actor, so the use needs its mark.
            crate::store::audit::with_actor_slot(async move {
                crate::store::audit::set_actor(who.grant.clone());
                svc.encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
                    .await
                    .map(drop)
            })
        };
        encrypt(warm).await.unwrap();
        // A second token: its first use of the scope writes a mark, and waits for the writer.
        let who = crate::service::test_caller(&svc, org).await;
        let unwraps = || {
            svc.metrics
                .root_unwraps
                .load(std::sync::atomic::Ordering::SeqCst)
        };
        let before = unwraps();
        let writer = svc.store().write().await.unwrap();
        let waiting = tokio::spawn(encrypt(who));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the use did not wait for its mark");
        svc.cache().evict_org(org);
        drop(writer);
        waiting.await.unwrap().unwrap();
        assert_eq!(unwraps(), before + 1, "the evicted key was used");
    }

    /// A request holding the org's cell while another replica's change arrives (here: its
    /// root unwrap waits for the store's writer) is not admitted on the state it held, and is
    /// not refused either: it is decided again on the org as storage has it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_caught_by_another_replicas_change_is_decided_again() {
        let mut w = WaitingOnTheWriter::start("bystander").await;
        let held = w.svc.org(w.org).await.unwrap();
        assert!(w.svc.org_changed(w.org, held.version() + 1));
        let answer = w.finish().await;
        assert!(answer.is_ok(), "{answer:?}");
    }

    /// A resolve that checked the scope before a pause can put its key in the cache after the
    /// pause evicted it. The data path checks the published state on a cache hit too, so that
    /// key opens nothing.
    /// A request whose root unwrap waited its turn behind another's (a KMS call, seconds at
    /// worst) asks the holder on the state published when its turn comes: a pause of the org
    /// meanwhile asks the holder nothing and leaves no root in the cache. Before, it asked on
    /// the state it started with and cached the answer past the pause's eviction, for a TTL,
    /// with a `root_unwrapped` in the log after the pause.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_root_waited_for_across_a_pause_is_neither_asked_for_nor_cached() {
        use std::sync::atomic::Ordering::SeqCst;
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = std::sync::Arc::new(crate::service::test_service(&db, 3));
        let (org, team) = crate::service::test_team(&svc, None).await;
        let who = crate::service::test_caller(&svc, org).await;
        svc.cache().evict_org(org);
        let cell = svc.org(org).await.unwrap();
        // Another request's turn: its KMS call in flight.
        let turn = cell.unwrap_turn.lock().await;
        let (misses, unwraps) = (
            svc.metrics.cache_misses.load(SeqCst),
            svc.metrics.root_unwraps.load(SeqCst),
        );
        let encrypt = tokio::spawn({
            let svc = svc.clone();
            async move {
                svc.encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
                    .await
                    .map(drop)
            }
        });
        while svc.metrics.cache_misses.load(SeqCst) == misses {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        svc.pause(org, org).await.unwrap();
        drop(turn);
        let answer = encrypt.await.unwrap();
        assert!(
            matches!(answer, Err(ServiceError::Scope(ScopeError::Paused { by, .. })) if by == org),
            "{answer:?}"
        );
        assert_eq!(
            svc.metrics.root_unwraps.load(SeqCst),
            unwraps,
            "the holder was asked after the pause"
        );
        assert!(
            svc.cache().get(KeyId::new(org, 1), svc.now()).is_none(),
            "the root was cached after the pause"
        );
    }

    #[tokio::test]
    async fn a_key_cached_after_a_pause_opens_nothing() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let managed = managed_key(SecretBytes::random(&mut rand::rng()), 1);
        let svc =
            Service::new(db, managed, Duration::from_secs(60), KmsSettings::default()).unwrap();
        let (org, team) = crate::service::test_team(&svc, None).await;
        let who = crate::service::test_caller(&svc, org).await;
        let ct = svc
            .encrypt(
                &who,
                org,
                team,
                SealBuffer::copy_of(b"secret"),
                BTreeMap::new(),
            )
            .await
            .unwrap();
        let cell = svc.org(org).await.unwrap();
        let key = svc
            .scope_key(&cell, cell.snapshot().current_key_id(team).unwrap())
            .await
            .unwrap();
        svc.pause(org, team).await.unwrap();
        assert_eq!(svc.cache().len(), 1, "the pause evicted the team's key");
        // The late resolve puts it back.
        let now = svc.now();
        svc.cache().put(
            org,
            key,
            byok_core::grace::Freshness::unwrapped(now),
            now + Duration::from_secs(60),
            now,
            svc.cache().evictions(org),
        );
        let paused = |r: Result<Vec<u8>, ServiceError>| matches!(r, Err(ServiceError::Scope(ScopeError::Paused { by, .. })) if by == team);
        assert!(paused(
            svc.encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
                .await
        ));
        assert!(paused(
            svc.decrypt(&who, org, ct.clone(), BTreeMap::new())
                .await
                .map(|pt| pt.to_vec())
        ));
    }
}
