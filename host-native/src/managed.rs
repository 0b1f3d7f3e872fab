//! The vendor-managed master key: 32 random bytes that wrap the root keys of orgs in managed
//! mode (and of orgs that fell back to it). Generated on first start into `managed.key` in the
//! data directory, created with mode 0600 (never readable by other users, never replaced); or
//! taken from `BYOK_MANAGED_KEY` (base64, for deployments that inject secrets).

use std::io::{Read, Write};
use std::path::Path;

use base64ct::{Base64, Encoding};
use byok_core::ScopeKey;
use byok_core::SecretBytes;
use byok_core::scope::managed_key;
use zeroize::Zeroizing;

/// The file name in the data directory.
pub const FILE: &str = "managed.key";

/// Where the managed key came from, for the start-up message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Generated now (first start).
    Generated,
    /// Read from the file.
    File,
    /// Read from `BYOK_MANAGED_KEY`.
    Env,
}

fn from_bytes(bytes: &[u8]) -> Option<ScopeKey> {
    let mut key = Zeroizing::new(<[u8; 32]>::try_from(bytes).ok()?);
    Some(managed_key(SecretBytes::from_bytes(&mut key), 1))
}

/// The managed key's check value: SHA-256 over a label and the key (the key is 256 random
/// bits, so this reveals nothing of it). The database keeps it, so that a start with a missing
/// or different `managed.key` is refused instead of silently making orgs unreadable.
pub fn check_value(key: &ScopeKey) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"byok managed key check v1\0");
    h.update(key.expose_secret());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads the managed key: from `env_value` (base64) if given, else from `dir/managed.key`,
/// creating it on first start only: `may_create` is false once the database holds orgs, and
/// then a missing file is an error with the fix.
pub fn load_or_create(
    dir: &Path,
    env_value: Option<&str>,
    may_create: bool,
) -> Result<(ScopeKey, Origin), String> {
    if let Some(text) = env_value {
        let bytes = Zeroizing::new(
            Base64::decode_vec(text.trim())
                .map_err(|_| "BYOK_MANAGED_KEY is not base64".to_owned())?,
        );
        let key = from_bytes(&bytes)
            .ok_or_else(|| "BYOK_MANAGED_KEY must decode to exactly 32 bytes".to_owned())?;
        return Ok((key, Origin::Env));
    }
    let path = dir.join(FILE);
    match std::fs::File::open(&path) {
        Ok(mut f) => {
            use crate::private_file::{Readers, check_open};
            check_open(&f, &path, "the managed key", Readers::Owner)?;
            let mut bytes = Zeroizing::new(Vec::new());
            f.read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let key = from_bytes(&bytes).ok_or_else(|| {
                format!(
                    "{} must hold exactly 32 bytes; it was modified or truncated",
                    path.display()
                )
            })?;
            Ok((key, Origin::File))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !may_create => Err(format!(
            "{} is missing, but the database already holds data wrapped by a managed key: restore the file from your backup (or set BYOK_MANAGED_KEY); byok does not make a new one, which would leave every managed organization unreadable",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand_core::Rng::fill_bytes(&mut rand::rng(), &mut bytes[..]);
            write_new(&path, &bytes[..])?;
            let key = from_bytes(&bytes[..]).ok_or_else(|| "internal: key length".to_owned())?;
            Ok((key, Origin::Generated))
        }
        Err(e) => Err(format!("cannot open {}: {e}", path.display())),
    }
}

#[cfg(unix)]
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: never overwrite a key that appeared meanwhile; 0600 from the start, so there
    // is no moment when the file is readable by others.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_a_private_file_and_later_starts_read_it() {
        let dir = std::env::temp_dir().join(format!("byok-managed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (a, origin) = load_or_create(&dir, None, true).unwrap();
        assert_eq!(origin, Origin::Generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (b, origin) = load_or_create(&dir, None, true).unwrap();
        assert_eq!(origin, Origin::File);
        assert_eq!(a.expose_secret(), b.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(FILE), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let err = load_or_create(&dir, None, true).unwrap_err();
            assert!(err.contains("chmod 600"), "{err}");
        }
        std::fs::write(dir.join(FILE), b"short").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(FILE), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        assert!(
            load_or_create(&dir, None, true)
                .unwrap_err()
                .contains("32 bytes")
        );
        let env = Base64::encode_string(&[7u8; 32]);
        let (c, origin) = load_or_create(&dir, Some(&env), true).unwrap();
        assert_eq!((origin, c.expose_secret()), (Origin::Env, &[7u8; 32]));
        assert_eq!(
            load_or_create(&dir, Some("AAAA"), true).unwrap_err(),
            "BYOK_MANAGED_KEY must decode to exactly 32 bytes"
        );
        std::fs::remove_file(dir.join(FILE)).unwrap();
        let err = load_or_create(&dir, None, false).unwrap_err();
        assert!(err.contains("restore the file"), "{err}");
        assert!(!dir.join(FILE).exists(), "no new key was made");
        assert_ne!(check_value(&a), check_value(&c));
        assert_eq!(check_value(&a), check_value(&b));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
