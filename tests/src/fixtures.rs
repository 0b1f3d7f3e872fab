//! Typed fixtures for tests against a live `byok serve`: a [`TestServer`] with its client and
//! operator token, a [`TestOrg`] with one token per role, and assertions that pin an answer to
//! its exact status and error code. A test states what it proves; the org setup is written once,
//! here.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64ct::{Base64, Encoding};
use byok_core::ApiCode;
use serde_json::{Value, json};

use crate::server::{Api, Server, error_code, field, temp_dir};

/// An answer of the API: its status and its JSON body (`Null` if the body is not JSON).
pub type Answer = (u16, Value);

/// Asserts that `answer` is exactly the error `status` with `error.code` = `code`, carrying a
/// request id; returns the body. `code` must be a code of the API's contract.
#[track_caller]
pub fn assert_error(answer: &Answer, status: u16, code: &str) -> Value {
    assert!(
        ApiCode::from_code(code).is_some(),
        "{code} is not an ApiCode"
    );
    let (st, v) = answer;
    assert_eq!((*st, error_code(v).as_str()), (status, code), "{v}");
    assert!(
        v.pointer("/error/request_id").is_some(),
        "no request id: {v}"
    );
    v.clone()
}

/// Asserts that `answer` has `status`; returns the body.
#[track_caller]
pub fn assert_status(answer: &Answer, status: u16) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    answer.1.clone()
}

/// The human message of an error answer.
pub fn error_message(v: &Value) -> String {
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no error message in {v}"))
        .to_owned()
}

/// `s` percent-encoded for a query string (everything but RFC 3986's unreserved characters).
pub fn query_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Milliseconds since the Unix epoch, as the server stamps times.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A running server, a client for it and its operator token, in a temp dir of its own. The dir
/// is removed on drop unless the test panicked (then the log survives for the reader).
pub struct TestServer {
    /// The server process.
    pub server: Server,
    /// A client for it (renewed by [`Self::restart`]).
    pub api: Api,
    /// The operator token printed on first start.
    pub operator: String,
    /// The temp dir holding `data/` and the log.
    pub dir: PathBuf,
}

impl TestServer {
    /// A managed-mode server in a fresh temp dir named after `name`, with the periodic key
    /// health check an hour away.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, |data| {
            Server::start(data, &[("BYOK_KEY_HEALTH_INTERVAL_MS", "3600000")])
        })
    }

    /// A server in a fresh temp dir named after `name`, started by `start` on its data dir.
    pub fn start_with(name: &str, start: impl FnOnce(&Path) -> Server) -> Self {
        let dir = temp_dir(name);
        let server = start(&dir.join("data"));
        let operator = server
            .operator_token
            .clone()
            .expect("a first start prints the operator token");
        let api = Api::new(&server.url);
        Self {
            server,
            api,
            operator,
            dir,
        }
    }

    /// Kills the server (SIGKILL) and starts it again on the same data.
    pub fn restart(&mut self) {
        self.server.restart();
        self.api = Api::new(&self.server.url);
    }

    /// Stops the server as a service manager does (SIGTERM, waiting for its exit) and starts
    /// it again on the same data.
    pub fn stop_and_start(&mut self) {
        self.server.terminate();
        self.restart();
    }

    /// The server's data directory.
    pub fn data(&self) -> PathBuf {
        self.server.data_dir.clone()
    }

    /// Opens the server's database: its SQLite file (read-only if `read_only`), or its
    /// PostgreSQL database when the suite runs on PostgreSQL. Statements use `$N` parameters,
    /// which both read.
    pub async fn db(&self, read_only: bool) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = match self.server.database_url() {
            Some(url) => url,
            None => {
                let mode = if read_only { "?mode=ro" } else { "" };
                format!("sqlite://{}{mode}", self.data().join("byok.db").display())
            }
        };
        sqlx::AnyPool::connect(&url)
            .await
            .expect("open the server's database")
    }

    /// Creates an org as the operator.
    pub async fn org(&self, settings: OrgSettings<'_>) -> TestOrg {
        TestOrg::create(&self.api, &self.operator, settings).await
    }

    /// A server named `name` with org `edge`, whose leases last `lease_ttl_ms`, and its scope
    /// `team`: where edge tests begin.
    pub async fn edge(name: &str, lease_ttl_ms: u64) -> (Self, TestOrg, String) {
        let ts = Self::start(name);
        let settings = OrgSettings {
            lease_ttl_ms,
            ..OrgSettings::named("edge")
        };
        let o = ts.org(settings).await;
        let team = o.scope(&ts, &o.id, "team").await;
        (ts, o, team)
    }
}

impl Deref for TestServer {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// How an org is created.
#[derive(Clone, Copy, Debug)]
pub struct OrgSettings<'a> {
    /// Its name.
    pub name: &'a str,
    /// How long an unwrapped root key stays cached, in ms (0: every use unwraps).
    pub unwrap_cache_ttl_ms: u64,
    /// How long an edge lease lasts, in ms.
    pub lease_ttl_ms: u64,
    /// How long past the TTL cached roots serve while the KMS is unreachable, in ms.
    pub outage_grace_ms: u64,
}

impl<'a> OrgSettings<'a> {
    /// Org `name` with a 5-minute unwrap cache, one-minute leases and no outage grace.
    pub const fn named(name: &'a str) -> Self {
        Self {
            name,
            unwrap_cache_ttl_ms: 300_000,
            lease_ttl_ms: 60_000,
            outage_grace_ms: 0,
        }
    }

    /// The same with an outage grace of `ms`.
    pub const fn outage_grace_ms(self, ms: u64) -> Self {
        Self {
            outage_grace_ms: ms,
            ..self
        }
    }

    /// The same with an unwrap cache TTL of `ms`.
    pub const fn cache_ttl_ms(self, ms: u64) -> Self {
        Self {
            unwrap_cache_ttl_ms: ms,
            ..self
        }
    }
}

/// An org with its first admin token and a service and an auditor token made by that admin.
#[derive(Clone, Debug)]
pub struct TestOrg {
    /// The org id, which is also its org scope's id.
    pub id: String,
    /// The first admin token.
    pub admin: String,
    /// A service token (`app`).
    pub service: String,
    /// An auditor token (`auditor`).
    pub auditor: String,
    /// What it was created with.
    pub unwrap_cache_ttl_ms: u64,
    /// Its lease TTL.
    pub lease_ttl_ms: u64,
}

/// A stored data key as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Its id.
    pub id: String,
    /// Its scope.
    pub scope: String,
    /// The key version it is wrapped under.
    pub version: u64,
    /// The key bytes, base64.
    pub key: String,
}

impl StoredKey {
    fn from_json(k: &Value) -> Self {
        Self {
            id: field(k, "id"),
            scope: field(k, "scope"),
            version: k["version"].as_u64().unwrap_or_else(|| panic!("{k}")),
            key: field(k, "key"),
        }
    }

    /// The keys of a `datakeys` answer.
    pub fn list(v: &Value) -> Vec<Self> {
        v["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("no keys in {v}"))
            .iter()
            .map(Self::from_json)
            .collect()
    }
}

impl TestOrg {
    /// Creates the org as `operator`, then a service and an auditor token as its admin.
    pub async fn create(api: &Api, operator: &str, settings: OrgSettings<'_>) -> Self {
        let body = json!({
            "name": settings.name,
            "unwrap_cache_ttl_ms": settings.unwrap_cache_ttl_ms,
            "lease_ttl_ms": settings.lease_ttl_ms,
            "outage_grace_ms": settings.outage_grace_ms,
        });
        let v = assert_status(&api.post("/v1/orgs", operator, &body).await, 201);
        let mut org = Self {
            id: field(&v, "id"),
            admin: field(&v, "admin_token"),
            service: String::new(),
            auditor: String::new(),
            unwrap_cache_ttl_ms: settings.unwrap_cache_ttl_ms,
            lease_ttl_ms: settings.lease_ttl_ms,
        };
        org.service = org.token(api, "service", "app").await.1;
        org.auditor = org.token(api, "auditor", "auditor").await.1;
        org
    }

    /// `/v1/orgs/{id}{rest}`.
    pub fn path(&self, rest: &str) -> String {
        format!("/v1/orgs/{}{rest}", self.id)
    }

    /// `/v1/orgs/{id}/scopes/{scope}/{action}`.
    pub fn scope_path(&self, scope: &str, action: &str) -> String {
        self.path(&format!("/scopes/{scope}/{action}"))
    }

    /// Creates a token with `role` as the admin: (id, secret).
    pub async fn token(&self, api: &Api, role: &str, name: &str) -> (String, String) {
        let body = json!({ "role": role, "name": name });
        let v = assert_status(
            &api.post(&self.path("/tokens"), &self.admin, &body).await,
            201,
        );
        (field(&v, "id"), field(&v, "token"))
    }

    /// Creates scope `name` under `parent` as the admin; returns its id.
    pub async fn scope(&self, api: &Api, parent: &str, name: &str) -> String {
        let body = json!({ "parent": parent, "name": name });
        let v = assert_status(
            &api.post(&self.path("/scopes"), &self.admin, &body).await,
            201,
        );
        field(&v, "id")
    }

    /// An admin action on a scope (`pause`, `resume`, `rotate`, `retire`, `revoke`).
    pub async fn act(&self, api: &Api, scope: &str, action: &str, body: Value) -> Answer {
        api.post(&self.scope_path(scope, action), &self.admin, &body)
            .await
    }

    /// Encrypts `data` under `scope` with `context` as the service.
    pub async fn encrypt_in(&self, api: &Api, scope: &str, data: &[u8], context: &Value) -> Answer {
        let body = json!({ "plaintext": Base64::encode_string(data), "context": context });
        api.post(&self.scope_path(scope, "encrypt"), &self.service, &body)
            .await
    }

    /// Encrypts `data` under `scope` with no context.
    pub async fn encrypt(&self, api: &Api, scope: &str, data: &[u8]) -> Answer {
        self.encrypt_in(api, scope, data, &json!({})).await
    }

    /// Encrypts `data` under `scope` with no context; returns the ciphertext.
    pub async fn seal(&self, api: &Api, scope: &str, data: &[u8]) -> String {
        let v = assert_status(&self.encrypt(api, scope, data).await, 200);
        field(&v, "ciphertext")
    }

    /// Decrypts `ct` with `context` as the service.
    pub async fn decrypt_in(&self, api: &Api, ct: &str, context: &Value) -> Answer {
        let body = json!({ "ciphertext": ct, "context": context });
        api.post(&self.path("/decrypt"), &self.service, &body).await
    }

    /// Decrypts `ct` with no context.
    pub async fn decrypt(&self, api: &Api, ct: &str) -> Answer {
        self.decrypt_in(api, ct, &json!({})).await
    }

    /// Decrypts `ct` with `context`: `Ok` if it opens to `data` (asserted), else the answer.
    pub async fn opens_in(
        &self,
        api: &Api,
        ct: &str,
        context: &Value,
        data: &[u8],
    ) -> Result<(), Answer> {
        let answer = self.decrypt_in(api, ct, context).await;
        if answer.0 != 200 {
            return Err(answer);
        }
        let plain = Base64::decode_vec(&field(&answer.1, "plaintext")).unwrap();
        assert_eq!(plain, data, "{ct} opened to other bytes");
        Ok(())
    }

    /// Stores `count` data keys under `scope` as the service.
    pub async fn datakeys(&self, api: &Api, scope: &str, count: u32) -> Vec<StoredKey> {
        let body = json!({ "count": count });
        let answer = api
            .post(&self.scope_path(scope, "datakeys"), &self.service, &body)
            .await;
        StoredKey::list(&assert_status(&answer, 201))
    }

    /// Fetches stored data keys by id as the service.
    pub async fn get_datakeys(&self, api: &Api, ids: &[String]) -> Answer {
        let body = json!({ "ids": ids });
        api.post(&self.path("/datakeys/get"), &self.service, &body)
            .await
    }

    /// The org's running job (`Null` when none runs).
    pub async fn job(&self, api: &Api) -> Value {
        assert_status(&api.get(&self.path("/job"), &self.admin).await, 200)
    }

    /// Waits (polling) until the org's job is finished, up to `limit`.
    pub async fn job_done_within(&self, api: &Api, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.job(api).await.is_null() {
            assert!(
                std::time::Instant::now() < deadline,
                "job still running: {}",
                self.job(api).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (polling) until the org's job is finished, for as long as it moves: it fails when
    /// the job shows the same step for 5 s. A job that stopped (a runner gone, an error waiting
    /// for the next periodic look) is caught; one that is only slower on a busy machine is not
    /// taken for one.
    pub async fn job_done(&self, api: &Api) {
        let stall = Duration::from_secs(5);
        let mut seen = self.job(api).await;
        let mut since = std::time::Instant::now();
        while !seen.is_null() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.job(api).await;
            if now != seen {
                (seen, since) = (now, std::time::Instant::now());
            }
            assert!(since.elapsed() < stall, "job stopped moving: {seen}");
        }
    }

    /// Waits (polling) until the org's job reports `status`; returns the job.
    pub async fn job_reaches(&self, api: &Api, status: &str) -> Value {
        for _ in 0..100 {
            let job = self.job(api).await;
            if job["status"] == status {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job never reached {status:?}: {}", self.job(api).await)
    }

    /// Every row of the org's audit log, page by page, read with `token`.
    pub async fn audit(&self, api: &Api, token: &str) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut after = 0;
        loop {
            let path = self.path(&format!("/audit?after={after}&limit=1000"));
            let page = assert_status(&api.get(&path, token).await, 200);
            let page = page.as_array().unwrap().clone();
            let Some(last) = page.last() else {
                return rows;
            };
            after = last["seq"].as_i64().unwrap();
            rows.extend(page);
        }
    }

    /// The org's keys (`GET keys`) as the admin.
    pub async fn keys(&self, api: &Api) -> Value {
        assert_status(&api.get(&self.path("/keys"), &self.admin).await, 200)
    }

    /// The environment the CLI reads the server (`url`), `token` and this org from, for
    /// [`crate::server::cli_ok`].
    pub fn cli_env<'a>(&'a self, url: &'a str, token: &'a str) -> [(&'static str, &'a str); 3] {
        [
            ("BYOK_SERVER", url),
            ("BYOK_TOKEN", token),
            ("BYOK_ORG", &self.id),
        ]
    }

    /// Attaches AWS key `arn` as `name` (the admin).
    pub async fn attach_aws_key(&self, api: &Api, name: &str, arn: &str) -> Answer {
        let body = json!({ "name": name, "provider": "aws", "key_arn": arn });
        api.post(&self.path("/keys"), &self.admin, &body).await
    }

    /// A key action (`default`, `validate`, `disable`, `enable`, ...) on key `key` as the admin.
    pub async fn key_action(&self, api: &Api, key: &str, action: &str, body: Value) -> Answer {
        api.post(
            &self.path(&format!("/keys/{key}/{action}")),
            &self.admin,
            &body,
        )
        .await
    }

    /// Attaches AWS key `arn` as `name` and makes it the default (`cmk:{n}`).
    pub async fn attach_default(&self, api: &Api, name: &str, arn: &str, n: u32) {
        assert_status(&self.attach_aws_key(api, name, arn).await, 201);
        let key = format!("cmk:{n}");
        assert_status(&self.key_action(api, &key, "default", json!({})).await, 200);
    }
}

/// Key `id` in a `keys` answer.
pub fn key<'a>(keys: &'a Value, id: &str) -> &'a Value {
    keys["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys in {keys}"))
        .iter()
        .find(|k| k["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {keys}"))
}

/// Data sealed at every level of a three-level tree: the org, `team` under it, `thread` under
/// `team`.
#[derive(Clone, Debug)]
pub struct SealedTree {
    /// The middle scope.
    pub team: String,
    /// (ciphertext, plaintext) at the org, `team` and `thread` levels, in that order.
    pub sealed: Vec<(String, &'static str)>,
}

impl SealedTree {
    /// Creates `team` and `thread` in `o` and seals one plaintext at each level.
    pub async fn seal(api: &Api, o: &TestOrg) -> Self {
        let team = o.scope(api, &o.id, "team").await;
        let thread = o.scope(api, &team, "thread").await;
        let mut sealed = Vec::new();
        for (scope, data) in [
            (&o.id, "org level"),
            (&team, "level 0"),
            (&thread, "level 1"),
        ] {
            sealed.push((o.seal(api, scope, data.as_bytes()).await, data));
        }
        Self { team, sealed }
    }

    /// Decrypts every ciphertext: `Ok` if each opens to its plaintext, else the first refusal.
    pub async fn open_all(&self, api: &Api, o: &TestOrg) -> Result<(), Answer> {
        for (ct, data) in &self.sealed {
            o.opens_in(api, ct, &json!({}), data.as_bytes()).await?;
        }
        Ok(())
    }
}

/// A copy made by `kms.wrap(access, root, 3)` opens as org root version 3 of its own org only:
/// version 2 is refused with `InvalidCiphertext` and the provider's `code`, another org too.
/// Every provider binds copies so (AWS: encryption context, GCP: AAD, Azure: an envelope).
pub async fn assert_copy_bound(
    kms: &byok_server::service::kms::Kms,
    access: &byok_server::service::kms::KeyAccess,
    copy: &[u8],
    root: &byok_core::SecretBytes,
    code: &str,
) {
    use byok_core::kms::KmsErrorKind;
    let back = kms.unwrap(access, copy, 3).await.expect("unwrap");
    assert_eq!(back.expose_secret(), root.expose_secret());
    let e = kms.unwrap(access, copy, 2).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (KmsErrorKind::InvalidCiphertext, code),
        "{e}"
    );
    let mut other = access.clone();
    other.access.org = "00bb".into();
    assert_eq!(
        kms.unwrap(&other, copy, 3).await.unwrap_err().kind,
        KmsErrorKind::InvalidCiphertext
    );
}
