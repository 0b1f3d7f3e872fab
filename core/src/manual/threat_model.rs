//! # Threat model of the format and the envelope
//!
//! ## What is protected
//!
//! Customer data encrypted by byok, and the keys that protect it. The vendor that runs byok
//! stores ciphertexts and wrapped keys; the customer's CMK (in their KMS) and byok's scope keys
//! decide who can read them.
//!
//! ## Adversaries the format must withstand
//!
//! | adversary | can | format's answer |
//! |---|---|---|
//! | storage thief | read every stored byte | AES-256-GCM under keys it never sees |
//! | storage tamperer | change, cut, reorder, splice, replay stored bytes | every change fails authentication; header fields are in the key derivation and the AAD; frames carry index and final flag |
//! | confused deputy | move a ciphertext to another tenant, row or scope | the encryption context and the scope id / key version are authenticated: moved data fails to decrypt |
//! | malicious writer | craft one ciphertext that opens differently under two keys | key commitment in the header, checked before decryption (`tests/commitment.rs` builds the attack) |
//! | oracle prober | send many crafted ciphertexts and watch errors and timing | one opaque `Decrypt` error for every authentication failure; constant-time commitment and tag checks; no plaintext released before authentication |
//! | hostile input | send malformed bytes to crash or exhaust the reader | typed errors for every malformation, no panics (fuzzed), bounded buffering: at most one frame (≤ 16 MiB + 16) |
//!
//! Out of scope for the format: a compromised host process (it holds unwrapped keys in memory
//! by design), traffic analysis (lengths are visible: single-shot ciphertexts are the plaintext
//! length plus 108 bytes), and side channels in the AES implementations themselves (both
//! backends are constant-time on CPUs with AES instructions; RustCrypto's bitsliced software
//! AES is used where they are absent, as in wasm).
//!
//! ## Decisions, and why
//!
//! - **Per-message keys from HKDF, not one GCM key with random nonces.** A GCM key with 96-bit
//!   random nonces is good for about 2^32 messages before nonce collisions become a real risk; a
//!   busy scope passes that. With a key per message (256-bit salt) the limit is gone, and the
//!   nonce only numbers frames.
//! - **Extract once per scope key.** The per-message randomness goes into HKDF-Expand's `info`,
//!   which is a PRF keyed by the PRK; see `docs/format.md`, "Why this derivation".
//! - **Commitment checked first, in constant time, and with the same error as a bad tag.** The
//!   commitment is also in the AAD, so GCM would catch a flipped commitment byte anyway; the
//!   check exists for the two-key attack, which the AAD cannot stop.
//! - **Scope id and key version in clear.** The host needs them to find the key. They are
//!   public by design (random ids reveal nothing about the tree), bound into the derivation,
//!   and a mismatch between the header and the caller's key is reported as `WrongKey`, which
//!   reveals only what the header already says.
//! - **Wrapped data keys are their own mode.** The mode byte is in the derivation, so a data key
//!   can never be "decrypted" as a message (or the reverse) by a confused caller.
//! - **Canonical encodings.** Headers re-encode to the same bytes, armor has one form per
//!   ciphertext, a stream has one framing per plaintext (no empty final frame after full
//!   frames): no two encodings of one message, so byte comparison and deduplication are sound.
//! - **Failed in-place decryption wipes the buffer.** aws-lc decrypts before it checks the tag;
//!   byok zeroes the body on failure so a caller that ignores the error sees zeros, not
//!   unauthenticated plaintext.
//! - **Keys are boxed, wiped on drop, redacted in `Debug`, compared in constant time.** Bytes
//!   leave a key type only through `expose_secret()`, so every use is visible in review.
