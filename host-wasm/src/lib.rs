//! byok for browsers and edge runtimes: the same envelope format as the server, run by core
//! compiled to wasm, with keys that come from an edge lease.
//!
//! - [`edge`]: what an edge does with a lease (encrypt, decrypt, expiry), as plain Rust, so that
//!   it is tested natively too. Errors carry the server's API codes.
//! - `bindings` (wasm32-unknown-unknown only): the JS API over it, built with `wasm-bindgen`
//!   into an ES module package (`scripts/build-wasm.sh`); errors are thrown as JS `Error`s with
//!   a `code` property.

pub mod edge;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod bindings;
