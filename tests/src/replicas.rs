//! Three `byok serve` replicas on loopback over one PostgreSQL database (issue 18), for the
//! replica suites: A (the first, which printed the operator token), B and C, sharing the
//! managed key.

use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};

use crate::fixtures::{OrgSettings, TestOrg, TestServer, assert_status};
use crate::local::fresh_postgres;
use crate::server::{Api, Server, temp_dir};

/// Replica A (the first, which printed the operator token) and B and C.
pub struct Replicas {
    /// Replica A.
    pub a: TestServer,
    /// B and C, each with a client.
    pub others: Vec<(Server, Api)>,
    /// The database URL they share.
    pub url: String,
}

impl Replicas {
    /// Three replicas on a fresh database, sharing the managed key, reading every org's version
    /// every `poll_ms`.
    pub fn start(name: &str, poll_ms: u64) -> Option<Self> {
        Self::start_with(name, poll_ms, &[])
    }

    /// The same, with more settings for all three.
    pub fn start_with(name: &str, poll_ms: u64, more: &[(&str, &str)]) -> Option<Self> {
        let Ok(admin) = std::env::var("BYOK_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("BYOK_TEST_REQUIRE_POSTGRES").is_none(),
                "BYOK_TEST_REQUIRE_POSTGRES is set but BYOK_TEST_POSTGRES_URL is not"
            );
            eprintln!("skipped: no PostgreSQL test cluster");
            return None;
        };
        Some(Self::on(&admin, name, poll_ms, more))
    }

    /// Every replica's client: A's, then B's and C's.
    pub fn apis(&self) -> Vec<&Api> {
        std::iter::once(&self.a.api)
            .chain(self.others.iter().map(|(_, a)| a))
            .collect()
    }

    /// Every replica's base URL: A's, then B's and C's.
    pub fn urls(&self) -> Vec<String> {
        std::iter::once(self.a.server.url.clone())
            .chain(self.others.iter().map(|(s, _)| s.url.clone()))
            .collect()
    }

    /// The same, on the cluster at `admin`.
    pub fn on(admin: &str, name: &str, poll_ms: u64, more: &[(&str, &str)]) -> Self {
        let url = fresh_postgres(admin);
        let key = Base64::encode_string(&[9u8; 32]);
        let poll = poll_ms.to_string();
        let env = [
            ("BYOK_DATABASE_URL", url.as_str()),
            ("BYOK_MANAGED_KEY", key.as_str()),
            ("BYOK_REPLICA_POLL_MS", poll.as_str()),
            ("BYOK_KEY_HEALTH_INTERVAL_MS", "3600000"),
        ];
        let env: Vec<(&str, &str)> = env.iter().chain(more).copied().collect();
        let a = TestServer::start_with(&format!("{name}-a"), |d| Server::start(d, &env));
        let others = ["b", "c"]
            .iter()
            .map(|r| {
                let data = temp_dir(&format!("{name}-{r}")).join("data");
                // The operator token was printed by A: tell the harness not to wait for it.
                std::fs::create_dir_all(&data).unwrap();
                std::fs::write(data.join(".started"), b"").unwrap();
                let s = Server::start(&data, &env);
                let api = Api::new(&s.url);
                (s, api)
            })
            .collect();
        Self { a, others, url }
    }

    /// An org created through A, with scope `team` and a ciphertext sealed under it by each
    /// replica (so every replica has the org and its keys in memory).
    pub async fn org(&self) -> (TestOrg, String, Vec<String>) {
        self.org_with(OrgSettings::named("acme")).await
    }

    /// The same, made with `settings`.
    pub async fn org_with(&self, settings: OrgSettings<'_>) -> (TestOrg, String, Vec<String>) {
        let o = self.a.org(settings).await;
        let team = o.scope(&self.a.api, &o.id, "team").await;
        let mut cts = vec![o.seal(&self.a.api, &team, b"from a").await];
        for (_, api) in &self.others {
            cts.push(o.seal(api, &team, b"from b or c").await);
        }
        for (_, api) in &self.others {
            for ct in &cts {
                assert_status(&o.decrypt(api, ct).await, 200);
            }
        }
        (o, team, cts)
    }
}

/// How long until `api` answers decrypt of `ct` with `status` and, for an error, the API code
/// `code` (polled every 2 ms), at most `limit`. A `status` with another code fails at once: a
/// refusal for the wrong reason is not the withdrawal under test.
pub async fn until(
    o: &TestOrg,
    api: &Api,
    ct: &str,
    (status, code): (u16, &str),
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        let answer = o.decrypt(api, ct).await;
        if answer.0 == status {
            if status != 200 {
                assert_eq!(crate::server::error_code(&answer.1), code, "{}", answer.1);
            }
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "still {} after {limit:?}: {}",
            answer.0,
            answer.1
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
