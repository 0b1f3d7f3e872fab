//! The audit log as a transparency log (issue 13): what a host needs to keep an org's audit
//! events as the leaves of an RFC 6962 Merkle tree, sign C2SP checkpoints over it, prove
//! inclusion and consistency, and hand out revocation receipts that anyone can check offline.
//!
//! The formats are the field's standards, through the crates that implement them:
//! [`tlog_tiles`] for RFC 6962 hashing and proofs and C2SP `tlog-checkpoint`, [`signed_note`]
//! for C2SP `signed-note` with Ed25519. This module adds what is byok's own: how an audit row
//! becomes a leaf ([`leaf`]), the checkpoint origin per org ([`checkpoint`]), the log key
//! ([`log_key`]), the proof documents ([`proof`]), the receipt ([`receipt`]) and the tag that
//! tells a row byok wrote from one written into the database ([`row_tag`]).
//!
//! Sans-IO like the rest of core: the stored tree is read through [`tree::TreeReader`], which
//! first says which stored hashes an operation needs and then runs it on those the host read.
//! Needs `std` (the two crates are std crates), so it sits behind the `audit-log` feature.

pub mod checkpoint;
pub mod leaf;
pub mod log_key;
pub mod proof;
pub mod receipt;
pub mod row_tag;
pub mod tree;

use alloc::string::String;

pub use tlog_tiles::Hash;

/// Why a checkpoint, proof or receipt does not check out. Each names what to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditLogError {
    /// A document is not in its format (which part, why).
    Malformed(&'static str),
    /// The note carries no valid signature by the expected log key.
    BadSignature,
    /// The checkpoint is for another log (its origin).
    WrongOrigin(String),
    /// An inclusion proof does not lead from the leaf to the checkpoint's root.
    NotIncluded,
    /// A consistency proof does not show the newer tree extends the older one.
    NotConsistent,
    /// An event cannot be written as a leaf (floats are not canonical across readers).
    NotCanonical,
    /// A log key name that a note cannot carry (empty, or with a space or `+`).
    BadKeyName,
    /// The stored tree is missing hashes an operation needs.
    TreeIncomplete,
}

impl core::fmt::Display for AuditLogError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed {what}"),
            Self::BadSignature => f.write_str(
                "the checkpoint carries no valid signature by this log's key (check the verifier key you pinned)",
            ),
            Self::WrongOrigin(o) => write!(f, "the checkpoint is for another log ({o})"),
            Self::NotIncluded => {
                f.write_str("the inclusion proof does not lead from the event to the checkpoint")
            }
            Self::NotConsistent => f.write_str(
                "the log does not extend the checkpoint: rows it covered were changed, removed or reordered",
            ),
            Self::NotCanonical => f.write_str("the event holds a value with no canonical form"),
            Self::BadKeyName => {
                f.write_str("a log key name must be non-empty, without spaces or '+'")
            }
            Self::TreeIncomplete => f.write_str("the stored tree lacks hashes it should hold"),
        }
    }
}

impl core::error::Error for AuditLogError {}
