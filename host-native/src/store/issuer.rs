//! The OIDC issuer's signing keys (`issuer_key`): public halves in clear for the JWKS, private
//! halves sealed under the managed key ([`crate::service::issuer`] seals and opens them).

use byok_core::kms::oidc::SigningKey;
use sqlx::{AnyConnection, Row};

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
