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
//! - [`chunked`]: the body as independent deflate chunks, so writes change only what changed.
//! - [`header`]: brcache's header in the gzip FEXTRA field.
//! - [`json`]: the body's shape and limits.
//! - [`fingerprint`]: a hash of the set of metadata names a cache covers.
//! - [`key`]: which keys may appear in a VM's cache (never outside its folder).
//! - [`entry`]: the one shape every entry has, whoever wrote it.
//! - [`vm_cache`]: a VM's cache; add, remove, merge and replay.
//! - [`coherency`]: cache against folder listing; reconcile, apply, rebuild.
//! - [`summary`]: the restore view's projection of a cache.
//! - [`splice`]: a write that changes a true cache without decoding it.
//! - [`index`]: the repository-wide index (journal segments and snapshots).
//! - [`encryption`]: repositories Xen Orchestra encrypts; opening, sealing.

pub mod chunked;
pub mod codec;
pub mod coherency;
pub mod document;
pub mod encryption;
pub mod entry;
pub mod error;
pub mod fingerprint;
pub mod gzip;
pub mod header;
pub mod index;
pub mod json;
pub mod key;
pub mod ops;
pub mod splice;
pub mod summary;
pub mod vm_cache;

pub use codec::{DecodeLimits, DecodedText, decode, decode_text, encode};
pub use coherency::{Listing, Plan, Repaired, Unreadable, apply, fast_path, rebuild, reconcile};
pub use document::CacheDocument;
pub use encryption::{Algorithm, Cipher};
pub use error::{Error, ErrorKind, Result};
pub use fingerprint::Fingerprint;
pub use header::CacheHeader;
pub use key::{MetadataName, VmId};
pub use summary::{Filter, Summary, summaries, summaries_of_bytes};
pub use vm_cache::{Change, VmCache};
