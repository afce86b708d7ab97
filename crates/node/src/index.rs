//! The repository-wide index as a JS class; the I/O is js/index-store.js.

use crate::ErrorInfo;
use brcache_core::index::{self, Loaded};
use brcache_core::{DecodeLimits, Error, ErrorKind, Filter};
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
    if names.len() != segments.len() {
        return Either::B(
            Error::new(
                ErrorKind::InvalidArgument,
                "segment names and contents differ in length",
            )
            .into(),
        );
    }
    let segments = names
        .into_iter()
        .zip(segments.iter().map(|s| s.to_vec()))
        .collect();
    match Loaded::decode(snapshot.as_deref(), segments, &DecodeLimits::default()) {
        Ok(loaded) => Either::A(NativeIndex { loaded }),
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

    /// The compaction's snapshot bytes; `compactionJson` gives its name,
    /// generation and the segments to delete.
    #[napi]
    pub fn compacted_snapshot(&self) -> Buffer {
        self.loaded.compact().snapshot.encode().into()
    }

    #[napi]
    pub fn compaction_json(&self) -> String {
        json(&self.loaded.compact().summary())
    }

    /// The VMs whose entry disagrees with their cache (JSON `{ vm: drift }`),
    /// given every VM folder with its cache's generation and fingerprint
    /// (`null` generation: no cache).
    #[napi]
    pub fn drift_json(&self, caches: String) -> Either<String, ErrorInfo> {
        match index::parse_caches(&caches) {
            Ok(caches) => Either::A(json(&index::drift(&self.loaded.current(), &caches))),
            Err(error) => Either::B(error.into()),
        }
    }
}
