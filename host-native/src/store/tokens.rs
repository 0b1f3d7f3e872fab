//! Bearer tokens. A token is `byok_` and 43 base64url characters (256 random bits), shown once
//! when created; the store keeps only its SHA-256. A plain hash suffices because the token is
//! random and long (nothing to brute-force, unlike a password), and lookups go by hash, so the
//! comparison never runs over secret bytes.

use base64ct::{Base64UrlUnpadded, Encoding};
use byok_core::ScopeId;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
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

/// A stored token's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// The org it belongs to (`None` for the operator).
    pub org: Option<ScopeId>,
    /// What it may do.
    pub role: Role,
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

/// Stores a new token for `org` with `role`; returns the token (shown once).
pub async fn create(
    tx: &mut Transaction<'static, Sqlite>,
    org: Option<ScopeId>,
    role: Role,
    name: &str,
    at: i64,
) -> Result<Zeroizing<String>> {
    let token = new_token(&mut rand::rng());
    sqlx::query("INSERT INTO tokens (hash, org_id, role, name, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(&token_hash(&token)[..])
        .bind(org.map(|o| o.to_string()))
        .bind(role.as_str())
        .bind(name)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(token)
}

/// The grant of `token`, if it exists.
pub async fn lookup(pool: &SqlitePool, token: &str) -> Result<Option<TokenRow>> {
    let Some(r) = sqlx::query("SELECT org_id, role FROM tokens WHERE hash = ?")
        .bind(&token_hash(token)[..])
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let org = match r.try_get::<Option<&str>, _>("org_id")? {
        Some(o) => {
            Some(ScopeId::parse_hex(o).ok_or_else(|| StoreError::Corrupt("bad token org".into()))?)
        }
        None => None,
    };
    let role = Role::parse(r.try_get("role")?)
        .ok_or_else(|| StoreError::Corrupt("bad token role".into()))?;
    Ok(Some(TokenRow { org, role }))
}

/// Whether any operator token exists (the first start creates one).
pub async fn has_operator(pool: &SqlitePool) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM tokens WHERE role = 'operator' LIMIT 1")
            .fetch_optional(pool)
            .await?
            .is_some(),
    )
}
