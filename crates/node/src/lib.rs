//! brcache's napi addon: conversions and error mapping only.
//!
//! Errors are returned as values (`{ code, message, detail, offset }`)
//! rather than thrown, so that the JS glue can raise one typed
//! `BrcacheError` with every field, whatever the surface.

use brcache_core::{CacheHeader, DecodeLimits, Error};
use napi::bindgen_prelude::{Buffer, Either, Uint8Array};
use napi::{Env, JsString};
use napi_derive::napi;

pub mod encryption;
pub mod index;
pub mod operation;
pub mod vm_cache;

#[napi(object)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
    pub detail: String,
    pub offset: Option<f64>,
}

impl From<Error> for ErrorInfo {
    fn from(error: Error) -> Self {
        ErrorInfo {
            code: error.code().to_string(),
            message: error.to_string(),
            detail: error.detail().to_string(),
            offset: error.offset().map(|o| o as f64),
        }
    }
}

#[napi(object)]
pub struct HeaderInfo {
    pub version: u32,
    /// A generation is a u64 on disk; JS numbers are exact up to 2^53,
    /// which no counter of writes will reach.
    pub generation: f64,
    pub entries: u32,
    pub fingerprint: Option<String>,
}

impl From<CacheHeader> for HeaderInfo {
    fn from(header: CacheHeader) -> Self {
        HeaderInfo {
            version: header.version.into(),
            generation: header.generation as f64,
            entries: header.entries,
            fingerprint: header.fingerprint.map(|f| f.to_hex()),
        }
    }
}

pub(crate) fn limits(max_inflated_size: Option<f64>, max_depth: Option<u32>) -> DecodeLimits {
    let default = DecodeLimits::default();
    DecodeLimits {
        max_inflated_size: max_inflated_size.map_or(default.max_inflated_size, |v| v as usize),
        max_depth: max_depth.map_or(default.max_depth, |v| v as usize),
    }
}

/// The checked JSON body of a cache, for JSON.parse.
///
/// Pure-ASCII bodies (the usual case: XO's JSON.stringify escapes nothing
/// but the names users type) become a one-byte V8 string by a plain copy,
/// skipping the UTF-8 transcoding a `String` return would cost.
#[napi]
pub fn decode_cache_text<'env>(
    env: &'env Env,
    bytes: Uint8Array,
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> napi::Result<Either<JsString<'env>, ErrorInfo>> {
    SCRATCH.with_borrow_mut(|body| {
        let limits = limits(max_inflated_size, max_depth);
        let result = match brcache_core::codec::decode_body_into(&bytes, &limits, body) {
            // The body is checked UTF-8; ASCII is a subset of Latin-1.
            Ok(_) if body.is_ascii() => env.create_string_latin1(&body[..]).map(Either::A),
            Ok(_) => {
                let text = std::str::from_utf8(body).expect("checked UTF-8");
                env.create_string(text).map(Either::A)
            }
            Err(error) => Ok(Either::B(error.into())),
        };
        // Keep a typical cache's worth of memory between calls, not a
        // one-off giant's.
        if body.capacity() > SCRATCH_KEEP {
            *body = Vec::new();
        }
        result
    })
}

/// Caches up to this size reuse one inflate buffer across calls.
const SCRATCH_KEEP: usize = 64 << 20;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The complete core decode, for its precise error; `null` when valid.
#[napi]
pub fn explain_decode(
    bytes: Uint8Array,
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Option<ErrorInfo> {
    brcache_core::decode(&bytes, &limits(max_inflated_size, max_depth))
        .err()
        .map(ErrorInfo::from)
}

/// brcache's header of a cache, or `null` (a cache written by XO). Reads
/// only the gzip header: no inflate.
#[napi]
pub fn read_header(bytes: Uint8Array) -> Either<Option<HeaderInfo>, ErrorInfo> {
    match brcache_core::codec::read_header(&bytes) {
        Ok(header) => Either::A(header.map(HeaderInfo::from)),
        Err(error) => Either::B(error.into()),
    }
}

/// Gzips a JSON body (an object of objects) with a fresh header.
#[napi]
pub fn encode_json(text: String, generation: Option<f64>) -> Either<Buffer, ErrorInfo> {
    match brcache_core::codec::encode_json(&text, generation.map_or(1, |g| g as u64)) {
        Ok(bytes) => Either::A(bytes.into()),
        Err(error) => Either::B(error.into()),
    }
}
