//! Root check values: proof that a root key a holder gives back is the one byok made.
//!
//! A holder's copy of a root version is only as trustworthy as its wrap. An AWS or GCP
//! ciphertext can only be made by the customer's KMS, and the managed copy is sealed under the
//! managed key; but an Azure RSA key wraps with its public half, which anyone may hold. Whoever
//! can write the database could then put a root of their own choosing in place of a copy: it
//! unwraps through the customer's vault like the real one, and every scope key wrapped under it
//! afterwards would be known to them, readable without the customer's KMS, withdrawal or not.
//!
//! So each root version is stored with a check value, a MAC of the root keyed by a key the
//! database never sees (derived from the managed key, which lives in a file or the
//! environment), and every root a holder gives back is checked against it before use:
//!
//! ```text
//! PRK   = HKDF-Extract(salt = "byok/v1/root-check", IKM = managed key)
//! check = HKDF-Expand(PRK, info = org id (16 B) | version (u32 BE) | root key (32 B), 32)
//! ```
//!
//! HKDF-Expand is a PRF keyed by the PRK; the salt keeps the PRK apart from every other use of
//! the managed key (its envelopes extract with their own salt). The check is a pseudo-random
//! function of the root: it reveals nothing of it, so the vendor holding it (and the key that
//! makes it) still holds nothing that opens an org's data under BYOK.

use core::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use alloc::vec;
use alloc::vec::Vec;

use crate::crypto::ScopeKey;
use crate::key_id::ScopeId;
use crate::scope::effect::{AuditEvent, Effect};
use crate::scope::error::ScopeError;
use crate::scope::org::{Org, Result, scope_err};

/// HKDF-Extract salt: names the purpose, apart from the managed key's envelopes.
const EXTRACT_SALT: &[u8] = b"byok/v1/root-check";

/// Length of a check value.
pub const ROOT_CHECK_LEN: usize = 32;

/// The check value of one root version (public: it reveals nothing of the root).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RootCheck([u8; ROOT_CHECK_LEN]);

impl RootCheck {
    /// A stored check value, if `bytes` has the length of one.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; ROOT_CHECK_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; ROOT_CHECK_LEN] {
        &self.0
    }
}

impl fmt::Debug for RootCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootCheck(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..)")
    }
}

/// Makes and checks [`RootCheck`]s: the PRK derived from the managed key (wiped on drop by
/// `hmac`'s zeroize feature). `Debug` prints nothing of it.
#[derive(Clone)]
pub struct RootChecker {
    prk: Hkdf<Sha256>,
}

impl fmt::Debug for RootChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootChecker(..)")
    }
}

impl RootChecker {
    /// The checker keyed by the vendor's managed key.
    pub fn new(managed: &ScopeKey) -> Self {
        Self {
            prk: Hkdf::<Sha256>::new(Some(EXTRACT_SALT), managed.expose_secret()),
        }
    }

    /// The check value of `root` (a root version of org `org`).
    pub fn check(&self, org: ScopeId, root: &ScopeKey) -> RootCheck {
        let mut out = [0u8; ROOT_CHECK_LEN];
        let version = root.id().version.to_be_bytes();
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: this cannot fail.
        let _ = self
            .prk
            .expand_multi_info(&[org.as_bytes(), &version, root.expose_secret()], &mut out);
        RootCheck(out)
    }

    /// Whether `root` has check value `check`, compared in constant time.
    pub fn matches(&self, org: ScopeId, root: &ScopeKey, check: &RootCheck) -> bool {
        self.check(org, root).0.ct_eq(&check.0).into()
    }
}

/// What [`Org::verify_root`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootVerdict {
    /// The root matches its stored check value: use it.
    Checked,
    /// The version was stored without a check value (made before byok kept them) and the host
    /// accepts such versions: use it, and record its check ([`Org::record_root_check`]).
    Unchecked,
}

impl Org {
    /// Checks a root version the host unwrapped from a holder (any holder, any KMS) against
    /// the check value stored with it, before the root is used or cached. A root that does not
    /// match is refused ([`ScopeError::RootCheckFailed`]): the copy that gave it was replaced
    /// in storage. A version stored without a check value (by a byok older than checks) is
    /// refused too ([`ScopeError::RootUnchecked`]) unless `accept_unchecked`: the host's one
    /// pass that records such versions after an upgrade. Every child key wrapped under it must
    /// then open: a weak check (a database writer who planted the root can rewrap the children
    /// too, losing what they held), which is why that pass is run once, right after upgrading.
    pub fn verify_root(
        &self,
        checker: &RootChecker,
        root: &ScopeKey,
        accept_unchecked: bool,
    ) -> Result<RootVerdict> {
        let id = root.id();
        let scope = self.get(self.root).map_err(scope_err)?;
        if id.scope != self.root || !scope.versions.contains_key(&id.version) {
            return Err(scope_err(ScopeError::UnknownVersion(id)));
        }
        match scope.checks.get(&id.version) {
            Some(check) if checker.matches(self.root, root, check) => Ok(RootVerdict::Checked),
            Some(_) => Err(scope_err(ScopeError::RootCheckFailed(id))),
            None if accept_unchecked => {
                self.check_root(root)?;
                Ok(RootVerdict::Unchecked)
            }
            None => Err(scope_err(ScopeError::RootUnchecked(id))),
        }
    }

    /// Records the check value of a root version stored without one, once
    /// [`Self::verify_root`] answered [`RootVerdict::Unchecked`] (the host's upgrade pass): from
    /// then on the version is checked like a new one. Idempotent for the same root; a
    /// different root than the one recorded is refused.
    pub fn record_root_check(
        &mut self,
        checker: &RootChecker,
        root: &ScopeKey,
    ) -> Result<Vec<Effect>> {
        match self.verify_root(checker, root, true)? {
            RootVerdict::Checked => Ok(Vec::new()),
            RootVerdict::Unchecked => {
                let version = root.id().version;
                let check = checker.check(self.root, root);
                if let Some(s) = self.scopes.get_mut(&self.root) {
                    s.checks.insert(version, check);
                }
                Ok(vec![
                    Effect::PutRootCheck { version, check },
                    Effect::Audit(AuditEvent::RootCheckRecorded { version }),
                ])
            }
        }
    }

    /// Root versions stored without a check value (see [`Self::verify_root`]).
    pub fn unchecked_root_versions(&self) -> Vec<u32> {
        self.scopes
            .get(&self.root)
            .map(|s| {
                s.versions
                    .keys()
                    .filter(|v| !s.checks.contains_key(v))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_id::KeyId;
    use crate::scope::org::managed_key;
    use crate::secret::SecretBytes;
    use alloc::format;

    fn key(id: KeyId, byte: u8) -> ScopeKey {
        ScopeKey::new(id, SecretBytes::from_bytes(&mut [byte; 32]))
    }

    /// Computed independently with Python's `hmac` and `hashlib` (HKDF by hand, RFC 5869):
    /// `prk = hmac(b"byok/v1/root-check", b"\x11"*32, sha256)`, then
    /// `hmac(prk, b"\x22"*16 + (7).to_bytes(4, "big") + b"\x33"*32 + b"\x01", sha256)`.
    #[test]
    fn known_answer() {
        let checker = RootChecker::new(&managed_key(SecretBytes::from_bytes(&mut [0x11; 32]), 1));
        let org = ScopeId::from_bytes([0x22; 16]);
        let root = key(KeyId::new(org, 7), 0x33);
        let check = checker.check(org, &root);
        assert_eq!(
            hex::encode(check.as_bytes()),
            "4808ca3a206bf881c3bb41a1b7d5a147284584c3ea1f480e3ab69189a7166660"
        );
        assert!(checker.matches(org, &root, &check));
    }

    #[test]
    fn the_check_binds_the_key_the_org_the_version_and_the_managed_key() {
        let managed = managed_key(SecretBytes::from_bytes(&mut [1; 32]), 1);
        let checker = RootChecker::new(&managed);
        let org = ScopeId::from_bytes([2; 16]);
        let root = key(KeyId::new(org, 1), 3);
        let check = checker.check(org, &root);
        assert!(checker.matches(org, &root, &check));
        // Another root, another version of the same bytes, another org, another managed key.
        assert!(!checker.matches(org, &key(KeyId::new(org, 1), 4), &check));
        assert!(!checker.matches(org, &key(KeyId::new(org, 2), 3), &check));
        let other_org = ScopeId::from_bytes([5; 16]);
        assert!(!checker.matches(other_org, &key(KeyId::new(other_org, 1), 3), &check));
        let other = RootChecker::new(&managed_key(SecretBytes::from_bytes(&mut [6; 32]), 1));
        assert!(!other.matches(org, &root, &check));
        // Any flipped bit of the stored value.
        for i in 0..ROOT_CHECK_LEN * 8 {
            let mut bytes = *check.as_bytes();
            bytes[i / 8] ^= 1 << (i % 8);
            assert!(!checker.matches(org, &root, &RootCheck(bytes)), "bit {i}");
        }
        assert_eq!(RootCheck::from_slice(check.as_bytes()), Some(check));
        assert_eq!(RootCheck::from_slice(&[0; 31]), None);
        let shown = format!("{check:?} {checker:?}");
        assert!(
            !shown.contains(&hex::encode(&check.as_bytes()[4..])),
            "{shown}"
        );
    }
}
