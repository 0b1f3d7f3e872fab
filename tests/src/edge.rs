//! What the edge tests share, whatever runs the edge function (workerd, the `wasi:http`
//! component under wasmtime): a deployment of its own on a fresh scope with a fresh service
//! token, the three withdrawals with the refusal each must produce, and the wait for it.

use std::future::Future;
use std::time::{Duration, Instant};

use base64ct::Encoding;
use serde_json::{Value, json};

use crate::fixtures::{TestOrg, TestServer, assert_status, now_ms};

/// One edge deployment: the scope it leases and the service token it holds.
pub struct Deployment {
    /// The scope leased.
    pub scope: String,
    /// The token's id (to revoke it).
    pub token_id: String,
    /// The service token.
    pub token: String,
    /// The secret its own callers send (`BYOK_EDGE_CALLER_TOKEN`): 32 random bytes, base64.
    pub caller: String,
}

impl Deployment {
    /// A new team scope `name` under the org and a new service token for it.
    pub async fn create(ts: &TestServer, o: &TestOrg, name: &str) -> Self {
        let scope = o.scope(ts, &o.id, name).await;
        let (token_id, token) = o.token(ts, "service", name).await;
        let caller = base64ct::Base64::encode_string(&rand::random::<[u8; 32]>());
        Self {
            scope,
            token_id,
            token,
            caller,
        }
    }

    /// `Authorization` as its callers send it.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.caller)
    }
}

/// How an edge function's caller presents itself, for the tests of its caller check.
#[derive(Clone, Copy, Debug)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A bearer token that is not the deployment's.
    WrongToken,
    /// The deployment's caller token.
    Known,
}

impl Caller {
    /// The `Authorization` header this caller sends to `d`'s edge, if any.
    pub fn authorization(self, d: &Deployment) -> Option<String> {
        match self {
            Self::Anonymous => None,
            Self::WrongToken => {
                // The same length, one character changed.
                let other = if d.caller.starts_with('A') { 'B' } else { 'A' };
                Some(format!("Bearer {other}{}", &d.caller[1..]))
            }
            Self::Known => Some(d.authorization()),
        }
    }
}

/// Asserts that no lease was issued for `d`'s scope: callers the edge refused made it ask
/// byok for nothing.
pub async fn no_lease_asked(ts: &TestServer, o: &TestOrg, d: &Deployment) {
    let leases = o
        .audit(ts, &o.auditor)
        .await
        .into_iter()
        .filter(|r| r["event"]["type"] == "lease_issued" && r["event"]["scope"] == d.scope.as_str())
        .count();
    assert_eq!(leases, 0, "an unknown caller made the edge ask for a lease");
}

/// A customer's withdrawal that must stop an edge within one lease TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withdrawal {
    /// The scope is paused.
    Pause,
    /// The scope is revoked.
    Revoke,
    /// The edge's token is revoked.
    TokenRevoke,
}

impl Withdrawal {
    /// Every withdrawal.
    pub const ALL: [Self; 3] = [Self::Pause, Self::Revoke, Self::TokenRevoke];

    /// Does it, as the org's admin.
    pub async fn apply(self, ts: &TestServer, o: &TestOrg, d: &Deployment) {
        match self {
            Self::Pause => assert_status(&o.act(ts, &d.scope, "pause", json!({})).await, 200),
            Self::Revoke => assert_status(
                &o.act(ts, &d.scope, "revoke", json!({ "confirm": d.scope }))
                    .await,
                200,
            ),
            Self::TokenRevoke => {
                let path = o.path(&format!("/tokens/{}", d.token_id));
                assert_status(&ts.raw("DELETE", &path, Some(&o.admin), None).await, 200)
            }
        };
    }

    /// The edge's answer once the withdrawal reached it: the status and the server's code, but
    /// for the edge's own token refused, which is no fault of the edge's caller (core's
    /// `answer_code`).
    pub fn refusal(self) -> (u16, &'static str) {
        match self {
            Self::Pause => (409, "scope_paused"),
            Self::Revoke => (410, "scope_revoked"),
            Self::TokenRevoke => (502, "edge_token_refused"),
        }
    }
}

/// Calls `edge` every 50 ms until it answers other than 200; panics if that takes `limit` or
/// more. Returns the answer's status and JSON body, and how long it took.
pub async fn first_refusal<F, Fut>(limit: Duration, mut edge: F) -> (u16, Value, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (u16, Vec<u8>)>,
{
    let start = Instant::now();
    loop {
        let (status, body) = edge().await;
        if status != 200 {
            let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return (status, v, start.elapsed());
        }
        assert!(
            start.elapsed() < limit,
            "the edge still serves {:?} after the withdrawal",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that the edge of `d` was refused while the last lease it was granted was still live:
/// it dropped the keys when byok refused the renewal, not only when the lease ran out. (Either
/// is within the TTL; only the first is the rule.) Call it right after [`first_refusal`].
pub async fn refused_before_expiry(ts: &TestServer, o: &TestOrg, d: &Deployment) {
    let refused_at = now_ms();
    let expiry = o
        .audit(ts, &o.auditor)
        .await
        .into_iter()
        .filter(|r| r["event"]["type"] == "lease_issued" && r["event"]["scope"] == d.scope.as_str())
        .filter_map(|r| r["event"]["expires_at"].as_i64())
        .max()
        .expect("a lease was issued");
    assert!(
        refused_at < expiry,
        "the edge stopped {} ms after its lease expired: it kept the keys after the refusal",
        refused_at - expiry
    );
}
