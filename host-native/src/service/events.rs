//! Audit events as JSON: core's [`AuditEvent`]s and the host's own (org and token creation,
//! root key unwraps). Only ids, versions and counts: never key bytes, tokens or data.

use byok_core::scope::{AuditEvent, HolderId};
use serde_json::{Value, json};

use crate::store::holder_name;

fn holder(h: HolderId) -> String {
    holder_name(h)
}

/// The JSON of a core audit event.
pub(super) fn core_event(e: &AuditEvent) -> Value {
    match e {
        AuditEvent::ScopeCreated { scope, parent } => {
            json!({ "type": "scope_created", "scope": scope.to_string(), "parent": parent.to_string() })
        }
        AuditEvent::ScopePaused(s) => json!({ "type": "scope_paused", "scope": s.to_string() }),
        AuditEvent::ScopeResumed(s) => json!({ "type": "scope_resumed", "scope": s.to_string() }),
        AuditEvent::ScopeRevoked {
            scope,
            keys_destroyed,
        } => {
            json!({ "type": "scope_revoked", "scope": scope.to_string(), "keys_destroyed": keys_destroyed })
        }
        AuditEvent::KeyRotated(k) => {
            json!({ "type": "key_rotated", "scope": k.scope.to_string(), "version": k.version })
        }
        AuditEvent::RetireStarted { key, to } => json!({
            "type": "key_retire_started", "scope": key.scope.to_string(),
            "version": key.version, "to": to.version,
        }),
        AuditEvent::KeyRetired(k) => {
            json!({ "type": "key_retired", "scope": k.scope.to_string(), "version": k.version })
        }
        AuditEvent::HolderAttached(h) => json!({ "type": "key_attached", "holder": holder(*h) }),
        AuditEvent::RootCopyStored { holder: h, version } => {
            json!({ "type": "root_copy_stored", "holder": holder(*h), "version": version })
        }
        AuditEvent::RootCheckRecorded { version } => {
            json!({ "type": "root_check_recorded", "version": version })
        }
        AuditEvent::DefaultHolder { from, to } => {
            json!({ "type": "default_key_changed", "from": holder(*from), "to": holder(*to) })
        }
        AuditEvent::HolderDisabled(h) => json!({ "type": "key_disabled", "holder": holder(*h) }),
        AuditEvent::HolderEnabled(h) => json!({ "type": "key_enabled", "holder": holder(*h) }),
        AuditEvent::HolderRotated(h) => {
            json!({ "type": "key_rotated_by_customer", "holder": holder(*h) })
        }
        AuditEvent::JobFinished => json!({ "type": "job_finished" }),
        AuditEvent::JobCancelled => json!({ "type": "job_cancelled" }),
        AuditEvent::JobTrimmed { steps } => json!({ "type": "job_trimmed", "steps": steps }),
        // `AuditEvent` is non-exhaustive: a new kind is still recorded, by its debug name.
        other => json!({ "type": "other", "detail": format!("{other:?}") }),
    }
}
