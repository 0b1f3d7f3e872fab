//! Unwrapped keys in memory, each for at most its org's `unwrap_cache_ttl` (0: never kept, so
//! every use goes back to the root holder, a KMS call for a CMK). Pause, revoke and key changes
//! evict a whole subtree at once. Keys are wiped when dropped (`ScopeKey` zeroizes).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use byok_core::{KeyId, ScopeId, ScopeKey};

/// The cache.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<KeyId, (Arc<ScopeKey>, Instant)>>,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, (Arc<ScopeKey>, Instant)>> {
        // Entries are inserted and removed whole: a poisoned lock holds a consistent map.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key` if it was cached less than `ttl` ago.
    pub fn get(&self, key: KeyId, ttl: Duration) -> Option<Arc<ScopeKey>> {
        let mut map = self.lock();
        match map.get(&key) {
            Some((k, at)) if at.elapsed() < ttl => Some(k.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Keeps `key` (unless `ttl` is zero).
    pub fn put(&self, key: Arc<ScopeKey>, ttl: Duration) {
        if !ttl.is_zero() {
            self.lock().insert(key.id(), (key, Instant::now()));
        }
    }

    /// Drops every key of `scopes`.
    pub fn evict(&self, scopes: &HashSet<ScopeId>) {
        self.lock().retain(|k, _| !scopes.contains(&k.scope));
    }

    /// Keys held (for metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}
