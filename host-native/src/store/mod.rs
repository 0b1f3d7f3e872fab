//! The server's store: SQLite through sqlx, schema in `host-native/migrations` (embedded and
//! applied on start). Every state change is one transaction; a failure at any step leaves the
//! previous state whole.
//!
//! SQLite settings, and why:
//! - WAL with `synchronous = FULL`: a committed key change survives a crash of the process or
//!   of the machine.
//! - `secure_delete = ON`: a destroyed wrapped key (revoke, retire, disabled CMK) is overwritten
//!   in the database file, not left in a free page.
//! - After every commit that destroys keys, a truncating checkpoint ([`Store::scrub`]): in WAL
//!   mode the old pages would otherwise live on in `byok.db-wal` until the next checkpoint.
//!   `journal_size_limit = 0` keeps the log from growing back with old pages in between.
//! - `foreign_keys = ON`, and one writer at a time ([`Store::write`]): SQLite has one writer
//!   anyway; taking turns in-process avoids `SQLITE_BUSY` instead of retrying it.

pub mod audit;
pub mod cmk_rows;
pub mod data_keys;
pub mod org_rows;
pub mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use audit::{AuditRow, Verification};
pub use org_rows::{OrgMeta, holder_name, parse_holder};
pub use tokens::{Role, TokenRow};

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

/// The database and its single-writer gate.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    memory: bool,
}

/// A write transaction, holding the writer's turn until it commits or drops (rolls back).
pub struct WriteTx {
    /// The transaction.
    pub tx: Transaction<'static, Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    /// Commits.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database `byok.db` in `dir` and migrates it.
    pub async fn open_dir(dir: &Path) -> Result<Self> {
        let url = format!("sqlite://{}", dir.join("byok.db").display());
        Self::open(&url).await
    }

    /// Opens a database by URL (`sqlite://path` or `sqlite::memory:`) and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10))
            .pragma("secure_delete", "ON")
            .pragma("journal_size_limit", "0");
        let memory = url.contains(":memory:");
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection.
            .max_connections(if memory { 1 } else { 8 })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(e.into()))?;
        Ok(Self {
            pool,
            writer: std::sync::Arc::new(tokio::sync::Mutex::new(())),
            memory,
        })
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Waits for the writer's turn and begins a transaction.
    pub async fn write(&self) -> Result<WriteTx> {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin().await?;
        Ok(WriteTx { tx, _turn: turn })
    }

    /// Copies every committed page into the database file and truncates the write-ahead log,
    /// so that destroyed keys survive in no file. Waits for readers (up to the busy timeout);
    /// retried a few times, then logged: the next destructive commit tries again.
    pub async fn scrub(&self) {
        if self.memory {
            return;
        }
        // Holding the writer's turn: no commit can add pages while the log is reset.
        let _turn = self.writer.clone().lock_owned().await;
        for attempt in 0..5 {
            match sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&self.pool)
                .await
            {
                Ok(row) => {
                    use sqlx::Row;
                    if row.try_get::<i64, _>(0).unwrap_or(1) == 0 {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        }
        tracing::warn!(
            "the write-ahead log could not be truncated now (readers busy); destroyed keys may stay in byok.db-wal until the next checkpoint"
        );
    }

    /// A server-wide fact by name.
    pub async fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM server_meta WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records a server-wide fact.
    pub async fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("INSERT INTO server_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await
    }

    /// Whether the database holds any organization.
    pub async fn has_orgs(&self) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM orgs LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
