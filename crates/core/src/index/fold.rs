//! Folding segments into a snapshot (the rule is in the module
//! documentation of `index`), the entries writers publish, and an index as
//! a reader loads it.

use super::compaction::{Compaction, compact};
use super::format::{RawSummary, Segment, Snapshot, VmEntry};
use crate::codec::{self, DecodeLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::key::VmId;
use crate::summary::{self, Filter};
use crate::vm_cache::VmCache;
use std::collections::BTreeMap;

impl Snapshot {
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
