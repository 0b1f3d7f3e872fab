//! One org in memory, and how it changes: loaded on first use, changed only by a transition
//! that runs on a copy, is written through the effect executor in one transaction
//! ([`super::apply`]), and is published only once committed, so no request ever sees a state
//! that was not committed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use byok_core::scope::{Effect, Org};
use byok_core::{KeyId, ScopeId};

use super::apply::{self, Extra};
use super::resolve::check_live;
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
    /// At most one job runner per org (API call, start-up resume or periodic retry).
    pub(super) job_runner: tokio::sync::Mutex<()>,
    /// Transitions of one org take turns.
    pub(super) turn: tokio::sync::Mutex<()>,
    /// Withdrawal wins over work in flight: a transition commits and publishes its new state
    /// holding this for writing; a data operation checks the published state and releases key
    /// material (and appends its audit event) holding it for reading ([`Service::admit`]). So
    /// nothing that checked the state before a pause or revoke committed hands out a key after
    /// it, and the audit log orders them the way they happened.
    pub(super) gate: tokio::sync::RwLock<()>,
    /// Set while the org serves cached roots past their TTL because its KMS is unreachable
    /// (`grace.rs`).
    pub(super) outage: std::sync::Mutex<Option<super::grace::Outage>>,
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

    /// Org `id`, loading it on first use.
    pub async fn org(&self, id: ScopeId) -> Result<Arc<OrgCell>> {
        if let Some(c) = self.orgs.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(c.clone());
        }
        let (org, meta, names) = org_rows::load(self.store.pool(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("organization not found".into()))?;
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
            job_runner: tokio::sync::Mutex::new(()),
            turn: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
            outage: std::sync::Mutex::new(None),
        });
        Ok(self
            .orgs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert(cell)
            .clone())
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
}
