//! Re-encryption jobs: resumable, idempotent plans that a host runs in batches.
//!
//! A job is a list of steps and a cursor. The host runs the steps from the cursor, reports each
//! result to the [`super::Org`], which advances the cursor; after a crash the host resumes at the
//! cursor, and a step run twice only rewrites the same row. KMS calls happen only in
//! [`JobStep::WrapRoot`] steps, one per holder and root version: O(1) per org, whatever the amount
//! of data.

use alloc::vec::Vec;

use crate::key_id::KeyId;
use crate::scope::holders::HolderId;

/// Why the job exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A CMK was attached (or re-enabled): it must wrap every live root version.
    WrapHolder(HolderId),
    /// A new root version: every enabled holder but the default must wrap it.
    WrapRoot(u32),
    /// Child keys wrapped under an old key version move to the newest, so it can be retired.
    RetireVersion(KeyId),
    /// The holder's KMS key has a new current version (the customer rotated it): every live
    /// root version is wrapped again, so that the customer can disable the old version. Its
    /// [`JobStep::WrapRoot`] steps are done when their copy is recorded, not when one exists.
    RefreshHolder(HolderId),
}

/// One unit of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStep {
    /// `holder` wraps root version `version` (one KMS call). Report with
    /// [`super::Org::record_root_copy`].
    WrapRoot {
        /// The holder.
        holder: HolderId,
        /// The root version.
        version: u32,
    },
    /// Child key `key`, wrapped under `from`, is rewrapped under `to` (local crypto, no KMS).
    /// Run with [`super::Org::rewrap_child`].
    Rewrap {
        /// The child key.
        key: KeyId,
        /// The old parent key version.
        from: KeyId,
        /// The parent's newest key version.
        to: KeyId,
    },
}

/// A re-encryption job: steps, and how far it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewrapJob {
    /// Why.
    pub kind: JobKind,
    /// What to do, in order.
    pub steps: Vec<JobStep>,
    /// Steps `..done` are complete.
    pub done: usize,
}

impl RewrapJob {
    pub(crate) fn new(kind: JobKind, steps: Vec<JobStep>) -> Self {
        Self {
            kind,
            steps,
            done: 0,
        }
    }

    /// The next `batch` steps to run.
    pub fn next_batch(&self, batch: usize) -> &[JobStep] {
        let end = self.done.saturating_add(batch).min(self.steps.len());
        self.steps.get(self.done..end).unwrap_or_default()
    }

    /// `(done, total)`, for progress bars.
    pub fn progress(&self) -> (usize, usize) {
        (self.done, self.steps.len())
    }

    /// Whether every step is complete.
    pub fn is_finished(&self) -> bool {
        self.done >= self.steps.len()
    }
}
