//! Issue 12: a KMS that is unreachable is not a KMS that denies. A real `byok serve`, moto with
//! signatures and IAM on, and the fault-injecting front before it, which takes the KMS down
//! (every request answered 503, throttled, or with a closed connection) and back. An org that
//! chose an outage grace keeps serving its cached root past the TTL while the KMS is down, up
//! to TTL + grace after the last successful unwrap, asking the KMS again at most once per
//! retry interval; key health, the audit log and `/metrics` say so. A denial, a pause or a
//! token revoke cut at once, grace or not; grace 0 is the plain TTL.
//!
//! The server's cache runs on its own clock: the tests wait out short TTLs and graces (about a
//! second each), with every bound checked against the times the test measured.

use std::time::{Duration, Instant};

use byok_core::api_code::RETRY_AFTER_SECS;
use byok_tests::aws_stack::AwsStack;
use byok_tests::fault_front::Fault;
use byok_tests::fixtures::{
    OrgSettings, TestOrg, TestServer, assert_error, assert_status, key, now_ms,
};
use byok_tests::server::metric;
use serde_json::{Value, json};

/// The unwrap cache TTL of every org here.
const TTL: Duration = Duration::from_millis(1000);
/// The outage grace of the orgs that chose one.
const GRACE: Duration = Duration::from_millis(5000);
/// The server's retry interval while an org serves in grace (`BYOK_OUTAGE_RETRY_MS`).
const RETRY: Duration = Duration::from_millis(1000);
/// Margin past a bound before checking that it holds.
const MARGIN: Duration = Duration::from_millis(150);

/// An org whose default key is the stack's customer key, data sealed in scope `team`, and the
/// root unwrapped through the KMS (and cached) between `warm` and `warmed`.
struct Outage {
    stack: AwsStack,
    ts: TestServer,
    o: TestOrg,
    team: String,
    sealed: String,
    warm: Instant,
    warm_ms: i64,
    warmed: Instant,
}

impl Outage {
    async fn new(name: &str, grace: Duration) -> Self {
        let stack = AwsStack::start().await;
        let retry = RETRY.as_millis().to_string();
        let ts = TestServer::start_with(name, |data| {
            stack.server_with(data, &[("BYOK_OUTAGE_RETRY_MS", &retry)])
        });
        let settings = OrgSettings::named("acme")
            .cache_ttl_ms(TTL.as_millis() as u64)
            .outage_grace_ms(grace.as_millis() as u64);
        let o = ts.org(settings).await;
        let team = o.scope(&ts, &o.id, "team").await;
        let sealed = o.seal(&ts, &team, b"customer data").await;
        // Making the customer key the default evicts the org's cache: the next call unwraps
        // the root through the KMS.
        stack.attach_default_key(&ts, &o).await;
        let (warm, warm_ms) = (Instant::now(), now_ms());
        let s = Self {
            stack,
            ts,
            o,
            team,
            sealed,
            warm,
            warm_ms,
            warmed: warm,
        };
        assert_status(&s.decrypt().await.0, 200);
        Self {
            warmed: Instant::now(),
            ..s
        }
    }

    /// Decrypts the sealed data as the service: (status, body), Retry-After.
    async fn decrypt(&self) -> ((u16, Value), Option<String>) {
        self.decrypt_as(&self.o.service).await
    }

    async fn decrypt_as(&self, token: &str) -> ((u16, Value), Option<String>) {
        let reply = self
            .ts
            .api
            .reply(
                &self.o.path("/decrypt"),
                token,
                Some(&json!({ "ciphertext": self.sealed })),
            )
            .await;
        let retry_after = reply.header("retry-after").map(str::to_owned);
        let (status, body) = reply.json();
        ((status, body), retry_after)
    }

    /// Asserts a decrypt answers 200 with the data.
    async fn opens(&self) {
        let (answer, _) = self.decrypt().await;
        let v = assert_status(&answer, 200);
        assert_eq!(v["plaintext"], "Y3VzdG9tZXIgZGF0YQ==", "{v}");
    }

    /// Asserts a decrypt answers 503 `kms_unavailable` with `Retry-After`.
    async fn unavailable(&self) {
        let (answer, retry_after) = self.decrypt().await;
        assert_error(&answer, 503, "kms_unavailable");
        assert_eq!(
            retry_after.as_deref(),
            Some(RETRY_AFTER_SECS.to_string().as_str())
        );
    }

    /// Sleeps until `d` after the root was cached (plus a margin).
    async fn sleep_past(&self, d: Duration) {
        let until = self.warmed + d + MARGIN;
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    }

    /// Asserts that it is still before `d` after the earliest moment the root could have been
    /// unwrapped: a slower machine would make the check below it meaningless, not wrong.
    fn still_before(&self, d: Duration) {
        assert!(
            self.warm.elapsed() < d,
            "the test ran too slowly to check this ({:?} since the unwrap, bound {d:?})",
            self.warm.elapsed()
        );
    }

    /// The audit events of `type`.
    async fn events(&self, kind: &str) -> Vec<Value> {
        self.o
            .audit(&self.ts, &self.o.auditor)
            .await
            .into_iter()
            .map(|row| row["event"].clone())
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// The customer key as `GET keys` shows it.
    async fn cmk(&self) -> Value {
        key(&self.o.keys(&self.ts).await, "cmk:1").clone()
    }

    /// The KMS goes down: every request gets `fault`.
    fn down(&self, fault: Fault) {
        self.stack.front.set_down(Some(fault));
    }

    /// Takes the KMS down and waits out the TTL.
    async fn down_past_the_ttl(&self, fault: Fault) {
        self.down(fault);
        self.sleep_past(TTL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_grace_the_kms_down_after_the_ttl_is_503_kms_unavailable() {
    let t = Outage::new("grace-zero", Duration::ZERO).await;
    let org = assert_status(&t.ts.get(&t.o.path(""), &t.o.admin).await, 200);
    assert_eq!(org["outage_grace_ms"], 0, "the default: {org}");
    t.down_past_the_ttl(Fault::Unavailable).await;
    t.unavailable().await;
    assert!(t.events("outage_grace_started").await.is_empty());
    assert_eq!(t.cmk().await["outage_grace"], Value::Null);
    assert_eq!(
        metric(&t.ts.url, &t.ts.operator, "byok_outage_grace_serves_total").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grace_the_kms_down_serves_until_ttl_plus_grace_then_503() {
    let t = Outage::new("grace-serves", GRACE).await;
    // Connections to the KMS are cut (a transport error, retried, then "unavailable").
    t.down_past_the_ttl(Fault::Reset).await;
    t.opens().await;
    t.still_before(TTL + GRACE);
    // Within the retry interval the KMS is not asked again: the stale root serves.
    let seen = t.stack.front.seen();
    t.opens().await;
    let v = assert_status(
        &t.o.encrypt(&t.ts, &t.team, b"written in an outage").await,
        200,
    );
    assert!(v["ciphertext"].is_string(), "{v}");
    assert_eq!(
        t.stack.front.seen(),
        seen,
        "no KMS call within the retry interval"
    );
    t.still_before(TTL + GRACE);

    // Key health says so, with the end of the grace; so do the audit log and the metrics.
    let cmk = t.cmk().await;
    let grace = &cmk["outage_grace"];
    let until = grace["grace_until"]
        .as_i64()
        .unwrap_or_else(|| panic!("{cmk}"));
    let ms = |d: Duration| d.as_millis() as i64;
    let earliest = t.warm_ms + ms(TTL + GRACE);
    let latest = t.warm_ms + ms(t.warmed - t.warm) + ms(TTL + GRACE);
    assert!(
        (earliest - 50..=latest + 50).contains(&until),
        "grace_until {until} not in {earliest}..={latest}: {cmk}"
    );
    assert!(
        grace["since"].as_i64().unwrap() >= t.warm_ms + ms(TTL),
        "{cmk}"
    );
    assert_eq!(cmk["health"], "unavailable", "{cmk}");
    let started = t.events("outage_grace_started").await;
    assert_eq!(started.len(), 1, "one event when grace starts: {started:?}");
    assert_eq!(started[0]["key"], "cmk:1");
    assert_eq!(started[0]["error"], "unavailable");
    assert_eq!(started[0]["grace_until"], json!(until));
    assert_eq!(
        metric(&t.ts.url, &t.ts.operator, "byok_outage_grace_orgs").await,
        1
    );
    assert!(metric(&t.ts.url, &t.ts.operator, "byok_outage_grace_serves_total").await >= 3);

    // Past TTL + grace, the KMS still down: 503 as without grace, and the grace is over.
    t.sleep_past(TTL + GRACE).await;
    t.unavailable().await;
    let ended = t.events("outage_grace_ended").await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "expired", "{ended:?}");
    assert_eq!(t.cmk().await["outage_grace"], Value::Null);
    assert_eq!(
        metric(&t.ts.url, &t.ts.operator, "byok_outage_grace_orgs").await,
        0
    );
    t.unavailable().await;
    assert_eq!(t.events("outage_grace_started").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grace_a_disabled_key_after_the_ttl_is_refused_at_once() {
    let t = Outage::new("grace-denied", GRACE).await;
    // The KMS answers, and says no: that is a withdrawal, not an outage.
    let moto = &t.stack.moto;
    moto.key_admin("disable_key", &moto.key_arn);
    t.sleep_past(TTL).await;
    let (answer, _) = t.decrypt().await;
    assert_error(&answer, 424, "kms_key_disabled");
    t.still_before(TTL + GRACE);
    let (answer, _) = t.decrypt().await;
    assert_error(&answer, 424, "kms_key_disabled");
    assert!(t.events("outage_grace_started").await.is_empty());
    assert_eq!(
        metric(&t.ts.url, &t.ts.operator, "byok_outage_grace_serves_total").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_during_grace_ends_it_and_evicts_at_once() {
    let t = Outage::new("grace-then-denied", GRACE).await;
    t.down_past_the_ttl(Fault::Unavailable).await;
    t.opens().await;
    // The KMS comes back, but the customer removed byok's grant meanwhile: the next refresh
    // (after the retry interval) hears the denial and nothing stale serves again.
    t.stack.moto.grant(false);
    t.stack.front.set_down(None);
    tokio::time::sleep(RETRY).await;
    let (answer, _) = t.decrypt().await;
    assert_error(&answer, 424, "kms_access_denied");
    t.still_before(TTL + GRACE);
    let (answer, _) = t.decrypt().await;
    assert_error(&answer, 424, "kms_access_denied");
    let ended = t.events("outage_grace_ended").await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "denied", "{ended:?}");
    assert_eq!(t.cmk().await["outage_grace"], Value::Null);
    // Down again: the evicted root is not served from any grace.
    t.stack.moto.grant(true);
    t.down(Fault::Unavailable);
    t.unavailable().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_that_sees_the_key_disabled_ends_grace_at_once() {
    let t = Outage::new("grace-health", GRACE).await;
    t.down_past_the_ttl(Fault::Throttle).await;
    t.opens().await;
    // Within the retry interval, the KMS back and the key disabled: the health check's answer
    // evicts at once; no request waits for the next refresh to find out.
    let moto = &t.stack.moto;
    moto.key_admin("disable_key", &moto.key_arn);
    t.stack.front.set_down(None);
    assert_status(
        &t.ts
            .post(&t.o.path("/keys/check"), &t.o.admin, &json!({}))
            .await,
        200,
    );
    let (answer, _) = t.decrypt().await;
    assert_error(&answer, 424, "kms_key_disabled");
    let ended = t.events("outage_grace_ended").await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "denied", "{ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_token_revoke_cut_at_once_during_grace_and_nothing_evicted_comes_back() {
    let t = Outage::new("grace-pause", GRACE).await;
    let (token_id, token) = t.o.token(&t.ts, "service", "second app").await;
    t.down_past_the_ttl(Fault::Throttle).await;
    t.opens().await;
    assert_status(&t.decrypt_as(&token).await.0, 200);

    // A paused scope refuses at once, grace or not.
    assert_status(&t.o.act(&t.ts, &t.team, "pause", json!({})).await, 200);
    let (answer, _) = t.decrypt().await;
    assert_error(&answer, 409, "scope_paused");
    let answer = t.o.encrypt(&t.ts, &t.team, b"x").await;
    assert_error(&answer, 409, "scope_paused");
    // Resumed: the org's root was not evicted by the team's pause, so grace goes on.
    assert_status(&t.o.act(&t.ts, &t.team, "resume", json!({})).await, 200);
    t.opens().await;

    // A revoked token is refused at once.
    let answer =
        t.ts.raw(
            "DELETE",
            &t.o.path(&format!("/tokens/{token_id}")),
            Some(&t.o.admin),
            None,
        )
        .await;
    assert_status(&answer, 200);
    let (answer, _) = t.decrypt_as(&token).await;
    assert_error(&answer, 401, "unauthenticated");

    // Pausing the org scope evicts the root; resuming it does not bring it back from grace.
    assert_status(&t.o.act(&t.ts, &t.o.id, "pause", json!({})).await, 200);
    let (answer, _) = t.decrypt().await;
    assert_error(&answer, 409, "scope_paused");
    assert_status(&t.o.act(&t.ts, &t.o.id, "resume", json!({})).await, 200);
    t.still_before(TTL + GRACE);
    t.unavailable().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kms_back_ends_grace_at_the_next_retry_as_recovered() {
    let t = Outage::new("grace-recovers", GRACE).await;
    t.down_past_the_ttl(Fault::Unavailable).await;
    t.opens().await;
    t.stack.front.set_down(None);
    // Within the retry interval the stale root still serves, without a KMS call.
    let seen = t.stack.front.seen();
    t.opens().await;
    assert_eq!(t.stack.front.seen(), seen);
    // After it, the next request refreshes the root through the KMS, which ends grace.
    tokio::time::sleep(RETRY).await;
    t.opens().await;
    assert!(t.stack.front.seen() > seen, "the root was unwrapped again");
    let ended = t.events("outage_grace_ended").await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "recovered", "{ended:?}");
    assert!(ended[0]["served"].as_u64().unwrap() >= 2, "{ended:?}");
    let cmk = t.cmk().await;
    assert_eq!(
        (&cmk["outage_grace"], &cmk["health"]),
        (&Value::Null, &json!("ok")),
        "{cmk}"
    );
    assert_eq!(
        metric(&t.ts.url, &t.ts.operator, "byok_outage_grace_orgs").await,
        0
    );
    // Fresh again: a new TTL from the refresh.
    let seen = t.stack.front.seen();
    t.opens().await;
    assert_eq!(t.stack.front.seen(), seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_the_grace_during_an_outage_takes_effect_at_once() {
    let t = Outage::new("grace-lowered", GRACE).await;
    t.down_past_the_ttl(Fault::Unavailable).await;
    t.opens().await;
    let v = assert_status(
        &t.ts
            .patch(&t.o.path(""), &t.o.admin, &json!({ "outage_grace_ms": 0 }))
            .await,
        200,
    );
    assert_eq!(v["outage_grace_ms"], 0, "{v}");
    t.still_before(TTL + GRACE);
    t.unavailable().await;
    let ended = t.events("outage_grace_ended").await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0]["reason"], "expired", "{ended:?}");
    let changed = t.events("org_settings_changed").await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(
        changed[0]["outage_grace_ms"],
        json!({ "from": GRACE.as_millis() as u64, "to": 0 })
    );
    // The request's token is named as the actor.
    assert_eq!(changed[0]["actor"]["role"], "admin", "{changed:?}");
}
