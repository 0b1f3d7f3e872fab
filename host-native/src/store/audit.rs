//! The audit log: append-only and hash-chained per org. Each row's hash covers the previous
//! row's hash, its sequence number, its time and its event, so an edited, reordered or removed
//! row breaks the chain at that point and [`verify`] names it.
//!
//! The chain proves the log was not changed after the fact by someone who cannot also recompute
//! every later hash; cutting rows off the end leaves a valid shorter chain. Exporting the log
//! to a SIEM (JSON lines) as it grows is what pins its length.

use byok_core::ScopeId;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use super::{Backend, Result, StoreError, TokenId, TokenRow};

/// One audit row as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    /// Position in the org's log, from 1.
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// What happened.
    #[schema(value_type = Object)]
    pub event: Value,
    /// Hex SHA-256 of the previous row (zeros for the first).
    pub prev: String,
    /// Hex SHA-256 of this row.
    pub hash: String,
    /// The row's RFC 6962 leaf hash as the stored tree holds it (base64): a verifier that
    /// recomputes a different one from `seq`, `at` and `event` has found an edited row.
    pub leaf_hash: Option<String>,
}

/// The result of checking an org's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Whether every row checked out.
    pub ok: bool,
    /// Rows checked.
    pub checked: i64,
    /// The first row that does not (its sequence number), if any.
    pub first_broken: Option<i64>,
    /// Why it does not.
    pub reason: Option<String>,
}

fn link(prev: &[u8], seq: i64, at: i64, event: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"byok/audit/v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    h.update(event.as_bytes());
    h.finalize().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

tokio::task_local! {
    /// Who the request being served acts as: set by the API once the token is authenticated
    /// ([`set_actor`]), read by [`append`], so that every event a request logs names the token
    /// behind it, however deep in the service it is written. Work of the server's own
    /// (jobs, health checks, the periodic signer) runs outside any request and logs no actor.
    static ACTOR: ActorSlot;
}

/// The actor slot of a request (see [`with_actor_slot`]).
pub type ActorSlot = std::cell::RefCell<Option<std::sync::Arc<TokenRow>>>;

/// Runs `f` (a request) with a slot for its actor. The future's type is named so that the API
/// layer can hold it without boxing it.
pub fn with_actor_slot<F: Future>(f: F) -> tokio::task::futures::TaskLocalFuture<ActorSlot, F> {
    ACTOR.scope(std::cell::RefCell::new(None), f)
}

/// Records the authenticated token of the request being served (no-op outside a request).
pub fn set_actor(token: std::sync::Arc<TokenRow>) {
    let _ = ACTOR.try_with(|a| *a.borrow_mut() = Some(token));
}

/// The token id of the request being served.
pub fn actor_id() -> Option<TokenId> {
    ACTOR
        .try_with(|a| a.borrow().as_ref().map(|t| t.id))
        .ok()
        .flatten()
}

/// The actor of the request being served, as events name it.
pub fn actor() -> Option<Value> {
    ACTOR
        .try_with(|a| {
            a.borrow().as_ref().map(
                |t| serde_json::json!({ "token": t.id.to_string(), "role": t.role.as_str(), "name": t.name }),
            )
        })
        .ok()
        .flatten()
}

/// Appends `event` to `org`'s log inside `tx`; returns its sequence number. The request's
/// actor, if any, is added as `actor` (unless the event names one itself).
pub async fn append(w: &mut super::WriteTx, org: ScopeId, at: i64, event: &Value) -> Result<i64> {
    append_row(w, org, at, event).await.map(|(seq, _)| seq)
}

/// [`append`], returning the event as logged (with its actor) too. The row is tagged by the
/// database's row tagger (`audit_log::row_tag`), so that it can be told from one written into
/// the database directly when it is signed into a checkpoint.
pub async fn append_row(
    w: &mut super::WriteTx,
    org: ScopeId,
    at: i64,
    event: &Value,
) -> Result<(i64, Value)> {
    let tagger = w.row_tagger.clone();
    let tx = &mut w.tx;
    // Several replicas append to one org's log: the org's row lock makes them take turns, so
    // the head read below is the head the new row links to (one linear chain per org).
    super::org_rows::lock(tx, org).await?;
    let org_id = org.to_string();
    let last =
        sqlx::query("SELECT seq, hash FROM audit WHERE org_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(&org_id)
            .fetch_optional(&mut **tx)
            .await?;
    let (seq, prev) = match last {
        Some(r) => (
            r.try_get::<i64, _>("seq")? + 1,
            r.try_get::<Vec<u8>, _>("hash")?,
        ),
        None => (1, vec![0u8; 32]),
    };
    let with_actor;
    let event = match (actor(), event.as_object()) {
        (Some(a), Some(map)) if !map.contains_key("actor") => {
            let mut map = map.clone();
            map.insert("actor".into(), a);
            with_actor = Value::Object(map);
            &with_actor
        }
        _ => event,
    };
    let text = event.to_string();
    let hash = link(&prev, seq, at, &text);
    let leaf = byok_core::audit_log::leaf::row_hash(u64::try_from(seq).unwrap_or(0), at, event)
        .map_err(|e| StoreError::Corrupt(format!("audit event: {e}")))?;
    super::audit_tree::append(tx, org, seq, leaf).await?;
    let tag = tagger.map(|t| t.tag(org, u64::try_from(seq).unwrap_or(0), &leaf).to_vec());
    sqlx::query(
        "INSERT INTO audit (org_id, seq, at, event, prev, hash, tag) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&org_id)
    .bind(seq)
    .bind(at)
    .bind(&text)
    .bind(&prev)
    .bind(&hash[..])
    .bind(tag)
    .execute(&mut **tx)
    .await?;
    Ok((seq, event.clone()))
}

/// Which rows to read: the filters of `GET .../audit` (all optional, combined with AND).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Events of this type (`scope_paused`, `lease_issued`, ...).
    pub kind: Option<String>,
    /// Events about this scope (its `scope`, or a receipt's `subject.scope`).
    pub scope: Option<String>,
    /// Events written by requests with this token id.
    pub actor: Option<String>,
    /// At or after this time, ms since the epoch.
    pub since: Option<i64>,
    /// Before this time, ms since the epoch.
    pub until: Option<i64>,
    /// Rows before this sequence number (paging back from the newest).
    pub before: Option<i64>,
    /// Newest first: the last `limit` rows that match, not the first (the page's "recent").
    pub newest: bool,
}

/// The rows of `org`'s log after `$2` that the filters let through (`$9`: `before`), with
/// the engine's JSON field syntax (`$type`, `$scope`, `$subject_scope`, `$actor`).
macro_rules! audit_select {
    ($type:literal, $scope:literal, $subject_scope:literal, $actor:literal) => {
        concat!(
            "SELECT seq, at, event, prev, hash FROM audit WHERE org_id = $1 AND seq > $2
           AND ($3 IS NULL OR ",
            $type,
            " = $3)
           AND ($4 IS NULL OR ",
            $scope,
            " = $4 OR ",
            $subject_scope,
            " = $4)
           AND ($5 IS NULL OR ",
            $actor,
            " = $5)
           AND ($6 IS NULL OR at >= $6)
           AND ($7 IS NULL OR at < $7)
           AND ($9 IS NULL OR seq < $9)"
        )
    };
}

/// [`audit_select`] in SQLite's JSON functions.
macro_rules! audit_select_sqlite {
    () => {
        audit_select!(
            "json_extract(event, '$.type')",
            "json_extract(event, '$.scope')",
            "json_extract(event, '$.subject.scope')",
            "json_extract(event, '$.actor.token')"
        )
    };
}

/// [`audit_select`] in PostgreSQL's JSON operators (the event is stored as the exact text
/// that was hashed, so it is TEXT and read as `json` here).
macro_rules! audit_select_postgres {
    () => {
        audit_select!(
            "(event::json ->> 'type')",
            "(event::json ->> 'scope')",
            "(event::json -> 'subject' ->> 'scope')",
            "(event::json -> 'actor' ->> 'token')"
        )
    };
}

/// How many sequence numbers one statement of a read examines. A filter that matches little
/// walks the log (each row's event parsed as JSON): in one statement, a log of millions of
/// rows could take minutes, and SQLite has no statement timeout and finishes a statement
/// whose caller is gone, holding its connection. In windows, a request that gives up (its
/// deadline) leaves at most one window's statement running after it. Tens of milliseconds.
const READ_WINDOW: i64 = 50_000;

/// Rows `after+1 ..` of `org`'s log that `filter` lets through, at most `limit`: oldest first,
/// or the newest first with `filter.newest`. Read a window of sequence numbers a statement
/// (`READ_WINDOW`); rows appended meanwhile are left to the next page.
pub async fn read(
    pool: &AnyPool,
    org: ScopeId,
    after: i64,
    limit: i64,
    filter: &AuditFilter,
) -> Result<Vec<AuditRow>> {
    read_in_windows(pool, org, after, limit, filter, READ_WINDOW).await
}

/// [`read`], `window` sequence numbers a statement.
pub(crate) async fn read_in_windows(
    pool: &AnyPool,
    org: ScopeId,
    after: i64,
    limit: i64,
    filter: &AuditFilter,
    window: i64,
) -> Result<Vec<AuditRow>> {
    // Constant statements rather than a direction or a dialect spliced into one.
    let sql = match (super::backend_of(pool), filter.newest) {
        (Backend::Sqlite, true) => concat!(audit_select_sqlite!(), " ORDER BY seq DESC LIMIT $8"),
        (Backend::Sqlite, false) => concat!(audit_select_sqlite!(), " ORDER BY seq LIMIT $8"),
        (Backend::Postgres, true) => {
            concat!(audit_select_postgres!(), " ORDER BY seq DESC LIMIT $8")
        }
        (Backend::Postgres, false) => concat!(audit_select_postgres!(), " ORDER BY seq LIMIT $8"),
    };
    let org_id = org.to_string();
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit WHERE org_id = $1")
        .bind(&org_id)
        .fetch_one(pool)
        .await?;
    // The rows read lie strictly between `after` and `end`; each statement reads those
    // strictly between `lo` and `hi`, a window apart, walking up (or down with `newest`).
    let end = filter
        .before
        .map_or(last.saturating_add(1), |b| b.min(last.saturating_add(1)));
    // Sequence numbers start at 1: an `after` below 0 would only add empty windows.
    let after = after.max(0);
    let (mut rows, mut left) = (Vec::new(), limit);
    let (mut lo, mut hi) = match filter.newest {
        false => (
            after,
            after.saturating_add(window).saturating_add(1).min(end),
        ),
        true => (end.saturating_sub(window).saturating_sub(1).max(after), end),
    };
    while lo < hi.saturating_sub(1) && left > 0 {
        let more = sqlx::query(sql)
            .bind(&org_id)
            .bind(lo)
            .bind(filter.kind.as_deref())
            .bind(filter.scope.as_deref())
            .bind(filter.actor.as_deref())
            .bind(filter.since)
            .bind(filter.until)
            .bind(left)
            .bind(hi)
            .fetch_all(pool)
            .await?;
        left = left.saturating_sub(i64::try_from(more.len()).unwrap_or(i64::MAX));
        rows.extend(more);
        (lo, hi) = match filter.newest {
            false => (hi - 1, hi.saturating_add(window).min(end)),
            true => (
                (lo + 1).saturating_sub(window).saturating_sub(1).max(after),
                lo + 1,
            ),
        };
    }
    let seqs = rows
        .iter()
        .map(|r| r.try_get::<i64, _>("seq"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut conn = pool.acquire().await?;
    let leaves = super::audit_tree::leaves(&mut conn, org, &seqs).await?;
    rows.iter()
        .map(|r| {
            let event: String = r.try_get("event")?;
            let seq: i64 = r.try_get("seq")?;
            Ok(AuditRow {
                leaf_hash: leaves.get(&seq).map(ToString::to_string),
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                event: serde_json::from_str(&event)
                    .map_err(|_| StoreError::Corrupt("audit event is not JSON".into()))?,
                prev: hex(&r.try_get::<Vec<u8>, _>("prev")?),
                hash: hex(&r.try_get::<Vec<u8>, _>("hash")?),
            })
        })
        .collect()
}

/// Walks `org`'s whole chain, a page at a time.
pub async fn verify(pool: &AnyPool, org: ScopeId) -> Result<Verification> {
    let org_id = org.to_string();
    let mut expected_prev = vec![0u8; 32];
    let mut expected_seq = 1i64;
    let broken = |seq: i64, checked: i64, why: &str| Verification {
        ok: false,
        checked,
        first_broken: Some(seq),
        reason: Some(why.into()),
    };
    loop {
        let rows = sqlx::query(
            "SELECT seq, at, event, prev, hash FROM audit WHERE org_id = $1 AND seq >= $2 ORDER BY seq LIMIT 1000",
        )
        .bind(&org_id)
        .bind(expected_seq)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(Verification {
                ok: true,
                checked: expected_seq - 1,
                first_broken: None,
                reason: None,
            });
        }
        for r in rows {
            let seq: i64 = r.try_get("seq")?;
            let checked = expected_seq - 1;
            if seq != expected_seq {
                return Ok(broken(expected_seq, checked, "row missing"));
            }
            let prev: Vec<u8> = r.try_get("prev")?;
            let hash: Vec<u8> = r.try_get("hash")?;
            let event: String = r.try_get("event")?;
            if prev != expected_prev {
                return Ok(broken(seq, checked, "does not link to the previous row"));
            }
            if link(&prev, seq, r.try_get("at")?, &event)[..] != hash[..] {
                return Ok(broken(seq, checked, "contents do not match the row's hash"));
            }
            expected_prev = hash;
            expected_seq += 1;
        }
    }
}

/// The sequence number of `org`'s first row written at or after `since` (ms), if any: where a
/// read of the window starts (the `(org_id, at, seq)` index answers it without the log).
pub async fn first_seq_since(pool: &AnyPool, org: ScopeId, since: i64) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MIN(seq) FROM audit WHERE org_id = $1 AND at >= $2")
            .bind(org.to_string())
            .bind(since)
            .fetch_one(pool)
            .await?,
    )
}

/// Rows [`recent_of_type`] reads at a time: an org's hour of events can be millions of rows,
/// never all held at once. Two in unit tests, so their few leases take several pages.
pub const RECENT_PAGE: i64 = if cfg!(test) { 2 } else { 1000 };

/// The events of type `kind` in `org`'s log written at or after `since` (ms) whose
/// `expires_at` is after `ends_after`, oldest first, with their sequence numbers: at most
/// [`RECENT_PAGE`] of them after sequence number `after` (read on from the last one's until a
/// page comes back short). Start `after` below [`first_seq_since`]: the primary key then reads
/// from the window on, not from the log's first row.
pub async fn recent_of_type(
    pool: &AnyPool,
    org: ScopeId,
    kind: &str,
    since: i64,
    ends_after: i64,
    after: i64,
) -> Result<Vec<(i64, Value)>> {
    let sql = match super::backend_of(pool) {
        Backend::Sqlite => {
            "SELECT seq, event FROM audit WHERE org_id = $1 AND at >= $2 \
             AND json_extract(event, '$.type') = $3 \
             AND CAST(json_extract(event, '$.expires_at') AS INTEGER) > $4 AND seq > $5 \
             ORDER BY seq LIMIT $6"
        }
        Backend::Postgres => {
            "SELECT seq, event FROM audit WHERE org_id = $1 AND at >= $2 \
             AND (event::json ->> 'type') = $3 \
             AND (event::json ->> 'expires_at')::BIGINT > $4 AND seq > $5 \
             ORDER BY seq LIMIT $6"
        }
    };
    let rows = sqlx::query(sql)
        .bind(org.to_string())
        .bind(since)
        .bind(kind)
        .bind(ends_after)
        .bind(after)
        .bind(RECENT_PAGE)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let text: String = r.try_get("event")?;
            let event = serde_json::from_str(&text)
                .map_err(|_| StoreError::Corrupt("audit event is not JSON".into()))?;
            Ok((r.try_get("seq")?, event))
        })
        .collect()
}
