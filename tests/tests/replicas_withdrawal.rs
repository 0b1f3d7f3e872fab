//! The withdrawal guarantees across three replicas over one PostgreSQL (issue 18), with the
//! customer's key in moto (signatures and IAM on) and the version poll an hour away, so only
//! what the replicas tell each other can stop B and C:
//! - the grant removed: every replica refuses once its unwrap-cache TTL passes;
//! - the key disabled: a key check through A drops the warm caches of B and C too, at once; and
//!   again after the key came back and went again;
//! - the org moved off the managed key: the managed copy is destroyed, and B and C, which had
//!   unwrapped the root from it, drop it at once: with the grant then removed, they refuse.
//!
//! And what replicas cost the customer's KMS: one Decrypt per replica per org per TTL. The token
//! revoke and the scope pause are in `replicas.rs`. Needs the PostgreSQL test
//! cluster; skipped without it unless `BYOK_TEST_REQUIRE_POSTGRES` is set.

use std::time::Duration;

use byok_tests::aws_stack::AwsStack;
use byok_tests::fixtures::{OrgSettings, TestOrg, assert_error, assert_status};
use byok_tests::replicas::{Replicas, until};
use byok_tests::server::{Api, metric};
use serde_json::json;

/// Ten minutes: a cache that would outlive any test unless something drops it.
const WARM: u64 = 600_000;

/// Three replicas on the stack, the poll an hour away.
fn replicas(stack: &AwsStack, name: &str) -> Option<Replicas> {
    Replicas::start_with(name, 3_600_000, &stack.env())
}

/// An org with an unwrap cache of `ttl_ms`, on the customer's key when `byok`, with scope
/// `team` and data sealed by each replica; every replica has opened every ciphertext.
async fn org(stack: &AwsStack, r: &Replicas, ttl_ms: u64, byok: bool) -> (TestOrg, Vec<String>) {
    let o =
        r.a.org(OrgSettings::named("acme").cache_ttl_ms(ttl_ms))
            .await;
    if byok {
        stack.attach_default_key(&r.a.api, &o).await;
    }
    let team = o.scope(&r.a.api, &o.id, "team").await;
    let mut cts = Vec::new();
    for api in r.apis() {
        cts.push(o.seal(api, &team, b"customer data").await);
    }
    for api in r.apis() {
        for ct in &cts {
            assert_status(&o.decrypt(api, ct).await, 200);
        }
    }
    (o, cts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_grant_stops_every_replica_once_the_ttl_passes() {
    let stack = AwsStack::start().await;
    let Some(r) = replicas(&stack, "replicas-grant") else {
        return;
    };
    let (o, cts) = org(&stack, &r, 1000, true).await;
    stack.moto.grant(false);
    // The replicas' unwrap caches read the wall clock: waiting out the 1 s TTL is what is
    // tested.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for api in r.apis() {
        assert_error(&o.decrypt(api, &cts[0]).await, 424, "kms_access_denied");
    }
    // The grant comes back: access comes back everywhere.
    stack.moto.grant(true);
    for api in r.apis() {
        until(&o, api, &cts[1], (200, ""), Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_key_seen_through_one_replica_drops_every_warm_cache() {
    let stack = AwsStack::start().await;
    let Some(r) = replicas(&stack, "replicas-disable") else {
        return;
    };
    let (o, cts) = org(&stack, &r, WARM, true).await;
    let moto = &stack.moto;
    // B and C still hold the root for ten minutes; the check through A is all that happens.
    disable_and_check_through_a(&stack, &r, &o, &cts[0]).await;
    for (_, api) in &r.others {
        assert_error(&o.decrypt(api, &cts[2]).await, 424, "kms_key_disabled");
    }
    moto.key_admin("enable_key", &moto.key_arn);
    for api in r.apis() {
        until(&o, api, &cts[0], (200, ""), Duration::from_secs(5)).await;
    }
    // Disabled a second time, before any health check recorded the key as fine: the replicas'
    // successful unwraps did. A's check must not take this denial for the one it recorded.
    disable_and_check_through_a(&stack, &r, &o, &cts[1]).await;
}

/// Access given back and seen only by a health check is recorded on every replica: a key
/// re-enabled and checked through A, then disabled again and seen first through B, drops A's
/// warm cache too. Had B kept showing the first denial, it would have taken the second for
/// that one, and moved nothing: A would have served its cache to the end of its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_given_back_then_withdrawn_again_reaches_every_replica() {
    let stack = AwsStack::start().await;
    let Some(r) = replicas(&stack, "replicas-back") else {
        return;
    };
    let (o, cts) = org(&stack, &r, WARM, true).await;
    let moto = &stack.moto;
    disable_and_check_through_a(&stack, &r, &o, &cts[0]).await;
    moto.key_admin("enable_key", &moto.key_arn);
    check(&r.a.api, &o).await;
    // Only A serves meanwhile: its cache is warm again; B makes no KMS call of its own.
    until(&o, &r.a.api, &cts[0], (200, ""), Duration::from_secs(5)).await;
    moto.key_admin("disable_key", &moto.key_arn);
    check(&r.others[0].1, &o).await;
    let took = until(
        &o,
        &r.a.api,
        &cts[1],
        (424, "kms_key_disabled"),
        Duration::from_secs(2),
    )
    .await;
    eprintln!("A refused {took:?} after the check through B");
}

/// A key health check through `api`.
async fn check(api: &Api, o: &TestOrg) {
    assert_status(
        &api.post(&o.path("/keys/check"), &o.admin, &json!({})).await,
        200,
    );
}

/// Disables the customer's key and checks it through A: B and C refuse `ct` within 2 s.
async fn disable_and_check_through_a(stack: &AwsStack, r: &Replicas, o: &TestOrg, ct: &str) {
    stack.moto.key_admin("disable_key", &stack.moto.key_arn);
    assert_status(
        &r.a.api
            .post(&o.path("/keys/check"), &o.admin, &json!({}))
            .await,
        200,
    );
    for (_, api) in &r.others {
        let took = until(
            o,
            api,
            ct,
            (424, "kms_key_disabled"),
            Duration::from_secs(2),
        )
        .await;
        eprintln!("refused by another replica {took:?} after the check");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_off_the_managed_key_drops_every_replica_s_managed_root() {
    let stack = AwsStack::start().await;
    let Some(r) = replicas(&stack, "replicas-managed") else {
        return;
    };
    // Managed first: every replica unwrapped the root from the managed copy, for ten minutes.
    let (o, cts) = org(&stack, &r, WARM, false).await;
    stack.attach_default_key(&r.a.api, &o).await;
    // The managed copy is gone from storage.
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&r.url).await.unwrap();
    let managed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM root_copies WHERE org_id = $1 AND holder = 'managed'",
    )
    .bind(&o.id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(
        managed, 0,
        "the managed copy survived the move to the customer's key"
    );
    // The customer removes the grant at once: no replica may still open the data with what
    // the managed key gave it.
    stack.moto.grant(false);
    for (_, api) in &r.others {
        until(
            &o,
            api,
            &cts[0],
            (424, "kms_access_denied"),
            Duration::from_secs(2),
        )
        .await;
        assert_error(&o.decrypt(api, &cts[1]).await, 424, "kms_access_denied");
    }
    assert_error(
        &o.decrypt(&r.a.api, &cts[2]).await,
        424,
        "kms_access_denied",
    );
}

/// What replicas cost the customer's KMS: with a warm TTL, each replica unwraps an org's root
/// once however much it serves (concurrent misses wait for one answer), so a load run through
/// N replicas makes N Decrypt calls per org per TTL. Measured: 600 decrypts, 200 per replica,
/// 20 at a time each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_replica_asks_the_kms_once_per_org_per_ttl() {
    let stack = AwsStack::start().await;
    let Some(r) = replicas(&stack, "replicas-kms-calls") else {
        return;
    };
    let o = r.a.org(OrgSettings::named("acme").cache_ttl_ms(WARM)).await;
    stack.attach_default_key(&r.a.api, &o).await;
    // Moving to the customer's key evicted the root everywhere (the managed copy is gone):
    // from here, every replica's first use asks the KMS.
    let urls = r.urls();
    let mut before = Vec::new();
    for u in &urls {
        before.push(metric(u, &r.a.operator, "byok_kms_calls_total").await);
    }
    let team = o.scope(&r.a.api, &o.id, "team").await;
    let ct = o.seal(&r.a.api, &team, b"customer data").await;
    let mut load = Vec::new();
    for u in &urls {
        for _ in 0..20 {
            let (u, o, ct) = (u.clone(), o.clone(), ct.clone());
            load.push(tokio::spawn(async move {
                let api = Api::new(&u);
                for _ in 0..10 {
                    assert_status(&o.decrypt(&api, &ct).await, 200);
                }
            }));
        }
    }
    for t in load {
        t.await.unwrap();
    }
    let mut calls = Vec::new();
    for (u, b) in urls.iter().zip(before) {
        calls.push(metric(u, &r.a.operator, "byok_kms_calls_total").await - b);
    }
    eprintln!("KMS calls per replica for 600 decrypts of one org: {calls:?}");
    assert_eq!(
        calls,
        vec![1, 1, 1],
        "one Decrypt per replica per org per TTL"
    );
}
