//! The repository-wide index as JS classes; the I/O is js/common/repo-index.js.

use super::json;
use crate::wire::{self, BytesList, BytesOut, Throws};
use brcache_core::Loaded;
use brcache_core::{DecodeLimits, Filter};

class! {
    /// An index read from its newest snapshot and the segments beside it.
    pub struct NativeIndex { loaded: Loaded }
    impl {
        /// `{ vm: summaries }` with every unfolded segment folded in (JSON),
        /// keeping what `filter` (JSON) accepts.
        #[export(js_name = "viewJson")]
        pub fn view_json(&self, filter: Option<String>) -> Throws<String> {
            let filter = Filter::from_json(filter.as_deref())?;
            Ok(json(&self.loaded.current().filtered_view(&filter)))
        }

        /// The VM table (JSON `{ vm: { name, count, modes, lastBackup, size } }`):
        /// the rows of the VMs whose part was not read, the others folded.
        #[export(js_name = "rowsJson")]
        pub fn rows_json(&self) -> String {
            json(&self.loaded.rows())
        }

        /// The cache generation the index holds for `vm`, if any.
        #[export(js_name = "vmGeneration")]
        pub fn vm_generation(&self, vm: String) -> Option<f64> {
            self.loaded.current().generation_of(&vm).map(|g| g as f64)
        }

        /// A segment recording `vm`'s folder as gone.
        #[export(js_name = "goneSegment")]
        pub fn gone_segment(&self, vm: String) -> BytesOut {
            let entry = self.loaded.current().gone_entry(&vm);
            wire::bytes_out(brcache_core::Segment::new(&vm, entry).encode())
        }

        #[export(js_name = "generation", getter)]
        pub fn generation(&self) -> f64 {
            self.loaded.snapshot.generation as f64
        }

        #[export(js_name = "unfolded", getter)]
        pub fn unfolded(&self) -> u32 {
            self.loaded.unfolded() as u32
        }

        /// The VMs whose entry is in doubt (JSON, sorted): a listing reads
        /// them from their caches (see `Snapshot::unsure`).
        #[export(js_name = "inDoubtJson")]
        pub fn in_doubt_json(&self) -> String {
            json(&self.loaded.current().unsure)
        }

        /// `[[name, reason]]` of the segments that did not decode (JSON).
        #[export(js_name = "unreadableJson")]
        pub fn unreadable_json(&self) -> String {
            json(&self.loaded.unreadable)
        }

        /// The compaction of everything read, named after `listed`, the
        /// newest snapshot generation listed.
        #[export(js_name = "compaction")]
        pub fn compaction(&self, listed: f64) -> NativeCompaction {
            NativeCompaction { compaction: self.loaded.compact(listed as u64) }
        }

        /// The VMs whose entry disagrees with their cache (JSON `{ vm: drift }`),
        /// given every VM folder with its cache's generation and fingerprint
        /// (`null` generation: no cache).
        #[export(js_name = "driftJson")]
        pub fn drift_json(&self, caches: String) -> Throws<String> {
            let caches = brcache_core::parse_caches(&caches)?;
            Ok(json(&brcache_core::drift(self.loaded.current(), &caches)))
        }
    }
}

class! {
    /// A new snapshot to write create-only, and what to delete once it is.
    pub struct NativeCompaction { compaction: brcache_core::Compaction }
    impl {
        /// Its name, generation and the segments to delete (JSON).
        #[export(js_name = "summaryJson")]
        pub fn summary_json(&self) -> String {
            json(&self.compaction.summary())
        }

        #[export(js_name = "snapshot")]
        pub fn snapshot(&self) -> BytesOut {
            wire::bytes_out(self.compaction.snapshot.encode())
        }
    }
}

functions! {
    /// An index from the bytes a reader fetched: the newest snapshot (if
    /// any) and the segments listed beside it.
    #[export(js_name = "loadIndex")]
    pub fn load_index(
        snapshot: Option<wire::Bytes>,
        names: Vec<String>,
        segments: BytesList,
    ) -> Throws<NativeIndex> {
        let segments = brcache_core::named_segments(names, wire::owned(segments))?;
        let loaded = Loaded::decode(snapshot.as_deref(), segments, &DecodeLimits::default())?;
        Ok(NativeIndex { loaded })
    }

    /// An index from a table (format 3) and some of its parts (`partNames`,
    /// `parts`), with the segments listed beside it.
    #[export(js_name = "loadIndexTable")]
    pub fn load_index_table(
        table: wire::Bytes,
        part_names: Vec<String>,
        parts: BytesList,
        names: Vec<String>,
        segments: BytesList,
    ) -> Throws<NativeIndex> {
        let limits = DecodeLimits::default();
        let brcache_core::StoredSnapshot::Table(table) =
            brcache_core::StoredSnapshot::decode(&table, &limits)?
        else {
            return Err(brcache_core::Error::new(
                brcache_core::ErrorKind::InvalidArgument,
                "not an index table (format 3)",
            )
            .into());
        };
        let parts = brcache_core::named_segments(part_names, wire::owned(parts))?;
        let segments = brcache_core::named_segments(names, wire::owned(segments))?;
        let (segments, unreadable) = brcache_core::decode_segments(segments, &limits);
        let mut loaded = Loaded::decode_table(table, parts, segments, Vec::new(), &limits)?;
        loaded.set_unreadable(unreadable);
        Ok(NativeIndex { loaded })
    }

    /// The index rebuilt from each VM cache's segment (`fromCaches`) and the
    /// segments read from a listing of the index folder (`names`), no
    /// snapshot read: see `brcache_core::rebuild_index`.
    #[export(js_name = "rebuildIndex")]
    pub fn rebuild_index(
        listing: Vec<String>,
        from_caches: BytesList,
        names: Vec<String>,
        segments: BytesList,
    ) -> Throws<NativeCompaction> {
        let plan = brcache_core::ReadPlan::from_listing(listing.iter().map(String::as_str));
        let segments = brcache_core::named_segments(names, wire::owned(segments))?;
        let compaction = brcache_core::rebuild_from_bytes(
            &plan,
            wire::owned(from_caches),
            segments,
            &DecodeLimits::default(),
        )?;
        Ok(NativeCompaction { compaction })
    }

    /// What to read, from a listing of the index folder (JSON).
    #[export(js_name = "indexReadPlan")]
    pub fn index_read_plan(names: Vec<String>) -> String {
        json(&brcache_core::ReadPlan::from_listing(names.iter().map(String::as_str)))
    }

    /// Segments past which a writer compacts.
    #[export(js_name = "indexCompactAfter")]
    pub fn index_compact_after() -> u32 {
        brcache_core::COMPACT_AFTER as u32
    }

    /// A fresh segment name from the writer's clock and 64 random bits.
    #[export(js_name = "indexSegmentName")]
    pub fn index_segment_name(time_ms: f64, random_high: u32, random_low: u32) -> String {
        let random = (u64::from(random_high) << 32) | u64::from(random_low);
        brcache_core::segment_name(time_ms as u64, random)
    }
}
