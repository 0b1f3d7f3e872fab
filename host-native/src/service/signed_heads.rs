//! The newest checkpoint head (size, root) this process signed or checked, per org: the bar a
//! tree read from storage must extend before byok signs it again (`audit_log.rs`).
//!
//! Held in memory, and with a data directory also in a file there (`audit-heads`), appended to
//! and synced before the checkpoint it records is committed. Someone who can write only the
//! database (a PostgreSQL server, a backup restored over it) could otherwise rewrite rows and
//! tree, delete every checkpoint row after the one a customer kept, and, once byok restarts
//! with nothing but those rows to go by, get the rewrite signed. With the file, a restart keeps
//! the bar. One line per head, `<org> <size> <root>`; the newest per org wins on reading, and
//! the file is rewritten with one line per org when it has grown to several times that.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64ct::{Base64, Encoding};
use byok_core::ScopeId;
use byok_core::audit_log::Hash;

/// The heads, and the file that keeps them.
pub(super) struct SignedHeads(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    heads: HashMap<ScopeId, (u64, Hash)>,
    journal: Option<Journal>,
    /// Held while the file is kept: one process per file (`audit-heads.lock`).
    _lock: Option<std::fs::File>,
}

struct Journal {
    path: PathBuf,
    file: std::fs::File,
    /// Lines in the file now.
    lines: usize,
}

impl Default for SignedHeads {
    fn default() -> Self {
        Self(Mutex::new(Inner::default()))
    }
}

fn line(org: ScopeId, size: u64, root: &Hash) -> String {
    format!("{org} {size} {}\n", Base64::encode_string(&root.0))
}

/// Parses one line of the file.
fn parse(text: &str) -> Option<(ScopeId, u64, Hash)> {
    let mut parts = text.split(' ');
    let org = ScopeId::parse_hex(parts.next()?)?;
    let size = parts.next()?.parse().ok()?;
    let root = Base64::decode_vec(parts.next()?).ok()?;
    let root = Hash(<[u8; 32]>::try_from(root.as_slice()).ok()?);
    parts.next().is_none().then_some((org, size, root))
}

/// Writes `heads` to `path` in one step (a temporary file beside it, of a random name and mode
/// 0600 (`tempfile`), synced, renamed over it, the directory synced), and opens it for
/// appending.
fn rewrite(path: &Path, heads: &HashMap<ScopeId, (u64, Hash)>) -> std::io::Result<Journal> {
    let mut sorted: Vec<_> = heads.iter().collect();
    sorted.sort_by_key(|(org, _)| **org);
    let text: String = sorted
        .iter()
        .map(|(org, (size, root))| line(**org, *size, root))
        .collect();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(Journal {
        path: path.to_owned(),
        file: appending(path)?,
        lines: sorted.len(),
    })
}

/// `path` opened to append, created with mode 0600 if it is not there.
fn appending(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

impl SignedHeads {
    /// The heads kept in `path` (none if it does not exist yet), kept there from now on. A
    /// line that does not read is refused, naming the file: the protection it gives would be
    /// lost without a word.
    ///
    /// One process keeps a file: replicas over PostgreSQL that share a data directory would
    /// rewrite it under each other. A second one keeps its heads in memory only, and says so.
    pub(super) fn open(path: &Path) -> Result<Self, String> {
        let lock_path = path.with_extension("lock");
        let lock = appending(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                tracing::warn!(file = %path.display(), "another byok serve keeps the audit heads in this data directory: this one keeps them in memory only, so a restart forgets them (give each replica its own --data-dir)");
                return Ok(Self::default());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", lock_path.display()));
            }
        }
        let mut heads = HashMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (n, l) in text.lines().enumerate() {
                    let (org, size, root) = parse(l).ok_or_else(|| {
                        format!(
                            "{} line {}: not `<org> <size> <root>`; this file holds the audit log heads byok signed, which a restart must keep (move it away to start without them)",
                            path.display(),
                            n + 1
                        )
                    })?;
                    let held = heads.entry(org).or_insert((size, root));
                    if size > held.0 {
                        *held = (size, root);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let journal = rewrite(path, &heads).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self(Mutex::new(Inner {
            heads,
            journal: Some(journal),
            _lock: Some(lock),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The orgs whose heads are held.
    pub(super) fn orgs(&self) -> Vec<ScopeId> {
        self.lock().heads.keys().copied().collect()
    }

    /// The newest head of `org` held.
    pub(super) fn get(&self, org: ScopeId) -> Option<(u64, Hash)> {
        self.lock().heads.get(&org).copied()
    }

    /// Records a head of `org`, if newer than the one held: in memory, and in the file (synced)
    /// when there is one. A failed write is returned (and the head is still held in memory):
    /// the caller must not sign what the file could not record.
    pub(super) fn saw(&self, org: ScopeId, size: u64, root: Hash) -> std::io::Result<()> {
        let mut inner = self.lock();
        if inner.heads.get(&org).is_some_and(|(held, _)| *held >= size) {
            return Ok(());
        }
        inner.heads.insert(org, (size, root));
        let Inner { heads, journal, .. } = &mut *inner;
        let Some(j) = journal else {
            return Ok(());
        };
        j.file.write_all(line(org, size, &root).as_bytes())?;
        j.file.sync_data()?;
        j.lines += 1;
        if j.lines > 4 * heads.len() + 64 {
            *j = rewrite(&j.path.clone(), heads)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(n: u8) -> ScopeId {
        ScopeId::from_bytes([n; 16])
    }

    /// Heads survive a reopen, the newest per org; the file is compacted as it grows; a
    /// damaged line refuses the open, naming the file and line.
    #[test]
    fn heads_are_kept_across_a_reopen_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-heads");
        let h = SignedHeads::open(&path).unwrap();
        for size in 1..=200u64 {
            h.saw(org(1), size, Hash([size as u8; 32])).unwrap();
        }
        h.saw(org(2), 7, Hash([7; 32])).unwrap();
        // An older head than the one held is not recorded.
        h.saw(org(1), 3, Hash([3; 32])).unwrap();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 100, "compacted: {lines} lines");
        drop(h);
        let again = SignedHeads::open(&path).unwrap();
        assert_eq!(again.get(org(1)), Some((200, Hash([200; 32]))));
        assert_eq!(again.get(org(2)), Some((7, Hash([7; 32]))));
        assert_eq!(again.get(org(3)), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second process on the same file keeps its heads in memory only (a lock is per
        // open file description: a second open in this process stands for it).
        let second = SignedHeads::open(&path).unwrap();
        assert!(second.lock().journal.is_none() && second.get(org(1)).is_none());
        drop((again, second));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("not a head\n");
        std::fs::write(&path, text).unwrap();
        let e = SignedHeads::open(&path).err().unwrap();
        assert!(e.contains("audit-heads line 3"), "{e}");
    }
}
