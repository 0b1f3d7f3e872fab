//! Who is calling: the bearer token's grant, checked against the org in the path. A token of
//! another org gets the same `not_found` as an org that does not exist, so no token can learn
//! whether another org, scope or ciphertext exists.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use byok_core::{ApiCode, ScopeId};

use super::AppState;
use super::error::ApiError;
use crate::service::Authenticated;
use crate::store::Role;

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Its org (`None` for the operator).
    pub org: Option<ScopeId>,
    /// Its role.
    pub role: Role,
    /// Its token's grant (id, name, expiry; never the secret) and hash, as authenticated: data
    /// calls pass it on, to be checked again when they are admitted.
    pub auth: Authenticated,
}

impl Caller {
    /// Checks that the caller may act on `org` with one of `roles`.
    pub fn require(&self, org: ScopeId, roles: &[Role]) -> Result<(), ApiError> {
        if self.org != Some(org) {
            return Err(ApiError::not_found("organization not found"));
        }
        if !roles.contains(&self.role) {
            return Err(ApiError::new(
                ApiCode::Forbidden,
                format!(
                    "a {} token cannot do this; it needs one of: {}",
                    self.role.as_str(),
                    roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Parses `org` from the path ([`parse_id`]) and checks that the caller may act on it with
    /// one of `roles` ([`Caller::require`]): how every handler under `/v1/orgs/{org}` begins.
    pub fn org(&self, org: &str, roles: &[Role]) -> Result<ScopeId, ApiError> {
        let org = parse_id(org, "org")?;
        self.require(org, roles)?;
        Ok(org)
    }
}

/// The credentials of an `Authorization` value in the `Bearer` scheme, whose name is
/// case-insensitive (RFC 9110, section 11.1): `bearer byok_...` is as good as `Bearer`.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthenticated = || {
            ApiError::new(
                ApiCode::Unauthenticated,
                "send a valid token as `Authorization: Bearer byok_...`",
            )
        };
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .map(str::trim)
            .filter(|t| t.starts_with("byok_") && t.len() < 200)
            .ok_or_else(unauthenticated)?;
        let auth = state
            .service
            .authenticate(token)
            .await?
            .ok_or_else(unauthenticated)?;
        // Counted once the token is known, before any key or body is touched. A refusal is
        // held back until the bucket has room (see `rate_limit`).
        if let Err(refused) = state.rate.check(auth.grant.org, &auth.hash) {
            tokio::time::sleep(refused.hold).await;
            return Err(refused.answer);
        }
        let (org, role) = (auth.grant.org, auth.grant.role);
        crate::store::audit::set_actor(auth.grant.clone());
        Ok(Self { org, role, auth })
    }
}

/// The org of a data call (`{org}` in the path), checked against a service token, and that
/// token's authentication, which the call is admitted on: how every handler in `data.rs`
/// begins. Only service tokens touch data; an admin or auditor token gets `forbidden`, a
/// token of another org `not_found`.
pub struct ServiceOrg(pub ScopeId, pub Authenticated);

impl FromRequestParts<AppState> for ServiceOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (org, caller) = caller_on(parts, state, &[Role::Service]).await?;
        Ok(Self(org, caller.auth))
    }
}

/// The org of an audit read (`{org}` in the path), checked against an auditor or admin token.
pub struct ReaderOrg(pub ScopeId);

impl FromRequestParts<AppState> for ReaderOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        org_for(parts, state, &[Role::Auditor, Role::Admin])
            .await
            .map(Self)
    }
}

/// The org of an admin call (`{org}` in the path), checked against an admin token.
pub struct AdminOrg(pub ScopeId);

impl FromRequestParts<AppState> for AdminOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        org_for(parts, state, &[Role::Admin]).await.map(Self)
    }
}

/// The org of an admin call (`{org}` in the path) and its caller, checked against an admin
/// token before the body is read: a caller without the role is told so (403), and the server
/// parses no body for it.
pub struct AdminCaller(pub ScopeId, pub Caller);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        caller_on(parts, state, &[Role::Admin])
            .await
            .map(|(org, caller)| Self(org, caller))
    }
}

/// The operator, checked before the body is read (as [`AdminCaller`]): an org's token is
/// told it may not (403), and the server parses no body for it.
pub struct OperatorCaller(pub Caller);

impl FromRequestParts<AppState> for OperatorCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != Role::Operator {
            return Err(ApiError::new(
                ApiCode::Forbidden,
                format!(
                    "a {} token cannot do this; only the operator token can",
                    caller.role.as_str()
                ),
            ));
        }
        Ok(Self(caller))
    }
}

/// `{org}` of the path, for a caller with one of `roles` on it.
async fn org_for(parts: &mut Parts, state: &AppState, roles: &[Role]) -> Result<ScopeId, ApiError> {
    caller_on(parts, state, roles).await.map(|(org, _)| org)
}

/// `{org}` of the path and the caller, who has one of `roles` on it.
async fn caller_on(
    parts: &mut Parts,
    state: &AppState,
    roles: &[Role],
) -> Result<(ScopeId, Caller), ApiError> {
    let caller = Caller::from_request_parts(parts, state).await?;
    let params = RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|e| {
            ApiError::invalid(format!(
                "the path is not one this call takes: {}",
                e.body_text()
            ))
        })?;
    let org = params
        .iter()
        .find_map(|(name, value)| (name == "org").then_some(value))
        .ok_or_else(|| ApiError::not_found("organization not found"))?;
    Ok((caller.org(org, roles)?, caller))
}

/// Parses an id from the path: 32 hex digits.
pub fn parse_id(text: &str, what: &str) -> Result<ScopeId, ApiError> {
    ScopeId::parse_hex(text)
        .ok_or_else(|| ApiError::invalid(format!("{what} id must be 32 hex digits")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bearer_scheme_is_named_in_any_case() {
        for v in ["Bearer byok_x", "bearer byok_x", "BEARER byok_x"] {
            assert_eq!(super::bearer(v), Some("byok_x"), "{v}");
        }
        for v in ["Basic byok_x", "Bearerbyok_x", "byok_x", "Bearer"] {
            assert_eq!(super::bearer(v), None, "{v}");
        }
    }
}
