//! Bearer tokens: authenticate (from memory after the first lookup), create with an optional
//! expiry, list (never the secret), revoke, and rotate the operator's. A revoked token's grant
//! leaves memory in the same call, and an expired one is refused, so the next request with it
//! gets 401.

use std::sync::Arc;

use byok_core::ScopeId;
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::grants::Cached;
use super::org_cell::Unpublished;
use super::{Result, Service, ServiceError};
use crate::store::{self, Role, TokenId, audit, tokens};

/// How often a token's last use is written down (its precision), so that authenticating stays
/// a memory lookup.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A token as listed: never the token itself.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// Its id (16 hex digits): revoke it by this.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// `operator`, `admin`, `service` or `auditor`.
    pub role: Role,
    /// Created (ms since the epoch).
    pub created_at: i64,
    /// Last used, to the minute (ms since the epoch).
    pub last_used_at: Option<i64>,
    /// When it stops working, if ever (ms since the epoch).
    pub expires_at: Option<i64>,
}

impl From<&tokens::TokenRow> for TokenView {
    fn from(r: &tokens::TokenRow) -> Self {
        Self {
            id: r.id.to_string(),
            name: r.name.clone(),
            role: r.role,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
        }
    }
}

impl Service {
    /// The grant of a bearer token, with the hash it is known by. Found grants stay in memory
    /// (up to 100 000; unknown tokens are never kept, so guesses cannot fill it); revoking drops
    /// one at once, and an expired one is refused and dropped.
    pub async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Option<(Arc<tokens::TokenRow>, [u8; 32])>> {
        let hash = tokens::token_hash(token);
        let now = store::now_ms();
        let grant = match self.grants.get(&hash) {
            Some(g) => g,
            // Boxed, like the touch below: the data path's future carries only the hit.
            None => match Box::pin(self.read_grant(token, hash, now)).await? {
                Some(g) => g,
                None => return Ok(None),
            },
        };
        if grant.expired(now) {
            self.grants.drop_expired(&hash);
            return Ok(None);
        }
        if grant
            .last_used_at
            .is_none_or(|t| now.saturating_sub(t) >= TOUCH_EVERY_MS)
        {
            // `last_used_at` is a hint for operators (which tokens are idle), not a control:
            // while the database is away the request goes on untouched, and the next one after
            // it returns records the use.
            if let Err(e) = Box::pin(self.touch(&hash, now)).await {
                tracing::warn!(error = %e, "recording a token's last use failed");
            } else {
                self.grants.touched(&hash, now);
            }
        }
        Ok(Some((grant, hash)))
    }

    /// A token's grant from storage, cached unless a revoke may have raced the read
    /// ([`super::grants`]): then read again, so that a row read before a revoke committed is
    /// not served after it either. Three tries; a grant read in the third is served uncached.
    async fn read_grant(
        &self,
        token: &str,
        hash: [u8; 32],
        now: i64,
    ) -> Result<Option<Arc<tokens::TokenRow>>> {
        let mut tries = 0;
        loop {
            let since = self.grants.epoch();
            let Some(row) = tokens::lookup(self.store.pool(), token).await? else {
                return Ok(None);
            };
            let row = Arc::new(row);
            tries += 1;
            match self.grants.cache(hash, row.clone(), since, now) {
                Cached::Moved if tries < 3 => continue,
                Cached::Kept | Cached::Forgotten | Cached::Moved => return Ok(Some(row)),
            }
        }
    }

    /// Records that the token with hash `hash` was used at `now`.
    async fn touch(&self, hash: &[u8; 32], now: i64) -> store::Result<()> {
        let mut w = self.store.write().await?;
        tokens::touch(&mut w.tx, hash, now).await?;
        w.commit().await
    }

    /// Creates a token for `org` with `role` (not operator), valid until `expires_at` if given.
    pub async fn create_token(
        &self,
        org: ScopeId,
        role: Role,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<(TokenId, Zeroizing<String>)> {
        if role == Role::Operator {
            return Err(ServiceError::Invalid(
                "operator tokens are not created for an organization; rotate the operator token instead".into(),
            ));
        }
        super::check_name(name)?;
        self.org(org).await?;
        let mut w = self.store.write().await?;
        let at = store::now_ms();
        let (id, token) = tokens::create(&mut w.tx, Some(org), role, name, at, expires_at).await?;
        audit::append(
            &mut w.tx,
            org,
            at,
            &json!({ "type": "token_created", "id": id.to_string(), "role": role.as_str(), "name": name, "expires_at": expires_at }),
        )
        .await?;
        w.commit().await?;
        Ok((id, token))
    }

    /// The tokens of `org` (`None`: the operator tokens).
    pub async fn list_tokens(&self, org: Option<ScopeId>) -> Result<Vec<TokenView>> {
        if let Some(o) = org {
            self.org(o).await?;
        }
        Ok(tokens::list(self.store.pool(), org)
            .await?
            .iter()
            .map(TokenView::from)
            .collect())
    }

    /// Revokes token `id` of `org` (`None`: an operator token). The next request with it gets
    /// 401, also when it was authenticated a moment before.
    pub async fn revoke_token(&self, org: Option<ScopeId>, id: TokenId) -> Result<()> {
        let cell = match org {
            Some(o) => Some(self.org(o).await?),
            None => None,
        };
        let mut w = self.store.write().await?;
        let hash = tokens::revoke(&mut w.tx, org, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("token {id} not found")))?;
        if let Some(o) = org {
            audit::append(
                &mut w.tx,
                o,
                store::now_ms(),
                &json!({ "type": "token_revoked", "id": id.to_string() }),
            )
            .await?;
        }
        // Other replicas learn of it by the org's version (they drop the org's grants); the
        // operator's tokens are rechecked by their poll (`replicas.rs`).
        let bumped = match org {
            Some(o) => Some(w.bump_org(o).await?),
            None => None,
        };
        let mut unpublished = None;
        if let (Some(cell), Some(o), Some(v)) = (&cell, org, bumped) {
            // The cell stays current (unless another replica changed the org meanwhile); set
            // before the commit, whose own notification must find it so, and taken out of use
            // if the commit does not happen.
            unpublished = Some(Unpublished::arm(self, o, cell));
            let _ = cell.version.compare_exchange(
                v - 1,
                v,
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
            );
        }
        let _forget = ForgetGrant(self, &hash);
        w.commit().await?;
        if let Some(u) = unpublished.as_mut() {
            u.disarm();
        }
        tracing::info!(token = %id, "token revoked");
        Ok(())
    }

    /// Replaces the operator token `current` (by hash) with a new one, in one transaction:
    /// returns the new id and token (shown once); the old one stops working at once.
    pub async fn rotate_operator(&self, current: [u8; 32]) -> Result<(TokenId, Zeroizing<String>)> {
        // The caller was just authenticated: its grant is in memory.
        let row = self
            .grants
            .get(&current)
            .filter(|g| g.role == Role::Operator)
            .ok_or_else(|| ServiceError::NotFound("the calling operator token".into()))?;
        let mut w = self.store.write().await?;
        tokens::revoke(&mut w.tx, None, row.id).await?;
        let created = tokens::create(
            &mut w.tx,
            None,
            Role::Operator,
            &row.name,
            store::now_ms(),
            row.expires_at,
        )
        .await?;
        let _forget = ForgetGrant(self, &current);
        w.commit().await?;
        tracing::info!(old = %row.id, new = %created.0, "operator token rotated");
        Ok(created)
    }

    pub(super) fn forget_grant(&self, hash: &[u8]) {
        if let Ok(h) = <[u8; 32]>::try_from(hash) {
            self.grants.forget(h, store::now_ms());
        }
    }
}

/// Forgets a token's cached grant when dropped: after its revoke committed, and also when the
/// revoke's future is dropped during the commit (a client that hung up, the request deadline),
/// so a revoke that reached storage can never leave the token working from the cache.
/// Forgetting a grant that is still valid costs one lookup.
struct ForgetGrant<'a>(&'a Service, &'a [u8]);

impl Drop for ForgetGrant<'_> {
    fn drop(&mut self) {
        self.0.forget_grant(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::test_service;
    use crate::store::Database;

    /// With the database away, a token already known is still authenticated, although its
    /// last use is due to be written down: recording it is a hint, not a condition.
    #[tokio::test]
    async fn a_known_token_is_accepted_while_its_last_use_cannot_be_written() {
        let dir = std::env::temp_dir().join(format!("byok-touch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::open_dir(&dir).await.unwrap();
        let s = test_service(&db, 3);
        let (org, _) = s.create_org("org", None, None, None).await.unwrap();
        let (_, token) = s
            .create_token(org, Role::Service, "app", None)
            .await
            .unwrap();
        let (grant, hash) = s.authenticate(&token).await.unwrap().expect("known");
        let held = s.grants.get(&hash).unwrap();
        assert!(held.last_used_at.is_some(), "the first use is written down");
        // Its last use is now a minute old, and the database is gone.
        s.grants
            .touched(&hash, store::now_ms() - TOUCH_EVERY_MS - 1);
        db.pool().close().await;
        let (again, _) = s.authenticate(&token).await.unwrap().expect("still known");
        assert_eq!(again.id, grant.id);
        // An unknown token needs the database: that is a database failure, not a "no".
        let err = s.authenticate("byok_unknown").await.unwrap_err();
        assert!(
            matches!(&err, ServiceError::Store(e) if e.is_unavailable()),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
