//! The JS API (wasm-bindgen): the `Lease` class ([`lease`]), the edge's `CallerGate`
//! ([`caller`]) and the key-setup functions ([`key_setup`]). Errors are thrown as JS `Error`s
//! named `ByokError` with the server's API code in `code`, so edge code can branch on
//! `err.code === "lease_expired"` exactly as on an API answer. Structured values cross as plain
//! JS objects (serde-wasm-bindgen, JSON-compatible).

use std::collections::BTreeMap;

use js_sys::{Date, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::edge::{self, EdgeError};

pub(crate) fn thrown(e: EdgeError) -> JsValue {
    let err = js_sys::Error::new(&e.message);
    err.set_name("ByokError");
    let _ = Reflect::set(&err, &"code".into(), &e.code.as_str().into());
    err.into()
}

#[wasm_bindgen]
extern "C" {
    /// `performance.now()`: the monotonic clock (browsers, Workers, Deno and Node have it).
    #[wasm_bindgen(catch, js_namespace = performance, js_name = now)]
    fn performance_now() -> Result<f64, JsValue>;
}

thread_local! {
    static CLOCK: std::cell::Cell<byok_core::lease::clock::SteadyWall> =
        std::cell::Cell::new(byok_core::lease::clock::SteadyWall::default());
}

/// The time for lease decisions: `Date.now()`, kept from running back or slower than
/// `performance.now()` (core's `SteadyWall`: a wall clock stepped back does not stretch a lease).
/// Without `performance`, `Date.now()` alone.
pub(crate) fn now_ms() -> i64 {
    clock().at
}

/// [`now_ms`], with how far it is ahead of `Date.now()` (core's `Lease::parse` takes it).
pub(crate) fn clock() -> byok_core::lease::clock::Reading {
    // Whole milliseconds since the epoch fit an f64 exactly.
    #[allow(clippy::cast_possible_truncation)]
    let wall = Date::now() as i64;
    match performance_now() {
        Ok(mono) => CLOCK.with(|c| {
            let mut clock = c.get();
            let t = clock.read(wall, mono);
            c.set(clock);
            t
        }),
        Err(_) => byok_core::lease::clock::Reading { at: wall, ahead: 0 },
    }
}

pub(crate) fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn invalid(message: &str) -> JsValue {
    thrown(EdgeError {
        code: byok_core::ApiCode::InvalidRequest,
        message: message.into(),
    })
}

/// A context given as a plain object of string values (`{tenant: "acme"}`), or nothing.
///
/// Read only through `Reflect`, whose calls come back as errors when a getter or a proxy trap
/// throws. A JS exception must never unwind through this module (built without exception
/// handling): it would skip the Rust frames' cleanup and leave the `Lease` borrowed for good,
/// so that `free()` could no longer wipe its keys.
///
/// Nothing is copied in past core's limits: the 65th pair is refused as core refuses too many
/// (its first rule), and a key or value over [`MAX_CONTEXT_UNITS`] as too long, unread. That
/// one refusal may come before a reserved key sorting ahead of it, which core would name
/// first: the only way the order of refusals differs from the server's.
pub(crate) fn context_of(ctx: &JsValue) -> Result<byok_core::Context, JsValue> {
    use byok_core::context::{CallerContextError, MAX_CALLER_PAIRS};
    const BAD: &str = "context must be an object of string values";
    let refused = |e: CallerContextError| {
        thrown(EdgeError::new(
            byok_core::ApiCode::InvalidRequest,
            e.to_string(),
        ))
    };
    let mut pairs = BTreeMap::new();
    if !(ctx.is_undefined() || ctx.is_null()) {
        if !ctx.is_object() {
            return Err(invalid(BAD));
        }
        let obj: &Object = ctx.unchecked_ref();
        let unreadable = |_| invalid("context could not be read (a getter or proxy threw)");
        for key in Reflect::own_keys(obj).map_err(unreadable)?.iter() {
            // Own enumerable string keys, as `Object.entries` reads them.
            if !key.is_string() {
                continue;
            }
            let held = Reflect::get_own_property_descriptor(obj, &key).map_err(unreadable)?;
            if held.is_undefined()
                || !Reflect::get(&held, &"enumerable".into())
                    .map_err(unreadable)?
                    .is_truthy()
            {
                continue;
            }
            // Refused as core refuses it (the count is its first rule) before more pairs are
            // copied into this module's memory.
            if pairs.len() == MAX_CALLER_PAIRS {
                return Err(refused(CallerContextError::TooManyPairs(pairs.len() + 1)));
            }
            let value = Reflect::get(obj, &key).map_err(unreadable)?;
            if !value.is_string() {
                return Err(invalid("context keys and values must be strings"));
            }
            let (Some(name), Some(value)) = (bounded_string(&key), bounded_string(&value)) else {
                return Err(refused(CallerContextError::TooLong));
            };
            pairs.insert(name, value);
        }
    }
    edge::context(pairs).map_err(thrown)
}

/// The most UTF-16 code units a context key or value may have to be copied in: four times
/// core's longest (a value of 1024 bytes), so that every string core could accept is copied
/// and core's rules decide; a longer one is refused as too long, unread (its UTF-8 form has at
/// least as many bytes as it has code units).
const MAX_CONTEXT_UNITS: u32 = 4 * byok_core::context::MAX_CALLER_VALUE_LEN as u32;

/// `value`, a JS string, copied into this module's memory, if it has at most
/// [`MAX_CONTEXT_UNITS`] code units: wasm-bindgen's copy aborts the module when its allocation
/// fails, so a caller's string is measured first.
fn bounded_string(value: &JsValue) -> Option<String> {
    let text: &js_sys::JsString = value.dyn_ref()?;
    if text.length() > MAX_CONTEXT_UNITS {
        return None;
    }
    text.as_string()
}

/// A ciphertext as bytes (`Uint8Array` or `ArrayBuffer`) or `byok:v1:` text.
pub(crate) fn bytes_of(ct: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = ct.dyn_ref::<js_sys::JsString>() {
        // Measured before it is copied in (by the engine's encoder, into memory reserved
        // fallibly: `bytes::ascii_of`): the text of a ciphertext over the one-call limit is
        // refused unread.
        let units = text.length() as usize;
        if units > byok_core::format::armor::PREFIX.len() + MAX_ONE_SHOT.div_ceil(3) * 4 {
            return Err(bytes::too_large(units / 4 * 3));
        }
        return match bytes::ascii_of(text, units)? {
            Ok(ascii) => edge::dearmor(&ascii).map_err(thrown),
            Err(before) => Err(thrown(edge::dearmor_refusal(&before))),
        };
    }
    JsBytes::of(ct, "ciphertext")?.to_vec()
}

/// `value`, named `what`, copied into this module's memory, wiped when dropped.
pub(crate) fn secret_bytes_of(
    value: &JsValue,
    what: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, JsValue> {
    Ok(zeroize::Zeroizing::new(JsBytes::of(value, what)?.to_vec()?))
}

mod bytes;
pub(crate) use bytes::{JsBytes, MAX_ONE_SHOT};

pub mod caller;
pub mod key_setup;

/// A Rust value as a plain JS value (objects, not `Map`s).
pub(crate) fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}
pub mod lease;
