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
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
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
    mut build: impl FnMut(Duration) -> Result<HttpRequest, RequestError>,
    parse: impl Fn(&HttpResponse) -> Result<T, KmsError>,
) -> Called<T> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // What the service asked (`Retry-After`) sets a floor under the next wait.
        let mut asked = None;
        let result = match build(unix_now()) {
            Ok(req) => match transport.execute(&req).await {
                Ok(resp) => {
                    asked = resp.retry_after();
                    parse(&resp)
                }
                Err(e) => Err(e.into_kms(provider)),
            },
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
                    attempts: attempt,
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
                    attempts: attempt,
                };
            }
        }
    }
}
