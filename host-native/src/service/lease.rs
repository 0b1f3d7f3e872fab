//! Edge leases: a service caller gets the keys of one scope (every live version, so that old
//! ciphertexts still open) for a short time, to encrypt and decrypt at the edge without a round
//! trip per message. Never the org root key, never an ancestor's key. Renewal goes through the
//! same checks, so a pause or revoke reaches the edge within one lease TTL. A lease never
//! outlives the root its keys come from ([`byok_core::grace::CachePolicy::lease_until`]), so a
//! withdrawal at the customer's KMS reaches the edge within the unwrap cache TTL, as on the
//! server.

use std::sync::atomic::Ordering;
use std::time::Duration;

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
        let policy = self.cache_policy(&cell);
        if policy.ttl.is_zero() {
            return Err(ServiceError::Invalid(
                "this organization asks its key holder on every use (unwrap_cache_ttl_ms is 0), \
                 which an edge cannot: set an unwrap cache TTL to use edge leases"
                    .into(),
            ));
        }
        let mut keys = Vec::with_capacity(versions.len());
        for v in &versions {
            let k = self.scope_key(&cell, KeyId::new(scope, *v)).await?;
            keys.push(ScopeKey::new(k.id(), k.duplicate_secret()));
        }
        // The lease ends when the first of the roots its keys came from may no longer serve.
        let now = self.now();
        let mut ends = now.saturating_add(Duration::from_millis(ttl));
        for v in &versions {
            let unwrapped_at = match self.cache.get(KeyId::new(scope, *v), now) {
                Some(c) => c.freshness.unwrapped_at,
                // Evicted since (a denial, a retire): ask again, which fails with the reason.
                None => {
                    self.scope_key(&cell, KeyId::new(scope, *v)).await?;
                    self.cache
                        .get(KeyId::new(scope, *v), now)
                        .ok_or(ServiceError::Reloading)?
                        .freshness
                        .unwrapped_at
                }
            };
            let until = policy
                .lease_until(unwrapped_at, now, Duration::from_millis(ttl))
                .ok_or(ServiceError::Reloading)?;
            ends = ends.min(until);
        }
        // Checked again on the published state, and audited, before any key leaves: a lease
        // is never issued after a pause or revoke that committed first.
        let ids: Vec<KeyId> = versions.iter().map(|v| KeyId::new(scope, *v)).collect();
        let _admitted = self.admit(&cell, &ids).await?;
        let expires_at = self.wall_ms(ends);
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
