//! An output file (`-o`) that appears complete or not at all.
//!
//! The bytes go to a temporary file in the target's own directory, so the final step is one
//! `rename` on one filesystem: a reader of the target sees the old file or the whole new one,
//! never a prefix. A decrypt that fails authentication half way (or any other failure, or a
//! panic) drops the temporary file, which removes it: no partial plaintext stays on disk.
//!
//! The temporary file is made by `tempfile` with `O_CREAT | O_EXCL` and mode 0600. `O_EXCL`
//! refuses any existing path, a symlink included (POSIX: with `O_CREAT | O_EXCL` a symlink is
//! never followed), so another user who plants a link at the name cannot make byok write through
//! it; the name also carries random characters. Mode 0600 is set at creation, not after, so no
//! other user can open the file while plaintext is written to it. The rename keeps the mode: every
//! output file of the CLI is 0600 (owner read and write), whatever the umask, and an existing file
//! at the target is replaced (its mode is not kept).
//!
//! Ctrl-C and `kill` (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM) would end the
//! process without running destructors:
//! the temporary files open are registered ([`remove_pending`], called by the CLI's signal
//! task before it exits), so those signals leave none behind either. Only `kill -9` or a power
//! cut between creation and rename can leave a `.NAME.*.byok-tmp` file (0600) beside the
//! target; no error does.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::Failure;

/// Random characters in a temporary file's name.
const RAND_LEN: usize = 8;

/// A file being written at a temporary path beside `target`; [`Self::commit`] renames it onto
/// `target`, and dropping it uncommitted removes it.
pub(super) struct AtomicFile {
    target: PathBuf,
    temp: NamedTempFile,
    _pending: Pending,
}

/// The temporary files being written now, for [`remove_pending`]. Held while one is renamed
/// into place or removed, so that a signal's cleanup and a commit never interleave: either the
/// output was committed whole, or its temporary file is removed.
static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A temporary file's place in [`PENDING`], given up when it is dropped (committed or not).
struct Pending(PathBuf);

impl Drop for Pending {
    fn drop(&mut self) {
        pending().retain(|p| p != &self.0);
    }
}

/// Removes every temporary output file being written: called by the CLI when a signal ends
/// it, before it exits (no destructor runs then). Holds the list until the process exits, so
/// no commit renames a file after its removal was decided.
pub(super) fn remove_pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    let list = pending();
    for p in list.iter() {
        let _ = std::fs::remove_file(p);
    }
    list
}

impl AtomicFile {
    /// Starts writing `target`.
    pub(super) fn create(target: &Path) -> Result<Self, Failure> {
        let name = target.file_name().ok_or_else(|| {
            Failure::usage(format!(
                "--output {}: not a file name (name the file to write)",
                target.display()
            ))
        })?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // The registry held from before the file exists: a signal's cleanup never runs
        // between its creation and its registration.
        let mut list = pending();
        let temp = temp_in(dir, name, RAND_LEN).map_err(|e| {
            Failure::usage(format!(
                "cannot create a temporary file in {} for {}: {e}",
                dir.display(),
                target.display()
            ))
        })?;
        let path = temp.path().to_owned();
        list.push(path.clone());
        drop(list);
        Ok(Self {
            target: target.to_owned(),
            temp,
            _pending: Pending(path),
        })
    }

    /// Appends `bytes`.
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.temp.write_all(bytes).map_err(|e| {
            Failure::usage(format!("cannot write {}: {e}", self.temp.path().display()))
        })
    }

    /// Flushes the file to disk, then renames it onto the target: the target now holds every
    /// byte written, or (on error) is untouched and the temporary file is gone.
    pub(super) fn commit(self) -> Result<(), Failure> {
        let Self {
            target,
            temp,
            _pending,
        } = self;
        // On disk before the rename, so a crash right after it cannot leave an empty target.
        temp.as_file()
            .sync_all()
            .map_err(|e| Failure::usage(format!("cannot write {}: {e}", temp.path().display())))?;
        // Renamed with the list held: a signal's cleanup comes wholly before (the file is
        // gone, the rename fails, the process is exiting) or after (nothing left to remove).
        let list = pending();
        let persisted = temp.persist(&target);
        drop(list);
        persisted.map_err(|e| {
            Failure::usage(format!(
                "cannot move output into place at {}: {}",
                target.display(),
                e.error
            ))
        })?;
        Ok(())
    }
}

/// A new, empty file `.NAME.<rand_len random characters>.byok-tmp` in `dir`, created with
/// `O_CREAT | O_EXCL` and mode 0600. With `rand_len` 0 the name is fixed and an existing path
/// there is an `AlreadyExists` error (tests use that to plant a symlink at the exact name).
fn temp_in(dir: &Path, name: &OsStr, rand_len: usize) -> io::Result<NamedTempFile> {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".byok-tmp")
        .rand_bytes(rand_len)
        .tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("byok-atomic-{name}"))
            .tempdir()
            .unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_target_appears_only_on_commit() {
        let d = dir("commit");
        let target = d.path().join("out.bin");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write(b"hello ").unwrap();
        f.write(b"world").unwrap();
        assert!(!target.exists());
        let temp = names(d.path());
        assert_eq!(temp.len(), 1);
        assert!(
            temp[0].starts_with(".out.bin.") && temp[0].ends_with(".byok-tmp"),
            "{temp:?}"
        );
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
        assert_eq!(names(d.path()), ["out.bin"]);
    }

    #[test]
    fn dropping_it_uncommitted_leaves_nothing_and_keeps_the_old_target() {
        let d = dir("drop");
        let target = d.path().join("out.bin");
        std::fs::write(&target, b"old").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write(b"partial plaintext").unwrap();
        drop(f);
        assert_eq!(names(d.path()), ["out.bin"]);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
    }

    #[cfg(unix)]
    #[test]
    fn the_output_is_0600_whatever_the_old_file_was() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("mode");
        let target = d.path().join("out.bin");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write(b"secret").unwrap();
        f.commit().unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        let d = dir("symlink");
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let planted = d.path().join(".out.bin..byok-tmp");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let err = temp_in(d.path(), OsStr::new("out.bin"), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        // A dangling link is not followed either (it would create the file it names).
        let missing = d.path().join("made-through-the-link");
        std::fs::remove_file(&planted).unwrap();
        std::os::unix::fs::symlink(&missing, &planted).unwrap();
        let err = temp_in(d.path(), OsStr::new("out.bin"), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(!missing.exists());
    }

    #[test]
    fn a_path_with_no_file_name_is_a_usage_error() {
        let err = AtomicFile::create(Path::new("..")).err().unwrap();
        assert_eq!(err.code, 2);
        assert!(err.message.contains("not a file name"), "{}", err.message);
    }
}
