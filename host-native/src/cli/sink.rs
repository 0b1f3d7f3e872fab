//! Where the output of `byok encrypt` and `byok decrypt` goes: a file that appears only once
//! everything was written and checked ([`AtomicFile`]), standard output as the bytes come, or
//! standard output once everything was checked ([`Spool`], `decrypt --buffer`).

use std::io::Write;

use super::atomic_file::AtomicFile;
use super::spool::{SPILL_AT, Spool};
use super::{Failure, Io};

/// An open output; [`Self::commit`] once every byte is written and checked. Dropped without a
/// commit (any failure), a file output leaves nothing behind and a held one writes nothing.
pub(super) enum Sink {
    /// `-o FILE`: nothing shows at FILE before the commit.
    File(AtomicFile),
    /// Standard output, each write as it comes (flushed: a frame leaves whole).
    Stdout(std::io::StdoutLock<'static>),
    /// Standard output, nothing before the commit.
    Held(Spool),
}

impl Sink {
    /// The output `io` names: `-o FILE`, else standard output, held until the commit if
    /// `buffer` (a file is always held: `buffer` changes nothing for it).
    pub(super) fn open(io: &Io, buffer: bool) -> Result<Self, Failure> {
        match &io.output {
            Some(path) => Ok(Self::File(AtomicFile::create(path)?)),
            None if buffer => Ok(Self::Held(Spool::new(SPILL_AT))),
            None => Ok(Self::Stdout(std::io::stdout().lock())),
        }
    }

    /// Appends `bytes`.
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match self {
            Self::File(f) => f.write(bytes),
            // Flushed at once: stdout is line-buffered, and binary output would otherwise
            // leave up to a buffer's worth of each frame behind until the next write.
            Self::Stdout(out) => out
                .write_all(bytes)
                .and_then(|()| out.flush())
                .map_err(written),
            Self::Held(spool) => spool.write(bytes).map_err(|e| {
                Failure::usage(format!("cannot hold the output back (--buffer): {e}"))
            }),
        }
    }

    /// Ends the output: the file is renamed into place; held bytes are copied to standard
    /// output; standard output is flushed.
    pub(super) fn commit(self) -> Result<(), Failure> {
        match self {
            Self::File(f) => f.commit(),
            Self::Stdout(mut out) => out.flush().map_err(written),
            Self::Held(spool) => spool
                .copy_to(&mut std::io::stdout().lock())
                .map_err(written),
        }
    }
}

fn written(e: std::io::Error) -> Failure {
    Failure::usage(format!("cannot write output: {e}"))
}
