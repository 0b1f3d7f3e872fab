//! The audit log's parsers and leaf encoding: checkpoint, receipt and witness-key parsing never
//! panic and never accept what the fixed log key did not sign; a leaf re-read and re-encoded
//! gives the same bytes (the canonical form is a fixed point), and keeps the event.
#![no_main]
use byok_core::SecretBytes;
use byok_core::audit_log::checkpoint::{self, WitnessKey};
use byok_core::audit_log::leaf::leaf_bytes;
use byok_core::audit_log::log_key::LogKey;
use byok_core::audit_log::receipt::{self, Receipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let key = LogKey::from_seed("fuzz.byok", &SecretBytes::from_bytes(&mut [1; 32])).unwrap();
    let vkey = key.verifier_key();
    // Nothing but a note signed by the key verifies; the fuzzer cannot sign.
    assert!(checkpoint::verify(text, &vkey).is_err());
    if let Ok(r) = serde_json::from_str::<Receipt>(text) {
        assert!(receipt::verify(&r, &vkey).is_err());
    }
    if let Ok(w) = WitnessKey::parse(text) {
        let _ = w.verify(text, text);
    }
    if let Ok(event) = serde_json::from_str::<serde_json::Value>(text)
        && let Ok(leaf) = leaf_bytes(7, -3, &event)
    {
        let back: serde_json::Value = serde_json::from_slice(&leaf).unwrap();
        assert_eq!(back["event"], event);
        assert_eq!(leaf_bytes(7, -3, &back["event"]).unwrap(), leaf);
    }
});
