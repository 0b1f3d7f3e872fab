//! Files holding a secret the operator gives byok (the TLS key, a vendor's signing key for GCP
//! or Azure, the CLI's `--token-file`): refused when every user on the machine may read them.
//! A group may (a TLS key is often shared with an `ssl-cert` group); others may not.
//! `managed.key`, which byok makes itself, is stricter (see [`crate::managed`]).

use std::path::Path;

/// `Ok` unless users outside the file's owner and group may read or write `path`, which holds
/// a private key; the error names the file, its mode and the command that fixes it.
pub fn check(path: &Path) -> Result<(), String> {
    check_holding(path, "a private key")
}

/// [`check`] for a file holding `what` ("a bearer token").
pub fn check_holding(path: &Path, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    refused(&meta, path, what, Readers::OwnerAndGroup)
}

/// Who besides its owner may read a file holding a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readers {
    /// Its group too (a TLS key shared with `ssl-cert`): only every other user is refused.
    OwnerAndGroup,
    /// Nobody else, its group neither: for the secrets byok makes itself (`managed.key`).
    Owner,
}

/// [`check_holding`] of a file already open (its own metadata, not its path's now), with
/// `readers` allowed.
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
            let got = super::check(&path);
            assert_eq!(got.is_ok(), ok, "{mode:o}: {got:?}");
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
