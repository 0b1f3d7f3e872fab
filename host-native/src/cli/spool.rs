//! `byok decrypt --buffer` to standard output: the plaintext is held until the whole stream has
//! authenticated, then copied out, so a consumer of stdout never sees a prefix of a stream that
//! turns out truncated or tampered.
//!
//! Up to [`SPILL_AT`] bytes stay in memory, in a buffer wiped when it grows and when it is
//! dropped. Beyond that the bytes go to an unnamed temporary file in `$TMPDIR` (`tempfile`'s
//! `tempfile()`: `O_TMPFILE` on Linux, elsewhere created with `O_EXCL` and mode 0600 and
//! unlinked at once), so no other process can open it by name and nothing is left behind when
//! byok exits, however it exits. Its blocks are freed, not overwritten: point `TMPDIR` at a
//! tmpfs to keep plaintext off disks.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use zeroize::{Zeroize, Zeroizing};

/// Bytes held in memory before the rest spills to a temporary file.
pub(super) const SPILL_AT: usize = 64 << 20;

/// Bytes held back: in memory up to a limit, then in an unnamed temporary file.
pub(super) struct Spool {
    memory: Zeroizing<Vec<u8>>,
    file: Option<File>,
    limit: usize,
}

impl Spool {
    /// An empty spool that keeps up to `limit` bytes in memory.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            memory: Zeroizing::new(Vec::new()),
            file: None,
            limit,
        }
    }

    /// Appends `bytes`.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(f) = &mut self.file {
            return f.write_all(bytes);
        }
        let needed = self.memory.len().saturating_add(bytes.len());
        if needed > self.limit {
            let mut f = tempfile::tempfile()?;
            f.write_all(&self.memory)?;
            f.write_all(bytes)?;
            self.memory.zeroize();
            self.file = Some(f);
            return Ok(());
        }
        if needed > self.memory.capacity() {
            // Grown by hand: a `Vec` that reallocates frees its old buffer unwiped.
            let capacity = needed
                .max(self.memory.capacity().saturating_mul(2))
                .min(self.limit);
            let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
            grown.extend_from_slice(&self.memory);
            self.memory = grown;
        }
        self.memory.extend_from_slice(bytes);
        Ok(())
    }

    /// Whether the bytes went to a temporary file.
    #[cfg(test)]
    fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Copies every byte held to `out`, in order, and flushes it.
    pub(super) fn copy_to(mut self, out: &mut impl Write) -> io::Result<()> {
        match &mut self.file {
            None => out.write_all(&self.memory)?,
            Some(f) => {
                f.rewind()?;
                let mut buf = Zeroizing::new(vec![0u8; 1 << 16]);
                loop {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(buf.get(..n).unwrap_or_default())?;
                }
            }
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 253) as u8).collect()
    }

    fn through(limit: usize, chunks: &[usize]) -> (Vec<u8>, Vec<u8>, bool) {
        let all = bytes(chunks.iter().sum());
        let mut spool = Spool::new(limit);
        let mut at = 0;
        for len in chunks {
            spool.write(&all[at..at + len]).unwrap();
            at += len;
        }
        let spilled = spool.spilled();
        let mut out = Vec::new();
        spool.copy_to(&mut out).unwrap();
        (all, out, spilled)
    }

    #[test]
    fn small_output_stays_in_memory() {
        let (all, out, spilled) = through(1000, &[1, 10, 300, 689]);
        assert_eq!(out, all);
        assert!(!spilled);
    }

    #[test]
    fn output_over_the_limit_spills_to_a_file_and_comes_back_in_order() {
        let (all, out, spilled) = through(1000, &[600, 400, 1, 70_000, 3]);
        assert_eq!(out, all);
        assert!(spilled);
        // A first write over the limit spills at once.
        let (all, out, spilled) = through(10, &[11]);
        assert_eq!(out, all);
        assert!(spilled);
    }

    #[test]
    fn nothing_held_is_nothing_written() {
        let (_, out, spilled) = through(10, &[]);
        assert!(out.is_empty() && !spilled);
    }

    #[test]
    fn memory_never_grows_past_the_limit() {
        let mut spool = Spool::new(1000);
        for _ in 0..9 {
            spool.write(&[1; 111]).unwrap();
            assert!(
                spool.memory.capacity() <= 1000,
                "{}",
                spool.memory.capacity()
            );
        }
    }
}
