//! Rebuilding an [`Org`] from the rows a host stored: the inverse of persisting it. Everything a
//! transition guarantees is checked again, so a damaged or hand-edited store is refused with
//! [`ScopeError::Inconsistent`] instead of being trusted.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use crate::key_id::ScopeId;
use crate::scope::error::ScopeError;
use crate::scope::holders::{Holder, HolderId, HolderStatus};
use crate::scope::job::RewrapJob;
use crate::scope::org::{MAX_DEPTH, Org, Scope, WrappedScopeKey};
use crate::scope::state::ScopeState;

/// One stored scope row: what a host keeps per scope. Depth and children are derived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredScope {
    /// The scope's id.
    pub id: ScopeId,
    /// Its parent (`None` only for the org scope).
    pub parent: Option<ScopeId>,
    /// The state set on it.
    pub state: ScopeState,
    /// Its live key versions (see [`Scope::versions`]).
    pub versions: BTreeMap<u32, Option<WrappedScopeKey>>,
}

impl From<&Scope> for StoredScope {
    fn from(s: &Scope) -> Self {
        Self {
            id: s.id,
            parent: s.parent,
            state: s.state,
            versions: s.versions.clone(),
        }
    }
}

impl Org {
    /// Rebuilds org `root` from its stored scopes (any order), holders, default holder and job.
    pub fn restore(
        root: ScopeId,
        stored: Vec<StoredScope>,
        holders: Vec<Holder>,
        default: HolderId,
        job: Option<RewrapJob>,
    ) -> Result<Self, ScopeError> {
        use ScopeError::Inconsistent as Bad;
        let mut scopes: BTreeMap<ScopeId, Scope> = BTreeMap::new();
        for s in stored {
            let scope = Scope {
                id: s.id,
                parent: s.parent,
                depth: 0,
                state: s.state,
                versions: s.versions,
                children: Vec::new(),
            };
            if scopes.insert(s.id, scope).is_some() {
                return Err(Bad("a scope is stored twice"));
            }
        }
        match scopes.get(&root) {
            Some(r) if r.parent.is_none() => {}
            Some(_) => return Err(Bad("the org scope has a parent")),
            None => return Err(Bad("the org scope is missing")),
        }
        let mut children: BTreeMap<ScopeId, Vec<ScopeId>> = BTreeMap::new();
        for s in scopes.values() {
            match s.parent {
                None if s.id != root => return Err(Bad("a second scope without a parent")),
                None => {}
                Some(p) if !scopes.contains_key(&p) => {
                    return Err(Bad("a scope's parent is missing"));
                }
                Some(p) => children.entry(p).or_default().push(s.id),
            }
        }
        // Walk down from the org scope: depths, and every scope reachable (no cycles).
        let mut queue = VecDeque::from([(root, 0u16)]);
        let mut reached = 0usize;
        while let Some((id, depth)) = queue.pop_front() {
            if depth > MAX_DEPTH {
                return Err(Bad("the tree is deeper than the limit"));
            }
            reached += 1;
            let kids = children.remove(&id).unwrap_or_default();
            for &k in &kids {
                queue.push_back((k, depth + 1));
            }
            if let Some(s) = scopes.get_mut(&id) {
                s.depth = depth;
                s.children = kids;
            }
        }
        if reached != scopes.len() {
            return Err(Bad("scopes not connected to the org scope (a cycle)"));
        }
        for s in scopes.values() {
            let keys_ok = match (s.parent, s.state) {
                (_, ScopeState::Revoked) => s.versions.is_empty(),
                (None, _) => !s.versions.is_empty() && s.versions.values().all(Option::is_none),
                // Under a revoked ancestor, the keys are destroyed whatever the own state.
                (Some(p), _) if s.versions.is_empty() => {
                    scopes.get(&p).is_some_and(|p| p.versions.is_empty())
                }
                (Some(p), _) => s.versions.iter().all(|(v, w)| {
                    w.as_ref().is_some_and(|w| {
                        w.under.scope == p
                            && scopes
                                .get(&p)
                                .is_some_and(|p| p.versions.contains_key(&w.under.version))
                    }) && *v > 0
                }),
            };
            if !keys_ok {
                return Err(Bad("a scope's key versions do not match its parent's"));
            }
        }
        let holders: BTreeMap<HolderId, Holder> = holders.into_iter().map(|h| (h.id, h)).collect();
        let root_versions = scopes.get(&root).map(|r| &r.versions);
        let default_ok = holders.get(&default).is_some_and(|h| {
            h.status == HolderStatus::Ready && root_versions.is_some_and(|v| h.holds_all(v.keys()))
        });
        if !default_ok {
            return Err(Bad(
                "the default key holder is missing or lacks a root copy",
            ));
        }
        if default != HolderId::Managed
            && holders
                .get(&HolderId::Managed)
                .is_some_and(|m| !m.copies.is_empty())
        {
            return Err(Bad(
                "the managed key holds a root copy while a customer key is the default",
            ));
        }
        if holders
            .values()
            .any(|h| h.status == HolderStatus::Disabled && !h.copies.is_empty())
        {
            return Err(Bad("a disabled key holder still has root copies"));
        }
        Ok(Self::from_parts(root, scopes, holders, default, job))
    }
}

#[cfg(all(test, feature = "dev"))]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::dev::TestRng;
    use crate::key_id::KeyId;
    use crate::scope::managed_key;
    use crate::secret::SecretBytes;

    fn parts() -> (Org, Vec<StoredScope>, Vec<Holder>) {
        let mut rng = TestRng::seeded(3);
        let managed = managed_key(SecretBytes::random(&mut rng), 1);
        let root = ScopeId::from_bytes([1; 16]);
        let (mut org, root_key, _) = Org::create(root, &managed, &mut rng).unwrap();
        let (team_key, _) = org
            .create_scope(ScopeId::from_bytes([2; 16]), root, &root_key, &mut rng)
            .unwrap();
        org.create_scope(
            ScopeId::from_bytes([3; 16]),
            team_key.id().scope,
            &team_key,
            &mut rng,
        )
        .unwrap();
        let stored = org.scopes().map(StoredScope::from).collect();
        let holders = org.holders().cloned().collect();
        (org, stored, holders)
    }

    fn restore(stored: Vec<StoredScope>, holders: Vec<Holder>) -> Result<Org, ScopeError> {
        Org::restore(
            ScopeId::from_bytes([1; 16]),
            stored,
            holders,
            HolderId::Managed,
            None,
        )
    }

    #[test]
    fn rows_rebuild_the_org_in_any_order() {
        let (org, mut stored, holders) = parts();
        stored.reverse();
        assert_eq!(restore(stored, holders), Ok(org));
    }

    #[test]
    fn damaged_rows_are_refused() {
        let (_, stored, holders) = parts();
        type Damage = fn(&mut Vec<StoredScope>, &mut Vec<Holder>);
        let cases: [(&str, Damage); 8] = [
            ("missing org scope", |s, _| s.retain(|x| x.parent.is_some())),
            ("duplicate", |s, _| s.push(s[1].clone())),
            ("missing parent", |s, _| {
                s.retain(|x| x.id != ScopeId::from_bytes([2; 16]))
            }),
            ("cycle", |s, _| {
                for x in s.iter_mut() {
                    if x.id == ScopeId::from_bytes([2; 16]) {
                        x.parent = Some(ScopeId::from_bytes([3; 16]));
                    }
                }
            }),
            ("second parentless", |s, _| s[2].parent = None),
            ("keys wrapped elsewhere", |s, _| {
                for x in s.iter_mut() {
                    if let Some(Some(w)) = x.versions.get_mut(&1) {
                        w.under = KeyId::new(x.id, 1);
                    }
                }
            }),
            ("no default holder", |_, h| h.clear()),
            ("disabled holder with copies", |_, h| {
                h[0].status = HolderStatus::Disabled;
            }),
        ];
        for (name, damage) in cases {
            let (mut s, mut h) = (stored.clone(), holders.clone());
            damage(&mut s, &mut h);
            assert!(
                matches!(restore(s, h), Err(ScopeError::Inconsistent(_))),
                "{name} was accepted"
            );
        }
    }
}
