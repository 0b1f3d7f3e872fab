//! Stored data keys and the retirement job that rewraps them.

use byok_core::ScopeId;
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

/// Rows per statement: 4 parameters each, well under SQLite's 32 766 and PostgreSQL's 65 535.
const ROWS_PER_INSERT: usize = 250;

/// Stores data keys, each only while the scope key version it is wrapped under is still stored
/// (checked in the same statement): a row never lands under a version that a retirement has
/// just destroyed, nor in a subtree a revoke has just destroyed. Returns whether every row was
/// stored; the caller rolls back otherwise.
///
/// Many rows to a statement: this runs under the one writer, and a thousand statements (a
/// thousand round trips on PostgreSQL) held it for tens of milliseconds, which every other
/// org's change waited out.
pub async fn insert(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    rows: &[DataKeyRow],
    at: i64,
) -> Result<bool> {
    let org = org.to_string();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        // VALUES names its columns column1.. on both engines.
        let mut sql = String::from(
            "INSERT INTO data_keys (org_id, id, scope_id, version, wrapped, created_at) \
             SELECT $1, v.column1, v.column2, v.column3, v.column4, $2 FROM (VALUES ",
        );
        for i in 0..chunk.len() {
            let p = 3 + 4 * i;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${}, ${})", p, p + 1, p + 2, p + 3));
        }
        sql.push_str(
            ") AS v WHERE EXISTS (SELECT 1 FROM scope_keys k \
             WHERE k.org_id = $1 AND k.scope_id = v.column2 AND k.version = v.column3)",
        );
        let mut q = sqlx::query(&sql).bind(&org).bind(at);
        for r in chunk {
            q = q
                .bind(&r.id)
                .bind(r.scope.to_string())
                .bind(i64::from(r.version))
                .bind(&r.wrapped);
        }
        let done = q.execute(&mut **tx).await?;
        if done.rows_affected() != chunk.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
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

/// The org's data keys among `ids` (one query; missing ids are simply absent).
pub async fn get_many(pool: &AnyPool, org: ScopeId, ids: &[String]) -> Result<Vec<DataKeyRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = super::marks(2, ids.len());
    let sql = format!(
        "SELECT id, scope_id, version, wrapped FROM data_keys WHERE org_id = $1 AND id IN ({marks})"
    );
    let mut q = sqlx::query(&sql).bind(org.to_string());
    for id in ids {
        q = q.bind(id);
    }
    q.fetch_all(pool).await?.iter().map(row).collect()
}

/// Up to `limit` data keys of `scope` still under `version`.
pub async fn under(
    pool: &AnyPool,
    org: ScopeId,
    scope: ScopeId,
    version: u32,
    limit: i64,
) -> Result<Vec<DataKeyRow>> {
    sqlx::query("SELECT id, scope_id, version, wrapped FROM data_keys WHERE org_id = $1 AND scope_id = $2 AND version = $3 LIMIT $4")
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

/// Moves data keys (id, new wrapped form) from `from` to `to`; each only if it is still under
/// `from` (a batch re-run after a crash changes nothing twice). Returns how many moved.
///
/// Many rows to a statement, as [`insert`]: a batch of a thousand single-row updates held the
/// one writer for a thousand round trips.
pub async fn rewrap(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    keys: &[(String, Vec<u8>)],
    from: u32,
    to: u32,
) -> Result<u64> {
    let org = org.to_string();
    let mut moved = 0;
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        // VALUES names its columns column1.. on both engines (UPDATE .. FROM: SQLite 3.33+).
        let mut sql =
            String::from("UPDATE data_keys SET version = $1, wrapped = v.column2 FROM (VALUES ");
        for i in 0..chunk.len() {
            let p = 4 + 2 * i;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${})", p, p + 1));
        }
        sql.push_str(
            ") AS v WHERE data_keys.org_id = $2 AND data_keys.id = v.column1 \
             AND data_keys.version = $3",
        );
        let mut q = sqlx::query(&sql)
            .bind(i64::from(to))
            .bind(&org)
            .bind(i64::from(from));
        for (id, wrapped) in chunk {
            q = q.bind(id).bind(wrapped);
        }
        moved += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(moved)
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

/// Deletes every stored data key of `scopes` (a revoked subtree: they can never open again).
pub async fn delete_scopes(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    scopes: &[ScopeId],
) -> Result<()> {
    let org = org.to_string();
    for scope in scopes {
        sqlx::query("DELETE FROM data_keys WHERE org_id = $1 AND scope_id = $2")
            .bind(&org)
            .bind(scope.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
