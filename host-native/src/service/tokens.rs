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

/// A request's caller: its token's grant, as it stood when the grants' epoch was `epoch`.
/// Admitting a data call checks, holding the org's gate, that no grant was forgotten since,
/// or else that this one still stands (`Service::granted_in_memory`): a token revoked while the
/// call was on its way (a KMS call can take seconds) gets nothing.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The token's row (id, org, role, name, expiry; never the secret).
    pub grant: Arc<tokens::TokenRow>,
    /// The hash the token is stored by.
    pub hash: [u8; 32],
    epoch: u64,
}

/// Storage lookups of tokens not held in memory take at most half the pool's connections (at
/// least one). Every made-up token is such a lookup, and finds nothing: a flood of them must
/// leave the rest of the pool to the calls that withdraw (a pause, a revoke), to the data
/// path's key loads and to its audit marks. A lookup waits for its turn at most as long as the
/// pool's own acquire timeout, then answers `database_unavailable`, as a full pool would.
pub(crate) struct TokenLookups {
    turns: tokio::sync::Semaphore,
    wait: std::time::Duration,
}

impl TokenLookups {
    /// Turns for a pool of `connections`, each waited for at most `wait`.
    pub(crate) fn new(connections: u32, wait: std::time::Duration) -> Self {
        let turns = usize::try_from((connections / 2).max(1)).unwrap_or(1);
        Self {
            turns: tokio::sync::Semaphore::new(turns),
            wait,
        }
    }

    async fn turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        match tokio::time::timeout(self.wait, self.turns.acquire()).await {
            Ok(Ok(turn)) => Ok(turn),
            _ => Err(ServiceError::Store(store::StoreError::Db(
                sqlx::Error::PoolTimedOut,
            ))),
        }
    }
}

/// The most tokens one org holds (expired ones are removed when a token is made). Each is a
/// way in, listed in full by `GET .../tokens`, and a claim revokes every admin token in one
/// transaction holding the org's gate: unbounded, a first admin (the vendor) could mint enough
/// to push the customer's claim past its deadline.
pub(super) const MAX_TOKENS_PER_ORG: u64 = 1000;

impl Service {
    /// The grant of a bearer token. Found grants stay in memory (up to 100 000; unknown tokens
    /// are never kept, so guesses cannot fill it); revoking drops one at once, and an expired
    /// one is refused and dropped.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Authenticated>> {
        let hash = tokens::token_hash(token);
        let now = store::now_ms();
        let (grant, epoch) = match self.grants.get_at(&hash) {
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
            if let Err(e) = Box::pin(self.touch(grant.org, &hash, now)).await {
                tracing::warn!(error = %e, "recording a token's last use failed");
            } else {
                self.grants.touched(&hash, now);
            }
        }
        Ok(Some(Authenticated { grant, hash, epoch }))
    }

    /// Whether `who`'s token stands, as far as memory knows, holding the gate of the caller's
    /// org (for reading, as every admission does): no grant was forgotten since `who` was
    /// authenticated (one atomic load), or `who`'s grant is still held. A revoke commits and
    /// forgets the grant holding that gate for writing, so either it waits for this call to
    /// finish, or this call sees the epoch moved. When this says no, ask
    /// [`Service::still_in_force`] (boxed at the call: it is cold, and its state would otherwise
    /// size every data call's future).
    ///
    /// A token with an expiry past is not granted here either: a call authenticated just
    /// before its end, then waiting seconds for a KMS, gets nothing after it.
    pub(super) fn granted_in_memory(&self, who: &Authenticated) -> bool {
        (!self.grants.moved_since(who.epoch) || self.grants.get(&who.hash).is_some())
            && who.grant.expires_at.is_none_or(|e| store::now_ms() < e)
    }

    /// Whether `who`'s token is still in force, for an admission whose check in memory
    /// (`Service::granted_in_memory`) could not tell: `unauthenticated` if it was revoked, or
    /// expired, while the call was on its way.
    pub(super) async fn still_in_force(&self, who: &Authenticated) -> Result<()> {
        if tokens::in_force(self.store.pool(), who.grant.id, store::now_ms()).await? {
            Ok(())
        } else {
            Err(ServiceError::Unauthenticated(
                "this token was revoked or expired while the call was being served".into(),
            ))
        }
    }

    /// Refuses a change made by a request whose token has been revoked (or has expired) since it
    /// was authenticated (an admin's resume, or a new token, still on its way when the revoke
    /// answered). Checked in the change's own transaction, holding the token's row to its
    /// commit ([`tokens::still_in_force`]), so a revoke lands wholly before it or after it; call
    /// it before taking the org's row. Changes no request makes (jobs) have no actor and pass.
    pub(super) async fn actor_still_in_force(w: &mut store::WriteTx) -> Result<()> {
        match audit::actor_id() {
            Some(id) if !tokens::still_in_force(w, id, store::now_ms()).await? => {
                Err(ServiceError::Unauthenticated(
                    "this token was revoked or expired while the change was being made".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// A token's grant from storage, cached unless a revoke may have raced the read
    /// ([`super::grants`]): then read again, so that a row read before a revoke committed is
    /// not served after it either. Three tries; a grant read in the third is served uncached.
    async fn read_grant(
        &self,
        token: &str,
        hash: [u8; 32],
        now: i64,
    ) -> Result<Option<(Arc<tokens::TokenRow>, u64)>> {
        let mut tries = 0;
        loop {
            let since = self.grants.epoch();
            let turn = self.lookups.turn().await?;
            let found = tokens::lookup(self.store.pool(), token).await;
            drop(turn);
            let Some(row) = found? else {
                return Ok(None);
            };
            let row = Arc::new(row);
            tries += 1;
            // Served with the epoch read before the row: a forget since (its revoke, perhaps)
            // makes the data path check the grant again.
            match self.grants.cache(hash, row.clone(), since, now) {
                Cached::Moved if tries < 3 => continue,
                Cached::Kept | Cached::Forgotten | Cached::Moved => return Ok(Some((row, since))),
            }
        }
    }

    /// Records that the token with hash `hash` was used at `now`.
    async fn touch(&self, org: Option<ScopeId>, hash: &[u8; 32], now: i64) -> store::Result<()> {
        let mut w = self.store.write_for(org).await?;
        tokens::touch(&mut w.tx, hash, now).await?;
        w.commit().await
    }

    /// Creates a token for `org` with `role` (not operator), valid until `expires_at` if given;
    /// refused once the org holds `MAX_TOKENS_PER_ORG` (1000) tokens (expired ones are removed
    /// first).
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
        let mut w = self.store.write_org(org).await?;
        // An admin whose token was revoked meanwhile makes no new one to outlive the revoke.
        Self::actor_still_in_force(&mut w).await?;
        let at = store::now_ms();
        // Taken under the org's row, so two creates cannot both pass the count. Expired tokens
        // go first: they open nothing, and counted they would fill the org; left stored, short
        // ones would pile up for a claim to revoke one by one.
        w.lock_org(org).await?;
        let expired = tokens::delete_expired(&mut w.tx, org, at).await?;
        if expired > 0 {
            audit::append(
                &mut w,
                org,
                at,
                &json!({ "type": "tokens_expired_removed", "count": expired }),
            )
            .await?;
        }
        let held = tokens::count(&mut w.tx, org).await?;
        if held >= MAX_TOKENS_PER_ORG {
            return Err(ServiceError::TokenQuota(format!(
                "this organization holds {held} tokens in force, the most it may ({MAX_TOKENS_PER_ORG}): revoke unused ones first"
            )));
        }
        let (id, token) = tokens::create(&mut w.tx, Some(org), role, name, at, expires_at).await?;
        audit::append(
            &mut w,
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
    /// 401, also when it was authenticated a moment before; so does one already on its way
    /// that was not yet admitted, and one admitted before finishes first: the revoke commits
    /// and forgets the grant holding the org's gate for writing, and every admission checks
    /// the grant holding it for reading (`Service::granted_in_memory`).
    pub async fn revoke_token(&self, org: Option<ScopeId>, id: TokenId) -> Result<()> {
        let cell = match org {
            Some(o) => Some(self.org(o).await?),
            None => None,
        };
        // Taken before the writer, in the order transitions take them.
        let _gate = match &cell {
            Some(c) => Some(c.gate.write().await),
            None => None,
        };
        let mut w = self.store.write_for(org).await?;
        // An admin whose own token was revoked meanwhile (on another replica, say) revokes
        // nothing more.
        Self::actor_still_in_force(&mut w).await?;
        let hash = tokens::revoke(&mut w.tx, org, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("token {id} not found")))?;
        if let Some(o) = org {
            audit::append(
                &mut w,
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
                v.from,
                v.to,
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

    /// How many times a claim reads the org's admin tokens again for ones made while it ran
    /// before it gives up (`reloading`, retried by the customer).
    const CLAIM_ROUNDS: usize = 8;

    /// The customer takes its org over from whoever created it: a new admin token `name` for
    /// `who` (an admin of `org`; it ends when `who`'s token ends, as any token it makes), and
    /// every other admin token of the org revoked, `who`'s own included, in one transaction.
    /// The operator was handed the org's first admin token; once the customer has claimed
    /// the org, no admin token anyone else may have seen works (service and auditor tokens,
    /// which the vendor's application uses, stay). Returns the new id and token (shown once)
    /// and the ids revoked. Each revoke is obeyed as [`Self::revoke_token`]'s is.
    pub async fn claim_org(
        &self,
        who: &Authenticated,
        org: ScopeId,
        name: &str,
    ) -> Result<(TokenId, Zeroizing<String>, Vec<TokenId>)> {
        super::check_name(name)?;
        let cell = self.org(org).await?;
        // Taken before the writer, in the order transitions take them.
        let _gate = cell.gate.write().await;
        let mut w = self.store.write_org(org).await?;
        Self::actor_still_in_force(&mut w).await?;
        let at = store::now_ms();
        // Read again until none is left. On PostgreSQL an admin token made elsewhere by one of
        // these, whose maker checked its own token before this read, is not in it: this
        // transaction's delete of the maker's token waits for that change to commit, and only
        // the next read (each statement reads what is committed) finds its new token. A maker
        // whose token this transaction already deleted waits for it, and then makes nothing.
        let mut revoked = Vec::new();
        let mut hashes = Vec::new();
        for round in 0.. {
            let left = tokens::admin_ids(&mut w.tx, org).await?;
            if left.is_empty() {
                break;
            }
            if round == Self::CLAIM_ROUNDS {
                // Admin tokens keep being made while the claim runs: it is refused whole, and
                // the customer tries again (its own token still works; nothing was revoked).
                return Err(ServiceError::Reloading);
            }
            for id in left {
                if let Some(hash) = tokens::revoke(&mut w.tx, Some(org), id).await? {
                    hashes.push(hash);
                }
                revoked.push(id);
            }
        }
        // Logged once every admin token is gone: an audit row takes the org's row, and every
        // other change takes a token's row before the org's (`store::tokens`). Deleting a
        // token while holding the org's row would take them the other way round, and on
        // PostgreSQL deadlock against an admin change of another replica.
        for id in &revoked {
            audit::append(
                &mut w,
                org,
                at,
                &json!({ "type": "token_revoked", "id": id.to_string(), "claim": true }),
            )
            .await?;
        }
        let expires_at = who.grant.expires_at;
        let (id, token) =
            tokens::create(&mut w.tx, Some(org), Role::Admin, name, at, expires_at).await?;
        audit::append(
            &mut w,
            org,
            at,
            &json!({ "type": "token_created", "id": id.to_string(), "role": "admin",
                "name": name, "expires_at": expires_at, "claim": true }),
        )
        .await?;
        store::org_rows::set_claimed(&mut w.tx, org, at).await?;
        // As a revoke: other replicas learn of it by the org's version.
        let v = w.bump_org(org).await?;
        let mut unpublished = Unpublished::arm(self, org, &cell);
        let _ = cell.version.compare_exchange(
            v.from,
            v.to,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
        let _forget: Vec<ForgetGrant<'_>> = hashes.iter().map(|h| ForgetGrant(self, h)).collect();
        w.commit().await?;
        unpublished.disarm();
        tracing::info!(org = %org, new = %id, revoked = revoked.len(), "org claimed");
        Ok((id, token, revoked))
    }

    /// When the org's customer last claimed it ([`Self::claim_org`]), if ever.
    pub async fn claimed_at(&self, org: ScopeId) -> Result<Option<i64>> {
        Ok(store::org_rows::claimed_at(self.store.pool(), org).await?)
    }

    /// Replaces the calling operator token `who` with a new one, in one transaction: returns
    /// the new id, token (shown once) and expiry (the old one's); the old one stops working at
    /// once.
    pub async fn rotate_operator(
        &self,
        who: &Authenticated,
    ) -> Result<(TokenId, Zeroizing<String>, Option<i64>)> {
        // The grant as authenticated, not looked up again in memory: a grant read around a
        // forget, or after the cache was cleared, is served without being cached.
        let row = Some(who.grant.clone())
            .filter(|g| g.role == Role::Operator)
            .ok_or_else(|| ServiceError::NotFound("the calling operator token".into()))?;
        let current = who.hash;
        let mut w = self.store.write().await?;
        // Checked in storage, not only in memory: a token revoked on another replica (or while
        // this call waited for the writer) must not mint its own successor.
        Self::actor_still_in_force(&mut w).await?;
        if tokens::revoke(&mut w.tx, None, row.id).await?.is_none() {
            return Err(ServiceError::Unauthenticated(
                "this operator token was revoked before it could be rotated".into(),
            ));
        }
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
        Ok((created.0, created.1, row.expires_at))
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
    use crate::store::{Database, PoolLimits};
    use byok_core::envelope::SealBuffer;
    use std::collections::BTreeMap;

    /// An org holds at most `MAX_TOKENS_PER_ORG` tokens: the next is refused (`token_quota`)
    /// until one is revoked; an expired one is removed by the next create, so it neither counts
    /// nor stays stored for a claim to revoke.
    #[tokio::test]
    async fn an_org_holds_a_bounded_number_of_tokens() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = test_service(&db, 3);
        // The org's first admin token counts too.
        let (org, _) = svc.create_org("org", None, None, None).await.unwrap();
        let mut last = None;
        for i in 1..MAX_TOKENS_PER_ORG {
            last = Some(
                svc.create_token(org, Role::Service, &format!("t{i}"), None)
                    .await
                    .unwrap()
                    .0,
            );
        }
        let refused = svc.create_token(org, Role::Auditor, "one more", None).await;
        match refused {
            Err(ServiceError::TokenQuota(m)) => assert!(m.contains("revoke unused"), "{m}"),
            other => panic!("{:?}", other.map(|t| t.0)),
        }
        svc.revoke_token(Some(org), last.unwrap()).await.unwrap();
        let past = store::now_ms() - 1;
        let (expired, _) = svc
            .create_token(org, Role::Service, "short", Some(past))
            .await
            .unwrap();
        let (_, _) = svc
            .create_token(org, Role::Service, "after", None)
            .await
            .unwrap();
        assert!(
            svc.create_token(org, Role::Service, "full", None)
                .await
                .is_err()
        );
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE id = $1")
            .bind(expired.to_string())
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(stored, 0, "the expired token is still stored");
    }

    /// Lookups of tokens not held in memory take at most half the pool. With every turn taken
    /// (a flood of made-up tokens), another lookup waits, then answers `database_unavailable`,
    /// while the rest of the pool still serves a withdrawal.
    #[tokio::test]
    async fn a_flood_of_unknown_tokens_leaves_half_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("byok.db").display());
        let limits = PoolLimits {
            max_connections: 4,
            acquire_timeout: std::time::Duration::from_millis(200),
            ..Default::default()
        };
        let db = Database::open_with(&url, limits).await.unwrap();
        let svc = test_service(&db, 3);
        let (org, team) = crate::service::test_team(&svc, None).await;
        let flood = svc.lookups.turns.acquire_many(2).await.unwrap();
        let answer = svc.authenticate("byok_made-up").await;
        assert!(
            matches!(&answer, Err(ServiceError::Store(e)) if e.is_unavailable()),
            "{:?}",
            answer.map(|a| a.is_some())
        );
        svc.pause(org, team).await.unwrap();
        drop(flood);
        assert!(svc.authenticate("byok_made-up").await.unwrap().is_none());
    }

    /// An org with scope `team`, its key cached, and two service tokens authenticated.
    async fn two_callers(s: &Service) -> (ScopeId, ScopeId, Authenticated, Authenticated) {
        let (org, team) = crate::service::test_team(s, None).await;
        let a = crate::service::test_caller(s, org).await;
        let b = crate::service::test_caller(s, org).await;
        s.encrypt(&a, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
            .await
            .unwrap();
        (org, team, a, b)
    }

    /// A call authenticated a moment before its token is revoked, and admitted after the
    /// revoke committed (a KMS call, or only the gate, in between), gets nothing: on a cache
    /// hit and on a miss, for each kind of data call.
    #[tokio::test]
    async fn a_call_authenticated_before_a_revoke_is_refused_after_it() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let s = test_service(&db, 3);
        let (org, team, who, _) = two_callers(&s).await;
        let ct = s
            .encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new())
            .await
            .unwrap();
        s.revoke_token(Some(org), who.grant.id).await.unwrap();
        let revoked = |r: Result<()>| matches!(r, Err(ServiceError::Unauthenticated(_)));
        for miss in [false, true] {
            if miss {
                s.cache().evict_org(org);
            }
            let pt = SealBuffer::copy_of(b"x");
            let e = s.encrypt(&who, org, team, pt, BTreeMap::new()).await;
            assert!(revoked(e.map(drop)), "encrypt (miss: {miss})");
            let d = s.decrypt(&who, org, ct.clone(), BTreeMap::new()).await;
            assert!(revoked(d.map(drop)), "decrypt (miss: {miss})");
            let k = s.datakey(&who, org, team, BTreeMap::new()).await;
            assert!(revoked(k.map(drop)), "data key (miss: {miss})");
            let stored = s.create_stored_keys(&who, org, team, 1).await;
            assert!(revoked(stored.map(drop)), "stored keys (miss: {miss})");
        }
    }

    /// Two services over one SQLite file, standing for two replicas; an org made through
    /// `there` with scope `team`, and a service token of it authenticated `here` (its grant
    /// held here). Announcements between them are made by hand, as the PostgreSQL listener or
    /// poll would.
    struct TwoReplicas {
        _dir: tempfile::TempDir,
        here: Service,
        there: Service,
        org: ScopeId,
        team: ScopeId,
        token: Zeroizing<String>,
        who: Authenticated,
    }

    impl TwoReplicas {
        /// The token revoked through `there`.
        async fn revoke(&self) {
            self.there
                .revoke_token(Some(self.org), self.who.grant.id)
                .await
                .unwrap();
        }

        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let here = test_service(&Database::open_dir(dir.path()).await.unwrap(), 3);
            let there = test_service(&Database::open_dir(dir.path()).await.unwrap(), 3);
            let (org, team) = crate::service::test_team(&there, None).await;
            let (_, token) = there
                .create_token(org, Role::Service, "app", None)
                .await
                .unwrap();
            let who = here.authenticate(&token).await.unwrap().unwrap();
            Self {
                _dir: dir,
                here,
                there,
                org,
                team,
                token,
                who,
            }
        }
    }

    /// A token revoked through another replica is refused here however this replica catches up
    /// with the org.
    ///
    /// An operator token revoked on another replica, still in this one's memory, cannot
    /// rotate itself into a fresh token here: the rotation checks storage.
    #[tokio::test]
    async fn an_operator_token_revoked_elsewhere_mints_no_successor_here() {
        let r = TwoReplicas::new().await;
        let operator = r
            .there
            .bootstrap_operator()
            .await
            .unwrap()
            .expect("a first operator");
        // Authenticated here (its grant in this replica's memory), then revoked there.
        let op = r.here.authenticate(&operator).await.unwrap().unwrap();
        r.there.revoke_token(None, op.grant.id).await.unwrap();
        let grant = op.grant.clone();
        let rotated = audit::with_actor_slot(async move {
            audit::set_actor(grant);
            r.here.rotate_operator(&op).await
        })
        .await;
        assert!(
            matches!(rotated, Err(ServiceError::Unauthenticated(_))),
            "{:?}",
            rotated.map(drop)
        );
    }

    /// An operator token rotates whether or not its grant is still in this replica's memory
    /// (a grant read around a forget, or after the cache was cleared, is served uncached): the
    /// rotation uses the grant it was authenticated with. The old token stops, the new one
    /// works, with the old one's expiry.
    #[tokio::test]
    async fn an_operator_token_rotates_with_its_grant_out_of_memory() {
        let r = TwoReplicas::new().await;
        let operator = r
            .here
            .bootstrap_operator()
            .await
            .unwrap()
            .expect("an operator");
        let op = r.here.authenticate(&operator).await.unwrap().unwrap();
        r.here.forget_grant(&op.hash);
        let grant = op.grant.clone();
        let (_, new, expires) = audit::with_actor_slot(async {
            audit::set_actor(grant);
            r.here.rotate_operator(&op).await
        })
        .await
        .expect("rotated");
        assert_eq!(expires, None);
        assert!(r.here.authenticate(&operator).await.unwrap().is_none());
        let fresh = r
            .here
            .authenticate(&new)
            .await
            .unwrap()
            .expect("the new token");
        assert_eq!(fresh.grant.role, Role::Operator);
    }

    /// Held here and reloaded first (a key health check, a job step, an admin change: each
    /// reads the org's version): refused from the reload on, before any announcement.
    #[tokio::test]
    async fn a_token_revoked_elsewhere_is_refused_from_a_reload_here() {
        let r = TwoReplicas::new().await;
        let encrypt = |who| {
            r.here.encrypt(
                who,
                r.org,
                r.team,
                SealBuffer::copy_of(b"x"),
                BTreeMap::new(),
            )
        };
        encrypt(&r.who).await.expect("served here");
        r.revoke().await;
        let version = r.here.current_org(r.org).await.unwrap().version();
        assert!(
            r.here.authenticate(&r.token).await.unwrap().is_none(),
            "the grant outlived the reload"
        );
        let e = encrypt(&r.who).await.map(drop);
        assert!(matches!(e, Err(ServiceError::Unauthenticated(_))), "{e:?}");
        // The announcement that follows finds the org current and changes nothing.
        assert!(!r.here.org_changed(r.org, version));
        assert!(r.here.authenticate(&r.token).await.unwrap().is_none());
    }

    /// Authenticated here before the revoke, the org first loaded here after it: the
    /// announcement finds the org current, and still drops the grant read before the revoke.
    #[tokio::test]
    async fn a_token_revoked_elsewhere_is_refused_after_the_announcement_of_a_current_org() {
        let r = TwoReplicas::new().await;
        r.revoke().await;
        let version = r.here.org(r.org).await.unwrap().version();
        assert!(
            !r.here.org_changed(r.org, version),
            "nothing of the org behind"
        );
        assert!(
            r.here.authenticate(&r.token).await.unwrap().is_none(),
            "the grant outlived the announcement"
        );
    }

    /// A replica that loaded an org before its first poll keeps no grant read before a change
    /// whose announcement it missed: the first poll sees the org for the first time, cannot
    /// tell, and drops the org's grants.
    #[tokio::test]
    async fn the_first_poll_drops_grants_it_cannot_vouch_for() {
        let r = TwoReplicas::new().await;
        r.revoke().await;
        r.here.org(r.org).await.unwrap();
        let mut seen = std::collections::HashMap::new();
        r.here.poll_versions(&mut seen).await.unwrap();
        assert!(r.here.authenticate(&r.token).await.unwrap().is_none());
        // The same for an org made since the last poll, whose rows the poll has not seen; a
        // row that does not read (a damaged id) stops no poll.
        sqlx::query(
            "INSERT INTO orgs (id, name, default_holder, unwrap_cache_ttl_ms, created_at, version)
             VALUES ('not hex', 'x', 'managed', 1, 0, 1)",
        )
        .execute(r.there.store.pool())
        .await
        .unwrap();
        let (newer, _) = r.there.create_org("newer", None, None, None).await.unwrap();
        let (_, token) = r
            .there
            .create_token(newer, Role::Service, "app", None)
            .await
            .unwrap();
        let who = r.here.authenticate(&token).await.unwrap().unwrap();
        r.there
            .revoke_token(Some(newer), who.grant.id)
            .await
            .unwrap();
        r.here.org(newer).await.unwrap();
        r.here.poll_versions(&mut seen).await.unwrap();
        assert!(seen.contains_key(&newer));
        assert!(r.here.authenticate(&token).await.unwrap().is_none());
    }

    /// Revoking one token moves the epoch every admission compares, but refuses no other
    /// token: one held in memory at once, one no longer held (another replica's change of the
    /// org dropped the org's grants) after a look in storage.
    #[tokio::test]
    async fn another_tokens_revoke_refuses_no_one_else() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let s = test_service(&db, 3);
        let (org, team, a, b) = two_callers(&s).await;
        s.revoke_token(Some(org), b.grant.id).await.unwrap();
        let encrypt = || s.encrypt(&a, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new());
        encrypt().await.expect("held in memory");
        let version = s.org(org).await.unwrap().version();
        assert!(s.org_changed(org, version + 1));
        assert!(s.grants.get(&a.hash).is_none(), "the org's grants dropped");
        encrypt().await.expect("still stored");
    }

    /// A call admitted before a revoke (holding the org's gate for reading, as it does until
    /// its key material has left) finishes before the revoke commits: the revoke's answer
    /// comes after every call it did not stop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_waits_for_the_calls_already_admitted() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let s = Arc::new(test_service(&db, 3));
        let (org, _, who, _) = two_callers(&s).await;
        let cell = s.org(org).await.unwrap();
        let admitted = cell.gate.read().await;
        let revoke = tokio::spawn({
            let (s, id) = (s.clone(), who.grant.id);
            async move { s.revoke_token(Some(org), id).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!revoke.is_finished(), "the revoke did not wait");
        assert!(
            s.grants.get(&who.hash).is_some(),
            "forgotten while admitted"
        );
        drop(admitted);
        revoke.await.unwrap().unwrap();
        assert!(s.grants.get(&who.hash).is_none());
    }

    /// An admin's change still on its way when its token is revoked (authenticated before,
    /// committing after) is refused, and nothing of it lands; a change no request makes (a
    /// job) has no token to check.
    #[tokio::test]
    async fn a_change_by_a_token_revoked_meanwhile_is_refused() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let s = test_service(&db, 3);
        let (org, _) = s.create_org("org", None, None, None).await.unwrap();
        let team = s.create_scope(org, org, "team").await.unwrap();
        let team = ScopeId::parse_hex(&team.id).unwrap();
        let (_, token) = s
            .create_token(org, Role::Admin, "admin", None)
            .await
            .unwrap();
        let who = s.authenticate(&token).await.unwrap().unwrap();
        s.revoke_token(Some(org), who.grant.id).await.unwrap();
        // As a request authenticated with `who` runs.
        async fn as_actor<T>(who: &Authenticated, f: impl Future<Output = T>) -> T {
            let grant = who.grant.clone();
            audit::with_actor_slot(async move {
                audit::set_actor(grant);
                f.await
            })
            .await
        }
        let pause = as_actor(&who, s.pause(org, team)).await.map(drop);
        assert!(
            matches!(pause, Err(ServiceError::Unauthenticated(_))),
            "{pause:?}"
        );
        let grace = crate::service::SettingsChange {
            outage_grace: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let setting = as_actor(&who, s.update_org(org, grace)).await.map(drop);
        assert!(
            matches!(setting, Err(ServiceError::Unauthenticated(_))),
            "{setting:?}"
        );
        let cell = s.org(org).await.unwrap();
        assert!(
            cell.snapshot().check_usable(team).is_ok(),
            "the pause landed"
        );
        assert_eq!(cell.meta().outage_grace_ms, 0, "the setting landed");
        let made = as_actor(&who, s.create_token(org, Role::Admin, "again", None)).await;
        assert!(
            matches!(made, Err(ServiceError::Unauthenticated(_))),
            "{:?}",
            made.map(drop)
        );
        let tokens = s.list_tokens(Some(org)).await.unwrap();
        assert!(tokens.iter().all(|t| t.name != "again"), "a token was made");
        // The witness decides whom the org trusts to vouch for its log.
        let vkey = witness_vkey();
        let witness = as_actor(&who, s.set_witness(org, Some(&vkey))).await;
        assert!(
            matches!(witness, Err(ServiceError::Unauthenticated(_))),
            "{witness:?}"
        );
        // Nor may it revoke another token.
        let (kept, _) = s
            .create_token(org, Role::Service, "kept", None)
            .await
            .unwrap();
        let revoke = as_actor(&who, s.revoke_token(Some(org), kept)).await;
        assert!(
            matches!(revoke, Err(ServiceError::Unauthenticated(_))),
            "{revoke:?}"
        );
        let tokens = s.list_tokens(Some(org)).await.unwrap();
        assert!(
            tokens.iter().any(|t| t.name == "kept"),
            "the token was revoked"
        );
        s.pause(org, team).await.expect("no actor: a job");
        assert_eq!(
            s.set_witness(org, Some(&vkey)).await.unwrap().as_deref(),
            Some("w")
        );
    }

    /// A C2SP note verifier key (`tlog-cosignature` v1, Ed25519) of a witness named `w`.
    fn witness_vkey() -> String {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        use base64ct::Encoding;
        use sha2::Digest;
        let pair = Ed25519KeyPair::from_seed_unchecked(&[42; 32]).unwrap();
        let mut raw = vec![0x04];
        raw.extend_from_slice(pair.public_key().as_ref());
        let id = sha2::Sha256::digest([b"w\n".as_slice(), &raw].concat());
        let id: String = id[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("w+{id}+{}", base64ct::Base64::encode_string(&raw))
    }

    /// A call authenticated before its token's expiry and admitted after it (it waited for a
    /// KMS, say) gets nothing, as one revoked meanwhile: data calls, on a cache hit or a miss,
    /// and changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_whose_token_expired_on_its_way_gets_nothing() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let s = test_service(&db, 3);
        let (org, team) = crate::service::test_team(&s, None).await;
        let ends = store::now_ms() + 300;
        let (_, token) = s
            .create_token(org, Role::Admin, "brief", Some(ends))
            .await
            .unwrap();
        let who = s.authenticate(&token).await.unwrap().unwrap();
        let x = || SealBuffer::copy_of(b"x");
        s.encrypt(&who, org, team, x(), Default::default())
            .await
            .expect("in force");
        while store::now_ms() <= ends {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let hit = s.encrypt(&who, org, team, x(), Default::default()).await;
        assert!(
            matches!(hit, Err(ServiceError::Unauthenticated(_))),
            "{hit:?}"
        );
        s.cache().evict_org(org);
        let miss = s.encrypt(&who, org, team, x(), Default::default()).await;
        assert!(
            matches!(miss, Err(ServiceError::Unauthenticated(_))),
            "{miss:?}"
        );
        let grant = who.grant.clone();
        let pause = audit::with_actor_slot(async move {
            audit::set_actor(grant);
            s.pause(org, team).await
        })
        .await;
        assert!(
            matches!(pause, Err(ServiceError::Unauthenticated(_))),
            "{pause:?}"
        );
    }

    /// On PostgreSQL, a change that checked its token holds the token's row to its commit: a
    /// revoke on another replica waits for it instead of landing between the check and the
    /// commit (after which the change would land after the revoke answered).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_elsewhere_waits_for_a_change_that_checked_its_token() {
        let Some(url) = store::test_postgres_url().await else {
            return;
        };
        let here = test_service(&Database::open(&url).await.unwrap(), 3);
        let elsewhere = Arc::new(test_service(&Database::open(&url).await.unwrap(), 3));
        let (org, _) = here.create_org("org", None, None, None).await.unwrap();
        let (id, _) = here
            .create_token(org, Role::Admin, "admin", None)
            .await
            .unwrap();
        let mut change = here.store().write().await.unwrap();
        assert!(
            tokens::still_in_force(&mut change, id, store::now_ms())
                .await
                .unwrap()
        );
        let revoke = tokio::spawn({
            let elsewhere = elsewhere.clone();
            async move { elsewhere.revoke_token(Some(org), id).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!revoke.is_finished(), "the revoke landed inside the change");
        change.commit().await.unwrap();
        revoke.await.unwrap().unwrap();
        let mut after = here.store().write().await.unwrap();
        assert!(
            !tokens::still_in_force(&mut after, id, store::now_ms())
                .await
                .unwrap()
        );
    }

    /// A change on `here` that checked token `held` (so holds its row), and a claim of `org`
    /// with admin token `first` spawned on `elsewhere` meanwhile.
    async fn claim_while_held(
        here: &Service,
        elsewhere: &Arc<Service>,
        first: &str,
        org: ScopeId,
        held: TokenId,
    ) -> (
        store::WriteTx,
        tokio::task::JoinHandle<Result<(TokenId, Zeroizing<String>, Vec<TokenId>)>>,
    ) {
        let mut change = here.store().write().await.unwrap();
        assert!(
            tokens::still_in_force(&mut change, held, store::now_ms())
                .await
                .unwrap()
        );
        let who = elsewhere.authenticate(first).await.unwrap().expect("known");
        let elsewhere = elsewhere.clone();
        let claim = tokio::spawn(async move { elsewhere.claim_org(&who, org, "customer").await });
        (change, claim)
    }

    /// On PostgreSQL a claim takes the admin tokens' rows before the org's, as every admin
    /// change does: an admin change on another replica holding its token's row (one the claim
    /// deletes after another) and then taking the org's does not deadlock against the claim.
    /// Before, the claim logged each revoke as it went, so it held the org's row while it
    /// waited for the next token's: PostgreSQL killed one of the two.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_and_an_admin_change_elsewhere_do_not_deadlock() {
        let Some(url) = store::test_postgres_url().await else {
            return;
        };
        let here = test_service(&Database::open(&url).await.unwrap(), 3);
        let elsewhere = Arc::new(test_service(&Database::open(&url).await.unwrap(), 3));
        let (org, first) = here.create_org("org", None, None, None).await.unwrap();
        for name in ["vendor a", "vendor b"] {
            here.create_token(org, Role::Admin, name, None)
                .await
                .unwrap();
        }
        // The claim deletes the admin tokens in id order: the last of three has one before it.
        let last: String = sqlx::query_scalar(
            "SELECT id FROM tokens WHERE org_id = $1 AND role = 'admin' ORDER BY id DESC LIMIT 1",
        )
        .bind(org.to_string())
        .fetch_one(here.store().pool())
        .await
        .unwrap();
        let last = TokenId::parse(&last).unwrap();
        // An admin change on this replica: its token's row held.
        let (mut change, claim) = claim_while_held(&here, &elsewhere, &first, org, last).await;
        // Until the claim waits for that token's row.
        let waiting = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")
                .fetch_one(here.store().pool())
                .await
                .unwrap()
        };
        for _ in 0..500 {
            if waiting().await > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(waiting().await > 0, "the claim did not wait for the token");
        // The change now takes the org's row, as an admin change does.
        change.lock_org(org).await.expect("no deadlock");
        change.commit().await.unwrap();
        let (_, _, revoked) = claim.await.unwrap().expect("the claim went through");
        assert_eq!(revoked.len(), 3, "{revoked:?}");
    }

    /// On PostgreSQL, an admin token made on another replica by an admin whose change checked
    /// its token before the claim read the org's admin tokens (and so was not in that read) is
    /// revoked by the claim too: the claim's delete of the maker's token waits for that change,
    /// and the claim reads again. Before, it survived the claim, unlisted in its receipt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_claim_revokes_an_admin_token_made_elsewhere_while_it_ran() {
        let Some(url) = store::test_postgres_url().await else {
            return;
        };
        let here = test_service(&Database::open(&url).await.unwrap(), 3);
        let elsewhere = Arc::new(test_service(&Database::open(&url).await.unwrap(), 3));
        let (org, first) = here.create_org("org", None, None, None).await.unwrap();
        let vendor = here.authenticate(&first).await.unwrap().expect("known");
        let maker = vendor.grant.id;
        // The vendor's create_token on this replica: its token checked, its row held.
        let (mut change, claim) = claim_while_held(&here, &elsewhere, &first, org, maker).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !claim.is_finished(),
            "the claim did not wait for the change"
        );
        let (made, _) = tokens::create(
            &mut change.tx,
            Some(org),
            Role::Admin,
            "made meanwhile",
            store::now_ms(),
            None,
        )
        .await
        .unwrap();
        change.commit().await.unwrap();
        let (_, _, revoked) = claim.await.unwrap().unwrap();
        assert!(revoked.contains(&made), "{revoked:?}");
        assert!(revoked.contains(&maker), "{revoked:?}");
        let mut after = here.store().write().await.unwrap();
        assert!(
            !tokens::still_in_force(&mut after, made, store::now_ms())
                .await
                .unwrap(),
            "the token made meanwhile survived the claim"
        );
    }

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
        let who = s.authenticate(&token).await.unwrap().expect("known");
        let (grant, hash) = (who.grant, who.hash);
        let held = s.grants.get(&hash).unwrap();
        assert!(held.last_used_at.is_some(), "the first use is written down");
        // Its last use is now a minute old, and the database is gone.
        s.grants
            .touched(&hash, store::now_ms() - TOUCH_EVERY_MS - 1);
        db.pool().close().await;
        let again = s.authenticate(&token).await.unwrap().expect("still known");
        assert_eq!(again.grant.id, grant.id);
        // An unknown token needs the database: that is a database failure, not a "no".
        let err = s.authenticate("byok_unknown").await.unwrap_err();
        assert!(
            matches!(&err, ServiceError::Store(e) if e.is_unavailable()),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
