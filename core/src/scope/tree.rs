//! The scope tree: creating scopes, the state each one has and the one that applies
//! ([`Org::effective`]), pause, resume and revoke. Revoke trims the running job here, because
//! what it destroys decides which steps are left; the job itself is run in [`super::keyring`].

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::crypto::ScopeKey;
use crate::key_id::{KeyId, ScopeId};
use crate::scope::contexts::hex;
use crate::scope::effect::{AuditEvent, Effect};
use crate::scope::error::ScopeError;
use crate::scope::job::{JobKind, JobStep};
use crate::scope::keyring::check_key;
use crate::scope::org::{MAX_DEPTH, Org, Result, Scope, WrappedScopeKey, scope_err};
use crate::scope::state::{Effective, ScopeState};

impl Org {
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
    pub(super) fn check_not_revoked(&self, id: ScopeId) -> core::result::Result<(), ScopeError> {
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
        self.scopes.insert_mut(
            id,
            Scope {
                id,
                parent: Some(parent),
                depth,
                state: ScopeState::Active,
                versions: BTreeMap::from([(1, Some(record))]),
                checks: BTreeMap::new(),
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
                // A check value goes with its root version (the same row, for a host).
                scope.checks.clear();
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
}
