//! What an edge does with its lease over time, as one sans-IO state machine, so that every edge
//! (the JS lease client, the `wasi:http` component) applies the same rules:
//!
//! - **Fetch or renew** when no lease is held, or when [`Lease::renew_at`] has come.
//! - **A refusal stops use at once**: an answer of 4xx other than 429 is the server saying no
//!   (scope paused or revoked, token revoked). The keys held are dropped at once and every use
//!   fails with the server's code. So a withdrawal reaches the edge at the next renewal, within
//!   one lease TTL. The holder asks again no sooner than [`REFUSAL_RETRY_MS`] later, so that an
//!   edge recovers by itself after a resume without hammering byok while the scope is paused.
//! - **An outage does not**: a 429, a 5xx or an unreachable server leaves the held lease usable
//!   until it expires (the half life left for renewal is the margin for retries).
//! - **Expiry ends use**: from `expires_at` on, the keys are dropped and use fails with
//!   `lease_expired` until a renewal succeeds.
//!
//! The host performs the request [`Holder::due`] asks for and reports the outcome with
//! [`Holder::received`], [`Holder::refused`] or [`Holder::failed`]; time is passed in (ms since
//! the epoch).

use alloc::format;
use alloc::string::String;

use super::Lease;
use crate::ApiCode;

/// How long after a refusal the holder asks for a lease again, in ms.
pub const REFUSAL_RETRY_MS: i64 = 5_000;

/// Whether an answer with HTTP `status` to a lease request refuses the lease (and so ends the
/// holder), rather than failing for a while: every 4xx except 429 (throttled) and 408 (the
/// request's deadline passed, as when the customer's KMS is slow: an outage, not a refusal).
pub const fn is_refusal(status: u16) -> bool {
    status >= 400 && status < 500 && status != 429 && status != 408
}

/// What an answer with HTTP `status` to a lease request means when its body names no code
/// (a proxy's or a load balancer's answer, not byok's): its deadline passed (408) and 5xx are
/// outages, 429 throttling, 401 the edge's token refused ([`answer_code`]), 403 / 404 what they
/// say, 410 the scope revoked (the lease endpoint's only 410: a refusal whose body was cut
/// short is named by it), any other 4xx a bad request.
pub const fn code_of_status(status: u16) -> ApiCode {
    match status {
        401 => ApiCode::EdgeTokenRefused,
        403 => ApiCode::Forbidden,
        404 => ApiCode::NotFound,
        410 => ApiCode::ScopeRevoked,
        408 => ApiCode::RequestTimeout,
        429 => ApiCode::RateLimited,
        400..500 => ApiCode::InvalidRequest,
        _ => ApiCode::Unreachable,
    }
}

/// The code an edge reports for byok's answer of `status` to its lease request, whose body
/// named `code`: that code, or by the status ([`code_of_status`]) when the body named none this
/// build knows.
///
/// byok refusing the edge's own service token (`unauthenticated`: revoked, or wrong in the
/// edge's settings) is reported as `edge_token_refused` (502): the edge's caller is not the one
/// who failed to authenticate, and a 401 would tell it to send other credentials, which cannot
/// help. The edge's own caller check keeps `unauthenticated`.
pub fn answer_code(status: u16, code: Option<&str>) -> ApiCode {
    match code.and_then(ApiCode::from_code) {
        Some(ApiCode::Unauthenticated) => ApiCode::EdgeTokenRefused,
        Some(c) => c,
        None => code_of_status(status),
    }
}

/// The message an edge reports with [`answer_code`]'s `code` for byok's answer of `status`,
/// whose body said `message`. A refused edge token says whose token it was, so that the edge's
/// caller is not sent to fix its own.
pub fn answer_message(status: u16, code: ApiCode, message: Option<&str>) -> String {
    let said = message.unwrap_or("no reason given");
    match code {
        ApiCode::EdgeTokenRefused => format!(
            "byok refused this edge's own service token ({status}: {said}); its operator must set a valid one"
        ),
        _ => message.map_or_else(
            || format!("byok refused the lease ({status})"),
            String::from,
        ),
    }
}

/// Why the keys cannot be used: the server's code (or `lease_expired`, `unreachable`) and a
/// message to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// The code.
    pub code: ApiCode,
    /// What happened.
    pub message: String,
}

/// A lease held by an edge, in memory only, with its renewal time.
#[derive(Debug, Default)]
pub struct Holder {
    held: Option<(Lease, i64)>,
    /// The last refusal, and when to ask again.
    refusal: Option<(Stopped, i64)>,
}

impl Holder {
    /// A holder with no lease yet.
    pub const fn new() -> Self {
        Self {
            held: None,
            refusal: None,
        }
    }

    /// Whether the host should ask for a lease now: none is held, or its renewal time has come,
    /// or [`REFUSAL_RETRY_MS`] have passed since a refusal.
    pub fn due(&self, now_ms: i64) -> bool {
        match (&self.refusal, &self.held) {
            (Some((_, retry_at)), _) => now_ms >= *retry_at,
            (None, None) => true,
            (None, Some((_, renew_at))) => now_ms >= *renew_at,
        }
    }

    /// A lease arrived at `now_ms`: it replaces the one held (whose keys are wiped), and ends a
    /// refusal.
    pub fn received(&mut self, lease: Lease, now_ms: i64) {
        let renew_at = lease.renew_at(now_ms);
        self.held = Some((lease, renew_at));
        self.refusal = None;
    }

    /// The server refused the lease ([`is_refusal`]) with `code` at `now_ms`: the keys are
    /// dropped now, and every use fails with `code` until a lease is received again.
    pub fn refused(&mut self, code: ApiCode, message: String, now_ms: i64) {
        self.held = None;
        self.refusal = Some((
            Stopped { code, message },
            now_ms.saturating_add(REFUSAL_RETRY_MS),
        ));
    }

    /// The request failed without a refusal (429, 5xx, unreachable): the held lease stays
    /// usable until it expires. Returns what to report if none is usable at `now_ms`.
    pub fn failed(&mut self, code: ApiCode, message: String, now_ms: i64) -> Option<Stopped> {
        // After a refusal, the next try waits its interval again: a byok that is away must not
        // make every use ask it anew (each ask may wait out its whole timeout).
        if let Some((_, retry_at)) = &mut self.refusal {
            *retry_at = now_ms.saturating_add(REFUSAL_RETRY_MS);
        }
        let stopped = self.lease(now_ms).err()?;
        // After a refusal, an outage says nothing new: the refusal stands.
        Some(if self.refusal.is_none() {
            Stopped { code, message }
        } else {
            stopped
        })
    }

    /// The lease to use at `now_ms`.
    ///
    /// # Errors
    ///
    /// The refusal standing; `lease_expired` (and the keys dropped) if the lease
    /// ran out unrenewed; `unreachable` if no lease was ever received.
    pub fn lease(&mut self, now_ms: i64) -> Result<&Lease, Stopped> {
        if let Some((s, _)) = &self.refusal {
            return Err(s.clone());
        }
        if self.held.as_ref().is_some_and(|(l, _)| l.expired(now_ms)) {
            self.held = None;
            return Err(Stopped {
                code: ApiCode::LeaseExpired,
                message: String::from("the lease expired and could not be renewed"),
            });
        }
        match &self.held {
            Some((l, _)) => Ok(l),
            None => Err(Stopped {
                code: ApiCode::Unreachable,
                message: String::from(
                    "no live lease is held (none received yet, or it expired): ask byok for one",
                ),
            }),
        }
    }

    /// Whether a refusal stands: no key is held, none is used.
    pub fn is_refused(&self) -> bool {
        self.refusal.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ScopeKey;
    use crate::key_id::{KeyId, ScopeId};
    use crate::secret::SecretBytes;
    use alloc::vec;

    fn lease(expires_at: i64) -> Lease {
        let scope = ScopeId::from_bytes([7; 16]);
        let key = ScopeKey::new(KeyId::new(scope, 1), SecretBytes::from_bytes(&mut [1; 32]));
        Lease::new(scope, 1, vec![key], expires_at, 60_000).unwrap()
    }

    #[test]
    fn refusals_are_4xx_but_429_and_408() {
        for s in [400, 401, 403, 404, 409, 410, 499] {
            assert!(is_refusal(s), "{s}");
        }
        for s in [200, 204, 399, 408, 429, 500, 502, 503, 504] {
            assert!(!is_refusal(s), "{s}");
        }
    }

    #[test]
    fn an_answer_without_a_code_is_named_by_its_status() {
        let named = [
            (401, ApiCode::EdgeTokenRefused),
            (403, ApiCode::Forbidden),
            (404, ApiCode::NotFound),
            (408, ApiCode::RequestTimeout),
            (410, ApiCode::ScopeRevoked),
            (429, ApiCode::RateLimited),
            (400, ApiCode::InvalidRequest),
            (413, ApiCode::InvalidRequest),
            (500, ApiCode::Unreachable),
            (502, ApiCode::Unreachable),
            (503, ApiCode::Unreachable),
            (200, ApiCode::Unreachable),
        ];
        for (status, code) in named {
            assert_eq!(code_of_status(status), code, "{status}");
        }
        // 410 names the scope revoked because no other code has that status.
        let gone: vec::Vec<_> = ApiCode::ALL
            .iter()
            .filter(|c| c.http_status() == 410)
            .collect();
        assert_eq!(gone, [&ApiCode::ScopeRevoked]);
    }

    #[test]
    fn byok_refusing_the_edges_token_is_not_the_callers_401() {
        let cases = [
            (401, Some("unauthenticated"), ApiCode::EdgeTokenRefused),
            (401, None, ApiCode::EdgeTokenRefused),
            (
                401,
                Some("a_code_from_a_newer_byok"),
                ApiCode::EdgeTokenRefused,
            ),
            (409, Some("scope_paused"), ApiCode::ScopePaused),
            (410, Some("scope_revoked"), ApiCode::ScopeRevoked),
            (403, Some("forbidden"), ApiCode::Forbidden),
            (503, Some("kms_unavailable"), ApiCode::KmsUnavailable),
            (503, None, ApiCode::Unreachable),
        ];
        for (status, code, reported) in cases {
            assert_eq!(answer_code(status, code), reported, "{status} {code:?}");
        }
        let said = "send a valid token as `Authorization: Bearer byok_...`";
        let m = answer_message(401, ApiCode::EdgeTokenRefused, Some(said));
        assert!(
            m.starts_with("byok refused this edge's own service token (401: send"),
            "{m}"
        );
        assert_eq!(
            answer_message(409, ApiCode::ScopePaused, Some("paused")),
            "paused"
        );
        assert_eq!(
            answer_message(403, ApiCode::Forbidden, None),
            "byok refused the lease (403)"
        );
        assert_eq!(ApiCode::EdgeTokenRefused.edge_status(), 502);
        assert_eq!(ApiCode::www_authenticate(502), None);
    }

    #[test]
    fn renews_at_half_life_and_an_outage_keeps_the_lease_until_it_expires() {
        let mut h = Holder::new();
        assert!(h.due(0));
        assert_eq!(h.lease(0).unwrap_err().code, ApiCode::Unreachable);
        h.received(lease(1_000), 0);
        assert!(!h.due(499));
        assert!(h.due(500));
        assert!(h.lease(500).is_ok());
        // The server is down at renewal: the lease held stays usable until it ends.
        assert_eq!(h.failed(ApiCode::Unreachable, "down".into(), 600), None);
        assert!(h.lease(999).is_ok());
        let s = h
            .failed(ApiCode::KmsUnavailable, "busy".into(), 1_000)
            .unwrap();
        assert_eq!(s.code, ApiCode::KmsUnavailable);
        assert_eq!(h.lease(1_000).unwrap_err().code, ApiCode::Unreachable);
        // Expired and dropped, but not ended: a later renewal revives the holder.
        assert!(h.due(1_001));
        h.received(lease(3_000), 1_001);
        assert!(h.lease(1_002).is_ok());
    }

    #[test]
    fn expiry_drops_the_keys() {
        let mut h = Holder::new();
        h.received(lease(1_000), 0);
        assert_eq!(h.lease(1_000).unwrap_err().code, ApiCode::LeaseExpired);
        assert!(h.held.is_none());
    }

    #[test]
    fn a_refusal_drops_the_keys_at_once_and_is_asked_again_later() {
        let mut h = Holder::new();
        h.received(lease(100_000), 0);
        h.refused(ApiCode::ScopePaused, "paused".into(), 10);
        assert!(h.held.is_none());
        assert!(h.is_refused());
        assert_eq!(h.lease(11).unwrap_err().code, ApiCode::ScopePaused);
        assert!(!h.due(10 + REFUSAL_RETRY_MS - 1));
        assert!(h.due(10 + REFUSAL_RETRY_MS));
        // Asked again while byok is down: the refusal stands.
        let s = h.failed(ApiCode::Unreachable, "down".into(), 10 + REFUSAL_RETRY_MS);
        assert_eq!(s.unwrap().code, ApiCode::ScopePaused);
        // ... and the next ask waits its interval again, not asked on every use.
        assert!(!h.due(10 + REFUSAL_RETRY_MS + 1));
        assert!(!h.due(10 + 2 * REFUSAL_RETRY_MS - 1));
        assert!(h.due(10 + 2 * REFUSAL_RETRY_MS));
        // Resumed: a lease again.
        h.received(lease(100_000), 6_000);
        assert!(!h.is_refused());
        assert!(h.lease(6_001).is_ok());
    }
}
