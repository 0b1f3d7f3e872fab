//! The byte format of byok v1 ciphertexts: the header and the text armor.
//!
//! The normative description is `docs/format.md`; this module implements it. Bodies are laid out
//! by [`crate::envelope`] (single), [`crate::stream`] (framed) and [`crate::datakey`].

pub mod armor;
pub mod header;
mod reader;

pub use header::{FrameSize, HEADER_LEN, Header, Mode, Suite, TAG_LEN};
