//! The napi side of the wire: what each type the surface names
//! (`crates/bindings/`) is on Node, how a core error is thrown, and the
//! `functions!` / `class!` macros that put `#[napi]` on the surface's items.
//! `crates/wasm/src/wire.rs` is the same contract for wasm-bindgen; keep the
//! two in step.

use brcache_core::Error;
use napi::bindgen_prelude::{ToNapiValue, sys};
use serde::Serialize;
use std::cell::RefCell;
use std::ptr;

/// Bytes from JS: the napi view borrows the caller's memory, no copy.
pub type Bytes = napi::bindgen_prelude::Uint8Array;
/// A list of byte buffers from JS.
pub type BytesList = Vec<Bytes>;
/// Bytes to JS, as a Buffer that takes the Vec without copying.
pub type BytesOut = napi::bindgen_prelude::Buffer;
/// A list of byte buffers to JS.
pub type BytesListOut = Vec<BytesOut>;

pub fn bytes_out(bytes: Vec<u8>) -> BytesOut {
    bytes.into()
}

pub fn bytes_list_out(list: Vec<Vec<u8>>) -> BytesListOut {
    list.into_iter().map(BytesOut::from).collect()
}

pub fn owned(list: BytesList) -> Vec<Vec<u8>> {
    list.iter().map(|bytes| bytes.to_vec()).collect()
}

/// A core error on its way to being thrown.
pub struct Thrown(Error);

impl From<Error> for Thrown {
    fn from(error: Error) -> Self {
        Thrown(error)
    }
}

/// A result that throws its error: `Result<T, Thrown>` written as a type
/// napi-derive does not take for its own `Result` (which throws only
/// napi's errors, without our `detail` and `offset`).
pub struct Throws<T>(pub Result<T, Thrown>);

/// Runs a fallible body (the `functions!` and `class!` macros wrap every
/// body that returns `Throws<T>` in this).
pub fn throws<T>(body: impl FnOnce() -> Result<T, Thrown>) -> Throws<T> {
    Throws(body())
}

impl<T: ToNapiValue> ToNapiValue for Throws<T> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        match val.0 {
            Ok(value) => unsafe { T::to_napi_value(env, value) },
            Err(Thrown(error)) => {
                let thrown = unsafe { error_object(env, &error)? };
                unsafe { sys::napi_throw(env, thrown) };
                // What napi-rs itself returns once it has thrown.
                Ok(ptr::null_mut())
            }
        }
    }
}

/// `new Error(message)` with `name`, `code`, `detail` and `offset` (absent
/// when the error has none): the shape `crates/wasm/src/wire.rs` throws.
unsafe fn error_object(env: sys::napi_env, error: &Error) -> napi::Result<sys::napi_value> {
    unsafe {
        let message = String::to_napi_value(env, error.to_string())?;
        let code = <&str>::to_napi_value(env, error.code())?;
        let mut object = ptr::null_mut();
        napi::check_status!(sys::napi_create_error(env, code, message, &mut object))?;
        set(
            env,
            object,
            c"name",
            <&str>::to_napi_value(env, "BrcacheError")?,
        )?;
        set(
            env,
            object,
            c"detail",
            <&str>::to_napi_value(env, error.detail())?,
        )?;
        if let Some(offset) = error.offset() {
            set(
                env,
                object,
                c"offset",
                f64::to_napi_value(env, offset as f64)?,
            )?;
        }
        Ok(object)
    }
}

unsafe fn set(
    env: sys::napi_env,
    object: sys::napi_value,
    name: &std::ffi::CStr,
    value: sys::napi_value,
) -> napi::Result<()> {
    napi::check_status!(unsafe { sys::napi_set_named_property(env, object, name.as_ptr(), value) })
}

/// A plain JS object (serde's view of `T`), for small records such as a
/// cache header; bulk results cross as JSON text instead.
pub struct Plain<T>(pub T);

impl<T: Serialize> ToNapiValue for Plain<T> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let value = napi::Env::from_raw(env).to_js_value(&val.0)?;
        unsafe { ToNapiValue::to_napi_value(env, value) }
    }
}

/// The JSON text of a decoded cache body. The body waits in a per-thread
/// buffer until napi asks for the JS value, so that a pure-ASCII body (the
/// usual case: XO's JSON.stringify escapes nothing but the names users
/// type) becomes a one-byte V8 string by a plain copy, skipping the UTF-8
/// transcoding a `String` would cost, and the buffer is reused across calls.
pub struct Text(());

/// Caches up to this size reuse one inflate buffer across calls.
const SCRATCH_KEEP: usize = 64 << 20;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub fn decode_text(bytes: &[u8], limits: &brcache_core::DecodeLimits) -> Result<Text, Thrown> {
    SCRATCH.with_borrow_mut(|body| {
        let decoded = brcache_core::decode_body_into(bytes, limits, body);
        if decoded.is_err() && body.capacity() > SCRATCH_KEEP {
            *body = Vec::new();
        }
        decoded.map(|_| Text(())).map_err(Thrown)
    })
}

impl ToNapiValue for Text {
    unsafe fn to_napi_value(env: sys::napi_env, _: Self) -> napi::Result<sys::napi_value> {
        SCRATCH.with_borrow_mut(|body| {
            let env = napi::Env::from_raw(env);
            // The body is checked UTF-8; ASCII is a subset of Latin-1.
            let text = if body.is_ascii() {
                env.create_string_latin1(&body[..])
            } else {
                env.create_string(std::str::from_utf8(body).expect("checked UTF-8"))
            };
            // Keep a typical cache's worth of memory between calls, not a
            // one-off giant's.
            if body.capacity() > SCRATCH_KEEP {
                *body = Vec::new();
            }
            unsafe { ToNapiValue::to_napi_value(env.raw(), text?) }
        })
    }
}

/// Bulk JSON text made in Rust (an operation's answer): pure ASCII, the
/// usual case, becomes a one-byte V8 string by a plain copy, as [`Text`].
pub struct Json(String);

pub fn json_text(text: String) -> Json {
    Json(text)
}

impl ToNapiValue for Json {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        let env = napi::Env::from_raw(env);
        let text = if val.0.is_ascii() {
            env.create_string_latin1(val.0.as_bytes())
        } else {
            env.create_string(&val.0)
        };
        unsafe { ToNapiValue::to_napi_value(env.raw(), text?) }
    }
}

/// Exports free functions: see the grammar at the top of
/// `crates/bindings/mod.rs`.
macro_rules! functions {
    () => {};
    (
        $(#[doc = $doc:literal])*
        #[export($($opt:tt)*)]
        pub fn $name:ident($($param:tt)*) -> Throws<$ok:ty> { $($body:tt)* }
        $($rest:tt)*
    ) => {
        $(#[doc = $doc])*
        #[napi_derive::napi($($opt)*)]
        pub fn $name($($param)*) -> Throws<$ok> {
            $crate::wire::throws(move || -> ::std::result::Result<$ok, $crate::wire::Thrown> { $($body)* })
        }
        functions!($($rest)*);
    };
    (
        $(#[doc = $doc:literal])*
        #[export($($opt:tt)*)]
        pub fn $name:ident($($param:tt)*) $(-> $ret:ty)? { $($body:tt)* }
        $($rest:tt)*
    ) => {
        $(#[doc = $doc])*
        #[napi_derive::napi($($opt)*)]
        pub fn $name($($param)*) $(-> $ret)? { $($body)* }
        functions!($($rest)*);
    };
}

/// Exports a class and its methods: see `crates/bindings/mod.rs`.
macro_rules! class {
    (
        $(#[doc = $doc:literal])*
        pub struct $class:ident { $($field:ident: $type:ty),* $(,)? }
        impl { $($methods:tt)* }
    ) => {
        $(#[doc = $doc])*
        #[napi_derive::napi]
        pub struct $class { $($field: $type),* }
        class!(@methods $class [] $($methods)*);
    };
    (@methods $class:ident [$($done:tt)*]) => {
        #[napi_derive::napi]
        impl $class { $($done)* }
    };
    (
        @methods $class:ident [$($done:tt)*]
        $(#[doc = $doc:literal])*
        #[export($($opt:tt)*)]
        pub fn $name:ident($($param:tt)*) -> Throws<$ok:ty> { $($body:tt)* }
        $($rest:tt)*
    ) => {
        class!(@methods $class [
            $($done)*
            $(#[doc = $doc])*
            #[napi($($opt)*)]
            pub fn $name($($param)*) -> Throws<$ok> {
                $crate::wire::throws(move || -> ::std::result::Result<$ok, $crate::wire::Thrown> { $($body)* })
            }
        ] $($rest)*);
    };
    (
        @methods $class:ident [$($done:tt)*]
        $(#[doc = $doc:literal])*
        #[export($($opt:tt)*)]
        pub fn $name:ident($($param:tt)*) $(-> $ret:ty)? { $($body:tt)* }
        $($rest:tt)*
    ) => {
        class!(@methods $class [
            $($done)*
            $(#[doc = $doc])*
            #[napi($($opt)*)]
            pub fn $name($($param)*) $(-> $ret)? { $($body)* }
        ] $($rest)*);
    };
}
