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
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    /// An I/O stream that fails with `TimedOut` after `limit` without progress.
    pub struct Idle<T> {
        #[pin]
        inner: T,
        // Boxed, so that `Idle<T>` is `Unpin` whenever `T` is (hyper and rustls want that).
        sleep: Pin<Box<Sleep>>,
        limit: Duration,
    }
}

impl<T> Idle<T> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle past the limit")
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
                    this.sleep.as_mut().reset(Instant::now() + *this.limit);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                ready!(this.sleep.as_mut().poll(cx));
                Poll::Ready(Err(timed_out()))
            }
        }
    }
}

/// Restarts the clock on a write that moved bytes; a write still pending when the clock runs
/// out fails with `TimedOut`.
fn after_write(
    sleep: &mut Pin<Box<Sleep>>,
    limit: Duration,
    cx: &mut Context<'_>,
    written: Poll<io::Result<usize>>,
) -> Poll<io::Result<usize>> {
    match written {
        Poll::Ready(Ok(n)) => {
            if n > 0 {
                sleep.as_mut().reset(Instant::now() + limit);
            }
            Poll::Ready(Ok(n))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => {
            ready!(sleep.as_mut().poll(cx));
            Poll::Ready(Err(timed_out()))
        }
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
        after_write(this.sleep, *this.limit, cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write_vectored(cx, bufs);
        after_write(this.sleep, *this.limit, cx, written)
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
        // Then silence: the read fails with TimedOut once 10 s pass.
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
