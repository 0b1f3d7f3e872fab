//! Executes the requests core builds. This is all of byok's outbound I/O: no crypto and no
//! parsing here, only HTTP with the safety rails a KMS client needs.
//!
//! - No redirects: a KMS answer can never send byok to another host.
//! - No proxies from the environment: `HTTP(S)_PROXY` cannot reroute key material.
//! - HTTPS only, unless the server's test configuration allows plain HTTP to a local emulator.
//! - Timeouts on connect and on the whole exchange; answers larger than 1 MiB are refused.

use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

use byok_core::kms::{HttpRequest, HttpResponse, KmsError, KmsErrorKind};
use byok_core::secret::extend_wiped;

/// KMS answers are small (a wrapped key, a key description); anything larger is refused.
pub const MAX_RESPONSE: usize = 1 << 20;

/// How the transport may connect.
#[derive(Clone, Copy, Debug)]
pub struct TransportConfig {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for the whole request and answer.
    pub timeout: Duration,
    /// **Tests only**: allow `http://` URLs (a local KMS emulator). Never in production.
    pub danger_allow_http: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            danger_allow_http: false,
        }
    }
}

/// Why an exchange did not produce an answer.
#[derive(Debug)]
pub enum TransportError {
    /// The client could not be built (TLS setup).
    Setup(String),
    /// Connecting, sending or receiving failed or timed out.
    Exchange(String),
    /// The answer was larger than [`MAX_RESPONSE`].
    TooLarge,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(e) => write!(f, "cannot set up the HTTP client: {e}"),
            Self::Exchange(e) => write!(f, "KMS request failed: {e}"),
            Self::TooLarge => write!(f, "KMS answer larger than {MAX_RESPONSE} bytes"),
        }
    }
}

impl std::error::Error for TransportError {}

impl TransportError {
    /// As a KMS error: the KMS could not be reached, which is transient.
    pub fn into_kms(self, provider: &'static str) -> KmsError {
        KmsError {
            kind: KmsErrorKind::Unavailable,
            provider,
            code: String::new(),
            message: byok_core::kms::error::clean_text(&self.to_string()),
            status: 0,
        }
    }
}

/// Sends core's requests.
#[derive(Clone, Debug)]
pub struct Transport {
    client: reqwest::Client,
}

impl Transport {
    /// A transport with `config`.
    pub fn new(config: TransportConfig) -> Result<Self, TransportError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!config.danger_allow_http)
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(concat!("byok/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        Ok(Self { client })
    }

    /// Sends `req` and returns the answer, whatever its status.
    pub async fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|e| TransportError::Exchange(e.to_string()))?;
        // The body may hold a plaintext root key (a wrap): reqwest gets a copy that is wiped
        // when it is done with it.
        let sent = reqwest::Body::from(bytes::Bytes::from_owner(Zeroizing::new(req.body.clone())));
        let mut builder = self.client.request(method, &req.url).body(sent);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let mut resp = builder
            .send()
            .await
            .map_err(|e| TransportError::Exchange(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        // The answer may hold a plaintext root key (an unwrap): every buffer byok fills with it
        // is wiped, its growth included (core's `extend_wiped`). hyper's and rustls's own
        // buffers are out of reach.
        let expected = resp.content_length().map_or(4096, |n| {
            usize::try_from(n).unwrap_or(MAX_RESPONSE).min(MAX_RESPONSE)
        });
        let mut body = Zeroizing::new(Vec::with_capacity(expected));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| TransportError::Exchange(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(TransportError::TooLarge);
            }
            extend_wiped(&mut body, &chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body: std::mem::take(&mut *body),
        })
    }
}
