//! A VM's cache as a JS class, mirroring the napi addon's `NativeVmCache`
//! method for method. Structured results cross as JSON text.

use crate::throw;
use brcache_core::coherency::{self, Listing, Plan};
use brcache_core::{Filter, VmCache, VmId};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct NativeVmCache {
    inner: VmCache,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

fn contents(list: Vec<js_sys::Uint8Array>) -> Vec<Vec<u8>> {
    list.iter().map(js_sys::Uint8Array::to_vec).collect()
}

#[wasm_bindgen(js_name = newVmCache)]
pub fn new_vm_cache(vm: &str) -> Result<NativeVmCache, JsValue> {
    let vm = VmId::new(vm).map_err(throw)?;
    Ok(NativeVmCache {
        inner: VmCache::new(vm),
    })
}

#[wasm_bindgen(js_name = decodeVmCache)]
pub fn decode_vm_cache(
    vm: &str,
    bytes: &[u8],
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Result<NativeVmCache, JsValue> {
    let limits = crate::limits(max_inflated_size, max_depth);
    VmId::new(vm)
        .and_then(|vm| VmCache::decode(vm, bytes, &limits))
        .map(|inner| NativeVmCache { inner })
        .map_err(throw)
}

#[wasm_bindgen(js_name = vmSummaries)]
pub fn vm_summaries(
    vm: &str,
    bytes: &[u8],
    filter: Option<String>,
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Result<String, JsValue> {
    let filter = Filter::from_json(filter.as_deref()).map_err(throw)?;
    let limits = crate::limits(max_inflated_size, max_depth);
    VmId::new(vm)
        .and_then(|vm| brcache_core::summaries_of_bytes(&vm, bytes, &limits, &filter))
        .map(|s| json(&s))
        .map_err(throw)
}

#[wasm_bindgen(js_name = checkKeys)]
pub fn check_keys(vm: &str, keys: Vec<String>) -> Result<(), JsValue> {
    VmId::new(vm)
        .and_then(|vm| vm.check_keys(keys.iter().map(String::as_str)))
        .map(|_| ())
        .map_err(throw)
}

#[wasm_bindgen(js_name = fastPath)]
pub fn fast_path(bytes: &[u8], entries: Vec<String>) -> Result<bool, JsValue> {
    let header = brcache_core::codec::read_header(bytes).map_err(throw)?;
    Ok(coherency::fast_path(
        header.as_ref(),
        &Listing::from_entries(entries.iter().map(String::as_str)),
    ))
}

#[wasm_bindgen]
impl NativeVmCache {
    #[wasm_bindgen(getter)]
    pub fn vm(&self) -> String {
        self.inner.vm().as_str().to_string()
    }

    #[wasm_bindgen(getter)]
    pub fn generation(&self) -> f64 {
        self.inner.generation() as f64
    }

    #[wasm_bindgen(getter)]
    pub fn size(&self) -> u32 {
        self.inner.len() as u32
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner.keys().collect()
    }

    /// `[[key, record], …]` as JSON, records as read.
    #[wasm_bindgen(js_name = entriesJson)]
    pub fn entries_json(&self) -> String {
        self.inner.entries_json()
    }

    pub fn fingerprint(&self) -> String {
        self.inner.fingerprint().to_hex()
    }

    #[wasm_bindgen(js_name = recordedFingerprint)]
    pub fn recorded_fingerprint(&self) -> Option<String> {
        self.inner.recorded_fingerprint().map(|f| f.to_hex())
    }

    #[wasm_bindgen(js_name = toJson)]
    pub fn to_json(&self) -> String {
        self.inner.to_json()
    }

    pub fn add(&mut self, path: &str, metadata: &[u8]) -> Result<(), JsValue> {
        self.inner.add(path, metadata).map(|_| ()).map_err(throw)
    }

    pub fn remove(&mut self, paths: Vec<String>) -> Result<(), JsValue> {
        self.inner
            .remove(paths.iter().map(String::as_str))
            .map(|_| ())
            .map_err(throw)
    }

    #[wasm_bindgen(js_name = continueAfter)]
    pub fn continue_after(&mut self, previous_generation: f64) {
        self.inner.continue_after(previous_generation as u64);
    }

    pub fn commit(&mut self) -> Vec<u8> {
        self.inner.commit()
    }

    pub fn summaries(&self, filter: Option<String>) -> Result<String, JsValue> {
        let filter = Filter::from_json(filter.as_deref()).map_err(throw)?;
        brcache_core::summaries(&self.inner, &filter)
            .map(|s| json(&s))
            .map_err(throw)
    }

    pub fn reconcile(&self, entries: Vec<String>) -> String {
        let listing = Listing::from_entries(entries.iter().map(String::as_str));
        json(&coherency::reconcile(&self.inner, &listing))
    }

    pub fn apply(
        &mut self,
        plan: &str,
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
    ) -> Result<String, JsValue> {
        let plan = Plan::from_json(plan).map_err(throw)?;
        let files = coherency::files_from(names, contents(files)).map_err(throw)?;
        let repaired = coherency::apply(&self.inner, &plan, &files);
        self.inner = repaired.cache;
        Ok(json(&repaired.unreadable))
    }

    pub fn rebuild(
        &mut self,
        entries: Vec<String>,
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
    ) -> Result<String, JsValue> {
        let listing = Listing::from_entries(entries.iter().map(String::as_str));
        let files = coherency::files_from(names, contents(files)).map_err(throw)?;
        let mut repaired = coherency::rebuild(self.inner.vm().clone(), &listing, &files);
        repaired.cache.continue_after(self.inner.generation());
        self.inner = repaired.cache;
        Ok(json(&repaired.unreadable))
    }

    /// This cache's index segment (its restore view at its generation).
    #[wasm_bindgen(js_name = indexSegment)]
    pub fn index_segment(&self) -> Result<Vec<u8>, JsValue> {
        let entry = brcache_core::index::entry_of(&self.inner).map_err(throw)?;
        Ok(brcache_core::index::Segment::new(self.inner.vm().as_str(), entry).encode())
    }

    pub fn merge(&self, other: &NativeVmCache) -> NativeVmCache {
        NativeVmCache {
            inner: self.inner.merge(&other.inner),
        }
    }

    pub fn replay(&self, newer: &NativeVmCache) -> NativeVmCache {
        NativeVmCache {
            inner: self.inner.replay(&newer.inner),
        }
    }

    pub fn copy(&self) -> NativeVmCache {
        NativeVmCache {
            inner: self.inner.clone(),
        }
    }
}

#[wasm_bindgen(js_name = spliceCache)]
pub fn splice_cache(
    vm: &str,
    bytes: &[u8],
    entries: Vec<String>,
    added_names: Vec<String>,
    added_contents: Vec<js_sys::Uint8Array>,
    removed: Vec<String>,
) -> Result<Option<Vec<u8>>, JsValue> {
    brcache_core::splice::splice_request(
        vm,
        bytes,
        &entries,
        &added_names,
        &contents(added_contents),
        &removed,
    )
    .map_err(throw)
}

#[wasm_bindgen(js_name = indexSegmentOfBytes)]
pub fn index_segment_of_bytes(
    vm: &str,
    bytes: &[u8],
    max_inflated_size: Option<f64>,
    max_depth: Option<u32>,
) -> Result<Vec<u8>, JsValue> {
    let limits = crate::limits(max_inflated_size, max_depth);
    brcache_core::index::segment_of_bytes(vm, bytes, &limits).map_err(throw)
}
