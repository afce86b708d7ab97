//! The repository-wide index as a JS class; the I/O is js/common/repo-index.js.

use crate::ErrorInfo;
use brcache_core::index::{self, Loaded};
use brcache_core::{DecodeLimits, Filter};
use napi::bindgen_prelude::{Buffer, Either, Uint8Array};
use napi_derive::napi;

#[napi(js_name = "NativeIndex")]
pub struct NativeIndex {
    loaded: Loaded,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serializes")
}

/// An index from the bytes a reader fetched: the newest snapshot (if any)
/// and the segments listed beside it.
#[napi]
pub fn load_index(
    snapshot: Option<Uint8Array>,
    names: Vec<String>,
    segments: Vec<Uint8Array>,
) -> Either<NativeIndex, ErrorInfo> {
    let segments = segments.iter().map(|s| s.to_vec()).collect();
    let loaded = index::named(names, segments).and_then(|segments| {
        Loaded::decode(snapshot.as_deref(), segments, &DecodeLimits::default())
    });
    match loaded {
        Ok(loaded) => Either::A(NativeIndex { loaded }),
        Err(error) => Either::B(error.into()),
    }
}

/// A new snapshot to write create-only, and what to delete once it is.
#[napi(js_name = "NativeCompaction")]
pub struct NativeCompaction {
    compaction: index::Compaction,
}

#[napi]
impl NativeCompaction {
    /// Its name, generation and the segments to delete (JSON).
    #[napi]
    pub fn summary_json(&self) -> String {
        json(&self.compaction.summary())
    }

    #[napi]
    pub fn snapshot(&self) -> Buffer {
        self.compaction.snapshot.encode().into()
    }
}

/// The index rebuilt from each VM cache's segment (`fromCaches`) and the
/// segments read from a listing of the index folder (`names`), no snapshot
/// read: see `index::rebuild`.
#[napi]
pub fn rebuild_index(
    listing: Vec<String>,
    from_caches: Vec<Uint8Array>,
    names: Vec<String>,
    segments: Vec<Uint8Array>,
) -> Either<NativeCompaction, ErrorInfo> {
    let plan = index::ReadPlan::from_listing(listing.iter().map(String::as_str));
    let segments = segments.iter().map(|s| s.to_vec()).collect();
    let from_caches = from_caches.iter().map(|s| s.to_vec()).collect();
    let compaction = index::named(names, segments).and_then(|segments| {
        index::rebuild_from_bytes(&plan, from_caches, segments, &DecodeLimits::default())
    });
    match compaction {
        Ok(compaction) => Either::A(NativeCompaction { compaction }),
        Err(error) => Either::B(error.into()),
    }
}

/// What to read, from a listing of the index folder (JSON).
#[napi]
pub fn index_read_plan(names: Vec<String>) -> String {
    json(&index::ReadPlan::from_listing(
        names.iter().map(String::as_str),
    ))
}

/// Segments past which a writer compacts.
#[napi]
pub fn index_compact_after() -> u32 {
    index::COMPACT_AFTER as u32
}

/// A fresh segment name from the writer's clock and 64 random bits.
#[napi]
pub fn index_segment_name(time_ms: f64, random_high: u32, random_low: u32) -> String {
    index::segment_name(
        time_ms as u64,
        (u64::from(random_high) << 32) | u64::from(random_low),
    )
}

#[napi]
impl NativeIndex {
    /// `{ vm: summaries }` with every unfolded segment folded in (JSON),
    /// keeping what `filter` (JSON) accepts.
    #[napi]
    pub fn view_json(&self, filter: Option<String>) -> Either<String, ErrorInfo> {
        match Filter::from_json(filter.as_deref()) {
            Ok(filter) => Either::A(json(&self.loaded.current().filtered_view(&filter))),
            Err(error) => Either::B(error.into()),
        }
    }

    /// The cache generation the index holds for `vm`, if any.
    #[napi]
    pub fn vm_generation(&self, vm: String) -> Option<f64> {
        self.loaded.current().generation_of(&vm).map(|g| g as f64)
    }

    /// A segment recording `vm`'s folder as gone.
    #[napi]
    pub fn gone_segment(&self, vm: String) -> Buffer {
        let entry = self.loaded.current().gone_entry(&vm);
        index::Segment::new(&vm, entry).encode().into()
    }

    #[napi(getter)]
    pub fn generation(&self) -> f64 {
        self.loaded.snapshot.generation as f64
    }

    #[napi(getter)]
    pub fn unfolded(&self) -> u32 {
        self.loaded.unfolded() as u32
    }

    /// `[[name, reason]]` of the segments that did not decode (JSON).
    #[napi]
    pub fn unreadable_json(&self) -> String {
        json(&self.loaded.unreadable)
    }

    /// The compaction of everything read, named after `listed`, the newest
    /// snapshot generation listed.
    #[napi]
    pub fn compaction(&self, listed: f64) -> NativeCompaction {
        NativeCompaction {
            compaction: self.loaded.compact(listed as u64),
        }
    }

    /// The VMs whose entry disagrees with their cache (JSON `{ vm: drift }`),
    /// given every VM folder with its cache's generation and fingerprint
    /// (`null` generation: no cache).
    #[napi]
    pub fn drift_json(&self, caches: String) -> Either<String, ErrorInfo> {
        match index::parse_caches(&caches) {
            Ok(caches) => Either::A(json(&index::drift(self.loaded.current(), &caches))),
            Err(error) => Either::B(error.into()),
        }
    }
}
