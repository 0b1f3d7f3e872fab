//! One organization's scope tree, key versions and key holders, and the transitions on them.
//!
//! This file holds the [`Org`] value itself: its fields, constructors and accessors, and the
//! types it is made of. The transitions are `impl Org` blocks in sibling files, one per concept,
//! so each reads on its own: [`super::tree`] (scopes and their state), [`super::keyring`] (key
//! versions, resolution, jobs), [`super::holders`] (who holds the root key) and the wrapping
//! contexts in [`super::contexts`].

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::crypto::{DefaultBackend, ScopeKey};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::key_id::{KeyId, ScopeId};
use crate::scope::contexts::managed_root_context;
use crate::scope::effect::{AuditEvent, Effect};
use crate::scope::error::ScopeError;
use crate::scope::holders::{Holder, HolderId, HolderStatus};
use crate::scope::job::RewrapJob;
use crate::scope::root_check::{RootCheck, RootChecker};
use crate::scope::state::ScopeState;
use crate::secret::SecretBytes;

/// The deepest a scope may sit below the org (the org itself is depth 0). Bounds the work of
/// resolving a key: one unwrap per level.
pub const MAX_DEPTH: u16 = 64;

/// The most live key versions a scope keeps. Bounds what a lease carries (every live version,
/// about 70 bytes each: a thousand stay far below the 1 MiB an edge reads), the work of a
/// lease and its audit row; rotating past it needs old versions retired first.
pub const MAX_VERSIONS: usize = 1000;

/// The reserved scope id of the vendor's managed master key (all zero bytes; random scope ids
/// never take it in practice, and [`Org::create`] refuses it as an org id).
pub const MANAGED_SCOPE: ScopeId = ScopeId::from_bytes([0; 16]);

/// The vendor-managed master key, version `version`: 32 bytes the host keeps in a 0600 file or
/// an environment variable (generated on first start). It wraps org root keys with AES-256-GCM
/// (format v1, mode 3) when an org uses managed mode or falls back to it.
pub fn managed_key(secret: SecretBytes, version: u32) -> ScopeKey {
    ScopeKey::new(KeyId::new(MANAGED_SCOPE, version), secret)
}

/// A scope key version wrapped under its parent's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedScopeKey {
    /// The parent key version it is wrapped under.
    pub under: KeyId,
    /// The 140-byte wrapped form (format v1, mode 3).
    pub wrapped: Vec<u8>,
}

/// One scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Its id.
    pub id: ScopeId,
    /// Its parent; `None` for the org scope.
    pub parent: Option<ScopeId>,
    /// Distance from the org scope.
    pub depth: u16,
    /// The state set on this scope itself (see [`Org::effective`] for the one that applies).
    pub state: ScopeState,
    /// Live key versions. For a child scope, each maps to its wrapped form; for the org scope
    /// to `None` (root versions are held by the holders). Revoked scopes have none.
    pub versions: BTreeMap<u32, Option<WrappedScopeKey>>,
    /// For the org scope, the check value of each root version that has one (every version
    /// made since byok keeps them; see [`RootCheck`]). Empty for a child scope.
    pub checks: BTreeMap<u32, RootCheck>,
    /// Child scopes.
    pub children: Vec<ScopeId>,
}

impl Scope {
    /// The newest live version.
    pub fn current_version(&self) -> Option<u32> {
        self.versions.keys().next_back().copied()
    }
}

/// One organization: the scope tree under its org scope, the holders of its root key, and the
/// running re-encryption job.
///
/// Every transition either succeeds, changing the value and returning the effects the host must
/// apply, or fails with nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub(super) root: ScopeId,
    pub(super) scopes: ScopeMap,
    pub(super) holders: BTreeMap<HolderId, Holder>,
    pub(super) default: HolderId,
    pub(super) job: Option<RewrapJob>,
}

/// The scopes by id: a persistent map (structural sharing), so that copying an org, which the
/// host does before every transition to keep the published state whole until the change
/// commits, costs O(1) rather than O(scopes), and changing one scope of the copy costs
/// O(log scopes) plus that scope. An org of a million scopes changes one in microseconds.
pub(super) type ScopeMap = rpds::RedBlackTreeMapSync<ScopeId, Scope>;

pub(super) type Result<T> = core::result::Result<T, Error>;

pub(super) fn scope_err(e: ScopeError) -> Error {
    Error::Scope(e)
}

impl Org {
    /// Assembles an org from checked parts ([`Org::restore`] checks them).
    pub(crate) fn from_parts(
        root: ScopeId,
        scopes: BTreeMap<ScopeId, Scope>,
        holders: BTreeMap<HolderId, Holder>,
        default: HolderId,
        job: Option<RewrapJob>,
    ) -> Self {
        Self {
            root,
            scopes: scopes.into_iter().collect(),
            holders,
            default,
            job,
        }
    }

    /// Every scope, the org scope included, in id order: what a host stores.
    pub fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.values()
    }

    /// Creates an org whose root key (version 1) is wrapped by the managed key, and checked by
    /// it ([`RootChecker`]). Returns the org, the root key (to cache) and the effects.
    pub fn create(
        org: ScopeId,
        managed: &ScopeKey,
        rng: &mut impl CryptoRng,
    ) -> Result<(Self, ScopeKey, Vec<Effect>)> {
        if org == MANAGED_SCOPE {
            return Err(scope_err(ScopeError::ScopeExists(org)));
        }
        if managed.id().scope != MANAGED_SCOPE {
            return Err(scope_err(ScopeError::WrongKey {
                expected: KeyId::new(MANAGED_SCOPE, managed.id().version),
                provided: managed.id(),
            }));
        }
        let root_secret = SecretBytes::random(rng);
        let wrapped = Envelope::<DefaultBackend>::wrap_secret(
            managed,
            &managed_root_context(org, 1),
            &root_secret,
            rng,
        )?;
        let root_key = ScopeKey::new(KeyId::new(org, 1), root_secret);
        let check = RootChecker::new(managed).check(org, &root_key);
        let scope = Scope {
            id: org,
            parent: None,
            depth: 0,
            state: ScopeState::Active,
            versions: BTreeMap::from([(1, None)]),
            checks: BTreeMap::from([(1, check)]),
            children: Vec::new(),
        };
        let mut holder = Holder::new(HolderId::Managed);
        holder.status = HolderStatus::Ready;
        holder.copies.insert(1, wrapped.clone());
        let this = Self {
            root: org,
            scopes: ScopeMap::new_sync().insert(org, scope),
            holders: BTreeMap::from([(HolderId::Managed, holder)]),
            default: HolderId::Managed,
            job: None,
        };
        let effects = vec![
            Effect::CreateScope {
                scope: org,
                parent: None,
            },
            Effect::PutRootVersion { version: 1, check },
            Effect::PutHolder {
                holder: HolderId::Managed,
                status: HolderStatus::Ready,
            },
            Effect::PutRootCopy {
                holder: HolderId::Managed,
                version: 1,
                wrapped,
            },
            Effect::SetDefault(HolderId::Managed),
            Effect::Audit(AuditEvent::RootCopyStored {
                holder: HolderId::Managed,
                version: 1,
            }),
        ];
        Ok((this, root_key, effects))
    }

    /// The org scope's id (also the org's id).
    pub fn id(&self) -> ScopeId {
        self.root
    }

    /// A scope by id.
    pub fn scope(&self, id: ScopeId) -> Option<&Scope> {
        self.scopes.get(&id)
    }

    /// Number of scopes, the org scope included.
    pub fn len(&self) -> usize {
        self.scopes.size()
    }

    /// Whether the org has only its org scope.
    pub fn is_empty(&self) -> bool {
        self.scopes.size() <= 1
    }

    /// The holders of the root key.
    pub fn holders(&self) -> impl Iterator<Item = &Holder> {
        self.holders.values()
    }

    /// The default holder.
    pub fn default_holder(&self) -> HolderId {
        self.default
    }

    /// The running re-encryption job, if any.
    pub fn job(&self) -> Option<&RewrapJob> {
        self.job.as_ref()
    }

    pub(super) fn get(&self, id: ScopeId) -> core::result::Result<&Scope, ScopeError> {
        self.scopes.get(&id).ok_or(ScopeError::UnknownScope(id))
    }
}
