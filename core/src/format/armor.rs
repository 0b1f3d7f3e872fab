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
    let mut out = alloc::vec![0; encoded_len(ciphertext.len())];
    let text = encode_into(ciphertext, &mut out).map(str::len);
    debug_assert_eq!(text, Ok(out.len()));
    // Prefix and base64url: ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// The length of the armored text of `len` ciphertext bytes: what a host that allocates
/// fallibly (a wasm module, whose failed allocation aborts it) reserves for [`encode_into`].
pub fn encoded_len(len: usize) -> usize {
    // Unpadded base64: four characters per three bytes, and two or three for a last one or two.
    let base64 = (len / 3).saturating_mul(4).saturating_add(match len % 3 {
        0 => 0,
        r => r + 1,
    });
    PREFIX.len().saturating_add(base64)
}

/// [`encode`] into `out`, which must be [`encoded_len`] bytes long: the text, or
/// `ArmorError::Base64` if `out` is not that long.
pub fn encode_into<'o>(ciphertext: &[u8], out: &'o mut [u8]) -> Result<&'o str, Error> {
    let err = || Error::Format(FormatError::Armor(ArmorError::Base64));
    if out.len() != encoded_len(ciphertext.len()) {
        return Err(err());
    }
    let (prefix, rest) = out.split_at_mut(PREFIX.len());
    prefix.copy_from_slice(PREFIX.as_bytes());
    Base64UrlUnpadded::encode(ciphertext, rest).map_err(|_| err())?;
    core::str::from_utf8(out).map_err(|_| err())
}

/// The most bytes the armored `text` decodes to: what a host that allocates fallibly reserves
/// for [`decode_into`].
pub fn decoded_len_max(text: &str) -> usize {
    text.len().saturating_sub(PREFIX.len()) / 4 * 3 + 2
}

/// Removes the armor and returns the binary ciphertext.
///
/// Checks only the armor and that the payload's version byte matches the label; the binary
/// format is checked when the result is parsed.
pub fn decode(text: &str) -> Result<Vec<u8>, Error> {
    let mut out = alloc::vec![0; decoded_len_max(text)];
    let len = decode_into(text, &mut out)?.len();
    out.truncate(len);
    Ok(out)
}

/// [`decode`] into `out`, which must hold [`decoded_len_max`] bytes: the ciphertext, at the
/// front of `out`. The same checks, in the same order.
pub fn decode_into<'o>(text: &str, out: &'o mut [u8]) -> Result<&'o [u8], Error> {
    let err = |e| Error::Format(FormatError::Armor(e));
    let rest = text
        .strip_prefix("byok:")
        .ok_or(err(ArmorError::MissingPrefix))?;
    let payload = rest.strip_prefix("v1:").ok_or(err(ArmorError::Version))?;
    let bytes = Base64UrlUnpadded::decode(payload, out).map_err(|_| err(ArmorError::Base64))?;
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
    use alloc::borrow::ToOwned;
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

    /// The slice forms give what the allocating ones give, for every length around the
    /// base64 groups, and `encoded_len` is the text's length exactly.
    #[test]
    fn into_slices_as_into_new_buffers() {
        for len in 0..40 {
            // Byte 4 is the version byte, checked against the label.
            let bin: Vec<u8> = (0..len)
                .map(|i: usize| {
                    if i == 4 {
                        VERSION
                    } else {
                        u8::try_from((i * 37 + 5) % 256).unwrap_or(0)
                    }
                })
                .collect();
            let text = encode(&bin);
            assert_eq!(text.len(), encoded_len(len), "{len}");
            assert_eq!(
                text,
                PREFIX.to_owned() + &Base64UrlUnpadded::encode_string(&bin)
            );
            let mut out = alloc::vec![0; decoded_len_max(&text)];
            assert_eq!(
                decode_into(&text, &mut out).map(<[u8]>::to_vec),
                Ok(bin.clone())
            );
            assert_eq!(decode(&text), Ok(bin.clone()));
            // A buffer of another length is refused, not overrun.
            let mut short = alloc::vec![0; encoded_len(len) - 1];
            assert!(encode_into(&bin, &mut short).is_err());
            let mut long = alloc::vec![0; encoded_len(len) + 1];
            assert!(encode_into(&bin, &mut long).is_err());
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
