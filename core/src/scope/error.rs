//! Why a scope or key operation was refused. Every variant is a rule of the key hierarchy; the
//! message says which rule and what to do instead.

use core::fmt;

use crate::api_code::ApiCode;
use crate::key_id::{KeyId, ScopeId};
use crate::scope::holders::HolderId;

/// A scope or key-lifecycle operation that the rules forbid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// No scope with this id in the organization.
    UnknownScope(ScopeId),
    /// A scope with this id exists already.
    ScopeExists(ScopeId),
    /// The scope, or an ancestor (`by`), is paused: every operation fails until `by` resumes.
    Paused {
        /// The scope the operation named.
        scope: ScopeId,
        /// The paused scope closest to the root on its path.
        by: ScopeId,
    },
    /// The scope, or an ancestor (`by`), is revoked: its keys are destroyed, for good.
    Revoked {
        /// The scope the operation named.
        scope: ScopeId,
        /// The revoked scope on its path.
        by: ScopeId,
    },
    /// Revoking needs the scope id typed back; what was given does not match.
    ConfirmationMismatch {
        /// The scope to revoke.
        scope: ScopeId,
    },
    /// Scopes cannot move to another parent; see [`crate::scope`] for why.
    MoveNotSupported,
    /// The org scope's key is the root key: rotate it with `Org::rotate_root`.
    RootRotation,
    /// The tree is at most this deep.
    TooDeep {
        /// The maximum depth.
        max: u16,
    },
    /// The scope keeps as many live key versions as allowed ([`super::MAX_VERSIONS`]).
    TooManyVersions {
        /// The scope.
        scope: ScopeId,
        /// The most it keeps.
        max: usize,
    },
    /// No such key version in the scope (or it was retired).
    UnknownVersion(KeyId),
    /// The newest version cannot be retired: new data is sealed under it.
    RetireCurrent(KeyId),
    /// Keys of child scopes are still wrapped under this version; run the rewrap job first.
    VersionInUse {
        /// The version.
        key: KeyId,
        /// How many child key versions are still wrapped under it.
        children: usize,
    },
    /// The key handed in is not the one the operation needs.
    WrongKey {
        /// The key the operation needs.
        expected: KeyId,
        /// The key provided.
        provided: KeyId,
    },
    /// No such key holder (CMK) in the organization.
    UnknownHolder(HolderId),
    /// This CMK is attached already.
    HolderExists(HolderId),
    /// The holder does not hold a copy of every live root version (its wrap is pending, or it
    /// is disabled), so it cannot be the default or a re-encryption target.
    HolderNotReady(HolderId),
    /// The default holder cannot be disabled; make another one the default first.
    DisableDefault(HolderId),
    /// A re-encryption job is running for this organization; one at a time.
    JobRunning,
    /// The holder's copy of root version `version`, unwrapped just now through its KMS, is not
    /// the org's root key (or was not unwrapped): it cannot become the default.
    ProofMismatch {
        /// The holder.
        holder: HolderId,
        /// The root version that did not match.
        version: u32,
    },
    /// A customer key is the default (BYOK): the managed key may not hold a copy of the root.
    /// Going back to the managed key is `disable_all` or making it the default, both of which
    /// unwrap the root through the customer's KMS at that moment.
    ManagedUnderByok,
    /// No re-encryption job is running, or the step does not belong to it.
    NoSuchJob,
    /// A stored wrapped key did not open under the key that should wrap it: storage was
    /// damaged or edited, or the host passed the wrong parent key.
    Unwrap(KeyId),
    /// A holder gave back a root version that does not match the check value stored with it:
    /// the copy it unwrapped is not the one byok made (storage was modified: on Azure anyone
    /// with the key's public half can wrap a root of their own). Refused before any use.
    RootCheckFailed(KeyId),
    /// A root version was stored without a check value (by a byok older than them) and has not
    /// had it recorded yet (the server's `--record-root-checks`, run once after upgrading).
    RootUnchecked(KeyId),
    /// Stored rows do not form a valid org (a parent missing, a cycle, no ready default
    /// holder, ...): storage was damaged or edited. Refused rather than trusted.
    Inconsistent(&'static str),
}

impl ScopeError {
    /// The API error code of this refusal. `UnknownScope`, `UnknownVersion` and
    /// `UnknownHolder` share `not_found` (as an org of another token does); damaged storage
    /// (`Unwrap`, `Inconsistent`) and a host passing the wrong key (`WrongKey`) are `internal`.
    pub const fn api_code(&self) -> ApiCode {
        match self {
            Self::UnknownScope(_) | Self::UnknownVersion(_) | Self::UnknownHolder(_) => {
                ApiCode::NotFound
            }
            Self::ScopeExists(_) => ApiCode::ScopeExists,
            Self::Paused { .. } => ApiCode::ScopePaused,
            Self::Revoked { .. } => ApiCode::ScopeRevoked,
            Self::ConfirmationMismatch { .. } => ApiCode::ConfirmationMismatch,
            Self::MoveNotSupported => ApiCode::Unsupported,
            Self::RootRotation => ApiCode::RootRotation,
            Self::TooDeep { .. } => ApiCode::TooDeep,
            Self::TooManyVersions { .. } => ApiCode::TooManyVersions,
            Self::RetireCurrent(_) => ApiCode::VersionIsCurrent,
            Self::VersionInUse { .. } => ApiCode::VersionInUse,
            Self::HolderExists(_) => ApiCode::KeyExists,
            Self::HolderNotReady(_) => ApiCode::KeyNotReady,
            Self::DisableDefault(_) => ApiCode::KeyIsDefault,
            Self::JobRunning => ApiCode::JobRunning,
            Self::ProofMismatch { .. } => ApiCode::KeyProofFailed,
            Self::ManagedUnderByok => ApiCode::ManagedUnderByok,
            Self::NoSuchJob => ApiCode::NoSuchJob,
            Self::WrongKey { .. }
            | Self::Unwrap(_)
            | Self::RootCheckFailed(_)
            | Self::RootUnchecked(_)
            | Self::Inconsistent(_) => ApiCode::Internal,
        }
    }
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownScope(s) => write!(f, "scope {s} does not exist in this organization"),
            Self::ScopeExists(s) => write!(f, "scope {s} exists already"),
            Self::Paused { scope, by } if scope == by => {
                write!(f, "scope {scope} is paused; resume it to continue")
            }
            Self::Paused { scope, by } => {
                write!(f, "scope {scope} is paused by its ancestor {by}; resume {by} to continue")
            }
            Self::Revoked { scope, by } if scope == by => {
                write!(f, "scope {scope} is revoked; its keys are destroyed and its data cannot be decrypted")
            }
            Self::Revoked { scope, by } => write!(
                f,
                "scope {scope} is under revoked scope {by}; its keys are destroyed and its data cannot be decrypted"
            ),
            Self::ConfirmationMismatch { scope } => write!(
                f,
                "revoking is permanent: confirm by typing the scope id {scope} exactly"
            ),
            Self::MoveNotSupported => f.write_str(
                "scopes cannot be moved: create the scope under its new parent and re-encrypt the data into it",
            ),
            Self::RootRotation => f.write_str(
                "the organization's key is its root key: rotate it with the root rotation, which wraps it with the default key first",
            ),
            Self::TooDeep { max } => write!(f, "scope tree is limited to depth {max}"),
            Self::TooManyVersions { scope, max } => write!(
                f,
                "scope {scope} keeps {max} live key versions, the most it may: retire old versions before rotating again"
            ),
            Self::UnknownVersion(k) => write!(f, "key {k} does not exist or was retired"),
            Self::RetireCurrent(k) => {
                write!(f, "key {k} is the newest version; rotate first, then retire the old one")
            }
            Self::VersionInUse { key, children } => write!(
                f,
                "key {key} still wraps {children} child key(s); run the rewrap job before retiring it"
            ),
            Self::WrongKey { expected, provided } => {
                write!(f, "operation needs key {expected}, got key {provided}")
            }
            Self::UnknownHolder(h) => write!(f, "{h} is not attached to this organization"),
            Self::HolderExists(h) => write!(f, "{h} is attached already"),
            Self::HolderNotReady(h) => write!(
                f,
                "{h} does not hold a copy of the root key yet; wait for its wrap to complete"
            ),
            Self::DisableDefault(h) => {
                write!(f, "{h} is the default key; set another key as default before disabling it")
            }
            Self::JobRunning => f.write_str(
                "a re-encryption job is running for this organization; wait for it to finish",
            ),
            Self::NoSuchJob => f.write_str("no such re-encryption job or step"),
            Self::ProofMismatch { holder, version } => write!(
                f,
                "{holder} did not give back root version {version} when unwrapped just now; it cannot become the default"
            ),
            Self::ManagedUnderByok => f.write_str(
                "a customer key is the default, so the managed key holds no copy of the root; to go back to the managed key, make it the default or disable all customer keys (both unwrap through your KMS now)",
            ),
            Self::Unwrap(k) => write!(
                f,
                "stored wrapped key {k} does not open under its parent key: storage was modified or damaged"
            ),
            Self::RootCheckFailed(k) => write!(
                f,
                "root key {k} given back by the key holder does not match its stored check value: the stored copy was replaced or damaged; nothing was done with it"
            ),
            Self::RootUnchecked(k) => write!(
                f,
                "root key {k} was stored without a check value by an older byok: the operator must record it once (byok serve --record-root-checks) before it is used"
            ),
            Self::Inconsistent(what) => write!(
                f,
                "stored organization is inconsistent ({what}): storage was modified or damaged"
            ),
        }
    }
}
