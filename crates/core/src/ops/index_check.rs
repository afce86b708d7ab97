//! Keeping the repository-wide index true to the caches: `check` compares
//! each VM's entry with its cache header and republishes what changed
//! behind the index's back (Xen Orchestra writes caches without segments);
//! a build makes the index from the caches themselves.

use super::check::{self, CheckOptions, Report};
use super::exec::{Io, join_all};
use super::index_ops::{self, Compacted};
use super::io::{Failure, Level};
use super::load::{self, Want};
use super::mutate;
use super::settings::Settings;
use super::share::{self, CacheRead};
use crate::index::{self, CacheStates, Drift, INDEX_DIR, Segment};
use crate::key::VmId;
use serde_json::json;
use std::collections::BTreeMap;

/// Every VM folder's check report, by VM.
pub async fn check_all(
    io: &Io,
    settings: &Settings,
    options: CheckOptions,
) -> Result<BTreeMap<String, Report>, Failure> {
    let vms = share::list_vm_folders(io).await?;
    let reports = join_all(
        vms.iter()
            .map(|vm| check::check_vm(io, settings, vm, options)),
    )
    .await;
    vms.iter()
        .zip(reports)
        .map(|(vm, report)| Ok((vm.as_str().to_string(), report?)))
        .collect()
}

/// What a check of the index found and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexReport {
    pub exists: bool,
    pub drift: BTreeMap<String, Drift>,
    pub repaired: bool,
    /// Segments that did not decode (a repair compacts them away).
    pub damaged: Vec<String>,
    /// Why listings cannot use the index (a repair rebuilds it).
    pub unusable: Option<String>,
    /// VM folders whose entry is in doubt ([`index::Snapshot::unsure`]):
    /// listings read them from their caches, and a repair publishes their
    /// views.
    pub in_doubt: Vec<String>,
    pub no_snapshot: bool,
    pub built: Option<Built>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Built {
    pub vms: usize,
    pub generation: Option<u64>,
}

impl IndexReport {
    pub fn to_json(&self) -> serde_json::Value {
        let mut out =
            json!({ "exists": self.exists, "drift": self.drift, "repaired": self.repaired });
        if !self.damaged.is_empty() {
            out["damaged"] = json!(self.damaged);
        }
        if let Some(unusable) = &self.unusable {
            out["unusable"] = json!(unusable);
        }
        if !self.in_doubt.is_empty() {
            out["inDoubt"] = json!(self.in_doubt);
        }
        if self.no_snapshot {
            out["noSnapshot"] = json!(true);
        }
        if let Some(built) = self.built {
            out["vms"] = json!(built.vms);
            out["generation"] = json!(built.generation);
        }
        out
    }
}

/// Compares the index with every VM folder's cache and, with `repair`,
/// republishes every VM that changed behind the index's back, records
/// vanished folders, compacts away what did not decode, and rebuilds an
/// index that is unusable or has no snapshot. An immutable repository's
/// index is checked against the folders instead ([`super::journal::check`]).
pub async fn check_index(
    io: &Io,
    settings: &Settings,
    repair: bool,
) -> Result<IndexReport, Failure> {
    if settings.journal
        && let Some(report) = super::journal::check(io, settings, repair).await?
    {
        return Ok(report);
    }
    let repair = repair && !settings.immutable;
    let read = match index_ops::read(io, settings, None).await {
        Ok(read) => read,
        Err(failure @ Failure::Io(_)) if failure.code() != "EAGAIN" => return Err(failure),
        Err(failure) => {
            io.log(
                Level::Warn,
                "brcache: unusable repository index",
                json!({ "reason": failure.to_string() }),
            );
            if repair {
                let built = build_index(io, settings).await?;
                return Ok(IndexReport {
                    exists: true,
                    repaired: true,
                    built: Some(built),
                    ..Default::default()
                });
            }
            return Ok(IndexReport {
                exists: true,
                unusable: Some(failure.to_string()),
                ..Default::default()
            });
        }
    };
    let Some(read) = read else {
        return Ok(IndexReport::default());
    };
    if read.plan.snapshot.is_none() {
        // Listings do not use an index without a snapshot: a build or
        // compaction that failed, or segments published before any.
        io.log(
            Level::Warn,
            "brcache: repository index without a snapshot",
            json!({ "dir": INDEX_DIR }),
        );
        if repair {
            let built = build_index(io, settings).await?;
            return Ok(IndexReport {
                exists: true,
                no_snapshot: true,
                repaired: true,
                built: Some(built),
                ..Default::default()
            });
        }
        return Ok(IndexReport {
            exists: true,
            no_snapshot: true,
            unusable: Some(format!(
                "{INDEX_DIR} has no snapshot (a build or compaction failed, or none was made yet)"
            )),
            ..Default::default()
        });
    }
    let damaged = read
        .loaded
        .unreadable
        .iter()
        .map(|(name, _)| format!("{INDEX_DIR}/{name}"))
        .collect();
    let Reconciled {
        drift,
        in_doubt,
        compaction,
    } = reconcile(io, settings, &read, repair).await?;
    Ok(IndexReport {
        exists: true,
        drift,
        repaired: compaction.is_some(),
        damaged,
        in_doubt,
        ..Default::default()
    })
}

/// What [`reconcile`] found and did.
struct Reconciled {
    drift: BTreeMap<String, Drift>,
    /// VM folders whose entry agrees with the cache header but is in doubt.
    in_doubt: Vec<String>,
    /// With a repair, the compaction after the catch-up.
    compaction: Option<Option<Compacted>>,
}

/// Each VM folder's cache state (generation and fingerprint from its
/// header), the drift of the index from them and the entries in doubt, and
/// with `repair` the catch-up of both.
async fn reconcile(
    io: &Io,
    settings: &Settings,
    read: &index_ops::Read,
    repair: bool,
) -> Result<Reconciled, Failure> {
    let vms = share::list_vm_folders(io).await?;
    let reads = io
        .all(vms.iter().map(share::read_cache_request).collect())
        .await;
    let mut states = CacheStates::new();
    for (vm, response) in vms.iter().zip(reads) {
        let state = match share::cache_read(io, vm, response)? {
            CacheRead::Absent => None,
            CacheRead::Undecryptable(_) => Some((0, None)),
            // Not even a gzip header: certainly behind.
            CacheRead::Bytes(bytes) => Some(
                crate::codec::read_header(&bytes)
                    .ok()
                    .flatten()
                    .map_or((0, None), |h| {
                        (h.generation, h.fingerprint.map(|f| f.to_hex()))
                    }),
            ),
        };
        states.insert(vm.as_str().to_string(), state);
    }
    let current = read.loaded.current();
    let drift = index::drift(current, &states);
    let in_doubt: Vec<String> = current
        .unsure
        .iter()
        .filter(|vm| states.contains_key(*vm) && !drift.contains_key(*vm))
        .cloned()
        .collect();
    let damaged = !read.loaded.unreadable.is_empty();
    // Segments piled past the compaction point (writers' compactions
    // failed) are compacted too.
    let due = !drift.is_empty() || !in_doubt.is_empty() || damaged || read.plan.should_compact;
    if !(repair && due) {
        return Ok(Reconciled {
            drift,
            in_doubt,
            compaction: None,
        });
    }
    let listing = Some(Vec::new());
    // A VM in doubt is caught up as one behind: its view, published from
    // its cache, ends the doubt.
    let doubted = in_doubt.iter().map(|vm| (vm, &Drift::Behind));
    let results = join_all(drift.iter().chain(doubted).map(|(vm, kind)| {
        let listing = listing.clone();
        async move {
            if *kind == Drift::Gone {
                let segment = Segment::new(vm, current.gone_entry(vm)).encode();
                // Named by its VM beside a table (see `index_ops::naming`).
                let named = read.loaded.table.is_some().then_some(vm.as_str());
                return publish_plain(io, settings, segment, named).await;
            }
            // The cache is rewritten past the generation the index knows
            // (it went back to 0 if XO rewrote it), then published as usual.
            let Ok(vm) = VmId::new(vm) else { return Ok(()) };
            catch_up(
                io,
                settings,
                &vm,
                current.generation_of(vm.as_str()).unwrap_or(0),
                &listing,
            )
            .await
        }
    }))
    .await;
    results.into_iter().collect::<Result<Vec<()>, Failure>>()?;
    // The compaction also deletes what did not decode: every VM's entry now
    // agrees with its cache, so a cut segment holds nothing needed.
    let compaction = index_ops::compact(io, settings, true)
        .await
        .map_err(Failure::from)?;
    Ok(Reconciled {
        drift,
        in_doubt,
        compaction: Some(compaction),
    })
}

async fn publish_plain(
    io: &Io,
    settings: &Settings,
    segment: Vec<u8>,
    vm: Option<&str>,
) -> Result<(), Failure> {
    // No compaction here: the check compacts once, after every catch-up.
    let now = share::now(io).await;
    index_ops::publish(io, settings, segment, now, &None, vm)
        .await
        .map_err(Failure::from)
}

/// Rewrites a VM's cache under its lock, past `generation`, publishing it.
async fn catch_up(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    generation: u64,
    listing: &Option<Vec<String>>,
) -> Result<(), Failure> {
    if let Err(error) = mutate::lock(io, vm, true).await {
        io.log(
            Level::Warn,
            "brcache: the cache was not updated; the next check will repair it",
            json!({ "file": share::cache_path(vm), "operation": "index", "reason": error.message }),
        );
        return Ok(());
    }
    let result = async {
        let loaded = load::load(io, vm, &Want::Cache, &settings.limits).await?;
        let mut cache = loaded.cache.expect("decoded");
        cache.continue_after(generation);
        // With an index listing given, the write publishes (the index is on).
        mutate::write(
            io,
            settings,
            cache,
            loaded.previous_generation.max(generation),
            listing,
        )
        .await
    }
    .await;
    let result = match result {
        Ok(publish) => {
            mutate::release(io, settings, vm, publish).await;
            Ok(())
        }
        Err(failure) => {
            mutate::unlock(io, vm).await;
            Err(failure)
        }
    };
    if let Err(failure) = &result {
        io.log(
            Level::Warn,
            "brcache: the cache was not updated; the next check will repair it",
            json!({ "file": share::cache_path(vm), "operation": "index", "reason": failure.to_string() }),
        );
    }
    Ok(())
}

/// Builds (or rebuilds) the index from the VM caches, not from the metadata
/// files: every cache is checked and repaired, then the caches' entries
/// become a new snapshot that outranks whatever index was there, without
/// reading it. Segments left from before are caught up as a check does.
pub async fn build_index(io: &Io, settings: &Settings) -> Result<Built, Failure> {
    if settings.immutable {
        return Err(Failure::refused(
            "EROFS",
            "an immutable repository gets no index build: its first listing makes its index (create-only files)",
        ));
    }
    // The build makes the index exist: every write below publishes.
    let on = settings.with_index(super::settings::IndexMode::On);
    let reports = check_all(
        io,
        &on,
        CheckOptions {
            repair: true,
            ..Default::default()
        },
    )
    .await?;
    let vms: Vec<VmId> = reports.keys().filter_map(|vm| VmId::new(vm).ok()).collect();
    let loads = join_all(
        vms.iter()
            .map(|vm| load::load(io, vm, &Want::Cache, &on.limits)),
    )
    .await;
    let mut from_caches = Vec::with_capacity(vms.len());
    for loaded in loads {
        from_caches.push(mutate::segment_of(
            loaded?.cache.as_ref().expect("decoded"),
        )?);
    }
    let mut compaction = Some(
        index_ops::rebuild(io, &on, from_caches)
            .await
            .map_err(Failure::from)?,
    );
    if let Some(read) = index_ops::read(io, &on, None).await? {
        if let Some(caught_up) = reconcile(io, &on, &read, true).await?.compaction {
            compaction = caught_up.or(compaction);
        }
    }
    Ok(Built {
        vms: vms.len(),
        generation: compaction.map(|c| c.generation),
    })
}

/// Makes the index a restore view found missing, from the entries of the
/// caches it found true (see [`super::Listed::index_seed`] and
/// [`index_ops::seed`]). A failure only leaves the repository without its
/// index until the next listing tries again.
pub async fn seed_index(io: &Io, settings: &Settings, seed: Vec<Segment>) {
    let vms = seed.len();
    match index_ops::seed(io, settings, seed).await {
        Ok(Some(made)) => io.log(
            Level::Info,
            "brcache: made the repository index from the caches a listing read",
            json!({ "vms": vms, "generation": made.generation }),
        ),
        Ok(None) => {}
        Err(failure) => io.log(
            Level::Warn,
            "brcache: could not make the repository index; listings read every VM cache until one does",
            json!({ "step": failure.step, "reason": failure.failure.to_string() }),
        ),
    }
}
