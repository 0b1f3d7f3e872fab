//! Several `byok serve` replicas over one PostgreSQL: how a change made on one reaches the
//! others. Each replica holds orgs in memory ([`super::OrgCell`]) with the version of storage
//! they were loaded at; every committed change bumps the org's version (`orgs.version`) in its
//! own transaction and, on PostgreSQL, sends `NOTIFY byok_org, 'org:version'`, delivered when
//! it commits. A replica that hears of a version newer than the one it holds retires its cell
//! (the next request reloads the org), drops the org's cached keys and its token grants.
//!
//! Notifications can be lost (the listening connection drops and reconnects, the database
//! restarts), so every replica also reads all orgs' versions every `poll` interval: that
//! interval, plus one query, is the stated worst-case bound for a pause, revoke, key change or
//! token revoke made on one replica to stop use on the others; a notification usually makes it
//! milliseconds. The operator's tokens belong to no org: the poll rechecks the cached ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{OrgCell, Result, Service};
use crate::store::{Role, org_rows, tokens};
use byok_core::ScopeId;

/// The channel replicas announce org changes on.
pub const CHANNEL: &str = "byok_org";

/// The `application_name` of the listening connection (operators, and the tests, can find it
/// in `pg_stat_activity`).
pub const LISTENER_NAME: &str = "byok-listen";

impl Service {
    /// Other replicas share this one's database, and hear of its changes at worst at the
    /// `poll`: withdrawal receipts then state when the slowest of them stops
    /// ([`Service::replicas_lag_ms`]).
    pub fn has_replicas(&self, poll: Duration) {
        let poll = i64::try_from(poll.as_millis()).unwrap_or(i64::MAX);
        self.last_poll_ms.store(self.now_ms(), Ordering::SeqCst);
        self.replicas_lag_ms.store(
            poll.saturating_add(super::usage::WINDOW_MS),
            Ordering::SeqCst,
        );
    }

    /// How long after a change here another replica may still serve what it withdrew, in ms
    /// (0 without replicas): the poll plus the usage window. A replica that reaches the
    /// database has heard of the change by the poll (a notification comes in milliseconds;
    /// the poll catches a lost one). One cut off from the database before it heard stops when
    /// its usage marks run out (each token's use of a scope needs a mark that often), and its
    /// last mark may have been written up to a poll after the change.
    pub fn replicas_lag_ms(&self) -> i64 {
        self.replicas_lag_ms.load(Ordering::SeqCst)
    }

    /// The service's clock in ms.
    fn now_ms(&self) -> i64 {
        i64::try_from(self.now().as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether this replica's last successful read of the orgs' versions is older than the
    /// bound withdrawal receipts state for the replicas ([`Self::replicas_lag_ms`]). Then a
    /// lost notification could have left it serving what another replica withdrew, past that
    /// bound: it serves no key (data calls are admitted only when this is false) and is not
    /// ready, until a poll succeeds. Always false without replicas.
    pub fn replica_behind(&self) -> bool {
        let lag = self.replicas_lag_ms.load(Ordering::Relaxed);
        lag > 0 && self.now_ms() - self.last_poll_ms.load(Ordering::SeqCst) > lag
    }

    /// Another replica changed org `org` to `version` (a notification or the poll). Returns
    /// whether the org's state held here was out of date and dropped.
    ///
    /// The org's token grants are dropped in every case, even when the org held here is
    /// already at `version`: something here may have reloaded it first (a key health check, a
    /// job step and an admin change each read the org's version), and that reload says
    /// nothing of grants read from storage before a token's revoke. Each is read again once.
    pub fn org_changed(&self, org: ScopeId, version: i64) -> bool {
        self.grants.retain(|_, g| g.org != Some(org));
        let cell = {
            let orgs = self.orgs.write().unwrap_or_else(|p| p.into_inner());
            let cell = orgs.get(&org).cloned();
            if cell.is_none() {
                // A load under way may have read storage before this change: it reads again.
                self.retired.note(org);
            }
            cell
        };
        if cell.as_ref().is_some_and(|c| c.version() >= version) {
            // This replica's own change, or one already seen.
            return false;
        }
        self.forget_org(org, cell.as_ref());
        true
    }

    /// Retires `cell`, org `org`'s copy here (or, with none, drops the org's cached keys): the
    /// next use reads the org from storage.
    fn forget_org(&self, org: ScopeId, cell: Option<&Arc<OrgCell>>) {
        match cell {
            Some(c) => self.forget_cell(org, c),
            None => self.cache.evict_org(org),
        }
        self.metrics.remote_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets org `org` whatever its versions: storage went back past what this replica saw.
    fn storage_went_back(&self, org: ScopeId) {
        self.grants.retain(|_, g| g.org != Some(org));
        let cell = self
            .orgs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&org)
            .cloned();
        self.forget_org(org, cell.as_ref());
        tracing::warn!(org = %org, "the org's stored version went back (commits lost: a failover or a restore?): read again");
    }

    /// One poll: every org's version against `seen` (what the last poll saw) and against the
    /// cells held here, then the operator's cached grants against the stored operator tokens.
    /// Returns how many orgs changed.
    pub async fn poll_versions(&self, seen: &mut HashMap<ScopeId, i64>) -> Result<usize> {
        // Known from when the read starts: a change committed after it waits for the next.
        let started = self.now_ms();
        let mut changed = 0;
        let first = seen.is_empty();
        let versions = org_rows::versions(self.store.pool()).await?;
        if first {
            // Grants read before this first poll may predate a revoke whose announcement was
            // missed, and no earlier version to compare tells: each is read again once.
            self.grants.retain(|_, g| g.org.is_none());
        }
        for (org, v) in versions {
            // Moved since the last poll, or held here behind what storage has (a cell loaded
            // before a lost notification).
            let before = seen.insert(org, v);
            let moved = matches!(before, Some(before) if before != v);
            if before.is_none() && !first {
                // An org made since the last poll: its grants, as on the first poll.
                self.grants.retain(|_, g| g.org != Some(org));
            }
            let (behind, ahead) = self
                .orgs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&org)
                .map_or((false, false), |c| (c.version() < v, c.version() > v));
            let went_back = matches!(before, Some(before) if v < before);
            if went_back || ahead {
                // Storage is behind what this replica saw: commits were lost (a failover to a
                // standby without them, a restore). A version it saw may be issued again to
                // another change, which the comparisons would take as seen: the org is read
                // again whatever the versions say. (A transition here records its version
                // just before its commit; a poll in that instant reloads once, harmlessly.)
                self.storage_went_back(org);
                changed += 1;
                continue;
            }
            if (moved || behind) && self.org_changed(org, v) {
                changed += 1;
            }
        }
        let operators = tokens::operator_hashes(self.store.pool()).await?;
        self.grants.retain(|hash, g| {
            g.role != Role::Operator || operators.iter().any(|h| h.as_slice() == hash)
        });
        self.last_poll_ms.fetch_max(started, Ordering::SeqCst);
        Ok(changed)
    }
}

/// Follows the other replicas' changes until the process ends: listens on [`CHANNEL`] on a
/// connection of its own and polls every `poll`. PostgreSQL only.
pub async fn follow(service: Arc<Service>, url: String, poll: Duration) {
    service.has_replicas(poll);
    let listening = {
        let service = service.clone();
        async move {
            loop {
                if let Err(e) = listen(&service, &url).await {
                    tracing::warn!(error = %e, "listening for other replicas' changes failed; the poll covers until it is back");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let polling = async move {
        let mut seen = HashMap::new();
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match service.poll_versions(&mut seen).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(orgs = n, "the poll found orgs changed by another replica"),
                Err(e) => tracing::warn!(error = ?e, "polling the orgs' versions failed"),
            }
        }
    };
    tokio::join!(listening, polling);
}

/// One poll as if it were the first (every cell held here checked against storage, the org
/// grants read again), for what was committed while no one listened. A failure is logged; the
/// regular poll covers it.
async fn catch_up(service: &Service) {
    match service.poll_versions(&mut HashMap::new()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(orgs = n, "changes made while not listening, now followed"),
        Err(e) => tracing::warn!(error = ?e, "reading the orgs' versions after listening failed"),
    }
}

/// One listening connection, until it fails.
async fn listen(service: &Service, url: &str) -> std::result::Result<(), sqlx::Error> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?.application_name(LISTENER_NAME);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    tracing::info!("listening for other replicas' changes");
    // Listen, then read: a change committed before the LISTEN took effect (this replica
    // starting, or the connection made again) was announced to no one here, and the next poll
    // may be an hour away. Cells held behind storage are found now; anything later is
    // announced.
    catch_up(service).await;
    loop {
        // `None`: the connection dropped and was made again; what was sent meanwhile is lost,
        // and is read back at once.
        let Some(n) = listener.try_recv().await? else {
            tracing::warn!(
                "the listening connection was lost and is back; reading what was missed"
            );
            catch_up(service).await;
            continue;
        };
        let parsed = n
            .payload()
            .split_once(':')
            .and_then(|(o, v)| Some((ScopeId::parse_hex(o)?, v.parse::<i64>().ok()?)));
        match parsed {
            Some((org, version)) => {
                service.org_changed(org, version);
            }
            None => tracing::warn!(payload = n.payload(), "an unreadable change notification"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use byok_core::envelope::SealBuffer;

    use super::super::{ServiceError, test_caller, test_service, test_team};
    use crate::store::Database;

    /// Storage whose org version went back (commits lost: a failover to a standby without
    /// them, a restore) makes the replica read the org again, even though its copy is ahead of
    /// storage: the number it saw may be issued again to another change (a pause), which the
    /// comparisons would then take as seen. And a key resolved on the copy retired meanwhile
    /// is refused: nothing is unwrapped on its old state.
    #[tokio::test]
    async fn storage_going_back_retires_the_copy_and_nothing_resolves_on_it() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let s = test_service(&db, 3);
        let (org, team) = test_team(&s, None).await;
        let mut seen = HashMap::new();
        s.poll_versions(&mut seen).await.unwrap();
        let cell = s.org(org).await.unwrap();
        sqlx::query("UPDATE orgs SET version = version - 1 WHERE id = $1")
            .bind(org.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        assert_eq!(s.poll_versions(&mut seen).await.unwrap(), 1);
        assert!(
            cell.stale.load(Ordering::SeqCst),
            "the copy ahead of storage was kept"
        );
        let unwraps = s.metrics.root_unwraps.load(Ordering::SeqCst);
        s.cache().evict_org(org);
        let resolved = s.scope_key(&cell, byok_core::KeyId::new(team, 1)).await;
        assert!(
            matches!(resolved, Err(ServiceError::Reloading)),
            "{:?}",
            resolved.map(drop)
        );
        assert_eq!(
            s.metrics.root_unwraps.load(Ordering::SeqCst),
            unwraps,
            "unwrapped on a retired copy"
        );
    }

    /// A version the database lost is not issued again. Replica A hears (by notification) of a
    /// resume that the database then loses (a failover to a standby without it): storage says
    /// paused again, at the version before. Replica B's next change must get a number past
    /// the lost one, or A would take it as seen and go on serving the scope as resumed.
    #[tokio::test]
    async fn a_version_the_database_lost_is_not_issued_again() {
        let Some(db) = crate::store::test_postgres().await else {
            return;
        };
        let (a, b) = (test_service(&db, 3), test_service(&db, 3));
        let (org, team) = test_team(&b, None).await;
        b.pause(org, team).await.unwrap();
        let paused_at = b.org(org).await.unwrap().version();
        b.resume(org, team).await.unwrap();
        let lost = b.org(org).await.unwrap().version();
        // A hears of the resume and loads the org as it is now.
        a.org_changed(org, lost);
        assert_eq!(a.org(org).await.unwrap().version(), lost);
        // The failover: the resume's commit is gone.
        sqlx::query("UPDATE scopes SET state = 'paused' WHERE org_id = $1 AND id = $2")
            .bind(org.to_string())
            .bind(team.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE orgs SET version = $1 WHERE id = $2")
            .bind(paused_at)
            .bind(org.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        // B's copy is ahead of storage: its change is refused once, then made on what is stored.
        let made = match b.create_scope(org, org, "after").await {
            Err(ServiceError::Reloading) => b.create_scope(org, org, "after").await,
            other => other,
        };
        made.unwrap();
        let next = b.org(org).await.unwrap().version();
        assert!(next > lost, "version {lost} issued again ({next})");
        assert!(a.org_changed(org, next), "the next change taken as seen");
        let snap = a.org(org).await.unwrap().snapshot();
        assert!(
            matches!(
                snap.check_usable(team),
                Err(byok_core::scope::ScopeError::Paused { .. })
            ),
            "A serves the scope the database says is paused"
        );
    }

    /// A replica whose reads of the orgs' versions have failed for longer than the bound its
    /// receipts state cannot vouch that no withdrawal was made elsewhere (a notification may
    /// have been lost): it serves no key and is not ready until a poll succeeds again.
    #[tokio::test]
    async fn a_replica_that_cannot_poll_serves_no_key_past_the_stated_bound() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let s = test_service(&db, 3);
        let (org, team) = test_team(&s, Some(Duration::from_secs(60))).await;
        let who = test_caller(&s, org).await;
        let encrypt = || s.encrypt(&who, org, team, SealBuffer::copy_of(b"x"), BTreeMap::new());
        encrypt().await.expect("one server: no poll to wait for");
        s.has_replicas(Duration::from_millis(500));
        encrypt().await.expect("following since just now");
        assert!(!s.replica_behind());
        // The last read of the versions, longer ago than the bound.
        let lag = s.replicas_lag_ms();
        s.last_poll_ms.fetch_sub(lag + 1, Ordering::SeqCst);
        assert!(s.replica_behind());
        let e = encrypt().await.map(drop);
        assert!(
            matches!(e, Err(ServiceError::ReplicaBehind)),
            "cached: {e:?}"
        );
        s.cache().evict_org(org);
        let e = encrypt().await.map(drop);
        assert!(
            matches!(e, Err(ServiceError::ReplicaBehind)),
            "resolved: {e:?}"
        );
        let e = s.lease(&who, org, team, "req", None).await.map(drop);
        assert!(
            matches!(e, Err(ServiceError::ReplicaBehind)),
            "lease: {e:?}"
        );
        // A poll that succeeds: serving again.
        s.poll_versions(&mut HashMap::new()).await.unwrap();
        assert!(!s.replica_behind());
        encrypt().await.expect("served after the poll");
    }

    /// Listen, then read: a change another replica committed before this one's LISTEN took
    /// effect was announced to no one here, and the next poll may be an hour away. Here the
    /// read of the versions is held on a lock until the listening connection has run LISTEN
    /// (so it cannot have come first), and the change it must find commits with no
    /// notification (so only that read can find it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_committed_before_listening_is_read_once_listening() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let db = Database::open(&url).await.unwrap();
        let s = std::sync::Arc::new(test_service(&db, 3));
        let (org, _) = test_team(&s, None).await;
        let held = s.org(org).await.unwrap().version();
        // Another replica's change, its transaction holding the orgs table.
        let mut change = db.pool().begin().await.unwrap();
        sqlx::query("LOCK TABLE orgs IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *change)
            .await
            .unwrap();
        crate::store::org_rows::bump(&mut change, org, false)
            .await
            .unwrap();
        let listening = tokio::spawn({
            let (s, url) = (s.clone(), url.clone());
            async move { super::listen(&s, &url).await }
        });
        // The first read of the versions, waiting on the lock.
        let waiting = "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                       WHERE c.relname = 'orgs' AND NOT l.granted";
        let mut tries = 0;
        while sqlx::query_scalar::<_, i64>(waiting)
            .fetch_one(db.pool())
            .await
            .unwrap()
            == 0
        {
            tries += 1;
            assert!(tries < 400, "the listener never read the orgs' versions");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let last: String = sqlx::query_scalar(
            "SELECT query FROM pg_stat_activity WHERE application_name = $1 \
             AND datname = current_database()",
        )
        .bind(super::LISTENER_NAME)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert!(
            last.starts_with("LISTEN"),
            "the versions were read before listening: the listener last ran {last:?}"
        );
        assert_eq!(s.metrics.remote_changes.load(Ordering::Relaxed), 0);
        change.commit().await.unwrap();
        // Found by that read: the cell held here is dropped.
        let mut tries = 0;
        while s.metrics.remote_changes.load(Ordering::Relaxed) == 0 {
            tries += 1;
            assert!(
                tries < 400,
                "the change committed before listening was missed"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(s.org(org).await.unwrap().version() > held);
        listening.abort();
    }
}
