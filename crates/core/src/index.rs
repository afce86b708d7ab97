//! The repository-wide index: every VM's restore view in one place, so
//! that listing a repository costs a constant number of round trips
//! whatever its VM count.
//!
//! It lives on the share, beside the VM folders, in a hidden folder that
//! Xen Orchestra and VM listings skip (`xo-vm-backups/.brcache-index/`),
//! so a fresh server finds it. Two kinds of files, both written without any
//! repository-wide lock:
//!
//! - **Segments** (`<ms>-<random>.json.gz`, unique names, gzip JSON): after
//!   a writer updates a VM's cache (under that VM's lock), it publishes the
//!   VM's whole restore view at that cache generation. Writers of different
//!   VMs never contend; a segment is never rewritten.
//! - **Snapshots** (`snapshot-<generation>.json.gz`): the fold of an older
//!   snapshot and segments, written create-only by whoever compacts; the
//!   segments it folded are then deleted.
//!
//! A reader lists the folder, then reads the newest snapshot and every
//! segment it has not folded, in parallel: two round trips.
//!
//! Folding keeps, per VM, the entry of the highest cache generation (then
//! the greater fingerprint, so the result never depends on the order):
//! since a VM's cache writes are serialised and each increments its
//! generation, that entry is the latest truth. Folding is therefore
//! commutative and idempotent: a segment read twice, or in any order,
//! changes nothing. A VM whose view is empty (its last backup deleted) is
//! kept as an empty entry, so that a late segment of an older generation
//! cannot bring it back.
//!
//! The index never has the last word: `check` compares each VM's entry with
//! its cache header (generation and fingerprint) and its folder, and
//! publishes a fresh entry for any VM that changed behind the index's back
//! (Xen Orchestra writes caches without segments).

use crate::codec::{self, DecodeLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::gzip;
use crate::key::VmId;
use crate::summary::{self, Filter, Summary};
use crate::vm_cache::VmCache;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};

/// The index folder, relative to the repository root.
pub const INDEX_DIR: &str = "xo-vm-backups/.brcache-index";
/// The index format this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Segments past which a writer compacts. Each segment is one more read
/// (in parallel) for every listing; each compaction rewrites the whole
/// snapshot (7.8 MiB at 1,000 VMs x 100). 64 keeps the snapshot's rewrite
/// to a few percent of a backup's index cost.
pub const COMPACT_AFTER: usize = 64;

const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".json.gz";
const SEGMENT_SUFFIX: &str = ".json.gz";
/// Segments of the first release were plain JSON; they are still read.
const PLAIN_SEGMENT_SUFFIX: &str = ".json";

/// A restore point's summary as published, kept as its JSON text. A
/// snapshot holds 100,000 of them and a listing hands them on unchanged, so
/// they are never built into values: decoding checks each one's shape and
/// that its id names a metadata file of its VM ([`VmEntry::check`]), and a
/// filter reads only the three fields it compares.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawSummary(Box<RawValue>);

impl PartialEq for RawSummary {
    fn eq(&self, other: &RawSummary) -> bool {
        self.0.get() == other.0.get()
    }
}

impl RawSummary {
    pub fn of(summary: &Summary) -> RawSummary {
        RawSummary(serde_json::value::to_raw_value(summary).expect("plain data always serializes"))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    fn matches(&self, filter: &Filter) -> bool {
        if *filter == Filter::default() {
            return true;
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Keys {
            job_id: Value,
            schedule_id: Value,
            mode: Value,
        }
        serde_json::from_str::<Keys>(self.get())
            .is_ok_and(|k| filter.matches_fields(&k.job_id, &k.schedule_id, &k.mode))
    }
}

/// What a summary must hold, as [`Summary`] reads it, without building the
/// values a listing only hands on.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // read for their types only
struct SummaryShape {
    id: String,
    timestamp: IgnoredAny,
    mode: IgnoredAny,
    size: IgnoredAny,
    job_id: IgnoredAny,
    schedule_id: IgnoredAny,
    tags: IgnoredAny,
    vm: VmShape,
    disks: Vec<DiskShape>,
    with_memory: bool,
    differencing_vhds: usize,
    dynamic_vhds: usize,
    is_immutable: bool,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct VmShape {
    #[serde(default)]
    uuid: IgnoredAny,
    #[serde(default)]
    name_label: IgnoredAny,
    #[serde(default)]
    name_description: IgnoredAny,
    #[serde(default)]
    tags: IgnoredAny,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct DiskShape {
    id: String,
    name: IgnoredAny,
    uuid: IgnoredAny,
}

/// One VM's restore view, at the cache generation it was taken from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmEntry {
    pub generation: u64,
    /// The cache's fingerprint (hex), or `None` for a cache without one.
    pub fingerprint: Option<String>,
    pub summaries: Vec<RawSummary>,
}

impl VmEntry {
    /// Whether this entry is the later truth than `other` (same VM).
    fn supersedes(&self, other: &VmEntry) -> bool {
        (self.generation, &self.fingerprint) > (other.generation, &other.fingerprint)
    }

    /// Checks what a decoded entry of `vm` holds: a VM folder name, and
    /// summaries of the right shape whose ids name metadata files of that
    /// folder, each once. An index file is on the share for anyone to
    /// write: a listing must not hand on an id that points elsewhere.
    fn check(&self, vm: &str) -> Result<()> {
        let vm = VmId::new(vm)?;
        let mut ids = Vec::with_capacity(self.summaries.len());
        for summary in &self.summaries {
            let shape: SummaryShape = serde_json::from_str(summary.get()).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidJson,
                    format!("not a summary of VM {}: {e}", vm.as_str()),
                )
            })?;
            ids.push(shape.id);
        }
        vm.check_keys(ids.iter().map(String::as_str))?;
        Ok(())
    }
}

/// A journal segment: one VM's entry, as a writer published it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SegmentFields", into = "SegmentFields")]
pub struct Segment {
    pub version: u32,
    pub vm: String,
    pub entry: VmEntry,
}

/// A segment as written: the entry's fields beside `version` and `vm`
/// (spelled out: serde's flatten cannot carry raw summaries).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SegmentFields {
    version: u32,
    vm: String,
    generation: u64,
    fingerprint: Option<String>,
    summaries: Vec<RawSummary>,
}

impl From<SegmentFields> for Segment {
    fn from(f: SegmentFields) -> Segment {
        Segment {
            version: f.version,
            vm: f.vm,
            entry: VmEntry {
                generation: f.generation,
                fingerprint: f.fingerprint,
                summaries: f.summaries,
            },
        }
    }
}

impl From<Segment> for SegmentFields {
    fn from(s: Segment) -> SegmentFields {
        SegmentFields {
            version: s.version,
            vm: s.vm,
            generation: s.entry.generation,
            fingerprint: s.entry.fingerprint,
            summaries: s.entry.summaries,
        }
    }
}

impl Segment {
    pub fn new(vm: &str, entry: VmEntry) -> Segment {
        Segment {
            version: FORMAT_VERSION,
            vm: vm.to_string(),
            entry,
        }
    }

    /// Gzip JSON: a writer publishes one per backup, and a VM's whole
    /// view at retention 1,000 is 0.8 MiB of JSON but a tenth of that
    /// compressed.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("plain data always serializes");
        gzip::write_member(&json, None, codec::DEFAULT_LEVEL)
    }

    /// Reads a segment, gzip or (first release) plain JSON.
    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Segment> {
        let segment: Segment = if gzip::is_gzip(bytes) {
            let text = codec::decode_text(bytes, limits)?.text;
            serde_json::from_str(&text)
        } else {
            // The same checks as the gzip body gets, before the parser.
            codec::check_body(bytes, limits)?;
            serde_json::from_slice(bytes)
        }
        .map_err(|e| Error::new(ErrorKind::InvalidJson, format!("not an index segment: {e}")))?;
        check_version(segment.version)?;
        segment.entry.check(&segment.vm)?;
        Ok(segment)
    }
}

fn check_version(version: u32) -> Result<()> {
    if version == FORMAT_VERSION {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("index format {version} is not supported (this is {FORMAT_VERSION})"),
        ))
    }
}

/// The folded index.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub version: u32,
    /// 0 for the empty index; each compaction writes the next.
    pub generation: u64,
    /// The segments folded in, by name: readers skip them.
    pub folded: BTreeSet<String>,
    pub vms: BTreeMap<String, VmEntry>,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            version: FORMAT_VERSION,
            ..Snapshot::default()
        }
    }

    /// Folds a segment in (see the module documentation for the rule).
    pub fn fold(&mut self, name: &str, segment: Segment) {
        self.folded.insert(name.to_string());
        self.put(&segment.vm, segment.entry);
    }

    /// Records a VM's entry, unless the index already holds a later one.
    pub fn put(&mut self, vm: &str, entry: VmEntry) {
        match self.vms.get(vm) {
            Some(current) if !entry.supersedes(current) => {}
            _ => {
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
            fingerprint: None,
            summaries: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("plain data always serializes");
        gzip::write_member(&json, None, codec::DEFAULT_LEVEL)
    }

    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Snapshot> {
        let text = codec::decode_text(bytes, limits)?.text;
        let snapshot: Snapshot = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidJson,
                format!("not an index snapshot: {e}"),
            )
        })?;
        check_version(snapshot.version)?;
        for (vm, entry) in &snapshot.vms {
            entry.check(vm)?;
        }
        Ok(snapshot)
    }
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
    })
}

/// The segment a writer publishes after writing `vm`'s cache, from the
/// cache's bytes.
pub fn segment_of_bytes(vm: &str, bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<u8>> {
    let id = VmId::new(vm)?;
    Ok(Segment::new(vm, entry_of_bytes(&id, bytes, limits)?).encode())
}

/// An index as read from the share: the newest snapshot and the segments
/// listed beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub snapshot: Snapshot,
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
        let (segments, unreadable) = decode_segments(segments, limits);
        let mut waiting = segments
            .iter()
            .filter(|(name, _)| !snapshot.folded.contains(name))
            .peekable();
        let current = waiting.peek().is_some().then(|| {
            let mut current = snapshot.clone();
            for (name, segment) in waiting {
                current.fold(name, segment.clone());
            }
            current
        });
        Ok(Loaded {
            snapshot,
            segments,
            unreadable,
            current,
        })
    }

    /// The index as it is now.
    pub fn current(&self) -> &Snapshot {
        self.current.as_ref().unwrap_or(&self.snapshot)
    }

    /// Segments not folded into the snapshot yet.
    pub fn unfolded(&self) -> usize {
        self.segments
            .iter()
            .filter(|(name, _)| !self.snapshot.folded.contains(name))
            .count()
    }

    /// The compaction of everything read, at the generation after both
    /// the snapshot read and `listed`, the newest snapshot listed: should
    /// one newer than the snapshot read be there, its name is never reused.
    pub fn compact(&self, listed: u64) -> Compaction {
        let mut snapshot = self.snapshot.clone();
        snapshot.generation = snapshot.generation.max(listed);
        compact(snapshot, self.segments.clone())
    }
}

/// Segments by name.
pub type Named<T> = Vec<(String, T)>;

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

/// Decodes segments, setting aside (with the reason) those that do not.
pub fn decode_segments(
    segments: Named<Vec<u8>>,
    limits: &DecodeLimits,
) -> (Named<Segment>, Named<String>) {
    let mut decoded = Vec::new();
    let mut unreadable = Vec::new();
    for (name, bytes) in segments {
        match Segment::decode(&bytes, limits) {
            Ok(segment) => decoded.push((name, segment)),
            Err(error) => unreadable.push((name, error.to_string())),
        }
    }
    (decoded, unreadable)
}

/// The name of the snapshot of a generation; names sort by generation.
pub fn snapshot_name(generation: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{generation:020}{SNAPSHOT_SUFFIX}")
}

/// A segment's name from the writer's clock and randomness (the core has
/// neither): names sort by time, and two writers never pick the same one.
pub fn segment_name(time_ms: u64, random: u64) -> String {
    format!("{time_ms:015}-{random:016x}{SEGMENT_SUFFIX}")
}

fn snapshot_generation(name: &str) -> Option<u64> {
    name.strip_prefix(SNAPSHOT_PREFIX)?
        .strip_suffix(SNAPSHOT_SUFFIX)?
        .parse()
        .ok()
}

fn is_segment(name: &str) -> bool {
    let stem = name
        .strip_suffix(SEGMENT_SUFFIX)
        .or_else(|| name.strip_suffix(PLAIN_SEGMENT_SUFFIX));
    stem.is_some_and(|stem| {
        let mut parts = stem.splitn(2, '-');
        let time = parts.next().unwrap_or_default();
        let random = parts.next().unwrap_or_default();
        time.len() == 15
            && time.bytes().all(|b| b.is_ascii_digit())
            && random.len() == 16
            && random.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// What a listing of the index folder says to read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadPlan {
    /// The newest snapshot, if any.
    pub snapshot: Option<String>,
    /// Every segment present; those the snapshot folded are skipped after
    /// reading it (reading them in parallel with it saves a round trip).
    pub segments: Vec<String>,
    /// Older snapshots, newest first: a compaction deletes them. Readers
    /// never use them (see js/common/repo-index.js, `read`).
    pub old_snapshots: Vec<String>,
    /// The newest snapshot's generation (0 without one): the next
    /// compaction or rebuild writes the one after, even if that snapshot is
    /// unreadable.
    pub generation: u64,
    /// Whether enough segments wait for a writer to compact.
    pub should_compact: bool,
}

impl ReadPlan {
    /// The plan for the names in the index folder; anything else there
    /// (temp files, locks) is ignored.
    pub fn from_listing<'a>(names: impl IntoIterator<Item = &'a str>) -> ReadPlan {
        let mut snapshots: Vec<(u64, &str)> = Vec::new();
        let mut segments = Vec::new();
        for name in names {
            if let Some(generation) = snapshot_generation(name) {
                snapshots.push((generation, name));
            } else if is_segment(name) {
                segments.push(name.to_string());
            }
        }
        snapshots.sort();
        segments.sort();
        let newest = snapshots.pop();
        ReadPlan {
            snapshot: newest.map(|(_, n)| n.to_string()),
            old_snapshots: snapshots
                .into_iter()
                .rev()
                .map(|(_, n)| n.to_string())
                .collect(),
            generation: newest.map_or(0, |(g, _)| g),
            should_compact: segments.len() > COMPACT_AFTER,
            segments,
        }
    }
}

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

/// Why a VM's index entry disagrees with its cache, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Drift {
    /// The index has no entry for a VM folder that has restore points.
    Unknown,
    /// The cache was written (by brcache or XO) after the entry.
    Behind,
    /// The index has restore points for a VM folder that is gone.
    Gone,
}

/// Each VM folder's cache as [`drift`] needs it: its generation and
/// fingerprint (hex), or `None` when the folder has no cache.
pub type CacheStates = BTreeMap<String, Option<(u64, Option<String>)>>;

/// The caches argument of [`drift`] from its JSON form:
/// `{ "<vm>": [generation, fingerprint | null] | null }`.
pub fn parse_caches(text: &str) -> Result<CacheStates> {
    serde_json::from_str(text)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("invalid caches: {e}")))
}

/// Compares the index with the VM folders' caches: `caches` maps each VM
/// folder to its cache's generation and fingerprint (hex), `None` when the
/// folder has no cache. Returns the VMs whose entry must be republished.
pub fn drift(snapshot: &Snapshot, caches: &CacheStates) -> BTreeMap<String, Drift> {
    let mut out = BTreeMap::new();
    for (vm, cache) in caches {
        match (snapshot.vms.get(vm), cache) {
            (None, Some(_)) => {
                out.insert(vm.clone(), Drift::Unknown);
            }
            (Some(entry), Some((generation, fingerprint)))
                if entry.generation != *generation || &entry.fingerprint != fingerprint =>
            {
                out.insert(vm.clone(), Drift::Behind);
            }
            (Some(entry), None) if !entry.summaries.is_empty() => {
                out.insert(vm.clone(), Drift::Behind);
            }
            _ => {}
        }
    }
    for (vm, entry) in &snapshot.vms {
        if !caches.contains_key(vm) && !entry.summaries.is_empty() {
            out.insert(vm.clone(), Drift::Gone);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(vm: &str, name: &str, timestamp: u64) -> RawSummary {
        let summary: Summary = serde_json::from_value(serde_json::json!({
            "id": format!("/xo-vm-backups/{vm}/{name}.json"), "timestamp": timestamp,
            "mode": "full", "size": 1, "jobId": "j", "scheduleId": "s", "tags": [], "vm": {},
            "disks": [], "withMemory": false, "differencingVhds": 0, "dynamicVhds": 0,
            "isImmutable": false
        }))
        .unwrap();
        RawSummary::of(&summary)
    }

    fn entry(vm: &str, generation: u64, names: &[&str]) -> VmEntry {
        VmEntry {
            generation,
            fingerprint: Some(format!("{generation:064x}")),
            summaries: names
                .iter()
                .enumerate()
                .map(|(i, name)| summary(vm, name, i as u64))
                .collect(),
        }
    }

    #[test]
    fn folding_is_order_independent_and_idempotent() {
        let segments = [
            (
                "000000000000001-0000000000000001.json",
                Segment::new("a", entry("a", 1, &["x"])),
            ),
            (
                "000000000000002-0000000000000002.json",
                Segment::new("a", entry("a", 3, &["x", "y"])),
            ),
            (
                "000000000000003-0000000000000003.json",
                Segment::new("b", entry("b", 2, &["z"])),
            ),
            (
                "000000000000004-0000000000000004.json",
                Segment::new("a", entry("a", 2, &["y"])),
            ),
        ];
        let mut forward = Snapshot::empty();
        for (name, s) in segments.iter().cloned() {
            forward.fold(name, s);
        }
        let mut backward = Snapshot::empty();
        for (name, s) in segments.iter().rev().cloned() {
            backward.fold(name, s.clone());
            backward.fold(name, s);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.vms["a"].generation, 3);
        assert_eq!(forward.view().len(), 2);
    }

    #[test]
    fn an_emptied_vm_stays_empty_against_older_segments() {
        let mut snapshot = Snapshot::empty();
        snapshot.put("a", entry("a", 5, &[]));
        snapshot.fold(
            "000000000000001-0000000000000001.json",
            Segment::new("a", entry("a", 4, &["x"])),
        );
        assert!(snapshot.view().is_empty());
    }

    #[test]
    fn listing_finds_the_newest_snapshot_and_the_segments() {
        let plan = ReadPlan::from_listing([
            snapshot_name(2).as_str(),
            snapshot_name(10).as_str(),
            "000000000000005-00000000000000ff.json",
            ".snapshot-x.tmp-1",
            "garbage.json",
            "000000000000004-00000000000000aa.json",
        ]);
        assert_eq!(plan.snapshot, Some(snapshot_name(10)));
        assert_eq!(plan.old_snapshots, [snapshot_name(2)]);
        assert_eq!(
            plan.segments,
            [
                "000000000000004-00000000000000aa.json",
                "000000000000005-00000000000000ff.json"
            ]
        );
    }

    #[test]
    fn snapshots_and_segments_round_trip() {
        let mut snapshot = Snapshot::empty();
        snapshot.put("a", entry("a", 1, &["x", "y"]));
        let compaction = compact(
            snapshot,
            vec![(segment_name(7, 9), Segment::new("b", entry("b", 1, &["z"])))],
        );
        assert_eq!(compaction.name, snapshot_name(1));
        assert_eq!(compaction.segments_to_delete, [segment_name(7, 9)]);
        let bytes = compaction.snapshot.encode();
        assert_eq!(
            Snapshot::decode(&bytes, &DecodeLimits::default()).unwrap(),
            compaction.snapshot
        );
        let segment = Segment::new("a", entry("a", 2, &["x"]));
        let limits = DecodeLimits::default();
        assert_eq!(
            Segment::decode(&segment.encode(), &limits).unwrap(),
            segment
        );
        let plain = serde_json::to_vec(&segment).unwrap();
        assert_eq!(Segment::decode(&plain, &limits).unwrap(), segment);
        assert!(Segment::decode(b"{}", &limits).is_err());
    }

    #[test]
    fn a_rebuild_outranks_every_listed_snapshot_and_later_segments_win() {
        let later = segment_name(9, 1);
        let plan = ReadPlan::from_listing([
            snapshot_name(3).as_str(),
            snapshot_name(7).as_str(),
            later.as_str(),
            "000000000000001-0000000000000002.json.gz",
        ]);
        assert_eq!(plan.generation, 7);
        let compaction = rebuild_from_bytes(
            &plan,
            vec![
                Segment::new("a", entry("a", 4, &["x"])).encode(),
                Segment::new("b", entry("b", 1, &["y"])).encode(),
            ],
            vec![
                (
                    later.clone(),
                    Segment::new("a", entry("a", 5, &["x", "z"])).encode(),
                ),
                (
                    "000000000000001-0000000000000002.json.gz".into(),
                    b"cut".to_vec(),
                ),
            ],
            &DecodeLimits::default(),
        )
        .unwrap();
        assert_eq!(compaction.name, snapshot_name(8));
        assert_eq!(compaction.snapshot.vms["a"].generation, 5);
        assert_eq!(compaction.snapshot.vms["b"].generation, 1);
        assert_eq!(compaction.segments_to_delete.len(), 2);
        // A cache segment that does not decode is the caller's bug: an error.
        assert!(
            rebuild_from_bytes(&plan, vec![b"x".to_vec()], vec![], &DecodeLimits::default())
                .is_err()
        );
    }

    #[test]
    fn drift_names_the_vms_the_index_got_wrong() {
        let mut snapshot = Snapshot::empty();
        snapshot.put("same", entry("same", 2, &["x"]));
        snapshot.put("behind", entry("behind", 2, &["x"]));
        snapshot.put("gone", entry("gone", 1, &["x"]));
        let caches = BTreeMap::from([
            ("same".to_string(), Some((2, Some(format!("{:064x}", 2))))),
            ("behind".to_string(), Some((0, None))),
            ("new".to_string(), Some((1, None))),
        ]);
        let found = drift(&snapshot, &caches);
        assert_eq!(
            found,
            BTreeMap::from([
                ("behind".to_string(), Drift::Behind),
                ("gone".to_string(), Drift::Gone),
                ("new".to_string(), Drift::Unknown),
            ])
        );
    }
}
