//! For the operator's tooling: liveness, readiness, Prometheus metrics, the OpenAPI document.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use byok_core::api_code::RETRY_AFTER_SECS;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use crate::service::Service;
use crate::store::Role;
use byok_core::ApiCode;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `/readyz`'s database probe: one ping at a time, its answer kept for [`Self::FRESH`]. The
/// route takes no token and no rate limit; a ping per request let a flood of probes hold the
/// pool's connections, which withdrawals, key loads and token lookups need.
#[derive(Default)]
pub struct DatabaseProbe(tokio::sync::Mutex<Option<(tokio::time::Instant, bool)>>);

impl DatabaseProbe {
    /// How long a ping's answer stands.
    pub const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

    /// Whether the database answered a ping within the last [`Self::FRESH`] (pinging now if
    /// not; callers meanwhile wait for that ping and share its answer).
    async fn database(&self, service: &Service) -> bool {
        let mut last = self.0.lock().await;
        if let Some((at, ok)) = *last
            && at.elapsed() < Self::FRESH
        {
            return ok;
        }
        let ok = service.store().ping().await;
        *last = Some((tokio::time::Instant::now(), ok));
        ok
    }
}

/// Readiness: the database answers, (with replicas) this replica has read the orgs' versions
/// within the bound its withdrawal receipts state, and (as an OIDC issuer) it has read its
/// signing keys recently enough to publish them.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready"), (status = 503, description = "database unavailable, or (replicas) this replica has not read the others' changes for too long, or (issuer) its signing keys")))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    // The database first, the likelier cause of a replica's lag; one that answers does not
    // make a replica that stopped following ready (it refuses data calls until it reads).
    let not_ready = if !s.ready.database(&s.service).await {
        "database unavailable\n"
    } else if s.service.replica_behind() {
        "replica behind: the other replicas' changes have not been read for too long\n"
    } else if s.service.issuer_behind() {
        "issuer behind: its signing keys have not been read for too long, so it publishes none\n"
    } else {
        return (StatusCode::OK, "ready\n").into_response();
    };
    // Every 503 carries Retry-After, this one too.
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
        not_ready,
    )
        .into_response()
}

/// Prometheus metrics (text exposition format).
///
/// On the API's own address only the operator token may read them; with `--metrics-listen`
/// they move to that address (for a scraper on an internal network) and leave this one. The
/// counters are server-wide: no label names an org, so nothing here tells one org about
/// another.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "metrics"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn metrics(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    if caller.role != Role::Operator {
        return Err(ApiError::new(
            ApiCode::Forbidden,
            "only the operator token reads metrics here; or serve them on their own address with --metrics-listen",
        ));
    }
    Ok(exposition(&s.service))
}

/// Prometheus metrics on the separate `--metrics-listen` address (no token: that address is
/// meant for an internal network).
pub async fn metrics_open(State(s): State<AppState>) -> Response {
    exposition(&s.service)
}

fn exposition(service: &Service) -> Response {
    let m = &service.metrics;
    let mut out = String::new();
    for (name, help, v) in [
        (
            "byok_encrypt_total",
            "Encrypt operations served.",
            &m.encrypts,
        ),
        (
            "byok_decrypt_total",
            "Decrypt operations served.",
            &m.decrypts,
        ),
        (
            "byok_datakey_total",
            "Data keys handed out or unwrapped.",
            &m.datakeys,
        ),
        (
            "byok_key_cache_hits_total",
            "Scope keys served from the cache.",
            &m.cache_hits,
        ),
        (
            "byok_key_cache_misses_total",
            "Scope keys resolved from the root.",
            &m.cache_misses,
        ),
        (
            "byok_root_unwraps_total",
            "Root keys unwrapped by their holder.",
            &m.root_unwraps,
        ),
        (
            "byok_kms_calls_total",
            "Calls to customer KMSs.",
            &m.kms_calls,
        ),
        ("byok_leases_total", "Edge leases issued.", &m.leases),
        (
            "byok_outage_grace_serves_total",
            "Keys served past their cache TTL in outage grace (the KMS unreachable).",
            &m.grace_serves,
        ),
        (
            "byok_remote_changes_total",
            "Orgs dropped from memory because another replica changed them.",
            &m.remote_changes,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP byok_key_cache_entries Unwrapped keys in memory.\n# TYPE byok_key_cache_entries gauge\nbyok_key_cache_entries {}",
        service.cache().len()
    );
    let _ = writeln!(
        out,
        "# HELP byok_outage_grace_orgs Orgs serving cached keys in outage grace now.\n# TYPE byok_outage_grace_orgs gauge\nbyok_outage_grace_orgs {}",
        m.orgs_in_grace.load(Ordering::Relaxed)
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The OpenAPI document of this API, built and serialized once: the route takes no token and
/// no rate limit, and building the document (over 100 KB) per request let a few hundred
/// clients keep the cores busy.
pub async fn openapi() -> impl IntoResponse {
    static DOCUMENT: std::sync::LazyLock<bytes::Bytes> = std::sync::LazyLock::new(|| {
        bytes::Bytes::from(serde_json::to_vec(&super::openapi()).unwrap_or_default())
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::DatabaseProbe;
    use crate::service::test_service;
    use crate::store::Database;

    /// The probe pings once per second at most, whoever asks: a database gone shows within
    /// that second, not on the call that found it, and the calls in between share the answer.
    #[tokio::test]
    async fn the_database_probe_pings_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_dir(dir.path()).await.unwrap();
        let s = test_service(&db, 3);
        let probe = DatabaseProbe::default();
        assert!(probe.database(&s).await);
        db.pool().close().await;
        assert!(probe.database(&s).await, "pinged again within the second");
        // The answer a second old: the next asks the database, which is gone.
        let mut last = probe.0.lock().await;
        *last = last.map(|(at, ok)| (at - DatabaseProbe::FRESH, ok));
        drop(last);
        assert!(!probe.database(&s).await, "the database gone was not seen");
    }
}
