//! Key health: what byok learns about a customer key from its KMS. Every KMS call is audited
//! (a validation's as one row of its calls), but for the periodic check's describes, whose
//! outcome is the key's recorded health;
//! an answer that says the customer withdrew the key (disabled, deleted, access removed) evicts
//! the org's cached keys at once and is recorded as the key's health; the periodic check
//! describes each enabled key and records the same. A recorded denial (whichever call met
//! it) is cleared only by an unwrap that succeeds, never by a describe's word or a wrap's.

use byok_core::ScopeId;
use byok_core::kms::KmsError;
use byok_core::scope::{HolderId, HolderStatus, Org};
use serde_json::json;

use super::cache::Evictions;
use super::call_rows::{PendingCall, PendingValidation};
use super::grace::GraceEnd;
use super::org_cell::Unpublished;
use super::{OrgCell, Result, Service};
use crate::store::{self, audit, keys};

/// Whether a KMS error means the customer withdrew (the key is disabled, gone or pending
/// deletion, byok's access was removed, or the key no longer opens the copy), as opposed to an
/// outage or throttling: core's classification ([`byok_core::grace::Failure`]).
pub fn is_denial(e: &KmsError) -> bool {
    e.kind.is_denial()
}

/// The stable name of a KMS error class (key health states and audit events use it).
pub fn kind_code(e: &KmsError) -> &'static str {
    e.kind.as_str()
}

/// A KMS call as the audit log records it: `op`, the requests sent for it (retries included:
/// the customer's log shows one event for each that reached its KMS), and how it failed
/// (core's class and the provider's own code), if it did.
pub(super) fn call_json(op: &str, attempts: u32, err: Option<&KmsError>) -> serde_json::Value {
    with_outcome(json!({ "op": op, "attempts": attempts }), err)
}

/// `row` with how a call to a cloud ended: `ok`, and if it failed, core's class and the
/// provider's own code.
fn with_outcome(mut row: serde_json::Value, err: Option<&KmsError>) -> serde_json::Value {
    row["ok"] = json!(err.is_none());
    if let Some(e) = err {
        row["error"] = json!(kind_code(e));
        row["provider_code"] = json!(e.code);
    }
    row
}

impl Service {
    /// Stores a health check of key `n` that is not a denial (denials go through
    /// [`Self::withdrawn`]) and shows it in the org's key list; over a recorded denial, only
    /// `ok` (a call the denial refused, made again and answered) is stored.
    ///
    /// If the key's recorded health was a denial, the customer gave access back: the org's
    /// version moves too, so that every replica's copy shows it. Otherwise a replica still
    /// showing the old denial would take the key's next denial (a second disable) for one
    /// already recorded, and not move the version: the other replicas would keep serving their
    /// cached keys to the end of their TTL.
    pub(super) async fn record_health(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        n: u32,
        health: String,
        detail: Option<String>,
    ) -> Result<()> {
        self.record_health_unless_evicted(cell, org, n, health, detail, None)
            .await
    }

    /// [`Self::record_health`], written only if the org's keys were not evicted whole since
    /// `since` (when given) and this replica's copy of the org is current, as checked holding
    /// the org's row: a success sent before a denial that was recorded (or is being recorded
    /// here: it evicts before it waits for the store) must not overwrite it. Here the denial
    /// evicts first and writes after; on another replica it moves the org's version when it
    /// writes. Whichever of the two writes goes first, the denial is what stays.
    pub(super) async fn record_health_unless_evicted(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        n: u32,
        health: String,
        detail: Option<String>,
        since: Option<Evictions>,
    ) -> Result<()> {
        // A failure that is no denial (an outage, a validation step that could not run) says
        // nothing of the access the customer took away: a recorded denial stands until a call
        // of the kind it refused succeeds. Overwritten, the next check's describe alone would
        // show the key healthy while every unwrap is refused, and restart the jobs it stopped.
        if health != "ok" && Self::recorded_denial(cell, n) {
            return Ok(());
        }
        let at = store::now_ms();
        let mut w = self.store.write_org(org).await?;
        // The org's row before the key's, the order `withdrawn` takes them in (its audit row
        // first): on PostgreSQL the other order deadlocks against it across replicas once the
        // version below moves too.
        let version = w.lock_org(org).await?;
        // Another replica's denial evicts there, not here: it shows as the org's row moved
        // past this replica's copy, which is then behind (as `withdrawn` checks). The success
        // is then not recorded; the next check or call records what holds.
        if since.is_some_and(|s| self.cache.evicted_since(org, s) || version != cell.version()) {
            return Ok(());
        }
        keys::set_health(&mut w.tx, org, n, &health, detail.as_deref(), at).await?;
        let mut unpublished = None;
        if Self::recorded_denial(cell, n) {
            unpublished = Some(self.announce(&mut w, org, cell).await?);
        }
        w.commit().await?;
        if let Some(u) = unpublished.as_mut() {
            u.disarm();
            // A job stopped by the denial may run at the next tick.
            self.job_backoff.clear(org);
        }
        Self::show_health(cell, n, health, detail, at);
        Ok(())
    }

    /// Whether key `n`'s health, as this replica holds it, is a denial.
    fn recorded_denial(cell: &OrgCell, n: u32) -> bool {
        cell.cmks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n)
            .and_then(|r| r.health.as_deref())
            .and_then(byok_core::kms::KmsErrorKind::parse)
            .is_some_and(|k| k.is_denial())
    }

    /// Shows a stored health check of key `n` in the org's key list (in memory).
    fn show_health(cell: &OrgCell, n: u32, health: String, detail: Option<String>, at: i64) {
        if let Some(r) = cell
            .cmks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&n)
        {
            r.health = Some(health);
            r.health_detail = detail;
            r.health_at = Some(at);
        }
    }

    /// A call on key `n` of `org` about to be sent: its row is written when it is answered
    /// ([`Self::kms_answered`]), or queued if it is dropped first (`call_rows.rs`).
    pub(super) fn kms_call(
        &self,
        org: ScopeId,
        n: u32,
        key: &super::kms::KeyAccess,
        op: &'static str,
    ) -> PendingCall<'_> {
        PendingCall::new(&self.unwritten, org, n, key, op)
    }

    /// A validation of `key` (as given, or `cmk:N`) for `org` about to start: its row is
    /// written when it ends, or queued if it is dropped first.
    pub(super) fn key_validation(
        &self,
        org: ScopeId,
        key: String,
        provider: &'static str,
    ) -> PendingValidation<'_> {
        PendingValidation::new(&self.unwritten, org, key, provider)
    }

    /// Appends `event` to the org's audit log in a transaction of its own, after the rows of
    /// KMS calls whose request was dropped before they were written (`call_rows.rs`) and a row
    /// for each credential exchange made for the org since the last such write (see
    /// [`Self::audit_exchanges`]).
    pub(super) async fn audit_event(&self, org: ScopeId, event: &serde_json::Value) -> Result<()> {
        self.audit_rows(org, Some(event)).await
    }

    /// Appends a row for each credential exchange made for the org since the last such write
    /// (`credential_exchange`): the roles byok assumed and the tokens it obtained in the
    /// customer's cloud, which logs them too. Written with the KMS call they were made for,
    /// and after the health check's describes, which are not rows themselves.
    pub(super) async fn audit_exchanges(&self, org: ScopeId) -> Result<()> {
        self.audit_rows(org, None).await
    }

    /// Writes the rows held for every org (calls dropped before their row was written,
    /// credential exchanges) that no write of the org's log has taken yet; returns for how
    /// many orgs. One org's failure leaves its rows held and the others written.
    pub async fn write_held_rows(&self) -> usize {
        let mut orgs = self.unwritten.orgs();
        orgs.extend(self.kms.orgs_with_exchanges());
        orgs.sort_unstable();
        orgs.dedup();
        let mut written = 0;
        for org in orgs {
            match self.audit_exchanges(org).await {
                Ok(()) => written += 1,
                Err(e) => {
                    tracing::warn!(org = %org, error = ?e, "held audit rows were not written");
                }
            }
        }
        written
    }

    async fn audit_rows(&self, org: ScopeId, event: Option<&serde_json::Value>) -> Result<()> {
        // Held by a guard until committed: a write that fails, or a caller dropped while it
        // waits for the writer (a request's deadline, a job cut at shutdown), gives the rows
        // back for the next write, not to nobody.
        let taken = TakenRows {
            service: self,
            org,
            queued: self.unwritten.take(org),
            exchanges: self.kms.take_exchanges(org),
            committed: false,
        };
        if taken.queued.is_empty() && taken.exchanges.is_empty() && event.is_none() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = taken
            .exchanges
            .iter()
            .map(|x| {
                let mut row = with_outcome(
                    json!({ "type": "credential_exchange", "provider": x.provider,
                        "attempts": x.attempts }),
                    x.error.as_ref(),
                );
                if let Some(principal) = &x.principal {
                    row["principal"] = json!(principal);
                    row["trust"] = json!(x.trust.as_str());
                }
                row
            })
            .collect();
        let mut taken = taken;
        let mut w = self.store.write_org(org).await?;
        let at = store::now_ms();
        for row in taken.queued.iter().chain(&rows).chain(event) {
            audit::append(&mut w, org, at, row).await?;
        }
        w.commit().await?;
        taken.committed = true;
        Ok(())
    }

    /// After a KMS call on key `n`, sent when the org's eviction count was `sent`: audits it,
    /// and if the KMS said the key is gone or byok is denied (disabled, not found, pending
    /// deletion, access denied, invalid ciphertext), drops every cached key of the org at once
    /// (before the audit write, which may wait for the store's writer), not at TTL expiry, ends
    /// any outage grace, and records the key's health.
    pub(super) async fn kms_answered(
        &self,
        cell: &OrgCell,
        mut call: PendingCall<'_>,
        err: Option<&KmsError>,
        sent: Evictions,
    ) -> Result<()> {
        let (org, n, unwraps) = (call.org, call.n, call.unwraps());
        call.answered(err);
        if err.is_some_and(is_denial) {
            self.cache.evict_org(org);
        }
        // Armed until committed: a request dropped while this waits for the writer leaves
        // the row queued, not lost.
        self.audit_event(org, &call.row()).await?;
        call.written();
        match err {
            Some(e) if is_denial(e) => {
                self.withdrawn(cell, org, n, kind_code(e), Some(e.to_string()))
                    .await?;
            }
            Some(_) => {}
            // Only an unwrap's success says access is back: a customer who took away
            // `Decrypt` alone still lets byok wrap, and a wrap's success (a root wrapped again
            // on enable, after a rotation, by a job) would clear the denial while every unwrap
            // fails, and the periodic check would stop confirming it.
            None if unwraps => self.access_back(cell, org, n, sent).await?,
            None => {}
        }
        Ok(())
    }

    /// A call on key `n`, sent when the org's eviction count was `sent`, succeeded. If its
    /// recorded health is a denial, the customer gave access back: recorded as `ok`
    /// ([`Self::record_health`], which moves the org's version). Not if the org's keys were
    /// evicted since the call was sent: the denial may have been recorded after this call's
    /// answer was given (the key disabled just after), and must stand. A success with no
    /// denial recorded writes nothing: this runs after every KMS call.
    async fn access_back(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        n: u32,
        sent: Evictions,
    ) -> Result<()> {
        if !Self::recorded_denial(cell, n) || self.cache.evicted_since(org, sent) {
            return Ok(());
        }
        self.record_health_unless_evicted(cell, org, n, "ok".into(), None, Some(sent))
            .await
    }

    /// The customer withdrew key `n` (as a KMS answer says): evict the org's keys, audited,
    /// record the key's health (`why`, with `detail`), and end any outage grace (nothing is left
    /// to serve, and nothing may be).
    ///
    /// Other replicas hold the org's keys too. The first time a replica records this denial
    /// for the key, the org's version moves in the same transaction, so every replica drops
    /// the org's keys as well (by notification, at worst by the poll) instead of serving them
    /// to the end of its own TTL. Later denials of the same kind find it recorded and do not
    /// move it again: a denied org's every request does not reload it everywhere.
    pub(super) async fn withdrawn(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        n: u32,
        why: &str,
        detail: Option<String>,
    ) -> Result<()> {
        self.cache.evict_org(org);
        let known = cell
            .cmks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&n)
            .is_some_and(|r| r.health.as_deref() == Some(why));
        let at = store::now_ms();
        let mut w = self.store.write_org(org).await?;
        audit::append(
            &mut w,
            org,
            at,
            &json!({ "type": "cache_evicted", "key": format!("cmk:{n}"), "reason": why }),
        )
        .await?;
        keys::set_health(&mut w.tx, org, n, why, detail.as_deref(), at).await?;
        // `known` is this replica's copy: one behind storage (another replica recorded the key
        // working again since) would keep the others from hearing of this denial. The org's
        // row is held (the audit append took it): its version says whether the copy is current.
        let current = w.lock_org(org).await? == cell.version();
        let mut unpublished = None;
        if !known || !current {
            unpublished = Some(self.announce(&mut w, org, cell).await?);
        }
        w.commit().await?;
        if let Some(u) = unpublished.as_mut() {
            u.disarm();
        }
        Self::show_health(cell, n, why.to_owned(), detail, at);
        self.end_grace(cell, org, GraceEnd::Denied).await?;
        Ok(())
    }

    /// Moves the org's version in `w`, so that every replica reloads the org and sees the key
    /// health written there. This replica's own copy stays current if it was (its state did
    /// not change), and is reloaded if another replica had moved the org meanwhile, or if the
    /// commit does not happen (the guard returned, until disarmed after the commit).
    async fn announce<'a>(
        &'a self,
        w: &mut store::WriteTx,
        org: ScopeId,
        cell: &'a OrgCell,
    ) -> Result<Unpublished<'a>> {
        let unpublished = Unpublished::arm(self, org, cell);
        let v = w.bump_org(org).await?;
        let _ = cell.version.compare_exchange(
            v.from,
            v.to,
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
        );
        Ok(unpublished)
    }

    /// Describes every attached, enabled key of every org and records its health.
    /// One org's failure (its rows unreadable, its KMS settings gone) is logged and the rest
    /// are still checked: a withdrawal in a later org must not wait for it; the first failure is
    /// returned once all were tried.
    pub async fn check_health(&self) -> Result<()> {
        let mut failed = None;
        for org in store::org_rows::org_ids(self.store.pool()).await? {
            if let Err(e) = self.check_health_of(org).await {
                tracing::warn!(org = %org, error = ?e, "key health check of an org failed");
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Describes the org's attached, enabled keys and records their health.
    pub async fn check_health_of(&self, org: ScopeId) -> Result<()> {
        {
            let cell = self.current_org(org).await?;
            self.expire_grace(&cell, org).await?;
            let snap: std::sync::Arc<Org> = cell.snapshot();
            let enabled: Vec<u32> = snap
                .holders()
                .filter(|h| h.status != HolderStatus::Disabled)
                .filter_map(|h| match h.id {
                    HolderId::Cmk(n) => Some(n),
                    HolderId::Managed => None,
                })
                .collect();
            // One key's failure (its settings unreadable, a rotated key's rewrap refused) is
            // returned once every key was checked: a later key's withdrawal must not wait.
            let mut failed = None;
            for n in enabled {
                let access = match self.access(&cell, org, n).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(org = %org, key = n, error = ?e, "a key's health could not be checked");
                        failed.get_or_insert(e);
                        continue;
                    }
                };
                let described = self.kms.describe(&access).await;
                // The describe is no row, but a credential exchange it made is.
                self.audit_exchanges(org).await?;
                // A key its KMS describes as unusable (disabled, pending deletion, destroyed)
                // is a withdrawal, like a refused call.
                let (denied, health, detail) = match described {
                    Ok(state) => match state.unusable {
                        None => {
                            if let Err(e) = self
                                .refresh_if_rotated(&cell, org, n, &access, &state)
                                .await
                            {
                                tracing::warn!(org = %org, key = n, error = ?e, "a rotated key's copies could not be made again");
                                failed.get_or_insert(e);
                            }
                            if self.confirmed_by_unwrap(&cell, org, n, &access).await? {
                                continue;
                            }
                            (false, "ok".to_owned(), None)
                        }
                        Some(u) => (
                            u.kind.is_denial(),
                            u.kind.as_str().to_owned(),
                            Some(format!("{}: {}", state.key, u.problem)),
                        ),
                    },
                    Err(e) => (is_denial(&e), kind_code(&e).into(), Some(e.to_string())),
                };
                if denied {
                    // The customer withdrew: nothing cached outlives the answer.
                    self.withdrawn(&cell, org, n, &health, detail).await?;
                } else {
                    self.record_health(&cell, org, n, health, detail).await?;
                }
            }
            failed.map_or(Ok(()), Err)
        }
    }

    /// After a describe that found key `n` usable, while its recorded health is a denial: a
    /// describe is not the call that was refused. A customer may take away only Decrypt (a
    /// grant or policy statement removed) and leave DescribeKey; clearing the denial on the
    /// describe's word would show the key healthy while every unwrap fails, and would flap
    /// between the two at each check. So the denial is confirmed, or cleared, by unwrapping the
    /// key's copy of the newest root version, an audited call whose outcome
    /// [`Self::kms_answered`] records as any other's. The root it gives is not cached.
    ///
    /// Returns whether the recorded health stands as this call left it: the call was made (its
    /// outcome is then recorded), or the org is paused and the denial is kept without one. With
    /// no denial recorded, or no copy to unwrap, nothing is called: the steady state costs no
    /// more than the describe.
    async fn confirmed_by_unwrap(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        n: u32,
        access: &crate::service::kms::KeyAccess,
    ) -> Result<bool> {
        if !Self::recorded_denial(cell, n) {
            return Ok(false);
        }
        let snap = cell.snapshot();
        if snap.check_key_work().is_err() {
            // Paused: no root is unwrapped, so the denial stands until a check after the
            // resume (which unwraps then). Clearing it on the describe's word is the flap above.
            return Ok(true);
        }
        let Some((v, copy)) = snap
            .holders()
            .find(|h| h.id == HolderId::Cmk(n))
            .and_then(|h| h.copies.last_key_value())
        else {
            return Ok(false);
        };
        let sent = self.cache.evictions(org);
        let call = self.kms_call(org, n, access, "Decrypt");
        let back = self.kms.unwrap_counted(access, copy, *v, &call.sent).await;
        self.kms_answered(cell, call, back.result.as_ref().err(), sent)
            .await?;
        Ok(true)
    }

    /// After a describe: if the customer rotated key `n` (its current version is not the one
    /// that made some of the org's copies), wraps every live root version again under the
    /// current version, checks that each new copy opens to its root, and records them in one
    /// transition ([`Org::refresh_holder`]), so that the customer can disable the old version.
    /// A running job defers it to the next check.
    async fn refresh_if_rotated(
        &self,
        cell: &OrgCell,
        org: ScopeId,
        n: u32,
        access: &crate::service::kms::KeyAccess,
        state: &byok_core::kms::provider::KeyState,
    ) -> Result<()> {
        use subtle::ConstantTimeEq;
        let snap = cell.snapshot();
        if snap.check_key_work().is_err() {
            // Paused: the roots stay in their holders. A check after the resume refreshes.
            return Ok(());
        }
        let holder = HolderId::Cmk(n);
        let behind = snap.holders().find(|h| h.id == holder).is_some_and(|h| {
            byok_core::kms::provider::copies_behind(
                access.provider,
                state,
                h.copies.values().map(Vec::as_slice),
            )
        });
        if !behind || snap.job().is_some() {
            return Ok(());
        }
        let mut copies = Vec::new();
        for v in snap.root_versions() {
            let root = self.scope_key(cell, byok_core::KeyId::new(org, v)).await?;
            let secret = root.duplicate_secret();
            let sent = self.cache.evictions(org);
            let call = self.kms_call(org, n, access, "Encrypt");
            let wrapped = self.kms.wrap_counted(access, &secret, v, &call.sent).await;
            self.kms_answered(cell, call, wrapped.result.as_ref().err(), sent)
                .await?;
            let wrapped = wrapped.result?;
            let sent = self.cache.evictions(org);
            let call = self.kms_call(org, n, access, "Decrypt");
            let back = self
                .kms
                .unwrap_counted(access, &wrapped, v, &call.sent)
                .await;
            self.kms_answered(cell, call, back.result.as_ref().err(), sent)
                .await?;
            if !bool::from(back.result?.ct_eq(&secret)) {
                return Err(super::ServiceError::Invalid(format!(
                    "cmk:{n}: a copy made by the key's current version does not open to the root; the old copies are kept"
                )));
            }
            copies.push((v, wrapped));
        }
        let refreshed = self
            .transition(org, std::collections::BTreeMap::new(), |o| {
                let mut effects = o.refresh_holder(holder)?;
                for (v, c) in copies {
                    effects.extend(o.record_root_copy(holder, v, c)?);
                }
                Ok(((), effects))
            })
            .await;
        match refreshed {
            // A job started meanwhile: the next check refreshes.
            Err(super::ServiceError::Scope(byok_core::scope::ScopeError::JobRunning)) => Ok(()),
            other => other,
        }
    }
}

/// Audit rows taken from memory to be written ([`Service::audit_rows`]): given back when
/// dropped uncommitted.
struct TakenRows<'a> {
    service: &'a Service,
    org: ScopeId,
    queued: Vec<serde_json::Value>,
    exchanges: Vec<crate::credentials::Exchange>,
    committed: bool,
}

impl Drop for TakenRows<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if !self.queued.is_empty() {
            self.service
                .unwritten
                .give_back(self.org, std::mem::take(&mut self.queued));
        }
        if !self.exchanges.is_empty() {
            self.service
                .kms
                .return_exchanges(std::mem::take(&mut self.exchanges));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use byok_core::scope::HolderId;

    use crate::service::ServiceError;
    use crate::service::grace::GraceEnd;
    use crate::store::{Database, StoreError};

    /// Rows taken from memory to be written go back when the write is dropped while it waits
    /// for the writer (a request's deadline, a job cut at shutdown): the next write takes
    /// them. Before, they went with the dropped write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_rows_survive_a_write_dropped_while_it_waits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let svc = crate::service::test_service(&db, 3);
        let (org, _) = svc.create_org("o", None, None, None).await.unwrap();
        let row = serde_json::json!({ "type": "kms_call", "op": "Decrypt", "key": "cmk:1" });
        svc.unwritten.push(org, row.clone());
        let held = db.write().await.unwrap();
        {
            let mut write = std::pin::pin!(svc.audit_exchanges(org));
            while db.writes_waiting() < 1 {
                let polled =
                    tokio::time::timeout(std::time::Duration::from_millis(10), &mut write).await;
                assert!(polled.is_err(), "written while the writer was held");
            }
        }
        assert_eq!(svc.unwritten.orgs(), [org], "the rows went with the write");
        drop(held);
        assert_eq!(svc.write_held_rows().await, 1);
        assert!(svc.unwritten.orgs().is_empty());
        let log = crate::store::audit::read(db.pool(), org, 0, 1000, &Default::default())
            .await
            .unwrap();
        assert!(log.iter().any(|r| r.event == row), "{} rows", log.len());
    }

    /// An org of `svc` with customer key `cmk:1`, whose last health, stored and in the org's
    /// copy here, is a denial (`access_denied`).
    async fn org_with_a_denied_key(
        db: &Database,
        svc: &super::super::Service,
    ) -> (byok_core::ScopeId, Arc<super::super::OrgCell>) {
        org_with_a_key(db, svc, "access_denied").await
    }

    /// An org of `svc` with customer key `cmk:1`, whose last health, stored and in the org's
    /// copy here, is `health`.
    async fn org_with_a_key(
        db: &Database,
        svc: &super::super::Service,
        health: &str,
    ) -> (byok_core::ScopeId, Arc<super::super::OrgCell>) {
        let (org, _) = svc.create_org("o", None, None, None).await.unwrap();
        let row = crate::store::keys::CmkRow {
            n: 1,
            name: "k".into(),
            provider: "aws".into(),
            key: "arn:aws:kms:eu-west-1:111122223333:key/k".into(),
            pasted: None,
            role: None,
            role_trust: byok_core::kms::aws::policy::RoleTrust::ExternalId,
            audience: None,
            created_at: 0,
            health: Some(health.into()),
            health_detail: None,
            health_at: None,
        };
        let mut w = db.write().await.unwrap();
        crate::store::keys::insert(&mut w.tx, org, &row)
            .await
            .unwrap();
        crate::store::keys::set_health(&mut w.tx, org, 1, health, None, 0)
            .await
            .unwrap();
        w.commit().await.unwrap();
        let cell = svc.org(org).await.unwrap();
        cell.cmks.write().unwrap().insert(1, row);
        (org, cell)
    }

    /// On PostgreSQL, recording a key's health once it worked again after a denial takes the
    /// org's row before the key's, as a denial recorded on another replica does (its audit row,
    /// then the key's health): held here by a transaction that took the org's row and then
    /// writes the key's, the record waits instead of deadlocking with it (one of the two was
    /// given up, `40P01`, before).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recording_health_takes_the_org_before_the_key() {
        let Some(url) = crate::store::test_postgres_url().await else {
            return;
        };
        let db = Database::open(&url).await.unwrap();
        let svc = Arc::new(super::super::test_service(&db, 4));
        let (org, _) = org_with_a_denied_key(&db, &svc).await;
        // Another replica recording a denial: the org's row first, then the key's.
        let other = Database::open(&url).await.unwrap();
        let mut denial = other.pool().begin().await.unwrap();
        crate::store::org_rows::lock(&mut denial, org)
            .await
            .unwrap();
        let record = tokio::spawn({
            let svc = svc.clone();
            async move {
                let cell = svc.org(org).await?;
                svc.record_health(&cell, org, 1, "ok".into(), None).await
            }
        });
        // Queued on a row the denial holds (the org's now; the key's row taken first before).
        crate::store::test_wait_for_lock_waiter(other.pool()).await;
        sqlx::query("UPDATE cmk_keys SET health = 'access_denied' WHERE org_id = $1 AND n = 1")
            .bind(org.to_string())
            .execute(&mut *denial)
            .await
            .expect("the denial's write is not given up");
        denial.commit().await.unwrap();
        record.await.unwrap().expect("no deadlock");
    }

    /// A denial recorded by a replica whose copy of the org is behind (it still shows an older
    /// denial, where storage has the key working again, recorded by another replica) still
    /// moves the org's version: the other replicas hear of it instead of serving to their TTL.
    #[tokio::test]
    async fn a_denial_seen_on_a_copy_behind_storage_is_announced() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let svc = super::super::test_service(&db, 4);
        let (org, cell) = org_with_a_denied_key(&db, &svc).await;
        // Another replica recorded the key working again: storage moved on, this copy did not.
        let version = |db: Database| async move {
            sqlx::query_scalar::<_, i64>("SELECT version FROM orgs WHERE id = $1")
                .bind(org.to_string())
                .fetch_one(db.pool())
                .await
                .unwrap()
        };
        sqlx::query("UPDATE orgs SET version = version + 1 WHERE id = $1")
            .bind(org.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        let before = version(db.clone()).await;
        svc.withdrawn(&cell, org, 1, "access_denied", None)
            .await
            .unwrap();
        assert_eq!(
            version(db.clone()).await,
            before + 1,
            "the denial was not announced"
        );
    }

    /// The health of `cmk:1` of `org` as stored.
    async fn stored_health(db: &Database, org: byok_core::ScopeId) -> Option<String> {
        let rows = crate::store::keys::list(db.pool(), org).await.unwrap();
        rows.into_iter().find(|r| r.n == 1).and_then(|r| r.health)
    }

    /// An org of a service over `db` serving in outage grace because `cmk:1` was unreachable
    /// (its health `kms_unavailable`), and the org's eviction count now: what a recovery's
    /// call was sent at.
    async fn org_in_grace(
        db: &Database,
    ) -> (
        Arc<super::super::Service>,
        byok_core::ScopeId,
        Arc<super::super::OrgCell>,
        crate::service::cache::Evictions,
    ) {
        let svc = Arc::new(super::super::test_service(db, 4));
        let (org, cell) = org_with_a_key(db, &svc, "kms_unavailable").await;
        *cell.outage.lock().unwrap() = Some(super::super::grace::Outage {
            holder: HolderId::Cmk(1),
            since_ms: 0,
            last_unwrap: svc.now(),
            until_ms: 0,
            served: 1,
        });
        let since = svc.cache().evictions(org);
        (svc, org, cell, since)
    }

    /// Ends `org`'s grace as recovered through `by` on a call sent at `since`; `cmk:1`'s
    /// health as stored then.
    async fn recovered_through(
        db: &Database,
        (svc, org, cell): (
            &super::super::Service,
            byok_core::ScopeId,
            &super::super::OrgCell,
        ),
        by: HolderId,
        since: crate::service::cache::Evictions,
    ) -> Option<String> {
        let why = GraceEnd::Recovered { by, since };
        svc.end_grace(cell, org, why).await.unwrap();
        stored_health(db, org).await
    }

    /// An unwrap that ends an outage grace, answered just before the customer disabled the
    /// key, does not record the key working again over the denial: here the denial (which
    /// evicted the org at once) is recorded while the recovery's audit row is written, and
    /// the recovery's health write comes after it. Before, the key showed `ok` while disabled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recovery_answered_before_a_denial_does_not_overwrite_it() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let (svc, org, cell, since) = org_in_grace(&db).await;
        let held = db.write_org(org).await.unwrap();
        let recovered = tokio::spawn({
            let (svc, cell) = (svc.clone(), cell.clone());
            async move {
                let why = GraceEnd::Recovered {
                    by: HolderId::Cmk(1),
                    since,
                };
                svc.end_grace(&cell, org, why).await
            }
        });
        while db.writes_waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let denied = tokio::spawn({
            let (svc, cell) = (svc.clone(), cell.clone());
            async move { svc.withdrawn(&cell, org, 1, "key_disabled", None).await }
        });
        while db.writes_waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(held);
        recovered.await.unwrap().unwrap();
        denied.await.unwrap().unwrap();
        assert_eq!(
            stored_health(&db, org).await.as_deref(),
            Some("key_disabled")
        );
    }

    /// A recovery on a replica whose copy of the org is behind storage (another replica
    /// recorded a denial since, and moved the org's version) does not overwrite that denial:
    /// the other replica's eviction is not this one's to see.
    #[tokio::test]
    async fn a_recovery_on_a_copy_behind_storage_does_not_overwrite_a_denial() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let (svc, org, cell, since) = org_in_grace(&db).await;
        // Another replica's denial, in storage only: the key's health and the org's version.
        for sql in [
            "UPDATE cmk_keys SET health = 'key_disabled' WHERE org_id = $1 AND n = 1",
            "UPDATE orgs SET version = version + 1 WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(org.to_string())
                .execute(db.pool())
                .await
                .unwrap();
        }
        let health = recovered_through(&db, (&svc, org, &cell), HolderId::Cmk(1), since).await;
        assert_eq!(health.as_deref(), Some("key_disabled"));
    }

    /// A grace that ends because another key answered (the default moved during the outage)
    /// does not record the unreachable key as working.
    #[tokio::test]
    async fn a_recovery_through_another_key_leaves_the_unreachable_ones_health() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let (svc, org, cell, since) = org_in_grace(&db).await;
        let health = recovered_through(&db, (&svc, org, &cell), HolderId::Managed, since).await;
        assert!(
            cell.outage.lock().unwrap().is_none(),
            "the grace did not end"
        );
        assert_eq!(health.as_deref(), Some("kms_unavailable"));
    }

    /// An org whose check fails does not stop the check of the orgs after it: here the second
    /// org's copy is behind storage (another replica's change), and the check reloads it.
    #[tokio::test]
    async fn one_org_failing_its_check_does_not_stop_the_others() {
        let db = Database::open("sqlite::memory:").await.unwrap();
        let svc = super::super::test_service(&db, 3);
        for name in ["one", "two"] {
            svc.create_org(name, None, None, None).await.unwrap();
        }
        let listed = crate::store::org_rows::org_ids(db.pool()).await.unwrap();
        let [broken, org] = listed[..] else {
            panic!("two orgs: {listed:?}")
        };
        // The org checked first no longer forms an org in storage, and is not in memory.
        let cell = svc.org(broken).await.unwrap();
        svc.forget_cell(broken, &cell);
        for table in ["root_copies", "holders"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE org_id = $1"))
                .bind(broken.to_string())
                .execute(db.pool())
                .await
                .unwrap();
        }
        let broken_error = svc.org(broken).await.err().expect("the org still loads");
        assert!(
            matches!(broken_error, ServiceError::Store(StoreError::Corrupt(_))),
            "{broken_error:?}"
        );
        let behind = svc.org(org).await.unwrap();
        behind.version.fetch_sub(1, Ordering::SeqCst);
        let reported = svc
            .check_health()
            .await
            .expect_err("the failure was not reported");
        assert_eq!(format!("{reported:?}"), format!("{broken_error:?}"));
        let now = svc.org(org).await.unwrap();
        assert!(
            !Arc::ptr_eq(&behind, &now),
            "the org after the failing one was not checked"
        );
    }
}
