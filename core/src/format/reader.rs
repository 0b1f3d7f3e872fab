//! A bounds-checked cursor over untrusted bytes: every read names its field, so a short input
//! becomes `salt: truncated, need 32 bytes, got 5`, never an index panic.

use crate::error::FormatError;

/// Reads fields front to back from a byte slice.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next `n` bytes, as field `field`.
    pub(crate) fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], FormatError> {
        match self.rest.split_at_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(head)
            }
            None => Err(FormatError::Truncated {
                field,
                needed: n,
                got: self.rest.len(),
            }),
        }
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    /// One byte.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        let [b] = self.array::<1>(field)?;
        Ok(b)
    }

    /// A big-endian u32.
    pub(crate) fn u32_be(&mut self, field: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.array::<4>(field)?))
    }

    /// Everything not read yet.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }
}
