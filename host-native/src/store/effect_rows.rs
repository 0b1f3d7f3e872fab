//! [`Store`] on the database (SQLite or PostgreSQL, the same SQL): each call is one statement
//! (or a few) in the transition's transaction.
//!
//! The org's own rows (scopes, key versions, holders, root copies, default holder, job) are
//! written here directly; `org_rows` reads them back into an [`byok_core::scope::Org`]. Data
//! keys, CMK rows and the audit log keep their SQL in their own modules.

use byok_core::scope::{HolderId, HolderStatus, RewrapJob, RootCheck, ScopeState};
use byok_core::{KeyId, ScopeId};
use serde_json::Value;

use super::org_rows::{hex, holder_name, job_json, one_row};
use super::{Result, Store, WriteTx, audit, data_keys, keys, sweep};

impl Store for WriteTx {
    async fn create_scope(
        &mut self,
        org: ScopeId,
        scope: ScopeId,
        parent: Option<ScopeId>,
        name: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO scopes (org_id, id, parent_id, name, state) VALUES ($1, $2, $3, $4, 'active')",
        )
        .bind(hex(org))
        .bind(hex(scope))
        .bind(parent.map(hex))
        .bind(name)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn set_scope_state(
        &mut self,
        org: ScopeId,
        scope: ScopeId,
        state: ScopeState,
    ) -> Result<()> {
        let done = sqlx::query("UPDATE scopes SET state = $1 WHERE org_id = $2 AND id = $3")
            .bind(state.as_str())
            .bind(hex(org))
            .bind(hex(scope))
            .execute(&mut *self.tx)
            .await?;
        one_row(done.rows_affected(), "scope state of an unknown scope")
    }

    async fn put_key(
        &mut self,
        org: ScopeId,
        key: KeyId,
        wrapped: Option<(KeyId, &[u8])>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO scope_keys (org_id, scope_id, version, under_version, wrapped) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (org_id, scope_id, version) DO UPDATE SET under_version = excluded.under_version, wrapped = excluded.wrapped",
        )
        .bind(hex(org))
        .bind(hex(key.scope))
        .bind(i64::from(key.version))
        .bind(wrapped.map(|(under, _)| i64::from(under.version)))
        .bind(wrapped.map(|(_, w)| w))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn put_root_check(
        &mut self,
        org: ScopeId,
        version: u32,
        check: &RootCheck,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE scope_keys SET root_check = $1 WHERE org_id = $2 AND scope_id = $2 AND version = $3 AND wrapped IS NULL",
        )
        .bind(check.as_bytes().as_slice())
        .bind(hex(org))
        .bind(i64::from(version))
        .execute(&mut *self.tx)
        .await?;
        one_row(done.rows_affected(), "check of an unknown root version")
    }

    /// With `secure_delete`, the key's bytes are overwritten in the file.
    async fn destroy_key(&mut self, org: ScopeId, key: KeyId) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM scope_keys WHERE org_id = $1 AND scope_id = $2 AND version = $3",
        )
        .bind(hex(org))
        .bind(hex(key.scope))
        .bind(i64::from(key.version))
        .execute(&mut *self.tx)
        .await?;
        one_row(done.rows_affected(), "destroyed an unknown key version")
    }

    /// The rows go later, in batches (`sweep`): deleted here, a scope with millions of keys
    /// kept the revoke from committing at all.
    async fn destroy_data_keys(&mut self, org: ScopeId, scopes: &[ScopeId]) -> Result<()> {
        sweep::later(&mut self.tx, org, scopes).await
    }

    async fn put_holder(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        status: HolderStatus,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO holders (org_id, holder, status) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id, holder) DO UPDATE SET status = excluded.status",
        )
        .bind(hex(org))
        .bind(holder_name(holder))
        .bind(status.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn put_root_copy(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO root_copies (org_id, holder, version, wrapped) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, holder, version) DO UPDATE SET wrapped = excluded.wrapped",
        )
        .bind(hex(org))
        .bind(holder_name(holder))
        .bind(i64::from(version))
        .bind(wrapped)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn destroy_root_copy(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        version: u32,
    ) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM root_copies WHERE org_id = $1 AND holder = $2 AND version = $3",
        )
        .bind(hex(org))
        .bind(holder_name(holder))
        .bind(i64::from(version))
        .execute(&mut *self.tx)
        .await?;
        one_row(done.rows_affected(), "destroyed an unknown root copy")
    }

    async fn set_default(&mut self, org: ScopeId, holder: HolderId) -> Result<()> {
        let done = sqlx::query("UPDATE orgs SET default_holder = $1 WHERE id = $2")
            .bind(holder_name(holder))
            .bind(hex(org))
            .execute(&mut *self.tx)
            .await?;
        one_row(done.rows_affected(), "default holder of an unknown org")
    }

    async fn set_job(&mut self, org: ScopeId, job: Option<&RewrapJob>) -> Result<()> {
        let done = sqlx::query("UPDATE orgs SET job = $1 WHERE id = $2")
            .bind(job.map(|j| job_json(j).to_string()))
            .bind(hex(org))
            .execute(&mut *self.tx)
            .await?;
        one_row(done.rows_affected(), "job of an unknown org")
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
        audit::append(self, org, at, event).await.map(drop)
    }
}
