//! The restore view's projection of a cache: what a user picks a restore
//! point by, without the full XAPI records.
//!
//! Only the fields listed here are deserialized; serde skips the rest of each
//! record (the bulk: `vm`/`vmSnapshot` records, NVRAM, TPM state) without
//! building it. The shape follows Xen Orchestra's `formatVmBackup`, so a
//! backup server can hand summaries to its UI unchanged.

use crate::codec::{self, DecodeLimits};
use crate::entry;
use crate::error::Result;
use crate::key::{BACKUP_DIR, MetadataName, VmId};
use crate::vm_cache::VmCache;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub id: String,
    pub timestamp: Value,
    pub mode: Value,
    pub size: Value,
    pub job_id: Value,
    pub schedule_id: Value,
    pub tags: Value,
    pub vm: VmSummary,
    pub disks: Vec<Disk>,
    pub with_memory: bool,
    pub differencing_vhds: usize,
    pub dynamic_vhds: usize,
    pub is_immutable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VmSummary {
    #[serde(default)]
    pub uuid: Value,
    #[serde(default)]
    pub name_label: Value,
    #[serde(default)]
    pub name_description: Value,
    #[serde(default)]
    pub tags: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// The VHD path relative to the repository root.
    pub id: String,
    pub name: Value,
    pub uuid: Value,
}

/// The fields of a record that summaries read; everything else is skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(default)]
    timestamp: Value,
    #[serde(default)]
    mode: Value,
    #[serde(default)]
    size: Value,
    #[serde(default)]
    job_id: Value,
    #[serde(default)]
    schedule_id: Value,
    #[serde(default)]
    tags: Value,
    #[serde(default)]
    vm: Option<VmSummary>,
    #[serde(default)]
    vm_snapshot: Option<Snapshot>,
    #[serde(default)]
    vdis: IndexMap<String, Vdi>,
    #[serde(default)]
    vhds: IndexMap<String, Value>,
    #[serde(default)]
    is_vhd_differencing: IndexMap<String, Value>,
    #[serde(default)]
    is_immutable: Value,
}

#[derive(Deserialize)]
struct Snapshot {
    #[serde(default, rename = "suspend_VDI")]
    suspend_vdi: Value,
}

#[derive(Deserialize)]
struct Vdi {
    #[serde(default)]
    uuid: Value,
    #[serde(default)]
    name_label: Value,
}

/// Which restore points to keep, as Xen Orchestra's callers filter them
/// (retention by schedule, mirrors by job, restore by mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub job_id: Option<String>,
    pub schedule_id: Option<String>,
    pub mode: Option<String>,
}

impl Filter {
    /// A filter from its JSON form (`{ jobId?, scheduleId?, mode? }`); none
    /// when absent.
    pub fn from_json(json: Option<&str>) -> crate::Result<Filter> {
        json.map_or(Ok(Filter::default()), |text| {
            serde_json::from_str(text).map_err(|e| {
                crate::Error::new(
                    crate::ErrorKind::InvalidArgument,
                    format!("invalid filter: {e}"),
                )
            })
        })
    }

    pub fn matches(&self, summary: &Summary) -> bool {
        self.matches_fields(&summary.job_id, &summary.schedule_id, &summary.mode)
    }

    /// Whether a summary with these fields passes.
    pub fn matches_fields(&self, job_id: &Value, schedule_id: &Value, mode: &Value) -> bool {
        let is = |want: &Option<String>, have: &Value| {
            want.as_deref().is_none_or(|w| have.as_str() == Some(w))
        };
        is(&self.job_id, job_id) && is(&self.schedule_id, schedule_id) && is(&self.mode, mode)
    }
}

/// The summaries of a cache's entries, sorted by timestamp (then id),
/// keeping those the filter accepts. An entry whose fields have unexpected
/// types still yields a summary with what could be read.
pub fn summaries(cache: &VmCache, filter: &Filter) -> Result<Vec<Summary>> {
    let dir = format!("/{BACKUP_DIR}/{}", cache.vm().as_str());
    let mut out = Vec::with_capacity(cache.len());
    for (key, raw) in cache.raw_entries() {
        let summary = summary_of_entry(key, &dir, raw.get());
        if filter.matches(&summary) {
            out.push(summary);
        }
    }
    sort(&mut out);
    Ok(out)
}

fn summary_of_entry(key: String, dir: &str, raw: &str) -> Summary {
    let record: Record = serde_json::from_str(raw).unwrap_or_else(|_| lenient(raw));
    summarize(key, dir, record)
}

/// The summary of the cache entry a metadata file makes (the one a
/// cache written after its creation holds, see [`entry::from_metadata`]).
pub fn summary_of_metadata(vm: &VmId, name: &MetadataName, metadata: &[u8]) -> Result<Summary> {
    let key = vm.key(name);
    let entry = entry::from_metadata(&key, metadata)?;
    Ok(summary_of_entry(
        key,
        &format!("/{BACKUP_DIR}/{}", vm.as_str()),
        entry.get(),
    ))
}

/// Summaries straight from `cache.json.gz` bytes in one pass over the body:
/// each record is read for its summary fields only, never kept whole. Keys
/// are checked as [`VmCache::decode`] checks them. A body this pass cannot
/// read (a record with unexpected field types, a duplicate file) is handed
/// to the complete decode, which reads what it can or names the problem.
pub fn summaries_of_bytes(
    vm: &VmId,
    bytes: &[u8],
    limits: &DecodeLimits,
    filter: &Filter,
) -> Result<Vec<Summary>> {
    let decoded = codec::decode_text(bytes, limits)?;
    let quick = serde_json::from_str::<IndexMap<String, ObjectRecord>>(&decoded.text)
        .ok()
        .filter(|records| vm.check_keys(records.keys().map(String::as_str)).is_ok());
    let Some(records) = quick else {
        let cache =
            VmCache::from_document(vm.clone(), crate::CacheDocument::from_json(&decoded.text)?)?;
        return summaries(&cache, filter);
    };
    let dir = format!("/{BACKUP_DIR}/{}", vm.as_str());
    let mut out = Vec::with_capacity(records.len());
    for (key, ObjectRecord(record)) in records {
        let name = vm.parse_key(&key)?;
        let summary = summarize(vm.key(&name), &dir, record);
        if filter.matches(&summary) {
            out.push(summary);
        }
    }
    sort(&mut out);
    Ok(out)
}

/// A [`Record`] that only a JSON object can be (serde would otherwise
/// also build a struct from an array).
struct ObjectRecord(Record);

impl<'de> Deserialize<'de> for ObjectRecord {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ObjectRecord;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a metadata record (an object)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<ObjectRecord, A::Error> {
                Record::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ObjectRecord)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Restore points in the order listings give them: by timestamp, then id.
pub(crate) fn sort(summaries: &mut [Summary]) {
    summaries.sort_by(|a, b| {
        let t = |s: &Summary| s.timestamp.as_f64().unwrap_or(f64::NEG_INFINITY);
        t(a).total_cmp(&t(b)).then_with(|| a.id.cmp(&b.id))
    });
}

/// A record whose summary fields have unexpected shapes (a `vdis` that is
/// not an object, say): read field by field, keeping what fits.
fn lenient(raw: &str) -> Record {
    let fields: IndexMap<String, Value> = serde_json::from_str(raw).unwrap_or_default();
    let get = |k: &str| fields.get(k).cloned().unwrap_or(Value::Null);
    fn typed<T: serde::de::DeserializeOwned>(
        fields: &IndexMap<String, Value>,
        k: &str,
    ) -> Option<T> {
        serde_json::from_value(fields.get(k)?.clone()).ok()
    }
    Record {
        timestamp: get("timestamp"),
        mode: get("mode"),
        size: get("size"),
        job_id: get("jobId"),
        schedule_id: get("scheduleId"),
        tags: get("tags"),
        vm: typed(&fields, "vm"),
        vm_snapshot: typed(&fields, "vmSnapshot"),
        vdis: typed(&fields, "vdis").unwrap_or_default(),
        vhds: typed(&fields, "vhds").unwrap_or_default(),
        is_vhd_differencing: typed(&fields, "isVhdDifferencing").unwrap_or_default(),
        is_immutable: get("isImmutable"),
    }
}

fn summarize(id: String, dir: &str, record: Record) -> Summary {
    let disks = record
        .vhds
        .iter()
        .map(|(vdi_ref, path)| {
            let vdi = record.vdis.get(vdi_ref);
            let path = path.as_str().unwrap_or_default();
            Disk {
                id: format!("{dir}/{}", path.trim_start_matches("./")),
                name: vdi.map_or(Value::Null, |v| v.name_label.clone()),
                uuid: vdi.map_or(Value::Null, |v| v.uuid.clone()),
            }
        })
        .collect();
    let differencing = record
        .is_vhd_differencing
        .values()
        .filter(|v| v.as_bool() == Some(true))
        .count();
    let dynamic = record
        .is_vhd_differencing
        .values()
        .filter(|v| v.as_bool() == Some(false))
        .count();
    let with_memory = record
        .vm_snapshot
        .as_ref()
        .and_then(|s| s.suspend_vdi.as_str())
        .is_some_and(|vdi| vdi != "OpaqueRef:NULL");
    Summary {
        id,
        timestamp: record.timestamp,
        mode: record.mode,
        size: record.size,
        job_id: record.job_id,
        schedule_id: record.schedule_id,
        tags: record.tags,
        vm: record.vm.unwrap_or_default(),
        disks,
        with_memory,
        differencing_vhds: differencing,
        dynamic_vhds: dynamic,
        is_immutable: record.is_immutable.as_bool().unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_and_complete_decode_agree() {
        let vm = VmId::new("vm").unwrap();
        let mut cache = VmCache::new(vm.clone());
        cache
            .add(
                "/xo-vm-backups/vm/b.json",
                br#"{"timestamp":2,"mode":"delta","vm":{"name_label":"x","big":[1,2,3]}}"#,
            )
            .unwrap();
        cache
            .add(
                "/xo-vm-backups/vm/a.json",
                br#"{"timestamp":1,"mode":"full"}"#,
            )
            .unwrap();
        let bytes = cache.commit();
        let limits = DecodeLimits::default();
        let quick = summaries_of_bytes(&vm, &bytes, &limits, &Filter::default()).unwrap();
        assert_eq!(quick, summaries(&cache, &Filter::default()).unwrap());
        assert_eq!(quick[0].id, "/xo-vm-backups/vm/a.json");
    }

    #[test]
    fn odd_records_and_hostile_keys_take_the_complete_path() {
        let vm = VmId::new("vm").unwrap();
        let limits = DecodeLimits::default();
        // `vdis` of the wrong type: the one pass fails, the lenient read works.
        let odd = crate::gzip::write_member(
            br#"{"/xo-vm-backups/vm/a.json":{"timestamp":1,"vdis":[]}}"#,
            None,
            6,
        );
        assert_eq!(
            summaries_of_bytes(&vm, &odd, &limits, &Filter::default())
                .unwrap()
                .len(),
            1
        );
        let foreign = crate::gzip::write_member(br#"{"/xo-vm-backups/other/a.json":{}}"#, None, 6);
        let err = summaries_of_bytes(&vm, &foreign, &limits, &Filter::default()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidKey);
        let array = crate::gzip::write_member(br#"{"/xo-vm-backups/vm/a.json":[]}"#, None, 6);
        let err = summaries_of_bytes(&vm, &array, &limits, &Filter::default()).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::EntryNotAnObject);
    }
}
