//! One gzip member (RFC 1952), read and written over byte slices.
//!
//! The framing is done here, over raw deflate, because we need the FEXTRA
//! field for our own header. Reading is strict: a cache is one member and
//! nothing else, every checksum is verified, and the inflated size is capped
//! before any memory is committed to it.
//!
//! Bodies are inflated with zlib-rs, which takes about half the time of
//! miniz_oxide on a cache (a listing of full records inflates every byte
//! of every cache, tens of MB); miniz_oxide still deflates, where chunked
//! writes rely on its compressor's state (`crate::chunked`).

use crate::error::{Error, ErrorKind, Result};
use zlib_rs::{Inflate, InflateFlush, Status};

const ID1: u8 = 0x1f;
const ID2: u8 = 0x8b;
const CM_DEFLATE: u8 = 8;
const FTEXT: u8 = 0x01;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;
/// "Unknown" operating system: keeps our output identical on every platform.
const OS_UNKNOWN: u8 = 255;
const TRAILER_LEN: usize = 8;
/// The most a deflate stream can expand: a 258-byte match in 2 bits.
const MAX_DEFLATE_RATIO: usize = 1032;

/// Whether `bytes` start like a gzip member (the two magic bytes).
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[ID1, ID2])
}

/// The header fields of a member that a cache reader may care about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberHeader<'a> {
    pub mtime: u32,
    /// The raw FEXTRA payload (a sequence of sub-fields), if present.
    pub extra: Option<&'a [u8]>,
    pub name: Option<&'a [u8]>,
    pub comment: Option<&'a [u8]>,
}

/// A decoded member: its header and inflated body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    pub header: MemberHeader<'a>,
    pub data: Vec<u8>,
}

/// Reads exactly one gzip member from `input`, inflating at most
/// `max_inflated` bytes.
pub fn read_member(input: &[u8], max_inflated: usize) -> Result<Member<'_>> {
    let mut data = Vec::new();
    let header = read_member_into(input, max_inflated, &mut data)?;
    Ok(Member { header, data })
}

/// [`read_member`] into a caller's buffer, which a caller decoding many
/// caches reuses: growing a fresh buffer to tens of MiB costs more page
/// faults than the inflate itself.
pub fn read_member_into<'a>(
    input: &'a [u8],
    max_inflated: usize,
    data: &mut Vec<u8>,
) -> Result<MemberHeader<'a>> {
    let (header, body_start) = read_header(input)?;
    let body = &input[body_start..];
    let consumed = inflate(body, body_start, max_inflated, data)?;
    let trailer_start = body_start + consumed;
    let trailer = input
        .get(trailer_start..trailer_start + TRAILER_LEN)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Truncated,
                "gzip trailer is missing or incomplete",
            )
            .at(trailer_start as u64)
        })?;
    let expected_crc = u32::from_le_bytes(trailer[0..4].try_into().unwrap());
    let expected_size = u32::from_le_bytes(trailer[4..8].try_into().unwrap());
    let actual_crc = crc32fast::hash(data);
    if actual_crc != expected_crc {
        return Err(Error::new(
            ErrorKind::CrcMismatch,
            format!("CRC32 mismatch: trailer says {expected_crc:08x}, data has {actual_crc:08x}"),
        )
        .at(trailer_start as u64));
    }
    // ISIZE is the length modulo 2^32 (RFC 1952, 2.3.1).
    if data.len() as u32 != expected_size {
        return Err(Error::new(
            ErrorKind::SizeMismatch,
            format!(
                "size mismatch: trailer says {expected_size} bytes, inflated {}",
                data.len()
            ),
        )
        .at(trailer_start as u64 + 4));
    }
    let end = trailer_start + TRAILER_LEN;
    if end != input.len() {
        let what = if input[end..].starts_with(&[ID1, ID2]) {
            "a second gzip member follows the first (a cache is a single member)"
        } else {
            "unexpected bytes after the gzip member"
        };
        return Err(Error::new(
            ErrorKind::TrailingData,
            format!("{what}: {} extra bytes", input.len() - end),
        )
        .at(end as u64));
    }
    Ok(header)
}

fn truncated_header(offset: usize) -> Error {
    Error::new(ErrorKind::Truncated, "gzip header is incomplete").at(offset as u64)
}

/// Parses a member header; returns it and the offset of the deflate data.
pub fn read_header(input: &[u8]) -> Result<(MemberHeader<'_>, usize)> {
    if input.is_empty() {
        return Err(Error::new(ErrorKind::NotGzip, "empty file, not a gzip member").at(0));
    }
    if input[0] != ID1 || input.get(1).is_some_and(|&b| b != ID2) {
        return Err(Error::new(ErrorKind::NotGzip, "not gzip data (bad magic number)").at(0));
    }
    if input.len() < 10 {
        return Err(truncated_header(input.len()));
    }
    if input[2] != CM_DEFLATE {
        return Err(Error::new(
            ErrorKind::UnsupportedGzip,
            format!(
                "unsupported compression method {} (only deflate, 8)",
                input[2]
            ),
        )
        .at(2));
    }
    let flags = input[3];
    if flags & FRESERVED != 0 {
        return Err(Error::new(
            ErrorKind::UnsupportedGzip,
            format!("reserved gzip flag bits set ({flags:#04x})"),
        )
        .at(3));
    }
    let _ = FTEXT; // informative only, accepted either way
    let mtime = u32::from_le_bytes(input[4..8].try_into().unwrap());
    let mut pos = 10;
    let mut header = MemberHeader {
        mtime,
        ..MemberHeader::default()
    };
    if flags & FEXTRA != 0 {
        let xlen = input
            .get(pos..pos + 2)
            .ok_or_else(|| truncated_header(pos))?;
        let xlen = u16::from_le_bytes([xlen[0], xlen[1]]) as usize;
        pos += 2;
        header.extra = Some(
            input
                .get(pos..pos + xlen)
                .ok_or_else(|| truncated_header(pos))?,
        );
        pos += xlen;
    }
    if flags & FNAME != 0 {
        let (field, next) = zero_terminated(input, pos)?;
        header.name = Some(field);
        pos = next;
    }
    if flags & FCOMMENT != 0 {
        let (field, next) = zero_terminated(input, pos)?;
        header.comment = Some(field);
        pos = next;
    }
    if flags & FHCRC != 0 {
        let stored = input
            .get(pos..pos + 2)
            .ok_or_else(|| truncated_header(pos))?;
        let stored = u16::from_le_bytes([stored[0], stored[1]]);
        let actual = crc32fast::hash(&input[..pos]) as u16;
        if stored != actual {
            return Err(Error::new(
                ErrorKind::HeaderCrcMismatch,
                format!("gzip header CRC mismatch: stored {stored:04x}, computed {actual:04x}"),
            )
            .at(pos as u64));
        }
        pos += 2;
    }
    Ok((header, pos))
}

fn zero_terminated(input: &[u8], start: usize) -> Result<(&[u8], usize)> {
    let rest = input.get(start..).unwrap_or_default();
    match rest.iter().position(|&b| b == 0) {
        Some(len) => Ok((&rest[..len], start + len + 1)),
        None => Err(truncated_header(input.len())),
    }
}

/// Inflates a raw deflate stream into a growing buffer capped at
/// `max_inflated` bytes. Returns the data and the number of input bytes the
/// stream used, so the caller can find the trailer.
fn inflate(
    body: &[u8],
    body_offset: usize,
    max_inflated: usize,
    out: &mut Vec<u8>,
) -> Result<usize> {
    // The trailer's ISIZE is a good first guess for the output size when the
    // member is well formed; it is only a hint, so it is capped (by the
    // limit, and by what deflate can expand this input to: at most 1032:1,
    // so a few forged bytes cannot make us commit the whole limit) and the
    // buffer still grows on demand.
    let hint = body
        .len()
        .checked_sub(TRAILER_LEN)
        .map(|_| u32::from_le_bytes(body[body.len() - 4..].try_into().unwrap()) as usize)
        .unwrap_or(0)
        .min(body.len().saturating_mul(MAX_DEFLATE_RATIO));
    let initial = hint
        .clamp(1024, max_inflated.max(1024))
        .min(max_inflated + 1);
    out.clear();
    out.resize(initial.max(1), 0);
    // Raw deflate (no zlib header), deflate's largest window.
    let mut state = Inflate::new(false, 15);
    let mut out_pos = 0;
    loop {
        let in_pos = state.total_in() as usize;
        let status = state.decompress(&body[in_pos..], &mut out[out_pos..], InflateFlush::NoFlush);
        let in_pos = state.total_in() as usize;
        out_pos = state.total_out() as usize;
        match status {
            Ok(Status::StreamEnd) if out_pos > max_inflated => {
                return Err(too_large(max_inflated, body_offset));
            }
            Ok(Status::StreamEnd) => {
                out.truncate(out_pos);
                return Ok(in_pos);
            }
            // The output is full: room for more, up to one byte past the
            // limit (which tells a stream at the limit from one beyond it).
            Ok(_) if out_pos == out.len() => {
                if out.len() > max_inflated {
                    return Err(too_large(max_inflated, body_offset));
                }
                let grown = (out.len() * 2).min(max_inflated + 1).max(out.len() + 1);
                // Exactly: `resize` alone may round the allocation up to
                // twice the old capacity, past the limit.
                out.reserve_exact(grown - out.len());
                out.resize(grown, 0);
            }
            // More input to give (a call takes at most 4 GiB of it).
            Ok(_) if in_pos < body.len() => {}
            // Room left in the output and no input: the stream ends early.
            Ok(_) => {
                return Err(
                    Error::new(ErrorKind::Truncated, "deflate stream ends early")
                        .at((body_offset + in_pos) as u64),
                );
            }
            Err(error) => {
                let reason = state.error_message().unwrap_or(error.as_str());
                return Err(Error::new(
                    ErrorKind::CorruptDeflate,
                    format!("corrupt deflate data ({reason})"),
                )
                .at((body_offset + in_pos) as u64));
            }
        }
    }
}

fn too_large(max_inflated: usize, body_offset: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("inflated data exceeds the limit of {max_inflated} bytes"),
    )
    .at(body_offset as u64)
}

/// Writes one gzip member from deflate stream parts (concatenated as they
/// are: every part but the last ends on a byte boundary, the last holds
/// the final block) with an optional FEXTRA payload, and the trailer's
/// CRC-32 and size (modulo 2^32) of the whole plain text.
pub fn write_member_parts(parts: &[&[u8]], extra: Option<&[u8]>, crc: u32, size: u32) -> Vec<u8> {
    let extra_len = extra.map_or(0, |e| 2 + e.len());
    let deflated: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(10 + extra_len + deflated + TRAILER_LEN);
    let flags = if extra.is_some() { FEXTRA } else { 0 };
    // MTIME 0: the same input always gives the same bytes.
    out.extend_from_slice(&[ID1, ID2, CM_DEFLATE, flags, 0, 0, 0, 0, 0, OS_UNKNOWN]);
    if let Some(extra) = extra {
        let xlen = u16::try_from(extra.len()).expect("FEXTRA payload over 65535 bytes");
        out.extend_from_slice(&xlen.to_le_bytes());
        out.extend_from_slice(extra);
    }
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out
}

/// Writes `data` as one gzip member with an optional FEXTRA payload, at a
/// deflate `level` from 0 to 10 (6 is zlib's and Node's default).
pub fn write_member(data: &[u8], extra: Option<&[u8]>, level: u8) -> Vec<u8> {
    let deflated = miniz_oxide::deflate::compress_to_vec(data, level);
    write_member_parts(
        &[&deflated],
        extra,
        crc32fast::hash(data),
        data.len() as u32,
    )
}

/// Splits an FEXTRA payload into its sub-fields `(id, data)`. A payload
/// that is not a well-formed sequence of sub-fields yields nothing: other
/// tools may put arbitrary bytes there, and gzip readers ignore them.
pub fn subfields(extra: &[u8]) -> Vec<([u8; 2], &[u8])> {
    let mut fields = Vec::new();
    let mut rest = extra;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Vec::new();
        }
        let id = [rest[0], rest[1]];
        let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let Some(data) = rest.get(4..4 + len) else {
            return Vec::new();
        };
        fields.push((id, data));
        rest = &rest[4 + len..];
    }
    fields
}

/// Builds an FEXTRA payload holding one sub-field.
pub fn subfield(id: [u8; 2], data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("sub-field over 65535 bytes");
    let mut out = Vec::with_capacity(4 + data.len());
    out.extend_from_slice(&id);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_extra() {
        let extra = subfield(*b"Zz", b"hello");
        let bytes = write_member(b"{\"a\":1}", Some(&extra), 6);
        let member = read_member(&bytes, 1 << 20).unwrap();
        assert_eq!(member.data, b"{\"a\":1}");
        assert_eq!(
            subfields(member.header.extra.unwrap()),
            vec![(*b"Zz", &b"hello"[..])]
        );
    }

    #[test]
    fn limit_is_enforced_exactly() {
        let data = vec![b' '; 5000];
        let bytes = write_member(&data, None, 6);
        assert_eq!(read_member(&bytes, 5000).unwrap().data.len(), 5000);
        let result = read_member(&bytes, 4999).map(|m| m.data.len());
        assert_eq!(result.unwrap_err().kind(), ErrorKind::TooLarge);
    }

    #[test]
    fn a_body_past_its_size_hint_inflates_whole() {
        // Matches reaching back across the points where the output grew:
        // the inflater keeps its window from one call to the next.
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| b"{\"key\":\"value\"}"[(i * 7 % 15) as usize] ^ (i / 5000) as u8)
            .collect();
        let mut body = miniz_oxide::deflate::compress_to_vec(&data, 6);
        // A trailer whose size says 1 byte: the buffer starts small.
        body.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0]);
        let mut out = Vec::new();
        let used = inflate(&body, 0, 1 << 20, &mut out).unwrap();
        assert_eq!(used, body.len() - TRAILER_LEN);
        assert!(out == data, "the inflated body differs");
    }

    #[test]
    fn corrupt_deflate_says_what_is_wrong() {
        // A final block of the reserved type 3.
        let mut bytes = write_member(b"{}", None, 6);
        bytes[10] = 0x07;
        let err = read_member(&bytes, 1 << 20).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::CorruptDeflate);
        assert!(err.to_string().contains("invalid block type"), "{err}");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = write_member(b"{\"key\":\"value\"}", Some(&subfield(*b"Ab", b"x")), 6);
        for len in 0..bytes.len() {
            let err = read_member(&bytes[..len], 1 << 20)
                .map(|m| m.data.len())
                .unwrap_err();
            assert!(
                matches!(err.kind(), ErrorKind::Truncated | ErrorKind::NotGzip),
                "length {len}: {err}"
            );
        }
    }

    #[test]
    fn malformed_extra_is_ignored() {
        assert!(subfields(&[1, 2, 9, 0, 1]).is_empty());
        assert!(subfields(&[1, 2]).is_empty());
    }
}
