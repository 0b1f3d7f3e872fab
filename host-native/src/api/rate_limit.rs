//! Per-org and per-token rate limits: one noisy org (or one runaway client of an org) gets
//! `429 rate_limited` with `Retry-After`, and the others keep their latency.
//!
//! GCRA buckets (`governor`), keyed by org id and by token hash, checked right after the token
//! is authenticated: before any key is touched or any body is read. A burst of a tenth of a
//! second's worth is allowed ([`BURST_DIVISOR`]): a whole second's budget let through at once
//! is a burst that the other orgs' requests queue behind. A limit of 0 turns that limit off.
//!
//! A refusal is cheap, but a client that ignores `Retry-After` and asks again at once would
//! still spend the server's CPU at full speed (measured: the other org's p99 went up 3.6x, and
//! holding each 429 only until the bucket had room, a fraction of a millisecond at these rates,
//! changed nothing). So every 429 is held back for about [`HOLD`] before it is sent: each of the
//! noisy client's connections then costs one refusal a second, and a client that waits as
//! `Retry-After` tells it loses nothing it would not have waited anyway. The hold is spread
//! uniformly over [`HOLD`] ± half of it, so that refused connections do not all come back in
//! the same instant (measured: with a fixed hold the flood returned in step each second and the
//! other org's p99 went up 4.8x).

use std::num::NonZeroU32;
use std::time::Duration;

use byok_core::{ApiCode, ScopeId};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::error::ApiError;

/// How long a 429 is held back before it is sent, on average (see [`hold`]).
pub const HOLD: Duration = Duration::from_secs(1);

/// The burst allowed is the per-second rate divided by this (at least 1).
pub const BURST_DIVISOR: u32 = 10;

/// A refusal: the answer, and how long to hold it back.
#[derive(Debug)]
pub struct Refused {
    /// The 429.
    pub answer: ApiError,
    /// Drawn by [`hold`].
    pub hold: Duration,
}

/// Requests per second allowed, per org and per token (0 = no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Per org, all its tokens together.
    pub per_org: u32,
    /// Per token.
    pub per_token: u32,
}

/// The limiters.
pub struct RateLimits {
    per_org: Option<DefaultKeyedRateLimiter<ScopeId>>,
    per_token: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    clock: DefaultClock,
    /// The longest a refusal is held ([`Self::holding_at_most`]).
    hold_cap: Duration,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_org", &self.per_org.is_some())
            .field("per_token", &self.per_token.is_some())
            .finish()
    }
}

fn quota(per_second: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second / BURST_DIVISOR).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// A hold drawn uniformly from [`HOLD`] / 2 to [`HOLD`] * 3 / 2, in whole milliseconds.
pub fn hold() -> Duration {
    let ms = u64::try_from(HOLD.as_millis()).unwrap_or(u64::MAX);
    let jitter = rand_core::Rng::next_u64(&mut rand::rng()) % (ms + 1);
    Duration::from_millis(ms / 2 + jitter)
}

impl RateLimits {
    /// Limiters for `config`.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            per_org: quota(config.per_org).map(governor::RateLimiter::keyed),
            per_token: quota(config.per_token).map(governor::RateLimiter::keyed),
            clock: DefaultClock::default(),
            hold_cap: HOLD * 3 / 2,
        }
    }

    /// Holds a refusal at most `cap`: half the request deadline, so that a 429 held back
    /// reaches the client as a 429 with its `Retry-After`, not as a `408 request_timeout`
    /// (which says to retry at once, undoing the limit).
    #[must_use]
    pub fn holding_at_most(mut self, cap: Duration) -> Self {
        self.hold_cap = cap;
        self
    }

    /// Counts one request by the token with hash `token_hash` (of org `org`, if any); refuses
    /// it when either bucket is empty, saying when to retry.
    pub fn check(&self, org: Option<ScopeId>, token_hash: &[u8; 32]) -> Result<(), Refused> {
        if let Some(limiter) = &self.per_token
            && let Err(not_until) = limiter.check_key(token_hash)
        {
            return Err(self.limited("this token", not_until.wait_time_from(self.clock.now())));
        }
        if let (Some(limiter), Some(org)) = (&self.per_org, org)
            && let Err(not_until) = limiter.check_key(&org)
        {
            return Err(self.limited("this org", not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    /// Forgets buckets that are full again (idle keys), so memory follows active keys only.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_org {
            l.retain_recent();
        }
        if let Some(l) = &self.per_token {
            l.retain_recent();
        }
    }
}

impl RateLimits {
    fn limited(&self, who: &str, wait: Duration) -> Refused {
        // Whole seconds, rounded up, at least one: what `Retry-After` can say.
        let secs = u32::try_from(wait.as_millis().div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        Refused {
            answer: ApiError::new(
                ApiCode::RateLimited,
                format!(
                    "{who} sent more requests than its rate limit allows; retry after {secs} s"
                ),
            )
            .retry_after(secs),
            hold: hold().min(self.hold_cap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_past_its_burst_is_refused_and_others_are_not() {
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 0,
            per_token: 50,
        });
        let (a, b) = ([1u8; 32], [2u8; 32]);
        // The burst is a tenth of the per-second rate.
        for _ in 0..5 {
            limits.check(None, &a).unwrap();
        }
        let err = limits.check(None, &a).unwrap_err();
        assert_eq!(err.answer.code, ApiCode::RateLimited);
        assert_eq!(err.answer.retry_after_secs(), Some(1));
        assert!(err.hold >= HOLD / 2 && err.hold <= HOLD * 3 / 2);
        limits.check(None, &b).unwrap();
    }

    #[test]
    fn holds_are_spread_around_one_second() {
        let holds: Vec<Duration> = (0..200).map(|_| hold()).collect();
        assert!(holds.iter().all(|h| *h >= HOLD / 2 && *h <= HOLD * 3 / 2));
        // Not all in step: 200 draws over 1001 values hit at least 100 distinct ones.
        let mut distinct = holds.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 100, "{} distinct holds", distinct.len());
        assert!(holds.iter().any(|h| *h < HOLD) && holds.iter().any(|h| *h > HOLD));
    }

    /// With a short request deadline, a refusal is held at most half of it: it still reaches
    /// the client as a 429.
    #[test]
    fn a_refusal_is_held_within_the_request_deadline() {
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 0,
            per_token: 1,
        })
        .holding_at_most(Duration::from_millis(250));
        limits.check(None, &[2; 32]).unwrap();
        for _ in 0..20 {
            let refused = limits.check(None, &[2; 32]).unwrap_err();
            assert!(
                refused.hold <= Duration::from_millis(250),
                "{:?}",
                refused.hold
            );
        }
    }

    #[test]
    fn small_rates_still_allow_one_request() {
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 0,
            per_token: 3,
        });
        limits.check(None, &[1; 32]).unwrap();
        let refused = limits.check(None, &[1; 32]).unwrap_err();
        assert_eq!(refused.answer.code, ApiCode::RateLimited);
    }

    #[test]
    fn an_org_limit_covers_all_its_tokens() {
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 40,
            per_token: 0,
        });
        let (org, other) = (ScopeId::from_bytes([1; 16]), ScopeId::from_bytes([2; 16]));
        for t in 0..4u8 {
            limits.check(Some(org), &[t; 32]).unwrap();
        }
        let err = limits.check(Some(org), &[9; 32]).unwrap_err();
        assert_eq!(err.answer.code, ApiCode::RateLimited);
        limits.check(Some(other), &[9; 32]).unwrap();
    }

    #[test]
    fn zero_is_no_limit() {
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 0,
            per_token: 0,
        });
        for _ in 0..10_000 {
            limits
                .check(Some(ScopeId::from_bytes([1; 16])), &[1; 32])
                .unwrap();
        }
    }
}
