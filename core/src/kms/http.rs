//! The requests core builds and the responses it parses. A host executes them (reqwest natively,
//! `fetch` in browsers); core never opens a connection.
//!
//! ```text
//!   core: provider.encrypt_request(.., now) ──HttpRequest──▶ host: send, with timeouts
//!   core: provider.parse_encrypt(resp)      ◀──HttpResponse── host
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::kms::error::{KmsError, KmsErrorKind, clean_text};

/// An HTTP request to send as is. `Debug` shows the method, URL, header names and body length
/// only. No `PartialEq`: its body may hold a root key, which is compared only in constant time.
#[derive(Clone)]
pub struct HttpRequest {
    /// `POST` or `GET`.
    pub method: &'static str,
    /// The full URL, derived from a validated identifier (or the server's test override).
    pub url: String,
    /// Headers, signed ones included. Values may hold credentials (the signature, a session
    /// token): never log them.
    pub headers: Vec<(String, String)>,
    /// The body. May hold key material (a plaintext root key on its way to be wrapped): never log
    /// it, and drop it after sending.
    pub body: Vec<u8>,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl HttpRequest {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl Drop for HttpRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
        // A bearer token, an AWS session token, a signature: credentials in header values.
        for (_, value) in &mut self.headers {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

/// An HTTP response as received. `Debug` shows the status, header names and body length only.
/// No `PartialEq`: its body may hold a root key (an unwrap's answer).
#[derive(Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body. A decrypt answer holds key material; it is wiped on drop.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// How long the service asked to wait before trying again (`Retry-After` in seconds, as
    /// throttling KMSs send it; an HTTP date is ignored), at most a minute.
    pub fn retry_after(&self) -> Option<core::time::Duration> {
        let secs: u64 = self.header("retry-after")?.trim().parse().ok()?;
        Some(core::time::Duration::from_secs(secs.min(60)))
    }

    /// An answer `provider` sent that byok cannot read: [`KmsErrorKind::Malformed`], with
    /// `message` (escaped and shortened) and the status.
    pub fn malformed(&self, provider: &'static str, message: &str) -> KmsError {
        KmsError {
            kind: KmsErrorKind::Malformed,
            provider,
            code: String::new(),
            message: clean_text(message),
            status: self.status,
        }
    }

    /// The body of a 2xx answer as a JSON object; any other status is classified by
    /// `refused`, the provider's error reader.
    pub fn json_object(
        &self,
        provider: &'static str,
        refused: impl FnOnce(&Self) -> KmsError,
    ) -> Result<serde_json::Map<String, serde_json::Value>, KmsError> {
        if !(200..300).contains(&self.status) {
            return Err(refused(self));
        }
        match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(self.malformed(provider, "unexpected answer: body is not a JSON object")),
        }
    }
}

/// A request body holding key material (a plaintext root key on its way to be wrapped):
/// `value` written once into a buffer of exactly its length, so that no growth leaves a copy
/// behind ([`HttpRequest`] wipes its body when dropped). Build `value` from borrowed strings
/// whose owners wipe themselves: a `json!` tree would keep its own copies.
#[cfg(feature = "kms")]
pub(crate) fn secret_body(value: &impl serde::Serialize) -> Vec<u8> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let mut body = Vec::new();
    // Neither can fail: the values are strings and numbers, the writers infallible.
    if serde_json::to_writer(&mut count, value).is_ok() {
        body.reserve_exact(count.0);
        let _ = serde_json::to_writer(&mut body, value);
    }
    body
}

/// Takes string field `field` out of a JSON answer's object, to be wiped when dropped: for a
/// field holding key material (a decrypt or unwrap answer), so that the map is not left
/// holding an unwiped copy. `None` if absent or not a string.
#[cfg(feature = "kms")]
pub(crate) fn take_secret(
    m: &mut serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Option<zeroize::Zeroizing<String>> {
    match m.remove(field)? {
        serde_json::Value::String(s) => Some(zeroize::Zeroizing::new(s)),
        _ => None,
    }
}

impl Drop for HttpResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

fn header_names(h: &[(String, String)]) -> Vec<&str> {
    h.iter().map(|(k, _)| k.as_str()).collect()
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &header_names(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &header_names(&self.headers))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// `application/x-www-form-urlencoded` of `pairs` (RFC 3986 unreserved characters kept), sized
/// up front: values may be credentials (a web identity token, a signed assertion), and a
/// growing buffer would leave copies behind in freed memory.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let worst: usize = pairs.iter().map(|(k, v)| 3 * (k.len() + v.len()) + 2).sum();
    let mut out = String::with_capacity(worst);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, part) in [k, v].iter().enumerate() {
            if j == 1 {
                out.push('=');
            }
            for b in part.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

#[cfg(all(test, feature = "kms"))]
mod tests {
    use super::*;

    /// A secret body is exactly as long as its buffer (no growth left a copy behind), and the
    /// JSON a `json!` tree would make.
    #[test]
    fn a_secret_body_fills_its_buffer_exactly() {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            key: &'a str,
            n: u64,
        }
        for len in [0, 1, 44, 5000] {
            let key = "k".repeat(len);
            let body = secret_body(&Body { key: &key, n: 7 });
            assert_eq!(body.capacity(), body.len());
            let expected =
                alloc::string::ToString::to_string(&serde_json::json!({ "key": key, "n": 7 }));
            assert_eq!(body, expected.as_bytes());
        }
    }

    /// The secret field leaves the map (no copy stays there); a missing or non-string one is
    /// `None`.
    #[test]
    fn a_secret_field_is_taken_out_of_the_answer() {
        let mut m = serde_json::json!({ "Plaintext": "c2VjcmV0", "n": 1 })
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            take_secret(&mut m, "Plaintext")
                .as_deref()
                .map(String::as_str),
            Some("c2VjcmV0")
        );
        assert!(!m.contains_key("Plaintext"));
        assert!(take_secret(&mut m, "Plaintext").is_none());
        assert!(take_secret(&mut m, "n").is_none());
    }
}
