//! Stored data keys, and retiring a scope key version: data keys under the old version move to
//! the newest in batches (one transaction each, every row guarded by its old version), child
//! scope keys move with core's job, and only then is the old version destroyed. A crash at any
//! point resumes on the next start; a row is never lost nor moved twice.

use std::collections::BTreeMap;

use byok_core::{Context, Envelope, KeyId, ScopeId, SecretBytes};
use serde::Serialize;

use super::job_leases::JobTurn;
use super::tokens::Authenticated;
use super::{Extra, Result, Service, ServiceError};
use crate::store::data_keys::{self, DataKeyRow, RetireJob};
use crate::store::{self};

/// Data keys moved per transaction.
const BATCH: i64 = 1000;

/// Whether `org`'s running job is the retirement of `from` (core's part of it: a revoke of the
/// scope cancels it, and with it the host's part).
fn retiring(org: &byok_core::scope::Org, from: KeyId) -> bool {
    matches!(
        org.job().map(|j| &j.kind),
        Some(byok_core::scope::JobKind::RetireVersion(k)) if *k == from
    )
}

/// The most data keys one call creates or reads.
pub const MAX_KEYS_PER_CALL: usize = 1000;

/// The most stored data keys an org keeps, unless configured (`--max-stored-keys`): ten
/// million rows of about 250 bytes, 2.5 GB. Rows stay until their scope is revoked, so without
/// a bound one tenant could fill the vendor's database.
pub const DEFAULT_MAX_STORED_KEYS: u64 = 10_000_000;

/// A stored data key in the clear, for the product.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct StoredKey {
    /// Its id: store it with the data.
    pub id: String,
    /// The 32-byte key, base64: use it, then drop it.
    #[schema(value_type = String)]
    pub key: zeroize::Zeroizing<String>,
    /// Its scope.
    pub scope: String,
    /// The scope key version it is wrapped under.
    pub version: u32,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The context a stored data key is bound to: its own id, so a wrapped key moved to another
/// row does not open.
fn context(id: &str) -> Context {
    Context::from_map(BTreeMap::from([
        ("byok:purpose".to_owned(), "stored-data-key".to_owned()),
        ("byok:key".to_owned(), id.to_owned()),
    ]))
}

/// A key as base64, in a string wiped when dropped (`encode_string` sizes it exactly: no growth).
fn b64(bytes: &[u8]) -> zeroize::Zeroizing<String> {
    use base64ct::{Base64, Encoding};
    zeroize::Zeroizing::new(Base64::encode_string(bytes))
}

/// The refusal of `count` more stored keys to an org that keeps `kept` of at most `max`.
fn over_quota(org: ScopeId, kept: u64, max: u64, count: usize) -> ServiceError {
    ServiceError::Quota(format!(
        "the org keeps {kept} stored data keys and may keep {max}: {count} more would pass \
         that; delete the stored keys it no longer needs (`POST /v1/orgs/{org}/datakeys/delete`, \
         `byok datakey delete`), revoke scopes it no longer needs, or ask the byok operator to \
         raise --max-stored-keys"
    ))
}

impl Service {
    /// Creates `count` data keys under the newest key of `scope`, stores them wrapped, and
    /// returns them in the clear (the only time they leave in the clear unasked).
    pub async fn create_stored_keys(
        &self,
        who: &Authenticated,
        org: ScopeId,
        scope: ScopeId,
        count: usize,
    ) -> Result<Vec<StoredKey>> {
        check_key_count(count)?;
        // Once more on the org as now stored if another replica changed it meanwhile.
        match self.create_stored_once(who, org, scope, count).await {
            Err(ServiceError::Reloading) => self.create_stored_once(who, org, scope, count).await,
            done => done,
        }
    }

    async fn create_stored_once(
        &self,
        who: &Authenticated,
        org: ScopeId,
        scope: ScopeId,
        count: usize,
    ) -> Result<Vec<StoredKey>> {
        let (cell, resolved) = self.current_key(org, scope).await?;
        // An org at its quota is refused before a key is made, a use is marked or the org's
        // writer is taken (which every other write of the org waits for): a client that keeps
        // asking costs one read. The transaction checks again, and that check holds.
        if let Some(max) = self.max_stored_keys {
            let kept = data_keys::stored(self.store.pool(), org).await?;
            if kept.saturating_add(count as u64) > max {
                return Err(over_quota(org, kept, max, count));
            }
        }
        let key = &resolved.key;
        let key_id = key.id();
        let (rows, out) = {
            let mut rng = rand::rng();
            let mut rows = Vec::with_capacity(count);
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let id = ScopeId::random(&mut rng).to_string();
                let (dk, wrapped) = Envelope::<byok_core::DefaultBackend>::generate_data_key(
                    key,
                    &context(&id),
                    &mut rng,
                )?;
                out.push(StoredKey {
                    id: id.clone(),
                    key: b64(dk.expose_secret()),
                    scope: scope.to_string(),
                    version: key_id.version,
                });
                rows.push((id, wrapped));
            }
            (rows, out)
        };
        // Stored while no revoke or retirement can commit (and guarded in the statement too).
        let _admitted = self.admit(&cell, &[key_id], who).await?;
        self.mark_use(org, scope).await?;
        let mut w = self.store.write_org(org).await?;
        // The org's row, which every change takes: a revoke or retirement on another replica
        // (PostgreSQL) commits wholly before this insert, and then moved the version (decided
        // again, on the state now stored), or wholly after it, and then its own delete and its
        // count of what is left under a version see these rows. Without it a retirement could
        // count none, destroy the version, and leave these keys under it, never to open.
        if w.lock_org(org).await? != cell.version() {
            drop(w);
            self.forget_cell(org, &cell);
            return Err(ServiceError::Reloading);
        }
        // After every wait (the gate, the usage mark, the writer): a denial recorded or the
        // root's TTL ended meanwhile keeps these keys from leaving in the clear.
        self.still_usable(&cell, org, [&resolved])?;
        if !data_keys::reserve(&mut w.tx, org, count as u64, self.max_stored_keys).await? {
            let kept = data_keys::stored(&mut *w.tx, org).await?;
            let max = self.max_stored_keys.unwrap_or(u64::MAX);
            return Err(over_quota(org, kept, max, count));
        }
        if !data_keys::insert(&mut w.tx, org, key_id, &rows, store::now_ms()).await? {
            return Err(ServiceError::Scope(
                byok_core::scope::ScopeError::UnknownVersion(key_id),
            ));
        }
        w.commit().await?;
        Ok(out)
    }

    /// How many stored data keys the org keeps.
    pub async fn stored_keys(&self, org: ScopeId) -> Result<u64> {
        Ok(data_keys::stored(self.store.pool(), org).await?)
    }

    /// The most stored data keys an org may keep (`None`: no limit).
    pub fn max_stored_keys(&self) -> Option<u64> {
        self.max_stored_keys
    }

    /// Deletes stored data keys of this org by id, for good: what was sealed under one can
    /// never be opened again (a record's crypto-shredding). Returns how many were deleted; an
    /// id not stored (never, or deleted already, or another org's) is skipped. Whatever state
    /// the keys' scopes are in: deleting gives nothing out. On SQLite the write-ahead log is
    /// scrubbed, as for a revoke.
    pub async fn delete_stored_keys(&self, org: ScopeId, ids: &[String]) -> Result<u64> {
        let ids = stored_ids(ids)?;
        let mut w = self.store.write_org(org).await?;
        // A token revoked while this waited for the writer deletes nothing.
        Self::actor_still_in_force(&mut w).await?;
        // The org's row before its keys' rows, the order a revoke and a retirement batch take
        // them in: on PostgreSQL the other order deadlocks against them across replicas.
        w.lock_org(org).await?;
        let deleted = data_keys::delete_ids(&mut w.tx, org, &ids).await?;
        if !deleted.is_empty() {
            // The ids, not only how many: an auditor asked when one record was shredded finds
            // it in the log (ids are random names, no secret; at most 1 000 per call).
            let event = serde_json::json!({
                "type": "data_keys_deleted", "count": deleted.len(), "ids": deleted,
            });
            store::audit::append(&mut w, org, store::now_ms(), &event).await?;
            w.destroys_keys();
        }
        w.commit().await?;
        if !deleted.is_empty() {
            self.store.scrub().await;
        }
        Ok(deleted.len() as u64)
    }

    /// Opens stored data keys of this org by id; the scope of each must be usable.
    pub async fn get_stored_keys(
        &self,
        who: &Authenticated,
        org: ScopeId,
        ids: &[String],
    ) -> Result<Vec<StoredKey>> {
        let ids = stored_ids(ids)?;
        // Once more if a key may no longer be used after the waits (its retry asks anew).
        match self.get_stored_once(who, org, &ids).await {
            Err(ServiceError::Reloading) => self.get_stored_once(who, org, &ids).await,
            done => done,
        }
    }

    async fn get_stored_once(
        &self,
        who: &Authenticated,
        org: ScopeId,
        ids: &[String],
    ) -> Result<Vec<StoredKey>> {
        let cell = self.current_org(org).await?;
        let mut out = Vec::with_capacity(ids.len());
        let rows: std::collections::HashMap<String, DataKeyRow> =
            data_keys::get_many(self.store.pool(), org, ids)
                .await?
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
        let mut keys = std::collections::HashMap::new();
        for id in ids {
            let row = rows
                .get(id)
                .ok_or_else(|| ServiceError::NotFound(format!("data key {id} not found")))?;
            let k = KeyId::new(row.scope, row.version);
            if let std::collections::hash_map::Entry::Vacant(e) = keys.entry(k) {
                match self.resolve_for_use(&cell, k).await {
                    // The row names a version this copy of the org does not hold (the read
                    // skips rows whose version is gone): a retirement moved the row and
                    // destroyed its version since the read, or another replica rotated and
                    // retired while this copy is behind. Decided again on a fresh copy, with
                    // the rows read again: not `404` for a key that is there.
                    Err(ServiceError::Scope(byok_core::scope::ScopeError::UnknownVersion(_))) => {
                        self.forget_cell(org, &cell);
                        return Err(ServiceError::Reloading);
                    }
                    resolved => e.insert(resolved?),
                };
            }
        }
        let ids_used: Vec<KeyId> = keys.keys().copied().collect();
        let _admitted = self.admit(&cell, &ids_used, who).await?;
        let scopes: std::collections::BTreeSet<ScopeId> =
            ids_used.iter().map(|k| k.scope).collect();
        for scope in scopes {
            self.mark_use(org, scope).await?;
        }
        // After every wait: a denial recorded or a root's TTL ended meanwhile keeps the keys
        // from opening (as a data call's are, in `admitted_key`).
        self.still_usable(&cell, org, keys.values())?;
        for id in ids {
            let row = rows
                .get(id)
                .ok_or_else(|| ServiceError::NotFound(format!("data key {id} not found")))?;
            let key = keys
                .get(&KeyId::new(row.scope, row.version))
                .ok_or_else(|| ServiceError::NotFound(format!("data key {id} not found")))?;
            let dk = Envelope::<byok_core::DefaultBackend>::unwrap_data_key(
                &key.key,
                &context(&row.id),
                &row.wrapped,
            )?;
            out.push(StoredKey {
                id: row.id.clone(),
                key: b64(dk.expose_secret()),
                scope: row.scope.to_string(),
                version: row.version,
            });
        }
        Ok(out)
    }

    /// Starts retiring version `version` of `scope`'s key; [`Self::run_retire`] then moves
    /// everything wrapped under it to the newest version and destroys it.
    pub async fn retire(&self, org: ScopeId, scope: ScopeId, version: u32) -> Result<()> {
        let cell = self.current_org(org).await?;
        if data_keys::job(self.store.pool(), org).await?.is_some() {
            return Err(ServiceError::Scope(
                byok_core::scope::ScopeError::JobRunning,
            ));
        }
        let old = KeyId::new(scope, version);
        match cell.snapshot().scope(scope) {
            None => return Err(ServiceError::NotFound("scope not found".into())),
            // Before the count below, which reads every stored key under the version: a
            // version that is not there costs nothing (core checks again, on its state).
            Some(s) if !s.versions.contains_key(&version) => {
                return Err(ServiceError::Scope(
                    byok_core::scope::ScopeError::UnknownVersion(old),
                ));
            }
            Some(_) => {}
        }
        let total = data_keys::count_under(self.store.pool(), org, scope, version).await?;
        // Core checks the version (exists, not the newest, scope not revoked) and plans the
        // child rewraps; the host's job row is stored in the same transaction, with the target
        // read from the same state: one taken from an earlier snapshot could be the version
        // itself after a rotation raced in, and moving keys from a version to itself never ends.
        self.transition_deciding(org, BTreeMap::new(), |o| {
            let effects = o.plan_retire(old)?;
            let job = RetireJob {
                scope,
                from: version,
                to: o.current_key_id(scope)?.version,
                total,
                done: 0,
            };
            Ok(((), effects, Extra::StartRetire(job)))
        })
        .await?;
        Ok(())
    }

    /// Runs the org's retirement to its end (or resumes it after a crash).
    pub async fn run_retire(&self, org: ScopeId) -> Result<()> {
        if data_keys::job(self.store.pool(), org).await?.is_none() {
            return Ok(());
        }
        let Some(turn) = self.job_turn(org).await? else {
            return Ok(());
        };
        let done = self.run_retire_turn(org, &turn).await;
        turn.end().await;
        done
    }

    /// [`Self::run_retire`] for the holder of the org's job turn.
    async fn run_retire_turn(&self, org: ScopeId, turn: &JobTurn<'_>) -> Result<()> {
        // Read again as the runner: another runner may have finished it meanwhile.
        let Some(mut job) = data_keys::job(self.store.pool(), org).await? else {
            return Ok(());
        };
        if job.to == job.from {
            // A row from before the target was read in the start's own transaction (a rotation
            // raced the start): moving keys from a version to itself never ends. The newest
            // version is the target; no other can be retired while this job runs.
            let cell = self.current_org(org).await?;
            job.to = cell.snapshot().current_key_id(job.scope)?.version;
        }
        let from = KeyId::new(job.scope, job.from);
        let mut moved = job.done;
        // A data key stored under the version after the last batch makes the final check fail;
        // then another pass moves it.
        for pass in 1.. {
            let Some(n) = self.move_data_keys(org, &job, turn).await? else {
                return Ok(());
            };
            moved += n;
            // Child scope keys (core's job), then the version itself, with the job row.
            self.run_job_steps(org, turn).await?;
            if turn.lost()
                || self
                    .current_org(org)
                    .await?
                    .snapshot()
                    .job_waiting_on()
                    .is_some()
            {
                return Ok(());
            }
            let finished = self
                .transition_with(
                    org,
                    BTreeMap::new(),
                    Extra::FinishRetire {
                        moved,
                        scope: job.scope,
                        from: job.from,
                    },
                    |o| Ok(((), o.retire(from)?)),
                )
                .await;
            match finished {
                Ok(()) => break,
                Err(ServiceError::Scope(byok_core::scope::ScopeError::VersionInUse { .. }))
                    if pass < 4 => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(org = %org, key = %from, moved, "key version retired");
        // A key version destroyed: the log gets a checkpoint at once, not at the next interval.
        if let Err(e) = self.sign_checkpoint(org).await {
            tracing::warn!(org = %org, error = ?e, "signing the audit checkpoint after a retirement failed");
        }
        Ok(())
    }

    /// Moves the retirement's data keys to the newest version in batches, one transaction each.
    /// Returns how many moved, or `None` if it waits on a paused scope (a job never works on a
    /// paused scope's keys; job progress says which, and the resume runs it again) or no longer
    /// runs (a revoke of its scope cancelled it: the scope's keys are the sweep's now).
    async fn move_data_keys(
        &self,
        org: ScopeId,
        job: &RetireJob,
        turn: &JobTurn<'_>,
    ) -> Result<Option<u64>> {
        let (from, to) = (
            KeyId::new(job.scope, job.from),
            KeyId::new(job.scope, job.to),
        );
        let mut moved = 0;
        // Batches whose keys could no longer be used after the waits, in a row: resolved anew
        // a few times, then the periodic scan's turn.
        let mut unusable = 0;
        loop {
            if turn.lost() {
                return Ok(None);
            }
            // Storage's state at each batch: a pause through another replica stops the job too.
            let cell = self.current_org(org).await?;
            if let Some(by) = cell.snapshot().job_waiting_on() {
                tracing::info!(org = %org, paused = %by, "retirement waits on a paused scope");
                return Ok(None);
            }
            if !retiring(&cell.snapshot(), from) {
                tracing::info!(org = %org, key = %from, "retirement cancelled (its scope was revoked)");
                return Ok(None);
            }
            let batch =
                data_keys::under(self.store.pool(), org, job.scope, job.from, BATCH).await?;
            if batch.is_empty() {
                return Ok(Some(moved));
            }
            let (fk, tk) = (
                self.resolve_for_use(&cell, from).await?,
                self.resolve_for_use(&cell, to).await?,
            );
            // The keys are used, and the batch committed, holding the org's gate for reading:
            // a pause or revoke (which holds it for writing until its state is published)
            // either published before, and is seen here, or waits for this batch's commit. The
            // check above ran before the keys were resolved, perhaps through a KMS (seconds),
            // which must not hold the gate.
            // A revoke published while this waited for the gate cancelled the job: its keys
            // are not unwrapped (nor their rows, which wait for the sweep, rewritten).
            // Nor are they unwrapped with keys a denial evicted meanwhile, or whose root's TTL
            // ended during the waits: as for a data call, the next turn resolves them anew,
            // and a holder that refuses ends the batch there.
            let gate = cell.gate.read().await;
            if cell.stale.load(std::sync::atomic::Ordering::SeqCst)
                || cell.snapshot().job_waiting_on().is_some()
                || !retiring(&cell.snapshot(), from)
            {
                // The next turn of the loop reads the org again, and says why it stops.
                continue;
            }
            if self.still_usable(&cell, org, [&fk, &tk]).is_err() {
                unusable += 1;
                if unusable > super::jobs::MAX_RELOADS {
                    return Err(ServiceError::Reloading);
                }
                continue;
            }
            unusable = 0;
            let mut rewrapped = Vec::with_capacity(batch.len());
            {
                let mut rng = rand::rng();
                for row in &batch {
                    let ctx = context(&row.id);
                    // Local crypto: a row that does not open now never will (damaged in
                    // storage, or written by someone else). The retirement cannot finish
                    // while it is there; its id says which row to look at.
                    let dk = Envelope::<byok_core::DefaultBackend>::unwrap_data_key(
                        &fk.key,
                        &ctx,
                        &row.wrapped,
                    )
                    .map_err(|_| {
                        ServiceError::Store(store::StoreError::Corrupt(format!(
                            "stored data key {} does not open under {from}: it is damaged; the retirement cannot finish until it is deleted (POST /v1/orgs/{org}/datakeys/delete)",
                            row.id
                        )))
                    })?;
                    let secret = SecretBytes::from_bytes(&mut dk.expose_secret().clone());
                    let wrapped = Envelope::<byok_core::DefaultBackend>::wrap_secret(
                        &tk.key, &ctx, &secret, &mut rng,
                    )?;
                    rewrapped.push((row.id.clone(), wrapped));
                }
            }
            let mut w = self.store.write_org(org).await?;
            // Another replica's pause commits wholly before this batch (and moved the org's
            // version: the batch is dropped, and the next turn reads the org again) or after.
            if w.lock_org(org).await? != cell.version() {
                drop(w);
                self.forget_cell(org, &cell);
                continue;
            }
            let n =
                data_keys::rewrap(&mut w.tx, org, job.scope, &rewrapped, job.from, job.to).await?;
            data_keys::advance_job(&mut w.tx, org, n).await?;
            w.commit().await?;
            drop(gate);
            moved += n;
        }
    }

    /// The org's retirement progress, if one runs.
    pub async fn retire_progress(&self, org: ScopeId) -> Result<Option<RetireJob>> {
        Ok(data_keys::job(self.store.pool(), org).await?)
    }
}

/// A count of stored data keys to make in one call: 1 to [`MAX_KEYS_PER_CALL`]. The API
/// checks it before charging the rate limit for it.
pub fn check_key_count(count: usize) -> Result<()> {
    if !(1..=MAX_KEYS_PER_CALL).contains(&count) {
        return Err(ServiceError::Invalid(format!(
            "count must be 1 to {MAX_KEYS_PER_CALL}"
        )));
    }
    Ok(())
}

/// Stored data key ids as given to a call: 1 to [`MAX_KEYS_PER_CALL`] of 32 hex digits, in
/// lower case (as byok wrote them; hex in either case names the same id). The API checks them
/// before charging the rate limit for them.
pub fn stored_ids(ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() || ids.len() > MAX_KEYS_PER_CALL {
        return Err(ServiceError::Invalid(format!(
            "ids must have 1 to {MAX_KEYS_PER_CALL} entries"
        )));
    }
    if let Some(bad) = ids.iter().find(|id| ScopeId::parse_hex(id).is_none()) {
        let shown: String = bad.chars().take(40).collect();
        return Err(ServiceError::Invalid(format!(
            "data key ids are 32 hex digits; got {shown:?}"
        )));
    }
    Ok(ids.iter().map(|id| id.to_ascii_lowercase()).collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use byok_core::{KeyId, ScopeId};

    use crate::service::{Extra, ServiceError, test_caller, test_service, test_team};
    use crate::store::Database;
    use crate::store::data_keys::RetireJob;

    /// A stored-key call whose key was resolved, and whose use then waits for the store's
    /// writer (the token's first usage mark of the scope) while a denial evicts the org's keys,
    /// does not open or make keys with it: the call is decided again and asks the key holder
    /// anew (here the managed key, which answers; a withdrawn CMK would refuse). As a data
    /// call's, in `admitted_key`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stored_keys_evicted_while_their_use_waits_for_the_writer_are_not_used() {
        use std::sync::atomic::Ordering::SeqCst;
        // On disk: the rows are read while the writer is held, as with any database but
        // SQLite's in memory.
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let svc = std::sync::Arc::new(test_service(&db, 3));
        let (org, team) = test_team(&svc, None).await;
        let warm = test_caller(&svc, org).await;
        let stored = svc.create_stored_keys(&warm, org, team, 1).await.unwrap();
        for get in [false, true] {
            // A new token: its first use of the scope writes a mark, and waits for the writer.
            let who = test_caller(&svc, org).await;
            let (svc2, id) = (svc.clone(), stored[0].id.clone());
            let call = crate::store::audit::with_actor_slot(async move {
                crate::store::audit::set_actor(who.grant.clone());
                if get {
                    svc2.get_stored_keys(&who, org, &[id]).await.map(drop)
                } else {
                    svc2.create_stored_keys(&who, org, team, 1).await.map(drop)
                }
            });
            let before = svc.metrics.root_unwraps.load(SeqCst);
            let writer = svc.store().write().await.unwrap();
            let waiting = tokio::spawn(call);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!waiting.is_finished(), "the use did not wait for its mark");
            svc.cache().evict_org(org);
            drop(writer);
            waiting.await.unwrap().unwrap();
            let unwraps = svc.metrics.root_unwraps.load(SeqCst);
            assert_eq!(unwraps, before + 1, "get {get}: the evicted key was used");
        }
    }

    /// One org's writes queued in bulk (a thousand stored keys each), behind one of its own,
    /// delay another org's pause by that one only, not by all: the writer goes round the orgs
    /// waiting, and not to the org that just wrote while another waits.
    #[tokio::test]
    async fn a_pause_waits_out_one_write_of_a_busy_org_not_all() {
        // On disk: SQLite in memory has one connection, which the held writer would keep from
        // the pause's reads.
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = std::sync::Arc::new(test_service(&db, 3));
        let (a, a_team) = test_team(&s, None).await;
        let (b, b_team) = test_team(&s, None).await;
        let who = std::sync::Arc::new(test_caller(&s, a).await);
        // Warm: the key is cached, so each creation needs the writer only for its rows.
        s.create_stored_keys(&who, a, a_team, 1).await.unwrap();
        let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = s.store().write_org(a).await.unwrap();
        let mut tasks = Vec::new();
        for n in 1..=5 {
            let (mine, who, done) = (s.clone(), who.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                if n == 5 {
                    mine.pause(b, b_team).await.unwrap();
                    done.lock().unwrap().push("b pause");
                } else {
                    mine.create_stored_keys(&who, a, a_team, super::MAX_KEYS_PER_CALL)
                        .await
                        .unwrap();
                    done.lock().unwrap().push("a keys");
                }
            }));
            // Queued in this order.
            while s.store().writes_waiting() < n {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *done.lock().unwrap(),
            ["b pause", "a keys", "a keys", "a keys", "a keys"]
        );
    }

    /// A service on disk in `dir` whose org's team keeps two stored keys under version 1,
    /// rotated to 2, with the retirement of 1 started and both versions cached (a batch needs
    /// no KMS, only the writer for its commit): the service, org, team and the job's row.
    async fn retiring_two_keys(
        dir: &std::path::Path,
    ) -> (
        std::sync::Arc<crate::service::Service>,
        ScopeId,
        ScopeId,
        RetireJob,
    ) {
        let db = Database::open_dir(dir).await.unwrap();
        let s = std::sync::Arc::new(test_service(&db, 3));
        let (org, team) = test_team(&s, None).await;
        let who = test_caller(&s, org).await;
        s.create_stored_keys(&who, org, team, 2).await.unwrap();
        s.rotate(org, team).await.unwrap();
        s.retire(org, team, 1).await.unwrap();
        let cell = s.org(org).await.unwrap();
        for v in [1, 2] {
            s.scope_key(&cell, KeyId::new(team, v)).await.unwrap();
        }
        let job = crate::store::data_keys::job(s.store().pool(), org)
            .await
            .unwrap()
            .unwrap();
        (s, org, team, job)
    }

    /// Runs a batch of `job` while `change` (spawned, queued behind `held`: the writer or the
    /// org's gate) waits: checks that it does wait, lets it go 100 ms into the batch, and
    /// returns what the batch moved once the change is done.
    async fn batch_while_queued<G>(
        (s, org): (&crate::service::Service, ScopeId),
        job: &RetireJob,
        turn: &crate::service::job_leases::JobTurn<'_>,
        change: tokio::task::JoinHandle<crate::service::Result<crate::service::ScopeView>>,
        held: G,
    ) -> Option<u64> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!change.is_finished(), "the change did not wait");
        let (moved, ()) = tokio::join!(s.move_data_keys(org, job, turn), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        });
        change.await.unwrap().unwrap();
        moved.unwrap()
    }

    /// A pause that commits while a retirement's batch works (the batch checked the scope, then
    /// unwrapped and rewrapped its keys and waited for the writer, which the pause took first)
    /// stops it: the batch does not use or store anything after the pause, and the job waits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pause_committed_during_a_retirement_batch_stops_it() {
        use crate::store::data_keys;
        // On disk: the batch reads its rows while the writer is held.
        let dir = tempfile::tempdir().unwrap();
        let (s, org, team, job) = retiring_two_keys(dir.path()).await;
        let turn = s.job_turn(org).await.unwrap().expect("the job's turn");
        let writer = s.store().write().await.unwrap();
        let pause = tokio::spawn({
            let s = s.clone();
            async move { s.pause(org, team).await }
        });
        let moved = batch_while_queued((&s, org), &job, &turn, pause, writer).await;
        assert_eq!(moved, None, "the batch did not stop at the pause");
        let left = data_keys::under(s.store().pool(), org, team, 1, 10)
            .await
            .unwrap();
        assert_eq!(
            left.len(),
            2,
            "keys of the paused scope were rewrapped after the pause"
        );
        turn.end().await;
    }

    /// A revoke of the retired scope published while a retirement's batch waited for the org's
    /// gate (the batch had read its rows and resolved both keys; a call of the org held the
    /// gate, the revoke was queued for it first) cancels the job, and the batch stops there:
    /// it unwraps none of the revoked scope's keys and rewrites none of their rows, which wait
    /// for the sweep under the version they had.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revoke_published_while_a_retirement_batch_waits_stops_it() {
        // On disk: the batch reads its rows while the revoke waits with the writer free.
        let dir = tempfile::tempdir().unwrap();
        let (s, org, team, job) = retiring_two_keys(dir.path()).await;
        let turn = s.job_turn(org).await.unwrap().expect("the job's turn");
        let cell = s.org(org).await.unwrap();
        let call = cell.gate.read().await;
        let revoke = tokio::spawn({
            let s = s.clone();
            async move { s.revoke(org, team, &team.to_string()).await }
        });
        let moved = batch_while_queued((&s, org), &job, &turn, revoke, call).await;
        assert_eq!(moved, None, "the batch went on after the revoke");
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM data_keys WHERE org_id = $1 AND scope_id = $2 AND version = 1",
        )
        .bind(org.to_string())
        .bind(team.to_string())
        .fetch_one(s.store().pool())
        .await
        .unwrap();
        assert_eq!(left, 2, "rows of the revoked scope were rewritten");
        turn.end().await;
    }

    /// A retirement's batch that resolved its keys and then waited for the org's gate, while
    /// a denial evicted the org's keys, does not unwrap the stored keys with them: it resolves
    /// them anew (here from the managed key, which answers; a withdrawn CMK would refuse and
    /// end the batch), as a data call does. Before, the batch used the evicted keys.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retirement_batch_does_not_use_keys_evicted_while_it_waited() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let (s, org, _, job) = retiring_two_keys(dir.path()).await;
        let turn = s.job_turn(org).await.unwrap().expect("the job's turn");
        let cell = s.org(org).await.unwrap();
        let before = s.metrics.root_unwraps.load(SeqCst);
        let (moved, ()) = {
            let gate = cell.gate.write().await;
            tokio::join!(s.move_data_keys(org, &job, &turn), async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.cache().evict_org(org);
                drop(gate);
            })
        };
        assert_eq!(moved.unwrap(), Some(2));
        assert_eq!(
            s.metrics.root_unwraps.load(SeqCst),
            before + 1,
            "the batch used keys evicted while it waited"
        );
        turn.end().await;
    }

    /// A retirement's rewrap of a child scope's key that resolved the parent's keys and then
    /// waited for the org's turn, while a denial evicted the org's keys, resolves them anew
    /// before the child's key is unwrapped: as a data call does. Before, it used the evicted
    /// ones.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_child_rewrap_does_not_use_keys_evicted_while_it_waited() {
        use std::sync::atomic::Ordering::SeqCst;
        let s = test_service(&Database::open("sqlite::memory:").await.unwrap(), 3);
        let (org, team) = test_team(&s, None).await;
        // A child: the retirement rewraps its key.
        s.create_scope(org, team, "thread").await.unwrap();
        s.rotate(org, team).await.unwrap();
        s.retire(org, team, 1).await.unwrap();
        let cell = s.org(org).await.unwrap();
        for v in [1, 2] {
            s.scope_key(&cell, KeyId::new(team, v)).await.unwrap();
        }
        let turn = s.job_turn(org).await.unwrap().expect("the job's turn");
        let before = s.metrics.root_unwraps.load(SeqCst);
        let (done, ()) = {
            let held = cell.turn.lock().await;
            tokio::join!(s.run_job_steps(org, &turn), async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.cache().evict_org(org);
                drop(held);
            })
        };
        done.unwrap();
        assert_eq!(
            s.metrics.root_unwraps.load(SeqCst),
            before + 1,
            "the rewrap used keys evicted while it waited"
        );
        let snap = s.org(org).await.unwrap().snapshot();
        let (done, total) = snap.job().expect("the retirement").progress();
        assert_eq!((done, total), (1, 1), "the child's key was not rewrapped");
        turn.end().await;
    }

    /// A stored key damaged in storage stops the retirement with its id (which row to look
    /// at, and how to let the retirement finish), not an unnamed "does not open".
    #[tokio::test]
    async fn a_damaged_stored_key_names_itself_in_the_retirements_error() {
        let dir = tempfile::tempdir().unwrap();
        let (s, org, team, job) = retiring_two_keys(dir.path()).await;
        let rows = crate::store::data_keys::under(s.store().pool(), org, team, 1, 10)
            .await
            .unwrap();
        let damaged = &rows[0];
        let mut wrapped = damaged.wrapped.clone();
        let last = wrapped.len() - 1;
        wrapped[last] ^= 1;
        sqlx::query("UPDATE data_keys SET wrapped = $1 WHERE id = $2")
            .bind(wrapped)
            .bind(&damaged.id)
            .execute(s.store().pool())
            .await
            .unwrap();
        let turn = s.job_turn(org).await.unwrap().expect("the job's turn");
        let e = s.move_data_keys(org, &job, &turn).await.unwrap_err();
        assert!(
            matches!(&e, ServiceError::Store(crate::store::StoreError::Corrupt(m)) if m.contains(&damaged.id)),
            "{e:?}"
        );
        turn.end().await;
    }

    /// A data key id is hex: in upper case it names the same key (paths take either case too).
    #[tokio::test]
    async fn data_key_ids_are_read_in_either_case() {
        let s = test_service(&Database::open("sqlite::memory:").await.unwrap(), 3);
        let (org, team) = test_team(&s, None).await;
        let who = test_caller(&s, org).await;
        let stored = s.create_stored_keys(&who, org, team, 1).await.unwrap();
        let upper = stored[0].id.to_ascii_uppercase();
        assert_ne!(upper, stored[0].id);
        let got = s.get_stored_keys(&who, org, &[upper]).await.unwrap();
        assert_eq!(got[0].key, stored[0].key);
    }

    /// A retirement whose job row names the retired version as its own target (a rotation
    /// raced its start while the target was read from an earlier snapshot) still ends: the
    /// runner takes the newest version, and the stored keys end up under it, opening as before.
    #[tokio::test]
    async fn a_retirement_aimed_at_its_own_version_still_ends() {
        let s = test_service(&Database::open("sqlite::memory:").await.unwrap(), 3);
        let (org, team) = test_team(&s, None).await;
        let who = test_caller(&s, org).await;
        let stored = s.create_stored_keys(&who, org, team, 2).await.unwrap();
        s.rotate(org, team).await.unwrap();
        let job = RetireJob {
            scope: team,
            from: 1,
            to: 1,
            total: 2,
            done: 0,
        };
        s.transition_with(org, BTreeMap::new(), Extra::StartRetire(job), |o| {
            Ok(((), o.plan_retire(KeyId::new(team, 1))?))
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), s.run_retire(org))
            .await
            .expect("the retirement never ended")
            .unwrap();
        let ids: Vec<String> = stored.iter().map(|k| k.id.clone()).collect();
        let again = s.get_stored_keys(&who, org, &ids).await.unwrap();
        for (before, after) in stored.iter().zip(&again) {
            assert_eq!((after.version, &after.key), (2, &before.key));
        }
    }

    /// Two replicas, nothing telling one of the other's changes: stored keys read through the
    /// one that is behind a rotation and a retirement (their rows now under a version its copy
    /// does not know) open as before, on the org loaded again, instead of answering `404`.
    ///
    /// A read checks the org's stored version first, so this copy is behind only if the other
    /// replica committed between that check and the rows' read: the test stands for that
    /// window by putting the stored version back where this replica read it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_behind_a_retirement_still_opens_the_moved_keys() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let a = test_service(&Database::open(&url).await.unwrap(), 4);
        let b = test_service(&Database::open(&url).await.unwrap(), 4);
        let (org, team) = test_team(&a, None).await;
        let who = test_caller(&b, org).await;
        let stored = b.create_stored_keys(&who, org, team, 2).await.unwrap();
        let seen = b.org(org).await.unwrap().version();
        a.rotate(org, team).await.unwrap();
        a.retire(org, team, 1).await.unwrap();
        a.run_retire(org).await.unwrap();
        sqlx::query("UPDATE orgs SET version = $1 WHERE id = $2")
            .bind(seen)
            .bind(org.to_string())
            .execute(b.store().pool())
            .await
            .unwrap();
        let ids: Vec<String> = stored.iter().map(|k| k.id.clone()).collect();
        let again = b.get_stored_keys(&who, org, &ids).await.unwrap();
        for (before, after) in stored.iter().zip(&again) {
            assert_eq!((after.version, &after.key), (2, &before.key));
        }
    }

    /// Two replicas, nothing telling one of the other's changes: stored data keys asked of the
    /// one that has not heard of a pause are not created on the state before it; the call is
    /// decided again on the org as stored, and refused as paused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_that_missed_a_pause_stores_no_data_key() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let a = test_service(&Database::open(&url).await.unwrap(), 4);
        let b = test_service(&Database::open(&url).await.unwrap(), 4);
        let (org, team) = test_team(&a, None).await;
        let who = test_caller(&b, org).await;
        b.create_stored_keys(&who, org, team, 1)
            .await
            .expect("b stores a key");
        a.pause(org, team).await.unwrap();
        let answer = b.create_stored_keys(&who, org, team, 1).await.map(drop);
        assert!(
            matches!(
                answer,
                Err(ServiceError::Scope(
                    byok_core::scope::ScopeError::Paused { .. }
                ))
            ),
            "{answer:?}"
        );
    }

    /// On PostgreSQL, deleting stored keys takes the org's row before the keys' rows, as a
    /// revoke (or a retirement batch) does on another replica: held here by a transaction that
    /// took the org's row and then deletes the same keys, the delete waits instead of
    /// deadlocking with it (one of the two was given up, `40P01`, before).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_stored_keys_takes_the_org_before_the_keys() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let db = Database::open(&url).await.unwrap();
        let a = std::sync::Arc::new(test_service(&db, 4));
        let (org, team) = test_team(&a, None).await;
        let who = test_caller(&a, org).await;
        let ids: Vec<String> = a
            .create_stored_keys(&who, org, team, 3)
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect();
        // Another replica's revoke: the org's row first, then the keys'.
        let other = Database::open(&url).await.unwrap();
        let mut revoke = other.pool().begin().await.unwrap();
        crate::store::org_rows::lock(&mut revoke, org)
            .await
            .unwrap();
        let delete = tokio::spawn({
            let (a, ids) = (a.clone(), ids.clone());
            async move { a.delete_stored_keys(org, &ids).await }
        });
        crate::store::test_wait_for_lock_waiter(other.pool()).await;
        let sql = "DELETE FROM data_keys WHERE id = $1";
        for id in &ids {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *revoke)
                .await
                .expect("the revoke's delete is not given up");
        }
        revoke.commit().await.unwrap();
        assert_eq!(delete.await.unwrap().expect("no deadlock"), 0);
    }
}
