//! The proof documents the API serves and verifiers check: RFC 6962 inclusion and consistency
//! proofs, hashes in standard base64 (as in C2SP checkpoints).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use tlog_tiles::tlog;

use super::{AuditLogError, Hash};

fn encode(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(ToString::to_string).collect()
}

/// The most hashes an inclusion proof of a tree of at most 2^64 leaves has (one per level).
const MAX_INCLUSION: usize = 64;
/// The most a consistency proof has (a path down each of two subtrees).
const MAX_CONSISTENCY: usize = 2 * 64;

/// The proof's hashes, at most `max` of them: a longer one cannot be right, and checking it
/// would cost memory in proportion (the checker copies the rest of the proof at each level).
fn decode(hashes: &[String], max: usize) -> Result<Vec<Hash>, AuditLogError> {
    if hashes.len() > max {
        return Err(AuditLogError::Malformed(
            "proof: more hashes than any tree needs",
        ));
    }
    hashes
        .iter()
        .map(|h| Hash::parse_hash(h).map_err(|_| AuditLogError::Malformed("proof hash")))
        .collect()
}

/// Proof that leaf `index` is in the tree of `size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf's index, from 0 (an audit row's `seq` minus one).
    pub index: u64,
    /// The tree's size.
    pub size: u64,
    /// The audit path, leaf to root, base64.
    pub hashes: Vec<String>,
}

impl InclusionProof {
    /// The document for `hashes`.
    pub fn new(index: u64, size: u64, hashes: &[Hash]) -> Self {
        Self {
            index,
            size,
            hashes: encode(hashes),
        }
    }

    /// Checks that the leaf with hash `leaf` is at `index` in the tree of `size` leaves with
    /// root `root`. The size is the verifier's (its checkpoint's), not the proof's own: a path
    /// for another size can lead to the same root (in a tree of 3, leaf 2's path for size 2 is
    /// the root of size 2, which with leaf 2 hashes to the root of 3).
    pub fn check(&self, size: u64, root: &Hash, leaf: Hash) -> Result<(), AuditLogError> {
        if self.size != size {
            return Err(AuditLogError::Malformed(
                "inclusion proof: for another tree size than the checkpoint's",
            ));
        }
        if self.index >= self.size {
            return Err(AuditLogError::Malformed(
                "inclusion proof: index past the tree",
            ));
        }
        let path = decode(&self.hashes, MAX_INCLUSION)?;
        tlog::check_record(&path, self.size, *root, self.index, leaf)
            .map_err(|_| AuditLogError::NotIncluded)
    }
}

/// Proof that the tree of `to` leaves extends the tree of `from` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older tree's size.
    pub from: u64,
    /// The newer tree's size.
    pub to: u64,
    /// The proof, base64.
    pub hashes: Vec<String>,
}

impl ConsistencyProof {
    /// The document for `hashes`.
    pub fn new(from: u64, to: u64, hashes: &[Hash]) -> Self {
        Self {
            from,
            to,
            hashes: encode(hashes),
        }
    }

    /// Checks that the tree of `to` leaves with root `new` extends the one of `from` leaves
    /// with root `old`. The sizes are the verifier's (its two checkpoints'): a proof's own
    /// `from: 0` would prove nothing about any pair of roots.
    pub fn check(&self, from: u64, old: &Hash, to: u64, new: &Hash) -> Result<(), AuditLogError> {
        if (self.from, self.to) != (from, to) {
            return Err(AuditLogError::Malformed(
                "consistency proof: for other tree sizes than the checkpoints'",
            ));
        }
        if self.from > self.to {
            return Err(AuditLogError::Malformed("consistency proof: from past to"));
        }
        if self.from == 0 || self.from == self.to {
            // Nothing to prove for the empty tree; the same size must have the same root.
            return if self.hashes.is_empty() && (self.from == 0 || old == new) {
                Ok(())
            } else {
                Err(AuditLogError::NotConsistent)
            };
        }
        let proof = decode(&self.hashes, MAX_CONSISTENCY)?;
        tlog::check_tree(&proof, self.to, *new, self.from, *old)
            .map_err(|_| AuditLogError::NotConsistent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_log::leaf::leaf_hash;
    use crate::audit_log::tree::MemoryTree;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push(leaf_hash(&i.to_be_bytes())).unwrap();
        }
        t
    }

    #[test]
    fn proofs_check_and_any_changed_hash_fails() {
        let t = tree(21);
        for size in 1..=21u64 {
            let root = t.root(size).unwrap();
            for index in 0..size {
                let p = InclusionProof::new(index, size, &t.inclusion(index, size).unwrap());
                let leaf = leaf_hash(&index.to_be_bytes());
                p.check(size, &root, leaf).unwrap();
                assert_eq!(
                    p.check(size, &root, leaf_hash(b"other")),
                    Err(AuditLogError::NotIncluded)
                );
                for i in 0..p.hashes.len() {
                    let mut bad = p.clone();
                    bad.hashes[i] = leaf_hash(b"x").to_string();
                    assert_eq!(
                        bad.check(size, &root, leaf),
                        Err(AuditLogError::NotIncluded)
                    );
                }
            }
            for from in 1..=size {
                let old = t.root(from).unwrap();
                let p = ConsistencyProof::new(from, size, &t.consistency(from, size).unwrap());
                p.check(from, &old, size, &root).unwrap();
                if from < size {
                    assert_eq!(
                        p.check(from, &leaf_hash(b"forged"), size, &root),
                        Err(AuditLogError::NotConsistent)
                    );
                }
            }
        }
    }

    /// A proof longer than any tree needs is refused before it is decoded or checked (a
    /// hostile receipt's million hashes would cost memory at every level of the check).
    #[test]
    fn a_proof_longer_than_any_tree_needs_is_refused_unread() {
        let too_long = AuditLogError::Malformed("proof: more hashes than any tree needs");
        let t = tree(5);
        let root = t.root(5).unwrap();
        let hash = leaf_hash(b"x");
        let inclusion = InclusionProof::new(1, 5, &[hash; MAX_INCLUSION + 1]);
        assert_eq!(inclusion.check(5, &root, hash), Err(too_long.clone()));
        let consistency = ConsistencyProof::new(2, 5, &[hash; MAX_CONSISTENCY + 1]);
        let old = t.root(2).unwrap();
        assert_eq!(consistency.check(2, &old, 5, &root), Err(too_long));
        // At the limit, the proof is read and found wrong for this tree.
        let at_limit = InclusionProof::new(1, 5, &[hash; MAX_INCLUSION]);
        assert_eq!(
            at_limit.check(5, &root, hash),
            Err(AuditLogError::NotIncluded)
        );
    }

    /// A proof is checked for the sizes the verifier holds, never the sizes it claims: both
    /// of these would pass on their own claims.
    #[test]
    fn a_proof_for_other_sizes_is_refused() {
        let t = tree(3);
        let root3 = t.root(3).unwrap();
        // Leaf 2's path in the tree of 2 is that tree's root, which with leaf 2 gives root 3.
        let leaf2 = leaf_hash(&2u64.to_be_bytes());
        let lying = InclusionProof::new(1, 2, &[t.root(2).unwrap()]);
        assert!(tlog::check_record(&alloc::vec![t.root(2).unwrap()], 2, root3, 1, leaf2).is_ok());
        assert_eq!(
            lying.check(3, &root3, leaf2),
            Err(AuditLogError::Malformed(
                "inclusion proof: for another tree size than the checkpoint's"
            ))
        );
        // `from: 0` proves nothing about a kept root of a non-empty tree.
        let empty = ConsistencyProof::new(0, 0, &[]);
        assert!(empty.check(0, &Hash([1; 32]), 0, &Hash([2; 32])).is_ok());
        assert_eq!(
            empty.check(2, &t.root(2).unwrap(), 3, &root3),
            Err(AuditLogError::Malformed(
                "consistency proof: for other tree sizes than the checkpoints'"
            ))
        );
    }

    #[test]
    fn malformed_proofs_are_refused_by_name() {
        let p = InclusionProof {
            index: 3,
            size: 3,
            hashes: Vec::new(),
        };
        assert!(matches!(
            p.check(3, &Hash([0; 32]), Hash([0; 32])),
            Err(AuditLogError::Malformed(_))
        ));
        let p = ConsistencyProof {
            from: 1,
            to: 2,
            hashes: alloc::vec!["not base64!".into()],
        };
        assert_eq!(
            p.check(1, &Hash([0; 32]), 2, &Hash([0; 32])),
            Err(AuditLogError::Malformed("proof hash"))
        );
    }
}
