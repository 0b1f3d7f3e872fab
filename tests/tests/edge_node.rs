//! The JS package at a live edge: Node runs `host-wasm/tests/live/edge.mjs` (the wasm module and
//! the shared lease client, as `scripts/build-wasm.sh` packaged them) against a real `byok
//! serve`. Ciphertexts cross both ways; a token revoke and a pause stop the edge within one
//! lease TTL, with the server's codes.

use std::path::PathBuf;
use std::process::Command;

use byok_tests::fixtures::{TestServer, assert_status};
use byok_tests::server::cli_ok;
use serde_json::{Value, json};

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
    // A framed stream from the CLI, for the edge to open; the edge's, for the CLI.
    let cli = |args: &[&std::ffi::OsStr]| {
        cli_ok(args, &o.cli_env(&ts.url, &o.service));
    };
    let pattern: Vec<u8> = (0..300_000u32).map(|i| ((i * 7) % 251) as u8).collect();
    let (plain, from_cli, from_edge, opened) = (
        ts.dir.join("plain.bin"),
        ts.dir.join("cli.byok"),
        ts.dir.join("edge.byok"),
        ts.dir.join("opened.bin"),
    );
    std::fs::write(&plain, &pattern).unwrap();
    cli(&[
        "encrypt".as_ref(),
        "--scope".as_ref(),
        scope.as_ref(),
        "--stream".as_ref(),
        "--context".as_ref(),
        "tenant=acme".as_ref(),
        plain.as_os_str(),
        "-o".as_ref(),
        from_cli.as_os_str(),
    ]);
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
        .env("BYOK_STREAM_IN", &from_cli)
        .env("BYOK_STREAM_OUT", &from_edge)
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
    // The edge's stream opens with the CLI, once the scope the script paused is resumed.
    assert_status(&o.act(&ts, &scope, "resume", json!({})).await, 200);
    cli(&[
        "decrypt".as_ref(),
        "--context".as_ref(),
        "tenant=acme".as_ref(),
        from_edge.as_os_str(),
        "-o".as_ref(),
        opened.as_os_str(),
    ]);
    assert!(
        std::fs::read(&opened).unwrap() == pattern,
        "the edge's stream opened to other bytes"
    );

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
