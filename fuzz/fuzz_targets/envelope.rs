//! Single-shot and data-key decryption of arbitrary bytes with a fixed key: never panics, never
//! succeeds on bytes it did not make; and encrypting the input round-trips.
#![no_main]
use byok_core::dev::TestRng;
use byok_core::{Context, Envelope, KeyId, ScopeId, ScopeKey};
use libfuzzer_sys::fuzz_target;

type E = Envelope<byok_core::DefaultBackend>;

fuzz_target!(|data: &[u8]| {
    let mut rng = TestRng::seeded(2);
    let key = ScopeKey::random(KeyId::new(ScopeId::from_bytes([2; 16]), 9), &mut rng);
    let ctx = Context::from_pairs([("k", "v")]).unwrap();
    let _ = E::decrypt(&key, &ctx, data);
    let _ = E::unwrap_data_key(&key, &ctx, data);
    let ct = E::encrypt(&key, &ctx, data, &mut rng).unwrap();
    assert_eq!(E::decrypt(&key, &ctx, &ct).unwrap(), data);
});
