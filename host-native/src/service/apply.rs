//! The effect executor: the one place where a transition's outcome reaches storage, caches and
//! jobs.
//!
//! ```text
//! decide   core: Org::pause(..) -> Vec<Effect>      on a copy of the org; nothing written yet
//! write    write(store, effects)                    one transaction, one Store call per effect
//! publish  the copy becomes the live org            under the org's gate (see OrgCell)
//! after    Service::after_commit(..)                evict caches, scrub destroyed keys, run jobs
//! ```
//!
//! The host never compares two org values or reads audit events to find out what changed: each
//! thing it does is named by one effect ([`Effect`]), and the test below replays transitions'
//! effects into an empty in-memory store and compares what it holds with the org core produced.

use std::collections::{BTreeMap, HashSet};

use byok_core::scope::{Effect, JobKind, Org, ScopeError};
use byok_core::{KeyId, ScopeId};
use serde_json::json;

use super::{Result, Service, ServiceError, events};
use crate::store::{self, Store, data_keys::RetireJob, keys::CmkRow};

/// What a transition also writes, in its transaction: the host's own rows beside core's.
pub(crate) enum Extra {
    /// Nothing.
    None,
    /// A newly attached key's row.
    InsertCmk(CmkRow),
    /// The host's part of a version retirement (the data keys to move).
    StartRetire(RetireJob),
    /// The end of a retirement, and how many data keys it moved.
    FinishRetire {
        /// Data keys moved.
        moved: u64,
        /// The scope whose version is retired.
        scope: ScopeId,
        /// The version.
        from: u32,
    },
}

/// What to do once the transaction committed: the effects that act outside storage.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AfterCommit {
    /// Subtrees whose cached keys go ([`Effect::EvictSubtree`]).
    pub evict_subtrees: Vec<ScopeId>,
    /// Key versions whose cached copies go ([`Effect::EvictKey`]).
    pub evict_keys: Vec<KeyId>,
    /// Every cached key of the org goes ([`Effect::EvictOrg`]).
    pub evict_org: bool,
    /// Key material was destroyed: no old copy may survive in the database's files.
    pub scrub: bool,
    /// The job can make progress: run it ([`Effect::RunJob`]).
    pub run_job: bool,
    /// A revoked subtree's stored keys wait for the sweep ([`Effect::DestroyScopeData`]).
    pub sweep: bool,
}

/// Writes a transition of org `org`: first `extra`, then each of `effects` in order, through
/// `store`, in the caller's transaction. `names` names the scopes the transition creates. Returns
/// the effects to apply after the commit.
pub(crate) async fn write<S: Store>(
    store: &mut S,
    org: ScopeId,
    effects: &[Effect],
    names: &BTreeMap<ScopeId, String>,
    extra: &Extra,
    at: i64,
) -> Result<AfterCommit> {
    write_extra(store, org, extra, at).await?;
    let mut after = AfterCommit::default();
    for e in effects {
        after.scrub |= e.destroys();
        match e {
            Effect::CreateScope { scope, parent } => {
                let name = names.get(scope).ok_or_else(|| {
                    ServiceError::Store(store::StoreError::Corrupt(format!(
                        "scope {scope} created without a name"
                    )))
                })?;
                store.create_scope(org, *scope, *parent, name).await?;
            }
            Effect::SetScopeState { scope, state } => {
                store.set_scope_state(org, *scope, *state).await?;
            }
            Effect::PutRootVersion { version, check } => {
                store.put_key(org, KeyId::new(org, *version), None).await?;
                store.put_root_check(org, *version, check).await?;
            }
            Effect::PutRootCheck { version, check } => {
                store.put_root_check(org, *version, check).await?;
            }
            Effect::PutWrappedKey {
                key,
                under,
                wrapped,
            } => store.put_key(org, *key, Some((*under, wrapped))).await?,
            Effect::DestroyWrappedKey { key } => store.destroy_key(org, *key).await?,
            Effect::DestroyScopeData { scopes } => {
                store.destroy_data_keys(org, scopes).await?;
                after.sweep = true;
            }
            Effect::PutHolder { holder, status } => {
                store.put_holder(org, *holder, *status).await?;
            }
            Effect::PutRootCopy {
                holder,
                version,
                wrapped,
            } => store.put_root_copy(org, *holder, *version, wrapped).await?,
            Effect::DestroyRootCopy { holder, version } => {
                store.destroy_root_copy(org, *holder, *version).await?;
            }
            Effect::SetDefault(holder) => store.set_default(org, *holder).await?,
            Effect::StartJob(job) | Effect::UpdateJob(job) => {
                store.set_job(org, Some(job)).await?;
            }
            Effect::FinishJob(kind) | Effect::CancelJob(kind) => {
                store.set_job(org, None).await?;
                if let JobKind::RetireVersion(_) = kind {
                    // The host's part of the retirement goes with core's job.
                    store.end_retirement(org).await?;
                }
            }
            Effect::Audit(a) => store.append_audit(org, at, &events::core_event(a)).await?,
            Effect::EvictSubtree { scope } => after.evict_subtrees.push(*scope),
            Effect::EvictKey { key } => after.evict_keys.push(*key),
            Effect::EvictOrg => after.evict_org = true,
            Effect::RunJob => after.run_job = true,
        }
    }
    Ok(after)
}

async fn write_extra<S: Store>(store: &mut S, org: ScopeId, extra: &Extra, at: i64) -> Result<()> {
    match extra {
        Extra::None => {}
        Extra::InsertCmk(row) => store.insert_cmk(org, row).await?,
        Extra::StartRetire(job) => store.start_retirement(org, job, at).await?,
        Extra::FinishRetire { moved, scope, from } => {
            // Nothing may have landed under the version since the last batch.
            let left = store.data_keys_under(org, *scope, *from).await?;
            if left > 0 {
                return Err(ServiceError::Scope(ScopeError::VersionInUse {
                    key: KeyId::new(*scope, *from),
                    children: usize::try_from(left).unwrap_or(usize::MAX),
                }));
            }
            store
                .append_audit(
                    org,
                    at,
                    &json!({ "type": "data_keys_rewrapped", "count": moved }),
                )
                .await?;
        }
    }
    Ok(())
}

impl Service {
    /// Drops the cached keys a committed transition's effects named, on the org now `org`. Runs
    /// before the org's gate opens again, so no request admitted after the change finds a key
    /// the change withdrew.
    pub(super) fn evict(&self, org: &Org, after: &AfterCommit) {
        if after.evict_org {
            self.cache.evict_org(org.id());
        }
        if !after.evict_subtrees.is_empty() || !after.evict_keys.is_empty() {
            let scopes: HashSet<ScopeId> = after
                .evict_subtrees
                .iter()
                .flat_map(|s| org.subtree(*s))
                .collect();
            self.cache
                .evict_withdrawn(org.id(), &scopes, &after.evict_keys);
        }
    }

    /// The rest, once the new state is published: scrub destroyed keys from the database's
    /// files, and run the job if it can go on.
    pub(super) async fn after_publish(&self, org: ScopeId, after: &AfterCommit) {
        if after.scrub {
            // Destroyed keys must not live on in the write-ahead log.
            self.store.scrub().await;
        }
        if after.run_job || after.sweep {
            self.kick(org);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{Database, data_keys, org_rows};
    use byok_core::scope::{HolderId, JobStep, managed_key};
    use byok_core::{ScopeKey, SecretBytes};

    /// A store under test: effects go in, an org comes out.
    trait Rows {
        async fn apply(
            &mut self,
            org: ScopeId,
            effects: &[Effect],
            names: &[ScopeId],
        ) -> AfterCommit;
        async fn restore(&self, org: ScopeId) -> Org;
        /// Stores a data key under version 1 of `scope`; counts those left.
        async fn add_data_key(&mut self, org: ScopeId, scope: ScopeId);
        async fn data_keys(&self, org: ScopeId) -> u64;
        /// Drops the root versions' check values, as a byok older than them stored the rows.
        async fn forget_root_checks(&mut self, org: ScopeId);
    }

    impl Rows for MemoryStore {
        async fn apply(
            &mut self,
            org: ScopeId,
            effects: &[Effect],
            names: &[ScopeId],
        ) -> AfterCommit {
            let names = names.iter().map(|s| (*s, format!("{s}"))).collect();
            write(self, org, effects, &names, &Extra::None, 7)
                .await
                .unwrap()
        }
        async fn restore(&self, org: ScopeId) -> Org {
            MemoryStore::restore(self, org).unwrap()
        }
        async fn add_data_key(&mut self, _org: ScopeId, scope: ScopeId) {
            *self.data_keys.entry(scope).or_default() += 1;
        }
        async fn data_keys(&self, _org: ScopeId) -> u64 {
            self.data_keys.values().sum()
        }
        async fn forget_root_checks(&mut self, org: ScopeId) {
            self.forget_root_checks(org);
        }
    }

    impl Rows for Database {
        async fn apply(
            &mut self,
            org: ScopeId,
            effects: &[Effect],
            names: &[ScopeId],
        ) -> AfterCommit {
            let names = names.iter().map(|s| (*s, format!("{s}"))).collect();
            let new = !org_rows::org_ids(self.pool()).await.unwrap().contains(&org);
            let mut w = self.write().await.unwrap();
            if new {
                let meta = store::OrgMeta {
                    name: "org".into(),
                    unwrap_cache_ttl_ms: 0,
                    created_at: 0,
                    lease_ttl_ms: 0,
                    outage_grace_ms: 0,
                    max_unwrap_cache_ttl_ms: 0,
                    max_lease_ttl_ms: 0,
                };
                org_rows::insert_org(&mut w.tx, org, &meta).await.unwrap();
            }
            let after = write(&mut w, org, effects, &names, &Extra::None, 7)
                .await
                .unwrap();
            w.commit().await.unwrap();
            after
        }
        async fn restore(&self, org: ScopeId) -> Org {
            org_rows::load(self.pool(), org).await.unwrap().unwrap().0
        }
        async fn add_data_key(&mut self, org: ScopeId, scope: ScopeId) {
            let mut w = self.write().await.unwrap();
            let row = (format!("{:032x}", rand::random::<u128>()), vec![0; 140]);
            data_keys::insert(&mut w.tx, org, KeyId::new(scope, 1), &[row], 0)
                .await
                .unwrap();
            w.commit().await.unwrap();
        }
        /// The keys a reader finds: a revoked scope's rows wait for the sweep, but none of
        /// them reads (its scope key version is gone).
        async fn data_keys(&self, org: ScopeId) -> u64 {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM data_keys d WHERE d.org_id = $1 AND EXISTS (SELECT 1 \
                 FROM scope_keys k WHERE k.org_id = d.org_id AND k.scope_id = d.scope_id \
                 AND k.version = d.version)",
            )
            .bind(org.to_string())
            .fetch_one(self.pool())
            .await
            .unwrap();
            n as u64
        }
        async fn forget_root_checks(&mut self, org: ScopeId) {
            sqlx::query("UPDATE scope_keys SET root_check = NULL WHERE org_id = $1")
                .bind(org.to_string())
                .execute(self.pool())
                .await
                .unwrap();
        }
    }

    fn sid(n: u8) -> ScopeId {
        ScopeId::from_bytes([n; 16])
    }

    /// Runs `f` on `org`, writes its effects to `rows`, and checks that the rows now rebuild
    /// the very org value core holds.
    async fn step<T>(
        org: &mut Org,
        rows: &mut impl Rows,
        names: &[ScopeId],
        f: impl FnOnce(&mut Org) -> std::result::Result<(T, Vec<Effect>), byok_core::Error>,
    ) -> (T, AfterCommit) {
        let (out, effects) = f(org).unwrap();
        let after = rows.apply(org.id(), &effects, names).await;
        assert_eq!(&rows.restore(org.id()).await, &*org, "after {effects:?}");
        (out, after)
    }

    /// Every kind of transition, applied only through its effects to an empty store, rebuilds
    /// the org after each step; the after-commit part is exactly what the effects named.
    async fn replay(rows: &mut impl Rows) {
        let mut rng = rand::rng();
        let managed = managed_key(SecretBytes::random(&mut rng), 1);
        let (mut org, root, effects) = Org::create(sid(1), &managed, &mut rng).unwrap();
        rows.apply(sid(1), &effects, &[sid(1)]).await;
        assert_eq!(rows.restore(sid(1)).await, org);
        // Rows from a byok older than check values: the check is recorded on first use.
        let checker = byok_core::scope::RootChecker::new(&managed);
        rows.forget_root_checks(sid(1)).await;
        org = rows.restore(sid(1)).await;
        assert_eq!(org.unchecked_root_versions(), [1]);
        step(&mut org, rows, &[], |o| {
            Ok(((), o.record_root_check(&checker, &root)?))
        })
        .await;
        assert!(org.unchecked_root_versions().is_empty());

        let r = &mut rng;
        let (team, _) = step(&mut org, rows, &[sid(2)], |o| {
            o.create_scope(sid(2), sid(1), &root, r)
        })
        .await;
        let r = &mut rng;
        step(&mut org, rows, &[sid(3)], |o| {
            o.create_scope(sid(3), sid(2), &team, r)
        })
        .await;
        let (_, after) = step(&mut org, rows, &[], |o| Ok(((), o.pause(sid(2))?))).await;
        assert_eq!(after.evict_subtrees, [sid(2)]);
        step(&mut org, rows, &[], |o| Ok(((), o.resume(sid(2))?))).await;
        // Rotation, then a retirement run through its job.
        let r = &mut rng;
        let (team2, _) = step(&mut org, rows, &[], |o| o.rotate(sid(2), &root, r)).await;
        step(&mut org, rows, &[], |o| Ok(((), o.plan_retire(team.id())?))).await;
        while let Some(s) = org.job().and_then(|j| j.next_batch(1).first().cloned()) {
            let r = &mut rng;
            step(&mut org, rows, &[], |o| {
                Ok(((), o.rewrap_child(&s, &team, &team2, r)?))
            })
            .await;
        }
        let (_, after) = step(&mut org, rows, &[], |o| Ok(((), o.retire(team.id())?))).await;
        assert_eq!(after.evict_keys, [team.id()]);
        assert!(after.scrub);
        // A root rotation with a customer key attached, its KMS answering through the job.
        step(&mut org, rows, &[], |o| Ok(((), o.attach_cmk(1)?))).await;
        let Some(JobStep::WrapRoot { version, .. }) =
            org.job().and_then(|j| j.next_batch(1).first().cloned())
        else {
            panic!("no wrap step")
        };
        step(&mut org, rows, &[], |o| {
            Ok((
                (),
                o.record_root_copy(HolderId::Cmk(1), version, vec![9; 40])?,
            ))
        })
        .await;
        let root2 = ScopeKey::random(KeyId::new(sid(1), 2), &mut rng);
        let copy = org.wrap_root_managed(&managed, &root2, &mut rng).unwrap();
        step(&mut org, rows, &[], |o| {
            Ok(((), o.rotate_root(&root2, copy, &checker)?))
        })
        .await;
        step(&mut org, rows, &[], |o| {
            Ok(((), o.record_root_copy(HolderId::Cmk(1), 2, vec![8; 40])?))
        })
        .await;
        // BYOK, then back to managed.
        let dup = |k: &ScopeKey| ScopeKey::new(k.id(), k.duplicate_secret());
        let roots = [dup(&root), dup(&root2)];
        let proof = org
            .prove_holder(HolderId::Cmk(1), &roots, &[dup(&root), dup(&root2)])
            .unwrap();
        let (_, after) = step(&mut org, rows, &[], |o| {
            Ok(((), o.set_default(HolderId::Cmk(1), Some(&proof))?))
        })
        .await;
        assert!(after.evict_org && after.scrub, "{after:?}");
        assert!(!org.vendor_can_decrypt());
        let r = &mut rng;
        step(&mut org, rows, &[], |o| {
            Ok(((), o.disable_all(&managed, &roots, r)?))
        })
        .await;
        step(&mut org, rows, &[], |o| {
            Ok(((), o.reenable(HolderId::Cmk(1))?))
        })
        .await;
        // Revoke: the subtree's keys and its stored data keys go; the job is untouched.
        rows.add_data_key(sid(1), sid(3)).await;
        assert_eq!(rows.data_keys(sid(1)).await, 1);
        let (_, after) = step(&mut org, rows, &[], |o| {
            Ok(((), o.revoke(sid(2), &sid(2).to_string())?))
        })
        .await;
        assert_eq!(
            rows.data_keys(sid(1)).await,
            0,
            "stored data keys of the subtree"
        );
        assert_eq!(after.evict_subtrees, [sid(2)]);
        assert!(after.sweep, "{after:?}");
        // Revoking the org destroys every root copy and cancels the job.
        let (_, after) = step(&mut org, rows, &[], |o| {
            Ok(((), o.revoke(sid(1), &sid(1).to_string())?))
        })
        .await;
        assert!(after.scrub && org.job().is_none());
    }

    #[tokio::test]
    async fn effects_alone_rebuild_the_org_in_memory() {
        let mut rows = MemoryStore::default();
        replay(&mut rows).await;
        assert!(rows.audit.len() > 10, "audit events are effects too");
    }

    #[tokio::test]
    async fn effects_alone_rebuild_the_org_in_sqlite() {
        let mut db = Database::open("sqlite::memory:").await.unwrap();
        replay(&mut db).await;
        let verified = store::audit::verify(db.pool(), sid(1)).await.unwrap();
        assert!(verified.ok, "{verified:?}");
    }

    #[tokio::test]
    async fn effects_alone_rebuild_the_org_in_postgres() {
        let Some(mut db) = store::test_postgres().await else {
            return;
        };
        replay(&mut db).await;
        let verified = store::audit::verify(db.pool(), sid(1)).await.unwrap();
        assert!(verified.ok, "{verified:?}");
    }

    /// An effect that does not fit the stored rows fails the write (and so the transaction).
    #[tokio::test]
    async fn an_effect_that_does_not_fit_the_rows_is_refused() {
        let mut store = MemoryStore::default();
        let e = [Effect::SetScopeState {
            scope: sid(4),
            state: byok_core::scope::ScopeState::Paused,
        }];
        let err = write(&mut store, sid(1), &e, &BTreeMap::new(), &Extra::None, 1).await;
        assert!(matches!(
            err,
            Err(ServiceError::Store(store::StoreError::Corrupt(_)))
        ));
        let e = [Effect::CreateScope {
            scope: sid(4),
            parent: None,
        }];
        let err = write(&mut store, sid(1), &e, &BTreeMap::new(), &Extra::None, 1).await;
        assert!(matches!(
            err,
            Err(ServiceError::Store(store::StoreError::Corrupt(m))) if m.contains("without a name")
        ));
    }
}
