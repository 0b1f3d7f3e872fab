//! Key holders: the keys that wrap an org's root key. Each attached CMK (in the customer's KMS)
//! holds its own wrapped copy of every live root version; the managed root (the vendor's local
//! master key) is one more holder. One of them is the default.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// Which key wraps a root copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HolderId {
    /// The vendor-managed local master key.
    Managed,
    /// A customer CMK, by the number the host gave it when it was attached.
    Cmk(u32),
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Managed => f.write_str("the managed key"),
            Self::Cmk(n) => write!(f, "key #{n}"),
        }
    }
}

/// Whether a holder can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderStatus {
    /// Holds copies of some root versions; more are pending (attached or re-enabled recently, or a
    /// root rotation is in progress).
    Pending,
    /// Holds a copy of every live root version.
    Ready,
    /// Disabled: its copies are destroyed.
    Disabled,
}

/// One holder and its wrapped copies of the root key, by root version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Which key.
    pub id: HolderId,
    /// Usable or not.
    pub status: HolderStatus,
    /// Wrapped root copies, by root version.
    pub copies: BTreeMap<u32, Vec<u8>>,
}

impl Holder {
    pub(crate) fn new(id: HolderId) -> Self {
        Self {
            id,
            status: HolderStatus::Pending,
            copies: BTreeMap::new(),
        }
    }

    /// Whether it holds a copy of each of `versions`.
    pub fn holds_all<'a>(&self, mut versions: impl Iterator<Item = &'a u32>) -> bool {
        versions.all(|v| self.copies.contains_key(v))
    }
}
