//! A VM's cache as a JS class, and the functions that work on a cache's
//! bytes without one. Structured results (plans, summaries, unreadable
//! files) cross as JSON text, which the JS glue parses.

use super::{json, limits};
use crate::wire::{self, Bytes, BytesList, BytesOut, Throws};
use brcache_core::{Filter, VmCache, VmId};
use brcache_core::{Listing, Plan};

class! {
    /// A VM's cache: its entries, generation and fingerprint.
    pub struct NativeVmCache { inner: VmCache }
    impl {
        #[export(js_name = "vm", getter)]
        pub fn vm(&self) -> String {
            self.inner.vm().as_str().to_string()
        }

        #[export(js_name = "generation", getter)]
        pub fn generation(&self) -> f64 {
            self.inner.generation() as f64
        }

        #[export(js_name = "size", getter)]
        pub fn size(&self) -> u32 {
            self.inner.len() as u32
        }

        /// Canonical keys, in name (chronological) order.
        #[export(js_name = "keys")]
        pub fn keys(&self) -> Vec<String> {
            self.inner.keys().collect()
        }

        /// `[[key, record], …]` as JSON, records as read.
        #[export(js_name = "entriesJson")]
        pub fn entries_json(&self) -> String {
            self.inner.entries_json()
        }

        #[export(js_name = "fingerprint")]
        pub fn fingerprint(&self) -> String {
            self.inner.fingerprint().to_hex()
        }

        #[export(js_name = "recordedFingerprint")]
        pub fn recorded_fingerprint(&self) -> Option<String> {
            self.inner.recorded_fingerprint().map(|f| f.to_hex())
        }

        /// The cache body as XO reads it.
        #[export(js_name = "toJson")]
        pub fn to_json(&self) -> String {
            self.inner.to_json()
        }

        #[export(js_name = "add")]
        pub fn add(&mut self, path: String, metadata: Bytes) -> Throws<()> {
            self.inner.add(&path, &metadata)?;
            Ok(())
        }

        #[export(js_name = "remove")]
        pub fn remove(&mut self, paths: Vec<String>) -> Throws<()> {
            self.inner.remove(paths.iter().map(String::as_str))?;
            Ok(())
        }

        #[export(js_name = "continueAfter")]
        pub fn continue_after(&mut self, previous_generation: f64) {
            self.inner.continue_after(previous_generation as u64);
        }

        /// The bytes of the next write; the generation goes up by one.
        #[export(js_name = "commit")]
        pub fn commit(&mut self) -> BytesOut {
            wire::bytes_out(self.inner.commit())
        }

        /// Summaries as JSON, `filter` being `{ jobId?, scheduleId?, mode? }`
        /// as JSON.
        #[export(js_name = "summaries")]
        pub fn summaries(&self, filter: Option<String>) -> Throws<String> {
            let filter = Filter::from_json(filter.as_deref())?;
            Ok(json(&brcache_core::summaries(&self.inner, &filter)?))
        }

        /// The plan (JSON) that makes this cache coherent with a listing of
        /// its folder's entries.
        #[export(js_name = "reconcile")]
        pub fn reconcile(&self, entries: Vec<String>) -> String {
            let listing = Listing::from_entries(entries.iter().map(String::as_str));
            json(&brcache_core::reconcile(&self.inner, &listing))
        }

        /// Applies a plan (JSON, as `reconcile` gave it) with the missing
        /// files' contents; returns the unreadable files as JSON.
        #[export(js_name = "apply")]
        pub fn apply(&mut self, plan: String, names: Vec<String>, files: BytesList) -> Throws<String> {
            let plan = Plan::from_json(&plan)?;
            let files = brcache_core::files_from(names, wire::owned(files))?;
            let repaired = brcache_core::apply(&self.inner, &plan, &files);
            self.inner = repaired.cache;
            Ok(json(&repaired.unreadable))
        }

        /// Replaces the entries with a rebuild from a listing and the files
        /// it names (the generation carries on); returns the unreadable files.
        #[export(js_name = "rebuild")]
        pub fn rebuild(&mut self, entries: Vec<String>, names: Vec<String>, files: BytesList) -> Throws<String> {
            let listing = Listing::from_entries(entries.iter().map(String::as_str));
            let files = brcache_core::files_from(names, wire::owned(files))?;
            let mut repaired = brcache_core::rebuild(self.inner.vm().clone(), &listing, &files);
            repaired.cache.continue_after(self.inner.generation());
            self.inner = repaired.cache;
            Ok(json(&repaired.unreadable))
        }

        /// This cache's index segment (its restore view at its generation).
        #[export(js_name = "indexSegment")]
        pub fn index_segment(&self) -> Throws<BytesOut> {
            let entry = brcache_core::entry_of(&self.inner)?;
            let segment = brcache_core::Segment::new(self.inner.vm().as_str(), entry);
            Ok(wire::bytes_out(segment.encode()))
        }

        #[export(js_name = "merge")]
        pub fn merge(&self, other: &NativeVmCache) -> NativeVmCache {
            NativeVmCache { inner: self.inner.merge(&other.inner) }
        }

        #[export(js_name = "replay")]
        pub fn replay(&self, newer: &NativeVmCache) -> NativeVmCache {
            NativeVmCache { inner: self.inner.replay(&newer.inner) }
        }

        #[export(js_name = "copy")]
        pub fn copy(&self) -> NativeVmCache {
            NativeVmCache { inner: self.inner.clone() }
        }
    }
}

functions! {
    /// An empty cache for the VM folder `vm`.
    #[export(js_name = "newVmCache")]
    pub fn new_vm_cache(vm: String) -> Throws<NativeVmCache> {
        Ok(NativeVmCache { inner: VmCache::new(VmId::new(&vm)?) })
    }

    /// `cache.json.gz` bytes decoded as the cache of `vm`.
    #[export(js_name = "decodeVmCache")]
    pub fn decode_vm_cache(
        vm: String,
        bytes: Bytes,
        max_inflated_size: Option<f64>,
        max_depth: Option<u32>,
    ) -> Throws<NativeVmCache> {
        let limits = limits(max_inflated_size, max_depth);
        Ok(NativeVmCache { inner: VmCache::decode(VmId::new(&vm)?, &bytes, &limits)? })
    }

    /// A VM cache's summaries as JSON, straight from its bytes.
    #[export(js_name = "vmSummaries")]
    pub fn vm_summaries(
        vm: String,
        bytes: Bytes,
        filter: Option<String>,
        max_inflated_size: Option<f64>,
        max_depth: Option<u32>,
    ) -> Throws<String> {
        let filter = Filter::from_json(filter.as_deref())?;
        let limits = limits(max_inflated_size, max_depth);
        let vm = VmId::new(&vm)?;
        Ok(json(&brcache_core::summaries_of_bytes(&vm, &bytes, &limits, &filter)?))
    }

    /// Checks that every key names a distinct metadata file of `vm`'s
    /// folder; throws on the first that does not.
    #[export(js_name = "checkKeys")]
    pub fn check_keys(vm: String, keys: Vec<String>) -> Throws<()> {
        VmId::new(&vm)?.check_keys(keys.iter().map(String::as_str))?;
        Ok(())
    }

    /// Whether the header of `bytes` alone proves the cache covers exactly
    /// the metadata files among `entries` (no inflate).
    #[export(js_name = "fastPath")]
    pub fn fast_path(bytes: Bytes, entries: Vec<String>) -> Throws<bool> {
        let header = brcache_core::read_header(&bytes)?;
        let listing = Listing::from_entries(entries.iter().map(String::as_str));
        Ok(brcache_core::fast_path(header.as_ref(), &listing))
    }

    /// `vm`'s cache after this writer created `added` (names and contents)
    /// and deleted `removed`, spliced from its bytes when their header
    /// proves them true to the folder as `entries` lists it now; `null`
    /// otherwise (see the core's `splice`).
    #[export(js_name = "spliceCache")]
    pub fn splice_cache(
        vm: String,
        bytes: Bytes,
        entries: Vec<String>,
        added_names: Vec<String>,
        added_contents: BytesList,
        removed: Vec<String>,
    ) -> Throws<Option<BytesOut>> {
        let spliced = brcache_core::splice_request(
            &vm,
            &bytes,
            &entries,
            &added_names,
            &wire::owned(added_contents),
            &removed,
        )?;
        Ok(spliced.map(wire::bytes_out))
    }

    /// The index segment of `vm`'s cache from its bytes (one pass, no
    /// decode).
    #[export(js_name = "indexSegmentOfBytes")]
    pub fn index_segment_of_bytes(
        vm: String,
        bytes: Bytes,
        max_inflated_size: Option<f64>,
        max_depth: Option<u32>,
    ) -> Throws<BytesOut> {
        let limits = limits(max_inflated_size, max_depth);
        Ok(wire::bytes_out(brcache_core::segment_of_bytes(&vm, &bytes, &limits)?))
    }
}
