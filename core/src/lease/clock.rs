//! The edge's clock for leases: wall time that never runs back and never runs slower than the
//! host's monotonic clock.
//!
//! A lease ends at `arrival + ttl_ms` on the edge's clock (and at the server's `expires_at`).
//! On the wall clock alone, a host clock stepped back by Δ after the lease arrived (NTP
//! correcting a clock that ran ahead, someone setting the time) keeps the lease Δ longer than
//! its TTL. On a monotonic clock alone, a host that sleeps (a laptop lid) may pause it, and the
//! lease outlives its TTL by the sleep. [`SteadyWall`] reads both and moves by whichever moved
//! more since the last reading: it never goes back, it keeps up with the monotonic clock through
//! a wall step back, and with the wall clock through a pause of the monotonic one. So a lease
//! ends no later than its TTL on either clock. Its readings are wall time (ms since the epoch),
//! comparable with the server's `expires_at`, and never behind the wall clock.

/// A reading of wall time that never runs back (see the module docs). Hosts keep one and read
/// it with [`SteadyWall::now`] for every lease decision.
#[derive(Clone, Copy, Debug, Default)]
pub struct SteadyWall {
    /// A reading and the monotonic time it was taken at: later readings count from it (not
    /// from the last one, whose fractions of a ms would be lost at every step).
    base: Option<(i64, f64)>,
    last: i64,
}

impl SteadyWall {
    /// The time now, from the host's wall clock (`wall_ms`, ms since the epoch) and its
    /// monotonic clock (`mono_ms`, ms from any origin, e.g. `performance.now()`).
    pub fn now(&mut self, wall_ms: i64, mono_ms: f64) -> i64 {
        let t = match self.base {
            Some((at, at_mono)) => {
                // Whole ms the monotonic clock moved since the base (none if it went back).
                #[allow(clippy::cast_possible_truncation)]
                let moved = (mono_ms - at_mono).max(0.0) as i64;
                let steady = at.saturating_add(moved);
                if wall_ms > steady {
                    // The wall clock moved further (the monotonic one paused in a sleep).
                    self.base = Some((wall_ms, mono_ms));
                    wall_ms
                } else {
                    steady
                }
            }
            None => {
                self.base = Some((wall_ms, mono_ms));
                wall_ms
            }
        };
        self.last = self.last.max(t);
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::SteadyWall;
    use proptest::prelude::*;

    #[test]
    fn a_wall_step_back_does_not_stretch_a_lease_and_a_sleep_does_not_either() {
        let mut c = SteadyWall::default();
        assert_eq!(c.now(1_000_000, 0.0), 1_000_000);
        // Ten seconds pass on both clocks, then the wall clock is stepped back ten minutes.
        assert_eq!(c.now(1_010_000, 10_000.0), 1_010_000);
        assert_eq!(
            c.now(410_000 + 1_000, 11_000.0),
            1_011_000,
            "the step back is ignored"
        );
        // The host sleeps an hour: the monotonic clock paused, the wall clock moved.
        assert_eq!(
            c.now(4_611_000, 11_000.0),
            4_611_000,
            "the sleep is counted"
        );
        // Read every 0.4 ms with the wall clock held back: it still keeps up with the
        // monotonic clock (fractions of a ms are not lost at each reading).
        let mut t = 0;
        for i in 1..=1000 {
            t = c.now(0, 11_000.0 + f64::from(i) * 0.4);
        }
        assert_eq!(t, 4_611_400);
    }

    proptest! {
        /// Whatever the two clocks do, the reading never goes back, is never behind the wall
        /// clock, and moves at least as far as the monotonic clock did.
        #[test]
        fn it_never_runs_back_or_slower_than_either_clock(
            steps in proptest::collection::vec((-100_000i64..100_000, 0u32..100_000), 1..50),
            frac in 0.0f64..1.0,
        ) {
            let mut c = SteadyWall::default();
            let (mut wall, mut mono) = (1_700_000_000_000i64, 0.0f64);
            let first = c.now(wall, mono);
            let mut last = first;
            for (dw, dm) in steps {
                wall += dw;
                mono += f64::from(dm) + frac;
                let t = c.now(wall, mono);
                prop_assert!(t >= last);
                prop_assert!(t >= wall);
                #[allow(clippy::cast_possible_truncation)]
                let mono_ms = mono as i64;
                prop_assert!(t - first >= mono_ms, "{} behind the monotonic {}", t - first, mono_ms);
                last = t;
            }
        }
    }
}
