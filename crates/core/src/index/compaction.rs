//! Compacting (a new snapshot and what to delete once it is written) and
//! rebuilding the index from the VM caches.

use super::fold::decode_segments;
use super::format::{Body, Segment, Snapshot};
use super::read_plan::{ReadPlan, snapshot_name};
use super::table::{Part, Table, lay_out, part_name};
use crate::codec::DecodeLimits;
use crate::error::Result;
use std::collections::BTreeSet;

/// What compacting gives: the snapshot to write (create-only, at the next
/// generation) and, once it is written, what to delete.
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    /// The fold: every VM's entry, or (from a table read in part) those of
    /// the VMs read.
    pub snapshot: Snapshot,
    pub name: String,
    /// Segments now folded into the new snapshot.
    pub segments_to_delete: Vec<String>,
    /// The snapshot as written: its table, once laid out
    /// ([`Compaction::lay_out`]).
    pub table: Table,
    /// The parts to create before the table.
    pub parts: Vec<(String, Part)>,
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

    /// Lays the fold out as a table and the parts to write (see
    /// [`super::table::lay_out`]): the VMs in `kept` keep their row of
    /// `base`, the others go to new parts named from `time_ms` and
    /// `random`. Without a base, every VM goes to a new part.
    pub fn lay_out(
        &mut self,
        base: Option<&Table>,
        kept: &BTreeSet<String>,
        read: &BTreeSet<String>,
        time_ms: u64,
        random: u64,
    ) {
        let generation = self.snapshot.generation;
        let (table, parts) = lay_out(
            generation,
            self.snapshot.folded.clone(),
            &self.snapshot.vms,
            base,
            kept,
            read,
            |i| part_name(generation, time_ms, random.wrapping_add(i as u64)),
        );
        self.table = table;
        self.parts = parts;
    }

    /// The parts `listed` (present in the folder) that the new table does
    /// not name.
    pub fn unreferenced<'a>(&self, listed: &'a [String]) -> Vec<&'a String> {
        listed
            .iter()
            .filter(|name| !self.table.parts.contains_key(*name))
            .collect()
    }
}

/// Compacts a snapshot with every segment listed beside it (those it
/// already folded included: folding again changes nothing). The new
/// snapshot's `folded` names exactly those segments, which are deleted once
/// it is written; a segment published after the listing stays unfolded.
///
/// Except the deltas of a VM whose fold is unsure or partial: a snapshot
/// does not record doubt, so they stay segments, read and folded by every
/// listing (which then reads that VM's cache) until a view of the VM makes
/// the fold whole again.
///
/// Snapshots are written create-only: two compactions of the same snapshot
/// race for one name, and the loser deletes nothing.
pub fn compact(snapshot: Snapshot, segments: Vec<(String, Segment)>) -> Compaction {
    let mut folded = snapshot.clone();
    folded.fold_all(segments.clone());
    if !folded.unsure.is_empty() {
        let doubtful = std::mem::take(&mut folded.unsure);
        let sure: Vec<(String, Segment)> = segments
            .into_iter()
            .filter(|(_, s)| matches!(s.body, Body::View(_)) || !doubtful.contains(&s.vm))
            .collect();
        folded = snapshot;
        folded.fold_all(sure.clone());
        folded.folded = sure.into_iter().map(|(name, _)| name).collect();
        debug_assert!(folded.unsure.is_empty());
    } else {
        folded.folded = segments.into_iter().map(|(name, _)| name).collect();
    }
    folded.generation += 1;
    Compaction {
        name: snapshot_name(folded.generation),
        segments_to_delete: folded.folded.iter().cloned().collect(),
        snapshot: folded,
        table: Table::default(),
        parts: Vec::new(),
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
        if let Body::View(entry) = segment.body {
            snapshot.put(&segment.vm, entry);
        }
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
