//! The edge's clock for leases: wall time that never runs back and never runs slower than the
//! host's monotonic clock.
//!
//! A lease ends `ttl_ms` after it arrived on the edge's clock (and by the server's
//! `expires_at`). On the wall clock alone, a host clock stepped back by Δ after the lease
//! arrived (NTP correcting a clock that ran ahead, someone setting the time) keeps the lease Δ
//! longer than its TTL. On a monotonic clock alone, a host that sleeps (a laptop lid) may pause
//! it, and the lease outlives its TTL by the sleep. [`SteadyWall`] reads both and moves by
//! whichever moved more since its base: it never goes back, it keeps up with the monotonic clock
//! through a wall step back, and with the wall clock through a pause of the monotonic one. So a
//! lease ends no later than its TTL on either clock.
//!
//! Its readings start as wall time (ms since the epoch) and are never behind the wall clock,
//! but after a wall step back they run ahead of it by the step, for good. So they are compared
//! with the server's `expires_at` only through how far ahead they are when a lease is read
//! (`Lease::parse`'s `clock_ahead_ms`: a reading minus the wall time it was read with).

/// How far the two clocks may move apart, since the base, before one counts as having jumped
/// (the wall stepped back, or the monotonic clock paused in a sleep): the base then moves to
/// the reading, so that what either clock does next counts from there. From the old base a
/// sleep shorter than an earlier step back went unseen. Small enough to bound what a jump
/// hides; large enough that the two clocks' jitter does not move the base at every reading.
const JUMP_MS: i64 = 100;

/// A reading of wall time that never runs back (see the module docs). Hosts keep one and read
/// it with [`SteadyWall::now`] for every lease decision.
#[derive(Clone, Copy, Debug, Default)]
pub struct SteadyWall {
    /// A reading and the wall and monotonic times it was taken at: later readings count from
    /// it (not from the last one, whose fractions of a ms would be lost at every step).
    base: Option<Base>,
    last: i64,
}

#[derive(Clone, Copy, Debug)]
struct Base {
    at: i64,
    wall: i64,
    mono: f64,
}

impl SteadyWall {
    /// The time now, from the host's wall clock (`wall_ms`, ms since the epoch) and its
    /// monotonic clock (`mono_ms`, ms from any origin, e.g. `performance.now()`).
    pub fn now(&mut self, wall_ms: i64, mono_ms: f64) -> i64 {
        let t = match self.base {
            Some(b) => {
                // Whole ms each clock moved since the base (the monotonic one: none if it went
                // back).
                #[allow(clippy::cast_possible_truncation)]
                let mono_moved = (mono_ms - b.mono).max(0.0) as i64;
                let wall_moved = wall_ms.saturating_sub(b.wall);
                let t = b.at.saturating_add(mono_moved.max(wall_moved));
                if wall_moved.saturating_sub(mono_moved).saturating_abs() > JUMP_MS {
                    // One clock jumped: both count from here on. The monotonic base moves by
                    // whole ms only, keeping the fraction.
                    #[allow(clippy::cast_precision_loss)]
                    let mono = b.mono + mono_moved as f64;
                    self.base = Some(Base {
                        at: t,
                        wall: wall_ms,
                        mono,
                    });
                }
                t
            }
            None => {
                self.base = Some(Base {
                    at: wall_ms,
                    wall: wall_ms,
                    mono: mono_ms,
                });
                wall_ms
            }
        };
        self.last = self.last.max(t);
        self.last
    }

    /// [`Self::now`], with how far the reading is ahead of the wall clock (what
    /// `Lease::parse` takes to move the server's `expires_at` onto this clock).
    pub fn read(&mut self, wall_ms: i64, mono_ms: f64) -> Reading {
        let at = self.now(wall_ms, mono_ms);
        Reading {
            at,
            ahead: at.saturating_sub(wall_ms),
        }
    }
}

/// A reading of a lease clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// The time, ms: wall time kept from running back (see the module docs).
    pub at: i64,
    /// How far that is ahead of the wall clock read with it, ms (0 unless the wall clock was
    /// stepped back since the clock's first reading).
    pub ahead: i64,
}

/// The lease clock of a host with the standard library's clocks (the CLI, a wasi component):
/// the system's wall clock and [`std::time::Instant`], through one [`SteadyWall`] for the
/// process. Not on `wasm32-unknown-unknown`, whose standard library has no clock: the
/// browser's bindings read `Date.now()` and `performance.now()` themselves.
#[cfg(feature = "std")]
pub fn system() -> Reading {
    use std::sync::{Mutex, OnceLock};
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    static CLOCK: OnceLock<(Instant, Mutex<SteadyWall>)> = OnceLock::new();
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let wall = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
    let (origin, clock) = CLOCK.get_or_init(|| (Instant::now(), Mutex::default()));
    let mono = origin.elapsed().as_secs_f64() * 1000.0;
    clock
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .read(wall, mono)
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
        // The host sleeps a minute: the monotonic clock paused, the wall clock moved. Counted,
        // although the wall is still behind the reading (by the step): from the old base it
        // was not, and a sleep shorter than the step went unseen.
        assert_eq!(
            c.now(471_000, 11_000.0),
            1_071_000,
            "the sleep after the step is counted"
        );
        // And an hour: the wall clock moved an hour more.
        assert_eq!(
            c.now(4_071_000, 11_000.0),
            4_671_000,
            "the sleep is counted"
        );
        // Read every 0.4 ms with the wall clock held back: it still keeps up with the
        // monotonic clock (fractions of a ms are not lost at each reading).
        let mut t = 0;
        for i in 1..=1000 {
            t = c.now(0, 11_000.0 + f64::from(i) * 0.4);
        }
        assert_eq!(t, 4_671_400);
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
