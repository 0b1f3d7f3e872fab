//! byok for browsers and edge runtimes (filled by the wasm issue).
#![no_std]
