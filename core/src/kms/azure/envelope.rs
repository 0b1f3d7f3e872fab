//! Binding a wrapped root to its org, scope and version on Azure. `wrapkey` takes no additional
//! authenticated data (unlike AWS's encryption context or GCP's AAD), so byok wraps an envelope
//! instead of the bare root, and checks it after every unwrap:
//!
//! ```text
//! "byokAZ01" | u16 BE length | Binding::to_bytes() | 32-byte root | zero padding to 8 bytes
//! ```
//!
//! The wrap (RSA-OAEP-256, or AES key wrap on Managed HSM) protects the envelope's integrity,
//! so a copy moved to another org, scope or version unwraps to an envelope that names its own
//! and is refused ([`KmsErrorKind::InvalidCiphertext`]). What it does not stop: anyone holding
//! an RSA key's public half can wrap an envelope of their choosing, naming any binding, with a
//! root they know. Such a copy opens no existing data (every ciphertext commits to the root it
//! was made under, format v1), but keys wrapped under it later would be the forger's: the root's
//! check value ([`crate::scope::RootChecker`], keyed by the managed key, outside the database)
//! refuses one a database writer made. The
//! padding makes the envelope a multiple of 8 bytes, as AES key wrap needs.

use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::provider::Binding;
use crate::secret::{KEY_LEN, SecretBytes};

/// The envelope's first bytes, with its version.
pub const MAGIC: &[u8; 8] = b"byokAZ01";

/// The envelope of `root` for `binding`. Wiped on drop.
pub fn seal(binding: &Binding, root: &SecretBytes) -> Zeroizing<Vec<u8>> {
    let text = binding.to_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(
        MAGIC.len() + 2 + text.len() + KEY_LEN + 8,
    ));
    out.extend_from_slice(MAGIC);
    // A binding is a few dozen bytes (two hex ids and a number): it always fits.
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(root.expose_secret());
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out
}

fn refused(message: &str) -> KmsError {
    KmsError {
        kind: KmsErrorKind::InvalidCiphertext,
        provider: "azure",
        code: "EnvelopeMismatch".into(),
        message: message.into(),
        status: 0,
    }
}

/// The root inside an unwrapped `envelope`, if it names exactly `binding`.
pub fn open(envelope: &[u8], binding: &Binding) -> Result<SecretBytes, KmsError> {
    let rest = envelope
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| refused("the unwrapped value is not a byok envelope"))?;
    let (len, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| refused("the envelope is cut short"))?;
    let len = usize::from(u16::from_be_bytes(*len));
    let (text, rest) = rest
        .split_at_checked(len)
        .ok_or_else(|| refused("the envelope is cut short"))?;
    if text != binding.to_bytes().as_slice() {
        return Err(refused(
            "the copy was wrapped for another org, scope or root version",
        ));
    }
    let (root, padding) = rest
        .split_first_chunk::<KEY_LEN>()
        .ok_or_else(|| refused("the envelope is cut short"))?;
    // Exactly the padding `seal` adds: the whole is a multiple of 8 bytes, padded with zeros.
    if !envelope.len().is_multiple_of(8) || padding.len() >= 8 || padding.iter().any(|b| *b != 0) {
        return Err(refused("the envelope's padding is not byok's"));
    }
    let mut root = *root;
    Ok(SecretBytes::from_bytes(&mut root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_opens_for_its_own_binding_only() {
        let root = SecretBytes::from_bytes(&mut [7; 32]);
        let b = Binding::root("00aa", 3);
        let env = seal(&b, &root);
        assert_eq!(env.len() % 8, 0, "AES key wrap needs 8-byte blocks");
        assert!(
            env.len() <= 190,
            "RSA-OAEP-256 on a 2048-bit key takes at most 190 bytes"
        );
        assert_eq!(open(&env, &b).unwrap().expose_secret(), &[7; 32]);
        for other in [Binding::root("00aa", 2), Binding::root("00bb", 3)] {
            let e = open(&env, &other).unwrap_err();
            assert_eq!(
                (e.kind, e.code.as_str()),
                (KmsErrorKind::InvalidCiphertext, "EnvelopeMismatch")
            );
        }
        // Every cut is refused; so is every flipped byte outside the root (the magic, the
        // length, the binding, the padding). The root's own bytes are the wrap's to protect:
        // RSA-OAEP and AES key wrap refuse a modified copy before byok sees it.
        let root_at = MAGIC.len() + 2 + b.to_bytes().len();
        let mismatch = |e: KmsError| {
            (e.kind, e.code) == (KmsErrorKind::InvalidCiphertext, "EnvelopeMismatch".into())
        };
        for n in 0..env.len() {
            assert!(mismatch(open(&env[..n], &b).unwrap_err()), "cut at {n}");
            let mut flipped = env.to_vec();
            flipped[n] ^= 1;
            let opened = open(&flipped, &b);
            if (root_at..root_at + KEY_LEN).contains(&n) {
                assert_ne!(opened.unwrap().expose_secret(), &[7; 32]);
            } else {
                assert!(
                    mismatch(opened.unwrap_err()),
                    "byte {n} flipped still opened"
                );
            }
        }
        let mut longer = env.to_vec();
        longer.extend_from_slice(&[0; 8]);
        assert!(mismatch(open(&longer, &b).unwrap_err()));
    }
}
