//! The HTTP floor (`examples/http_floor.rs`) served through byok's own request frame and
//! listener (`api::request_ids::Api`, `serve::listener`: request ids, deadline, body limit,
//! idle and head timers, connection cap) with byok's default limits. Between the floor and
//! `byok serve`, it splits byok's cost into the frame's and the service's
//! (`BYOK_BENCH_SERVERS="floor frame byok" ./scripts/bench-server.sh`).
//!
//!   cargo run --release -p byok-server --example floor_frame -- 127.0.0.1:8082

use std::time::Duration;

use byok_server::api::request_ids::{Api, Routes};
use byok_server::serve::listener::{ConnLimits, serve};

#[allow(dead_code, unreachable_pub)]
#[path = "http_floor.rs"]
mod http_floor;

#[tokio::main]
async fn main() -> Result<(), String> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8082".into());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("floor in byok's frame listening on {addr}");
    // byok serve's defaults (docs/server.md).
    let limits = ConnLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 1024,
    };
    let api = Api::new(
        http_floor::router(),
        Routes::default(),
        Duration::from_secs(30),
        byok_server::api::MAX_BODY,
    );
    serve(listener, None, limits, api, std::future::pending()).await
}
