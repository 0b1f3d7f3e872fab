//! Edge leases: a service caller gets the keys of one scope (every live version, so that old
//! ciphertexts still open) for a short time, to encrypt and decrypt at the edge without a round
//! trip per message. Never the org root key, never an ancestor's key. Renewal goes through the
//! same checks, so a pause or revoke reaches the edge within one lease TTL.

use std::sync::atomic::Ordering;

use byok_core::lease::Lease;
use byok_core::{KeyId, ScopeId, ScopeKey};
use serde_json::json;

use super::{Result, Service, ServiceError};
use crate::store::{self, audit};

impl Service {
    /// A lease on `scope`'s keys (the document format is core's, [`byok_core::lease`]);
    /// `request_id` and the `audience` (the edge deployment asking) go into its audit event,
    /// so that a caller can match an answer to the log and the log says which edge holds keys.
    pub async fn lease(
        &self,
        org: ScopeId,
        scope: ScopeId,
        request_id: &str,
        audience: Option<&str>,
    ) -> Result<Lease> {
        let cell = self.org(org).await?;
        let ttl = cell.meta().lease_ttl_ms;
        if ttl == 0 {
            return Err(ServiceError::Invalid(
                "this organization does not allow edge leases (lease_ttl_ms is 0)".into(),
            ));
        }
        if scope == org {
            return Err(ServiceError::Invalid(
                "the org scope's key is the root key and is never leased; lease a scope below it"
                    .into(),
            ));
        }
        let snap = cell.snapshot();
        let s = snap
            .scope(scope)
            .ok_or_else(|| ServiceError::NotFound("scope not found".into()))?;
        snap.check_usable(scope)?;
        let versions: Vec<u32> = s.versions.keys().copied().collect();
        let current = s
            .current_version()
            .ok_or_else(|| ServiceError::NotFound("scope has no key".into()))?;
        let mut keys = Vec::with_capacity(versions.len());
        for v in &versions {
            let k = self.scope_key(&cell, KeyId::new(scope, *v)).await?;
            keys.push(ScopeKey::new(k.id(), k.duplicate_secret()));
        }
        // Checked again on the published state, and audited, before any key leaves: a lease
        // is never issued after a pause or revoke that committed first.
        let ids: Vec<KeyId> = versions.iter().map(|v| KeyId::new(scope, *v)).collect();
        let _admitted = self.admit(&cell, &ids).await?;
        let expires_at = store::now_ms().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        // The versions come from one snapshot, so they are distinct and include the current one.
        let lease = Lease::new(scope, current, keys, expires_at)
            .map_err(|_| byok_core::Error::Internal("a scope's versions do not form a lease"))?;
        let mut w = self.store.write().await?;
        audit::append(
            &mut w.tx,
            org,
            store::now_ms(),
            &json!({ "type": "lease_issued", "scope": scope.to_string(), "versions": versions, "expires_at": expires_at, "request_id": request_id, "audience": audience }),
        )
        .await?;
        w.commit().await?;
        self.metrics.leases.fetch_add(1, Ordering::Relaxed);
        Ok(lease)
    }
}
