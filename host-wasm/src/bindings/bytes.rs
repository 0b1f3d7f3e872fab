//! Bytes handed in from JS, read without running the caller's code.
//!
//! The module is built without exception handling: a JS exception thrown while Rust is on the
//! stack skips Rust's cleanup and leaves the `Lease` borrowed, so `free()` can no longer wipe
//! it. js-sys reads a typed array through its properties (`instanceof`, `length`, `subarray`),
//! and each of those can run the caller's code: a `Proxy`'s traps, an own `length` getter,
//! a subclass's `constructor`. An own `length` can also lie, and js-sys sizes its copy by it:
//! a larger one would have sealed bytes of this module's memory that were never the caller's.
//!
//! So bytes are recognised and measured only through the engine's own accessors
//! (`%TypedArray%.prototype`'s `@@toStringTag`, `length`, `buffer`, `byteOffset`;
//! `ArrayBuffer.prototype.byteLength`), taken once from the prototypes and called on the value
//! with `Function.prototype.call`, which js-sys imports with `catch`: they read internal slots,
//! never a property of the value, and a value without those slots (a proxy, a detached buffer)
//! makes them throw, which arrives here as an error. Every copy and view is made by an import
//! that catches as well.

use byok_core::envelope::SealBuffer;
use js_sys::{ArrayBuffer, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::invalid;

/// The most bytes one call copies in (a one-shot message, a stream's chunk): it and what the
/// call makes of it must fit this module's memory (wasm32: 4 GiB at most, often far less in a
/// browser or an isolate). A larger message goes through a stream, in chunks.
pub(crate) const MAX_ONE_SHOT: usize = 256 << 20;

pub(crate) fn too_large(len: usize) -> JsValue {
    super::thrown(crate::edge::EdgeError::new(
        byok_core::ApiCode::TooLarge,
        format!(
            "{len} bytes in one call; at most {MAX_ONE_SHOT} here: encrypt or decrypt larger data as a stream, in chunks"
        ),
    ))
}

#[wasm_bindgen]
extern "C" {
    /// `Uint8Array.prototype.set.call(target, source)`: copies a real typed array by its
    /// internal slots.
    #[wasm_bindgen(catch, js_namespace = Uint8Array, js_name = "prototype.set.call")]
    fn copy_into(target: &mut [u8], source: &Uint8Array) -> Result<(), JsValue>;
}

#[wasm_bindgen]
extern "C" {
    /// The engine's `TextEncoder`.
    #[wasm_bindgen(js_name = TextEncoder)]
    type Utf8Encoder;

    #[wasm_bindgen(constructor, catch, js_class = "TextEncoder")]
    fn new() -> Result<Utf8Encoder, JsValue>;

    /// `encoder.encodeInto(source, target)`: writes `source`'s UTF-8 into `target` (a view
    /// of this module's memory) as far as it fits; `{read, written}`.
    #[wasm_bindgen(method, catch, js_class = "TextEncoder", js_name = encodeInto)]
    fn encode_into(
        this: &Utf8Encoder,
        source: &js_sys::JsString,
        target: &mut [u8],
    ) -> Result<Object, JsValue>;
}

thread_local! {
    static ENCODER: Option<Utf8Encoder> = Utf8Encoder::new().ok();
}

/// `text`, `units` UTF-16 code units long, copied into this module's memory as UTF-8 by the
/// engine's encoder, into memory reserved fallibly (wasm-bindgen's own copy of a string
/// aborts the module when its allocation fails): `Ok` with all of it when it is ASCII, `Err`
/// with what the encoder wrote otherwise (a character outside ASCII takes two bytes or more,
/// so `units` bytes do not hold the whole text: the encoder stopped after the first such
/// character or before it). A text too large for this memory is `too_large`.
pub(crate) fn ascii_of(
    text: &js_sys::JsString,
    units: usize,
) -> Result<Result<String, String>, JsValue> {
    let mut out = crate::edge::room(units).map_err(super::thrown)?;
    out.resize(units, 0);
    let unreadable = || invalid("the text could not be read");
    let (read, written) = ENCODER.with(|e| {
        let e = e.as_ref().ok_or_else(unreadable)?;
        let done = e.encode_into(text, &mut out).map_err(|_| unreadable())?;
        let count = |name: &str| {
            Reflect::get(&done, &name.into())
                .ok()
                .and_then(|n| n.as_f64())
                .and_then(whole)
                .map(|n| n as usize)
        };
        count("read").zip(count("written")).ok_or_else(unreadable)
    })?;
    out.truncate(written.min(units));
    let copied = String::from_utf8(out).map_err(|_| unreadable())?;
    Ok(if read == units && written == units {
        Ok(copied)
    } else {
        Err(copied)
    })
}

/// The engine's accessors, taken from fresh objects' prototypes when first needed.
struct Accessors {
    tag: Function,
    length: Function,
    buffer: Function,
    byte_offset: Function,
    byte_length: Function,
    uint8_array: Function,
}

impl Accessors {
    fn load() -> Option<Self> {
        let u8_proto = Object::get_prototype_of(&Uint8Array::new_with_length(0));
        let typed_proto = Object::get_prototype_of(&u8_proto);
        let buffer_proto = Object::get_prototype_of(&ArrayBuffer::new(0));
        let getter = |proto: &Object, key: &JsValue| {
            let desc = Object::get_own_property_descriptor(proto, key);
            Reflect::get(&desc, &"get".into())
                .ok()?
                .dyn_into::<Function>()
                .ok()
        };
        let constructor = Object::get_own_property_descriptor(&u8_proto, &"constructor".into());
        Some(Self {
            tag: getter(&typed_proto, &js_sys::Symbol::to_string_tag().into())?,
            length: getter(&typed_proto, &"length".into())?,
            buffer: getter(&typed_proto, &"buffer".into())?,
            byte_offset: getter(&typed_proto, &"byteOffset".into())?,
            byte_length: getter(&buffer_proto, &"byteLength".into())?,
            uint8_array: Reflect::get(&constructor, &"value".into())
                .ok()?
                .dyn_into()
                .ok()?,
        })
    }
}

thread_local! {
    static ACCESSORS: Option<Accessors> = Accessors::load();
}

/// A caller's `Uint8Array` (or a view of its `ArrayBuffer`) and its true length.
pub(crate) struct JsBytes {
    array: Uint8Array,
    len: u32,
}

impl JsBytes {
    /// `value`, named `what` in the error, if it is a real `Uint8Array` or `ArrayBuffer`.
    /// Anything else is refused with a typed error, not read: a string would otherwise be
    /// taken as that many zero bytes.
    pub(crate) fn of(value: &JsValue, what: &str) -> Result<Self, JsValue> {
        let refused = || invalid(&format!("{what} must be a Uint8Array"));
        ACCESSORS.with(|a| {
            let a = a.as_ref().ok_or_else(refused)?;
            // `undefined` for anything without a typed array's slots: never throws.
            let tag = a.tag.call0(value).map_err(|_| refused())?;
            let array = if tag.as_string().as_deref() == Some("Uint8Array") {
                value.clone().unchecked_into::<Uint8Array>()
            } else {
                // Throws for anything but a real `ArrayBuffer` (a proxy, a shared buffer).
                a.byte_length.call0(value).map_err(|_| refused())?;
                Reflect::construct(&a.uint8_array, &js_sys::Array::of1(value))
                    .map_err(|_| invalid(&format!("{what} is a detached ArrayBuffer")))?
                    .unchecked_into()
            };
            let len = a
                .length
                .call0(&array)
                .ok()
                .and_then(|n| n.as_f64())
                .and_then(whole)
                .ok_or_else(refused)?;
            Ok(Self { array, len })
        })
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// A copy of all of it in this module's memory.
    pub(crate) fn to_vec(&self) -> Result<Vec<u8>, JsValue> {
        let mut out = byok_core::SecretVec::try_zeroed(self.checked_len()?)
            .ok_or_else(|| too_large(self.len()))?;
        self.copy_to(&mut out)?;
        // The caller wipes it if it must (a plaintext); a ciphertext needs no wipe.
        Ok(out.into_public())
    }

    /// A copy of all of it, as the plaintext of a buffer to seal in place: the one copy an
    /// encryption makes in this module's memory.
    pub(crate) fn to_seal_buffer(&self) -> Result<SealBuffer, JsValue> {
        let mut buf =
            SealBuffer::try_zeroed(self.checked_len()?).ok_or_else(|| too_large(self.len()))?;
        self.copy_to(buf.plaintext_mut())?;
        Ok(buf)
    }

    /// The length, if one call may copy that much. Refused before any copy, and every copy's
    /// allocation is fallible: an allocation that fails aborts the module, and an abort in the
    /// middle of a call leaves the lease it was made on borrowed, so that its `free()` can no
    /// longer wipe its keys.
    fn checked_len(&self) -> Result<usize, JsValue> {
        let len = self.len();
        if len > MAX_ONE_SHOT {
            return Err(too_large(len));
        }
        Ok(len)
    }

    /// Copies all of it into `out` (its length). On a failure, what was copied is wiped.
    fn copy_to(&self, out: &mut [u8]) -> Result<(), JsValue> {
        if copy_into(out, &self.array).is_err() {
            // Part of a plaintext may have been copied.
            zeroize::Zeroize::zeroize(out);
            return Err(invalid("the bytes could not be read (a detached buffer?)"));
        }
        Ok(())
    }

    /// A copy of the first `n` bytes (all of them if fewer), through a view made by the
    /// constructor, not `subarray` (which asks the value's `constructor` for the view).
    pub(crate) fn head(&self, n: usize) -> Result<Vec<u8>, JsValue> {
        let n = n.min(self.len());
        ACCESSORS
            .with(|a| {
                let a = a
                    .as_ref()
                    .ok_or_else(|| invalid("bytes cannot be read here"))?;
                let buffer = a.buffer.call0(&self.array)?;
                let offset = a.byte_offset.call0(&self.array)?;
                let args = js_sys::Array::of3(&buffer, &offset, &JsValue::from(n as u32));
                let view: Uint8Array = Reflect::construct(&a.uint8_array, &args)?.unchecked_into();
                let mut out = vec![0; n];
                copy_into(&mut out, &view)?;
                Ok(out)
            })
            .map_err(|_: JsValue| invalid("the bytes could not be read (a detached buffer?)"))
    }
}

/// `n` as a length, if it is one (the accessor returns a whole number below 2^32 here: wasm32
/// cannot address more).
fn whole(n: f64) -> Option<u32> {
    (n >= 0.0 && n <= f64::from(u32::MAX) && n.fract() == 0.0).then_some(n as u32)
}
