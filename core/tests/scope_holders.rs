//! The org never loses its last copy of the root key: over random sequences of holder
//! operations (attach, KMS answers, set default, disable with a target, re-enable, disable all,
//! root rotation), after every step the default holder is ready and holds every live root
//! version, a disabled holder holds nothing, the managed key holds nothing while a customer key
//! is the default, and the root opens from the managed copy whenever the managed key is ready.

use byok_core::dev::TestRng;
use byok_core::scope::{
    HolderId, HolderStatus, JobStep, Org, RootChecker, StoredScope, managed_key,
};
use byok_core::{KeyId, ScopeId, ScopeKey, SecretBytes};
use proptest::prelude::*;

mod support;
use support::rows::Rows;

#[derive(Clone, Debug)]
enum Op {
    Attach(u8),
    /// The KMS answers the running job's next wrap.
    Answer,
    SetDefault(u8),
    Disable(u8, u8),
    Reenable(u8),
    DisableAll,
    MakeManagedDefault,
    RotateRoot,
}

fn holder(n: u8) -> HolderId {
    if n.is_multiple_of(4) {
        HolderId::Managed
    } else {
        HolderId::Cmk(u32::from(n % 4))
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<u8>().prop_map(Op::Attach),
        3 => Just(Op::Answer),
        1 => any::<u8>().prop_map(Op::SetDefault),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Disable(a, b)),
        1 => any::<u8>().prop_map(Op::Reenable),
        1 => Just(Op::DisableAll),
        1 => Just(Op::MakeManagedDefault),
        1 => Just(Op::RotateRoot),
    ]
}

fn dup(k: &ScopeKey) -> ScopeKey {
    ScopeKey::new(
        k.id(),
        SecretBytes::from_bytes(&mut k.expose_secret().clone()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
    #[test]
    fn the_root_is_never_lost(ops in proptest::collection::vec(op(), 1..50)) {
        let mut rng = TestRng::seeded(5);
        let managed = managed_key(SecretBytes::random(&mut rng), 1);
        let org_id = ScopeId::from_bytes([1; 16]);
        let (mut org, root, created) = Org::create(org_id, &managed, &mut rng).unwrap();
        let mut rows = Rows::default();
        rows.apply(&created);
        let mut roots = vec![root];
        for op in ops {
            let before = org.clone();
            let result = match op {
                Op::Attach(n) => match holder(n) {
                    HolderId::Cmk(c) => org.attach_cmk(c).map(|e| rows.apply(&e)),
                    HolderId::Managed => Ok(()),
                },
                Op::Answer => {
                    let step = org.job().and_then(|j| j.next_batch(1).first().cloned());
                    match step {
                        // A CMK's KMS answers with its ciphertext; the managed holder's wrap is
                        // done locally by the host, for real.
                        Some(JobStep::WrapRoot { holder: HolderId::Managed, version }) => {
                            let root = &roots[(version - 1) as usize];
                            let copy = org.wrap_root_managed(&managed, root, &mut rng).unwrap();
                            org.record_root_copy(HolderId::Managed, version, copy).map(|e| rows.apply(&e))
                        }
                        Some(JobStep::WrapRoot { holder, version }) => {
                            org.record_root_copy(holder, version, vec![version as u8]).map(|e| rows.apply(&e))
                        }
                        _ => Ok(()),
                    }
                }
                Op::SetDefault(n) => {
                    // The host unwraps the holder's copies through its KMS just now; here the
                    // KMS gives back the roots themselves.
                    let fresh: Vec<ScopeKey> = roots.iter().map(dup).collect();
                    let proof = org.prove_holder(holder(n), &fresh, &roots).ok();
                    org.set_default(holder(n), proof.as_ref()).map(|e| rows.apply(&e))
                }
                Op::Disable(a, b) => org.disable(holder(a), holder(b)).map(|e| rows.apply(&e)),
                Op::Reenable(n) => org.reenable(holder(n)).map(|e| rows.apply(&e)),
                Op::DisableAll => org.disable_all(&managed, &roots, &mut rng).map(|e| rows.apply(&e)),
                Op::MakeManagedDefault => {
                    org.make_managed_default(&managed, &roots, &mut rng).map(|e| rows.apply(&e))
                }
                Op::RotateRoot => {
                    let next = org.current_key_id(org_id).unwrap().version + 1;
                    let key = ScopeKey::random(KeyId::new(org_id, next), &mut rng);
                    let copy = if org.default_holder() == HolderId::Managed {
                        org.wrap_root_managed(&managed, &key, &mut rng).unwrap()
                    } else {
                        vec![0xee]
                    };
                    let r = org
                        .rotate_root(&key, copy, &RootChecker::new(&managed))
                        .map(|e| rows.apply(&e));
                    if r.is_ok() {
                        roots.push(key);
                    }
                    r
                }
            };
            if result.is_err() {
                prop_assert_eq!(&org, &before, "a refused operation changed the org");
            }
            let restored = Org::restore(
                org.id(),
                org.scopes().map(StoredScope::from).collect(),
                org.holders().cloned().collect(),
                org.default_holder(),
                org.job().cloned(),
            );
            prop_assert_eq!(restored.as_ref(), Ok(&org), "stored rows rebuild the org");
            // The effects alone, applied to rows, rebuild it too.
            let replayed = rows.restore();
            prop_assert_eq!(replayed.as_ref(), Ok(&org), "effects rebuild the org");
            let live: Vec<u32> = org.scope(org_id).unwrap().versions.keys().copied().collect();
            let default = org.holders().find(|h| h.id == org.default_holder()).unwrap();
            prop_assert_eq!(default.status, HolderStatus::Ready);
            prop_assert!(default.holds_all(live.iter()), "default lacks a live root version");
            // BYOK is exclusive: with a customer key as the default, the vendor holds nothing.
            if org.default_holder() != HolderId::Managed {
                prop_assert!(!org.vendor_can_decrypt(), "managed copy under BYOK");
            }
            for h in org.holders() {
                if h.status == HolderStatus::Disabled {
                    prop_assert!(h.copies.is_empty(), "{} disabled but holds copies", h.id);
                }
            }
            if org.holders().any(|h| h.id == HolderId::Managed && h.status == HolderStatus::Ready) {
                for v in &live {
                    let back = org.unwrap_root_managed(&managed, *v).unwrap();
                    prop_assert_eq!(back.expose_secret(), roots[(*v - 1) as usize].expose_secret());
                }
            }
        }
    }
}
