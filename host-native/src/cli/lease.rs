//! The lease a streaming `encrypt` or `decrypt` runs under, kept by core's rules
//! ([`byok_core::lease`]: the document, its checks, expiry and the renewal rule) for as long as
//! the stream runs, so that a pause, a revoke or a revoked token reaches a long stream within one
//! lease TTL, as it reaches any other edge.
//!
//! Before the first frame, [`HeldLease::take`] gets a lease and checks it: its scope, that it is
//! live, that it has the key version the stream needs. Then, before each chunk of input (at most
//! 64 KiB, so at least once per frame) and before the final frame, [`HeldLease::keep`] looks at
//! the clock, and from [`Lease::renew_at`] on (halfway through the life the lease had left when
//! it arrived) asks the server for a new lease:
//!
//! - a new lease must be on the same scope, live, and still carry the stream's key version with
//!   the same key; the stream goes on under it, and renews again halfway through it;
//! - a refusal (`scope_paused`, `scope_revoked`, `unauthenticated` for a revoked token, ...)
//!   stops the stream at once with the server's code and message: no further frame is made or
//!   opened;
//! - a transient failure (server unreachable, 429, 503) keeps the lease held while it is live
//!   and asks again halfway through what is left; from `expires_at` on (core's
//!   [`Lease::expired`]) the stream stops rather than use the key past its lease.
//!
//! The clock and the server are a [`LeaseSource`], so tests drive renewal with a fake clock and
//! scripted answers instead of sleeping.

use byok_core::lease::Lease;
use byok_core::{ScopeId, ScopeKey};
use subtle::ConstantTimeEq;

use super::{Client, Failure};

/// Where a stream gets its leases, and what time it is.
pub(super) trait LeaseSource {
    /// Now, by the lease clock: ms since the Unix epoch, kept from running back (core's
    /// `lease::clock`; a lease's end is on this clock).
    fn now_ms(&self) -> i64;
    /// A new lease on `scope`, parsed and checked by core, or why there is none.
    async fn lease(&self, scope: ScopeId) -> Result<Lease, Failure>;
}

/// The byok server, and this machine's clock.
pub(super) struct Server<'a> {
    /// The client.
    pub(super) client: &'a Client,
    /// The org the scope is in.
    pub(super) org: &'a str,
}

impl LeaseSource for Server<'_> {
    fn now_ms(&self) -> i64 {
        byok_core::lease::clock::system().at
    }

    async fn lease(&self, scope: ScopeId) -> Result<Lease, Failure> {
        // The lease's life counts from when it was asked for: a slow answer cannot stretch it.
        let asked = byok_core::lease::clock::system();
        let answer = self.client.lease(self.org, scope).await?;
        Lease::parse(&answer, asked.at, asked.ahead)
            .map_err(|e| Failure::new(1, format!("the server's answer: {e}")))
    }
}

/// The lease a stream holds, and when to renew it.
pub(super) struct HeldLease {
    lease: Lease,
    /// The key version the stream uses (named in its header): every renewal must carry it.
    version: u32,
    /// When to ask for a new lease, ms since the epoch.
    renew_at: i64,
}

impl HeldLease {
    /// Gets the stream's first lease on `scope` and returns it with a copy of key `version` (the
    /// current one if `None`).
    pub(super) async fn take(
        source: &impl LeaseSource,
        scope: ScopeId,
        version: Option<u32>,
    ) -> Result<(Self, ScopeKey), Failure> {
        let lease = source.lease(scope).await?;
        let now = source.now_ms();
        let key = checked(&lease, scope, version, now)?;
        let key = ScopeKey::new(key.id(), key.duplicate_secret());
        let held = Self {
            version: key.id().version,
            renew_at: lease.renew_at(now),
            lease,
        };
        Ok((held, key))
    }

    /// Call before each chunk of the stream: renews the lease if due; `Err` if the stream must
    /// stop (the renewal was refused, or the lease ended and could not be renewed).
    pub(super) async fn keep(&mut self, source: &impl LeaseSource) -> Result<(), Failure> {
        if source.now_ms() < self.renew_at {
            return Ok(());
        }
        let answer = source.lease(self.lease.scope()).await;
        self.renewed(answer, source.now_ms())
    }

    /// Takes the answer to a renewal, which arrived at `now`.
    fn renewed(&mut self, answer: Result<Lease, Failure>, now: i64) -> Result<(), Failure> {
        let scope = self.lease.scope();
        let version = self.version;
        match answer {
            Ok(lease) => {
                let key = checked(&lease, scope, Some(version), now).map_err(|f| {
                    Failure::new(f.code, format!("renewing the lease: {}", f.message))
                })?;
                let same = self.lease.key(version).is_some_and(|held| {
                    bool::from(held.expose_secret().ct_eq(key.expose_secret()))
                });
                if !same {
                    return Err(Failure::new(
                        1,
                        format!(
                            "renewing the lease: the server's answer has another key for \
                             version {version} of scope {scope}; the stream stopped"
                        ),
                    ));
                }
                self.renew_at = lease.renew_at(now);
                self.lease = lease;
                Ok(())
            }
            Err(f) if f.transient() && !self.lease.expired(now) => {
                // Try again halfway through what is left, keeping the lease meanwhile.
                self.renew_at = self.lease.renew_at(now);
                Ok(())
            }
            Err(f) if f.transient() => Err(Failure::new(
                f.code,
                format!(
                    "the lease on scope {scope} ended {} ms ago and could not be renewed, so the \
                     stream stopped: {}",
                    now.saturating_sub(self.lease.expires_at()),
                    f.message
                ),
            )),
            Err(f) => Err(Failure {
                code: f.code,
                message: format!(
                    "the server refused to renew the lease on scope {scope}, so the stream \
                     stopped: {}",
                    f.message
                ),
                api: f.api,
                status: f.status,
            }),
        }
    }
}

/// Key `version` (the current one if `None`) of `lease`, if the lease is on `scope`, live at
/// `now` and has it.
fn checked(
    lease: &Lease,
    scope: ScopeId,
    version: Option<u32>,
    now: i64,
) -> Result<&ScopeKey, Failure> {
    let failure = |message: String| Failure::new(1, message);
    if lease.scope() != scope {
        return Err(failure(format!(
            "the server's answer: a lease on scope {} instead of {scope}",
            lease.scope()
        )));
    }
    lease
        .check_live(now)
        .map_err(|e| failure(format!("{e} (is this machine's clock right?)")))?;
    match version {
        None => Ok(lease.current_key()),
        Some(v) => lease.key(v).ok_or_else(|| {
            failure(format!(
                "the lease has no key version {v} for scope {scope} (retired?)"
            ))
        }),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    use byok_core::{ApiCode, KeyId, SecretBytes};

    use super::*;

    pub(in crate::cli) const SCOPE: ScopeId = ScopeId::from_bytes([7; 16]);

    /// A lease on [`SCOPE`] with versions `versions` (key bytes = the version), the last one
    /// current, ending at `expires_at`.
    pub(in crate::cli) fn lease(versions: &[u8], expires_at: i64) -> Lease {
        let keys = versions
            .iter()
            .map(|v| {
                ScopeKey::new(
                    KeyId::new(SCOPE, (*v).into()),
                    SecretBytes::from_bytes(&mut [*v; 32]),
                )
            })
            .collect();
        let current = versions.last().copied().unwrap_or(0).into();
        Lease::new(SCOPE, current, keys, expires_at, 60_000).unwrap()
    }

    /// What a server answers with `code`.
    pub(in crate::cli) fn refusal(code: ApiCode) -> Failure {
        Failure {
            code: 1,
            message: format!("{} ({}): no [request r]", code.as_str(), code.http_status()),
            api: Some(code),
            status: Some(code.http_status()),
        }
    }

    /// What a proxy in front of the server answers: `status`, no byok body.
    pub(in crate::cli) fn bare(status: u16) -> Failure {
        Failure {
            code: 1,
            message: format!(" ({status}):  [request ]"),
            api: None,
            status: Some(status),
        }
    }

    pub(in crate::cli) fn unreachable() -> Failure {
        Failure::new(3, "cannot reach http://127.0.0.1:1: connection refused")
    }

    /// A clock the test sets and leases the test scripts; counts the leases asked for.
    #[derive(Default)]
    pub(in crate::cli) struct Fake {
        pub(in crate::cli) now: Cell<i64>,
        pub(in crate::cli) answers: RefCell<VecDeque<Result<Lease, Failure>>>,
        pub(in crate::cli) asked: Cell<u32>,
    }

    impl Fake {
        pub(in crate::cli) fn answering(answers: Vec<Result<Lease, Failure>>) -> Self {
            Self {
                answers: RefCell::new(answers.into()),
                ..Self::default()
            }
        }
    }

    impl LeaseSource for Fake {
        fn now_ms(&self) -> i64 {
            self.now.get()
        }

        async fn lease(&self, scope: ScopeId) -> Result<Lease, Failure> {
            assert_eq!(scope, SCOPE);
            self.asked.set(self.asked.get() + 1);
            self.answers
                .borrow_mut()
                .pop_front()
                .expect("a lease asked for that the test did not script")
        }
    }

    /// A stream started at 0 on a lease ending at 60 000 (renewal due at 30 000), using
    /// version 1.
    async fn started(fake: &Fake) -> HeldLease {
        fake.answers
            .borrow_mut()
            .push_front(Ok(lease(&[1, 2], 60_000)));
        let (held, key) = HeldLease::take(fake, SCOPE, Some(1)).await.unwrap();
        assert_eq!(key.id(), KeyId::new(SCOPE, 1));
        held
    }

    #[tokio::test]
    async fn nothing_is_asked_before_halfway_then_the_renewal_is_used() {
        let fake = Fake::answering(vec![Ok(lease(&[1, 2], 100_000))]);
        let mut held = started(&fake).await;
        fake.now.set(29_999);
        held.keep(&fake).await.unwrap();
        assert_eq!(fake.asked.get(), 1, "asked before renew_at");
        fake.now.set(30_000);
        held.keep(&fake).await.unwrap();
        assert_eq!(fake.asked.get(), 2);
        // The new lease's rule from its arrival: 30 000 + (100 000 - 30 000) / 2.
        assert_eq!(held.renew_at, 65_000);
        assert_eq!(held.lease.expires_at(), 100_000);
        // Past the first lease's end, under the second: no question asked.
        fake.now.set(64_999);
        held.keep(&fake).await.unwrap();
        assert_eq!(fake.asked.get(), 2);
    }

    /// A proxy's bare 502 or 504, or a 408, is no refusal by core's rule (as at the edge): the
    /// live lease is kept and asked for again; a bare 403 is one.
    #[tokio::test]
    async fn a_proxys_bare_5xx_keeps_the_live_lease() {
        for status in [502, 504, 408, 500] {
            let fake = Fake::answering(vec![Err(bare(status))]);
            let mut held = started(&fake).await;
            fake.now.set(30_000);
            held.keep(&fake)
                .await
                .unwrap_or_else(|f| panic!("{status}: {}", f.message));
            assert_eq!(held.renew_at, 45_000, "{status}");
        }
        let fake = Fake::answering(vec![Err(bare(403))]);
        let mut held = started(&fake).await;
        fake.now.set(30_000);
        assert!(held.keep(&fake).await.is_err(), "a bare 403 kept the lease");
    }

    #[tokio::test]
    async fn a_refused_renewal_stops_the_stream_with_the_servers_code() {
        for code in [
            ApiCode::ScopePaused,
            ApiCode::ScopeRevoked,
            ApiCode::Unauthenticated,
        ] {
            let fake = Fake::answering(vec![Err(refusal(code))]);
            let mut held = started(&fake).await;
            // Refused even while the lease held is still live.
            fake.now.set(30_000);
            let f = held.keep(&fake).await.unwrap_err();
            assert_eq!((f.code, f.api), (1, Some(code)));
            assert_eq!(
                f.message,
                format!(
                    "the server refused to renew the lease on scope {SCOPE}, so the stream \
                     stopped: {} ({}): no [request r]",
                    code.as_str(),
                    code.http_status()
                )
            );
        }
    }

    #[tokio::test]
    async fn a_transient_failure_keeps_the_live_lease_and_asks_again_halfway_through_the_rest() {
        let fake = Fake::answering(vec![
            Err(unreachable()),
            Err(refusal(ApiCode::KmsUnavailable)),
            Ok(lease(&[1], 120_000)),
        ]);
        let mut held = started(&fake).await;
        fake.now.set(30_000);
        held.keep(&fake).await.unwrap();
        assert_eq!(held.renew_at, 45_000);
        fake.now.set(44_999);
        held.keep(&fake).await.unwrap();
        assert_eq!(fake.asked.get(), 2);
        fake.now.set(45_000);
        held.keep(&fake).await.unwrap();
        assert_eq!(held.renew_at, 52_500);
        fake.now.set(59_000);
        held.keep(&fake).await.unwrap();
        assert_eq!(held.lease.expires_at(), 120_000);
        assert_eq!(fake.asked.get(), 4);
    }

    #[tokio::test]
    async fn a_lease_that_ended_unrenewed_stops_the_stream() {
        let fake = Fake::answering(vec![Err(unreachable()), Err(unreachable())]);
        let mut held = started(&fake).await;
        fake.now.set(59_999);
        held.keep(&fake).await.unwrap();
        fake.now.set(60_000);
        let f = held.keep(&fake).await.unwrap_err();
        assert_eq!(f.code, 3);
        assert_eq!(
            f.message,
            format!(
                "the lease on scope {SCOPE} ended 0 ms ago and could not be renewed, so the \
                 stream stopped: cannot reach http://127.0.0.1:1: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn a_renewal_that_lost_the_streams_version_or_changed_its_key_stops_it() {
        let other_key = || {
            let keys = vec![ScopeKey::new(
                KeyId::new(SCOPE, 1),
                SecretBytes::from_bytes(&mut [9; 32]),
            )];
            Lease::new(SCOPE, 1, keys, 100_000, 60_000).unwrap()
        };
        let other_scope = || {
            let s = ScopeId::from_bytes([8; 16]);
            let keys = vec![ScopeKey::new(
                KeyId::new(s, 1),
                SecretBytes::from_bytes(&mut [1; 32]),
            )];
            Lease::new(s, 1, keys, 100_000, 60_000).unwrap()
        };
        for (answer, message) in [
            (
                lease(&[2], 100_000),
                format!(
                    "renewing the lease: the lease has no key version 1 for scope {SCOPE} (retired?)"
                ),
            ),
            (
                other_key(),
                format!(
                    "renewing the lease: the server's answer has another key for version 1 of \
                     scope {SCOPE}; the stream stopped"
                ),
            ),
            (
                other_scope(),
                format!(
                    "renewing the lease: the server's answer: a lease on scope {} instead of \
                     {SCOPE}",
                    ScopeId::from_bytes([8; 16])
                ),
            ),
            (
                lease(&[1], 30_000),
                "renewing the lease: lease: expired at 30000 ms, 0 ms ago; renew it (is this \
                 machine's clock right?)"
                    .to_owned(),
            ),
        ] {
            let fake = Fake::answering(vec![Ok(answer)]);
            let mut held = started(&fake).await;
            fake.now.set(30_000);
            let f = held.keep(&fake).await.unwrap_err();
            assert_eq!((f.code, f.message), (1, message));
        }
    }

    #[tokio::test]
    async fn the_first_lease_is_checked_as_before() {
        let fake = Fake::answering(vec![Ok(lease(&[1], 1_000))]);
        fake.now.set(1_000);
        let f = HeldLease::take(&fake, SCOPE, None).await.err().unwrap();
        assert_eq!(
            f.message,
            "lease: expired at 1000 ms, 0 ms ago; renew it (is this machine's clock right?)"
        );
        let fake = Fake::answering(vec![Err(refusal(ApiCode::ScopePaused))]);
        let f = HeldLease::take(&fake, SCOPE, None).await.err().unwrap();
        assert_eq!(f.message, "scope_paused (409): no [request r]");
        // A transient failure is not retried before the first frame: nothing is running yet.
        let fake = Fake::answering(vec![Err(unreachable())]);
        let f = HeldLease::take(&fake, SCOPE, None).await.err().unwrap();
        assert_eq!(f.code, 3);
        let fake = Fake::answering(vec![Ok(lease(&[1, 2], 1_000))]);
        let (held, key) = HeldLease::take(&fake, SCOPE, None).await.unwrap();
        assert_eq!(key.id().version, 2);
        assert_eq!((held.version, held.renew_at), (2, 500));
    }
}
