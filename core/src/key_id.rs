//! Names of keys: which scope, which version.
//!
//! Both travel in clear in every ciphertext header so a host can find the key it needs. They are
//! bound into the per-message key derivation, so a header that names another scope or version
//! than the one the data was sealed under fails to decrypt.

use core::fmt;

use rand_core::CryptoRng;

/// Identifier of a scope (organization, team, thread, connector, ...): 16 opaque bytes.
///
/// Random, so that ids reveal nothing about the tree and never collide across orgs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScopeId([u8; 16]);

impl ScopeId {
    /// Length of a scope id in bytes.
    pub const LEN: usize = 16;

    /// Wraps 16 bytes as a scope id.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Draws a fresh random scope id.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The 16 bytes of the id.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl ScopeId {
    /// Lower-case hex, 32 ASCII bytes (what `Display` prints, without formatting machinery:
    /// ids are formatted on hot paths, into every wrapped key's context).
    pub fn to_hex(&self) -> [u8; 32] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            if let [hi, lo] = pair {
                *hi = DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                *lo = DIGITS.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
            }
        }
        out
    }
}

impl ScopeId {
    /// Parses the 32 lower- or upper-case hex digits [`Self::to_hex`] prints; `None` for
    /// anything else (any other length, any other character).
    pub fn parse_hex(text: &str) -> Option<Self> {
        fn digit(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        }
        let text = text.as_bytes();
        if text.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let [hi, lo] = pair else { return None };
            *o = (digit(*hi)? << 4) | digit(*lo)?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for ScopeId {
    /// Lower-case hex, 32 characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        f.write_str(core::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopeId({self})")
    }
}

/// One version of one scope's key. Rotation adds a version; old versions keep decrypting
/// until they are retired.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyId {
    /// The scope the key belongs to.
    pub scope: ScopeId,
    /// The key version within the scope.
    pub version: u32,
}

impl KeyId {
    /// Names version `version` of scope `scope`'s key.
    pub const fn new(scope: ScopeId, version: u32) -> Self {
        Self { scope, version }
    }
}

impl fmt::Display for KeyId {
    /// `<scope hex>/v<version>`, e.g. `00..ff/v3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/v{}", self.scope, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;

    #[test]
    fn bad_hex_is_refused() {
        for bad in [
            "",
            "00",
            &"0".repeat(31),
            &"0".repeat(33),
            &"g".repeat(32),
            "é0000000000000000000000000000000",
        ] {
            assert_eq!(ScopeId::parse_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn hex_matches_the_formatting_macro() {
        for seed in [0u8, 1, 0x7f, 0xa5, 0xff] {
            let bytes: [u8; 16] = core::array::from_fn(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add(u8::try_from(i).unwrap().wrapping_mul(17))
            });
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let id = ScopeId::from_bytes(bytes);
            assert_eq!(format!("{id}"), expected);
            assert_eq!(&id.to_hex()[..], expected.as_bytes());
            assert_eq!(ScopeId::parse_hex(&expected), Some(id));
            assert_eq!(ScopeId::parse_hex(&expected.to_uppercase()), Some(id));
        }
        let k = KeyId::new(ScopeId::from_bytes([0xab; 16]), 7);
        assert_eq!(format!("{k}"), format!("{}/v7", "ab".repeat(16)));
    }
}
