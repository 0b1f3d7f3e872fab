//! The data operations: encrypt, decrypt, data keys. The scope's effective state is checked on
//! every call; keys come from the cache or are resolved from the root.
//!
//! Caller contexts follow core's rules ([`byok_core::context`]): no `byok:` prefix (byok binds
//! its own wrapped keys with `byok:` contexts), bounded size, and data keys get
//! `byok:purpose = data-key` added, so no caller-chosen context can make a data-key or decrypt
//! call open one of byok's own wrapped keys.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use byok_core::envelope::SealBuffer;
use byok_core::format::Header;
use byok_core::{Context, DataKey, Envelope, ScopeId, SecretVec};

use super::org_cell::OrgCell;
use super::tokens::Authenticated;
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

/// A caller's context, checked by core's caller rules ([`byok_core::context`]).
fn context(pairs: BTreeMap<String, String>) -> Result<Context> {
    Context::from_caller(pairs).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// A caller's data key context: theirs plus the reserved `byok:purpose = data-key`.
fn data_key_context(pairs: BTreeMap<String, String>) -> Result<Context> {
    Context::caller_data_key(pairs).map_err(|e| ServiceError::Invalid(e.to_string()))
}

/// A ciphertext or wrapped key of another org names a scope this org does not have: the same
/// answer as for an unknown scope, so nothing about other orgs can be inferred.
fn check_in_org(cell: &OrgCell, scope: ScopeId, what: &str) -> Result<()> {
    if cell.snapshot().scope(scope).is_none() {
        return Err(ServiceError::NotFound(format!(
            "the {what}'s scope is not in this organization"
        )));
    }
    Ok(())
}

impl Service {
    /// Encrypts `plaintext` under the newest key of scope `scope`, in place: the ciphertext is
    /// returned in the plaintext's allocation.
    pub async fn encrypt(
        &self,
        who: &Authenticated,
        org: ScopeId,
        scope: ScopeId,
        plaintext: SealBuffer,
        ctx: BTreeMap<String, String>,
    ) -> Result<Vec<u8>> {
        if plaintext.plaintext_len() > MAX_PLAINTEXT {
            return Err(ServiceError::TooLarge(format!(
                "plaintext is larger than {MAX_PLAINTEXT} bytes; use the streaming format"
            )));
        }
        let ctx = context(ctx)?;
        let cell = self.org(org).await?;
        let mut again = None;
        let admit = |c| self.admitted_current_key(c, scope, who);
        let first = admit(&cell).await;
        let (key, _admitted) = self.or_again(first, org, &mut again, admit).await?;
        let out = Envelope::<byok_core::DefaultBackend>::seal_buffer(
            &key,
            &ctx,
            plaintext,
            &mut rand::rng(),
        )?;
        self.metrics.encrypts.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// A data call's admission `first` as it stands, or, if its cell was taken out of use while
    /// the call held it (another replica changed the org, or a change here was interrupted),
    /// `admit` once more on the org's cell loaded anew, kept in `again` (which the admission's
    /// guard borrows). Such a call was not admitted on the state it held, which may predate a
    /// pause; deciding it again on the state storage has now spares bystanders of an unrelated
    /// change a `503 reloading`. Once: a second refusal is answered.
    async fn or_again<'a, T, F>(
        &self,
        first: Result<T>,
        org: ScopeId,
        again: &'a mut Option<Arc<OrgCell>>,
        admit: impl FnOnce(&'a OrgCell) -> F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        match first {
            Err(ServiceError::Reloading) => {
                // Boxed: cold, and its state would otherwise size every call's future.
                let again = &**again.insert(Box::pin(self.org(org)).await?);
                Box::pin(admit(again)).await
            }
            answer => answer,
        }
    }

    /// Decrypts a ciphertext of this org, in place: the plaintext is returned in the
    /// ciphertext's allocation, wiped when dropped. The header names the scope and key version.
    pub async fn decrypt(
        &self,
        who: &Authenticated,
        org: ScopeId,
        ciphertext: Vec<u8>,
        ctx: BTreeMap<String, String>,
    ) -> Result<SecretVec> {
        let ctx = context(ctx)?;
        let key = Header::parse(&ciphertext)?.0.key;
        let cell = self.org(org).await?;
        let mut again = None;
        let admit = |c| async move {
            check_in_org(c, key.scope, "ciphertext")?;
            self.admitted_key(c, key, who).await
        };
        let first = admit(&cell).await;
        let (key, _admitted) = self.or_again(first, org, &mut again, admit).await?;
        let out = Envelope::<byok_core::DefaultBackend>::decrypt_owned(&key, &ctx, ciphertext)?;
        self.metrics.decrypts.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// A fresh data key under the newest key of scope `scope`.
    pub async fn datakey(
        &self,
        who: &Authenticated,
        org: ScopeId,
        scope: ScopeId,
        ctx: BTreeMap<String, String>,
    ) -> Result<DataKeyOut> {
        let ctx = data_key_context(ctx)?;
        let cell = self.org(org).await?;
        let mut again = None;
        let admit = |c| self.admitted_current_key(c, scope, who);
        let first = admit(&cell).await;
        let (key, _admitted) = self.or_again(first, org, &mut again, admit).await?;
        let key_id = key.id();
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
        who: &Authenticated,
        org: ScopeId,
        wrapped: &[u8],
        ctx: BTreeMap<String, String>,
    ) -> Result<DataKey> {
        let ctx = data_key_context(ctx)?;
        let key = Header::parse(wrapped)?.0.key;
        let cell = self.org(org).await?;
        let mut again = None;
        let admit = |c| async move {
            check_in_org(c, key.scope, "wrapped key")?;
            self.admitted_key(c, key, who).await
        };
        let first = admit(&cell).await;
        let (key, _admitted) = self.or_again(first, org, &mut again, admit).await?;
        let dk = Envelope::<byok_core::DefaultBackend>::unwrap_data_key(&key, &ctx, wrapped)?;
        self.metrics.datakeys.fetch_add(1, Ordering::Relaxed);
        Ok(dk)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use byok_core::envelope::SealBuffer;

    use crate::store::Database;

    /// What a data call's future holds is what each request allocates, moves and touches. Its
    /// cold paths (an org loaded from storage, a token looked up, a key resolved through the
    /// KMS, a usage mark written) are boxed, so only a cache hit's state is in it: without the
    /// boxes it was 3.7 KiB; now it is under 0.6 KiB, with the second decision on a reloaded
    /// cell (`or_again`) and the caller carried down to its admission (`Authenticated`: 72 B,
    /// one reference at each level).
    #[tokio::test]
    async fn a_data_call_carries_only_the_hit_path() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = super::super::test_service(&db, 7);
        let (org, _) = svc.create_org("org", None, None, None).await.unwrap();
        let who = super::super::test_caller(&svc, org).await;
        let decrypt = svc.decrypt(&who, org, Vec::new(), BTreeMap::new());
        let encrypt = svc.encrypt(&who, org, org, SealBuffer::copy_of(b""), BTreeMap::new());
        let token = svc.authenticate("byok_x");
        let (d, e, t) = (
            size_of_val(&decrypt),
            size_of_val(&encrypt),
            size_of_val(&token),
        );
        assert!(d <= 576 && e <= 576, "decrypt {d} B, encrypt {e} B");
        assert!(t <= 128, "authenticate {t} B");
    }
}
