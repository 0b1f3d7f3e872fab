//! Where the output of `byok encrypt` and `byok decrypt` goes: a file that appears only once
//! everything was written and checked ([`AtomicFile`]), or standard output as the bytes come.

use std::io::Write;

use super::atomic_file::AtomicFile;
use super::{Failure, Io};

/// An open output; [`Self::commit`] once every byte is written and checked. Dropped without a
/// commit (any failure), a file output leaves nothing behind.
pub(super) enum Sink {
    /// `-o FILE`: nothing shows at FILE before the commit.
    File(AtomicFile),
    /// Standard output, each write as it comes.
    Stdout(std::io::StdoutLock<'static>),
}

impl Sink {
    /// The output `io` names: `-o FILE`, else standard output.
    pub(super) fn open(io: &Io) -> Result<Self, Failure> {
        match &io.output {
            Some(path) => Ok(Self::File(AtomicFile::create(path)?)),
            None => Ok(Self::Stdout(std::io::stdout().lock())),
        }
    }

    /// Appends `bytes`.
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        match self {
            Self::File(f) => f.write(bytes),
            Self::Stdout(out) => out
                .write_all(bytes)
                .map_err(|e| Failure::usage(format!("cannot write output: {e}"))),
        }
    }

    /// Ends the output: the file is renamed into place; standard output is flushed.
    pub(super) fn commit(self) -> Result<(), Failure> {
        match self {
            Self::File(f) => f.commit(),
            Self::Stdout(mut out) => out
                .flush()
                .map_err(|e| Failure::usage(format!("cannot write output: {e}"))),
        }
    }
}
