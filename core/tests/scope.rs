//! Unit tests of the scope tree and key holders: the exact effects of each operation, and each
//! rule's typed error, with the org unchanged after every refusal.

use byok_core::dev::TestRng;
use byok_core::scope::{
    AuditEvent, Effect, Effective, HolderId, HolderStatus, JobKind, JobStep, Org, RewrapJob,
    RootChecker, RootProof, RootVerdict, ScopeError, ScopeState, StoredScope,
};
use byok_core::{Context, Envelope, Error, KeyId, ScopeId, ScopeKey, SecretBytes};

fn sid(n: u8) -> ScopeId {
    ScopeId::from_bytes([n; 16])
}

struct Fixture {
    org: Org,
    root: ScopeKey,
    managed: ScopeKey,
    rng: TestRng,
}

/// org(1) > team(2) > thread(3), and team(2) > sibling(4).
fn fixture() -> Fixture {
    let mut rng = TestRng::seeded(42);
    let managed = ScopeKey::random(KeyId::new(ScopeId::from_bytes([0; 16]), 1), &mut rng);
    let (mut org, root, effects) = Org::create(sid(1), &managed, &mut rng).unwrap();
    assert!(matches!(&effects[..], [
        Effect::CreateScope { scope, parent: None },
        Effect::PutRootVersion { version: 1, check },
        Effect::PutHolder { holder: HolderId::Managed, status: HolderStatus::Ready },
        Effect::PutRootCopy { holder: HolderId::Managed, version: 1, wrapped },
        Effect::SetDefault(HolderId::Managed),
        Effect::Audit(AuditEvent::RootCopyStored { holder: HolderId::Managed, version: 1 }),
    ] if wrapped.len() == 140 && *scope == sid(1)
        && *check == RootChecker::new(&managed).check(sid(1), &root)));
    let (team, _) = org.create_scope(sid(2), sid(1), &root, &mut rng).unwrap();
    org.create_scope(sid(3), sid(2), &team, &mut rng).unwrap();
    org.create_scope(sid(4), sid(2), &team, &mut rng).unwrap();
    Fixture {
        org,
        root,
        managed,
        rng,
    }
}

/// What a host proves before a customer key becomes the default: its copy, unwrapped through
/// the KMS just now (here: the root itself, as a KMS would give it back), matches the root.
fn prove(f: &Fixture, holder: HolderId) -> RootProof {
    let fresh = ScopeKey::new(f.root.id(), f.root.duplicate_secret());
    f.org
        .prove_holder(holder, &[fresh], std::slice::from_ref(&f.root))
        .unwrap()
}

fn scope_err(r: Result<impl std::fmt::Debug, Error>) -> ScopeError {
    match r {
        Err(Error::Scope(e)) => e,
        other => panic!("expected a scope error, got {other:?}"),
    }
}

/// Runs `op` on a clone, expects the scope error `want`, and that the org did not change.
fn refused<T: std::fmt::Debug>(
    f: &mut Fixture,
    want: ScopeError,
    op: impl FnOnce(&mut Fixture) -> Result<T, Error>,
) {
    let before = f.org.clone();
    let got = scope_err(op(f));
    assert_eq!(got, want);
    assert_eq!(f.org, before, "refused operation changed the org");
    // Every message says what to do; none is empty.
    assert!(got.to_string().len() > 20);
}

/// Pauses the org scope: its id, and the error every refused operation then names.
fn pause_the_org(f: &mut Fixture) -> (ScopeId, ScopeError) {
    let org_id = f.org.id();
    f.org.pause(org_id).unwrap();
    let paused = ScopeError::Paused {
        scope: org_id,
        by: org_id,
    };
    (org_id, paused)
}

#[test]
fn create_scope_effects_and_data_round_trip() {
    let mut f = fixture();
    let team = f.org.resolve(KeyId::new(sid(2), 1), &f.root).unwrap();
    let (key, effects) = f
        .org
        .create_scope(sid(5), sid(2), &team, &mut f.rng)
        .unwrap();
    assert_eq!(key.id(), KeyId::new(sid(5), 1));
    match &effects[..] {
        [
            Effect::CreateScope {
                scope: created,
                parent: Some(created_under),
            },
            Effect::PutWrappedKey {
                key: k,
                under,
                wrapped,
            },
            Effect::Audit(AuditEvent::ScopeCreated { scope, parent }),
        ] => {
            assert_eq!(
                (*k, *under, *scope, *parent),
                (key.id(), KeyId::new(sid(2), 1), sid(5), sid(2))
            );
            assert_eq!((*created, *created_under), (sid(5), sid(2)));
            assert_eq!(wrapped.len(), 140);
        }
        other => panic!("unexpected effects {other:?}"),
    }
    // The resolved key is the one returned: data sealed with one opens with the other.
    let ctx = Context::new();
    let ct = Envelope::<byok_core::DefaultBackend>::encrypt(&key, &ctx, b"x", &mut f.rng).unwrap();
    let resolved = f.org.resolve(key.id(), &f.root).unwrap();
    assert_eq!(
        Envelope::<byok_core::DefaultBackend>::decrypt(&resolved, &ctx, &ct).unwrap(),
        b"x"
    );
    assert_eq!(f.org.scope(sid(5)).unwrap().depth, 2);
}

#[test]
fn create_rules() {
    let mut f = fixture();
    let team = f.org.resolve(KeyId::new(sid(2), 1), &f.root).unwrap();
    refused(&mut f, ScopeError::ScopeExists(sid(3)), |f| {
        f.org.create_scope(sid(3), sid(2), &team, &mut f.rng)
    });
    refused(&mut f, ScopeError::UnknownScope(sid(9)), |f| {
        f.org.create_scope(sid(7), sid(9), &team, &mut f.rng)
    });
    let root = f.root.id();
    refused(
        &mut f,
        ScopeError::WrongKey {
            expected: KeyId::new(sid(2), 1),
            provided: root,
        },
        |f| {
            let root = f.org.resolve(KeyId::new(sid(1), 1), &f.root).unwrap();
            f.org.create_scope(sid(7), sid(2), &root, &mut f.rng)
        },
    );
    f.org.pause(sid(2)).unwrap();
    refused(
        &mut f,
        ScopeError::Paused {
            scope: sid(2),
            by: sid(2),
        },
        |f| f.org.create_scope(sid(7), sid(2), &team, &mut f.rng),
    );
    refused(&mut f, ScopeError::MoveNotSupported, |f| {
        f.org.move_scope(sid(3), sid(1))
    });
}

#[test]
fn depth_is_bounded() {
    let mut f = fixture();
    let mut parent = sid(3);
    let mut key = f.org.resolve(KeyId::new(sid(3), 1), &f.root).unwrap();
    let mut depth = 2;
    let mut n = 10u8;
    let err = loop {
        let id = ScopeId::from_bytes([n, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        match f.org.create_scope(id, parent, &key, &mut f.rng) {
            Ok((k, _)) => {
                depth += 1;
                parent = id;
                key = k;
                n += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        Error::Scope(ScopeError::TooDeep {
            max: byok_core::scope::MAX_DEPTH
        })
    );
    assert_eq!(depth, byok_core::scope::MAX_DEPTH);
}

#[test]
fn pause_cascades_and_cannot_be_bypassed() {
    let mut f = fixture();
    assert_eq!(
        f.org.pause(sid(2)).unwrap(),
        vec![
            Effect::SetScopeState {
                scope: sid(2),
                state: ScopeState::Paused
            },
            Effect::Audit(AuditEvent::ScopePaused(sid(2))),
            Effect::EvictSubtree { scope: sid(2) },
        ]
    );
    assert_eq!(
        f.org.pause(sid(2)).unwrap(),
        vec![],
        "pausing twice changes nothing"
    );
    for s in [2, 3, 4] {
        assert_eq!(
            f.org.effective(sid(s)).unwrap(),
            Effective::Paused { by: sid(2) }
        );
        let err = scope_err(f.org.resolve(KeyId::new(sid(s), 1), &f.root));
        assert_eq!(
            err,
            ScopeError::Paused {
                scope: sid(s),
                by: sid(2)
            }
        );
        assert!(err.to_string().contains(&sid(2).to_string()), "{err}");
    }
    assert_eq!(f.org.effective(sid(1)).unwrap(), Effective::Active);
    // Pausing the child too, then resuming it, does not bypass the paused parent.
    f.org.pause(sid(3)).unwrap();
    assert_eq!(
        f.org.resume(sid(3)).unwrap(),
        vec![
            Effect::SetScopeState {
                scope: sid(3),
                state: ScopeState::Active
            },
            Effect::Audit(AuditEvent::ScopeResumed(sid(3)))
        ]
    );
    assert_eq!(
        f.org.effective(sid(3)).unwrap(),
        Effective::Paused { by: sid(2) }
    );
    // Topmost pause is the one named.
    f.org.pause(sid(1)).unwrap();
    assert_eq!(
        f.org.effective(sid(3)).unwrap(),
        Effective::Paused { by: sid(1) }
    );
    f.org.resume(sid(1)).unwrap();
    f.org.resume(sid(2)).unwrap();
    assert!(f.org.resolve(KeyId::new(sid(3), 1), &f.root).is_ok());
}

#[test]
fn revoke_needs_confirmation_destroys_the_subtree_and_is_final() {
    let mut f = fixture();
    refused(
        &mut f,
        ScopeError::ConfirmationMismatch { scope: sid(2) },
        |f| f.org.revoke(sid(2), "yes"),
    );
    refused(
        &mut f,
        ScopeError::ConfirmationMismatch { scope: sid(2) },
        |f| f.org.revoke(sid(2), &sid(3).to_string()),
    );
    let effects = f.org.revoke(sid(2), &sid(2).to_string()).unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::DestroyWrappedKey {
                key: KeyId::new(sid(2), 1)
            },
            Effect::DestroyWrappedKey {
                key: KeyId::new(sid(3), 1)
            },
            Effect::DestroyWrappedKey {
                key: KeyId::new(sid(4), 1)
            },
            Effect::SetScopeState {
                scope: sid(2),
                state: ScopeState::Revoked
            },
            Effect::DestroyScopeData {
                scopes: vec![sid(2), sid(3), sid(4)]
            },
            Effect::Audit(AuditEvent::ScopeRevoked {
                scope: sid(2),
                keys_destroyed: 3
            }),
            Effect::EvictSubtree { scope: sid(2) },
        ]
    );
    for s in [2, 3, 4] {
        assert!(
            f.org.scope(sid(s)).unwrap().versions.is_empty(),
            "wrapped keys destroyed"
        );
        assert_eq!(
            f.org.effective(sid(s)).unwrap(),
            Effective::Revoked { by: sid(2) }
        );
    }
    assert_eq!(f.org.scope(sid(2)).unwrap().state, ScopeState::Revoked);
    let by = |s| ScopeError::Revoked {
        scope: sid(s),
        by: sid(2),
    };
    let root = f.org.resolve(KeyId::new(sid(1), 1), &f.root).unwrap();
    refused(&mut f, by(2), |f| f.org.resume(sid(2)));
    refused(&mut f, by(3), |f| f.org.pause(sid(3)));
    refused(&mut f, by(2), |f| f.org.revoke(sid(2), &sid(2).to_string()));
    refused(&mut f, by(3), |f| f.org.rotate(sid(3), &root, &mut f.rng));
    refused(&mut f, by(2), |f| {
        f.org.create_scope(sid(8), sid(2), &root, &mut f.rng)
    });
    // The rest of the org is untouched.
    assert!(f.org.resolve(KeyId::new(sid(1), 1), &f.root).is_ok());
}

#[test]
fn revoking_the_org_destroys_the_root_copies() {
    let mut f = fixture();
    let effects = f.org.revoke(sid(1), &sid(1).to_string()).unwrap();
    assert!(effects.contains(&Effect::DestroyRootCopy {
        holder: HolderId::Managed,
        version: 1
    }));
    assert!(f.org.holders().all(|h| h.copies.is_empty()));
    // The org's root versions are gone with it.
    assert_eq!(
        f.org.unwrap_root_managed(&f.managed, 1).map(|_| ()),
        Err(Error::Scope(ScopeError::UnknownVersion(KeyId::new(
            sid(1),
            1
        ))))
    );
}

#[test]
fn rotation_keeps_old_data_until_retired() {
    let mut f = fixture();
    let ctx = Context::new();
    let v1 = f.org.resolve(KeyId::new(sid(2), 1), &f.root).unwrap();
    let old =
        Envelope::<byok_core::DefaultBackend>::encrypt(&v1, &ctx, b"old", &mut f.rng).unwrap();
    let (v2, effects) = f.org.rotate(sid(2), &f.root, &mut f.rng).unwrap();
    assert_eq!(v2.id(), KeyId::new(sid(2), 2));
    assert!(matches!(&effects[..], [
        Effect::PutWrappedKey { key, under, .. },
        Effect::Audit(AuditEvent::KeyRotated(k)),
    ] if *key == v2.id() && *under == KeyId::new(sid(1), 1) && *k == v2.id()));
    assert_eq!(f.org.current_key_id(sid(2)).unwrap(), v2.id());
    // Old data still opens.
    let again = f.org.resolve(KeyId::new(sid(2), 1), &f.root).unwrap();
    assert_eq!(
        Envelope::<byok_core::DefaultBackend>::decrypt(&again, &ctx, &old).unwrap(),
        b"old"
    );
    // Retire rules: not the current one, not while children are wrapped under it.
    refused(&mut f, ScopeError::RetireCurrent(v2.id()), |f| {
        f.org.retire(v2.id())
    });
    refused(
        &mut f,
        ScopeError::VersionInUse {
            key: v1.id(),
            children: 2,
        },
        |f| f.org.retire(v1.id()),
    );
    refused(
        &mut f,
        ScopeError::UnknownVersion(KeyId::new(sid(2), 9)),
        |f| f.org.retire(KeyId::new(sid(2), 9)),
    );
    // The rewrap job moves the children to v2; then v1 can go.
    let effects = f.org.plan_retire(v1.id()).unwrap();
    // Logged when asked for (with whoever asked), then the job.
    let [
        Effect::Audit(AuditEvent::RetireStarted { key, to }),
        Effect::StartJob(job),
    ] = &effects[..]
    else {
        panic!("{effects:?}")
    };
    assert_eq!((*key, *to), (v1.id(), KeyId::new(sid(2), 2)));
    assert_eq!(job.kind, JobKind::RetireVersion(v1.id()));
    assert_eq!(job.progress(), (0, 2));
    refused(&mut f, ScopeError::JobRunning, |f| {
        f.org.plan_retire(v1.id())
    });
    let steps = job.steps.clone();
    for (i, step) in steps.iter().enumerate() {
        let JobStep::Rewrap { key, from, to } = step else {
            panic!()
        };
        assert_eq!((*from, *to), (v1.id(), v2.id()));
        // A pause that committed after the host looked is obeyed by the step itself.
        f.org.pause(key.scope).unwrap();
        let paused = ScopeError::Paused {
            scope: key.scope,
            by: key.scope,
        };
        refused(&mut f, paused, |f| {
            f.org.rewrap_child(step, &v1, &v2, &mut f.rng)
        });
        f.org.resume(key.scope).unwrap();
        let effects = f.org.rewrap_child(step, &v1, &v2, &mut f.rng).unwrap();
        assert!(
            matches!(&effects[..], [
                Effect::PutWrappedKey { key: k, under, .. },
                Effect::UpdateJob(j),
            ] if k == key && *under == v2.id() && j.done == i + 1),
            "{effects:?}"
        );
        // Running a step again is harmless.
        if i == 0 {
            assert_eq!(f.org.job().map(|j| j.progress()), Some((1, 2)));
            assert_eq!(
                f.org.rewrap_child(step, &v1, &v2, &mut f.rng).unwrap(),
                vec![]
            );
        }
    }
    // Every step is done; the retirement itself lasts until the version is destroyed.
    assert_eq!(f.org.job().map(|j| j.progress()), Some((2, 2)));
    // Children still resolve (now through v2).
    assert!(f.org.resolve(KeyId::new(sid(3), 1), &f.root).is_ok());
    assert_eq!(
        f.org.retire(v1.id()).unwrap(),
        vec![
            Effect::DestroyWrappedKey { key: v1.id() },
            Effect::EvictKey { key: v1.id() },
            Effect::Audit(AuditEvent::KeyRetired(v1.id())),
            Effect::FinishJob(JobKind::RetireVersion(v1.id())),
            Effect::Audit(AuditEvent::JobFinished),
        ]
    );
    assert!(f.org.job().is_none());
    assert_eq!(
        scope_err(f.org.resolve(v1.id(), &f.root)),
        ScopeError::UnknownVersion(v1.id())
    );
}

#[test]
fn wrapped_keys_are_bound_to_their_place_and_tampering_is_typed() {
    let mut f = fixture();
    let team = f.org.resolve(KeyId::new(sid(2), 1), &f.root).unwrap();
    let (_, effects) = f
        .org
        .create_scope(sid(6), sid(2), &team, &mut f.rng)
        .unwrap();
    let Effect::PutWrappedKey { wrapped, .. } = &effects[1] else {
        panic!("{effects:?}")
    };
    // The wrapped key opens only with the context of its own place in the tree: copied into
    // scope 3's slot (same parent), it does not open.
    let own = byok_core::scope::scope_key_context(sid(1), KeyId::new(sid(6), 1), sid(2));
    let other = byok_core::scope::scope_key_context(sid(1), KeyId::new(sid(3), 1), sid(2));
    assert!(Envelope::<byok_core::DefaultBackend>::unwrap_secret(&team, &own, wrapped).is_ok());
    assert_eq!(
        Envelope::<byok_core::DefaultBackend>::unwrap_secret(&team, &other, wrapped).map(|_| ()),
        Err(Error::Decrypt)
    );
    // A root key with the right id but the wrong bytes: the first unwrap down the path fails,
    // with a typed error naming the key that did not open.
    let fake = ScopeKey::new(KeyId::new(sid(1), 1), SecretBytes::from_bytes(&mut [9; 32]));
    assert_eq!(
        scope_err(f.org.resolve(KeyId::new(sid(3), 1), &fake)),
        ScopeError::Unwrap(KeyId::new(sid(2), 1))
    );
    // A root key with another id is refused before any crypto.
    let wrong_id = ScopeKey::new(KeyId::new(sid(1), 7), SecretBytes::from_bytes(&mut [9; 32]));
    assert!(matches!(
        scope_err(f.org.resolve(KeyId::new(sid(3), 1), &wrong_id)),
        ScopeError::WrongKey { .. }
    ));
}

#[test]
fn holders_attach_default_disable_and_fall_back() {
    let mut f = fixture();
    // Attach CMK #1: pending, a job asks it to wrap root v1.
    let effects = f.org.attach_cmk(1).unwrap();
    let cmk = HolderId::Cmk(1);
    assert_eq!(
        effects,
        vec![
            Effect::PutHolder {
                holder: cmk,
                status: HolderStatus::Pending
            },
            Effect::Audit(AuditEvent::HolderAttached(cmk)),
            Effect::StartJob(RewrapJob {
                kind: JobKind::WrapHolder(cmk),
                // One KMS call per root version, whatever the data.
                steps: vec![JobStep::WrapRoot {
                    holder: cmk,
                    version: 1
                }],
                done: 0,
            }),
        ]
    );
    refused(&mut f, ScopeError::HolderExists(cmk), |f| {
        f.org.attach_cmk(1)
    });
    refused(&mut f, ScopeError::JobRunning, |f| f.org.attach_cmk(2));
    refused(&mut f, ScopeError::HolderNotReady(cmk), |f| {
        f.org.set_default(cmk, None)
    });
    // The KMS answers; the copy is recorded; the holder is ready and the job done.
    let effects = f
        .org
        .record_root_copy(cmk, 1, b"kms-ciphertext".to_vec())
        .unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::PutRootCopy {
                holder: cmk,
                version: 1,
                wrapped: b"kms-ciphertext".to_vec()
            },
            Effect::PutHolder {
                holder: cmk,
                status: HolderStatus::Ready
            },
            Effect::Audit(AuditEvent::RootCopyStored {
                holder: cmk,
                version: 1
            }),
            Effect::FinishJob(JobKind::WrapHolder(cmk)),
            Effect::Audit(AuditEvent::JobFinished),
        ]
    );
    assert!(f.org.job().is_none());
    assert!(
        f.org
            .holders()
            .any(|h| h.id == cmk && h.status == HolderStatus::Ready)
    );
    // Default rules.
    refused(&mut f, ScopeError::DisableDefault(HolderId::Managed), |f| {
        f.org.disable(HolderId::Managed, HolderId::Cmk(1))
    });
    // A customer key becomes the default only with a proof from a fresh unwrap; then BYOK is
    // exclusive: the managed copy is destroyed in the same change.
    assert!(f.org.vendor_can_decrypt());
    let proof = prove(&f, cmk);
    assert_eq!(
        f.org.set_default(cmk, Some(&proof)).unwrap(),
        vec![
            Effect::SetDefault(cmk),
            Effect::Audit(AuditEvent::DefaultHolder {
                from: HolderId::Managed,
                to: cmk
            }),
            Effect::PutHolder {
                holder: HolderId::Managed,
                status: HolderStatus::Disabled
            },
            Effect::DestroyRootCopy {
                holder: HolderId::Managed,
                version: 1
            },
            Effect::Audit(AuditEvent::HolderDisabled(HolderId::Managed)),
            Effect::EvictOrg,
        ]
    );
    assert!(!f.org.vendor_can_decrypt());
    refused(&mut f, ScopeError::DisableDefault(cmk), |f| {
        f.org.disable(cmk, HolderId::Managed)
    });
    // The managed key is disabled already: disabling it again changes nothing.
    assert_eq!(f.org.disable(HolderId::Managed, cmk).unwrap(), vec![]);
    refused(&mut f, ScopeError::UnknownHolder(HolderId::Cmk(5)), |f| {
        f.org.disable(HolderId::Cmk(5), cmk)
    });
    // Attach CMK #2: while it is pending it cannot become the default.
    f.org.attach_cmk(2).unwrap();
    refused(&mut f, ScopeError::HolderNotReady(HolderId::Cmk(2)), |f| {
        f.org.set_default(HolderId::Cmk(2), None)
    });
    f.org
        .record_root_copy(HolderId::Cmk(2), 1, b"kms2".to_vec())
        .unwrap();
    // Disable all: back to managed, wrapped locally, CMKs disabled.
    let effects = f
        .org
        .disable_all(&f.managed, std::slice::from_ref(&f.root), &mut f.rng)
        .unwrap();
    assert_eq!(
        effects[0],
        Effect::PutHolder {
            holder: HolderId::Managed,
            status: HolderStatus::Ready
        }
    );
    assert!(matches!(
        &effects[1],
        Effect::PutRootCopy {
            holder: HolderId::Managed,
            version: 1,
            ..
        }
    ));
    assert_eq!(effects[2], Effect::SetDefault(HolderId::Managed));
    assert!(effects.contains(&Effect::DestroyRootCopy {
        holder: cmk,
        version: 1
    }));
    assert!(effects.contains(&Effect::DestroyRootCopy {
        holder: HolderId::Cmk(2),
        version: 1
    }));
    assert!(effects.contains(&Effect::Audit(AuditEvent::DefaultHolder {
        from: cmk,
        to: HolderId::Managed
    })));
    assert_eq!(f.org.default_holder(), HolderId::Managed);
    let root = f.org.unwrap_root_managed(&f.managed, 1).unwrap();
    assert_eq!(root.expose_secret(), f.root.expose_secret());
    // Re-enable CMK #1: pending until it wraps again.
    let effects = f.org.reenable(cmk).unwrap();
    assert_eq!(
        effects[..2],
        [
            Effect::PutHolder {
                holder: cmk,
                status: HolderStatus::Pending
            },
            Effect::Audit(AuditEvent::HolderEnabled(cmk))
        ]
    );
    assert!(
        matches!(&effects[2], Effect::StartJob(j) if j.steps == [JobStep::WrapRoot {
            holder: cmk,
            version: 1
        }])
    );
    assert!(
        f.org
            .holders()
            .any(|h| h.id == cmk && h.status == HolderStatus::Pending)
    );
}

#[test]
fn re_encryption_target_must_hold_every_root_version() {
    let mut f = fixture();
    f.org.attach_cmk(1).unwrap();
    f.org
        .record_root_copy(HolderId::Cmk(1), 1, vec![1])
        .unwrap();
    let proof = prove(&f, HolderId::Cmk(1));
    f.org.set_default(HolderId::Cmk(1), Some(&proof)).unwrap();
    f.org.attach_cmk(2).unwrap();
    // #2 is still pending: it cannot be the target; nor can the holder itself, nor a stranger.
    refused(&mut f, ScopeError::HolderNotReady(HolderId::Cmk(2)), |f| {
        f.org.disable(HolderId::Managed, HolderId::Cmk(2))
    });
    refused(&mut f, ScopeError::HolderNotReady(HolderId::Managed), |f| {
        f.org.disable(HolderId::Managed, HolderId::Managed)
    });
    refused(&mut f, ScopeError::UnknownHolder(HolderId::Cmk(9)), |f| {
        f.org.disable(HolderId::Managed, HolderId::Cmk(9))
    });
    // The default, which holds everything, is a valid target (the managed key is disabled
    // already under BYOK, so nothing changes).
    assert_eq!(
        f.org.disable(HolderId::Managed, HolderId::Cmk(1)).unwrap(),
        vec![]
    );
}

#[test]
fn no_key_bytes_in_debug_output() {
    let f = fixture();
    let text = format!(
        "{:?} {:?} {:?}",
        f.root,
        f.managed,
        f.org.resolve(KeyId::new(sid(3), 1), &f.root).unwrap()
    );
    for k in [&f.root, &f.managed] {
        assert!(!text.contains(&hex::encode(k.expose_secret())), "{text}");
    }
}

#[test]
fn disabling_a_pending_cmk_cancels_its_attach() {
    let mut f = fixture();
    f.org.attach_cmk(3).unwrap();
    assert!(f.org.job().is_some());
    let effects = f.org.disable(HolderId::Cmk(3), HolderId::Managed).unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::PutHolder {
                holder: HolderId::Cmk(3),
                status: HolderStatus::Disabled
            },
            Effect::Audit(AuditEvent::HolderDisabled(HolderId::Cmk(3))),
            Effect::EvictOrg,
            Effect::FinishJob(JobKind::WrapHolder(HolderId::Cmk(3))),
            Effect::Audit(AuditEvent::JobFinished),
        ]
    );
    assert!(f.org.job().is_none(), "nothing left to wrap");
    assert!(f.org.attach_cmk(4).is_ok(), "a new job may start");
}

#[test]
fn root_rotation_wraps_with_the_default_first() {
    let mut f = fixture();
    f.org.attach_cmk(1).unwrap();
    f.org
        .record_root_copy(HolderId::Cmk(1), 1, b"kms-v1".to_vec())
        .unwrap();
    refused(&mut f, ScopeError::RootRotation, |f| {
        let r = f.root.id();
        let k = f.org.resolve(r, &f.root).unwrap();
        f.org.rotate(sid(1), &k, &mut f.rng)
    });
    let v2 = ScopeKey::random(KeyId::new(sid(1), 2), &mut f.rng);
    let wrong = ScopeKey::random(KeyId::new(sid(1), 3), &mut f.rng);
    refused(
        &mut f,
        ScopeError::WrongKey {
            expected: v2.id(),
            provided: wrong.id(),
        },
        |f| {
            f.org
                .rotate_root(&wrong, vec![], &RootChecker::new(&f.managed))
        },
    );
    let copy = f
        .org
        .wrap_root_managed(&f.managed, &v2, &mut f.rng)
        .unwrap();
    let checker = RootChecker::new(&f.managed);
    let effects = f.org.rotate_root(&v2, copy.clone(), &checker).unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::PutRootVersion {
                version: 2,
                check: checker.check(sid(1), &v2)
            },
            Effect::PutRootCopy {
                holder: HolderId::Managed,
                version: 2,
                wrapped: copy
            },
            Effect::Audit(AuditEvent::KeyRotated(v2.id())),
            Effect::PutHolder {
                holder: HolderId::Cmk(1),
                status: HolderStatus::Pending
            },
            Effect::StartJob(RewrapJob {
                kind: JobKind::WrapRoot(2),
                steps: vec![JobStep::WrapRoot {
                    holder: HolderId::Cmk(1),
                    version: 2
                }],
                done: 0,
            }),
        ]
    );
    assert_eq!(f.org.current_key_id(sid(1)).unwrap(), v2.id());
    // The managed (default) copy opens right away; CMK #1 is pending until its KMS answers.
    assert_eq!(
        f.org
            .unwrap_root_managed(&f.managed, 2)
            .unwrap()
            .expose_secret(),
        v2.expose_secret()
    );
    assert!(
        f.org
            .holders()
            .any(|h| h.id == HolderId::Cmk(1) && h.status == HolderStatus::Pending)
    );
    f.org
        .record_root_copy(HolderId::Cmk(1), 2, b"kms-v2".to_vec())
        .unwrap();
    assert!(f.org.job().is_none());
    // New scopes hang under v2; old ones still resolve through v1.
    let (k, _) = f.org.create_scope(sid(7), sid(1), &v2, &mut f.rng).unwrap();
    assert_eq!(f.org.root_of(k.id()).unwrap(), v2.id());
    assert_eq!(
        f.org.root_of(KeyId::new(sid(3), 1)).unwrap(),
        KeyId::new(sid(1), 1)
    );
    // Retiring root v1: the job moves the team key under v2, then v1's copies are destroyed.
    f.org.plan_retire(KeyId::new(sid(1), 1)).unwrap();
    let steps = f.org.job().unwrap().steps.clone();
    for step in &steps {
        f.org.rewrap_child(step, &f.root, &v2, &mut f.rng).unwrap();
    }
    let effects = f.org.retire(KeyId::new(sid(1), 1)).unwrap();
    assert!(effects.contains(&Effect::DestroyRootCopy {
        holder: HolderId::Managed,
        version: 1
    }));
    assert!(effects.contains(&Effect::DestroyRootCopy {
        holder: HolderId::Cmk(1),
        version: 1
    }));
    assert_eq!(f.org.root_of(KeyId::new(sid(3), 1)).unwrap(), v2.id());
    assert!(f.org.resolve(KeyId::new(sid(3), 1), &v2).is_ok());
}

#[test]
fn job_steps_must_belong_to_the_running_job() {
    let mut f = fixture();
    let v1 = f.org.resolve(KeyId::new(sid(2), 1), &f.root).unwrap();
    let (v2, _) = f.org.rotate(sid(2), &f.root, &mut f.rng).unwrap();
    let forged = JobStep::Rewrap {
        key: KeyId::new(sid(3), 1),
        from: v1.id(),
        to: v2.id(),
    };
    // No job is running: a step cannot be run.
    refused(&mut f, ScopeError::NoSuchJob, |f| {
        f.org.rewrap_child(&forged, &v1, &v2, &mut f.rng)
    });
    // A wrap step is not a rewrap step.
    f.org.plan_retire(v1.id()).unwrap();
    let wrap = JobStep::WrapRoot {
        holder: HolderId::Managed,
        version: 1,
    };
    refused(&mut f, ScopeError::NoSuchJob, |f| {
        f.org.rewrap_child(&wrap, &v1, &v2, &mut f.rng)
    });
    // The right step with the wrong keys is refused by key id.
    let step = f.org.job().unwrap().steps[0].clone();
    refused(
        &mut f,
        ScopeError::WrongKey {
            expected: v1.id(),
            provided: v2.id(),
        },
        |f| f.org.rewrap_child(&step, &v2, &v2, &mut f.rng),
    );
}

/// With the default's KMS refusing, a key that holds every root becomes the default on the
/// tree's word: its root must open a scope key wrapped under that version. A root that opens
/// none, or none given, is refused; an org whose root wraps nothing yet takes the KMS's word.
#[test]
fn a_holder_is_proven_by_the_tree_when_the_default_cannot_answer() {
    let mut f = fixture();
    let cmk = HolderId::Cmk(1);
    f.org.attach_cmk(1).unwrap();
    f.org.record_root_copy(cmk, 1, b"kms".to_vec()).unwrap();
    let mismatch = ScopeError::ProofMismatch {
        holder: cmk,
        version: 1,
    };
    let wrong = ScopeKey::new(f.root.id(), SecretBytes::from_bytes(&mut [7; 32]));
    assert_eq!(
        scope_err(f.org.prove_holder_by_tree(cmk, &[wrong])),
        mismatch
    );
    assert_eq!(scope_err(f.org.prove_holder_by_tree(cmk, &[])), mismatch);
    // Not ready (no copy of every root): refused before anything is opened.
    f.org.attach_cmk(2).unwrap();
    let fresh = || ScopeKey::new(f.root.id(), f.root.duplicate_secret());
    assert_eq!(
        scope_err(f.org.prove_holder_by_tree(HolderId::Cmk(2), &[fresh()])),
        ScopeError::HolderNotReady(HolderId::Cmk(2))
    );
    // The root itself opens the team's key: the proof makes cmk:1 the default.
    let proof = f.org.prove_holder_by_tree(cmk, &[fresh()]).unwrap();
    f.org.set_default(cmk, Some(&proof)).unwrap();
    assert_eq!(f.org.default_holder(), cmk);
    assert!(!f.org.vendor_can_decrypt());
    // An org with no scopes under its root: the holder's KMS's word is all there is.
    let mut rng = TestRng::seeded(7);
    let (mut bare, root, _) = Org::create(sid(9), &f.managed, &mut rng).unwrap();
    bare.attach_cmk(1).unwrap();
    bare.record_root_copy(cmk, 1, b"kms".to_vec()).unwrap();
    let any = ScopeKey::new(root.id(), SecretBytes::from_bytes(&mut [7; 32]));
    assert!(bare.prove_holder_by_tree(cmk, &[any]).is_ok());
}

#[test]
fn byok_is_exclusive_and_going_back_needs_the_roots() {
    let mut f = fixture();
    let cmk = HolderId::Cmk(1);
    f.org.attach_cmk(1).unwrap();
    f.org.record_root_copy(cmk, 1, b"kms".to_vec()).unwrap();
    // No proof, a proof for another holder, or a KMS that gave back other bytes: refused.
    refused(
        &mut f,
        ScopeError::ProofMismatch {
            holder: cmk,
            version: 1,
        },
        |f| f.org.set_default(cmk, None),
    );
    let wrong = ScopeKey::new(f.root.id(), SecretBytes::from_bytes(&mut [7; 32]));
    assert_eq!(
        scope_err(
            f.org
                .prove_holder(cmk, &[wrong], std::slice::from_ref(&f.root))
        ),
        ScopeError::ProofMismatch {
            holder: cmk,
            version: 1
        }
    );
    assert_eq!(
        scope_err(f.org.prove_holder(cmk, &[], std::slice::from_ref(&f.root))),
        ScopeError::ProofMismatch {
            holder: cmk,
            version: 1
        }
    );
    f.org.attach_cmk(2).unwrap();
    f.org
        .record_root_copy(HolderId::Cmk(2), 1, b"kms2".to_vec())
        .unwrap();
    // A proof speaks for the copies it opened: cmk:2 disabled and enabled again holds new
    // copies, which nothing opened.
    let stale = prove(&f, HolderId::Cmk(2));
    f.org.disable(HolderId::Cmk(2), HolderId::Managed).unwrap();
    f.org.reenable(HolderId::Cmk(2)).unwrap();
    f.org
        .record_root_copy(HolderId::Cmk(2), 1, b"unopened".to_vec())
        .unwrap();
    refused(
        &mut f,
        ScopeError::ProofMismatch {
            holder: HolderId::Cmk(2),
            version: 1,
        },
        |f| f.org.set_default(HolderId::Cmk(2), Some(&stale)),
    );
    let other = prove(&f, HolderId::Cmk(2));
    refused(
        &mut f,
        ScopeError::ProofMismatch {
            holder: cmk,
            version: 1,
        },
        |f| f.org.set_default(cmk, Some(&other)),
    );
    let proof = prove(&f, cmk);
    f.org.set_default(cmk, Some(&proof)).unwrap();
    assert!(!f.org.vendor_can_decrypt());
    // The managed key cannot come back by the side door.
    refused(&mut f, ScopeError::ManagedUnderByok, |f| {
        f.org.reenable(HolderId::Managed)
    });
    refused(&mut f, ScopeError::HolderNotReady(HolderId::Managed), |f| {
        f.org.set_default(HolderId::Managed, None)
    });
    assert_eq!(
        f.org.unwrap_root_managed(&f.managed, 1).map(|_| ()),
        Err(Error::Scope(ScopeError::HolderNotReady(HolderId::Managed)))
    );
    // Going back takes the roots (which the host unwraps through the KMS at that moment); a
    // wrong root is refused before anything is wrapped under the managed key.
    let bad = ScopeKey::new(f.root.id(), SecretBytes::from_bytes(&mut [7; 32]));
    let root_id = f.root.id();
    refused(&mut f, ScopeError::Unwrap(root_id), |f| {
        f.org
            .make_managed_default(&f.managed, std::slice::from_ref(&bad), &mut f.rng)
    });
    // Not while the org is paused: the vendor would hold a key that opens it without the
    // customer's KMS, which no later CMK disable could take back.
    let (org_id, paused) = pause_the_org(&mut f);
    refused(&mut f, paused.clone(), |f| {
        let fresh = ScopeKey::new(f.root.id(), f.root.duplicate_secret());
        f.org.make_managed_default(&f.managed, &[fresh], &mut f.rng)
    });
    refused(&mut f, paused, |f| {
        let fresh = ScopeKey::new(f.root.id(), f.root.duplicate_secret());
        f.org.disable_all(&f.managed, &[fresh], &mut f.rng)
    });
    f.org.resume(org_id).unwrap();
    let fresh = ScopeKey::new(f.root.id(), f.root.duplicate_secret());
    f.org
        .make_managed_default(&f.managed, &[fresh], &mut f.rng)
        .unwrap();
    assert_eq!(f.org.default_holder(), HolderId::Managed);
    assert!(f.org.vendor_can_decrypt());
    assert!(
        f.org
            .holders()
            .any(|h| h.id == cmk && h.status == HolderStatus::Ready),
        "the customer keys keep their copies"
    );
    // With the managed key ready again, customer keys can be made the default once more.
    let proof = prove(&f, HolderId::Cmk(2));
    f.org.set_default(HolderId::Cmk(2), Some(&proof)).unwrap();
    assert!(!f.org.vendor_can_decrypt());
}

/// A paused org refuses every change that needs its root key in the vendor's memory: making,
/// recording or proving a holder's copies, and changing the default. Each is refused even
/// when it arrives with its KMS work done (a pause that committed while the holder was asked).
/// Disabling a key only takes access away and stays allowed. A paused team blocks none of it.
#[test]
fn a_paused_org_refuses_key_work_but_not_a_disable() {
    let mut f = fixture();
    let (one, two) = (HolderId::Cmk(1), HolderId::Cmk(2));
    f.org.attach_cmk(1).unwrap();
    f.org.record_root_copy(one, 1, b"copy-1".to_vec()).unwrap();
    let proof = prove(&f, one);
    f.org.attach_cmk(2).unwrap();
    let (org_id, paused) = pause_the_org(&mut f);
    refused(&mut f, paused.clone(), |f| {
        f.org.record_root_copy(two, 1, b"copy-2".to_vec())
    });
    refused(&mut f, paused.clone(), |f| {
        f.org.set_default(one, Some(&proof))
    });
    refused(&mut f, paused.clone(), |f| {
        f.org.set_default(HolderId::Managed, None)
    });
    refused(&mut f, paused.clone(), |f| {
        let fresh = ScopeKey::new(f.root.id(), f.root.duplicate_secret());
        f.org.prove_holder(
            one,
            std::slice::from_ref(&fresh),
            std::slice::from_ref(&f.root),
        )
    });
    refused(&mut f, paused.clone(), |f| {
        let fresh = ScopeKey::new(f.root.id(), f.root.duplicate_secret());
        f.org.prove_holder_by_tree(one, &[fresh])
    });
    refused(&mut f, paused.clone(), |f| f.org.refresh_holder(one));
    assert_eq!(f.org.check_key_work(), Err(Error::Scope(paused.clone())));
    // A disable needs no root: it cancels the pending attach, and destroys nothing else.
    f.org.disable(two, HolderId::Managed).unwrap();
    assert!(f.org.job().is_none());
    refused(&mut f, paused.clone(), |f| f.org.attach_cmk(3));
    refused(&mut f, paused, |f| f.org.reenable(two));
    // Resumed, all of it works again; a paused team is not the org.
    f.org.resume(org_id).unwrap();
    f.org.pause(sid(2)).unwrap();
    assert_eq!(f.org.check_key_work(), Ok(()));
    f.org.set_default(one, Some(&proof)).unwrap();
    f.org.attach_cmk(3).unwrap();
    f.org
        .record_root_copy(HolderId::Cmk(3), 1, b"copy-3".to_vec())
        .unwrap();
}

#[test]
fn revoke_always_wins_over_a_running_job() {
    let mut f = fixture();
    let v1 = f.org.resolve(KeyId::new(sid(2), 1), &f.root).unwrap();
    let (v2, _) = f.org.rotate(sid(2), &f.root, &mut f.rng).unwrap();
    f.org.plan_retire(v1.id()).unwrap();
    assert_eq!(f.org.job().map(|j| j.progress()), Some((0, 2)));
    // The team is paused: the job waits on it, and says so.
    f.org.pause(sid(2)).unwrap();
    assert_eq!(f.org.job_waiting_on(), Some(sid(2)));
    // Revoking a child inside the job's work trims its step, even while paused.
    let effects = f.org.revoke(sid(3), &sid(3).to_string()).unwrap();
    assert!(effects.contains(&Effect::Audit(AuditEvent::JobTrimmed { steps: 1 })));
    assert_eq!(f.org.job().map(|j| j.progress()), Some((0, 1)));
    f.org.resume(sid(2)).unwrap();
    assert_eq!(f.org.job_waiting_on(), None);
    let step = f.org.job().unwrap().steps[0].clone();
    f.org.rewrap_child(&step, &v1, &v2, &mut f.rng).unwrap();
    // Revoking the scope being retired cancels the job; a later retirement works.
    let effects = f.org.revoke(sid(2), &sid(2).to_string()).unwrap();
    assert!(effects.contains(&Effect::CancelJob(JobKind::RetireVersion(v1.id()))));
    assert!(effects.contains(&Effect::Audit(AuditEvent::JobCancelled)));
    assert!(f.org.job().is_none());
    let (k5, _) = f
        .org
        .create_scope(sid(5), sid(1), &f.root, &mut f.rng)
        .unwrap();
    f.org.rotate(sid(5), &f.root, &mut f.rng).unwrap();
    f.org.plan_retire(k5.id()).unwrap();
    f.org.retire(k5.id()).unwrap();
    // Revoking the org scope cancels whatever runs, a pending CMK wrap included.
    f.org.attach_cmk(1).unwrap();
    let effects = f.org.revoke(sid(1), &sid(1).to_string()).unwrap();
    assert!(effects.contains(&Effect::CancelJob(JobKind::WrapHolder(HolderId::Cmk(1)))));
    assert!(f.org.job().is_none());
}

#[test]
fn a_rotated_customer_key_wraps_every_root_version_again() {
    let mut f = fixture();
    let cmk = HolderId::Cmk(1);
    f.org.attach_cmk(1).unwrap();
    f.org
        .record_root_copy(cmk, 1, b"made-by-v1".to_vec())
        .unwrap();
    let v2 = ScopeKey::random(KeyId::new(sid(1), 2), &mut f.rng);
    let copy = f
        .org
        .wrap_root_managed(&f.managed, &v2, &mut f.rng)
        .unwrap();
    f.org
        .rotate_root(&v2, copy, &RootChecker::new(&f.managed))
        .unwrap();
    f.org
        .record_root_copy(cmk, 2, b"made-by-v1".to_vec())
        .unwrap();
    assert!(f.org.job().is_none());
    // The managed key has no KMS version; a disabled or unknown holder nothing to refresh.
    refused(&mut f, ScopeError::UnknownHolder(HolderId::Managed), |f| {
        f.org.refresh_holder(HolderId::Managed)
    });
    refused(&mut f, ScopeError::UnknownHolder(HolderId::Cmk(9)), |f| {
        f.org.refresh_holder(HolderId::Cmk(9))
    });
    let effects = f.org.refresh_holder(cmk).unwrap();
    let steps = vec![
        JobStep::WrapRoot {
            holder: cmk,
            version: 1,
        },
        JobStep::WrapRoot {
            holder: cmk,
            version: 2,
        },
    ];
    assert_eq!(
        effects,
        vec![
            Effect::Audit(AuditEvent::HolderRotated(cmk)),
            Effect::StartJob(RewrapJob {
                kind: JobKind::RefreshHolder(cmk),
                steps,
                done: 0,
            }),
        ]
    );
    // Existing copies do not count as done (unlike an attach); one job at a time.
    assert_eq!(f.org.job().unwrap().progress(), (0, 2));
    refused(&mut f, ScopeError::JobRunning, |f| {
        f.org.refresh_holder(cmk)
    });
    // A copy recorded out of order does not move the cursor; in order, it does.
    f.org
        .record_root_copy(cmk, 2, b"made-by-v2".to_vec())
        .unwrap();
    assert_eq!(f.org.job().unwrap().progress(), (0, 2));
    let effects = f
        .org
        .record_root_copy(cmk, 1, b"made-by-v2".to_vec())
        .unwrap();
    assert!(effects.contains(&Effect::UpdateJob(RewrapJob {
        kind: JobKind::RefreshHolder(cmk),
        steps: f.org.job().unwrap().steps.clone(),
        done: 1,
    })));
    let effects = f
        .org
        .record_root_copy(cmk, 2, b"made-by-v2".to_vec())
        .unwrap();
    assert!(effects.contains(&Effect::FinishJob(JobKind::RefreshHolder(cmk))));
    assert!(f.org.job().is_none());
    // The holder stayed ready throughout: its old copies served until replaced.
    assert!(
        f.org
            .holders()
            .any(|h| h.id == cmk && h.status == HolderStatus::Ready)
    );
}

/// A root a holder gives back is used only if it matches the check value stored with its
/// version: a copy replaced in storage (on Azure anyone can wrap with the key's public half)
/// gives a root of someone else's choosing, refused before anything is wrapped under it.
#[test]
fn a_root_is_used_only_if_it_matches_its_check_value() {
    let mut f = fixture();
    let checker = RootChecker::new(&f.managed);
    let org = f.org.id();
    assert_eq!(
        f.org.verify_root(&checker, &f.root, false),
        Ok(RootVerdict::Checked)
    );
    // A planted root for the live version: refused, allowance or not.
    let planted = ScopeKey::random(f.root.id(), &mut f.rng);
    for accept in [false, true] {
        refused(&mut f, ScopeError::RootCheckFailed(planted.id()), |f| {
            f.org.verify_root(&checker, &planted, accept)
        });
        refused(&mut f, ScopeError::RootCheckFailed(planted.id()), |f| {
            f.org.record_root_check(&checker, &planted)
        });
    }
    // Checked under another managed key (a database moved to another vendor install).
    let other = RootChecker::new(&ScopeKey::random(f.managed.id(), &mut f.rng));
    refused(
        &mut f,
        ScopeError::RootCheckFailed(KeyId::new(org, 1)),
        |f| f.org.verify_root(&other, &f.root, false),
    );
    let gone = KeyId::new(org, 9);
    refused(&mut f, ScopeError::UnknownVersion(gone), |f| {
        f.org
            .verify_root(&checker, &ScopeKey::random(gone, &mut f.rng), false)
    });
    assert!(f.org.unchecked_root_versions().is_empty());
}

/// `org` as its rows would read had a byok older than check values stored them (and `damage`
/// then changed them): every root check value gone.
fn as_an_older_byok_left_it(org: &Org, damage: impl FnOnce(&mut [StoredScope])) -> Org {
    let mut stored: Vec<StoredScope> = org.scopes().map(StoredScope::from).collect();
    for s in &mut stored {
        s.checks.clear();
    }
    damage(&mut stored);
    Org::restore(
        org.id(),
        stored,
        org.holders().cloned().collect(),
        org.default_holder(),
        None,
    )
    .unwrap()
}

/// A version stored by a byok older than check values: refused unless the operator accepts
/// such versions; then its children must open under it, and its check is recorded on first
/// use, after which it is checked like any other.
#[test]
fn an_unchecked_root_version_is_refused_unless_accepted_then_recorded() {
    let mut f = fixture();
    let checker = RootChecker::new(&f.managed);
    let org = f.org.id();
    f.org = as_an_older_byok_left_it(&f.org, |_| {});
    assert_eq!(f.org.unchecked_root_versions(), vec![1]);
    refused(&mut f, ScopeError::RootUnchecked(KeyId::new(org, 1)), |f| {
        f.org.verify_root(&checker, &f.root, false)
    });
    assert_eq!(
        f.org.verify_root(&checker, &f.root, true),
        Ok(RootVerdict::Unchecked)
    );
    // Accepted only as far as its children tell: one that does not open them is refused.
    let planted = ScopeKey::random(f.root.id(), &mut f.rng);
    refused(&mut f, ScopeError::Unwrap(KeyId::new(org, 1)), |f| {
        f.org.verify_root(&checker, &planted, true)
    });
    refused(&mut f, ScopeError::Unwrap(KeyId::new(org, 1)), |f| {
        f.org.record_root_check(&checker, &planted)
    });
    let effects = f.org.record_root_check(&checker, &f.root).unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::PutRootCheck {
                version: 1,
                check: checker.check(org, &f.root)
            },
            Effect::Audit(AuditEvent::RootCheckRecorded { version: 1 }),
        ]
    );
    assert!(f.org.unchecked_root_versions().is_empty());
    assert_eq!(
        f.org.verify_root(&checker, &f.root, false),
        Ok(RootVerdict::Checked)
    );
    // Recorded once: again is nothing to do.
    assert_eq!(f.org.record_root_check(&checker, &f.root), Ok(vec![]));
    // Restored with it, the org is the same value.
    let again = Org::restore(
        org,
        f.org.scopes().map(StoredScope::from).collect(),
        f.org.holders().cloned().collect(),
        f.org.default_holder(),
        None,
    );
    assert_eq!(again.as_ref(), Ok(&f.org));
}

/// The children's check on an unchecked root covers every child key wrapped under it, not the
/// first only: a damaged second child refuses the root.
#[test]
fn an_unchecked_root_must_open_every_child_under_it() {
    let mut f = fixture();
    let checker = RootChecker::new(&f.managed);
    let org = f.org.id();
    let root = ScopeKey::new(f.root.id(), f.root.duplicate_secret());
    f.org.create_scope(sid(5), org, &root, &mut f.rng).unwrap();
    f.org = as_an_older_byok_left_it(&f.org, |stored| {
        for s in stored.iter_mut().filter(|s| s.id == sid(5)) {
            let w = s.versions.get_mut(&1).unwrap().as_mut().unwrap();
            w.wrapped[40] ^= 1;
        }
    });
    refused(&mut f, ScopeError::Unwrap(KeyId::new(org, 1)), |f| {
        f.org.verify_root(&checker, &root, true)
    });
}

/// A scope keeps at most `MAX_VERSIONS` live key versions: the next rotation is refused, with
/// the org unchanged, until an old version is retired.
#[test]
fn a_scope_keeps_at_most_max_versions() {
    use byok_core::scope::MAX_VERSIONS;
    let mut f = fixture();
    let team = sid(2);
    for _ in 1..MAX_VERSIONS {
        let r = f.root.id();
        let root = f.org.resolve(r, &f.root).unwrap();
        f.org.rotate(team, &root, &mut f.rng).unwrap();
    }
    assert_eq!(f.org.scope(team).unwrap().versions.len(), MAX_VERSIONS);
    refused(
        &mut f,
        ScopeError::TooManyVersions {
            scope: team,
            max: MAX_VERSIONS,
        },
        |f| {
            let root = f.org.resolve(f.root.id(), &f.root)?;
            f.org.rotate(team, &root, &mut f.rng)
        },
    );
}
