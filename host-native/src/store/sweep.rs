//! The sweep: stored data keys of revoked scopes, deleted in batches after the revoke.
//!
//! A revoke destroys its subtree's scope keys in its own transaction: from its commit on, the
//! subtree's stored data keys open for no one (their wrapping key is gone, and reads skip a
//! row whose key version is gone, [`super::data_keys::get_many`]). Their rows are garbage, and
//! deleting them inside the revoke made its transaction as long as the scope was large: a
//! scope with millions of keys outlasted PostgreSQL's statement timeout and the request's
//! deadline, so the revoke was rolled back and every retry failed the same way. The revoke
//! lists the scopes here ([`later`]); the org's job runner deletes their rows a batch per
//! transaction ([`batch`]), resumes after a crash, and logs each scope's count when it is done.

use byok_core::ScopeId;
use serde_json::json;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::{Result, audit};

/// Scopes per statement when listing them: 1 parameter each, well under either engine's limit.
const SCOPES_PER_STATEMENT: usize = 500;

/// Lists the scopes among `scopes` that have stored data keys for the sweep, in the revoke's
/// transaction. A scope with none is not listed: a subtree of many empty scopes costs one
/// lookup of each, as the delete it replaces did. No key can land in a listed scope later: a
/// key is stored only while its scope key version is (checked in the inserting statement), and
/// the revoke destroys them all.
pub async fn later(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    scopes: &[ScopeId],
) -> Result<()> {
    let org = org.to_string();
    for chunk in scopes.chunks(SCOPES_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("(${})", 2 + i)).collect();
        // `WHERE` in the `SELECT`: SQLite reads `ON CONFLICT` after a bare `FROM` as a join's.
        let sql = format!(
            "INSERT INTO data_key_sweeps (org_id, scope_id, swept) \
             SELECT $1, v.column1, 0 FROM (VALUES {}) AS v \
             WHERE EXISTS (SELECT 1 FROM data_keys d WHERE d.org_id = $1 AND d.scope_id = v.column1) \
             ON CONFLICT (org_id, scope_id) DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(&org);
        for scope in chunk {
            q = q.bind(scope.to_string());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The org's scopes waiting for the sweep, in id order.
pub async fn waiting(pool: &AnyPool, org: ScopeId) -> Result<Vec<ScopeId>> {
    sqlx::query("SELECT scope_id FROM data_key_sweeps WHERE org_id = $1 ORDER BY scope_id")
        .bind(org.to_string())
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| super::org_rows::scope_id(r.try_get::<&str, _>("scope_id")?))
        .collect()
}

/// What one batch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swept {
    /// Deleted this many; more may be left.
    Some(u64),
    /// The scope is done (this batch found fewer than asked for): deleted this many in all, and
    /// logged that. Its row is gone.
    Done(u64),
    /// The scope was not waiting (another runner finished it).
    NotWaiting,
}

/// Deletes up to `n` stored data keys of `scope`, a scope listed by [`later`], and takes them
/// off the org's count. The batch that finds fewer than `n` ends the scope's sweep: its row
/// goes and the log gets `data_keys_swept` (the scope, how many in all).
///
/// The org's row is taken first, the order every other writer of these rows takes (a revoke, a
/// delete by id, a retirement batch): on PostgreSQL the other order deadlocks against them
/// across replicas. The keys' scope key versions are destroyed already (the revoke's commit):
/// the wrapped forms deleted here open nothing, so no scrub of the write-ahead log is owed.
pub async fn batch(
    w: &mut super::WriteTx,
    org: ScopeId,
    scope: ScopeId,
    n: u64,
    at: i64,
) -> Result<Swept> {
    let swept = batch_rows(&mut w.tx, org, scope, n).await?;
    if let Swept::Done(swept) = swept {
        let event =
            json!({ "type": "data_keys_swept", "scope": scope.to_string(), "count": swept });
        audit::append(w, org, at, &event).await?;
    }
    Ok(swept)
}

/// [`batch`] but for its audit row (written once the scope is done).
async fn batch_rows(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    scope: ScopeId,
    n: u64,
) -> Result<Swept> {
    // At least one a batch: a batch of none would never end the scope.
    let n = n.max(1);
    super::org_rows::lock(tx, org).await?;
    let (org_id, scope_id) = (org.to_string(), scope.to_string());
    let before: Option<i64> =
        sqlx::query("SELECT swept FROM data_key_sweeps WHERE org_id = $1 AND scope_id = $2")
            .bind(&org_id)
            .bind(&scope_id)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get("swept"))
            .transpose()?;
    let Some(before) = before else {
        return Ok(Swept::NotWaiting);
    };
    // PostgreSQL has no `DELETE ... LIMIT`: the batch's ids come from a bounded sub-select,
    // read along the (org, scope, version) index.
    let deleted = sqlx::query(
        "DELETE FROM data_keys WHERE org_id = $1 AND id IN \
         (SELECT id FROM data_keys WHERE org_id = $1 AND scope_id = $2 LIMIT $3)",
    )
    .bind(&org_id)
    .bind(&scope_id)
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    super::data_keys::uncount(tx, &org_id, deleted).await?;
    let swept = u64::try_from(before).unwrap_or(0).saturating_add(deleted);
    // Fewer than asked means none left: every deleter of these rows holds the org's row, and
    // none is inserted into a listed scope. Checked anyway, so that a row left by anything
    // else keeps the scope listed rather than counted for ever.
    let left = deleted < n
        && sqlx::query("SELECT 1 FROM data_keys WHERE org_id = $1 AND scope_id = $2 LIMIT 1")
            .bind(&org_id)
            .bind(&scope_id)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
    if deleted == n || left {
        sqlx::query("UPDATE data_key_sweeps SET swept = $3 WHERE org_id = $1 AND scope_id = $2")
            .bind(&org_id)
            .bind(&scope_id)
            .bind(i64::try_from(swept).unwrap_or(i64::MAX))
            .execute(&mut **tx)
            .await?;
        return Ok(Swept::Some(deleted));
    }
    sqlx::query("DELETE FROM data_key_sweeps WHERE org_id = $1 AND scope_id = $2")
        .bind(&org_id)
        .bind(&scope_id)
        .execute(&mut **tx)
        .await?;
    Ok(Swept::Done(swept))
}

/// How many rows of `scope` the org's data keys table holds, readable or not.
#[cfg(test)]
pub(crate) async fn test_rows(db: &super::Database, org: ScopeId, scope: ScopeId) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM data_keys WHERE org_id = $1 AND scope_id = $2")
        .bind(org.to_string())
        .bind(scope.to_string())
        .fetch_one(db.pool())
        .await
        .expect("the rows")
}

/// The org's `data_keys_swept` events, in log order.
#[cfg(test)]
pub(crate) async fn test_swept(db: &super::Database, org: ScopeId) -> Vec<serde_json::Value> {
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT event FROM audit WHERE org_id = $1 ORDER BY seq")
            .bind(org.to_string())
            .fetch_all(db.pool())
            .await
            .expect("the log");
    rows.iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).expect("an event"))
        .filter(|e| e["type"] == "data_keys_swept")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Database, test_org_row as org};

    /// Stores `n` rows of `scope` (version 1), ids `{tag}-{i}`, and counts them for the org.
    async fn plant(db: &Database, org: ScopeId, scope: ScopeId, tag: &str, n: u32) {
        let mut w = db.write().await.unwrap();
        for i in 0..n {
            sqlx::query(
                "INSERT INTO data_keys (org_id, id, scope_id, version, wrapped, created_at) \
                 VALUES ($1, $2, $3, 1, $4, 0)",
            )
            .bind(org.to_string())
            .bind(format!("{tag}-{i}"))
            .bind(scope.to_string())
            .bind(vec![1u8; 4])
            .execute(&mut *w.tx)
            .await
            .unwrap();
        }
        assert!(
            crate::store::data_keys::reserve(&mut w.tx, org, u64::from(n), None)
                .await
                .unwrap()
        );
        w.commit().await.unwrap();
    }

    async fn sweep(db: &Database, o: ScopeId, scope: ScopeId, n: u64) -> Swept {
        let mut w = db.write().await.unwrap();
        let done = batch(&mut w, o, scope, n, 7).await.unwrap();
        w.commit().await.unwrap();
        done
    }

    /// Only scopes with stored keys are listed (once, however often); the sweep deletes a
    /// listed scope's keys a batch at a time, and no other scope's or org's; the org's count
    /// goes down with each batch; the batch that finds fewer than asked ends the scope, with
    /// one log row saying how many in all.
    async fn a_swept_scope_loses_its_keys_in_batches_and_nothing_else(db: &Database) {
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        org(db, a).await;
        org(db, b).await;
        let (gone, kept, empty) = (
            ScopeId::from_bytes([11; 16]),
            ScopeId::from_bytes([12; 16]),
            ScopeId::from_bytes([13; 16]),
        );
        plant(db, a, gone, "g", 5).await;
        plant(db, a, kept, "k", 2).await;
        plant(db, b, gone, "b", 3).await;
        for _ in 0..2 {
            let mut w = db.write().await.unwrap();
            later(&mut w.tx, a, &[gone, empty]).await.unwrap();
            w.commit().await.unwrap();
        }
        assert_eq!(waiting(db.pool(), a).await.unwrap(), [gone]);
        assert_eq!(waiting(db.pool(), b).await.unwrap(), []);
        assert_eq!(sweep(db, a, gone, 2).await, Swept::Some(2));
        assert_eq!(test_rows(db, a, gone).await, 3);
        assert_eq!(
            crate::store::data_keys::stored(db.pool(), a).await.unwrap(),
            5
        );
        assert_eq!(sweep(db, a, gone, 2).await, Swept::Some(2));
        assert_eq!(sweep(db, a, gone, 2).await, Swept::Done(5));
        assert_eq!(sweep(db, a, gone, 2).await, Swept::NotWaiting);
        assert_eq!(sweep(db, a, empty, 2).await, Swept::NotWaiting);
        assert_eq!(
            (test_rows(db, a, gone).await, test_rows(db, a, kept).await),
            (0, 2)
        );
        assert_eq!(test_rows(db, b, gone).await, 3, "another org's keys");
        assert_eq!(
            crate::store::data_keys::stored(db.pool(), a).await.unwrap(),
            2
        );
        assert_eq!(
            crate::store::data_keys::stored(db.pool(), b).await.unwrap(),
            3
        );
        assert_eq!(waiting(db.pool(), a).await.unwrap(), []);
        let logged: Vec<String> = sqlx::query_scalar("SELECT event FROM audit WHERE org_id = $1")
            .bind(a.to_string())
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(logged.len(), 1, "one row for the scope: {logged:?}");
        assert_eq!(
            test_swept(db, a).await,
            [json!({ "type": "data_keys_swept", "scope": gone.to_string(), "count": 5 })]
        );
    }

    /// On SQLite, and on PostgreSQL when the tests have one.
    #[tokio::test]
    async fn a_swept_scope_loses_its_keys_in_batches_and_nothing_else_on_either_engine() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        a_swept_scope_loses_its_keys_in_batches_and_nothing_else(&db).await;
        if let Some(db) = crate::store::test_postgres().await {
            a_swept_scope_loses_its_keys_in_batches_and_nothing_else(&db).await;
        }
    }
}
