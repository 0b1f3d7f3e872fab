//! Audit rows for calls to a customer's KMS that are written even when the request that made
//! the call is dropped mid-way (its client gone, its deadline passed) or the row cannot be
//! written at once. The customer's own log (CloudTrail, Cloud Audit Logs) has the call either
//! way, and byok's must too: comparing the two is how a customer checks byok.
//!
//! A guard is armed before the call ([`PendingCall`] for a call on an attached key,
//! [`PendingValidation`] for a validation's calls). Once its row is committed it is disarmed;
//! dropped armed, it queues the row as it stands (a call on its way is recorded with the
//! requests it sent and `Dropped`), and the org's next write of its log takes the queue, as it
//! takes credential exchanges ([`super::Service::audit_event`]). Rows no such write took are
//! written before each round of checkpoints and when the server shuts down
//! ([`super::Service::write_held_rows`]): a dropped call is in the log, and under a signed
//! checkpoint, within the checkpoint interval, whether or not the org is used again.

use std::collections::VecDeque;
use std::sync::Mutex;

use byok_core::ScopeId;
use byok_core::kms::KmsError;
use serde_json::{Value, json};

use super::health::call_json;
use super::kms::{CallLog, KeyAccess};
use crate::kms_call::{Attempts, abandoned};

/// Rows held for the audit log at most, and per org: a path that never writes them cannot
/// grow the queue without bound, and one org cutting off calls by the thousand pushes out its
/// own oldest rows, never another org's (with a warning).
const MAX_UNWRITTEN: usize = 10_000;
const MAX_UNWRITTEN_PER_ORG: usize = 1_000;

/// Rows whose guard was dropped before they were committed, per org, oldest first.
#[derive(Default)]
pub(super) struct Unwritten(Mutex<VecDeque<(ScopeId, Value)>>);

impl Unwritten {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(ScopeId, Value)>> {
        // Rows are pushed and taken whole: a poisoned lock holds a consistent queue.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn push(&self, org: ScopeId, row: Value) {
        let mut held = self.lock();
        let dropped = crate::fair_queue::push(
            &mut held,
            (org, row),
            |(o, _)| *o,
            MAX_UNWRITTEN_PER_ORG,
            MAX_UNWRITTEN,
        );
        if let Some(victim) = dropped {
            tracing::warn!(org = %victim, "a KMS call's audit row was dropped before it was written");
        }
    }

    /// The orgs with rows held, each once.
    pub(super) fn orgs(&self) -> Vec<ScopeId> {
        let mut orgs: Vec<ScopeId> = self.lock().iter().map(|(o, _)| *o).collect();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }

    /// `org`'s rows, oldest first; each is handed over once.
    pub(super) fn take(&self, org: ScopeId) -> Vec<Value> {
        let mut held = self.lock();
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *held)
            .into_iter()
            .partition(|(o, _)| *o == org);
        *held = rest.into();
        mine.into_iter().map(|(_, row)| row).collect()
    }

    /// Puts back rows taken by [`Self::take`] whose write failed, ahead of those queued since,
    /// within the queue's bounds (the org's oldest go first, as when pushed).
    pub(super) fn give_back(&self, org: ScopeId, rows: Vec<Value>) {
        let mut held = self.lock();
        for row in rows.into_iter().rev() {
            held.push_front((org, row));
        }
        let dropped =
            crate::fair_queue::trim(&mut held, |(o, _)| *o, MAX_UNWRITTEN_PER_ORG, MAX_UNWRITTEN);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "KMS calls' audit rows were dropped before they were written"
            );
        }
    }
}

/// A call on attached key `cmk:n` of an org, from before it is sent until its `kms_call` row
/// is committed ([`super::Service::kms_answered`]).
pub(super) struct PendingCall<'a> {
    unwritten: &'a Unwritten,
    pub(super) org: ScopeId,
    pub(super) n: u32,
    op: &'static str,
    provider: &'static str,
    /// The requests sent: hand it to the call.
    pub(super) sent: Attempts,
    /// How it was answered, once it was (`Some(None)`: it succeeded).
    answer: Option<Option<KmsError>>,
    armed: bool,
}

impl<'a> PendingCall<'a> {
    /// Whether the call unwraps (`Decrypt`): the only kind whose success clears a recorded
    /// denial (a wrap's success says nothing of unwrapping, which is what byok needs).
    pub(super) fn unwraps(&self) -> bool {
        self.op == "Decrypt"
    }

    pub(super) fn new(
        unwritten: &'a Unwritten,
        org: ScopeId,
        n: u32,
        key: &KeyAccess,
        op: &'static str,
    ) -> Self {
        Self {
            unwritten,
            org,
            n,
            op,
            provider: key.provider.name(),
            sent: Attempts::default(),
            answer: None,
            armed: true,
        }
    }

    /// The call was answered (or failed) as `err` says.
    pub(super) fn answered(&mut self, err: Option<&KmsError>) {
        self.answer = Some(err.cloned());
    }

    /// Its `kms_call` row as it stands.
    pub(super) fn row(&self) -> Value {
        let unread;
        let err = match &self.answer {
            Some(e) => e.as_ref(),
            None => {
                unread = abandoned(self.provider);
                Some(&unread)
            }
        };
        let mut event = call_json(self.op, self.sent.get(), err);
        event["type"] = json!("kms_call");
        event["key"] = json!(format!("cmk:{}", self.n));
        event
    }

    /// Its row was committed.
    pub(super) fn written(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        // Unanswered and nothing sent (dropped while waiting for credentials): the customer's
        // KMS saw nothing.
        if self.armed && (self.answer.is_some() || self.sent.get() > 0) {
            self.unwritten.push(self.org, self.row());
        }
    }
}

/// A validation of a key, from before its first call until its `key_validation` row is
/// committed.
pub(super) struct PendingValidation<'a> {
    unwritten: &'a Unwritten,
    org: ScopeId,
    /// The key as given, or `cmk:N`.
    key: String,
    provider: &'static str,
    /// The calls: hand it to [`super::kms::Kms::validate_logged`].
    pub(super) log: CallLog,
    /// Whether it passed, once it ended.
    ok: Option<bool>,
    armed: bool,
}

impl<'a> PendingValidation<'a> {
    pub(super) fn new(
        unwritten: &'a Unwritten,
        org: ScopeId,
        key: String,
        provider: &'static str,
    ) -> Self {
        Self {
            unwritten,
            org,
            key,
            provider,
            log: CallLog::new(provider),
            ok: None,
            armed: true,
        }
    }

    /// The validation ended, passing or not.
    pub(super) fn ended(&mut self, ok: bool) {
        self.ok = Some(ok);
    }

    /// Its `key_validation` row as it stands, if it made a call (one that ended early, before
    /// any, is no event of the customer's log).
    pub(super) fn row(&self) -> Option<Value> {
        let calls: Vec<Value> = self
            .log
            .calls()
            .iter()
            .map(|c| call_json(c.op, c.attempts, c.error.as_ref()))
            .collect();
        (!calls.is_empty()).then(|| {
            json!({ "type": "key_validation", "key": self.key, "provider": self.provider,
                "ok": self.ok.unwrap_or(false), "calls": calls })
        })
    }

    /// Its row was committed (or it has none).
    pub(super) fn written(mut self) {
        self.armed = false;
    }
}

impl Drop for PendingValidation<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Some(row) = self.row()
        {
            self.unwritten.push(self.org, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One org cutting off calls by the thousand loses its own oldest rows, never another's.
    #[test]
    fn an_org_cannot_push_another_orgs_rows_out() {
        let q = Unwritten::default();
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        q.push(b, json!({ "n": "b" }));
        for n in 0..MAX_UNWRITTEN_PER_ORG + 5 {
            q.push(a, json!({ "n": n }));
        }
        assert_eq!(q.take(b), [json!({ "n": "b" })]);
        let mine = q.take(a);
        assert_eq!(mine.len(), MAX_UNWRITTEN_PER_ORG);
        assert_eq!(mine[0], json!({ "n": 5 }), "its own oldest went");
        // Full with many orgs: the one holding the most gives way.
        let busiest = ScopeId::from_bytes([10; 16]);
        for n in 0..MAX_UNWRITTEN_PER_ORG {
            q.push(busiest, json!({ "n": n }));
        }
        let others = (MAX_UNWRITTEN - MAX_UNWRITTEN_PER_ORG) / 10;
        for o in 11..21u8 {
            for n in 0..others {
                q.push(ScopeId::from_bytes([o; 16]), json!({ "n": n }));
            }
        }
        q.push(b, json!({ "n": "b2" }));
        assert_eq!(q.take(b), [json!({ "n": "b2" })]);
        let rows = q.take(busiest);
        assert_eq!(rows.len(), MAX_UNWRITTEN_PER_ORG - 1);
        assert_eq!(rows[0], json!({ "n": 1 }));
        assert_eq!(q.take(ScopeId::from_bytes([11; 16])).len(), others);
        // Rows put back after a failed write, with more queued since: still the org's share,
        // its oldest gone; another org's rows stay.
        q.push(b, json!({ "n": "b3" }));
        for n in 0..10 {
            q.push(busiest, json!({ "n": format!("new {n}") }));
        }
        q.give_back(busiest, rows);
        let after = q.take(busiest);
        assert_eq!(after.len(), MAX_UNWRITTEN_PER_ORG);
        assert_eq!(after[0], json!({ "n": 10 }), "its own oldest went");
        assert_eq!(after.last(), Some(&json!({ "n": "new 9" })));
        assert_eq!(q.take(b), [json!({ "n": "b3" })]);
    }
}
