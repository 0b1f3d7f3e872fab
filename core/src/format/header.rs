//! The 92-byte header every byok v1 ciphertext starts with (`docs/format.md`, section 2).
//!
//! ```text
//! offset len field
//!      0   4 magic        "BYOK"
//!      4   1 version      1
//!      5   1 suite        1 = AES-256-GCM, HKDF-SHA256, key commitment
//!      6   1 mode         1 = single, 2 = framed, 3 = wrapped data key
//!      7   1 frame_log2   framed: 8..=24 (frame = 2^n plaintext bytes); otherwise 0
//!      8  16 scope id
//!     24   4 key version  u32 big endian
//!     28  32 salt         random, fresh per message
//!     60  32 commitment   HKDF output, checked in constant time before any decryption
//! ```
//!
//! Bytes 6..60 are the key-derivation input (`info`); all 92 bytes are AEAD associated data.
//! Bytes 0..6 (magic, version, suite) are left out of `info`: the parser has already required
//! their only valid values, and the HKDF-Extract salt names version and suite. Leaving them out
//! makes `info` 54 bytes, so the first HKDF-Expand block is one SHA-256 compression, not two.

use crate::error::{Error, FormatError, Misuse, Unsupported};
use crate::format::reader::Reader;
use crate::key_id::{KeyId, ScopeId};

/// `BYOK` in ASCII.
pub const MAGIC: [u8; 4] = *b"BYOK";
/// The only format version this build reads and writes.
pub const VERSION: u8 = 1;
/// Length of the encoded header.
pub const HEADER_LEN: usize = 92;
/// Where the key-derivation `info` sits in the header: mode through salt.
pub const KDF_INFO: core::ops::Range<usize> = 6..60;
/// Length of the key-derivation `info`.
pub const KDF_INFO_LEN: usize = 54;
/// Length of the per-message salt.
pub const SALT_LEN: usize = 32;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the AES-GCM tag that ends every sealed unit (message, frame, wrapped key).
pub const TAG_LEN: usize = 16;

/// Algorithms of a ciphertext. Only suite 1 exists; the byte is there so that a future suite
/// can be added without a new format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM with a per-message key and a 256-bit key commitment, both from
    /// HKDF-SHA256 of the scope key.
    Aes256GcmHkdfSha256 = 1,
}

/// How the body after the header is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// One AES-GCM message: ciphertext then tag.
    Single,
    /// Fixed-size frames of `2^log2` plaintext bytes, each sealed on its own; see
    /// [`crate::stream`].
    Framed(FrameSize),
    /// A 32-byte data key sealed as one message; see [`crate::datakey`].
    WrappedKey,
}

impl Mode {
    const fn byte(self) -> u8 {
        match self {
            Self::Single => 1,
            Self::Framed(_) => 2,
            Self::WrappedKey => 3,
        }
    }

    /// The mode's name, as error messages print it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Framed(_) => "framed",
            Self::WrappedKey => "wrapped data key",
        }
    }
}

/// The plaintext size of each frame of a framed ciphertext: a power of two from 256 B to 16 MiB.
///
/// Powers of two keep the header at one byte and make every size valid by construction; the
/// upper bound caps what a hostile header can make a reader buffer (one frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameSize(u8);

impl FrameSize {
    /// Smallest exponent allowed (256-byte frames).
    pub const MIN_LOG2: u8 = 8;
    /// Largest exponent allowed (16 MiB frames).
    pub const MAX_LOG2: u8 = 24;
    /// The default, 64 KiB: frame overhead (16-byte tag) is 0.02 %, and a reader buffers little.
    pub const DEFAULT: Self = Self(16);

    /// Frames of `2^log2` bytes.
    pub const fn from_log2(log2: u8) -> Result<Self, Misuse> {
        if log2 >= Self::MIN_LOG2 && log2 <= Self::MAX_LOG2 {
            Ok(Self(log2))
        } else {
            Err(Misuse::FrameSizeLog2(log2))
        }
    }

    /// The exponent.
    pub const fn log2(self) -> u8 {
        self.0
    }

    /// Plaintext bytes per frame.
    pub const fn bytes(self) -> usize {
        1usize << self.0
    }
}

impl Default for FrameSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The algorithm suite.
    pub suite: Suite,
    /// Body layout.
    pub mode: Mode,
    /// The scope key (scope and version) the message was sealed under.
    pub key: KeyId,
    /// Random per-message salt.
    pub salt: [u8; SALT_LEN],
    /// Key commitment.
    pub commitment: [u8; COMMITMENT_LEN],
}

impl Header {
    /// Parses the header at the start of `bytes` and returns it with the bytes after it.
    ///
    /// Checks each field in offset order as soon as its bytes are present, and stops at the
    /// first that is missing or invalid: magic, version, suite, mode, frame size, then the
    /// length of each remaining field. So a truncated input whose present bytes already show an
    /// unknown version, suite or mode is [`Error::Unsupported`], not truncated
    /// (`docs/format.md`, sections 2 and 8). A host calls this first to learn which key to load.
    pub fn parse(bytes: &[u8]) -> Result<(Self, &[u8]), Error> {
        let mut r = Reader::new(bytes);
        let magic = match bytes.get(..4) {
            Some(_) => r.array::<4>("header.magic")?,
            None => {
                // Shorter than the magic: if what there is matches, it is a truncated byok
                // header; otherwise it is not ours at all.
                if MAGIC.starts_with(bytes) {
                    return Err(FormatError::Truncated {
                        field: "header.magic",
                        needed: 4,
                        got: bytes.len(),
                    }
                    .into());
                }
                let mut found = [0u8; 4];
                if let Some(prefix) = found.get_mut(..bytes.len()) {
                    prefix.copy_from_slice(bytes);
                }
                return Err(FormatError::BadMagic { found }.into());
            }
        };
        if magic != MAGIC {
            return Err(FormatError::BadMagic { found: magic }.into());
        }
        let version = r.u8("header.version")?;
        if version != VERSION {
            return Err(Unsupported::Version(version).into());
        }
        let suite = match r.u8("header.suite")? {
            1 => Suite::Aes256GcmHkdfSha256,
            other => return Err(Unsupported::Suite(other).into()),
        };
        // The mode is judged as soon as its byte is here, before frame_log2 is read: a
        // truncated input whose mode byte is unknown is unsupported, not truncated
        // (docs/format.md, section 8: each field is checked as soon as it is present).
        let mode_byte = r.u8("header.mode")?;
        if !matches!(mode_byte, 1..=3) {
            return Err(Unsupported::Mode(mode_byte).into());
        }
        let frame_log2 = r.u8("header.frame_log2")?;
        let mode = if mode_byte == 2 {
            Mode::Framed(FrameSize::from_log2(frame_log2).map_err(|_| {
                FormatError::InvalidField {
                    field: "header.frame_log2",
                    found: frame_log2.into(),
                    expected: "8..=24 in framed mode",
                }
            })?)
        } else if frame_log2 != 0 {
            return Err(FormatError::InvalidField {
                field: "header.frame_log2",
                found: frame_log2.into(),
                expected: "0 outside framed mode",
            }
            .into());
        } else if mode_byte == 1 {
            Mode::Single
        } else {
            Mode::WrappedKey
        };
        let scope = ScopeId::from_bytes(r.array::<16>("header.scope_id")?);
        let version = r.u32_be("header.key_version")?;
        let salt = r.array::<SALT_LEN>("header.salt")?;
        let commitment = r.array::<COMMITMENT_LEN>("header.commitment")?;
        let header = Self {
            suite,
            mode,
            key: KeyId::new(scope, version),
            salt,
            commitment,
        };
        Ok((header, r.rest()))
    }

    /// The 92 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        self.encode_with_info(&self.kdf_info())
    }

    /// [`Self::encode`] with `info` already computed by [`Self::kdf_info`] (the sealing path
    /// needs it for the key derivation first).
    pub(crate) fn encode_with_info(&self, info_bytes: &[u8; KDF_INFO_LEN]) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (prefix, rest) = out.split_at_mut(KDF_INFO.start);
        let (info, commitment) = rest.split_at_mut(KDF_INFO_LEN);
        prefix.copy_from_slice(&[
            MAGIC[0],
            MAGIC[1],
            MAGIC[2],
            MAGIC[3],
            VERSION,
            self.suite as u8,
        ]);
        info.copy_from_slice(info_bytes);
        commitment.copy_from_slice(&self.commitment);
        out
    }

    /// Bytes 6..60 of the header: the key-derivation `info`. Everything a reader learns from
    /// the header before it checks the commitment (beyond the fixed magic, version and suite),
    /// so that changing any of it changes the key.
    pub fn kdf_info(&self) -> [u8; KDF_INFO_LEN] {
        let mut out = [0u8; KDF_INFO_LEN];
        let frame_log2 = match self.mode {
            Mode::Framed(size) => size.log2(),
            Mode::Single | Mode::WrappedKey => 0,
        };
        let fields: [&[u8]; 5] = [
            &[self.mode.byte()],
            &[frame_log2],
            self.key.scope.as_bytes(),
            &self.key.version.to_be_bytes(),
            &self.salt,
        ];
        let mut pos = 0;
        for field in fields {
            let end = pos + field.len();
            if let Some(dst) = out.get_mut(pos..end) {
                dst.copy_from_slice(field);
            }
            pos = end;
        }
        debug_assert_eq!(pos, KDF_INFO_LEN);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            suite: Suite::Aes256GcmHkdfSha256,
            mode: Mode::Framed(FrameSize::DEFAULT),
            key: KeyId::new(ScopeId::from_bytes([7; 16]), 0x0102_0304),
            salt: [0xaa; 32],
            commitment: [0xcc; 32],
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let h = sample();
        let bytes = h.encode();
        assert_eq!(&bytes[..8], b"BYOK\x01\x01\x02\x10");
        assert_eq!(&bytes[24..28], &[1, 2, 3, 4]);
        let (parsed, rest) = Header::parse(&bytes).unwrap();
        assert_eq!(parsed, h);
        assert!(rest.is_empty());
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = sample().encode();
        for len in 0..HEADER_LEN {
            let err = Header::parse(&bytes[..len]).unwrap_err();
            assert!(
                matches!(err, Error::Format(FormatError::Truncated { .. })),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn foreign_bytes_are_bad_magic() {
        assert_eq!(
            Header::parse(b"PK\x03").unwrap_err(),
            Error::Format(FormatError::BadMagic {
                found: *b"PK\x03\0"
            })
        );
    }

    #[test]
    fn unknown_version_suite_mode_are_unsupported() {
        let mut b = sample().encode();
        b[4] = 2;
        assert_eq!(
            Header::parse(&b).unwrap_err(),
            Error::Unsupported(Unsupported::Version(2))
        );
        let mut b = sample().encode();
        b[5] = 9;
        assert_eq!(
            Header::parse(&b).unwrap_err(),
            Error::Unsupported(Unsupported::Suite(9))
        );
        let mut b = sample().encode();
        b[6] = 0;
        assert_eq!(
            Header::parse(&b).unwrap_err(),
            Error::Unsupported(Unsupported::Mode(0))
        );
    }

    /// A field is judged as soon as its bytes are present: a prefix that already shows an
    /// unknown version, suite or mode is unsupported, whatever is missing after it.
    #[test]
    fn a_truncated_header_is_judged_by_the_bytes_present() {
        let cases: [(&[u8], Error); 7] = [
            (b"BYOK\x02", Error::Unsupported(Unsupported::Version(2))),
            (b"BYOK\x02\x01", Error::Unsupported(Unsupported::Version(2))),
            (b"BYOK\x01\x02", Error::Unsupported(Unsupported::Suite(2))),
            (
                b"BYOK\x01\x01\x04",
                Error::Unsupported(Unsupported::Mode(4)),
            ),
            (
                b"BYOK\x01\x01\x00",
                Error::Unsupported(Unsupported::Mode(0)),
            ),
            (
                b"BYOK\x01\x01\x01",
                Error::Format(FormatError::Truncated {
                    field: "header.frame_log2",
                    needed: 1,
                    got: 0,
                }),
            ),
            (
                b"XYOK\x02",
                Error::Format(FormatError::BadMagic { found: *b"XYOK" }),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(Header::parse(bytes).unwrap_err(), expected, "{bytes:02x?}");
        }
        // An unknown mode wins over a bad frame size after it.
        let mut b = sample().encode();
        b[6] = 4;
        b[7] = 7;
        assert_eq!(
            Header::parse(&b).unwrap_err(),
            Error::Unsupported(Unsupported::Mode(4))
        );
    }

    #[test]
    fn frame_size_out_of_range_is_malformed() {
        for bad in [0u8, 7, 25, 255] {
            let mut b = sample().encode();
            b[7] = bad;
            assert!(matches!(
                Header::parse(&b).unwrap_err(),
                Error::Format(FormatError::InvalidField {
                    field: "header.frame_log2",
                    ..
                })
            ));
        }
        let mut b = sample().encode();
        b[6] = 1;
        b[7] = 16;
        assert!(matches!(Header::parse(&b).unwrap_err(), Error::Format(_)));
    }
}
