//! The scope tree and the key lifecycle: pause, resume, revoke, rotate, retire, and the key
//! holders (customer CMKs and the managed key) of each org's root key.
//!
//! ```text
//! holders (CMK #1, CMK #2, managed)   each holds a wrapped copy of every live root version
//!  └─ org root key (the org scope's key, versions 1..n)
//!      └─ team key         random, wrapped by the parent's key, context {org, scope, parent, version}
//!          └─ thread key   ...any depth up to MAX_DEPTH
//!              └─ data: messages and data keys (format v1), sealed under the scope's key
//! ```
//!
//! Pure logic: [`Org`] is a value the host persists; each transition checks every rule, then
//! changes the value and returns the [`Effect`]s the host applies in one transaction (store or
//! destroy wrapped keys, call a KMS, evict caches, append audit events), or fails with a typed
//! [`ScopeError`] and changes nothing. Only root keys ever touch a KMS.
//!
//! Rules:
//! - The effective state of a scope is the most restrictive state on its path to the root
//!   (revoked > paused > active). A paused ancestor cannot be bypassed by resuming a child.
//! - Revoke destroys the wrapped keys of the scope and of its whole subtree; nothing under it
//!   decrypts again, whatever follows. It needs the scope id typed back. It is final.
//! - Scope keys are random and wrapped, not derived from the parent, so a child can be revoked
//!   while its parent lives.
//! - Rotation adds a version; new data uses the newest; old versions decrypt until retired, and a
//!   version that still wraps child keys cannot be retired before a rewrap job moves them.
//! - The default holder cannot be disabled, and always holds every live root version; a holder
//!   is disabled only with a ready re-encryption target; at most one re-encryption job runs per
//!   org. So an org never loses its last copy of the root key.
//! - BYOK is exclusive: once a customer key is the default (its copies proven by a fresh unwrap
//!   through its KMS, see [`RootProof`]), the managed key's copies are destroyed, so the vendor
//!   holds nothing that opens the org without the customer's KMS ([`Org::vendor_can_decrypt`]).
//! - Withdrawal always wins: revoke is never refused (given its confirmation), whatever job
//!   runs; the job loses its steps inside the revoked subtree, or is cancelled.
//! - Scopes never move (see [`Org::move_scope`]).

mod contexts;
mod effect;
mod error;
mod holders;
mod job;
mod keyring;
mod org;
mod proof;
mod restore;
mod root_check;
mod state;
mod tree;

pub use contexts::{managed_root_context, scope_key_context};
pub use effect::{AuditEvent, Effect};
pub use error::ScopeError;
pub use holders::{Holder, HolderId, HolderStatus};
pub use job::{JobKind, JobStep, RewrapJob};
pub use org::{MANAGED_SCOPE, MAX_DEPTH, MAX_VERSIONS, Org, Scope, WrappedScopeKey, managed_key};
pub use proof::RootProof;
pub use restore::StoredScope;
pub use root_check::{ROOT_CHECK_LEN, RootCheck, RootChecker, RootVerdict};
pub use state::{Effective, ScopeState};
