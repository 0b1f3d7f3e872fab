//! The outage grace rule (`byok_core::grace`) driven by a host model over random sequences of
//! requests and KMS answers: whatever the sequence, a stale root never serves after a denial,
//! never past `ttl + grace` after the last successful unwrap, and never for an org without a
//! cache; an unreachable KMS is asked at most once per retry interval while the entry serves in
//! grace; and with grace 0 the answers are exactly those of the plain TTL cache.

use core::time::Duration;

use byok_core::grace::{AfterFailure, CachePolicy, Failure, Freshness, Lookup, MAX_GRACE};
use byok_core::kms::KmsErrorKind;
use proptest::prelude::*;

/// What the KMS answers if it is asked at this step.
#[derive(Clone, Copy, Debug)]
enum Kms {
    Ok,
    Fails(KmsErrorKind),
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Served from a root within its TTL.
    Fresh,
    /// Served from a root past its TTL (grace).
    Stale,
    /// Served from a root the KMS gave back just now.
    Unwrapped,
    /// Refused with the KMS error.
    Refused,
}

/// A host applying the rule to one cached root, as `host-native`'s resolver does.
struct Host {
    p: CachePolicy,
    entry: Option<Freshness>,
}

impl Host {
    /// One request at `now`; `kms` is what the KMS answers if asked. Returns the outcome and
    /// whether the KMS was asked.
    fn request(&mut self, now: Duration, kms: Kms) -> (Outcome, bool) {
        if let Some(f) = self.entry {
            match self.p.lookup(f, now) {
                Lookup::Fresh => return (Outcome::Fresh, false),
                Lookup::Stale => return (Outcome::Stale, false),
                Lookup::Expired => self.entry = None,
                Lookup::Refresh => {}
            }
        }
        let out = match kms {
            Kms::Ok => {
                // Kept only while the policy keeps it (the cache's `put`).
                self.entry = (self.p.keep_until(now) > now).then(|| Freshness::unwrapped(now));
                Outcome::Unwrapped
            }
            Kms::Fails(kind) => match self.p.after_failure(self.entry, kind, now) {
                AfterFailure::Stale { freshness, until } => {
                    assert_eq!(until, self.p.keep_until(freshness.unwrapped_at));
                    self.entry = Some(freshness);
                    Outcome::Stale
                }
                AfterFailure::Evict | AfterFailure::Fail => {
                    self.entry = None;
                    Outcome::Refused
                }
            },
        };
        (out, true)
    }
}

/// The cache before outage grace: a root serves until `ttl` after its unwrap, then the KMS is
/// asked and its error reported.
struct PlainTtl {
    ttl: Duration,
    expires: Option<Duration>,
}

impl PlainTtl {
    fn request(&mut self, now: Duration, kms: Kms) -> (Outcome, bool) {
        match self.expires {
            Some(e) if now < e => return (Outcome::Fresh, false),
            _ => self.expires = None,
        }
        match kms {
            Kms::Ok => {
                self.expires = (!self.ttl.is_zero()).then(|| now + self.ttl);
                (Outcome::Unwrapped, true)
            }
            Kms::Fails(_) => (Outcome::Refused, true),
        }
    }
}

fn kind() -> impl Strategy<Value = KmsErrorKind> {
    use KmsErrorKind as K;
    prop_oneof![
        1 => Just(K::AccessDenied),
        1 => Just(K::KeyDisabled),
        1 => Just(K::KeyNotFound),
        1 => Just(K::KeyPendingDeletion),
        1 => Just(K::InvalidCiphertext),
        1 => Just(K::Malformed),
        4 => Just(K::Unavailable),
        4 => Just(K::Throttled),
    ]
}

fn kms() -> impl Strategy<Value = Kms> {
    prop_oneof![3 => Just(Kms::Ok), 7 => kind().prop_map(Kms::Fails)]
}

fn steps() -> impl Strategy<Value = Vec<(u64, Kms)>> {
    proptest::collection::vec((0u64..1500, kms()), 1..80)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn a_stale_root_serves_only_in_an_outage_within_ttl_plus_grace(
        ttl in prop_oneof![Just(0u64), 1u64..2000],
        grace in prop_oneof![Just(0u64), 1u64..5000],
        retry in 1u64..1500,
        steps in steps(),
    ) {
        let p = CachePolicy { ttl: ms(ttl), grace: ms(grace), retry_every: ms(retry) };
        let mut host = Host { p, entry: None };
        let mut now = Duration::ZERO;
        // What the model saw, independently of the entry the rule keeps.
        let mut last_ok: Option<Duration> = None;
        let mut denied_since_ok = false;
        let mut last_failed_in_grace: Option<Duration> = None;
        let mut last_asked: Option<Kms> = None;
        for (dt, answer) in steps {
            now += ms(dt);
            let in_grace_window = last_ok.is_some_and(|t| now >= t + p.ttl && now < t + p.ttl + p.grace);
            let (out, asked) = host.request(now, answer);
            if asked {
                last_asked = Some(answer);
            }
            if asked && in_grace_window && let Some(t) = last_failed_in_grace {
                prop_assert!(now >= t + p.retry_every,
                    "asked the KMS again {:?} after a failure, retry interval {:?}", now - t, p.retry_every);
            }
            match out {
                Outcome::Fresh => {
                    let t = last_ok.expect("fresh without a successful unwrap");
                    prop_assert!(now < t + p.ttl, "fresh past the TTL");
                    prop_assert!(!denied_since_ok, "served after a denial");
                }
                Outcome::Stale => {
                    let t = last_ok.expect("stale without a successful unwrap");
                    prop_assert!(!p.ttl.is_zero() && !p.grace.is_zero(), "stale without a cache or a grace");
                    prop_assert!(now >= t + p.ttl, "stale within the TTL");
                    prop_assert!(now < t + p.ttl + p.grace, "served past ttl + grace");
                    prop_assert!(!denied_since_ok, "served after a denial");
                    prop_assert!(
                        matches!(last_asked, Some(Kms::Fails(k)) if Failure::of(k) == Failure::Unreachable),
                        "stale, but the KMS last answered {:?}", last_asked
                    );
                }
                Outcome::Unwrapped | Outcome::Refused => prop_assert!(asked),
            }
            if asked {
                match answer {
                    Kms::Ok => {
                        last_ok = Some(now);
                        denied_since_ok = false;
                        last_failed_in_grace = None;
                    }
                    Kms::Fails(k) => {
                        if Failure::of(k) == Failure::Denied {
                            denied_since_ok = true;
                        }
                        if out == Outcome::Stale {
                            last_failed_in_grace = Some(now);
                        } else {
                            // Refused: the entry is gone; the next success starts afresh.
                            last_ok = None;
                            last_failed_in_grace = None;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn grace_zero_answers_exactly_as_the_plain_ttl(
        ttl in prop_oneof![Just(0u64), 1u64..2000],
        retry in 1u64..1500,
        steps in steps(),
    ) {
        let p = CachePolicy { ttl: ms(ttl), grace: Duration::ZERO, retry_every: ms(retry) };
        let mut host = Host { p, entry: None };
        let mut plain = PlainTtl { ttl: ms(ttl), expires: None };
        let mut now = Duration::ZERO;
        for (dt, answer) in steps {
            now += ms(dt);
            prop_assert_eq!(host.request(now, answer), plain.request(now, answer), "at {:?}", now);
        }
    }

    #[test]
    fn a_denial_always_evicts(
        ttl in 0u64..100_000, grace in 0u64..100_000, at in 0u64..10_000, now in 0u64..300_000,
        retry in proptest::option::of(0u64..300_000),
        kind in kind(),
    ) {
        let p = CachePolicy { ttl: ms(ttl), grace: ms(grace), retry_every: ms(1000) };
        let f = Freshness { unwrapped_at: ms(at), retry_at: retry.map(ms) };
        let after = p.after_failure(Some(f), kind, ms(now));
        prop_assert_eq!(after == AfterFailure::Evict, kind.is_denial());
        prop_assert_eq!(after == AfterFailure::Evict, Failure::of(kind) == Failure::Denied);
        // Nothing cached (or evicted while the KMS was asked) never serves.
        let none = p.after_failure(None, kind, ms(now));
        prop_assert!(!matches!(none, AfterFailure::Stale { .. }), "{:?}", none);
    }
}

#[test]
fn the_largest_grace_is_one_day() {
    assert_eq!(MAX_GRACE, Duration::from_secs(24 * 3600));
}
