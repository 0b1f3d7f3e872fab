//! Stored data keys and the retirement job that rewraps them.

use byok_core::{KeyId, ScopeId};
use sqlx::{Any, AnyPool, Row, Transaction};

use super::Result;

/// One stored data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataKeyRow {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its scope.
    pub scope: ScopeId,
    /// The scope key version it is wrapped under.
    pub version: u32,
    /// The 140-byte wrapped form.
    pub wrapped: Vec<u8>,
}

/// A running retirement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetireJob {
    /// The scope.
    pub scope: ScopeId,
    /// The version being retired.
    pub from: u32,
    /// The version data keys move to.
    pub to: u32,
    /// Data keys under `from` when it started.
    pub total: u64,
    /// Data keys moved so far.
    pub done: u64,
}

/// Rows per statement: 2 parameters each (and 4 for the statement), well under SQLite's 32 766 and
/// PostgreSQL's 65 535.
const ROWS_PER_STATEMENT: usize = 250;

/// Stores data keys (id, wrapped form) under scope key `key`, only while that version is
/// still stored (checked in the same statement): a row never lands under a version that a
/// retirement has just destroyed, nor in a subtree a revoke has just destroyed. Returns whether
/// every row was stored; the caller rolls back otherwise.
///
/// Many rows to a statement: this runs under the one writer, and a thousand statements (a
/// thousand round trips on PostgreSQL) held it for tens of milliseconds, which every other
/// org's change waited out. One key version to a call, so the check is one lookup of that
/// version for the statement, not a join of every row to the org's scope keys (a join
/// PostgreSQL may plan as a loop over one side for each row of the other; see [`rewrap`]).
pub async fn insert(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    key: KeyId,
    rows: &[(String, Vec<u8>)],
    at: i64,
) -> Result<bool> {
    let (org, scope) = (org.to_string(), key.scope.to_string());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_statement(chunk.len());
        let mut q = sqlx::query(&sql)
            .bind(&org)
            .bind(&scope)
            .bind(i64::from(key.version))
            .bind(at);
        for (id, wrapped) in chunk {
            q = q.bind(id).bind(wrapped);
        }
        let done = q.execute(&mut **tx).await?;
        if done.rows_affected() != chunk.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The statement storing `n` keys: `$1` the org, `$2` the scope, `$3` the version, `$4` the
/// time, then each key's id and wrapped form. The version's check does not depend on the row:
/// it runs once.
fn insert_statement(n: usize) -> String {
    let values: Vec<String> = (0..n)
        .map(|i| format!("(${}, ${})", 5 + 2 * i, 6 + 2 * i))
        .collect();
    // VALUES names its columns column1.. on both engines.
    format!(
        "INSERT INTO data_keys (org_id, id, scope_id, version, wrapped, created_at) \
         SELECT $1, v.column1, $2, $3, v.column2, $4 FROM (VALUES {}) AS v \
         WHERE EXISTS (SELECT 1 FROM scope_keys k \
         WHERE k.org_id = $1 AND k.scope_id = $2 AND k.version = $3)",
        values.join(", ")
    )
}

fn row(r: &sqlx::any::AnyRow) -> Result<DataKeyRow> {
    let scope: &str = r.try_get("scope_id")?;
    Ok(DataKeyRow {
        id: r.try_get("id")?,
        scope: ScopeId::parse_hex(scope)
            .ok_or_else(|| super::StoreError::Corrupt("data key scope".into()))?,
        version: u32::try_from(r.try_get::<i64, _>("version")?)
            .map_err(|_| super::StoreError::Corrupt("data key version".into()))?,
        wrapped: r.try_get("wrapped")?,
    })
}

/// Whether a data key row's scope key version is still stored: a row without it (a revoked
/// scope's, which the sweep has not deleted yet) is no stored key. Reads and deletes by id
/// see only rows that pass, so that a revoked scope's keys are gone (`404`) from the revoke's
/// commit on, not from the sweep's.
const KEY_STORED: &str = "EXISTS (SELECT 1 FROM scope_keys k WHERE k.org_id = data_keys.org_id \
     AND k.scope_id = data_keys.scope_id AND k.version = data_keys.version)";

/// The org's data keys among `ids` (one query; missing ids are simply absent, as are those
/// whose scope key version is destroyed).
pub async fn get_many(pool: &AnyPool, org: ScopeId, ids: &[String]) -> Result<Vec<DataKeyRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = super::marks(2, ids.len());
    let sql = format!(
        "SELECT id, scope_id, version, wrapped FROM data_keys \
         WHERE org_id = $1 AND id IN ({marks}) AND {KEY_STORED}"
    );
    let mut q = sqlx::query(&sql).bind(org.to_string());
    for id in ids {
        q = q.bind(id);
    }
    q.fetch_all(pool).await?.iter().map(row).collect()
}

/// Up to `limit` data keys of `scope` still under `version`, while that version is stored: a
/// retirement batch on a replica that has not heard of a revoke yet reads none of the revoked
/// scope's rows (left to the sweep), so it unwraps none of them.
pub async fn under(
    pool: &AnyPool,
    org: ScopeId,
    scope: ScopeId,
    version: u32,
    limit: i64,
) -> Result<Vec<DataKeyRow>> {
    sqlx::query(&format!("SELECT id, scope_id, version, wrapped FROM data_keys WHERE org_id = $1 AND scope_id = $2 AND version = $3 AND {KEY_STORED} LIMIT $4"))
        .bind(org.to_string())
        .bind(scope.to_string())
        .bind(i64::from(version))
        .bind(limit)
        .fetch_all(pool)
        .await?
        .iter()
        .map(row)
        .collect()
}

/// How many data keys of `scope` are under `version`: from the pool (a retirement's total), or
/// inside a transaction (the last check before the version is destroyed).
pub async fn count_under<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    org: ScopeId,
    scope: ScopeId,
    version: u32,
) -> Result<u64> {
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM data_keys WHERE org_id = $1 AND scope_id = $2 AND version = $3",
    )
    .bind(org.to_string())
    .bind(scope.to_string())
    .bind(i64::from(version))
    .fetch_one(db)
    .await?
    .try_get("n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Moves data keys (id, new wrapped form) of `scope` from `from` to `to`; each only if it is
/// still under `from` (a batch re-run after a crash changes nothing twice). Returns how many
/// moved.
///
/// Many rows to a statement, as [`insert`]: a batch of a thousand single-row updates held the
/// one writer for a thousand round trips. The rows are named by id (`rewrap_statement`), not
/// joined to a `VALUES` list: PostgreSQL planned that join, on some statistics, as a nested
/// loop over every key of the version for each row named (six thousand keys: 1.2 s a
/// statement, which stalled a retirement in CI).
pub async fn rewrap(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    scope: ScopeId,
    keys: &[(String, Vec<u8>)],
    from: u32,
    to: u32,
) -> Result<u64> {
    let (org, scope) = (org.to_string(), scope.to_string());
    let mut moved = 0;
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = rewrap_statement(chunk.len());
        let mut q = sqlx::query(&sql)
            .bind(i64::from(to))
            .bind(&org)
            .bind(&scope)
            .bind(i64::from(from));
        for (id, wrapped) in chunk {
            q = q.bind(id).bind(wrapped);
        }
        moved += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(moved)
}

/// The statement moving `n` keys: `$1` the new version, `$2` the org, `$3` the scope, `$4` the
/// old version, then each key's id and new wrapped form. One table, no join: whichever index
/// the planner takes (the primary key by id, or the version's), each row is read once.
fn rewrap_statement(n: usize) -> String {
    let mut cases = String::new();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let p = 5 + 2 * i;
        cases.push_str(&format!(" WHEN ${p} THEN ${}", p + 1));
        ids.push(format!("${p}"));
    }
    format!(
        "UPDATE data_keys SET version = $1, wrapped = CASE id{cases} ELSE wrapped END \
         WHERE org_id = $2 AND scope_id = $3 AND version = $4 AND id IN ({})",
        ids.join(", ")
    )
}

/// The org's running retirement, if any.
pub async fn job(pool: &AnyPool, org: ScopeId) -> Result<Option<RetireJob>> {
    let Some(r) = sqlx::query(
        "SELECT scope_id, from_version, to_version, total, done FROM retire_jobs WHERE org_id = $1",
    )
    .bind(org.to_string())
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let bad = || super::StoreError::Corrupt("retire job".into());
    Ok(Some(RetireJob {
        scope: ScopeId::parse_hex(r.try_get("scope_id")?).ok_or_else(bad)?,
        from: u32::try_from(r.try_get::<i64, _>("from_version")?).map_err(|_| bad())?,
        to: u32::try_from(r.try_get::<i64, _>("to_version")?).map_err(|_| bad())?,
        total: u64::try_from(r.try_get::<i64, _>("total")?).map_err(|_| bad())?,
        done: u64::try_from(r.try_get::<i64, _>("done")?).map_err(|_| bad())?,
    }))
}

/// Starts a retirement.
pub async fn start_job(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    job: &RetireJob,
    at: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO retire_jobs (org_id, scope_id, from_version, to_version, total, done, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(org.to_string())
        .bind(job.scope.to_string())
        .bind(i64::from(job.from))
        .bind(i64::from(job.to))
        .bind(i64::try_from(job.total).unwrap_or(i64::MAX))
        .bind(i64::try_from(job.done).unwrap_or(i64::MAX))
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Adds `n` to the job's progress.
pub async fn advance_job(tx: &mut Transaction<'static, Any>, org: ScopeId, n: u64) -> Result<()> {
    sqlx::query("UPDATE retire_jobs SET done = done + $1 WHERE org_id = $2")
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(org.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Ends the job.
pub async fn finish_job(tx: &mut Transaction<'static, Any>, org: ScopeId) -> Result<()> {
    sqlx::query("DELETE FROM retire_jobs WHERE org_id = $1")
        .bind(org.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes the org's stored data keys among `ids` (lower-case hex), and takes them off its
/// count. Returns the ids there were, sorted: not those of a revoked scope, gone already
/// (their rows are the sweep's).
pub async fn delete_ids(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    ids: &[String],
) -> Result<Vec<String>> {
    let org = org.to_string();
    let sql = format!(
        "DELETE FROM data_keys WHERE org_id = $1 AND id IN ({}) AND {KEY_STORED} RETURNING id",
        super::marks(2, ids.len())
    );
    let mut q = sqlx::query(&sql).bind(&org);
    for id in ids {
        q = q.bind(id);
    }
    let mut deleted = q
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    deleted.sort_unstable();
    uncount(tx, &org, deleted.len() as u64).await?;
    Ok(deleted)
}

/// Takes `n` deleted keys off the org's count (never below zero).
pub(super) async fn uncount(tx: &mut Transaction<'static, Any>, org: &str, n: u64) -> Result<()> {
    if n > 0 {
        sqlx::query(
            "UPDATE orgs SET stored_keys = CASE WHEN stored_keys > $2 THEN stored_keys - $2 \
             ELSE 0 END WHERE id = $1",
        )
        .bind(org)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Counts `n` more stored keys for the org, in the transaction that stores them, if that keeps
/// it at or under `max` (`None`: no limit). Returns whether it did; if not, store nothing.
///
/// One conditional update of the org's row, which the storing transaction holds locked
/// already (`lock_org`): two calls on two replicas cannot both take the last room.
pub async fn reserve(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    n: u64,
    max: Option<u64>,
) -> Result<bool> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let max = max.map_or(i64::MAX, |m| i64::try_from(m).unwrap_or(i64::MAX));
    let done = sqlx::query(
        "UPDATE orgs SET stored_keys = stored_keys + $2 WHERE id = $1 AND stored_keys <= $3 - $2",
    )
    .bind(org.to_string())
    .bind(n)
    .bind(max)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many stored data keys the org keeps (its count, kept by [`reserve`], [`delete_ids`] and
/// the sweep). A revoked scope's keys count until the sweep has deleted them.
pub async fn stored<'e>(db: impl sqlx::Executor<'e, Database = Any>, org: ScopeId) -> Result<u64> {
    let n: i64 = sqlx::query("SELECT stored_keys FROM orgs WHERE id = $1")
        .bind(org.to_string())
        .fetch_optional(db)
        .await?
        .map(|r| r.try_get("stored_keys"))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Database, test_org_row as org};

    /// Stores `n` keys of `scope` under `version`, ids `{tag}-{i}` (the check on scope keys is
    /// [`insert`]'s; these tests are about moving rows).
    async fn plant(db: &Database, org: ScopeId, scope: ScopeId, version: u32, tag: &str, n: u32) {
        let mut w = db.write().await.unwrap();
        for i in 0..n {
            sqlx::query(
                "INSERT INTO data_keys (org_id, id, scope_id, version, wrapped, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 0)",
            )
            .bind(org.to_string())
            .bind(format!("{tag}-{i}"))
            .bind(scope.to_string())
            .bind(i64::from(version))
            .bind(vec![version as u8; 4])
            .execute(&mut *w.tx)
            .await
            .unwrap();
        }
        w.commit().await.unwrap();
    }

    /// Every key of `org` as (id, scope, version, wrapped), sorted.
    async fn all(db: &Database, org: ScopeId) -> Vec<(String, String, i64, Vec<u8>)> {
        let rows = sqlx::query(
            "SELECT id, scope_id, version, wrapped FROM data_keys WHERE org_id = $1 ORDER BY id",
        )
        .bind(org.to_string())
        .fetch_all(db.pool())
        .await
        .unwrap();
        rows.iter()
            .map(|r| {
                (
                    r.get("id"),
                    r.get("scope_id"),
                    r.get("version"),
                    r.get("wrapped"),
                )
            })
            .collect()
    }

    /// A rewrap moves exactly the keys it names that are still under the old version of that
    /// scope, each with its own new wrapped form, in as many statements as it takes; run again
    /// (a batch re-run after a crash) it moves none.
    async fn a_rewrap_moves_only_the_named_keys_still_under_the_old_version(db: &Database) {
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        let (team, other) = (ScopeId::from_bytes([3; 16]), ScopeId::from_bytes([4; 16]));
        org(db, a).await;
        org(db, b).await;
        plant(db, a, team, 1, "t1", 600).await;
        plant(db, a, team, 2, "t2", 3).await;
        plant(db, a, other, 1, "o1", 3).await;
        plant(db, b, team, 1, "b1", 3).await;
        let before_b = all(db, b).await;
        // 520 named (three statements): 500 under v1, one under v2 already, one of another
        // scope, one of another org's ids, and 17 that do not exist.
        let mut keys: Vec<(String, Vec<u8>)> = (0..500)
            .map(|i| (format!("t1-{i}"), format!("new-{i}").into_bytes()))
            .collect();
        keys.push(("t2-0".into(), b"no".to_vec()));
        keys.push(("o1-0".into(), b"no".to_vec()));
        keys.push(("b1-0".into(), b"no".to_vec()));
        keys.extend((0..17).map(|i| (format!("missing-{i}"), b"no".to_vec())));
        let mut w = db.write().await.unwrap();
        assert_eq!(rewrap(&mut w.tx, a, team, &keys, 1, 2).await.unwrap(), 500);
        w.commit().await.unwrap();
        let rows = all(db, a).await;
        assert_eq!(rows.len(), 606, "no row made or lost");
        for (id, scope, version, wrapped) in &rows {
            let moved = id
                .strip_prefix("t1-")
                .and_then(|i| i.parse::<u32>().ok())
                .filter(|i| *i < 500);
            match moved {
                Some(i) => {
                    assert_eq!((scope, *version), (&team.to_string(), 2), "{id}");
                    assert_eq!(wrapped, format!("new-{i}").as_bytes(), "{id}");
                }
                None => {
                    let v = if id.starts_with("t2-") { 2 } else { 1 };
                    assert_eq!((*version, wrapped.clone()), (v, vec![v as u8; 4]), "{id}");
                }
            }
        }
        assert_eq!(all(db, b).await, before_b, "another org's keys");
        // Again: nothing is under v1 among those named any more.
        let mut w = db.write().await.unwrap();
        assert_eq!(rewrap(&mut w.tx, a, team, &keys, 1, 2).await.unwrap(), 0);
        w.commit().await.unwrap();
        assert_eq!(all(db, a).await, rows);
    }

    #[tokio::test]
    async fn a_rewrap_moves_only_the_named_keys_still_under_the_old_version_in_sqlite() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        a_rewrap_moves_only_the_named_keys_still_under_the_old_version(&db).await;
    }

    #[tokio::test]
    async fn a_rewrap_moves_only_the_named_keys_still_under_the_old_version_in_postgres() {
        let Some(db) = crate::store::test_postgres().await else {
            return;
        };
        a_rewrap_moves_only_the_named_keys_still_under_the_old_version(&db).await;
    }

    /// A live key version `version` of `scope` (with the scope row it belongs to).
    async fn scope_key(db: &Database, org: ScopeId, scope: ScopeId, version: u32) {
        sqlx::query(
            "INSERT INTO scopes (org_id, id, parent_id, name, state) VALUES ($1, $2, NULL, 's', 'active') \
             ON CONFLICT (org_id, id) DO NOTHING",
        )
        .bind(org.to_string())
        .bind(scope.to_string())
        .execute(db.pool())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO scope_keys (org_id, scope_id, version, under_version, wrapped) \
             VALUES ($1, $2, $3, NULL, NULL)",
        )
        .bind(org.to_string())
        .bind(scope.to_string())
        .bind(i64::from(version))
        .execute(db.pool())
        .await
        .unwrap();
    }

    /// Keys are stored, in as many statements as it takes, only under a version that is
    /// stored: under one that is not (destroyed by a retirement or a revoke, or another org's)
    /// nothing lands.
    async fn keys_land_only_under_a_stored_version(db: &Database) {
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        let team = ScopeId::from_bytes([3; 16]);
        org(db, a).await;
        org(db, b).await;
        scope_key(db, a, team, 1).await;
        scope_key(db, b, team, 2).await;
        let keys: Vec<(String, Vec<u8>)> = (0..600)
            .map(|i| (format!("k-{i}"), format!("w-{i}").into_bytes()))
            .collect();
        let mut w = db.write().await.unwrap();
        assert!(
            insert(&mut w.tx, a, KeyId::new(team, 1), &keys, 7)
                .await
                .unwrap()
        );
        w.commit().await.unwrap();
        let rows = all(db, a).await;
        assert_eq!(rows.len(), 600);
        for (id, scope, version, wrapped) in &rows {
            assert_eq!((scope, *version), (&team.to_string(), 1), "{id}");
            assert_eq!(wrapped, format!("w-{}", &id[2..]).as_bytes(), "{id}");
        }
        // Version 2 of the team is stored for org b only; version 3 nowhere.
        for (org, version) in [(a, 2), (a, 3), (b, 1)] {
            let mut w = db.write().await.unwrap();
            let more = [("x".to_owned(), b"x".to_vec())];
            assert!(
                !insert(&mut w.tx, org, KeyId::new(team, version), &more, 7)
                    .await
                    .unwrap(),
                "stored under {org}/{version}"
            );
        }
        assert_eq!(all(db, a).await, rows);
        assert!(all(db, b).await.is_empty());
    }

    #[tokio::test]
    async fn keys_land_only_under_a_stored_version_in_sqlite() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        keys_land_only_under_a_stored_version(&db).await;
    }

    #[tokio::test]
    async fn keys_land_only_under_a_stored_version_in_postgres() {
        let Some(db) = crate::store::test_postgres().await else {
            return;
        };
        keys_land_only_under_a_stored_version(&db).await;
    }

    /// The org's count of stored keys: a reservation that would pass the limit takes nothing;
    /// one within it (or with no limit) counts; deleting a revoked subtree's keys takes them
    /// off (never below zero); other orgs keep their own count.
    async fn an_orgs_stored_keys_are_counted_up_to_its_limit(db: &Database) {
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        let (s1, s2) = (ScopeId::from_bytes([3; 16]), ScopeId::from_bytes([4; 16]));
        org(db, a).await;
        org(db, b).await;
        let reserve_in = |org: ScopeId, n: u64, max: Option<u64>| async move {
            let mut w = db.write().await.unwrap();
            let done = reserve(&mut w.tx, org, n, max).await.unwrap();
            w.commit().await.unwrap();
            done
        };
        assert!(reserve_in(a, 10, Some(25)).await);
        assert!(!reserve_in(a, 16, Some(25)).await);
        assert_eq!(stored(db.pool(), a).await.unwrap(), 10);
        assert!(reserve_in(a, 15, Some(25)).await);
        assert!(!reserve_in(a, 1, Some(25)).await);
        assert!(!reserve_in(b, 26, Some(25)).await);
        assert!(reserve_in(a, 1, None).await);
        assert_eq!(stored(db.pool(), a).await.unwrap(), 26);
        assert_eq!(stored(db.pool(), b).await.unwrap(), 0);
        plant(db, a, s1, 1, "s1", 5).await;
        plant(db, b, s1, 1, "b", 3).await;
        sweep_out(db, a, &[s1, s2]).await;
        assert_eq!(stored(db.pool(), a).await.unwrap(), 21);
        plant(db, a, s2, 1, "s2", 30).await;
        sweep_out(db, a, &[s2]).await;
        assert_eq!(stored(db.pool(), a).await.unwrap(), 0);
        assert_eq!(all(db, b).await.len(), 3, "another org's keys");
    }

    /// Lists `scopes` for the sweep and sweeps them out, two keys a batch.
    async fn sweep_out(db: &Database, org: ScopeId, scopes: &[ScopeId]) {
        use crate::store::sweep;
        let mut w = db.write().await.unwrap();
        sweep::later(&mut w.tx, org, scopes).await.unwrap();
        w.commit().await.unwrap();
        for &scope in scopes {
            loop {
                let mut w = db.write().await.unwrap();
                let done = sweep::batch(&mut w, org, scope, 2, 0).await.unwrap();
                w.commit().await.unwrap();
                if !matches!(done, sweep::Swept::Some(_)) {
                    break;
                }
            }
        }
    }

    #[tokio::test]
    async fn an_orgs_stored_keys_are_counted_up_to_its_limit_in_sqlite() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        an_orgs_stored_keys_are_counted_up_to_its_limit(&db).await;
    }

    #[tokio::test]
    async fn an_orgs_stored_keys_are_counted_up_to_its_limit_in_postgres() {
        let Some(db) = crate::store::test_postgres().await else {
            return;
        };
        an_orgs_stored_keys_are_counted_up_to_its_limit(&db).await;
    }

    /// A database from before the count (migrations up to 0015) starts each org's count at the
    /// keys it keeps.
    #[tokio::test]
    async fn an_existing_database_counts_the_keys_its_orgs_keep() {
        let dir = std::env::temp_dir().join(format!("byok-migrate-count-{}", std::process::id()));
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        let mut rows = Vec::new();
        for o in [a, b] {
            rows.push(format!(
                "INSERT INTO orgs (id, name, default_holder, job, unwrap_cache_ttl_ms, created_at) \
                 VALUES ('{o}', 'old', 'managed', NULL, 60000, 1)"
            ));
        }
        for i in 0..7 {
            rows.push(format!(
                "INSERT INTO data_keys (org_id, id, scope_id, version, wrapped, created_at) \
                 VALUES ('{a}', 'k{i}', '{a}', 1, x'00', 0)"
            ));
        }
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let url = crate::store::old_database(&dir, "0016", 15, &rows).await;
        let db = Database::open(&url).await.unwrap();
        assert_eq!(stored(db.pool(), a).await.unwrap(), 7);
        assert_eq!(stored(db.pool(), b).await.unwrap(), 0);
        db.pool().close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Rows a plan handled, from `EXPLAIN ANALYZE`'s text: each node's rows out plus those its
    /// filters removed, times its loops (PostgreSQL prints both per loop). A row passed on
    /// through several nodes counts at each: linear work stays a small multiple of the rows,
    /// a loop over one side for each row of the other does not.
    fn rows_read(plan: &[String]) -> u64 {
        let num = |line: &str, key: &str| -> Option<f64> {
            let at = line.find(key)? + key.len();
            let digits: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            digits.parse().ok()
        };
        let (mut total, mut loops) = (0.0, 1.0);
        for line in plan {
            if let Some(actual) = line.find("(actual ") {
                let line = &line[actual..];
                loops = num(line, "loops=").unwrap_or(1.0);
                total += num(line, " rows=").unwrap_or(0.0) * loops;
            } else if let Some(n) = num(line, "Rows Removed by Filter: ")
                .or_else(|| num(line, "Rows Removed by Join Filter: "))
            {
                total += n * loops;
            }
        }
        total as u64
    }

    /// Whatever join and plan PostgreSQL picks, one statement of a rewrap reads each key of the
    /// version at most once. The statistics are set up as they were when CI stalled (taken while
    /// keys spread over many versions, then thousands stored under one) and hash and merge
    /// joins are switched off: a statement joining the named rows could then only loop over
    /// every key of the version once for each row named (1.9 million rows read here, not 4 000).
    #[tokio::test]
    async fn a_rewrap_reads_each_key_at_most_once_whatever_the_plan_in_postgres() {
        let Some(db) = crate::store::test_postgres().await else {
            return;
        };
        let (a, team) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([3; 16]));
        org(&db, a).await;
        for v in 1..=200 {
            plant(&db, a, team, 100 + v, &format!("s{v}"), 5).await;
        }
        sqlx::query("ANALYZE data_keys")
            .execute(db.pool())
            .await
            .unwrap();
        plant(&db, a, team, 10, "k", 4000).await;
        let table = 5000;
        let n = ROWS_PER_STATEMENT;
        let mut w = db.write().await.unwrap();
        let sql = format!("EXPLAIN ANALYZE {}", rewrap_statement(n));
        let mut q = sqlx::query(&sql)
            .bind(11i64)
            .bind(a.to_string())
            .bind(team.to_string())
            .bind(10i64);
        // The last keys stored: a plan walking the version's keys in order finds them last.
        for i in 4000 - n..4000 {
            q = q.bind(format!("k-{i}")).bind(vec![11u8; 4]);
        }
        let plan = explain_without_hash_or_merge_joins(&mut w, q).await;
        let read = rows_read(&plan);
        assert!(read >= n as u64, "the plan was not read: {plan:#?}");
        assert!(
            read <= table,
            "{read} rows read to move {n} of {table}: {plan:#?}"
        );
    }

    /// Storing keys reads the named rows and one scope key, whatever the plan, in an org with
    /// thousands of scope keys (statistics taken when it had one): rows pass through a node or
    /// two each (here 501 for 250 keys), never a loop over the org's scope keys per row.
    #[tokio::test]
    async fn storing_keys_reads_one_scope_key_whatever_the_plan_in_postgres() {
        let Some(db) = crate::store::test_postgres().await else {
            return;
        };
        let a = ScopeId::from_bytes([1; 16]);
        org(&db, a).await;
        let scope = |i: u32| {
            ScopeId::from_bytes([
                (i % 256) as u8,
                (i / 256) as u8,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
            ])
        };
        scope_key(&db, a, scope(0), 1).await;
        sqlx::query("ANALYZE scope_keys")
            .execute(db.pool())
            .await
            .unwrap();
        for i in 1..400 {
            for v in 1..=10 {
                scope_key(&db, a, scope(i), v).await;
            }
        }
        let n = ROWS_PER_STATEMENT;
        let mut w = db.write().await.unwrap();
        let sql = format!("EXPLAIN ANALYZE {}", insert_statement(n));
        let mut q = sqlx::query(&sql)
            .bind(a.to_string())
            .bind(scope(399).to_string())
            .bind(10i64)
            .bind(0i64);
        for i in 0..n {
            q = q.bind(format!("k-{i}")).bind(vec![1u8; 4]);
        }
        let plan = explain_without_hash_or_merge_joins(&mut w, q).await;
        let read = rows_read(&plan);
        assert!(read >= n as u64, "the plan was not read: {plan:#?}");
        assert!(
            read <= 3 * n as u64,
            "{read} rows read to store {n} keys: {plan:#?}"
        );
    }

    /// `EXPLAIN ANALYZE` output of `q` (an `EXPLAIN ANALYZE` statement) in `w`'s transaction,
    /// planned as a generic plan with hash and merge joins off: what the planner does with
    /// statistics that make a loop look cheapest.
    async fn explain_without_hash_or_merge_joins<'q>(
        w: &mut crate::store::WriteTx,
        q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Vec<String> {
        for set in [
            "SET LOCAL enable_hashjoin = off",
            "SET LOCAL enable_mergejoin = off",
            "SET LOCAL plan_cache_mode = force_generic_plan",
        ] {
            sqlx::query(set).execute(&mut *w.tx).await.unwrap();
        }
        q.fetch_all(&mut *w.tx)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    }
}
