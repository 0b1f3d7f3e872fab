//! The stored Merkle tree over each org's audit rows (core's `audit_log::tree`), the signed
//! checkpoints over it, and the log key, wrapped.
//!
//! - `audit_tree (org_id, idx, hash)`: every stored hash (about two per row), written in the
//!   same transaction as the row it covers, so the tree always has exactly the rows' leaves.
//! - `audit_checkpoint (org_id, size, at, note)`: every checkpoint byok signed, kept so that
//!   a verifier can bisect a rewritten log against them (`GET .../audit/checkpoints`).
//! - `log_key (name, public_key, wrapped, created_at)`: the Ed25519 log key, its seed wrapped
//!   under the managed key (never stored unwrapped).
//!
//! Core's tree operations read stored hashes synchronously; here each runs twice, once to
//! learn the indexes it reads and once on those hashes, read in one query ([`run`]).

use byok_core::ScopeId;
use byok_core::audit_log::tree::{self, TreeReader};
use byok_core::audit_log::{AuditLogError, Hash};
use sqlx::{AnyConnection, Row};

use super::{Result, StoreError};

fn corrupt(e: AuditLogError) -> StoreError {
    StoreError::Corrupt(format!("audit tree: {e}"))
}

fn index(i: u64) -> Result<i64> {
    i64::try_from(i).map_err(|_| StoreError::Corrupt("audit tree index past i64".into()))
}

/// Runs tree operation `op` of `org` on the stored hashes it needs.
pub async fn run<T>(
    conn: &mut AnyConnection,
    org: ScopeId,
    op: impl Fn(&TreeReader) -> std::result::Result<T, AuditLogError>,
) -> Result<T> {
    let want = tree::wanted(&op);
    op(&read(conn, org, &want).await?).map_err(corrupt)
}

/// A reader holding `org`'s stored hashes at indexes `want` (those stored).
pub async fn read(conn: &mut AnyConnection, org: ScopeId, want: &[u64]) -> Result<TreeReader> {
    Ok(TreeReader::with(read_hashes(conn, org, want).await?))
}

/// `org`'s stored hashes at indexes `want` (those stored), in one statement.
pub async fn read_hashes(
    conn: &mut AnyConnection,
    org: ScopeId,
    want: &[u64],
) -> Result<Vec<(u64, Hash)>> {
    let mut got = Vec::with_capacity(want.len());
    if !want.is_empty() {
        let marks = super::marks(2, want.len());
        let sql =
            format!("SELECT idx, hash FROM audit_tree WHERE org_id = $1 AND idx IN ({marks})");
        let mut q = sqlx::query(&sql).bind(org.to_string());
        for w in want {
            q = q.bind(index(*w)?);
        }
        for r in q.fetch_all(&mut *conn).await? {
            let idx: i64 = r.try_get("idx")?;
            let bytes: Vec<u8> = r.try_get("hash")?;
            let hash = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| StoreError::Corrupt("audit tree hash is not 32 bytes".into()))?;
            got.push((u64::try_from(idx).unwrap_or(u64::MAX), Hash(hash)));
        }
    }
    Ok(got)
}

/// `org`'s stored hashes with indexes `from..to`.
pub async fn range(
    conn: &mut AnyConnection,
    org: ScopeId,
    from: u64,
    to: u64,
) -> Result<std::collections::BTreeMap<u64, Hash>> {
    // In pages: a long range (a log never signed) in one statement could pass PostgreSQL's
    // statement timeout.
    range_paged(conn, org, from, to, 50_000).await
}

/// [`range`], `page` hashes a statement.
async fn range_paged(
    conn: &mut AnyConnection,
    org: ScopeId,
    from: u64,
    to: u64,
    page: u64,
) -> Result<std::collections::BTreeMap<u64, Hash>> {
    let mut out = std::collections::BTreeMap::new();
    let mut start = from;
    while start < to {
        let end = start.saturating_add(page.max(1)).min(to);
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, hash FROM audit_tree WHERE org_id = $1 AND idx >= $2 AND idx < $3",
        )
        .bind(org.to_string())
        .bind(index(start)?)
        .bind(index(end)?)
        .fetch_all(&mut *conn)
        .await?;
        for (idx, bytes) in rows {
            let hash = <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| StoreError::Corrupt("audit tree hash is not 32 bytes".into()))?;
            out.insert(u64::try_from(idx).unwrap_or(u64::MAX), Hash(hash));
        }
        start = end;
    }
    Ok(out)
}

/// Adds the leaf of row `seq` (from 1) with hash `leaf` to `org`'s tree.
pub async fn append(conn: &mut AnyConnection, org: ScopeId, seq: i64, leaf: Hash) -> Result<()> {
    let n = u64::try_from(seq - 1).map_err(|_| StoreError::Corrupt("audit seq below 1".into()))?;
    let new = run(conn, org, |r| tree::append(n, leaf, r)).await?;
    for (idx, hash) in new {
        sqlx::query("INSERT INTO audit_tree (org_id, idx, hash) VALUES ($1, $2, $3)")
            .bind(org.to_string())
            .bind(index(idx)?)
            .bind(&hash.0[..])
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The number of leaves in `org`'s tree (its rows).
pub async fn size(conn: &mut AnyConnection, org: ScopeId) -> Result<u64> {
    let n: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM audit WHERE org_id = $1")
        .bind(org.to_string())
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

/// The stored leaf hashes of rows `seqs`, by seq.
pub async fn leaves(
    conn: &mut AnyConnection,
    org: ScopeId,
    seqs: &[i64],
) -> Result<std::collections::HashMap<i64, Hash>> {
    let mut by_index = std::collections::HashMap::with_capacity(seqs.len());
    for seq in seqs.iter().filter(|s| **s >= 1) {
        by_index.insert(
            index(tree::leaf_index(u64::try_from(seq - 1).unwrap_or(0)))?,
            *seq,
        );
    }
    let mut out = std::collections::HashMap::with_capacity(seqs.len());
    if by_index.is_empty() {
        return Ok(out);
    }
    let marks = super::marks(2, by_index.len());
    let sql = format!("SELECT idx, hash FROM audit_tree WHERE org_id = $1 AND idx IN ({marks})");
    let mut q = sqlx::query(&sql).bind(org.to_string());
    for idx in by_index.keys() {
        q = q.bind(*idx);
    }
    for r in q.fetch_all(&mut *conn).await? {
        let idx: i64 = r.try_get("idx")?;
        if let Some(seq) = by_index.get(&idx) {
            let bytes: Vec<u8> = r.try_get("hash")?;
            if let Ok(h) = <[u8; 32]>::try_from(bytes.as_slice()) {
                out.insert(*seq, Hash(h));
            }
        }
    }
    Ok(out)
}

/// One signed checkpoint.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// When signed, ms since the Unix epoch.
    pub at: i64,
    /// The signed note.
    pub note: String,
}

fn checkpoint_row(r: &sqlx::any::AnyRow) -> Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: u64::try_from(r.try_get::<i64, _>("size")?).unwrap_or(0),
        at: r.try_get("at")?,
        note: r.try_get("note")?,
    })
}

/// The newest checkpoint of `org`.
pub async fn latest_checkpoint(
    conn: &mut AnyConnection,
    org: ScopeId,
) -> Result<Option<StoredCheckpoint>> {
    let r = sqlx::query(
        "SELECT size, at, note FROM audit_checkpoint WHERE org_id = $1 ORDER BY size DESC LIMIT 1",
    )
    .bind(org.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    r.as_ref().map(checkpoint_row).transpose()
}

/// Checkpoints of `org` with size above `after`, oldest first, at most `limit`.
pub async fn checkpoints(
    conn: &mut AnyConnection,
    org: ScopeId,
    after: u64,
    limit: i64,
) -> Result<Vec<StoredCheckpoint>> {
    let rows = sqlx::query(
        "SELECT size, at, note FROM audit_checkpoint WHERE org_id = $1 AND size > $2 ORDER BY size LIMIT $3",
    )
    .bind(org.to_string())
    .bind(index(after)?)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(checkpoint_row).collect()
}

/// Keeps a signed checkpoint (a second one of the same size is ignored: the first stands).
pub async fn put_checkpoint(
    conn: &mut AnyConnection,
    org: ScopeId,
    size: u64,
    at: i64,
    note: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_checkpoint (org_id, size, at, note) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(org.to_string())
    .bind(index(size)?)
    .bind(at)
    .bind(note)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Orgs whose tree grew past their newest checkpoint (or that have rows and none), and those
/// whose newest checkpoint claims more rows than the log has (changed in storage: the signing
/// refuses it, and says so, every time).
pub async fn unsigned_orgs(conn: &mut AnyConnection) -> Result<Vec<ScopeId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT a.org_id FROM audit a GROUP BY a.org_id
         HAVING MAX(a.seq) <> COALESCE((SELECT MAX(c.size) FROM audit_checkpoint c WHERE c.org_id = a.org_id), 0)",
    )
    .fetch_all(&mut *conn)
    .await?;
    ids.iter()
        .map(|s| ScopeId::parse_hex(s).ok_or_else(|| StoreError::Corrupt("audit org id".into())))
        .collect()
}

/// The stored log key: its name, public key and wrapped seed.
#[derive(Clone, Debug)]
pub struct StoredLogKey {
    /// Name in signature lines.
    pub name: String,
    /// Ed25519 public key.
    pub public_key: Vec<u8>,
    /// The seed, wrapped under the managed key.
    pub wrapped: Vec<u8>,
}

/// Rows `from..=to` of `org`'s log that byok did not write as they are: no tag, or one that
/// does not check out against the tree's leaf (taken from `stored`, the hashes the caller
/// read and signs from), or contents that do not give that leaf. The first such seq, if any.
pub async fn first_untagged(
    conn: &mut AnyConnection,
    tagger: &byok_core::audit_log::row_tag::RowTagger,
    org: ScopeId,
    from: u64,
    to: u64,
    stored: &std::collections::BTreeMap<u64, Hash>,
) -> Result<Option<u64>> {
    // Pages of rows.
    const PAGE: i64 = 500;
    let (mut next, to) = (
        i64::try_from(from).unwrap_or(i64::MAX),
        i64::try_from(to).unwrap_or(i64::MAX),
    );
    while next <= to {
        let last = next.saturating_add(PAGE - 1).min(to);
        let rows: Vec<(i64, i64, String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT seq, at, event, tag FROM audit WHERE org_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq",
        )
        .bind(org.to_string())
        .bind(next)
        .bind(last)
        .fetch_all(&mut *conn)
        .await?;
        let mut want = next;
        for (seq, at, event, tag) in &rows {
            // A row missing from the range is no row byok wrote either.
            if *seq != want {
                return Ok(Some(u64::try_from(want).unwrap_or(0)));
            }
            let n = u64::try_from(*seq).unwrap_or(0);
            // The row as stored gives the tree's leaf, and the leaf is tagged by byok.
            // The text exactly as byok writes it (`append`): text that parses to the same
            // event (keys given twice, spaces) reads differently to a filter in SQL.
            let own = serde_json::from_str::<serde_json::Value>(event)
                .ok()
                .filter(|e| serde_json::to_string(e).is_ok_and(|t| t == *event))
                .and_then(|e| byok_core::audit_log::leaf::row_hash(n, *at, &e).ok());
            let leaf = n
                .checked_sub(1)
                .and_then(|i| stored.get(&tree::leaf_index(i)));
            let ok = match (leaf, tag) {
                (Some(leaf), Some(tag)) => {
                    own.as_ref() == Some(leaf) && tagger.matches(org, n, leaf, tag)
                }
                _ => false,
            };
            if !ok {
                return Ok(Some(u64::try_from(*seq).unwrap_or(0)));
            }
            want += 1;
        }
        if want <= last {
            return Ok(Some(u64::try_from(want).unwrap_or(0)));
        }
        next = last + 1;
    }
    Ok(None)
}

/// Tags every row that has none and that no checkpoint covers yet (a log written before rows
/// were tagged), with its leaf in the tree; returns how many. Run once, at the first start
/// of a byok that tags rows (`audit_row_tags_complete`): later, a row without a tag is one
/// written into the database.
pub async fn tag_untagged(
    conn: &mut AnyConnection,
    tagger: &byok_core::audit_log::row_tag::RowTagger,
) -> Result<u64> {
    // A log with a tagged row was upgraded already: its marker was deleted, and rows without
    // a tag now are rows written into the database. None is tagged.
    let tagged: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM audit WHERE tag IS NOT NULL LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    if tagged.is_some() {
        tracing::error!(
            "audit rows are tagged but the upgrade marker is gone: it was deleted in the database; untagged rows are not tagged, and not signed"
        );
        return Ok(0);
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT a.org_id, a.seq FROM audit a WHERE a.tag IS NULL AND a.seq > \
         COALESCE((SELECT MAX(c.size) FROM audit_checkpoint c WHERE c.org_id = a.org_id), 0) \
         ORDER BY a.org_id, a.seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tagged = 0;
    // By org, the leaves read 500 rows a statement.
    let mut by_org: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (org_id, seq) in rows {
        by_org.entry(org_id).or_default().push(seq);
    }
    for (org_id, seqs) in by_org {
        let org = ScopeId::parse_hex(&org_id)
            .ok_or_else(|| StoreError::Corrupt("audit org id".into()))?;
        for page in seqs.chunks(500) {
            let found = leaves(conn, org, page).await?;
            for seq in page {
                let Some(leaf) = found.get(seq) else {
                    continue;
                };
                let tag = tagger.tag(org, u64::try_from(*seq).unwrap_or(0), leaf);
                sqlx::query("UPDATE audit SET tag = $3 WHERE org_id = $1 AND seq = $2")
                    .bind(&org_id)
                    .bind(*seq)
                    .bind(&tag[..])
                    .execute(&mut *conn)
                    .await?;
                tagged += 1;
            }
        }
    }
    Ok(tagged)
}

/// Whether any of `orgs` has rows in this database's log.
pub async fn any_log_of(conn: &mut AnyConnection, orgs: &[ScopeId]) -> Result<bool> {
    for org in orgs {
        let found = sqlx::query("SELECT 1 FROM audit WHERE org_id = $1 LIMIT 1")
            .bind(org.to_string())
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether any checkpoint was ever signed and kept (by any log key).
pub async fn any_checkpoint(conn: &mut AnyConnection) -> Result<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM audit_checkpoint LIMIT 1) t")
            .fetch_one(&mut *conn)
            .await?;
    Ok(n > 0)
}

/// The log key, if one was made.
pub async fn log_key(conn: &mut AnyConnection) -> Result<Option<StoredLogKey>> {
    let r =
        sqlx::query("SELECT name, public_key, wrapped FROM log_key ORDER BY created_at LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    r.map(|r| {
        Ok(StoredLogKey {
            name: r.try_get("name")?,
            public_key: r.try_get("public_key")?,
            wrapped: r.try_get("wrapped")?,
        })
    })
    .transpose()
}

/// Keeps the log key.
pub async fn put_log_key(conn: &mut AnyConnection, key: &StoredLogKey, at: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO log_key (name, public_key, wrapped, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&key.name)
    .bind(&key.public_key)
    .bind(&key.wrapped)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rebuilds the tree of every org whose rows outnumber its tree's leaves: a database from
/// before the tree existed. Returns how many orgs were rebuilt.
pub async fn backfill(conn: &mut AnyConnection) -> Result<usize> {
    let orgs: Vec<(String, i64)> =
        sqlx::query_as("SELECT org_id, MAX(seq) FROM audit GROUP BY org_id")
            .fetch_all(&mut *conn)
            .await?;
    let mut rebuilt = 0;
    for (org_id, max) in orgs {
        let org = ScopeId::parse_hex(&org_id)
            .ok_or_else(|| StoreError::Corrupt("audit org id".into()))?;
        if leaves(conn, org, &[max]).await?.contains_key(&max) {
            continue;
        }
        sqlx::query("DELETE FROM audit_tree WHERE org_id = $1")
            .bind(&org_id)
            .execute(&mut *conn)
            .await?;
        let rows: Vec<(i64, i64, String)> =
            sqlx::query_as("SELECT seq, at, event FROM audit WHERE org_id = $1 ORDER BY seq")
                .bind(&org_id)
                .fetch_all(&mut *conn)
                .await?;
        for (seq, at, event) in rows {
            let event: serde_json::Value = serde_json::from_str(&event)
                .map_err(|_| StoreError::Corrupt("audit event is not JSON".into()))?;
            let seq_u = u64::try_from(seq).unwrap_or(0);
            let hash = byok_core::audit_log::leaf::row_hash(seq_u, at, &event).map_err(corrupt)?;
            append(conn, org, seq, hash).await?;
        }
        rebuilt += 1;
    }
    Ok(rebuilt)
}

/// The witness key `org` registered, if any.
pub async fn witness(conn: &mut AnyConnection, org: ScopeId) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT vkey FROM audit_witness WHERE org_id = $1")
            .bind(org.to_string())
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Registers (or with `None`, forgets) `org`'s witness key.
pub async fn set_witness(
    conn: &mut AnyConnection,
    org: ScopeId,
    vkey: Option<&str>,
    at: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM audit_witness WHERE org_id = $1")
        .bind(org.to_string())
        .execute(&mut *conn)
        .await?;
    if let Some(v) = vkey {
        sqlx::query("INSERT INTO audit_witness (org_id, vkey, created_at) VALUES ($1, $2, $3)")
            .bind(org.to_string())
            .bind(v)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The checkpoint of `org` of exactly `size`, if byok signed one.
pub async fn checkpoint_of_size(
    conn: &mut AnyConnection,
    org: ScopeId,
    size: u64,
) -> Result<Option<StoredCheckpoint>> {
    let r =
        sqlx::query("SELECT size, at, note FROM audit_checkpoint WHERE org_id = $1 AND size = $2")
            .bind(org.to_string())
            .bind(index(size)?)
            .fetch_optional(&mut *conn)
            .await?;
    r.as_ref().map(checkpoint_row).transpose()
}

/// Keeps a witness's cosignature line of `org`'s checkpoint of `size`.
pub async fn put_cosignature(
    conn: &mut AnyConnection,
    org: ScopeId,
    size: u64,
    line: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_cosignature (org_id, size, line, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(org.to_string())
    .bind(index(size)?)
    .bind(line)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The cosignature lines of `org`'s checkpoint of `size`, oldest first.
pub async fn cosignatures(
    conn: &mut AnyConnection,
    org: ScopeId,
    size: u64,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT line FROM audit_cosignature WHERE org_id = $1 AND size = $2 ORDER BY at, line",
    )
    .bind(org.to_string())
    .bind(index(size)?)
    .fetch_all(&mut *conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Database;

    /// A range read in pages is the range read whole, whatever the page's size.
    #[tokio::test]
    async fn a_range_read_in_pages_is_the_whole_range() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let org = ScopeId::from_bytes([1; 16]);
        let mut w = db.write().await.unwrap();
        for seq in 1..=9 {
            append(&mut w.tx, org, seq, Hash([u8::try_from(seq).unwrap(); 32]))
                .await
                .unwrap();
        }
        let (from, to) = (tree::leaf_index(2), tree::leaf_index(9));
        let whole = range_paged(&mut w.tx, org, from, to, u64::MAX)
            .await
            .unwrap();
        assert_eq!(whole.len(), usize::try_from(to - from).unwrap());
        for page in [1, 2, 3, 7] {
            let paged = range_paged(&mut w.tx, org, from, to, page).await.unwrap();
            assert_eq!(paged, whole, "pages of {page}");
        }
    }
}
