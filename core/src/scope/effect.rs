//! What a host must do after a transition: store or destroy wrapped keys, call a KMS, evict
//! caches, append audit events. A transition returns the whole list; the host applies it in one
//! transaction, or not at all, so a crash never leaves half an operation.

use alloc::vec::Vec;

use crate::key_id::{KeyId, ScopeId};
use crate::scope::holder::HolderId;
use crate::scope::job::{JobKind, RewrapJob};

/// One thing the host must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Store the wrapped form of scope key `key`, sealed under its parent's key `under`.
    PutWrappedKey {
        /// The key stored.
        key: KeyId,
        /// The parent key it is wrapped under.
        under: KeyId,
        /// The 140-byte wrapped form.
        wrapped: Vec<u8>,
    },
    /// Destroy every stored copy of the wrapped form of `key`: its data becomes undecryptable.
    DestroyWrappedKey {
        /// The key destroyed.
        key: KeyId,
    },
    /// Ask `holder` (a CMK, through its KMS) to wrap version `version` of the org root key: the
    /// host unwraps the root from a holder that has it and calls the KMS, then reports the result
    /// with [`super::Org::record_root_copy`]. One KMS call, whatever the amount of data.
    WrapRoot {
        /// The holder that must wrap.
        holder: HolderId,
        /// The root key version.
        version: u32,
    },
    /// Store `holder`'s wrapped copy of root version `version`.
    PutRootCopy {
        /// The holder.
        holder: HolderId,
        /// The root version.
        version: u32,
        /// The wrapped copy (KMS ciphertext, or the managed 140-byte form).
        wrapped: Vec<u8>,
    },
    /// Destroy `holder`'s copy of root version `version`.
    DestroyRootCopy {
        /// The holder.
        holder: HolderId,
        /// The root version.
        version: u32,
    },
    /// Drop every cached unwrapped key of `scope` and its descendants, on every replica.
    EvictSubtree {
        /// The top of the subtree.
        scope: ScopeId,
    },
    /// Drop every cached unwrapped copy of key version `key` (it was retired), on every replica.
    EvictKey {
        /// The key version.
        key: KeyId,
    },
    /// Persist a new re-encryption job.
    StartJob(RewrapJob),
    /// The running job was cancelled (a revoke removed what it worked on): drop it, and any part
    /// of it the host keeps (for a retirement, the host's own progress row).
    CancelJob(JobKind),
    /// Append to the org's audit log.
    Audit(AuditEvent),
}

/// An entry of the org's audit log, as the transition that caused it saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A scope was created under `parent`.
    ScopeCreated {
        /// The new scope.
        scope: ScopeId,
        /// Its parent.
        parent: ScopeId,
    },
    /// A scope was paused.
    ScopePaused(ScopeId),
    /// A scope was resumed.
    ScopeResumed(ScopeId),
    /// A scope was revoked, destroying `keys_destroyed` wrapped keys in its subtree.
    ScopeRevoked {
        /// The scope.
        scope: ScopeId,
        /// Wrapped scope keys destroyed (the scope's and its descendants').
        keys_destroyed: usize,
    },
    /// A new key version was added.
    KeyRotated(KeyId),
    /// A key version was retired and its wrapped form destroyed.
    KeyRetired(KeyId),
    /// A CMK was attached; its root copies are pending.
    HolderAttached(HolderId),
    /// A holder now holds a copy of root version `version`.
    RootCopyStored {
        /// The holder.
        holder: HolderId,
        /// The root version.
        version: u32,
    },
    /// The default holder changed.
    DefaultHolder {
        /// The old default.
        from: HolderId,
        /// The new default.
        to: HolderId,
    },
    /// A holder was disabled and its copies destroyed.
    HolderDisabled(HolderId),
    /// A disabled holder was enabled again (its copies are pending).
    HolderEnabled(HolderId),
    /// A re-encryption job finished.
    JobFinished,
    /// A re-encryption job was cancelled: a revoke destroyed what it worked on.
    JobCancelled,
    /// A revoke removed `steps` steps inside the revoked subtree from the running job.
    JobTrimmed {
        /// Steps removed.
        steps: usize,
    },
}
