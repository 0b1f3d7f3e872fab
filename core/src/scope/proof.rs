//! Proof that a customer key really holds the root: before the managed key's copies are
//! destroyed (BYOK is exclusive), the host unwraps the new default holder's copy of every live
//! root version through the customer's KMS, at that moment, and core compares each with the root
//! the org already uses, in constant time. Only then can the org stop depending on the vendor's
//! key without ever losing its last working copy. When the current default's KMS refuses, the
//! roots are checked against the scope keys they wrap instead
//! ([`crate::scope::Org::prove_holder_by_tree`]).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use subtle::ConstantTimeEq;

use crate::crypto::ScopeKey;
use crate::key_id::KeyId;
use crate::scope::error::ScopeError;
use crate::scope::holders::HolderId;

/// `holder`'s copies of root versions `versions` opened to the org's root keys: the copies
/// themselves (wrapped, not secret), so that a proof speaks only for the copies it opened. A
/// disable and re-enable of the holder between the proof and its use puts new copies in their
/// place, which nothing opened. Made only by [`crate::scope::Org::prove_holder`] and
/// [`crate::scope::Org::prove_holder_by_tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootProof {
    pub(crate) holder: HolderId,
    pub(crate) versions: BTreeSet<u32>,
    pub(crate) copies: BTreeMap<u32, Vec<u8>>,
}

impl RootProof {
    /// The holder proven.
    pub fn holder(&self) -> HolderId {
        self.holder
    }

    /// Whether it covers every one of `live`, each with the copy `held` holds now.
    pub(crate) fn covers<'a>(
        &self,
        mut live: impl Iterator<Item = &'a u32>,
        held: &BTreeMap<u32, Vec<u8>>,
    ) -> bool {
        live.all(|v| self.versions.contains(v) && self.copies.get(v) == held.get(v))
    }
}

/// Checks that `fresh` (from the holder just now) and `reference` (what the org uses) hold the
/// same key for every version in `live`.
pub(crate) fn compare<'a>(
    org: crate::key_id::ScopeId,
    holder: HolderId,
    live: &[u32],
    fresh: &'a [ScopeKey],
    reference: &'a [ScopeKey],
) -> Result<RootProof, ScopeError> {
    let mut versions = BTreeSet::new();
    for v in live {
        let id = KeyId::new(org, *v);
        let find = |keys: &'a [ScopeKey]| keys.iter().find(|k| k.id() == id);
        let (Some(f), Some(r)) = (find(fresh), find(reference)) else {
            return Err(ScopeError::ProofMismatch {
                holder,
                version: *v,
            });
        };
        if !bool::from(f.expose_secret().ct_eq(r.expose_secret())) {
            return Err(ScopeError::ProofMismatch {
                holder,
                version: *v,
            });
        }
        versions.insert(*v);
    }
    Ok(RootProof {
        holder,
        versions,
        copies: BTreeMap::new(),
    })
}
