//! What a security reviewer tries first against `byok serve`: TLS and its reload, plain HTTP
//! beyond loopback, slow and idle clients, the connection cap, rate limits, who may read
//! metrics, caching of key material, and what the server says when the vendor principal is
//! missing. Real server processes; raw sockets where a well-behaved client cannot misbehave.

use std::time::{Duration, Instant};

use byok_tests::fixtures::{OrgSettings, TestServer, assert_error, assert_status};
use byok_tests::server::{Reply, Server, binary, field};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const QUIET: (&str, &str) = ("BYOK_KEY_HEALTH_INTERVAL_MS", "3600000");

async fn send(ts: &TestServer, post: Option<serde_json::Value>, path: &str, token: &str) -> Reply {
    ts.api.reply(path, token, post.as_ref()).await
}

/// A CA and a leaf for 127.0.0.1 signed by it: (CA PEM, leaf PEM, leaf key PEM).
fn ca_and_leaf() -> (String, String, String) {
    ca_and_leaf_valid(None)
}

/// [`ca_and_leaf`], the leaf valid over `(from, until)` (years) when given.
fn ca_and_leaf_valid(years: Option<(i32, i32)>) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    if let Some((from, until)) = years {
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
    }
    let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// Whether a client that trusts only `ca` gets `/healthz` from `url` on a new connection.
async fn trusted_by(url: &str, ca: &str) -> bool {
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

fn sighup(server: &Server) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
}

/// SIGHUP (a logrotate or reload hook sends it to every service) does not end a server
/// without TLS: there is nothing to reload, and it keeps serving.
#[tokio::test]
async fn sighup_without_tls_keeps_the_server_serving() {
    let ts = TestServer::start("sighup-plain");
    for _ in 0..3 {
        sighup(&ts.server);
        // The default action would end the process at once; give the signal time to land.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_status(&ts.raw("GET", "/healthz", None, None).await, 200);
    }
}

#[tokio::test]
async fn tls_serves_the_certificate_and_sighup_swaps_it_keeping_it_on_a_bad_reload() {
    let (ca1, leaf1, key1) = ca_and_leaf();
    let (ca2, leaf2, key2) = ca_and_leaf();
    let dir = byok_tests::server::temp_dir("tls");
    let (cert, key) = (dir.join("chain.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &leaf1).unwrap();
    std::fs::write(&key, &key1).unwrap();
    let args = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    // A key every user can read is refused at start. That first start made no operator
    // token it could not show: the next start, with the key's mode fixed, shows one.
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let serve = |data: &str| {
        let mut c = std::process::Command::new(binary());
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join(data))
            .args(args);
        c
    };
    // A start on `data` (its stdout closed at once when `closed`, else discarded) that must be
    // refused: its standard error, once it exited 1 (within 30 s, or `served` is the failure).
    let refused = |data: &str, closed: bool, served: &str| {
        let stdout = if closed {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        };
        let mut child = serve(data)
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("{served}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        stderr
    };
    let stderr = refused(
        "first-start",
        false,
        "the server started with a key every user can read",
    );
    assert!(
        stderr.contains("every user can read it (mode 644)"),
        "{stderr}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A start on `data` with standard output open shows an operator token. The start's lines
    // are written and flushed together: once the first is read, the rest is in the pipe, and
    // stopping the server ends it.
    let shows_a_token = |data: &str| {
        let mut child = serve(data)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let lines: Vec<String> = std::iter::once(first)
            .chain(out.lines().map(Result::unwrap))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("operator token (shown once")),
            "{lines:?}"
        );
    };
    shows_a_token("first-start");
    // Standard output closed at the first start: the token could not be shown, so it is
    // deleted and the start fails; the next start, with it open, shows one.
    let stderr = refused(
        "closed-stdout",
        true,
        "the server served with its operator token never shown",
    );
    assert!(
        stderr.contains("the operator token could not be shown on standard output")
            && stderr.contains("so it was deleted"),
        "{stderr}"
    );
    shows_a_token("closed-stdout");
    let ts = TestServer::start_with("tls", |data| Server::start_with_args(data, &[QUIET], &args));
    assert!(ts.server.url.starts_with("https://"), "{}", ts.server.url);
    let url = ts.server.url.clone();
    assert!(trusted_by(&url, &ca1).await, "the first certificate");
    assert!(!trusted_by(&url, &ca2).await);
    // Plain HTTP on the TLS port gets nothing.
    assert!(
        reqwest::get(format!("{}/healthz", url.replace("https", "http")))
            .await
            .is_err()
    );

    std::fs::write(&cert, &leaf2).unwrap();
    std::fs::write(&key, &key2).unwrap();
    sighup(&ts.server);
    let mut swapped = false;
    for _ in 0..100 {
        if trusted_by(&url, &ca2).await {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(swapped, "SIGHUP loads the new certificate");
    assert!(!trusted_by(&url, &ca1).await, "the old one is gone");

    // A key that does not fit the certificate: the reload fails, the server keeps serving.
    std::fs::write(&key, &key1).unwrap();
    sighup(&ts.server);
    let mut logged = false;
    for _ in 0..100 {
        if ts.server.log().contains("TLS certificate reload failed") {
            logged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "the failed reload is logged: {}", ts.server.log());
    assert!(trusted_by(&url, &ca2).await, "still the second certificate");

    // An expired renewal (its key fits), and one not valid for years: refused, the current
    // one stays.
    for (years, says) in [
        ((2019, 2020), "expired on Jan  1 00:00:00 2020"),
        ((2090, 2091), "is not valid until Jan  1 00:00:00 2090"),
    ] {
        let (_, leaf3, key3) = ca_and_leaf_valid(Some(years));
        std::fs::write(&cert, &leaf3).unwrap();
        std::fs::write(&key, &key3).unwrap();
        sighup(&ts.server);
        let mut logged = false;
        for _ in 0..100 {
            if ts.server.log().contains(says) {
                logged = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(logged, "{says}: {}", ts.server.log());
        assert!(trusted_by(&url, &ca2).await, "still the second certificate");
    }
}

#[test]
fn plain_http_beyond_loopback_is_refused_without_insecure_http() {
    let dir = byok_tests::server::temp_dir("insecure");
    let out = std::process::Command::new(binary())
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.join("data"))
        .env_remove("BYOK_INSECURE_HTTP")
        .output()
        .unwrap();
    // 2: the configuration is refused before anything starts.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve plain HTTP on 0.0.0.0:0") && err.contains("--tls-cert"),
        "{err}"
    );
    assert!(
        !dir.join("data").exists(),
        "refused before anything is created"
    );
}

/// Reads what the server sends until it closes the connection (or `limit` passes: then
/// `None`).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut got))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn slow_heads_slow_bodies_and_idle_connections_are_cut() {
    let ts = TestServer::start_with("timeouts", |data| {
        Server::start(
            data,
            &[
                QUIET,
                ("BYOK_HEADER_TIMEOUT_MS", "300"),
                ("BYOK_REQUEST_TIMEOUT_MS", "500"),
                ("BYOK_IDLE_TIMEOUT_MS", "1500"),
            ],
        )
    });
    let o = ts.org(OrgSettings::named("acme")).await;
    let addr = ts.server.url.trim_start_matches("http://").to_owned();

    // Half a head, then nothing: closed after the header timeout.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .is_some(),
        "a stalled head is cut"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // A body that stops half way: 408 request_timeout at the deadline.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/orgs/{}/scopes/{}/encrypt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"plaintext\":",
        o.id, o.id, o.service
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer before 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");

    // A kept-alive connection that goes quiet is closed: hyper's header timer runs while it
    // waits for the next head (the idle timeout's own case is `a_client_that_never_reads`).
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let quiet = Instant::now();
    assert!(
        read_until_closed(&mut s, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle connection is closed"
    );
    assert!(quiet.elapsed() < Duration::from_secs(5));
}

/// A client that sends requests and never reads the answers would hold a connection (and a
/// task) forever: hyper waits on the full socket. The idle timeout closes it, because no
/// byte moves. (hyper's header timer does not help here: it only runs while a head is read.)
#[tokio::test]
async fn a_client_that_never_reads_is_cut() {
    let ts = TestServer::start_with("slow-reader", |data| {
        Server::start(
            data,
            &[
                QUIET,
                ("BYOK_REQUEST_TIMEOUT_MS", "500"),
                ("BYOK_IDLE_TIMEOUT_MS", "1500"),
            ],
        )
    });
    let addr = ts.server.url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    // Far more answer than the socket buffers hold: the server's writes stall.
    let asks = 400;
    let one = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..asks {
        s.write_all(one).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let answers = String::from_utf8_lossy(&got)
        .matches("HTTP/1.1 200")
        .count();
    assert!(closed, "the connection was closed");
    assert!(answers < asks, "cut before all {asks} answers: {answers}");
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_one() {
    let ts = TestServer::start_with("conn-cap", |data| {
        Server::start(data, &[QUIET, ("BYOK_MAX_CONNECTIONS", "2")])
    });
    let addr = ts.server.url.trim_start_matches("http://").to_owned();
    // Two connections hold the cap (TestServer's own client has closed or idles: make sure
    // ours are the two by waiting for its keep-alive to be irrelevant: it made no request).
    let first = TcpStream::connect(&addr).await.unwrap();
    let _second = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut third, Duration::from_millis(700))
            .await
            .is_none(),
        "no answer while two connections are open"
    );
    drop(first);
    let answer = read_until_closed(&mut third, Duration::from_secs(5))
        .await
        .expect("answered once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// How many requests a bucket of `per_second` gives back over `elapsed`, plus one for the edge.
fn refills(elapsed: Duration, per_second: u32) -> u32 {
    (elapsed.as_secs_f64() * f64::from(per_second)).ceil() as u32 + 1
}

#[tokio::test]
async fn a_token_or_org_past_its_rate_limit_gets_429_with_retry_after() {
    let ts = TestServer::start_with("rate", |data| {
        Server::start(
            data,
            &[
                QUIET,
                ("BYOK_TOKEN_RATE_LIMIT", "50"),
                ("BYOK_ORG_RATE_LIMIT", "80"),
            ],
        )
    });
    // Org creation spends the operator's and the new admin's budget: a fresh second
    // lets both refill.
    let a = ts.org(OrgSettings::named("a")).await;
    let b = ts.org(OrgSettings::named("b")).await;
    let encrypt = |o: &byok_tests::fixtures::TestOrg| {
        let path = format!("/v1/orgs/{}/scopes/{}/encrypt", o.id, o.id);
        let token = o.service.clone();
        let ts = &ts;
        async move { send(ts, Some(json!({ "plaintext": "aGk=" })), &path, &token).await }
    };
    let says = |v: &serde_json::Value, who: &str| {
        v.pointer("/error/message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.starts_with(who))
    };
    // A burst is a tenth of a second's budget: 8 for the org, 5 per token; one more comes back
    // every 12.5 ms (org) or 20 ms (token), so the bounds below count what refilled meanwhile.
    // The org's tokens share its burst of 8: five from the service token, then the admin token
    // (its own 5 untouched) is refused after 3 more. On a machine slow enough that the org
    // refilled more than the admin token's own burst allows, the token's bucket answers first:
    // such a round shows nothing, and is run again (a fresh second refills both buckets).
    let mut shown = false;
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        for _ in 0..5 {
            assert_status(&encrypt(&a).await.json(), 200);
        }
        let mut passed = 0;
        let refused = loop {
            let answer = send(&ts, None, &a.path("/scopes"), &a.admin).await;
            if answer.status != 200 || passed > 50 {
                break answer;
            }
            passed += 1;
        };
        let refilled = refills(started.elapsed(), 80);
        let v = assert_error(&refused.json(), 429, "rate_limited");
        if says(&v, "this token") && passed >= 5 {
            eprintln!("round {round}: the org refilled {refilled} meanwhile; again");
            continue;
        }
        assert!(
            (3..=3 + refilled).contains(&passed),
            "{passed} passed, {refilled} refilled"
        );
        assert!(says(&v, "this org"), "{v}");
        shown = true;
        break;
    }
    assert!(
        shown,
        "no round was fast enough to show the org's shared burst"
    );
    // The refusal was held back at least half a second: both buckets are full again. One token
    // alone is refused past its burst of five.
    let started = Instant::now();
    let mut limited = None;
    for i in 0..50 {
        let answer = encrypt(&a).await;
        if answer.status == 429 {
            limited = Some((i, answer));
            break;
        }
        assert_status(&answer.json(), 200);
    }
    let (i, answer) = limited.expect("a token past its burst is refused");
    let refilled = refills(started.elapsed(), 50);
    assert!(
        (5..=5 + refilled).contains(&i),
        "{i} passed, {refilled} refilled"
    );
    let v = assert_error(&answer.json(), 429, "rate_limited");
    assert!(says(&v, "this token"), "{v}");
    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Another org is untouched.
    assert_status(&encrypt(&b).await.json(), 200);
}

/// A call for many stored data keys costs a request per ten keys, up to the token's whole
/// burst: the token's next requests wait for its bucket to refill. Ten keys cost one request.
#[tokio::test]
async fn a_call_for_many_stored_keys_costs_the_token_its_burst() {
    let ts = TestServer::start_with("rate-keys", |data| {
        Server::start(data, &[QUIET, ("BYOK_TOKEN_RATE_LIMIT", "50")])
    });
    let a = ts.org(OrgSettings::named("a")).await;
    let team = a.scope(&ts.api, &a.id, "team").await;
    let datakeys = |count: usize| {
        let path = a.scope_path(&team, "datakeys");
        let (ts, token) = (&ts, a.service.clone());
        async move { send(ts, Some(json!({ "count": count })), &path, &token).await }
    };
    let encrypt = || {
        let path = format!("/v1/orgs/{}/scopes/{}/encrypt", a.id, a.id);
        let (ts, token) = (&ts, a.service.clone());
        async move { send(ts, Some(json!({ "plaintext": "aGk=" })), &path, &token).await }
    };
    let get = |ids: Vec<String>| {
        let path = a.path("/datakeys/get");
        let (ts, token) = (&ts, a.service.clone());
        async move { send(ts, Some(json!({ "ids": ids })), &path, &token).await }
    };
    // A burst of five, one back every 20 ms: five calls for ten keys each fit in it. Were a
    // key a request, the second would be refused.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let made = assert_status(&datakeys(10).await.json(), 201);
        ids.extend(
            made["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["id"].as_str().unwrap().to_owned()),
        );
    }
    // Fifty keys, made or read, take the whole burst. On a machine slow enough that four units
    // came back meanwhile, a round shows nothing, and is run again.
    let mut shown = 0;
    for round in 0..10 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        if shown == 0 {
            assert_status(&datakeys(50).await.json(), 201);
        } else {
            assert_status(&get(ids.clone()).await.json(), 200);
        }
        let mut passed = 0;
        // Counted until the refused request was sent: its answer is held back.
        let (refused, sent) = loop {
            let sent = started.elapsed();
            let answer = encrypt().await;
            if answer.status != 200 || passed > 50 {
                break (answer, sent);
            }
            passed += 1;
        };
        let refilled = refills(sent, 50);
        if refilled >= 4 {
            eprintln!("round {round}: {refilled} came back meanwhile; again");
            continue;
        }
        assert!(passed <= refilled, "{passed} passed, {refilled} refilled");
        let v = assert_error(&refused.json(), 429, "rate_limited");
        assert!(
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.starts_with("this token")),
            "{v}"
        );
        shown += 1;
        if shown == 2 {
            break;
        }
    }
    assert_eq!(shown, 2, "no round was fast enough to show the charge");
    // Fifty keys with the bucket not full: refused once the body is read, and no key is made.
    // Three encrypts and the call's own request leave one unit; the keys need four more,
    // which take 60 ms to come back (a round slower than that shows nothing).
    let stored = || async {
        let pool = ts.db(true).await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM data_keys WHERE org_id = $1")
            .bind(&a.id)
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    let mut shown = false;
    for round in 0..5 {
        let before = stored().await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let started = Instant::now();
        for _ in 0..3 {
            assert_status(&encrypt().await.json(), 200);
        }
        let sent = started.elapsed();
        let answer = datakeys(50).await;
        if refills(sent, 50) >= 3 {
            eprintln!("round {round}: too slow to show the refusal; again");
            continue;
        }
        let v = assert_error(&answer.json(), 429, "rate_limited");
        assert!(answer.header("retry-after").is_some(), "{v}");
        assert_eq!(stored().await, before, "keys were made by a refused call");
        shown = true;
        break;
    }
    assert!(shown, "no round was fast enough to show the refusal");
}

/// A call for stored keys that asks for no valid count, or names ids that are no ids, is
/// refused as invalid before it is paid for: it costs one request, not the token's burst.
/// Before, a count of a million paid for a thousand keys (the whole burst) and was refused
/// afterwards, and the token's next requests were refused as over its limit. So is a count
/// more than the token's whole burst pays for (here 51 keys: six units of a burst of five):
/// before, it was charged the burst, and a token of a small limit made a thousand keys for
/// the price of five requests.
#[tokio::test]
async fn a_call_refused_as_invalid_costs_one_request() {
    let ts = TestServer::start_with("rate-invalid", |data| {
        Server::start(data, &[QUIET, ("BYOK_TOKEN_RATE_LIMIT", "50")])
    });
    let a = ts.org(OrgSettings::named("a")).await;
    let team = a.scope(&ts.api, &a.id, "team").await;
    let mut ids: Vec<String> = (0..999).map(|i| format!("{i:032x}")).collect();
    ids.push("not-an-id".into());
    let calls = [
        (
            a.scope_path(&team, "datakeys"),
            json!({ "count": 1_000_000 }),
        ),
        (a.scope_path(&team, "datakeys"), json!({ "count": 0 })),
        (a.scope_path(&team, "datakeys"), json!({ "count": 51 })),
        (a.path("/datakeys/get"), json!({ "ids": ids })),
        (a.path("/datakeys/delete"), json!({ "ids": ids })),
    ];
    let encrypt = format!("/v1/orgs/{}/scopes/{}/encrypt", a.id, a.id);
    for (path, body) in calls {
        // A full bucket: a burst of five, one back every 20 ms.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let refused = send(&ts, Some(body.clone()), &path, &a.service).await;
        assert_error(&refused.json(), 400, "invalid_request");
        // Four units are left: three encrypts pass at once (a charged burst would have left
        // none, and these would wait 60 ms for the bucket).
        for _ in 0..3 {
            let plain = json!({ "plaintext": "aGk=" });
            let answer = send(&ts, Some(plain), &encrypt, &a.service).await;
            assert_status(&answer.json(), 200);
        }
    }
}

#[tokio::test]
async fn every_answer_is_no_store_and_metrics_are_the_operators() {
    let ts = TestServer::start("no-store");
    let o = ts.org(OrgSettings::named("acme")).await;
    let ct = o.seal(&ts.api, &o.id, b"secret").await;
    // Leases are never for the org scope (its key is the root key).
    let team = o.scope(&ts.api, &o.id, "team").await;
    let answers = [
        send(
            &ts,
            Some(json!({ "role": "service", "name": "x" })),
            &o.path("/tokens"),
            &o.admin,
        )
        .await,
        send(
            &ts,
            Some(json!({})),
            &o.path(&format!("/scopes/{}/datakey", o.id)),
            &o.service,
        )
        .await,
        send(
            &ts,
            Some(json!({ "ciphertext": ct })),
            &o.path("/decrypt"),
            &o.service,
        )
        .await,
        send(
            &ts,
            Some(json!({})),
            &o.path(&format!("/scopes/{team}/lease")),
            &o.service,
        )
        .await,
        send(&ts, None, &o.path("/scopes"), "byok_wrong").await,
    ];
    for a in &answers {
        assert_eq!(
            a.header("cache-control"),
            Some("no-store"),
            "{} {}",
            a.status,
            a.body
        );
    }
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [201, 200, 200, 200, 401]
    );

    assert_error(
        &ts.get("/metrics", "byok_nope").await,
        401,
        "unauthenticated",
    );
    assert_error(&ts.get("/metrics", &o.admin).await, 403, "forbidden");
    let m = send(&ts, None, "/metrics", &ts.operator).await;
    assert_eq!(m.status, 200);
    let m = m.body;
    assert!(m.contains("byok_encrypt_total"), "{m}");
    assert!(!m.contains(&o.id), "no org id in the metrics");
}

#[tokio::test]
async fn metrics_on_their_own_address_leave_the_api() {
    let ts = TestServer::start_with("metrics-listen", |data| {
        Server::start_with_args(data, &[QUIET], &["--metrics-listen", "127.0.0.1:0"])
    });
    let at = ts.server.metrics_url.clone().expect("the metrics address");
    let text = reqwest::get(&at).await.unwrap().text().await.unwrap();
    assert!(text.contains("byok_encrypt_total"), "{text}");
    assert_error(&ts.get("/metrics", &ts.operator).await, 404, "not_found");
    // Its refusals are the API's JSON errors, as on the API address.
    let client = reqwest::Client::new();
    for (method, status, code) in [
        (reqwest::Method::POST, 405, "method_not_allowed"),
        (reqwest::Method::GET, 404, "not_found"),
    ] {
        let url = if status == 404 {
            at.replace("/metrics", "/nothing")
        } else {
            at.clone()
        };
        let r = client.request(method, &url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}

#[tokio::test]
async fn without_a_vendor_principal_no_policy_is_generated_and_the_log_is_plain() {
    let ts = TestServer::start_with("no-principal", |data| {
        Server::start_with_args(data, &[QUIET], &["--log-format", "text"])
    });
    let o = ts.org(OrgSettings::named("acme")).await;
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let answer = send(
        &ts,
        None,
        &o.path(&format!("/keys/policy?key_arn={arn}")),
        &o.admin,
    )
    .await;
    let v = assert_error(&answer.json(), 501, "not_configured");
    assert!(
        field(&v["error"], "message").contains("--aws-principal-arn"),
        "{v}"
    );
    assert!(
        !answer.body.contains("111122223333:role"),
        "{}",
        answer.body
    );
    let log = ts.server.log();
    assert!(log.contains("no vendor AWS principal"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in a log file: {log:?}"
    );
}
