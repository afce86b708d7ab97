//! `cache.json.gz` as bytes: decode and encode.
//!
//! A cache is one gzip member whose body is a JSON object mapping metadata
//! paths to metadata records, exactly as Xen Orchestra writes it. Ours adds a
//! header in FEXTRA (see [`crate::header`]); XO's has none and reads as
//! generation 0.

use crate::document::CacheDocument;
use crate::error::{Error, ErrorKind, Result};
use crate::gzip;
use crate::header::CacheHeader;
use crate::json;

/// Limits applied while decoding untrusted bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The largest inflated body accepted. Real caches stay under a few
    /// tens of MiB even at 1,000 full records; the default leaves room for
    /// that and stops gzip bombs long before memory runs out.
    pub max_inflated_size: usize,
    /// The deepest JSON nesting accepted. XO records nest about 6 levels.
    pub max_depth: usize,
}

impl DecodeLimits {
    pub const DEFAULT_MAX_INFLATED_SIZE: usize = 256 << 20;
    pub const DEFAULT_MAX_DEPTH: usize = 64;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_inflated_size: Self::DEFAULT_MAX_INFLATED_SIZE,
            max_depth: Self::DEFAULT_MAX_DEPTH,
        }
    }
}

/// A cache body checked up to, but not including, JSON parsing: framing,
/// checksums, size limit, UTF-8 and nesting depth.
///
/// This is what the JS bindings hand to `JSON.parse`, the fastest way to
/// build JS objects; when JSON.parse or the shape check fails they call
/// [`decode`] for the precise error, so every surface reports the same one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedText {
    pub header: Option<CacheHeader>,
    pub text: String,
}

/// Unwraps the gzip member and checks the body as text.
pub fn decode_text(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedText> {
    let DecodedText { header, text } = decode_records_text(bytes, limits)?;
    json::check_depth(text.as_bytes(), limits.max_depth)?;
    Ok(DecodedText { header, text })
}

/// [`decode_text`] into a reusable buffer: on success `body` holds the
/// checked UTF-8 JSON text.
pub fn decode_body_into(
    bytes: &[u8],
    limits: &DecodeLimits,
    body: &mut Vec<u8>,
) -> Result<Option<CacheHeader>> {
    let member = gzip::read_member_into(bytes, limits.max_inflated_size, body)?;
    let header = CacheHeader::from_extra(member.extra);
    check_body(body, limits)?;
    Ok(header)
}

/// A cache's body as text, its JSON not checked yet: for a caller that
/// checks it in the same pass as it reads it ([`json::check_records`]).
pub fn decode_records_text(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedText> {
    let mut body = Vec::new();
    let member = gzip::read_member_into(bytes, limits.max_inflated_size, &mut body)?;
    let header = CacheHeader::from_extra(member.extra);
    check_size(&body, limits)?;
    // One pass over the text for its UTF-8, not two (tens of MB).
    let text = String::from_utf8(body).map_err(|e| not_utf8(e.utf8_error()))?;
    Ok(DecodedText { header, text })
}

/// The checks a JSON body passes before any parser sees it, gzip or not:
/// its size, UTF-8, nesting depth and escapes (see [`json::check_depth`]).
pub fn check_body(body: &[u8], limits: &DecodeLimits) -> Result<()> {
    check_text(body, limits)?;
    json::check_depth(body, limits.max_depth)
}

/// A body's size and UTF-8.
fn check_text(body: &[u8], limits: &DecodeLimits) -> Result<()> {
    check_size(body, limits)?;
    std::str::from_utf8(body).map_err(not_utf8)?;
    Ok(())
}

fn not_utf8(e: std::str::Utf8Error) -> Error {
    Error::new(ErrorKind::InvalidUtf8, "the cache body is not valid UTF-8")
        .at(e.valid_up_to() as u64)
}

fn check_size(body: &[u8], limits: &DecodeLimits) -> Result<()> {
    if body.len() > limits.max_inflated_size {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "the body is {} bytes, over the limit of {}",
                body.len(),
                limits.max_inflated_size
            ),
        ));
    }
    Ok(())
}

/// Decodes a cache completely: framing, header and entries.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<CacheDocument> {
    let DecodedText { header, text } = decode_text(bytes, limits)?;
    let entries = json::parse_entries(&text)?;
    Ok(CacheDocument::from_parts(header, entries))
}

/// The deflate level used when writing: zlib's and Node's default, a good
/// balance for a file that is read far more often than written.
pub const DEFAULT_LEVEL: u8 = 6;

/// Encodes a document: its JSON body in one gzip member, with its header
/// (if any) in FEXTRA.
pub fn encode(document: &CacheDocument) -> Vec<u8> {
    encode_with_level(document, DEFAULT_LEVEL)
}

/// The body is written in chunks (see [`crate::chunked`]) so that later
/// writes can splice it; any gunzip reads it as one JSON object.
pub fn encode_with_level(document: &CacheDocument, level: u8) -> Vec<u8> {
    let entries = document.entries().iter().map(|(k, v)| (k.as_str(), &**v));
    crate::chunked::encode(document.header(), entries, level)
}

/// Reads only brcache's header, without inflating the body: enough to
/// learn a cache's generation and fingerprint cheaply.
pub fn read_header(bytes: &[u8]) -> Result<Option<CacheHeader>> {
    let (member, _) = gzip::read_header(bytes)?;
    Ok(CacheHeader::from_extra(member.extra))
}

/// Encodes a JSON body (an object of objects) with a fresh header at
/// `generation`, fingerprinting the file names its keys end with.
pub fn encode_json(text: &str, generation: u64) -> Result<Vec<u8>> {
    let mut document = CacheDocument::from_json(text)?;
    let names = document
        .entries()
        .keys()
        .map(|k| k.rsplit('/').next().unwrap_or(k));
    let header = CacheHeader {
        version: crate::header::FORMAT_VERSION,
        generation,
        entries: u32::try_from(document.len()).unwrap_or(u32::MAX),
        fingerprint: Some(crate::Fingerprint::of_names(names)),
    };
    document.set_header(Some(header));
    Ok(encode(&document))
}
