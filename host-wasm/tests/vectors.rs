//! The shared vectors, run by the wasm build (wasm32-wasip1 under Node's WASI and under
//! wasmtime, see `scripts/test.sh`) and natively. Same files, same runner as core's native
//! tests: a wasm build that disagrees by one byte fails here.

use byok_core::crypto::backend::RustCrypto;
use byok_core::dev::run_vectors;

#[test]
fn vectors_on_this_target() {
    let files = [
        ("single", include_str!("../../vectors/single.json")),
        ("negative", include_str!("../../vectors/negative.json")),
        ("framed", include_str!("../../vectors/framed.json")),
        ("datakey", include_str!("../../vectors/datakey.json")),
        ("armor", include_str!("../../vectors/armor.json")),
    ];
    let mut total = 0;
    for (name, json) in files {
        total += run_vectors::<RustCrypto>(json).unwrap_or_else(|e| panic!("{name}:\n{e}"));
    }
    assert!(total >= 90, "only {total} vectors ran");
    println!("{total} vectors passed on {}", std::env::consts::ARCH);
}
