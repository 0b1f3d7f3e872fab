//! The data operations: encrypt, decrypt, data keys. The scope's effective state is checked on
//! every call; keys come from the cache or are resolved from the root.
//!
//! Caller contexts may not use the `byok:` prefix: byok binds its own wrapped keys with
//! `byok:` contexts, and data keys get `byok:purpose = data-key` added, so no caller-chosen
//! context can make a data-key or decrypt call open one of byok's own wrapped keys.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use byok_core::format::Header;
use byok_core::{Context, DataKey, Envelope, ScopeId};

use super::{Result, Service, ServiceError};

/// The largest plaintext the JSON API takes (larger data belongs in the streaming format).
pub const MAX_PLAINTEXT: usize = 4 << 20;

/// A fresh data key: in the clear (use, then drop) and wrapped (store beside the data).
pub struct DataKeyOut {
    /// The key.
    pub key: DataKey,
    /// Its 140-byte wrapped form.
    pub wrapped: Vec<u8>,
    /// The scope key version it is wrapped under.
    pub version: u32,
}

fn context(pairs: &BTreeMap<String, String>, extra: Option<(&str, &str)>) -> Result<Context> {
    if pairs.len() > 64 {
        return Err(ServiceError::Invalid(
            "context has more than 64 entries".into(),
        ));
    }
    for (k, v) in pairs {
        if k.starts_with("byok:") {
            return Err(ServiceError::Invalid(format!(
                "context key {k:?} uses the reserved prefix \"byok:\""
            )));
        }
        if k.len() > 256 || v.len() > 1024 {
            return Err(ServiceError::Invalid(
                "context keys are at most 256 bytes and values 1024".into(),
            ));
        }
    }
    let mut map = pairs.clone();
    if let Some((k, v)) = extra {
        map.insert(k.into(), v.into());
    }
    Ok(Context::from_map(map))
}

impl Service {
    /// Encrypts `plaintext` under the newest key of scope `scope`.
    pub async fn encrypt(
        &self,
        org: ScopeId,
        scope: ScopeId,
        plaintext: &[u8],
        ctx: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(ServiceError::Invalid(format!(
                "plaintext is larger than {MAX_PLAINTEXT} bytes; use the streaming format"
            )));
        }
        let ctx = context(ctx, None)?;
        let (cell, key) = self.current_key(org, scope).await?;
        let _admitted = self.admit(&cell, &[key.id()]).await?;
        let out = Envelope::<byok_core::DefaultBackend>::encrypt(
            &key,
            &ctx,
            plaintext,
            &mut rand::rng(),
        )?;
        self.metrics.encrypts.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Decrypts a ciphertext of this org; the header names the scope and key version.
    pub async fn decrypt(
        &self,
        org: ScopeId,
        ciphertext: &[u8],
        ctx: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>> {
        let ctx = context(ctx, None)?;
        let (header, _) = Header::parse(ciphertext)?;
        let cell = self.org(org).await?;
        // A ciphertext of another org names a scope this org does not have: the same answer
        // as for an unknown scope, so nothing about other orgs can be inferred.
        if cell.snapshot().scope(header.key.scope).is_none() {
            return Err(ServiceError::NotFound(
                "the ciphertext's scope is not in this organization".into(),
            ));
        }
        let key = self.scope_key(&cell, header.key).await?;
        let _admitted = self.admit(&cell, &[header.key]).await?;
        let out = Envelope::<byok_core::DefaultBackend>::decrypt(&key, &ctx, ciphertext)?;
        self.metrics.decrypts.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// A fresh data key under the newest key of scope `scope`.
    pub async fn datakey(
        &self,
        org: ScopeId,
        scope: ScopeId,
        ctx: &BTreeMap<String, String>,
    ) -> Result<DataKeyOut> {
        let ctx = context(ctx, Some(("byok:purpose", "data-key")))?;
        let (cell, key) = self.current_key(org, scope).await?;
        let key_id = key.id();
        let _admitted = self.admit(&cell, &[key_id]).await?;
        let (dk, wrapped) =
            Envelope::<byok_core::DefaultBackend>::generate_data_key(&key, &ctx, &mut rand::rng())?;
        self.metrics.datakeys.fetch_add(1, Ordering::Relaxed);
        Ok(DataKeyOut {
            key: dk,
            wrapped,
            version: key_id.version,
        })
    }

    /// Opens a wrapped data key of this org.
    pub async fn unwrap_datakey(
        &self,
        org: ScopeId,
        wrapped: &[u8],
        ctx: &BTreeMap<String, String>,
    ) -> Result<DataKey> {
        let ctx = context(ctx, Some(("byok:purpose", "data-key")))?;
        let (header, _) = Header::parse(wrapped)?;
        let cell = self.org(org).await?;
        if cell.snapshot().scope(header.key.scope).is_none() {
            return Err(ServiceError::NotFound(
                "the wrapped key's scope is not in this organization".into(),
            ));
        }
        let key = self.scope_key(&cell, header.key).await?;
        let _admitted = self.admit(&cell, &[header.key]).await?;
        let dk = Envelope::<byok_core::DefaultBackend>::unwrap_data_key(&key, &ctx, wrapped)?;
        self.metrics.datakeys.fetch_add(1, Ordering::Relaxed);
        Ok(dk)
    }
}
