//! brcache-core: the logic of a backup repository's metadata cache, free of
//! I/O.
//!
//! A backup repository keeps, per VM folder `xo-vm-backups/<vm>/`, one
//! `<date>.json` metadata file per restore point and a `cache.json.gz` that
//! maps each metadata path to its record, so that listing the restore points
//! costs one read instead of one per file. This crate turns bytes and
//! directory listings into documents, bytes and plans; the caller does every
//! read and write.
//!
//! - `codec`: `cache.json.gz` bytes to a `CacheDocument` and back.
//! - `gzip`: the single-member gzip framing underneath.
//! - `chunked`: the body as independent deflate chunks, so writes change only what changed.
//! - `header`: brcache's header in the gzip FEXTRA field.
//! - `json`: the body's shape and limits.
//! - `fingerprint`: a hash of the set of metadata names a cache covers.
//! - `key`: which keys may appear in a VM's cache (never outside its folder).
//! - `entry`: the one shape every entry has, whoever wrote it.
//! - `vm_cache`: a VM's cache; add, remove, merge and replay.
//! - `coherency`: cache against folder listing; reconcile, apply, rebuild.
//! - `summary`: the restore view's projection of a cache.
//! - `splice`: a write that changes a true cache without decoding it.
//! - `index`: the repository-wide index (journal segments and snapshots).
//! - `encryption`: repositories Xen Orchestra encrypts; opening, sealing.
//! - [`ops`]: the repository operations, as values that ask for their I/O
//!   (the protocol; public as a module, since it is the API).
//!
//! The modules are private: the API is the list below, what the bindings
//! (`crates/bindings/`) and the tests use, so that moving code between
//! modules changes no caller.

mod chunked;
mod codec;
mod coherency;
mod document;
mod encryption;
mod entry;
mod error;
mod fingerprint;
mod gzip;
mod header;
mod index;
mod json;
mod key;
pub mod ops;
mod splice;
mod summary;
mod vm_cache;

// Errors: a stable `code()` per kind, the contract of every binding.
pub use error::{Error, ErrorKind, Result};

// `cache.json.gz` bytes: decoding (with limits), encoding, the header alone.
pub use codec::{
    DEFAULT_LEVEL, DecodeLimits, DecodedText, decode, decode_body_into, decode_records_text,
    decode_text, encode, encode_json, read_header,
};
pub use document::CacheDocument;
pub use fingerprint::Fingerprint;
pub use header::{CacheHeader, FORMAT_VERSION as CACHE_FORMAT_VERSION};
pub use json::check_records;

// The framing underneath, for tests that craft bytes: one gzip member, and
// the body as independent deflate chunks.
pub use chunked::{encode_with_target, table_matches};
pub use gzip::{read_member as read_gzip_member, write_member as write_gzip_member};

// A VM's cache and what is read from it.
pub use key::{BACKUP_DIR, CACHE_FILE, MetadataName, VmId};
pub use summary::{Filter, Summary, summaries, summaries_of_bytes};
pub use vm_cache::{Change, VmCache};

// A cache against its folder's listing: reconcile, apply, rebuild.
pub use coherency::{
    Files, Listing, Plan, Repaired, Unreadable, apply, fast_path, files_from, rebuild, reconcile,
};

// Writes that change a true cache without decoding it.
pub use splice::{splice_cache, splice_cache_with_target, splice_request};

// The repository-wide index (renamed where a name alone would be vague).
pub use index::{
    Body as SegmentBody, COMPACT_AFTER, CacheStates, Compaction, Delta, Drift,
    FORMAT_VERSION as INDEX_FORMAT_VERSION, GRACE_MS as INDEX_GRACE_MS, INDEX_DIR,
    LISTING_COMPACTS_AFTER, Loaded, Named, RawSummary, ReadPlan, Segment, Snapshot, VmEntry,
    compact, decode_segments, drift, entry_of, entry_of_bytes, named as named_segments,
    parse_caches, rebuild as rebuild_index, rebuild_from_bytes, segment_name, segment_of_bytes,
    segment_vm, snapshot_name, vm_segment_name,
};
// An immutable repository's index: create-only files in epoch folders.
pub use index::epochs::EPOCH_MS as INDEX_EPOCH_MS;
// The snapshot as a table (a row per VM) and parts (the VMs' entries).
pub use index::{
    PART_BYTES as INDEX_PART_BYTES, Part as IndexPart, Row as TableRow, Stored as StoredSnapshot,
    TABLE_VERSION as INDEX_TABLE_VERSION, Table as IndexTable, TableSummary, part_name, part_time,
};

// Encrypted repositories.
pub use encryption::{
    Algorithm, Cipher, open as open_encryption, read_descriptor as read_encryption_descriptor,
};
