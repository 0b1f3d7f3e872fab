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
    // Exactly the origin byok writes (lowercase hex): a witness keeps one view per origin
    // string, so a case variant of an org's origin would be a second log of the same org.
    let org = cp
        .origin()
        .strip_prefix(&format!("{name}/audit/"))
        .and_then(ScopeId::parse_hex)
        .filter(|org| cp.origin() == origin(&name, *org))
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

/// The signature type byte of Ed25519 cosignatures (C2SP `tlog-cosignature` v1).
const ALG_COSIGNATURE_V1: u8 = 0x04;

/// A witness's public key, parsed from its note verifier key (`name+keyid+base64(0x04 || key)`).
#[derive(Clone, Debug)]
pub struct WitnessKey {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl WitnessKey {
    /// Parses a C2SP `tlog-cosignature` v1 Ed25519 verifier key; its key id must match.
    pub fn parse(vkey: &str) -> Result<Self, AuditLogError> {
        let malformed = AuditLogError::Malformed("witness key (name+keyid+base64(0x04 || key))");
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed);
        };
        if !signed_note::is_key_name_valid(name) || id.len() != 8 {
            return Err(malformed);
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| malformed.clone())?;
        let raw = <base64ct::Base64 as base64ct::Encoding>::decode_vec(b64)
            .map_err(|_| malformed.clone())?;
        let (alg, public) = raw.split_first().ok_or_else(|| malformed.clone())?;
        if *alg != ALG_COSIGNATURE_V1 || signed_note::key_id(name, &raw) != id {
            return Err(malformed);
        }
        let public = <[u8; 32]>::try_from(public).map_err(|_| malformed.clone())?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| malformed)?;
        Ok(Self {
            name: name.into(),
            id,
            key,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks `line` (`— name base64(keyid || timestamp || signature)`) as this witness's
    /// cosignature of the checkpoint in `note`; returns its timestamp (seconds since the epoch).
    pub fn verify(&self, note: &str, line: &str) -> Result<u64, AuditLogError> {
        let sig = signed_note::Signature::from_bytes(line.trim_end_matches('\n').as_bytes())
            .map_err(|_| AuditLogError::Malformed("cosignature line"))?;
        if sig.name() != self.name || sig.id() != self.id {
            return Err(AuditLogError::Malformed(
                "cosignature line: another witness's name or key id",
            ));
        }
        let body = sig.signature();
        if body.len() != 8 + 64 {
            return Err(AuditLogError::Malformed(
                "cosignature: not a timestamp and an Ed25519 signature",
            ));
        }
        let (ts, signature) = body.split_at(8);
        let ts =
            u64::from_be_bytes(<[u8; 8]>::try_from(ts).map_err(|_| AuditLogError::BadSignature)?);
        let signature = ed25519_dalek::Signature::from_slice(signature)
            .map_err(|_| AuditLogError::BadSignature)?;
        let parsed = Note::from_bytes(note.as_bytes())
            .map_err(|_| AuditLogError::Malformed("signed note"))?;
        let mut msg = format!("cosignature/v1\ntime {ts}\n").into_bytes();
        msg.extend_from_slice(parsed.text());
        self.key
            .verify_strict(&msg, &signature)
            .map_err(|_| AuditLogError::BadSignature)?;
        Ok(ts)
    }
}

impl WitnessKey {
    /// This witness's cosignature among `note`'s signature lines: its timestamp (seconds since
    /// the epoch), or `None` if the note carries no line of this witness's name and key id. A
    /// line that claims to be this witness's and does not verify is an error, not an absence:
    /// someone forged or altered it.
    pub fn cosignature_in(&self, note: &str) -> Result<Option<u64>, AuditLogError> {
        // The signature block follows the note's last blank line (the note format's rule).
        let (_, block) = note
            .rsplit_once("\n\n")
            .ok_or(AuditLogError::Malformed("signed note"))?;
        for line in block.lines() {
            let Ok(sig) = signed_note::Signature::from_bytes(line.as_bytes()) else {
                continue;
            };
            if sig.name() == self.name && sig.id() == self.id {
                return self.verify(note, line).map(Some);
            }
        }
        Ok(None)
    }
}

/// `note` with `lines` (signature lines, each ending in a newline) added after its own.
pub fn with_signatures(note: &str, lines: &[String]) -> String {
    let mut out = String::from(note);
    for l in lines {
        out.push_str(l.trim_end_matches('\n'));
        out.push('\n');
    }
    out
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

    /// A note byok's key signed for an org's origin with its hex in capitals is refused: a
    /// witness would keep it as a second log of the same org. Other origins are refused alike.
    #[test]
    fn only_the_exact_origin_names_an_org() {
        let k = key("byok.test", 1);
        let org = ScopeId::from_bytes([0xab; 16]);
        let signed = |origin: &str| {
            let cp = Checkpoint::new(origin, 3, Hash([5; 32]), "").unwrap();
            let mut note = Note::new(&cp.to_bytes(), &[]).unwrap();
            note.add_sigs(&[&k]).unwrap();
            String::from_utf8(note.to_bytes()).unwrap()
        };
        let upper = format!("byok.test/audit/{org}").replace("ab", "AB");
        for origin in [
            upper.as_str(),
            &format!("byok.other/audit/{org}"),
            &format!("byok.test/audit/{org}/x"),
        ] {
            assert_eq!(
                verify(&signed(origin), &k.verifier_key()),
                Err(AuditLogError::WrongOrigin(origin.into())),
                "{origin}"
            );
        }
        let exact = verify(&signed(&origin("byok.test", org)), &k.verifier_key()).unwrap();
        assert_eq!(exact.org, org);
    }

    /// A cosignature made here from the C2SP text (independently of [`WitnessKey`]).
    fn cosign(seed: u8, name: &str, note: &str, ts: u64) -> (String, String) {
        use base64ct::Encoding as _;
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let mut raw = vec![0x04];
        raw.extend_from_slice(sk.verifying_key().as_bytes());
        let id = signed_note::key_id(name, &raw);
        let vkey = format!("{name}+{id:08x}+{}", base64ct::Base64::encode_string(&raw));
        let text = &note[..note.find("\n\n").unwrap() + 1];
        let sig = sk.sign(format!("cosignature/v1\ntime {ts}\n{text}").as_bytes());
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(&ts.to_be_bytes());
        body.extend_from_slice(&sig.to_bytes());
        (
            vkey,
            format!(
                "\u{2014} {name} {}\n",
                base64ct::Base64::encode_string(&body)
            ),
        )
    }

    #[test]
    fn a_witness_cosignature_is_checked_and_carried() {
        let k = key("byok.test", 1);
        let org = ScopeId::from_bytes([9; 16]);
        let note = sign(&k, org, 12, Hash([5; 32])).unwrap();
        let (vkey, line) = cosign(3, "witness.test/w1", &note, 1_764_500_000);
        let w = WitnessKey::parse(&vkey).unwrap();
        assert_eq!(w.verify(&note, &line), Ok(1_764_500_000));
        let carried = with_signatures(&note, core::slice::from_ref(&line));
        let v = verify(&carried, &k.verifier_key()).unwrap();
        assert_eq!(v.other_signatures.len(), 1);
        assert!(v.other_signatures[0].starts_with("witness.test/w1+"));
        // Another checkpoint, another witness key, or an edited time: refused.
        let other = sign(&k, org, 13, Hash([5; 32])).unwrap();
        assert_eq!(w.verify(&other, &line), Err(AuditLogError::BadSignature));
        let (other_vkey, _) = cosign(4, "witness.test/w1", &note, 1);
        assert_eq!(
            WitnessKey::parse(&other_vkey).unwrap().verify(&note, &line),
            Err(AuditLogError::Malformed(
                "cosignature line: another witness's name or key id"
            ))
        );
        // byok's own key is not a witness key (signature type 0x01).
        assert!(WitnessKey::parse(&k.verifier_key()).is_err());
    }

    /// A witness's line is found among a note's signatures and checked; a note without one is
    /// `None`; a line of the witness's name and key id that does not verify is an error.
    #[test]
    fn a_witness_cosignature_is_found_in_a_note() {
        let k = key("byok.test", 1);
        let org = ScopeId::from_bytes([9; 16]);
        let note = sign(&k, org, 12, Hash([5; 32])).unwrap();
        let (vkey, line) = cosign(3, "witness.test/w1", &note, 1_764_500_000);
        let (other_vkey, other_line) = cosign(4, "witness.test/w2", &note, 7);
        let w = WitnessKey::parse(&vkey).unwrap();
        let both = with_signatures(&note, &[other_line.clone(), line.clone()]);
        assert_eq!(w.cosignature_in(&both), Ok(Some(1_764_500_000)));
        let w2 = WitnessKey::parse(&other_vkey).unwrap();
        assert_eq!(w2.cosignature_in(&both), Ok(Some(7)));
        assert_eq!(w.cosignature_in(&note), Ok(None));
        let only_other = with_signatures(&note, core::slice::from_ref(&other_line));
        assert_eq!(w.cosignature_in(&only_other), Ok(None));
        // The line moved to another checkpoint: it names the witness and does not verify.
        let next = sign(&k, org, 13, Hash([5; 32])).unwrap();
        let moved = with_signatures(&next, core::slice::from_ref(&line));
        assert_eq!(w.cosignature_in(&moved), Err(AuditLogError::BadSignature));
        assert_eq!(
            w.cosignature_in("no blank line"),
            Err(AuditLogError::Malformed("signed note"))
        );
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
