//! A front on loopback before the real KMS emulator (moto), for what moto does not do:
//! - fault injection: it answers the next requests with the faults queued ([`Fault`]), or every
//!   request with one fault while an outage lasts ([`FaultFront::set_down`]);
//! - key-state enforcement (optional): before relaying a cryptographic call it asks moto's
//!   `DescribeKey` for the key's state and answers `DisabledException` or
//!   `KMSInvalidStateException` as real KMS does (moto reports the state but never refuses);
//! - STS `AssumeRoleWithWebIdentity` (optional), which moto cannot serve with auth on
//!   ([`crate::sts_front`]).
//!
//! Every other request is relayed byte for byte (its `Host` header included, so SigV4
//! signatures still verify).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::sts_front::OidcTrust;

/// What to answer instead of relaying.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// 400 `ThrottlingException` (JSON 1.1, code in `X-Amzn-ErrorType` too).
    Throttle,
    /// 503 with an HTML body, as a load balancer in trouble answers.
    Unavailable,
    /// The connection is closed without an answer (a connection error to the client).
    Reset,
    /// The request is read and never answered (a KMS that hangs): the caller's own deadline
    /// ends it.
    Hang,
    /// The status is answered (with JSON declared 200 bytes long), then the connection is
    /// closed after the body's first bytes: a server or proxy dying mid-answer.
    CutShort(u16),
}

/// Credentials the front uses to ask moto for key states.
#[derive(Clone)]
pub struct StateCheck {
    /// A user allowed `kms:DescribeKey`.
    pub creds: byok_core::kms::aws::request::AwsCredentials,
}

/// A running front.
pub struct FaultFront {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// What the front's connections share with the test.
#[derive(Default)]
struct State {
    /// Faults queued for the next requests.
    faults: Mutex<VecDeque<Fault>>,
    /// The fault every request gets while an outage lasts.
    down: Mutex<Option<Fault>>,
    /// Requests received.
    seen: AtomicU32,
    /// Every KMS and STS call received, as the customer's CloudTrail would list it.
    trail: Mutex<Vec<TrailEntry>>,
}

/// A KMS or STS call received (answered by moto or the front, refused, or faulted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailEntry {
    /// The operation: `DescribeKey`, `Encrypt`, `Decrypt`, `AssumeRole`, ...
    pub op: String,
    /// The `byok:version` of its encryption context, if it has one.
    pub version: Option<String>,
}

impl FaultFront {
    /// Starts a front relaying to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        Self::start_with(upstream, None).await
    }

    /// Starts a front that also enforces key states with `check`.
    pub async fn start_with(upstream: String, check: Option<StateCheck>) -> Self {
        Self::start_full(upstream, check, None).await
    }

    /// Starts a front that may also enforce key states and serve `AssumeRoleWithWebIdentity`.
    pub async fn start_full(
        upstream: String,
        check: Option<StateCheck>,
        oidc: Option<OidcTrust>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (state, up) = (shared.clone(), upstream.clone());
                let (c, o) = (check.clone(), oidc.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &state, up, c, o).await;
                });
            }
        });
        Self { url, state, task }
    }

    /// An outage: from now on every request (after any queued faults) is answered with
    /// `fault`, until `set_down(None)` brings the KMS back.
    pub fn set_down(&self, fault: Option<Fault>) {
        *self.state.down.lock().unwrap() = fault;
    }

    /// Queues faults for the next requests.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// Requests received so far.
    pub fn seen(&self) -> u32 {
        self.state.seen.load(Ordering::SeqCst)
    }

    /// The KMS and STS calls received so far, in order: what the customer's own log
    /// (CloudTrail) would show.
    pub fn trail(&self) -> Vec<TrailEntry> {
        self.state.trail.lock().unwrap().clone()
    }
}

impl Drop for FaultFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes of body, or a chunked body
/// to its last chunk).
async fn read_request(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    while if chunked {
        !buf[header_end..].ends_with(b"0\r\n\r\n")
    } else {
        buf.len() < header_end + len
    } {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // One request per connection: ask the upstream to close after answering.
    let (head, body) = buf.split_at(header_end);
    let head = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    let mut req = out.into_bytes();
    req.extend_from_slice(body);
    Ok(req)
}

/// A KMS request (`X-Amz-Target: TrentService.<op>`) or an STS one (a form whose `Action` is
/// the op) as a trail entry.
fn trail_entry(req: &[u8]) -> Option<TrailEntry> {
    let end = req.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&req[..end]);
    let body = &req[end..];
    let target = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-amz-target")
            .then_some(value.trim())
    });
    let Some(target) = target else {
        let op = crate::sts_front::form_decode(body)?.remove("Action")?;
        return Some(TrailEntry { op, version: None });
    };
    let op = target.strip_prefix("TrentService.")?.to_owned();
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let version = body
        .pointer("/EncryptionContext/byok:version")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    Some(TrailEntry { op, version })
}

fn json_error(code: &str, message: &str) -> Vec<u8> {
    let body = format!(r#"{{"__type":"{code}","message":"{message}"}}"#);
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-errortype: {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// For an Encrypt/Decrypt/GenerateDataKey/ReEncrypt request, the error real KMS would give for
/// the key's state, if any.
async fn state_refusal(req: &[u8], upstream: &str, check: &StateCheck) -> Option<Vec<u8>> {
    use byok_core::kms::aws::request::{describe_key_request, parse_describe};
    use byok_core::kms::aws::{Endpoint, KeyArn};
    let end = req.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
    let target = head
        .lines()
        .find_map(|l| l.strip_prefix("x-amz-target:"))?
        .trim()
        .to_owned();
    let crypto = ["encrypt", "decrypt", "generatedatakey", "reencrypt"];
    if !crypto.iter().any(|op| target.ends_with(op)) {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(&req[end..]).ok()?;
    let key = KeyArn::parse(body.get("KeyId")?.as_str()?).ok()?;
    let endpoint = Endpoint::danger_override(&format!("http://{upstream}"), key.region()).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let describe = describe_key_request(&key, &endpoint, &check.creds, now).ok()?;
    let transport =
        byok_server::transport::Transport::new(byok_server::transport::TransportConfig {
            danger_allow_http: true,
            ..Default::default()
        })
        .ok()?;
    let meta = parse_describe(&transport.execute(&describe).await.ok()?).ok()?;
    match meta.state.as_str() {
        "Disabled" => Some(json_error(
            "DisabledException",
            &format!("{} is disabled.", meta.arn),
        )),
        "PendingDeletion" => Some(json_error(
            "KMSInvalidStateException",
            &format!("{} is pending deletion.", meta.arn),
        )),
        _ => None,
    }
}

async fn serve(
    mut conn: TcpStream,
    state: &State,
    upstream: String,
    check: Option<StateCheck>,
    oidc: Option<OidcTrust>,
) -> std::io::Result<()> {
    let req = read_request(&mut conn).await?;
    state.seen.fetch_add(1, Ordering::SeqCst);
    if let Some(entry) = trail_entry(&req) {
        state.trail.lock().unwrap().push(entry);
    }
    let queued = state.faults.lock().unwrap().pop_front();
    let fault = queued.or(*state.down.lock().unwrap());
    let body = req
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |p| &req[p + 4..]);
    let web_identity = match (&fault, &oidc) {
        (None, Some(trust)) => crate::sts_front::answer(body, &upstream, trust).await,
        _ => None,
    };
    let refusal = match (&fault, &check) {
        (None, Some(check)) if web_identity.is_none() => {
            state_refusal(&req, &upstream, check).await
        }
        _ => web_identity,
    };
    let answer = match fault {
        Some(Fault::Throttle) => {
            let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-errortype: ThrottlingException\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Some(Fault::Unavailable) => {
            let body = "<html><body>503 Service Unavailable</body></html>";
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Some(Fault::CutShort(status)) => format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: 200\r\nconnection: close\r\n\r\n{{\"error\": {{\"co"
        )
        .into_bytes(),
        Some(Fault::Reset) => return Ok(()),
        Some(Fault::Hang) => {
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
            return Ok(());
        }
        None if refusal.is_some() => refusal.unwrap_or_default(),
        None => {
            let mut up = TcpStream::connect(&upstream).await?;
            up.write_all(&req).await?;
            let mut resp = Vec::new();
            up.read_to_end(&mut resp).await?;
            resp
        }
    };
    conn.write_all(&answer).await?;
    conn.shutdown().await
}
