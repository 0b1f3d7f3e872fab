//! The HTTP client and its failures (each with the exit code the CLI ends with).

use std::process::ExitCode;
use zeroize::Zeroizing;

use byok_core::ApiCode;
use serde_json::Value;

use super::ClientArgs;

/// A client failure, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub(super) code: u8,
    pub(super) message: String,
    /// The server's error code, when the server answered with one: it tells a refusal
    /// (`scope_paused`) from an answer worth retrying (`kms_unavailable`).
    pub(super) api: Option<ApiCode>,
    /// The HTTP status, when the server (or something in front of it) answered.
    pub(super) status: Option<u16>,
}

impl Failure {
    /// A failure that ends the CLI with exit code `code`.
    pub(super) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            api: None,
            status: None,
        }
    }

    pub(super) fn usage(message: impl Into<String>) -> Self {
        Self::new(2, message)
    }

    /// Whether the same request may succeed if sent again soon: the server could not be
    /// reached, it answered with a retryable code (429, 503), or its status is no refusal by
    /// core's rule (`lease::holder::is_refusal`: a proxy's bare 502 or 504, a 408), as the
    /// edge hosts decide.
    pub(super) fn transient(&self) -> bool {
        self.code == 3
            || self.api.is_some_and(ApiCode::retryable)
            || self
                .status
                .is_some_and(|s| !byok_core::lease::holder::is_refusal(s))
    }
}

/// Prints the failure and returns its exit code.
pub fn report(f: Failure) -> ExitCode {
    // The message carries the server's words: shown, never obeyed by the terminal.
    eprintln!("error: {}", super::output::shown(&f.message));
    ExitCode::from(f.code)
}

/// The HTTP client.
pub struct Client {
    http: reqwest::Client,
    args: ClientArgs,
    /// From `--token` (`BYOK_TOKEN`) or `--token-file` (`BYOK_TOKEN_FILE`).
    token: Option<super::args::Token>,
}

impl Client {
    /// A client for `args`. A plain-HTTP server beyond this machine is refused without
    /// `--insecure-http`: the token (and a lease's keys) would cross the network in the clear.
    ///
    /// Redirects are not followed: a 307 or 308 would send the request (a plaintext, a token's
    /// secret) again to wherever it points, unchecked, and its answer would be taken for
    /// byok's. A proxy from the environment (`HTTP_PROXY`, `ALL_PROXY`) is used for `https://`
    /// only, where it sees a TLS tunnel; plain HTTP, allowed on this machine only, never goes
    /// through one (it would carry the token to the proxy in the clear).
    ///
    /// The token comes from `--token` or `--token-file`; both given is refused (which one a
    /// request carries must not depend on precedence the user did not choose).
    pub fn new(mut args: ClientArgs) -> Result<Self, Failure> {
        check_server(&args.server, args.insecure_http)?;
        let token = match (args.token.take(), args.token_file.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(Failure::usage(
                    "a token from --token (or BYOK_TOKEN) and one from --token-file (or BYOK_TOKEN_FILE): give one",
                ));
            }
            (Some(t), None) => Some(t.check().map_err(Failure::usage)?),
            (None, Some(path)) => {
                Some(super::args::Token::from_file(path).map_err(Failure::usage)?)
            }
            (None, None) => None,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if !args.server.to_ascii_lowercase().starts_with("https://") {
            builder = builder.no_proxy();
        }
        if let Some(name) = loopback_name(&args.server) {
            // Plain HTTP is allowed to a localhost name for being on this machine: it goes to
            // this machine's loopback addresses whatever a hosts file or resolver says
            // (RFC 6761), or the token could cross the network in the clear. Port 0: the
            // URL's port, or the scheme's.
            let loopback = [
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
            ];
            builder = builder.resolve_to_addrs(&name, &loopback);
        }
        let http = builder
            .build()
            .map_err(|e| Failure::usage(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { http, args, token })
    }

    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        self.args.json
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let body = body.map(|b| reqwest::Body::from(b.to_string()));
        let bytes = self.call_bytes(method, path, body, MAX_ANSWER).await?;
        if bytes.is_empty() {
            // `202` or `204` (checked in `call_bytes`): nothing to say.
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|_| self.unusable(path))
    }

    /// A success whose body is not what byok answers (an ingress's HTML page, a proxy's own
    /// text): never taken for an empty answer, which would print nothing and exit 0.
    pub fn unusable(&self, path: &str) -> Failure {
        Failure::new(
            3,
            format!(
                "{} answered {path} with a body that is not byok's: is --server byok itself?",
                self.args.server
            ),
        )
    }

    /// Sends the request and reads a success's body, at most `max` bytes: a server (or
    /// something posing as one) cannot make the CLI hold more than byok ever sends there.
    async fn call_bytes(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<reqwest::Body>,
        max: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let url = format!("{}{path}", self.args.server.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::new(3, format!("cannot reach {}: {e}", self.args.server)))?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("nowhere")
                .chars()
                .take(200)
                .collect::<String>();
            return Err(Failure::new(
                3,
                format!(
                    "{} answered {} to {to:?}; byok never redirects, and the request is not sent again elsewhere: point --server at byok itself",
                    self.args.server,
                    status.as_u16()
                ),
            ));
        }
        let limit = if status.is_success() { max } else { MAX_ERROR };
        let bytes = match read_at_most(resp, limit).await {
            Ok(b) => b,
            Err(Body::Over) if status.is_success() => {
                return Err(Failure::new(
                    3,
                    format!(
                        "{} answered {path} with more than {max} bytes, more than byok sends there: is --server byok itself?",
                        self.args.server
                    ),
                ));
            }
            // A success cut short (the timeout reached mid-body, a reset) is no success: the
            // change may have been made, but its answer (a new token, a ciphertext) is lost.
            Err(Body::Cut(e)) if status.is_success() => {
                return Err(Failure::new(
                    3,
                    format!(
                        "{} answered {} but its answer was cut short ({e}); the request may have taken effect: check before retrying",
                        self.args.server,
                        status.as_u16()
                    ),
                ));
            }
            // An error's body is only its message: the status still tells the failure.
            Err(_) => Zeroizing::new(Vec::new()),
        };
        if status.is_success() {
            // byok answers every 200 and 201 with JSON; only 202 (a job started) and 204 (a
            // change with nothing to say) come empty. An empty 200 is someone else's.
            if bytes.is_empty() && !matches!(status.as_u16(), 202 | 204) {
                return Err(self.unusable(path));
            }
            return Ok(bytes);
        }
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let err = value.get("error");
        let field = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        Err(Failure {
            code: 1,
            message: format!(
                "{} ({}): {} [request {}]",
                field("code"),
                status.as_u16(),
                field("message"),
                field("request_id")
            ),
            api: ApiCode::from_code(field("code")),
            status: Some(status.as_u16()),
        })
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// GET of a text answer (a signed checkpoint).
    pub async fn get_text(&self, path: &str) -> Result<String, Failure> {
        let bytes = self
            .call_bytes(reqwest::Method::GET, path, None, MAX_ANSWER)
            .await?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Failure::new(1, format!("{path} answered with text that is not UTF-8")))
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// POST with a JSON body to `action` of a scope: `/v1/orgs/{org}/scopes/{scope}/{action}`.
    pub async fn post_to_scope(
        &self,
        org: &str,
        scope: impl std::fmt::Display,
        action: &str,
        body: Value,
    ) -> Result<Value, Failure> {
        self.post(&format!("/v1/orgs/{org}/scopes/{scope}/{action}"), body)
            .await
    }

    /// POST with a JSON body to a scope's action, returning the answer's bytes as they came,
    /// wiped when dropped: for answers holding keys (a lease), parsed without copies.
    pub async fn post_to_scope_secret(
        &self,
        org: &str,
        scope: impl std::fmt::Display,
        action: &str,
        body: Value,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let path = format!("/v1/orgs/{org}/scopes/{scope}/{action}");
        self.post_to_secret(&path, body).await
    }

    /// A lease on `scope`: the answer's bytes as they came, wiped when dropped, at most
    /// [`byok_core::lease::MAX_DOCUMENT_LEN`] of them (core refuses a longer one anyway: it is
    /// not read whole first).
    pub async fn lease(
        &self,
        org: &str,
        scope: impl std::fmt::Display,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let path = format!("/v1/orgs/{org}/scopes/{scope}/lease");
        let body = reqwest::Body::from("{}");
        self.call_bytes(
            reqwest::Method::POST,
            &path,
            Some(body),
            byok_core::lease::MAX_DOCUMENT_LEN,
        )
        .await
    }

    /// POST with a JSON body, returning the answer's bytes, wiped when dropped: for answers
    /// holding secrets (a plaintext, a data key).
    pub async fn post_to_secret(
        &self,
        path: &str,
        body: Value,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let body = reqwest::Body::from(body.to_string());
        self.call_bytes(reqwest::Method::POST, path, Some(body), MAX_ANSWER)
            .await
    }

    /// POST of a body holding secrets (a plaintext), wiped once the request is done with it,
    /// returning the answer's bytes, wiped when dropped.
    pub async fn post_secret(
        &self,
        path: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        // The body's bytes are the buffer itself, dropped (so wiped) with its last reference.
        let body = reqwest::Body::from(bytes::Bytes::from_owner(body));
        self.call_bytes(reqwest::Method::POST, path, Some(body), MAX_ANSWER)
            .await
    }

    /// PATCH with a JSON body.
    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// The most a success's body may be, but a lease's. The largest byok sends is an org's scope
/// list, unpaged (about 300 bytes a scope: this is some 900 000 scopes); next come a decrypt's
/// answer (a 4 MiB plaintext in base64, 5.6 MiB) and a page of 1000 audit rows.
const MAX_ANSWER: usize = 256 << 20;

/// The most of an error's body read: byok's error is a short JSON object.
const MAX_ERROR: usize = 64 << 10;

/// Why a body was not read whole.
enum Body {
    /// Over the limit: the rest is not read.
    Over,
    /// The connection failed or timed out mid-body.
    Cut(reqwest::Error),
}

/// `resp`'s body, at most `max` bytes, into a buffer wiped when dropped (and wiped whenever it
/// grows): an answer may hold keys. A `Content-Length` over `max` is refused before reading.
async fn read_at_most(mut resp: reqwest::Response, max: usize) -> Result<Zeroizing<Vec<u8>>, Body> {
    let announced = resp.content_length().unwrap_or(0);
    if announced > max as u64 {
        return Err(Body::Over);
    }
    // Room for what is announced, up to 1 MiB: a length announced and never sent does not
    // make the CLI take (and wipe) the whole limit.
    let room = usize::try_from(announced).unwrap_or(0).min(1 << 20);
    let mut buf = Zeroizing::new(Vec::with_capacity(room));
    while let Some(chunk) = resp.chunk().await.map_err(Body::Cut)? {
        if chunk.len() > max - buf.len() {
            return Err(Body::Over);
        }
        byok_core::secret::extend_wiped(&mut buf, &chunk);
    }
    Ok(buf)
}

/// The host of `server` if it is a localhost name (RFC 6761: `localhost` and the names under
/// it), which the client sends to loopback itself.
fn loopback_name(server: &str) -> Option<String> {
    match url::Url::parse(server).ok()?.host()? {
        url::Host::Domain(d) if is_localhost(d) => Some(d.to_ascii_lowercase()),
        _ => None,
    }
}

/// Whether `domain` is `localhost` or a name under it.
fn is_localhost(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost" || d.ends_with(".localhost")
}

/// `server` as the client may call it: `https://`, or `http://` on this machine (a loopback
/// address, or a localhost name, which [`Client::new`] pins to loopback), or any `http://`
/// with `insecure`.
fn check_server(server: &str, insecure: bool) -> Result<(), Failure> {
    let url = url::Url::parse(server).map_err(|e| {
        Failure::usage(format!(
            "--server {server:?} is not a URL ({e}); for example https://byok.example.com"
        ))
    })?;
    let local = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => is_localhost(d),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if local || insecure => Ok(()),
        "http" => Err(Failure::usage(format!(
            "--server {server} is plain HTTP beyond this machine: the token would cross the network in the clear; use https, or --insecure-http if a tunnel or mesh encrypts it"
        ))),
        other => Err(Failure::usage(format!(
            "--server {server}: the scheme {other:?} is not http or https"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_this_machine_unless_allowed() {
        for ok in [
            "https://byok.example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:8080/",
            "http://localhost:8080",
            "http://byok.localhost:8080",
            "http://LOCALHOST.:8080",
        ] {
            assert!(check_server(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://byok.example.com",
            "http://localhost.example.com",
            "http://notlocalhost:8080",
            "http://10.0.0.5:8080",
            "ftp://x",
            "byok",
        ] {
            let e = check_server(refused, false).unwrap_err();
            assert_eq!(e.code, 2, "{refused}: {}", e.message);
        }
        assert!(check_server("http://10.0.0.5:8080", true).is_ok());
    }

    #[test]
    fn localhost_names_are_the_ones_pinned_to_loopback() {
        for (server, pinned) in [
            ("http://localhost:8080", Some("localhost")),
            ("https://Byok.LocalHost/", Some("byok.localhost")),
            ("http://localhost.:1", Some("localhost.")),
            ("http://127.0.0.1:8080", None),
            ("http://localhost.example.com", None),
            ("https://byok.example.com", None),
        ] {
            assert_eq!(loopback_name(server).as_deref(), pinned, "{server}");
        }
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let token: crate::cli::args::Token = "byok_s3cret".parse().unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
