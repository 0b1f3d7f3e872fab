//! Turns for reads that may walk an org's whole log (a chain verification, a filtered audit
//! read): each holds a pool connection for as long as the log takes to read. `n` run at once in
//! this process, and one per org, taken in that order: an org whose callers queue waits on its
//! own turn holding none of the process's, so another org's read runs beside its one, and
//! neither leaves the pool without a connection for a pause.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use byok_core::ScopeId;
use tokio::sync::{OwnedMutexGuard, Semaphore, SemaphorePermit};

use super::{Result, ServiceError};

/// Turns: `n` in the process, one per org.
pub(super) struct Turns {
    process: Semaphore,
    orgs: Mutex<HashMap<ScopeId, Arc<tokio::sync::Mutex<()>>>>,
}

/// A turn, held while the read runs.
pub(super) struct Turn<'a> {
    _org: OwnedMutexGuard<()>,
    _process: SemaphorePermit<'a>,
}

impl Turns {
    pub(super) fn new(n: usize) -> Self {
        Self {
            process: Semaphore::new(n),
            orgs: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for `org`'s turn, then for one of the process's.
    pub(super) async fn take(&self, org: ScopeId) -> Result<Turn<'_>> {
        let lock = self
            .orgs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(org)
            .or_default()
            .clone();
        let org_turn = lock.lock_owned().await;
        let process = self
            .process
            .acquire()
            .await
            .map_err(|_| ServiceError::Invalid("the server is stopping".into()))?;
        Ok(Turn {
            _org: org_turn,
            _process: process,
        })
    }
}
