//! The server's store: SQLite (the default) or PostgreSQL (`--database-url`, for several
//! replicas) through sqlx's `Any` driver, one set of statements with `$N` parameters; schemas in
//! `host-native/migrations` and `host-native/migrations-postgres` (embedded and applied on
//! start). Every state change is one transaction; a failure at any step leaves the previous
//! state whole.
//!
//! SQLite settings, and why:
//! - WAL with `synchronous = FULL`: a committed key change survives a crash of the process or
//!   of the machine.
//! - `secure_delete = ON`: a destroyed wrapped key (revoke, retire, disabled CMK) is overwritten
//!   in the database file, not left in a free page.
//! - After every commit that destroys keys, a truncating checkpoint ([`Database::scrub`]): in WAL
//!   mode the old pages would otherwise live on in `byok.db-wal` until the next checkpoint.
//!   `journal_size_limit = 0` keeps the log from growing back with old pages in between.
//! - `foreign_keys = ON`, and one writer at a time ([`Database::write`]): SQLite has one writer
//!   anyway; taking turns in-process avoids `SQLITE_BUSY` instead of retrying it.

pub mod audit;
pub mod audit_tree;
pub mod data_keys;
mod effect_rows;
pub mod issuer;
pub mod job_leases;
pub mod keys;
#[cfg(test)]
pub mod memory;
pub mod org_rows;
pub mod sweep;
pub mod tokens;
pub mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use byok_core::audit_log::row_tag::RowTagger;
use byok_core::scope::{HolderId, HolderStatus, RewrapJob, RootCheck, ScopeState};
use byok_core::{KeyId, ScopeId};
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Transaction};

pub use audit::{AuditFilter, AuditRow, Verification};
pub use org_rows::{OrgMeta, holder_name, parse_holder};
pub use tokens::{Role, TokenId, TokenRow};

/// A store failure. The message is for operators (logs); API callers see a generic
/// `internal` error with the request id.
#[derive(Debug)]
pub enum StoreError {
    /// The database refused or failed.
    Db(sqlx::Error),
    /// Stored rows are not a valid state (damaged or edited storage).
    Corrupt(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Db(e) => write!(f, "database error: {e}"),
            Self::Corrupt(e) => write!(f, "stored state is inconsistent: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// Whether the database gave this transaction up for another running at the same time
    /// (PostgreSQL: chosen as a deadlock's victim, `40P01`, or a serialization failure,
    /// `40001`): nothing of it was written, and the same call made again succeeds. Replicas
    /// changing one org at once can meet so; answered `reloading`, with `Retry-After`.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Db(sqlx::Error::Database(d))
            if d.code().is_some_and(|c| matches!(&*c, "40P01" | "40001")))
    }

    /// Whether the database is away (unreachable, restarting, refusing connections, or too
    /// slow to answer within the statement timeout) rather than refusing this statement: the
    /// same call may succeed once it is back, and callers are told to retry.
    pub fn is_unavailable(&self) -> bool {
        let Self::Db(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // PostgreSQL's SQLSTATEs: connection exceptions (class 08), an administrator or a
            // crash shutting the server down, the server starting up, too many connections,
            // and a statement cancelled by the statement timeout.
            sqlx::Error::Database(d) => d.code().is_some_and(|c| {
                c.starts_with("08")
                    || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300" | "57014")
            }),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

/// A store result.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What a transition writes, one call per effect: the storage half of the contract between
/// core and the host. The effect executor (`service/apply.rs`) maps each effect of a committed
/// transition to these calls, inside one transaction, and nothing else writes an org's keys. SQLite
/// implements it on its write transaction ([`WriteTx`]); tests use `memory::MemoryStore`; a
/// second database implements the same calls.
///
/// A call that does not fit the stored rows (a state change of an unknown scope, destroying a
/// key that is not there) fails with [`StoreError::Corrupt`], and the transaction rolls back.
// The futures are used by concrete types only (no `dyn`), so their `Send`-ness is known.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// Inserts scope `scope` of `org` under `parent` (`None`: the org scope), active.
    async fn create_scope(
        &mut self,
        org: ScopeId,
        scope: ScopeId,
        parent: Option<ScopeId>,
        name: &str,
    ) -> Result<()>;
    /// Sets the state set on `scope` itself.
    async fn set_scope_state(
        &mut self,
        org: ScopeId,
        scope: ScopeId,
        state: ScopeState,
    ) -> Result<()>;
    /// Stores (or replaces) key version `key`: wrapped under parent key version `.0`, or `None`
    /// for a root version.
    async fn put_key(
        &mut self,
        org: ScopeId,
        key: KeyId,
        wrapped: Option<(KeyId, &[u8])>,
    ) -> Result<()>;
    /// Stores the check value of root version `version` (its row stored already).
    async fn put_root_check(&mut self, org: ScopeId, version: u32, check: &RootCheck)
    -> Result<()>;
    /// Destroys key version `key` (a root version's check value with it).
    async fn destroy_key(&mut self, org: ScopeId, key: KeyId) -> Result<()>;
    /// Destroys the stored data keys of `scopes` (a revoked subtree, whose scope keys the same
    /// transition destroys): they open for no one from the commit on; their rows may go later
    /// (the database lists them for the sweep, `store/sweep.rs`).
    async fn destroy_data_keys(&mut self, org: ScopeId, scopes: &[ScopeId]) -> Result<()>;
    /// Stores holder `holder` with `status` (inserting it the first time).
    async fn put_holder(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        status: HolderStatus,
    ) -> Result<()>;
    /// Stores (or replaces) `holder`'s copy of root version `version`.
    async fn put_root_copy(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        version: u32,
        wrapped: &[u8],
    ) -> Result<()>;
    /// Destroys `holder`'s copy of root version `version`.
    async fn destroy_root_copy(
        &mut self,
        org: ScopeId,
        holder: HolderId,
        version: u32,
    ) -> Result<()>;
    /// Sets the default holder.
    async fn set_default(&mut self, org: ScopeId, holder: HolderId) -> Result<()>;
    /// Stores the running job (`None`: no job).
    async fn set_job(&mut self, org: ScopeId, job: Option<&RewrapJob>) -> Result<()>;
    /// Inserts an attached customer key's row (its ARN, name, role).
    async fn insert_cmk(&mut self, org: ScopeId, row: &keys::CmkRow) -> Result<()>;
    /// Starts the host's part of a retirement: the stored data keys to move.
    async fn start_retirement(
        &mut self,
        org: ScopeId,
        job: &data_keys::RetireJob,
        at: i64,
    ) -> Result<()>;
    /// How many stored data keys are sealed under version `version` of `scope`.
    async fn data_keys_under(&mut self, org: ScopeId, scope: ScopeId, version: u32) -> Result<u64>;
    /// Ends the host's part of a retirement.
    async fn end_retirement(&mut self, org: ScopeId) -> Result<()>;
    /// Appends `event` to the org's audit log.
    async fn append_audit(&mut self, org: ScopeId, at: i64, event: &Value) -> Result<()>;
}

/// Which database engine a [`Database`] runs on. The SQL is shared (sqlx's `Any` driver with
/// `$N` parameters, which both engines read); the few places where the dialects differ ask
/// this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: one file, one machine.
    Sqlite,
    /// PostgreSQL, for several replicas over one database.
    Postgres,
}

impl Backend {
    /// The backend a database URL names: `postgres://` or `postgresql://` is PostgreSQL,
    /// `sqlite:` is SQLite; anything else is refused.
    pub fn of_url(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(StoreError::Corrupt(
                "the database URL must start with postgres://, postgresql:// or sqlite:".into(),
            ))
        }
    }
}

/// The engine behind `pool` (from its URL), for the statements whose dialects differ.
pub(crate) fn backend_of(pool: &AnyPool) -> Backend {
    match pool.connect_options().database_url.scheme() {
        "postgres" | "postgresql" => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

/// The settings every SQLite connection gets when it opens (see the module's comment).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
    PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA secure_delete = ON; \
    PRAGMA journal_size_limit = 0;";

/// How long a SQLite statement waits for a lock: as in `SQLITE_PRAGMAS`.
const BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 10000";

/// How long a scrub's checkpoint waits for readers, holding the writer's turn.
const CHECKPOINT_BUSY: &str = "PRAGMA busy_timeout = 1000";

/// The `n` numbered parameters `$first, $first+1, ...` of an `IN (...)` list.
pub(crate) fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many connections a server opens and how long it waits on the database. While the
/// database is away, a call that needs it fails after `acquire_timeout` with
/// `database_unavailable` instead of hanging until the request's deadline; one that the key
/// cache can serve does not wait at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// Connections in the pool (per replica).
    pub max_connections: u32,
    /// How long a call waits for a connection (a new one included) before giving up.
    pub acquire_timeout: std::time::Duration,
    /// PostgreSQL's `statement_timeout`: a statement running longer is cancelled.
    pub statement_timeout: std::time::Duration,
    /// PostgreSQL's `idle_in_transaction_session_timeout`: a session idle inside a transaction
    /// longer is ended, and its locks released. A replica stalled in the middle of a write (a
    /// paused container, a VM stall, a network partition) would otherwise hold its org's row
    /// until TCP gave up on it (hours, or never while its kernel answers): every pause and
    /// revoke of that org, on every replica, failing at each statement timeout meanwhile. No
    /// byok transaction waits on anything but the database between its statements, except
    /// the issuer's key generation (an RSA key, well under a second: one cut by the timeout on
    /// a starved machine fails that rotation, and the next minute's check makes it again).
    pub idle_in_transaction_timeout: std::time::Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(3),
            statement_timeout: std::time::Duration::from_secs(10),
            // Below the statement timeout: a write queued on a stalled replica's row waits for
            // the row to be freed, and goes through, instead of failing first.
            idle_in_transaction_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Begins a transaction on `pool` in a task of its own, so that the `BEGIN` completes even
/// if the caller's future is dropped meanwhile (a client hanging up, a request deadline).
/// sqlx 0.8.6 (and 0.9.0) loses track of a `BEGIN` dropped after it was sent: its guard rolls
/// back only once the transaction was counted, so the connection goes back to the pool inside
/// a transaction nobody ends, and the next borrower's statements run in it, holding its locks
/// (upstream: transact-rs/sqlx#4385, #4393; our drop test caught it on PostgreSQL in CI).
/// Finished in its own task, the transaction is counted, and dropped unused it rolls back.
pub async fn begin(pool: &AnyPool) -> Result<Transaction<'static, Any>> {
    let pool = pool.clone();
    match tokio::spawn(async move { pool.begin().await }).await {
        Ok(tx) => Ok(tx?),
        // Only a panic in sqlx, or the runtime shutting down, ends the task otherwise.
        Err(_) => Err(StoreError::Db(sqlx::Error::WorkerCrashed)),
    }
}

/// A read-only transaction whose statements all see one snapshot of the database: on
/// PostgreSQL at `REPEATABLE READ` (each statement of a default transaction sees the latest
/// commit, another replica's included); SQLite's read transaction is one snapshot already.
/// Rolled back by the caller (or on drop).
pub async fn snapshot(pool: &AnyPool) -> Result<Transaction<'static, Any>> {
    let mut tx = begin(pool).await?;
    if backend_of(pool) == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

/// The database and its single-writer gate.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    writer: std::sync::Arc<writer::Turns>,
    memory: bool,
    backend: Backend,
    /// Destroyed keys may still be in SQLite's write-ahead log: set by a transaction that
    /// destroys keys (before its commit) and at open (a crash may have left some there);
    /// cleared only by a scrub that truncated the log. Owed scrubs are retried by the server's
    /// periodic tick, so one a request gave up on, or one that found readers busy, still happens.
    scrub_owed: std::sync::Arc<AtomicBool>,
    /// What tags each audit row written through this database (`audit::append`): set once,
    /// by the service that holds the managed key ([`Self::set_row_tagger`]).
    row_tagger: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<RowTagger>>>,
    /// Held for reading by each [`LongRead`], for writing by the scrub before each try: a
    /// snapshot SQLite keeps open holds the write-ahead log, so a scrub behind one would spend
    /// its tries (each holding the writer's turn) on it, and every write would wait.
    long_reads: std::sync::Arc<tokio::sync::RwLock<()>>,
}

/// A snapshot read that may take seconds (a checkpoint signing's checks): [`snapshot`], and
/// the database's long-read gate held for reading until it ends, so that a scrub waits for it
/// without the writer's turn (see `Database::scrub`). Reads through it as a connection.
pub struct LongRead {
    tx: Transaction<'static, Any>,
    _gate: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl LongRead {
    /// Ends the read (rolls back: it wrote nothing).
    pub async fn end(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

impl std::ops::Deref for LongRead {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for LongRead {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// A write transaction, holding the writer's turn until it commits or drops (rolls back).
pub struct WriteTx {
    /// The transaction.
    pub tx: Transaction<'static, Any>,
    backend: Backend,
    scrub_owed: std::sync::Arc<AtomicBool>,
    /// Tags the audit rows this transaction appends (none before a service set it).
    pub(crate) row_tagger: Option<std::sync::Arc<RowTagger>>,
    _turn: writer::Turn,
}

impl WriteTx {
    /// Takes org `org`'s row for this transaction and returns its version
    /// ([`org_rows::lock`]).
    pub async fn lock_org(&mut self, org: ScopeId) -> Result<i64> {
        org_rows::lock(&mut self.tx, org).await
    }

    /// Records that org `org`'s state changed in this transaction: its new version, announced
    /// to the other replicas on commit ([`org_rows::bump`]).
    pub async fn bump_org(&mut self, org: ScopeId) -> Result<org_rows::Bumped> {
        org_rows::bump(&mut self.tx, org, self.backend == Backend::Postgres).await
    }

    /// Records that this transaction destroys keys: the write-ahead log owes a scrub from now
    /// on (set before the commit, so an interrupted commit that still lands is scrubbed too).
    pub fn destroys_keys(&self) {
        self.scrub_owed.store(true, Ordering::SeqCst);
    }

    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Database {
    /// Opens (creating if needed) the SQLite database `byok.db` in `dir` and migrates it.
    pub async fn open_dir(dir: &Path) -> Result<Self> {
        let url = format!("sqlite://{}?mode=rwc", dir.join("byok.db").display());
        Self::open(&url).await
    }

    /// Opens a database by URL (`sqlite://path`, `sqlite::memory:` or `postgres://...`) and
    /// migrates it (each engine has its own migrations: `migrations/` and
    /// `migrations-postgres/`), with the default [`PoolLimits`].
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, PoolLimits::default()).await
    }

    /// Whether the database at `url` was started by `byok serve` (it holds the managed key's
    /// check value), asked without migrating it: a wrong database is left as it was.
    pub async fn started_by_byok(url: &str) -> Result<bool> {
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await?;
        // No byok tables at all is an error here, and means the same: not byok's.
        let found: std::result::Result<Option<String>, _> =
            sqlx::query_scalar("SELECT value FROM server_meta WHERE name = 'managed_key_check'")
                .fetch_optional(&mut conn)
                .await;
        let _ = sqlx::Connection::close(conn).await;
        Ok(matches!(found, Ok(Some(_))))
    }

    /// [`Self::open`], with `limits`.
    pub async fn open_with(url: &str, limits: PoolLimits) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        let memory = url.contains(":memory:");
        let timeouts = [
            format!(
                "SET statement_timeout = {}",
                limits.statement_timeout.as_millis()
            ),
            format!(
                "SET idle_in_transaction_session_timeout = {}",
                limits.idle_in_transaction_timeout.as_millis()
            ),
        ];
        let options = AnyPoolOptions::new()
            // An in-memory SQLite database lives in one connection.
            .max_connections(if memory { 1 } else { limits.max_connections })
            .acquire_timeout(limits.acquire_timeout)
            .after_connect(move |conn, _| {
                let timeouts = timeouts.clone();
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            sqlx::Executor::execute(&mut *conn, SQLITE_PRAGMAS).await?;
                        }
                        Backend::Postgres => {
                            for set in &timeouts {
                                sqlx::Executor::execute(&mut *conn, set.as_str()).await?;
                            }
                        }
                    }
                    Ok(())
                })
            });
        let pool = options.connect(url).await?;
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations-postgres").run(&pool).await,
        };
        migrated.map_err(|e| StoreError::Db(e.into()))?;
        Ok(Self {
            pool,
            writer: std::sync::Arc::new(writer::Turns::default()),
            memory,
            backend,
            scrub_owed: std::sync::Arc::new(AtomicBool::new(backend == Backend::Sqlite && !memory)),
            row_tagger: std::sync::Arc::default(),
            long_reads: std::sync::Arc::default(),
        })
    }

    /// A [`LongRead`]: one snapshot, which the scrub waits for.
    pub async fn long_read(&self) -> Result<LongRead> {
        let gate = self.long_reads.clone().read_owned().await;
        Ok(LongRead {
            tx: snapshot(&self.pool).await?,
            _gate: gate,
        })
    }

    /// The engine this database runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for reads.
    pub async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }

    /// Waits for the writer's turn for the process's own work (not one org's: the log key,
    /// the issuer, job leases, server facts, tokens not yet tied to an org) and begins a
    /// transaction.
    pub async fn write(&self) -> Result<WriteTx> {
        self.write_for(None).await
    }

    /// Waits for the writer's turn for a change to org `org` and begins a transaction. Orgs
    /// take turns ([`writer`]): an org with many writes queued delays another's by at most one.
    pub async fn write_org(&self, org: ScopeId) -> Result<WriteTx> {
        self.write_for(Some(org)).await
    }

    /// How many writes wait for the writer's turn (for tests that queue some in a known order).
    #[cfg(test)]
    pub(crate) fn writes_waiting(&self) -> usize {
        self.writer.waiting()
    }

    /// Waits for the writer's turn for `who` (an org, or the process's own work).
    pub async fn write_for(&self, who: writer::Writer) -> Result<WriteTx> {
        let turn = self.writer.take(who).await;
        let tx = begin(&self.pool).await?;
        Ok(WriteTx {
            tx,
            backend: self.backend,
            scrub_owed: self.scrub_owed.clone(),
            row_tagger: self.row_tagger.get().cloned(),
            _turn: turn,
        })
    }

    /// Sets what tags the audit rows written through this database (and its clones): the
    /// first call wins, so every row is tagged, and checked, by one key. A service keyed by
    /// another managed key (tests) then tags and checks by the first one's.
    pub fn set_row_tagger(&self, tagger: RowTagger) {
        let _ = self.row_tagger.set(std::sync::Arc::new(tagger));
    }

    /// What tags audit rows, once a service set it.
    pub fn row_tagger(&self) -> Option<&RowTagger> {
        self.row_tagger.get().map(|t| &**t)
    }

    /// Copies every committed page into the database file and truncates the write-ahead log,
    /// so that destroyed keys survive in no file, if a scrub is owed ([`Self::scrub_owed`]).
    /// Waits for readers (a second a try), retried a few times; if they stay busy the
    /// scrub stays owed, for the server's periodic tick. Runs in a task of its own: a caller
    /// dropped while it waits (a client gone) does not cancel it.
    ///
    /// SQLite only. PostgreSQL keeps deleted rows in dead tuples until vacuum and in its
    /// write-ahead log; docs/server.md says what that means for a destroyed managed copy.
    pub async fn scrub(&self) {
        if self.memory || self.backend != Backend::Sqlite {
            return;
        }
        let db = self.clone();
        if let Err(e) = tokio::spawn(async move { db.truncate_log().await }).await {
            tracing::warn!(error = %e, "the write-ahead log's scrub stopped");
        }
    }

    /// Whether destroyed keys may still be in the write-ahead log.
    pub fn scrub_owed(&self) -> bool {
        self.scrub_owed.load(Ordering::SeqCst)
    }

    async fn truncate_log(&self) {
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            // Holding the writer's turn for one try: no commit can add pages while the log is
            // reset, nor owe a new scrub between the truncation and the flag's clearing. Not
            // across the pauses, and a try waits for readers a second at most: every org's
            // writes (pauses, revokes) wait for one try, not for the scrub's every retry.
            // Long reads first (they hold the log), then the connection (a full pool), both
            // waited for without the writer's turn; new long reads wait for this try.
            let _no_long_reads = self.long_reads.write().await;
            let conn = match self.pool.acquire().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint failed");
                    continue;
                }
            };
            let _turn = self.writer.take(None).await;
            if !self.scrub_owed() {
                return;
            }
            match Self::checkpoint_truncate(conn).await {
                Ok(true) => {
                    self.scrub_owed.store(false, Ordering::SeqCst);
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        }
        tracing::warn!(
            "the write-ahead log could not be truncated now (readers busy); destroyed keys stay in byok.db-wal until the next try (the server's periodic tick)"
        );
    }

    /// One `wal_checkpoint(TRUNCATE)`, waiting for readers at most a second (`CHECKPOINT_BUSY`) (the
    /// connection's own busy timeout, restored after); whether the log was truncated.
    async fn checkpoint_truncate(mut conn: sqlx::pool::PoolConnection<Any>) -> Result<bool> {
        use sqlx::Row;
        sqlx::query(CHECKPOINT_BUSY).execute(&mut *conn).await?;
        let done = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await
            .map(|row| row.try_get::<i64, _>(0).unwrap_or(1) == 0);
        if sqlx::query(BUSY_TIMEOUT).execute(&mut *conn).await.is_err() {
            // Not handed to another borrower with the short wait.
            conn.close_on_drop();
        }
        Ok(done?)
    }

    /// A server-wide fact by name.
    pub async fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM server_meta WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records a server-wide fact.
    pub async fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("INSERT INTO server_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await
    }

    /// Records a server-wide fact unless one of that name is there already; the value stored
    /// either way. Two servers starting at once on one new database (replicas over PostgreSQL)
    /// both find it empty; the first to write wins, and the other learns its value instead of
    /// overwriting it.
    pub async fn claim_meta(&self, name: &str, value: &str) -> Result<String> {
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO server_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *w.tx)
        .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM server_meta WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(stored)
    }

    /// Whether the database holds any organization.
    pub async fn has_orgs(&self) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM orgs LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Whether the database answers within a second (for `/readyz`, which probes expect to
    /// answer quickly, not after the pool's longer wait).
    pub async fn ping(&self) -> bool {
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), probe).await,
            Ok(Ok(_))
        )
    }
}

/// A fresh, empty PostgreSQL database on the cluster the test command starts
/// (`BYOK_TEST_POSTGRES_URL`, an admin URL), as a URL; `None` where no cluster is given, unless
/// `BYOK_TEST_REQUIRE_POSTGRES` says one must be (the test command sets both, so a PostgreSQL
/// test cannot pass by being skipped there).
#[cfg(test)]
pub(crate) async fn test_postgres_url() -> Option<String> {
    let Ok(admin) = std::env::var("BYOK_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("BYOK_TEST_REQUIRE_POSTGRES").is_none(),
            "BYOK_TEST_REQUIRE_POSTGRES is set but BYOK_TEST_POSTGRES_URL is not"
        );
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!("byok_t_{:016x}", rand_core::Rng::next_u64(&mut rand::rng()));
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("the test PostgreSQL cluster answers");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("a test database");
    let (base, _) = admin
        .rsplit_once('/')
        .expect("an admin URL with a database");
    Some(format!("{base}/{name}"))
}

#[cfg(test)]
/// A SQLite database in `dir` made by the migrations numbered below `before` (`count` of
/// them), with `rows` then run on it: a database an older byok left. Its URL.
pub(crate) async fn old_database(dir: &Path, before: &str, count: usize, rows: &[&str]) -> String {
    let old = dir.join("old-migrations");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&old).unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut names: Vec<_> = std::fs::read_dir(&all)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.as_str() < before)
        .collect();
    names.sort();
    assert_eq!(names.len(), count, "{names:?}");
    for n in &names {
        std::fs::copy(all.join(n), old.join(n)).unwrap();
    }
    let url = format!("sqlite://{}?mode=rwc", dir.join("byok.db").display());
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for row in rows {
        sqlx::query(row).execute(&pool).await.unwrap();
    }
    pool.close().await;
    url
}

/// A bare org row `id` (no scopes, no keys), for store tests of tables that refer to orgs.
#[cfg(test)]
pub(crate) async fn test_org_row(db: &Database, id: ScopeId) {
    sqlx::query(
        "INSERT INTO orgs (id, name, default_holder, unwrap_cache_ttl_ms, created_at) \
         VALUES ($1, 'o', 'managed', 0, 0)",
    )
    .bind(id.to_string())
    .execute(db.pool())
    .await
    .unwrap();
}

/// [`test_postgres_url`], opened and migrated.
#[cfg(test)]
pub(crate) async fn test_postgres() -> Option<Database> {
    let url = test_postgres_url().await?;
    Some(Database::open(&url).await.expect("migrated"))
}

/// Waits until some session of `pool`'s PostgreSQL database waits for a row lock (up to 10 s):
/// a test that holds a row and then takes another knows the call it started is queued on the
/// first, not merely started.
#[cfg(test)]
pub(crate) async fn test_wait_for_lock_waiter(pool: &AnyPool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        if n > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no session waits for a lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};
    use std::time::Duration;

    use sqlx::any::AnyPoolOptions;

    /// A scrub is owed from the open (a crash may have left destroyed keys in the write-ahead
    /// log) and from each transaction that destroys keys, until one truncated the log; and a
    /// scrub whose caller is dropped at once (a client gone) still does so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrub_is_owed_until_done_even_when_its_caller_is_dropped() {
        let dir = std::env::temp_dir().join(format!(
            "byok-scrub-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let wal = dir.join("byok.db-wal");
        let db = super::Database::open_dir(&dir).await.unwrap();
        assert!(db.scrub_owed(), "not owed at open");
        db.scrub().await;
        assert!(!db.scrub_owed());
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        let mut w = db.write().await.unwrap();
        sqlx::query("INSERT INTO server_meta (name, value) VALUES ('destroyed', 'x')")
            .execute(&mut *w.tx)
            .await
            .unwrap();
        w.destroys_keys();
        w.commit().await.unwrap();
        assert!(db.scrub_owed(), "not owed after a destroying commit");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        {
            let mut scrub = std::pin::pin!(db.scrub());
            let _ = scrub.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        }
        for _ in 0..1000 {
            if !db.scrub_owed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!db.scrub_owed(), "the dropped scrub did not finish");
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database in `dir` (scrubbed once) whose last commit destroyed keys, and its
    /// write-ahead log's path: a scrub is owed.
    async fn owing_a_scrub(dir: &std::path::Path) -> (super::Database, std::path::PathBuf) {
        let db = super::Database::open_dir(dir).await.unwrap();
        db.scrub().await;
        let mut w = db.write().await.unwrap();
        sqlx::query("INSERT INTO server_meta (name, value) VALUES ('destroyed', 'x')")
            .execute(&mut *w.tx)
            .await
            .unwrap();
        w.destroys_keys();
        w.commit().await.unwrap();
        assert!(db.scrub_owed());
        (db, dir.join("byok.db-wal"))
    }

    /// `db`'s scrub, run beside the test.
    fn scrubbing(db: &super::Database) -> tokio::task::JoinHandle<()> {
        let db = db.clone();
        tokio::spawn(async move { db.scrub().await })
    }

    /// A scrub that waits for a reader does not hold the writer's turn through its retries:
    /// a write queued behind it (any org's pause or revoke) gets its turn while the scrub is
    /// still waiting, and the scrub truncates the log once the reader is done. Before, the
    /// write waited for every try (up to five busy timeouts of 10 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrub_waiting_for_readers_lets_writes_through() {
        let dir = tempfile::tempdir().unwrap();
        let (db, wal) = owing_a_scrub(dir.path()).await;
        // A reader in the middle of a read: its snapshot keeps the log from being reset.
        let mut reader = db.pool().begin().await.unwrap();
        sqlx::query("SELECT value FROM server_meta")
            .fetch_all(&mut *reader)
            .await
            .unwrap();
        // In this order: the scrub's turn, then the write's.
        let first = db.write().await.unwrap();
        let scrub = scrubbing(&db);
        while db.writes_waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let queued = tokio::spawn({
            let db = db.clone();
            async move { db.write().await.map(drop) }
        });
        while db.writes_waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(first);
        queued.await.unwrap().unwrap();
        // The reader holds on: the scrub cannot be done yet, unless the write waited for it
        // to give up.
        assert!(
            !scrub.is_finished(),
            "the write waited for the scrub's every try"
        );
        reader.rollback().await.unwrap();
        scrub.await.unwrap();
        if db.scrub_owed() {
            // Every try fell while the reader held on: the next scrub (the periodic tick's).
            db.scrub().await;
        }
        assert!(!db.scrub_owed());
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    }

    /// A fact claimed twice (two servers starting at once) keeps the first value, and each
    /// claim learns it: on SQLite and on PostgreSQL.
    #[tokio::test]
    async fn a_fact_claimed_twice_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = super::Database::open_dir(dir.path()).await.unwrap();
        let mut dbs = vec![sqlite];
        dbs.extend(super::test_postgres().await);
        for db in dbs {
            assert_eq!(db.claim_meta("check", "first").await.unwrap(), "first");
            assert_eq!(db.claim_meta("check", "second").await.unwrap(), "first");
            assert_eq!(db.meta("check").await.unwrap().as_deref(), Some("first"));
        }
    }

    /// A replica stalled inside a write (paused, partitioned: its transaction never polled
    /// again) holds its org's row only until PostgreSQL ends its idle transaction: another
    /// replica's write of that org (a revoke) then goes through, where before it failed at
    /// every statement timeout for as long as the stall lasted. The stalled write's late
    /// commit fails: nothing of it lands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_stalled_in_a_write_holds_its_org_for_a_bounded_time() {
        let Some(url) = super::test_postgres_url().await else {
            return;
        };
        let limits = super::PoolLimits {
            idle_in_transaction_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let stalled = super::Database::open_with(&url, limits).await.unwrap();
        let other = super::Database::open_with(&url, limits).await.unwrap();
        let org = byok_core::ScopeId::from_bytes([7; 16]);
        super::test_org_row(&stalled, org).await;
        let mut held = stalled.write_org(org).await.unwrap();
        held.lock_org(org).await.unwrap();
        let mut revoke = other.write_org(org).await.unwrap();
        revoke
            .lock_org(org)
            .await
            .expect("the stalled replica's row lock is released");
        revoke.commit().await.unwrap();
        assert!(held.commit().await.is_err(), "a late commit landed");
    }

    /// A scrub waits for a long read (a signing's checks, which holds the write-ahead log)
    /// without the writer's turn, and truncates the log once the read ends. Before, its tries
    /// (each holding the turn) ran out behind such a read, and the scrub stayed owed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrub_waits_for_long_reads_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (db, wal) = owing_a_scrub(dir.path()).await;
        let mut read = db.long_read().await.unwrap();
        sqlx::query("SELECT value FROM server_meta")
            .fetch_all(&mut *read)
            .await
            .unwrap();
        // The writer held: a scrub that went for its turn would queue behind it.
        let held = db.write().await.unwrap();
        let scrub = scrubbing(&db);
        let queued = tokio::time::timeout(Duration::from_millis(300), async {
            while db.writes_waiting() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            queued.is_err(),
            "the scrub went for the writer's turn with a long read open"
        );
        drop(held);
        assert!(!scrub.is_finished(), "the scrub did not wait for the read");
        read.end().await.unwrap();
        scrub.await.unwrap();
        assert!(
            !db.scrub_owed(),
            "the scrub's tries ran out behind the read"
        );
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    }

    /// A transaction's begin dropped at any point (the caller hung up) leaves no transaction
    /// open on the pooled connection: the next borrower's statements run outside one, and its
    /// own transaction can still set its isolation. One connection, so that it is reused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_begin_dropped_half_way_leaves_no_transaction_open() {
        let Some(url) = super::test_postgres_url().await else {
            return;
        };
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        for polls in (0..4).flat_map(|_| 1..=12) {
            {
                let mut begin = std::pin::pin!(super::begin(&pool));
                let mut cx = Context::from_waker(Waker::noop());
                for _ in 0..polls {
                    if begin.as_mut().poll(&mut cx).is_ready() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_micros(300)).await;
                }
            }
            // What the next borrower does: a read outside a transaction, then a load's
            // transaction, whose isolation must come before any query in it.
            sqlx::query("SELECT 1").execute(&pool).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            if let Err(e) = sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
            {
                panic!("a begin dropped after {polls} polls left a transaction open: {e}");
            }
            tx.rollback().await.unwrap();
        }
    }

    /// Two transactions that wait on each other's rows: PostgreSQL gives one up (`40P01`),
    /// which is a conflict to retry, not a store failure (a 500) nor the database away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deadlock_victim_is_a_conflict_to_retry() {
        let Some(url) = super::test_postgres_url().await else {
            return;
        };
        let db = super::Database::open(&url).await.unwrap();
        for name in ["a", "b"] {
            sqlx::query("INSERT INTO server_meta (name, value) VALUES ($1, 'x')")
                .bind(name)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let lock = "UPDATE server_meta SET value = 'y' WHERE name = $1";
        let (mut one, mut two) = (
            db.pool().begin().await.unwrap(),
            db.pool().begin().await.unwrap(),
        );
        sqlx::query(lock)
            .bind("a")
            .execute(&mut *one)
            .await
            .unwrap();
        sqlx::query(lock)
            .bind("b")
            .execute(&mut *two)
            .await
            .unwrap();
        let (first, second) = tokio::join!(
            sqlx::query(lock).bind("b").execute(&mut *one),
            sqlx::query(lock).bind("a").execute(&mut *two),
        );
        let failed: Vec<super::StoreError> = [first.err(), second.err()]
            .into_iter()
            .flatten()
            .map(super::StoreError::from)
            .collect();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].is_conflict(), "{:?}", failed[0]);
        assert!(!failed[0].is_unavailable());
    }
}
