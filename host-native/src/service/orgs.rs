//! Orgs: the first operator token, creating an org (in managed mode, with its first admin
//! token), and its audit log.

use std::collections::BTreeMap;
use std::time::Duration;

use byok_core::ScopeId;
use byok_core::grace::CachePolicy;
use byok_core::scope::Org;
use serde_json::json;
use zeroize::Zeroizing;

use super::apply::{self, Extra};
use super::org_cell::Unpublished;
use super::scopes::check_name;
use super::{Result, Service, ServiceError};
use crate::store::{self, OrgMeta, Role, audit, org_rows};

/// Settings an org's admin changes ([`Service::update_org`]); `None` keeps a setting.
#[derive(Clone, Copy, Debug, Default)]
pub struct SettingsChange {
    /// How long unwrapped keys stay cached (0: ask the key holder on every use).
    pub unwrap_cache_ttl: Option<Duration>,
    /// How long an edge lease lasts (0: no leases).
    pub lease_ttl: Option<Duration>,
    /// The outage grace.
    pub outage_grace: Option<Duration>,
}

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
    /// `grace` is its outage grace (default 0), checked by core's rule
    /// ([`CachePolicy::check_grace`]).
    pub async fn create_org(
        &self,
        name: &str,
        ttl: Option<Duration>,
        lease_ttl: Option<Duration>,
        grace: Option<Duration>,
    ) -> Result<(ScopeId, Zeroizing<String>)> {
        check_name(name)?;
        let ttl = ttl.unwrap_or(self.default_ttl);
        let grace = grace.unwrap_or(Duration::ZERO);
        CachePolicy::check_grace(ttl, grace).map_err(|e| ServiceError::Invalid(e.to_string()))?;
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
        let lease_ttl_ms = lease_ttl.map_or(60_000, millis);
        let meta = OrgMeta {
            name: name.to_owned(),
            unwrap_cache_ttl_ms: millis(ttl),
            created_at: store::now_ms(),
            lease_ttl_ms,
            outage_grace_ms: millis(grace),
            max_unwrap_cache_ttl_ms: millis(ttl),
            max_lease_ttl_ms: lease_ttl_ms,
        };
        let names = BTreeMap::from([(id, name.to_owned())]);
        let mut w = self.store.write_org(id).await?;
        // An operator whose token was revoked meanwhile makes no org (and no admin token).
        Self::actor_still_in_force(&mut w).await?;
        org_rows::insert_org(&mut w.tx, id, &meta).await?;
        let at = store::now_ms();
        audit::append(
            &mut w,
            id,
            at,
            &json!({ "type": "org_created", "name": name, "unwrap_cache_ttl_ms": meta.unwrap_cache_ttl_ms,
                "outage_grace_ms": meta.outage_grace_ms }),
        )
        .await?;
        // Nothing is cached or running for a new org: only the storage half applies.
        let _ = apply::write(&mut w, id, &effects, &names, &Extra::None, at).await?;
        drop(org);
        let (_, token) =
            store::tokens::create(&mut w.tx, Some(id), Role::Admin, "first admin", at, None)
                .await?;
        audit::append(
            &mut w,
            id,
            at,
            &json!({ "type": "token_created", "role": "admin", "name": "first admin" }),
        )
        .await?;
        w.commit().await?;
        Ok((id, token))
    }

    /// Changes the settings an org admin may change, audited: the unwrap cache TTL and the
    /// lease TTL (each from 0 up to what the operator created the org with: an admin may
    /// tighten the withdrawal bound, never loosen it past that) and the outage grace (core's
    /// rule, [`CachePolicy::check_grace`], on the TTL as changed). A setting left `None` keeps
    /// its value. Returns the org's metadata as it is now.
    pub async fn update_org(&self, org: ScopeId, change: SettingsChange) -> Result<OrgMeta> {
        let cell = self.org(org).await?;
        // Settings changes of one org take turns with each other and with transitions.
        let _turn = cell.turn.lock().await;
        let before = cell.meta();
        let mut after = before.clone();
        if let Some(ttl) = change.unwrap_cache_ttl {
            after.unwrap_cache_ttl_ms = millis(ttl);
        }
        if let Some(ttl) = change.lease_ttl {
            after.lease_ttl_ms = millis(ttl);
        }
        if let Some(grace) = change.outage_grace {
            after.outage_grace_ms = millis(grace);
        }
        for (name, value, max) in [
            (
                "unwrap_cache_ttl_ms",
                after.unwrap_cache_ttl_ms,
                after.max_unwrap_cache_ttl_ms,
            ),
            ("lease_ttl_ms", after.lease_ttl_ms, after.max_lease_ttl_ms),
        ] {
            if value > max {
                return Err(ServiceError::Invalid(format!(
                    "{name} is at most {max} for this org (what it was created with; the operator sets it): an admin may lower it, not raise it past that"
                )));
            }
        }
        CachePolicy::check_grace(
            Duration::from_millis(after.unwrap_cache_ttl_ms),
            Duration::from_millis(after.outage_grace_ms),
        )
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let mut changed = serde_json::Map::new();
        for (name, from, to) in [
            (
                "unwrap_cache_ttl_ms",
                before.unwrap_cache_ttl_ms,
                after.unwrap_cache_ttl_ms,
            ),
            ("lease_ttl_ms", before.lease_ttl_ms, after.lease_ttl_ms),
            (
                "outage_grace_ms",
                before.outage_grace_ms,
                after.outage_grace_ms,
            ),
        ] {
            if from != to {
                changed.insert(name.into(), json!({ "from": from, "to": to }));
            }
        }
        if changed.is_empty() {
            return Ok(before);
        }
        let mut w = self.store.write_org(org).await?;
        Self::actor_still_in_force(&mut w).await?;
        if w.lock_org(org).await? != cell.version() {
            drop(w);
            self.forget_cell(org, &cell);
            return Err(ServiceError::Reloading);
        }
        org_rows::set_settings(&mut w.tx, org, &after).await?;
        let mut event = json!({ "type": "org_settings_changed" });
        for (name, value) in changed {
            event[name] = value;
        }
        audit::append(&mut w, org, store::now_ms(), &event).await?;
        // Before the commit, so that its own notification finds the cell current. Until the
        // new settings are published too, a failure or a dropped future takes the cell out of
        // use: the next request reloads the org as storage has it (a commit that landed unseen
        // must not leave this replica on the old settings). Other replicas reload it on the
        // version.
        let mut unpublished = Unpublished::arm(self, org, &cell);
        let version = w.bump_org(org).await?.to;
        cell.version
            .store(version, std::sync::atomic::Ordering::SeqCst);
        // Published with the writer still held, so that a lease waiting for it ends by the new
        // lease TTL (the commit gives the writer up). A commit that fails takes the cell out
        // of use above: it is read again as stored.
        *cell.meta.write().unwrap_or_else(|p| p.into_inner()) = after;
        w.commit().await?;
        unpublished.disarm();
        // Cached keys are kept as the new settings say: a shorter TTL or grace drops what is
        // past it now.
        let policy = self.cache_policy(&cell);
        self.cache
            .rekeep_org(org, |f| policy.keep_until(f.unwrapped_at), self.now());
        self.expire_grace(&cell, org).await?;
        Ok(cell.meta())
    }

    /// Rows of the org's audit log after `after` that `filter` lets through.
    pub async fn audit(
        &self,
        org: ScopeId,
        after: i64,
        limit: i64,
        filter: &audit::AuditFilter,
    ) -> Result<Vec<audit::AuditRow>> {
        self.org(org).await?;
        // Paging by sequence number reads the primary key; a filter may scan the whole log
        // (see `audit_scans`): then the caller waits for its turn, within its deadline.
        let scans = filter.kind.is_some()
            || filter.scope.is_some()
            || filter.actor.is_some()
            || filter.since.is_some()
            || filter.until.is_some();
        let _turn = match scans {
            true => Some(self.audit_scans.take(org).await?),
            false => None,
        };
        Ok(audit::read(self.store.pool(), org, after, limit.clamp(1, 1000), filter).await?)
    }

    /// Checks the org's audit chain, taking turns (see `audit_walks`): a caller waits for its
    /// turn, within its request's deadline.
    pub async fn verify_audit(&self, org: ScopeId) -> Result<audit::Verification> {
        self.org(org).await?;
        let _turn = self.audit_walks.take(org).await?;
        Ok(audit::verify(self.store.pool(), org).await?)
    }
}

/// A duration in whole milliseconds (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::Database;

    /// Whole-chain verifications take turns: while one of an org's holds its turn, the org's
    /// next waits (and holds no connection), while another org's runs beside.
    #[tokio::test]
    async fn audit_verifications_take_turns_per_org() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = super::super::test_service(&db, 7);
        let (a, _) = super::super::test_team(&svc, None).await;
        let (b, _) = svc.create_org("b", None, None, None).await.unwrap();
        let held = svc.audit_walks.take(a).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), svc.verify_audit(a)).await;
        assert!(
            waiting.is_err(),
            "a second walk of the org ran beside the first"
        );
        assert!(
            svc.verify_audit(b).await.unwrap().ok,
            "another org's waited"
        );
        drop(held);
        assert!(svc.verify_audit(a).await.unwrap().ok);
    }

    /// A read in windows of a few sequence numbers a statement gives the rows one statement
    /// over the whole log gives, for every direction, filter, bound and limit.
    #[tokio::test]
    async fn audit_reads_in_windows_give_what_one_statement_gives() {
        windows_give_one_statements_rows(Database::open("sqlite::memory:").await.unwrap()).await;
        if let Some(url) = crate::store::test_postgres_url().await {
            windows_give_one_statements_rows(Database::open(&url).await.unwrap()).await;
        }
    }

    async fn windows_give_one_statements_rows(db: Database) {
        use crate::store::audit::{AuditFilter, read_in_windows};
        let svc = super::super::test_service(&db, 7);
        let (org, _) = svc.create_org("o", None, None, None).await.unwrap();
        let mut w = db.write_org(org).await.unwrap();
        for i in 0..23 {
            let kind = if i % 5 == 0 { "odd_one" } else { "common" };
            let event = serde_json::json!({ "type": kind, "i": i });
            crate::store::audit::append(&mut w, org, 1000 + i, &event)
                .await
                .unwrap();
        }
        w.commit().await.unwrap();
        let seqs = |rows: Vec<crate::store::audit::AuditRow>| -> Vec<i64> {
            rows.into_iter().map(|r| r.seq).collect()
        };
        let mut checked = 0;
        for kind in [None, Some("odd_one"), Some("none_such")] {
            for newest in [false, true] {
                for before in [None, Some(4), Some(17), Some(1000)] {
                    for after in [-5, 0, 2, 9, 30] {
                        for limit in [1, 3, 100] {
                            let filter = AuditFilter {
                                kind: kind.map(str::to_owned),
                                before,
                                newest,
                                ..Default::default()
                            };
                            let whole =
                                read_in_windows(db.pool(), org, after, limit, &filter, 1 << 40);
                            let whole = seqs(whole.await.unwrap());
                            for window in [1, 2, 3, 7] {
                                let paged =
                                    read_in_windows(db.pool(), org, after, limit, &filter, window);
                                let paged = seqs(paged.await.unwrap());
                                assert_eq!(
                                    paged, whole,
                                    "{filter:?} after {after} limit {limit} window {window}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 3 * 2 * 4 * 5 * 3 * 4);
        // What one statement gives is the rows asked for.
        let odd = AuditFilter {
            kind: Some("odd_one".into()),
            newest: true,
            ..Default::default()
        };
        let rows = seqs(
            read_in_windows(db.pool(), org, 0, 100, &odd, 2)
                .await
                .unwrap(),
        );
        let logged = crate::store::audit::read(db.pool(), org, 0, 1000, &Default::default())
            .await
            .unwrap();
        let expected: Vec<i64> = logged
            .iter()
            .rev()
            .filter(|r| r.event["type"] == "odd_one")
            .map(|r| r.seq)
            .collect();
        assert_eq!((rows.len(), rows), (5, expected));
    }

    /// Filtered audit reads (which may scan the whole log) take turns, a few at a time and one
    /// per org; paging by sequence number does not wait.
    #[tokio::test]
    async fn filtered_audit_reads_take_turns_paging_does_not() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = super::super::test_service(&db, 7);
        let (org, _) = super::super::test_team(&svc, None).await;
        let (others, _) = svc.create_org("others", None, None, None).await.unwrap();
        let by_kind = crate::store::audit::AuditFilter {
            kind: Some("scope_created".into()),
            ..Default::default()
        };
        let read = |o| svc.audit(o, 0, 10, &by_kind);
        let held = svc.audit_scans.take(org).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), read(org)).await;
        assert!(waiting.is_err(), "a second filtered read of the org ran");
        assert!(read(others).await.is_ok(), "another org's waited");
        let paged = svc.audit(org, 0, 10, &Default::default()).await.unwrap();
        assert!(!paged.is_empty());
        // The process's turns, all taken by other orgs: this one waits too.
        let (c, _) = svc.create_org("c", None, None, None).await.unwrap();
        let also = svc.audit_scans.take(c).await.unwrap();
        let full = tokio::time::timeout(Duration::from_millis(100), read(others)).await;
        assert!(
            full.is_err(),
            "more filtered reads ran than the process allows"
        );
        drop((held, also));
        assert_eq!(read(org).await.unwrap().len(), 1);
    }
}
