//! `cache.json.gz` bytes to JSON text and back (see the core's `codec`).

use super::limits;
use crate::wire::{self, Bytes, BytesOut, Plain, Text, Throws};
use brcache_core::CacheHeader;
use serde::Serialize;

/// brcache's header of a cache, as JS reads it.
#[derive(Serialize)]
pub struct HeaderInfo {
    pub version: u8,
    /// A generation is a u64 on disk; JS numbers are exact up to 2^53,
    /// which no counter of writes will reach.
    pub generation: f64,
    pub entries: u32,
    pub fingerprint: Option<String>,
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

functions! {
    /// The checked JSON body of a cache, for JSON.parse.
    #[export(js_name = "decodeCacheText")]
    pub fn decode_cache_text(
        bytes: Bytes,
        max_inflated_size: Option<f64>,
        max_depth: Option<u32>,
    ) -> Throws<Text> {
        wire::decode_text(&bytes, &limits(max_inflated_size, max_depth))
    }

    /// The complete core decode, for its precise error (thrown); nothing
    /// when the bytes are valid.
    #[export(js_name = "explainDecode")]
    pub fn explain_decode(
        bytes: Bytes,
        max_inflated_size: Option<f64>,
        max_depth: Option<u32>,
    ) -> Throws<()> {
        brcache_core::decode(&bytes, &limits(max_inflated_size, max_depth))?;
        Ok(())
    }

    /// brcache's header of a cache, or `null` (a cache written by XO). Reads
    /// only the gzip header: no inflate.
    #[export(js_name = "readHeader")]
    pub fn read_header(bytes: Bytes) -> Throws<Plain<Option<HeaderInfo>>> {
        Ok(Plain(brcache_core::read_header(&bytes)?.map(HeaderInfo::from)))
    }

    /// Gzips a JSON body (an object of objects) with a fresh header.
    #[export(js_name = "encodeJson")]
    pub fn encode_json(text: String, generation: Option<f64>) -> Throws<BytesOut> {
        let generation = generation.map_or(1, |g| g as u64);
        Ok(wire::bytes_out(brcache_core::encode_json(&text, generation)?))
    }
}
