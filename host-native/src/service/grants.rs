//! Token grants held in memory, by token hash, so that authenticating a request does not read
//! the database. Revoking a token drops its grant at once; the hard part is that a grant must
//! never come back after that.
//!
//! The race: a request with token T misses the map and reads T's row; T is revoked and its
//! grant forgotten (nothing to forget yet); then the request caches the row it read. T would
//! then authenticate from memory until the process ends. So a read may only be cached if
//! nothing was forgotten since it began ([`Grants::epoch`]), and a hash forgotten in the last
//! [`FORGOTTEN_MS`] is never cached: that covers a revoke whose request was dropped during its
//! commit, where the forget runs first and the delete may land a moment later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::FastMap;
use crate::store::TokenRow;

/// How long a forgotten hash is not cached again: far longer than a commit takes to land
/// after the request that sent it was dropped.
pub(super) const FORGOTTEN_MS: i64 = 60_000;

/// At most this many grants are held; past it the map starts over (each costs one lookup).
const MAX_GRANTS: usize = 100_000;

/// What [`Grants::cache`] did with a grant read from storage.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Cached {
    /// Kept: later requests with the token are authenticated from memory.
    Kept,
    /// Not kept: this token's grant was forgotten lately (a revoke may be landing), so every
    /// request reads its row until [`FORGOTTEN_MS`] have passed. The read itself stands.
    Forgotten,
    /// Not kept: some grant was forgotten while the row was read, perhaps this one, so the read
    /// may predate its revoke. Read it again.
    Moved,
}

#[derive(Default)]
struct Inner {
    by_hash: FastMap<[u8; 32], Arc<TokenRow>>,
    /// Hashes forgotten, with when (ms since the epoch).
    forgotten: FastMap<[u8; 32], i64>,
}

/// The grants known here (see the module's doc).
#[derive(Default)]
pub(super) struct Grants {
    inner: RwLock<Inner>,
    /// Bumped by every forget, only while `inner` is held for writing: read under `inner`, it
    /// is consistent with the grants held; read alone (a data call's check that its caller's
    /// grant still stands, [`Grants::moved_since`]), one atomic load.
    epoch: AtomicU64,
}

impl Grants {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Bumps the epoch; `_held` proves `inner` is held for writing.
    fn bump(&self, _held: &mut Inner) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The grant of the token with `hash`, if held.
    pub(super) fn get(&self, hash: &[u8; 32]) -> Option<Arc<TokenRow>> {
        self.read().by_hash.get(hash).cloned()
    }

    /// The grant of the token with `hash`, if held, with the epoch it is held at: a forget
    /// of it (or of its org's grants) comes after, and moves the epoch.
    pub(super) fn get_at(&self, hash: &[u8; 32]) -> Option<(Arc<TokenRow>, u64)> {
        let g = self.read();
        let grant = g.by_hash.get(hash).cloned()?;
        Some((grant, self.epoch.load(Ordering::SeqCst)))
    }

    /// Read before reading a row from storage, and passed to [`Grants::cache`].
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether any grant was forgotten since `epoch`: one atomic load, for the data path.
    pub(super) fn moved_since(&self, epoch: u64) -> bool {
        self.epoch.load(Ordering::SeqCst) != epoch
    }

    /// Keeps `grant`, read from storage after [`Grants::epoch`] returned `since`, unless a
    /// forget makes it unsafe to (see [`Cached`]).
    pub(super) fn cache(
        &self,
        hash: [u8; 32],
        grant: Arc<TokenRow>,
        since: u64,
        now: i64,
    ) -> Cached {
        let mut g = self.write();
        if self.epoch.load(Ordering::SeqCst) != since {
            return Cached::Moved;
        }
        if g.forgotten
            .get(&hash)
            .is_some_and(|at| now - at < FORGOTTEN_MS)
        {
            return Cached::Forgotten;
        }
        if g.by_hash.len() >= MAX_GRANTS {
            g.by_hash.clear();
        }
        g.by_hash.insert(hash, grant);
        Cached::Kept
    }

    /// Drops the grant of the token with `hash` (revoked, or maybe revoked) and keeps it from
    /// being cached again for [`FORGOTTEN_MS`].
    pub(super) fn forget(&self, hash: [u8; 32], now: i64) {
        let mut g = self.write();
        g.by_hash.remove(&hash);
        self.bump(&mut g);
        if g.forgotten.len() >= MAX_GRANTS {
            g.forgotten.retain(|_, at| now - *at < FORGOTTEN_MS);
        }
        g.forgotten.insert(hash, now);
    }

    /// Drops every grant `keep` says no to (another replica changed their org or the operator's
    /// tokens); reads begun before are not cached.
    pub(super) fn retain(&self, keep: impl Fn(&[u8; 32], &TokenRow) -> bool) {
        let mut g = self.write();
        g.by_hash.retain(|h, row| keep(h, row));
        self.bump(&mut g);
    }

    /// Drops the grant of the token with `hash` because it expired: no tombstone needed, an
    /// expired row stays expired.
    pub(super) fn drop_expired(&self, hash: &[u8; 32]) {
        self.write().by_hash.remove(hash);
    }

    /// Records the held grant's last use at `at`, if it is still held.
    pub(super) fn touched(&self, hash: &[u8; 32], at: i64) {
        if let Some(g) = self.write().by_hash.get_mut(hash) {
            Arc::make_mut(g).last_used_at = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Role, TokenId};

    fn row() -> Arc<TokenRow> {
        Arc::new(TokenRow {
            id: TokenId::parse("00000000000000aa").unwrap(),
            org: None,
            role: Role::Service,
            name: "app".into(),
            created_at: 0,
            expires_at: None,
            last_used_at: None,
        })
    }

    #[test]
    fn a_row_read_before_a_revoke_is_not_cached_after_it() {
        let grants = Grants::default();
        let hash = [7; 32];
        // The request reads the epoch, then the row (still there)...
        let since = grants.epoch();
        // ...the revoke commits and forgets the grant (not held yet)...
        grants.forget(hash, 1_000);
        // ...and the request's read may not be cached: it must read again.
        assert_eq!(grants.cache(hash, row(), since, 1_001), Cached::Moved);
        assert!(grants.get(&hash).is_none());
    }

    #[test]
    fn a_forgotten_hash_is_not_cached_again_for_a_while() {
        let grants = Grants::default();
        let hash = [7; 32];
        grants.forget(hash, 1_000);
        // A read begun after the forget, while a dropped revoke's delete may still land.
        let since = grants.epoch();
        assert_eq!(grants.cache(hash, row(), since, 1_001), Cached::Forgotten);
        assert!(grants.get(&hash).is_none());
        assert_eq!(
            grants.cache(hash, row(), since, 1_000 + FORGOTTEN_MS - 1),
            Cached::Forgotten
        );
        // Later, a row still there is a token whose revoke never landed: cached again.
        assert_eq!(
            grants.cache(hash, row(), since, 1_000 + FORGOTTEN_MS),
            Cached::Kept
        );
        assert!(grants.get(&hash).is_some());
        // Other tokens are cached meanwhile.
        let other = [8; 32];
        assert_eq!(grants.cache(other, row(), since, 1_001), Cached::Kept);
    }

    #[test]
    fn dropping_an_orgs_grants_stops_reads_begun_before_from_caching() {
        let grants = Grants::default();
        let (held, reading) = ([1; 32], [2; 32]);
        assert_eq!(grants.cache(held, row(), grants.epoch(), 0), Cached::Kept);
        let since = grants.epoch();
        grants.retain(|_, _| false);
        assert!(grants.get(&held).is_none());
        assert_eq!(grants.cache(reading, row(), since, 0), Cached::Moved);
        assert_eq!(
            grants.cache(reading, row(), grants.epoch(), 0),
            Cached::Kept
        );
    }

    #[test]
    fn a_forgotten_grant_is_not_brought_back_by_its_last_use() {
        let grants = Grants::default();
        let hash = [7; 32];
        assert_eq!(grants.cache(hash, row(), grants.epoch(), 0), Cached::Kept);
        grants.touched(&hash, 5);
        assert_eq!(grants.get(&hash).unwrap().last_used_at, Some(5));
        grants.forget(hash, 10);
        grants.touched(&hash, 11);
        assert!(grants.get(&hash).is_none());
    }
}
