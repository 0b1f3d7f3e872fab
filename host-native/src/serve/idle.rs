//! Closes a connection on which no byte moved, in either direction, for a while: the idle
//! keep-alive limit, and the bound on a TLS handshake or a body that stalls between bytes.
//!
//! hyper's own header-read timeout starts when a connection waits for a request's head, so it
//! bounds a slow or idle client's *headers*; this bounds everything else. The timer restarts
//! on every byte read or written, so a long answer or upload that keeps moving is never cut;
//! `Limits::check` keeps the idle limit above the per-request deadline, so a handler that is
//! still working (and not moving bytes) answers, or times out with 408, before this fires.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// An I/O stream that fails with `TimedOut` after `limit` without progress.
    ///
    /// Progress only records the time (`last`); the timer is re-armed lazily, when it fires
    /// early because bytes moved since it was set. Resetting it on every read and write, as
    /// this first did, moved a timer-wheel entry under the driver's lock twice per request on
    /// the data path; then a reset on every wait cost a deadline update per request; now it
    /// moves once per `limit` on a busy connection.
    pub struct Idle<T> {
        #[pin]
        inner: T,
        // Boxed, so that `Idle<T>` is `Unpin` whenever `T` is (hyper and rustls want that).
        sleep: Pin<Box<Sleep>>,
        last: Instant,
        limit: Duration,
    }
}

impl<T> Idle<T> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: T, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(now + limit)),
            last: now,
            limit,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle past the limit")
}

/// Called when the inner stream is not ready: `Ready` once `limit` has passed since `last`
/// with no progress; otherwise leaves the timer armed and stays `Pending`.
///
/// The timer is left where it is while it lies at or before `last + limit`: when it fires
/// early (bytes moved since it was set), it is moved to the true deadline then and polled
/// again. So a busy connection touches its timer about once per `limit`, not once per request.
fn expired(
    sleep: &mut Pin<Box<Sleep>>,
    last: Instant,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Error> {
    // `last` only moves later, so the timer is never past `due`.
    let due = last + limit;
    loop {
        match sleep.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(()) if sleep.deadline() >= due => return Poll::Ready(timed_out()),
            // Fired early: bytes moved after it was set. Only ever later.
            Poll::Ready(()) => sleep.as_mut().reset(due),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    *this.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => expired(this.sleep, *this.last, *this.limit, cx).map(Err),
        }
    }
}

fn after_write(
    sleep: &mut Pin<Box<Sleep>>,
    last: &mut Instant,
    limit: Duration,
    cx: &mut Context<'_>,
    written: Poll<io::Result<usize>>,
) -> Poll<io::Result<usize>> {
    match written {
        Poll::Ready(Ok(n)) => {
            if n > 0 {
                *last = Instant::now();
            }
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => expired(sleep, *last, limit, cx).map(Err),
    }
}

impl<T: AsyncWrite> AsyncWrite for Idle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write(cx, buf);
        after_write(this.sleep, this.last, *this.limit, cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write_vectored(cx, bufs);
        after_write(this.sleep, this.last, *this.limit, cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut idle = Idle::new(a, Duration::from_secs(10));
        let mut buf = [0u8; 4];
        // Bytes every 6 s keep it open past 10 s in total.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(idle.read(&mut buf).await.unwrap(), 1);
        }
        // Then silence: the read fails with TimedOut 10 s after the last byte, not before.
        let quiet = Instant::now();
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(quiet.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_move_while_the_timer_waits_push_it_back() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut idle = Idle::new(a, Duration::from_secs(10));
        let started = Instant::now();
        // A read waits with the timer armed; a byte at 8 s answers it.
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(8)).await;
            b.write_all(b"x").await.unwrap();
            b
        });
        let mut buf = [0u8; 4];
        assert_eq!(idle.read(&mut buf).await.unwrap(), 1);
        let _b = writer.await.unwrap();
        // Writing counts as progress too: at 12 s, past the first deadline.
        tokio::time::advance(Duration::from_secs(4)).await;
        idle.write_all(b"y").await.unwrap();
        // The next silent read times out 10 s after that write (22 s), not at 10 or 18 s.
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(22));
    }
}
