//! An org as rows: one per scope, per live key version, per holder and per root copy, and the
//! org's own row (name, default holder, running job, settings). [`Org::restore`] rebuilds the
//! value and refuses rows that do not form a valid org.
//!
//! Rows change only through the effects of a transition, one row write per effect (see
//! [`super::Store`]; the SQL of those writes is in `effect_rows.rs`, shared by SQLite and PostgreSQL), so the cost of a change does
//! not grow with the size of the tree. This module reads the rows back, inserts a new org's
//! own row, and keeps the JSON form of a stored job.

use std::collections::BTreeMap;

use byok_core::scope::{
    Holder, HolderId, HolderStatus, JobKind, JobStep, Org, RewrapJob, RootCheck, ScopeState,
    StoredScope, WrappedScopeKey,
};
use byok_core::{KeyId, ScopeId};
use serde_json::{Value, json};
use sqlx::{Any, AnyPool, Row, Transaction};

use super::{Result, StoreError};

/// What the host keeps about an org beside its key tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgMeta {
    /// Display name.
    pub name: String,
    /// How long unwrapped keys stay cached, in milliseconds (0: never cached).
    pub unwrap_cache_ttl_ms: u64,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// How long an edge lease lasts, ms (0: no leases).
    pub lease_ttl_ms: u64,
    /// How long past `unwrap_cache_ttl_ms` cached roots may keep serving while the KMS is
    /// unreachable (never after a denial), ms (0: the plain TTL).
    pub outage_grace_ms: u64,
    /// The most the org's admin may set `unwrap_cache_ttl_ms` to: what the operator created the
    /// org with.
    pub max_unwrap_cache_ttl_ms: u64,
    /// The most the org's admin may set `lease_ttl_ms` to.
    pub max_lease_ttl_ms: u64,
}

/// `managed` or `cmk:N`.
pub fn holder_name(h: HolderId) -> String {
    match h {
        HolderId::Managed => "managed".into(),
        HolderId::Cmk(n) => format!("cmk:{n}"),
    }
}

/// The inverse of [`holder_name`].
pub fn parse_holder(s: &str) -> Option<HolderId> {
    match s {
        "managed" => Some(HolderId::Managed),
        // As `holder_name` writes it, only: `cmk:01` or `cmk:+1` would be another row's key
        // naming the same holder.
        _ => s
            .strip_prefix("cmk:")
            .and_then(|n| n.parse::<u32>().ok().filter(|v| v.to_string() == n))
            .map(HolderId::Cmk),
    }
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

pub(super) fn hex(id: ScopeId) -> String {
    id.to_string()
}

pub(crate) fn scope_id(s: &str) -> Result<ScopeId> {
    ScopeId::parse_hex(s).ok_or_else(|| corrupt(format!("bad scope id {s:?}")))
}

fn key_json(k: KeyId) -> Value {
    json!({ "scope": hex(k.scope), "version": k.version })
}

fn key_from(v: &Value) -> Option<KeyId> {
    let scope = ScopeId::parse_hex(v.get("scope")?.as_str()?)?;
    let version = u32::try_from(v.get("version")?.as_u64()?).ok()?;
    Some(KeyId::new(scope, version))
}

pub(super) fn job_json(job: &RewrapJob) -> Value {
    let kind = match &job.kind {
        JobKind::WrapHolder(h) => json!({ "wrap_holder": holder_name(*h) }),
        JobKind::WrapRoot(v) => json!({ "wrap_root": v }),
        JobKind::RetireVersion(k) => json!({ "retire_version": key_json(*k) }),
        JobKind::RefreshHolder(h) => json!({ "refresh_holder": holder_name(*h) }),
    };
    let steps: Vec<Value> = job
        .steps
        .iter()
        .map(|s| match s {
            JobStep::WrapRoot { holder, version } => {
                json!({ "wrap_root": { "holder": holder_name(*holder), "version": version } })
            }
            JobStep::Rewrap { key, from, to } => json!({ "rewrap": {
                "key": key_json(*key), "from": key_json(*from), "to": key_json(*to) } }),
        })
        .collect();
    json!({ "kind": kind, "steps": steps, "done": job.done })
}

fn job_from(v: &Value) -> Option<RewrapJob> {
    let kind = v.get("kind")?;
    let kind = if let Some(h) = kind.get("wrap_holder") {
        JobKind::WrapHolder(parse_holder(h.as_str()?)?)
    } else if let Some(r) = kind.get("wrap_root") {
        JobKind::WrapRoot(u32::try_from(r.as_u64()?).ok()?)
    } else if let Some(h) = kind.get("refresh_holder") {
        JobKind::RefreshHolder(parse_holder(h.as_str()?)?)
    } else {
        JobKind::RetireVersion(key_from(kind.get("retire_version")?)?)
    };
    let mut steps = Vec::new();
    for s in v.get("steps")?.as_array()? {
        steps.push(if let Some(w) = s.get("wrap_root") {
            JobStep::WrapRoot {
                holder: parse_holder(w.get("holder")?.as_str()?)?,
                version: u32::try_from(w.get("version")?.as_u64()?).ok()?,
            }
        } else {
            let r = s.get("rewrap")?;
            JobStep::Rewrap {
                key: key_from(r.get("key")?)?,
                from: key_from(r.get("from")?)?,
                to: key_from(r.get("to")?)?,
            }
        });
    }
    let done = usize::try_from(v.get("done")?.as_u64()?).ok()?;
    Some(RewrapJob { kind, steps, done })
}

/// Inserts a new org's own row (name and settings). Its scopes, keys and holders follow as
/// the effects of [`Org::create`]; the default holder starts as the managed key, which every
/// org is created with.
pub async fn insert_org(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    meta: &OrgMeta,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO orgs (id, name, default_holder, job, unwrap_cache_ttl_ms, created_at, lease_ttl_ms, outage_grace_ms, max_unwrap_cache_ttl_ms, max_lease_ttl_ms) VALUES ($1, $2, 'managed', NULL, $3, $4, $5, $6, $7, $8)",
    )
    .bind(hex(org))
    .bind(&meta.name)
    .bind(i64::try_from(meta.unwrap_cache_ttl_ms).unwrap_or(i64::MAX))
    .bind(meta.created_at)
    .bind(i64::try_from(meta.lease_ttl_ms).unwrap_or(i64::MAX))
    .bind(i64::try_from(meta.outage_grace_ms).unwrap_or(i64::MAX))
    .bind(i64::try_from(meta.max_unwrap_cache_ttl_ms).unwrap_or(i64::MAX))
    .bind(i64::try_from(meta.max_lease_ttl_ms).unwrap_or(i64::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets the settings an org's admin may change (`meta`'s unwrap cache TTL, lease TTL and
/// outage grace, ms).
pub async fn set_settings(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    meta: &OrgMeta,
) -> Result<()> {
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "UPDATE orgs SET unwrap_cache_ttl_ms = $1, lease_ttl_ms = $2, outage_grace_ms = $3 WHERE id = $4",
    )
    .bind(ms(meta.unwrap_cache_ttl_ms))
    .bind(ms(meta.lease_ttl_ms))
    .bind(ms(meta.outage_grace_ms))
    .bind(hex(org))
    .execute(&mut **tx)
    .await?;
    one_row(done.rows_affected(), "settings of an unknown org")
}

/// Notes that the org's customer claimed it at `at` (ms since the epoch).
pub async fn set_claimed(tx: &mut Transaction<'static, Any>, org: ScopeId, at: i64) -> Result<()> {
    let done = sqlx::query("UPDATE orgs SET claimed_at = $1 WHERE id = $2")
        .bind(at)
        .bind(hex(org))
        .execute(&mut **tx)
        .await?;
    one_row(done.rows_affected(), "claim of an unknown org")
}

/// When the org's customer last claimed it, if ever.
pub async fn claimed_at(pool: &AnyPool, org: ScopeId) -> Result<Option<i64>> {
    let at: Option<Option<i64>> = sqlx::query_scalar("SELECT claimed_at FROM orgs WHERE id = $1")
        .bind(hex(org))
        .fetch_optional(pool)
        .await?;
    Ok(at.flatten())
}

/// An effect that changes no row does not fit the stored state: refuse it (the transaction
/// rolls back) rather than commit a state that differs from the one core decided.
pub(super) fn one_row(affected: u64, what: &str) -> Result<()> {
    if affected == 1 {
        Ok(())
    } else {
        Err(corrupt(what))
    }
}

/// Every org's id.
pub async fn org_ids(pool: &AnyPool) -> Result<Vec<ScopeId>> {
    let rows = sqlx::query("SELECT id FROM orgs").fetch_all(pool).await?;
    rows.iter()
        .map(|r| scope_id(r.try_get::<&str, _>("id")?))
        .collect()
}

/// How many root versions (rows of an org scope's keys) have no check value: stored by a byok
/// older than them.
pub async fn unchecked_roots(pool: &AnyPool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM scope_keys WHERE scope_id = org_id AND root_check IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The orgs with a root version stored without a check value.
pub async fn orgs_with_unchecked_roots(pool: &AnyPool) -> Result<Vec<ScopeId>> {
    let rows = sqlx::query(
        "SELECT DISTINCT org_id FROM scope_keys WHERE scope_id = org_id AND root_check IS NULL",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| scope_id(r.try_get::<&str, _>("org_id")?))
        .collect()
}

/// An org as loaded: its value, metadata, scope names and the version they are at.
pub type Loaded = (Org, OrgMeta, BTreeMap<ScopeId, String>, i64);

/// Loads org `id`: its value, its metadata, its scopes' names and its version, all from one
/// snapshot of the database (another replica may commit a change between two of the reads).
pub async fn load(pool: &AnyPool, id: ScopeId) -> Result<Option<Loaded>> {
    let mut tx = super::snapshot(pool).await?;
    let loaded = load_in(&mut tx, id).await;
    tx.rollback().await?;
    loaded
}

async fn load_in(tx: &mut Transaction<'static, Any>, id: ScopeId) -> Result<Option<Loaded>> {
    let org_id = hex(id);
    let Some(row) = sqlx::query(
        "SELECT name, default_holder, job, unwrap_cache_ttl_ms, created_at, lease_ttl_ms, outage_grace_ms, max_unwrap_cache_ttl_ms, max_lease_ttl_ms, version FROM orgs WHERE id = $1",
    )
    .bind(&org_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let version: i64 = row.try_get("version")?;
    let meta = OrgMeta {
        name: row.try_get("name")?,
        unwrap_cache_ttl_ms: u64::try_from(row.try_get::<i64, _>("unwrap_cache_ttl_ms")?)
            .unwrap_or(0),
        created_at: row.try_get("created_at")?,
        lease_ttl_ms: u64::try_from(row.try_get::<i64, _>("lease_ttl_ms")?).unwrap_or(0),
        outage_grace_ms: u64::try_from(row.try_get::<i64, _>("outage_grace_ms")?).unwrap_or(0),
        max_unwrap_cache_ttl_ms: u64::try_from(row.try_get::<i64, _>("max_unwrap_cache_ttl_ms")?)
            .unwrap_or(0),
        max_lease_ttl_ms: u64::try_from(row.try_get::<i64, _>("max_lease_ttl_ms")?).unwrap_or(0),
    };
    let default = parse_holder(row.try_get("default_holder")?)
        .ok_or_else(|| corrupt("bad default holder"))?;
    let job = match row.try_get::<Option<String>, _>("job")? {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<Value>(&text)
                .ok()
                .as_ref()
                .and_then(job_from)
                .ok_or_else(|| corrupt("bad job"))?,
        ),
    };

    let mut names = BTreeMap::new();
    let mut scopes: BTreeMap<ScopeId, StoredScope> = BTreeMap::new();
    for r in sqlx::query("SELECT id, parent_id, name, state FROM scopes WHERE org_id = $1")
        .bind(&org_id)
        .fetch_all(&mut **tx)
        .await?
    {
        let sid = scope_id(r.try_get("id")?)?;
        let parent = match r.try_get::<Option<&str>, _>("parent_id")? {
            Some(p) => Some(scope_id(p)?),
            None => None,
        };
        let state: &str = r.try_get("state")?;
        let state =
            ScopeState::parse(state).ok_or_else(|| corrupt(format!("bad state {state:?}")))?;
        names.insert(sid, r.try_get::<String, _>("name")?);
        scopes.insert(
            sid,
            StoredScope {
                id: sid,
                parent,
                state,
                versions: BTreeMap::new(),
                checks: BTreeMap::new(),
            },
        );
    }
    for r in sqlx::query(
        "SELECT scope_id, version, under_version, wrapped, root_check FROM scope_keys WHERE org_id = $1",
    )
    .bind(&org_id)
    .fetch_all(&mut **tx)
    .await?
    {
        let sid = scope_id(r.try_get("scope_id")?)?;
        let version = u32::try_from(r.try_get::<i64, _>("version")?)
            .map_err(|_| corrupt("bad key version"))?;
        let scope = scopes
            .get_mut(&sid)
            .ok_or_else(|| corrupt("key of an unknown scope"))?;
        let wrapped = match (
            r.try_get::<Option<i64>, _>("under_version")?,
            r.try_get::<Option<Vec<u8>>, _>("wrapped")?,
        ) {
            (Some(under), Some(wrapped)) => {
                let parent = scope
                    .parent
                    .ok_or_else(|| corrupt("org scope key wrapped"))?;
                let under = u32::try_from(under).map_err(|_| corrupt("bad parent version"))?;
                Some(WrappedScopeKey {
                    under: KeyId::new(parent, under),
                    wrapped,
                })
            }
            (None, None) => None,
            _ => return Err(corrupt("half a wrapped key")),
        };
        if let Some(check) = r.try_get::<Option<Vec<u8>>, _>("root_check")? {
            let check = RootCheck::from_slice(&check).ok_or_else(|| corrupt("bad root check"))?;
            // Core's restore refuses one on a child scope's row.
            scope.checks.insert(version, check);
        }
        scope.versions.insert(version, wrapped);
    }
    let mut holders: BTreeMap<HolderId, Holder> = BTreeMap::new();
    for r in sqlx::query("SELECT holder, status FROM holders WHERE org_id = $1")
        .bind(&org_id)
        .fetch_all(&mut **tx)
        .await?
    {
        let h = parse_holder(r.try_get("holder")?).ok_or_else(|| corrupt("bad holder"))?;
        let status: &str = r.try_get("status")?;
        let status = HolderStatus::parse(status)
            .ok_or_else(|| corrupt(format!("bad holder status {status:?}")))?;
        holders.insert(
            h,
            Holder {
                id: h,
                status,
                copies: BTreeMap::new(),
            },
        );
    }
    for r in sqlx::query("SELECT holder, version, wrapped FROM root_copies WHERE org_id = $1")
        .bind(&org_id)
        .fetch_all(&mut **tx)
        .await?
    {
        let h = parse_holder(r.try_get("holder")?).ok_or_else(|| corrupt("bad holder"))?;
        let version = u32::try_from(r.try_get::<i64, _>("version")?)
            .map_err(|_| corrupt("bad root version"))?;
        holders
            .get_mut(&h)
            .ok_or_else(|| corrupt("copy of an unknown holder"))?
            .copies
            .insert(version, r.try_get("wrapped")?);
    }
    let org = Org::restore(
        id,
        scopes.into_values().collect(),
        holders.into_values().collect(),
        default,
        job,
    )
    .map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((org, meta, names, version)))
}

/// Takes org `org`'s row for this transaction (PostgreSQL: a row lock, held to the commit, so
/// changes and audit appends of one org take turns across replicas; SQLite has one writer
/// anyway) and returns its version.
pub async fn lock(tx: &mut Transaction<'static, Any>, org: ScopeId) -> Result<i64> {
    // PostgreSQL: a row lock that writes no new row version (an UPDATE that changes nothing
    // would leave a dead tuple per audit append). SQLite has no FOR UPDATE; there the UPDATE
    // is a no-op behind its one writer.
    let sql = if tx.backend_name() == "PostgreSQL" {
        "SELECT version FROM orgs WHERE id = $1 FOR UPDATE"
    } else {
        "UPDATE orgs SET version = version WHERE id = $1 RETURNING version"
    };
    sqlx::query_scalar(sql)
        .bind(hex(org))
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| corrupt("lock of an unknown org"))
}

/// An org's version before and after a change ([`bump`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bumped {
    /// The version the change moved from.
    pub from: i64,
    /// The change's own version.
    pub to: i64,
}

/// Bumps org `org`'s version (the org's state changed in this transaction) and, on
/// PostgreSQL, tells the other replicas when it commits (`NOTIFY byok_org, 'org:version'`).
pub async fn bump(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    notify: bool,
) -> Result<Bumped> {
    // With replicas (PostgreSQL), a version is also at least the database's clock in
    // microseconds. A version the database loses (a failover to a standby without the commit,
    // a restore) is then not issued again to the next change, which comes later: a replica
    // that heard of the lost one (by notification only, between two polls) would otherwise
    // take the next, a pause perhaps, as seen. Never below the last one plus one, whatever the
    // clock does. SQLite has one process and no replica to tell.
    let sql = if notify {
        "UPDATE orgs SET version = GREATEST(version + 1, \
         CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)) \
         WHERE id = $1 RETURNING version"
    } else {
        "UPDATE orgs SET version = version + 1 WHERE id = $1 RETURNING version"
    };
    // The version it moves from: the row is taken first (PostgreSQL), so no other replica's
    // change comes between; SQLite's one writer counts by one.
    let from = if notify {
        Some(lock(tx, org).await?)
    } else {
        None
    };
    let v: i64 = sqlx::query_scalar(sql)
        .bind(hex(org))
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| corrupt("version of an unknown org"))?;
    if notify {
        sqlx::query("SELECT pg_notify('byok_org', $1)")
            .bind(format!("{org}:{v}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(Bumped {
        from: from.unwrap_or(v - 1),
        to: v,
    })
}

/// Org `org`'s version (`None`: no such org).
pub async fn version(pool: &AnyPool, org: ScopeId) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT version FROM orgs WHERE id = $1")
        .bind(hex(org))
        .fetch_optional(pool)
        .await?)
}

/// Every org's version.
pub async fn versions(pool: &AnyPool) -> Result<Vec<(ScopeId, i64)>> {
    let rows = sqlx::query("SELECT id, version FROM orgs")
        .fetch_all(pool)
        .await?;
    // A row that does not read (a damaged id) is skipped with a warning rather than failing
    // the whole list: the poll is how lost announcements of every other org are made up.
    Ok(rows
        .iter()
        .filter_map(|r| {
            let row = || -> Result<(ScopeId, i64)> {
                Ok((scope_id(r.try_get("id")?)?, r.try_get("version")?))
            };
            let row = row();
            row.inspect_err(|e| tracing::warn!(error = %e, "an org row the poll cannot read"))
                .ok()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On PostgreSQL the org's row is locked without writing a new row version (no dead tuple
    /// per audit append); the version it returns is the stored one either way.
    #[tokio::test]
    async fn taking_the_org_row_writes_no_row_in_postgres() {
        let Some(db) = crate::store::test_postgres().await else {
            return;
        };
        let org = ScopeId::from_bytes([5; 16]);
        sqlx::query(
            "INSERT INTO orgs (id, name, default_holder, unwrap_cache_ttl_ms, created_at, version) \
             VALUES ($1, 'o', 'managed', 0, 0, 7)",
        )
        .bind(hex(org))
        .execute(db.pool())
        .await
        .unwrap();
        let mut w = db.write().await.unwrap();
        assert_eq!(lock(&mut w.tx, org).await.unwrap(), 7);
        let updated: i64 = sqlx::query_scalar(
            "SELECT n_tup_upd + n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'orgs'",
        )
        .fetch_one(&mut *w.tx)
        .await
        .unwrap();
        assert_eq!(updated, 0, "the lock wrote a row version");
        let e = lock(&mut w.tx, ScopeId::from_bytes([6; 16]))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m == "lock of an unknown org"),
            "{e:?}"
        );
    }

    #[test]
    fn holder_names_round_trip() {
        for h in [HolderId::Managed, HolderId::Cmk(0), HolderId::Cmk(u32::MAX)] {
            assert_eq!(parse_holder(&holder_name(h)), Some(h));
        }
        for bad in [
            "", "cmk:", "cmk:-1", "cmk:x", "Managed", "cmk:01", "cmk:+1", "cmk: 1",
        ] {
            assert_eq!(parse_holder(bad), None, "{bad}");
        }
    }

    /// A database whose orgs were claimed before `claimed_at` existed (migrations up to 0014)
    /// gets the time of each org's last claim from its log; an org never claimed gets none.
    #[tokio::test]
    async fn an_existing_database_learns_when_its_orgs_were_claimed() {
        let dir = std::env::temp_dir().join(format!("byok-migrate-claim-{}", std::process::id()));
        let (claimed, never) = (ScopeId::from_bytes([5; 16]), ScopeId::from_bytes([6; 16]));
        let org = |id: ScopeId| {
            format!(
                "INSERT INTO orgs (id, name, default_holder, job, unwrap_cache_ttl_ms, created_at) VALUES ('{}', 'old', 'managed', NULL, 60000, 1)",
                hex(id)
            )
        };
        let row = |id: ScopeId, seq: u32, at: u32, event: &str| {
            format!(
                "INSERT INTO audit (org_id, seq, at, event, prev, hash) VALUES ('{}', {seq}, {at}, '{event}', x'00', x'00')",
                hex(id)
            )
        };
        let made = r#"{"type":"token_created","role":"admin","name":"a"}"#;
        let claim = r#"{"type":"token_created","role":"admin","name":"b","claim":true}"#;
        let rows = [
            org(claimed),
            org(never),
            row(claimed, 1, 10, made),
            row(claimed, 2, 20, claim),
            row(claimed, 3, 30, claim),
            row(claimed, 4, 40, made),
            row(never, 1, 50, made),
        ];
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        let url = super::super::old_database(&dir, "0015", 14, &rows).await;
        let db = super::super::Database::open(&url).await.unwrap();
        assert_eq!(claimed_at(db.pool(), claimed).await.unwrap(), Some(30));
        assert_eq!(claimed_at(db.pool(), never).await.unwrap(), None);
        let mut w = db.write().await.unwrap();
        set_claimed(&mut w.tx, never, 60).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(claimed_at(db.pool(), never).await.unwrap(), Some(60));
        db.pool().close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database made before outage grace existed (migrations up to 0005) opens, migrates, and
    /// its orgs keep the plain TTL (grace 0); the new column then stores a grace.
    #[tokio::test]
    async fn an_existing_database_migrates_to_a_zero_grace() {
        let dir = std::env::temp_dir().join(format!("byok-migrate-{}", std::process::id()));
        let org = format!(
            "INSERT INTO orgs (id, name, default_holder, job, unwrap_cache_ttl_ms, created_at) VALUES ('{}', 'old', 'managed', NULL, 60000, 1)",
            hex(ScopeId::from_bytes([7; 16]))
        );
        let url = super::super::old_database(&dir, "0006", 5, &[&org]).await;
        let db = super::super::Database::open(&url).await.unwrap();
        let org = ScopeId::from_bytes([7; 16]);
        let grace = |pool: AnyPool| async move {
            sqlx::query_scalar::<_, i64>("SELECT outage_grace_ms FROM orgs WHERE id = $1")
                .bind(hex(org))
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        assert_eq!(grace(db.pool().clone()).await, 0);
        // The admin's ceilings are what the org had when the column came.
        let ceiling: i64 =
            sqlx::query_scalar("SELECT max_unwrap_cache_ttl_ms FROM orgs WHERE id = $1")
                .bind(hex(org))
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(ceiling, 60_000);
        let meta = OrgMeta {
            name: "old".into(),
            unwrap_cache_ttl_ms: 60_000,
            created_at: 1,
            lease_ttl_ms: 60_000,
            outage_grace_ms: 30_000,
            max_unwrap_cache_ttl_ms: 60_000,
            max_lease_ttl_ms: 60_000,
        };
        let mut w = db.write().await.unwrap();
        set_settings(&mut w.tx, org, &meta).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(grace(db.pool().clone()).await, 30_000);
        let mut w = db.write().await.unwrap();
        let e = set_settings(&mut w.tx, ScopeId::from_bytes([8; 16]), &meta)
            .await
            .expect_err("an unknown org changes no row");
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m == "settings of an unknown org"),
            "{e:?}"
        );
        drop(w);
        db.pool().close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn jobs_round_trip() {
        let a = ScopeId::from_bytes([1; 16]);
        let b = ScopeId::from_bytes([2; 16]);
        for kind in [
            JobKind::WrapHolder(HolderId::Cmk(3)),
            JobKind::WrapRoot(2),
            JobKind::RetireVersion(KeyId::new(a, 1)),
            JobKind::RefreshHolder(HolderId::Cmk(2)),
        ] {
            let job = RewrapJob {
                kind,
                steps: vec![
                    JobStep::WrapRoot {
                        holder: HolderId::Managed,
                        version: 2,
                    },
                    JobStep::Rewrap {
                        key: KeyId::new(b, 1),
                        from: KeyId::new(a, 1),
                        to: KeyId::new(a, 2),
                    },
                ],
                done: 1,
            };
            assert_eq!(job_from(&job_json(&job)), Some(job));
        }
    }
}
