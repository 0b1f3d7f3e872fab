//! What a host must do after a transition: the whole contract between core and its hosts.
//!
//! A transition returns a list of effects, in order. The host applies the storage effects in
//! one transaction (or none of them, so a crash never leaves half an operation), then, once
//! committed, the cache and job effects. Applying every storage effect of every transition
//! since [`super::Org::create`] to empty storage gives back rows that [`super::Org::restore`]
//! turns into the same value (`host-native` tests this on each of its stores). So a host never
//! compares states or reads audit events to decide what to write: each thing it does is named
//! by one effect.

use alloc::vec::Vec;

use crate::key_id::{KeyId, ScopeId};
use crate::scope::holders::{HolderId, HolderStatus};
use crate::scope::job::{JobKind, RewrapJob};
use crate::scope::root_check::RootCheck;
use crate::scope::state::ScopeState;

/// One thing the host must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    // Storage: the org's rows, in the transition's transaction.
    /// Store a new scope under `parent` (`None`: the org scope), active, without key versions.
    CreateScope {
        /// The scope.
        scope: ScopeId,
        /// Its parent.
        parent: Option<ScopeId>,
    },
    /// Store the state set on `scope` itself.
    SetScopeState {
        /// The scope.
        scope: ScopeId,
        /// Its new state.
        state: ScopeState,
    },
    /// Store a new root key version (the org scope's) with its check value. Its wrapped forms
    /// are the holders' copies ([`Effect::PutRootCopy`]).
    PutRootVersion {
        /// The root version.
        version: u32,
        /// Its check value, stored with it.
        check: RootCheck,
    },
    /// Store the check value of root version `version`, stored without one by an older byok
    /// ([`super::Org::record_root_check`]).
    PutRootCheck {
        /// The root version.
        version: u32,
        /// Its check value.
        check: RootCheck,
    },
    /// Store (or replace) the wrapped form of child scope key `key`, sealed under its parent's
    /// key `under`.
    PutWrappedKey {
        /// The key stored.
        key: KeyId,
        /// The parent key it is wrapped under.
        under: KeyId,
        /// The 140-byte wrapped form.
        wrapped: Vec<u8>,
    },
    /// Destroy key version `key` and every stored copy of its wrapped form: its data becomes
    /// undecryptable.
    DestroyWrappedKey {
        /// The key destroyed.
        key: KeyId,
    },
    /// Destroy everything the host keeps sealed under the keys of `scopes` (a revoked subtree),
    /// such as stored data keys: it can never open again.
    DestroyScopeData {
        /// The scopes, the top of the subtree first.
        scopes: Vec<ScopeId>,
    },
    /// Store holder `holder` (insert it, or change its status).
    PutHolder {
        /// The holder.
        holder: HolderId,
        /// Its status.
        status: HolderStatus,
    },
    /// Store (or replace) `holder`'s wrapped copy of root version `version`.
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
    /// Store `holder` as the default holder.
    SetDefault(HolderId),
    /// Store a new re-encryption job (there was none), and run it: its
    /// [`super::JobStep::WrapRoot`] steps are the KMS calls, one per holder and root version.
    StartJob(RewrapJob),
    /// Store the running job's new steps or cursor.
    UpdateJob(RewrapJob),
    /// The job is complete: drop it, and any part of it the host keeps.
    FinishJob(JobKind),
    /// The running job was cancelled (a revoke removed what it worked on): drop it, and any part
    /// of it the host keeps (for a retirement, the host's own progress row).
    CancelJob(JobKind),
    /// Append to the org's audit log.
    Audit(AuditEvent),

    // After the commit: caches and jobs, on every replica.
    /// Drop every cached unwrapped key of `scope` and its descendants.
    EvictSubtree {
        /// The top of the subtree.
        scope: ScopeId,
    },
    /// Drop every cached unwrapped copy of key version `key` (it was retired).
    EvictKey {
        /// The key version.
        key: KeyId,
    },
    /// Drop every cached key of the org: a holder was disabled, and root keys unwrapped through
    /// it must not outlive it.
    EvictOrg,
    /// The running job can make progress now (a paused scope it waited on was resumed, or a
    /// revoke removed the steps it waited on): run it.
    RunJob,
}

impl Effect {
    /// Whether the effect destroys key material: after committing one, the host makes sure no
    /// old copy survives in its storage's files (a write-ahead log, free pages).
    pub fn destroys(&self) -> bool {
        matches!(
            self,
            Self::DestroyWrappedKey { .. }
                | Self::DestroyRootCopy { .. }
                | Self::DestroyScopeData { .. }
        )
    }
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
    /// A key version's retirement was asked for: the job moving what is wrapped under it
    /// starts (logged with whoever asked; the job's own rows have no actor).
    RetireStarted {
        /// The version to retire.
        key: KeyId,
        /// The version its children move to.
        to: KeyId,
    },
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
    /// Root version `version`, stored without a check value by an older byok, had its check
    /// recorded (by the host's upgrade pass, which trusts the version as it was then stored).
    RootCheckRecorded {
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
    /// The holder's KMS key has a new current version (the customer rotated it): its copies
    /// are wrapped again under it.
    HolderRotated(HolderId),
    /// A re-encryption job finished (every step done).
    JobFinished,
    /// A re-encryption job was cancelled: a revoke destroyed what it worked on.
    JobCancelled,
    /// A revoke removed `steps` steps inside the revoked subtree from the running job.
    JobTrimmed {
        /// Steps removed.
        steps: usize,
    },
}
