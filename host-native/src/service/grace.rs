//! Outage grace on the server: an org whose KMS is unreachable (not denying) may keep serving
//! its cached roots past their TTL, up to its `outage_grace_ms`, as core's rule decides
//! ([`byok_core::grace`]; applied in `resolve.rs`). This module keeps what is reported about
//! it: the org is "in outage grace since T" (key health shows it with `grace_until`), one audit
//! event when grace starts and one when it ends (`recovered`: an unwrap succeeded; `denied`:
//! a KMS answer said the customer withdrew, and the org's keys were evicted; `expired`: the
//! grace ran out with the KMS still unreachable), and the `/metrics` counters.

use std::sync::atomic::Ordering;
use std::time::Duration;

use byok_core::ScopeId;
use byok_core::grace::{CachePolicy, Freshness};
use byok_core::kms::KmsError;
use byok_core::scope::HolderId;
use serde::Serialize;
use serde_json::json;

use super::cache::Evictions;
use super::{OrgCell, Result, Service, kind_code};
use crate::store::{self, audit, holder_name};

/// An org serving in outage grace.
#[derive(Clone, Debug)]
pub(super) struct Outage {
    /// The key holder that could not be reached.
    pub holder: HolderId,
    /// When grace started, ms since the epoch.
    pub since_ms: i64,
    /// The latest successful unwrap among the roots served in grace (the host's clock): the
    /// grace ends at this plus the TTL and the grace.
    pub last_unwrap: Duration,
    /// When the grace ends, ms since the epoch, as the audit log was told (and key health
    /// shows): converted once per `last_unwrap`, so that the two never differ by the
    /// conversion's rounding.
    pub until_ms: i64,
    /// Keys served past their TTL so far.
    pub served: u64,
}

/// Why grace ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GraceEnd {
    /// A root was unwrapped again, by holder `by`, on a call sent when the org's eviction
    /// counts were `since`. The grace's key is recorded working again only if it is the one
    /// that answered (the default may have moved during the outage) and no denial evicted the
    /// org since the call was sent (a key disabled just after the answer stays a denial).
    Recovered {
        /// The holder that answered.
        by: HolderId,
        /// The org's eviction counts when the call was sent.
        since: Evictions,
    },
    /// A KMS answer said the customer withdrew: the org's keys were evicted.
    Denied,
    /// TTL + grace passed with the KMS still unreachable.
    Expired,
}

impl GraceEnd {
    fn as_str(self) -> &'static str {
        match self {
            Self::Recovered { .. } => "recovered",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

/// A key's org serving in outage grace, as key health shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GraceView {
    /// When grace started (ms since the epoch): the first refresh that failed as unreachable.
    pub since: i64,
    /// When it ends at the latest (ms since the epoch): the last successful unwrap plus the
    /// cache TTL and the grace. After it, calls fail with 503 `kms_unavailable`.
    pub grace_until: i64,
    /// Keys served past their TTL so far.
    pub served: u64,
}

impl Service {
    /// The service's clock: monotonic, from its start. Cache freshness is measured on it.
    pub(super) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// `t` on the service's clock as ms since the Unix epoch, by the wall clock now: an instant
    /// `d` from now reads as the wall clock now plus `d`. Edges compare it (a lease's
    /// `expires_at`) with their own wall clocks, so a host clock stepped since the server
    /// started (NTP correcting one that ran ahead) must move it too; read once at the start, it
    /// kept such a lease alive for the whole step at an edge that does not cap it by `ttl_ms`.
    pub(super) fn wall_ms(&self, t: Duration) -> i64 {
        let (now, wall) = (self.now(), (self.wall)());
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match t.checked_sub(now) {
            Some(ahead) => wall.saturating_add(ms(ahead)),
            None => wall.saturating_sub(ms(now.saturating_sub(t))),
        }
    }

    /// The org's cache policy now: its TTL and grace, the server's retry interval.
    pub(super) fn cache_policy(&self, cell: &OrgCell) -> CachePolicy {
        let meta = cell.meta.read().unwrap_or_else(|p| p.into_inner());
        CachePolicy {
            ttl: Duration::from_millis(meta.unwrap_cache_ttl_ms),
            grace: Duration::from_millis(meta.outage_grace_ms),
            retry_every: self.outage_retry,
        }
    }

    fn outage(cell: &OrgCell) -> std::sync::MutexGuard<'_, Option<Outage>> {
        cell.outage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A root of the org was served past its TTL without asking the KMS (a refresh failed
    /// less than the retry interval ago).
    pub(super) fn served_stale(&self, cell: &OrgCell) {
        self.metrics.grace_serves.fetch_add(1, Ordering::Relaxed);
        if let Some(o) = Self::outage(cell).as_mut() {
            o.served += 1;
        }
    }

    /// Refreshing a root of freshness `f` failed with `err`, an outage, and core's rule lets it
    /// serve: the org is in grace (started now if it was not, audited once, and shown in the
    /// key's health). `since` is the org's eviction count when the refresh was sent: a denial
    /// evicting the org meanwhile (the key health check, another call) wins, and this fails
    /// with `err` instead of starting a grace after it.
    pub(super) async fn serving_in_grace(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        holder: HolderId,
        err: &KmsError,
        f: Freshness,
        since: Evictions,
    ) -> Result<()> {
        if self.cache.evicted_since(org, since) {
            return Err(err.clone().into());
        }
        self.metrics.grace_serves.fetch_add(1, Ordering::Relaxed);
        let policy = self.cache_policy(cell);
        let extend = |o: &mut Outage| {
            o.served += 1;
            if f.unwrapped_at > o.last_unwrap {
                o.last_unwrap = f.unwrapped_at;
                o.until_ms = self.wall_ms(policy.keep_until(o.last_unwrap));
            }
        };
        if let Some(o) = Self::outage(cell).as_mut() {
            extend(o);
            return Ok(());
        }
        // Starting: the state changes holding the store's writer, as in `end_grace`, so that
        // the audit log orders starts and ends as they happened.
        let mut w = self.store.write_org(org).await?;
        // Checked again with the writer held: a denial recorded during the wait evicted.
        if self.cache.evicted_since(org, since) {
            return Err(err.clone().into());
        }
        let started = {
            let mut o = Self::outage(cell);
            if let Some(o) = o.as_mut() {
                extend(o);
                return Ok(());
            }
            let since_ms = store::now_ms();
            let until_ms = self.wall_ms(policy.keep_until(f.unwrapped_at));
            *o = Some(Outage {
                holder,
                since_ms,
                last_unwrap: f.unwrapped_at,
                until_ms,
                served: 1,
            });
            (since_ms, until_ms)
        };
        let (since_ms, until) = started;
        self.metrics.orgs_in_grace.fetch_add(1, Ordering::Relaxed);
        let key = holder_name(holder);
        tracing::warn!(org = %org, key, until, error = %err, "KMS unreachable: serving cached keys in outage grace");
        audit::append(
            &mut w,
            org,
            since_ms,
            &json!({ "type": "outage_grace_started", "key": key, "error": kind_code(err),
                "provider_code": err.code, "grace_until": until }),
        )
        .await?;
        w.commit().await?;
        if let HolderId::Cmk(n) = holder {
            let detail = format!(
                "{err}; serving cached keys in outage grace until {until} (ms since the epoch)"
            );
            self.record_health(cell, org, n, kind_code(err).into(), Some(detail))
                .await?;
        }
        Ok(())
    }

    /// Ends the org's grace, if it is in grace, for `why`: audited, and on recovery the key's
    /// health is `ok` again (see [`GraceEnd::Recovered`]).
    pub(super) async fn end_grace(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        why: GraceEnd,
    ) -> Result<()> {
        if Self::outage(cell).is_none() {
            return Ok(());
        }
        let mut w = self.store.write_org(org).await?;
        let Some(o) = Self::outage(cell).take() else {
            return Ok(());
        };
        self.metrics.orgs_in_grace.fetch_sub(1, Ordering::Relaxed);
        let key = holder_name(o.holder);
        tracing::info!(org = %org, key, reason = why.as_str(), served = o.served, "outage grace ended");
        audit::append(
            &mut w,
            org,
            store::now_ms(),
            &json!({ "type": "outage_grace_ended", "key": key, "reason": why.as_str(),
                "since": o.since_ms, "served": o.served }),
        )
        .await?;
        w.commit().await?;
        if let (GraceEnd::Recovered { by, since }, HolderId::Cmk(n)) = (why, o.holder)
            && by == o.holder
        {
            self.record_health_unless_evicted(cell, org, n, "ok".into(), None, Some(since))
                .await?;
        }
        Ok(())
    }

    /// Ends the org's grace as `expired` if TTL + grace has passed since the last successful
    /// unwrap of a root it served (checked when a refresh fails, when keys are listed and at
    /// each health check).
    pub(super) async fn expire_grace(&self, cell: &OrgCell, org: ScopeId) -> Result<()> {
        let over = {
            let policy = self.cache_policy(cell);
            Self::outage(cell)
                .as_ref()
                .is_some_and(|o| self.now() >= policy.keep_until(o.last_unwrap))
        };
        if over {
            self.end_grace(cell, org, GraceEnd::Expired).await?;
        }
        Ok(())
    }

    /// The org's grace as key health shows it, if `holder` is the key in outage.
    pub(super) fn grace_view(&self, cell: &OrgCell, holder: HolderId) -> Option<GraceView> {
        Self::outage(cell)
            .as_ref()
            .filter(|o| o.holder == holder)
            .map(|o| GraceView {
                since: o.since_ms,
                grace_until: o.until_ms,
                served: o.served,
            })
    }
}
