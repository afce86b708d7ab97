//! `cache.json.gz` as independent deflate chunks, so that a write
//! recompresses only what it changes.
//!
//! The file stays one gzip member of one JSON object, which any gunzip
//! (Xen Orchestra's included) reads as before. Inside, the body text
//! `{e1,e2,…,en}` is cut at entry boundaries into chunks of about
//! [`CHUNK_TARGET`] bytes, each deflated on its own by a fresh compressor
//! and ended by a sync flush (an empty stored block), so a chunk refers to
//! nothing before it and ends on a byte boundary: its compressed bytes can
//! be copied into another member as they are. The last chunk is always the
//! closing `}`, alone, in the stream's final block.
//!
//! A second FEXTRA sub-field, `BK`, lists the chunks (little-endian):
//!
//! | size | field |
//! |------|-------|
//! | 4    | number of chunks |
//! | 16 each | compressed length, plain length, CRC-32 of the plain text, entries |
//!
//! So adding a restore point costs the inflate of the last chunk and the
//! deflate of the new entry alone, as the continuation of that chunk's
//! stream (see [`extend`]; the chunk is cut and written again once full),
//! whatever the cache's size. Inside a chunk, a sync flush every
//! [`SYNC_EVERY`] bytes of text gives a delete of its first entries (at
//! retention, the oldest) a place to start copying from (see
//! [`trim_front`]); other deletes recompress the chunks that held what
//! they delete. The trailer's CRC-32 is combined from the chunks'. A
//! table that does not match the member (another writer, a damaged file)
//! is never trusted: [`splice`] then answers `None` and the caller writes
//! the whole cache.

use crate::error::{Error, ErrorKind, Result};
use crate::gzip;
use crate::header::CacheHeader;
use crate::json;
use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress_to_output, create_comp_flags_from_zip_params,
};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use serde_json::value::RawValue;

/// The FEXTRA sub-field that lists the chunks ("BK", brcache chunks).
pub const CHUNKS_SUBFIELD_ID: [u8; 2] = *b"BK";
/// About how much body text a chunk holds: small enough that rewriting one
/// is cheap next to the whole cache, large enough that restarting the
/// compressor costs little. Consecutive records are alike, and deflate
/// finds most of a record in the one before it; a chunk's first record has
/// none, so it compresses as if alone, many times larger than the others.
/// Measured on 1,000 XO-shaped records of 51 KB (51 MB of JSON; one stream
/// gzips to 2.09 MB): chunks of 1 MiB give 2.93 MB (+40%), 2 MiB +21%,
/// 4 MiB +11.5%, 8 MiB +6.7%. A cache under 4 MiB of JSON (45 such
/// records) is one chunk, and loses nothing.
pub const CHUNK_TARGET: usize = 4 << 20;
/// How much text at least lies between two sync flushes inside a chunk
/// (at entry boundaries): a delete of the chunk's first entries
/// recompresses up to the first flush a window past them, and copies the
/// rest (see [`trim_front`]).
const SYNC_EVERY: usize = 64 << 10;
/// FEXTRA holds at most 65,535 bytes, brcache's header and this table.
const MAX_CHUNKS: usize = 4000;
const CHUNK_RECORD: usize = 16;

/// One chunk of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub compressed: u32,
    pub plain: u32,
    pub crc: u32,
    pub entries: u32,
}

/// The `BK` payload for a table.
pub fn table_to_bytes(chunks: &[Chunk]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + chunks.len() * CHUNK_RECORD);
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    for chunk in chunks {
        for field in [chunk.compressed, chunk.plain, chunk.crc, chunk.entries] {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }
    out
}

/// A table from its payload; `None` when malformed.
pub fn table_from_bytes(data: &[u8]) -> Option<Vec<Chunk>> {
    let count = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    if data.len() != 4 + count * CHUNK_RECORD || count < 2 {
        return None;
    }
    let field = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
    Some(
        (0..count)
            .map(|i| {
                let at = 4 + i * CHUNK_RECORD;
                Chunk {
                    compressed: field(at),
                    plain: field(at + 4),
                    crc: field(at + 8),
                    entries: field(at + 12),
                }
            })
            .collect(),
    )
}

/// The plain text of one entry in the body, with its separator: `{` before
/// the first, `,` before the others.
fn piece(out: &mut String, first: bool, key: &str, value: &RawValue) {
    out.push(if first { '{' } else { ',' });
    json::push_string(out, key);
    out.push(':');
    out.push_str(value.get());
}

/// Deflates one chunk with a compressor of its own: a sync flush ends it on
/// a byte boundary (the stream goes on), or, for the last, the final block.
/// `cuts` (offsets in `plain`, in order) get a sync flush too: byte
/// boundaries inside the chunk where a delete can start copying (see
/// [`trim_front`]); the compressor keeps its window across them, so they
/// cost a few bytes each, not a restart.
fn deflate(plain: &[u8], cuts: &[usize], last: bool, level: u8) -> Vec<u8> {
    let mut compressor =
        CompressorOxide::new(create_comp_flags_from_zip_params(level.into(), 0, 0));
    let mut out = Vec::with_capacity(plain.len() / 4 + 16);
    let mut at = 0;
    for &cut in cuts.iter().filter(|&&c| c > 0 && c < plain.len()) {
        let (status, consumed) = compress_to_output(
            &mut compressor,
            &plain[at..cut],
            TDEFLFlush::Sync,
            |bytes| {
                out.extend_from_slice(bytes);
                true
            },
        );
        assert!(
            status == TDEFLStatus::Okay && consumed == cut - at,
            "deflating in memory cannot fail"
        );
        at = cut;
    }
    let flush = if last {
        TDEFLFlush::Finish
    } else {
        TDEFLFlush::Sync
    };
    let (status, consumed) = compress_to_output(&mut compressor, &plain[at..], flush, |bytes| {
        out.extend_from_slice(bytes);
        true
    });
    let expected = if last {
        TDEFLStatus::Done
    } else {
        TDEFLStatus::Okay
    };
    assert!(
        status == expected && consumed == plain.len() - at,
        "deflating in memory cannot fail"
    );
    out
}

/// The plain text of a chunk that does not end the stream, checked against
/// the table: its length and its CRC.
fn inflate(compressed: &[u8], chunk: &Chunk) -> Option<Vec<u8>> {
    let mut state = Box::<DecompressorOxide>::default();
    let mut out = vec![0; chunk.plain as usize];
    // The chunk ends on a sync flush: the stream goes on after it, so all
    // its input consumed and exactly its text out is success, whether the
    // inflater then asks for more input or for more room (a full buffer).
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
        | inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
    let (status, read, written) = decompress(&mut state, compressed, &mut out, 0, flags);
    let fine = matches!(
        status,
        TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput | TINFLStatus::Done
    );
    (fine && read == compressed.len() && written == out.len() && crc32fast::hash(&out) == chunk.crc)
        .then_some(out)
}

/// A chunk's entries, from its text (`{e…` or `,e…`); `None` unless it is
/// exactly a run of entries.
fn entries_of(text: &[u8]) -> Option<Vec<(String, Box<RawValue>)>> {
    let text = std::str::from_utf8(text).ok()?;
    let rest = text.strip_prefix('{').or_else(|| text.strip_prefix(','))?;
    let object = format!("{{{rest}}}");
    Some(json::parse_entries(&object).ok()?.into_iter().collect())
}

/// A chunk ready to be written: its compressed bytes and its record.
struct Written {
    bytes: Vec<u8>,
    chunk: Chunk,
}

fn written(plain: &str, entries: usize, last: bool, level: u8) -> Written {
    written_cut(plain, &[], entries, last, level)
}

/// [`written`], with sync flushes at `cuts` (see [`deflate`]).
fn written_cut(plain: &str, cuts: &[usize], entries: usize, last: bool, level: u8) -> Written {
    let bytes = deflate(plain.as_bytes(), cuts, last, level);
    Written {
        chunk: Chunk {
            compressed: bytes.len() as u32,
            plain: plain.len() as u32,
            crc: crc32fast::hash(plain.as_bytes()),
            entries: entries as u32,
        },
        bytes,
    }
}

/// Cuts entries into chunks of about `target` bytes of text; the first
/// chunk of the body (`first`) opens the object.
fn chunks_of<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a RawValue)>,
    mut first: bool,
    target: usize,
    level: u8,
) -> Vec<Written> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut cuts = Vec::new();
    let mut count = 0;
    for (key, value) in entries {
        if text.len() - cuts.last().copied().unwrap_or(0) >= SYNC_EVERY {
            cuts.push(text.len());
        }
        piece(&mut text, first, key, value);
        first = false;
        count += 1;
        if text.len() >= target {
            out.push(written_cut(&text, &cuts, count, false, level));
            text.clear();
            cuts.clear();
            count = 0;
        }
    }
    if count > 0 {
        out.push(written_cut(&text, &cuts, count, false, level));
    }
    out
}

/// The whole member, from its chunks (the closing `}` added).
fn assemble(header: Option<&CacheHeader>, mut chunks: Vec<Written>, level: u8) -> Vec<u8> {
    if chunks.is_empty() {
        chunks.push(written("{", 0, false, level));
    }
    chunks.push(written("}", 0, true, level));
    let table: Vec<Chunk> = chunks.iter().map(|w| w.chunk).collect();
    let mut extra = header.map(|h| h.to_extra()).unwrap_or_default();
    extra.extend_from_slice(&gzip::subfield(CHUNKS_SUBFIELD_ID, &table_to_bytes(&table)));
    let mut crc = crc32fast::Hasher::new();
    let mut size: u64 = 0;
    for chunk in &table {
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            chunk.crc,
            chunk.plain.into(),
        ));
        size += u64::from(chunk.plain);
    }
    let deflated: Vec<&[u8]> = chunks.iter().map(|w| &w.bytes[..]).collect();
    gzip::write_member_parts(&deflated, Some(&extra), crc.finalize(), size as u32)
}

/// Encodes entries (in order) with `header` as a chunked member.
pub fn encode<'a>(
    header: Option<&CacheHeader>,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a RawValue)> + Clone,
    level: u8,
) -> Vec<u8> {
    encode_with_target(header, entries, level, CHUNK_TARGET)
}

/// [`encode`] with chunks of about `target` bytes (tests use small ones, to
/// see many chunks in little data).
pub fn encode_with_target<'a>(
    header: Option<&CacheHeader>,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a RawValue)> + Clone,
    level: u8,
    target: usize,
) -> Vec<u8> {
    // Past MAX_CHUNKS chunks the table would not fit in FEXTRA: bigger ones.
    let total: usize = entries
        .clone()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let target = target.max(total / (MAX_CHUNKS - 2) + 1);
    let chunks = chunks_of(entries, true, target, level);
    assemble(header, chunks, level)
}

/// A chunked member taken apart: its chunks' records and compressed bytes.
struct Parsed<'a> {
    table: Vec<Chunk>,
    deflated: Vec<&'a [u8]>,
}

/// Takes a member apart by its table, if it has one that matches it:
/// lengths that add up to the deflate stream, the trailer's size and CRC.
fn parse(bytes: &[u8]) -> Option<Parsed<'_>> {
    let (header, body_start) = gzip::read_header(bytes).ok()?;
    let table = gzip::subfields(header.extra?)
        .into_iter()
        .find(|(id, _)| *id == CHUNKS_SUBFIELD_ID)
        .and_then(|(_, data)| table_from_bytes(data))?;
    let trailer_start = bytes.len().checked_sub(8)?;
    let body = bytes.get(body_start..trailer_start)?;
    let mut deflated = Vec::with_capacity(table.len());
    let mut at = 0usize;
    let mut crc = crc32fast::Hasher::new();
    let mut size: u32 = 0;
    for chunk in &table {
        let end = at.checked_add(chunk.compressed as usize)?;
        deflated.push(body.get(at..end)?);
        at = end;
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            chunk.crc,
            chunk.plain.into(),
        ));
        size = size.wrapping_add(chunk.plain);
    }
    let trailer = &bytes[trailer_start..];
    let fits = at == body.len()
        && trailer[..4] == crc.finalize().to_le_bytes()
        && trailer[4..] == size.to_le_bytes()
        && table.last().is_some_and(|c| c.plain == 1 && c.entries == 0);
    fits.then_some(Parsed { table, deflated })
}

/// What a write does to a cache's entries, in the entries' order.
pub struct Edit<'a> {
    /// Entries to add, every key after every key the cache holds, in order.
    pub appended: &'a [(String, Box<RawValue>)],
    /// Keys to remove (absent ones are ignored).
    pub removed: &'a [String],
}

/// The member with `edit` applied and `header` in place of the old one,
/// reusing the compressed bytes of every chunk the edit does not touch; or
/// `None` when the member cannot be edited so (no table, a table that does
/// not match, an append that would not come last): the caller then writes
/// the whole cache, which [`encode`] does. New chunks are of about `target`
/// bytes ([`CHUNK_TARGET`] but in tests).
pub fn splice_with_target(
    bytes: &[u8],
    header: &CacheHeader,
    edit: &Edit,
    level: u8,
    target: usize,
) -> Option<Vec<u8>> {
    let Parsed { table, deflated } = parse(bytes)?;
    let data = table.len() - 1; // the last chunk is the closing brace
    let mut keep: Vec<Written> = Vec::with_capacity(data + 1);
    // The table is trusted for the chunks copied as they are: it matches
    // the trailer, and were a copied chunk damaged all the same, the
    // result's CRC would not match its body, and the next read would
    // rebuild the cache from the metadata files as for any damaged cache.
    let mut removed: Vec<&str> = edit.removed.iter().map(String::as_str).collect();
    removed.sort_unstable();
    let mut last_key: Option<String> = None;
    // A chunk is inflated only when it may hold a removed key, when it is
    // the last (whose last key the appends must follow), or when it must
    // open the object in place of a chunk emptied before it. Keys are in
    // order, so a removal costs the inflate of the chunks up to the one
    // that held it (deletes at retention remove the oldest: the first).
    let mut pending_removals = !removed.is_empty();
    let mut tail: Vec<(String, Box<RawValue>)> = Vec::new();
    // Whether a kept chunk opens the object: the chunks after it then keep
    // their leading commas. An entry-less chunk is only ever the `{` of an
    // empty body, which is dropped (the appends, or `assemble`, open it).
    let mut opened = false;
    for i in 0..data {
        let chunk = table[i];
        let copy = || Written {
            bytes: deflated[i].to_vec(),
            chunk,
        };
        if !pending_removals
            && (i != data - 1 || edit.appended.is_empty())
            && (opened || (i == 0 && chunk.entries > 0))
        {
            keep.push(copy());
            opened = true;
            continue;
        }
        if i == 0 && pending_removals && (i != data - 1 || edit.appended.is_empty()) {
            // Deletes at retention remove the oldest entries: the front
            // of the first chunk.
            if let Some(trimmed) = trim_front(deflated[i], &chunk, &removed, level) {
                keep.push(trimmed);
                opened = true;
                pending_removals = false;
                continue;
            }
        }
        let text = inflate(deflated[i], &chunk)?;
        let entries = entries_of(&text)?;
        if entries.len() != chunk.entries as usize || (i == 0) != text.starts_with(b"{") {
            return None;
        }
        if let Some((key, _)) = entries.last() {
            pending_removals = removed.iter().any(|r| *r > key.as_str());
            last_key = Some(key.clone());
        }
        let survivors: Vec<(&str, &RawValue)> = entries
            .iter()
            .filter(|(key, _)| removed.binary_search(&key.as_str()).is_err())
            .map(|(key, value)| (key.as_str(), &**value))
            .collect();
        // Extended in place only if something before it opens the object
        // (or it does): a last chunk whose every predecessor was emptied
        // starts with a comma, and is written again below, opening it.
        if i == data - 1
            && !edit.appended.is_empty()
            && survivors.len() == entries.len()
            && (opened || i == 0)
        {
            if let Some(extended) =
                extend(deflated[i], &chunk, &text, &entries, edit, target, level)
            {
                keep.push(extended);
                return Some(assemble(Some(header), keep, level));
            }
        }
        if i == data - 1 && !edit.appended.is_empty() {
            // The appends join the last chunk, which is written again.
            tail = survivors
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_owned()))
                .collect();
            break;
        }
        if survivors.is_empty() {
            continue;
        }
        if survivors.len() == entries.len() && (opened || i == 0) {
            keep.push(copy());
        } else {
            keep.extend(chunks_of(survivors, !opened, target, level));
        }
        opened = true;
    }
    if let (Some(last), Some((first, _))) = (&last_key, edit.appended.first()) {
        if first <= last {
            return None;
        }
    }
    if edit.appended.windows(2).any(|w| w[0].0 >= w[1].0) {
        return None;
    }
    let appended = tail
        .iter()
        .chain(edit.appended)
        .map(|(k, v)| (k.as_str(), &**v));
    keep.extend(chunks_of(appended, !opened, target, level));
    if keep.len() + 1 > MAX_CHUNKS {
        return None;
    }
    Some(assemble(Some(header), keep, level))
}

/// The last chunk with `edit`'s appends after its entries, its compressed
/// bytes kept and only the new text deflated, as the continuation of the
/// chunk's own stream: the compressor is first shown the chunk's last
/// 32 KiB (deflate's window), its output thrown away up to the sync flush
/// that ends it, so what follows may refer back to the previous record as
/// a single stream's would, and costs about what it would there. The
/// chunk still refers to nothing before it. `None` when the appends would
/// not come last, or would grow the chunk past `target` (then it is cut
/// and written again).
fn extend(
    compressed: &[u8],
    chunk: &Chunk,
    text: &[u8],
    entries: &[(String, Box<RawValue>)],
    edit: &Edit,
    target: usize,
    level: u8,
) -> Option<Written> {
    let (last, _) = entries.last()?;
    if edit.appended.first().is_none_or(|(first, _)| first <= last)
        || edit.appended.windows(2).any(|w| w[0].0 >= w[1].0)
    {
        return None;
    }
    let mut more = String::new();
    for (key, value) in edit.appended {
        piece(&mut more, false, key, value);
    }
    let plain = text.len().checked_add(more.len())?;
    if plain > target || plain > u32::MAX as usize {
        return None;
    }
    let window = &text[text.len().saturating_sub(WINDOW)..];
    let continued = deflate_after(window, more.as_bytes(), level);
    let mut crc = crc32fast::Hasher::new_with_initial_len(chunk.crc, chunk.plain.into());
    crc.combine(&crc32fast::Hasher::new_with_initial_len(
        crc32fast::hash(more.as_bytes()),
        more.len() as u64,
    ));
    let mut bytes = Vec::with_capacity(compressed.len() + continued.len());
    bytes.extend_from_slice(compressed);
    bytes.extend_from_slice(&continued);
    Some(Written {
        chunk: Chunk {
            compressed: u32::try_from(bytes.len()).ok()?,
            plain: plain as u32,
            crc: crc.finalize(),
            entries: chunk.entries.checked_add(edit.appended.len() as u32)?,
        },
        bytes,
    })
}

/// The first chunk without `removed` (in order), when they are its first
/// entries: only the text up to the first sync flush a window past them is
/// deflated again, and the chunk's compressed bytes from that flush on are
/// kept, for what they decode to depends on nothing but the 32 KiB before
/// them, which stay the same. The flush is found by its marker (an empty
/// stored block, `00 00 FF FF`) and proved: the bytes after it, inflated
/// from a fresh state with the window before it, must give the rest of the
/// chunk, its CRC the table's. `None` when there is no such flush (a chunk
/// written before the flushes were, or removals elsewhere): the caller
/// writes the chunk again.
fn trim_front(compressed: &[u8], chunk: &Chunk, removed: &[&str], level: u8) -> Option<Written> {
    const MARKER: [u8; 4] = [0, 0, 0xFF, 0xFF];
    // Past that much text, recompressing it all costs little more.
    const GIVE_UP: usize = 8 * SYNC_EVERY;
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
        | inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
    let plain = chunk.plain as usize;
    let mut state = Box::<DecompressorOxide>::default();
    let mut text = vec![0; plain];
    let (mut read, mut length) = (0, 0);
    for at in memchr::memmem::find_iter(compressed, &MARKER) {
        let flush = at + MARKER.len();
        if flush <= read || flush >= compressed.len() {
            continue;
        }
        let (status, consumed, written) = decompress(
            &mut state,
            &compressed[read..flush],
            &mut text,
            length,
            flags,
        );
        if !matches!(
            status,
            TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput
        ) {
            return None;
        }
        read += consumed;
        length += written;
        if read != flush {
            continue;
        }
        if length > GIVE_UP {
            return None;
        }
        // The text so far must be whole entries, the first ones removed
        // and a window's worth after them.
        let Some(entries) = entries_of(&text[..length]) else {
            continue;
        };
        if text[0] != b'{' {
            return None;
        }
        if entries.len() <= removed.len() {
            continue;
        }
        if entries.iter().zip(removed).any(|((key, _), r)| key != r) {
            return None;
        }
        let mut gone = String::new();
        for (j, (key, value)) in entries.iter().take(removed.len()).enumerate() {
            piece(&mut gone, j == 0 && text[0] == b'{', key, value);
        }
        if !text.starts_with(gone.as_bytes()) || text.get(gone.len()) != Some(&b',') {
            return None;
        }
        if length - gone.len() - 1 < WINDOW {
            continue;
        }
        // The rest, from a fresh state with the window before it.
        let rest = plain - length;
        let mut after = vec![0; WINDOW + rest];
        after[..WINDOW].copy_from_slice(&text[length - WINDOW..length]);
        let mut fresh = Box::<DecompressorOxide>::default();
        let (status, consumed, written) =
            decompress(&mut fresh, &compressed[flush..], &mut after, WINDOW, flags);
        let fine = matches!(
            status,
            TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput | TINFLStatus::Done
        );
        let rest_crc = crc32fast::hash(&after[WINDOW..]);
        let mut crc = crc32fast::Hasher::new_with_initial_len(
            crc32fast::hash(&text[..length]),
            length as u64,
        );
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            rest_crc,
            rest as u64,
        ));
        if !fine
            || consumed != compressed.len() - flush
            || written != rest
            || crc.finalize() != chunk.crc
        {
            // Not a flush after all: the marker's bytes were data.
            continue;
        }
        let mut head = String::with_capacity(length - gone.len());
        head.push('{');
        head.push_str(std::str::from_utf8(&text[gone.len() + 1..length]).ok()?);
        let head_bytes = deflate(head.as_bytes(), &[], false, level);
        let mut crc = crc32fast::Hasher::new_with_initial_len(
            crc32fast::hash(head.as_bytes()),
            head.len() as u64,
        );
        crc.combine(&crc32fast::Hasher::new_with_initial_len(
            rest_crc,
            rest as u64,
        ));
        let mut bytes = head_bytes;
        bytes.extend_from_slice(&compressed[flush..]);
        return Some(Written {
            chunk: Chunk {
                compressed: u32::try_from(bytes.len()).ok()?,
                plain: u32::try_from(head.len() + rest).ok()?,
                crc: crc.finalize(),
                entries: chunk.entries.checked_sub(removed.len() as u32)?,
            },
            bytes,
        });
    }
    None
}

/// Deflate's window: how far back a match may refer.
const WINDOW: usize = 32 << 10;

/// Deflates `plain` as the continuation of a stream whose text so far
/// ends with `window` (at most [`WINDOW`] bytes): blocks that start on a
/// byte boundary and end on a sync flush, which may refer back into
/// `window` and nowhere before it.
fn deflate_after(window: &[u8], plain: &[u8], level: u8) -> Vec<u8> {
    debug_assert!(window.len() <= WINDOW);
    let mut compressor =
        CompressorOxide::new(create_comp_flags_from_zip_params(level.into(), 0, 0));
    // miniz_oxide has no preset dictionary: compressing the window and
    // dropping the output does the same (a sync flush ends it on a byte
    // boundary, and the compressor keeps what it saw to match against).
    let (status, consumed) =
        compress_to_output(&mut compressor, window, TDEFLFlush::Sync, |_| true);
    assert!(
        status == TDEFLStatus::Okay && consumed == window.len(),
        "deflating in memory cannot fail"
    );
    let mut out = Vec::with_capacity(plain.len() / 4 + 16);
    let (status, consumed) =
        compress_to_output(&mut compressor, plain, TDEFLFlush::Sync, |bytes| {
            out.extend_from_slice(bytes);
            true
        });
    assert!(
        status == TDEFLStatus::Okay && consumed == plain.len(),
        "deflating in memory cannot fail"
    );
    out
}

/// Whether a member's body, inflated whole, is what its table says: for
/// tests and the fuzzer, which must never see `splice` write a member that
/// reads otherwise than a full encode.
pub fn table_matches(bytes: &[u8]) -> Result<bool> {
    let Some(Parsed { table, deflated }) = parse(bytes) else {
        return Ok(false);
    };
    for (i, chunk) in table.iter().enumerate().take(table.len() - 1) {
        if inflate(deflated[i], chunk).is_none() {
            return Err(Error::new(
                ErrorKind::CorruptDeflate,
                format!("chunk {i} does not inflate to what the table says"),
            ));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, DecodeLimits};
    use crate::fingerprint::Fingerprint;
    use crate::header::FORMAT_VERSION;

    fn key(i: usize) -> String {
        format!("/xo-vm-backups/v/2024{:04}T000000Z.json", i)
    }

    /// An entry of about `size` bytes of text.
    fn value(i: usize, size: usize) -> Box<RawValue> {
        let pad: String = (0..size)
            .map(|j| char::from(b'a' + ((i * 7 + j) % 26) as u8))
            .collect();
        RawValue::from_string(format!("{{\"n\":{i},\"pad\":\"{pad}\"}}")).unwrap()
    }

    fn header(entries: usize, generation: u64) -> CacheHeader {
        CacheHeader {
            version: FORMAT_VERSION,
            generation,
            entries: entries as u32,
            fingerprint: Some(Fingerprint::of_names([format!("{entries}").as_str()])),
        }
    }

    /// Small chunks: many of them in little data.
    const TARGET: usize = 16 << 10;

    fn cache(entries: &[(String, Box<RawValue>)], generation: u64) -> Vec<u8> {
        let h = header(entries.len(), generation);
        encode_with_target(
            Some(&h),
            entries.iter().map(|(k, v)| (k.as_str(), &**v)),
            6,
            TARGET,
        )
    }

    fn splice(bytes: &[u8], header: &CacheHeader, edit: &Edit, level: u8) -> Option<Vec<u8>> {
        splice_with_target(bytes, header, edit, level, TARGET)
    }

    fn body(bytes: &[u8]) -> String {
        codec::decode_text(bytes, &DecodeLimits::default())
            .unwrap()
            .text
    }

    fn entries(range: std::ops::Range<usize>, size: usize) -> Vec<(String, Box<RawValue>)> {
        range.map(|i| (key(i), value(i, size))).collect()
    }

    #[test]
    fn a_chunked_cache_is_plain_gzip_json() {
        for (count, size) in [(0, 0), (1, 10), (50, 3000), (300, 500)] {
            let all = entries(0..count, size);
            let bytes = cache(&all, 3);
            let member = gzip::read_member(&bytes, 1 << 30).unwrap();
            let text = String::from_utf8(member.data).unwrap();
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).unwrap();
            assert_eq!(object.len(), count);
            assert_eq!(
                CacheHeader::from_extra(member.header.extra),
                Some(header(count, 3))
            );
            assert!(table_matches(&bytes).unwrap());
            if count * size > 2 * TARGET {
                assert!(parse(&bytes).unwrap().table.len() > 3, "several chunks");
            }
        }
    }

    #[test]
    fn appends_and_removals_read_as_a_full_rewrite() {
        let all = entries(0..120, 2000);
        let bytes = cache(&all[..100], 1);
        let h = header(101, 2);
        // Append one, then several.
        for extra in [1, 20] {
            let edit = Edit {
                appended: &all[100..100 + extra],
                removed: &[],
            };
            let spliced = splice(&bytes, &h, &edit, 6).unwrap();
            assert_eq!(body(&spliced), body(&cache(&all[..100 + extra], 2)));
            assert!(table_matches(&spliced).unwrap());
            assert_eq!(codec::read_header(&spliced).unwrap(), Some(h));
        }
        // Remove the oldest, a middle one, the newest, all of a chunk.
        let removals: Vec<Vec<usize>> = vec![
            vec![0],
            vec![50],
            vec![99],
            (0..40).collect(),
            (0..100).collect(),
        ];
        for removed in removals {
            let keys: Vec<String> = removed.iter().map(|&i| key(i)).collect();
            let edit = Edit {
                appended: &[],
                removed: &keys,
            };
            let spliced = splice(&bytes, &h, &edit, 6).unwrap();
            let rest: Vec<_> = all[..100]
                .iter()
                .filter(|(k, _)| !keys.contains(k))
                .cloned()
                .collect();
            assert_eq!(
                body(&spliced),
                body(&cache(&rest, 2)),
                "removing {removed:?}"
            );
            assert!(table_matches(&spliced).unwrap());
        }
        // Both at once, and an empty cache grown.
        let keys = vec![key(3)];
        let edit = Edit {
            appended: &all[100..101],
            removed: &keys,
        };
        let expected: Vec<_> = all[..101]
            .iter()
            .filter(|(k, _)| *k != key(3))
            .cloned()
            .collect();
        assert_eq!(
            body(&splice(&bytes, &h, &edit, 6).unwrap()),
            body(&cache(&expected, 2))
        );
        let empty = cache(&[], 1);
        let edit = Edit {
            appended: &all[..2],
            removed: &[],
        };
        assert_eq!(
            body(&splice(&empty, &h, &edit, 6).unwrap()),
            body(&cache(&all[..2], 2))
        );
    }

    /// A backup schedule at retention on a cache of one chunk (as a VM's
    /// under 4 MiB of JSON is): one add, then the oldest deleted, again and
    /// again. Every cache reads as a full rewrite; an add keeps the
    /// chunk's compressed bytes and deflates only the new entry; a delete
    /// deflates only the text up to a flush a window past what it removes
    /// and keeps the chunk's bytes from there on; the size stays near a
    /// full rewrite's (each add's blocks carry their own code tables: +7%
    /// here, on records of about 280 compressed bytes; +2.3% on the
    /// bench's records of 20 KB, 1.1 KB compressed).
    #[test]
    fn adds_and_deletes_at_retention_touch_only_the_ends_of_a_chunk() {
        const ONE_CHUNK: usize = 4 << 20;
        // Records alike but for some noise, as backups of one VM are: a
        // record compresses to about a tenth of its text.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let all: Vec<(String, Box<RawValue>)> = (0..160)
            .map(|i| {
                let noise: String = (0..400)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        char::from(b"0123456789abcdef"[(seed % 16) as usize])
                    })
                    .collect();
                let common = value(0, 3000);
                let text = format!(
                    "{{\"n\":{i},\"noise\":\"{noise}\",\"common\":{}}}",
                    common.get()
                );
                (key(i), RawValue::from_string(text).unwrap())
            })
            .collect();
        let full = |range: std::ops::Range<usize>, generation: u64| {
            encode_with_target(
                Some(&header(range.len(), generation)),
                all[range].iter().map(|(k, v)| (k.as_str(), &**v)),
                6,
                ONE_CHUNK,
            )
        };
        let (mut start, mut end) = (0, 100);
        let mut bytes = full(start..end, 1);
        assert_eq!(parse(&bytes).unwrap().table.len(), 2, "one data chunk");
        for step in 0..50u64 {
            let edit = Edit {
                appended: &all[end..end + 1],
                removed: &[],
            };
            let added = splice_with_target(
                &bytes,
                &header(end + 1 - start, 2 + step),
                &edit,
                6,
                ONE_CHUNK,
            )
            .unwrap();
            end += 1;
            assert_eq!(body(&added), body(&full(start..end, 1)), "step {step}");
            assert!(table_matches(&added).unwrap());
            let (old, new) = (parse(&bytes).unwrap(), parse(&added).unwrap());
            assert!(
                new.deflated[0].starts_with(old.deflated[0]),
                "step {step}: the add kept the chunk's bytes"
            );
            let removed = vec![all[start].0.clone()];
            let edit = Edit {
                appended: &[],
                removed: &removed,
            };
            let deleted = splice_with_target(
                &added,
                &header(end - start - 1, 3 + step),
                &edit,
                6,
                ONE_CHUNK,
            )
            .unwrap();
            start += 1;
            assert_eq!(body(&deleted), body(&full(start..end, 1)), "step {step}");
            assert!(table_matches(&deleted).unwrap());
            let (old, new) = (parse(&added).unwrap(), parse(&deleted).unwrap());
            let kept = old.deflated[0]
                .iter()
                .rev()
                .zip(new.deflated[0].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            assert!(
                kept > old.deflated[0].len() / 2,
                "step {step}: the delete kept the chunk's tail ({kept} of {} bytes)",
                old.deflated[0].len()
            );
            bytes = deleted;
        }
        let rewritten = full(start..end, 1);
        assert!(
            bytes.len() * 100 <= rewritten.len() * 110,
            "{} bytes spliced, {} rewritten",
            bytes.len(),
            rewritten.len()
        );
    }

    /// A chunk written without flushes inside (by an earlier brcache), or
    /// a removal that is not at its front, is deflated again whole: the
    /// result still reads as a full rewrite.
    #[test]
    fn a_delete_without_a_flush_to_keep_from_writes_the_chunk_again() {
        let all = entries(0..100, 3000);
        let text = {
            let mut text = String::new();
            for (i, (k, v)) in all.iter().enumerate() {
                piece(&mut text, i == 0, k, v);
            }
            text
        };
        // One data chunk, no flush inside it.
        let chunks = vec![written(&text, all.len(), false, 6)];
        let bytes = assemble(Some(&header(100, 1)), chunks, 6);
        for removed in [vec![key(0)], vec![key(50)], vec![key(0), key(99)]] {
            let edit = Edit {
                appended: &[],
                removed: &removed,
            };
            let spliced =
                splice_with_target(&bytes, &header(100 - removed.len(), 2), &edit, 6, 4 << 20)
                    .unwrap();
            let expected: Vec<_> = all
                .iter()
                .filter(|(k, _)| !removed.contains(k))
                .cloned()
                .collect();
            assert_eq!(body(&spliced), body(&cache(&expected, 2)));
            assert!(table_matches(&spliced).unwrap());
        }
    }

    #[test]
    fn only_the_chunks_an_edit_touches_are_rewritten() {
        let all = entries(0..201, 3000);
        let bytes = cache(&all[..200], 1);
        let before = parse(&bytes).unwrap();
        let edit = Edit {
            appended: &all[200..],
            removed: &[],
        };
        let spliced = splice(&bytes, &header(201, 2), &edit, 6).unwrap();
        let after = parse(&spliced).unwrap();
        let n = before.table.len();
        // Every data chunk but the last is the same bytes.
        assert_eq!(&after.deflated[..n - 2], &before.deflated[..n - 2]);
        let keys = vec![key(0)];
        let removal = splice(
            &bytes,
            &header(199, 2),
            &Edit {
                appended: &[],
                removed: &keys,
            },
            6,
        )
        .unwrap();
        let after = parse(&removal).unwrap();
        assert_eq!(
            &after.deflated[1..after.deflated.len() - 1],
            &before.deflated[1..n - 1]
        );
    }

    #[test]
    fn what_cannot_be_spliced_is_refused_not_guessed() {
        let all = entries(0..12, 100);
        let bytes = cache(&all[..10], 1);
        let h = header(11, 2);
        // An append that would not come last.
        let early = vec![(key(5).replace("T000000Z", "T000001Z"), value(5, 10))];
        assert!(
            splice(
                &bytes,
                &h,
                &Edit {
                    appended: &early,
                    removed: &[]
                },
                6
            )
            .is_none()
        );
        let existing = vec![all[9].clone()];
        assert!(
            splice(
                &bytes,
                &h,
                &Edit {
                    appended: &existing,
                    removed: &[]
                },
                6
            )
            .is_none()
        );
        let unordered = vec![all[11].clone(), all[10].clone()];
        assert!(
            splice(
                &bytes,
                &h,
                &Edit {
                    appended: &unordered,
                    removed: &[]
                },
                6
            )
            .is_none()
        );
        // No table: a cache XO wrote.
        let xo = gzip::write_member(b"{}", None, 6);
        assert!(
            splice(
                &xo,
                &h,
                &Edit {
                    appended: &all[10..11],
                    removed: &[]
                },
                6
            )
            .is_none()
        );
        // A table the member does not match: a flipped trailer, a cut body.
        let mut flipped = bytes.clone();
        let at = flipped.len() - 6;
        flipped[at] ^= 1;
        assert!(
            splice(
                &flipped,
                &h,
                &Edit {
                    appended: &all[10..11],
                    removed: &[]
                },
                6
            )
            .is_none()
        );
        let mut cut = bytes[..bytes.len() - 9].to_vec();
        cut.extend_from_slice(&bytes[bytes.len() - 8..]);
        assert!(
            splice(
                &cut,
                &h,
                &Edit {
                    appended: &all[10..11],
                    removed: &[]
                },
                6
            )
            .is_none()
        );
    }

    /// A record of about `size` bytes: alike from one record to the next
    /// (deflate finds most of one in the one before), with some noise.
    fn record(i: usize, size: usize, seed: u64) -> Box<RawValue> {
        let mut state = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let noise: String = (0..size / 10)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b"0123456789abcdef"[(state % 16) as usize])
            })
            .collect();
        let common = value(0, size);
        RawValue::from_string(format!(
            "{{\"n\":{i},\"noise\":\"{noise}\",\"common\":{}}}",
            common.get()
        ))
        .unwrap()
    }

    /// One edit of a schedule: adds after the newest, deletes of the oldest
    /// or of any entries.
    #[derive(Debug, Clone)]
    enum Step {
        Add(usize),
        DeleteOldest(usize),
        Delete(Vec<usize>),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (1usize..4).prop_map(Step::Add),
            3 => (1usize..4).prop_map(Step::DeleteOldest),
            1 => proptest::collection::vec(0usize..200, 1..4).prop_map(Step::Delete),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// Whatever the schedule, record sizes and chunk size, every splice
        /// reads exactly as a full rewrite of the same entries, its table
        /// matches, and a splice that is refused leaves the caller a full
        /// rewrite to make (as the write path does).
        #[test]
        fn every_splice_reads_as_a_full_rewrite(
            start in 1usize..60,
            size in 200usize..6000,
            small in proptest::bool::ANY,
            seed in proptest::prelude::any::<u64>(),
            steps in proptest::collection::vec(step(), 1..16),
        ) {
            let target = if small { 48 << 10 } else { 4 << 20 };
            let all: Vec<(String, Box<RawValue>)> =
                (0..start + 64).map(|i| (key(i), record(i, size, seed))).collect();
            let full = |live: &[usize], generation: u64| {
                encode_with_target(
                    Some(&header(live.len(), generation)),
                    live.iter().map(|&i| (all[i].0.as_str(), &*all[i].1)),
                    6,
                    target,
                )
            };
            let mut live: Vec<usize> = (0..start).collect();
            let mut next = start;
            let mut bytes = full(&live, 1);
            for (n, step) in steps.iter().enumerate() {
                let generation = 2 + n as u64;
                let (appended, removed): (Vec<(String, Box<RawValue>)>, Vec<String>) = match step {
                    Step::Add(k) => {
                        let k = (*k).min(all.len() - next);
                        let added = all[next..next + k].to_vec();
                        live.extend(next..next + k);
                        next += k;
                        (added, Vec::new())
                    }
                    Step::DeleteOldest(k) => {
                        let k = (*k).min(live.len());
                        let gone: Vec<String> = live.drain(..k).map(|i| all[i].0.clone()).collect();
                        (Vec::new(), gone)
                    }
                    Step::Delete(at) => {
                        let mut gone = Vec::new();
                        for &a in at {
                            if !live.is_empty() {
                                let i = live.remove(a % live.len());
                                gone.push(all[i].0.clone());
                            }
                        }
                        (Vec::new(), gone)
                    }
                };
                let edit = Edit { appended: &appended, removed: &removed };
                let expected = full(&live, generation);
                match splice_with_target(&bytes, &header(live.len(), generation), &edit, 6, target) {
                    Some(spliced) => {
                        proptest::prop_assert_eq!(body(&spliced), body(&expected), "step {}: {:?}", n, step);
                        proptest::prop_assert!(table_matches(&spliced).unwrap());
                        bytes = spliced;
                    }
                    None => bytes = expected,
                }
            }
        }
    }

    /// A chunk whose bytes past a flush were damaged is never spliced into
    /// a cache that reads otherwise: the proof of the flush fails, the
    /// chunk is inflated whole, its CRC does not match, and the splice is
    /// refused (the caller then rebuilds the cache from the metadata files).
    #[test]
    fn a_damaged_chunk_is_refused_not_copied() {
        let all = entries(0..120, 3000);
        let bytes = encode_with_target(
            Some(&header(120, 1)),
            all.iter().map(|(k, v)| (k.as_str(), &**v)),
            6,
            4 << 20,
        );
        let (_, body_start) = gzip::read_header(&bytes).unwrap();
        let chunk = parse(&bytes).unwrap().table[0];
        let removed = vec![key(0)];
        let edit = Edit {
            appended: &[],
            removed: &removed,
        };
        assert!(splice_with_target(&bytes, &header(119, 2), &edit, 6, 4 << 20).is_some());
        // A byte near the end of the first chunk, well past its first flush.
        let mut damaged = bytes.clone();
        damaged[body_start + chunk.compressed as usize - 40] ^= 0x55;
        assert!(splice_with_target(&damaged, &header(119, 2), &edit, 6, 4 << 20).is_none());
    }
}
