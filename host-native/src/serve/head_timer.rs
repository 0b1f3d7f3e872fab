//! hyper's timer for one connection, which it uses for the request-head read timeout: one tokio
//! timer per connection, moved later as each new head is awaited.
//!
//! Why not hyper-util's `TokioTimer`: hyper asks for a new sleep for every request head on a
//! keep-alive connection and drops it once the head is read, so each request boxed a tokio
//! `Sleep`, put it in the timer wheel and took it out again (the wheel's lock, twice). Here the
//! connection keeps one `Sleep`; each head's sleep only moves its deadline, and tokio moves an
//! entry to a later deadline without touching the wheel (it re-files the entry when the earlier
//! deadline comes). The timeout itself is unchanged: a head not read `header_timeout` after
//! hyper started waiting for it ends the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The timer of one connection (give each connection its own).
#[derive(Clone)]
pub struct HeadTimer {
    sleep: Arc<Mutex<Pin<Box<tokio::time::Sleep>>>>,
}

impl HeadTimer {
    /// A timer whose one `Sleep` is made now and first armed by hyper's first head.
    pub fn new() -> Self {
        // Far off until a head is awaited; never polled before then, so never in the wheel.
        let idle = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        Self {
            sleep: Arc::new(Mutex::new(Box::pin(tokio::time::sleep_until(idle)))),
        }
    }
}

impl Default for HeadTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// tokio's clock, which the sleeps run on (and which tests can pause).
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HeadSleep {
            shared: self.sleep.clone(),
            deadline: tokio::time::Instant::from_std(deadline),
        })
    }
}

/// One head's wait: done at `deadline`, on the connection's shared `Sleep`.
struct HeadSleep {
    shared: Arc<Mutex<Pin<Box<tokio::time::Sleep>>>>,
    deadline: tokio::time::Instant,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut sleep = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if sleep.deadline() != self.deadline {
            // Later than the last head's: tokio only records it. (Earlier happens only if the
            // clock moved back; tokio then re-files the entry, which is correct too.)
            sleep.as_mut().reset(self.deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hyper::rt::Timer;

    use super::HeadTimer;

    /// Each head's sleep ends at its own deadline, not at an earlier head's, although they share
    /// one tokio timer.
    #[tokio::test(start_paused = true)]
    async fn each_head_waits_its_own_time() {
        let timer = HeadTimer::new();
        let first = timer.sleep(Duration::from_secs(10));
        let mut first = tokio_test_poll(first).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!first.ready(), "the first head's sleep ended early");
        drop(first);
        // The next head is awaited at t = 4 s: its sleep ends at 14 s, not at 10 s.
        let start = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(10)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    /// A sleep polled once (so registered), to see later whether it has ended.
    struct Polled(std::pin::Pin<Box<dyn hyper::rt::Sleep>>);

    impl Polled {
        fn ready(&mut self) -> bool {
            let waker = std::task::Waker::noop();
            self.0
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        }
    }

    async fn tokio_test_poll(s: std::pin::Pin<Box<dyn hyper::rt::Sleep>>) -> Polled {
        let mut p = Polled(s);
        assert!(!p.ready());
        p
    }
}
