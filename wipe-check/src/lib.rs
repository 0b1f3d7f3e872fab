//! Test-only crate: `tests/freed_memory.rs` checks that byok-core wipes plaintext and key bytes
//! before their memory is freed, with a global allocator that reads every block freed while a
//! test watches. A global allocator needs unsafe code, which the workspace forbids everywhere
//! else; here it is allowed in that one file, and this crate ships nothing.
