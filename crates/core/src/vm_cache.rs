//! One VM folder's cache: its entries, its generation, and the changes this
//! writer made since it read it.
//!
//! Entries are ordered by metadata file name, which for XO's
//! `YYYYMMDDTHHmmssZ.json` names is chronological; the same set of entries
//! therefore always encodes to the same bytes, whichever order they were
//! added in.
//!
//! ## Concurrent writers
//!
//! Each cache remembers the changes made through it ([`Change`]), so two
//! writers that started from the same file can be reconciled:
//!
//! - [`VmCache::replay`] applies this writer's changes on top of a newer
//!   cache read back from the share (the usual case: lock, re-read, replay,
//!   write);
//! - [`VmCache::merge`] combines two in-memory caches. It keeps every add and
//!   every remove either side made. **A remove wins over an add of the same
//!   name**: a restore point's metadata file is created once (create-only,
//!   named by its timestamp) and deleted at most once, so an add can never
//!   legitimately follow the remove of the same name, and remove-wins keeps
//!   the merge commutative. When both sides hold different records for the
//!   same name (a record rewritten after a VHD merge), the one changed by a
//!   writer beats an unchanged one; between two changed (or two unchanged)
//!   records, the one from the higher generation wins, and equal generations
//!   fall back to comparing the bytes, so the result never depends on the
//!   argument order.
//!
//! Whatever the merge decides, a later coherency check against the folder
//! listing (see [`crate::coherency`]) is the final word.

use crate::codec::{self, DecodeLimits};
use crate::document::CacheDocument;
use crate::entry;
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::header::{CacheHeader, FORMAT_VERSION};
use crate::json::RawEntries;
use crate::key::{MetadataName, VmId};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// What a writer did to one name since it read the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
}

/// An entry as held: shaped by brcache, or read from a cache file and not
/// reshaped yet. Reshaping every entry on read would cost a parse of every
/// record, and listing or checking never needs it; only what is written,
/// compared or handed out is reshaped.
#[derive(Debug, Clone)]
enum Stored {
    Shaped(Box<RawValue>),
    Read(Box<RawValue>),
}

impl Stored {
    fn raw(&self) -> &RawValue {
        match self {
            Stored::Shaped(raw) | Stored::Read(raw) => raw,
        }
    }

    fn shaped(&self, key: &str) -> Cow<'_, RawValue> {
        match self {
            Stored::Shaped(raw) => Cow::Borrowed(raw),
            // Read entries were checked to be JSON objects when decoded,
            // and reshaping a JSON object cannot fail.
            Stored::Read(raw) => Cow::Owned(entry::normalize(key, raw).expect("a checked object")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct VmCache {
    vm: VmId,
    generation: u64,
    entries: BTreeMap<MetadataName, Stored>,
    changes: BTreeMap<MetadataName, Change>,
    /// The fingerprint the decoded header recorded, if any.
    recorded: Option<Fingerprint>,
}

impl VmCache {
    /// An empty cache, as for a VM folder that has none yet.
    pub fn new(vm: VmId) -> VmCache {
        VmCache {
            vm,
            generation: 0,
            entries: BTreeMap::new(),
            changes: BTreeMap::new(),
            recorded: None,
        }
    }

    /// A VM cache from a decoded document. Every key must name a metadata
    /// file of this VM's folder, or the whole cache is refused (with the
    /// offending key named): it cannot be trusted for anything else either.
    /// Entries are reshaped to brcache's canonical form.
    pub fn from_document(vm: VmId, document: CacheDocument) -> Result<VmCache> {
        let header = document.header().copied();
        let mut cache = VmCache::new(vm);
        cache.generation = header.map_or(0, |h| h.generation);
        cache.recorded = header.and_then(|h| h.fingerprint);
        cache.entries = cache.canonical_entries(document.into_entries())?;
        Ok(cache)
    }

    fn canonical_entries(&self, raw: RawEntries) -> Result<BTreeMap<MetadataName, Stored>> {
        let mut entries = BTreeMap::new();
        for (key, value) in raw {
            let name = self.vm.parse_key(&key)?;
            // Both key spellings may appear; like JSON.parse with a
            // duplicate key, the later one wins.
            entries.insert(name, Stored::Read(value));
        }
        Ok(entries)
    }

    /// Decodes `cache.json.gz` bytes for this VM.
    pub fn decode(vm: VmId, bytes: &[u8], limits: &DecodeLimits) -> Result<VmCache> {
        VmCache::from_document(vm, codec::decode(bytes, limits)?)
    }

    pub fn vm(&self) -> &VmId {
        &self.vm
    }

    /// How many times the cache had been written when it was read.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The fingerprint the cache's header recorded when it was read, if it
    /// had one (caches written by XO have none).
    pub fn recorded_fingerprint(&self) -> Option<Fingerprint> {
        self.recorded
    }

    /// The fingerprint of the names this cache covers now.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_names(self.entries.keys().map(MetadataName::as_str))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, name: &MetadataName) -> bool {
        self.entries.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &MetadataName> {
        self.entries.keys()
    }

    /// The canonical keys, in name order.
    pub fn keys(&self) -> impl Iterator<Item = String> {
        self.entries.keys().map(|name| self.vm.key(name))
    }

    /// The entries by canonical key, in name order, in brcache's shape.
    pub fn entries(&self) -> impl Iterator<Item = (String, Cow<'_, RawValue>)> {
        self.entries.iter().map(|(name, stored)| {
            let key = self.vm.key(name);
            let shaped = stored.shaped(&key);
            (key, shaped)
        })
    }

    /// The entries by canonical key as they were read or added, for readers
    /// of a few fields (summaries) that need no reshaping.
    pub(crate) fn raw_entries(&self) -> impl Iterator<Item = (String, &RawValue)> {
        self.entries
            .iter()
            .map(|(name, stored)| (self.vm.key(name), stored.raw()))
    }

    /// The entries as a JSON array of `[key, record]` pairs in name order,
    /// records as read (not reshaped): what a JS caller parses in one go
    /// before stamping each record with its key.
    pub fn entries_json(&self) -> String {
        let size: usize = self
            .entries
            .values()
            .map(|s| s.raw().get().len() + 64)
            .sum();
        let mut out = String::with_capacity(size + 2);
        out.push('[');
        for (i, (key, raw)) in self.raw_entries().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            crate::json::push_string(&mut out, &key);
            out.push(',');
            out.push_str(raw.get());
            out.push(']');
        }
        out.push(']');
        out
    }

    pub fn get(&self, name: &MetadataName) -> Option<Cow<'_, RawValue>> {
        let stored = self.entries.get(name)?;
        Some(stored.shaped(&self.vm.key(name)))
    }

    /// Makes the next write's generation follow `previous` (the generation
    /// of the file being replaced), so generations never go backwards when a
    /// cache is rebuilt from scratch.
    pub fn continue_after(&mut self, previous: u64) {
        self.generation = self.generation.max(previous);
    }

    /// The changes made through this cache since it was read.
    pub fn changes(&self) -> &BTreeMap<MetadataName, Change> {
        &self.changes
    }

    /// Records the backup whose metadata file `path` (a cache key, either
    /// spelling) was just written with `metadata`. Adding the same file
    /// again replaces its entry: the operation is idempotent.
    pub fn add(&mut self, path: &str, metadata: &[u8]) -> Result<MetadataName> {
        let name = self.vm.parse_key(path)?;
        self.add_name(name.clone(), metadata)?;
        Ok(name)
    }

    /// [`VmCache::add`] by file name.
    pub fn add_name(&mut self, name: MetadataName, metadata: &[u8]) -> Result<()> {
        let entry = entry::from_metadata(&self.vm.key(&name), metadata)?;
        self.entries.insert(name.clone(), Stored::Shaped(entry));
        self.changes.insert(name, Change::Added);
        Ok(())
    }

    /// Forgets the backups whose metadata files were deleted. Removing an
    /// absent entry is not an error. Every path is checked before anything
    /// changes: one path outside the VM folder refuses the whole call.
    pub fn remove<'a>(
        &mut self,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<MetadataName>> {
        let names = paths
            .into_iter()
            .map(|p| self.vm.parse_key(p))
            .collect::<Result<Vec<_>>>()?;
        for name in &names {
            self.remove_name(name.clone());
        }
        Ok(names)
    }

    /// [`VmCache::remove`] by file name.
    pub fn remove_name(&mut self, name: MetadataName) {
        self.entries.remove(&name);
        self.changes.insert(name, Change::Removed);
    }

    /// Inserts an already shaped entry (from another cache of this VM).
    fn put(&mut self, name: MetadataName, entry: Box<RawValue>) {
        self.entries.insert(name, Stored::Shaped(entry));
    }

    /// This writer's changes applied on top of `newer`, a fresher read of
    /// the same cache: the result holds everything `newer` holds plus what
    /// this writer added, minus what it removed, and its generation is
    /// `newer`'s (the next write increments it).
    pub fn replay(&self, newer: &VmCache) -> VmCache {
        let mut result = newer.clone();
        for (name, change) in &self.changes {
            match change {
                Change::Added => {
                    if let Some(entry) = self.get(name) {
                        result.put(name.clone(), entry.into_owned());
                    }
                    result.changes.insert(name.clone(), Change::Added);
                }
                Change::Removed => result.remove_name(name.clone()),
            }
        }
        result
    }

    /// Two writers' caches of the same VM combined (rules in the module
    /// documentation). The generation is above both.
    pub fn merge(&self, other: &VmCache) -> VmCache {
        let mut result = VmCache::new(self.vm.clone());
        result.generation = self.generation.max(other.generation) + 1;
        let names = self
            .entries
            .keys()
            .chain(other.entries.keys())
            .chain(self.changes.keys())
            .chain(other.changes.keys());
        for name in names {
            if result.entries.contains_key(name) || result.changes.contains_key(name) {
                continue;
            }
            let removed = [self, other]
                .iter()
                .any(|c| c.changes.get(name) == Some(&Change::Removed));
            if removed {
                result.changes.insert(name.clone(), Change::Removed);
                continue;
            }
            let pick = match (self.get(name), other.get(name)) {
                (Some(a), Some(b)) => Some(if self.outranks(other, name, &a, &b) {
                    a
                } else {
                    b
                }),
                (a, b) => a.or(b),
            };
            if let Some(entry) = pick {
                result.put(name.clone(), entry.into_owned());
            }
            if [self, other].iter().any(|c| c.changes.contains_key(name)) {
                result.changes.insert(name.clone(), Change::Added);
            }
        }
        result
    }

    /// Whether this cache's record `a` for `name` beats `other`'s `b`.
    fn outranks(&self, other: &VmCache, name: &MetadataName, a: &RawValue, b: &RawValue) -> bool {
        let rank = |c: &VmCache| (c.changes.contains_key(name), c.generation);
        match rank(self).cmp(&rank(other)) {
            std::cmp::Ordering::Equal => a.get() >= b.get(),
            order => order.is_gt(),
        }
    }

    /// The document to write: entries by canonical key, with a header at
    /// `generation` recording the fingerprint of the names covered.
    pub fn to_document(&self, generation: u64) -> CacheDocument {
        let header = CacheHeader {
            version: FORMAT_VERSION,
            generation,
            entries: u32::try_from(self.entries.len()).unwrap_or(u32::MAX),
            fingerprint: Some(self.fingerprint()),
        };
        let entries: RawEntries = self
            .entries()
            .map(|(key, value)| (key, value.into_owned()))
            .collect();
        CacheDocument::from_parts(Some(header), entries)
    }

    /// The bytes of the next write of this cache: the generation goes up by
    /// one, and this cache now stands for what was written (no pending
    /// changes, the new fingerprint recorded).
    pub fn commit(&mut self) -> Vec<u8> {
        self.generation += 1;
        let document = self.to_document(self.generation);
        // What was just written is shaped: keep that, not the raw reads.
        for ((_, value), stored) in document.entries().iter().zip(self.entries.values_mut()) {
            *stored = Stored::Shaped(value.clone());
        }
        self.changes.clear();
        self.recorded = document.header().and_then(|h| h.fingerprint);
        codec::encode(&document)
    }

    /// The body of the cache, as JSON text (what XO reads).
    pub fn to_json(&self) -> String {
        self.to_document(self.generation).to_json()
    }
}

impl PartialEq for VmCache {
    /// Same VM, same entries byte for byte. Generations and pending changes
    /// are bookkeeping, not content.
    fn eq(&self, other: &Self) -> bool {
        self.vm == other.vm
            && self.entries.len() == other.entries.len()
            && self
                .entries()
                .zip(other.entries())
                .all(|((ka, ea), (kb, eb))| ka == kb && ea.get() == eb.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn vm() -> VmId {
        VmId::new("vm-1").unwrap()
    }

    fn key(name: &str) -> String {
        format!("/xo-vm-backups/vm-1/{name}")
    }

    fn meta(mode: &str, size: u64) -> Vec<u8> {
        format!(r#"{{"mode":"{mode}","size":{size},"timestamp":1}}"#).into_bytes()
    }

    #[test]
    fn add_and_remove_are_idempotent() {
        let mut cache = VmCache::new(vm());
        cache.add(&key("1.json"), &meta("full", 1)).unwrap();
        let once = cache.clone();
        cache.add(&key("1.json"), &meta("full", 1)).unwrap();
        assert_eq!(cache, once);
        cache
            .remove([key("1.json").as_str(), key("2.json").as_str()])
            .unwrap();
        let removed = cache.clone();
        cache.remove([key("1.json").as_str()]).unwrap();
        assert_eq!(cache, removed);
        assert!(cache.is_empty());
    }

    #[test]
    fn remove_checks_every_path_before_changing_anything() {
        let mut cache = VmCache::new(vm());
        cache.add(&key("1.json"), &meta("full", 1)).unwrap();
        let err = cache
            .remove([key("1.json").as_str(), "/xo-vm-backups/vm-2/1.json"])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_cache_with_a_foreign_key_is_refused_naming_it() {
        let doc = CacheDocument::from_json(r#"{"/xo-vm-backups/vm-1/../vm-2/1.json":{}}"#).unwrap();
        let err = VmCache::from_document(vm(), doc).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey);
        assert!(err.detail().contains("../vm-2/1.json"), "{err}");
    }

    #[test]
    fn commit_increments_the_generation_and_round_trips() {
        let mut cache = VmCache::new(vm());
        cache.add(&key("1.json"), &meta("delta", 5)).unwrap();
        let bytes = cache.commit();
        assert_eq!(cache.generation(), 1);
        let read = VmCache::decode(vm(), &bytes, &DecodeLimits::default()).unwrap();
        assert_eq!(read, cache);
        assert_eq!(read.generation(), 1);
        assert_eq!(read.recorded_fingerprint(), Some(read.fingerprint()));
    }

    #[test]
    fn replay_keeps_both_writers_work() {
        let mut base = VmCache::new(vm());
        base.add(&key("1.json"), &meta("full", 1)).unwrap();
        base.add(&key("2.json"), &meta("delta", 2)).unwrap();
        base.commit();
        let mut a = base.clone();
        let mut b = base.clone();
        a.add(&key("3.json"), &meta("delta", 3)).unwrap();
        a.remove([key("1.json").as_str()]).unwrap();
        b.add(&key("4.json"), &meta("delta", 4)).unwrap();
        b.remove([key("2.json").as_str()]).unwrap();
        b.commit();
        let result = a.replay(&b);
        let names: Vec<_> = result.names().map(|n| n.as_str().to_string()).collect();
        assert_eq!(names, ["3.json", "4.json"]);
    }
}
