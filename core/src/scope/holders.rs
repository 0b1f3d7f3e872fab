//! Key holders: the keys that wrap an org's root key. Each attached CMK (in the customer's KMS)
//! holds its own wrapped copy of every live root version; the managed root (the vendor's local
//! master key) is one more holder. One of them is the default.
//!
//! The [`Holder`] type and the `impl Org` transitions on an org's holders (attach, record a copy,
//! prove, make the default, disable, re-enable, fall back to the managed key) share this one
//! file: a `holder.rs` next to a `holders.rs` would read as duplicates, and the type is small and
//! changed only by these transitions (and [`Org::restore`]).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::crypto::{DefaultBackend, ScopeKey};
use crate::envelope::Envelope;
use crate::key_id::KeyId;
use crate::scope::contexts::{managed_root_context, scope_key_context};
use crate::scope::effect::{AuditEvent, Effect};
use crate::scope::error::ScopeError;
use crate::scope::job::{JobKind, JobStep, RewrapJob};
use crate::scope::org::{Org, Result, scope_err};
use crate::scope::proof::{self, RootProof};

/// Which key wraps a root copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HolderId {
    /// The vendor-managed local master key.
    Managed,
    /// A customer CMK, by the number the host gave it when it was attached.
    Cmk(u32),
}

impl fmt::Display for HolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Managed => f.write_str("the managed key"),
            Self::Cmk(n) => write!(f, "key #{n}"),
        }
    }
}

/// Whether a holder can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderStatus {
    /// Holds copies of some root versions; more are pending (attached or re-enabled recently, or a
    /// root rotation is in progress).
    Pending,
    /// Holds a copy of every live root version.
    Ready,
    /// Disabled: its copies are destroyed.
    Disabled,
}

impl HolderStatus {
    /// Its name, as stored and as the API shows it: `pending`, `ready` or `disabled`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Disabled => "disabled",
        }
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Ready, Self::Disabled]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// One holder and its wrapped copies of the root key, by root version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Which key.
    pub id: HolderId,
    /// Usable or not.
    pub status: HolderStatus,
    /// Wrapped root copies, by root version.
    pub copies: BTreeMap<u32, Vec<u8>>,
}

impl Holder {
    pub(crate) fn new(id: HolderId) -> Self {
        Self {
            id,
            status: HolderStatus::Pending,
            copies: BTreeMap::new(),
        }
    }

    /// Whether it holds a copy of each of `versions`.
    pub fn holds_all<'a>(&self, mut versions: impl Iterator<Item = &'a u32>) -> bool {
        versions.all(|v| self.copies.contains_key(v))
    }
}

impl Org {
    /// Whether the vendor can open this org's root without the customer's KMS: true while the
    /// managed key holds a copy (managed mode, or a customer key attached but not yet the
    /// default); false under BYOK, once the managed copies are destroyed.
    pub fn vendor_can_decrypt(&self) -> bool {
        self.holders
            .get(&HolderId::Managed)
            .is_some_and(|h| !h.copies.is_empty())
    }

    /// Opens the managed holder's copy of root version `version`.
    pub fn unwrap_root_managed(&self, managed: &ScopeKey, version: u32) -> Result<ScopeKey> {
        // Only a live root version: a revoked org has none, whatever copies a state holds.
        if !self.root_versions().contains(&version) {
            return Err(scope_err(ScopeError::UnknownVersion(KeyId::new(
                self.root, version,
            ))));
        }
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

    /// Refuses work on the root keys while the org is paused or revoked: attaching,
    /// re-enabling, refreshing or proving a holder, recording its copies, changing the default.
    /// Each needs the root unwrapped in the vendor's memory (to wrap it under a holder, or to
    /// prove a holder's copies), and a pause must leave the vendor no use of it. The host asks
    /// this before it unwraps; the transitions ask again, for a pause that commits meanwhile.
    /// Disabling a holder needs no root and stays allowed: it only takes access away.
    pub fn check_key_work(&self) -> Result<()> {
        self.check_usable(self.root).map_err(scope_err)
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
        self.check_key_work()?;
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
        // The host checked before unwrapping the root to wrap it; a pause that committed
        // while the holder was asked is obeyed here: the copy is not kept.
        self.check_key_work()?;
        let live = self.root_versions();
        let h = self
            .holders
            .get_mut(&holder)
            .ok_or(scope_err(ScopeError::UnknownHolder(holder)))?;
        if h.status == HolderStatus::Disabled {
            return Err(scope_err(ScopeError::UnknownHolder(holder)));
        }
        if holder == HolderId::Managed && self.default != HolderId::Managed {
            return Err(scope_err(ScopeError::ManagedUnderByok));
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
        effects.extend(self.advance_job_past(Some(JobStep::WrapRoot { holder, version })));
        Ok(effects)
    }

    /// Checks that `fresh` (root versions the host unwrapped from `holder`'s copies just now,
    /// through its KMS) are the org's root keys, `reference` (what it unwrapped from the current
    /// default). The result lets [`Self::set_default`] make `holder` the default, as long as
    /// the holder still holds the copies of this state, from which `fresh` must come.
    pub fn prove_holder(
        &self,
        holder: HolderId,
        fresh: &[ScopeKey],
        reference: &[ScopeKey],
    ) -> Result<RootProof> {
        self.check_key_work()?;
        self.ready_holder(holder)?;
        let proof = proof::compare(self.root, holder, &self.root_versions(), fresh, reference)
            .map_err(scope_err)?;
        Ok(self.with_copies(proof))
    }

    /// `proof` with the copies the host unwrapped: the holder's in this state (`fresh` came
    /// from them), for the versions proven.
    fn with_copies(&self, mut proof: RootProof) -> RootProof {
        if let Some(h) = self.holders.get(&proof.holder) {
            proof.copies = proof
                .versions
                .iter()
                .filter_map(|v| Some((*v, h.copies.get(v)?.clone())))
                .collect();
        }
        proof
    }

    /// Like [`Self::prove_holder`], for when the current default cannot give the roots back to
    /// compare with: its KMS refuses (the customer disabled that key, or removed its grant) or
    /// is down. Making another key that holds every root the default is then how the customer
    /// recovers, so `fresh` is checked against the tree instead: each live root version must
    /// open a scope key wrapped under it (format v1 commits to the key, so only the root
    /// itself opens one). A root version that wraps no scope key (an org with no scopes yet)
    /// is taken on the holder's KMS's word: its copy opened under a binding to this org and
    /// version, which only byok wrapping that root can have made.
    ///
    /// Nothing the vendor could open is involved: the copies are the customer key's, and the
    /// default it replaces keeps its own.
    pub fn prove_holder_by_tree(&self, holder: HolderId, fresh: &[ScopeKey]) -> Result<RootProof> {
        self.check_key_work()?;
        self.ready_holder(holder)?;
        let mismatch = |version| scope_err(ScopeError::ProofMismatch { holder, version });
        let mut versions = BTreeSet::new();
        for v in self.root_versions() {
            let id = KeyId::new(self.root, v);
            let root = fresh.iter().find(|k| k.id() == id).ok_or(mismatch(v))?;
            let child = self.wrapped_under(id).into_iter().find_map(|c| {
                let w = self
                    .scopes
                    .get(&c.scope)?
                    .versions
                    .get(&c.version)?
                    .as_ref()?;
                Some((c, w))
            });
            if let Some((c, w)) = child {
                let ctx = scope_key_context(self.root, c, self.root);
                Envelope::<DefaultBackend>::unwrap_secret(root, &ctx, &w.wrapped)
                    .map_err(|_| mismatch(v))?;
            }
            versions.insert(v);
        }
        Ok(self.with_copies(RootProof {
            holder,
            versions,
            copies: BTreeMap::new(),
        }))
    }

    /// `holder` is attached and ready (holds every live root version), or the typed reason.
    fn ready_holder(&self, holder: HolderId) -> Result<()> {
        let h = self
            .holders
            .get(&holder)
            .ok_or(scope_err(ScopeError::UnknownHolder(holder)))?;
        if h.status != HolderStatus::Ready {
            return Err(scope_err(ScopeError::HolderNotReady(holder)));
        }
        Ok(())
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
        self.check_key_work()?;
        self.ready_holder(holder)?;
        if holder == self.default {
            return Ok(Vec::new());
        }
        let live = self.root_versions();
        if let HolderId::Cmk(_) = holder {
            let held = self.holders.get(&holder).map(|h| &h.copies);
            let proven = proof.is_some_and(|p| {
                p.holder == holder && held.is_some_and(|held| p.covers(live.iter(), held))
            });
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

    /// The holder's KMS key was rotated by the customer (its key health found copies made by
    /// an older key version): wraps every live root version again under the current one. Old
    /// copies keep serving until each is replaced. Refused while another job runs (the next
    /// health check asks again).
    pub fn refresh_holder(&mut self, holder: HolderId) -> Result<Vec<Effect>> {
        self.check_key_work()?;
        if self.job.is_some() {
            return Err(scope_err(ScopeError::JobRunning));
        }
        let h = self
            .holders
            .get(&holder)
            .filter(|h| h.status != HolderStatus::Disabled && holder != HolderId::Managed)
            .ok_or(scope_err(ScopeError::UnknownHolder(holder)))?;
        let steps: Vec<JobStep> = h
            .copies
            .keys()
            .map(|&version| JobStep::WrapRoot { holder, version })
            .collect();
        let job = RewrapJob::new(JobKind::RefreshHolder(holder), steps);
        self.job = Some(job.clone());
        Ok(vec![
            Effect::Audit(AuditEvent::HolderRotated(holder)),
            Effect::StartJob(job),
        ])
    }

    /// Re-enables a disabled holder: it is pending again until it has wrapped every root version.
    pub fn reenable(&mut self, holder: HolderId) -> Result<Vec<Effect>> {
        if holder == HolderId::Managed && self.default != HolderId::Managed {
            return Err(scope_err(ScopeError::ManagedUnderByok));
        }
        self.check_key_work()?;
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
        // A later CMK disable could not take back a managed copy made during a pause.
        self.check_key_work()?;
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

#[cfg(test)]
mod tests {
    use super::HolderStatus;

    #[test]
    fn status_names_round_trip() {
        for s in [
            HolderStatus::Pending,
            HolderStatus::Ready,
            HolderStatus::Disabled,
        ] {
            assert_eq!(HolderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(HolderStatus::parse("Ready"), None);
    }
}
