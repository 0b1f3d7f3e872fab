//! Armor decoder: never panics; whatever decodes re-encodes to the same text (one armored form
//! per ciphertext).
#![no_main]
use byok_core::format::armor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(bytes) = armor::decode(text) {
            assert_eq!(armor::encode(&bytes), text);
        }
    }
});
