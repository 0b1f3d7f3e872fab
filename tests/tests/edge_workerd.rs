//! The example Worker (`host-wasm/examples/worker`) in `workerd`, Cloudflare's open-source
//! Workers runtime, against a real `byok serve`: bodies encrypted in the Worker open on the
//! server and the reverse, and a pause on the server stops the Worker within one lease TTL with
//! the server's code.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use byok_tests::fixtures::{TestServer, assert_status};
use byok_tests::server::temp_dir;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `workerd` as the test command installs it (`npm ci` in the example's directory).
fn workerd() -> PathBuf {
    let bin = repo().join("host-wasm/examples/worker/node_modules/.bin/workerd");
    assert!(
        bin.exists(),
        "no workerd: run `npm ci --prefix host-wasm/examples/worker` (the test command does)"
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Worker's directory in `dir`: worker.js, the package, and config.capnp with `values`.
fn stage(dir: &Path, values: &[(&str, &str)]) {
    let example = repo().join("host-wasm/examples/worker");
    let pkg = repo().join("host-wasm/pkg");
    std::fs::create_dir_all(dir.join("pkg")).unwrap();
    std::fs::copy(example.join("worker.js"), dir.join("worker.js")).unwrap();
    for f in ["byok_wasm.js", "lease_client.js", "byok_wasm_bg.wasm"] {
        std::fs::copy(pkg.join(f), dir.join("pkg").join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}: run scripts/build-wasm.sh first"));
    }
    let mut config = std::fs::read_to_string(example.join("config.capnp")).unwrap();
    for (k, v) in values {
        config = config.replace(&format!("@{k}@"), v);
    }
    assert!(
        !config.contains("@BYOK_"),
        "a placeholder is left: {config}"
    );
    std::fs::write(dir.join("config.capnp"), config).unwrap();
}

struct Workerd(Child);

impl Drop for Workerd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_worker_in_workerd_interoperates_and_stops_within_one_lease_ttl() {
    let bin = workerd();
    let ttl = 2_000;
    let (ts, o, scope) = TestServer::edge("edge-workerd", ttl).await;
    let dir = temp_dir("edge-workerd-worker");
    let listen = format!("127.0.0.1:{}", free_port());
    stage(
        &dir,
        &[
            ("LISTEN", &listen),
            ("BYOK_SERVER", &ts.url),
            ("BYOK_ORG", &o.id),
            ("BYOK_SCOPE", &scope),
            ("BYOK_TOKEN", &o.service),
            ("BYOK_AUDIENCE", "workerd-test"),
        ],
    );
    let log = std::fs::File::create(dir.join("workerd.log")).unwrap();
    let _workerd = Workerd(
        Command::new(bin)
            .args(["serve", "config.capnp"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let worker = |path: &str| format!("http://{listen}{path}?tenant=acme");
    // Up when it answers.
    let started = Instant::now();
    while http.post(worker("/nothing")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "workerd did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Sealed in the Worker, opened by the server.
    let r = http
        .post(worker("/encrypt"))
        .body("sealed in workerd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.bytes().await.unwrap();
    let armored = byok_core::format::armor::encode(&ct);
    let body = json!({ "ciphertext": armored, "context": { "tenant": "acme" } });
    let v = assert_status(&ts.post(&o.path("/decrypt"), &o.service, &body).await, 200);
    assert_eq!(
        Base64::decode_vec(v["plaintext"].as_str().unwrap()).unwrap(),
        b"sealed in workerd"
    );
    // Sealed by the server, opened in the Worker.
    let body = json!({ "plaintext": Base64::encode_string(b"sealed by byok"), "context": { "tenant": "acme" } });
    let v = assert_status(
        &ts.post(&o.scope_path(&scope, "encrypt"), &o.service, &body)
            .await,
        200,
    );
    let ct = byok_core::format::armor::decode(v["ciphertext"].as_str().unwrap()).unwrap();
    let r = http.post(worker("/decrypt")).body(ct).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], b"sealed by byok");

    // A pause: the Worker keeps its lease until the renewal is refused, within one TTL.
    let paused = Instant::now();
    assert_status(&o.act(&ts, &scope, "pause", json!({})).await, 200);
    let (status, v) = loop {
        let r = http
            .post(worker("/encrypt"))
            .body("x")
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            let status = r.status().as_u16();
            let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            break (status, body);
        }
        assert!(
            paused.elapsed() < Duration::from_millis(ttl + 500),
            "the Worker still encrypts {:?} after the pause",
            paused.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (status, &v["error"]["code"]),
        (409, &json!("scope_paused")),
        "{v}"
    );
    // Its leases are in the audit log, with the audience.
    let leases = o
        .audit(&ts, &o.auditor)
        .await
        .into_iter()
        .filter(|r| r["event"]["type"] == "lease_issued")
        .collect::<Vec<_>>();
    assert!(
        leases
            .iter()
            .all(|r| r["event"]["audience"] == "workerd-test"),
        "{leases:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
