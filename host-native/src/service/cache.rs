//! Unwrapped keys in memory. Each entry carries the [`Freshness`] of the root it came from
//! (when the root was last unwrapped, and when a failed refresh may next be retried) and is kept
//! until its org's policy lets it go: `unwrap_cache_ttl` after that unwrap, plus the org's
//! outage grace if it chose one (nothing is kept with a TTL of 0). Whether an entry may serve
//! is core's rule ([`byok_core::grace`]), applied by the resolver at every use with the org's
//! settings of that moment; this map only keeps and drops.
//!
//! A child key never outlives the root it was resolved from, so the bound on how long the
//! vendor can keep using a withdrawn root is one TTL (plus any grace), not one per level.
//! Pause, revoke, retirement and key changes evict at once; a KMS answer that says the key is
//! gone or denied evicts the whole org. An evicted entry is gone: nothing brings it back but a
//! new successful unwrap. Keys are wiped when dropped (`ScopeKey` zeroizes).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byok_core::grace::Freshness;
use byok_core::{KeyId, ScopeId, ScopeKey};

struct Entry {
    org: ScopeId,
    key: Arc<ScopeKey>,
    freshness: Freshness,
    /// Dropped at or after this time (the host's clock, [`super::Service::now`]).
    keep_until: Duration,
}

/// A cached key with its root's freshness.
#[derive(Clone)]
pub struct Cached {
    /// The key.
    pub key: Arc<ScopeKey>,
    /// Its root's freshness.
    pub freshness: Freshness,
}

/// The cache.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<super::FastMap<KeyId, Entry>>,
    /// How many times each org's keys were evicted: whole ([`Self::evict_org`]: a KMS denial,
    /// another replica's change), and in all (those, and the keys a pause, revoke or
    /// retirement withdrew, [`Self::evict_withdrawn`]). A key resolved by a call sent before
    /// any of them is not kept after it ([`Self::put`]); a key already resolved is refused use
    /// only after an eviction whole ([`Self::evicted_since`]): a withdrawal of scopes or
    /// versions is checked on the published state under the org's gate instead, and a
    /// retirement of one version must not send every call of the org round again.
    evictions: Mutex<super::FastMap<ScopeId, Evictions>>,
}

/// An org's eviction counts when a KMS call was sent ([`KeyCache::evictions`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    whole: u64,
    any: u64,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, super::FastMap<KeyId, Entry>> {
        // Entries are inserted and removed whole: a poisoned lock holds a consistent map.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn evictions_lock(&self) -> std::sync::MutexGuard<'_, super::FastMap<ScopeId, Evictions>> {
        self.evictions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `org`'s eviction counts now: read before a KMS call whose answer may be cached, and
    /// handed to [`Self::put`].
    pub fn evictions(&self, org: ScopeId) -> Evictions {
        self.evictions_lock().get(&org).copied().unwrap_or_default()
    }

    /// Whether `org`'s keys were evicted whole since `since` was read.
    pub fn evicted_since(&self, org: ScopeId, since: Evictions) -> bool {
        self.evictions(org).whole != since.whole
    }

    /// `key` with its freshness, if it is still kept at `now` (fresh or not: the org's policy
    /// decides whether it may serve).
    pub fn get(&self, key: KeyId, now: Duration) -> Option<Cached> {
        let mut map = self.lock();
        match map.get(&key) {
            Some(e) if now < e.keep_until => Some(Cached {
                key: e.key.clone(),
                freshness: e.freshness,
            }),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Keeps `key` of `org` with `freshness` until `keep_until` (nothing is kept if that is
    /// `now` or past), unless the org's keys were evicted whole since `since` (read before the
    /// KMS call that gave the key): a denial recorded while the call's answer was on its way
    /// (or being audited) must not find the key back in the cache afterwards. Returns whether
    /// it was kept.
    pub fn put(
        &self,
        org: ScopeId,
        key: Arc<ScopeKey>,
        freshness: Freshness,
        keep_until: Duration,
        now: Duration,
        since: Evictions,
    ) -> bool {
        // The eviction counts are read and the entry inserted under the entries' lock, which
        // the evictions take to bump them: no eviction falls between the check and the insert.
        let mut map = self.lock();
        if self.evictions(org) != since {
            return false;
        }
        if keep_until > now {
            map.insert(
                key.id(),
                Entry {
                    org,
                    key,
                    freshness,
                    keep_until,
                },
            );
        }
        true
    }

    /// Sets the freshness of `key` if it is still there (after a failed refresh: when to retry);
    /// says whether it was. Never inserts: an entry evicted meanwhile stays evicted.
    pub fn set_freshness(&self, key: KeyId, freshness: Freshness) -> bool {
        match self.lock().get_mut(&key) {
            Some(e) => {
                e.freshness = freshness;
                true
            }
            None => false,
        }
    }

    /// After `org`'s settings changed: each of its entries still kept at `now` is kept until
    /// `keep_until` of its freshness says, and dropped if that is past. An entry the old
    /// settings let go stays gone, whatever the new ones say. A call for `org`'s keys on its
    /// way now read the old settings before it was sent: its answer is not kept (see
    /// [`Self::put`]), or a TTL lowered to 0 would still find keys kept to the old TTL's end.
    /// The call itself may still use its key: the settings of the moment decide that.
    pub fn rekeep_org(
        &self,
        org: ScopeId,
        keep_until: impl Fn(Freshness) -> Duration,
        now: Duration,
    ) {
        let mut map = self.lock();
        self.evictions_lock().entry(org).or_default().any += 1;
        map.retain(|_, e| {
            if now >= e.keep_until {
                return false;
            }
            if e.org == org {
                e.keep_until = keep_until(e.freshness);
            }
            now < e.keep_until
        });
    }

    /// Drops every key of `scopes` and the versions `keys`, all of `org`, which a change
    /// withdrew (a pause, a revoke, a retirement), and keeps out any call for `org`'s keys on
    /// its way now (see [`Self::put`]): a resolve that checked the scope before the change must
    /// not put its key back, where it would stay in memory, if unused, to the end of its TTL.
    pub fn evict_withdrawn(&self, org: ScopeId, scopes: &HashSet<ScopeId>, keys: &[KeyId]) {
        let mut map = self.lock();
        self.evictions_lock().entry(org).or_default().any += 1;
        map.retain(|k, _| !scopes.contains(&k.scope) && !keys.contains(k));
    }

    /// Drops one key version.
    pub fn evict_key(&self, key: KeyId) {
        self.lock().remove(&key);
    }

    /// Drops every key of `org`, and of any call for its keys on its way now (see
    /// [`Self::put`]).
    pub fn evict_org(&self, org: ScopeId) {
        let mut map = self.lock();
        let counts = &mut *self.evictions_lock();
        let c = counts.entry(org).or_default();
        c.whole += 1;
        c.any += 1;
        map.retain(|_, e| e.org != org);
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

    fn key(scope: u8, version: u32) -> Arc<ScopeKey> {
        Arc::new(ScopeKey::new(
            KeyId::new(ScopeId::from_bytes([scope; 16]), version),
            byok_core::SecretBytes::from_bytes(&mut [scope; 32]),
        ))
    }

    const NOW: Duration = Duration::from_secs(100);

    fn at(now: Duration) -> Freshness {
        Freshness::unwrapped(now)
    }

    #[test]
    fn entries_expire_evict_by_key_and_by_org() {
        let cache = KeyCache::default();
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([9; 16]));
        let later = NOW + Duration::from_secs(60);
        cache.put(a, key(1, 1), at(NOW), later, NOW, cache.evictions(a));
        cache.put(a, key(2, 1), at(NOW), later, NOW, cache.evictions(a));
        cache.put(b, key(9, 1), at(NOW), later, NOW, cache.evictions(b));
        cache.put(a, key(3, 1), at(NOW), NOW, NOW, cache.evictions(a));
        assert_eq!(cache.len(), 3, "an entry already expired is not kept");
        assert!(
            cache.get(KeyId::new(b, 1), later).is_none(),
            "dropped at keep_until"
        );
        assert_eq!(cache.len(), 2);
        cache.evict_key(KeyId::new(ScopeId::from_bytes([2; 16]), 1));
        assert!(
            cache
                .get(KeyId::new(ScopeId::from_bytes([2; 16]), 1), NOW)
                .is_none()
        );
        cache.put(b, key(9, 1), at(NOW), later, NOW, cache.evictions(b));
        // A change withdrawing scope 1's keys: a call for org `a` on its way since before it
        // does not put one back.
        let on_its_way = cache.evictions(a);
        let one = HashSet::from([ScopeId::from_bytes([1; 16])]);
        cache.evict_withdrawn(a, &one, &[]);
        assert!(cache.get(KeyId::new(a, 1), NOW).is_none());
        assert!(!cache.put(a, key(1, 1), at(NOW), later, NOW, on_its_way));
        assert!(cache.get(KeyId::new(a, 1), NOW).is_none(), "put back");
        // A key already resolved is not refused for it (the gate's check is): only an
        // eviction whole (a denial) refuses it.
        assert!(!cache.evicted_since(a, on_its_way));
        let before_denial = cache.evictions(a);
        cache.evict_org(a);
        assert!(cache.evicted_since(a, before_denial));
        cache.put(a, key(1, 1), at(NOW), later, NOW, cache.evictions(a));
        cache.evict_withdrawn(a, &HashSet::new(), &[KeyId::new(a, 1)]);
        assert!(cache.get(KeyId::new(a, 1), NOW).is_none());
        cache.evict_org(a);
        assert!(cache.get(KeyId::new(a, 1), NOW).is_none());
        assert!(
            cache.get(KeyId::new(b, 1), NOW).is_some(),
            "other orgs keep theirs"
        );
    }

    #[test]
    fn freshness_is_set_only_on_what_is_there_and_settings_rekeep() {
        let cache = KeyCache::default();
        let (a, b) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([9; 16]));
        let k = KeyId::new(a, 1);
        let retry = Freshness {
            unwrapped_at: NOW,
            retry_at: Some(NOW + Duration::from_secs(5)),
        };
        assert!(!cache.set_freshness(k, retry));
        assert!(cache.is_empty(), "an evicted entry is not brought back");
        cache.put(
            a,
            key(1, 1),
            at(NOW),
            NOW + Duration::from_secs(60),
            NOW,
            cache.evictions(a),
        );
        cache.put(
            b,
            key(9, 1),
            at(NOW),
            NOW + Duration::from_secs(60),
            NOW,
            cache.evictions(b),
        );
        assert!(cache.set_freshness(k, retry));
        assert_eq!(cache.get(k, NOW).map(|c| c.freshness), Some(retry));
        // A shorter grace: org a's entry is now past what it may be kept; b's is untouched.
        let later = NOW + Duration::from_secs(30);
        cache.rekeep_org(a, |f| f.unwrapped_at + Duration::from_secs(10), later);
        assert!(cache.get(k, later).is_none());
        assert!(cache.get(KeyId::new(b, 1), later).is_some());
        // A longer grace does not bring back what the old one let go.
        cache.put(
            a,
            key(1, 1),
            at(NOW),
            NOW + Duration::from_secs(10),
            NOW,
            cache.evictions(a),
        );
        cache.rekeep_org(a, |f| f.unwrapped_at + Duration::from_secs(600), later);
        assert!(cache.get(k, later).is_none());
        // A call on its way since before the change read the old settings: its answer is not
        // kept to them. Another org's calls are not affected.
        let (on_its_way, other) = (cache.evictions(a), cache.evictions(b));
        cache.rekeep_org(a, |f| f.unwrapped_at, later);
        let far = later + Duration::from_secs(3600);
        assert!(!cache.put(a, key(1, 1), at(later), far, later, on_its_way));
        assert!(cache.get(k, later).is_none(), "kept to the old settings");
        assert!(
            !cache.evicted_since(a, on_its_way),
            "a key in use is not refused"
        );
        assert!(cache.put(b, key(9, 2), at(later), far, later, other));
    }
}
