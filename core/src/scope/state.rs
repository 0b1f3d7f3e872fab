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

impl ScopeState {
    /// Its name, as stored and as the API shows it: `active`, `paused` or `revoked`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Revoked => "revoked",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::Revoked]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
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

impl Effective {
    /// The state's name ([`ScopeState::as_str`]) and the scope that set it, if not active.
    pub fn parts(self) -> (ScopeState, Option<crate::key_id::ScopeId>) {
        match self {
            Self::Active => (ScopeState::Active, None),
            Self::Paused { by } => (ScopeState::Paused, Some(by)),
            Self::Revoked { by } => (ScopeState::Revoked, Some(by)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ScopeState;

    #[test]
    fn names_round_trip() {
        for s in [ScopeState::Active, ScopeState::Paused, ScopeState::Revoked] {
            assert_eq!(ScopeState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ScopeState::parse("Active"), None);
        assert_eq!(ScopeState::parse(""), None);
    }
}
