//! The server's store: SQLite through sqlx, schema in `host-native/migrations` (embedded and
//! applied on start). Every state change is one transaction; a failure at any step leaves the
//! previous state whole.
//!
//! SQLite settings, and why:
//! - WAL with `synchronous = FULL`: a committed key change survives a crash of the process or
//!   of the machine.
//! - `secure_delete = ON`: a destroyed wrapped key (revoke, retire, disabled CMK) is overwritten
//!   in the database file, not left in a free page.
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
            .pragma("secure_delete", "ON");
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

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
