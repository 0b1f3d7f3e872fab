//! The HTTP floor for `scripts/bench-server.sh`: the same stack as `byok serve` (axum on a
//! multi-threaded tokio runtime, the same request and answer types through serde, the same
//! base64 and `byok:v1:` armor work, the same body limit) with no token lookup, no key, no crypto
//! and no audit. What `byok serve` reaches as a share of this is what its own work costs.
//!
//!   cargo run --release -p byok-server --example http_floor -- 127.0.0.1:8081
//!
//! `POST /v1/orgs/{org}/scopes/{scope}/encrypt` answers a "ciphertext" as long as a real one
//! (the plaintext plus format v1's overhead, copied, not sealed); `POST /v1/orgs/{org}/decrypt`
//! gives back the bytes that a real decrypt would. Both parse the path ids as byok does.

use axum::extract::{DefaultBodyLimit, Path};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use base64ct::{Base64, Encoding};
use byok_server::api::data::{DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse};
use byok_server::api::error::ApiError;

/// Format v1 single mode's overhead: header, commitment and tag (docs/format.md: 108 bytes).
const OVERHEAD: usize = 108;

async fn encrypt(
    Path((org, scope)): Path<(String, String)>,
    Json(req): Json<EncryptRequest>,
) -> Result<Json<EncryptResponse>, ApiError> {
    byok_server::api::auth::parse_id(&org, "org")?;
    byok_server::api::auth::parse_id(&scope, "scope")?;
    let plaintext = Base64::decode_vec(&req.plaintext)
        .map_err(|_| ApiError::invalid("plaintext must be standard base64"))?;
    let mut ct = vec![0u8; OVERHEAD];
    ct.extend_from_slice(&plaintext);
    Ok(Json(EncryptResponse {
        ciphertext: byok_core::format::armor::encode(&ct),
    }))
}

async fn decrypt(
    Path(org): Path<String>,
    Json(req): Json<DecryptRequest>,
) -> Result<Json<DecryptResponse>, ApiError> {
    byok_server::api::auth::parse_id(&org, "org")?;
    let ct = byok_core::format::armor::decode(&req.ciphertext)
        .map_err(|_| ApiError::invalid("not byok:v1: text"))?;
    let pt = ct.get(OVERHEAD.min(ct.len())..).unwrap_or_default();
    Ok(Json(DecryptResponse {
        plaintext: Base64::encode_string(pt),
    }))
}

/// The floor's router (also driven in process by `benches/data_path.rs`).
pub fn router() -> Router {
    Router::new()
        .route("/v1/orgs/{org}/scopes/{scope}/encrypt", post(encrypt))
        .route("/v1/orgs/{org}/decrypt", post(decrypt))
        .route("/healthz", axum::routing::get(|| async { StatusCode::OK }))
        .layer(DefaultBodyLimit::max(byok_server::api::MAX_BODY))
}

#[allow(dead_code)] // Unused when the bench includes this file as a module.
#[tokio::main]
async fn main() -> Result<(), String> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let app = router();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("floor listening on {addr}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}
