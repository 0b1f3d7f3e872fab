//! Revocation receipts: what a customer keeps after a withdrawal (a revoke, pause, key disable
//! or token revoke) to show later, to anyone, that byok logged it and said by when access ends.
//!
//! The withdrawal itself is logged by the transition; right after it commits the server logs a
//! `withdrawal_receipt` event (the action, its subject, and `access_ends_at`: the time by which
//! every cache and outstanding lease it knew of has expired), signs a checkpoint that covers it
//! and answers with this document: the event, its inclusion proof and that checkpoint. So the
//! server's statement about `access_ends_at` is itself in the signed log, and [`verify`] needs
//! nothing but the published verifier key.

// utoipa's derive calls `format!` and names `Vec` unqualified; this crate is no_std.
use alloc::string::String;
#[cfg(feature = "openapi")]
use alloc::{format, vec::Vec};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoint::{self, VerifiedCheckpoint};
use super::leaf;
use super::proof::InclusionProof;
use super::{AuditLogError, Hash};
use crate::ScopeId;

/// The `format` of a receipt.
pub const RECEIPT_FORMAT: &str = "byok-receipt/v1";

/// The event type a receipt's entry has.
pub const RECEIPT_EVENT: &str = "withdrawal_receipt";

/// One audit row as a leaf holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the org's log, from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The event.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub event: Value,
}

impl Entry {
    /// Its leaf hash.
    pub fn leaf_hash(&self) -> Result<Hash, AuditLogError> {
        leaf::row_hash(self.seq, self.at, &self.event)
    }
}

/// A revocation receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// [`RECEIPT_FORMAT`].
    pub format: String,
    /// The `withdrawal_receipt` event.
    pub entry: Entry,
    /// Its inclusion proof in the checkpoint's tree.
    pub inclusion: InclusionProof,
    /// The signed checkpoint (a C2SP signed note).
    pub checkpoint: String,
}

/// What a receipt proves, once checked.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedReceipt {
    /// The checkpoint that covers the event.
    pub checkpoint: VerifiedCheckpoint,
    /// The event's row.
    pub entry: Entry,
    /// What was withdrawn (`scope_revoked`, `scope_paused`, `key_disabled`, `token_revoked`,
    /// `org_claimed`).
    pub action: String,
    /// By when every cache and outstanding lease had expired, ms since the Unix epoch.
    pub access_ends_at: i64,
}

/// Checks `receipt` offline against the log's verifier key.
pub fn verify(receipt: &Receipt, verifier_key: &str) -> Result<VerifiedReceipt, AuditLogError> {
    if receipt.format != RECEIPT_FORMAT {
        return Err(AuditLogError::Malformed("receipt format"));
    }
    let cp = checkpoint::verify(&receipt.checkpoint, verifier_key)?;
    let e = &receipt.entry;
    if e.seq == 0 || receipt.inclusion.index != e.seq - 1 || receipt.inclusion.size != cp.size {
        return Err(AuditLogError::Malformed(
            "receipt: the proof is not for this entry in this checkpoint",
        ));
    }
    receipt.inclusion.check(cp.size, &cp.root, e.leaf_hash()?)?;
    if e.event.get("type").and_then(Value::as_str) != Some(RECEIPT_EVENT) {
        return Err(AuditLogError::Malformed(
            "receipt: the entry is not a withdrawal receipt",
        ));
    }
    let action = e
        .event
        .get("action")
        .and_then(Value::as_str)
        .ok_or(AuditLogError::Malformed("receipt: no action"))?
        .into();
    let access_ends_at = e
        .event
        .get("access_ends_at")
        .and_then(Value::as_i64)
        .ok_or(AuditLogError::Malformed("receipt: no access_ends_at"))?;
    Ok(VerifiedReceipt {
        checkpoint: cp,
        entry: e.clone(),
        action,
        access_ends_at,
    })
}

/// The org a receipt is about, read without checking anything (to find its verifier key).
pub fn claimed_org(receipt: &Receipt) -> Option<ScopeId> {
    let origin = receipt.checkpoint.lines().next()?;
    let (_, org) = origin.rsplit_once("/audit/")?;
    ScopeId::parse_hex(org)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretBytes;
    use crate::audit_log::log_key::LogKey;
    use crate::audit_log::tree::MemoryTree;
    use serde_json::json;

    fn receipt() -> (Receipt, LogKey) {
        let mut seed = [3u8; 32];
        let key = LogKey::from_seed("byok.test", &SecretBytes::from_bytes(&mut seed)).unwrap();
        let org = ScopeId::from_bytes([4; 16]);
        let mut tree = MemoryTree::new();
        let mut entries = alloc::vec![];
        for seq in 1..=5u64 {
            let event = if seq == 4 {
                json!({ "type": RECEIPT_EVENT, "action": "scope_revoked", "scope": "ab", "access_ends_at": 1_000 })
            } else {
                json!({ "type": "scope_created", "n": seq })
            };
            let e = Entry {
                seq,
                at: 100 + i64::try_from(seq).unwrap(),
                event,
            };
            tree.push(e.leaf_hash().unwrap()).unwrap();
            entries.push(e);
        }
        let note = checkpoint::sign(&key, org, 5, tree.root(5).unwrap()).unwrap();
        let r = Receipt {
            format: RECEIPT_FORMAT.into(),
            entry: entries[3].clone(),
            inclusion: InclusionProof::new(3, 5, &tree.inclusion(3, 5).unwrap()),
            checkpoint: note,
        };
        (r, key)
    }

    #[test]
    fn a_receipt_verifies_offline_and_any_edit_fails() {
        let (r, key) = receipt();
        let v = verify(&r, &key.verifier_key()).unwrap();
        assert_eq!(
            (v.action.as_str(), v.access_ends_at),
            ("scope_revoked", 1_000)
        );
        assert_eq!(claimed_org(&r), Some(ScopeId::from_bytes([4; 16])));

        let mut later = r.clone();
        later.entry.event["access_ends_at"] = json!(2_000);
        assert_eq!(
            verify(&later, &key.verifier_key()),
            Err(AuditLogError::NotIncluded)
        );
        let mut moved = r.clone();
        moved.entry.seq = 3;
        assert!(matches!(
            verify(&moved, &key.verifier_key()),
            Err(AuditLogError::Malformed(_))
        ));
        let mut other_time = r.clone();
        other_time.entry.at += 1;
        assert_eq!(
            verify(&other_time, &key.verifier_key()),
            Err(AuditLogError::NotIncluded)
        );
        let mut resigned = r.clone();
        resigned.checkpoint = resigned.checkpoint.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(
            verify(&resigned, &key.verifier_key()),
            Err(AuditLogError::BadSignature)
        );
    }
}
