//! Bearer tokens. A token is `byok_` and 43 base64url characters (256 random bits), shown once
//! when created; the store keeps only its SHA-256. A plain hash suffices because the token is
//! random and long (nothing to brute-force, unlike a password), and lookups go by hash, so the
//! comparison never runs over secret bytes.

use base64ct::{Base64UrlUnpadded, Encoding};
use byok_core::ScopeId;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use sqlx::{Any, AnyPool, Row, Transaction};
use zeroize::Zeroizing;

use super::{Result, StoreError};

/// What a token may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The vendor's operator: creates orgs (and their first admin token). Belongs to no org.
    Operator,
    /// An org's admin: keys, scopes, scope actions, tokens.
    Admin,
    /// An org's service: encrypt, decrypt, data keys, leases.
    Service,
    /// An org's auditor: reads and verifies the audit log.
    Auditor,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Admin => "admin",
            Self::Service => "service",
            Self::Auditor => "auditor",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "operator" => Self::Operator,
            "admin" => Self::Admin,
            "service" => Self::Service,
            "auditor" => Self::Auditor,
            _ => return None,
        })
    }
}

/// A token's public id: 64 random bits, shown and stored as 16 hex digits, to list and revoke
/// the token by. Not secret (the token is; the id only names it).
///
/// Held as the number rather than its text: the data path keys its usage marks by it on every
/// call, and parsing the hex each time cost about 330 instructions per request
/// (`scripts/bench-instructions.sh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenId(u64);

impl TokenId {
    /// A fresh random id.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        Self(rng.next_u64())
    }

    /// Parses 16 hex digits (either case, as scope ids); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        // `from_str_radix` alone would also take a sign and fewer digits.
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Self)
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A stored token's grant, and what may be shown of it (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// Its public id.
    pub id: TokenId,
    /// The org it belongs to (`None` for the operator).
    pub org: Option<ScopeId>,
    /// What it may do.
    pub role: Role,
    /// What it is for.
    pub name: String,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// When it stops working, if ever (ms since the epoch).
    pub expires_at: Option<i64>,
    /// When it was last used, to the minute (ms since the epoch).
    pub last_used_at: Option<i64>,
}

impl TokenRow {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

/// The stored form of `token`.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh token.
pub fn new_token(rng: &mut impl CryptoRng) -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut bytes[..]);
    Zeroizing::new(format!(
        "byok_{}",
        Base64UrlUnpadded::encode_string(&bytes[..])
    ))
}

/// Deletes `org`'s tokens expired at `now` (they open nothing any more); returns how many.
pub async fn delete_expired(
    tx: &mut Transaction<'static, Any>,
    org: ScopeId,
    now: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM tokens WHERE org_id = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
    )
    .bind(org.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// How many tokens of `org` are stored (a revoked one is deleted).
pub async fn count(tx: &mut Transaction<'static, Any>, org: ScopeId) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE org_id = $1")
        .bind(org.to_string())
        .fetch_one(&mut **tx)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Stores a new token for `org` with `role`; returns its id and the token (shown once).
pub async fn create(
    tx: &mut Transaction<'static, Any>,
    org: Option<ScopeId>,
    role: Role,
    name: &str,
    at: i64,
    expires_at: Option<i64>,
) -> Result<(TokenId, Zeroizing<String>)> {
    let (token, id) = {
        let mut rng = rand::rng();
        (new_token(&mut rng), TokenId::random(&mut rng))
    };
    sqlx::query("INSERT INTO tokens (hash, org_id, role, name, created_at, id, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&token_hash(&token)[..])
        .bind(org.map(|o| o.to_string()))
        .bind(role.as_str())
        .bind(name)
        .bind(at)
        .bind(id.to_string())
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok((id, token))
}

const COLUMNS: &str = "id, org_id, role, name, created_at, expires_at, last_used_at";

fn row(r: &sqlx::any::AnyRow) -> Result<TokenRow> {
    let org = match r.try_get::<Option<&str>, _>("org_id")? {
        Some(o) => {
            Some(ScopeId::parse_hex(o).ok_or_else(|| StoreError::Corrupt("bad token org".into()))?)
        }
        None => None,
    };
    let role = Role::parse(r.try_get("role")?)
        .ok_or_else(|| StoreError::Corrupt("bad token role".into()))?;
    let id = TokenId::parse(r.try_get("id")?)
        .ok_or_else(|| StoreError::Corrupt("bad token id".into()))?;
    Ok(TokenRow {
        id,
        org,
        role,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

/// The grant of `token`, if it exists.
pub async fn lookup(pool: &AnyPool, token: &str) -> Result<Option<TokenRow>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM tokens WHERE hash = $1"))
        .bind(&token_hash(token)[..])
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// The tokens of `org` (`None`: the operator tokens), oldest first.
pub async fn list(pool: &AnyPool, org: Option<ScopeId>) -> Result<Vec<TokenRow>> {
    let rows = match org {
        Some(o) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM tokens WHERE org_id = $1 ORDER BY created_at, id"
            ))
            .bind(o.to_string())
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM tokens WHERE org_id IS NULL ORDER BY created_at, id"
            ))
            .fetch_all(pool)
            .await?
        }
    };
    rows.iter().map(row).collect()
}

/// Deletes token `id` of `org` (`None`: an operator token); returns its hash, to drop it from
/// memory, or `None` if there is no such token there.
pub async fn revoke(
    tx: &mut Transaction<'static, Any>,
    org: Option<ScopeId>,
    id: TokenId,
) -> Result<Option<Vec<u8>>> {
    let id = id.to_string();
    let found = match org {
        Some(o) => {
            sqlx::query("DELETE FROM tokens WHERE id = $1 AND org_id = $2 RETURNING hash")
                .bind(&id)
                .bind(o.to_string())
                .fetch_optional(&mut **tx)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM tokens WHERE id = $1 AND org_id IS NULL RETURNING hash")
                .bind(&id)
                .fetch_optional(&mut **tx)
                .await?
        }
    };
    Ok(match found {
        Some(r) => Some(r.try_get("hash")?),
        None => None,
    })
}

/// The ids of `org`'s admin tokens, as transaction `tx` sees them.
pub async fn admin_ids(tx: &mut Transaction<'static, Any>, org: ScopeId) -> Result<Vec<TokenId>> {
    // In one order, so that two transactions deleting them take their rows in the same one.
    let rows =
        sqlx::query("SELECT id FROM tokens WHERE org_id = $1 AND role = 'admin' ORDER BY id")
            .bind(org.to_string())
            .fetch_all(&mut **tx)
            .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            TokenId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("bad token id {id:?}")))
        })
        .collect()
}

/// Whether token `id` is still in force at `now` (stored, so not revoked, and not expired), as
/// write transaction `w` sees it, holding
/// its row until `w` ends (`FOR KEY SHARE` on PostgreSQL, which a delete waits for and a
/// last-use touch does not): a revoke committing on another replica either landed before (the
/// row is gone) or waits for `w`, so it cannot land between this check and `w`'s commit.
/// SQLite's one writer orders them anyway. Take it before the org's row lock: a revoke takes
/// the token's row first, then the org's.
pub async fn still_in_force(w: &mut super::WriteTx, id: TokenId, now: i64) -> Result<bool> {
    let sql = if w.backend == super::Backend::Postgres {
        "SELECT 1 FROM tokens WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2) FOR KEY SHARE"
    } else {
        "SELECT 1 FROM tokens WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)"
    };
    Ok(sqlx::query(sql)
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(&mut *w.tx)
        .await?
        .is_some())
}

/// Whether token `id` is still in force at `now` (stored, so not revoked, and not expired), as
/// `db` (a pool, or a transaction's connection) sees it.
pub async fn in_force<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    id: TokenId,
    now: i64,
) -> Result<bool> {
    Ok(sqlx::query(
        "SELECT 1 FROM tokens WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(id.to_string())
    .bind(now)
    .fetch_optional(db)
    .await?
    .is_some())
}

/// Records that the token with hash `hash` was used at `at`.
pub async fn touch(tx: &mut Transaction<'static, Any>, hash: &[u8], at: i64) -> Result<()> {
    sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE hash = $2")
        .bind(at)
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Whether any operator token exists (the first start creates one).
pub async fn has_operator(pool: &AnyPool) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM tokens WHERE role = 'operator' LIMIT 1")
            .fetch_optional(pool)
            .await?
            .is_some(),
    )
}

/// The hashes of the operator's tokens (a few rows), for replicas to drop the cached grants of
/// those revoked elsewhere.
pub async fn operator_hashes(pool: &AnyPool) -> Result<Vec<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT hash FROM tokens WHERE role = 'operator'")
            .fetch_all(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_id_is_exactly_sixteen_hex_digits() {
        let id = TokenId::parse("00a1b2c3d4e5f6ff").unwrap();
        assert_eq!(id.to_string(), "00a1b2c3d4e5f6ff");
        // Either case, as scope ids; shown in lower case, as stored.
        assert_eq!(TokenId::parse("00A1B2C3D4E5F6FF"), Some(id));
        for bad in [
            "",
            "00a1b2c3d4e5f6f",   // 15 digits
            "00a1b2c3d4e5f6ff0", // 17
            "+0a1b2c3d4e5f6ff",  // a sign, which `from_str_radix` takes
            "00a1b2c3d4e5f6fg",
            "00a1b2c3 d4e5f6f",
        ] {
            assert_eq!(TokenId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_fresh_token_id_shows_all_sixteen_digits() {
        let mut rng = rand::rng();
        for _ in 0..64 {
            let id = TokenId::random(&mut rng);
            let text = id.to_string();
            assert_eq!(text.len(), 16, "{text}");
            assert_eq!(TokenId::parse(&text), Some(id));
        }
        // Leading zeros are kept: the stored id and the shown one are the same text.
        assert_eq!(TokenId(1).to_string(), "0000000000000001");
    }
}
