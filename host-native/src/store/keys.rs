//! Attached customer keys (holders `cmk:N`): identifiers, how byok reaches them, last health.

use byok_core::ScopeId;
use byok_core::kms::aws::policy::RoleTrust;
use sqlx::{Any, AnyPool, Row, Transaction};

use super::Result;

/// One attached key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmkRow {
    /// Its holder number (`cmk:N`).
    pub n: u32,
    /// Display name.
    pub name: String,
    /// Its provider (`aws`, `gcp`).
    pub provider: String,
    /// The key as its KMS described it when it was attached (an AWS alias resolved).
    pub key: String,
    /// The identifier pasted, if it differs (an AWS alias; display only).
    pub pasted: Option<String>,
    /// The customer's principal byok becomes, if any (AWS role ARN, GCP service account).
    pub role: Option<String>,
    /// How byok becomes it.
    pub role_trust: RoleTrust,
    /// Where byok's token is exchanged (GCP workload identity pool provider), if anywhere.
    pub audience: Option<String>,
    /// When it was attached (ms since the epoch).
    pub created_at: i64,
    /// Last health check: `ok` or an error class.
    pub health: Option<String>,
    /// The check's detail (error message).
    pub health_detail: Option<String>,
    /// When it was checked.
    pub health_at: Option<i64>,
}

/// Inserts an attached key.
pub async fn insert(tx: &mut Transaction<'static, Any>, org: ScopeId, row: &CmkRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO cmk_keys (org_id, n, name, provider, key_id, principal, created_at, key_pasted, role_trust, audience) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(org.to_string())
    .bind(i64::from(row.n))
    .bind(&row.name)
    .bind(&row.provider)
    .bind(&row.key)
    .bind(&row.role)
    .bind(row.created_at)
    .bind(&row.pasted)
    .bind(row.role_trust.as_str())
    .bind(&row.audience)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The org's attached keys, by number.
pub async fn list(pool: &AnyPool, org: ScopeId) -> Result<Vec<CmkRow>> {
    let rows = sqlx::query(
        "SELECT n, name, provider, key_id, key_pasted, principal, role_trust, audience, created_at, health, health_detail, health_at FROM cmk_keys WHERE org_id = $1 ORDER BY n",
    )
    .bind(org.to_string())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CmkRow {
                n: u32::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0),
                name: r.try_get("name")?,
                provider: r.try_get("provider")?,
                key: r.try_get("key_id")?,
                pasted: r.try_get("key_pasted")?,
                role: r.try_get("principal")?,
                audience: r.try_get("audience")?,
                role_trust: RoleTrust::parse(&r.try_get::<String, _>("role_trust")?)
                    .ok_or_else(|| super::StoreError::Corrupt("cmk_keys.role_trust".into()))?,
                created_at: r.try_get("created_at")?,
                health: r.try_get("health")?,
                health_detail: r.try_get("health_detail")?,
                health_at: r.try_get("health_at")?,
            })
        })
        .collect()
}

/// Records a health check.
pub async fn set_health(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    n: u32,
    health: &str,
    detail: Option<&str>,
    at: i64,
) -> Result<()> {
    sqlx::query("UPDATE cmk_keys SET health = $1, health_detail = $2, health_at = $3 WHERE org_id = $4 AND n = $5")
        .bind(health)
        .bind(detail)
        .bind(at)
        .bind(org.to_string())
        .bind(i64::from(n))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The org's external id for `AssumeRole`, created on first use.
pub async fn external_id(pool: &AnyPool, org: ScopeId) -> Result<Option<String>> {
    Ok(sqlx::query("SELECT external_id FROM orgs WHERE id = $1")
        .bind(org.to_string())
        .fetch_optional(pool)
        .await?
        .and_then(|r| r.try_get::<Option<String>, _>("external_id").ok().flatten()))
}

/// Stores the org's external id (only if it has none).
pub async fn set_external_id(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    id: &str,
) -> Result<()> {
    sqlx::query("UPDATE orgs SET external_id = $1 WHERE id = $2 AND external_id IS NULL")
        .bind(id)
        .bind(org.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
