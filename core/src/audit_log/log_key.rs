//! The log key: the Ed25519 key that signs an org's checkpoints, one per server, named in every
//! signature line. Its secret half exists only here and, wrapped under the managed key, in the
//! database; the public half is published as a C2SP note verifier key
//! (`name+keyid+base64(0x01 || public key)`).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ed25519_dalek::{Signer as _, SigningKey};

use super::AuditLogError;
use crate::SecretBytes;

/// The `byok:purpose` of the context that binds the wrapped log key.
pub const LOG_KEY_PURPOSE: &str = "audit-log-key";

/// The Ed25519 signature algorithm byte of C2SP signed-note keys.
const ALG_ED25519: u8 = 0x01;

/// A log signing key and its name. The secret is zeroized on drop (`ed25519-dalek` does it) and
/// never shown by `Debug`.
pub struct LogKey {
    name: String,
    key: SigningKey,
    id: u32,
}

impl core::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LogKey")
            .field("name", &self.name)
            .field("id", &format_args!("{:08x}", self.id))
            .finish_non_exhaustive()
    }
}

impl LogKey {
    /// The key with Ed25519 seed `seed`, signing as `name` (a note key name: non-empty, no
    /// spaces, no `+`).
    pub fn from_seed(name: &str, seed: &SecretBytes) -> Result<Self, AuditLogError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(AuditLogError::BadKeyName);
        }
        let key = SigningKey::from_bytes(seed.expose_secret());
        let id = signed_note::key_id(name, &encoded_public(&key));
        Ok(Self {
            name: name.to_string(),
            key,
            id,
        })
    }

    /// The name in its signature lines.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The C2SP note verifier key: `name+keyid+base64(0x01 || public key)`.
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.name, &self.key.verifying_key())
    }
}

fn encoded_public(key: &SigningKey) -> Vec<u8> {
    let mut v = Vec::with_capacity(33);
    v.push(ALG_ED25519);
    v.extend_from_slice(key.verifying_key().as_bytes());
    v
}

impl signed_note::Signer for LogKey {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_key_has_the_c2sp_form_and_debug_hides_the_secret() {
        let mut seed = [7u8; 32];
        let key = LogKey::from_seed("byok.example", &SecretBytes::from_bytes(&mut seed)).unwrap();
        let vkey = key.verifier_key();
        let parts: Vec<&str> = vkey.split('+').collect();
        assert_eq!(parts.len(), 3, "{vkey}");
        assert_eq!(parts[0], "byok.example");
        assert_eq!(
            parts[1],
            alloc::format!("{:08x}", signed_note::Signer::key_id(&key))
        );
        let debug = alloc::format!("{key:?}");
        assert!(
            debug.contains("byok.example") && !debug.contains("7, 7"),
            "{debug}"
        );
    }

    #[test]
    fn names_a_note_cannot_carry_are_refused() {
        for bad in ["", "a b", "a+b"] {
            let mut seed = [1u8; 32];
            assert_eq!(
                LogKey::from_seed(bad, &SecretBytes::from_bytes(&mut seed)).unwrap_err(),
                AuditLogError::BadKeyName
            );
        }
    }
}
