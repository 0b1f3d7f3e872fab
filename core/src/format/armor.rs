//! Text armor for JSON APIs and logs: `byok:v1:<unpadded base64url of the binary ciphertext>`.
//!
//! Decoding is strict: the prefix is case-sensitive, no whitespace, no padding, and the
//! base64url must be canonical (the unused low bits of the last character are zero), so one
//! ciphertext has exactly one armored form and string comparison of armored values is
//! meaningful. The version label must match the binary header's version.
//!
//! `docs/format.md`, section 7, is the rule; in short, [`decode`] checks in this order, each
//! failure a [`FormatError::Armor`]: the literal prefix `byok:v1:` (not a pattern: `byok:v2:` is
//! malformed, not unsupported), the base64url, then the payload's version byte against the
//! label, before the header is parsed. Any mode may be armored.

use alloc::string::String;
use alloc::vec::Vec;

use base64ct::{Base64UrlUnpadded, Encoding};

use crate::error::{ArmorError, Error, FormatError};
use crate::format::header::VERSION;

/// The armor prefix for format version 1.
pub const PREFIX: &str = "byok:v1:";

/// Armors a binary ciphertext.
pub fn encode(ciphertext: &[u8]) -> String {
    let mut out = String::with_capacity(PREFIX.len() + Base64UrlUnpadded::encoded_len(ciphertext));
    out.push_str(PREFIX);
    out.push_str(&Base64UrlUnpadded::encode_string(ciphertext));
    out
}

/// Removes the armor and returns the binary ciphertext.
///
/// Checks only the armor and that the payload's version byte matches the label; the binary
/// format is checked when the result is parsed.
pub fn decode(text: &str) -> Result<Vec<u8>, Error> {
    let err = |e| Error::Format(FormatError::Armor(e));
    let rest = text
        .strip_prefix("byok:")
        .ok_or(err(ArmorError::MissingPrefix))?;
    let payload = rest.strip_prefix("v1:").ok_or(err(ArmorError::Version))?;
    let bytes = Base64UrlUnpadded::decode_vec(payload).map_err(|_| err(ArmorError::Base64))?;
    // The header's version byte sits at offset 4. A payload too short to have one is left for
    // the header parser to report as truncated.
    match bytes.get(4) {
        Some(&v) if v != VERSION => Err(err(ArmorError::Version)),
        _ => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn round_trip() {
        let bin = b"BYOK\x01\x01\x01\x00rest";
        let text = encode(bin);
        assert!(text.starts_with("byok:v1:"));
        assert_eq!(decode(&text).unwrap(), bin);
    }

    #[test]
    fn strictness() {
        let good = encode(b"BYOK\x01\x01\x01\x00ab");
        let cases = [
            (
                good.replacen("byok:", "BYOK:", 1),
                ArmorError::MissingPrefix,
            ),
            (good.replacen("v1:", "v2:", 1), ArmorError::Version),
            (format!("{good}="), ArmorError::Base64),
            (format!(" {good}"), ArmorError::MissingPrefix),
            (format!("{good}\n"), ArmorError::Base64),
            (good.replace('A', "+"), ArmorError::Base64),
            // Version label says v1, payload header says 2.
            (encode(b"BYOK\x02\x01\x01\x00"), ArmorError::Version),
        ];
        for (text, expected) in cases {
            assert_eq!(
                decode(&text),
                Err(Error::Format(FormatError::Armor(expected))),
                "{text}"
            );
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // "YQ" is the canonical encoding of "a"; "YR" decodes to the same byte with a nonzero
        // unused bit and must be refused.
        assert_eq!(decode("byok:v1:YQ").unwrap(), b"a");
        assert_eq!(
            decode("byok:v1:YR"),
            Err(Error::Format(FormatError::Armor(ArmorError::Base64)))
        );
    }
}
