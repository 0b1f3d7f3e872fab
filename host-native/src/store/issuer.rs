//! The OIDC issuer's signing keys (`issuer_key`): public halves in clear for the JWKS, private
//! halves sealed under the managed key ([`crate::service::issuer`] seals and opens them).

use byok_core::kms::oidc::SigningKey;
use sqlx::{Any, AnyConnection, Row, Transaction};

use super::{Result, StoreError};

/// A signing key as stored.
pub struct StoredIssuerKey {
    /// Its public half and schedule.
    pub key: SigningKey,
    /// Its PKCS#8 private key, sealed under the managed key.
    pub wrapped: Vec<u8>,
}

fn ms(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("issuer key time is negative".into()))
}

/// Takes the signing-key schedule's turn for this transaction, across replicas: on PostgreSQL
/// a transaction-scoped advisory lock, held to the commit, so that the second replica to run
/// the schedule reads the key the first made instead of making its own (two replicas starting
/// on an empty database would each sign with a key the other does not publish, and a cloud
/// fetching one replica's JWKS would refuse the other's tokens). SQLite has one writer anyway.
pub async fn lock_schedule(tx: &mut Transaction<'static, Any>) -> Result<()> {
    if tx.backend_name() == "PostgreSQL" {
        // In FROM, so that the row has a column the Any driver can read (the lock's is `void`).
        sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
            .bind(SCHEDULE_LOCK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The advisory lock's key: `byok:iss` as a big-endian integer, taken by nothing else.
const SCHEDULE_LOCK: i64 = i64::from_be_bytes(*b"byok:iss");

/// Every signing key, oldest first.
pub async fn keys(conn: &mut AnyConnection) -> Result<Vec<StoredIssuerKey>> {
    let rows = sqlx::query(
        "SELECT kid, created_at, signs_from, n, e, wrapped FROM issuer_key ORDER BY signs_from, created_at",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredIssuerKey {
                key: SigningKey {
                    kid: r.try_get("kid")?,
                    created_at: ms(r.try_get("created_at")?)?,
                    signs_from: ms(r.try_get("signs_from")?)?,
                    n: r.try_get("n")?,
                    e: r.try_get("e")?,
                },
                wrapped: r.try_get("wrapped")?,
            })
        })
        .collect()
}

/// Keeps a new signing key.
pub async fn put(conn: &mut AnyConnection, k: &StoredIssuerKey) -> Result<()> {
    let time = |v: u64| i64::try_from(v).map_err(|_| StoreError::Corrupt("issuer key time".into()));
    sqlx::query(
        "INSERT INTO issuer_key (kid, created_at, signs_from, n, e, wrapped) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&k.key.kid)
    .bind(time(k.key.created_at)?)
    .bind(time(k.key.signs_from)?)
    .bind(&k.key.n)
    .bind(&k.key.e)
    .bind(&k.wrapped)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the keys `kids` (no token alive names them).
pub async fn drop_keys(conn: &mut AnyConnection, kids: &[String]) -> Result<()> {
    for kid in kids {
        sqlx::query("DELETE FROM issuer_key WHERE kid = $1")
            .bind(kid)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
