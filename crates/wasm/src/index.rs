//! The repository-wide index as a JS class, mirroring the napi addon's
//! `NativeIndex`.

use crate::throw;
use brcache_core::index::{self, Loaded};
use brcache_core::{DecodeLimits, Filter};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct NativeIndex {
    loaded: Loaded,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

#[wasm_bindgen(js_name = loadIndex)]
pub fn load_index(
    snapshot: Option<Vec<u8>>,
    names: Vec<String>,
    segments: Vec<js_sys::Uint8Array>,
) -> Result<NativeIndex, JsValue> {
    let segments = segments.iter().map(js_sys::Uint8Array::to_vec).collect();
    index::named(names, segments)
        .and_then(|segments| {
            Loaded::decode(snapshot.as_deref(), segments, &DecodeLimits::default())
        })
        .map(|loaded| NativeIndex { loaded })
        .map_err(throw)
}

#[wasm_bindgen]
pub struct NativeCompaction {
    compaction: index::Compaction,
}

#[wasm_bindgen]
impl NativeCompaction {
    #[wasm_bindgen(js_name = summaryJson)]
    pub fn summary_json(&self) -> String {
        json(&self.compaction.summary())
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.compaction.snapshot.encode()
    }
}

#[wasm_bindgen(js_name = rebuildIndex)]
pub fn rebuild_index(
    listing: Vec<String>,
    from_caches: Vec<js_sys::Uint8Array>,
    names: Vec<String>,
    segments: Vec<js_sys::Uint8Array>,
) -> Result<NativeCompaction, JsValue> {
    let plan = index::ReadPlan::from_listing(listing.iter().map(String::as_str));
    let segments = segments.iter().map(js_sys::Uint8Array::to_vec).collect();
    let from_caches = from_caches.iter().map(js_sys::Uint8Array::to_vec).collect();
    index::named(names, segments)
        .and_then(|segments| {
            index::rebuild_from_bytes(&plan, from_caches, segments, &DecodeLimits::default())
        })
        .map(|compaction| NativeCompaction { compaction })
        .map_err(throw)
}

#[wasm_bindgen(js_name = indexReadPlan)]
pub fn index_read_plan(names: Vec<String>) -> String {
    json(&index::ReadPlan::from_listing(
        names.iter().map(String::as_str),
    ))
}

#[wasm_bindgen(js_name = indexCompactAfter)]
pub fn index_compact_after() -> u32 {
    index::COMPACT_AFTER as u32
}

#[wasm_bindgen(js_name = indexSegmentName)]
pub fn index_segment_name(time_ms: f64, random_high: u32, random_low: u32) -> String {
    index::segment_name(
        time_ms as u64,
        (u64::from(random_high) << 32) | u64::from(random_low),
    )
}

#[wasm_bindgen]
impl NativeIndex {
    #[wasm_bindgen(js_name = viewJson)]
    pub fn view_json(&self, filter: Option<String>) -> Result<String, JsValue> {
        let filter = Filter::from_json(filter.as_deref()).map_err(throw)?;
        Ok(json(&self.loaded.current().filtered_view(&filter)))
    }

    #[wasm_bindgen(js_name = vmGeneration)]
    pub fn vm_generation(&self, vm: &str) -> Option<f64> {
        self.loaded.current().generation_of(vm).map(|g| g as f64)
    }

    #[wasm_bindgen(js_name = goneSegment)]
    pub fn gone_segment(&self, vm: &str) -> Vec<u8> {
        let entry = self.loaded.current().gone_entry(vm);
        index::Segment::new(vm, entry).encode()
    }

    #[wasm_bindgen(getter)]
    pub fn generation(&self) -> f64 {
        self.loaded.snapshot.generation as f64
    }

    #[wasm_bindgen(getter)]
    pub fn unfolded(&self) -> u32 {
        self.loaded.unfolded() as u32
    }

    #[wasm_bindgen(js_name = unreadableJson)]
    pub fn unreadable_json(&self) -> String {
        json(&self.loaded.unreadable)
    }

    pub fn compaction(&self, listed: f64) -> NativeCompaction {
        NativeCompaction {
            compaction: self.loaded.compact(listed as u64),
        }
    }

    #[wasm_bindgen(js_name = driftJson)]
    pub fn drift_json(&self, caches: &str) -> Result<String, JsValue> {
        let caches = index::parse_caches(caches).map_err(throw)?;
        Ok(json(&index::drift(self.loaded.current(), &caches)))
    }
}
