//! Edge leases: a service caller gets the keys of one scope (every live version, so that old
//! ciphertexts still open) for a short time, to encrypt and decrypt at the edge without a round
//! trip per message. Never the org root key, never an ancestor's key. Renewal goes through the
//! same checks, so a pause or revoke reaches the edge within one lease TTL.

use std::sync::atomic::Ordering;

use byok_core::{KeyId, ScopeId};
use serde::Serialize;
use serde_json::json;

use super::{Result, Service, ServiceError};
use crate::store::{self, audit};

/// One key version in a lease.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct LeaseKey {
    /// The version.
    pub version: u32,
    /// The 32-byte scope key, base64. Keep it in memory only.
    pub key: String,
}

/// A lease.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Lease {
    /// The scope.
    pub scope: String,
    /// Its newest version: encrypt with it.
    pub current_version: u32,
    /// Every live version.
    pub keys: Vec<LeaseKey>,
    /// When the lease ends (ms since the epoch): stop using the keys then, renew before.
    pub expires_at: i64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A lease on `scope`'s keys; `request_id` goes into its audit event, so that a caller can
    /// match an answer to the log.
    pub async fn lease(&self, org: ScopeId, scope: ScopeId, request_id: &str) -> Result<Lease> {
        use base64ct::{Base64, Encoding};
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
            keys.push(LeaseKey {
                version: *v,
                key: Base64::encode_string(k.expose_secret()),
            });
        }
        // Checked again on the published state, and audited, before any key leaves: a lease
        // is never issued after a pause or revoke that committed first.
        let ids: Vec<KeyId> = versions.iter().map(|v| KeyId::new(scope, *v)).collect();
        let _admitted = self.admit(&cell, &ids).await?;
        let expires_at = store::now_ms().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let mut w = self.store.write().await?;
        audit::append(
            &mut w.tx,
            org,
            store::now_ms(),
            &json!({ "type": "lease_issued", "scope": scope.to_string(), "versions": versions, "expires_at": expires_at, "request_id": request_id }),
        )
        .await?;
        w.commit().await?;
        self.metrics.leases.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            scope: scope.to_string(),
            current_version: current,
            keys,
            expires_at,
        })
    }
}
