//! When to retry a failed call, and how long to wait: exponential backoff with full jitter under
//! an overall deadline. Pure logic: the host measures elapsed time, sleeps, and asks again.
//!
//! The answer depends only on whether the error is transient, the attempt number, the time
//! already spent, and the RNG (full jitter, after "Exponential Backoff And Jitter", AWS
//! Architecture Blog, 2015: sleep = random(0, min(cap, base * 2^attempt))).

use core::time::Duration;

use rand_core::Rng;

/// A retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Backoff before jitter for the first retry.
    pub base: Duration,
    /// Largest backoff before jitter.
    pub cap: Duration,
    /// No retry starts, and no sleep is planned, past this much total time.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 50 ms base, 2 s cap, 10 s deadline: a throttled KMS gets room, a caller waits
    /// at most seconds.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            deadline: Duration::from_secs(10),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Sleep this long, then try again.
    After(Duration),
    /// Report the error.
    GiveUp,
}

impl RetryPolicy {
    /// Decides after attempt number `attempt` (1 for the first) failed, `elapsed` after the
    /// first attempt started. Only `transient` errors (throttling, unavailability) are retried.
    pub fn decide(
        &self,
        transient: bool,
        attempt: u32,
        elapsed: Duration,
        rng: &mut impl Rng,
    ) -> RetryDecision {
        self.decide_after(transient, attempt, elapsed, None, rng)
    }

    /// As [`Self::decide`], when the service said how long to wait (`Retry-After`): never
    /// sooner than that, and not at all if that wait would overrun the deadline.
    pub fn decide_after(
        &self,
        transient: bool,
        attempt: u32,
        elapsed: Duration,
        asked: Option<Duration>,
        rng: &mut impl Rng,
    ) -> RetryDecision {
        if !transient || attempt >= self.max_attempts {
            return RetryDecision::GiveUp;
        }
        let exp = attempt.saturating_sub(1).min(31);
        let ceiling = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(if nanos == 0 {
            0
        } else {
            rng.next_u64() % (nanos + 1)
        });
        let sleep = jittered.max(asked.unwrap_or_default());
        match elapsed.checked_add(sleep) {
            Some(t) if t < self.deadline => RetryDecision::After(sleep),
            _ => RetryDecision::GiveUp,
        }
    }
}

#[cfg(all(test, feature = "dev"))]
mod tests {
    use super::*;
    use crate::dev::TestRng;

    #[test]
    fn permanent_errors_never_retry() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.decide(false, 1, Duration::ZERO, &mut TestRng::seeded(1)),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::default();
        let mut rng = TestRng::seeded(2);
        assert!(matches!(
            p.decide(true, 3, Duration::ZERO, &mut rng),
            RetryDecision::After(_)
        ));
        assert_eq!(
            p.decide(true, 4, Duration::ZERO, &mut rng),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling_and_varies() {
        let p = RetryPolicy {
            max_attempts: 100,
            cap: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let mut rng = TestRng::seeded(3);
        for attempt in 1..10u32 {
            let ceiling = (p.base * (1 << (attempt - 1))).min(p.cap);
            let mut seen = alloc::collections::BTreeSet::new();
            for _ in 0..200 {
                let RetryDecision::After(d) = p.decide(true, attempt, Duration::ZERO, &mut rng)
                else {
                    panic!("should retry")
                };
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                seen.insert(d);
            }
            assert!(seen.len() > 150, "jitter is random");
        }
    }

    #[test]
    fn the_deadline_is_never_overrun() {
        let p = RetryPolicy {
            max_attempts: 100,
            ..RetryPolicy::default()
        };
        let mut rng = TestRng::seeded(4);
        for elapsed_ms in [0u64, 5_000, 9_000, 9_990, 10_000, 60_000] {
            let elapsed = Duration::from_millis(elapsed_ms);
            for attempt in 1..20 {
                if let RetryDecision::After(d) = p.decide(true, attempt, elapsed, &mut rng) {
                    assert!(elapsed + d < p.deadline);
                }
            }
        }
        assert_eq!(
            p.decide(true, 1, p.deadline, &mut rng),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn a_services_retry_after_is_a_floor_within_the_deadline() {
        let p = RetryPolicy::default();
        let mut rng = TestRng::seeded(7);
        for _ in 0..100 {
            match p.decide_after(
                true,
                1,
                Duration::ZERO,
                Some(Duration::from_secs(2)),
                &mut rng,
            ) {
                RetryDecision::After(d) => assert!(d >= Duration::from_secs(2), "{d:?}"),
                RetryDecision::GiveUp => panic!("2 s fits in the deadline"),
            }
        }
        // A wait past the deadline is not made: the caller hears Throttled now.
        assert_eq!(
            p.decide_after(
                true,
                1,
                Duration::from_secs(5),
                Some(Duration::from_secs(6)),
                &mut rng
            ),
            RetryDecision::GiveUp
        );
    }
}
