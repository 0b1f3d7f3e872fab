//! Checkpoints: C2SP `tlog-checkpoint` notes, signed in the C2SP `signed-note` format.
//!
//! Each org's log has its own origin, `<log key name>/audit/<org id>`, so a checkpoint of one
//! org cannot be passed off as another's. The note may carry other signatures after byok's: a
//! witness's cosignature (C2SP `tlog-cosignature`) is kept and reported, never required.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use signed_note::{Note, NoteError, StandardVerifier, VerifierList};
use tlog_tiles::Checkpoint;

use super::log_key::LogKey;
use super::{AuditLogError, Hash};
use crate::ScopeId;

/// The origin line of `org`'s log under the log key named `log_name`.
pub fn origin(log_name: &str, org: ScopeId) -> String {
    format!("{log_name}/audit/{org}")
}

/// The signed checkpoint note for `org`'s tree of `size` leaves with root `root`.
pub fn sign(key: &LogKey, org: ScopeId, size: u64, root: Hash) -> Result<String, AuditLogError> {
    let cp = Checkpoint::new(&origin(key.name(), org), size, root, "")
        .map_err(|_| AuditLogError::Malformed("checkpoint origin"))?;
    let mut note =
        Note::new(&cp.to_bytes(), &[]).map_err(|_| AuditLogError::Malformed("checkpoint"))?;
    note.add_sigs(&[key])
        .map_err(|_| AuditLogError::Malformed("checkpoint signature"))?;
    String::from_utf8(note.to_bytes()).map_err(|_| AuditLogError::Malformed("checkpoint"))
}

/// What a checkpoint says, once its signature checked.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedCheckpoint {
    /// Whose log.
    pub org: ScopeId,
    /// Its size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// Other signatures the note carries (witnesses' cosignatures), by `name+keyid`; not
    /// checked here (a customer checks their own witness's key).
    pub other_signatures: Vec<String>,
}

/// Checks `note` against the log's verifier key (`name+keyid+base64`), and parses the
/// checkpoint in it.
pub fn verify(note: &str, verifier_key: &str) -> Result<VerifiedCheckpoint, AuditLogError> {
    let verifier = StandardVerifier::new(verifier_key.trim())
        .map_err(|_| AuditLogError::Malformed("verifier key (name+keyid+base64)"))?;
    let name = String::from(signed_note::Verifier::name(&verifier));
    let parsed =
        Note::from_bytes(note.as_bytes()).map_err(|_| AuditLogError::Malformed("signed note"))?;
    let (_, others) = parsed
        .verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| match e {
            NoteError::UnverifiedNote | NoteError::InvalidSignature { .. } => {
                AuditLogError::BadSignature
            }
            _ => AuditLogError::Malformed("signed note"),
        })?;
    let cp = Checkpoint::from_bytes(parsed.text())
        .map_err(|_| AuditLogError::Malformed("checkpoint text"))?;
    let org = cp
        .origin()
        .strip_prefix(&format!("{name}/audit/"))
        .and_then(ScopeId::parse_hex)
        .ok_or_else(|| AuditLogError::WrongOrigin(cp.origin().into()))?;
    Ok(VerifiedCheckpoint {
        org,
        size: cp.size(),
        root: *cp.hash(),
        other_signatures: others
            .iter()
            .map(|s| format!("{}+{:08x}", s.name(), s.id()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretBytes;

    fn key(name: &str, b: u8) -> LogKey {
        let mut seed = [b; 32];
        LogKey::from_seed(name, &SecretBytes::from_bytes(&mut seed)).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_names_its_org() {
        let k = key("byok.test", 1);
        let org = ScopeId::from_bytes([9; 16]);
        let root = Hash([5; 32]);
        let note = sign(&k, org, 12, root).unwrap();
        assert!(
            note.starts_with(&format!("byok.test/audit/{org}\n12\n")),
            "{note}"
        );
        assert!(note.contains("\n\n\u{2014} byok.test "), "{note}");
        let v = verify(&note, &k.verifier_key()).unwrap();
        assert_eq!((v.org, v.size, v.root), (org, 12, root));
        assert!(v.other_signatures.is_empty());
    }

    #[test]
    fn another_key_an_edited_size_or_a_foreign_origin_is_refused() {
        let k = key("byok.test", 1);
        let org = ScopeId::from_bytes([9; 16]);
        let note = sign(&k, org, 12, Hash([5; 32])).unwrap();
        // Same name, other key: the key id differs, so the note has no signature it knows.
        assert_eq!(
            verify(&note, &key("byok.test", 2).verifier_key()),
            Err(AuditLogError::BadSignature)
        );
        let edited = note.replacen("\n12\n", "\n11\n", 1);
        assert_eq!(
            verify(&edited, &k.verifier_key()),
            Err(AuditLogError::BadSignature)
        );
        let foreign = sign(&k, org, 1, Hash([5; 32]))
            .unwrap()
            .replacen("/audit/", "/other/", 1);
        assert_eq!(
            verify(&foreign, &k.verifier_key()),
            Err(AuditLogError::BadSignature)
        );
        assert_eq!(
            verify("not a note", &k.verifier_key()),
            Err(AuditLogError::Malformed("signed note"))
        );
    }
}
