//! A real `byok serve` process for end-to-end tests: built by cargo on first use (so it is never
//! stale), started on an ephemeral port with its own data directory, killed with SIGKILL when
//! dropped (or on purpose, to test crash recovery), and restartable on the same data.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The `byok` binary, built once per test process.
pub fn binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "byok-server", "--bin", "byok"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the byok binary failed");
            // The test executable is target/<profile>/deps/<name>; the binary sits in <profile>.
            let exe = std::env::current_exe().expect("test executable path");
            let profile = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>");
            profile.join(format!("byok{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// `http://ADDR/metrics` when started with `--metrics-listen`.
    pub metrics_url: Option<String>,
    /// The operator token printed on first start (`None` on later starts).
    pub operator_token: Option<String>,
    /// Its data directory.
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    log: PathBuf,
}

/// Runs `byok` with `args` and `env` (the server, token, org as the CLI reads them; see
/// [`crate::fixtures::TestOrg::cli_env`]), which must succeed: its standard output.
pub fn cli_ok<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Vec<u8> {
    let out = Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("byok runs");
    assert!(
        out.status.success(),
        "byok {:?}: {}",
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`cli_ok`] of a command given `--json`: its standard output as JSON.
pub fn cli_json(args: &[&str], env: &[(&str, &str)]) -> Value {
    serde_json::from_slice(&cli_ok(args, env)).expect("JSON on standard output")
}

/// A fresh, empty data directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "byok-test-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// With `BYOK_TEST_BACKEND=postgres`, the PostgreSQL database of the server on `data_dir`: a
/// fresh one on the test cluster (`BYOK_TEST_POSTGRES_URL`) for a new data directory, the same
/// one again on a restart. `None` runs the server on SQLite, the default.
fn postgres_for(data_dir: &Path) -> Option<String> {
    if std::env::var("BYOK_TEST_BACKEND").ok()? != "postgres" {
        return None;
    }
    let kept = data_dir.with_extension("database_url");
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return Some(url);
    }
    let admin = std::env::var("BYOK_TEST_POSTGRES_URL")
        .expect("BYOK_TEST_BACKEND=postgres needs BYOK_TEST_POSTGRES_URL");
    let url = crate::local::fresh_postgres(&admin);
    std::fs::write(&kept, &url).unwrap();
    Some(url)
}

impl Server {
    /// The PostgreSQL database this server runs on (`None`: SQLite in its data directory).
    pub fn database_url(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.with_extension("database_url")).ok()
    }

    /// Starts a server on `data_dir` with extra environment variables.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(data_dir, env, &[])
    }

    /// Starts a server with extra environment variables and `byok serve` flags (a
    /// `--log-format` here replaces the default `json`).
    pub fn start_with_args(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let log = data_dir.with_extension("log");
        let mut s = Self {
            child: None,
            url: String::new(),
            metrics_url: None,
            operator_token: None,
            data_dir: data_dir.to_owned(),
            env,
            args,
            log,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(binary());
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        if !self.args.iter().any(|a| a == "--log-format") {
            cmd.args(["--log-format", "json"]);
        }
        cmd.args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("BYOK_MANAGED_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // No rate limits unless a test sets them: the race and load tests send thousands of
        // requests a second from one token on purpose (server_edges.rs tests the limits).
        cmd.env("BYOK_ORG_RATE_LIMIT", "0")
            .env("BYOK_TOKEN_RATE_LIMIT", "0");
        if let Some(url) = postgres_for(&self.data_dir) {
            cmd.env("BYOK_DATABASE_URL", url);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start byok serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("byok serve printed nothing; log: {}", self.log.display()));
        self.url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        // The token line follows at once on a first start; on a restart there is none, and the
        // server keeps stdout open, so only look for it when the data dir was new.
        if self.operator_token.is_none() && !self.data_dir.join(".started").exists() {
            let line = lines.next().and_then(Result::ok).unwrap_or_default();
            self.operator_token = line
                .split_whitespace()
                .find(|w| w.starts_with("byok_"))
                .map(str::to_owned);
            std::fs::write(self.data_dir.join(".started"), b"").unwrap();
        }
        if self.args.iter().any(|a| a == "--metrics-listen") {
            let line = lines.next().and_then(Result::ok).unwrap_or_default();
            self.metrics_url = line
                .split_whitespace()
                .find(|w| w.starts_with("http://"))
                .map(str::to_owned);
        }
        self.child = Some(child);
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, as a service manager stops it, then waits for the process to exit; panics
    /// unless it exited with success.
    pub fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM");
        let status = c.wait().unwrap();
        assert!(status.success(), "byok exited with {status} on SIGTERM");
    }

    /// Kills and starts again on the same data (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- byok log ({}):\n{}",
                self.log.display(),
                self.log()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// A whole reply: status, headers and the body as text.
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: String,
}

impl Reply {
    /// Status and body as JSON (`Null` if it is not JSON), as `Api::get` answers.
    pub fn json(&self) -> (u16, Value) {
        (
            self.status,
            serde_json::from_str(&self.body).unwrap_or(Value::Null),
        )
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A minimal API client for tests: raw status and JSON body.
pub struct Api {
    http: reqwest::Client,
    /// Base URL.
    pub url: String,
}

impl Api {
    /// A client for `url`.
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_owned(),
        }
    }

    /// Sends `method path` with `token` and a raw `body`; returns the status and the body as
    /// JSON (`Null` if it is not JSON).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends a GET (no `body`) or a JSON POST with `token`; the whole reply, headers included.
    pub async fn reply(&self, path: &str, token: &str, body: Option<&Value>) -> Reply {
        let url = format!("{}{path}", self.url);
        let req = match body {
            Some(b) => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => self.http.get(url),
        };
        let resp = req.bearer_auth(token).send().await.expect("request");
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap_or_default(),
        }
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.raw("GET", path, Some(token), None).await
    }

    /// POST JSON with a token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.raw(
            "POST",
            path,
            Some(token),
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    /// PATCH JSON with a token.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.raw(
            "PATCH",
            path,
            Some(token),
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }
}

/// The string field `k` of a JSON answer; panics naming the answer if it is missing.
pub fn field(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
        .to_owned()
}

/// The `error.code` of an error answer (empty if there is none).
pub fn error_code(v: &Value) -> String {
    v.pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// The value of counter `name` on the server's `/metrics` page (read with the operator token).
pub async fn metric(url: &str, operator: &str, name: &str) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(operator)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}
