//! AWS credentials for calls made on an org's behalf: static keys (development), `AssumeRole`
//! with the org's external id, or `AssumeRoleWithWebIdentity` with byok's own OIDC token.
//! Temporary credentials are cached until [`needs_refresh`] says they are close to expiry, so a
//! busy org costs one STS call per credential lifetime, not one per KMS call.
//!
//! Each cached entry has its own async lock: concurrent calls for one org wait for a single STS
//! exchange (no stampede), while orgs never wait on each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use byok_core::kms::aws::Endpoint;
use byok_core::kms::aws::request::AwsCredentials;
use byok_core::kms::aws::sts::{
    RoleArn, assume_role_request, assume_role_with_web_identity_request, needs_refresh,
    parse_assume_role,
};
use byok_core::kms::{KmsError, KmsErrorKind};
use byok_core::retry::RetryPolicy;
use zeroize::Zeroizing;

use crate::kms_call::{call, unix_now};
use crate::transport::Transport;

/// Temporary credentials are asked for this long.
pub const SESSION_DURATION: Duration = Duration::from_secs(3600);

/// Mints the OIDC token byok presents to STS for an org. The issuer (keys, discovery document,
/// rotation) lives elsewhere; the cache only needs a fresh token when it must refresh.
pub trait WebIdentityTokenSource: Send + Sync {
    /// A fresh token for audience `sts.amazonaws.com` whose subject is
    /// `policy::oidc_subject(org)`. The error message is shown to operators: no token bytes.
    fn token(&self, org: &str) -> Result<Zeroizing<String>, String>;
}

/// How byok gets credentials for one org's key.
#[derive(Clone)]
pub enum CredentialSource {
    /// Long-lived keys. For development and tests; production uses a role.
    Static(AwsCredentials),
    /// `AssumeRole` of the customer's role, signed with the vendor's own credentials, presenting
    /// the org's external id.
    AssumeRole {
        /// The vendor's credentials (its principal in the trust policy).
        vendor: AwsCredentials,
        /// The customer's role.
        role: RoleArn,
        /// The org's external id.
        external_id: String,
    },
    /// `AssumeRoleWithWebIdentity` of the customer's role with byok's OIDC token.
    WebIdentity {
        /// The customer's role.
        role: RoleArn,
        /// Where tokens come from.
        tokens: Arc<dyn WebIdentityTokenSource>,
    },
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static(c) => f.debug_tuple("Static").field(c).finish(),
            Self::AssumeRole { role, .. } => f
                .debug_struct("AssumeRole")
                .field("role", &role.as_str())
                .finish_non_exhaustive(),
            Self::WebIdentity { role, .. } => f
                .debug_struct("WebIdentity")
                .field("role", &role.as_str())
                .finish_non_exhaustive(),
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<AwsCredentials>>>;

/// Temporary credentials per (org, role), refreshed shortly before expiry.
pub struct CredentialCache {
    transport: Transport,
    policy: RetryPolicy,
    slots: Mutex<HashMap<(String, String), Slot>>,
    sts_calls: std::sync::atomic::AtomicU64,
    clock: fn() -> Duration,
}

impl CredentialCache {
    /// A cache that calls STS through `transport`, retrying as `policy` allows.
    pub fn new(transport: Transport, policy: RetryPolicy) -> Self {
        Self::with_clock(transport, policy, unix_now)
    }

    /// A cache that reads the time (since the Unix epoch) from `clock` when deciding whether
    /// credentials need a refresh: tests move it forward instead of waiting an hour.
    pub fn with_clock(transport: Transport, policy: RetryPolicy, clock: fn() -> Duration) -> Self {
        Self {
            transport,
            policy,
            slots: Mutex::new(HashMap::new()),
            sts_calls: std::sync::atomic::AtomicU64::new(0),
            clock,
        }
    }

    /// STS exchanges made so far (attempts included), for metrics and tests.
    pub fn sts_calls(&self) -> u64 {
        self.sts_calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets an org's credentials (its key was removed, or the customer changed the role).
    pub fn evict(&self, org: &str) {
        self.lock_slots().retain(|(o, _), _| o != org);
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Slot>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removals), so a poisoned lock is still usable.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Credentials for `org` from `source`; `sts` is the STS endpoint of the key's region.
    pub async fn get(
        &self,
        org: &str,
        source: &CredentialSource,
        sts: &Endpoint,
    ) -> Result<AwsCredentials, KmsError> {
        let role = match source {
            CredentialSource::Static(c) => return Ok(c.clone()),
            CredentialSource::AssumeRole { role, .. }
            | CredentialSource::WebIdentity { role, .. } => role,
        };
        let slot = self
            .lock_slots()
            .entry((org.to_owned(), role.as_str().to_owned()))
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && !needs_refresh(c.expires_at, (self.clock)())
        {
            return Ok(c.clone());
        }
        let fresh = self.assume(org, source, sts).await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    async fn assume(
        &self,
        org: &str,
        source: &CredentialSource,
        sts: &Endpoint,
    ) -> Result<AwsCredentials, KmsError> {
        let session = session_name(org);
        // For backoff jitter only; `Send`, unlike the thread-local generator.
        let mut rng: rand::rngs::StdRng = rand::make_rng();
        let called = match source {
            CredentialSource::Static(c) => return Ok(c.clone()),
            CredentialSource::AssumeRole {
                vendor,
                role,
                external_id,
            } => {
                call(
                    &self.transport,
                    "aws",
                    &self.policy,
                    &mut rng,
                    |now| {
                        assume_role_request(
                            sts,
                            role,
                            &session,
                            external_id,
                            SESSION_DURATION,
                            vendor,
                            now,
                        )
                    },
                    parse_assume_role,
                )
                .await
            }
            CredentialSource::WebIdentity { role, tokens } => {
                let token = tokens.token(org).map_err(|message| KmsError {
                    kind: KmsErrorKind::Unavailable,
                    provider: "aws",
                    code: "TokenSource".into(),
                    message,
                    status: 0,
                })?;
                call(
                    &self.transport,
                    "aws",
                    &self.policy,
                    &mut rng,
                    |_| {
                        Ok(assume_role_with_web_identity_request(
                            sts,
                            role,
                            &session,
                            &token,
                            SESSION_DURATION,
                        ))
                    },
                    parse_assume_role,
                )
                .await
            }
        };
        self.sts_calls.fetch_add(
            u64::from(called.attempts),
            std::sync::atomic::Ordering::Relaxed,
        );
        called.result
    }
}

/// `byok-` and the org id, cut to STS's 64-character limit; CloudTrail in the customer's account
/// shows it, so the customer sees which org a call was for.
fn session_name(org: &str) -> String {
    let mut s: String = format!("byok-{org}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .collect();
    s.truncate(64);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("0a1b"), "byok-0a1b");
        let long = session_name(&"f".repeat(200));
        assert_eq!(long.len(), 64);
        assert_eq!(session_name("a b/c"), "byok-abc");
    }
}
