//! What both data-path benches drive: byok's router and the HTTP floor's, set up with one org,
//! one scope and a service token, and the 1 KiB encrypt and decrypt requests to send them.
//! Included by `benches/data_path.rs` (criterion, time) and `benches/data_path_ir.rs`
//! (instructions, under callgrind).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use base64ct::{Base64, Encoding};
use byok_server::api::rate_limit::{RateLimitConfig, RateLimits};
use byok_server::api::{Api, ApiOptions, router};
use byok_server::service::Service;
use byok_server::service::kms::KmsSettings;
use byok_server::store::{Database, Role};

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/http_floor.rs"]
mod http_floor;

/// One server under test and what to send it.
pub(crate) struct Target<S> {
    pub(crate) router: S,
    pub(crate) token: String,
    pub(crate) encrypt_path: String,
    pub(crate) decrypt_path: String,
    pub(crate) encrypt_body: String,
    pub(crate) decrypt_body: String,
}

impl<S> Target<S> {
    /// The 1 KiB request of kind `op` (`"encrypt"` or `"decrypt"`) for this server.
    pub(crate) fn request(&self, op: &str) -> Request<Body> {
        let (path, body) = if op == "encrypt" {
            (&self.encrypt_path, &self.encrypt_body)
        } else {
            (&self.decrypt_path, &self.decrypt_body)
        };
        request(path, &self.token, body)
    }
}

/// A data request as a client sends it.
fn request(path: &str, token: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body.to_owned()))
        .expect("a request")
}

/// Sends `req` and collects the answer's body; panics on anything but success.
pub(crate) async fn call<S>(router: &S, req: Request<Body>) -> axum::body::Bytes
where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    let resp = tower::Service::call(&mut router.clone(), req)
        .await
        .expect("infallible");
    assert!(resp.status().is_success(), "{}", resp.status());
    axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("a body")
}

/// byok with a managed root key (no KMS on this path once cached), one org, one scope and a
/// service token; and the floor on the same paths.
pub(crate) async fn targets() -> (Target<Api>, Target<Router>) {
    let db = Database::open("sqlite::memory:").await.expect("sqlite");
    let managed =
        byok_core::scope::managed_key(byok_core::SecretBytes::random(&mut rand::rng()), 1);
    let service = Arc::new(
        Service::new(
            db,
            managed,
            Duration::from_secs(3600),
            KmsSettings::default(),
        )
        .expect("service"),
    );
    let (org, _) = service
        .create_org("bench", None, None, None)
        .await
        .expect("org");
    let scope = service.create_scope(org, org, "team").await.expect("scope");
    let (_, token) = service
        .create_token(org, Role::Service, "bench", None)
        .await
        .expect("token");
    let rate = RateLimitConfig {
        per_org: 0,
        per_token: 0,
    };
    let options = ApiOptions {
        request_timeout: Duration::from_secs(30),
        rate,
        metrics_here: true,
    };
    let byok = router(service, &options, Arc::new(RateLimits::new(rate)));
    let encrypt_path = format!("/v1/orgs/{}/scopes/{}/encrypt", org, scope.id);
    let decrypt_path = format!("/v1/orgs/{}/decrypt", org);
    let mut pt = [0u8; 1024];
    rand_core::Rng::fill_bytes(&mut rand::rng(), &mut pt);
    let encrypt_body = serde_json::json!({ "plaintext": Base64::encode_string(&pt) }).to_string();
    let out = call(&byok, request(&encrypt_path, &token, &encrypt_body)).await;
    let ct: serde_json::Value = serde_json::from_slice(&out).expect("json");
    let decrypt_body = serde_json::json!({ "ciphertext": ct["ciphertext"] }).to_string();
    let byok = Target {
        router: byok,
        token: token.to_string(),
        encrypt_path,
        decrypt_path,
        encrypt_body,
        decrypt_body,
    };
    let floor = Target {
        router: http_floor::router(),
        token: byok.token.clone(),
        encrypt_path: byok.encrypt_path.clone(),
        decrypt_path: byok.decrypt_path.clone(),
        encrypt_body: byok.encrypt_body.clone(),
        decrypt_body: byok.decrypt_body.clone(),
    };
    (byok, floor)
}
