//! One organization's scope tree, key versions and key holders, and the transitions on them.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::context::Context;
use crate::crypto::{DefaultBackend, ScopeKey};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::key_id::{KeyId, ScopeId};
use crate::scope::effect::{AuditEvent, Effect};
use crate::scope::error::ScopeError;
use crate::scope::holders::{Holder, HolderId, HolderStatus};
use crate::scope::job::{JobKind, JobStep, RewrapJob};
use crate::scope::proof::{self, RootProof};
use crate::scope::state::{Effective, ScopeState};
use crate::secret::SecretBytes;

/// The deepest a scope may sit below the org (the org itself is depth 0). Bounds the work of
/// resolving a key: one unwrap per level.
pub const MAX_DEPTH: u16 = 64;

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
    root: ScopeId,
    scopes: BTreeMap<ScopeId, Scope>,
    holders: BTreeMap<HolderId, Holder>,
    default: HolderId,
    job: Option<RewrapJob>,
}

/// The context a scope key is wrapped with: binds it to its org, scope, parent and version, so
/// a wrapped key copied to another place in the tree does not open.
pub fn scope_key_context(org: ScopeId, key: KeyId, parent: ScopeId) -> Context {
    context([
        ("byok:org", hex(org)),
        ("byok:parent", hex(parent)),
        ("byok:scope", hex(key.scope)),
        ("byok:version", format!("{}", key.version)),
    ])
}

/// The context a root version is wrapped with under the managed key.
pub fn managed_root_context(org: ScopeId, version: u32) -> Context {
    context([
        ("byok:org", hex(org)),
        ("byok:purpose", "org-root".into()),
        ("byok:version", format!("{version}")),
    ])
}

fn hex(id: ScopeId) -> String {
    id.to_hex().iter().map(|&b| char::from(b)).collect()
}

/// A context from constant keys, encoded once.
fn context<const N: usize>(pairs: [(&'static str, String); N]) -> Context {
    Context::from_map(
        pairs
            .into_iter()
            .map(|(k, v)| (String::from(k), v))
            .collect(),
    )
}

type Result<T> = core::result::Result<T, Error>;

fn scope_err(e: ScopeError) -> Error {
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
            scopes,
            holders,
            default,
            job,
        }
    }

    /// Every scope, the org scope included, in id order: what a host stores.
    pub fn scopes(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.values()
    }

    /// Creates an org whose root key (version 1) is wrapped by the managed key. Returns the org,
    /// the root key (to cache) and the effects.
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
        let scope = Scope {
            id: org,
            parent: None,
            depth: 0,
            state: ScopeState::Active,
            versions: BTreeMap::from([(1, None)]),
            children: Vec::new(),
        };
        let mut holder = Holder::new(HolderId::Managed);
        holder.status = HolderStatus::Ready;
        holder.copies.insert(1, wrapped.clone());
        let this = Self {
            root: org,
            scopes: BTreeMap::from([(org, scope)]),
            holders: BTreeMap::from([(HolderId::Managed, holder)]),
            default: HolderId::Managed,
            job: None,
        };
        let effects = vec![
            Effect::CreateScope {
                scope: org,
                parent: None,
            },
            Effect::PutRootVersion { version: 1 },
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
        self.scopes.len()
    }

    /// Whether the org has only its org scope.
    pub fn is_empty(&self) -> bool {
        self.scopes.len() <= 1
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

    fn get(&self, id: ScopeId) -> core::result::Result<&Scope, ScopeError> {
        self.scopes.get(&id).ok_or(ScopeError::UnknownScope(id))
    }

    /// The path from the org scope down to `id`, both included.
    pub fn path(&self, id: ScopeId) -> core::result::Result<Vec<ScopeId>, ScopeError> {
        let mut path = Vec::with_capacity(8);
        let mut cur = Some(id);
        while let Some(s) = cur {
            path.push(s);
            cur = self.get(s)?.parent;
        }
        path.reverse();
        Ok(path)
    }

    /// The state that applies to `id`: revoked if any scope on its path is revoked, else paused
    /// if any is paused (naming the topmost such scope in both cases), else active. A paused ancestor cannot be bypassed
    /// by resuming a descendant.
    pub fn effective(&self, id: ScopeId) -> core::result::Result<Effective, ScopeError> {
        let (mut paused_by, mut revoked_by) = (None, None);
        let mut cur = Some(id);
        while let Some(s) = cur {
            let scope = self.get(s)?;
            // Walking up: the last one seen of each is the topmost, which is the one to name
            // (acting on a lower one would not change the outcome).
            match scope.state {
                ScopeState::Revoked => revoked_by = Some(s),
                ScopeState::Paused => paused_by = Some(s),
                ScopeState::Active => {}
            }
            cur = scope.parent;
        }
        Ok(match (revoked_by, paused_by) {
            (Some(by), _) => Effective::Revoked { by },
            (None, Some(by)) => Effective::Paused { by },
            (None, None) => Effective::Active,
        })
    }

    /// `Ok` if encrypt, decrypt and data keys may use `id`, else the typed reason.
    pub fn check_usable(&self, id: ScopeId) -> core::result::Result<(), ScopeError> {
        match self.effective(id)? {
            Effective::Active => Ok(()),
            Effective::Paused { by } => Err(ScopeError::Paused { scope: id, by }),
            Effective::Revoked { by } => Err(ScopeError::Revoked { scope: id, by }),
        }
    }

    /// Like [`Self::check_usable`], but a pause does not block: pause, resume and revoke act on
    /// paused scopes; everything else refuses them. Revoked scopes are final.
    fn check_not_revoked(&self, id: ScopeId) -> core::result::Result<(), ScopeError> {
        match self.effective(id)? {
            Effective::Revoked { by } => Err(ScopeError::Revoked { scope: id, by }),
            _ => Ok(()),
        }
    }

    /// Creates scope `id` under `parent`. `parent_key` must be the parent's newest key version
    /// (the host resolves it); the new scope's version-1 key is returned with the effects.
    pub fn create_scope(
        &mut self,
        id: ScopeId,
        parent: ScopeId,
        parent_key: &ScopeKey,
        rng: &mut impl CryptoRng,
    ) -> Result<(ScopeKey, Vec<Effect>)> {
        if self.scopes.contains_key(&id) {
            return Err(scope_err(ScopeError::ScopeExists(id)));
        }
        self.check_usable(parent).map_err(scope_err)?;
        let p = self.get(parent).map_err(scope_err)?;
        let depth = p.depth + 1;
        if depth > MAX_DEPTH {
            return Err(scope_err(ScopeError::TooDeep { max: MAX_DEPTH }));
        }
        let under = self.current_key_id(parent)?;
        check_key(under, parent_key)?;
        let key_id = KeyId::new(id, 1);
        let key = ScopeKey::random(key_id, rng);
        let wrapped = self.wrap_child(&key, parent, parent_key, rng)?;
        // Validation done; apply.
        if let Some(p) = self.scopes.get_mut(&parent) {
            p.children.push(id);
        }
        let record = WrappedScopeKey {
            under,
            wrapped: wrapped.clone(),
        };
        self.scopes.insert(
            id,
            Scope {
                id,
                parent: Some(parent),
                depth,
                state: ScopeState::Active,
                versions: BTreeMap::from([(1, Some(record))]),
                children: Vec::new(),
            },
        );
        let effects = vec![
            Effect::CreateScope {
                scope: id,
                parent: Some(parent),
            },
            Effect::PutWrappedKey {
                key: key_id,
                under,
                wrapped,
            },
            Effect::Audit(AuditEvent::ScopeCreated { scope: id, parent }),
        ];
        Ok((key, effects))
    }

    /// Scopes never move to another parent. A move would have to rewrap the whole subtree under
    /// the new parent, and it would let a subtree leave a paused (or soon revoked) ancestor and
    /// so escape the customer's control, and make the audit trail of what a pause covered depend
    /// on when it was read. Create the scope under its new parent and re-encrypt the data into it
    /// instead. This function exists so that the refusal has one place and one message.
    pub fn move_scope(&mut self, _scope: ScopeId, _new_parent: ScopeId) -> Result<Vec<Effect>> {
        Err(scope_err(ScopeError::MoveNotSupported))
    }

    /// Pauses `id`: it and its subtree refuse every operation until it is resumed. Nothing is
    /// deleted. Pausing a paused scope changes nothing.
    pub fn pause(&mut self, id: ScopeId) -> Result<Vec<Effect>> {
        self.check_not_revoked(id).map_err(scope_err)?;
        let scope = self
            .scopes
            .get_mut(&id)
            .ok_or(scope_err(ScopeError::UnknownScope(id)))?;
        if scope.state == ScopeState::Paused {
            return Ok(Vec::new());
        }
        scope.state = ScopeState::Paused;
        Ok(vec![
            Effect::SetScopeState {
                scope: id,
                state: ScopeState::Paused,
            },
            Effect::Audit(AuditEvent::ScopePaused(id)),
            Effect::EvictSubtree { scope: id },
        ])
    }

    /// Resumes `id`. Its subtree works again unless another ancestor is paused too.
    pub fn resume(&mut self, id: ScopeId) -> Result<Vec<Effect>> {
        self.check_not_revoked(id).map_err(scope_err)?;
        let scope = self
            .scopes
            .get_mut(&id)
            .ok_or(scope_err(ScopeError::UnknownScope(id)))?;
        if scope.state == ScopeState::Active {
            return Ok(Vec::new());
        }
        scope.state = ScopeState::Active;
        let mut effects = vec![
            Effect::SetScopeState {
                scope: id,
                state: ScopeState::Active,
            },
            Effect::Audit(AuditEvent::ScopeResumed(id)),
        ];
        // A job that waited on this scope may go on.
        if self.job.is_some() {
            effects.push(Effect::RunJob);
        }
        Ok(effects)
    }

    /// Revokes `id` for good: destroys the wrapped keys of the scope and of every descendant,
    /// so nothing sealed under them can be decrypted again. `confirmation` must be the scope id
    /// typed back (its 32-character hex form), so a revoke is never one click.
    pub fn revoke(&mut self, id: ScopeId, confirmation: &str) -> Result<Vec<Effect>> {
        self.check_not_revoked(id).map_err(scope_err)?;
        if confirmation.trim() != hex(id) {
            return Err(scope_err(ScopeError::ConfirmationMismatch { scope: id }));
        }
        // Never refused for a job: revoke is the incident tool. The job loses what the revoke
        // destroys (see `trim_job`), before the keys go.
        let subtree = self.subtree(id);
        let mut effects = self.trim_job(id, &subtree);
        let mut destroyed = 0;
        for s in &subtree {
            if let Some(scope) = self.scopes.get_mut(s) {
                for v in core::mem::take(&mut scope.versions).into_keys() {
                    effects.push(Effect::DestroyWrappedKey {
                        key: KeyId::new(*s, v),
                    });
                    destroyed += 1;
                }
            }
        }
        if id == self.root {
            // Revoking the org scope destroys the root key itself: every holder's copies.
            for h in self.holders.values_mut() {
                for v in core::mem::take(&mut h.copies).into_keys() {
                    effects.push(Effect::DestroyRootCopy {
                        holder: h.id,
                        version: v,
                    });
                }
            }
        }
        if let Some(scope) = self.scopes.get_mut(&id) {
            scope.state = ScopeState::Revoked;
        }
        effects.push(Effect::SetScopeState {
            scope: id,
            state: ScopeState::Revoked,
        });
        effects.push(Effect::DestroyScopeData { scopes: subtree });
        effects.push(Effect::Audit(AuditEvent::ScopeRevoked {
            scope: id,
            keys_destroyed: destroyed,
        }));
        effects.push(Effect::EvictSubtree { scope: id });
        if self.job.is_some() && effects.iter().any(|e| matches!(e, Effect::UpdateJob(_))) {
            // The steps it may have waited on are gone.
            effects.push(Effect::RunJob);
        }
        Ok(effects)
    }

    /// Removes from the running job every step inside the revoked subtree `subtree` (topped by
    /// `top`), and cancels the job if what it exists for is gone: a retirement of a version in
    /// the subtree, or anything at all when the org scope itself is revoked.
    fn trim_job(&mut self, top: ScopeId, subtree: &[ScopeId]) -> Vec<Effect> {
        let Some(mut job) = self.job.take() else {
            return Vec::new();
        };
        let inside = |s: &ScopeId| subtree.contains(s);
        let cancel =
            top == self.root || matches!(job.kind, JobKind::RetireVersion(k) if inside(&k.scope));
        if cancel {
            return vec![
                Effect::CancelJob(job.kind),
                Effect::Audit(AuditEvent::JobCancelled),
            ];
        }
        let hit = |step: &JobStep| match step {
            JobStep::Rewrap { key, from, .. } => inside(&key.scope) || inside(&from.scope),
            JobStep::WrapRoot { .. } => false,
        };
        let done_kept = job.steps.iter().take(job.done).filter(|s| !hit(s)).count();
        let before = job.steps.len();
        job.steps.retain(|s| !hit(s));
        job.done = done_kept;
        let trimmed = before - job.steps.len();
        if trimmed == 0 {
            self.job = Some(job);
            return Vec::new();
        }
        let mut effects = vec![
            Effect::UpdateJob(job.clone()),
            Effect::Audit(AuditEvent::JobTrimmed { steps: trimmed }),
        ];
        self.job = Some(job);
        effects.extend(self.advance_job());
        effects
    }

    /// The scope whose pause holds up the running job's next step, if any: a job never works on
    /// the keys of a paused scope; it waits, and continues once the scope is resumed.
    pub fn job_waiting_on(&self) -> Option<ScopeId> {
        let job = self.job.as_ref()?;
        let scope = match job.steps.get(job.done) {
            Some(JobStep::Rewrap { key, .. }) => key.scope,
            Some(JobStep::WrapRoot { .. }) => self.root,
            None => match job.kind {
                JobKind::RetireVersion(k) => k.scope,
                _ => return None,
            },
        };
        match self.effective(scope) {
            Ok(Effective::Paused { by }) => Some(by),
            _ => None,
        }
    }

    /// Whether the vendor can open this org's root without the customer's KMS: true while the
    /// managed key holds a copy (managed mode, or a customer key attached but not yet the
    /// default); false under BYOK, once the managed copies are destroyed.
    pub fn vendor_can_decrypt(&self) -> bool {
        self.holders
            .get(&HolderId::Managed)
            .is_some_and(|h| !h.copies.is_empty())
    }

    /// `id` and all its descendants, depth first.
    pub fn subtree(&self, id: ScopeId) -> Vec<ScopeId> {
        let mut out = Vec::new();
        let mut stack = vec![id];
        while let Some(s) = stack.pop() {
            if let Some(scope) = self.scopes.get(&s) {
                out.push(s);
                stack.extend(scope.children.iter().rev().copied());
            }
        }
        out
    }

    /// The key version new data in `id` is sealed under.
    pub fn current_key_id(&self, id: ScopeId) -> Result<KeyId> {
        let scope = self.get(id).map_err(scope_err)?;
        let v = scope
            .current_version()
            .ok_or(scope_err(ScopeError::Revoked { scope: id, by: id }))?;
        Ok(KeyId::new(id, v))
    }

    fn wrap_child(
        &self,
        child: &ScopeKey,
        parent: ScopeId,
        parent_key: &ScopeKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>> {
        let ctx = scope_key_context(self.root, child.id(), parent);
        let secret = child.duplicate_secret();
        Envelope::<DefaultBackend>::wrap_secret(parent_key, &ctx, &secret, rng)
    }

    /// Adds a key version to child scope `id`, wrapped under its parent's newest key
    /// (`parent_key`). New data uses it; older versions keep decrypting until retired.
    pub fn rotate(
        &mut self,
        id: ScopeId,
        parent_key: &ScopeKey,
        rng: &mut impl CryptoRng,
    ) -> Result<(ScopeKey, Vec<Effect>)> {
        self.check_usable(id).map_err(scope_err)?;
        let scope = self.get(id).map_err(scope_err)?;
        let Some(parent) = scope.parent else {
            return Err(scope_err(ScopeError::RootRotation));
        };
        let next = scope.current_version().map_or(1, |v| v.saturating_add(1));
        let under = self.current_key_id(parent)?;
        check_key(under, parent_key)?;
        let key_id = KeyId::new(id, next);
        let key = ScopeKey::random(key_id, rng);
        let wrapped = self.wrap_child(&key, parent, parent_key, rng)?;
        if let Some(s) = self.scopes.get_mut(&id) {
            s.versions.insert(
                next,
                Some(WrappedScopeKey {
                    under,
                    wrapped: wrapped.clone(),
                }),
            );
        }
        Ok((
            key,
            vec![
                Effect::PutWrappedKey {
                    key: key_id,
                    under,
                    wrapped,
                },
                Effect::Audit(AuditEvent::KeyRotated(key_id)),
            ],
        ))
    }

    /// Rotates the org root key to `new_root`, which must be version current + 1, generated by the
    /// host and already wrapped by the default holder (`default_copy`: the KMS ciphertext, or the
    /// managed form from [`Self::wrap_root_managed`]). The host must have checked that the copy
    /// unwraps. Taking the copy up front means a new root version is never current before the
    /// default holder can recover it, so a crash cannot lose it. Every other enabled holder then
    /// wraps it through a job (one KMS call each).
    pub fn rotate_root(
        &mut self,
        new_root: &ScopeKey,
        default_copy: Vec<u8>,
    ) -> Result<Vec<Effect>> {
        self.check_usable(self.root).map_err(scope_err)?;
        if self.job.is_some() {
            return Err(scope_err(ScopeError::JobRunning));
        }
        let next = self.current_key_id(self.root)?.version.saturating_add(1);
        check_key(KeyId::new(self.root, next), new_root)?;
        let default = self.default;
        if let Some(scope) = self.scopes.get_mut(&self.root) {
            scope.versions.insert(next, None);
        }
        let mut effects = vec![
            Effect::PutRootVersion { version: next },
            Effect::PutRootCopy {
                holder: default,
                version: next,
                wrapped: default_copy.clone(),
            },
            Effect::Audit(AuditEvent::KeyRotated(new_root.id())),
        ];
        let mut steps = Vec::new();
        for h in self.holders.values_mut() {
            if h.id == default {
                h.copies.insert(next, default_copy.clone());
            } else if h.status != HolderStatus::Disabled {
                if h.status != HolderStatus::Pending {
                    h.status = HolderStatus::Pending;
                    effects.push(Effect::PutHolder {
                        holder: h.id,
                        status: HolderStatus::Pending,
                    });
                }
                steps.push(JobStep::WrapRoot {
                    holder: h.id,
                    version: next,
                });
            }
        }
        if !steps.is_empty() {
            let job = RewrapJob::new(JobKind::WrapRoot(next), steps);
            effects.push(Effect::StartJob(job.clone()));
            self.job = Some(job);
        }
        Ok(effects)
    }

    /// Wraps root key `root` under the managed key, as the managed holder stores it.
    pub fn wrap_root_managed(
        &self,
        managed: &ScopeKey,
        root: &ScopeKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>> {
        let secret = root.duplicate_secret();
        Envelope::<DefaultBackend>::wrap_secret(
            managed,
            &managed_root_context(self.root, root.id().version),
            &secret,
            rng,
        )
    }

    /// Checks a root key the host unwrapped against the tree: if a child key is wrapped under
    /// it, it must open. So a wrong root is refused before anything is wrapped under it.
    fn check_root(&self, root: &ScopeKey) -> Result<()> {
        if let Some(child) = self.wrapped_under(root.id()).first() {
            let wrapped = self
                .scopes
                .get(&child.scope)
                .and_then(|s| s.versions.get(&child.version))
                .and_then(Option::as_ref)
                .ok_or(Error::Internal("scope: child listed without its key"))?;
            let ctx = scope_key_context(self.root, *child, self.root);
            Envelope::<DefaultBackend>::unwrap_secret(root, &ctx, &wrapped.wrapped)
                .map_err(|_| scope_err(ScopeError::Unwrap(root.id())))?;
        }
        Ok(())
    }

    /// Child key versions wrapped under `key`.
    fn wrapped_under(&self, key: KeyId) -> Vec<KeyId> {
        let Some(scope) = self.scopes.get(&key.scope) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in &scope.children {
            if let Some(child) = self.scopes.get(c) {
                for (v, w) in &child.versions {
                    if w.as_ref().is_some_and(|w| w.under == key) {
                        out.push(KeyId::new(*c, *v));
                    }
                }
            }
        }
        out
    }

    /// Plans the job that moves every child key wrapped under `key` to its scope's newest
    /// version, so that `key` can then be retired. One job per org at a time.
    pub fn plan_retire(&mut self, key: KeyId) -> Result<Vec<Effect>> {
        self.check_retirable_version(key)?;
        if self.job.is_some() {
            return Err(scope_err(ScopeError::JobRunning));
        }
        let to = self.current_key_id(key.scope)?;
        let steps: Vec<JobStep> = self
            .wrapped_under(key)
            .into_iter()
            .map(|child| JobStep::Rewrap {
                key: child,
                from: key,
                to,
            })
            .collect();
        self.job = Some(RewrapJob::new(JobKind::RetireVersion(key), steps));
        // Steps already satisfied are skipped (stored as started, so no update of its own); the
        // job itself lasts until `retire`.
        let _ = self.advance_job();
        Ok(self
            .job
            .iter()
            .map(|j| Effect::StartJob(j.clone()))
            .collect())
    }

    fn check_retirable_version(&self, key: KeyId) -> Result<()> {
        self.check_usable(key.scope).map_err(scope_err)?;
        let scope = self.get(key.scope).map_err(scope_err)?;
        if !scope.versions.contains_key(&key.version) {
            return Err(scope_err(ScopeError::UnknownVersion(key)));
        }
        if scope.current_version() == Some(key.version) {
            return Err(scope_err(ScopeError::RetireCurrent(key)));
        }
        Ok(())
    }

    /// Runs one [`JobStep::Rewrap`] step: opens the child key under `from_key` and wraps it under
    /// `to_key`. Idempotent: a step already done returns no effects.
    pub fn rewrap_child(
        &mut self,
        step: &JobStep,
        from_key: &ScopeKey,
        to_key: &ScopeKey,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Effect>> {
        let JobStep::Rewrap { key, from, to } = *step else {
            return Err(scope_err(ScopeError::NoSuchJob));
        };
        if !self.job.as_ref().is_some_and(|j| j.steps.contains(step)) {
            return Err(scope_err(ScopeError::NoSuchJob));
        }
        check_key(from, from_key)?;
        check_key(to, to_key)?;
        let parent = from.scope;
        let current = self
            .get(key.scope)
            .ok()
            .and_then(|s| s.versions.get(&key.version))
            .and_then(Option::as_ref)
            .ok_or(scope_err(ScopeError::UnknownVersion(key)))?;
        if current.under == to {
            return Ok(self.advance_job());
        }
        let ctx = scope_key_context(self.root, key, parent);
        let secret = Envelope::<DefaultBackend>::unwrap_secret(from_key, &ctx, &current.wrapped)
            .map_err(|_| scope_err(ScopeError::Unwrap(key)))?;
        let wrapped = Envelope::<DefaultBackend>::wrap_secret(to_key, &ctx, &secret, rng)?;
        if let Some(slot) = self
            .scopes
            .get_mut(&key.scope)
            .and_then(|s| s.versions.get_mut(&key.version))
        {
            *slot = Some(WrappedScopeKey {
                under: to,
                wrapped: wrapped.clone(),
            });
        }
        let mut effects = vec![Effect::PutWrappedKey {
            key,
            under: to,
            wrapped,
        }];
        effects.extend(self.advance_job());
        Ok(effects)
    }

    /// Retires `key` (not the newest): destroys its wrapped form. Refused while child keys are
    /// still wrapped under it (run [`Self::plan_retire`]'s job first).
    pub fn retire(&mut self, key: KeyId) -> Result<Vec<Effect>> {
        self.check_retirable_version(key)?;
        if self
            .job
            .as_ref()
            .is_some_and(|j| j.kind != JobKind::RetireVersion(key))
        {
            return Err(scope_err(ScopeError::JobRunning));
        }
        let children = self.wrapped_under(key).len();
        if children > 0 {
            return Err(scope_err(ScopeError::VersionInUse { key, children }));
        }
        let mut effects = vec![Effect::DestroyWrappedKey { key }];
        if key.scope == self.root {
            for h in self.holders.values_mut() {
                if h.copies.remove(&key.version).is_some() {
                    effects.push(Effect::DestroyRootCopy {
                        holder: h.id,
                        version: key.version,
                    });
                }
            }
        }
        if let Some(s) = self.scopes.get_mut(&key.scope) {
            s.versions.remove(&key.version);
        }
        effects.push(Effect::EvictKey { key });
        effects.push(Effect::Audit(AuditEvent::KeyRetired(key)));
        // The retirement job, if it was this one, ends with the version.
        if self
            .job
            .as_ref()
            .is_some_and(|j| j.kind == JobKind::RetireVersion(key))
        {
            self.job = None;
            effects.push(Effect::FinishJob(JobKind::RetireVersion(key)));
            effects.push(Effect::Audit(AuditEvent::JobFinished));
        }
        Ok(effects)
    }

    /// Resolves the key `target` from the root key: checks that its scope is usable, then opens
    /// each wrapped key down the path. `root` must be the root version the path starts from.
    pub fn resolve(&self, target: KeyId, root: &ScopeKey) -> Result<ScopeKey> {
        self.check_usable(target.scope).map_err(scope_err)?;
        // Walk up from the target, collecting which key wraps which.
        let mut chain: Vec<(KeyId, &WrappedScopeKey, ScopeId)> = Vec::new();
        let mut cur = target;
        while cur.scope != self.root {
            let scope = self.get(cur.scope).map_err(scope_err)?;
            let wrapped = scope
                .versions
                .get(&cur.version)
                .and_then(Option::as_ref)
                .ok_or(scope_err(ScopeError::UnknownVersion(cur)))?;
            let parent = scope
                .parent
                .ok_or(Error::Internal("scope: child without parent"))?;
            chain.push((cur, wrapped, parent));
            cur = wrapped.under;
        }
        // The root version at the top must still be live (a retired one is gone).
        if !self
            .get(self.root)
            .map_err(scope_err)?
            .versions
            .contains_key(&cur.version)
        {
            return Err(scope_err(ScopeError::UnknownVersion(cur)));
        }
        check_key(cur, root)?;
        let mut key: Option<ScopeKey> = None;
        for (id, wrapped, parent) in chain.into_iter().rev() {
            let wrapping = key.as_ref().unwrap_or(root);
            let ctx = scope_key_context(self.root, id, parent);
            let secret =
                Envelope::<DefaultBackend>::unwrap_secret(wrapping, &ctx, &wrapped.wrapped)
                    .map_err(|_| scope_err(ScopeError::Unwrap(id)))?;
            key = Some(ScopeKey::new(id, secret));
        }
        match key {
            Some(k) => Ok(k),
            None => {
                // The target is a root version itself.
                let secret = root.duplicate_secret();
                Ok(ScopeKey::new(root.id(), secret))
            }
        }
    }

    /// The root key version at the top of `target`'s chain of wrapped keys: the one the host
    /// must unwrap (from a holder) to [`Self::resolve`] `target`.
    pub fn root_of(&self, target: KeyId) -> Result<KeyId> {
        self.check_not_revoked(target.scope).map_err(scope_err)?;
        let mut cur = target;
        while cur.scope != self.root {
            let scope = self.get(cur.scope).map_err(scope_err)?;
            cur = scope
                .versions
                .get(&cur.version)
                .and_then(Option::as_ref)
                .ok_or(scope_err(ScopeError::UnknownVersion(cur)))?
                .under;
        }
        Ok(cur)
    }

    /// Opens the managed holder's copy of root version `version`.
    pub fn unwrap_root_managed(&self, managed: &ScopeKey, version: u32) -> Result<ScopeKey> {
        let holder = self
            .holders
            .get(&HolderId::Managed)
            .ok_or(scope_err(ScopeError::UnknownHolder(HolderId::Managed)))?;
        let copy = holder
            .copies
            .get(&version)
            .ok_or(scope_err(ScopeError::HolderNotReady(HolderId::Managed)))?;
        let secret = Envelope::<DefaultBackend>::unwrap_secret(
            managed,
            &managed_root_context(self.root, version),
            copy,
        )
        .map_err(|_| scope_err(ScopeError::Unwrap(KeyId::new(self.root, version))))?;
        Ok(ScopeKey::new(KeyId::new(self.root, version), secret))
    }

    /// The live root key versions, oldest first: what each holder must hold a copy of.
    pub fn root_versions(&self) -> Vec<u32> {
        self.scopes
            .get(&self.root)
            .map(|s| s.versions.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Attaches CMK `n`: it starts pending, and a job asks it to wrap every live root version
    /// (one KMS call each). It becomes usable once [`Self::record_root_copy`] has every copy.
    pub fn attach_cmk(&mut self, n: u32) -> Result<Vec<Effect>> {
        let id = HolderId::Cmk(n);
        if self.holders.contains_key(&id) {
            return Err(scope_err(ScopeError::HolderExists(id)));
        }
        if self.job.is_some() {
            return Err(scope_err(ScopeError::JobRunning));
        }
        self.check_not_revoked(self.root).map_err(scope_err)?;
        self.holders.insert(id, Holder::new(id));
        let mut effects = vec![
            Effect::PutHolder {
                holder: id,
                status: HolderStatus::Pending,
            },
            Effect::Audit(AuditEvent::HolderAttached(id)),
        ];
        effects.extend(self.start_wrap_job(id));
        Ok(effects)
    }

    fn start_wrap_job(&mut self, id: HolderId) -> Vec<Effect> {
        let steps: Vec<JobStep> = self
            .root_versions()
            .into_iter()
            .map(|version| JobStep::WrapRoot {
                holder: id,
                version,
            })
            .collect();
        let job = RewrapJob::new(JobKind::WrapHolder(id), steps);
        self.job = Some(job.clone());
        vec![Effect::StartJob(job)]
    }

    /// Records `holder`'s wrapped copy of root version `version` (the KMS's answer to a
    /// [`JobStep::WrapRoot`] step). The host must have checked that the copy unwraps (the validation
    /// probe) before recording it. Idempotent.
    pub fn record_root_copy(
        &mut self,
        holder: HolderId,
        version: u32,
        wrapped: Vec<u8>,
    ) -> Result<Vec<Effect>> {
        if !self.root_versions().contains(&version) {
            return Err(scope_err(ScopeError::UnknownVersion(KeyId::new(
                self.root, version,
            ))));
        }
        let live = self.root_versions();
        let h = self
            .holders
            .get_mut(&holder)
            .ok_or(scope_err(ScopeError::UnknownHolder(holder)))?;
        if h.status == HolderStatus::Disabled {
            return Err(scope_err(ScopeError::UnknownHolder(holder)));
        }
        h.copies.insert(version, wrapped.clone());
        let mut effects = vec![Effect::PutRootCopy {
            holder,
            version,
            wrapped,
        }];
        if h.status != HolderStatus::Ready && h.holds_all(live.iter()) {
            h.status = HolderStatus::Ready;
            effects.push(Effect::PutHolder {
                holder,
                status: HolderStatus::Ready,
            });
        }
        effects.push(Effect::Audit(AuditEvent::RootCopyStored {
            holder,
            version,
        }));
        effects.extend(self.advance_job());
        Ok(effects)
    }

    /// Advances the job cursor past every step whose result is visible in the state, and ends
    /// the job when all are. Returns the effects that store the change, if any.
    #[must_use]
    fn advance_job(&mut self) -> Vec<Effect> {
        let Some(mut job) = self.job.take() else {
            return Vec::new();
        };
        let before = job.done;
        while let Some(step) = job.steps.get(job.done) {
            if !self.step_done(step) {
                break;
            }
            job.done += 1;
        }
        // A retirement lasts until the version is destroyed ([`Self::retire`] ends it), so that
        // no other job starts in between and a revoke can cancel it.
        let retiring = matches!(job.kind, JobKind::RetireVersion(k)
            if self.scopes.get(&k.scope).is_some_and(|s| s.versions.contains_key(&k.version)));
        if job.is_finished() && !retiring {
            return vec![
                Effect::FinishJob(job.kind),
                Effect::Audit(AuditEvent::JobFinished),
            ];
        }
        let moved = job.done != before;
        self.job = Some(job);
        match &self.job {
            Some(j) if moved => vec![Effect::UpdateJob(j.clone())],
            _ => Vec::new(),
        }
    }

    fn step_done(&self, step: &JobStep) -> bool {
        match *step {
            // A holder disabled meanwhile has nothing left to wrap.
            JobStep::WrapRoot { holder, version } => self.holders.get(&holder).is_none_or(|h| {
                h.status == HolderStatus::Disabled || h.copies.contains_key(&version)
            }),
            JobStep::Rewrap { key, to, .. } => self
                .scopes
                .get(&key.scope)
                .and_then(|s| s.versions.get(&key.version))
                .and_then(Option::as_ref)
                .is_none_or(|w| w.under == to),
        }
    }

    /// Checks that `fresh` (root versions the host unwrapped from `holder`'s copies just now,
    /// through its KMS) are the org's root keys, `reference` (what it unwrapped from the current
    /// default). The result lets [`Self::set_default`] make `holder` the default.
    pub fn prove_holder(
        &self,
        holder: HolderId,
        fresh: &[ScopeKey],
        reference: &[ScopeKey],
    ) -> Result<RootProof> {
        let h = self
            .holders
            .get(&holder)
            .ok_or(scope_err(ScopeError::UnknownHolder(holder)))?;
        if h.status != HolderStatus::Ready {
            return Err(scope_err(ScopeError::HolderNotReady(holder)));
        }
        proof::compare(self.root, holder, &self.root_versions(), fresh, reference)
            .map_err(scope_err)
    }

    /// Makes `holder` the default. It must hold every live root version.
    ///
    /// A customer key needs `proof` ([`Self::prove_holder`]): then BYOK is exclusive, and the
    /// managed key's copies are destroyed in the same change, so the vendor holds nothing that
    /// opens the org without the customer's KMS. The managed key becomes the default again only
    /// while it still holds every copy (a customer key attached but never made the default);
    /// otherwise see [`Self::make_managed_default`].
    pub fn set_default(
        &mut self,
        holder: HolderId,
        proof: Option<&RootProof>,
    ) -> Result<Vec<Effect>> {
        let h = self
            .holders
            .get(&holder)
            .ok_or(scope_err(ScopeError::UnknownHolder(holder)))?;
        if h.status != HolderStatus::Ready {
            return Err(scope_err(ScopeError::HolderNotReady(holder)));
        }
        if holder == self.default {
            return Ok(Vec::new());
        }
        let live = self.root_versions();
        if let HolderId::Cmk(_) = holder {
            let proven = proof.is_some_and(|p| p.holder == holder && p.covers(live.iter()));
            if !proven {
                let version = live.first().copied().unwrap_or(1);
                return Err(scope_err(ScopeError::ProofMismatch { holder, version }));
            }
        }
        let from = core::mem::replace(&mut self.default, holder);
        let mut effects = vec![
            Effect::SetDefault(holder),
            Effect::Audit(AuditEvent::DefaultHolder { from, to: holder }),
        ];
        if holder != HolderId::Managed {
            effects.extend(self.destroy_managed_copies());
        }
        Ok(effects)
    }

    /// Under BYOK: the managed key's copies are destroyed and it is disabled.
    fn destroy_managed_copies(&mut self) -> Vec<Effect> {
        self.disable_holder(HolderId::Managed)
    }

    /// Disables `id` (if it is attached and enabled) and destroys its copies; a pending wrap by
    /// it (its attach, a root rotation) has nothing left to do. The checks are the caller's.
    fn disable_holder(&mut self, id: HolderId) -> Vec<Effect> {
        let Some(h) = self.holders.get_mut(&id) else {
            return Vec::new();
        };
        if h.status == HolderStatus::Disabled {
            return Vec::new();
        }
        h.status = HolderStatus::Disabled;
        let mut effects = vec![Effect::PutHolder {
            holder: id,
            status: HolderStatus::Disabled,
        }];
        effects.extend(core::mem::take(&mut h.copies).into_keys().map(|version| {
            Effect::DestroyRootCopy {
                holder: id,
                version,
            }
        }));
        effects.push(Effect::Audit(AuditEvent::HolderDisabled(id)));
        // Root keys unwrapped through it must not outlive it in a cache.
        effects.push(Effect::EvictOrg);
        effects.extend(self.advance_job());
        effects
    }

    /// Disables `holder` and destroys its copies, with `target` as the re-encryption target:
    /// another holder that must already hold every live root version (its attach job wrapped
    /// them), so nothing needs a KMS call here and no root version is ever held by nobody.
    /// Refused for the default holder (make another one the default first). Disabling a holder
    /// whose wrap is pending cancels that wrap.
    ///
    /// Why the org can never lose its last copy: the default holder always holds every live
    /// root version ([`Self::set_default`] requires it, [`Self::rotate_root`] takes its copy
    /// first) and can never be disabled; `tests/scope_holders.rs` checks this over random
    /// sequences of holder operations.
    pub fn disable(&mut self, holder: HolderId, target: HolderId) -> Result<Vec<Effect>> {
        if holder == self.default {
            return Err(scope_err(ScopeError::DisableDefault(holder)));
        }
        if !self.holders.contains_key(&holder) {
            return Err(scope_err(ScopeError::UnknownHolder(holder)));
        }
        let live = self.root_versions();
        let t = self
            .holders
            .get(&target)
            .ok_or(scope_err(ScopeError::UnknownHolder(target)))?;
        if target == holder || t.status != HolderStatus::Ready || !t.holds_all(live.iter()) {
            return Err(scope_err(ScopeError::HolderNotReady(target)));
        }
        Ok(self.disable_holder(holder))
    }

    /// Re-enables a disabled holder: it is pending again until it has wrapped every root version.
    pub fn reenable(&mut self, holder: HolderId) -> Result<Vec<Effect>> {
        if holder == HolderId::Managed && self.default != HolderId::Managed {
            return Err(scope_err(ScopeError::ManagedUnderByok));
        }
        if self.job.is_some() {
            return Err(scope_err(ScopeError::JobRunning));
        }
        let h = self
            .holders
            .get_mut(&holder)
            .ok_or(scope_err(ScopeError::UnknownHolder(holder)))?;
        if h.status != HolderStatus::Disabled {
            return Ok(Vec::new());
        }
        h.status = HolderStatus::Pending;
        let mut effects = vec![
            Effect::PutHolder {
                holder,
                status: HolderStatus::Pending,
            },
            Effect::Audit(AuditEvent::HolderEnabled(holder)),
        ];
        effects.extend(self.start_wrap_job(holder));
        Ok(effects)
    }

    /// Falls back to the managed key: [`Self::make_managed_default`], then disables every CMK.
    pub fn disable_all(
        &mut self,
        managed: &ScopeKey,
        roots: &[ScopeKey],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Effect>> {
        let mut effects = self.make_managed_default(managed, roots, rng)?;
        let cmks: BTreeSet<HolderId> = self
            .holders
            .keys()
            .filter(|h| **h != HolderId::Managed)
            .copied()
            .collect();
        for id in cmks {
            effects.extend(self.disable_holder(id));
        }
        Ok(effects)
    }

    /// Makes the managed key the default again: wraps every live root version under `managed`
    /// (local, no KMS) and makes it the default; customer keys keep their copies. `roots` are
    /// the live root versions, which the host must have unwrapped through the current default
    /// customer key at this moment, never from a cache: with the grant removed or the key
    /// disabled that unwrap fails, and nothing changes.
    pub fn make_managed_default(
        &mut self,
        managed: &ScopeKey,
        roots: &[ScopeKey],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<Effect>> {
        if self.job.is_some() {
            return Err(scope_err(ScopeError::JobRunning));
        }
        let live = self.root_versions();
        for r in roots {
            self.check_root(r)?;
        }
        // Wrap everything first; change nothing until all wraps succeeded.
        let mut copies = BTreeMap::new();
        for v in &live {
            let root = roots
                .iter()
                .find(|r| r.id() == KeyId::new(self.root, *v))
                .ok_or(scope_err(ScopeError::UnknownVersion(KeyId::new(
                    self.root, *v,
                ))))?;
            let secret = root.duplicate_secret();
            let wrapped = Envelope::<DefaultBackend>::wrap_secret(
                managed,
                &managed_root_context(self.root, *v),
                &secret,
                rng,
            )?;
            copies.insert(*v, wrapped);
        }
        let mut effects = vec![Effect::PutHolder {
            holder: HolderId::Managed,
            status: HolderStatus::Ready,
        }];
        for (v, w) in &copies {
            effects.push(Effect::PutRootCopy {
                holder: HolderId::Managed,
                version: *v,
                wrapped: w.clone(),
            });
        }
        let m = self
            .holders
            .entry(HolderId::Managed)
            .or_insert_with(|| Holder::new(HolderId::Managed));
        m.copies = copies;
        m.status = HolderStatus::Ready;
        let from = core::mem::replace(&mut self.default, HolderId::Managed);
        if from != HolderId::Managed {
            effects.push(Effect::SetDefault(HolderId::Managed));
            effects.push(Effect::Audit(AuditEvent::DefaultHolder {
                from,
                to: HolderId::Managed,
            }));
        }
        Ok(effects)
    }
}

fn check_key(expected: KeyId, provided: &ScopeKey) -> Result<()> {
    if provided.id() == expected {
        Ok(())
    } else {
        Err(scope_err(ScopeError::WrongKey {
            expected,
            provided: provided.id(),
        }))
    }
}
