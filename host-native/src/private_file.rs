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
#[cfg(unix)]
pub fn check_holding(path: &Path, what: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o007 != 0 {
        return Err(format!(
            "{} holds {what} and every user can read it (mode {:o}); run: chmod 600 {} (or 640, for a group byok is in)",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

/// No permission bits to check.
#[cfg(not(unix))]
pub fn check_holding(_path: &Path, _what: &str) -> Result<(), String> {
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
}
