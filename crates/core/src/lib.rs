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
//! - [`codec`]: `cache.json.gz` bytes to a [`CacheDocument`] and back.
//! - [`gzip`]: the single-member gzip framing underneath.
//! - [`header`]: brcache's header in the gzip FEXTRA field.
//! - [`json`]: the body's shape and limits.
//! - [`fingerprint`]: a hash of the set of metadata names a cache covers.

pub mod codec;
pub mod document;
pub mod error;
pub mod fingerprint;
pub mod gzip;
pub mod header;
pub mod json;

pub use codec::{DecodeLimits, DecodedText, decode, decode_text, encode};
pub use document::CacheDocument;
pub use error::{Error, ErrorKind, Result};
pub use fingerprint::Fingerprint;
pub use header::CacheHeader;
