//! Files holding a secret the operator gives byok (the TLS key, a vendor's signing key for GCP
//! or Azure, the CLI's `--token-file`): refused when every user on the machine may read them.
//! A group may (a TLS key is often shared with an `ssl-cert` group); others may not.
//! `managed.key`, which byok makes itself, is stricter (see [`crate::managed`]).

use std::path::Path;

/// The text of `path`, which holds `what` ("a private key", "a bearer token"), unless users
/// outside the file's owner and group may read or write it; the error names the file, its mode
/// and the command that fixes it (never its content). The mode checked is the one of the file
/// read (the open handle's), not of whatever the path names a moment later, and the text is
/// read into a buffer sized once, wiped when dropped.
pub fn read(path: &Path, what: &str) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    check_open(&f, path, what, Readers::OwnerAndGroup)?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
        .len();
    let mut text = zeroize::Zeroizing::new(String::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    f.read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text)
}

/// Who besides its owner may read a file holding a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readers {
    /// Its group too (a TLS key shared with `ssl-cert`): only every other user is refused.
    OwnerAndGroup,
    /// Nobody else, its group neither: for the secrets byok makes itself (`managed.key`).
    Owner,
}

/// Refuses the file `f` (opened at `path`, holding `what`) if more than `readers` may read or
/// write it: its own metadata, not whatever its path names now.
pub fn check_open(
    f: &std::fs::File,
    path: &Path,
    what: &str,
    readers: Readers,
) -> Result<(), String> {
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    refused(&meta, path, what, readers)
}

/// The refusal of a file (`meta`, at `path`) holding `what` that more than `readers` may read
/// or write: it names the file, its mode and the command that fixes it.
#[cfg(unix)]
fn refused(
    meta: &std::fs::Metadata,
    path: &Path,
    what: &str,
    readers: Readers,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    let (mask, who, or) = match readers {
        Readers::OwnerAndGroup => (0o007, "every user", " (or 640, for a group byok is in)"),
        Readers::Owner => (0o077, "other users", ""),
    };
    if mode & mask != 0 {
        return Err(format!(
            "{} holds {what} and {who} can read it (mode {:o}); run: chmod 600 {}{or}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

/// No permission bits to check.
#[cfg(not(unix))]
fn refused(
    _meta: &std::fs::Metadata,
    _path: &Path,
    _what: &str,
    _readers: Readers,
) -> Result<(), String> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_others_can_read_is_refused_and_owner_or_group_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----").unwrap();
        for (mode, ok) in [(0o600, true), (0o640, true), (0o644, false), (0o602, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let got = super::read(&path, "a private key");
            assert_eq!(got.is_ok(), ok, "{mode:o}: {:?}", got.as_ref().map(|_| ()));
            if let Ok(text) = &got {
                assert_eq!(text.as_str(), "-----BEGIN PRIVATE KEY-----");
            }
            if let Err(e) = got {
                assert!(
                    e.contains("chmod 600") && e.contains(&format!("{:o}", mode)),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn a_secret_byok_made_is_refused_when_its_group_can_read_it_too() {
        use super::{Readers, check_open};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("managed.key");
        std::fs::write(&path, [0u8; 32]).unwrap();
        for (mode, owner, group) in [
            (0o600, true, true),
            (0o640, false, true),
            (0o604, false, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            let only = check_open(&f, &path, "the managed key", Readers::Owner);
            assert_eq!(only.is_ok(), owner, "{mode:o}: {only:?}");
            let shared = check_open(&f, &path, "the managed key", Readers::OwnerAndGroup);
            assert_eq!(shared.is_ok(), group, "{mode:o}: {shared:?}");
        }
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(
            check_open(&f, &path, "the managed key", Readers::Owner).unwrap_err(),
            format!(
                "{} holds the managed key and other users can read it (mode 604); run: chmod 600 {}",
                path.display(),
                path.display()
            )
        );
    }
}
