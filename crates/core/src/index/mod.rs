//! The repository-wide index: every VM's restore view in one place, so
//! that listing a repository costs a constant number of round trips
//! whatever its VM count.
//!
//! It lives on the share, beside the VM folders, in a hidden folder that
//! Xen Orchestra and VM listings skip (`xo-vm-backups/.brcache-index/`),
//! so a fresh server finds it. Two kinds of files, both written without any
//! repository-wide lock:
//!
//! - **Segments** (`<ms>-<random>-<vm>.json.gz`, or without `-<vm>` for an
//!   older release's, unique names, gzip JSON): after
//!   a writer updates a VM's cache, it publishes either what it changed (a
//!   *delta*: the summaries it put, the ids it removed) or the VM's whole
//!   restore view at that cache generation (a *view*: a first backup, a
//!   repair, a check, a seed). Writers of different VMs never contend; a
//!   segment is never rewritten.
//! - **Snapshots** (`snapshot-<generation>.json.gz`, or with `-<ms>-<random>`
//!   on a share without locks): the fold of an older snapshot and segments,
//!   written by whoever compacts; the segments it folded are then deleted
//!   (at once under the compaction lock, a grace period later without).
//!   A snapshot is written as a [`table`] (a row per VM, sized by VMs) and
//!   the parts that hold the VMs' entries; whole snapshots of the first
//!   format are still read.
//!
//! A reader lists the folder, then reads the newest snapshot, every
//! segment it has not folded and the parts it needs, in parallel: two
//! round trips for every VM (the parts listed go with the table), three
//! for the VM table or one VM (the parts the table names for them).
//!
//! Folding ([`Snapshot::fold_all`]) takes, per VM, the highest view by
//! (generation, fingerprint, time) and applies over it the deltas it has
//! not seen, a removal winning over any put; the result never depends on
//! the order segments are read in, and reading one twice changes nothing.
//! A VM whose view is empty (its last backup deleted) is kept as an empty
//! entry, so that a late segment of an older generation cannot bring it
//! back. An entry whose restore points are not the set its fingerprint
//! names, or made of deltas only, is in doubt ([`Snapshot::unsure`]): a
//! listing reads that VM from its cache.
//!
//! The index never has the last word: `check` compares each VM's entry with
//! its cache header (generation and fingerprint) and its folder, and
//! publishes a fresh entry for any VM that changed behind the index's back
//! (Xen Orchestra writes caches without segments).
//!
//! The code follows the files' life: [`format`] (the bytes), [`table`]
//! (the snapshot as a table and parts), [`fold`] (segments into a
//! snapshot, entries, loading), [`read_plan`] (the folder's names),
//! [`compaction`] (and rebuilds) and [`drift`]; an immutable repository's
//! index, create-only files in epoch folders, in [`epochs`].

mod compaction;
mod drift;
pub mod epochs;
mod fold;
mod format;
mod read_plan;
#[cfg(test)]
mod row_tests;
mod table;
#[cfg(test)]
mod tests;

// The index's vocabulary stays at `crate::index::…` whichever file it
// lives in.
pub use compaction::{Compaction, compact, rebuild, rebuild_from_bytes};
pub use drift::{CacheStates, Drift, drift, parse_caches};
pub use fold::{
    Loaded, Named, decode_segments, delta_of_bytes, entry_of, entry_of_bytes, named, rows_after,
    segment_of_bytes,
};
pub use format::{Body, Delta, RawSummary, Segment, Snapshot, Stored, VmEntry};
pub use read_plan::{
    ReadPlan, segment_name, segment_time, segment_vm, snapshot_name, snapshot_time,
    unique_snapshot_name, vm_segment_name,
};
pub use table::{
    PART_BYTES, Part, Row, Summary as TableSummary, TABLE_VERSION, Table, is_part, part_name,
    part_time,
};

/// The index folder, relative to the repository root.
pub const INDEX_DIR: &str = "xo-vm-backups/.brcache-index";
/// The index format of snapshots and view segments.
pub const FORMAT_VERSION: u32 = 1;
/// The format of delta segments: the next one, so that a release that
/// knows only views skips deltas as unreadable.
pub const DELTA_VERSION: u32 = 2;
/// How much earlier than a view a delta may be named and still not be in
/// it (ms): the time from a writer's clock reading to its delta being
/// listable, plus the clock skew between servers. A delta named before
/// `view time - SKEW` is taken as seen by the view; one named after is
/// applied over it, which changes nothing when the view already has it
/// (a put replaces a summary by id; a removal wins).
pub const SKEW_MS: u64 = 5 * 60 * 1000;
/// Segments past which a writer compacts. Each segment is one more read
/// (in parallel) for every listing; each compaction rewrites the table and
/// the parts of the VMs the segments changed (a whole snapshot was 7.8 MiB
/// at 1,000 VMs x 100).
pub const COMPACT_AFTER: usize = 64;
/// On a share without locks, how old the snapshot a compaction starts
/// from must be before the compaction deletes what it folded (ms); and
/// twice the longest a compaction may take from its listing to its
/// create (see `ops::index_ops::compact_unlocked`).
pub const GRACE_MS: u64 = 10 * 60 * 1000;
/// A reader reads with a snapshot only the segments named after its time
/// less this (ms), and those older that it did not fold in a second round
/// trip, rare: a segment listed by none of the compactions before it, its
/// writer's clock behind or its publication slow. Without it, a listing on
/// a share without locks would read every segment a compaction folded
/// until the cleanup a grace period later.
pub const READ_MARGIN_MS: u64 = 5_000;
/// How many segments inside that margin a reader reads with the snapshot
/// at most, before knowing whether it folded them: past this, only those
/// named after the snapshot, and the rest it did not fold in the second
/// round. A listing's requests then grow with the segments no snapshot
/// folded, never with those a compaction folded and left for the cleanup.
pub const MARGIN_READS: usize = 4;
/// Segments a listing finds unfolded past which it compacts, once it has
/// answered (see `ops::listing::restore_view`): writers compact only past
/// [`COMPACT_AFTER`], and each segment waiting is one more request for
/// every listing until then.
pub const LISTING_COMPACTS_AFTER: usize = 8;
