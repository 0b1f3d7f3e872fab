//! Armor decoder: never panics; whatever decodes re-encodes to the same text (one armored form
//! per ciphertext); the slice forms a wasm host uses (memory reserved fallibly) say exactly
//! what the allocating ones say.
#![no_main]
use byok_core::format::armor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        let decoded = armor::decode(text);
        let mut out = vec![0; armor::decoded_len_max(text)];
        assert_eq!(
            armor::decode_into(text, &mut out).map(<[u8]>::to_vec),
            decoded
        );
        if let Ok(bytes) = decoded {
            assert_eq!(armor::encode(&bytes), text);
            assert_eq!(armor::encoded_len(bytes.len()), text.len());
        }
    }
});
