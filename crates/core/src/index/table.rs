//! The snapshot as a table and parts: what a VM table needs (one row per
//! VM, sized by VMs) apart from what one VM's restore points need (its
//! entry, in a part shared with a few other VMs).
//!
//! - The **table** (`snapshot-<generation>….json.gz`, format
//!   [`TABLE_VERSION`]) holds, per VM, its entry's generation, fingerprint
//!   and time, its restore points counted by mode, its last backup, its
//!   total size, its name (from its newest summary), and the part that
//!   holds its entry; and the segments folded, as a whole snapshot does.
//! - A **part** (`part-<generation>-<ms>-<random>.json.gz`, create-only,
//!   never rewritten) holds the entries of a group of VMs, packed to about
//!   [`PART_BYTES`] of summaries, so that one VM's restore points cost one
//!   small read.
//!
//! A compaction writes the parts it needs, then the table (a reader that
//! sees a table can read its parts), and reuses by reference the part of
//! every VM whose entry did not change: compacting rewrites what changed.
//! A part whose VMs mostly moved out is repacked by the compaction that
//! read it, so that the parts a full restore view reads hold at most twice
//! the live entries.

use super::format::{Delta, RawSummary, VmEntry, check_version_of, summary_order};
use crate::codec::{self, DecodeLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::gzip;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The format of tables and parts: after deltas', so that a release that
/// knows only whole snapshots finds the table unreadable (and lists from
/// the caches) rather than take it for an empty index.
pub const TABLE_VERSION: u32 = 3;
/// About how many bytes of summaries (JSON) a compaction packs into one
/// part: one VM's restore points then cost a read of a few dozen KiB
/// (gzip), and a full restore view a few dozen parts at 1,000 VMs x 100.
pub const PART_BYTES: usize = 512 * 1024;

/// What the VM table shows of a VM: computed from its entry by a full
/// fold, the same whoever computes it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The VM's name label in its newest restore point (`null` without).
    pub name: Value,
    /// Restore points.
    pub count: u64,
    /// Restore points by mode (`full`, `delta`).
    pub modes: BTreeMap<String, u64>,
    /// The newest restore point's timestamp (ms), `null` without.
    pub last_backup: Value,
    /// The restore points' sizes added up (bytes): an integer when whole,
    /// as JSON.parse would give it back.
    #[serde(serialize_with = "whole_if_exact")]
    pub size: f64,
}

fn whole_if_exact<S: serde::Serializer>(
    size: &f64,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    if size.fract() == 0.0 && size.abs() < 9_007_199_254_740_992.0 {
        serializer.serialize_i64(*size as i64)
    } else {
        serializer.serialize_f64(*size)
    }
}

/// What the VM table reads of a summary.
#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    timestamp: Value,
    #[serde(default)]
    mode: Value,
    #[serde(default)]
    size: Value,
    #[serde(default)]
    vm: VmName,
}

#[derive(Deserialize, Default)]
struct VmName {
    #[serde(default)]
    name_label: Value,
}

impl Fields {
    // Checked to be a summary when decoded.
    fn of(summary: &RawSummary) -> Option<Fields> {
        serde_json::from_str(summary.get()).ok()
    }

    fn mode(&self) -> String {
        match &self.mode {
            Value::String(mode) => mode.clone(),
            other => other.to_string(),
        }
    }

    fn size(&self) -> f64 {
        self.size.as_f64().unwrap_or(0.0)
    }
}

/// The largest integer below which every sum of whole sizes is exact in
/// an f64, whatever the order of its terms.
const EXACT_BELOW: f64 = 9_007_199_254_740_992.0;

fn whole(size: f64) -> bool {
    size.fract() == 0.0 && size.abs() < EXACT_BELOW
}

impl Summary {
    /// The VM table's view of restore points (sorted by timestamp, as an
    /// entry holds them).
    pub fn of(summaries: &[RawSummary]) -> Summary {
        Summary::tally(summaries).0
    }

    /// [`Summary::of`], and whether every size and their total are whole
    /// (so that a sum of them is exact in any order).
    fn tally(summaries: &[RawSummary]) -> (Summary, bool) {
        let mut out = Summary {
            last_backup: Value::Null,
            ..Summary::default()
        };
        let mut whole_sizes = true;
        for fields in summaries.iter().filter_map(Fields::of) {
            out.count += 1;
            *out.modes.entry(fields.mode()).or_default() += 1;
            whole_sizes &= whole(fields.size());
            out.size += fields.size();
            out.last_backup = fields.timestamp;
            out.name = fields.vm.name_label;
        }
        let whole_sizes = whole_sizes && whole(out.size);
        (out, whole_sizes)
    }
}

/// A VM's row in the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RowFields", into = "RowFields")]
pub struct Row {
    pub generation: u64,
    pub fingerprint: Option<String>,
    pub time: Option<u64>,
    /// The part that holds the VM's entry.
    pub part: String,
    pub summary: Summary,
    /// The entry's restore points are the set its fingerprint names: a
    /// delta made to that set folds into the row alone ([`Row::after`]).
    pub exact: bool,
}

/// A row as written: its summary's fields beside the others (spelled out:
/// serde's flatten buffers every row, a thousand of them per table read).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RowFields {
    generation: u64,
    fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
    part: String,
    name: Value,
    count: u64,
    modes: BTreeMap<String, u64>,
    last_backup: Value,
    #[serde(serialize_with = "whole_if_exact")]
    size: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    exact: bool,
}

impl From<RowFields> for Row {
    fn from(f: RowFields) -> Row {
        Row {
            generation: f.generation,
            fingerprint: f.fingerprint,
            time: f.time,
            part: f.part,
            summary: Summary {
                name: f.name,
                count: f.count,
                modes: f.modes,
                last_backup: f.last_backup,
                size: f.size,
            },
            exact: f.exact,
        }
    }
}

impl From<Row> for RowFields {
    fn from(r: Row) -> RowFields {
        RowFields {
            generation: r.generation,
            fingerprint: r.fingerprint,
            time: r.time,
            part: r.part,
            name: r.summary.name,
            count: r.summary.count,
            modes: r.summary.modes,
            last_backup: r.summary.last_backup,
            size: r.summary.size,
            exact: r.exact,
        }
    }
}

impl Row {
    pub fn of(entry: &VmEntry, part: &str) -> Row {
        let (summary, whole_sizes) = Summary::tally(&entry.summaries);
        Row {
            generation: entry.generation,
            fingerprint: entry.fingerprint.clone(),
            time: entry.time,
            part: part.to_string(),
            summary,
            exact: whole_sizes && entry.fingerprint.is_some() && entry.names_its_fingerprint(),
        }
    }

    /// The row after `deltas`, the VM's deltas that its entry has not
    /// folded (each with its name's time and its name), computed as a full
    /// fold of that entry would compute it but without reading it; `None`
    /// when the deltas do not say enough, and the entry must be read:
    ///
    /// - the deltas the entry has not seen (by the fold's rule) must chain
    ///   from the row: the first made to the set the row's fingerprint
    ///   names ([`Delta::before`]), each next one to the set the one
    ///   before left, the last the highest by (generation, fingerprint).
    ///   Every restore point put is then new and every one removed was
    ///   there, and the fold is whole (the set the last fingerprint names);
    /// - every removal says what it removed ([`Delta::gone`]), older than
    ///   the row's newest restore point (the newest after the removal is
    ///   then known), and no put ties with that newest;
    /// - sizes are whole (their sums are then exact in any order).
    pub fn after(&self, deltas: &[(u64, &str, &Delta)]) -> Option<Row> {
        let mut applied: Vec<&(u64, &str, &Delta)> = deltas
            .iter()
            .filter(|(time, _, delta)| !delta.is_seen_by(*time, self.time, self.generation))
            .collect();
        if applied.is_empty() {
            return Some(self.clone());
        }
        applied.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        if !self.exact {
            return None;
        }
        let mut set = self.fingerprint.as_ref()?;
        let mut top = (self.generation, &self.fingerprint);
        for (_, _, delta) in &applied {
            if delta.before.as_ref() != Some(set) {
                return None;
            }
            set = delta.fingerprint.as_ref()?;
            top = top.max((delta.generation, &delta.fingerprint));
        }
        let last = applied.last()?.2;
        if top != (last.generation, &last.fingerprint) {
            return None;
        }
        let put: Vec<&RawSummary> = applied.iter().flat_map(|(_, _, d)| &d.put).collect();
        let gone: Vec<&RawSummary> = applied.iter().flat_map(|(_, _, d)| &d.gone).collect();
        if applied
            .iter()
            .any(|(_, _, d)| d.gone.len() != d.remove.len())
        {
            return None;
        }
        let mut ids: Vec<String> = put
            .iter()
            .chain(&gone)
            .map(|s| summary_order(s).1)
            .collect();
        let touched = ids.len();
        ids.sort();
        ids.dedup();
        if ids.len() != touched {
            return None;
        }
        let mut summary = self.summary.clone();
        summary.count = (summary.count + put.len() as u64).checked_sub(gone.len() as u64)?;
        let newest = match self.summary.count {
            0 => None,
            _ => Some(self.summary.last_backup.as_f64()?),
        };
        for summary_gone in &gone {
            let fields = Fields::of(summary_gone)?;
            let count = summary.modes.get_mut(&fields.mode())?;
            *count = count.checked_sub(1)?;
            if *count == 0 {
                summary.modes.remove(&fields.mode());
            }
            let (time, size) = (fields.timestamp.as_f64()?, fields.size());
            if newest.is_none_or(|newest| time >= newest) || !whole(size) {
                return None;
            }
            summary.size -= size;
        }
        let mut newest_put: Option<((f64, String), Fields)> = None;
        for summary_put in &put {
            let fields = Fields::of(summary_put)?;
            let size = fields.size();
            if !whole(size) {
                return None;
            }
            *summary.modes.entry(fields.mode()).or_default() += 1;
            summary.size += size;
            let order = summary_order(summary_put);
            if newest_put.as_ref().is_none_or(|(o, _)| *o < order) {
                newest_put = Some((order, fields));
            }
        }
        if !whole(summary.size) {
            return None;
        }
        if let Some(((time, _), fields)) = newest_put {
            match newest {
                Some(newest) if time == newest => return None,
                Some(newest) if time < newest => {}
                _ => {
                    summary.last_backup = fields.timestamp;
                    summary.name = fields.vm.name_label;
                }
            }
        }
        if summary.count == 0 {
            summary.last_backup = Value::Null;
            summary.name = Value::Null;
        }
        Some(Row {
            generation: last.generation,
            fingerprint: last.fingerprint.clone(),
            time: self.time,
            part: self.part.clone(),
            summary,
            exact: true,
        })
    }

    /// Whether `entry` is the one this row was made from.
    fn describes(&self, entry: &VmEntry) -> bool {
        (self.generation, &self.fingerprint, self.time)
            == (entry.generation, &entry.fingerprint, entry.time)
    }
}

/// The snapshot's table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub version: u32,
    pub generation: u64,
    pub folded: BTreeSet<String>,
    pub rows: BTreeMap<String, Row>,
    /// Every part the rows name, with the count of VMs it holds (some of
    /// which may have moved to a later part): what a compaction repacks.
    pub parts: BTreeMap<String, usize>,
}

impl Table {
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("plain data always serializes");
        gzip::write_member(&json, None, codec::DEFAULT_LEVEL)
    }

    /// Checks that every row names a listed part and a VM folder; the
    /// parts are checked when read.
    pub(super) fn check(&self) -> Result<()> {
        check_version_of(self.version, TABLE_VERSION)?;
        for (vm, row) in &self.rows {
            crate::key::VmId::new(vm)?;
            if !self.parts.contains_key(&row.part) || !is_part(&row.part) {
                return Err(Error::new(
                    ErrorKind::InvalidJson,
                    format!(
                        "the index table's row of VM {vm} names {:?}, not one of its parts",
                        row.part
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The parts holding the entries of `vms` (those with a row).
    pub fn parts_of<'a>(&self, vms: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        vms.into_iter()
            .filter_map(|vm| self.rows.get(vm).map(|row| row.part.clone()))
            .collect()
    }

    /// The entries of `part` (its bytes decoded) that its rows name,
    /// checked to be the entries the rows were made from.
    pub fn entries_of(&self, name: &str, part: Part) -> Result<BTreeMap<String, VmEntry>> {
        let mut out = BTreeMap::new();
        for (vm, entry) in part.vms {
            let Some(row) = self.rows.get(&vm).filter(|row| row.part == name) else {
                continue;
            };
            if !row.describes(&entry) {
                return Err(Error::new(
                    ErrorKind::InvalidJson,
                    format!("the entry of VM {vm} is not the one the index table describes"),
                ));
            }
            out.insert(vm, entry);
        }
        if let Some((vm, _)) = self
            .rows
            .iter()
            .find(|(vm, row)| row.part == name && !out.contains_key(*vm))
        {
            return Err(Error::new(
                ErrorKind::InvalidJson,
                format!("the index part has no entry for VM {vm}, which the table puts there"),
            ));
        }
        Ok(out)
    }
}

/// A part: the entries of a group of VMs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub version: u32,
    pub vms: BTreeMap<String, VmEntry>,
}

impl Part {
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("plain data always serializes");
        gzip::write_member(&json, None, codec::DEFAULT_LEVEL)
    }

    pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Part> {
        let text = codec::decode_text(bytes, limits)?.text;
        let part: Part = serde_json::from_str(&text)
            .map_err(|e| Error::new(ErrorKind::InvalidJson, format!("not an index part: {e}")))?;
        check_version_of(part.version, TABLE_VERSION)?;
        for (vm, entry) in &part.vms {
            entry.check(vm)?;
        }
        Ok(part)
    }
}

const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".json.gz";

/// A part's name: unique like a segment's (two compactors never write one
/// name), from the compaction's generation, clock and randomness.
pub fn part_name(generation: u64, time_ms: u64, random: u64) -> String {
    format!("{PART_PREFIX}{generation:020}-{time_ms:015}-{random:016x}{PART_SUFFIX}")
}

/// When a part was made (its name's ms).
pub fn part_time(name: &str) -> Option<u64> {
    is_part(name).then(|| name[PART_PREFIX.len() + 21..][..15].parse().ok())?
}

/// Whether `name` is a part's.
pub fn is_part(name: &str) -> bool {
    let Some(stem) = name
        .strip_prefix(PART_PREFIX)
        .and_then(|n| n.strip_suffix(PART_SUFFIX))
    else {
        return false;
    };
    let fields: Vec<&str> = stem.split('-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    matches!(fields.as_slice(), [generation, time, random]
        if digits(generation, 20) && digits(time, 15) && random.len() == 16
            && random.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Lays a fold out as a table and the parts to write: the VMs in `kept`
/// keep their row in `base` (and its part, by reference); every other VM
/// of `vms` goes into a new part, named by `name` (its index from 0).
/// A part read (one of `read`) left holding fewer than half its VMs has
/// the rest moved to new parts too.
pub fn lay_out(
    generation: u64,
    folded: BTreeSet<String>,
    vms: &BTreeMap<String, VmEntry>,
    base: Option<&Table>,
    kept: &BTreeSet<String>,
    read: &BTreeSet<String>,
    mut name: impl FnMut(usize) -> String,
) -> (Table, Vec<(String, Part)>) {
    let mut table = Table {
        version: TABLE_VERSION,
        generation,
        folded,
        ..Table::default()
    };
    let base_row = |vm: &str| base.and_then(|b| b.rows.get(vm));
    let mut live: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for vm in kept {
        if let Some(row) = base_row(vm) {
            live.entry(row.part.as_str()).or_default().push(vm);
        }
    }
    let mut moved: BTreeSet<&str> = BTreeSet::new();
    for (part, members) in &live {
        let held = base.and_then(|b| b.parts.get(*part)).copied().unwrap_or(0);
        let sparse = members.len() * 2 < held;
        if sparse && read.contains(*part) && members.iter().all(|vm| vms.contains_key(*vm)) {
            moved.extend(members.iter().copied());
        }
    }
    for vm in kept {
        if moved.contains(vm.as_str()) {
            continue;
        }
        if let Some(row) = base_row(vm) {
            let held = base.and_then(|b| b.parts.get(&row.part)).copied();
            table.parts.insert(row.part.clone(), held.unwrap_or(0));
            table.rows.insert(vm.clone(), row.clone());
        }
    }
    let mut parts: Vec<(String, Part)> = Vec::new();
    let mut current = Part {
        version: TABLE_VERSION,
        ..Part::default()
    };
    let mut bytes = 0;
    let mut flush = |current: &mut Part, parts: &mut Vec<(String, Part)>, table: &mut Table| {
        if current.vms.is_empty() {
            return;
        }
        let part = std::mem::replace(
            current,
            Part {
                version: TABLE_VERSION,
                ..Part::default()
            },
        );
        let part_name = name(parts.len());
        for (vm, entry) in &part.vms {
            table.rows.insert(vm.clone(), Row::of(entry, &part_name));
        }
        table.parts.insert(part_name.clone(), part.vms.len());
        parts.push((part_name, part));
    };
    for (vm, entry) in vms {
        if table.rows.contains_key(vm) {
            continue;
        }
        let size: usize = entry.summaries.iter().map(|s| s.get().len()).sum();
        if bytes > 0 && bytes + size > PART_BYTES {
            flush(&mut current, &mut parts, &mut table);
            bytes = 0;
        }
        bytes += size;
        current.vms.insert(vm.clone(), entry.clone());
    }
    flush(&mut current, &mut parts, &mut table);
    (table, parts)
}
