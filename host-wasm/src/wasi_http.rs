//! The edge function as a `wasi:http` proxy component (wasm32-wasip2): what Fastly Compute,
//! Spin and `wasmtime serve` run. It does what the example Worker does, with the same routes
//! and answers: `POST /encrypt?k=v...` answers the binary ciphertext of the body under the
//! context given as query parameters, `POST /decrypt?k=v...` the plaintext; errors are JSON with
//! the server's code, `{"error": {"code": "scope_paused", "message": "..."}}`, and the status
//! [`ApiCode::edge_status`] gives.
//!
//! Configuration comes from the environment (`wasi:cli/environment`; `wasmtime serve --env`,
//! Spin variables, Fastly's environment): `BYOK_SERVER` (byok's base URL: `https://`, or
//! `http://` to a loopback or private address, or to any host with
//! `BYOK_ALLOW_PLAIN_HTTP=1`), `BYOK_ORG`, `BYOK_SCOPE`, `BYOK_TOKEN` (a service token of the org) and
//! `BYOK_AUDIENCE` (this deployment's name, logged with each lease).
//!
//! The lease lives in this instance's memory and follows core's [`Holder`] rules: renewed at
//! half life, dropped at once on a refusal (asked again a few seconds later, so a resume
//! heals it), kept through an outage until it expires. A host
//! that keeps an instance between requests (the tests' embedding does) asks byok for a lease
//! once per half TTL; a host that makes an instance per request asks once per request. Either
//! way a withdrawal stops the component within one lease TTL. A component runs only while it
//! serves a request (it has no timer of its own): in a host that keeps an idle instance, the
//! keys of a lease that expired meanwhile are wiped at the start of its next request (any
//! request, which they never serve). A host that drops the instance frees its memory unwiped.
//! Where keys must not outlive the lease in memory, the host should drop idle instances within
//! the lease TTL (docs/edge.md).
//!
//! It serves only callers its deployment says how to check ([`CallerGate`]):
//! `BYOK_EDGE_CALLER_TOKEN` (callers send `Authorization: Bearer <token>`; during a rotation
//! `BYOK_EDGE_CALLER_TOKEN_NEXT` too) or
//! `BYOK_EDGE_CALLERS=upstream` (the platform authenticates them); with neither, every request
//! is `501 not_configured` (docs/edge.md).

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use byok_core::lease::Lease;
use byok_core::lease::holder::{Holder, answer_code, answer_message, is_refusal};
use byok_core::lease::server::ServerUrl;
use byok_core::{ApiCode, SecretVec};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    RequestOptions, ResponseOutparam, Scheme,
};
use wasip2::io::streams::{InputStream, StreamError};
use zeroize::Zeroizing;

use crate::body::{ReadError, read_wiped};
use crate::caller::{self, CallerGate};
use crate::edge::{self, EdgeError};

/// The largest request body taken, as the server's own limit (4 MiB of plaintext, in a
/// ciphertext of a little more): larger ones get `too_large`.
const MAX_BODY: u64 = 6 << 20;
/// The largest lease answer read: the largest document core takes (a lease of many versions
/// is a few KiB).
const MAX_LEASE: usize = byok_core::lease::MAX_DOCUMENT_LEN;
/// How long a lease request may wait to connect and for its first byte: past it byok counts as
/// unreachable, and the lease held (if any) keeps serving until it expires.
const LEASE_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long a lease answer's body may take to arrive whole, from when it was asked for (the JS
/// client's `timeoutMs`): a body that drips in holds this instance's lease lock no longer.
const LEASE_BODY_DEADLINE_MS: i64 = 10_000;
/// The most bytes asked of a stream at once.
const PIECE: u64 = 16 << 10;

/// The lease of this instance.
static HOLDER: Mutex<Holder> = Mutex::new(Holder::new());

struct Component;

wasip2::http::proxy::export!(Component);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match serve(&request) {
            // Wiped as it drops, after it was written out.
            Ok(body) => respond(out, 200, "application/octet-stream", &body),
            Err(e) => {
                let body = serde_json::json!({
                    "error": { "code": e.code.as_str(), "message": e.message }
                });
                respond(
                    out,
                    e.code.edge_status(),
                    "application/json",
                    body.to_string().as_bytes(),
                );
            }
        }
    }
}

/// The answer's body: a ciphertext, or a plaintext (wiped when dropped, as is the plaintext
/// of a request to encrypt).
fn serve(request: &IncomingRequest) -> Result<SecretVec, EdgeError> {
    // Every request, whatever becomes of it, first drops a lease that expired while the
    // instance was idle: its keys are wiped now, not at the next request that gets this far.
    let _ = HOLDER
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .lease(now_ms());
    // The caller first: an unknown one learns nothing and makes no lease request.
    let setting = |name: &str| std::env::var(name).ok();
    let gate = CallerGate::configure(
        setting(caller::TOKEN_SETTING).as_deref(),
        setting(caller::CALLERS_SETTING).as_deref(),
    )?
    .with_next_token(setting(caller::NEXT_TOKEN_SETTING).as_deref())?;
    let authorization = request.headers().get("authorization");
    // One header or none: two are refused, not read as one of them.
    gate.admit(match &authorization[..] {
        [one] => Some(one.as_slice()),
        _ => None,
    })?;
    if !matches!(request.method(), Method::Post) {
        return Err(error(ApiCode::MethodNotAllowed, "POST only"));
    }
    let target = request.path_with_query().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let encrypting = match path {
        "/encrypt" => true,
        "/decrypt" => false,
        _ => return Err(error(ApiCode::NotFound, "POST /encrypt or /decrypt")),
    };
    // The query's pairs as URLSearchParams reads them (as the Worker does); a name given
    // twice is refused (`invalid_request`), not reduced to one of its values.
    let ctx = edge::context(form_urlencoded::parse(query.as_bytes()).into_owned())?;
    let body = request_body(request)?;
    let config = Config::from_env()?;
    let mut holder = HOLDER.lock().unwrap_or_else(PoisonError::into_inner);
    if holder.due(now_ms()) {
        renew(&config, &mut holder)?;
    }
    let now = now_ms();
    let lease = holder
        .lease(now)
        .map_err(|s| EdgeError::new(s.code, s.message))?;
    if encrypting {
        edge::encrypt(lease, &ctx, &body, now, &mut rng()).map(SecretVec::from_vec)
    } else {
        edge::decrypt(lease, &ctx, dearmored(body)?, now)
    }
}

/// A ciphertext sent as `byok:v1:` text is taken too, as by the server.
fn dearmored(mut body: Zeroizing<Vec<u8>>) -> Result<Vec<u8>, EdgeError> {
    match std::str::from_utf8(&body) {
        Ok(text) if text.starts_with("byok:") => edge::dearmor(text.trim_end()),
        // A ciphertext: decrypted in place, in this allocation.
        _ => Ok(std::mem::take(&mut *body)),
    }
}

/// Asks byok for a lease and tells the holder how that went. An error means no lease is usable.
fn renew(config: &Config, holder: &mut Holder) -> Result<(), EdgeError> {
    let failed =
        |holder: &mut Holder, code, message: String| match holder.failed(code, message, now_ms()) {
            Some(s) => Err(EdgeError::new(s.code, s.message)),
            None => Ok(()),
        };
    // The lease's life is counted from when it was asked for: an answer that takes long to
    // come (a stalled body) cannot stretch it.
    let asked = byok_core::lease::clock::system();
    let answer = match send_lease_request(config) {
        Ok(answer) => answer,
        Err(why) => {
            return failed(
                holder,
                ApiCode::Unreachable,
                format!("cannot reach byok at {}: {why}", config.server),
            );
        }
    };
    let received = asked.at;
    let status = answer.status;
    let deadline = received.saturating_add(LEASE_BODY_DEADLINE_MS);
    if is_refusal(status) {
        // Decided by the status, before the body is read: a refusal is byok saying no, so the
        // keys go now, however long its body takes to come (or if it never does). The body,
        // if it comes whole, then names the refusal.
        // The retry interval runs from the refusal, not from the ask: an answer that took
        // longer than the interval to come must not make every next call ask again.
        let (code, message) = server_error(status, b"");
        holder.refused(code, message, now_ms());
        let body = answer.read(MAX_LEASE, deadline).unwrap_or_default();
        let (code, message) = server_error(status, &body);
        holder.refused(code, message.clone(), now_ms());
        return Err(EdgeError::new(code, message));
    }
    let body = match answer.read(MAX_LEASE, deadline) {
        Ok(body) => body,
        Err(why) => {
            let why = match why {
                ReadError::TooLarge => format!("an answer over {MAX_LEASE} bytes"),
                ReadError::Failed(why) => why,
            };
            return failed(
                holder,
                ApiCode::Unreachable,
                format!("byok's answer from {}: {why}", config.server),
            );
        }
    };
    if status == 200 {
        let lease = Lease::parse(&body, received, asked.ahead)
            .and_then(|l| l.check_scope(&config.scope).map(|()| l));
        return match lease {
            Ok(lease) => {
                holder.received(lease, received);
                Ok(())
            }
            // Not the caller's fault, and not a refusal: as if byok could not be reached (a
            // proxy's page, a lease of another scope); the lease held serves until it expires.
            Err(e) => failed(holder, ApiCode::Unreachable, format!("byok's answer: {e}")),
        };
    }
    let (code, message) = server_error(status, &body);
    failed(holder, code, message)
}

/// The code and message of an error answer, by its JSON body or else by its status.
fn server_error(status: u16, body: &[u8]) -> (ApiCode, String) {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error = &json["error"];
    let code = answer_code(status, error["code"].as_str());
    (
        code,
        answer_message(status, code, error["message"].as_str()),
    )
}

/// The deployment's settings, from the environment.
struct Config {
    server: String,
    /// The scope asked for: a lease of another is refused.
    scope: String,
    scheme: Scheme,
    authority: String,
    path: String,
    token: String,
    body: String,
}

impl Config {
    fn from_env() -> Result<Self, EdgeError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| error(ApiCode::NotConfigured, &format!("{name} is not set")))
        };
        let server = var("BYOK_SERVER")?;
        // Core's rule: https://, or plain HTTP to this host or a private address, or to a
        // private name the deployment vouches for.
        let plain = std::env::var("BYOK_ALLOW_PLAIN_HTTP").is_ok_and(|v| v == "1" || v == "true");
        let url = ServerUrl::parse(&server, plain)
            .map_err(|e| error(ApiCode::NotConfigured, &format!("BYOK_SERVER: {e}")))?;
        let (org, scope) = (var("BYOK_ORG")?, var("BYOK_SCOPE")?);
        let path = url.lease_path(&org, &scope).map_err(|e| {
            error(
                ApiCode::NotConfigured,
                &format!("BYOK_ORG, BYOK_SCOPE: {e}"),
            )
        })?;
        let audience = std::env::var("BYOK_AUDIENCE")
            .ok()
            .filter(|a| !a.is_empty());
        let body = match audience {
            Some(a) => serde_json::json!({ "audience": a }),
            None => serde_json::json!({}),
        };
        Ok(Self {
            scheme: if url.is_https() {
                Scheme::Https
            } else {
                Scheme::Http
            },
            authority: url.authority().to_owned(),
            path,
            scope,
            token: var("BYOK_TOKEN")?,
            body: body.to_string(),
            server,
        })
    }
}

/// A lease request's answer: its status, and its body still to read.
struct LeaseAnswer {
    status: u16,
    // Dropped before the body it reads from, as `wasi:http` requires.
    stream: InputStream,
    _body: IncomingBody,
}

impl LeaseAnswer {
    /// The body, whole (it may hold the lease's keys: wiped when dropped), up to `limit`
    /// bytes and until `deadline` (ms since the epoch).
    fn read(&self, limit: usize, deadline: i64) -> Result<Zeroizing<Vec<u8>>, ReadError> {
        read_wiped(
            || {
                if now_ms() > deadline {
                    return Err("the answer did not arrive whole in time".to_owned());
                }
                chunk(&self.stream)
            },
            4096,
            limit,
        )
    }
}

/// `POST`s the lease request through `wasi:http/outgoing-handler`: the answer, its body not
/// read yet.
fn send_lease_request(config: &Config) -> Result<LeaseAnswer, String> {
    let headers = Fields::from_list(&[
        (
            "authorization".to_owned(),
            format!("Bearer {}", config.token).into_bytes(),
        ),
        ("content-type".to_owned(), b"application/json".to_vec()),
    ])
    .map_err(|e| format!("headers: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let set = [
        request.set_method(&Method::Post),
        request.set_scheme(Some(&config.scheme)),
        request.set_authority(Some(&config.authority)),
        request.set_path_with_query(Some(&config.path)),
    ];
    if set.iter().any(Result::is_err) {
        return Err(format!("the URL {} is not valid", config.server));
    }
    let body = request.body().map_err(|()| "request body taken")?;
    let options = RequestOptions::new();
    // A host may not support timeouts; then its own apply.
    let _ = options.set_connect_timeout(Some(LEASE_TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(LEASE_TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(LEASE_TIMEOUT_NS));
    let answer = outgoing_handler::handle(request, Some(options)).map_err(|e| format!("{e:?}"))?;
    {
        let mut stream = body.write().map_err(|()| "request stream taken")?;
        stream
            .write_all(config.body.as_bytes())
            .and_then(|()| Write::flush(&mut stream))
            .map_err(|e| e.to_string())?;
    }
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    answer.subscribe().block();
    let response = answer
        .get()
        .ok_or("no answer")?
        .map_err(|()| "answer taken")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "answer body taken")?;
    let stream = body.stream().map_err(|()| "answer stream taken")?;
    Ok(LeaseAnswer {
        status,
        stream,
        _body: body,
    })
}

/// The next chunk of `stream` (`None` at its end), as `blocking-read` gives it: a buffer of its
/// own, which [`read_wiped`] wipes.
fn chunk(stream: &InputStream) -> Result<Option<Vec<u8>>, String> {
    match stream.blocking_read(PIECE) {
        Ok(chunk) => Ok(Some(chunk)),
        Err(StreamError::Closed) => Ok(None),
        Err(StreamError::LastOperationFailed(e)) => Err(e.to_debug_string()),
    }
}

/// The request body, up to [`MAX_BODY`], wiped when dropped (a plaintext to encrypt); sized
/// by its `Content-Length` when it has one.
fn request_body(request: &IncomingRequest) -> Result<Zeroizing<Vec<u8>>, EdgeError> {
    let unreadable = |what: &str| error(ApiCode::InvalidRequest, &format!("request body: {what}"));
    let declared = request
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok())
        .filter(|n| *n <= MAX_BODY)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let incoming = request.consume().map_err(|()| unreadable("taken"))?;
    let stream = incoming.stream().map_err(|()| unreadable("taken"))?;
    let limit = usize::try_from(MAX_BODY).unwrap_or(usize::MAX);
    let body = read_wiped(|| chunk(&stream), declared, limit).map_err(|e| match e {
        ReadError::TooLarge => error(
            ApiCode::TooLarge,
            "body over 6 MiB: use the streaming format",
        ),
        ReadError::Failed(why) => unreadable(&why),
    });
    drop(stream);
    body
}

/// Answers `status` with `body`; a 401 carries core's `WWW-Authenticate` challenge.
fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8]) {
    let mut fields = vec![("content-type".to_owned(), content_type.as_bytes().to_vec())];
    if let Some(challenge) = ApiCode::www_authenticate(status) {
        fields.push(("www-authenticate".to_owned(), challenge.as_bytes().to_vec()));
    }
    let headers = Fields::from_list(&fields).unwrap_or_else(|_| Fields::new());
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream
            .write_all(body)
            .and_then(|()| Write::flush(&mut stream));
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

fn error(code: ApiCode, message: &str) -> EdgeError {
    EdgeError::new(code, message)
}

/// The time for lease decisions: the wall clock, kept from running back or slower than the
/// monotonic clock (core's `SteadyWall`: a wall clock stepped back does not stretch a lease).
fn now_ms() -> i64 {
    byok_core::lease::clock::system().at
}

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}
