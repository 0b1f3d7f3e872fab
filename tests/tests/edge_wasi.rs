//! host-wasm's `wasi:http` proxy component (wasm32-wasip2) under the `wasmtime` crate, against
//! a real `byok serve`: bodies sealed in the component open on the server and the reverse, one
//! lease serves many requests, and a pause, a revoke and a token revoke each stop it within one
//! lease TTL with the server's code.

use std::time::Duration;

use base64ct::{Base64, Encoding};
use byok_core::lease::holder::REFUSAL_RETRY_MS;
use byok_tests::edge::{
    Caller, Deployment, Withdrawal, first_refusal, no_lease_asked, refused_before_expiry,
};
use byok_tests::fault_front::{Fault, FaultFront};
use byok_tests::fixtures::{TestOrg, TestServer, assert_status};
// The wasmtime embedding lives beside this test, not in the tests' library: only the binaries
// that run wasm link wasmtime (it made every test binary about 470 MB).
#[path = "support/wasi_http.rs"]
mod wasi_http;

use serde_json::{Value, json};
use wasi_http::{SteppedWall, WasiHttpHost, component_path};

async fn component(ts: &TestServer, o: &TestOrg, d: &Deployment, audience: &str) -> WasiHttpHost {
    component_on(ts, o, d, audience, SteppedWall::default()).await
}

async fn component_on(
    ts: &TestServer,
    o: &TestOrg,
    d: &Deployment,
    audience: &str,
    wall: SteppedWall,
) -> WasiHttpHost {
    WasiHttpHost::start_with_wall(
        &component_path(),
        &[
            ("BYOK_SERVER", &ts.url),
            ("BYOK_ORG", &o.id),
            ("BYOK_SCOPE", &d.scope),
            ("BYOK_TOKEN", &d.token),
            ("BYOK_AUDIENCE", audience),
            ("BYOK_EDGE_CALLER_TOKEN", &d.caller),
        ],
        wall,
    )
    .await
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {body:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_component_interoperates_with_the_server_on_one_lease() {
    let (ts, o, _) = TestServer::edge("edge-wasi", 60_000).await;
    let d = Deployment::create(&ts, &o, "wasi").await;
    let edge = component(&ts, &o, &d, "wasi-test").await;

    // Sealed in the component, opened by the server.
    let (status, ct) = edge.post("/encrypt?tenant=acme", "sealed in wasi").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&ct));
    let body = json!({
        "ciphertext": byok_core::format::armor::encode(&ct),
        "context": { "tenant": "acme" },
    });
    let v = assert_status(&ts.post(&o.path("/decrypt"), &o.service, &body).await, 200);
    assert_eq!(
        Base64::decode_vec(v["plaintext"].as_str().unwrap()).unwrap(),
        b"sealed in wasi"
    );
    // Sealed by the server, opened in the component, as bytes and as text.
    let body = json!({
        "plaintext": Base64::encode_string(b"sealed by byok"),
        "context": { "tenant": "acme", "region": "eu west" },
    });
    let v = assert_status(
        &ts.post(&o.scope_path(&d.scope, "encrypt"), &o.service, &body)
            .await,
        200,
    );
    let armored = v["ciphertext"].as_str().unwrap().to_owned();
    let ct = byok_core::format::armor::decode(&armored).unwrap();
    // The context from the query as URLSearchParams reads it: `+` and %20 are spaces.
    for query in [
        "?tenant=acme&region=eu+west",
        "?region=eu%20west&tenant=acme",
    ] {
        let (status, pt) = edge.post(&format!("/decrypt{query}"), ct.clone()).await;
        assert_eq!((status, &pt[..]), (200, &b"sealed by byok"[..]), "{query}");
    }
    let (status, pt) = edge
        .post("/decrypt?tenant=acme&region=eu+west", armored)
        .await;
    assert_eq!((status, &pt[..]), (200, &b"sealed by byok"[..]));

    // Errors carry the server's codes and statuses.
    let (status, body) = edge.post("/decrypt?tenant=other", ct.clone()).await;
    assert_eq!(
        (status, &json_of(&body)["error"]["code"]),
        (400, &json!("decrypt_failed"))
    );
    let (status, body) = edge.post("/decrypt", b"not a ciphertext".to_vec()).await;
    assert_eq!(
        (status, &json_of(&body)["error"]["code"]),
        (400, &json!("malformed_ciphertext"))
    );
    let (status, body) = edge.post("/encrypt?byok:purpose=x", "x").await;
    assert_eq!(
        (status, &json_of(&body)["error"]["code"]),
        (400, &json!("invalid_request")),
        "reserved contexts are refused as on the server"
    );
    let (status, body) = edge.post("/encrypt?tenant=acme&tenant=evil", "x").await;
    assert_eq!(
        (status, &json_of(&body)["error"]["code"]),
        (400, &json!("invalid_request")),
        "a context key given twice is refused as on the server"
    );
    let (status, body) = edge.post("/elsewhere", "x").await;
    assert_eq!(
        (status, &json_of(&body)["error"]["code"]),
        (404, &json!("not_found"))
    );

    // Many messages, one lease: no round trip to byok per message.
    for i in 0..20 {
        let (status, _) = edge.post("/encrypt?n=1", format!("message {i}")).await;
        assert_eq!(status, 200);
    }
    let leases = o
        .audit(&ts, &o.auditor)
        .await
        .into_iter()
        .filter(|r| r["event"]["type"] == "lease_issued")
        .collect::<Vec<_>>();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["event"]["audience"], "wasi-test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_a_revoke_and_a_token_revoke_stop_the_component_within_one_lease_ttl() {
    let ttl = 4_000;
    let (ts, o, _) = TestServer::edge("edge-wasi-withdraw", ttl).await;
    for w in Withdrawal::ALL {
        let d = Deployment::create(&ts, &o, &format!("{w:?}")).await;
        let edge = component(&ts, &o, &d, "wasi-test").await;
        assert_eq!(edge.post("/encrypt", "before").await.0, 200, "{w:?}");
        w.apply(&ts, &o, &d).await;
        let limit = Duration::from_millis(ttl + 500);
        let (status, v, took) = first_refusal(limit, || edge.post("/encrypt", "after")).await;
        let (want_status, want_code) = w.refusal();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{w:?} after {took:?}: {v}"
        );
        refused_before_expiry(&ts, &o, &d).await;
        // Refused means the keys are gone: decrypting fails the same way.
        let (status, body) = edge.post("/decrypt", b"anything".to_vec()).await;
        assert_eq!(
            (status, json_of(&body)["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{w:?}"
        );
        if w == Withdrawal::Pause {
            // A resume heals the edge by itself, at its next ask after the refusal.
            assert_status(&o.act(&ts, &d.scope, "resume", json!({})).await, 200);
            let retry = u64::try_from(REFUSAL_RETRY_MS).unwrap();
            tokio::time::sleep(Duration::from_millis(retry + 100)).await;
            assert_eq!(edge.post("/encrypt", "resumed").await.0, 200);
        }
    }
}

/// The component's wall clock runs ten minutes ahead of the server's: every lease arrives
/// ended (the server's `expires_at` is in the component's past), and it says so. NTP then steps
/// the clock back to the right time: the component's lease clock never runs back, so it stays
/// ten minutes ahead of the wall, and compared with it the next leases arrived ended too, until
/// a restart. They are read on the lease clock now, and last their TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_back_past_the_ttl_does_not_stop_the_component() {
    let (ts, o, _) = TestServer::edge("edge-wasi-clock", 60_000).await;
    let d = Deployment::create(&ts, &o, "clock").await;
    let wall = SteppedWall::default();
    wall.set(600_000);
    let edge = component_on(&ts, &o, &d, "wasi-test", wall.clone()).await;
    let (status, body) = edge.post("/encrypt", "ahead").await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].as_str()),
        (503, Some("lease_expired")),
        "a lease read as live on a clock ten minutes ahead"
    );
    wall.set(0);
    let (status, body) = edge.post("/encrypt", "corrected").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // And it is the same lease for the next call: one lease, not one per call.
    assert_eq!(edge.post("/encrypt", "again").await.0, 200);
}

/// A refusal is decided by its status, before its body: one whose body is cut short (or never
/// comes) still drops the keys at once, named by its status. The component used to read the
/// whole body first and, failing, count the answer as an outage: the lease held kept serving
/// until it expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_whose_body_is_cut_short_still_drops_the_keys() {
    let (ts, o, _) = TestServer::edge("edge-wasi-cut", 60_000).await;
    let d = Deployment::create(&ts, &o, "cut").await;
    // byok through a front: the first lease request is relayed, the renewal cut short.
    let front = FaultFront::start(ts.url.trim_start_matches("http://").to_owned()).await;
    let wall = SteppedWall::default();
    let edge = WasiHttpHost::start_with_wall(
        &component_path(),
        &[
            ("BYOK_SERVER", &front.url),
            ("BYOK_ORG", &o.id),
            ("BYOK_SCOPE", &d.scope),
            ("BYOK_TOKEN", &d.token),
            ("BYOK_EDGE_CALLER_TOKEN", &d.caller),
        ],
        wall.clone(),
    )
    .await;
    let (status, body) = edge.post("/encrypt", "leased").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Past the renewal point (half the 60 s TTL), well before the lease's end.
    front.inject([Fault::CutShort(410)]);
    wall.set(35_000);
    let (status, body) = edge.post("/encrypt", "renewing").await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].as_str()),
        (410, Some("scope_revoked")),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // And it stands: the keys are gone, not kept for the next call.
    let (status, _) = edge.post("/encrypt", "after").await;
    assert_eq!(status, 410);
}

/// Plain HTTP to a host not known to be private is refused before any request: the service
/// token and the scope's keys would cross in cleartext. The operator's setting to fix
/// (`501 not_configured`), answered as JSON like every refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_public_host_is_refused_before_any_request() {
    let edge = WasiHttpHost::start(
        &component_path(),
        &[
            ("BYOK_SERVER", "http://byok.example.com"),
            ("BYOK_ORG", "o1"),
            ("BYOK_SCOPE", "s1"),
            ("BYOK_TOKEN", "t"),
            ("BYOK_EDGE_CALLERS", "upstream"),
        ],
    )
    .await;
    let (status, body) = edge.post("/encrypt", "x").await;
    assert_eq!(status, 501, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(v["error"]["code"], "not_configured", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cleartext"),
        "{v}"
    );
}

/// Only callers with the deployment's caller token are served; anyone else gets
/// `401 unauthenticated` before the component asks byok for anything. A deployment that says
/// nothing of its callers serves no one (`501 not_configured`), and one whose platform checks
/// them (`BYOK_EDGE_CALLERS=upstream`) serves every request that reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_deployments_callers_are_served() {
    let (ts, o, _) = TestServer::edge("edge-wasi-callers", 60_000).await;
    let d = Deployment::create(&ts, &o, "callers").await;
    let edge = component(&ts, &o, &d, "wasi-test").await;
    for who in [Caller::Anonymous, Caller::WrongToken] {
        let auth = who.authorization(&d);
        for path in ["/encrypt", "/decrypt", "/elsewhere"] {
            let (status, body) = edge.post_as(auth.as_deref(), path, "x").await;
            assert_eq!(
                (status, json_of(&body)["error"]["code"].as_str()),
                (401, Some("unauthenticated")),
                "{who:?} {path}"
            );
        }
    }
    // A 401 says how to authenticate, as the server's do.
    let (status, headers, _) = edge.reply(None, "/encrypt", "x").await;
    assert_eq!(
        (
            status,
            headers.get("www-authenticate").map(|v| v.as_bytes())
        ),
        (401, Some(&b"Bearer realm=\"byok\""[..]))
    );
    no_lease_asked(&ts, &o, &d).await;
    let known = Caller::Known.authorization(&d);
    let (status, headers, _) = edge.reply(known.as_deref(), "/encrypt", "x").await;
    assert_eq!((status, headers.get("www-authenticate")), (200, None));

    let settings = |callers: &[(&'static str, &str)]| {
        let mut env = vec![
            ("BYOK_SERVER", ts.url.clone()),
            ("BYOK_ORG", o.id.clone()),
            ("BYOK_SCOPE", d.scope.clone()),
            ("BYOK_TOKEN", d.token.clone()),
        ];
        env.extend(callers.iter().map(|(k, v)| (*k, (*v).to_owned())));
        env
    };
    for unset in [
        &[][..],
        &[("BYOK_EDGE_CALLER_TOKEN", "")],
        &[("BYOK_EDGE_CALLERS", "yes")],
    ] {
        let env = settings(unset);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let edge = WasiHttpHost::start(&component_path(), &env).await;
        let (status, body) = edge.post_as(known.as_deref(), "/encrypt", "x").await;
        assert_eq!(
            (status, json_of(&body)["error"]["code"].as_str()),
            (501, Some("not_configured")),
            "{unset:?}"
        );
    }
    let env = settings(&[("BYOK_EDGE_CALLERS", "upstream")]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let edge = WasiHttpHost::start(&component_path(), &env).await;
    assert_eq!(edge.post_as(None, "/encrypt", "x").await.0, 200);

    // A rotation: the next token is let in beside the current one, then in its place.
    let next = Base64::encode_string(&rand::random::<[u8; 32]>());
    let callers = [
        d.authorization(),
        format!("Bearer {next}"),
        Caller::WrongToken.authorization(&d).unwrap(),
    ];
    for (step, served) in [
        (
            &[
                ("BYOK_EDGE_CALLER_TOKEN", d.caller.as_str()),
                ("BYOK_EDGE_CALLER_TOKEN_NEXT", next.as_str()),
            ][..],
            [200, 200, 401],
        ),
        (
            &[("BYOK_EDGE_CALLER_TOKEN", next.as_str())][..],
            [401, 200, 401],
        ),
    ] {
        let env = settings(step);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let edge = WasiHttpHost::start(&component_path(), &env).await;
        let mut got = [0; 3];
        for (status, caller) in got.iter_mut().zip(&callers) {
            *status = edge.post_as(Some(caller), "/encrypt", "x").await.0;
        }
        assert_eq!(got, served, "{} setting(s)", step.len());
    }
}
