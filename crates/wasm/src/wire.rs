//! The wasm-bindgen side of the wire: what each type the surface names
//! (`crates/bindings/`) is on wasm, how a core error is thrown, and the
//! `functions!` / `class!` macros that put `#[wasm_bindgen]` on the
//! surface's items. `crates/node/src/wire.rs` is the same contract for
//! napi; keep the two in step.

use brcache_core::Error;
use serde::Serialize;
use wasm_bindgen::convert::IntoWasmAbi;
use wasm_bindgen::describe::WasmDescribe;
use wasm_bindgen::prelude::*;

/// Bytes from JS, copied into the module's memory (wasm cannot borrow JS
/// memory).
pub type Bytes = Vec<u8>;
/// A list of byte buffers from JS.
pub type BytesList = Vec<js_sys::Uint8Array>;
/// Bytes to JS, as a Uint8Array.
pub type BytesOut = Vec<u8>;
/// A list of byte buffers to JS.
pub type BytesListOut = Vec<js_sys::Uint8Array>;

pub fn bytes_out(bytes: Vec<u8>) -> BytesOut {
    bytes
}

pub fn bytes_list_out(list: Vec<Vec<u8>>) -> BytesListOut {
    list.iter()
        .map(|bytes| js_sys::Uint8Array::from(&bytes[..]))
        .collect()
}

pub fn owned(list: BytesList) -> Vec<Vec<u8>> {
    list.iter().map(js_sys::Uint8Array::to_vec).collect()
}

/// A core error on its way to being thrown.
pub struct Thrown(Error);

impl From<Error> for Thrown {
    fn from(error: Error) -> Self {
        Thrown(error)
    }
}

/// A result that throws its error (wasm-bindgen throws an `Err`).
pub type Throws<T> = Result<T, Thrown>;

/// `new Error(message)` with `name`, `code`, `detail` and `offset` (absent
/// when the error has none): the shape `crates/node/src/wire.rs` throws.
impl From<Thrown> for JsValue {
    fn from(Thrown(error): Thrown) -> JsValue {
        let object = js_sys::Error::new(&error.to_string());
        object.set_name("BrcacheError");
        let set = |name: &str, value: JsValue| {
            js_sys::Reflect::set(&object, &JsValue::from_str(name), &value)
                .expect("an Error takes properties");
        };
        set("code", JsValue::from_str(error.code()));
        set("detail", JsValue::from_str(error.detail()));
        if let Some(offset) = error.offset() {
            set("offset", JsValue::from_f64(offset as f64));
        }
        object.into()
    }
}

/// A plain JS object (serde's view of `T`), for small records such as a
/// cache header; bulk results cross as JSON text instead.
pub struct Plain<T>(pub T);

impl<T: Serialize> WasmDescribe for Plain<T> {
    fn describe() {
        JsValue::describe()
    }
}

impl<T: Serialize> IntoWasmAbi for Plain<T> {
    type Abi = <JsValue as IntoWasmAbi>::Abi;

    fn into_abi(self) -> Self::Abi {
        // json_compatible: plain objects, not Maps; None becomes null.
        self.0
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .unwrap_or(JsValue::NULL)
            .into_abi()
    }
}

/// The JSON text of a decoded cache body.
pub type Text = String;

/// Bulk JSON text made in Rust (an operation's answer).
pub type Json = String;

pub fn json_text(text: String) -> Json {
    text
}

pub fn decode_text(bytes: &[u8], limits: &brcache_core::DecodeLimits) -> Result<Text, Thrown> {
    Ok(brcache_core::decode_text(bytes, limits)?.text)
}

/// Exports free functions: see the grammar at the top of
/// `crates/bindings/mod.rs`.
macro_rules! functions {
    ($(
        $(#[doc = $doc:literal])*
        #[export($($opt:tt)*)]
        pub fn $name:ident($($param:tt)*) $(-> $ret:ty)? { $($body:tt)* }
    )*) => {$(
        $(#[doc = $doc])*
        #[wasm_bindgen::prelude::wasm_bindgen($($opt)*)]
        pub fn $name($($param)*) $(-> $ret)? { $($body)* }
    )*};
}

/// Exports a class and its methods: see `crates/bindings/mod.rs`.
macro_rules! class {
    (
        $(#[doc = $doc:literal])*
        pub struct $class:ident { $($field:ident: $type:ty),* $(,)? }
        impl {$(
            $(#[doc = $method_doc:literal])*
            #[export($($opt:tt)*)]
            pub fn $name:ident($($param:tt)*) $(-> $ret:ty)? { $($body:tt)* }
        )*}
    ) => {
        $(#[doc = $doc])*
        #[wasm_bindgen::prelude::wasm_bindgen]
        pub struct $class { $($field: $type),* }

        #[wasm_bindgen::prelude::wasm_bindgen]
        impl $class {$(
            $(#[doc = $method_doc])*
            #[wasm_bindgen($($opt)*)]
            pub fn $name($($param)*) $(-> $ret)? { $($body)* }
        )*}
    };
}
