//! The JS package at a live edge: Node runs `host-wasm/tests/live/edge.mjs` (the wasm module and
//! the shared lease client, as `scripts/build-wasm.sh` packaged them) against a real `byok
//! serve`. Ciphertexts cross both ways; a token revoke and a pause stop the edge within one
//! lease TTL, with the server's codes.

use std::path::PathBuf;
use std::process::Command;

use byok_tests::fixtures::TestServer;
use serde_json::Value;

/// The package `scripts/build-wasm.sh` made (the test command builds it before this test).
fn package() -> PathBuf {
    let pkg = std::env::var_os("BYOK_WASM_PKG").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../host-wasm/pkg"),
        PathBuf::from,
    );
    assert!(
        pkg.join("byok_wasm_bg.wasm").exists() && pkg.join("lease_client.js").exists(),
        "no JS package in {}: run scripts/build-wasm.sh first",
        pkg.display()
    );
    pkg.canonicalize().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_edge_interoperates_and_stops_within_one_lease_ttl() {
    let pkg = package();
    let ttl = 2_000;
    let (ts, o, scope) = TestServer::edge("edge-node", ttl).await;
    let (second_id, second) = o.token(&ts, "service", "second-edge").await;
    let out = Command::new("node")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../host-wasm/tests/live/edge.mjs"))
        .env("BYOK_WASM_PKG", &pkg)
        .env("BYOK_SERVER", &ts.url)
        .env("BYOK_ORG", &o.id)
        .env("BYOK_SCOPE", &scope)
        .env("BYOK_LEASE_TTL_MS", ttl.to_string())
        .env("BYOK_SERVICE_TOKEN", &o.service)
        .env("BYOK_SECOND_TOKEN", &second)
        .env("BYOK_SECOND_TOKEN_ID", &second_id)
        .env("BYOK_ADMIN_TOKEN", &o.admin)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // Every lease granted is in the audit log, with the audience that asked and its token.
    let leases: Vec<Value> = o
        .audit(&ts, &o.auditor)
        .await
        .into_iter()
        .filter(|r| r["event"]["type"] == "lease_issued")
        .map(|r| r["event"].clone())
        .collect();
    assert!(leases.len() >= 3, "{leases:?}");
    assert!(
        leases.iter().any(|e| e["audience"] == "edge-node-test"),
        "{leases:?}"
    );
    assert!(
        leases
            .iter()
            .any(|e| e["actor"]["token"] == second_id.as_str()),
        "{leases:?}"
    );
}
