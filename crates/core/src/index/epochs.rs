//! The index of an immutable repository: create-only files in epoch
//! folders, so that nothing brcache writes there is ever overwritten or
//! deleted, and a listing still reads a bounded number of files however
//! long the repository lives.
//!
//! On an immutable repository (Object Lock, `chattr +i`) a file once
//! written stays until its retention lifts, and brcache never asks for
//! more: no cache, no lock file, no replace, no delete. The index is then
//! a journal of create-only files in numbered folders of the index folder,
//! `epoch-<n>/` (20 digits):
//!
//! - **Segments** (the usual names and bodies, see [`super::format`]): a
//!   writer lists the index folder and publishes into the newest epoch
//!   (into `epoch-0` when there is none yet: the first listing's seed then
//!   finds it). A write publishes a delta (the restore point it created,
//!   the ids it deleted) whose fingerprint is the VM folder's metadata
//!   files as the writer listed them just after its change, and whose
//!   generation is its clock (there is no cache to number it).
//! - **Snapshots** (`snapshot-<generation>-<ms>-<random>`, whole: format
//!   1, see [`super::format::Snapshot`]), written by a listing's follow-up
//!   into the newest epoch when segments pile up, or into a new epoch
//!   `newest + 1` once the newest was opened (its first snapshot's time)
//!   [`EPOCH_MS`] ago. Names are unique, so compactors racing each other
//!   both write; readers take the highest generation, then the greatest
//!   name, of the newest epoch that has one.
//!
//! A reader lists the index folder (the epoch names: one per
//! [`EPOCH_MS`] at most, the only thing that grows with history), then the
//! two newest epochs, then reads the snapshot and the segments of those
//! epochs its `folded` does not name: three round trips whatever the age
//! of the repository. Segments of older epochs are never listed.
//!
//! **Why no segment is lost.** A segment in one of the two epochs read is
//! read or folded. One in an older epoch `k` was published by a writer
//! that listed the index folder when `k` was the newest, so before epoch
//! `k + 1` opened, and it was listable [`super::SKEW_MS`] after that
//! listing at the latest (the time [`super::SKEW_MS`] bounds, clock skew
//! included). Epoch `k + 2` opens only [`EPOCH_MS`] (twice that) after
//! `k + 1` by the opener's clock, read before it lists, and its opener
//! lists `k + 1` and `k`: it folds that segment, and every later snapshot
//! is a fold of it. A compaction's snapshot names as folded only segments
//! of the epochs its readers read, so `folded` stays bounded too. A
//! compactor slow enough to write into an epoch that is no longer the
//! newest writes a snapshot no reader takes, which loses nothing: what it
//! folded is in the epochs the newer snapshots' openers listed. One that
//! dies between its epoch's folder and its snapshot (a temp file on a file
//! share) leaves an epoch without a snapshot: writers publish there,
//! readers read it beside the current epoch and the one before, and the
//! next compaction writes into it rather than open another
//! ([`EpochPlan::target`]), so that the age rule still holds.
//!
//! **What an entry is based on.** With no cache, an entry is trusted when
//! its restore points are exactly the metadata files its fingerprint
//! names ([`judge`]): a delta's fingerprint is the folder as its writer
//! listed it, so an entry made of deltas only (a VM the index never saw
//! whole, which the writable index doubts) is whole when the fold adds up
//! to it. An entry that does not add up (two writers of
//! one VM at once, a folder changed behind the index) is read from its
//! folder by the listing, whose follow-up publishes the VM's view (its
//! generation past the entry's), so the doubt lasts one listing.

use super::format::{Segment, Snapshot, summary_order};
use super::read_plan::{ReadPlan, snapshot_time, unique_snapshot_name};
use super::{GRACE_MS, INDEX_DIR};
use crate::Fingerprint;
use std::collections::{BTreeMap, BTreeSet};

const EPOCH_PREFIX: &str = "epoch-";

/// How long an epoch stays the one compactions write into (ms): twice
/// [`super::SKEW_MS`], the longest a writer takes from its listing of the
/// index folder to its segment being listable (see the module's proof).
pub const EPOCH_MS: u64 = GRACE_MS;

/// An epoch's folder, relative to the repository root.
pub fn epoch_folder(epoch: u64) -> String {
    format!("{INDEX_DIR}/{EPOCH_PREFIX}{epoch:020}")
}

/// A file of an epoch as plans name it: `epoch-<n>/<name>`, relative to
/// the index folder.
pub fn in_epoch(epoch: u64, name: &str) -> String {
    format!("{EPOCH_PREFIX}{epoch:020}/{name}")
}

/// The epoch a name of the index folder is, if it is one.
pub fn epoch_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(EPOCH_PREFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The epoch a qualified name (see [`in_epoch`]) is in.
fn epoch_of(qualified: &str) -> Option<u64> {
    epoch_number(qualified.split_once('/')?.0)
}

/// The epochs the index folder's listing shows, ascending.
pub fn epochs_of_root<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u64> {
    let mut epochs: Vec<u64> = names.into_iter().filter_map(epoch_number).collect();
    epochs.sort_unstable();
    epochs.dedup();
    epochs
}

/// The epoch a writer publishes into: the newest listed, or 0.
pub fn publishing_epoch(epochs: &[u64]) -> u64 {
    epochs.last().copied().unwrap_or(0)
}

/// The epochs a reader lists first: the two newest.
pub fn first_to_list(epochs: &[u64]) -> Vec<u64> {
    epochs.iter().rev().take(2).copied().collect()
}

/// What the listings of some epochs say to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochPlan {
    /// The snapshot to read (qualified), from the current epoch: the
    /// newest that has one.
    pub snapshot: Option<String>,
    pub generation: u64,
    /// The current epoch.
    pub current: Option<u64>,
    /// When the current epoch opened: its earliest snapshot's time (ms).
    pub opened_at: u64,
    /// The newest epoch listed.
    pub newest: u64,
    /// Segments (qualified) of the epochs a reader reads: the current one,
    /// the one before, and any above it (a compaction that died before
    /// its snapshot was written leaves an epoch without one).
    pub segments: Vec<String>,
    /// Epochs of the index folder's listing the reader must list too
    /// before it can read: empty but for those rare cases.
    pub more: Vec<u64>,
}

impl EpochPlan {
    /// The plan for `listed` (each epoch's names) out of `epochs` (every
    /// epoch of the index folder's listing, ascending).
    pub fn from_listings(epochs: &[u64], listed: &BTreeMap<u64, Vec<String>>) -> EpochPlan {
        let plans: BTreeMap<u64, ReadPlan> = listed
            .iter()
            .map(|(epoch, names)| {
                (
                    *epoch,
                    ReadPlan::from_listing(names.iter().map(String::as_str)),
                )
            })
            .collect();
        let newest = epochs
            .last()
            .copied()
            .max(listed.keys().next_back().copied())
            .unwrap_or(0);
        let current = plans
            .iter()
            .rev()
            .find(|(_, plan)| plan.snapshot.is_some())
            .map(|(epoch, _)| *epoch);
        let floor = current.map_or(0, |c| c.saturating_sub(1));
        let mut more: Vec<u64> = match current {
            Some(_) => epochs
                .iter()
                .copied()
                .filter(|e| *e >= floor && !listed.contains_key(e))
                .collect(),
            // No snapshot yet in what was listed: the next epoch down may
            // hold the current one.
            None => {
                let lowest = listed.keys().next().copied().unwrap_or(u64::MAX);
                epochs
                    .iter()
                    .copied()
                    .rfind(|e| *e < lowest)
                    .into_iter()
                    .collect()
            }
        };
        more.sort_unstable();
        more.dedup();
        let mut plan = EpochPlan {
            newest,
            current,
            more,
            ..EpochPlan::default()
        };
        if let Some(c) = current {
            let read = &plans[&c];
            plan.snapshot = read.snapshot.as_deref().map(|n| in_epoch(c, n));
            plan.generation = read.generation;
            plan.opened_at = read
                .snapshot
                .iter()
                .chain(&read.old_snapshots)
                .map(|n| snapshot_time(n))
                .min()
                .unwrap_or(0);
        }
        plan.segments = plans
            .iter()
            .filter(|(epoch, _)| **epoch >= floor)
            .flat_map(|(epoch, read)| read.segments.iter().map(move |n| in_epoch(*epoch, n)))
            .collect();
        plan
    }

    /// The segments the snapshot did not fold.
    pub fn unfolded<'a>(&'a self, snapshot: &'a Snapshot) -> impl Iterator<Item = &'a String> {
        self.segments
            .iter()
            .filter(|name| !snapshot.folded.contains(*name))
    }

    /// The epoch a compaction at `now` writes into: the current one while
    /// it is the newest and younger than [`EPOCH_MS`], else a new one.
    /// Above a current epoch that is not the newest (a compaction died
    /// before its snapshot was written, leaving the folder), or with no
    /// snapshot at all, into the newest (epoch 1 at least: `epoch-0` only
    /// holds segments written before there was an index): opening another
    /// there would skip the age rule the module's proof needs.
    pub fn target(&self, now: u64) -> u64 {
        match self.current {
            Some(c) if c == self.newest && now < self.opened_at.saturating_add(EPOCH_MS) => c,
            Some(c) if c == self.newest => c + 1,
            _ => self.newest.max(1),
        }
    }
}

/// Judges every entry by the one rule of an immutable repository's
/// index: an entry is trusted when its restore points are exactly the
/// metadata files its fingerprint names (see the module documentation).
/// Snapshots do not record doubt, so a compaction writes an entry that
/// does not add up as it is, and every reader doubts it again, until a
/// listing's view replaces it.
pub fn judge(snapshot: &mut Snapshot) {
    let mut unsure = BTreeSet::new();
    for (vm, entry) in &mut snapshot.vms {
        let mut names: Vec<String> = entry
            .summaries
            .iter()
            .map(|s| {
                let id = summary_order(s).1;
                id.rsplit('/').next().unwrap_or_default().to_string()
            })
            .collect();
        names.sort();
        let whole = Fingerprint::of_names(names.iter().map(String::as_str)).to_hex();
        if entry.fingerprint.as_deref() == Some(whole.as_str()) {
            entry.partial = false;
        } else {
            unsure.insert(vm.clone());
        }
    }
    snapshot.unsure = unsure;
}

/// The fold a reader makes: the snapshot with the segments it did not
/// fold (and, for a compaction, the views a listing read), judged.
pub fn current(snapshot: &Snapshot, unfolded: Vec<(String, Segment)>) -> Snapshot {
    let mut current = snapshot.clone();
    current.fold_all(unfolded);
    judge(&mut current);
    current
}

/// A compaction's snapshot into epoch `target`: `current` (a reader's
/// fold, every segment it read named in its `folded`), that `folded` cut to the segments of the epochs its readers read
/// (`target - 1` and up), at the generation after `generation`.
pub fn compacted(
    mut current: Snapshot,
    target: u64,
    generation: u64,
    time_ms: u64,
    random: u64,
) -> (String, Snapshot) {
    let floor = target.saturating_sub(1);
    current
        .folded
        .retain(|name| epoch_of(name).is_some_and(|e| e >= floor));
    current.generation = generation + 1;
    current.unsure.clear();
    let name = in_epoch(
        target,
        &unique_snapshot_name(current.generation, time_ms, random),
    );
    (name, current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::segment_name;

    fn listing(entries: &[(u64, &[&str])]) -> BTreeMap<u64, Vec<String>> {
        entries
            .iter()
            .map(|(e, names)| (*e, names.iter().map(|n| n.to_string()).collect()))
            .collect()
    }

    #[test]
    fn epoch_names_round_trip_and_nothing_else_is_one() {
        assert_eq!(epoch_number("epoch-00000000000000000007"), Some(7));
        for name in [
            "epoch-7",
            "epoch-0000000000000000000x",
            "snapshot-1.json.gz",
            "epoch-000000000000000000070",
        ] {
            assert_eq!(epoch_number(name), None, "{name}");
        }
        assert_eq!(
            epochs_of_root([
                "epoch-00000000000000000002",
                "x",
                "epoch-00000000000000000001"
            ]),
            vec![1, 2]
        );
        assert_eq!(first_to_list(&[0, 1, 2, 3]), vec![3, 2]);
        assert_eq!(publishing_epoch(&[]), 0);
    }

    #[test]
    fn the_current_epoch_is_the_newest_with_a_snapshot_and_the_one_below_is_read_too() {
        let snapshot = unique_snapshot_name(4, 1_000, 1);
        let old = unique_snapshot_name(3, 500, 2);
        let a = segment_name(900, 1);
        let b = segment_name(1_100, 2);
        let listed = listing(&[
            (5, &[snapshot.as_str(), old.as_str(), b.as_str()]),
            (4, &[a.as_str()]),
        ]);
        let plan = EpochPlan::from_listings(&[1, 2, 3, 4, 5], &listed);
        assert_eq!(plan.current, Some(5));
        assert_eq!(plan.snapshot, Some(in_epoch(5, &snapshot)));
        assert_eq!(plan.generation, 4);
        assert_eq!(plan.opened_at, 500);
        assert!(plan.more.is_empty());
        assert_eq!(plan.segments, vec![in_epoch(4, &a), in_epoch(5, &b)]);
        assert_eq!(plan.target(500 + EPOCH_MS - 1), 5);
        assert_eq!(plan.target(500 + EPOCH_MS), 6);
    }

    #[test]
    fn an_epoch_without_a_snapshot_sends_the_reader_one_further_and_is_written_into() {
        let snapshot = unique_snapshot_name(2, 100, 1);
        let late = segment_name(50, 3);
        let stray = segment_name(200, 4);
        let first = listing(&[(3, &[stray.as_str()]), (2, &[snapshot.as_str()])]);
        let plan = EpochPlan::from_listings(&[1, 2, 3], &first);
        assert_eq!(plan.current, Some(2));
        assert_eq!(plan.more, vec![1], "the one below the current epoch");
        let mut all = first.clone();
        all.extend(listing(&[(1, &[late.as_str()])]));
        let plan = EpochPlan::from_listings(&[1, 2, 3], &all);
        assert!(plan.more.is_empty());
        assert_eq!(plan.segments, vec![in_epoch(1, &late), in_epoch(3, &stray)]);
        assert_eq!(
            plan.target(u64::MAX / 2),
            3,
            "into the epoch left without a snapshot"
        );
        let none = EpochPlan::from_listings(&[0], &listing(&[(0, &[late.as_str()])]));
        assert_eq!((none.current, none.target(0)), (None, 1));
    }

    #[test]
    fn a_compaction_keeps_as_folded_only_what_its_readers_list() {
        let mut snapshot = Snapshot::empty();
        for epoch in [3, 4, 5] {
            snapshot
                .folded
                .insert(in_epoch(epoch, &segment_name(epoch, 0)));
        }
        let (name, compacted) = compacted(snapshot, 6, 9, 1_000, 5);
        assert_eq!(name, in_epoch(6, &unique_snapshot_name(10, 1_000, 5)));
        assert_eq!(compacted.generation, 10);
        assert_eq!(
            compacted.folded.iter().cloned().collect::<Vec<_>>(),
            vec![in_epoch(5, &segment_name(5, 0))]
        );
    }
}
