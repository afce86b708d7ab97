//! brcache's napi addon. The surface is `crates/bindings/` (one definition
//! shared with the wasm build); this crate only supplies its napi wire.

#[macro_use]
mod wire;

#[path = "../../bindings/mod.rs"]
pub mod surface;
