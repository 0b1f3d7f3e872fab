//! The audit log as a transparency log: the log key, signed checkpoints, proofs and
//! revocation receipts (issue 13; formats in `byok_core::audit_log`, storage in
//! `store::audit_tree`).
//!
//! Checkpoints are signed when a caller asks for the latest and the log grew, by the server's
//! background task every `checkpoint_interval` for every org whose log grew, and at once after
//! every withdrawal (its receipt needs one).

use std::collections::HashSet;
use std::sync::Arc;

use byok_core::audit_log::checkpoint::{self, WitnessKey};
use byok_core::audit_log::log_key::{LOG_KEY_PURPOSE, LogKey};
use byok_core::audit_log::proof::{ConsistencyProof, InclusionProof};
use byok_core::audit_log::receipt::{Entry, RECEIPT_EVENT, RECEIPT_FORMAT, Receipt};
use byok_core::audit_log::tree;
use byok_core::audit_log::{AuditLogError, Hash};
use byok_core::{Context, DefaultBackend, Envelope, ScopeId, SecretBytes};
use serde_json::{Value, json};

use super::{Result, Service, ServiceError};
use crate::store::audit_tree::{self, StoredCheckpoint, StoredLogKey};
use crate::store::{self, audit};

/// The longest a lease can be issued for (`lease_ttl_ms` is at most an hour): leases issued
/// longer ago than this have expired.
const LONGEST_LEASE_MS: i64 = 3_600_000;

/// What a withdrawal took away, for its receipt.
#[derive(Clone, Debug)]
pub enum Withdrawal {
    /// A scope paused or revoked (`action` is the audit event type), with its subtree.
    Scope {
        /// `scope_paused` or `scope_revoked`.
        action: &'static str,
        /// The scope.
        scope: ScopeId,
    },
    /// An attached key disabled (its wrapped copies of the root destroyed), or all of them.
    Key {
        /// The key's holder name (`all` for every customer key).
        holder: String,
    },
    /// A token revoked.
    Token {
        /// Its public id.
        id: String,
    },
    /// The org claimed by its customer: every admin token but the new one revoked.
    Claim {
        /// The revoked tokens' public ids.
        revoked: Vec<String>,
    },
}

fn context(name: &str) -> std::result::Result<Context, ServiceError> {
    Context::from_pairs([("byok:purpose", LOG_KEY_PURPOSE), ("byok:log-key", name)])
        .map_err(|_| ServiceError::Invalid("the log key name cannot be bound".into()))
}

/// Set once the rows written before row tags have theirs (`server_meta`).
const TAGS_DONE: &str = "audit_row_tags_complete";

/// How many times a signing reads and checks the rows again after another replica signed
/// between its read and its write ([`Service::sign_checkpoint`]).
const MAX_SIGNING_TRIES: u32 = 3;

/// What a signing's checks found ([`Service::sign_checkpoint`]).
enum Checked {
    /// The newest checkpoint (if any) covers every row: nothing to sign.
    Signed(Option<StoredCheckpoint>),
    /// Rows since `latest` (the newest checkpoint read), checked: the tree of `size` rows,
    /// with `root`, to sign.
    New {
        latest: Option<StoredCheckpoint>,
        size: u64,
        root: Hash,
    },
}

fn log_error(e: AuditLogError) -> ServiceError {
    ServiceError::Store(store::StoreError::Corrupt(format!("audit log: {e}")))
}

impl Service {
    /// Loads the log key, making it on first start (named `name`; a later start keeps the
    /// first name, since published checkpoints carry it). Returns its verifier key.
    pub async fn load_log_key(&self, name: &str) -> Result<String> {
        // Read before the writer is taken (SQLite in memory has one connection).
        let tags_done = self.store.meta(TAGS_DONE).await?.is_some();
        let mut w = self.store.write().await?;
        let stored = match audit_tree::log_key(&mut w.tx).await? {
            Some(k) => {
                if k.name != name {
                    // Said, not silent: an operator who changed --log-name (perhaps after a
                    // first start that failed later on) would otherwise believe it taken.
                    tracing::warn!(stored = %k.name, configured = %name, "the log keeps the name of its first start: published checkpoints carry it; --log-name is ignored");
                }
                k
            }
            // Checkpoints signed, and no key: the key's row was deleted. A new key would sign
            // whatever the database holds now (a rewrite included) for every verifier that
            // takes the server's key; the row must be restored instead. Heads kept in the
            // data directory count for orgs this database logs (not those of a database the
            // directory served before, a switch to PostgreSQL say).
            None if audit_tree::any_checkpoint(&mut w.tx).await?
                || audit_tree::any_log_of(&mut w.tx, &self.signed_heads.orgs()).await? =>
            {
                tracing::error!(
                    "the audit log key is missing from the database, but checkpoints it signed exist: restore its log_key row from a backup; a new key is not made over them"
                );
                return Err(ServiceError::Store(store::StoreError::Corrupt(
                    "audit log: the log key's row is gone while checkpoints it signed remain; restore the log_key row from a backup".into(),
                )));
            }
            None => {
                let seed = SecretBytes::random(&mut rand::rng());
                let key = LogKey::from_seed(name, &seed)
                    .map_err(|e| ServiceError::Invalid(format!("log name {name:?}: {e}")))?;
                let wrapped = Envelope::<DefaultBackend>::wrap_secret(
                    &self.managed,
                    &context(name)?,
                    &seed,
                    &mut rand::rng(),
                )?;
                let k = StoredLogKey {
                    name: name.to_owned(),
                    public_key: key.public_key().to_vec(),
                    wrapped,
                };
                audit_tree::put_log_key(&mut w.tx, &k, store::now_ms()).await?;
                k
            }
        };
        let rebuilt = audit_tree::backfill(&mut w.tx).await?;
        // Rows written before rows were tagged get their tags now, once: after that, a row
        // without one was written into the database, and is not signed.
        let tagged = if !tags_done {
            let n = audit_tree::tag_untagged(&mut w.tx, self.row_tagger()?).await?;
            sqlx::query("INSERT INTO server_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
                .bind(TAGS_DONE)
                .bind(store::now_ms().to_string())
                .execute(&mut *w.tx)
                .await
                .map_err(store::StoreError::from)?;
            n
        } else {
            0
        };
        w.commit().await?;
        if tagged > 0 {
            tracing::info!(rows = tagged, "audit rows from before row tags were tagged");
        }
        if rebuilt > 0 {
            tracing::info!(
                orgs = rebuilt,
                "audit trees built for logs written before them"
            );
        }
        let seed = Envelope::<DefaultBackend>::unwrap_secret(
            &self.managed,
            &context(&stored.name)?,
            &stored.wrapped,
        )?;
        let key = LogKey::from_seed(&stored.name, &seed).map_err(log_error)?;
        if key.public_key()[..] != stored.public_key[..] {
            return Err(log_error(AuditLogError::BadSignature));
        }
        let vkey = key.verifier_key();
        // A second load (tests) keeps the first key: both are the same stored key.
        let _ = self.log_key.set(Arc::new(key));
        Ok(vkey)
    }

    fn log_key(&self) -> Result<&LogKey> {
        self.log_key
            .get()
            .map(|k| &**k)
            .ok_or_else(|| ServiceError::Invalid("the audit log key is not loaded".into()))
    }

    /// What tags audit rows: set on the database by [`Service::new`].
    fn row_tagger(&self) -> Result<&byok_core::audit_log::row_tag::RowTagger> {
        self.store
            .row_tagger()
            .ok_or_else(|| ServiceError::Invalid("the audit row tagger is not set".into()))
    }

    /// The log's verifier key (C2SP note form).
    pub fn verifier_key(&self) -> Result<String> {
        Ok(self.log_key()?.verifier_key())
    }

    /// Signs a checkpoint of `org`'s log at its current size, unless the newest already has
    /// that size; returns the newest.
    ///
    /// Only a tree that extends the newest checkpoint already signed is signed: the tree is
    /// read from storage, and someone who can write only the database could otherwise rewrite
    /// rows and tree (or have the start-up rebuild redo the tree from rewritten rows) and get
    /// the rewrite signed, two signed heads that contradict each other. That is refused, and
    /// logged as an error: nothing more is signed for the org until storage is put right.
    ///
    /// "The newest signed" is the newest checkpoint row, and also the newest this process
    /// signed or checked, so that deleting checkpoint rows does not lower the bar. Those are
    /// kept in the data directory too ([`Self::with_signed_heads`]), so a restart keeps the
    /// bar; a replica that never saw an org's heads (a new one, or one whose file was lost)
    /// has only the rows to go by, and a witness is what catches a rewrite then
    /// (`docs/audit.md`).
    ///
    /// The rows are read and checked from one snapshot of the database, without the store's
    /// writer: the checks read every row since the newest checkpoint (seconds, for an org at
    /// its rate limits), and the writer's turn is every org's pauses and revokes. Only the
    /// signing takes it, with the org's row: the newest checkpoint is read again there, and
    /// the new one written only if it is still the one the checked tree extends. One signed
    /// meanwhile by another replica (which may not cover a row this caller just wrote) sends
    /// the signing back to read and check from it, a few times at most (`reloading` then).
    /// Signings of one org in this process take turns: the heads it holds are then never
    /// ahead of what a signing's snapshot can show.
    pub async fn sign_checkpoint(&self, org: ScopeId) -> Result<Option<StoredCheckpoint>> {
        let key = self.log_key()?;
        let _turn = self.signings.take(org).await?;
        let mut tries = 0;
        let (mut w, size, root, note) = loop {
            let mut snapshot = self.store.long_read().await?;
            let checked = self.checked_head(&mut snapshot, org, key).await;
            // Only read: a failed rollback (the connection gone) changes nothing.
            let _ = snapshot.end().await;
            let (latest, size, root) = match checked? {
                Checked::Signed(latest) => return Ok(latest),
                Checked::New { latest, size, root } => (latest, size, root),
            };
            let note = checkpoint::sign(key, org, size, root).map_err(log_error)?;
            let mut w = self.store.write_org(org).await?;
            // The org's row, which every append and every signing takes.
            w.lock_org(org).await?;
            let now = audit_tree::latest_checkpoint(&mut w.tx, org).await?;
            let head = |c: &Option<StoredCheckpoint>| c.as_ref().map(|c| (c.size, c.note.clone()));
            if head(&now) == head(&latest) {
                break (w, size, root, note);
            }
            // Another replica signed meanwhile, perhaps short of the rows this read (a receipt
            // just written, whose caller asks for its inclusion next): read and check again
            // from the new newest checkpoint, which is checked as every newest one is.
            drop(w);
            tries += 1;
            if tries == MAX_SIGNING_TRIES {
                return Err(ServiceError::Reloading);
            }
        };
        if audit_tree::size(&mut w.tx, org).await? < size {
            tracing::error!(org = %org, size, "the stored audit log lost rows while they were being signed: no checkpoint is signed");
            return Err(log_error(AuditLogError::NotConsistent));
        }
        let at = store::now_ms();
        audit_tree::put_checkpoint(&mut w.tx, org, size, at, &note).await?;
        // Kept before it is committed: a checkpoint only the database holds could be deleted
        // there, and the bar with it, across a restart.
        self.saw_head(org, size, root)?;
        w.commit().await?;
        Ok(Some(StoredCheckpoint { size, at, note }))
    }

    /// What [`Self::sign_checkpoint`] reads and checks, from `r` (one snapshot): the newest
    /// checkpoint if it covers every row, else the size and root to sign over it.
    async fn checked_head(
        &self,
        r: &mut store::LongRead,
        org: ScopeId,
        key: &LogKey,
    ) -> Result<Checked> {
        // One snapshot: the size and the newest checkpoint are read as of one moment, with no
        // other replica's row or checkpoint between them.
        let size = audit_tree::size(r, org).await?;
        let latest = audit_tree::latest_checkpoint(r, org).await?;
        let remembered = self.signed_heads.get(org);
        let newest_signed = latest.as_ref().map_or(0, |c| c.size);
        if size == 0 && latest.is_none() {
            return Ok(Checked::Signed(None));
        }
        // Nothing new, and the newest row is the head this process signed or checked last:
        // its note checked (byok's, for this org and size, the root held), no tree is read.
        if let (Some(l), Some((held, root))) = (&latest, remembered)
            && l.size == size
            && held == size
            && checkpoint::verify(&l.note, &key.verifier_key())
                .is_ok_and(|v| v.org == org && v.size == size && v.root == root)
        {
            return Ok(Checked::Signed(latest));
        }
        // The heads the tree must extend: the newest row's (its signature checked), and the
        // one remembered if it is newer or the row is gone. Checked even when nothing is to
        // be signed: a newest row whose size was raised past the tree's (or whose note is not
        // byok's) would otherwise be taken as covering every row to come, and nothing would
        // be signed again, silently.
        let mut heads = Vec::new();
        if let Some(signed) = &latest {
            match checkpoint::verify(&signed.note, &key.verifier_key()) {
                Ok(v) if v.org == org && v.size == signed.size => heads.push((v.size, v.root)),
                _ => heads.push((signed.size, Hash([0; 32]))),
            }
        }
        // The one remembered, unless it is the row's (checked once).
        heads.extend(remembered.filter(|r| !heads.contains(r)));
        // The largest head: what the new rows extend.
        let (signed_to, signed_root) = heads
            .iter()
            .copied()
            .max_by_key(|(s, _)| *s)
            .unwrap_or((0, Hash([0; 32])));
        for (signed_size, root) in heads {
            let extends = signed_size <= size
                && audit_tree::run(r, org, |r| tree::root(signed_size, r)).await? == root;
            if !extends {
                tracing::error!(org = %org, signed_size, size, "the stored audit log does not extend the newest checkpoint byok signed: rows, tree or checkpoints were changed in storage; no checkpoint is signed until they are put back");
                return Err(log_error(AuditLogError::NotConsistent));
            }
            self.saw_head(org, signed_size, root)?;
        }
        if newest_signed >= size {
            return Ok(Checked::Signed(latest));
        }
        // The root signed is computed from two reads, each checked, and nothing read again
        // (were the snapshot ever lost, a hash checked by one read and changed before another
        // would be signed unchecked). `old`, the complete subtrees of
        // the largest head, must give that head's root; `new`, every hash the rows since
        // added, must be those rows' leaves (each tagged by the key the database never holds,
        // and given by its row's contents) and the inner hashes those leaves give. A row
        // written into the database directly, or a tree changed over good leaves, is refused.
        let old = audit_tree::read_hashes(r, org, &tree::subtrees(signed_to)).await?;
        let new =
            audit_tree::range(r, org, tree::leaf_index(signed_to), tree::leaf_index(size)).await?;
        let old_tree = tree::TreeReader::with(old.iter().copied());
        if signed_to > 0 && tree::root(signed_to, &old_tree).ok() != Some(signed_root) {
            tracing::error!(org = %org, signed_to, "the stored audit tree changed under the newest head byok signed while it was being read: no checkpoint is signed");
            return Err(log_error(AuditLogError::NotConsistent));
        }
        let tagger = self.row_tagger()?;
        if let Some(seq) =
            audit_tree::first_untagged(r, tagger, org, signed_to + 1, size, &new).await?
        {
            tracing::error!(org = %org, seq, "audit row {seq} is not as byok wrote it (no tag that checks out, or contents that do not give its leaf): it was written or changed in the database directly; no checkpoint is signed until storage is put back");
            return Err(log_error(AuditLogError::NotConsistent));
        }
        // Inner hashes, which a root reads and no tag covers, recomputed from the leaves.
        if let Some(n) =
            tree::first_mismatch(signed_to, size, &old_tree, &new).map_err(log_error)?
        {
            let seq = n + 1;
            tracing::error!(org = %org, seq, "the stored audit tree over row {seq} is not the one its rows give: it was changed in the database directly; no checkpoint is signed until storage is put back");
            return Err(log_error(AuditLogError::NotConsistent));
        }
        let root = tree::root(size, &tree::TreeReader::with(old.into_iter().chain(new)))
            .map_err(log_error)?;
        Ok(Checked::New { latest, size, root })
    }

    /// Records a head signed or checked ([`super::signed_heads`]); a file that cannot record
    /// it fails the signing, rather than sign what a restart would forget.
    fn saw_head(&self, org: ScopeId, size: u64, root: Hash) -> Result<()> {
        self.signed_heads.saw(org, size, root).map_err(|e| {
            tracing::error!(org = %org, error = %e, "the audit heads file cannot be written: no checkpoint is signed until it can");
            ServiceError::Store(store::StoreError::Corrupt(format!(
                "audit heads file: {e}"
            )))
        })
    }

    /// The newest checkpoint of `org` (signed now if the log grew since the last), with any
    /// witness cosignatures it has.
    pub async fn checkpoint(&self, org: ScopeId) -> Result<StoredCheckpoint> {
        self.org(org).await?;
        let cp = self
            .sign_checkpoint(org)
            .await?
            .ok_or_else(|| ServiceError::NotFound("this org's audit log is empty".into()))?;
        self.cosigned(org, cp).await
    }

    async fn cosigned(&self, org: ScopeId, mut cp: StoredCheckpoint) -> Result<StoredCheckpoint> {
        let mut c = self.store.conn().await?;
        let lines = audit_tree::cosignatures(&mut c, org, cp.size).await?;
        if !lines.is_empty() {
            cp.note = checkpoint::with_signatures(&cp.note, &lines);
        }
        Ok(cp)
    }

    /// Registers `vkey` as `org`'s witness (C2SP `tlog-cosignature` v1 Ed25519 verifier key),
    /// or forgets it (`None`); returns the witness's name.
    pub async fn set_witness(&self, org: ScopeId, vkey: Option<&str>) -> Result<Option<String>> {
        self.org(org).await?;
        let name = vkey
            .map(|v| {
                WitnessKey::parse(v)
                    .map(|w| w.name().to_owned())
                    .map_err(|e| ServiceError::Invalid(format!("witness_key: {e}")))
            })
            .transpose()?;
        let event = match &name {
            Some(n) => json!({ "type": "witness_set", "witness": n }),
            None => json!({ "type": "witness_removed" }),
        };
        let now = store::now_ms();
        let mut w = self.store.write_org(org).await?;
        // The witness decides whom the org trusts to vouch for its log: an admin whose token
        // was revoked while this waited for the writer must not set it.
        Self::actor_still_in_force(&mut w).await?;
        audit_tree::set_witness(&mut w.tx, org, vkey.map(str::trim), now).await?;
        audit::append(&mut w, org, now, &event).await?;
        w.commit().await?;
        Ok(name)
    }

    /// Checks `line` as the org's witness's cosignature of its checkpoint of `size` and keeps
    /// it: from then on that checkpoint is served with it.
    pub async fn cosign(&self, org: ScopeId, size: u64, line: &str) -> Result<()> {
        self.org(org).await?;
        if i64::try_from(size).is_err() {
            return Err(ServiceError::NotFound(format!(
                "no checkpoint of size {size}"
            )));
        }
        let mut c = self.store.conn().await?;
        let vkey = audit_tree::witness(&mut c, org).await?.ok_or_else(|| {
            ServiceError::Invalid(
                "this org has no witness key: register one first (PUT .../audit/witness)".into(),
            )
        })?;
        let cp = audit_tree::checkpoint_of_size(&mut c, org, size)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no checkpoint of size {size}")))?;
        drop(c);
        let witness = WitnessKey::parse(&vkey).map_err(log_error)?;
        let ts = witness
            .verify(&cp.note, line)
            .map_err(|e| ServiceError::Invalid(format!("cosignature: {e}")))?;
        let now = store::now_ms();
        let mut w = self.store.write_org(org).await?;
        Self::actor_still_in_force(&mut w).await?;
        // One line per witness and checkpoint. A note carries at most 100 signatures, so a
        // faulty or hostile witness posting more (each new time is a new valid line) would
        // make the checkpoint unverifiable for everyone. The same line again is a retry.
        let own = format!("\u{2014} {} ", witness.name());
        let held = audit_tree::cosignatures(&mut w.tx, org, size).await?;
        if let Some(first) = held.iter().find(|l| l.starts_with(&own)) {
            return if first == line.trim_end() {
                Ok(())
            } else {
                Err(ServiceError::Invalid(format!(
                    "the checkpoint of size {size} carries {}'s cosignature already: one per witness and checkpoint",
                    witness.name()
                )))
            };
        }
        audit_tree::put_cosignature(&mut w.tx, org, size, line.trim_end(), now).await?;
        let event = json!({ "type": "checkpoint_cosigned", "size": size, "witness": witness.name(), "time": ts });
        audit::append(&mut w, org, now, &event).await?;
        w.commit().await?;
        Ok(())
    }

    /// Every checkpoint of `org` above size `after`, oldest first.
    pub async fn checkpoints(
        &self,
        org: ScopeId,
        after: u64,
        limit: i64,
    ) -> Result<Vec<StoredCheckpoint>> {
        self.org(org).await?;
        let list = {
            let mut c = self.store.conn().await?;
            // Sizes are stored as i64: past that there is nothing to list.
            let after = after.min(i64::MAX as u64);
            audit_tree::checkpoints(&mut c, org, after, limit.clamp(1, 1000)).await?
        };
        let mut out = Vec::with_capacity(list.len());
        for cp in list {
            out.push(self.cosigned(org, cp).await?);
        }
        Ok(out)
    }

    /// Signs checkpoints for every org whose log grew since its last; returns how many were.
    pub async fn sign_pending(&self) -> Result<usize> {
        let orgs = {
            let mut c = self.store.conn().await?;
            audit_tree::unsigned_orgs(&mut c).await?
        };
        // One org's failure (its storage changed, say) leaves the others signed.
        let mut signed = 0;
        for org in &orgs {
            match self.sign_checkpoint(*org).await {
                Ok(_) => signed += 1,
                // The database away: the next tick tries them all again.
                Err(ServiceError::Store(e)) if e.is_unavailable() => {
                    return Err(ServiceError::Store(e));
                }
                Err(e) => {
                    tracing::warn!(org = %org, error = ?e, "the org's audit checkpoint was not signed");
                }
            }
        }
        Ok(signed)
    }

    /// `size`, or the newest checkpoint's (signed now if the log grew): only its size is
    /// needed, not the note or its cosignatures.
    async fn tree_size_or_latest(&self, org: ScopeId, size: Option<u64>) -> Result<u64> {
        match size {
            Some(s) => Ok(s),
            None => self
                .sign_checkpoint(org)
                .await?
                .map(|c| c.size)
                .ok_or_else(|| ServiceError::NotFound("this org's audit log is empty".into())),
        }
    }

    /// Runs proof `op` on `org`'s tree at `size` (default: the newest checkpoint's), once
    /// `refuse(size, rows)` has no objection; returns the size and the proof's hashes.
    async fn tree_proof(
        &self,
        org: ScopeId,
        size: Option<u64>,
        refuse: impl FnOnce(u64, u64) -> Option<String>,
        op: impl Fn(&tree::TreeReader, u64) -> std::result::Result<Vec<Hash>, AuditLogError>,
    ) -> Result<(u64, Vec<Hash>)> {
        self.org(org).await?;
        let size = self.tree_size_or_latest(org, size).await?;
        let mut c = store::begin(self.store.pool()).await?;
        let rows = audit_tree::size(&mut c, org).await?;
        if let Some(why) = refuse(size, rows) {
            return Err(ServiceError::Invalid(why));
        }
        let hashes = audit_tree::run(&mut c, org, |r| op(r, size)).await?;
        Ok((size, hashes))
    }

    /// The inclusion proof of row `seq` in `org`'s tree of `size` rows (default: the newest
    /// checkpoint's size).
    pub async fn inclusion(
        &self,
        org: ScopeId,
        seq: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof> {
        let refuse = |size, rows| {
            (seq == 0 || seq > size || size > rows).then(|| format!(
                "seq must be 1..=size and size at most the log's {rows} rows (got seq {seq}, size {size})"
            ))
        };
        let (size, hashes) = self
            .tree_proof(org, size, refuse, |r, size| {
                tree::inclusion(seq - 1, size, r)
            })
            .await?;
        Ok(InclusionProof::new(seq - 1, size, &hashes))
    }

    /// The consistency proof of `org`'s tree from `from` rows to `to` (default: the newest
    /// checkpoint's size).
    pub async fn consistency(
        &self,
        org: ScopeId,
        from: u64,
        to: Option<u64>,
    ) -> Result<ConsistencyProof> {
        let refuse = |to, rows| {
            (from > to || to > rows).then(|| {
                format!("need from <= to <= the log's {rows} rows (got from {from}, to {to})")
            })
        };
        let (to, hashes) = self
            .tree_proof(org, to, refuse, |r, to| tree::consistency(from, to, r))
            .await?;
        Ok(ConsistencyProof::new(from, to, &hashes))
    }

    /// Logs the receipt of withdrawal `w` (committed just before), signs a checkpoint that
    /// covers it and returns the receipt.
    pub async fn receipt(&self, org: ScopeId, w: Withdrawal) -> Result<Receipt> {
        let cell = self.org(org).await?;
        let now = store::now_ms();
        // Server caches: the transition's effects evicted them before its gate opened.
        // Edge leases: the last one issued on what was withdrawn, still running.
        // Which leases still open what was withdrawn: those on the scope's subtree; those the
        // tokens were given; none for a key (leases hold scope keys, which the org's other
        // keys still reach).
        enum Covered {
            Scopes(HashSet<String>),
            Tokens(HashSet<String>),
            Nothing,
        }
        let (action, subject, covered) = match &w {
            Withdrawal::Scope { action, scope } => {
                let under = cell
                    .snapshot()
                    .subtree(*scope)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                (
                    *action,
                    json!({ "scope": scope.to_string() }),
                    Covered::Scopes(under),
                )
            }
            Withdrawal::Key { holder } => {
                ("key_disabled", json!({ "key": holder }), Covered::Nothing)
            }
            Withdrawal::Token { id } => (
                "token_revoked",
                json!({ "token": id }),
                Covered::Tokens(HashSet::from([id.clone()])),
            ),
            Withdrawal::Claim { revoked } => (
                "org_claimed",
                json!({ "tokens": revoked }),
                Covered::Tokens(revoked.iter().cloned().collect()),
            ),
        };
        let mut leases_end: Option<i64> = None;
        let mut outstanding = 0u64;
        // Leases still running, a page at a time (an hour of them can be millions of rows),
        // from the window's first row on.
        let since = now - LONGEST_LEASE_MS;
        let first = audit::first_seq_since(self.store.pool(), org, since).await?;
        let mut after = first.map_or(i64::MAX, |s| s - 1);
        while after < i64::MAX {
            let page =
                audit::recent_of_type(self.store.pool(), org, "lease_issued", since, now, after)
                    .await?;
            let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= audit::RECENT_PAGE;
            for (seq, e) in page {
                after = seq;
                let ends = e.get("expires_at").and_then(Value::as_i64).unwrap_or(0);
                let text =
                    |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
                let hit = match &covered {
                    Covered::Scopes(under) => under.contains(&text(e.get("scope"))),
                    Covered::Tokens(ids) => ids.contains(&text(e.pointer("/actor/token"))),
                    Covered::Nothing => false,
                };
                if ends > now && hit {
                    outstanding += 1;
                    leases_end = Some(leases_end.map_or(ends, |m| m.max(ends)));
                }
            }
            if !full {
                break;
            }
        }
        // Other replicas drop theirs when they hear of the change: at worst this much later.
        let lag = self.replicas_lag_ms();
        let replicas_by = (lag > 0).then(|| now.saturating_add(lag));
        let ends = [Some(now), leases_end, replicas_by]
            .into_iter()
            .flatten()
            .max();
        let event = json!({
            "type": RECEIPT_EVENT,
            "action": action,
            "subject": subject,
            "caches_evicted_at": now,
            "replicas_stop_by": replicas_by,
            "leases_outstanding": outstanding,
            "leases_expire_by": leases_end,
            "access_ends_at": ends.unwrap_or(now),
        });
        let mut tx = self.store.write_org(org).await?;
        let (seq, event) = audit::append_row(&mut tx, org, now, &event).await?;
        tx.commit().await?;
        let cp = self
            .sign_checkpoint(org)
            .await?
            .ok_or_else(|| log_error(AuditLogError::TreeIncomplete))?;
        let seq = u64::try_from(seq).unwrap_or(0);
        let inclusion = self.inclusion(org, seq, Some(cp.size)).await?;
        Ok(Receipt {
            format: RECEIPT_FORMAT.into(),
            entry: Entry {
                seq,
                at: now,
                event,
            },
            inclusion,
            checkpoint: cp.note,
        })
    }
}

#[cfg(test)]
mod tests {
    use byok_core::ScopeId;

    use super::super::{Service, ServiceError};
    use crate::store::Database;

    fn service(db: &Database, managed: u8) -> Service {
        super::super::test_service(db, managed)
    }

    /// A service started afresh on `db` (no heads kept: a replica that never saw the org)
    /// signs nothing for `org`, refusing its storage.
    async fn restarted_refuses(db: &Database, org: ScopeId) {
        let restarted = service(db, 7);
        restarted.load_log_key("byok.test").await.unwrap();
        let e = restarted.sign_checkpoint(org).await.unwrap_err();
        assert!(refused(&e), "{e:?}");
    }

    /// A service on a database in memory with its log key loaded, and an org (leasing for
    /// `lease_ttl`, if given) with a scope `team`: `(db, service, org, team)`.
    async fn logged(
        lease_ttl: Option<std::time::Duration>,
    ) -> (Database, Service, ScopeId, ScopeId) {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = service(&db, 7);
        svc.load_log_key("byok.test").await.unwrap();
        let (org, team) = super::super::test_team(&svc, lease_ttl).await;
        (db, svc, org, team)
    }

    #[tokio::test]
    async fn the_log_key_is_kept_wrapped_under_the_managed_key_and_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let vkey = service(&db, 7).load_log_key("byok.test").await.unwrap();
        assert!(vkey.starts_with("byok.test+"), "{vkey}");
        // A later start keeps the key and its first name.
        assert_eq!(service(&db, 7).load_log_key("renamed").await.unwrap(), vkey);
        // Stored wrapped: the 140-byte sealed form, which another managed key does not open.
        let wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM log_key")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(wrapped.len(), 140);
        let e = service(&db, 8).load_log_key("byok.test").await.unwrap_err();
        assert!(
            matches!(e, ServiceError::Crypto(byok_core::Error::Decrypt)),
            "{e:?}"
        );
    }

    /// Sets row 1 of `org`'s log to `event`, rebuilds the tree from the rows and deletes every
    /// checkpoint row: a rewrite by someone who can write only the database.
    async fn rewrite_first_row(db: &Database, org: ScopeId, event: &str) {
        let org_hex = org.to_string();
        for q in [
            "UPDATE audit SET event = $2 WHERE org_id = $1 AND seq = 1",
            "DELETE FROM audit_tree WHERE org_id = $1",
            "DELETE FROM audit_checkpoint WHERE org_id = $1",
        ] {
            sqlx::query(q)
                .bind(&org_hex)
                .bind(event)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let mut w = db.write().await.unwrap();
        crate::store::audit_tree::backfill(&mut w.tx).await.unwrap();
        w.commit().await.unwrap();
    }

    /// Row 1 of `org`'s log, and the same row with its type renamed.
    async fn first_row_and_forgery(db: &Database, org: ScopeId) -> (String, String) {
        let (first,): (String,) =
            sqlx::query_as("SELECT event FROM audit WHERE org_id = $1 AND seq = 1")
                .bind(org.to_string())
                .fetch_one(db.pool())
                .await
                .unwrap();
        let forged = first.replacen("\"type\":\"", "\"type\":\"forged_", 1);
        (first, forged)
    }

    fn refused(e: &ServiceError) -> bool {
        let refused = format!(
            "audit log: {}",
            byok_core::audit_log::AuditLogError::NotConsistent
        );
        matches!(e, ServiceError::Store(crate::store::StoreError::Corrupt(m)) if *m == refused)
    }

    /// The newest checkpoint row's size raised past the log's (a database writer's way to
    /// have nothing signed again: it was taken as covering every row to come, and the org
    /// left out of the periodic signing, silently). The signing refuses it, as a rewrite, and
    /// the periodic scan keeps the org in view so that it says so each time.
    #[tokio::test]
    async fn a_checkpoint_claiming_more_rows_than_the_log_has_is_refused() {
        let (db, svc, org, team) = logged(None).await;
        svc.sign_checkpoint(org).await.unwrap().unwrap();
        sqlx::query("UPDATE audit_checkpoint SET size = 9000000000000000000 WHERE org_id = $1")
            .bind(org.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        svc.pause(org, team).await.unwrap();
        let e = svc.sign_checkpoint(org).await.unwrap_err();
        assert!(refused(&e), "{e:?}");
        let mut c = db.pool().acquire().await.unwrap();
        let pending = crate::store::audit_tree::unsigned_orgs(&mut c)
            .await
            .unwrap();
        assert_eq!(pending, [org]);
    }

    /// A data directory whose heads are of another database's orgs (a switch from SQLite to
    /// PostgreSQL with the same directory, a database started afresh) is no sign of a deleted
    /// log key: a new database gets its key.
    #[tokio::test]
    async fn heads_of_another_databases_orgs_do_not_hold_up_a_new_log_key() {
        let dir = tempfile::tempdir().unwrap();
        let heads = dir.path().join("audit-heads");
        let first = Database::open("sqlite::memory:").await.unwrap();
        let svc = service(&first, 7).with_signed_heads(&heads).unwrap();
        svc.load_log_key("byok.test").await.unwrap();
        let (org, _) = super::super::test_team(&svc, None).await;
        svc.sign_checkpoint(org).await.unwrap().unwrap();
        drop(svc);
        let fresh = Database::open("sqlite::memory:").await.unwrap();
        let svc = service(&fresh, 7).with_signed_heads(&heads).unwrap();
        svc.load_log_key("byok.test").await.unwrap();
    }

    /// A checkpoint another replica signed between a signing's read and its write, short of
    /// the rows that signing read (a receipt just written, whose inclusion its caller asks for
    /// next), sends the signing back to read and check from it: it signs the rows it read.
    /// Before, the other checkpoint was the answer, and the receipt's proof was refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_signed_elsewhere_meanwhile_is_signed_past() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let svc = std::sync::Arc::new(service(&db, 7));
        svc.load_log_key("byok.test").await.unwrap();
        let (org, _) = super::super::test_team(&svc, None).await;
        let size = crate::store::audit_tree::size(&mut db.conn().await.unwrap(), org)
            .await
            .unwrap();
        // The writer held: the signing reads and checks, then waits for it.
        let mut elsewhere = db.write_org(org).await.unwrap();
        let signing = tokio::spawn({
            let svc = svc.clone();
            async move { svc.sign_checkpoint(org).await }
        });
        while db.writes_waiting() < 1 {
            tokio::task::yield_now().await;
        }
        // Meanwhile "another replica" signs one row short, with the same log key.
        let short = size - 1;
        let root =
            crate::store::audit_tree::run(&mut elsewhere.tx, org, |r| super::tree::root(short, r))
                .await
                .unwrap();
        let note = super::checkpoint::sign(svc.log_key().unwrap(), org, short, root).unwrap();
        crate::store::audit_tree::put_checkpoint(&mut elsewhere.tx, org, short, 1, &note)
            .await
            .unwrap();
        elsewhere.commit().await.unwrap();
        let signed = signing.await.unwrap().unwrap().expect("a checkpoint");
        assert_eq!(
            signed.size, size,
            "the answer does not cover the rows the signing read"
        );
        let newest =
            crate::store::audit_tree::latest_checkpoint(&mut db.conn().await.unwrap(), org)
                .await
                .unwrap()
                .unwrap();
        assert_eq!((newest.size, newest.note), (size, signed.note));
    }

    /// A signing reads and checks the rows without the store's writer, which every org's
    /// pauses and revokes wait for: with the writer held, a signing whose checks refuse a row
    /// answers at once, and one with nothing to refuse waits only to write its checkpoint.
    /// Before, the whole read and check ran holding it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signing_checks_the_rows_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let svc = std::sync::Arc::new(service(&db, 7));
        svc.load_log_key("byok.test").await.unwrap();
        let (good, _) = super::super::test_team(&svc, None).await;
        let (forged, _) = super::super::test_team(&svc, None).await;
        let mut w = db.write_org(forged).await.unwrap();
        w.row_tagger = None;
        let event = serde_json::json!({ "type": "scope_paused", "scope": "00" });
        crate::store::audit::append(&mut w, forged, 1, &event)
            .await
            .unwrap();
        w.commit().await.unwrap();
        let held = db.write().await.unwrap();
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            svc.sign_checkpoint(forged),
        )
        .await
        .expect("the signing waited for the writer to check the rows");
        assert!(refused(&answer.unwrap_err()));
        let signing = tokio::spawn({
            let svc = svc.clone();
            async move { svc.sign_checkpoint(good).await }
        });
        while db.writes_waiting() < 1 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let signed = signing.await.unwrap().unwrap().expect("a checkpoint");
        assert_eq!(
            signed.size,
            crate::store::audit_tree::size(&mut db.conn().await.unwrap(), good)
                .await
                .unwrap()
        );
    }

    /// A row written into the database directly (its chain hash and tree leaf made as byok
    /// makes them: both follow public algorithms) has no tag that checks out, with none or a
    /// made-up one: no checkpoint is signed over it, and the error says so. Before row tags it
    /// was signed with the next checkpoint like any row byok wrote.
    #[tokio::test]
    async fn a_row_written_into_the_database_is_not_signed() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = service(&db, 7);
        svc.load_log_key("byok.test").await.unwrap();
        for made_up in [None, Some(vec![7u8; 32])] {
            let (org, _) = super::super::test_team(&svc, None).await;
            svc.sign_checkpoint(org).await.unwrap().unwrap();
            let mut w = db.write_org(org).await.unwrap();
            // The writer has no tagger: the key it comes from is not in the database.
            w.row_tagger = None;
            let event = serde_json::json!({
                "type": "withdrawal_receipt", "action": "scope_revoked", "access_ends_at": 1,
            });
            let seq = crate::store::audit::append(&mut w, org, 1, &event)
                .await
                .unwrap();
            if let Some(tag) = &made_up {
                sqlx::query("UPDATE audit SET tag = $3 WHERE org_id = $1 AND seq = $2")
                    .bind(org.to_string())
                    .bind(seq)
                    .bind(tag)
                    .execute(&mut *w.tx)
                    .await
                    .unwrap();
            }
            w.commit().await.unwrap();
            let e = svc.sign_checkpoint(org).await.unwrap_err();
            assert!(refused(&e), "{made_up:?}: {e:?}");
        }
    }

    /// Rows byok wrote and tagged, with the stored tree over them changed (an inner hash,
    /// which a root reads and no tag covers) or a row's contents edited (its leaf left as
    /// stored): neither is signed. Before, an inner hash changed over good leaves got a root
    /// signed that commits to other leaves.
    #[tokio::test]
    async fn a_tree_or_row_changed_over_tagged_leaves_is_not_signed() {
        use byok_core::audit_log::tree::leaf_index;
        for change in ["inner", "row", "twice"] {
            let (db, svc, org, team) = logged(None).await;
            let signed = svc.sign_checkpoint(org).await.unwrap().unwrap().size;
            for _ in 0..3 {
                svc.pause(org, team).await.unwrap();
                svc.resume(org, team).await.unwrap();
            }
            let size = {
                let mut c = db.pool().acquire().await.unwrap();
                crate::store::audit_tree::size(&mut c, org).await.unwrap()
            };
            // A leaf in the new rows that completes an inner node.
            let n = (signed..size)
                .find(|n| leaf_index(n + 1) - leaf_index(*n) > 1)
                .unwrap();
            let q = if change == "inner" {
                sqlx::query("UPDATE audit_tree SET hash = $3 WHERE org_id = $1 AND idx = $2")
                    .bind(org.to_string())
                    .bind(i64::try_from(leaf_index(n) + 1).unwrap())
                    .bind(vec![9u8; 32])
            } else if change == "row" {
                sqlx::query("UPDATE audit SET event = $3 WHERE org_id = $1 AND seq = $2")
                    .bind(org.to_string())
                    .bind(i64::try_from(n + 1).unwrap())
                    .bind(r#"{"type":"forged"}"#)
            } else {
                // The same event to serde (the last of a key given twice wins), another to a
                // filter in SQL that reads the first.
                sqlx::query(
                    "UPDATE audit SET event = '{\"type\":\"forged\",' || substr(event, 2) WHERE org_id = $1 AND seq = $2",
                )
                .bind(org.to_string())
                .bind(i64::try_from(n + 1).unwrap())
            };
            q.execute(db.pool()).await.unwrap();
            let e = svc.sign_checkpoint(org).await.unwrap_err();
            assert!(refused(&e), "{change}: {e:?}");
        }
    }

    /// Rows an older byok wrote have no tag: the first start of one that tags rows tags
    /// those no checkpoint covers, once, and signs on. After that, a row without a tag is one
    /// written into the database: refused, and a later start does not tag it, even with the
    /// marker deleted (rows with tags show the upgrade was made).
    #[tokio::test]
    async fn rows_from_before_tags_are_tagged_once_at_the_next_start() {
        let (db, svc, org, team) = logged(None).await;
        let signed = svc.sign_checkpoint(org).await.unwrap().unwrap();
        svc.pause(org, team).await.unwrap();
        for q in [
            "UPDATE audit SET tag = NULL",
            "DELETE FROM server_meta WHERE name = 'audit_row_tags_complete'",
        ] {
            sqlx::query(q).execute(db.pool()).await.unwrap();
        }
        let upgraded = service(&db, 7);
        upgraded.load_log_key("byok.test").await.unwrap();
        let now = upgraded.sign_checkpoint(org).await.unwrap().unwrap();
        assert!(now.size > signed.size);
        upgraded.resume(org, team).await.unwrap();
        // A row's tag cleared, and the marker deleted too: rows with tags show the upgrade
        // was made, and nothing is tagged again.
        for q in [
            "UPDATE audit SET tag = NULL WHERE seq = (SELECT MAX(seq) FROM audit)",
            "DELETE FROM server_meta WHERE name = 'audit_row_tags_complete'",
        ] {
            sqlx::query(q).execute(db.pool()).await.unwrap();
        }
        restarted_refuses(&db, org).await;
    }

    /// The log key's row deleted after it signed: the next start does not make a new key
    /// (which would sign the database as it is now, a rewrite included, under a key every
    /// unpinned verifier takes), but refuses until the row is back.
    #[tokio::test]
    async fn a_deleted_log_key_is_not_replaced_over_its_checkpoints() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = service(&db, 7);
        let first = svc.load_log_key("byok.test").await.unwrap();
        let (org, _) = super::super::test_team(&svc, None).await;
        svc.sign_checkpoint(org).await.unwrap().unwrap();
        let row: (String, Vec<u8>, Vec<u8>, i64) =
            sqlx::query_as("SELECT name, public_key, wrapped, created_at FROM log_key")
                .fetch_one(db.pool())
                .await
                .unwrap();
        sqlx::query("DELETE FROM log_key")
            .execute(db.pool())
            .await
            .unwrap();
        let e = service(&db, 7).load_log_key("byok.test").await.unwrap_err();
        assert!(
            matches!(&e, ServiceError::Store(crate::store::StoreError::Corrupt(m)) if m.contains("restore the log_key row")),
            "{e:?}"
        );
        let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_key")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(keys, 0, "a new key was made");
        sqlx::query(
            "INSERT INTO log_key (name, public_key, wrapped, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&row.0)
        .bind(&row.1)
        .bind(&row.2)
        .bind(row.3)
        .execute(db.pool())
        .await
        .unwrap();
        assert_eq!(
            service(&db, 7).load_log_key("byok.test").await.unwrap(),
            first
        );
    }

    /// Rows rewritten and the tree rebuilt from them, with every checkpoint row deleted, while
    /// the server runs: the process still holds the head it signed, so it signs nothing over
    /// the rewrite. Put back, it signs again.
    #[tokio::test]
    async fn deleting_the_checkpoints_does_not_get_a_rewrite_signed() {
        let (db, svc, org, team) = logged(None).await;
        let signed = svc.sign_checkpoint(org).await.unwrap().unwrap();
        let (first, forged) = first_row_and_forgery(&db, org).await;
        rewrite_first_row(&db, org, &forged).await;
        svc.pause(org, team).await.unwrap();
        let e = svc.sign_checkpoint(org).await.unwrap_err();
        assert!(refused(&e), "{e:?}");
        rewrite_first_row(&db, org, &first).await;
        let again = svc.sign_checkpoint(org).await.unwrap().unwrap();
        assert!(again.size > signed.size);
    }

    /// The same rewrite made while byok was down: the heads kept in the data directory keep
    /// the bar across the restart, and nothing is signed over it. A service without them (a
    /// replica that never saw the org) finds the rewritten row's tag wrong, and signs nothing
    /// either.
    #[tokio::test]
    async fn the_heads_kept_on_disk_keep_the_bar_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let heads = dir.path().join("audit-heads");
        let start = || async {
            let svc = service(&db, 7).with_signed_heads(&heads).unwrap();
            svc.load_log_key("byok.test").await.unwrap();
            svc
        };
        let svc = start().await;
        let (org, team) = super::super::test_team(&svc, None).await;
        svc.sign_checkpoint(org).await.unwrap().unwrap();
        drop(svc);
        let (_, forged) = first_row_and_forgery(&db, org).await;
        rewrite_first_row(&db, org, &forged).await;
        let restarted = start().await;
        restarted.pause(org, team).await.unwrap();
        let e = restarted.sign_checkpoint(org).await.unwrap_err();
        assert!(refused(&e), "{e:?}");
        // A service without the heads (a replica that never saw the org) has only the rows to
        // go by: the rewritten row's tag, made over the leaf byok wrote, does not match the
        // leaf rebuilt from the rewrite, and nothing is signed either (before row tags, it
        // signed the rewrite, and only a witness caught it).
        restarted_refuses(&db, org).await;
    }

    /// A receipt counts every lease still running in what the withdrawal covers, however many
    /// pages of the log they take (two rows a page in unit tests), and no other scope's.
    #[tokio::test]
    async fn a_receipt_counts_the_leases_outstanding_across_pages() {
        use super::Withdrawal;
        use serde_json::json;
        use std::time::Duration;
        let (_, svc, org, team) = logged(Some(Duration::from_secs(60))).await;
        let other = svc.create_scope(org, org, "other").await.unwrap();
        let other = ScopeId::parse_hex(&other.id).unwrap();
        let who = super::super::test_caller(&svc, org).await;
        let mut ends = 0;
        for i in 0..5 {
            let lease = svc.lease(&who, org, team, &format!("r{i}"), None).await;
            ends = ends.max(lease.unwrap().expires_at());
            svc.lease(&who, org, other, "o", None).await.unwrap();
        }
        svc.pause(org, team).await.unwrap();
        let w = Withdrawal::Scope {
            action: "scope_paused",
            scope: team,
        };
        let r = svc.receipt(org, w).await.unwrap().entry;
        assert_eq!(r.event["leases_outstanding"], json!(5), "{}", r.event);
        assert_eq!(r.event["access_ends_at"], json!(ends), "{}", r.event);
    }

    /// With replicas, a receipt's end of access waits for the slowest one: the poll, or the
    /// usage window for one cut off from the database, whichever is longer. Without, it is the
    /// change itself (no lease was issued).
    #[tokio::test]
    async fn a_receipt_counts_the_time_other_replicas_take_to_stop() {
        use super::Withdrawal;
        use serde_json::json;
        use std::time::Duration;
        let (_, svc, org, team) = logged(None).await;
        svc.pause(org, team).await.unwrap();
        let paused = || Withdrawal::Scope {
            action: "scope_paused",
            scope: team,
        };
        let alone = svc.receipt(org, paused()).await.unwrap().entry;
        assert_eq!(alone.event["access_ends_at"], json!(alone.at));
        assert_eq!(alone.event["replicas_stop_by"], json!(null));
        for (poll, lag) in [(500, 60_500), (120_000, 180_000)] {
            svc.has_replicas(Duration::from_millis(poll));
            let r = svc.receipt(org, paused()).await.unwrap().entry;
            assert_eq!(
                r.event["replicas_stop_by"],
                json!(r.at + lag),
                "poll {poll}"
            );
            assert_eq!(r.event["access_ends_at"], json!(r.at + lag), "poll {poll}");
        }
    }
}
