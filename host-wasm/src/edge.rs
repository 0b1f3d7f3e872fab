//! An edge's use of a lease: encrypt with the scope's current key, decrypt with the version the
//! header names, and never after the lease expired. Time is passed in (ms since the epoch): the
//! JS bindings pass `Date.now()`. Contexts follow the caller rules the server applies
//! ([`Context::from_caller`]), so a ciphertext made at the edge opens on the server with the
//! same context, and the reverse.

use std::collections::BTreeMap;

use byok_core::envelope::AesStep;
use byok_core::lease::Lease;
use byok_core::{ApiCode, Context, Header, ScopeKey, envelope, format};

/// An error as the server would answer it: its code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    /// The API code (`decrypt_failed`, `lease_expired`, ...).
    pub code: ApiCode,
    /// What went wrong and what to do.
    pub message: String,
}

impl EdgeError {
    pub(crate) fn new(code: ApiCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for EdgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for EdgeError {}

impl From<byok_core::Error> for EdgeError {
    fn from(e: byok_core::Error) -> Self {
        Self::new(e.api_code(), e.to_string())
    }
}

impl From<byok_core::lease::LeaseError> for EdgeError {
    fn from(e: byok_core::lease::LeaseError) -> Self {
        Self::new(e.api_code(), e.to_string())
    }
}

/// A lease held at the edge, in memory only.
#[derive(Debug)]
pub struct EdgeLease {
    lease: Lease,
}

/// A caller context from its pairs, by the server's rules.
pub fn context(pairs: BTreeMap<String, String>) -> Result<Context, EdgeError> {
    Context::from_caller(pairs).map_err(|e| EdgeError::new(ApiCode::InvalidRequest, e.to_string()))
}

/// A ciphertext given as bytes or as `byok:v1:` text, as bytes.
pub fn dearmor(text: &str) -> Result<Vec<u8>, EdgeError> {
    Ok(format::armor::decode(text)?)
}

impl EdgeLease {
    /// Parses the lease document the server answered (`POST .../scopes/{scope}/lease`).
    pub fn parse(json: &[u8]) -> Result<Self, EdgeError> {
        Ok(Self {
            lease: Lease::parse(json)?,
        })
    }

    /// The lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Encrypts `plaintext` with `ctx` under the scope's current key, if the lease is live at
    /// `now_ms`.
    pub fn encrypt(
        &self,
        ctx: &Context,
        plaintext: &[u8],
        now_ms: i64,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<Vec<u8>, EdgeError> {
        encrypt(&self.lease, ctx, plaintext, now_ms, rng)
    }

    /// Decrypts `ciphertext` with `ctx` under the key version its header names, if the lease is
    /// live at `now_ms` and the ciphertext is of the lease's scope.
    pub fn decrypt(
        &self,
        ctx: &Context,
        ciphertext: &[u8],
        now_ms: i64,
    ) -> Result<Vec<u8>, EdgeError> {
        decrypt(&self.lease, ctx, ciphertext, now_ms)
    }

    /// The AES-256-GCM step of sealing `len` bytes with `ctx`, for a host that runs AES in
    /// WebCrypto (same bytes as [`Self::encrypt`]).
    pub fn seal_step(
        &self,
        ctx: &Context,
        len: usize,
        now_ms: i64,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<AesStep, EdgeError> {
        self.lease.check_live(now_ms)?;
        Ok(AesStep::seal(self.lease.current_key(), ctx, len, rng)?)
    }

    /// The AES-256-GCM step of opening `ciphertext` with `ctx`, after every check
    /// [`Self::decrypt`] makes first.
    pub fn open_step(
        &self,
        ctx: &Context,
        ciphertext: &[u8],
        now_ms: i64,
    ) -> Result<AesStep, EdgeError> {
        let key = key_for(&self.lease, ciphertext, now_ms)?;
        Ok(AesStep::open(key, ctx, ciphertext)?)
    }
}

/// Encrypts `plaintext` with `ctx` under the scope's current key of `lease`, if it is live at
/// `now_ms`.
pub fn encrypt(
    lease: &Lease,
    ctx: &Context,
    plaintext: &[u8],
    now_ms: i64,
    rng: &mut impl rand_core::CryptoRng,
) -> Result<Vec<u8>, EdgeError> {
    lease.check_live(now_ms)?;
    Ok(envelope::encrypt(lease.current_key(), ctx, plaintext, rng)?)
}

/// Decrypts `ciphertext` with `ctx` under the key version its header names, if `lease` is live
/// at `now_ms` and the ciphertext is of the lease's scope.
pub fn decrypt(
    lease: &Lease,
    ctx: &Context,
    ciphertext: &[u8],
    now_ms: i64,
) -> Result<Vec<u8>, EdgeError> {
    let key = key_for(lease, ciphertext, now_ms)?;
    Ok(envelope::decrypt(key, ctx, ciphertext)?)
}

/// The key for `ciphertext`, if the lease is live at `now_ms`: the version its header names. A
/// ciphertext of another scope, or of a version the lease lacks (retired, or newer: renew), gets
/// the current key: core then reports what the format spec says comes first (a malformed header
/// before a wrong key), and the mismatch as a wrong key.
fn key_for<'l>(
    lease: &'l Lease,
    ciphertext: &[u8],
    now_ms: i64,
) -> Result<&'l ScopeKey, EdgeError> {
    lease.check_live(now_ms)?;
    let (header, _) = Header::parse(ciphertext)?;
    Ok((header.key.scope == lease.scope())
        .then(|| lease.key(header.key.version))
        .flatten()
        .unwrap_or_else(|| lease.current_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(expires_at: i64) -> EdgeLease {
        let doc = serde_json::json!({
            "scope": "d05d3b7582186f01f52b381653c90d31",
            "current_version": 2,
            "keys": [
                { "version": 1, "key": "8V7adkDbjY5N2XMFGMtOzIda4+uJtCmEOzxWm1NCV8I=" },
                { "version": 2, "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }
            ],
            "expires_at": expires_at
        });
        EdgeLease::parse(doc.to_string().as_bytes()).unwrap()
    }

    fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
        rand_core::UnwrapErr(getrandom::SysRng)
    }

    #[test]
    fn a_live_lease_round_trips_and_an_expired_one_is_refused_by_code() {
        let l = lease(1_000);
        let ctx = context(BTreeMap::from([("tenant".into(), "acme".into())])).unwrap();
        let ct = l.encrypt(&ctx, b"hi", 999, &mut rng()).unwrap();
        assert_eq!(l.decrypt(&ctx, &ct, 999).unwrap(), b"hi");
        assert_eq!(
            l.decrypt(&ctx, &ct, 1_000).unwrap_err().code,
            ApiCode::LeaseExpired
        );
        assert_eq!(
            l.encrypt(&ctx, b"hi", 1_000, &mut rng()).unwrap_err().code,
            ApiCode::LeaseExpired
        );
        let other = context(BTreeMap::new()).unwrap();
        assert_eq!(
            l.decrypt(&other, &ct, 999).unwrap_err().code,
            ApiCode::DecryptFailed
        );
    }

    #[test]
    fn reserved_contexts_and_bad_documents_are_invalid_requests() {
        let reserved = BTreeMap::from([("byok:purpose".into(), "data-key".into())]);
        assert_eq!(context(reserved).unwrap_err().code, ApiCode::InvalidRequest);
        assert_eq!(
            EdgeLease::parse(b"{}").unwrap_err().code,
            ApiCode::InvalidRequest
        );
    }
}
