//! This replica's turn at an org's job: at most one runner per org in this process (a set of
//! orgs in memory) and across replicas (the lease in storage, `store/job_leases.rs`), renewed by
//! a heartbeat task for as long as the turn lives. If a renewal finds the lease gone (this
//! replica stalled past its expiry and another took it), the turn is marked lost and the job
//! stops before its next step; its writes are guarded anyway, so a step already under way
//! changes nothing twice.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use byok_core::ScopeId;

use super::{Result, Service};
use crate::store::{Database, job_leases};

/// The orgs whose job runs in this process now, each with whether another run was asked for
/// meanwhile (a resume kicked the job while its runner was finishing: that runner must not
/// be the reason the kick is lost).
#[derive(Default)]
pub(super) struct Running(std::sync::Mutex<HashMap<ScopeId, bool>>);

impl Running {
    /// Enters `org`'s run; if one is under way, asks it for another run and returns false.
    fn enter(&self, org: ScopeId) -> bool {
        match self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(org) {
            Entry::Occupied(mut e) => {
                *e.get_mut() = true;
                false
            }
            Entry::Vacant(e) => {
                e.insert(false);
                true
            }
        }
    }

    /// Leaves `org`'s run; returns whether another was asked for meanwhile.
    fn leave(&self, org: ScopeId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&org)
            .unwrap_or(false)
    }
}

/// Who this replica is in `job_leases.owner`: the process id (for an operator reading the
/// table) and a random part (process ids repeat across machines and restarts).
pub(super) fn replica_name() -> String {
    let mut tag = [0u8; 6];
    rand_core::Rng::fill_bytes(&mut rand::rng(), &mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("byok-{}-{tag}", std::process::id())
}

/// How long a job lease lasts without a renewal, unless configured.
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(30);

/// This replica's turn at one org's job; dropping it stops the heartbeat and gives the lease
/// up.
pub(super) struct JobTurn<'a> {
    service: &'a Service,
    db: Database,
    org: ScopeId,
    owner: String,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
    released: bool,
}

impl JobTurn<'_> {
    /// Whether the lease was lost: stop before the next step.
    pub(super) fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Ends the turn: the heartbeat stops and the lease is given up before this returns, so
    /// that the next turn this replica takes (a retirement's, then the job's) is not undone by
    /// a late release, and another replica need not wait for the expiry. If the release fails
    /// (the database is away), the lease simply expires.
    pub(super) async fn end(mut self) {
        self.heartbeat.abort();
        if let Err(e) = job_leases::release(&self.db, self.org, &self.owner).await {
            tracing::warn!(org = %self.org, error = %e, "giving up a job lease failed; it expires");
        }
        self.released = true;
    }
}

impl Drop for JobTurn<'_> {
    /// A turn dropped without [`JobTurn::end`] (its future was cancelled): the lease is given
    /// up in the background.
    fn drop(&mut self) {
        self.heartbeat.abort();
        if !self.released {
            let (db, org, owner) = (self.db.clone(), self.org, std::mem::take(&mut self.owner));
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = job_leases::release(&db, org, &owner).await {
                        tracing::warn!(org = %org, error = %e, "giving up a job lease failed; it expires");
                    }
                });
            }
        }
        if self.service.running_jobs.leave(self.org) {
            // A run was asked for while this one was finishing: the job may have more to do
            // (a scope it waited on was resumed).
            self.service.kick(self.org);
        }
    }
}

impl Service {
    /// Takes the turn at `org`'s job, or `None` if another runner (here or on another replica)
    /// has it.
    pub(super) async fn job_turn(&self, org: ScopeId) -> Result<Option<JobTurn<'_>>> {
        if !self.running_jobs.enter(org) {
            return Ok(None);
        }
        let ttl = i64::try_from(self.job_lease.as_millis()).unwrap_or(i64::MAX);
        let claimed = match job_leases::clock_ms(&self.store).await {
            Ok(now) => job_leases::claim(&self.store, org, &self.replica, now, ttl).await,
            Err(e) => Err(e),
        };
        match claimed {
            Ok(true) => {}
            Ok(false) => {
                self.running_jobs.leave(org);
                return Ok(None);
            }
            Err(e) => {
                self.running_jobs.leave(org);
                return Err(e.into());
            }
        }
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (db, owner, lost) = (self.store.clone(), self.replica.clone(), lost.clone());
            let every = self.job_lease / 3;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let renewed = match job_leases::clock_ms(&db).await {
                        Ok(now) => job_leases::renew(&db, org, &owner, now, ttl).await,
                        Err(e) => Err(e),
                    };
                    match renewed {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(org = %org, "job lease lost to another replica; this one stops");
                            lost.store(true, Ordering::Release);
                            return;
                        }
                        // The database may be back before the lease ends: keep trying.
                        Err(e) => {
                            tracing::warn!(org = %org, error = %e, "renewing a job lease failed")
                        }
                    }
                }
            })
        };
        Ok(Some(JobTurn {
            service: self,
            db: self.store.clone(),
            org,
            owner: self.replica.clone(),
            lost,
            heartbeat,
            released: false,
        }))
    }

    /// This replica's name in job leases.
    pub fn replica(&self) -> &str {
        &self.replica
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::service::kms::KmsSettings;
    use byok_core::SecretBytes;
    use byok_core::scope::managed_key;

    fn replica(db: Database, lease: Duration) -> Service {
        let key = managed_key(SecretBytes::from_bytes(&mut [4; 32]), 1);
        Service::new(db, key, Duration::from_secs(60), KmsSettings::default())
            .unwrap()
            .with_job_lease(lease)
    }

    async fn turns_are_exclusive(a: &Service, b: &Service) {
        let (org, _) = a.create_org("org", None, None, None).await.unwrap();
        let turn = a.job_turn(org).await.unwrap().expect("free");
        // Not twice in one process, nor on another replica, while it lives.
        assert!(a.job_turn(org).await.unwrap().is_none());
        assert!(b.job_turn(org).await.unwrap().is_none());
        turn.end().await;
        // Given up as the turn ends: the same replica takes it again at once, and keeps it
        // (no late release of the first turn undoes the second).
        let again = a.job_turn(org).await.unwrap().expect("given up");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            job_leases::holder(a.store.pool(), org)
                .await
                .unwrap()
                .map(|h| h.0),
            Some(a.replica().to_owned())
        );
        assert!(b.job_turn(org).await.unwrap().is_none());
        // Dropped without ending (a cancelled future): given up in the background, and the
        // other replica gets it without waiting for the expiry.
        drop(again);
        let start = Instant::now();
        let turn = loop {
            if let Some(t) = b.job_turn(org).await.unwrap() {
                break t;
            }
            assert!(start.elapsed() < Duration::from_secs(1), "never given up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(!turn.lost());
        assert_eq!(
            job_leases::holder(b.store.pool(), org)
                .await
                .unwrap()
                .map(|h| h.0),
            Some(b.replica().to_owned())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_replica_at_a_time_holds_a_job_in_postgres() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let lease = Duration::from_secs(30);
        let a = replica(Database::open(&url).await.unwrap(), lease);
        let b = replica(Database::open(&url).await.unwrap(), lease);
        turns_are_exclusive(&a, &b).await;
    }

    #[tokio::test]
    async fn one_runner_at_a_time_holds_a_job_in_sqlite() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let lease = Duration::from_secs(30);
        // Two services on one file stand for two processes (the SQLite case is one process).
        turns_are_exclusive(&replica(db.clone(), lease), &replica(db, lease)).await;
    }

    /// A resume that kicks the job while its runner is finishing (still in its turn) is not
    /// lost: the runner asks for the job to run again as its turn ends.
    #[tokio::test]
    async fn a_run_asked_for_while_one_finishes_runs_after_it() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let a = replica(db, Duration::from_secs(30));
        let mut kicks = a.take_kicks().expect("the kicks");
        let (org, _) = a.create_org("org", None, None, None).await.unwrap();
        while kicks.try_recv().is_ok() {}
        let turn = a.job_turn(org).await.unwrap().expect("free");
        assert!(a.job_turn(org).await.unwrap().is_none(), "one runner");
        turn.end().await;
        assert_eq!(kicks.try_recv().ok(), Some(org), "asked to run again");
        // Nobody asked: no run follows.
        let turn = a.job_turn(org).await.unwrap().expect("free");
        turn.end().await;
        assert!(kicks.try_recv().is_err());
    }

    /// The heartbeat keeps a turn alive past its lease length; a turn whose lease another
    /// replica took (this one stalled past the expiry) is marked lost at the next heartbeat.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_heartbeat_keeps_the_lease_and_notices_its_loss() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let lease = Duration::from_millis(300);
        let a = replica(db.clone(), lease);
        let b = replica(db.clone(), lease);
        let (org, _) = a.create_org("org", None, None, None).await.unwrap();
        let turn = a.job_turn(org).await.unwrap().expect("free");
        // Three lease lengths later it is still A's.
        tokio::time::sleep(lease * 3).await;
        assert!(!turn.lost());
        assert!(b.job_turn(org).await.unwrap().is_none());
        // A stalls: its lease is made to expire, B claims it, A's next heartbeat sees that.
        sqlx::query("UPDATE job_leases SET expires_at = 0")
            .execute(db.pool())
            .await
            .unwrap();
        let b_turn = b.job_turn(org).await.unwrap().expect("expired, so B's");
        let start = Instant::now();
        while !turn.lost() {
            assert!(start.elapsed() < lease * 2, "the loss went unnoticed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A's turn ending does not give up B's lease.
        turn.end().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            job_leases::holder(db.pool(), org)
                .await
                .unwrap()
                .map(|h| h.0),
            Some(b.replica().to_owned())
        );
        drop(b_turn);
    }
}
