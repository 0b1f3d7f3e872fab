//! Orgs: the first operator token, creating an org (in managed mode, with its first admin
//! token), and its audit log.

use std::collections::BTreeMap;
use std::time::Duration;

use byok_core::ScopeId;
use byok_core::scope::Org;
use serde_json::json;
use zeroize::Zeroizing;

use super::apply::{self, Extra};
use super::scopes::check_name;
use super::{Result, Service};
use crate::store::{self, OrgMeta, Role, audit, org_rows};

impl Service {
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
