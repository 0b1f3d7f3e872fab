//! The `Lease` class: a lease held in memory, encrypting and decrypting as the server does,
//! with the AES-GCM step handed to WebCrypto when the caller wants it.

use byok_core::envelope::AesStep;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{JsBytes, bytes_of, clock, context_of, now_ms, rng, secret_bytes_of, thrown};
use crate::edge::{self, EdgeError, EdgeLease, EdgeOpener, EdgeSealer};

/// The inputs of WebCrypto's AES-GCM call as a JS object: `header`, `key` (raw, to import and
/// then wipe with `fill(0)`), `iv`, `aad`, and for an open the `body` after the header.
fn step_object(step: &AesStep, body: Option<&[u8]>) -> JsValue {
    let o = Object::new();
    let set = |k: &str, v: &[u8]| {
        let _ = Reflect::set(&o, &k.into(), &Uint8Array::from(v));
    };
    set("header", &step.header);
    set("key", step.key.expose_secret());
    set("iv", &step.nonce);
    set("aad", &step.aad);
    if let Some(b) = body {
        set("body", b);
    }
    o.into()
}

impl Lease {
    /// The seal step for `len` bytes with `context`, now.
    fn sealing(&self, len: usize, context: &JsValue) -> Result<AesStep, JsValue> {
        let ctx = context_of(context)?;
        self.inner
            .seal_step(&ctx, len, now_ms(), &mut rng())
            .map_err(thrown)
    }
}

/// An edge lease on one scope's keys, held in memory only.
#[wasm_bindgen]
pub struct Lease {
    inner: EdgeLease,
}

#[wasm_bindgen]
impl Lease {
    /// Parses the lease document the server answered (its JSON text), received at
    /// `received_ms` by the module's clock ([`Self::now`]; default now): the lease ends by that
    /// clock at the latest its TTL after that, and by the server's `expires_at` (see core's
    /// `lease`).
    #[wasm_bindgen(js_name = fromJson)]
    pub fn from_json(
        #[wasm_bindgen(unchecked_param_type = "string")] json: JsValue,
        received_ms: Option<f64>,
    ) -> Result<Lease, JsValue> {
        let text: &js_sys::JsString = json
            .dyn_ref()
            .ok_or_else(|| super::invalid("the lease document must be text"))?;
        // Measured before it is copied in (a copy that does not fit aborts the module): text
        // over core's limit is refused unread, with core's error. A lease document is ASCII,
        // so its UTF-16 units are its bytes; other text has at least as many bytes as units.
        let units = text.length() as usize;
        if units > byok_core::lease::MAX_DOCUMENT_LEN {
            let e = byok_core::lease::LeaseError::TooLarge { len: units };
            return Err(thrown(EdgeError::from(e)));
        }
        // An owned copy, wiped when dropped: it holds the lease's keys.
        let json = zeroize::Zeroizing::new(text.as_string().unwrap_or_default());
        // Whole milliseconds since the epoch fit an f64 exactly.
        #[allow(clippy::cast_possible_truncation)]
        let now = clock();
        let received = received_ms.map_or(now.at, |t| t as i64);
        Ok(Self {
            inner: EdgeLease::parse(json.as_bytes(), received, now.ahead).map_err(thrown)?,
        })
    }

    /// The scope id (32 hex digits).
    #[wasm_bindgen(getter)]
    pub fn scope(&self) -> String {
        self.inner.lease().scope().to_string()
    }

    /// The key version new ciphertexts use.
    #[wasm_bindgen(getter, js_name = currentVersion)]
    pub fn current_version(&self) -> u32 {
        self.inner.lease().current_version()
    }

    /// When the lease ends, by the module's clock ([`Self::now`]: ms since the epoch, ahead of
    /// `Date.now()` by a step back of the wall clock since the module started).
    #[wasm_bindgen(getter, js_name = expiresAt)]
    pub fn expires_at(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ms = self.inner.lease().expires_at() as f64;
        ms
    }

    /// When to ask for a new lease, given when this one arrived (by the module's clock).
    #[wasm_bindgen(js_name = renewAt)]
    pub fn renew_at(&self, received_ms: f64) -> f64 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
        let at = self.inner.lease().renew_at(received_ms as i64) as f64;
        at
    }

    /// Whether an answer with HTTP `status` to a lease request refuses the lease: every 4xx but
    /// 429 (core's rule, [`byok_core::lease::holder::is_refusal`]). A refusal drops the keys at
    /// once; anything else keeps the lease held until it expires.
    #[wasm_bindgen(js_name = isRefusal)]
    pub fn is_refusal(status: u16) -> bool {
        byok_core::lease::holder::is_refusal(status)
    }

    /// The largest lease document [`Self::from_json`] takes, in bytes (core's
    /// [`byok_core::lease::MAX_DOCUMENT_LEN`]): a client stops reading an answer past it,
    /// rather than hand the module a text it would have to copy in whole to refuse.
    #[wasm_bindgen(js_name = maxDocumentLen)]
    pub fn max_document_len() -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = byok_core::lease::MAX_DOCUMENT_LEN as f64;
        n
    }

    /// How long after a refusal to ask for a lease again, in ms (core's
    /// [`byok_core::lease::holder::REFUSAL_RETRY_MS`]).
    #[wasm_bindgen(js_name = refusalRetryMs)]
    pub fn refusal_retry_ms() -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ms = byok_core::lease::holder::REFUSAL_RETRY_MS as f64;
        ms
    }

    /// The lease's URL for `org` and `scope` on byok at `server`, checked as every edge host
    /// checks it (core's [`byok_core::lease::server::ServerUrl`]): `https://`, or `http://` to
    /// a loopback or private address, or to any host with `allowPlainHttp`; the org and scope
    /// ids only (they go into the path). Throws `not_configured`, also for one unset.
    #[wasm_bindgen(js_name = leaseUrl)]
    pub fn lease_url(
        server: Option<String>,
        allow_plain_http: bool,
        org: Option<String>,
        scope: Option<String>,
    ) -> Result<String, JsValue> {
        let refused = |m: String| thrown(EdgeError::new(byok_core::ApiCode::NotConfigured, m));
        let server = server
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refused("the server URL is not set".to_owned()))?;
        byok_core::lease::server::ServerUrl::parse(&server, allow_plain_http)
            .map_err(|e| refused(format!("the server URL: {e}")))?
            .lease_url(
                org.as_deref().unwrap_or_default(),
                scope.as_deref().unwrap_or_default(),
            )
            .map_err(|e| refused(e.to_string()))
    }

    /// The module's clock, ms since the epoch: `Date.now()` kept from running back or slower
    /// than `performance.now()` (after a step back of the wall clock it stays ahead of
    /// `Date.now()` by the step; see `fromJson`). The time by which a lease is [`Self::expired`]; a client schedules its
    /// renewals and wipes by it too, or a wall clock stepped back would put them late.
    pub fn now() -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ms = now_ms() as f64;
        ms
    }

    /// The code an edge reports for byok's answer of HTTP `status` to its lease request,
    /// whose body named `code` (core's [`byok_core::lease::holder::answer_code`]): by the
    /// status when it named none this build knows (a proxy's 408 or 503 is an outage), and
    /// `edge_token_refused`, not the caller's `unauthenticated`, when byok refused the edge's
    /// own token.
    #[wasm_bindgen(js_name = answerCode)]
    pub fn answer_code(status: u16, code: Option<String>) -> String {
        byok_core::lease::holder::answer_code(status, code.as_deref())
            .as_str()
            .to_owned()
    }

    /// The message an edge reports with [`Self::answer_code`]'s `code` for byok's answer of
    /// `status`, whose body said `message` (core's
    /// [`byok_core::lease::holder::answer_message`]).
    #[wasm_bindgen(js_name = answerMessage)]
    pub fn answer_message(status: u16, code: &str, message: Option<String>) -> String {
        let code = byok_core::ApiCode::from_code(code)
            .unwrap_or_else(|| byok_core::lease::holder::code_of_status(status));
        byok_core::lease::holder::answer_message(status, code, message.as_deref())
    }

    /// The HTTP status an edge answers with the error `code` (core's
    /// [`byok_core::ApiCode::edge_status`]); 500 for a code that is not the API's.
    #[wasm_bindgen(js_name = edgeStatus)]
    pub fn edge_status(code: &str) -> u16 {
        byok_core::ApiCode::from_code(code).map_or(500, byok_core::ApiCode::edge_status)
    }

    /// The `WWW-Authenticate` value an edge answer of `status` carries (core's
    /// [`byok_core::ApiCode::www_authenticate`]: every 401), or undefined.
    #[wasm_bindgen(js_name = wwwAuthenticate)]
    pub fn www_authenticate(status: u16) -> Option<String> {
        byok_core::ApiCode::www_authenticate(status).map(str::to_owned)
    }

    /// Whether the lease has ended now.
    #[wasm_bindgen(getter)]
    pub fn expired(&self) -> bool {
        self.inner.lease().expired(now_ms())
    }

    /// Encrypts `plaintext` (`Uint8Array`) with `context` (an object of strings, optional):
    /// the binary ciphertext. Throws `lease_expired` once the lease ended.
    pub fn encrypt(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] plaintext: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<Vec<u8>, JsValue> {
        let buf = JsBytes::of(&plaintext, "plaintext")?.to_seal_buffer()?;
        let ctx = context_of(&context)?;
        self.inner
            .encrypt_buffer(&ctx, buf, now_ms(), &mut rng())
            .map_err(thrown)
    }

    /// Encrypts as [`Lease::encrypt`], as `byok:v1:` text.
    #[wasm_bindgen(js_name = encryptArmored)]
    pub fn encrypt_armored(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] plaintext: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<String, JsValue> {
        // Armored in memory reserved fallibly, as every copy here (see `bytes`).
        let ct = self.encrypt(plaintext, context)?;
        edge::armor(&ct).map_err(thrown)
    }

    /// The AES-256-GCM inputs to seal `len` bytes with `context` in WebCrypto:
    /// `{header, key, iv, aad}`; the ciphertext is `header` followed by AES-GCM's output. The
    /// lease client does this for large plaintexts (`lease_client.js`).
    #[wasm_bindgen(js_name = sealStep)]
    pub fn seal_step(
        &self,
        len: usize,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<JsValue, JsValue> {
        Ok(step_object(&self.sealing(len, &context)?, None))
    }

    /// [`Self::seal_step`] as one array, `key (32) | iv (12) | aad`, whose aad starts with the
    /// header (the first 92 bytes after the iv): one array crossing into JS instead of four
    /// objects, which at 64 KiB is a few percent of the seal (BENCHMARKS.md). The lease client
    /// views the parts in place and wipes the key's bytes once imported.
    #[wasm_bindgen(js_name = sealStepBytes)]
    pub fn seal_step_bytes(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] plaintext: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<Uint8Array, JsValue> {
        // Measured as WebCrypto will read it (the engine's own accessors, not a `length` the
        // value may claim), and refused unless it is bytes: WebCrypto would take a string's
        // or another typed array's bytes under a header sized for something else.
        let len = JsBytes::of(&plaintext, "plaintext")?.len();
        let step = self.sealing(len, &context)?;
        let mut packed = zeroize::Zeroizing::new(Vec::with_capacity(44 + step.aad.len()));
        packed.extend_from_slice(step.key.expose_secret());
        packed.extend_from_slice(&step.nonce);
        packed.extend_from_slice(&step.aad);
        Ok(Uint8Array::from(&packed[..]))
    }

    /// The AES-256-GCM inputs to open `ciphertext` with `context` in WebCrypto, once every
    /// check before AES passed: `{header, key, iv, aad}`, and `body` for `byok:v1:` text (for
    /// bytes, the body is `ciphertext.subarray(header.length)`: it is not copied).
    #[wasm_bindgen(js_name = openStep)]
    pub fn open_step(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | string")] ciphertext: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<JsValue, JsValue> {
        let ctx = context_of(&context)?;
        if ciphertext.is_string() {
            let ct = bytes_of(&ciphertext)?;
            let step = self.inner.open_step(&ctx, &ct, now_ms()).map_err(thrown)?;
            return Ok(step_object(&step, ct.get(step.header.len()..)));
        }
        // Bytes: only the header crosses into wasm; the caller hands WebCrypto the body as a
        // view of its own array (`ciphertext.subarray(header.length)`), with no copy.
        let bytes = JsBytes::of(&ciphertext, "ciphertext")?;
        let head = bytes.head(byok_core::format::HEADER_LEN)?;
        let step = self
            .inner
            .open_step_header(&ctx, &head, bytes.len(), now_ms())
            .map_err(thrown)?;
        Ok(step_object(&step, None))
    }

    /// Decrypts a ciphertext (`Uint8Array` or `byok:v1:` text) with `context`. Throws with the
    /// server's codes: `decrypt_failed`, `malformed_ciphertext`, `lease_expired`, ...
    pub fn decrypt(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | string")] ciphertext: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<Uint8Array, JsValue> {
        let ctx = context_of(&context)?;
        let ct = bytes_of(&ciphertext)?;
        self.inner
            .decrypt(&ctx, ct, now_ms())
            .map(|p| plaintext_out(&p))
            .map_err(thrown)
    }

    /// Starts encrypting a stream of any length with `context` (the framed format, 64 KiB
    /// frames): feed it with `push`, end it with `finish`. The stream holds its own copy of the
    /// keys and stops when this lease expires.
    #[wasm_bindgen(js_name = sealStream)]
    pub fn seal_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<StreamSealer, JsValue> {
        let ctx = context_of(&context)?;
        Ok(StreamSealer {
            inner: EdgeSealer::new(self.inner.lease(), &ctx, now_ms(), &mut rng())
                .map_err(thrown)?,
        })
    }

    /// Starts decrypting a framed stream with `context`: each `push` hands out the plaintext
    /// of the frames it completed, each verified; `finish` fails if the stream was cut short.
    #[wasm_bindgen(js_name = openStream)]
    pub fn open_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Record<string, string> | undefined")]
        context: JsValue,
    ) -> Result<StreamOpener, JsValue> {
        let ctx = context_of(&context)?;
        Ok(StreamOpener {
            inner: EdgeOpener::new(self.inner.lease(), ctx, now_ms()).map_err(thrown)?,
        })
    }
}

/// A stream being encrypted (`Lease.sealStream`). `free()` wipes its keys.
#[wasm_bindgen]
pub struct StreamSealer {
    inner: EdgeSealer,
}

#[wasm_bindgen]
impl StreamSealer {
    /// The ciphertext bytes `chunk` (a `Uint8Array`) completes (the header first, then whole
    /// frames).
    pub fn push(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] chunk: JsValue,
    ) -> Result<Vec<u8>, JsValue> {
        let chunk = secret_bytes_of(&chunk, "chunk")?;
        self.inner.push(&chunk, now_ms()).map_err(thrown)
    }

    /// The last ciphertext bytes.
    pub fn finish(&mut self) -> Result<Vec<u8>, JsValue> {
        self.inner.finish(now_ms()).map_err(thrown)
    }
}

/// A stream being decrypted (`Lease.openStream`). `free()` wipes its keys.
#[wasm_bindgen]
pub struct StreamOpener {
    inner: EdgeOpener,
}

#[wasm_bindgen]
impl StreamOpener {
    /// The verified plaintext `chunk` (a `Uint8Array`) completes.
    pub fn push(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] chunk: JsValue,
    ) -> Result<Uint8Array, JsValue> {
        let chunk = JsBytes::of(&chunk, "chunk")?.to_vec()?;
        self.inner
            .push(&chunk, now_ms())
            .map(|p| plaintext_out(&p))
            .map_err(thrown)
    }

    /// The last plaintext; throws `decrypt_failed` or `malformed_ciphertext` if the stream was
    /// cut short or altered.
    pub fn finish(&mut self) -> Result<Uint8Array, JsValue> {
        self.inner
            .finish(now_ms())
            .map(|p| plaintext_out(&p))
            .map_err(thrown)
    }
}

/// A plaintext handed to JS: copied into a new `Uint8Array` in JS's memory, and the module's
/// own copy (`plain`, a [`byok_core::SecretVec`]) wiped as it drops. Returned as a `Vec`,
/// wasm-bindgen would copy it out the same way and then free it unwiped.
fn plaintext_out(plain: &[u8]) -> Uint8Array {
    Uint8Array::from(plain)
}
