//! Scope states and the effective state of a scope.

/// The state a scope was set to by its own pause, resume or revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeState {
    /// Encrypt, decrypt and data keys work (unless an ancestor says otherwise).
    Active,
    /// Every operation fails with [`super::ScopeError::Paused`]; nothing is deleted.
    Paused,
    /// The scope's wrapped keys are destroyed; it and its descendants are undecryptable. Final.
    Revoked,
}

/// The state that applies to a scope: the most restrictive state on its path to the root,
/// and which scope set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effective {
    /// Every scope on the path is active.
    Active,
    /// The topmost paused scope on the path (resuming a lower one would not help).
    Paused {
        /// That scope.
        by: crate::key_id::ScopeId,
    },
    /// The topmost revoked scope on the path (revocation wins over pause).
    Revoked {
        /// That scope.
        by: crate::key_id::ScopeId,
    },
}
