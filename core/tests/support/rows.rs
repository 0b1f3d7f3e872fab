//! The smallest store a host could write: an org as rows, changed only by applying effects.
//! It refuses an effect that does not fit the rows (a copy for an unknown holder, a job update
//! with no job), so a transition that forgets or misorders an effect fails here, and
//! [`Rows::restore`] must give back the very org value the transitions produced.

use std::collections::BTreeMap;

use byok_core::ScopeId;
use byok_core::scope::{
    Effect, Holder, HolderId, Org, RewrapJob, ScopeError, ScopeState, StoredScope, WrappedScopeKey,
};

/// An org's rows.
#[derive(Default)]
pub(crate) struct Rows {
    root: Option<ScopeId>,
    scopes: BTreeMap<ScopeId, StoredScope>,
    holders: BTreeMap<HolderId, Holder>,
    default: Option<HolderId>,
    job: Option<RewrapJob>,
}

impl Rows {
    /// Applies one transition's effects, in order.
    pub(crate) fn apply(&mut self, effects: &[Effect]) {
        for e in effects {
            self.apply_one(e);
        }
    }

    fn apply_one(&mut self, e: &Effect) {
        match e {
            Effect::CreateScope { scope, parent } => {
                if parent.is_none() {
                    assert!(self.root.replace(*scope).is_none(), "two org scopes");
                } else {
                    assert!(self.scopes.contains_key(&parent.unwrap()), "parent unknown");
                }
                let new = StoredScope {
                    id: *scope,
                    parent: *parent,
                    state: ScopeState::Active,
                    versions: BTreeMap::new(),
                    checks: BTreeMap::new(),
                };
                assert!(self.scopes.insert(*scope, new).is_none(), "scope twice");
            }
            Effect::SetScopeState { scope, state } => self.scope(*scope).state = *state,
            Effect::PutRootVersion { version, check } => {
                let root = self.root.expect("no org scope");
                let scope = self.scope(root);
                assert!(
                    scope.versions.insert(*version, None).is_none(),
                    "version twice"
                );
                scope.checks.insert(*version, *check);
            }
            Effect::PutRootCheck { version, check } => {
                let root = self.root.expect("no org scope");
                let scope = self.scope(root);
                assert!(scope.versions.contains_key(version), "check of no version");
                assert!(
                    scope.checks.insert(*version, *check).is_none(),
                    "check twice"
                );
            }
            Effect::PutWrappedKey {
                key,
                under,
                wrapped,
            } => {
                let w = WrappedScopeKey {
                    under: *under,
                    wrapped: wrapped.clone(),
                };
                self.scope(key.scope).versions.insert(key.version, Some(w));
            }
            Effect::DestroyWrappedKey { key } => {
                let scope = self.scope(key.scope);
                let gone = scope.versions.remove(&key.version);
                scope.checks.remove(&key.version);
                assert!(gone.is_some(), "destroyed {key} twice");
            }
            Effect::DestroyScopeData { scopes } => {
                assert!(scopes.iter().all(|s| self.scopes.contains_key(s)));
            }
            Effect::PutHolder { holder, status } => {
                self.holders
                    .entry(*holder)
                    .or_insert_with(|| Holder {
                        id: *holder,
                        status: *status,
                        copies: BTreeMap::new(),
                    })
                    .status = *status;
            }
            Effect::PutRootCopy {
                holder,
                version,
                wrapped,
            } => {
                let h = self
                    .holders
                    .get_mut(holder)
                    .expect("copy of an unknown holder");
                h.copies.insert(*version, wrapped.clone());
            }
            Effect::DestroyRootCopy { holder, version } => {
                let h = self.holders.get_mut(holder).expect("unknown holder");
                assert!(h.copies.remove(version).is_some(), "no such copy");
            }
            Effect::SetDefault(h) => {
                assert!(self.holders.contains_key(h), "default unknown");
                self.default = Some(*h);
            }
            Effect::StartJob(job) => {
                assert!(self.job.replace(job.clone()).is_none(), "a second job");
            }
            Effect::UpdateJob(job) => {
                let old = self.job.as_mut().expect("update without a job");
                assert_eq!(old.kind, job.kind, "another job's update");
                *old = job.clone();
            }
            Effect::FinishJob(kind) | Effect::CancelJob(kind) => {
                let old = self.job.take().expect("end without a job");
                assert_eq!(&old.kind, kind, "another job ended");
            }
            Effect::Audit(_)
            | Effect::EvictSubtree { .. }
            | Effect::EvictKey { .. }
            | Effect::EvictOrg
            | Effect::RunJob => {}
        }
    }

    fn scope(&mut self, id: ScopeId) -> &mut StoredScope {
        self.scopes
            .get_mut(&id)
            .expect("effect on an unknown scope")
    }

    /// The org the rows hold.
    pub(crate) fn restore(&self) -> Result<Org, ScopeError> {
        Org::restore(
            self.root.expect("no org scope"),
            self.scopes.values().cloned().collect(),
            self.holders.values().cloned().collect(),
            self.default.expect("no default holder"),
            self.job.clone(),
        )
    }
}
