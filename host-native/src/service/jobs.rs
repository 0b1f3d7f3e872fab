//! Root rewrap jobs: a key change (attach, enable, disable, a new root version) starts a job
//! that wraps or rewraps root copies; it runs one step per transaction, shows its progress, and
//! resumes after a restart.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use byok_core::scope::{HolderId, JobStep};
use byok_core::{KeyId, ScopeId};
use serde::Serialize;

use super::job_leases::JobTurn;
use super::{Result, Service};
use crate::store::{self, holder_name};

/// A running re-encryption job.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// What it does.
    pub kind: String,
    /// Steps done.
    pub done: u64,
    /// Steps in all.
    pub total: u64,
    /// `running`, or `waiting on paused scope ID`: a job never works on a paused scope's keys;
    /// it continues as soon as that scope is resumed.
    pub status: String,
    /// The paused scope it waits on, if any.
    pub waiting_on: Option<String>,
}

/// Steps (or retirement batches) decided again in one run because their keys could no longer
/// be used after the waits; past it, the periodic scan's turn.
pub(super) const MAX_RELOADS: u32 = 3;

impl Service {
    /// Runs the org's re-encryption job to its end, one step per transaction, so that a crash
    /// resumes at the step it stopped at.
    pub async fn run_job(&self, org: ScopeId) -> Result<()> {
        if self.current_org(org).await?.snapshot().job().is_none() {
            return Ok(());
        }
        // One runner per org across replicas: if another has the turn (here: the periodic
        // retry, a retirement; elsewhere: another replica), it finishes the job, and progress
        // shows in `job()`.
        let Some(turn) = self.job_turn(org).await? else {
            return Ok(());
        };
        let done = self.run_job_steps(org, &turn).await;
        turn.end().await;
        done
    }

    /// The steps of [`Self::run_job`], for a caller that holds the org's job turn. Each step
    /// starts from storage's state (another replica may have done the last one before this one
    /// took over the lease).
    pub(super) async fn run_job_steps(&self, org: ScopeId, turn: &JobTurn<'_>) -> Result<()> {
        let mut reloads = 0;
        loop {
            if turn.lost() {
                return Ok(());
            }
            let cell = self.current_org(org).await?;
            let snap = cell.snapshot();
            let Some(step) = snap.job().and_then(|j| j.next_batch(1).first().cloned()) else {
                return Ok(());
            };
            // Never on a paused scope's keys: wait for the resume, which runs the job again.
            if let Some(by) = snap.job_waiting_on() {
                tracing::info!(org = %org, paused = %by, "job waits on a paused scope");
                return Ok(());
            }
            let done = match step {
                JobStep::WrapRoot { holder, version } => {
                    let resolved = self
                        .resolve_for_use(&cell, KeyId::new(org, version))
                        .await?;
                    let root = resolved.key.clone();
                    let wrapped = match holder {
                        HolderId::Managed => {
                            snap.wrap_root_managed(&self.managed, &root, &mut rand::rng())?
                        }
                        HolderId::Cmk(n) => {
                            let access = self.access(&cell, org, n).await?;
                            let secret = byok_core::SecretBytes::from_bytes(
                                &mut root.expose_secret().clone(),
                            );
                            let sent = self.cache.evictions(org);
                            let call = self.kms_call(org, n, &access, "Encrypt");
                            let answer = self
                                .kms
                                .wrap_counted(&access, &secret, version, &call.sent)
                                .await;
                            let err = answer.result.as_ref().err();
                            self.kms_answered(&cell, call, err, sent).await?;
                            answer.result?
                        }
                    };
                    self.transition(org, BTreeMap::new(), |o| {
                        // A root evicted by a denial (or past its TTL) while it was wrapped
                        // is not given another holder: asked anew.
                        self.still_usable(&cell, org, [&resolved])?;
                        Ok(((), o.record_root_copy(holder, version, wrapped)?))
                    })
                    .await
                }
                JobStep::Rewrap { from, to, .. } => {
                    let (f, t) = (
                        self.resolve_for_use(&cell, from).await?,
                        self.resolve_for_use(&cell, to).await?,
                    );
                    self.transition(org, BTreeMap::new(), |o| {
                        // After the wait for the org's turn: not with keys a denial evicted
                        // meanwhile, or whose root's TTL ended.
                        self.still_usable(&cell, org, [&f, &t])?;
                        Ok(((), o.rewrap_child(&step, &f.key, &t.key, &mut rand::rng())?))
                    })
                    .await
                }
            };
            match done {
                // Resolved anew from storage's state (a holder that refuses now ends the job's
                // run); a few times at most, then the periodic scan's turn.
                Err(super::ServiceError::Reloading) if reloads < MAX_RELOADS => reloads += 1,
                done => done?,
            }
        }
    }

    /// The org's running job: what it is for, and steps done of total.
    pub async fn job(&self, org: ScopeId) -> Result<Option<JobView>> {
        let cell = self.current_org(org).await?;
        let snap = cell.snapshot();
        let waiting_on = snap.job_waiting_on().map(|s| s.to_string());
        let status = waiting_on.as_ref().map_or_else(
            || "running".to_owned(),
            |s| format!("waiting on paused scope {s}"),
        );
        if let Some(r) = self.retire_progress(org).await? {
            return Ok(Some(JobView {
                kind: format!("retire {}: rewrap data keys", KeyId::new(r.scope, r.from)),
                done: r.done,
                total: r.total,
                status,
                waiting_on,
            }));
        }
        Ok(snap.job().map(|j| {
            let (done, total) = j.progress();
            JobView {
                kind: match &j.kind {
                    byok_core::scope::JobKind::WrapHolder(h) => {
                        format!("wrap root with {}", holder_name(*h))
                    }
                    byok_core::scope::JobKind::WrapRoot(v) => format!("wrap root version {v}"),
                    byok_core::scope::JobKind::RetireVersion(k) => format!("retire {k}"),
                    byok_core::scope::JobKind::RefreshHolder(h) => {
                        format!("wrap root again with {} (rotated)", holder_name(*h))
                    }
                },
                done: u64::try_from(done).unwrap_or(u64::MAX),
                total: u64::try_from(total).unwrap_or(u64::MAX),
                status: status.clone(),
                waiting_on: waiting_on.clone(),
            }
        }))
    }

    /// Runs each of the org's jobs that can go on, in turn: a retirement, core's job (root
    /// copies, child keys), the sweep of revoked scopes' stored keys. Returns whether all ended
    /// without a failure (each failure is logged; the periodic scan tries again).
    pub async fn run_jobs(&self, org: ScopeId) -> bool {
        let mut ok = true;
        if let Err(e) = self.run_retire(org).await {
            tracing::warn!(org = %org, error = ?e, "retirement stopped; it is retried");
            ok = false;
        }
        if let Err(e) = self.run_job(org).await {
            tracing::warn!(org = %org, error = ?e, "job stopped; it is retried");
            ok = false;
        }
        if let Err(e) = self.run_sweep(org).await {
            tracing::warn!(org = %org, error = ?e, "sweep stopped; it is retried");
            ok = false;
        }
        ok
    }

    /// Runs every job that no replica runs now: those a crash or a restart interrupted, those
    /// stopped by a failure, and those of a replica that died (its lease expired). Returns how
    /// many it ran. Called every `every`; a job that failed again waits longer each time
    /// (`JobBackoff`), up to `at_most`.
    pub async fn resume_jobs(&self, every: Duration, at_most: Duration) -> Result<usize> {
        let now = store::job_leases::clock_ms(self.store()).await?;
        let waiting = store::job_leases::waiting(self.store.pool(), now).await?;
        let mut ran = 0;
        for &org in &waiting {
            let now = self.now();
            if !self.job_backoff.due(org, now) {
                continue;
            }
            ran += 1;
            tracing::info!(org = %org, replica = %self.replica, "resuming a job");
            if !self.run_jobs(org).await {
                self.job_backoff.failed(org, self.now(), every, at_most);
            } else {
                self.job_backoff.clear(org);
            }
        }
        Ok(ran)
    }
}

/// When each org's stopped job is tried again. A job stopped by a failure (most often its
/// customer key refused or unreachable) is retried after one interval, then after twice as long
/// at each further failure, up to a bound: not at every tick, which would ask a withdrawn key's
/// KMS (and fill its audit trail, and this log) four times a minute for as long as it lasts. A
/// success, or the key's access given back, clears it; a kick (a scope resumed) runs the job
/// at once regardless.
#[derive(Default)]
pub(super) struct JobBackoff(std::sync::Mutex<HashMap<ScopeId, Wait>>);

/// An org's next try and the wait that led to it.
#[derive(Clone, Copy)]
struct Wait {
    not_before: Duration,
    last: Duration,
}

impl JobBackoff {
    /// Whether `org`'s job may be tried at `now` (the service's monotonic clock).
    pub(super) fn due(&self, org: ScopeId, now: Duration) -> bool {
        self.lock().get(&org).is_none_or(|w| now >= w.not_before)
    }

    /// `org`'s job failed at `now`: its next try waits `first`, or twice the last wait, at most
    /// `at_most` (and never less than `first`).
    pub(super) fn failed(&self, org: ScopeId, now: Duration, first: Duration, at_most: Duration) {
        let mut map = self.lock();
        let wait = match map.get(&org) {
            Some(w) => w.last.saturating_mul(2).min(at_most).max(first),
            None => first,
        };
        map.insert(
            org,
            Wait {
                not_before: now + wait,
                last: wait,
            },
        );
    }

    /// `org`'s job may run at the next tick again.
    pub(super) fn clear(&self, org: ScopeId) {
        self.lock().remove(&org);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ScopeId, Wait>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job failing again waits 1, 2, 4, ... intervals, up to the bound; a success (or access
    /// given back) brings it back to every tick. Other orgs are not held back.
    #[test]
    fn a_failing_job_waits_longer_each_time_up_to_the_bound() {
        let b = JobBackoff::default();
        let (org, other) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        let s = Duration::from_secs;
        let (every, at_most) = (s(15), s(100));
        let mut now = s(0);
        let mut waits = Vec::new();
        for _ in 0..5 {
            assert!(b.due(org, now));
            b.failed(org, now, every, at_most);
            let mut t = now;
            while !b.due(org, t) {
                t += s(1);
            }
            waits.push((t - now).as_secs());
            now = t;
        }
        assert_eq!(waits, [15, 30, 60, 100, 100]);
        assert!(b.due(other, now));
        b.failed(org, now, every, at_most);
        assert!(!b.due(org, now + s(99)));
        b.clear(org);
        assert!(b.due(org, now));
        b.failed(org, now, every, at_most);
        assert!(
            !b.due(org, now + s(14)) && b.due(org, now + s(15)),
            "cleared: from the start"
        );
    }
}
