//! Outage grace: whether an unwrapped root key that outlived its cache TTL may still be used
//! while its key holder (the customer's KMS) cannot be reached.
//!
//! A KMS that is *unreachable* (timeouts, connection errors, 5xx, throttling past the retries)
//! is not a customer who *withdrew* (access denied, key disabled, deleted or pending deletion,
//! a copy the key no longer opens). An org may choose a grace window (`grace`, default 0)
//! during which a root it unwrapped successfully keeps serving past its TTL while refreshing it
//! fails as unreachable; never after a denial, never past `ttl + grace` after the last
//! successful unwrap, and never for an org that caches nothing (`ttl` 0). With `grace` 0 the
//! rule is the plain TTL.
//!
//! The host keeps a [`Freshness`] beside each cached root, asks [`CachePolicy::lookup`] before
//! using it, and [`CachePolicy::after_failure`] when a refresh failed. Time is passed in (any
//! monotonic clock of the host's, the same for every call), so a server and a browser share
//! the rule. What the rule cannot see is the host's duty: a pause, revoke, key change or a
//! denial from any other call evicts the entry, and an evicted entry is never served again.

use core::fmt;
use core::time::Duration;

use crate::kms::KmsErrorKind;

/// The longest grace an org may choose: one day.
pub const MAX_GRACE: Duration = Duration::from_secs(86_400);

/// How often, by default, a host tries an unreachable KMS again while it serves in grace: not
/// on every request, so an outage is not made worse by byok's own traffic.
pub const DEFAULT_RETRY_EVERY: Duration = Duration::from_secs(5);

/// What a failed unwrap says, for this rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The customer withdrew, or the key no longer opens the copy: access denied, key
    /// disabled, not found, pending deletion, invalid ciphertext. Evict at once; no grace.
    Denied,
    /// The KMS could not be reached, or throttled, after the retries: an outage.
    Unreachable,
    /// Anything else (the KMS refused byok's own request as malformed): not an outage and not
    /// a withdrawal; the error is reported and nothing stale is served.
    Other,
}

impl Failure {
    /// The class of a KMS error kind.
    pub const fn of(kind: KmsErrorKind) -> Self {
        match kind {
            KmsErrorKind::AccessDenied
            | KmsErrorKind::KeyDisabled
            | KmsErrorKind::KeyNotFound
            | KmsErrorKind::KeyPendingDeletion
            | KmsErrorKind::InvalidCiphertext => Self::Denied,
            KmsErrorKind::Throttled | KmsErrorKind::Unavailable => Self::Unreachable,
            KmsErrorKind::Malformed | KmsErrorKind::Unconfigured => Self::Other,
        }
    }
}

/// What the host keeps beside a cached root key for this rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// When the key holder last gave this root back (a successful unwrap).
    pub unwrapped_at: Duration,
    /// Set after a refresh failed as unreachable: no new attempt before this time.
    pub retry_at: Option<Duration>,
}

impl Freshness {
    /// A root unwrapped successfully at `now`.
    pub const fn unwrapped(now: Duration) -> Self {
        Self {
            unwrapped_at: now,
            retry_at: None,
        }
    }
}

/// What to do with a cached root before using it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Within the TTL: use it.
    Fresh,
    /// Past the TTL: ask the key holder again; if that fails, ask
    /// [`CachePolicy::after_failure`].
    Refresh,
    /// Past the TTL, in grace, and a refresh failed as unreachable less than `retry_every` ago:
    /// use it without asking the KMS now.
    Stale,
    /// Past the TTL and any grace: drop it, then ask the key holder; nothing to fall back on.
    Expired,
}

/// What to do after a refresh of a cached root failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// An outage, in grace: keep and use the entry with this freshness (its next attempt
    /// is at `retry_at`); it may serve until `until` at most.
    Stale {
        /// The entry's freshness from now on.
        freshness: Freshness,
        /// The end of its grace: `unwrapped_at + ttl + grace`.
        until: Duration,
    },
    /// A denial: drop every cached key of the org at once and end any grace.
    Evict,
    /// Report the error; drop this entry (nothing to serve, or not an outage).
    Fail,
}

/// Why a grace setting is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraceError {
    /// Longer than [`MAX_GRACE`].
    TooLong,
    /// A grace for an org that caches nothing (`ttl` 0): no key is kept to serve from.
    NoCache,
}

impl fmt::Display for GraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(
                f,
                "outage_grace_ms is at most {} (one day)",
                MAX_GRACE.as_millis()
            ),
            Self::NoCache => f.write_str(
                "outage_grace_ms needs a cache: this org's unwrap_cache_ttl_ms is 0, so no key is kept to serve during an outage",
            ),
        }
    }
}

impl core::error::Error for GraceError {}

/// An org's cache policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long an unwrapped root serves without asking its key holder again (0: never kept).
    pub ttl: Duration,
    /// How long past `ttl` it may still serve while refreshing it fails as unreachable
    /// (0: not at all, the plain TTL).
    pub grace: Duration,
    /// While in grace, at most one refresh attempt per this interval.
    pub retry_every: Duration,
}

impl CachePolicy {
    /// Checks a grace setting for an org with cache TTL `ttl`.
    pub fn check_grace(ttl: Duration, grace: Duration) -> Result<(), GraceError> {
        if grace > MAX_GRACE {
            Err(GraceError::TooLong)
        } else if !grace.is_zero() && ttl.is_zero() {
            Err(GraceError::NoCache)
        } else {
            Ok(())
        }
    }

    /// The end of the TTL of a root unwrapped at `unwrapped_at`.
    pub fn fresh_until(&self, unwrapped_at: Duration) -> Duration {
        unwrapped_at.saturating_add(self.ttl)
    }

    /// How long a root unwrapped at `unwrapped_at` may be kept at all: its TTL plus the grace
    /// (nothing is kept when the TTL is 0, whatever the grace).
    pub fn keep_until(&self, unwrapped_at: Duration) -> Duration {
        if self.ttl.is_zero() {
            unwrapped_at
        } else {
            self.fresh_until(unwrapped_at).saturating_add(self.grace)
        }
    }

    /// Whether a root unwrapped at `unwrapped_at` is within its TTL at `now`.
    pub fn is_fresh(&self, unwrapped_at: Duration, now: Duration) -> bool {
        now < self.fresh_until(unwrapped_at)
    }

    /// Whether a root of freshness `f` may still serve at `now`: within its TTL, or past it in
    /// outage grace (a refresh failed as unreachable) until TTL + grace. Never with TTL 0.
    pub fn may_serve(&self, f: Freshness, now: Duration) -> bool {
        !self.ttl.is_zero()
            && (self.is_fresh(f.unwrapped_at, now)
                || (f.retry_at.is_some() && now < self.keep_until(f.unwrapped_at)))
    }

    /// Whether a root of freshness `f`, just resolved for a call, may still be used by that call
    /// at `now`. Between the key holder's answer and the key's use come waits for the store
    /// (the unwrap's audit write, the token's row, a usage mark), seconds at worst: a use after
    /// the root may no longer serve ([`Self::may_serve`]) would reach past the TTL the
    /// withdrawal bound is stated in, so the host asks the holder again instead. With TTL 0
    /// nothing is kept: every key a call holds is its own holder's answer, and that call is the
    /// one use it was asked for.
    pub fn may_use(&self, f: Freshness, now: Duration) -> bool {
        self.ttl.is_zero() || self.may_serve(f, now)
    }

    /// When a lease of keys that come from a root of freshness `root` must end, for a lease
    /// asked at `now` that may last `lease_ttl`: never after the root itself may serve, so
    /// that an edge holds no key the server would no longer hold.
    /// - Within the root's TTL: the TTL's end. A withdrawal at the key holder (CMK disabled,
    ///   grant removed) is seen at the first unwrap after the TTL, and the lease is then renewed
    ///   through that unwrap, or refused. So the withdrawal bound at an edge is the TTL, as on
    ///   the server, not the TTL plus a lease TTL.
    /// - In outage grace (past the TTL, and a refresh failed as unreachable: `retry_at` set):
    ///   the grace's end.
    ///
    /// `None` when no lease can be given: the policy keeps no root (TTL 0, so every use must
    /// ask the key holder, which an edge cannot); the root may not serve at `now`; or its TTL
    /// has passed and no refresh has failed yet. That root is merely not asked again yet (a
    /// lease that resolved its keys just before the TTL's end, then waited): its key holder
    /// must answer first, or a withdrawal there would reach edges a lease TTL late.
    pub fn lease_until(
        &self,
        root: Freshness,
        now: Duration,
        lease_ttl: Duration,
    ) -> Option<Duration> {
        if self.ttl.is_zero() {
            return None;
        }
        if !self.may_serve(root, now) {
            return None;
        }
        let root_ends = if self.is_fresh(root.unwrapped_at, now) {
            self.fresh_until(root.unwrapped_at)
        } else {
            self.keep_until(root.unwrapped_at)
        };
        Some(root_ends.min(now.saturating_add(lease_ttl)))
    }

    /// What to do at `now` with a cached root of freshness `f`.
    pub fn lookup(&self, f: Freshness, now: Duration) -> Lookup {
        if self.is_fresh(f.unwrapped_at, now) {
            Lookup::Fresh
        } else if now >= self.keep_until(f.unwrapped_at) {
            Lookup::Expired
        } else if f.retry_at.is_some_and(|t| now < t) {
            Lookup::Stale
        } else {
            Lookup::Refresh
        }
    }

    /// What to do at `now` after refreshing a cached root failed with `kind` (after the
    /// retries). `cached` is the entry as it is now (`None` if there is none, or it was
    /// evicted while the KMS was asked: an evicted entry is never served again).
    pub fn after_failure(
        &self,
        cached: Option<Freshness>,
        kind: KmsErrorKind,
        now: Duration,
    ) -> AfterFailure {
        match (Failure::of(kind), cached) {
            (Failure::Denied, _) => AfterFailure::Evict,
            (Failure::Unreachable, Some(f)) if now < self.keep_until(f.unwrapped_at) => {
                AfterFailure::Stale {
                    freshness: Freshness {
                        unwrapped_at: f.unwrapped_at,
                        retry_at: Some(now.saturating_add(self.retry_every)),
                    },
                    until: self.keep_until(f.unwrapped_at),
                }
            }
            _ => AfterFailure::Fail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy(ttl: u64, grace: u64) -> CachePolicy {
        CachePolicy {
            ttl: S(ttl),
            grace: S(grace),
            retry_every: S(5),
        }
    }

    #[test]
    fn every_kind_has_a_class() {
        use KmsErrorKind as K;
        for (k, want) in [
            (K::AccessDenied, Failure::Denied),
            (K::KeyDisabled, Failure::Denied),
            (K::KeyNotFound, Failure::Denied),
            (K::KeyPendingDeletion, Failure::Denied),
            (K::InvalidCiphertext, Failure::Denied),
            (K::Throttled, Failure::Unreachable),
            (K::Unavailable, Failure::Unreachable),
            (K::Malformed, Failure::Other),
        ] {
            assert_eq!(Failure::of(k), want, "{k:?}");
            assert_eq!(k.is_transient(), want == Failure::Unreachable, "{k:?}");
        }
    }

    #[test]
    fn a_walk_through_an_outage() {
        let p = policy(60, 600);
        let f = Freshness::unwrapped(S(100));
        assert_eq!(p.lookup(f, S(159)), Lookup::Fresh);
        assert_eq!(p.lookup(f, S(160)), Lookup::Refresh);
        // The refresh at 160 failed as unreachable: serve, and wait 5 s before asking again.
        let AfterFailure::Stale { freshness, until } =
            p.after_failure(Some(f), KmsErrorKind::Unavailable, S(160))
        else {
            panic!("an outage in grace serves")
        };
        assert_eq!((freshness.retry_at, until), (Some(S(165)), S(760)));
        assert_eq!(p.lookup(freshness, S(164)), Lookup::Stale);
        assert_eq!(p.lookup(freshness, S(165)), Lookup::Refresh);
        // A denial at any point evicts.
        assert_eq!(
            p.after_failure(Some(freshness), KmsErrorKind::KeyDisabled, S(165)),
            AfterFailure::Evict
        );
        // Past ttl + grace: expired, and a failure then serves nothing.
        assert_eq!(p.lookup(freshness, S(760)), Lookup::Expired);
        assert_eq!(
            p.after_failure(Some(freshness), KmsErrorKind::Unavailable, S(760)),
            AfterFailure::Fail
        );
        // Not an outage, not a withdrawal: fail, no grace.
        assert_eq!(
            p.after_failure(Some(f), KmsErrorKind::Malformed, S(200)),
            AfterFailure::Fail
        );
        // Nothing cached (or evicted meanwhile): nothing to serve.
        assert_eq!(
            p.after_failure(None, KmsErrorKind::Unavailable, S(200)),
            AfterFailure::Fail
        );
    }

    #[test]
    fn a_lease_never_outlives_its_root() {
        let p = policy(60, 600);
        let lease = S(30);
        let fresh = Freshness::unwrapped(S(100));
        let in_grace = Freshness {
            unwrapped_at: S(100),
            retry_at: Some(S(170)),
        };
        // Fresh, far from the TTL's end: the lease TTL.
        assert_eq!(p.lease_until(fresh, S(100), lease), Some(S(130)));
        // Fresh, near the end: cut at the TTL's end, not the grace's.
        assert_eq!(p.lease_until(fresh, S(150), lease), Some(S(160)));
        // Past the TTL with no refresh failed yet: the key holder must answer first.
        assert_eq!(p.lease_until(fresh, S(160), lease), None);
        assert_eq!(p.lease_until(fresh, S(700), lease), None);
        // Served in grace (a refresh failed as unreachable): cut at the grace's end.
        assert_eq!(p.lease_until(in_grace, S(750), lease), Some(S(760)));
        assert_eq!(p.lease_until(in_grace, S(700), lease), Some(S(730)));
        // Past everything, or no cache at all: no lease.
        assert_eq!(p.lease_until(in_grace, S(760), lease), None);
        assert_eq!(policy(0, 0).lease_until(fresh, S(100), lease), None);
    }

    #[test]
    fn a_root_serves_within_its_ttl_or_its_grace_and_a_call_uses_its_own_answer() {
        let p = policy(60, 600);
        let fresh = Freshness::unwrapped(S(100));
        let in_grace = Freshness {
            unwrapped_at: S(100),
            retry_at: Some(S(170)),
        };
        assert!(p.may_serve(fresh, S(159)) && p.may_use(fresh, S(159)));
        // Past the TTL, no refresh failed: the key holder must answer again before a use.
        assert!(!p.may_serve(fresh, S(160)) && !p.may_use(fresh, S(160)));
        // In grace: up to TTL + grace, retry due or not.
        assert!(p.may_serve(in_grace, S(759)) && p.may_use(in_grace, S(200)));
        assert!(!p.may_serve(in_grace, S(760)) && !p.may_use(in_grace, S(760)));
        // No cache: nothing serves from it, but a call uses the answer it asked for.
        let none = policy(0, 0);
        assert!(!none.may_serve(fresh, S(100)));
        assert!(none.may_use(fresh, S(100)) && none.may_use(fresh, S(10_000)));
    }

    proptest::proptest! {
        #[test]
        fn leases_end_by_the_root_and_the_lease_ttl(
            ttl in 0u64..1_000, grace in 0u64..1_000, at in 0u64..10_000,
            after in 0u64..3_000, lease in 0u64..1_000, failed in proptest::bool::ANY,
        ) {
            let p = policy(ttl, grace);
            let now = S(at + after);
            let root = Freshness { unwrapped_at: S(at), retry_at: failed.then_some(S(at + ttl)) };
            if let Some(end) = p.lease_until(root, now, S(lease)) {
                proptest::prop_assert!(end <= now + S(lease));
                proptest::prop_assert!(end <= p.keep_until(S(at)));
                if !failed {
                    proptest::prop_assert!(end <= p.fresh_until(S(at)));
                }
                if p.is_fresh(S(at), now) {
                    proptest::prop_assert!(end <= p.fresh_until(S(at)));
                }
                proptest::prop_assert!(ttl > 0);
            } else {
                proptest::prop_assert!(
                    ttl == 0 || now >= p.keep_until(S(at)) || (!failed && !p.is_fresh(S(at), now))
                );
            }
        }
    }

    #[test]
    fn grace_zero_is_the_plain_ttl() {
        let p = policy(60, 0);
        let f = Freshness::unwrapped(S(0));
        assert_eq!(p.lookup(f, S(59)), Lookup::Fresh);
        assert_eq!(p.lookup(f, S(60)), Lookup::Expired);
        assert_eq!(
            p.after_failure(Some(f), KmsErrorKind::Unavailable, S(60)),
            AfterFailure::Fail
        );
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(CachePolicy::check_grace(S(60), S(0)), Ok(()));
        assert_eq!(CachePolicy::check_grace(S(60), MAX_GRACE), Ok(()));
        assert_eq!(
            CachePolicy::check_grace(S(60), MAX_GRACE + Duration::from_millis(1)),
            Err(GraceError::TooLong)
        );
        assert_eq!(
            CachePolicy::check_grace(S(0), S(1)),
            Err(GraceError::NoCache)
        );
        assert_eq!(CachePolicy::check_grace(S(0), S(0)), Ok(()));
    }
}
