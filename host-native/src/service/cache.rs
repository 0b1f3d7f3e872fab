//! Unwrapped keys in memory, each until its org's `unwrap_cache_ttl` after the root it came from
//! was unwrapped (0: never kept, so every use goes back to the root holder, a KMS call for a
//! CMK). A child key never outlives the root it was resolved from, so the bound on how long the
//! vendor can keep using a withdrawn root is one TTL, not one TTL per level. Pause, revoke,
//! retirement and key changes evict at once; a KMS answer that says the key is gone or denied
//! evicts the whole org. Keys are wiped when dropped (`ScopeKey` zeroizes).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use byok_core::{KeyId, ScopeId, ScopeKey};

struct Entry {
    org: ScopeId,
    key: Arc<ScopeKey>,
    expires: Instant,
}

/// The cache.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<KeyId, Entry>>,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, Entry>> {
        // Entries are inserted and removed whole: a poisoned lock holds a consistent map.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key` and when it expires, if it has not yet.
    pub fn get(&self, key: KeyId) -> Option<(Arc<ScopeKey>, Instant)> {
        let mut map = self.lock();
        match map.get(&key) {
            Some(e) if Instant::now() < e.expires => Some((e.key.clone(), e.expires)),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Keeps `key` of `org` until `expires` (nothing is kept if that is now or past).
    pub fn put(&self, org: ScopeId, key: Arc<ScopeKey>, expires: Instant) {
        if expires > Instant::now() {
            self.lock().insert(key.id(), Entry { org, key, expires });
        }
    }

    /// Drops every key of `scopes`.
    pub fn evict(&self, scopes: &HashSet<ScopeId>) {
        self.lock().retain(|k, _| !scopes.contains(&k.scope));
    }

    /// Drops one key version.
    pub fn evict_key(&self, key: KeyId) {
        self.lock().remove(&key);
    }

    /// Drops every key of `org`.
    pub fn evict_org(&self, org: ScopeId) {
        self.lock().retain(|_, e| e.org != org);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(scope: u8, version: u32) -> Arc<ScopeKey> {
        Arc::new(ScopeKey::new(
            KeyId::new(ScopeId::from_bytes([scope; 16]), version),
            byok_core::SecretBytes::from_bytes(&mut [scope; 32]),
        ))
    }

    #[test]
    fn entries_expire_evict_by_key_and_by_org() {
        let cache = KeyCache::default();
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([9; 16]));
        let later = Instant::now() + Duration::from_secs(60);
        cache.put(a, key(1, 1), later);
        cache.put(a, key(2, 1), later);
        cache.put(b, key(9, 1), later);
        cache.put(a, key(3, 1), Instant::now());
        assert_eq!(cache.len(), 3, "an entry already expired is not kept");
        cache.evict_key(KeyId::new(ScopeId::from_bytes([2; 16]), 1));
        assert!(
            cache
                .get(KeyId::new(ScopeId::from_bytes([2; 16]), 1))
                .is_none()
        );
        cache.evict_org(a);
        assert!(cache.get(KeyId::new(a, 1)).is_none());
        assert!(
            cache.get(KeyId::new(b, 1)).is_some(),
            "other orgs keep theirs"
        );
    }
}
