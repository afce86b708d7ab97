//! A VM's cache as a JS class. Structured results (plans, summaries,
//! unreadable files) cross as JSON text, which the JS glue parses: one
//! format for both bindings, and JSON.parse is the fastest way to build
//! JS objects.

use crate::ErrorInfo;
use brcache_core::coherency::{self, Listing, Plan};
use brcache_core::{Filter, VmCache, VmId};
use napi::bindgen_prelude::{Buffer, Either, Uint8Array};
use napi_derive::napi;

#[napi(js_name = "NativeVmCache")]
pub struct NativeVmCache {
    inner: VmCache,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

fn contents(list: Vec<Uint8Array>) -> Vec<Vec<u8>> {
    list.iter().map(|bytes| bytes.to_vec()).collect()
}

/// An empty cache for the VM folder `vm`.
#[napi]
pub fn new_vm_cache(vm: String) -> Either<NativeVmCache, ErrorInfo> {
    match VmId::new(&vm) {
        Ok(vm) => Either::A(NativeVmCache {
            inner: VmCache::new(vm),
        }),
        Err(error) => Either::B(error.into()),
    }
}

/// `cache.json.gz` bytes decoded as the cache of `vm`.
#[napi]
pub fn decode_vm_cache(
    vm: String,
    bytes: Uint8Array,
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Either<NativeVmCache, ErrorInfo> {
    let limits = crate::limits(max_inflated_size, max_depth);
    match VmId::new(&vm).and_then(|vm| VmCache::decode(vm, &bytes, &limits)) {
        Ok(inner) => Either::A(NativeVmCache { inner }),
        Err(error) => Either::B(error.into()),
    }
}

/// A VM cache's summaries as JSON, straight from its bytes.
#[napi]
pub fn vm_summaries(
    vm: String,
    bytes: Uint8Array,
    filter: Option<String>,
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Either<String, ErrorInfo> {
    let filter = match Filter::from_json(filter.as_deref()) {
        Ok(filter) => filter,
        Err(error) => return Either::B(error.into()),
    };
    let limits = crate::limits(max_inflated_size, max_depth);
    match VmId::new(&vm)
        .and_then(|vm| brcache_core::summaries_of_bytes(&vm, &bytes, &limits, &filter))
    {
        Ok(summaries) => Either::A(json(&summaries)),
        Err(error) => Either::B(error.into()),
    }
}

/// Checks that every key names a distinct metadata file of `vm`'s folder.
#[napi]
pub fn check_keys(vm: String, keys: Vec<String>) -> Option<ErrorInfo> {
    VmId::new(&vm)
        .and_then(|vm| vm.check_keys(keys.iter().map(String::as_str)))
        .err()
        .map(ErrorInfo::from)
}

/// Whether the header of `bytes` alone proves the cache covers exactly the
/// metadata files among `entries` (no inflate).
#[napi]
pub fn fast_path(bytes: Uint8Array, entries: Vec<String>) -> Either<bool, ErrorInfo> {
    match brcache_core::codec::read_header(&bytes) {
        Ok(header) => Either::A(coherency::fast_path(
            header.as_ref(),
            &Listing::from_entries(entries.iter().map(String::as_str)),
        )),
        Err(error) => Either::B(error.into()),
    }
}

#[napi]
impl NativeVmCache {
    #[napi(getter)]
    pub fn vm(&self) -> String {
        self.inner.vm().as_str().to_string()
    }

    #[napi(getter)]
    pub fn generation(&self) -> f64 {
        self.inner.generation() as f64
    }

    #[napi(getter)]
    pub fn size(&self) -> u32 {
        self.inner.len() as u32
    }

    /// Canonical keys, in name (chronological) order.
    #[napi]
    pub fn keys(&self) -> Vec<String> {
        self.inner.keys().collect()
    }

    /// `[[key, record], …]` as JSON, records as read.
    #[napi]
    pub fn entries_json(&self) -> String {
        self.inner.entries_json()
    }

    #[napi]
    pub fn fingerprint(&self) -> String {
        self.inner.fingerprint().to_hex()
    }

    #[napi]
    pub fn recorded_fingerprint(&self) -> Option<String> {
        self.inner.recorded_fingerprint().map(|f| f.to_hex())
    }

    /// The cache body as XO reads it.
    #[napi]
    pub fn to_json(&self) -> String {
        self.inner.to_json()
    }

    #[napi]
    pub fn add(&mut self, path: String, metadata: Uint8Array) -> Option<ErrorInfo> {
        self.inner.add(&path, &metadata).err().map(ErrorInfo::from)
    }

    #[napi]
    pub fn remove(&mut self, paths: Vec<String>) -> Option<ErrorInfo> {
        self.inner
            .remove(paths.iter().map(String::as_str))
            .err()
            .map(ErrorInfo::from)
    }

    #[napi]
    pub fn continue_after(&mut self, previous_generation: f64) {
        self.inner.continue_after(previous_generation as u64);
    }

    /// The bytes of the next write; the generation goes up by one.
    #[napi]
    pub fn commit(&mut self) -> Buffer {
        self.inner.commit().into()
    }

    /// Summaries as JSON, `filter` being `{ jobId?, scheduleId?, mode? }`
    /// as JSON.
    #[napi]
    pub fn summaries(&self, filter: Option<String>) -> Either<String, ErrorInfo> {
        let filter = match Filter::from_json(filter.as_deref()) {
            Ok(filter) => filter,
            Err(error) => return Either::B(error.into()),
        };
        match brcache_core::summaries(&self.inner, &filter) {
            Ok(summaries) => Either::A(json(&summaries)),
            Err(error) => Either::B(error.into()),
        }
    }

    /// The plan (JSON) that makes this cache coherent with a listing of
    /// its folder's entries.
    #[napi]
    pub fn reconcile(&self, entries: Vec<String>) -> String {
        let listing = Listing::from_entries(entries.iter().map(String::as_str));
        json(&coherency::reconcile(&self.inner, &listing))
    }

    /// Applies a plan (JSON, as `reconcile` gave it) with the missing files'
    /// contents; returns the unreadable files as JSON.
    #[napi]
    pub fn apply(
        &mut self,
        plan: String,
        names: Vec<String>,
        files: Vec<Uint8Array>,
    ) -> Either<String, ErrorInfo> {
        let plan = match Plan::from_json(&plan) {
            Ok(plan) => plan,
            Err(error) => return Either::B(error.into()),
        };
        match coherency::files_from(names, contents(files)) {
            Ok(files) => {
                let repaired = coherency::apply(&self.inner, &plan, &files);
                self.inner = repaired.cache;
                Either::A(json(&repaired.unreadable))
            }
            Err(error) => Either::B(error.into()),
        }
    }

    /// Replaces the entries with a rebuild from a listing and the files it
    /// names (the generation carries on); returns the unreadable files.
    #[napi]
    pub fn rebuild(
        &mut self,
        entries: Vec<String>,
        names: Vec<String>,
        files: Vec<Uint8Array>,
    ) -> Either<String, ErrorInfo> {
        let listing = Listing::from_entries(entries.iter().map(String::as_str));
        match coherency::files_from(names, contents(files)) {
            Ok(files) => {
                let mut repaired = coherency::rebuild(self.inner.vm().clone(), &listing, &files);
                repaired.cache.continue_after(self.inner.generation());
                self.inner = repaired.cache;
                Either::A(json(&repaired.unreadable))
            }
            Err(error) => Either::B(error.into()),
        }
    }

    /// This cache's index segment (its restore view at its generation).
    #[napi]
    pub fn index_segment(&self) -> Either<Buffer, ErrorInfo> {
        match brcache_core::index::entry_of(&self.inner) {
            Ok(entry) => Either::A(
                brcache_core::index::Segment::new(self.inner.vm().as_str(), entry)
                    .encode()
                    .into(),
            ),
            Err(error) => Either::B(error.into()),
        }
    }

    #[napi]
    pub fn merge(&self, other: &NativeVmCache) -> NativeVmCache {
        NativeVmCache {
            inner: self.inner.merge(&other.inner),
        }
    }

    #[napi]
    pub fn replay(&self, newer: &NativeVmCache) -> NativeVmCache {
        NativeVmCache {
            inner: self.inner.replay(&newer.inner),
        }
    }

    #[napi]
    pub fn copy(&self) -> NativeVmCache {
        NativeVmCache {
            inner: self.inner.clone(),
        }
    }
}

/// `vm`'s cache after this writer created `added` (names and contents)
/// and deleted `removed`, spliced from its bytes when their header proves
/// them true to the folder as `entries` lists it now; `null` otherwise
/// (see the core's `splice`).
#[napi]
pub fn splice_cache(
    vm: String,
    bytes: Uint8Array,
    entries: Vec<String>,
    added_names: Vec<String>,
    added_contents: Vec<Uint8Array>,
    removed: Vec<String>,
) -> Either<Option<Buffer>, ErrorInfo> {
    match brcache_core::splice::splice_request(
        &vm,
        &bytes,
        &entries,
        &added_names,
        &contents(added_contents),
        &removed,
    ) {
        Ok(spliced) => Either::A(spliced.map(Buffer::from)),
        Err(error) => Either::B(error.into()),
    }
}

/// The index segment of `vm`'s cache from its bytes (one pass, no decode).
#[napi]
pub fn index_segment_of_bytes(
    vm: String,
    bytes: Uint8Array,
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Either<Buffer, ErrorInfo> {
    let limits = crate::limits(max_inflated_size, max_depth);
    match brcache_core::index::segment_of_bytes(&vm, &bytes, &limits) {
        Ok(segment) => Either::A(segment.into()),
        Err(error) => Either::B(error.into()),
    }
}
