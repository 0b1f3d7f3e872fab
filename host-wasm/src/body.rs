//! Reading a body whole when it may hold secrets (a lease answer holds the scope's keys, a
//! request to encrypt holds a plaintext), as the `wasi:http` component reads them.
//!
//! Why not `std::io::Read` over a `wasi:io` input stream: `wasip2`'s implementation asks
//! `blocking-read` for a chunk, which arrives as a buffer of its own, copies it out and frees
//! it unwiped. Here each chunk is wiped once copied, and the buffer it is copied into grows
//! only through core's `extend_wiped`. Kept apart from `wasi:io` so that `wipe-check` can
//! watch it natively.

use byok_core::secret::extend_wiped;
use zeroize::Zeroizing;

/// Why a body was not read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// It passed the limit; what was read is wiped.
    TooLarge,
    /// The stream failed (the reason, as the host gave it); what was read is wiped.
    Failed(String),
}

/// Reads a body to its end into one buffer of first `capacity` bytes, wiped when dropped.
/// `next` gives each chunk as a buffer of its own, or `None` at the end; each is wiped once
/// copied. A body over `limit` bytes is [`ReadError::TooLarge`].
pub fn read_wiped(
    mut next: impl FnMut() -> Result<Option<Vec<u8>>, String>,
    capacity: usize,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity.min(limit)));
    loop {
        let Some(chunk) = next().map_err(ReadError::Failed)? else {
            return Ok(bytes);
        };
        let chunk = Zeroizing::new(chunk);
        if bytes.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge);
        }
        extend_wiped(&mut bytes, &chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(pieces: &[&[u8]]) -> impl FnMut() -> Result<Option<Vec<u8>>, String> {
        let mut pieces: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        pieces.reverse();
        move || Ok(pieces.pop())
    }

    #[test]
    fn reads_every_chunk_in_order_up_to_the_limit() {
        let body = read_wiped(chunks(&[b"ab", b"", b"cde"]), 1, 5).unwrap();
        assert_eq!(&body[..], b"abcde");
        assert_eq!(
            read_wiped(chunks(&[b"ab", b"cdef"]), 0, 5),
            Err(ReadError::TooLarge)
        );
        assert_eq!(&read_wiped(chunks(&[]), 0, 5).unwrap()[..], b"");
    }

    #[test]
    fn a_failed_stream_is_an_error_not_a_short_body() {
        let mut n = 0;
        let failing = move || {
            n += 1;
            if n == 1 {
                Ok(Some(b"ab".to_vec()))
            } else {
                Err("connection reset".to_owned())
            }
        };
        assert_eq!(
            read_wiped(failing, 0, 100),
            Err(ReadError::Failed("connection reset".into()))
        );
    }
}
