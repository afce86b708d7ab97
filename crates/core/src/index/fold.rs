//! Folding segments into a snapshot (the rule is in the module
//! documentation of `index`), the entries writers publish, and an index as
//! a reader loads it.

use super::compaction::{Compaction, compact};
use super::format::{Body, Delta, RawSummary, Segment, Snapshot, VmEntry, summary_order};
use super::read_plan::{segment_time, segment_vm};
use super::table::{Part, Row, Summary as TableSummary, Table};
use super::{INDEX_DIR, SKEW_MS};
use crate::Fingerprint;
use crate::codec::{self, DecodeLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::key::{MetadataName, VmId};
use crate::summary::{self, Filter};
use crate::vm_cache::VmCache;
use std::collections::{BTreeMap, BTreeSet};

impl Snapshot {
    /// Folds one segment in: [`Snapshot::fold_all`] of it alone.
    pub fn fold(&mut self, name: &str, segment: Segment) {
        self.fold_all([(name.to_string(), segment)]);
    }

    /// Folds segments in, per VM, whatever their order:
    ///
    /// 1. The base is the highest view by (generation, fingerprint): the
    ///    entry held or a view segment, which takes its name's time.
    /// 2. A delta named more than `SKEW_MS` before the base is taken as
    ///    seen by it; so is one written under a lock that excludes
    ///    ([`Delta::locked`]) and older than the base by both clocks (named
    ///    no later, of a cache generation no later): generations then
    ///    order the VM's writes, and a view published after such a delta
    ///    (a repair after a failed delete) is the later truth. Every other
    ///    delta is applied over the base (all of them without one): puts
    ///    by (time, name), a later put of an id replacing its summary, then
    ///    every removal, so that a put arriving late never brings a removed
    ///    restore point back. An entry without a time (first format, or
    ///    read from caches by a seed or rebuild) is ordered by generation
    ///    alone.
    /// 3. The entry takes the highest (generation, fingerprint) of the base
    ///    and the deltas applied, and says whether it can be trusted: one
    ///    made of deltas only is partial, and one whose restore points are
    ///    not the set its fingerprint names is unsure (both in
    ///    [`Snapshot::unsure`]).
    ///
    /// Folding the same segments again, or in another order, gives the
    /// same snapshot; deltas must be folded in one batch with the views
    /// they may be older than, which a reader does (every segment it
    /// listed at once).
    pub fn fold_all(&mut self, segments: impl IntoIterator<Item = (String, Segment)>) {
        let mut deltas: BTreeMap<String, Vec<(u64, String, Delta)>> = BTreeMap::new();
        for (name, segment) in segments {
            let time = time_of(&name);
            self.folded.insert(name.clone());
            match segment.body {
                Body::View(entry) => self.put(&segment.vm, VmEntry { time, ..entry }),
                Body::Delta(delta) => {
                    deltas
                        .entry(segment.vm)
                        .or_default()
                        .push((time.unwrap_or(0), name, delta))
                }
            }
        }
        for (vm, mut deltas) in deltas {
            deltas.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            self.apply(
                &vm,
                deltas.into_iter().map(|(time, _, delta)| (time, delta)),
            );
        }
    }

    /// Applies a VM's deltas, by (time, name), over its entry (step 2 and
    /// 3 of [`Snapshot::fold_all`]).
    fn apply(&mut self, vm: &str, deltas: impl Iterator<Item = (u64, Delta)>) {
        let base = self.vms.get(vm);
        let applied: Vec<Delta> = deltas
            .filter(|(time, delta)| {
                !base.is_some_and(|base| delta.is_seen_by(*time, base.time, base.generation))
            })
            .map(|(_, delta)| delta)
            .collect();
        if applied.is_empty() {
            return;
        }
        let mut entry = base.cloned().unwrap_or(VmEntry {
            partial: true,
            ..VmEntry::default()
        });
        let mut points: BTreeMap<String, RawSummary> = entry
            .summaries
            .drain(..)
            .map(|s| (summary_order(&s).1, s))
            .collect();
        for delta in &applied {
            for put in &delta.put {
                points.insert(summary_order(put).1, put.clone());
            }
            if (delta.generation, &delta.fingerprint) > (entry.generation, &entry.fingerprint) {
                entry.generation = delta.generation;
                entry.fingerprint = delta.fingerprint.clone();
            }
        }
        for id in applied.iter().flat_map(|d| &d.remove) {
            points.remove(id);
        }
        let mut summaries: Vec<(f64, String, RawSummary)> = points
            .into_iter()
            .map(|(id, s)| (summary_order(&s).0, id, s))
            .collect();
        summaries.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        entry.summaries = summaries.into_iter().map(|(_, _, s)| s).collect();
        if entry.partial || !entry.names_its_fingerprint() {
            self.unsure.insert(vm.to_string());
        } else {
            self.unsure.remove(vm);
        }
        self.vms.insert(vm.to_string(), entry);
    }

    /// Whether a listing must read `vm`'s cache rather than trust its
    /// entry (see [`Snapshot::unsure`]).
    pub fn is_unsure(&self, vm: &str) -> bool {
        self.unsure.contains(vm)
    }

    /// Records a VM's entry, unless the index already holds a later one
    /// (or, when the one it holds is in doubt, a strictly later one). A
    /// view is whole and read from one cache: the entry it replaces is no
    /// longer in doubt.
    pub fn put(&mut self, vm: &str, entry: VmEntry) {
        let doubt = self.unsure.contains(vm);
        match self.vms.get(vm) {
            Some(current) if doubt && current.supersedes(&entry) => {}
            Some(current) if !doubt && !entry.supersedes(current) => {}
            _ => {
                self.unsure.remove(vm);
                self.vms.insert(vm.to_string(), entry);
            }
        }
    }

    /// The restore view: `{ vm: summaries }`, VMs without restore points
    /// omitted.
    pub fn view(&self) -> BTreeMap<&str, &[RawSummary]> {
        self.vms
            .iter()
            .filter(|(_, e)| !e.summaries.is_empty())
            .map(|(vm, e)| (vm.as_str(), e.summaries.as_slice()))
            .collect()
    }

    /// The restore view keeping the restore points `filter` accepts, VMs
    /// left without any omitted.
    pub fn filtered_view(&self, filter: &Filter) -> BTreeMap<&str, Vec<&RawSummary>> {
        self.vms
            .iter()
            .map(|(vm, e)| {
                (
                    vm.as_str(),
                    e.summaries
                        .iter()
                        .filter(|s| s.matches(filter))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, summaries)| !summaries.is_empty())
            .collect()
    }

    /// The cache generation the index holds for `vm`, if any.
    pub fn generation_of(&self, vm: &str) -> Option<u64> {
        self.vms.get(vm).map(|e| e.generation)
    }

    /// The entry that records `vm`'s folder as gone: empty, and later than
    /// the one the index holds, so that it wins every fold.
    pub fn gone_entry(&self, vm: &str) -> VmEntry {
        VmEntry {
            generation: self.vms.get(vm).map_or(0, |e| e.generation + 1),
            ..VmEntry::default()
        }
    }
}

impl Delta {
    /// Whether this delta, named at `time`, is already in an entry of
    /// `generation` published at `at` (step 2 of [`Snapshot::fold_all`]).
    pub(super) fn is_seen_by(&self, time: u64, at: Option<u64>, generation: u64) -> bool {
        let ordered = self.locked && self.generation <= generation;
        match at {
            Some(at) => time + SKEW_MS <= at || (time <= at && ordered),
            None => ordered,
        }
    }
}

impl VmEntry {
    /// Whether its restore points are the set its fingerprint names (or
    /// it has none to check them against).
    pub(super) fn names_its_fingerprint(&self) -> bool {
        let names: Vec<String> = self
            .summaries
            .iter()
            .map(|s| metadata_name(&summary_order(s).1).to_string())
            .collect();
        self.fingerprint.as_ref().is_none_or(|fp| {
            *fp == Fingerprint::of_names(names.iter().map(String::as_str)).to_hex()
        })
    }
}

/// When a segment (named as a reader lists it) was published. An immutable
/// repository's segments are named with their epoch folder
/// (`epoch-<n>/<name>`, see `epochs`).
fn time_of(name: &str) -> Option<u64> {
    segment_time(name.rsplit('/').next().unwrap_or_default())
}

/// The metadata file name an id ends with, as cache fingerprints name it
/// (ids were checked to be `/xo-vm-backups/<vm>/<name>` when decoded).
fn metadata_name(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// A VM's entry from its cache as just written (after `commit`).
pub fn entry_of(cache: &VmCache) -> Result<VmEntry> {
    Ok(VmEntry {
        generation: cache.generation(),
        fingerprint: Some(cache.fingerprint().to_hex()),
        summaries: summary::summaries(cache, &Filter::default())?
            .iter()
            .map(RawSummary::of)
            .collect(),
        ..VmEntry::default()
    })
}

/// A VM's entry from its cache's bytes as just written: the same entry as
/// [`entry_of`] gives for the decoded cache, in one pass over the body
/// (the write path splices caches without decoding them).
pub fn entry_of_bytes(vm: &VmId, bytes: &[u8], limits: &DecodeLimits) -> Result<VmEntry> {
    let header = codec::read_header(bytes)?;
    Ok(VmEntry {
        generation: header.map_or(0, |h| h.generation),
        fingerprint: header.and_then(|h| h.fingerprint).map(|f| f.to_hex()),
        summaries: summary::summaries_of_bytes(vm, bytes, limits, &Filter::default())?
            .iter()
            .map(RawSummary::of)
            .collect(),
        ..VmEntry::default()
    })
}

/// The segment a writer publishes after writing `vm`'s cache, from the
/// cache's bytes.
pub fn segment_of_bytes(vm: &str, bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>> {
    let id = VmId::new(vm)?;
    Ok(Segment::new(vm, entry_of_bytes(&id, bytes, limits)?).encode())
}

/// The delta a writer publishes after writing `vm`'s cache `bytes` with
/// `added` created (each with its metadata file's bytes) and `removed`
/// deleted: the summaries of the entries the cache got for them (the
/// ones a view of that cache holds), and the cache's generation and
/// fingerprint. Only the header is read from `bytes`: the new entries'
/// summaries come from their metadata, so a backup costs the same to
/// publish whatever its VM's retention (the whole cache was 1,000 entries
/// to inflate and parse for one).
///
/// `before` is the fingerprint of the cache the edit was spliced into,
/// when it was (see [`Delta::before`]); `gone` the removed metadata files
/// the writer read: their summaries go with the delta only when every
/// removed one is there and summarises (see [`Delta::gone`]).
pub fn delta_of_bytes(
    vm: &VmId,
    bytes: &[u8],
    added: &[(&MetadataName, &[u8])],
    removed: &[MetadataName],
    gone: &[(&MetadataName, &[u8])],
    before: Option<&Fingerprint>,
    locked: bool,
) -> Result<Vec<u8>> {
    let header = codec::read_header(bytes)?;
    let mut put = added
        .iter()
        .map(|(name, metadata)| summary::summary_of_metadata(vm, name, metadata))
        .collect::<Result<Vec<_>>>()?;
    summary::sort(&mut put);
    let gone: Vec<RawSummary> = removed
        .iter()
        .map(|name| {
            let (_, metadata) = gone.iter().find(|(read, _)| *read == name)?;
            summary::summary_of_metadata(vm, name, metadata).ok()
        })
        .collect::<Option<Vec<_>>>()
        .map(|summaries| summaries.iter().map(RawSummary::of).collect())
        .unwrap_or_default();
    let delta = Delta {
        generation: header.map_or(0, |h| h.generation),
        fingerprint: header.and_then(|h| h.fingerprint).map(|f| f.to_hex()),
        put: put.iter().map(RawSummary::of).collect(),
        remove: removed.iter().map(|name| vm.key(name)).collect(),
        locked,
        before: before.map(Fingerprint::to_hex),
        gone,
    };
    Ok(Segment::delta(vm.as_str(), delta).encode())
}

/// An index as read from the share: the newest snapshot and the segments
/// listed beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The snapshot's entries as read: every VM's from a whole snapshot,
    /// those of the parts read from a table (see [`Loaded::unread`]).
    pub snapshot: Snapshot,
    /// The table the snapshot came from, when it is one.
    pub table: Option<Table>,
    /// Every segment that decoded, folded ones included (a compaction
    /// takes them all).
    pub segments: Vec<(String, Segment)>,
    /// Segments that did not decode, with the reason: skipped, never fatal
    /// (a segment cut by a crash, or of a later format).
    pub unreadable: Vec<(String, String)>,
    /// The snapshot with every segment it had not folded folded in: the
    /// index as it is now, computed once (it is 100,000 summaries on a
    /// large repository, and callers ask it one VM at a time). `None` when
    /// no segment waits: the snapshot itself, not a copy of it.
    current: Option<Snapshot>,
    /// Segments listed that the snapshot folded, left unread (see
    /// `ops::index_ops::read`): a compaction counts them folded too.
    skipped: Vec<String>,
    /// VMs of the table whose part was not read: no segment waits for
    /// them (or the reader asked for one VM alone), so their row is
    /// their fold.
    unread: BTreeSet<String>,
    /// The parts read.
    parts_read: BTreeSet<String>,
    /// Segments waiting for VMs whose part was not read, folded into
    /// their rows alone ([`Loaded::rows_after`]): enough for the VM table.
    /// A compaction of this read leaves them waiting (it folds entries).
    by_row: Vec<String>,
    /// The rows of the VMs `by_row` touches, after them (the table's
    /// stand for the entries its parts hold, which a compaction reuses).
    rows_after: BTreeMap<String, Row>,
}

impl Loaded {
    /// Decodes what a reader fetched. A snapshot that does not decode is an
    /// error: the caller rebuilds the index from the VM caches.
    pub fn decode(
        snapshot: Option<&[u8]>,
        segments: Vec<(String, Vec<u8>)>,
        limits: &DecodeLimits,
    ) -> Result<Loaded> {
        let snapshot = snapshot.map_or(Ok(Snapshot::empty()), |b| Snapshot::decode(b, limits))?;
        Ok(Loaded::of(snapshot, segments, Vec::new(), limits))
    }

    /// [`Loaded::decode`] of a table and its parts (`parts`: each part's
    /// name and bytes; those the table names, or some of them with
    /// `whole` false: the VMs of the others stay as their rows say).
    pub fn decode_table(
        table: Table,
        parts: Vec<(String, Vec<u8>)>,
        segments: Named<Segment>,
        skipped: Vec<String>,
        limits: &DecodeLimits,
    ) -> Result<Loaded> {
        let mut snapshot = Snapshot {
            version: table.version,
            generation: table.generation,
            folded: table.folded.clone(),
            ..Snapshot::default()
        };
        let mut parts_read = BTreeSet::new();
        for (name, bytes) in parts {
            let file = format!("{INDEX_DIR}/{name}");
            let part = Part::decode(&bytes, limits).map_err(|e| e.in_file(file.clone()))?;
            let entries = table.entries_of(&name, part).map_err(|e| e.in_file(file))?;
            snapshot.vms.extend(entries);
            parts_read.insert(name);
        }
        let unread: BTreeSet<String> = table
            .rows
            .keys()
            .filter(|vm| !snapshot.vms.contains_key(*vm))
            .cloned()
            .collect();
        // Only the VMs read are folded: a segment of another could not be
        // folded over an entry left unread, but its row may fold it.
        let (segments, waiting_elsewhere): (Named<Segment>, Named<Segment>) = segments
            .into_iter()
            .partition(|(_, s)| !unread.contains(&s.vm));
        let (waiting, folded_before): (Named<Segment>, Named<Segment>) = waiting_elsewhere
            .into_iter()
            .partition(|(name, _)| !snapshot.folded.contains(name));
        let (rows, unfoldable) = rows_after(&table, &waiting);
        if let Some((name, _)) = waiting.iter().find(|(_, s)| unfoldable.contains(&s.vm)) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("the index segment {name} waits for a VM whose part was not read"),
            ));
        }
        let mut loaded = Loaded::assemble(snapshot, segments, Vec::new(), skipped);
        loaded
            .skipped
            .extend(folded_before.into_iter().map(|(n, _)| n));
        loaded.by_row = waiting.into_iter().map(|(n, _)| n).collect();
        loaded.rows_after = rows;
        loaded.table = Some(table);
        loaded.unread = unread;
        loaded.parts_read = parts_read;
        Ok(loaded)
    }

    /// [`Loaded::decode`] of a snapshot already decoded, with `skipped`,
    /// segments listed that it folded and that were not read.
    pub fn of(
        snapshot: Snapshot,
        segments: Vec<(String, Vec<u8>)>,
        skipped: Vec<String>,
        limits: &DecodeLimits,
    ) -> Loaded {
        let (segments, unreadable) = decode_segments(segments, limits);
        Loaded::assemble(snapshot, segments, unreadable, skipped)
    }

    /// The index with `more` segments read, listed after the others: folded
    /// in one batch with those waiting, since a delta among them may be
    /// older than a view among these (see [`Snapshot::fold_all`]). With
    /// `only`, the segments of other VMs are set aside (a reader of one
    /// VM's restore points). `None` when one of them is of a VM whose part
    /// was not read: its row would no longer be its fold, and the caller
    /// reads again.
    pub fn with_segments(
        self,
        more: Named<Vec<u8>>,
        only: Option<&str>,
        limits: &DecodeLimits,
    ) -> Option<Loaded> {
        let (mut more, unreadable) = decode_segments(more, limits);
        if let Some(vm) = only {
            more.retain(|(_, s)| s.vm == vm);
        }
        if more.iter().any(|(_, s)| self.unread.contains(&s.vm)) {
            return None;
        }
        let Loaded {
            snapshot,
            table,
            mut segments,
            unreadable: mut all_unreadable,
            skipped,
            unread,
            parts_read,
            by_row,
            rows_after,
            ..
        } = self;
        segments.extend(more);
        all_unreadable.extend(unreadable);
        let mut loaded = Loaded::assemble(snapshot, segments, all_unreadable, skipped);
        loaded.table = table;
        loaded.unread = unread;
        loaded.parts_read = parts_read;
        loaded.by_row = by_row;
        loaded.rows_after = rows_after;
        Some(loaded)
    }

    fn assemble(
        snapshot: Snapshot,
        segments: Named<Segment>,
        unreadable: Named<String>,
        skipped: Vec<String>,
    ) -> Loaded {
        let mut waiting = segments
            .iter()
            .filter(|(name, _)| !snapshot.folded.contains(name))
            .peekable();
        let current = waiting.peek().is_some().then(|| {
            let mut current = snapshot.clone();
            current.fold_all(waiting.map(|(name, segment)| (name.clone(), segment.clone())));
            current
        });
        Loaded {
            snapshot,
            table: None,
            segments,
            unreadable,
            current,
            skipped,
            unread: BTreeSet::new(),
            parts_read: BTreeSet::new(),
            by_row: Vec::new(),
            rows_after: BTreeMap::new(),
        }
    }

    /// Sets aside segments that did not decode (read by the caller).
    pub fn set_unreadable(&mut self, unreadable: Named<String>) {
        self.unreadable = unreadable;
    }

    /// The index as it is now, for the VMs read (every VM unless the table
    /// was read in part: see [`Loaded::unread`]).
    pub fn current(&self) -> &Snapshot {
        self.current.as_ref().unwrap_or(&self.snapshot)
    }

    /// VMs of the table whose entry was not read: their row stands for it.
    pub fn unread(&self) -> &BTreeSet<String> {
        &self.unread
    }

    /// The VM table: every VM's row, as a full fold computes it (the
    /// table's for VMs unread, whose fold its compaction computed).
    pub fn rows(&self) -> BTreeMap<String, TableSummary> {
        let current = self.current();
        let mut rows: BTreeMap<String, TableSummary> = current
            .vms
            .iter()
            .map(|(vm, entry)| (vm.clone(), TableSummary::of(&entry.summaries)))
            .collect();
        for vm in &self.unread {
            if let Some(row) = self.row_of(vm) {
                rows.insert(vm.clone(), row.summary.clone());
            }
        }
        rows
    }

    /// The row of a VM whose entry was not read: the table's, after the
    /// segments that wait for it, if any.
    fn row_of(&self, vm: &str) -> Option<&Row> {
        self.rows_after
            .get(vm)
            .or_else(|| self.table.as_ref()?.rows.get(vm))
    }

    /// Every VM the index holds, whether or not its entry was read.
    pub fn vms(&self) -> BTreeSet<&str> {
        let read = self.current().vms.keys().map(String::as_str);
        let unread = self.table.iter().flat_map(|table| {
            table
                .rows
                .keys()
                .filter(|vm| self.unread.contains(*vm))
                .map(String::as_str)
        });
        read.chain(unread).collect()
    }

    /// The cache generation the index holds for `vm`, whether or not its
    /// entry was read.
    pub fn generation_of(&self, vm: &str) -> Option<u64> {
        self.state_of(vm).map(|(generation, _, _)| generation)
    }

    /// What the index holds for `vm`, whether or not its entry was read:
    /// its generation, fingerprint, and whether it has restore points.
    pub fn state_of(&self, vm: &str) -> Option<(u64, Option<String>, bool)> {
        if let Some(entry) = self.current().vms.get(vm) {
            return Some((
                entry.generation,
                entry.fingerprint.clone(),
                !entry.summaries.is_empty(),
            ));
        }
        let row = self.row_of(vm)?;
        self.unread.contains(vm).then(|| {
            (
                row.generation,
                row.fingerprint.clone(),
                row.summary.count > 0,
            )
        })
    }

    /// Segments not folded into the snapshot yet.
    pub fn unfolded(&self) -> usize {
        self.segments
            .iter()
            .filter(|(name, _)| !self.snapshot.folded.contains(name))
            .count()
            + self.by_row.len()
    }

    /// The compaction of everything read, at the generation after both
    /// the snapshot read and `listed`, the newest snapshot listed: should
    /// one newer than the snapshot read be there, its name is never reused.
    /// Its snapshot holds the VMs read; [`Loaded::lay_out`] gives its
    /// table and parts.
    pub fn compact(&self, listed: u64) -> Compaction {
        let mut snapshot = self.snapshot.clone();
        snapshot.generation = snapshot.generation.max(listed);
        let mut compaction = compact(snapshot, self.segments.clone());
        // In the snapshot read, so in the new one.
        compaction
            .snapshot
            .folded
            .extend(self.skipped.iter().cloned());
        compaction.segments_to_delete = compaction.snapshot.folded.iter().cloned().collect();
        compaction
    }

    /// `compaction`'s table and parts (named from the compactor's clock
    /// and randomness): the VMs whose entry it did not change keep their
    /// row and part.
    pub fn lay_out(&self, compaction: &mut Compaction, time_ms: u64, random: u64) {
        let kept: BTreeSet<String> = match &self.table {
            None => BTreeSet::new(),
            Some(table) => compaction
                .snapshot
                .vms
                .iter()
                .filter(|(vm, entry)| {
                    table.rows.contains_key(*vm) && self.snapshot.vms.get(*vm) == Some(entry)
                })
                .map(|(vm, _)| vm.clone())
                .chain(self.unread.iter().cloned())
                .collect(),
        };
        compaction.lay_out(
            self.table.as_ref(),
            &kept,
            &self.parts_read,
            time_ms,
            random,
        );
    }
}

/// Segments by name.
pub type Named<T> = Vec<(String, T)>;

/// The rows of `table` after `waiting`, segments its snapshot has not
/// folded, for the VMs whose row folds them without its entry
/// ([`Row::after`]); and the VMs whose entry must be read instead (a view
/// among them, or deltas that do not say enough). VMs without a row are
/// in neither.
pub fn rows_after<'a>(
    table: &Table,
    waiting: impl IntoIterator<Item = &'a (String, Segment)>,
) -> (BTreeMap<String, Row>, BTreeSet<String>) {
    let mut deltas: BTreeMap<&str, Vec<(u64, &str, &Delta)>> = BTreeMap::new();
    let mut unfoldable = BTreeSet::new();
    for (name, segment) in waiting {
        if !table.rows.contains_key(&segment.vm) {
            continue;
        }
        match &segment.body {
            Body::Delta(delta) => {
                deltas.entry(segment.vm.as_str()).or_default().push((
                    time_of(name).unwrap_or(0),
                    name.as_str(),
                    delta,
                ));
            }
            Body::View(_) => {
                unfoldable.insert(segment.vm.clone());
            }
        }
    }
    let mut rows = BTreeMap::new();
    for (vm, deltas) in deltas {
        if unfoldable.contains(vm) {
            continue;
        }
        match table.rows[vm].after(&deltas) {
            Some(row) => {
                rows.insert(vm.to_string(), row);
            }
            None => {
                unfoldable.insert(vm.to_string());
            }
        }
    }
    (rows, unfoldable)
}

/// Pairs segment names with their bytes, as bindings receive them (two
/// arrays).
pub fn named<T>(names: Vec<String>, contents: Vec<T>) -> Result<Named<T>> {
    if names.len() != contents.len() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "segment names and contents differ in length",
        ));
    }
    Ok(names.into_iter().zip(contents).collect())
}

/// Decodes segments, setting aside (with the reason) those that do not,
/// and those whose name says another VM than they hold: a reader of one
/// VM's restore points goes by the name and never reads it, so no reader
/// may fold it.
pub fn decode_segments(
    segments: Named<Vec<u8>>,
    limits: &DecodeLimits,
) -> (Named<Segment>, Named<String>) {
    let mut decoded = Vec::new();
    let mut unreadable = Vec::new();
    for (name, bytes) in segments {
        match Segment::decode(&bytes, limits) {
            Ok(segment) => match segment_vm(&name).filter(|vm| *vm != segment.vm) {
                Some(named) => {
                    let reason = format!("named for VM {named}, but holds VM {:?}", segment.vm);
                    unreadable.push((name, reason));
                }
                None => decoded.push((name, segment)),
            },
            Err(error) => unreadable.push((name, error.to_string())),
        }
    }
    (decoded, unreadable)
}
