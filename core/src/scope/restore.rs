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
use crate::scope::root_check::RootCheck;
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
    /// The check values of its root versions (the org scope's only; see [`Scope::checks`]).
    pub checks: BTreeMap<u32, RootCheck>,
}

impl From<&Scope> for StoredScope {
    fn from(s: &Scope) -> Self {
        Self {
            id: s.id,
            parent: s.parent,
            state: s.state,
            versions: s.versions.clone(),
            checks: s.checks.clone(),
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
                checks: s.checks,
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
            // Checks belong to live root versions only. A missing one is allowed here (a
            // version made before byok kept them); `Org::verify_root` decides its use.
            let checks_ok = match s.parent {
                None => s.checks.keys().all(|v| s.versions.contains_key(v)),
                Some(_) => s.checks.is_empty(),
            };
            if !checks_ok {
                return Err(Bad(
                    "a check value of a key that is not a live root version",
                ));
            }
        }
        let mut by_id: BTreeMap<HolderId, Holder> = BTreeMap::new();
        for h in holders {
            // The last of two rows would win, and the checks below would see only it (a
            // managed root copy hidden behind a second, empty managed row, say).
            if by_id.insert(h.id, h).is_some() {
                return Err(Bad("a key holder is stored twice"));
            }
        }
        let holders = by_id;
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
        if default != HolderId::Managed
            && holders
                .get(&HolderId::Managed)
                .is_some_and(|m| m.status != HolderStatus::Disabled)
        {
            // Under BYOK the managed key is disabled: enabled, a root rotation would make it
            // wrap the next root version, which the vendor could then open alone.
            return Err(Bad(
                "the managed key is enabled while a customer key is the default",
            ));
        }
        if holders
            .values()
            .any(|h| h.status == HolderStatus::Disabled && !h.copies.is_empty())
        {
            return Err(Bad("a disabled key holder still has root copies"));
        }
        if holders.values().any(|h| {
            h.copies
                .keys()
                .any(|v| !root_versions.is_some_and(|r| r.contains_key(v)))
        }) {
            return Err(Bad(
                "a key holder has a copy of a root version that is gone",
            ));
        }
        let org = Self::from_parts(root, scopes, holders, default, job);
        if !org.job_fits() {
            return Err(Bad(
                "the stored job names keys or holders the org does not have",
            ));
        }
        Ok(org)
    }
}

#[cfg(all(test, feature = "dev"))]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::crypto::ScopeKey;
    use crate::dev::TestRng;
    use crate::key_id::KeyId;
    use crate::scope::effect::Effect;
    use crate::scope::job::{JobKind, JobStep};
    use crate::scope::managed_key;
    use crate::scope::root_check::RootChecker;
    use crate::secret::SecretBytes;
    use alloc::vec;

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
        // The team has versions 1 and 2; its child's key stays under 1.
        org.rotate(team_key.id().scope, &root_key, &mut rng)
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
        let cases: [(&str, Damage); 12] = [
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
            ("copy of a root version that is gone", |_, h| {
                h[0].copies.insert(9, vec![1]);
            }),
            ("holder stored twice", |_, h| h.push(h[0].clone())),
            ("check of a root version that is gone", |s, _| {
                let check = s[0].checks[&1];
                s[0].checks.insert(9, check);
            }),
            ("check on a child scope", |s, _| {
                let check = s[0].checks[&1];
                s[1].checks.insert(1, check);
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

    /// The org of [`parts`] with a customer key `Cmk(1)` as the default holding every root
    /// copy, and the managed holder as `managed` says.
    fn byok(managed: HolderStatus) -> (Vec<StoredScope>, Vec<Holder>) {
        let (_, stored, mut holders) = parts();
        let copies = core::mem::take(&mut holders[0].copies);
        holders[0].status = managed;
        holders.push(Holder {
            id: HolderId::Cmk(1),
            status: HolderStatus::Ready,
            copies,
        });
        (stored, holders)
    }

    /// Under BYOK the managed key is disabled. Rows saying it is enabled (with no copies, so
    /// that "the vendor can decrypt" still reads false) are refused: the next root rotation
    /// would make it wrap the new root. And were such a state built, a rotation skips it and a
    /// copy by it is refused.
    #[test]
    fn an_enabled_managed_key_under_byok_is_refused() {
        let root = ScopeId::from_bytes([1; 16]);
        let open = |(stored, holders): (Vec<StoredScope>, Vec<Holder>)| {
            Org::restore(root, stored, holders, HolderId::Cmk(1), None)
        };
        assert!(open(byok(HolderStatus::Disabled)).is_ok());
        // A managed root copy stored in a row that a second, disabled managed row would hide.
        let (stored, mut holders) = byok(HolderStatus::Disabled);
        let mut copy = holders[0].clone();
        copy.status = HolderStatus::Ready;
        copy.copies = holders[1].copies.clone();
        holders.insert(0, copy);
        assert!(matches!(
            open((stored, holders)),
            Err(ScopeError::Inconsistent("a key holder is stored twice"))
        ));
        for status in [HolderStatus::Ready, HolderStatus::Pending] {
            assert!(
                matches!(open(byok(status)), Err(ScopeError::Inconsistent(_))),
                "{status:?} accepted"
            );
        }
        let (stored, holders) = byok(HolderStatus::Ready);
        let scopes = restore(stored, Vec::from([holders[1].clone()])).map(|_| ());
        assert!(scopes.is_err(), "the managed default lacks copies");
        let mut org = open(byok(HolderStatus::Disabled)).unwrap();
        let mut rng = TestRng::seeded(4);
        if let Some(m) = org.holders.get_mut(&HolderId::Managed) {
            m.status = HolderStatus::Ready;
        }
        let next = ScopeKey::random(KeyId::new(root, 2), &mut rng);
        let checker = RootChecker::new(&managed_key(SecretBytes::random(&mut rng), 1));
        let effects = org.rotate_root(&next, vec![7], &checker).unwrap();
        assert!(
            !effects.iter().any(|e| matches!(
                e,
                Effect::StartJob(j) if j.steps.iter().any(|s| matches!(
                    s, JobStep::WrapRoot { holder: HolderId::Managed, .. }))
            )),
            "the managed key was asked to wrap a root under BYOK"
        );
        org.job = None;
        assert!(matches!(
            org.record_root_copy(HolderId::Managed, 2, vec![1]),
            Err(crate::Error::Scope(ScopeError::ManagedUnderByok))
        ));
    }

    /// The managed key opens only live root versions, whatever copies a state holds.
    #[test]
    fn the_managed_key_opens_live_root_versions_only() {
        let mut rng = TestRng::seeded(3);
        let managed = managed_key(SecretBytes::random(&mut rng), 1);
        let (mut org, _, _) = parts();
        assert!(org.unwrap_root_managed(&managed, 1).is_ok());
        if let Some(m) = org.holders.get_mut(&HolderId::Managed) {
            let copy = m.copies[&1].clone();
            m.copies.insert(9, copy);
        }
        assert!(matches!(
            org.unwrap_root_managed(&managed, 9),
            Err(crate::Error::Scope(ScopeError::UnknownVersion(_)))
        ));
    }

    /// A stored job whose rewrap moves a key anywhere but between its parent's versions (which
    /// would make a cycle no resolve leaves) is refused on restore; a step aimed at a version
    /// the parent does not have is refused when it runs.
    #[test]
    fn a_job_that_does_not_fit_the_tree_is_refused() {
        let (_, stored, holders) = parts();
        let (root, team, leaf) = (
            ScopeId::from_bytes([1; 16]),
            ScopeId::from_bytes([2; 16]),
            ScopeId::from_bytes([3; 16]),
        );
        let job = |key, from, to| {
            Some(RewrapJob::new(
                JobKind::RetireVersion(KeyId::new(team, 1)),
                Vec::from([JobStep::Rewrap { key, from, to }]),
            ))
        };
        let open = |job| {
            Org::restore(
                root,
                stored.clone(),
                holders.clone(),
                HolderId::Managed,
                job,
            )
        };
        // The team's key moved under its own child.
        let cycle = job(
            KeyId::new(team, 1),
            KeyId::new(root, 1),
            KeyId::new(leaf, 1),
        );
        assert!(matches!(open(cycle), Err(ScopeError::Inconsistent(_))));
        let mut done_past = job(
            KeyId::new(leaf, 1),
            KeyId::new(team, 1),
            KeyId::new(team, 1),
        );
        if let Some(j) = done_past.as_mut() {
            j.done = 2;
        }
        assert!(matches!(open(done_past), Err(ScopeError::Inconsistent(_))));
        // A retirement of the newest version (which `retire` refuses, so it would fail on every
        // run and hold every later job back), or one moving keys off another version.
        let retire = |version, from| {
            Some(RewrapJob::new(
                JobKind::RetireVersion(KeyId::new(team, version)),
                Vec::from([JobStep::Rewrap {
                    key: KeyId::new(leaf, 1),
                    from: KeyId::new(team, from),
                    to: KeyId::new(team, 2),
                }]),
            ))
        };
        assert!(matches!(
            open(retire(2, 2)),
            Err(ScopeError::Inconsistent(_))
        ));
        assert!(matches!(
            open(retire(1, 2)),
            Err(ScopeError::Inconsistent(_))
        ));
        assert!(open(retire(1, 1)).is_ok());
        // A retirement of a version the team does not have (retired already, or never made).
        assert!(matches!(
            open(retire(7, 7)),
            Err(ScopeError::Inconsistent(_))
        ));
        // A rewrap onto the version the key is under: counted done at once, moving nothing,
        // and the retirement after it refused for good.
        let onto_itself = Some(RewrapJob::new(
            JobKind::RetireVersion(KeyId::new(team, 1)),
            Vec::from([JobStep::Rewrap {
                key: KeyId::new(leaf, 1),
                from: KeyId::new(team, 1),
                to: KeyId::new(team, 1),
            }]),
        ));
        assert!(matches!(
            open(onto_itself),
            Err(ScopeError::Inconsistent(_))
        ));
        // Fits the tree, but aims at a version the team does not have.
        let step = JobStep::Rewrap {
            key: KeyId::new(leaf, 1),
            from: KeyId::new(team, 1),
            to: KeyId::new(team, 5),
        };
        let mut org = open(job(
            KeyId::new(leaf, 1),
            KeyId::new(team, 1),
            KeyId::new(team, 5),
        ))
        .unwrap();
        let mut rng = TestRng::seeded(5);
        let from = ScopeKey::random(KeyId::new(team, 1), &mut rng);
        let to = ScopeKey::random(KeyId::new(team, 5), &mut rng);
        assert!(matches!(
            org.rewrap_child(&step, &from, &to, &mut rng),
            Err(crate::Error::Scope(ScopeError::NoSuchJob))
        ));
    }
}
