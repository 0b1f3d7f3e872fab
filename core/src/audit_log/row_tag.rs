//! Row tags: proof that an audit row was written by byok, not into the database directly.
//!
//! A row's hash and its leaf in the tree follow public algorithms: whoever can write the
//! database can add a row after the newest checkpoint (an event in any token's name, a
//! withdrawal receipt's row) and it extends the log like any other; byok would sign it with
//! the next checkpoint. So each row is stored with a tag, a MAC of its leaf keyed by a key the
//! database never sees (derived from the managed key, which lives in a file or the
//! environment), and a row is signed into a checkpoint only if its tag checks out:
//!
//! ```text
//! PRK = HKDF-Extract(salt = "byok/v1/audit-row", IKM = managed key)
//! tag = HKDF-Expand(PRK, info = org id (16 B) | seq (u64 BE) | leaf hash (32 B), 32)
//! ```
//!
//! As for root check values (`scope::root_check`): HKDF-Expand is a PRF keyed by the PRK, and
//! the salt keeps it apart from every other use of the managed key. The leaf hash covers the
//! row's sequence number, time and event (`leaf`), so the tag binds all of them; the tree's
//! leaf must be the tagged one. A tag opens nothing: it is no key to anyone's data.

use core::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Hash;
use crate::crypto::ScopeKey;
use crate::key_id::ScopeId;

/// HKDF-Extract salt: names the purpose, apart from the managed key's other uses.
const EXTRACT_SALT: &[u8] = b"byok/v1/audit-row";

/// Length of a tag.
pub const ROW_TAG_LEN: usize = 32;

/// Makes and checks row tags: the PRK derived from the managed key (wiped on drop by `hmac`'s
/// zeroize feature). `Debug` prints nothing of it.
#[derive(Clone)]
pub struct RowTagger {
    prk: Hkdf<Sha256>,
}

impl fmt::Debug for RowTagger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RowTagger(..)")
    }
}

impl RowTagger {
    /// The tagger keyed by the vendor's managed key.
    pub fn new(managed: &ScopeKey) -> Self {
        Self {
            prk: Hkdf::<Sha256>::new(Some(EXTRACT_SALT), managed.expose_secret()),
        }
    }

    /// The tag of row `seq` of org `org`'s log, whose leaf hash is `leaf`.
    pub fn tag(&self, org: ScopeId, seq: u64, leaf: &Hash) -> [u8; ROW_TAG_LEN] {
        let mut out = [0u8; ROW_TAG_LEN];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: this cannot fail.
        let _ = self
            .prk
            .expand_multi_info(&[org.as_bytes(), &seq.to_be_bytes(), &leaf.0], &mut out);
        out
    }

    /// Whether `tag` is row `seq`'s tag with leaf `leaf`, compared in constant time. A tag of
    /// another length never is.
    pub fn matches(&self, org: ScopeId, seq: u64, leaf: &Hash, tag: &[u8]) -> bool {
        tag.len() == ROW_TAG_LEN && bool::from(self.tag(org, seq, leaf).ct_eq(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::managed_key;
    use crate::secret::SecretBytes;
    use alloc::format;

    fn tagger(byte: u8) -> RowTagger {
        RowTagger::new(&managed_key(SecretBytes::from_bytes(&mut [byte; 32]), 1))
    }

    /// Computed independently with Python's `hmac` and `hashlib` (HKDF by hand, RFC 5869):
    /// `prk = hmac(b"byok/v1/audit-row", b"\x11"*32, sha256)`, then
    /// `hmac(prk, b"\x22"*16 + (7).to_bytes(8, "big") + b"\x33"*32 + b"\x01", sha256)`.
    #[test]
    fn known_answer() {
        let t = tagger(0x11);
        let org = ScopeId::from_bytes([0x22; 16]);
        let tag = t.tag(org, 7, &Hash([0x33; 32]));
        assert_eq!(
            hex::encode(tag),
            "d6755942664dd3a9e1cff6e48b3ee73c93f63d4c780104a05793eefff0de5012"
        );
        assert!(t.matches(org, 7, &Hash([0x33; 32]), &tag));
    }

    #[test]
    fn the_tag_binds_the_org_the_row_the_leaf_and_the_managed_key() {
        let t = tagger(1);
        let org = ScopeId::from_bytes([2; 16]);
        let leaf = Hash([3; 32]);
        let tag = t.tag(org, 1, &leaf);
        assert!(t.matches(org, 1, &leaf, &tag));
        assert!(!t.matches(org, 2, &leaf, &tag));
        assert!(!t.matches(org, 1, &Hash([4; 32]), &tag));
        assert!(!t.matches(ScopeId::from_bytes([5; 16]), 1, &leaf, &tag));
        assert!(!tagger(6).matches(org, 1, &leaf, &tag));
        assert!(!t.matches(org, 1, &leaf, &tag[..31]));
        let mut flipped = tag;
        flipped[31] ^= 1;
        assert!(!t.matches(org, 1, &leaf, &flipped));
        assert_eq!(format!("{t:?}"), "RowTagger(..)");
    }
}
