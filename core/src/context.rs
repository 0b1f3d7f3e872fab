//! The caller's encryption context and its canonical encoding.
//!
//! An encryption context is a set of string pairs (`{"tenant": "acme", "table": "notes"}`) that
//! is not secret, not stored in the ciphertext, and must be given again, identically, to
//! decrypt. It is authenticated as AEAD associated data, so a ciphertext copied to another row,
//! tenant or purpose fails to decrypt.
//!
//! The encoding is canonical, so that two callers that mean the same pairs produce the same
//! bytes whatever order they inserted them in:
//!
//! ```text
//! count: u32 BE | for each pair in ascending byte order of key:
//!                 key_len: u32 BE | key (UTF-8) | value_len: u32 BE | value (UTF-8)
//! ```
//!
//! Keys are unique (a map), so the sort order is total. The empty context encodes as four zero
//! bytes.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::error::Misuse;

/// An encryption context: unique string keys, each with one string value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pairs: BTreeMap<String, String>,
    encoded: Vec<u8>,
}

impl Context {
    /// The empty context.
    pub fn new() -> Self {
        let mut c = Self {
            pairs: BTreeMap::new(),
            encoded: Vec::new(),
        };
        c.reencode();
        c
    }

    /// Builds a context from pairs, refusing duplicate keys (which would make the meaning of
    /// the context depend on which value wins).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, Misuse>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if map.insert(k.into(), v.into()).is_some() {
                return Err(Misuse::DuplicateContextKey);
            }
        }
        let mut c = Self {
            pairs: map,
            encoded: Vec::new(),
        };
        c.reencode();
        Ok(c)
    }

    /// Builds a context from a map (unique keys by construction), encoding it once.
    pub fn from_map(pairs: BTreeMap<String, String>) -> Self {
        let mut c = Self {
            pairs,
            encoded: Vec::new(),
        };
        c.reencode();
        c
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.pairs.insert(key.into(), value.into());
        self.reencode();
    }

    /// The pairs, in canonical (ascending byte) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the context has no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The canonical encoding, computed once when the context changes, so that sealing many
    /// messages under one context does not re-encode it each time.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    fn reencode(&mut self) {
        let mut out = Vec::with_capacity(
            4 + self
                .pairs
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>(),
        );
        push_len(&mut out, self.pairs.len());
        // BTreeMap<String, _> iterates in ascending byte order of the keys (String's Ord is
        // the byte order of its UTF-8), which is the canonical order.
        for (k, v) in &self.pairs {
            push_len(&mut out, k.len());
            out.extend_from_slice(k.as_bytes());
            push_len(&mut out, v.len());
            out.extend_from_slice(v.as_bytes());
        }
        self.encoded = out;
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

/// Lengths are u32 on the wire. A context over 4 GiB cannot be built on 32-bit targets and is
/// absurd on 64-bit ones; saturating keeps the function total without a panic, and such an
/// encoding still authenticates every byte because the bytes themselves follow.
fn push_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_context_is_four_zero_bytes() {
        assert_eq!(Context::new().encoded(), &[0, 0, 0, 0]);
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        let a = Context::from_pairs([("b", "2"), ("a", "1")]).unwrap();
        let mut b = Context::new();
        b.insert("a", "1");
        b.insert("b", "2");
        assert_eq!(a.encoded(), b.encoded());
        assert_eq!(
            a.encoded(),
            &[
                0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 1, b'1', 0, 0, 0, 1, b'b', 0, 0, 0, 1, b'2'
            ]
        );
    }

    #[test]
    fn length_prefixes_prevent_ambiguity() {
        let a = Context::from_pairs([("ab", "c")]).unwrap();
        let b = Context::from_pairs([("a", "bc")]).unwrap();
        assert_ne!(a.encoded(), b.encoded());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            Context::from_pairs([("a", "1"), ("a", "2")]),
            Err(Misuse::DuplicateContextKey)
        );
    }
}
