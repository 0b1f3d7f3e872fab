//! Errors, sorted by who is at fault.
//!
//! A caller needs to know what to do next, and that depends on who erred:
//!
//! - [`Error::Format`]: the bytes we were handed are not a well-formed byok ciphertext (or
//!   armor, or encryption context). Retrying will not help; the data was damaged or is not ours.
//! - [`Error::Unsupported`]: well formed, but made by a newer byok (version, suite or mode this
//!   build does not implement). Upgrading the reader helps.
//! - [`Error::Decrypt`]: authentication failed. Wrong key, wrong encryption context, or the
//!   ciphertext was changed. Deliberately one opaque variant: telling a caller *which* check
//!   failed (commitment or tag, which frame) would hand an attacker an oracle.
//! - [`Error::WrongKey`]: the caller passed a key other than the one the header names. The header
//!   is public, so saying so reveals nothing; it points at a key-lookup bug in the host.
//! - [`Error::Misuse`]: the host called the API wrongly (a frame of the wrong length, a finished
//!   stream used again). Never triggered by untrusted input alone.
//!
//! Messages are lower case without a final period, name the field, what arrived and what was
//! expected, and never contain key material or plaintext.

use core::fmt;

use crate::api_code::ApiCode;
use crate::key_id::KeyId;

/// Every error byok-core returns.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is not well formed; see [`FormatError`].
    Format(FormatError),
    /// The input names a version, suite or mode this build does not implement.
    Unsupported(Unsupported),
    /// Authentication failed: the key, the encryption context or the ciphertext is wrong.
    ///
    /// Which check failed (key commitment or AEAD tag, and in which frame) is not said, on
    /// purpose.
    Decrypt,
    /// The key handed in is not the one the ciphertext's header names.
    WrongKey {
        /// The key id written in the ciphertext's header.
        header: KeyId,
        /// The key id of the key the caller passed.
        provided: KeyId,
    },
    /// The API was used in a way it does not allow; a bug in the calling code.
    Misuse(Misuse),
    /// A scope or key-lifecycle rule refused the operation (paused, revoked, last key, ...).
    Scope(crate::scope::ScopeError),
    /// A condition the code rules out was reached: a bug in byok-core. Please report it.
    Internal(&'static str),
}

impl Error {
    /// The API error code of this error. `WrongKey` (the header names another key than the one
    /// passed) answers like `Decrypt`: to a caller both mean its ciphertext does not open.
    pub const fn api_code(&self) -> ApiCode {
        match self {
            Self::Format(_) => ApiCode::MalformedCiphertext,
            Self::Unsupported(_) => ApiCode::UnsupportedCiphertext,
            Self::Decrypt | Self::WrongKey { .. } => ApiCode::DecryptFailed,
            Self::Misuse(_) => ApiCode::InvalidRequest,
            Self::Scope(e) => e.api_code(),
            Self::Internal(_) => ApiCode::Internal,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(e) => write!(f, "malformed input: {e}"),
            Self::Unsupported(e) => write!(f, "unsupported: {e}"),
            Self::Decrypt => f.write_str(
                "decryption failed: wrong key or encryption context, or the ciphertext was modified",
            ),
            Self::WrongKey { header, provided } => write!(
                f,
                "wrong key: the ciphertext names key {header} but key {provided} was provided \
                 (look the key up by the id in the header)"
            ),
            Self::Misuse(e) => write!(f, "api misuse: {e}"),
            Self::Scope(e) => write!(f, "{e}"),
            Self::Internal(what) => {
                write!(f, "internal error ({what}): this is a bug in byok-core, please report it")
            }
        }
    }
}

impl core::error::Error for Error {}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

impl From<Unsupported> for Error {
    fn from(e: Unsupported) -> Self {
        Self::Unsupported(e)
    }
}

impl From<Misuse> for Error {
    fn from(e: Misuse) -> Self {
        Self::Misuse(e)
    }
}

/// Ways in which input bytes can be malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ended inside `field`.
    Truncated {
        /// The field that was cut short.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        got: usize,
    },
    /// The first four bytes are not `BYOK`.
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// A field holds a value the format forbids in this position.
    InvalidField {
        /// The field.
        field: &'static str,
        /// The value found.
        found: u32,
        /// What the format allows, in words.
        expected: &'static str,
    },
    /// A framed ciphertext ends with an empty final frame after full frames. Encoders never
    /// produce this (the last frame carries the last bytes), so it is refused: one plaintext,
    /// one encoding.
    EmptyFinalFrame,
    /// A framed ciphertext goes on past frame 2^32 - 1, the last frame the format allows.
    TooManyFrames,
    /// The text armor is malformed; see [`ArmorError`].
    Armor(ArmorError),
    /// The ciphertext is of another mode than the operation expects.
    WrongMode {
        /// The mode in the header.
        found: &'static str,
        /// The mode the operation handles.
        expected: &'static str,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { field, needed, got } => {
                write!(f, "{field}: truncated, need {needed} bytes, got {got}")
            }
            Self::BadMagic { found } => write!(
                f,
                "header: magic is {:02x}{:02x}{:02x}{:02x} (expected 42594f4b, \"BYOK\"): \
                 not a byok ciphertext",
                found[0], found[1], found[2], found[3]
            ),
            Self::InvalidField { field, found, expected } => {
                write!(f, "{field}: invalid value {found} (expected {expected})")
            }
            Self::EmptyFinalFrame => f.write_str(
                "body: empty final frame after full frames (expected the last frame to carry the last bytes)",
            ),
            Self::TooManyFrames => f.write_str(
                "body: more than 2^32 frames (expected the stream to end by frame 2^32 - 1)",
            ),
            Self::Armor(e) => write!(f, "armor: {e}"),
            Self::WrongMode { found, expected } => write!(
                f,
                "header: mode is {found} (expected {expected}); use the matching operation"
            ),
        }
    }
}

/// Ways in which the `byok:v1:<base64url>` text armor can be malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArmorError {
    /// The text does not start with `byok:`.
    MissingPrefix,
    /// The armor names a version other than the one in its payload or one this build reads.
    Version,
    /// The payload is not canonical unpadded base64url (RFC 4648 section 5).
    Base64,
}

impl fmt::Display for ArmorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingPrefix => "expected text starting with \"byok:v1:\"",
            Self::Version => {
                "version label is not \"v1\" or does not match the binary header (expected \"byok:v1:\")"
            }
            Self::Base64 => {
                "payload is not canonical unpadded base64url (alphabet A-Z a-z 0-9 - _, no '=')"
            }
        })
    }
}

/// A well-formed input that this build cannot process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsupported {
    /// Format version other than 1.
    Version(u8),
    /// Suite other than 1.
    Suite(u8),
    /// Mode byte other than the defined modes.
    Mode(u8),
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(v) => write!(
                f,
                "header: format version {v} (expected 1); it was written by a newer byok, upgrade to read it"
            ),
            Self::Suite(s) => write!(f, "header: suite {s} (expected 1, AES-256-GCM/HKDF-SHA256)"),
            Self::Mode(m) => write!(
                f,
                "header: mode {m} (expected 1 single, 2 framed or 3 wrapped data key)"
            ),
        }
    }
}

/// Calls the API does not allow. Untrusted input alone never produces these.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// A single-shot plaintext is longer than one AES-GCM invocation may be.
    PlaintextTooLong {
        /// Length given.
        len: u64,
        /// Largest length allowed.
        max: u64,
    },
    /// A non-final frame must be exactly the stream's frame size; a final one at most that.
    FrameLength {
        /// Length given.
        len: usize,
        /// Frame size of the stream.
        frame_size: usize,
    },
    /// The stream was finished, or failed, and takes no more input.
    StreamClosed,
    /// The stream would need more frames than the format allows (2^32).
    TooManyFrames,
    /// The encryption context has two entries with the same key.
    DuplicateContextKey,
    /// The encryption context has 2^32 pairs or more, or a key or value of 2^32 bytes or
    /// more: its encoding has no room for that length.
    ContextTooLarge,
    /// The frame size exponent is outside 8..=24.
    FrameSizeLog2(u8),
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlaintextTooLong { len, max } => write!(
                f,
                "plaintext of {len} bytes exceeds the single-shot limit of {max} bytes; use the framed stream"
            ),
            Self::FrameLength { len, frame_size } => write!(
                f,
                "frame of {len} bytes: non-final frames must be exactly {frame_size} bytes and the final one at most that"
            ),
            Self::StreamClosed => f.write_str("stream already finished or failed; start a new one"),
            Self::TooManyFrames => f.write_str(
                "stream exceeds 2^32 frames; use a larger frame size or split the object",
            ),
            Self::DuplicateContextKey => {
                f.write_str("encryption context has a duplicate key; keys must be unique")
            }
            Self::ContextTooLarge => f.write_str(
                "encryption context too large to encode: at most 2^32 - 1 pairs, keys and values under 4 GiB",
            ),
            Self::FrameSizeLog2(v) => {
                write!(
                    f,
                    "frame size 2^{v}: expected an exponent in 8..=24 (256 B to 16 MiB)"
                )
            }
        }
    }
}
