//! Armor decoder: never panics; whatever decodes re-encodes to the same text (one armored form
//! per ciphertext); and what decodes, and what is refused, is what a decoder written from
//! docs/format.md section 7 with base64ct's allocating decoder says (the slice forms a wasm
//! host uses, memory reserved fallibly, are what `decode` runs on).
#![no_main]
use base64ct::{Base64UrlUnpadded, Encoding};
use byok_core::format::armor;
use libfuzzer_sys::fuzz_target;

/// The armor's rule, written apart: the literal prefix, canonical unpadded base64url, and the
/// payload's version byte (offset 4, when there is one) equal to the label's.
fn reference(text: &str) -> Option<Vec<u8>> {
    let bytes = Base64UrlUnpadded::decode_vec(text.strip_prefix("byok:v1:")?).ok()?;
    match bytes.get(4) {
        Some(&v) if v != 1 => None,
        _ => Some(bytes),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        let decoded = armor::decode(text);
        assert_eq!(decoded.as_ref().ok(), reference(text).as_ref(), "{text:?}");
        if let Ok(bytes) = decoded {
            assert_eq!(armor::encode(&bytes), text);
            assert_eq!(armor::encoded_len(bytes.len()), text.len());
        }
    }
});
