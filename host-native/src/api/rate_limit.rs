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
//!
//! A request is one unit of work, except where one request carries many: a call that creates or
//! reads stored data keys also pays one request for every [`KEYS_PER_REQUEST`] keys after the
//! first ones ([`RateLimits::charge_keys`]), once its body says how many. A thousand keys cost a
//! hundred requests. Counting only requests let one token make two and a half million keys a
//! second. A call can be paid for from a full bucket at most: under a limit whose burst is
//! smaller than a call's price (below 1000 requests a second, a thousand keys) the call is
//! refused as too big for the limit, naming the most keys one call may carry, rather than
//! charged a full bucket only (which let a token of a 100/s limit make ten thousand keys a
//! second, and one below 20/s make a thousand keys for the price of one request).

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

/// Stored data keys that one request's price covers ([`RateLimits::charge_keys`]): about the
/// work of an encrypt call each ten (key generation or unwrap, the row written or read).
pub const KEYS_PER_REQUEST: usize = 10;

/// What a refused request was refused for, as its message says.
#[derive(Clone, Copy)]
enum Over {
    /// Too many requests.
    Requests,
    /// More stored keys in one request than the bucket holds now ([`KEYS_PER_REQUEST`]).
    Keys,
}

impl Over {
    fn message(self, who: &str, secs: u32) -> String {
        match self {
            Over::Requests => {
                format!("{who} sent more requests than its rate limit allows; retry after {secs} s")
            }
            Over::Keys => format!(
                "{who} asked for more stored data keys than its rate limit allows now (every \
                 {KEYS_PER_REQUEST} count as a request); retry after {secs} s"
            ),
        }
    }
}

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

/// One kind of bucket (per org or per token) and its burst.
struct Buckets<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    burst: NonZeroU32,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(per_second: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(per_second / BURST_DIVISOR).unwrap_or(NonZeroU32::MIN);
        Some(Self {
            limiter: governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            burst,
        })
    }

    /// The most units a call may take beyond its own request's: what a full bucket holds.
    fn most(&self) -> u32 {
        self.burst.get() - 1
    }

    /// Takes `n` units from `key`'s bucket, or none and how long until they are there. `n` is
    /// at most [`Self::most`] (checked by the caller first).
    fn take(&self, key: &K, n: u32, clock: &DefaultClock) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match self.limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(clock.now())),
            // Not reached: `n` is at most the burst less one.
            Err(governor::InsufficientCapacity(_)) => Err(HOLD),
        }
    }
}

/// The limiters.
pub struct RateLimits {
    per_org: Option<Buckets<ScopeId>>,
    per_token: Option<Buckets<[u8; 32]>>,
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
            per_org: Buckets::new(config.per_org),
            per_token: Buckets::new(config.per_token),
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
        if let Some(b) = &self.per_token
            && let Err(not_until) = b.limiter.check_key(token_hash)
        {
            return Err(self.limited(
                "this token",
                Over::Requests,
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        if let (Some(b), Some(org)) = (&self.per_org, org)
            && let Err(not_until) = b.limiter.check_key(&org)
        {
            return Err(self.limited(
                "this org",
                Over::Requests,
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        Ok(())
    }

    /// Charges a call for `keys` stored data keys, already counted as one request at
    /// authentication, for the rest of its work: one more request for every
    /// [`KEYS_PER_REQUEST`] keys after the first ones. Call it once the body is read and
    /// before any key is made or read; a refusal then leaves nothing done. A call more than a
    /// full bucket could pay for is refused (`invalid_request`, naming how many keys one call
    /// may carry), with no units taken and no hold: asking again never helps.
    pub fn charge_keys(
        &self,
        org: Option<ScopeId>,
        token_hash: &[u8; 32],
        keys: usize,
    ) -> Result<(), Refused> {
        let more = keys.div_ceil(KEYS_PER_REQUEST).saturating_sub(1);
        let more = u32::try_from(more).unwrap_or(u32::MAX);
        let tightest = [
            self.per_token.as_ref().map(|b| ("this token", b.most())),
            self.per_org
                .as_ref()
                .filter(|_| org.is_some())
                .map(|b| ("this org", b.most())),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(_, most)| *most);
        if let Some((who, most)) = tightest
            && more > most
        {
            let keys = usize::try_from(most)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
                .saturating_mul(KEYS_PER_REQUEST);
            return Err(Refused {
                answer: ApiError::invalid(format!(
                    "{who}'s rate limit lets one call carry at most {keys} stored data keys \
                     (every {KEYS_PER_REQUEST} count as a request, and one call is paid from \
                     one tenth of a second's budget): split the call"
                )),
                hold: Duration::ZERO,
            });
        }
        if let Some(b) = &self.per_token
            && let Err(wait) = b.take(token_hash, more, &self.clock)
        {
            return Err(self.limited("this token", Over::Keys, wait));
        }
        if let (Some(b), Some(org)) = (&self.per_org, org)
            && let Err(wait) = b.take(&org, more, &self.clock)
        {
            return Err(self.limited("this org", Over::Keys, wait));
        }
        Ok(())
    }

    /// [`Self::charge_keys`] for a handler: a refusal is held back as at authentication, then
    /// answered.
    pub async fn pay_for_keys(
        &self,
        org: ScopeId,
        token_hash: &[u8; 32],
        keys: usize,
    ) -> Result<(), ApiError> {
        if let Err(refused) = self.charge_keys(Some(org), token_hash, keys) {
            tokio::time::sleep(refused.hold).await;
            return Err(refused.answer);
        }
        Ok(())
    }

    /// Forgets buckets that are full again (idle keys), so memory follows active keys only.
    pub fn forget_idle(&self) {
        if let Some(b) = &self.per_org {
            b.limiter.retain_recent();
        }
        if let Some(b) = &self.per_token {
            b.limiter.retain_recent();
        }
    }
}

impl RateLimits {
    /// A refusal of `who`'s request, over its limit by `over`.
    fn limited(&self, who: &str, over: Over, wait: Duration) -> Refused {
        // Whole seconds, rounded up, at least one: what `Retry-After` can say.
        let secs = u32::try_from(wait.as_millis().div_ceil(1000))
            .unwrap_or(u32::MAX)
            .max(1);
        Refused {
            answer: ApiError::new(ApiCode::RateLimited, over.message(who, secs)).retry_after(secs),
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

    /// A call for stored keys pays one request per ten keys after the first ten: ten keys cost
    /// nothing more, forty keys three more, fifty empty a full bucket (of five). A call the
    /// bucket cannot pay for now takes nothing from it; one that no full bucket could pay for
    /// is refused for good, naming the most keys a call may carry, and takes nothing either.
    #[test]
    fn a_call_for_many_stored_keys_pays_for_every_ten() {
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 0,
            per_token: 50,
        });
        let org = Some(ScopeId::from_bytes([1; 16]));
        // A burst of five; one unit comes back every 20 ms.
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        for _ in 0..5 {
            limits.check(org, &a).unwrap();
            limits.charge_keys(org, &a, 10).unwrap();
        }
        assert!(
            limits.check(org, &a).is_err(),
            "ten keys cost more than one"
        );
        limits.check(org, &b).unwrap();
        limits.charge_keys(org, &b, 40).unwrap();
        limits.check(org, &b).unwrap();
        assert!(
            limits.check(org, &b).is_err(),
            "forty keys cost other than four"
        );
        limits.check(org, &c).unwrap();
        limits.charge_keys(org, &c, 50).unwrap();
        let refused = limits.check(org, &c).unwrap_err();
        assert_eq!(refused.answer.code, ApiCode::RateLimited);
        // Not a full bucket: fifty keys are refused for now, and nothing is taken.
        let d = [4u8; 32];
        limits.check(org, &d).unwrap();
        limits.check(org, &d).unwrap();
        let refused = limits.charge_keys(org, &d, 50).unwrap_err();
        assert_eq!(refused.answer.code, ApiCode::RateLimited);
        assert_eq!(refused.answer.retry_after_secs(), Some(1));
        assert_eq!(
            refused.answer.message,
            "this token asked for more stored data keys than its rate limit allows now (every 10 \
             count as a request); retry after 1 s"
        );
        for _ in 0..3 {
            limits.check(org, &d).unwrap();
        }
        // More than a full bucket holds: refused for good, at once, and nothing is taken.
        let e = [5u8; 32];
        limits.check(org, &e).unwrap();
        let refused = limits.charge_keys(org, &e, 51).unwrap_err();
        assert_eq!(refused.answer.code, ApiCode::InvalidRequest);
        assert_eq!(refused.answer.retry_after_secs(), None);
        assert_eq!(refused.hold, Duration::ZERO);
        assert_eq!(
            refused.answer.message,
            "this token's rate limit lets one call carry at most 50 stored data keys (every 10 \
             count as a request, and one call is paid from one tenth of a second's budget): \
             split the call"
        );
        for _ in 0..4 {
            limits.check(org, &e).unwrap();
        }
    }

    /// The tightest limit decides how many keys a call may carry: the org's here; and under a
    /// limit below 20 a second (a burst of one), ten keys, the price of the request itself.
    /// Before, such a call paid a full bucket at most: a thousand keys for one request.
    #[test]
    fn a_call_carries_no_more_keys_than_the_tightest_bucket_holds() {
        let org = Some(ScopeId::from_bytes([1; 16]));
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 100,
            per_token: 2500,
        });
        limits.charge_keys(org, &[1; 32], 100).unwrap();
        let refused = limits.charge_keys(org, &[2; 32], 101).unwrap_err();
        assert!(
            refused
                .answer
                .message
                .starts_with("this org's rate limit lets one call carry at most 100 "),
            "{}",
            refused.answer.message
        );
        let slow = RateLimits::new(RateLimitConfig {
            per_org: 0,
            per_token: 10,
        });
        slow.check(org, &[3; 32]).unwrap();
        slow.charge_keys(org, &[3; 32], 10).unwrap();
        let refused = slow.charge_keys(org, &[3; 32], 11).unwrap_err();
        assert_eq!(refused.answer.code, ApiCode::InvalidRequest);
        assert!(refused.answer.message.contains("at most 10 "));
    }

    /// An org's bucket pays for its tokens' keys too.
    #[test]
    fn an_org_pays_for_its_tokens_keys() {
        let limits = RateLimits::new(RateLimitConfig {
            per_org: 50,
            per_token: 0,
        });
        let org = Some(ScopeId::from_bytes([1; 16]));
        limits.check(org, &[1; 32]).unwrap();
        limits.charge_keys(org, &[1; 32], 50).unwrap();
        let refused = limits.check(org, &[2; 32]).unwrap_err();
        assert_eq!(refused.answer.code, ApiCode::RateLimited);
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
