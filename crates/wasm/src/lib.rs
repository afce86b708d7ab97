//! brcache's WebAssembly build: conversions and error mapping only.
//!
//! Failures are thrown as plain objects (`{ code, message, detail, offset }`)
//! that the JS glue turns into a typed `BrcacheError`, exactly as it does
//! for the napi addon.

use brcache_core::{CacheHeader, DecodeLimits, Error};
use serde::Serialize;
use wasm_bindgen::prelude::*;

pub mod encryption;
pub mod index;
pub mod operation;
pub mod vm_cache;

#[derive(Serialize)]
struct ErrorInfo {
    code: &'static str,
    message: String,
    detail: String,
    offset: Option<f64>,
}

#[derive(Serialize)]
struct HeaderInfo {
    version: u8,
    generation: f64,
    entries: u32,
    fingerprint: Option<String>,
}

impl From<CacheHeader> for HeaderInfo {
    fn from(header: CacheHeader) -> Self {
        HeaderInfo {
            version: header.version,
            generation: header.generation as f64,
            entries: header.entries,
            fingerprint: header.fingerprint.map(|f| f.to_hex()),
        }
    }
}

fn to_js<T: Serialize>(value: &T) -> JsValue {
    // json_compatible: plain objects, not Maps; None becomes null.
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}

fn error_info(error: Error) -> ErrorInfo {
    ErrorInfo {
        code: error.code(),
        message: error.to_string(),
        detail: error.detail().to_string(),
        offset: error.offset().map(|o| o as f64),
    }
}

pub(crate) fn throw(error: Error) -> JsValue {
    to_js(&error_info(error))
}

pub(crate) fn limits(max_inflated_size: Option<f64>, max_depth: Option<u32>) -> DecodeLimits {
    let default = DecodeLimits::default();
    DecodeLimits {
        max_inflated_size: max_inflated_size.map_or(default.max_inflated_size, |v| v as usize),
        max_depth: max_depth.map_or(default.max_depth, |v| v as usize),
    }
}

/// The checked JSON body of a cache, for JSON.parse.
#[wasm_bindgen(js_name = decodeCacheText)]
pub fn decode_cache_text(
    bytes: &[u8],
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Result<String, JsValue> {
    brcache_core::decode_text(bytes, &limits(max_inflated_size, max_depth))
        .map(|decoded| decoded.text)
        .map_err(throw)
}

/// The complete core decode, for its precise error; `null` when valid.
#[wasm_bindgen(js_name = explainDecode)]
pub fn explain_decode(
    bytes: &[u8],
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> JsValue {
    match brcache_core::decode(bytes, &limits(max_inflated_size, max_depth)) {
        Ok(_) => JsValue::NULL,
        Err(error) => to_js(&error_info(error)),
    }
}

/// brcache's header of a cache, or `null` (a cache written by XO).
#[wasm_bindgen(js_name = readHeader)]
pub fn read_header(bytes: &[u8]) -> Result<JsValue, JsValue> {
    brcache_core::codec::read_header(bytes)
        .map(|header| to_js(&header.map(HeaderInfo::from)))
        .map_err(throw)
}

/// Gzips a JSON body (an object of objects) with a fresh header.
#[wasm_bindgen(js_name = encodeJson)]
pub fn encode_json(text: &str, generation: Option<f64>) -> Result<Vec<u8>, JsValue> {
    brcache_core::codec::encode_json(text, generation.map_or(1, |g| g as u64)).map_err(throw)
}
