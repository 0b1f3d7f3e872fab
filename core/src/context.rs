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
//! bytes. The order is that of the keys' UTF-8 bytes (code-point order, not UTF-16 order), and
//! no Unicode normalisation is applied: keys and values are encoded exactly as given
//! (`docs/format.md`, section 5). [`Context::from_pairs`] refuses a repeated key, and every
//! seal and open refuses a context whose count or a length does not fit in a u32.
//!
//! ## Caller contexts and the reserved `byok:` prefix
//!
//! byok binds its own wrapped keys with contexts whose keys start with [`RESERVED_PREFIX`]
//! (`byok:org`, `byok:scope`, `byok:purpose`, ...), and every data key a caller asks for is bound
//! to `byok:purpose = data-key` ([`Context::caller_data_key`]). A context that comes from a caller
//! (an API request, a CLI flag, an edge function's argument) goes through
//! [`Context::from_caller`], which refuses that prefix, so no caller-chosen context can make a
//! decrypt or data-key call open one of byok's own wrapped keys. It refuses a key given twice
//! (JSON objects and query strings can repeat one, and readers disagree on which value they
//! keep), and bounds the size: at most [`MAX_CALLER_PAIRS`] pairs, keys of
//! [`MAX_CALLER_KEY_LEN`] bytes, values of [`MAX_CALLER_VALUE_LEN`]. Every host applies these
//! same rules.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::Misuse;

/// Context keys with this prefix are byok's own; callers may not use them.
pub const RESERVED_PREFIX: &str = "byok:";
/// The most pairs a caller's context may have.
pub const MAX_CALLER_PAIRS: usize = 64;
/// The longest key of a caller's context pair, in bytes.
pub const MAX_CALLER_KEY_LEN: usize = 256;
/// The longest value of a caller's context pair, in bytes.
pub const MAX_CALLER_VALUE_LEN: usize = 1024;
/// The reserved pair added to the context of every data key a caller asks for.
pub const DATA_KEY_PURPOSE: (&str, &str) = ("byok:purpose", "data-key");

/// Why a caller's context was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallerContextError {
    /// More than [`MAX_CALLER_PAIRS`] pairs.
    TooManyPairs(usize),
    /// A key starts with [`RESERVED_PREFIX`].
    ReservedKey(String),
    /// A key or a value is longer than [`MAX_CALLER_KEY_LEN`] or [`MAX_CALLER_VALUE_LEN`].
    TooLong,
    /// A key is given twice (its first [`MAX_CALLER_KEY_LEN`] characters): readers disagree
    /// on which value they keep, so a caller and byok could bind different contexts.
    DuplicateKey(String),
}

impl fmt::Display for CallerContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyPairs(_) => {
                write!(f, "context has more than {MAX_CALLER_PAIRS} entries")
            }
            Self::ReservedKey(k) => {
                write!(
                    f,
                    "context key {k:?} uses the reserved prefix {RESERVED_PREFIX:?}"
                )
            }
            Self::TooLong => write!(
                f,
                "context keys are at most {MAX_CALLER_KEY_LEN} bytes and values {MAX_CALLER_VALUE_LEN}"
            ),
            Self::DuplicateKey(k) => {
                write!(f, "context key {k:?} is given twice; give each key once")
            }
        }
    }
}

impl core::error::Error for CallerContextError {}

/// An encryption context: unique string keys, each with one string value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pairs: BTreeMap<String, String>,
    encoded: Vec<u8>,
    /// The count or a length does not fit the encoding's u32 (2^32 pairs, or a key or value of
    /// 4 GiB): such a context has no encoding, and sealing or opening with it is refused.
    too_large: bool,
}

impl Context {
    /// The empty context.
    pub fn new() -> Self {
        let mut c = Self {
            pairs: BTreeMap::new(),
            encoded: Vec::new(),
            too_large: false,
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
            too_large: false,
        };
        c.reencode();
        Ok(c)
    }

    /// Builds a context from a map (unique keys by construction), encoding it once.
    pub fn from_map(pairs: BTreeMap<String, String>) -> Self {
        let mut c = Self {
            pairs,
            encoded: Vec::new(),
            too_large: false,
        };
        c.reencode();
        c
    }

    /// A context a caller supplied, checked against the caller rules (see the module docs):
    /// no key twice, then the pair count, then each pair in key order.
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`CallerContextError`].
    pub fn from_caller<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, CallerContextError> {
        let mut unique = BTreeMap::new();
        for (k, v) in pairs {
            match unique.entry(k.into()) {
                alloc::collections::btree_map::Entry::Occupied(e) => {
                    let shown = e.key().chars().take(MAX_CALLER_KEY_LEN).collect();
                    return Err(CallerContextError::DuplicateKey(shown));
                }
                alloc::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(v.into());
                }
            }
        }
        let pairs: BTreeMap<String, String> = unique;
        if pairs.len() > MAX_CALLER_PAIRS {
            return Err(CallerContextError::TooManyPairs(pairs.len()));
        }
        for (k, v) in &pairs {
            if k.starts_with(RESERVED_PREFIX) {
                return Err(CallerContextError::ReservedKey(k.clone()));
            }
            if k.len() > MAX_CALLER_KEY_LEN || v.len() > MAX_CALLER_VALUE_LEN {
                return Err(CallerContextError::TooLong);
            }
        }
        Ok(Self::from_map(pairs))
    }

    /// The context a caller's data key is bound to: the caller's context, checked as by
    /// [`Self::from_caller`], plus [`DATA_KEY_PURPOSE`]. So a data key never opens as a
    /// ciphertext with the caller's context, nor the other way round.
    ///
    /// # Errors
    ///
    /// As [`Self::from_caller`].
    pub fn caller_data_key<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, CallerContextError> {
        let mut ctx = Self::from_caller(pairs)?;
        ctx.insert(DATA_KEY_PURPOSE.0, DATA_KEY_PURPOSE.1);
        Ok(ctx)
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

    /// Whether the context has an encoding: at most 2^32 - 1 pairs, and no key or value of
    /// 2^32 bytes or more (`docs/format.md`, section 5). Every seal and open checks this
    /// first and refuses with [`Misuse::ContextTooLarge`].
    pub fn check_encodable(&self) -> Result<(), Misuse> {
        if self.too_large {
            Err(Misuse::ContextTooLarge)
        } else {
            Ok(())
        }
    }

    fn reencode(&mut self) {
        let mut out = Vec::with_capacity(
            4 + self
                .pairs
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>(),
        );
        let mut fits = push_len(&mut out, self.pairs.len());
        // BTreeMap<String, _> iterates in ascending byte order of the keys (String's Ord is
        // the byte order of its UTF-8), which is the canonical order.
        for (k, v) in &self.pairs {
            fits &= push_len(&mut out, k.len());
            out.extend_from_slice(k.as_bytes());
            fits &= push_len(&mut out, v.len());
            out.extend_from_slice(v.as_bytes());
        }
        self.encoded = out;
        self.too_large = !fits;
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

/// Lengths are u32 on the wire. Appends `len` and returns whether it fits; one that does not
/// (a 4 GiB key or value, which cannot exist on 32-bit targets) makes the context
/// unencodable, and [`Context::check_encodable`] refuses it before any sealing or opening.
fn push_len(out: &mut Vec<u8>, len: usize) -> bool {
    let fits = u32::try_from(len);
    out.extend_from_slice(&fits.unwrap_or(u32::MAX).to_be_bytes());
    fits.is_ok()
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

    fn caller(pairs: &[(&str, &str)]) -> Result<Context, CallerContextError> {
        Context::from_caller(pairs.iter().copied())
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        alloc::string::ToString::to_string(&caller(pairs).unwrap_err())
    }

    #[test]
    fn a_caller_context_within_the_limits_is_taken_as_is() {
        let k = "k".repeat(MAX_CALLER_KEY_LEN);
        let v = "v".repeat(MAX_CALLER_VALUE_LEN);
        let c = caller(&[
            ("tenant", "acme"),
            (&k, &v),
            ("byok", "no colon"),
            ("x:byok:", ""),
        ])
        .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(caller(&[]).unwrap(), Context::new());
        let many: Vec<(String, String)> = (0..MAX_CALLER_PAIRS)
            .map(|i| (alloc::format!("k{i}"), String::new()))
            .collect();
        assert!(Context::from_caller(many).is_ok());
    }

    #[test]
    fn each_caller_rule_refuses_with_its_message() {
        assert_eq!(
            refusal(&[("tenant", "acme"), ("byok:purpose", "data-key")]),
            r#"context key "byok:purpose" uses the reserved prefix "byok:""#
        );
        assert_eq!(
            refusal(&[("byok:", "")]),
            r#"context key "byok:" uses the reserved prefix "byok:""#
        );
        // The prefix is case-sensitive, as the reserved keys are.
        assert!(caller(&[("BYOK:org", "x")]).is_ok());
        let long_key = "k".repeat(MAX_CALLER_KEY_LEN + 1);
        let long_value = "v".repeat(MAX_CALLER_VALUE_LEN + 1);
        for pairs in [[(long_key.as_str(), "v")], [("k", long_value.as_str())]] {
            assert_eq!(
                refusal(&pairs),
                "context keys are at most 256 bytes and values 1024"
            );
        }
        let many: BTreeMap<String, String> = (0..=MAX_CALLER_PAIRS)
            .map(|i| (alloc::format!("k{i}"), String::new()))
            .collect();
        let err = Context::from_caller(many).unwrap_err();
        assert_eq!(err, CallerContextError::TooManyPairs(65));
        assert_eq!(
            alloc::string::ToString::to_string(&err),
            "context has more than 64 entries"
        );
        // A key given twice, whatever the values: refused, not reduced to one of them.
        for second in ["evil", "acme"] {
            assert_eq!(
                refusal(&[("tenant", "acme"), ("a", "b"), ("tenant", second)]),
                r#"context key "tenant" is given twice; give each key once"#
            );
        }
        let long = "k".repeat(MAX_CALLER_KEY_LEN + 10);
        assert_eq!(
            caller(&[(&long, ""), (&long, "")]),
            Err(CallerContextError::DuplicateKey(
                "k".repeat(MAX_CALLER_KEY_LEN)
            ))
        );
    }

    #[test]
    fn a_data_key_context_adds_the_reserved_purpose() {
        let pairs = BTreeMap::from([(String::from("tenant"), String::from("acme"))]);
        let dk = Context::caller_data_key(pairs.clone()).unwrap();
        assert_eq!(
            dk.iter().collect::<Vec<_>>(),
            [("byok:purpose", "data-key"), ("tenant", "acme")]
        );
        assert_ne!(dk, Context::from_caller(pairs).unwrap());
        let reserved = BTreeMap::from([(String::from("byok:purpose"), String::from("x"))]);
        assert_eq!(
            Context::caller_data_key(reserved),
            Err(CallerContextError::ReservedKey("byok:purpose".into()))
        );
    }

    /// A 4 GiB key cannot be allocated in a test; the flag it would set is set by hand, and
    /// every seal and open refuses the context before looking at key or input.
    #[test]
    fn an_unencodable_context_is_refused_by_every_operation() {
        use crate::crypto::backend::RustCrypto;
        use crate::dev::TestRng;
        use crate::key_id::{KeyId, ScopeId};
        use crate::{Envelope, FrameSize, ScopeKey, stream};

        assert!(push_len(&mut Vec::new(), 0xffff_ffff));
        #[cfg(target_pointer_width = "64")]
        assert!(!push_len(&mut Vec::new(), 0x1_0000_0000));

        let mut rng = TestRng::seeded(5);
        let key = ScopeKey::random(KeyId::new(ScopeId::from_bytes([3; 16]), 1), &mut rng);
        let good = Context::from_pairs([("k", "v")]).unwrap();
        assert_eq!(good.check_encodable(), Ok(()));
        let ct = Envelope::<RustCrypto>::encrypt(&key, &good, b"x", &mut rng).unwrap();
        let fs = FrameSize::DEFAULT;
        let framed = stream::encrypt_with::<RustCrypto>(&key, &good, fs, b"x", &mut rng).unwrap();
        let (_, wrapped) =
            Envelope::<RustCrypto>::generate_data_key(&key, &good, &mut rng).unwrap();

        let mut bad = good.clone();
        bad.too_large = true;
        let refused = Err(crate::Error::Misuse(Misuse::ContextTooLarge));
        assert_eq!(
            Envelope::<RustCrypto>::encrypt(&key, &bad, b"x", &mut rng),
            refused
        );
        assert_eq!(
            stream::encrypt_with::<RustCrypto>(&key, &bad, fs, b"x", &mut rng),
            refused
        );
        assert!(matches!(
            Envelope::<RustCrypto>::generate_data_key(&key, &bad, &mut rng),
            Err(crate::Error::Misuse(Misuse::ContextTooLarge))
        ));
        // Opening: before the input is looked at, even when the input is not a ciphertext.
        for input in [&ct[..], b"\x89PNG"] {
            assert_eq!(Envelope::<RustCrypto>::decrypt(&key, &bad, input), refused);
        }
        assert_eq!(
            stream::decrypt_with::<RustCrypto>(&key, &bad, &framed),
            refused
        );
        assert_eq!(
            stream::decrypt_with::<RustCrypto>(&key, &bad, b"junk"),
            refused
        );
        assert!(matches!(
            Envelope::<RustCrypto>::unwrap_data_key(&key, &bad, &wrapped),
            Err(crate::Error::Misuse(Misuse::ContextTooLarge))
        ));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            Context::from_pairs([("a", "1"), ("a", "2")]),
            Err(Misuse::DuplicateContextKey)
        );
    }
}
