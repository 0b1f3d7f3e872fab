//! Model-based test of the scope tree: a reference model of a few dozen lines and the real
//! [`Org`] run the same random sequences of operations. After every step they must agree on
//! every scope's effective state and on exactly which sealed messages decrypt.
//!
//! The properties this checks, for any sequence: nothing under a revoked scope decrypts again;
//! nothing under a paused ancestor works until that ancestor resumes; rotation never breaks old
//! data before its version is retired; a refused operation changes nothing; revoke is accepted
//! in every reachable state, retirement jobs at any stage included (the job is trimmed or
//! cancelled), and a job waits on a paused scope instead of working on its keys.

use byok_core::dev::TestRng;
use byok_core::scope::{Effective, JobStep, Org, RootChecker, ScopeError, ScopeState, StoredScope};
use byok_core::{Context, Envelope, Error, KeyId, ScopeId, ScopeKey};
use proptest::prelude::*;

mod support;
use support::rows::Rows;

/// The reference model: parents, own states, live versions. Nothing else.
#[derive(Clone, Debug, Default)]
struct Model {
    parent: Vec<Option<usize>>,
    state: Vec<ScopeState>,
    live: Vec<Vec<u32>>,
}

impl Model {
    fn path(&self, mut i: usize) -> Vec<usize> {
        let mut p = vec![i];
        while let Some(up) = self.parent[i] {
            p.push(up);
            i = up;
        }
        p.reverse();
        p
    }
    fn effective(&self, i: usize) -> Effective {
        let path = self.path(i);
        if let Some(&r) = path.iter().find(|&&s| self.state[s] == ScopeState::Revoked) {
            return Effective::Revoked { by: id(r) };
        }
        match path.iter().find(|&&s| self.state[s] == ScopeState::Paused) {
            Some(&p) => Effective::Paused { by: id(p) },
            None => Effective::Active,
        }
    }
    fn usable(&self, i: usize) -> bool {
        self.effective(i) == Effective::Active
    }
    fn revoked(&self, i: usize) -> bool {
        matches!(self.effective(i), Effective::Revoked { .. })
    }
    /// The refusal owed to an operation that needs scope `i` usable: the pause or revocation
    /// closest to the root on its path, named as such.
    fn unusable(&self, i: usize) -> Option<ScopeError> {
        match self.effective(i) {
            Effective::Active => None,
            Effective::Paused { by } => Some(ScopeError::Paused { scope: id(i), by }),
            Effective::Revoked { by } => Some(ScopeError::Revoked { scope: id(i), by }),
        }
    }
    /// The refusal owed to pause, resume and revoke, which only a revocation stops.
    fn revoked_refusal(&self, i: usize) -> Option<ScopeError> {
        self.unusable(i)
            .filter(|e| matches!(e, ScopeError::Revoked { .. }))
    }
}

/// The scope rule a result was refused by (`None` if it succeeded). Any other error fails the
/// test: the tree's refusals are all `ScopeError`s.
fn refusal<T>(r: &Result<T, Error>) -> Result<Option<ScopeError>, TestCaseError> {
    match r {
        Ok(_) => Ok(None),
        Err(Error::Scope(e)) => Ok(Some(e.clone())),
        Err(other) => Err(TestCaseError::fail(format!(
            "not a scope refusal: {other:?}"
        ))),
    }
}

fn index(s: ScopeId) -> usize {
    (u64::from_be_bytes(s.as_bytes()[..8].try_into().unwrap()) - 1) as usize
}

fn id(i: usize) -> ScopeId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    ScopeId::from_bytes(b)
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Pause(usize),
    Resume(usize),
    Revoke(usize),
    Rotate(usize),
    /// Start retiring the oldest non-current version (plans the rewrap job).
    StartRetire(usize),
    /// Run the job's next step, unless it waits on a paused scope.
    StepJob,
    /// Retire the version once every step of its job is done.
    FinishRetire,
    /// Rotate the org root key (wrapped by the managed default first).
    RotateRoot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<usize>().prop_map(Op::Create),
        2 => any::<usize>().prop_map(Op::Pause),
        2 => any::<usize>().prop_map(Op::Resume),
        1 => any::<usize>().prop_map(Op::Revoke),
        2 => any::<usize>().prop_map(Op::Rotate),
        1 => any::<usize>().prop_map(Op::StartRetire),
        2 => Just(Op::StepJob),
        1 => Just(Op::FinishRetire),
        1 => Just(Op::RotateRoot),
    ]
}

/// The real side: the org, its root key, and one message sealed under every key version made.
struct Real {
    org: Org,
    /// Unwrapped root versions, as a host would get them from a holder.
    roots: Vec<ScopeKey>,
    managed: ScopeKey,
    sealed: Vec<(KeyId, Vec<u8>)>,
    rng: TestRng,
}

impl Real {
    /// `k`, as a host resolves it: the scope's state first (so a pause is named as such even
    /// for a retired version), then the chain from its root version.
    fn key(&self, k: KeyId) -> Result<ScopeKey, Error> {
        self.org.check_usable(k.scope).map_err(Error::Scope)?;
        let top = self.org.root_of(k)?;
        let root = self
            .roots
            .iter()
            .find(|r| r.id() == top)
            .expect("root version known");
        self.org.resolve(k, root)
    }
    /// The parent's current key, or (if it cannot be resolved) some key, so that the
    /// operation's own checks decide the outcome.
    fn parent_key(&self, parent: ScopeId) -> ScopeKey {
        self.org
            .current_key_id(parent)
            .and_then(|k| self.key(k))
            .unwrap_or_else(|_| {
                ScopeKey::new(
                    self.roots[0].id(),
                    byok_core::SecretBytes::from_bytes(&mut [0; 32]),
                )
            })
    }
    fn seal(&mut self, key: &ScopeKey) {
        let ctx = Context::from_pairs([("key", key.id().to_string())]).unwrap();
        let ct =
            Envelope::<byok_core::DefaultBackend>::encrypt(key, &ctx, b"payload", &mut self.rng)
                .unwrap();
        self.sealed.push((key.id(), ct));
    }
    fn opens(&self, k: KeyId, ct: &[u8]) -> Result<(), Error> {
        let key = self.key(k)?;
        let ctx = Context::from_pairs([("key", k.to_string())]).unwrap();
        let plain = Envelope::<byok_core::DefaultBackend>::decrypt(&key, &ctx, ct)?;
        assert_eq!(plain, b"payload");
        Ok(())
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut rng = TestRng::seeded(11);
    let managed = ScopeKey::random(KeyId::new(ScopeId::from_bytes([0; 16]), 1), &mut rng);
    let (org, root, created) = Org::create(id(0), &managed, &mut rng).unwrap();
    // What a host stores, written only through the effects.
    let mut rows = Rows::default();
    rows.apply(&created);
    let mut real = Real {
        org,
        roots: vec![root],
        managed,
        sealed: Vec::new(),
        rng,
    };
    let root_key = real.key(KeyId::new(id(0), 1)).unwrap();
    real.seal(&root_key);
    let mut model = Model {
        parent: vec![None],
        state: vec![ScopeState::Active],
        live: vec![vec![1]],
    };
    // The retirement under way, as the model sees it: (scope, version).
    let mut retiring: Option<(usize, u32)> = None;

    for op in ops {
        let op_seen = op.clone();
        let n = model.parent.len();
        let before = real.org.clone();
        let ok = match op {
            Op::Create(p) => {
                let p = p % n;
                if n >= 40 {
                    continue;
                }
                // The refusal names the parent: the new scope does not exist yet.
                let owed = model.unusable(p);
                let expect = owed.is_none();
                let pk = real.parent_key(id(p));
                let r = real.org.create_scope(id(n), id(p), &pk, &mut real.rng);
                prop_assert_eq!(refusal(&r)?, owed, "create under {}", p);
                if let Ok((key, e)) = r {
                    rows.apply(&e);
                    real.seal(&key);
                    model.parent.push(Some(p));
                    model.state.push(ScopeState::Active);
                    model.live.push(vec![1]);
                }
                expect
            }
            Op::Pause(i) | Op::Resume(i) => {
                let i = i % n;
                let pause = matches!(op, Op::Pause(_));
                let r = if pause {
                    real.org.pause(id(i))
                } else {
                    real.org.resume(id(i))
                };
                let owed = model.revoked_refusal(i);
                let expect = owed.is_none();
                prop_assert_eq!(refusal(&r)?, owed);
                if let Ok(e) = &r {
                    rows.apply(e);
                }
                if expect {
                    model.state[i] = if pause {
                        ScopeState::Paused
                    } else {
                        ScopeState::Active
                    };
                }
                expect
            }
            Op::Revoke(i) => {
                let i = i % n;
                // A wrong confirmation is always refused and changes nothing.
                // A scope revoked already says so first.
                let wrong = real.org.revoke(id(i), "yes");
                let owed = model.revoked_refusal(i);
                prop_assert_eq!(
                    refusal(&wrong)?,
                    Some(
                        owed.clone()
                            .unwrap_or(ScopeError::ConfirmationMismatch { scope: id(i) })
                    )
                );
                prop_assert_eq!(&real.org, &before);
                let r = real.org.revoke(id(i), &id(i).to_string());
                // Whatever runs: only a scope revoked already refuses.
                let expect = owed.is_none();
                prop_assert_eq!(refusal(&r)?, owed, "revoke {}", i);
                if let Ok(e) = &r {
                    rows.apply(e);
                }
                if expect {
                    model.state[i] = ScopeState::Revoked;
                    if let Some((j, _)) = retiring
                        && model.revoked(j)
                    {
                        retiring = None;
                        prop_assert!(real.org.job().is_none(), "job on a revoked scope cancelled");
                    }
                }
                expect
            }
            Op::Rotate(i) => {
                let i = i % n;
                let Some(p) = model.parent[i] else { continue };
                let owed = model.unusable(i);
                let expect = owed.is_none();
                let pk = real.parent_key(id(p));
                let r = real.org.rotate(id(i), &pk, &mut real.rng);
                prop_assert_eq!(refusal(&r)?, owed, "rotate {}", i);
                if let Ok((key, e)) = r {
                    rows.apply(&e);
                    real.seal(&key);
                    let next = model.live[i].last().unwrap() + 1;
                    model.live[i].push(next);
                }
                expect
            }
            Op::RotateRoot => {
                let next = model.live[0].last().unwrap() + 1;
                let key = ScopeKey::random(KeyId::new(id(0), next), &mut real.rng);
                let copy = real
                    .org
                    .wrap_root_managed(&real.managed, &key, &mut real.rng)
                    .unwrap();
                let r = real
                    .org
                    .rotate_root(&key, copy, &RootChecker::new(&real.managed));
                let owed = model
                    .unusable(0)
                    .or(retiring.map(|_| ScopeError::JobRunning));
                let expect = owed.is_none();
                prop_assert_eq!(refusal(&r)?, owed, "rotate_root");
                if let Ok(e) = &r {
                    rows.apply(e);
                }
                if expect {
                    // The managed default can give it back at once.
                    let back = real.org.unwrap_root_managed(&real.managed, next).unwrap();
                    prop_assert_eq!(back.expose_secret(), key.expose_secret());
                    real.seal(&key);
                    real.roots.push(key);
                    model.live[0].push(next);
                }
                expect
            }
            Op::StartRetire(i) => {
                let i = i % n;
                if model.live[i].len() < 2 {
                    continue;
                }
                let old = KeyId::new(id(i), model.live[i][0]);
                let owed = model
                    .unusable(i)
                    .or(retiring.map(|_| ScopeError::JobRunning));
                let expect = owed.is_none();
                let r = real.org.plan_retire(old);
                prop_assert_eq!(refusal(&r)?, owed, "plan_retire {}", old);
                if let Ok(e) = &r {
                    rows.apply(e);
                    retiring = Some((i, old.version));
                }
                expect
            }
            Op::StepJob => {
                let step = real
                    .org
                    .job()
                    .and_then(|j| j.next_batch(1).first().cloned());
                let Some(step) = step else { continue };
                if let Some(by) = real.org.job_waiting_on() {
                    // It waits exactly while a scope on its path is paused.
                    let JobStep::Rewrap { key, .. } = &step else {
                        continue;
                    };
                    let i = index(key.scope);
                    prop_assert_eq!(model.effective(i), Effective::Paused { by });
                    continue;
                }
                let JobStep::Rewrap { key, from, to } = step.clone() else {
                    continue;
                };
                prop_assert!(
                    model.usable(index(key.scope)),
                    "a step on a paused scope ran"
                );
                let (fk, tk) = (real.key(from).unwrap(), real.key(to).unwrap());
                let e = real
                    .org
                    .rewrap_child(&step, &fk, &tk, &mut real.rng)
                    .unwrap();
                rows.apply(&e);
                true
            }
            Op::FinishRetire => {
                let Some((i, v)) = retiring else { continue };
                let done = real.org.job().is_some_and(|j| j.next_batch(1).is_empty());
                let key = KeyId::new(id(i), v);
                let owed = model.unusable(i);
                let expect = done && owed.is_none();
                let r = real.org.retire(key);
                match (refusal(&r)?, owed) {
                    (got, Some(owed)) => prop_assert_eq!(got, Some(owed), "retire"),
                    // Steps are left: the version still wraps a child key.
                    (Some(ScopeError::VersionInUse { key: k, children }), None) => {
                        prop_assert!(
                            !done && k == key && children > 0,
                            "retire {} {}",
                            k,
                            children
                        )
                    }
                    (got, None) => prop_assert!(done && got.is_none(), "retire: {:?}", got),
                }
                if let Ok(e) = &r {
                    rows.apply(e);
                }
                if expect {
                    model.live[i].remove(0);
                    retiring = None;
                    prop_assert!(real.org.job().is_none());
                }
                expect
            }
        };
        if !ok {
            prop_assert_eq!(&real.org, &before, "a refused operation changed the org");
        }
        // What a host stores rebuilds the same org.
        let o = &real.org;
        let restored = Org::restore(
            o.id(),
            o.scopes().map(StoredScope::from).collect(),
            o.holders().cloned().collect(),
            o.default_holder(),
            o.job().cloned(),
        );
        prop_assert_eq!(restored.as_ref(), Ok(o), "restore after {:?}", op_seen);
        let replayed = rows.restore();
        prop_assert_eq!(
            replayed.as_ref(),
            Ok(o),
            "effects replayed after {:?}",
            op_seen
        );
        // Agreement on every scope's effective state...
        for i in 0..model.parent.len() {
            prop_assert_eq!(
                real.org.effective(id(i)).unwrap(),
                model.effective(i),
                "scope {}",
                i
            );
        }
        // ...and on exactly what decrypts.
        for (k, ct) in &real.sealed {
            let i = index(k.scope);
            // Under a paused or revoked scope the error names the pause or revocation; a
            // retired version is unknown.
            let owed = model.unusable(i).or_else(|| {
                (!model.live[i].contains(&k.version)).then_some(ScopeError::UnknownVersion(*k))
            });
            let got = real.opens(*k, ct);
            prop_assert_eq!(refusal(&got)?, owed, "{} under scope {}", k, i);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
    #[test]
    fn org_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
