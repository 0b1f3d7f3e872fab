//! The JS API (wasm-bindgen): the `Lease` class ([`lease`]) and the key-setup functions
//! ([`key_setup`]). Errors are thrown as JS `Error`s named `ByokError` with the server's API
//! code in `code`, so edge code can branch on `err.code === "lease_expired"` exactly as on an
//! API answer. Structured values cross as plain JS objects (serde-wasm-bindgen, JSON-compatible).

use std::collections::BTreeMap;

use js_sys::{Date, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::edge::{self, EdgeError};

pub(crate) fn thrown(e: EdgeError) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("ByokError");
    let _ = Reflect::set(&err, &"code".into(), &e.code.as_str().into());
    err.into()
}

pub(crate) fn now_ms() -> i64 {
    // Whole milliseconds since the epoch fit an f64 exactly.
    #[allow(clippy::cast_possible_truncation)]
    let ms = Date::now() as i64;
    ms
}

pub(crate) fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// A context given as a plain object of string values (`{tenant: "acme"}`), or nothing.
pub(crate) fn context_of(ctx: &JsValue) -> Result<byok_core::Context, JsValue> {
    let mut pairs = BTreeMap::new();
    if !(ctx.is_undefined() || ctx.is_null()) {
        let obj: &Object = ctx.dyn_ref().ok_or_else(|| {
            thrown(EdgeError {
                code: byok_core::ApiCode::InvalidRequest,
                message: "context must be an object of string values".into(),
            })
        })?;
        for entry in Object::entries(obj).iter() {
            let pair = js_sys::Array::from(&entry);
            let (k, v) = (pair.get(0).as_string(), pair.get(1).as_string());
            let (Some(k), Some(v)) = (k, v) else {
                return Err(thrown(EdgeError {
                    code: byok_core::ApiCode::InvalidRequest,
                    message: "context keys and values must be strings".into(),
                }));
            };
            pairs.insert(k, v);
        }
    }
    edge::context(pairs).map_err(thrown)
}

/// A ciphertext as bytes (`Uint8Array`) or `byok:v1:` text.
pub(crate) fn bytes_of(ct: &JsValue) -> Result<Vec<u8>, JsValue> {
    match ct.as_string() {
        Some(text) => edge::dearmor(&text).map_err(thrown),
        None => Ok(array_of(ct).to_vec()),
    }
}

/// `value` as a `Uint8Array`: itself when it is one (no copy: `new Uint8Array(array)` would copy
/// it, and that copy cost more than the AES of a 64 KiB message), else `new Uint8Array(value)`
/// (an `ArrayBuffer` is viewed, not copied).
pub(crate) fn array_of(value: &JsValue) -> Uint8Array {
    value
        .dyn_ref::<Uint8Array>()
        .cloned()
        .unwrap_or_else(|| Uint8Array::new(value))
}

pub mod key_setup;

/// A Rust value as a plain JS value (objects, not `Map`s).
pub(crate) fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}
pub mod lease;
