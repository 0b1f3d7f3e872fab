//! [`Store`] in memory, for tests: the rows of orgs as plain maps, refusing what does not fit
//! them the way the database does ([`StoreError::Corrupt`]), and [`MemoryStore::restore`] to
//! rebuild an org from them with [`Org::restore`].

use std::collections::BTreeMap;

use byok_core::scope::{
    Holder, HolderId, HolderStatus, Org, RewrapJob, RootCheck, ScopeError, ScopeState, StoredScope,
    WrappedScopeKey,
};
use byok_core::{KeyId, ScopeId};
use serde_json::Value;

use super::{Result, Store, StoreError, data_keys::RetireJob, keys::CmkRow};

/// Rows of one store (orgs are told apart by the scopes' ids; tests use one org).
#[derive(Default)]
pub struct MemoryStore {
    scopes: BTreeMap<ScopeId, (StoredScope, String)>,
    holders: BTreeMap<HolderId, Holder>,
    default: Option<HolderId>,
    job: Option<RewrapJob>,
    /// Stored data keys per scope (a count is enough here).
    pub data_keys: BTreeMap<ScopeId, u64>,
    /// Attached customer keys' rows.
    pub cmks: Vec<CmkRow>,
    /// The host's retirement, if one runs.
    pub retirement: Option<RetireJob>,
    /// The audit log.
    pub audit: Vec<Value>,
}

fn bad(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl MemoryStore {
    fn scope(&mut self, id: ScopeId) -> Result<&mut StoredScope> {
        self.scopes
            .get_mut(&id)
            .map(|(s, _)| s)
            .ok_or_else(|| bad("unknown scope"))
    }

    /// Drops org `org`'s root check values (rows as a byok older than them left them).
    #[cfg(test)]
    pub fn forget_root_checks(&mut self, org: ScopeId) {
        if let Some((s, _)) = self.scopes.get_mut(&org) {
            s.checks.clear();
        }
    }

    /// The org the rows hold.
    pub fn restore(&self, org: ScopeId) -> std::result::Result<Org, ScopeError> {
        Org::restore(
            org,
            self.scopes.values().map(|(s, _)| s.clone()).collect(),
            self.holders.values().cloned().collect(),
            self.default
                .ok_or(ScopeError::Inconsistent("no default holder"))?,
            self.job.clone(),
        )
    }
}

impl Store for MemoryStore {
    async fn create_scope(
        &mut self,
        _org: ScopeId,
        scope: ScopeId,
        parent: Option<ScopeId>,
        name: &str,
    ) -> Result<()> {
        let row = StoredScope {
            id: scope,
            parent,
            state: ScopeState::Active,
            versions: BTreeMap::new(),
            checks: BTreeMap::new(),
        };
        if self.scopes.insert(scope, (row, name.to_owned())).is_some() {
            return Err(bad("scope stored twice"));
        }
        Ok(())
    }

    async fn set_scope_state(
        &mut self,
        _org: ScopeId,
        scope: ScopeId,
        state: ScopeState,
    ) -> Result<()> {
        self.scope(scope)?.state = state;
        Ok(())
    }

    async fn put_key(
        &mut self,
        _org: ScopeId,
        key: KeyId,
        wrapped: Option<(KeyId, &[u8])>,
    ) -> Result<()> {
        let w = wrapped.map(|(under, w)| WrappedScopeKey {
            under,
            wrapped: w.to_vec(),
        });
        self.scope(key.scope)?.versions.insert(key.version, w);
        Ok(())
    }

    async fn put_root_check(
        &mut self,
        org: ScopeId,
        version: u32,
        check: &RootCheck,
    ) -> Result<()> {
        let scope = self.scope(org)?;
        if scope.parent.is_some() || scope.versions.get(&version) != Some(&None) {
            return Err(bad("check of an unknown root version"));
        }
        scope.checks.insert(version, *check);
        Ok(())
    }

    async fn destroy_key(&mut self, _org: ScopeId, key: KeyId) -> Result<()> {
        let scope = self.scope(key.scope)?;
        scope.checks.remove(&key.version);
        scope
            .versions
            .remove(&key.version)
            .map(drop)
            .ok_or_else(|| bad("destroyed an unknown key version"))
    }

    async fn destroy_data_keys(&mut self, _org: ScopeId, scopes: &[ScopeId]) -> Result<()> {
        for s in scopes {
            self.data_keys.remove(s);
        }
        Ok(())
    }

    async fn put_holder(
        &mut self,
        _org: ScopeId,
        holder: HolderId,
        status: HolderStatus,
    ) -> Result<()> {
        self.holders
            .entry(holder)
            .or_insert_with(|| Holder {
                id: holder,
                status,
                copies: BTreeMap::new(),
            })
            .status = status;
        Ok(())
    }

    async fn put_root_copy(
        &mut self,
        _org: ScopeId,
        holder: HolderId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<()> {
        self.holders
            .get_mut(&holder)
            .ok_or_else(|| bad("copy of an unknown holder"))?
            .copies
            .insert(version, wrapped.to_vec());
        Ok(())
    }

    async fn destroy_root_copy(
        &mut self,
        _org: ScopeId,
        holder: HolderId,
        version: u32,
    ) -> Result<()> {
        self.holders
            .get_mut(&holder)
            .and_then(|h| h.copies.remove(&version))
            .map(drop)
            .ok_or_else(|| bad("destroyed an unknown root copy"))
    }

    async fn set_default(&mut self, _org: ScopeId, holder: HolderId) -> Result<()> {
        self.default = Some(holder);
        Ok(())
    }

    async fn set_job(&mut self, _org: ScopeId, job: Option<&RewrapJob>) -> Result<()> {
        self.job = job.cloned();
        Ok(())
    }

    async fn insert_cmk(&mut self, _org: ScopeId, row: &CmkRow) -> Result<()> {
        self.cmks.push(row.clone());
        Ok(())
    }

    async fn start_retirement(&mut self, _org: ScopeId, job: &RetireJob, _at: i64) -> Result<()> {
        self.retirement = Some(job.clone());
        Ok(())
    }

    async fn data_keys_under(
        &mut self,
        _org: ScopeId,
        scope: ScopeId,
        _version: u32,
    ) -> Result<u64> {
        Ok(self.data_keys.get(&scope).copied().unwrap_or(0))
    }

    async fn end_retirement(&mut self, _org: ScopeId) -> Result<()> {
        self.retirement = None;
        Ok(())
    }

    async fn append_audit(&mut self, _org: ScopeId, _at: i64, event: &Value) -> Result<()> {
        self.audit.push(event.clone());
        Ok(())
    }
}
