//! brcache's WebAssembly build. The surface is `crates/bindings/` (one
//! definition shared with the napi addon); this crate only supplies its
//! wasm-bindgen wire.

#[macro_use]
mod wire;

#[path = "../../bindings/mod.rs"]
pub mod surface;
