//! The index's files as bytes: summaries kept as raw JSON, VM entries,
//! segments and snapshots, and the checks every one of them passes when read.

use super::table::{TABLE_VERSION, Table};
use super::{DELTA_VERSION, FORMAT_VERSION};
use crate::codec::{self, DecodeLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::gzip;
use crate::key::VmId;
use crate::summary::{Filter, Summary};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};

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

    pub(super) fn matches(&self, filter: &Filter) -> bool {
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
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmEntry {
    pub generation: u64,
    /// The cache's fingerprint (hex), or `None` for a cache without one.
    pub fingerprint: Option<String>,
    pub summaries: Vec<RawSummary>,
    /// When the view was published (its segment's name, in ms), once a
    /// fold knows it: deltas published before it, less [`super::SKEW_MS`],
    /// are already in it. `None` for entries of the first format, which
    /// no delta can precede.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// Made of deltas only: the index never saw this VM whole, so a
    /// listing reads its cache (see [`super::Snapshot::unsure`]).
    #[serde(skip)]
    pub partial: bool,
}

impl VmEntry {
    /// Whether this entry is the later truth than `other` (same VM): by
    /// generation, then fingerprint (so that the result never depends on
    /// the order), then time, since of two views of one cache the later
    /// one has seen more deltas.
    pub(super) fn supersedes(&self, other: &VmEntry) -> bool {
        (self.generation, &self.fingerprint, self.time)
            > (other.generation, &other.fingerprint, other.time)
    }

    /// Checks what a decoded entry of `vm` holds: a VM folder name, and
    /// summaries of the right shape whose ids name metadata files of that
    /// folder, each once. An index file is on the share for anyone to
    /// write: a listing must not hand on an id that points elsewhere.
    pub(super) fn check(&self, vm: &str) -> Result<()> {
        check_summaries(vm, &self.summaries)
    }
}

/// Checks summaries of `vm` as [`VmEntry::check`] says.
fn check_summaries(vm: &str, summaries: &[RawSummary]) -> Result<()> {
    let vm = VmId::new(vm)?;
    let mut ids = Vec::with_capacity(summaries.len());
    for summary in summaries {
        ids.push(summary_id(vm.as_str(), summary)?);
    }
    vm.check_keys(ids.iter().map(String::as_str))?;
    Ok(())
}

/// A summary's place in a view: by timestamp, then id (as
/// [`crate::summary`] sorts them).
pub(super) fn summary_order(summary: &RawSummary) -> (f64, String) {
    #[derive(Deserialize)]
    struct Key {
        id: String,
        timestamp: Value,
    }
    serde_json::from_str::<Key>(summary.get()).map_or((f64::NEG_INFINITY, String::new()), |k| {
        (k.timestamp.as_f64().unwrap_or(f64::NEG_INFINITY), k.id)
    })
}

/// A summary's id, its shape checked.
pub(super) fn summary_id(vm: &str, summary: &RawSummary) -> Result<String> {
    let shape: SummaryShape = serde_json::from_str(summary.get()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidJson,
            format!("not a summary of VM {vm}: {e}"),
        )
    })?;
    Ok(shape.id)
}

/// What one writer changed in a VM's restore points, as it published it:
/// the summaries it added (`put`) and the ids it removed, with the cache
/// it left. Unlike a view, a delta needs nothing read before it: writers
/// that do not order their writes (no lock) never hide each other's.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    pub generation: u64,
    pub fingerprint: Option<String>,
    pub put: Vec<RawSummary>,
    pub remove: Vec<String>,
    /// Written under the VM's lock, on a share whose locks exclude: its
    /// generation then orders it among the VM's writes. Without (S3),
    /// two writers may leave the same generation and neither cache has
    /// both their restore points.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
    /// The fingerprint of the cache the change was made to (hex), when the
    /// writer changed exactly that cache (its edit spliced into it): the
    /// restore points before the change are then the set it names, so that
    /// a VM table row of that set folds this delta without reading the
    /// VM's part (see `table::Row::after`). `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The summaries of the restore points removed, one per id of
    /// `remove`, when the writer read them all (a delete reads them for
    /// their data files): what a row subtracts. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<RawSummary>,
}

impl Delta {
    /// The same checks as a view's: ids of metadata files of `vm`, each
    /// once on either side; and the summaries gone, when given, are those
    /// of the ids removed.
    fn check(&self, vm: &str) -> Result<()> {
        check_summaries(vm, &self.put)?;
        VmId::new(vm)?.check_keys(self.remove.iter().map(String::as_str))?;
        if !self.gone.is_empty() {
            check_summaries(vm, &self.gone)?;
            let mut gone: Vec<String> = self.gone.iter().map(|s| summary_order(s).1).collect();
            let mut removed = self.remove.clone();
            gone.sort();
            removed.sort();
            if gone != removed {
                return Err(Error::new(
                    ErrorKind::InvalidJson,
                    format!("a delta of VM {vm} says gone other restore points than it removes"),
                ));
            }
        }
        Ok(())
    }
}

/// What a segment holds: a VM's whole view, or a writer's change to it.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    View(VmEntry),
    Delta(Delta),
}

/// A journal segment: one VM's entry, as a writer published it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SegmentFields", into = "SegmentFields")]
pub struct Segment {
    pub version: u32,
    pub vm: String,
    pub body: Body,
}

const DELTA_KIND: &str = "delta";

/// A segment as written: the entry's fields beside `version` and `vm`
/// (spelled out: serde's flatten cannot carry raw summaries). A view has
/// `summaries` and no `kind` (as in the first format); a delta has
/// `kind: "delta"`, `put` and `remove`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SegmentFields {
    version: u32,
    vm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    generation: u64,
    fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summaries: Option<Vec<RawSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    put: Option<Vec<RawSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remove: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    locked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    gone: Vec<RawSummary>,
}

impl TryFrom<SegmentFields> for Segment {
    type Error = String;

    fn try_from(f: SegmentFields) -> std::result::Result<Segment, String> {
        let body = match (f.kind.as_deref(), f.summaries, f.put, f.remove) {
            (None, Some(summaries), None, None) => Body::View(VmEntry {
                generation: f.generation,
                fingerprint: f.fingerprint,
                summaries,
                ..VmEntry::default()
            }),
            (Some(DELTA_KIND), None, Some(put), Some(remove)) => Body::Delta(Delta {
                generation: f.generation,
                fingerprint: f.fingerprint,
                put,
                remove,
                locked: f.locked,
                before: f.before,
                gone: f.gone,
            }),
            _ => return Err("neither a view (summaries) nor a delta (put, remove)".into()),
        };
        Ok(Segment {
            version: f.version,
            vm: f.vm,
            body,
        })
    }
}

impl From<Segment> for SegmentFields {
    fn from(s: Segment) -> SegmentFields {
        let (kind, generation, fingerprint, summaries, put, remove, locked, before, gone) =
            match s.body {
                Body::View(e) => (
                    None,
                    e.generation,
                    e.fingerprint,
                    Some(e.summaries),
                    None,
                    None,
                    false,
                    None,
                    Vec::new(),
                ),
                Body::Delta(d) => (
                    Some(DELTA_KIND.to_string()),
                    d.generation,
                    d.fingerprint,
                    None,
                    Some(d.put),
                    Some(d.remove),
                    d.locked,
                    d.before,
                    d.gone,
                ),
            };
        SegmentFields {
            version: s.version,
            vm: s.vm,
            kind,
            generation,
            fingerprint,
            summaries,
            put,
            remove,
            locked,
            before,
            gone,
        }
    }
}

impl Segment {
    /// A view segment, in the first format: every release reads it.
    pub fn new(vm: &str, entry: VmEntry) -> Segment {
        Segment {
            version: FORMAT_VERSION,
            vm: vm.to_string(),
            body: Body::View(VmEntry {
                time: None,
                partial: false,
                ..entry
            }),
        }
    }

    /// A delta segment. Its format is the next one: a release that does
    /// not know deltas skips it as unreadable rather than take it for a
    /// view.
    pub fn delta(vm: &str, delta: Delta) -> Segment {
        Segment {
            version: DELTA_VERSION,
            vm: vm.to_string(),
            body: Body::Delta(delta),
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
        match &segment.body {
            Body::View(entry) => {
                check_version(segment.version)?;
                entry.check(&segment.vm)?;
            }
            Body::Delta(delta) => {
                if segment.version != DELTA_VERSION {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!("a delta segment of index format {}", segment.version),
                    ));
                }
                delta.check(&segment.vm)?;
            }
        }
        Ok(segment)
    }
}

fn check_version(version: u32) -> Result<()> {
    check_version_of(version, FORMAT_VERSION)
}

/// Checks that a file is of the format `expected`.
pub(super) fn check_version_of(version: u32, expected: u32) -> Result<()> {
    if version == expected {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("index format {version} is not supported (this is {expected})"),
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
    /// VMs whose entry a listing must not trust (not written: computed by
    /// each fold): made of deltas only, or whose restore points after the
    /// deltas are not the set their recorded fingerprint names (writers
    /// without a lock, or Xen Orchestra writing behind the index between
    /// two brcache writers' deltas).
    #[serde(skip)]
    pub unsure: BTreeSet<String>,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            version: FORMAT_VERSION,
            ..Snapshot::default()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("plain data always serializes");
        gzip::write_member(&json, None, codec::DEFAULT_LEVEL)
    }

    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Snapshot> {
        let text = codec::decode_text(bytes, limits)?.text;
        Snapshot::decode_text(&text)
    }

    fn decode_text(text: &str) -> Result<Snapshot> {
        let snapshot: Snapshot = serde_json::from_str(text).map_err(|e| {
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

/// A snapshot file as read: a whole snapshot (the first format) or a
/// table whose parts hold the entries.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Whole(Snapshot),
    Table(Table),
}

impl Stored {
    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Stored> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let text = codec::decode_text(bytes, limits)?.text;
        let version = serde_json::from_str::<Version>(&text).map_or(FORMAT_VERSION, |v| v.version);
        if version != TABLE_VERSION {
            return Snapshot::decode_text(&text).map(Stored::Whole);
        }
        let table: Table = serde_json::from_str(&text)
            .map_err(|e| Error::new(ErrorKind::InvalidJson, format!("not an index table: {e}")))?;
        table.check()?;
        Ok(Stored::Table(table))
    }

    pub fn folded(&self) -> &BTreeSet<String> {
        match self {
            Stored::Whole(snapshot) => &snapshot.folded,
            Stored::Table(table) => &table.folded,
        }
    }

    pub fn generation(&self) -> u64 {
        match self {
            Stored::Whole(snapshot) => snapshot.generation,
            Stored::Table(table) => table.generation,
        }
    }
}
