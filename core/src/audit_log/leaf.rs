//! A log leaf: one audit row, written canonically so that any reader recomputes the same bytes.
//!
//! The leaf of row `seq` is the JSON object `{"at":AT,"event":EVENT,"seq":SEQ}` with object keys
//! sorted by code point at every level, no whitespace, strings escaped minimally (`"`, `\`, and
//! control characters: `\b \t \n \f \r`, others as `\u00xx`), other characters as UTF-8, and
//! integers only. Python writes the same bytes with
//! `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`. The leaf hash is
//! RFC 6962's: SHA-256 of `0x00 || leaf`.
//!
//! Sorting is done here, not left to `serde_json`'s map type: a dependency that turns on its
//! `preserve_order` feature would otherwise change every leaf.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::Value;

use super::{AuditLogError, Hash};

/// The leaf bytes of row `seq` (from 1), written at `at` (ms since the Unix epoch).
pub fn leaf_bytes(seq: u64, at: i64, event: &Value) -> Result<Vec<u8>, AuditLogError> {
    let mut out = String::with_capacity(64);
    out.push_str("{\"at\":");
    out.push_str(&at.to_string());
    out.push_str(",\"event\":");
    canonical(event, &mut out)?;
    out.push_str(",\"seq\":");
    out.push_str(&seq.to_string());
    out.push('}');
    Ok(out.into_bytes())
}

/// The RFC 6962 leaf hash of `leaf`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    tlog_tiles::record_hash(leaf)
}

/// The leaf hash of row `seq`.
pub fn row_hash(seq: u64, at: i64, event: &Value) -> Result<Hash, AuditLogError> {
    leaf_bytes(seq, at, event).map(|b| leaf_hash(&b))
}

/// Appends the canonical form of `v` to `out`.
pub fn canonical(v: &Value, out: &mut String) -> Result<(), AuditLogError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                return Err(AuditLogError::NotCanonical);
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                if let Some(item) = map.get(k) {
                    canonical(item, out)?;
                }
            }
            out.push('}');
        }
    }
    Ok(())
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&alloc::format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_and_strings_escaped_minimally() {
        let event = json!({ "type": "scope_paused", "b": { "z": 1, "a": [true, null, -3] }, "s": "é\"\\\n\u{1}" });
        let bytes = leaf_bytes(7, 1_700_000_000_000, &event).unwrap();
        assert_eq!(
            core::str::from_utf8(&bytes).unwrap(),
            "{\"at\":1700000000000,\"event\":{\"b\":{\"a\":[true,null,-3],\"z\":1},\"s\":\"é\\\"\\\\\\n\\u0001\",\"type\":\"scope_paused\"},\"seq\":7}"
        );
    }

    #[test]
    fn floats_are_refused() {
        assert_eq!(
            leaf_bytes(1, 0, &json!({ "x": 1.5 })),
            Err(AuditLogError::NotCanonical)
        );
    }

    #[test]
    fn the_leaf_hash_is_rfc6962s() {
        // SHA-256(0x00 || "") from RFC 6962's test data (the empty leaf).
        assert_eq!(
            leaf_hash(b"").to_string(),
            "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="
        );
    }
}
