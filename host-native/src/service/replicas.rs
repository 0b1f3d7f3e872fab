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

use super::{Result, Service};
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
        match &cell {
            Some(c) => self.forget_cell(org, c),
            None => self.cache.evict_org(org),
        }
        self.metrics.remote_changes.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// One poll: every org's version against `seen` (what the last poll saw) and against the
    /// cells held here, then the operator's cached grants against the stored operator tokens.
    /// Returns how many orgs changed.
    pub async fn poll_versions(&self, seen: &mut HashMap<ScopeId, i64>) -> Result<usize> {
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
            let behind = self
                .orgs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&org)
                .is_some_and(|c| c.version() < v);
            if (moved || behind) && self.org_changed(org, v) {
                changed += 1;
            }
        }
        let operators = tokens::operator_hashes(self.store.pool()).await?;
        self.grants.retain(|hash, g| {
            g.role != Role::Operator || operators.iter().any(|h| h.as_slice() == hash)
        });
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
    loop {
        // `None`: the connection dropped and was made again; what was sent meanwhile is lost,
        // and the poll finds it.
        let Some(n) = listener.try_recv().await? else {
            tracing::warn!(
                "the listening connection was lost and is back; the poll covers what was missed"
            );
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
