//! The `CallerGate` class: the example Worker's check of who calls it, by the same code as the
//! `wasi:http` component's ([`crate::caller`]).

use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use super::thrown;

/// How an edge deployment checks its callers: a caller token, or the platform's word.
#[wasm_bindgen]
pub struct CallerGate {
    inner: crate::caller::CallerGate,
}

#[wasm_bindgen]
impl CallerGate {
    /// The gate from the deployment's `BYOK_EDGE_CALLER_TOKEN`, `BYOK_EDGE_CALLERS` and,
    /// during a rotation, `BYOK_EDGE_CALLER_TOKEN_NEXT` (undefined or empty when unset).
    /// Throws `not_configured` when neither of the first two says how callers are checked, a
    /// token is weak, or a next token has no token to rotate from.
    #[wasm_bindgen(constructor)]
    pub fn new(
        token: Option<String>,
        callers: Option<String>,
        next: Option<String>,
    ) -> Result<CallerGate, JsValue> {
        let (token, next) = (token.map(Zeroizing::new), next.map(Zeroizing::new));
        crate::caller::CallerGate::configure(
            token.as_deref().map(String::as_str),
            callers.as_deref(),
        )
        .and_then(|g| g.with_next_token(next.as_deref().map(String::as_str)))
        .map(|inner| Self { inner })
        .map_err(thrown)
    }

    /// Lets a request in given its `Authorization` header (`request.headers.get(...)`, null
    /// when absent), or throws `unauthenticated`.
    pub fn admit(&self, authorization: Option<String>) -> Result<(), JsValue> {
        self.inner
            .admit(authorization.as_deref().map(str::as_bytes))
            .map_err(thrown)
    }
}
