//! The stored tree: RFC 6962 hashes kept the way Go's `tlog` package (and [`tlog_tiles`]) keep
//! them, every completed subtree's hash at its stored-hash index, about two per leaf.
//!
//! The algorithms are [`tlog_tiles`]'s; they read stored hashes through a synchronous
//! [`HashReader`]. A host whose storage is async runs an operation twice: once on a
//! [`TreeReader::recording`] reader to learn which stored hashes it reads (the indexes depend
//! only on the sizes, never on hash values), then on a [`TreeReader::with`] reader holding
//! those hashes. [`wanted`] does the first pass.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use tlog_tiles::{HashReader, tlog};

use super::{AuditLogError, Hash};

/// A reader of stored hashes: recording the indexes asked for, or answering from a map.
#[derive(Debug)]
pub struct TreeReader(Mode);

#[derive(Debug)]
enum Mode {
    Record(RefCell<Vec<u64>>),
    Read(BTreeMap<u64, Hash>),
}

impl TreeReader {
    /// A reader that answers zeros and remembers what it was asked.
    pub fn recording() -> Self {
        Self(Mode::Record(RefCell::new(Vec::new())))
    }

    /// A reader holding `hashes` (stored-hash index, hash).
    pub fn with(hashes: impl IntoIterator<Item = (u64, Hash)>) -> Self {
        Self(Mode::Read(hashes.into_iter().collect()))
    }

    fn asked(self) -> Vec<u64> {
        match self.0 {
            Mode::Record(r) => {
                let mut v = r.into_inner();
                v.sort_unstable();
                v.dedup();
                v
            }
            Mode::Read(_) => Vec::new(),
        }
    }
}

impl HashReader for TreeReader {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        match &self.0 {
            Mode::Record(r) => {
                r.borrow_mut().extend_from_slice(indexes);
                Ok(vec![Hash([0; 32]); indexes.len()])
            }
            Mode::Read(m) => indexes
                .iter()
                .map(|i| m.get(i).copied().ok_or(tlog::Error::IndexesNotInTree))
                .collect(),
        }
    }
}

/// The stored-hash indexes `op` reads (sorted, distinct).
pub fn wanted<T>(op: impl Fn(&TreeReader) -> Result<T, AuditLogError>) -> Vec<u64> {
    let r = TreeReader::recording();
    // The result of a pass over zeros means nothing; only the indexes asked for count.
    let _ = op(&r);
    r.asked()
}

fn tree_error(e: tlog::Error) -> AuditLogError {
    match e {
        tlog::Error::IndexesNotInTree => AuditLogError::TreeIncomplete,
        tlog::Error::InvalidProof => AuditLogError::NotIncluded,
        _ => AuditLogError::Malformed("tree operation"),
    }
}

/// The stored-hash index of leaf `n`'s own hash.
pub fn leaf_index(n: u64) -> u64 {
    tlog::stored_hash_index(0, n)
}

/// The hashes to store when leaf `n` (from 0) with leaf hash `leaf` is added to a tree of `n`
/// leaves, each with its stored-hash index.
pub fn append(n: u64, leaf: Hash, r: &TreeReader) -> Result<Vec<(u64, Hash)>, AuditLogError> {
    let hashes = tlog::stored_hashes_for_record_hash(n, leaf, r).map_err(tree_error)?;
    let start = tlog::stored_hash_index(0, n);
    Ok((start..).zip(hashes).collect())
}

/// The root hash of the tree of the first `size` leaves.
pub fn root(size: u64, r: &TreeReader) -> Result<Hash, AuditLogError> {
    tlog::tree_hash(size, r).map_err(tree_error)
}

/// The RFC 6962 inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion(index: u64, size: u64, r: &TreeReader) -> Result<Vec<Hash>, AuditLogError> {
    if index >= size {
        return Err(AuditLogError::Malformed(
            "inclusion request: index past the tree",
        ));
    }
    tlog::prove_record(size, index, r).map_err(tree_error)
}

/// The RFC 6962 consistency proof from the tree of `from` leaves to the tree of `to` leaves.
pub fn consistency(from: u64, to: u64, r: &TreeReader) -> Result<Vec<Hash>, AuditLogError> {
    if from > to {
        return Err(AuditLogError::Malformed(
            "consistency request: from past to",
        ));
    }
    if from == 0 || from == to {
        return Ok(Vec::new());
    }
    tlog::prove_tree(to, from, r).map_err(tree_error)
}

/// The stored-hash indexes of the complete subtrees of the first `size` leaves: what a tree
/// of `size` leaves' root is made of, and the only older hashes appending past `size` reads.
pub fn subtrees(size: u64) -> Vec<u64> {
    wanted(|r| root(size, r))
}

/// Whether the stored hashes that leaves `from..to` added are exactly those their own hashes
/// give: `old` holds the complete subtrees of the first `from` leaves ([`subtrees`], whose
/// root the caller checked against a signed head), `stored` every stored hash with an index
/// from [`leaf_index`]`(from)` to [`leaf_index`]`(to)` (excluded). Each leaf's hash is taken
/// as stored (the caller checks it is byok's); every inner hash above it is recomputed and
/// compared. Returns the first leaf (from 0) whose hashes are missing or differ.
///
/// A root is computed from stored inner hashes, not from the leaves: without this, someone who
/// can write the database could change an inner hash over leaves that check out and get a
/// root signed that commits to other leaves.
pub fn first_mismatch(
    from: u64,
    to: u64,
    old: &TreeReader,
    stored: &BTreeMap<u64, Hash>,
) -> Result<Option<u64>, AuditLogError> {
    struct Growing<'a> {
        start: u64,
        old: &'a TreeReader,
        new: RefCell<BTreeMap<u64, Hash>>,
    }
    impl HashReader for Growing<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
            let new = self.new.borrow();
            indexes
                .iter()
                .map(|i| {
                    if *i < self.start {
                        self.old
                            .read_hashes(&[*i])?
                            .first()
                            .copied()
                            .ok_or(tlog::Error::IndexesNotInTree)
                    } else {
                        new.get(i).copied().ok_or(tlog::Error::IndexesNotInTree)
                    }
                })
                .collect()
        }
    }
    let growing = Growing {
        start: leaf_index(from),
        old,
        new: RefCell::new(BTreeMap::new()),
    };
    for n in from..to {
        let Some(leaf) = stored.get(&leaf_index(n)) else {
            return Ok(Some(n));
        };
        let hashes = match tlog::stored_hashes_for_record_hash(n, *leaf, &growing) {
            Ok(h) => h,
            Err(tlog::Error::IndexesNotInTree) => return Err(AuditLogError::TreeIncomplete),
            Err(e) => return Err(tree_error(e)),
        };
        let mut new = growing.new.borrow_mut();
        for (idx, hash) in (leaf_index(n)..).zip(hashes) {
            if stored.get(&idx) != Some(&hash) {
                return Ok(Some(n));
            }
            new.insert(idx, hash);
        }
    }
    Ok(None)
}

/// A whole tree in memory: what a verifier builds from the rows it downloaded.
#[derive(Debug, Default)]
pub struct MemoryTree {
    leaves: u64,
    stored: Vec<Hash>,
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| {
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| self.stored.get(i))
                    .copied()
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the leaf with hash `leaf`.
    pub fn push(&mut self, leaf: Hash) -> Result<(), AuditLogError> {
        let new =
            tlog::stored_hashes_for_record_hash(self.leaves, leaf, self).map_err(tree_error)?;
        self.stored.extend(new);
        self.leaves += 1;
        Ok(())
    }

    /// Leaves so far.
    pub fn len(&self) -> u64 {
        self.leaves
    }

    /// Whether it has no leaf.
    pub fn is_empty(&self) -> bool {
        self.leaves == 0
    }

    /// The root of the first `size` leaves.
    pub fn root(&self, size: u64) -> Result<Hash, AuditLogError> {
        if size > self.leaves {
            return Err(AuditLogError::TreeIncomplete);
        }
        tlog::tree_hash(size, self).map_err(tree_error)
    }

    /// The inclusion proof of leaf `index` in the first `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditLogError> {
        if index >= size || size > self.leaves {
            return Err(AuditLogError::Malformed(
                "inclusion request: index past the tree",
            ));
        }
        tlog::prove_record(size, index, self).map_err(tree_error)
    }

    /// The consistency proof from `from` leaves to `to` leaves.
    pub fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>, AuditLogError> {
        if from > to || to > self.leaves {
            return Err(AuditLogError::Malformed(
                "consistency request: from past to",
            ));
        }
        if from == 0 || from == to {
            return Ok(Vec::new());
        }
        tlog::prove_tree(to, from, self).map_err(tree_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_log::leaf::leaf_hash;

    fn leaf(i: u64) -> Hash {
        leaf_hash(&i.to_be_bytes())
    }

    /// A tree kept as a map of stored hashes, appended and read in two passes as a host does.
    fn two_pass(n: u64) -> BTreeMap<u64, Hash> {
        let mut stored = BTreeMap::new();
        for i in 0..n {
            let op = |r: &TreeReader| append(i, leaf(i), r);
            let want = wanted(op);
            let r = TreeReader::with(want.iter().map(|w| (*w, stored[w])));
            stored.extend(op(&r).unwrap());
        }
        stored
    }

    #[test]
    fn two_passes_give_the_memory_trees_roots_and_proofs() {
        let stored = two_pass(37);
        let mut mem = MemoryTree::new();
        for i in 0..37 {
            mem.push(leaf(i)).unwrap();
        }
        let read = |op: &dyn Fn(&TreeReader) -> Result<Vec<Hash>, AuditLogError>| {
            let want = wanted(op);
            op(&TreeReader::with(want.iter().map(|w| (*w, stored[w]))))
        };
        for size in 1..=37 {
            let r = read(&|r| root(size, r).map(|h| vec![h])).unwrap();
            assert_eq!(r, vec![mem.root(size).unwrap()]);
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    read(&|r| inclusion(index, size, r)).unwrap(),
                    mem.inclusion(index, size).unwrap()
                );
            }
            for from in [1, size / 2, size] {
                assert_eq!(
                    read(&|r| consistency(from, size, r)).unwrap(),
                    mem.consistency(from, size).unwrap()
                );
            }
        }
    }

    /// The stored hashes a range of leaves added are recomputed from the leaves: an inner
    /// hash changed over leaves left as they were (which a root reads, and would sign) is
    /// found at the first leaf it covers; so is a changed or missing leaf. The old part is
    /// read only through its complete subtrees.
    #[test]
    fn an_inner_hash_changed_over_good_leaves_is_found() {
        let stored = two_pass(23);
        for from in [0u64, 1, 8, 11, 16] {
            let old = TreeReader::with(subtrees(from).into_iter().map(|i| (i, stored[&i])));
            let range: BTreeMap<u64, Hash> = stored
                .range(leaf_index(from)..leaf_index(23))
                .map(|(i, h)| (*i, *h))
                .collect();
            assert_eq!(
                first_mismatch(from, 23, &old, &range).unwrap(),
                None,
                "{from}"
            );
            for (idx, _) in range.iter() {
                // The leaf whose stored hashes include `idx`.
                let owner = (from..23)
                    .find(|n| leaf_index(*n) <= *idx && *idx < leaf_index(n + 1))
                    .unwrap();
                // A leaf's own hash is taken as stored (its tag is the caller's to check);
                // every inner hash is recomputed.
                if *idx != leaf_index(owner) {
                    let mut bad = range.clone();
                    bad.insert(*idx, Hash([9; 32]));
                    let found = first_mismatch(from, 23, &old, &bad).unwrap();
                    assert_eq!(found, Some(owner), "from {from}, index {idx}");
                }
                let mut gone = range.clone();
                gone.remove(idx);
                assert_eq!(first_mismatch(from, 23, &old, &gone).unwrap(), Some(owner));
            }
        }
    }

    #[test]
    fn a_missing_stored_hash_is_reported_not_guessed() {
        let mut stored = two_pass(8);
        stored.remove(&0);
        let op = |r: &TreeReader| root(8, r);
        let want = wanted(op);
        let got = op(&TreeReader::with(
            want.iter().filter_map(|w| stored.get(w).map(|h| (*w, *h))),
        ));
        // The root of 8 reads one stored hash (the full subtree), which is still there; a proof
        // for leaf 0 reads level-0 hashes, one of which is gone.
        assert!(got.is_ok());
        let op = |r: &TreeReader| inclusion(1, 8, r);
        let want = wanted(op);
        let got = op(&TreeReader::with(
            want.iter().filter_map(|w| stored.get(w).map(|h| (*w, *h))),
        ));
        assert_eq!(got.unwrap_err(), AuditLogError::TreeIncomplete);
    }
}
