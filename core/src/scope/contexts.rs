//! The encryption contexts that scope keys and root copies are wrapped with. They are part of
//! the stored format (a wrapped key opens only under the same context), so they live apart from
//! the transitions that use them, in one place a reviewer can check against `docs/format.md`.

use alloc::format;
use alloc::string::String;

use crate::context::Context;
use crate::key_id::{KeyId, ScopeId};

/// The context a scope key is wrapped with: binds it to its org, scope, parent and version, so
/// a wrapped key copied to another place in the tree does not open.
pub fn scope_key_context(org: ScopeId, key: KeyId, parent: ScopeId) -> Context {
    context([
        ("byok:org", hex(org)),
        ("byok:parent", hex(parent)),
        ("byok:scope", hex(key.scope)),
        ("byok:version", format!("{}", key.version)),
    ])
}

/// The context a root version is wrapped with under the managed key.
pub fn managed_root_context(org: ScopeId, version: u32) -> Context {
    context([
        ("byok:org", hex(org)),
        ("byok:purpose", "org-root".into()),
        ("byok:version", format!("{version}")),
    ])
}

pub(super) fn hex(id: ScopeId) -> String {
    id.to_hex().iter().map(|&b| char::from(b)).collect()
}

/// A context from constant keys, encoded once.
fn context<const N: usize>(pairs: [(&'static str, String); N]) -> Context {
    Context::from_map(
        pairs
            .into_iter()
            .map(|(k, v)| (String::from(k), v))
            .collect(),
    )
}
