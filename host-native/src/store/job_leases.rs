//! Job leases: which replica runs an org's job (a root rewrap or a key version retirement),
//! and until when. A replica claims the lease before its first step and renews it while it
//! works (a heartbeat); one that dies stops renewing, the lease expires, and another replica's
//! periodic scan ([`waiting`]) finds the job and resumes it from the stored cursor.
//!
//! A claim is one conditional upsert: it takes a free or expired lease, or renews one's own,
//! and touches nothing else. Two replicas claiming at once are ordered by the row (PostgreSQL
//! makes the second wait for the first's commit and then re-checks its condition; SQLite has
//! one writer), so exactly one of them gets it. No row stays locked while the job works, so
//! unlike a `SELECT ... FOR UPDATE SKIP LOCKED` held for the job's length, a claim never waits
//! on a slow job and a lost connection cannot leave a lock behind.
//!
//! The lease saves repeated work; it is not what keeps a job's writes right. Every step is
//! guarded on its own (a transition is refused unless it starts from the stored version, a
//! data key moves only from its old version), so a replica that lost its lease mid-step and
//! still commits changes nothing twice.

use byok_core::ScopeId;
use sqlx::{AnyPool, Row};

use super::{Database, Result};

/// Now, ms since the epoch, by the clock every replica's leases are compared on: the
/// database's (PostgreSQL), so that a replica whose own clock runs ahead does not take a
/// live lease for expired (and one behind does not keep an expired one). SQLite has one
/// host: its clock.
pub async fn clock_ms(db: &Database) -> Result<i64> {
    match db.backend() {
        super::Backend::Postgres => Ok(sqlx::query_scalar(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        )
        .fetch_one(db.pool())
        .await?),
        _ => Ok(super::now_ms()),
    }
}

/// Takes `org`'s job lease for `owner` until `now + ttl_ms` if it is free, expired or already
/// `owner`'s. Returns whether `owner` holds it now.
pub async fn claim(
    db: &Database,
    org: ScopeId,
    owner: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<bool> {
    lease_write(
        db,
        "INSERT INTO job_leases (org_id, owner, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (org_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
         WHERE job_leases.owner = excluded.owner OR job_leases.expires_at <= $4",
        (org, owner, now, ttl_ms),
    )
    .await
}

/// Drops every lease at the start of a server on SQLite, and says how many there were. The
/// server is the only process on its data directory (a second refuses to start), so a lease
/// stored then is one a crashed run left: kept, it would hold its org's job back until it
/// expired, or for longer after the clock stepped back. PostgreSQL's leases are other
/// replicas' and are left alone.
pub async fn forget_on_sqlite(db: &Database) -> Result<u64> {
    if db.backend() != super::Backend::Sqlite {
        return Ok(0);
    }
    let mut w = db.write().await?;
    let gone = sqlx::query("DELETE FROM job_leases")
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
    w.commit().await?;
    Ok(gone)
}

/// Extends `owner`'s lease on `org` to `now + ttl_ms` (the heartbeat). Returns `false` if
/// `owner` no longer holds it: it expired and another replica took it.
pub async fn renew(
    db: &Database,
    org: ScopeId,
    owner: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<bool> {
    lease_write(
        db,
        "UPDATE job_leases SET expires_at = $3 WHERE org_id = $1 AND owner = $2 AND expires_at > $4",
        (org, owner, now, ttl_ms),
    )
    .await
}

/// Runs `sql`, a lease write over ($1 org, $2 owner, $3 new expiry, $4 now), in its own
/// transaction; returns whether it wrote the lease row.
async fn lease_write(
    db: &Database,
    sql: &str,
    (org, owner, now, ttl_ms): (ScopeId, &str, i64, i64),
) -> Result<bool> {
    let mut w = db.write().await?;
    let wrote = sqlx::query(sql)
        .bind(org.to_string())
        .bind(owner)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .execute(&mut *w.tx)
        .await?
        .rows_affected()
        == 1;
    w.commit().await?;
    Ok(wrote)
}

/// Gives up `owner`'s lease on `org` (the job ended or waits); another's is left alone.
pub async fn release(db: &Database, org: ScopeId, owner: &str) -> Result<()> {
    let mut w = db.write().await?;
    sqlx::query("DELETE FROM job_leases WHERE org_id = $1 AND owner = $2")
        .bind(org.to_string())
        .bind(owner)
        .execute(&mut *w.tx)
        .await?;
    w.commit().await
}

/// Who holds `org`'s job lease and until when (ms since the epoch), if anyone does.
pub async fn holder(pool: &AnyPool, org: ScopeId) -> Result<Option<(String, i64)>> {
    let row = sqlx::query("SELECT owner, expires_at FROM job_leases WHERE org_id = $1")
        .bind(org.to_string())
        .fetch_optional(pool)
        .await?;
    row.map(|r| Ok((r.try_get("owner")?, r.try_get("expires_at")?)))
        .transpose()
}

/// The orgs with a job (a root rewrap, a retirement, a sweep) that no live lease covers at
/// `now`: the ones a replica should claim and run.
pub async fn waiting(pool: &AnyPool, now: i64) -> Result<Vec<ScopeId>> {
    let rows = sqlx::query(
        "SELECT o.id FROM orgs o LEFT JOIN job_leases l ON l.org_id = o.id \
         WHERE (o.job IS NOT NULL OR EXISTS (SELECT 1 FROM retire_jobs r WHERE r.org_id = o.id) \
         OR EXISTS (SELECT 1 FROM data_key_sweeps s WHERE s.org_id = o.id)) \
         AND (l.org_id IS NULL OR l.expires_at <= $1) ORDER BY o.id",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| super::org_rows::scope_id(r.try_get::<&str, _>("id")?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_org_row as org;

    async fn leases_follow_their_rules(db: &Database) {
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        org(db, a).await;
        org(db, b).await;
        // Free: the first claimer gets it; the second does not, until it expires.
        assert!(claim(db, a, "r1", 1000, 500).await.unwrap());
        assert!(!claim(db, a, "r2", 1499, 500).await.unwrap());
        assert_eq!(
            holder(db.pool(), a).await.unwrap(),
            Some(("r1".into(), 1500))
        );
        // Its holder may claim again (a renewal) at any time before it expires.
        assert!(claim(db, a, "r1", 1400, 500).await.unwrap());
        assert!(renew(db, a, "r1", 1800, 500).await.unwrap());
        assert!(!renew(db, a, "r2", 1800, 500).await.unwrap());
        // Expired (at exactly its end), it goes to whoever claims; the old holder's
        // heartbeat then fails and so does its release.
        assert!(!claim(db, a, "r2", 2299, 500).await.unwrap());
        assert!(claim(db, a, "r2", 2300, 500).await.unwrap());
        assert!(!renew(db, a, "r1", 2301, 500).await.unwrap());
        release(db, a, "r1").await.unwrap();
        assert_eq!(
            holder(db.pool(), a).await.unwrap(),
            Some(("r2".into(), 2800))
        );
        // An expired lease cannot be renewed, even by its holder: another may have read it
        // as free.
        assert!(!renew(db, a, "r2", 2800, 500).await.unwrap());
        release(db, a, "r2").await.unwrap();
        assert_eq!(holder(db.pool(), a).await.unwrap(), None);
        // Leases are per org.
        assert!(claim(db, a, "r1", 3000, 500).await.unwrap());
        assert!(claim(db, b, "r2", 3000, 500).await.unwrap());
    }

    /// A lease a crashed run left on SQLite is dropped at the next start; PostgreSQL's
    /// (other replicas') stay.
    #[tokio::test]
    async fn a_crashed_runs_leases_go_at_the_start_on_sqlite_only() {
        let a = ScopeId::from_bytes([1; 16]);
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Database::open_dir(dir.path()).await.unwrap();
        org(&sqlite, a).await;
        assert!(
            claim(&sqlite, a, "crashed", 1000, i64::MAX / 2)
                .await
                .unwrap()
        );
        assert_eq!(forget_on_sqlite(&sqlite).await.unwrap(), 1);
        assert!(claim(&sqlite, a, "restarted", 1001, 500).await.unwrap());
        if let Some(pg) = crate::store::test_postgres().await {
            org(&pg, a).await;
            assert!(claim(&pg, a, "replica", 1000, i64::MAX / 2).await.unwrap());
            assert_eq!(forget_on_sqlite(&pg).await.unwrap(), 0);
            assert!(!claim(&pg, a, "another", 1001, 500).await.unwrap());
        }
    }

    async fn waiting_lists_jobs_without_a_live_lease(db: &Database) {
        let (a, b, c, d) = (
            ScopeId::from_bytes([1; 16]),
            ScopeId::from_bytes([2; 16]),
            ScopeId::from_bytes([3; 16]),
            ScopeId::from_bytes([4; 16]),
        );
        for o in [a, b, c, d] {
            org(db, o).await;
        }
        // d has a sweep to do (a revoked scope's stored keys), and nothing else.
        sqlx::query("INSERT INTO data_key_sweeps (org_id, scope_id) VALUES ($1, $1)")
            .bind(d.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE orgs SET job = '{}' WHERE id = $1")
            .bind(a.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO retire_jobs (org_id, scope_id, from_version, to_version, total, done, started_at) \
             VALUES ($1, $1, 1, 2, 10, 0, 0)",
        )
        .bind(b.to_string())
        .execute(db.pool())
        .await
        .unwrap();
        // c has no job: never listed.
        assert_eq!(waiting(db.pool(), 0).await.unwrap(), vec![a, b, d]);
        assert!(claim(db, a, "r1", 1000, 500).await.unwrap());
        assert!(claim(db, c, "r1", 1000, 500).await.unwrap());
        assert!(claim(db, d, "r1", 1000, 500).await.unwrap());
        assert_eq!(waiting(db.pool(), 1499).await.unwrap(), vec![b]);
        assert_eq!(waiting(db.pool(), 1500).await.unwrap(), vec![a, b, d]);
    }

    #[tokio::test]
    async fn leases_follow_their_rules_in_sqlite() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        leases_follow_their_rules(&db).await;
        let db = Database::open("sqlite::memory:").await.unwrap();
        waiting_lists_jobs_without_a_live_lease(&db).await;
    }

    #[tokio::test]
    async fn leases_follow_their_rules_in_postgres() {
        let Some(db) = super::super::test_postgres().await else {
            return;
        };
        leases_follow_their_rules(&db).await;
        let Some(db) = super::super::test_postgres().await else {
            return;
        };
        waiting_lists_jobs_without_a_live_lease(&db).await;
    }

    /// Many claimers at once on one database, each with its own connection: exactly one wins.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_of_many_racing_claimers_wins_in_postgres() {
        let Some(url) = super::super::test_postgres_url().await else {
            return;
        };
        let a = ScopeId::from_bytes([1; 16]);
        // Separate databases (pools and writer gates), like separate replicas.
        let mut replicas = Vec::new();
        for _ in 0..6 {
            replicas.push(Database::open(&url).await.unwrap());
        }
        org(&replicas[0], a).await;
        for round in 0..20i64 {
            let mut racers = Vec::new();
            for (r, db) in replicas.iter().enumerate() {
                let db = db.clone();
                racers.push(tokio::spawn(async move {
                    claim(&db, a, &format!("r{r}"), round * 1000, 500)
                        .await
                        .unwrap()
                }));
            }
            let mut won = 0;
            for t in racers {
                won += usize::from(t.await.unwrap());
            }
            assert_eq!(won, 1, "round {round}");
        }
    }
}
