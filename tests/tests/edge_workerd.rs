//! The example Worker (`host-wasm/examples/worker`) in `workerd`, Cloudflare's open-source
//! Workers runtime, against a real `byok serve`: bodies encrypted in the Worker open on the
//! server and the reverse, and a pause, a revoke and a token revoke on the server each stop the
//! Worker within one lease TTL with the server's code. The JSON vectors pass in workerd too,
//! through both AES paths (`host-wasm/tests/workerd`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use byok_tests::edge::{
    Caller, Deployment, Withdrawal, first_refusal, no_lease_asked, refused_before_expiry,
};
use byok_tests::fixtures::{TestOrg, TestServer, assert_status};
use byok_tests::server::temp_dir;
use serde_json::json;

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

/// A running `workerd` with the example Worker for deployment `d`, in a directory of its own.
struct Workerd {
    child: Child,
    dir: PathBuf,
    listen: String,
    /// What [`Self::post`] sends as `Authorization`: the deployment's caller token.
    authorization: String,
}

impl Workerd {
    async fn start(ts: &TestServer, o: &TestOrg, d: &Deployment, name: &str) -> Self {
        Self::start_with_callers(ts, o, d, name, &d.caller, "").await
    }

    /// [`Self::start`] with `caller_token` as its `BYOK_EDGE_CALLER_TOKEN` and `next` as its
    /// `BYOK_EDGE_CALLER_TOKEN_NEXT` (empty: unset).
    async fn start_with_callers(
        ts: &TestServer,
        o: &TestOrg,
        d: &Deployment,
        name: &str,
        caller_token: &str,
        next: &str,
    ) -> Self {
        let dir = temp_dir(name);
        let listen = format!("127.0.0.1:{}", free_port());
        stage(
            &dir,
            &[
                ("LISTEN", &listen),
                ("BYOK_SERVER", &ts.url),
                ("BYOK_ORG", &o.id),
                ("BYOK_SCOPE", &d.scope),
                ("BYOK_TOKEN", &d.token),
                ("BYOK_AUDIENCE", "workerd-test"),
                ("BYOK_EDGE_CALLER_TOKEN", caller_token),
                ("BYOK_EDGE_CALLER_TOKEN_NEXT", next),
            ],
        );
        let log = std::fs::File::create(dir.join("workerd.log")).unwrap();
        let child = Command::new(workerd())
            .args(["serve", "config.capnp"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let w = Self {
            child,
            dir,
            listen,
            authorization: d.authorization(),
        };
        // Up when it answers.
        let started = Instant::now();
        while reqwest::Client::new()
            .post(w.url("/nothing"))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "workerd did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.listen)
    }

    /// `POST path_and_query` with `body`, as a known caller: the status and body of the
    /// Worker's answer.
    async fn post(&self, path_and_query: &str, body: impl Into<reqwest::Body>) -> (u16, Vec<u8>) {
        self.post_as(Some(&self.authorization), path_and_query, body)
            .await
    }

    /// [`Self::post`] with `authorization` as the `Authorization` header (none if `None`).
    async fn post_as(
        &self,
        authorization: Option<&str>,
        path_and_query: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Vec<u8>) {
        let mut request = reqwest::Client::new().post(self.url(path_and_query));
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let r = request.body(body).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    }
}

impl Drop for Workerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_worker_in_workerd_interoperates_with_the_server() {
    workerd();
    let (ts, o, _) = TestServer::edge("edge-workerd", 60_000).await;
    let d = Deployment::create(&ts, &o, "workerd").await;
    let worker = Workerd::start(&ts, &o, &d, "edge-workerd-worker").await;

    // Sealed in the Worker, opened by the server.
    let (status, ct) = worker
        .post("/encrypt?tenant=acme", "sealed in workerd")
        .await;
    assert_eq!(status, 200);
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
        &ts.post(&o.scope_path(&d.scope, "encrypt"), &o.service, &body)
            .await,
        200,
    );
    let ct = byok_core::format::armor::decode(v["ciphertext"].as_str().unwrap()).unwrap();
    let (status, pt) = worker.post("/decrypt?tenant=acme", ct.clone()).await;
    assert_eq!((status, &pt[..]), (200, &b"sealed by byok"[..]));
    // A context key given twice is refused, as on the server.
    let (status, body) = worker.post("/decrypt?tenant=acme&tenant=evil", ct).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_request"))
    );
    // Its leases are in the audit log, with the audience.
    let leases = o
        .audit(&ts, &o.auditor)
        .await
        .into_iter()
        .filter(|r| r["event"]["type"] == "lease_issued")
        .collect::<Vec<_>>();
    assert_eq!(leases.len(), 1, "one lease for both messages: {leases:?}");
    assert_eq!(leases[0]["event"]["audience"], "workerd-test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_a_revoke_and_a_token_revoke_stop_the_worker_within_one_lease_ttl() {
    workerd();
    let ttl = 4_000;
    let (ts, o, _) = TestServer::edge("edge-workerd-withdraw", ttl).await;
    for w in Withdrawal::ALL {
        let d = Deployment::create(&ts, &o, &format!("{w:?}")).await;
        let worker = Workerd::start(&ts, &o, &d, &format!("edge-workerd-{w:?}")).await;
        assert_eq!(worker.post("/encrypt", "before").await.0, 200, "{w:?}");
        w.apply(&ts, &o, &d).await;
        let limit = Duration::from_millis(ttl + 500);
        let (status, v, took) = first_refusal(limit, || worker.post("/encrypt", "after")).await;
        let (want_status, want_code) = w.refusal();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{w:?} after {took:?}: {v}"
        );
        refused_before_expiry(&ts, &o, &d).await;
    }
}

/// Only callers with the deployment's caller token are served: anyone else gets `401
/// unauthenticated` on every route, before the Worker asks byok for anything. A Worker whose
/// deployment gives no caller token (and does not say `upstream`) serves no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_worker_serves_only_its_callers() {
    workerd();
    let (ts, o, _) = TestServer::edge("edge-workerd-callers", 60_000).await;
    let d = Deployment::create(&ts, &o, "callers").await;
    let worker = Workerd::start(&ts, &o, &d, "edge-workerd-callers").await;
    for who in [Caller::Anonymous, Caller::WrongToken] {
        let auth = who.authorization(&d);
        for path in ["/encrypt", "/decrypt", "/elsewhere"] {
            let (status, body) = worker.post_as(auth.as_deref(), path, "x").await;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (status, &v["error"]["code"]),
                (401, &json!("unauthenticated")),
                "{who:?} {path}: {v}"
            );
        }
    }
    // A 401 says how to authenticate, as the server's do.
    let r = reqwest::Client::new()
        .post(worker.url("/encrypt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers().get("www-authenticate")),
        (
            401,
            Some(&reqwest::header::HeaderValue::from_static(
                "Bearer realm=\"byok\""
            ))
        )
    );
    no_lease_asked(&ts, &o, &d).await;
    let known = Caller::Known.authorization(&d);
    assert_eq!(
        worker.post_as(known.as_deref(), "/encrypt", "x").await.0,
        200
    );
    drop(worker);

    let unset = Workerd::start_with_callers(&ts, &o, &d, "edge-workerd-nocaller", "", "").await;
    let (status, body) = unset.post_as(known.as_deref(), "/encrypt", "x").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, &v["error"]["code"]),
        (501, &json!("not_configured")),
        "{v}"
    );
    drop(unset);

    // A rotation: the next token is let in beside the current one, then in its place.
    let next = Base64::encode_string(&rand::random::<[u8; 32]>());
    let callers = [
        d.authorization(),
        format!("Bearer {next}"),
        Caller::WrongToken.authorization(&d).unwrap(),
    ];
    for (token, next_token, served) in [
        (d.caller.as_str(), next.as_str(), [200, 200, 401]),
        (next.as_str(), "", [401, 200, 401]),
    ] {
        let worker =
            Workerd::start_with_callers(&ts, &o, &d, "edge-workerd-rotation", token, next_token)
                .await;
        let mut got = [0; 3];
        for (status, caller) in got.iter_mut().zip(&callers) {
            *status = worker.post_as(Some(caller), "/encrypt", "x").await.0;
        }
        assert_eq!(got, served, "with a next token: {}", !next_token.is_empty());
    }
}

/// The vectors Worker (`host-wasm/tests/workerd`) staged in `dir`: the Worker, the package, the
/// shared runner and the vector files, with its config listening on `listen`.
fn stage_vectors(dir: &Path, listen: &str) {
    let src = repo().join("host-wasm/tests/workerd");
    for sub in ["pkg", "shared", "vectors"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy(src.join("vectors_worker.js"), dir.join("vectors_worker.js")).unwrap();
    for f in ["byok_wasm.js", "lease_client.js", "byok_wasm_bg.wasm"] {
        std::fs::copy(
            repo().join("host-wasm/pkg").join(f),
            dir.join("pkg").join(f),
        )
        .unwrap_or_else(|e| panic!("{f}: {e}: run scripts/build-wasm.sh first"));
    }
    std::fs::copy(
        repo().join("host-wasm/tests/shared/vectors.mjs"),
        dir.join("shared/vectors.mjs"),
    )
    .unwrap();
    for f in ["single", "negative", "armor"] {
        let name = format!("{f}.json");
        std::fs::copy(
            repo().join("vectors").join(&name),
            dir.join("vectors").join(&name),
        )
        .unwrap();
    }
    let config = std::fs::read_to_string(src.join("config.capnp"))
        .unwrap()
        .replace("@LISTEN@", listen);
    std::fs::write(dir.join("config.capnp"), config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vectors_pass_in_workerd_through_both_aes_paths() {
    let dir = temp_dir("edge-workerd-vectors");
    let listen = format!("127.0.0.1:{}", free_port());
    stage_vectors(&dir, &listen);
    let log = std::fs::File::create(dir.join("workerd.log")).unwrap();
    let mut child = Command::new(workerd())
        .args(["serve", "config.capnp"])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let answer = loop {
        match reqwest::get(format!("http://{listen}/")).await {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("workerd did not start: {e}"),
        }
    };
    let status = answer.status();
    let v: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((status.as_u16(), &v["ok"]), (200, &json!(true)), "{v}");
    assert_eq!(v["failures"], json!([]), "{v}");
    assert!(v["ran"].as_u64().unwrap() >= 90, "{v}");
    assert!(v["sealed"].as_u64().unwrap() > 0, "{v}");
    // Both paths ran, and AES really reached WebCrypto (not a quiet fallback to wasm).
    assert_eq!(v["calls"]["wasm"], v["calls"]["webcrypto"], "{v}");
    assert!(v["calls"]["subtleAes"].as_u64().unwrap() > 0, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
