//! The listener: accepts connections up to a cap, wraps them in TLS when configured, and
//! serves HTTP/1.1 with hyper under byok's timeouts. On shutdown it stops accepting and lets
//! requests in flight finish (for at most [`DRAIN`]); those still running then are cut, and
//! gone, when it returns.
//!
//! `axum::serve` has no knobs for any of this, so the loop is written out here; the router
//! and everything above it are unchanged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::head_timer::HeadTimer;
use super::idle::Idle;
use super::tls::Certificate;

/// How long requests in flight may run on after a shutdown signal.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The connection limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Time for a request's head (line and headers) once the connection waits for one, and
    /// for a TLS handshake.
    pub header_timeout: Duration,
    /// Time without a byte moving before the connection is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; beyond it, new ones wait in the kernel's backlog.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (see the module).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Certificate>>,
    limits: ConnLimits,
    router: crate::api::Api,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    serve_draining(listener, tls, limits, router, shutdown, DRAIN).await
}

/// [`serve`], with requests in flight let run for `drain` after `shutdown`.
async fn serve_draining(
    listener: TcpListener,
    tls: Option<Arc<Certificate>>,
    limits: ConnLimits,
    router: crate::api::Api,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Result<(), String> {
    let acceptor = match &tls {
        Some(cert) => Some(TlsAcceptor::from(cert.server_config()?)),
        None => None,
    };
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    // The connections' tasks, held so that a shutdown can cut them and wait until they are
    // gone (finished ones are reaped as connections come).
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // The permit comes first: at the cap, byok stops calling accept() and the kernel's
        // backlog holds (then refuses) new connections; open ones are not disturbed.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(|e| e.to_string())?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = Idle::new(stream, limits.idle_timeout);
        let service = TowerToHyperService::new(router.clone());
        let mut http = http.clone();
        // Each connection gets its own timer: one tokio timer per connection, not per request.
        http.timer(HeadTimer::new());
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        let handshake = limits.header_timeout;
        while conns.try_join_next().is_some() {}
        conns.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => {
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(io), service))
                        .await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) = tokio::time::timeout(handshake, acceptor.accept(io)).await
                    else {
                        return;
                    };
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await;
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!("requests still running after the drain time were cut");
        }
    }
    // Cut what still runs, and wait until it is gone: a request cut off in the middle of a KMS
    // call leaves that call's audit row in memory as it unwinds (its guard's `Drop`), and the
    // caller writes the rows held in memory next. Left running, the row would be pushed after
    // that write, into a process about to end: a call in the customer's KMS log missing from
    // byok's.
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use axum::routing::get;

    use crate::service::background::Unwound;

    /// A request still running when the drain ends (a KMS call that hangs) is cut and has
    /// unwound by the time `serve` returns, so the rows it leaves in memory are there for the
    /// shutdown's write. Before, its task ran on, and its row came after that write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_running_past_the_drain_has_unwound_when_serve_returns() {
        let unwound = Arc::new(AtomicBool::new(false));
        let started = Arc::new(tokio::sync::Notify::new());
        let router = axum::Router::new().route(
            "/hang",
            get({
                let (unwound, started) = (unwound.clone(), started.clone());
                move || async move {
                    let _guard = Unwound(unwound);
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = super::ConnLimits {
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        };
        let api = crate::api::Api::new(router, Default::default(), Duration::from_secs(60), 1024);
        let serving = tokio::spawn(super::serve_draining(
            listener,
            None,
            limits,
            api,
            async move {
                let _ = stopped.await;
            },
            Duration::from_millis(100),
        ));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        started.notified().await;
        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
        assert!(
            unwound.load(Ordering::SeqCst),
            "the request was still running when serve returned"
        );
    }
}
