//! One KMS exchange with retries: build a freshly signed request (the signature covers the
//! time, so every attempt signs anew), send it, parse the answer, and retry transient failures
//! (throttling, unavailability, transport errors) as [`RetryPolicy`] decides. Core decides;
//! this loop only sleeps.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use byok_core::kms::provider::RequestError;
use byok_core::kms::{HttpRequest, HttpResponse, KmsError, KmsErrorKind};
use byok_core::retry::{RetryDecision, RetryPolicy};
use rand_core::Rng;

use crate::transport::Transport;

/// How a call ended, with how many attempts it took.
#[derive(Debug)]
pub struct Called<T> {
    /// The parsed answer, or the last error.
    pub result: Result<T, KmsError>,
    /// Requests sent (1 when the first succeeded; 0 if none could be built).
    pub attempts: u32,
}

/// The requests a call has sent so far, counted as it sends them: what an audit row says of
/// a call whose request was dropped mid-way (its client gone, its deadline passed), which
/// never returns its [`Called`].
#[derive(Debug, Default)]
pub struct Attempts(std::sync::atomic::AtomicU32);

impl Attempts {
    /// Requests sent so far.
    pub fn get(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts counting a new call.
    pub fn reset(&self) {
        self.0.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    fn sent(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How an audit row records a call whose answer byok never read: the request waiting for it
/// ended first (its client gone, its deadline passed). The cloud may have answered, and logged
/// it, all the same.
pub fn abandoned(provider: &'static str) -> KmsError {
    KmsError {
        kind: KmsErrorKind::Unavailable,
        provider,
        code: "Dropped".into(),
        message: "the request waiting for this call ended before its answer was read".into(),
        status: 0,
    }
}

pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs `build` → send → `parse`, retrying transient errors per `policy`.
pub async fn call<T>(
    transport: &Transport,
    provider: &'static str,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
    build: impl FnMut(Duration) -> Result<HttpRequest, RequestError>,
    parse: impl Fn(&HttpResponse) -> Result<T, KmsError>,
) -> Called<T> {
    call_counted(
        transport,
        provider,
        policy,
        rng,
        &Attempts::default(),
        build,
        parse,
    )
    .await
}

/// [`call`], counting in `sent` each request as it goes out.
pub async fn call_counted<T>(
    transport: &Transport,
    provider: &'static str,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
    sent: &Attempts,
    mut build: impl FnMut(Duration) -> Result<HttpRequest, RequestError>,
    parse: impl Fn(&HttpResponse) -> Result<T, KmsError>,
) -> Called<T> {
    let started = Instant::now();
    let mut attempt = 0;
    let before = sent.get();
    loop {
        attempt += 1;
        // What the service asked (`Retry-After`) sets a floor under the next wait.
        let mut asked = None;
        let result = match build(unix_now()) {
            Ok(req) => {
                sent.sent();
                match transport.execute(&req).await {
                    Ok(resp) => {
                        asked = resp.retry_after();
                        parse(&resp)
                    }
                    Err(e) => Err(e.into_kms(provider)),
                }
            }
            Err(e) => Err(KmsError {
                kind: KmsErrorKind::Malformed,
                provider,
                code: String::new(),
                message: e.to_string(),
                status: 0,
            }),
        };
        let err = match result {
            Ok(v) => {
                return Called {
                    result: Ok(v),
                    attempts: sent.get().saturating_sub(before),
                };
            }
            Err(e) => e,
        };
        match policy.decide_after(
            err.kind.is_transient(),
            attempt,
            started.elapsed(),
            asked,
            rng,
        ) {
            RetryDecision::After(wait) => tokio::time::sleep(wait).await,
            RetryDecision::GiveUp => {
                return Called {
                    result: Err(err),
                    attempts: sent.get().saturating_sub(before),
                };
            }
        }
    }
}
