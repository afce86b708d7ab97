//! The index folder's names, and what a listing of it says to read.

use super::COMPACT_AFTER;
use super::table::is_part;
use serde::Serialize;

const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".json.gz";
const SEGMENT_SUFFIX: &str = ".json.gz";
/// Segments of the first release were plain JSON; they are still read.
const PLAIN_SEGMENT_SUFFIX: &str = ".json";

/// The name of the snapshot of a generation; names sort by generation.
/// On a share that enforces create-only writes, two compactors of one
/// snapshot race for this one name and one of them wins.
pub fn snapshot_name(generation: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{generation:020}{SNAPSHOT_SUFFIX}")
}

/// The name of a snapshot on a share that may not enforce create-only
/// writes (S3 without conditional writes, Garage): unique like a
/// segment's, so that two compactors never write one name, and sorting
/// by generation, then time. The greatest name of the highest generation
/// is the one readers use.
pub fn unique_snapshot_name(generation: u64, time_ms: u64, random: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{generation:020}-{time_ms:015}-{random:016x}{SNAPSHOT_SUFFIX}")
}

/// When a snapshot was created: its name's ms, or 0 for a name of the
/// generation alone (made under the compaction lock, long settled).
pub fn snapshot_time(name: &str) -> u64 {
    let stem = name
        .strip_prefix(SNAPSHOT_PREFIX)
        .and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX))
        .unwrap_or_default();
    stem.split('-')
        .nth(1)
        .and_then(|time| time.parse().ok())
        .unwrap_or(0)
}

/// A segment's name from the writer's clock and randomness (the core has
/// neither): names sort by time, and two writers never pick the same one.
/// It says no VM: every reader of one VM's restore points reads it.
pub fn segment_name(time_ms: u64, random: u64) -> String {
    format!("{time_ms:015}-{random:016x}{SEGMENT_SUFFIX}")
}

/// The longest VM folder name a segment's name carries: the file name
/// then stays well under the 255 bytes every share allows.
const NAMED_VM_MAX: usize = 128;

/// A segment's name that says its VM, `<ms>-<random>-<vm>.json.gz`, so
/// that a reader of one VM's restore points reads that VM's segments and
/// those that say none, not every VM's. A VM whose folder name would make
/// the file name too long gets [`segment_name`].
pub fn vm_segment_name(time_ms: u64, random: u64, vm: &str) -> String {
    if vm.len() > NAMED_VM_MAX || crate::key::VmId::new(vm).is_err() {
        return segment_name(time_ms, random);
    }
    format!("{time_ms:015}-{random:016x}-{vm}{SEGMENT_SUFFIX}")
}

/// When a segment was published: its name's ms (the writer's clock).
pub fn segment_time(name: &str) -> Option<u64> {
    let time = name.get(..15)?;
    (is_segment(name) && time.bytes().all(|b| b.is_ascii_digit()))
        .then(|| time.parse().ok())
        .flatten()
}

/// The VM a segment's name says, `None` for a name that says none (an
/// older release's, a VM name too long, or not a segment). Decoding checks
/// that the segment holds that VM ([`super::decode_segments`]), so that a
/// reader that skips it by name and one that reads it agree.
pub fn segment_vm(name: &str) -> Option<&str> {
    parse_segment(name).flatten()
}

fn snapshot_generation(name: &str) -> Option<u64> {
    let stem = name
        .strip_prefix(SNAPSHOT_PREFIX)?
        .strip_suffix(SNAPSHOT_SUFFIX)?;
    let mut parts = stem.split('-');
    let generation = parts.next().filter(|g| g.len() == 20)?;
    let well_formed = match (parts.next(), parts.next(), parts.next()) {
        (None, None, None) => true,
        (Some(time), Some(random), None) => {
            time.len() == 15
                && time.bytes().all(|b| b.is_ascii_digit())
                && random.len() == 16
                && random.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => false,
    };
    if well_formed && generation.bytes().all(|b| b.is_ascii_digit()) {
        generation.parse().ok()
    } else {
        None
    }
}

fn is_segment(name: &str) -> bool {
    parse_segment(name).is_some()
}

/// A segment's name taken apart: `None` when it is none, else the VM it
/// says, if any. `<15 digits>-<16 hex>` then, gzip only (the plain JSON
/// segments of the first release said no VM), optionally `-<vm>`.
fn parse_segment(name: &str) -> Option<Option<&str>> {
    let (stem, may_name_vm) = match name.strip_suffix(SEGMENT_SUFFIX) {
        Some(stem) => (stem, true),
        None => (name.strip_suffix(PLAIN_SEGMENT_SUFFIX)?, false),
    };
    let bytes = stem.as_bytes();
    let well_formed = bytes.len() >= 32
        && bytes[..15].iter().all(u8::is_ascii_digit)
        && bytes[15] == b'-'
        && bytes[16..32].iter().all(u8::is_ascii_hexdigit);
    if !well_formed {
        return None;
    }
    match &stem[32..] {
        "" => Some(None),
        rest => {
            let vm = rest.strip_prefix('-').filter(|_| may_name_vm)?;
            crate::key::VmId::new(vm).ok()?;
            Some(Some(vm))
        }
    }
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
    /// Whether enough segments wait for a writer to compact (see
    /// [`ReadPlan::waiting`]).
    pub should_compact: bool,
    /// Every part present (see [`super::table`]): a table names those it
    /// needs; the others are a compaction's to delete.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

impl ReadPlan {
    /// The plan for the names in the index folder; anything else there
    /// (temp files, locks) is ignored.
    pub fn from_listing<'a>(names: impl IntoIterator<Item = &'a str>) -> ReadPlan {
        let mut snapshots: Vec<(u64, &str)> = Vec::new();
        let mut segments = Vec::new();
        let mut parts = Vec::new();
        for name in names {
            if let Some(generation) = snapshot_generation(name) {
                snapshots.push((generation, name));
            } else if is_segment(name) {
                segments.push(name.to_string());
            } else if is_part(name) {
                parts.push(name.to_string());
            }
        }
        snapshots.sort();
        segments.sort();
        parts.sort();
        let newest = snapshots.pop();
        let mut plan = ReadPlan {
            snapshot: newest.map(|(_, n)| n.to_string()),
            old_snapshots: snapshots
                .into_iter()
                .rev()
                .map(|(_, n)| n.to_string())
                .collect(),
            generation: newest.map_or(0, |(g, _)| g),
            should_compact: false,
            segments,
            parts,
        };
        plan.should_compact = plan.waiting() > COMPACT_AFTER;
        plan
    }

    /// Segments that wait for a compaction as far as names tell: every one
    /// beside a snapshot named by its generation alone (what a compaction
    /// folded is deleted at once), those named after the snapshot's time
    /// beside one named with it (on a share without locks, what it folded
    /// lingers until a cleanup, and counting it would make every writer
    /// compact meanwhile).
    pub fn waiting(&self) -> usize {
        let since = self.snapshot.as_deref().map_or(0, snapshot_time);
        self.segments
            .iter()
            .filter(|name| segment_time(name).is_none_or(|time| time >= since))
            .count()
    }
}
