//! [`Store`] on SQLite: each call is one statement (or a few) in the transition's transaction.

use byok_core::scope::{HolderId, HolderStatus, RewrapJob, ScopeState};
use byok_core::{KeyId, ScopeId};
use serde_json::Value;

use super::{Result, Store, WriteTx, audit, data_keys, keys, org_rows};

impl Store for WriteTx {
    async fn create_scope(
        &mut self,
        org: ScopeId,
        scope: ScopeId,
        parent: Option<ScopeId>,
        name: &str,
    ) -> Result<()> {
        org_rows::create_scope(&mut self.tx, org, scope, parent, name).await
    }

    async fn set_scope_state(
        &mut self,
        org: ScopeId,
        scope: ScopeId,
        state: ScopeState,
    ) -> Result<()> {
        org_rows::set_scope_state(&mut self.tx, org, scope, state).await
    }

    async fn put_key(
        &mut self,
        org: ScopeId,
        key: KeyId,
        wrapped: Option<(KeyId, &[u8])>,
    ) -> Result<()> {
        org_rows::put_key(&mut self.tx, org, key, wrapped).await
    }

    async fn destroy_key(&mut self, org: ScopeId, key: KeyId) -> Result<()> {
        org_rows::destroy_key(&mut self.tx, org, key).await
    }

    async fn destroy_data_keys(&mut self, org: ScopeId, scopes: &[ScopeId]) -> Result<()> {
        data_keys::delete_scopes(&mut self.tx, org, scopes).await
    }

    async fn put_holder(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        status: HolderStatus,
    ) -> Result<()> {
        org_rows::put_holder(&mut self.tx, org, holder, status).await
    }

    async fn put_root_copy(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<()> {
        org_rows::put_root_copy(&mut self.tx, org, holder, version, wrapped).await
    }

    async fn destroy_root_copy(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        version: u32,
    ) -> Result<()> {
        org_rows::destroy_root_copy(&mut self.tx, org, holder, version).await
    }

    async fn set_default(&mut self, org: ScopeId, holder: HolderId) -> Result<()> {
        org_rows::set_default(&mut self.tx, org, holder).await
    }

    async fn set_job(&mut self, org: ScopeId, job: Option<&RewrapJob>) -> Result<()> {
        org_rows::set_job(&mut self.tx, org, job).await
    }

    async fn insert_cmk(&mut self, org: ScopeId, row: &keys::CmkRow) -> Result<()> {
        keys::insert(&mut self.tx, org, row).await
    }

    async fn start_retirement(
        &mut self,
        org: ScopeId,
        job: &data_keys::RetireJob,
        at: i64,
    ) -> Result<()> {
        data_keys::start_job(&mut self.tx, org, job, at).await
    }

    async fn data_keys_under(&mut self, org: ScopeId, scope: ScopeId, version: u32) -> Result<u64> {
        data_keys::count_under(&mut *self.tx, org, scope, version).await
    }

    async fn end_retirement(&mut self, org: ScopeId) -> Result<()> {
        data_keys::finish_job(&mut self.tx, org).await
    }

    async fn append_audit(&mut self, org: ScopeId, at: i64, event: &Value) -> Result<()> {
        audit::append(&mut self.tx, org, at, event).await.map(drop)
    }
}
