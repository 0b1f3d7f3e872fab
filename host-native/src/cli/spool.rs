//! `byok decrypt --buffer` to standard output: the plaintext is held until the whole stream has
//! authenticated, then copied out, so a consumer of stdout never sees a prefix of a stream that
//! turns out truncated or tampered.
//!
//! Up to [`SPILL_AT`] bytes stay in memory, in a buffer wiped when it grows and when it is
//! dropped. Beyond that the bytes go to an unnamed temporary file in `$TMPDIR` (`tempfile`'s
//! `tempfile()`: `O_TMPFILE` on Linux, elsewhere created with `O_EXCL` and mode 0600 and
//! unlinked at once), so no other process can open it by name and nothing is left behind when
//! byok exits, however it exits. The file's blocks are freed, not overwritten, so what goes there
//! is sealed first: byok's own framed format under a key drawn for this spool alone and held
//! only in memory, so the disk holds ciphertext whose key is gone when byok exits.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use byok_core::format::{HEADER_LEN, Header};
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{Context, FrameSize, KeyId, ScopeId, ScopeKey};
use zeroize::{Zeroize, Zeroizing};

/// Bytes held in memory before the rest spills to a temporary file.
pub(super) const SPILL_AT: usize = 64 << 20;

/// Bytes held back: in memory up to a limit, then sealed in an unnamed temporary file.
pub(super) struct Spool {
    memory: Zeroizing<Vec<u8>>,
    file: Option<Box<Spill>>,
    limit: usize,
}

/// The temporary file and the throwaway key its bytes are sealed under.
struct Spill {
    file: File,
    key: ScopeKey,
    seal: StreamEncryptor,
    /// Sealed bytes on their way to the file (ciphertext: not wiped).
    sealed: Vec<u8>,
}

/// The spool key's id: it names nothing; the header carries it and the check compares it.
const SPOOL_KEY: KeyId = KeyId::new(ScopeId::from_bytes([0; 16]), 1);

impl Spill {
    fn start(held: &[u8]) -> io::Result<Self> {
        let mut rng = rand::rng();
        let key = ScopeKey::random(SPOOL_KEY, &mut rng);
        let seal = StreamEncryptor::new(&key, &Context::new(), FrameSize::DEFAULT, &mut rng)
            .map_err(io::Error::other)?;
        let mut file = tempfile::tempfile()?;
        file.write_all(seal.header())?;
        let mut spill = Self {
            file,
            key,
            seal,
            sealed: Vec::new(),
        };
        spill.write(held)?;
        Ok(spill)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sealed.clear();
        self.seal
            .update(bytes, &mut self.sealed)
            .map_err(io::Error::other)?;
        self.file.write_all(&self.sealed)
    }

    /// Seals the end, reads the file back from its start, opens it and writes the plaintext
    /// to `out`, through buffers sized once and wiped.
    fn copy_to(self, out: &mut impl Write) -> io::Result<()> {
        let Self {
            mut file,
            key,
            seal,
            mut sealed,
        } = self;
        sealed.clear();
        seal.finish(&mut sealed).map_err(io::Error::other)?;
        file.write_all(&sealed)?;
        file.rewind()?;
        let mut header = [0u8; HEADER_LEN];
        file.read_exact(&mut header)?;
        let (header, _) = Header::parse(&header).map_err(io::Error::other)?;
        let mut open: StreamDecryptor =
            StreamDecryptor::new(&key, &Context::new(), &header).map_err(io::Error::other)?;
        let chunk = 1 << 16;
        let mut buf = vec![0u8; chunk];
        // Room for a chunk's plaintext and a frame held back: never reallocated.
        let mut plain = Zeroizing::new(Vec::with_capacity(chunk + 2 * open.frame_size()));
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            plain.clear();
            open.update(buf.get(..n).unwrap_or_default(), &mut plain)
                .map_err(io::Error::other)?;
            out.write_all(&plain)?;
        }
        plain.clear();
        open.finish(&mut plain).map_err(io::Error::other)?;
        out.write_all(&plain)
    }
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
            return f.write(bytes);
        }
        let needed = self.memory.len().saturating_add(bytes.len());
        if needed > self.limit {
            let mut f = Box::new(Spill::start(&self.memory)?);
            f.write(bytes)?;
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
        match self.file.take() {
            None => out.write_all(&self.memory)?,
            Some(f) => f.copy_to(out)?,
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

    /// What reaches the disk is sealed: no run of the plaintext is in the file, and it still
    /// comes back whole and in order.
    #[test]
    fn a_spilled_file_holds_no_plaintext() {
        let all = bytes(200_000);
        let mut spool = Spool::new(1000);
        spool.write(&all[..900]).unwrap();
        spool.write(&all[900..]).unwrap();
        let spill = spool.file.as_mut().expect("spilled");
        spill.file.rewind().unwrap();
        let mut on_disk = Vec::new();
        spill.file.read_to_end(&mut on_disk).unwrap();
        spill.file.seek(io::SeekFrom::End(0)).unwrap();
        assert!(on_disk.len() > 190_000, "{}", on_disk.len());
        let run = &all[1000..1032];
        assert!(
            !on_disk.windows(run.len()).any(|w| w == run),
            "plaintext on disk"
        );
        let mut out = Vec::new();
        spool.copy_to(&mut out).unwrap();
        assert_eq!(out, all);
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
