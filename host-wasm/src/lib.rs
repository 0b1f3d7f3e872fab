//! byok for browsers and edge runtimes: the same envelope format as the server, run by core
//! compiled to wasm, with keys that come from an edge lease.
//!
//! - [`edge`]: what an edge does with a lease (encrypt, decrypt, expiry), as plain Rust, so that
//!   it is tested natively too. Errors carry the server's API codes.
//! - [`caller`]: who may call an edge function (a caller token, or the platform's word), checked
//!   before anything else; refused when the deployment says neither.
//! - [`key_setup`]: the identifier parsed, the offline validation steps and the grant, for the
//!   setup page, by core's own functions.
//! - `bindings` (wasm32-unknown-unknown only): the JS API over it, built with `wasm-bindgen`
//!   into an ES module package (`scripts/build-wasm.sh`); errors are thrown as JS `Error`s with
//!   a `code` property.
//! - `wasi_http` (wasm32-wasip2 only): the same edge function as a `wasi:http` proxy component,
//!   for Fastly Compute, Spin and `wasmtime serve`.

pub mod body;
pub mod caller;
pub mod edge;
pub mod key_setup;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub mod bindings;

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod wasi_http;
