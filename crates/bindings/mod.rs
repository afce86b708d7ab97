//! brcache's JS surface, defined once for both bindings: the napi addon
//! (`crates/node`) and the wasm module (`crates/wasm`) each compile these
//! files (`#[path]` modules) over their own `wire` module, which says what
//! the wire types are on that side and expands the two macros below into
//! `#[napi]` or `#[wasm_bindgen]` items. Nothing here knows which side it
//! is on, so the two cannot drift: same names, same types, same errors.
//!
//! # The error convention
//!
//! Every failure throws. A function that can fail returns `Throws<T>` and
//! writes its body as a `Result<T, Thrown>` (`?` takes any core error); the
//! JS side receives an `Error` whose `name` is `'BrcacheError'`, with the
//! core's `code`, `message`, `detail` and, where the error has one,
//! `offset`. js/common/codec.js's `call()` only turns it into the typed
//! `BrcacheError` class with the file name; nothing returns an error as a
//! value.
//!
//! # The wire types (see either `wire.rs`)
//!
//! - `Bytes` in (`&bytes` is a `&[u8]`; napi borrows, wasm copies),
//!   `BytesList` in (`wire::owned` makes it `Vec<Vec<u8>>`);
//! - `BytesOut` out (`wire::bytes_out(vec)`: a Buffer / Uint8Array, never a
//!   JSON array), `BytesListOut` (`wire::bytes_list_out`);
//! - `Text`, a decoded cache body (napi's latin1 fast path lives behind it);
//! - `Plain<T: Serialize>`, a small plain object; bulk results cross as
//!   JSON text (`json(&value)`), which JSON.parse turns into objects fastest;
//! - otherwise types both sides convert alike: `String`, `Vec<String>`,
//!   `bool`, `u32`, `f64` (u64 counters; exact up to 2^53), `Option<_>`,
//!   and the classes below (by value, or `&Class` as an argument).
//!
//! # Adding a function
//!
//! Inside a `functions! { … }` block:
//!
//! ```ignore
//! /// What it does.
//! #[export(js_name = "doThing")]
//! pub fn do_thing(vm: String, bytes: Bytes) -> Throws<BytesOut> {
//!     Ok(wire::bytes_out(core_call(&vm, &bytes)?))
//! }
//! ```
//!
//! `#[export(…)]` is required and takes what both `#[napi(…)]` and
//! `#[wasm_bindgen(…)]` understand: always `js_name = "camelCase"` (napi
//! would camelCase by itself, wasm-bindgen would not), plus `getter` on a
//! class's property. Doc comments go before it. Then add the name to the
//! README's "The core's JS surface" list: `tests/surface.test.mjs` checks
//! both builds export exactly that list.
//!
//! # Adding a class
//!
//! A handle the JS side holds (a state machine, say) is one `class!`:
//!
//! ```ignore
//! class! {
//!     /// What it is.
//!     pub struct Operation { inner: brcache_core::Operation }
//!     impl {
//!         #[export(js_name = "poll")]
//!         pub fn poll(&mut self) -> String { json(&self.inner.poll()) }
//!
//!         #[export(js_name = "payload")]
//!         pub fn payload(&self, i: u32) -> Throws<BytesOut> {
//!             Ok(wire::bytes_out(self.inner.payload(i as usize)?))
//!         }
//!
//!         #[export(js_name = "respond")]
//!         pub fn respond(&mut self, i: u32, code: String, bytes: Option<Bytes>, text: Option<String>) -> Throws<()> {
//!             Ok(self.inner.respond(i as usize, &code, bytes.as_deref(), text.as_deref())?)
//!         }
//!
//!         #[export(js_name = "done", getter)]
//!         pub fn done(&self) -> bool { self.inner.done() }
//!     }
//! }
//! ```
//!
//! The class has no JS constructor: a function (`functions!`) makes it,
//! returning `Operation` or `Throws<Operation>`. Every method needs its
//! `#[export]`, takes `&self` or `&mut self`, and follows the function
//! rules above. Add the class's name to the README list; the surface test
//! also compares each class's methods and properties across the builds.
//!
//! The macros are `macro_rules!`, so rustfmt does not format inside them:
//! keep to the layout here.

use serde::Serialize;

pub mod codec;
pub mod encryption;
pub mod index;
pub mod operation;
pub mod vm_cache;

/// Decode limits from JS, each `undefined` meaning the core's default.
pub(crate) fn limits(
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> brcache_core::DecodeLimits {
    let default = brcache_core::DecodeLimits::default();
    brcache_core::DecodeLimits {
        max_inflated_size: max_inflated_size.map_or(default.max_inflated_size, |v| v as usize),
        max_depth: max_depth.map_or(default.max_depth, |v| v as usize),
    }
}

/// Structured results cross as JSON text, which the JS glue parses.
pub(crate) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}
