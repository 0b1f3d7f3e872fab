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
use byok_core::scope::ScopeError;
use byok_core::{KeyId, ScopeId, ScopeKey};
use serde_json::json;

use super::tokens::Authenticated;
use super::{Result, Service, ServiceError};
use crate::store::{self, audit, tokens};

impl Service {
    /// A lease on `scope`'s keys (the document format is core's, [`byok_core::lease`]);
    /// `request_id` and the `audience` (the edge deployment asking) go into its audit event,
    /// so that a caller can match an answer to the log and the log says which edge holds keys.
    pub async fn lease(
        &self,
        who: &Authenticated,
        org: ScopeId,
        scope: ScopeId,
        request_id: &str,
        audience: Option<&str>,
    ) -> Result<Lease> {
        // Once more if a key was not kept after its resolve (a withdrawal in the org raced it,
        // or a denial evicted it): the retry asks the key holder anew, or is refused.
        match self.lease_once(who, org, scope, request_id, audience).await {
            Err(ServiceError::Reloading) => {
                self.lease_once(who, org, scope, request_id, audience).await
            }
            done => done,
        }
    }

    async fn lease_once(
        &self,
        who: &Authenticated,
        org: ScopeId,
        scope: ScopeId,
        request_id: &str,
        audience: Option<&str>,
    ) -> Result<Lease> {
        let cell = self.org(org).await?;
        lease_ttl(&cell)?;
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
        // A version read from the snapshot and retired since (a retirement committed while a
        // key holder was asked) is not `not_found`, which an edge takes for a refusal and drops
        // its keys: the lease is asked for again, on the state now.
        let retired = |e: ServiceError| match e {
            ServiceError::Scope(ScopeError::UnknownVersion(k))
                if k.scope == scope && versions.contains(&k.version) =>
            {
                ServiceError::Reloading
            }
            other => other,
        };
        let mut keys = Vec::with_capacity(versions.len());
        for v in &versions {
            let k = self
                .scope_key(&cell, KeyId::new(scope, *v))
                .await
                .map_err(retired)?;
            keys.push(ScopeKey::new(k.id(), k.duplicate_secret()));
        }
        // Checked again on the published state, and audited, before any key leaves: a lease
        // is never issued after a pause or revoke that committed first.
        let ids: Vec<KeyId> = versions.iter().map(|v| KeyId::new(scope, *v)).collect();
        let _admitted = self.admit(&cell, &ids, who).await.map_err(retired)?;
        let mut w = self.store.write_org(org).await?;
        // Its end is decided with the writer held, after what may have been a long wait for
        // it: a denial meanwhile evicted the keys (the server no longer holds them, so no edge
        // may), and a lowered grace or TTL applies at once.
        let ends = self.lease_end(&cell, &versions, scope, who)?;
        let expires_at = self.wall_ms(ends);
        audit::append(
            &mut w,
            org,
            store::now_ms(),
            &json!({ "type": "lease_issued", "scope": scope.to_string(), "versions": versions, "expires_at": expires_at, "request_id": request_id, "audience": audience }),
        )
        .await?;
        // The append holds the org's row lock, so every other change of the org, on any
        // replica, commits wholly before this point or after this lease. One before it that
        // this replica has not heard of yet (a pause elsewhere) moved the version: refused,
        // instead of leasing keys for a whole TTL on a state that is gone. A revoke of the
        // caller's token before it (here or elsewhere) deleted the row: refused. One after it
        // finds this lease in the log, so its receipt counts it.
        if w.lock_org(org).await? != cell.version() {
            drop(w);
            self.forget_cell(org, &cell);
            return Err(ServiceError::Reloading);
        }
        if !tokens::in_force(&mut *w.tx, who.grant.id, store::now_ms()).await? {
            return Err(ServiceError::Unauthenticated(
                "this token was revoked or expired while the lease was being issued".into(),
            ));
        }
        w.commit().await?;
        self.metrics.leases.fetch_add(1, Ordering::Relaxed);
        // The versions come from one snapshot, so they are distinct and include the current one.
        // Its length too, counted from now, not from before the waits above: an edge ends it by
        // its own clock (core's `lease` docs), and must not run past `expires_at` by them.
        let ttl_ms = u64::try_from(ends.saturating_sub(self.now()).as_millis()).unwrap_or(u64::MAX);
        let lease = Lease::new(scope, current, keys, expires_at, ttl_ms)
            .map_err(|_| byok_core::Error::Internal("a scope's versions do not form a lease"))?;
        Ok(lease)
    }

    /// When a lease of `versions` of `scope` must end, now: when the first of the roots its
    /// keys came from may no longer serve (the org's policy as it stands), and never after the
    /// caller's token expires. A version no longer cached is [`ServiceError::Reloading`].
    fn lease_end(
        &self,
        cell: &super::OrgCell,
        versions: &[u32],
        scope: ScopeId,
        who: &Authenticated,
    ) -> Result<Duration> {
        let now = self.now();
        // Read now, not at the request's start: a lease TTL lowered (or set to 0) while this
        // waited for keys and the writer applies to this lease.
        let ttl = Duration::from_millis(lease_ttl(cell)?);
        let policy = self.cache_policy(cell);
        let snap = cell.snapshot();
        let mut ends = now.saturating_add(ttl);
        for v in versions {
            let key = KeyId::new(scope, *v);
            // The key itself still held (a denial evicts it), and its root's freshness as it
            // stands: whether its TTL has passed since the key was resolved, and whether a
            // refresh has failed since (grace) or none was tried yet (answer `Reloading`: the
            // retry asks the key holder).
            self.cache.get(key, now).ok_or(ServiceError::Reloading)?;
            let root = self
                .cache
                .get(snap.root_of(key)?, now)
                .ok_or(ServiceError::Reloading)?;
            let until = policy
                .lease_until(root.freshness, now, ttl)
                .ok_or(ServiceError::Reloading)?;
            ends = ends.min(until);
        }
        if let Some(expires_at) = who.grant.expires_at {
            let left = expires_at.saturating_sub(store::now_ms());
            let left = u64::try_from(left)
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| ServiceError::Unauthenticated("this token has expired".into()))?;
            ends = ends.min(now.saturating_add(Duration::from_millis(left)));
        }
        Ok(ends)
    }
}

/// The org's lease TTL in ms as published now; 0 refuses leases.
fn lease_ttl(cell: &super::OrgCell) -> Result<u64> {
    match cell.meta().lease_ttl_ms {
        0 => Err(ServiceError::Invalid(
            "this organization does not allow edge leases (lease_ttl_ms is 0)".into(),
        )),
        ttl => Ok(ttl),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::super::{Authenticated, ServiceError, test_caller, test_service, test_team};
    use crate::store::{Database, Role};
    use byok_core::ScopeId;

    /// A service on an in-memory database, an org leasing for 60 s with scope `team`, and an
    /// edge's service token of it: `(db, service, org, team, the edge)`.
    async fn leasing() -> (
        Database,
        std::sync::Arc<crate::service::Service>,
        ScopeId,
        ScopeId,
        Authenticated,
    ) {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = std::sync::Arc::new(test_service(&db, 3));
        let (org, team) = test_team(&svc, Some(Duration::from_secs(60))).await;
        let (_, token) = svc
            .create_token(org, Role::Service, "edge", None)
            .await
            .unwrap();
        let who = svc.authenticate(&token).await.unwrap().unwrap();
        (db, svc, org, team, who)
    }

    /// A lease waiting for the store's writer when a denial evicts the org's keys gets none of
    /// the keys it held: the server no longer holds them, so no edge may (its end is decided
    /// with the writer held). Its retry asks the key holder anew (here the managed key, which
    /// answers; a withdrawn CMK would refuse). Its length also counts from then, not from
    /// before the wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_decides_its_end_after_waiting_for_the_writer() {
        let (_db, svc, org, team, who) = leasing().await;
        svc.lease(&who, org, team, "warm", None).await.unwrap();
        let lease = |who: Authenticated| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.lease(&who, org, team, "req", None).await })
        };
        // Evicted while the lease waits for the writer.
        let writer = svc.store().write().await.unwrap();
        let waiting = lease(who.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        let unwraps = || svc.metrics.root_unwraps.load(Ordering::SeqCst);
        let before = unwraps();
        svc.cache().evict_org(org);
        drop(writer);
        waiting.await.unwrap().unwrap();
        assert_eq!(unwraps(), before + 1, "an evicted key was leased");
        // Issued after a wait: its length is what is left of it when it leaves.
        svc.lease(&who, org, team, "warm", None).await.unwrap();
        let writer = svc.store().write().await.unwrap();
        let waiting = lease(who.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(writer);
        let issued = waiting.await.unwrap().unwrap();
        let left = issued.expires_at() - crate::store::now_ms();
        let ttl = i64::try_from(issued.ttl_ms()).unwrap();
        assert!(
            ttl <= left + 5,
            "ttl_ms {ttl} outlasts expires_at (in {left} ms)"
        );
    }

    /// A lease TTL lowered while a lease waits for the writer applies to that lease (here to
    /// 0: no leases). Its end used to be decided by the TTL read when the request began, so a
    /// lease was issued for the old TTL after the admin's change had answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_ttl_lowered_while_a_lease_waits_applies_to_it() {
        let (db, svc, org, team, who) = leasing().await;
        // Cold: the lease's root unwrap is written down first, and waits for the writer.
        svc.cache().evict_org(org);
        let writer = svc.store().write().await.unwrap();
        let waiting = tokio::spawn({
            let svc = svc.clone();
            async move { svc.lease(&who, org, team, "req", None).await }
        });
        let queued = |n: usize| {
            let db = db.clone();
            async move {
                while db.writes_waiting() < n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        queued(1).await;
        // The admin's change, queued before the lease's own write.
        let change = tokio::spawn({
            let svc = svc.clone();
            let lower = crate::service::SettingsChange {
                lease_ttl: Some(Duration::ZERO),
                ..Default::default()
            };
            async move { svc.update_org(org, lower).await }
        });
        queued(2).await;
        drop(writer);
        change.await.unwrap().unwrap();
        let answer = waiting.await.unwrap();
        assert!(
            matches!(&answer, Err(ServiceError::Invalid(m)) if m.contains("lease_ttl_ms is 0")),
            "{:?}",
            answer.map(|l| l.ttl_ms())
        );
    }

    /// A lease that resolved its keys within the root's TTL, then waited past the TTL's end,
    /// does not get them: the root is not in grace (no refresh has failed), only not asked
    /// again yet, and its key holder must answer before keys leave, or a withdrawal there
    /// would reach edges a lease TTL late. Its retry asks it, and the lease ends by the new
    /// TTL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lease_past_its_roots_ttl_waits_for_the_key_holder() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = std::sync::Arc::new(test_service(&db, 3));
        let ttl = Duration::from_millis(600);
        let (org, _) = svc
            .create_org(
                "org",
                Some(ttl),
                Some(Duration::from_secs(60)),
                Some(Duration::from_secs(3_600)),
            )
            .await
            .unwrap();
        let team = svc.create_scope(org, org, "team").await.unwrap();
        let team = ScopeId::parse_hex(&team.id).unwrap();
        let who = test_caller(&svc, org).await;
        svc.lease(&who, org, team, "warm", None).await.unwrap();
        // Resolved while fresh, decided after the TTL.
        let writer = svc.store().write().await.unwrap();
        let waiting = tokio::spawn({
            let (svc, who) = (svc.clone(), who.clone());
            async move { svc.lease(&who, org, team, "req", None).await }
        });
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        let before = svc.metrics.root_unwraps.load(Ordering::SeqCst);
        drop(writer);
        let renewed = waiting.await.unwrap().unwrap();
        let after = svc.metrics.root_unwraps.load(Ordering::SeqCst);
        assert_eq!(after, before + 1, "the key holder was not asked again");
        let left = renewed.expires_at() - crate::store::now_ms();
        assert!(
            left <= 600,
            "a lease of {left} ms from a root fresh for 600"
        );
    }

    /// A lease never outlives its token: one expiring in 2 s gets a lease of at most 2 s,
    /// whatever the org's lease TTL.
    #[tokio::test]
    async fn a_lease_ends_by_its_tokens_expiry() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = test_service(&db, 3);
        let (org, team) = test_team(&svc, Some(Duration::from_secs(60))).await;
        let expires_at = crate::store::now_ms() + 2_000;
        let (_, token) = svc
            .create_token(org, Role::Service, "edge", Some(expires_at))
            .await
            .unwrap();
        let who = svc.authenticate(&token).await.unwrap().unwrap();
        let lease = svc.lease(&who, org, team, "req", None).await.unwrap();
        assert!(
            lease.expires_at() <= expires_at,
            "{} > {expires_at}",
            lease.expires_at()
        );
    }

    /// A lease asked of a replica that has not heard of its token's revoke elsewhere (the
    /// grant is still held in its memory) gets no keys: the revoke's receipt, which counts the
    /// leases in the log, promised none were issued after it. Here, two services over one
    /// database, nothing telling one of the other's changes.
    #[tokio::test]
    async fn a_lease_is_not_issued_to_a_token_revoked_on_another_replica() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let (here, elsewhere) = (test_service(&db, 3), test_service(&db, 3));
        let (org, team) = test_team(&here, Some(Duration::from_secs(60))).await;
        let (_, token) = here
            .create_token(org, Role::Service, "edge", None)
            .await
            .unwrap();
        let here = &here;
        let lease = |who: Authenticated| async move {
            here.lease(&who, org, team, "req", None).await.map(|_| ())
        };
        let who = here.authenticate(&token).await.unwrap().unwrap();
        assert!(lease(who.clone()).await.is_ok(), "the token works");
        elsewhere
            .revoke_token(Some(org), who.grant.id)
            .await
            .unwrap();
        // Still authenticated here, from memory.
        let who = here.authenticate(&token).await.unwrap().unwrap();
        // The revoke moved the org's version: the org is reloaded, then the token's row, read
        // under the org's row lock, is gone.
        let answer = lease(who).await;
        assert!(
            matches!(answer, Err(ServiceError::Unauthenticated(_))),
            "{answer:?}"
        );
    }

    /// A lease's `expires_at` is read on the wall clock as it is when the lease is issued: a
    /// host clock stepped back since the server started (NTP correcting one that ran ahead)
    /// does not leave it past the lease TTL from now, which an edge that does not cap it by
    /// `ttl_ms` would honour.
    #[tokio::test]
    async fn a_leases_expiry_follows_a_host_clock_stepped_since_the_start() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let mut svc = test_service(&db, 3);
        let (org, team) = test_team(&svc, Some(Duration::from_secs(60))).await;
        let who = test_caller(&svc, org).await;
        fn ten_minutes_back() -> i64 {
            crate::store::now_ms() - 600_000
        }
        svc.wall = ten_minutes_back;
        let lease = svc.lease(&who, org, team, "req", None).await.unwrap();
        let latest = ten_minutes_back() + 60_000;
        let at = lease.expires_at();
        assert!(
            (latest - 5_000..=latest).contains(&at),
            "{at}, not near {latest}"
        );
    }

    /// Two replicas, nothing telling one of the other's changes: a lease asked of the one
    /// that has not heard of a pause is refused, not issued for a whole TTL on the state
    /// before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_missed_a_pause_issues_no_lease() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let a = test_service(&Database::open(&url).await.unwrap(), 4);
        let b = test_service(&Database::open(&url).await.unwrap(), 4);
        let (org, team) = test_team(&a, Some(Duration::from_secs(60))).await;
        let who = test_caller(&b, org).await;
        b.lease(&who, org, team, "before", None)
            .await
            .expect("b leases");
        a.pause(org, team).await.unwrap();
        // b finds the org moved on under its lease, reloads it and decides again: the
        // pause's own answer.
        let again = b.lease(&who, org, team, "after", None).await.map(|_| ());
        assert!(
            matches!(
                again,
                Err(ServiceError::Scope(
                    byok_core::scope::ScopeError::Paused { .. }
                ))
            ),
            "{again:?}"
        );
    }
}
