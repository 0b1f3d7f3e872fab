//! The listener: accepts connections up to a cap, wraps them in TLS when configured, and
//! serves HTTP/1.1 with hyper under byok's timeouts. On shutdown it stops accepting and lets
//! requests in flight finish (for at most [`DRAIN`]).
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

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Certificate>>,
    limits: ConnLimits,
    router: crate::api::Api,
    shutdown: impl Future<Output = ()>,
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
        tokio::spawn(async move {
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
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("requests still running after the drain time were cut");
        }
    }
    Ok(())
}
