//! The REST API: JSON over HTTP, described by the OpenAPI document at `/openapi.json` (and
//! checked in as `docs/openapi.json`, which a test compares with the code).
//!
//! Every response carries an `x-request-id`; errors carry it in the body too, and the server
//! logs it, so an operator can find what happened without the caller sending anything secret.

pub mod audit;
pub mod auth;
pub mod data;
pub mod error;
pub mod extract;
pub mod issuer;
pub mod keys;
pub mod ops;
pub mod orgs;
pub mod paths;
pub mod rate_limit;
pub mod request_ids;
pub mod scopes;
pub mod secret_json;
pub mod setup_page;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};
use byok_core::ApiCode;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::service::Service;
use error::ApiError;
use rate_limit::{RateLimitConfig, RateLimits};
pub use request_ids::Api;
use request_ids::Routes;

/// Request bodies larger than this are refused with `too_large` (the JSON API takes at most
/// 4 MiB of plaintext, base64-encoded).
pub const MAX_BODY: usize = 6 << 20;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
    /// The per-org and per-token rate limits.
    pub rate: Arc<RateLimits>,
    /// `/readyz`'s database probe, shared by its callers ([`ops::DatabaseProbe`]).
    pub ready: Arc<ops::DatabaseProbe>,
}

/// How the API is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiOptions {
    /// The time a request may take in all, body included, counted from its first wait
    /// (`request_ids::Answer`); past it the answer is `408 request_timeout`.
    pub request_timeout: std::time::Duration,
    /// Rate limits (the limiters themselves are made from these by the caller, who also
    /// sweeps them).
    pub rate: RateLimitConfig,
    /// Whether `/metrics` is served here (to the operator token) or on its own address.
    pub metrics_here: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "byok", description = "Bring-your-own-key envelope encryption: orgs, scope trees, keys, encrypt and decrypt, audit."),
    paths(
        orgs::create_org, orgs::get_org, orgs::update_org,
        tokens::create, tokens::list, tokens::revoke, tokens::claim,
        tokens::list_operator, tokens::revoke_operator, tokens::rotate_operator, tokens::whoami,
        scopes::create_scope, scopes::list_scopes, scopes::get_scope,
        scopes::pause, scopes::resume, scopes::revoke, scopes::rotate, scopes::retire,
        data::encrypt, data::decrypt, data::datakey, data::unwrap_datakey,
        data::create_stored, data::get_stored, data::delete_stored, data::lease,
        keys::list, keys::add, keys::validate, keys::policy, keys::grant_facts, keys::check,
        keys::set_default, keys::disable, keys::enable, keys::disable_all, keys::revalidate, keys::job,
        audit::read, audit::verify, audit::verifier_key, audit::checkpoint, audit::checkpoints,
        audit::inclusion, audit::consistency, audit::set_witness, audit::remove_witness, audit::cosign,
        ops::healthz, ops::readyz, ops::metrics, issuer::discovery, issuer::jwks, issuer::keys, issuer::replace_keys,
    ),
    modifiers(&Bearer),
    tags(
        (name = "orgs", description = "Organizations"),
        (name = "tokens", description = "Bearer tokens: create, list, revoke, rotate the operator's"),
        (name = "scopes", description = "The scope tree: create, pause, resume, revoke, rotate"),
        (name = "keys", description = "Customer master keys: attach, validate, default, disable, health"),
        (name = "data", description = "Encrypt, decrypt, data keys (service tokens)"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "ops", description = "Health and metrics"),
        (name = "issuer", description = "byok as an OIDC issuer: the documents the clouds fetch to trust its tokens, and the operator's replacement of its keys"),
    )
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}

/// The OpenAPI document as the pretty JSON that is checked in.
pub fn openapi_json() -> String {
    let mut s = serde_json::to_string_pretty(&openapi()).unwrap_or_default();
    s.push('\n');
    s
}

/// The routes and their templates, built together so that the log line's route names the
/// same templates the router matches ([`request_ids::Routes`]).
struct Table {
    router: Router<AppState>,
    routes: Routes,
}

impl Table {
    fn new() -> Self {
        Self {
            router: Router::new(),
            routes: Routes::default(),
        }
    }

    fn route(mut self, template: &'static str, handler: MethodRouter<AppState>) -> Self {
        self.routes.add(template);
        self.router = self.router.route(template, handler);
        self
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ApiCode::NotFound, "no such endpoint; see /openapi.json")
}

/// The router.
pub fn router(service: Arc<Service>, options: &ApiOptions, rate: Arc<RateLimits>) -> Api {
    let state = AppState {
        service,
        rate,
        ready: Arc::default(),
    };
    let metrics = if options.metrics_here {
        get(ops::metrics)
    } else {
        get(not_found)
    };
    let table = Table::new()
        .route("/v1/orgs", post(orgs::create_org))
        .route("/v1/orgs/{org}", get(orgs::get_org).patch(orgs::update_org))
        .route(
            "/v1/orgs/{org}/tokens",
            post(tokens::create).get(tokens::list),
        )
        .route("/v1/orgs/{org}/tokens/claim", post(tokens::claim))
        .route("/v1/orgs/{org}/tokens/{id}", delete(tokens::revoke))
        .route("/v1/whoami", get(tokens::whoami))
        .route("/v1/tokens", get(tokens::list_operator))
        .route("/v1/tokens/rotate", post(tokens::rotate_operator))
        .route("/v1/tokens/{id}", delete(tokens::revoke_operator))
        .route("/v1/issuer/keys", get(issuer::keys))
        .route("/v1/issuer/keys/replace", post(issuer::replace_keys))
        .route(
            "/v1/orgs/{org}/scopes",
            post(scopes::create_scope).get(scopes::list_scopes),
        )
        .route("/v1/orgs/{org}/scopes/{scope}", get(scopes::get_scope))
        .route("/v1/orgs/{org}/scopes/{scope}/pause", post(scopes::pause))
        .route("/v1/orgs/{org}/scopes/{scope}/resume", post(scopes::resume))
        .route("/v1/orgs/{org}/scopes/{scope}/revoke", post(scopes::revoke))
        .route("/v1/orgs/{org}/scopes/{scope}/rotate", post(scopes::rotate))
        .route("/v1/orgs/{org}/scopes/{scope}/retire", post(scopes::retire))
        .route(
            "/v1/orgs/{org}/scopes/{scope}/datakeys",
            post(data::create_stored),
        )
        .route("/v1/orgs/{org}/datakeys/get", post(data::get_stored))
        .route("/v1/orgs/{org}/datakeys/delete", post(data::delete_stored))
        .route("/v1/orgs/{org}/scopes/{scope}/lease", post(data::lease))
        .route("/v1/orgs/{org}/scopes/{scope}/encrypt", post(data::encrypt))
        .route("/v1/orgs/{org}/decrypt", post(data::decrypt))
        .route("/v1/orgs/{org}/scopes/{scope}/datakey", post(data::datakey))
        .route("/v1/orgs/{org}/datakey/unwrap", post(data::unwrap_datakey))
        .route("/v1/orgs/{org}/keys", get(keys::list).post(keys::add))
        .route("/v1/orgs/{org}/keys/validate", post(keys::validate))
        .route("/v1/orgs/{org}/keys/policy", get(keys::policy))
        .route("/v1/orgs/{org}/keys/grant-facts", get(keys::grant_facts))
        .route("/v1/orgs/{org}/keys/check", post(keys::check))
        .route("/v1/orgs/{org}/keys/disable-all", post(keys::disable_all))
        .route("/v1/orgs/{org}/keys/{key}/default", post(keys::set_default))
        .route("/v1/orgs/{org}/keys/{key}/disable", post(keys::disable))
        .route("/v1/orgs/{org}/keys/{key}/enable", post(keys::enable))
        .route("/v1/orgs/{org}/keys/{key}/validate", post(keys::revalidate))
        .route("/v1/orgs/{org}/job", get(keys::job))
        .route("/v1/orgs/{org}/audit", get(audit::read))
        .route("/v1/orgs/{org}/audit/verify", get(audit::verify))
        .route("/v1/orgs/{org}/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/orgs/{org}/audit/checkpoints", get(audit::checkpoints))
        .route(
            "/v1/orgs/{org}/audit/proof/inclusion",
            get(audit::inclusion),
        )
        .route(
            "/v1/orgs/{org}/audit/proof/consistency",
            get(audit::consistency),
        )
        .route(
            "/v1/orgs/{org}/audit/witness",
            put(audit::set_witness).delete(audit::remove_witness),
        )
        .route("/v1/orgs/{org}/audit/cosignatures", post(audit::cosign))
        .route("/v1/audit/verifier-key", get(audit::verifier_key))
        .route("/.well-known/openid-configuration", get(issuer::discovery))
        .route("/.well-known/jwks.json", get(issuer::jwks))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", metrics)
        .route("/openapi.json", get(ops::openapi))
        .route("/ui", get(setup_page::redirect))
        .route("/ui/", get(setup_page::index))
        .route("/ui/{*path}", get(setup_page::file));
    // An issuer URL with a path (`https://host/oidc`) names its documents under that path: the
    // clouds fetch `{issuer}/.well-known/...`. Its characters are checked (core's `IssuerUrl`).
    let table = match state.service.issuer_path().filter(|p| !p.is_empty()) {
        // Templates live as long as the router's log names; this one is made once per router.
        Some(p) => {
            let leak = |t: String| -> &'static str { Box::leak(t.into_boxed_str()) };
            table
                .route(
                    leak(format!("{p}/.well-known/openid-configuration")),
                    get(issuer::discovery),
                )
                .route(
                    leak(format!("{p}/.well-known/jwks.json")),
                    get(issuer::jwks),
                )
        }
        None => table,
    };
    let router = table
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Api::new(router, table.routes, options.request_timeout, MAX_BODY)
}

/// A known path with a method it does not take: the JSON error every answer has.
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ApiCode::MethodNotAllowed,
        "this endpoint does not take that method; see /openapi.json",
    )
}

/// The router of the separate metrics address (`--metrics-listen`): `/metrics` only, no token.
pub fn metrics_router(service: Arc<Service>) -> Api {
    let state = AppState {
        service,
        rate: Arc::new(RateLimits::new(RateLimitConfig {
            per_org: 0,
            per_token: 0,
        })),
        ready: Arc::default(),
    };
    let table = Table::new().route("/metrics", get(ops::metrics_open));
    let router = table
        .router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    Api::new(
        router,
        table.routes,
        std::time::Duration::from_secs(10),
        MAX_BODY,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_openapi_matches_the_code() {
        let checked_in = include_str!("../../../docs/openapi.json");
        assert!(
            super::openapi_json() == checked_in,
            "docs/openapi.json is stale: run `cargo run -p byok-server -- openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn error_table_in_docs_matches_the_codes() {
        let doc = include_str!("../../../docs/server.md");
        let (begin, end) = ("<!-- error-codes:begin -->\n", "<!-- error-codes:end -->");
        let table = doc
            .split_once(begin)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table)
            .expect("docs/server.md has the error-codes markers");
        assert!(
            table == byok_core::ApiCode::markdown_table(),
            "the error table in docs/server.md is stale: run `just error-codes`, or replace the \
             lines between the error-codes markers with the output of \
             `cargo run -q -p byok-server -- error-codes`"
        );
    }
}
