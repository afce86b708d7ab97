//! Compacting (a new snapshot and what to delete once it is written) and
//! rebuilding the index from the VM caches.

use super::fold::decode_segments;
use super::format::{Segment, Snapshot};
use super::read_plan::{ReadPlan, snapshot_name};
use crate::codec::DecodeLimits;
use crate::error::Result;
use std::collections::BTreeSet;

/// What compacting gives: the snapshot to write (create-only, at the next
/// generation) and, once it is written, what to delete.
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    pub snapshot: Snapshot,
    pub name: String,
    /// Segments now folded into the new snapshot.
    pub segments_to_delete: Vec<String>,
}

impl Compaction {
    /// What to do with it, without the snapshot: its name, its generation
    /// and the segments to delete once it is written.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "generation": self.snapshot.generation,
            "segmentsToDelete": self.segments_to_delete,
        })
    }
}

/// Compacts a snapshot with every segment listed beside it (those it
/// already folded included: folding again changes nothing). The new
/// snapshot's `folded` names exactly those segments, which are deleted once
/// it is written; a segment published after the listing stays unfolded.
///
/// Snapshots are written create-only: two compactions of the same snapshot
/// race for one name, and the loser deletes nothing.
pub fn compact(mut snapshot: Snapshot, segments: Vec<(String, Segment)>) -> Compaction {
    let names: BTreeSet<String> = segments.iter().map(|(name, _)| name.clone()).collect();
    for (_, segment) in segments {
        snapshot.put(&segment.vm, segment.entry);
    }
    snapshot.generation += 1;
    snapshot.folded = names.clone();
    Compaction {
        name: snapshot_name(snapshot.generation),
        snapshot,
        segments_to_delete: names.into_iter().collect(),
    }
}

/// Rebuilds the index from the VM caches themselves (`from_caches`, one
/// segment per VM, not published) and the segments listed in `plan`,
/// without reading any snapshot: the one there may be what is broken.
///
/// The new snapshot takes the generation after every snapshot listed, so
/// that it wins over them all, and is written create-only like any
/// compaction. A compaction racing the rebuild therefore either takes that
/// generation first (the rebuild starts again from a fresh listing) or
/// loses it and deletes nothing; it can never put back an older index over
/// the rebuilt one. Segments are folded as usual: one published after its
/// cache was read holds a later generation and wins.
pub fn rebuild(
    plan: &ReadPlan,
    from_caches: Vec<Segment>,
    listed: Vec<(String, Segment)>,
) -> Compaction {
    let mut snapshot = Snapshot::empty();
    snapshot.generation = plan.generation;
    for segment in from_caches {
        snapshot.put(&segment.vm, segment.entry);
    }
    compact(snapshot, listed)
}

/// [`rebuild`] from the bytes a rebuilder holds: each VM cache's segment
/// and the segments it read. A segment that does not decode is deleted
/// with the others: the caches it would describe were read just now.
pub fn rebuild_from_bytes(
    plan: &ReadPlan,
    from_caches: Vec<Vec<u8>>,
    listed: Vec<(String, Vec<u8>)>,
    limits: &DecodeLimits,
) -> Result<Compaction> {
    let from_caches = from_caches
        .iter()
        .map(|bytes| Segment::decode(bytes, limits))
        .collect::<Result<Vec<_>>>()?;
    let (listed, unreadable) = decode_segments(listed, limits);
    let mut compaction = rebuild(plan, from_caches, listed);
    compaction
        .segments_to_delete
        .extend(unreadable.into_iter().map(|(name, _)| name));
    compaction.segments_to_delete.sort();
    Ok(compaction)
}
