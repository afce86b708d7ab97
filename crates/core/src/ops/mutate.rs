//! The one door every cache write goes through, whoever makes it (a backup
//! written or deleted, a check's repair, a listing's background repair, the
//! index's catch-up): under the VM's lock, the cache is replaced atomically
//! and, when the repository keeps an index, the VM's segment is published
//! from the very bytes written, in the same round trip, and the lock is
//! released only once both are done. A reader that lists `xo-vm-backups/`
//! therefore sees, for every VM, the lock or an index entry as new as its
//! cache: while it sees the lock, it reads that VM from its cache and
//! folder instead of trusting the index (see
//! [`super::listing::restore_view`]). No other code writes a cache.

use super::exec::{Io, join, join_all};
use super::index_ops;
use super::io::{Failure, IoError, Level, Request, Response};
use super::load::{self, Want};
use super::settings::Settings;
use super::share::{self, CacheRead};
use crate::coherency::Listing;
use crate::index::{self, Segment};
use crate::key::{CACHE_FILE, MetadataName, VmId};
use crate::splice;
use crate::vm_cache::VmCache;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;

/// Takes the VM's lock, on the VM folder (see [`share::lock_path`]).
pub async fn lock(io: &Io, vm: &VmId, wait: bool) -> Result<(), IoError> {
    match io
        .call(Request::Lock {
            path: share::lock_path(vm),
            wait,
        })
        .await
    {
        Response::Failed(error) => Err(error),
        _ => Ok(()),
    }
}

/// Releases it; a failure only delays the next writer (the lock goes stale).
pub async fn unlock(io: &Io, vm: &VmId) {
    if let Response::Failed(error) = io
        .call(Request::Unlock {
            path: share::lock_path(vm),
        })
        .await
    {
        io.log(
            Level::Debug,
            "brcache: could not release the VM lock",
            json!({ "file": share::lock_path(vm), "reason": error.message }),
        );
    }
}

/// The request that removes dead writers' temp files from a VM folder, made
/// beside a locked writer's first reads: under the lock, a temp file of the
/// cache is a dead writer's; other temps (metadata being written, without
/// this lock) only when old.
pub fn clean_request(vm: &VmId) -> Request {
    Request::CleanTemps {
        dir: vm.dir(),
        any_age_for: vec![CACHE_FILE.to_string()],
    }
}

/// What a writer holding a VM's lock reads before changing its cache, all
/// at once: the cache, the VM folder and, when writers keep the index, the
/// index folder, beside a clean of dead writers' temp files. The answers
/// come back through [`take_locked_reads`], in this order.
pub fn locked_reads(settings: &Settings, vm: &VmId) -> Vec<Request> {
    let mut requests = vec![
        share::read_cache_request(vm),
        share::list_vm_request(vm),
        clean_request(vm),
    ];
    if index_ops::active(settings) {
        requests.push(index_ops::list_request());
    }
    requests
}

/// The answers to [`locked_reads`].
pub struct LockedReads {
    pub cache: CacheRead,
    pub entries: Vec<String>,
    /// Whether the VM folder is there: the lock, on the folder's path, is
    /// had without it, and a cache written then would bring back a folder
    /// someone removed.
    pub folder: bool,
    pub index_listing: Option<Vec<String>>,
}

/// Takes the answers to [`locked_reads`] from `responses`.
pub fn take_locked_reads(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    responses: &mut impl Iterator<Item = Response>,
) -> Result<LockedReads, Failure> {
    let mut next = || responses.next().expect("a response to each locked read");
    let cache = share::cache_read(io, vm, next())?;
    let listing = next();
    let folder = !matches!(&listing, Response::Failed(error) if error.code == "ENOENT");
    let entries = share::vm_listing(vm, listing)?;
    cleaned(io, vm, next());
    let index_listing = if index_ops::active(settings) {
        index_ops::listed(next())?
    } else {
        None
    };
    Ok(LockedReads {
        cache,
        entries,
        folder,
        index_listing,
    })
}

/// [`locked_reads`], asked at once and taken.
pub async fn read_locked(io: &Io, settings: &Settings, vm: &VmId) -> Result<LockedReads, Failure> {
    let mut responses = io.all(locked_reads(settings, vm)).await.into_iter();
    take_locked_reads(io, settings, vm, &mut responses)
}

impl LockedReads {
    /// The load a locked job changes: the cache as read, checked against
    /// the folder as listed (what it lacks read now), with the index
    /// folder's listing made beside them.
    pub async fn resolve(
        self,
        io: &Io,
        settings: &Settings,
        vm: &VmId,
    ) -> Result<(load::Loaded, Option<Vec<String>>), Failure> {
        let loaded = load::resolve(
            io,
            vm,
            &Want::Cache,
            &settings.limits,
            self.cache,
            self.entries,
        )
        .await?;
        Ok((loaded, self.index_listing))
    }
}

/// A failed clean costs nothing but leftovers for the next one.
pub fn cleaned(io: &Io, vm: &VmId, response: Response) {
    if let Response::Failed(error) = response {
        io.log(
            Level::Debug,
            "brcache: could not clean temp files",
            json!({ "dir": vm.dir(), "reason": error.message }),
        );
    }
}

/// What a commit leaves for after the lock: its segment is already
/// published, but a compaction, when segments piled up, need not hold the
/// VM's lock.
#[derive(Debug, Default)]
pub struct Committed {
    compact: bool,
}

/// Ends a locked job that may have written the cache: the lock goes with
/// the commit's release when there is one, alone otherwise. Says whether
/// the cache was written.
pub async fn finish(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    result: Result<Option<Committed>, Failure>,
) -> Result<bool, Failure> {
    match result {
        Ok(Some(committed)) => {
            release(io, settings, vm, committed).await;
            Ok(true)
        }
        Ok(None) => {
            unlock(io, vm).await;
            Ok(false)
        }
        Err(failure) => {
            unlock(io, vm).await;
            Err(failure)
        }
    }
}

/// Releases the VM's lock, and compacts the index beside it when the
/// commit left segments past the compaction point.
pub async fn release(io: &Io, settings: &Settings, vm: &VmId, committed: Committed) {
    let unlocking: Pin<Box<dyn Future<Output = ()>>> = Box::pin(unlock(io, vm));
    let compacting: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
        if committed.compact {
            if let Err(failure) =
                index_ops::compact_elected(io, settings, index_ops::Due::Writer).await
            {
                warn_unpublished(io, vm, failure.step, &failure.failure.to_string());
            }
        }
    });
    join_all([unlocking, compacting]).await;
}

/// Publishes the VM's segment of cache `bytes` (as written, or as they lie
/// when they are true and the index is behind them): the delta `edit` made
/// when given, else the whole view. A failure is logged: the index lags
/// until the next write or check catches it up.
async fn publish_bytes(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    bytes: &[u8],
    index_listing: &Option<Vec<String>>,
    edit: Option<&Edit>,
) -> Committed {
    // The caller's clock answers at once: asked beside the cache's replace,
    // it gives the core its turn to compute the segment while the cache is
    // on its way, and the segment goes out in the same round trip.
    let time = share::now(io).await;
    let segment = match edit {
        Some(edit) => {
            let added: Vec<(&MetadataName, &[u8])> = edit
                .added
                .iter()
                .map(|(name, metadata)| (name, metadata.as_slice()))
                .collect();
            let gone: Vec<(&MetadataName, &[u8])> = edit
                .gone
                .iter()
                .map(|(name, metadata)| (name, metadata.as_slice()))
                .collect();
            index::delta_of_bytes(
                vm,
                bytes,
                &added,
                &edit.removed,
                &gone,
                edit.spliced_into.as_ref(),
                settings.locks,
            )
        }
        None => index::segment_of_bytes(vm.as_str(), bytes, &settings.limits),
    };
    let segment = match segment {
        Ok(segment) => segment,
        Err(error) => {
            warn_unpublished(io, vm, "publish", &error.to_string());
            return Committed::default();
        }
    };
    let named = index_ops::naming(vm.as_str(), index_listing);
    match index_ops::write_segment(io, settings, segment, time, named).await {
        Ok(()) => Committed {
            compact: index_ops::compaction_due(index_listing),
        },
        Err(failure) => {
            warn_unpublished(io, vm, failure.step, &failure.failure.to_string());
            Committed::default()
        }
    }
}

/// What a writer changed in the folder before updating the cache.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// Metadata files created, with their bytes.
    pub added: Vec<(MetadataName, Vec<u8>)>,
    /// Metadata files deleted.
    pub removed: Vec<MetadataName>,
    /// Those of the deleted files the writer read, with their bytes.
    pub gone: Vec<(MetadataName, Vec<u8>)>,
    /// The fingerprint of the cache the edit was spliced into, once
    /// [`prepare`] did: that cache then covered exactly the folder before
    /// the edit, and the delta says so (see `index::Delta::before`).
    pub spliced_into: Option<crate::Fingerprint>,
}

/// The bytes of the cache after `edit`, from the cache as read and the
/// folder as listed after the edit (or as it will be once the edit is
/// done: a delete computes its cache before deleting). When the header
/// proves the cache was true before the edit, the change is spliced into
/// its compressed bytes; otherwise the cache is made true as a listing
/// makes it, then changed. Answers the bytes and, when they are the cache
/// as read with `edit` spliced in, that cache's fingerprint: the one case
/// where the edit is all that changed, so that a delta of it describes
/// the new cache.
pub async fn prepare(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    read: CacheRead,
    entries: Vec<String>,
    edit: &Edit,
    index_listing: &Option<Vec<String>>,
) -> Result<(Vec<u8>, Option<crate::Fingerprint>), Failure> {
    if let Some(bytes) = read.bytes() {
        let listing = Listing::from_entries(entries.iter().map(String::as_str));
        let added: Vec<(MetadataName, &[u8])> = edit
            .added
            .iter()
            .map(|(n, b)| (n.clone(), &b[..]))
            .collect();
        if let Some(next) = splice::splice_cache(vm, bytes, &listing, &added, &edit.removed)? {
            // The splice checked it names the folder before the edit.
            let before = crate::codec::read_header(bytes)
                .ok()
                .flatten()
                .and_then(|h| h.fingerprint);
            return Ok((next, before));
        }
    }
    // The created files are the writer's own: no need to read them back.
    let before: Vec<String> = entries
        .into_iter()
        .filter(|name| !edit.added.iter().any(|(n, _)| n.as_str() == name))
        .collect();
    let loaded = load::resolve(io, vm, &Want::Cache, &settings.limits, read, before).await?;
    let mut cache = loaded.cache.expect("a load for writing decodes the cache");
    for (name, bytes) in &edit.added {
        cache.add_name(name.clone(), bytes)?;
    }
    for name in &edit.removed {
        cache.remove_name(name.clone());
    }
    let bytes = encode(
        io,
        settings,
        cache,
        loaded.previous_generation,
        index_listing,
    )
    .await;
    Ok((bytes, None))
}

/// Writes a cache made in memory, its generation after `previous` (the
/// generation of the file it replaces).
pub async fn write(
    io: &Io,
    settings: &Settings,
    cache: VmCache,
    previous: u64,
    index_listing: &Option<Vec<String>>,
) -> Result<Committed, Failure> {
    let vm = cache.vm().clone();
    let bytes = encode(io, settings, cache, previous, index_listing).await;
    commit(io, settings, &vm, bytes, index_listing, None).await
}

/// The bytes of a cache made in memory, its generation after `previous`.
async fn encode(
    io: &Io,
    settings: &Settings,
    mut cache: VmCache,
    previous: u64,
    index_listing: &Option<Vec<String>>,
) -> Vec<u8> {
    cache.continue_after(previous);
    if previous == 0 && index_ops::active(settings) && index_listing.is_some() {
        // A cache without a generation of its own (none yet, unusable, or
        // rewritten by XO) would start again from 0 and lose every fold to
        // the entry the index still holds for the VM: continue after it.
        if let Ok(Some(read)) = index_ops::read(io, settings, index_listing.clone()).await {
            cache.continue_after(
                read.loaded
                    .current()
                    .generation_of(cache.vm().as_str())
                    .unwrap_or(0),
            );
        }
    }
    cache.commit()
}

/// Replaces the cache file with `bytes` and publishes its segment beside
/// it (the delta of `edit`, when given: see [`publish_bytes`]); what is
/// left for after the lock comes back for [`release`].
pub async fn commit(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    bytes: Vec<u8>,
    index_listing: &Option<Vec<String>>,
    edit: Option<&Edit>,
) -> Result<Committed, Failure> {
    commit_beside(io, settings, vm, bytes, index_listing, edit, Vec::new())
        .await
        .0
}

/// [`commit`], with `beside` (requests that do not depend on the replace)
/// in the same round trip; their responses come back in order. The
/// segment, made from the same bytes, goes out in that round too: the
/// clock, asked beside the replace, answers at once and the segment is
/// computed and sent while the cache is on its way. Both are done before
/// the caller unlocks, so that no reader sees the lock gone and the index
/// behind the cache. Should the replace fail, the segment may be out all
/// the same: it holds the folder as the writer made it, and the cache
/// behind it is what a listing or check repairs.
pub async fn commit_beside(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    bytes: Vec<u8>,
    index_listing: &Option<Vec<String>>,
    edit: Option<&Edit>,
    beside: Vec<Request>,
) -> (Result<Committed, Failure>, Vec<Response>) {
    let path = share::cache_path(vm);
    let kept = index_ops::active(settings).then(|| bytes.clone());
    let mut requests = vec![Request::Replace {
        path: path.clone(),
        bytes,
    }];
    requests.extend(beside);
    let publishing = async {
        match kept {
            Some(bytes) => publish_bytes(io, settings, vm, &bytes, index_listing, edit).await,
            None => Committed::default(),
        }
    };
    let (mut responses, committed) = join(io.all(requests), publishing).await;
    let replaced = responses.remove(0);
    let result = share::done(replaced, || format!("cannot write {path}")).map(|()| committed);
    (result, responses)
}

/// Under the VM's lock, which the caller holds: makes the cache true to
/// its folder and the VM's index entry equal to the cache, whatever a
/// writer that died (or failed) under the lock left. The cache and the
/// folder are read, and the index, all under the lock; a cache that is
/// true and newer than its entry is published as it lies, anything else
/// (a cache behind its folder, an entry newer than the cache, or as new
/// and different) is rewritten past both generations and published.
/// Answers `None` when there was nothing to do, or no folder to do it in.
pub async fn settle_locked(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
) -> Result<Option<Committed>, Failure> {
    let reads = read_locked(io, settings, vm).await?;
    if !reads.folder {
        return Ok(None);
    }
    // This VM's entry alone: the table, its part and its segments.
    let index = match &reads.index_listing {
        Some(listing) => {
            let scope = index_ops::Scope::Vm(vm.as_str());
            index_ops::read_scoped(io, settings, Some(listing.clone()), scope).await?
        }
        None => None,
    };
    let entry = index
        .as_ref()
        .and_then(|read| read.loaded.current().vms.get(vm.as_str()).cloned());
    // An entry folded from deltas that do not add up to the cache they
    // name may hold that cache's generation and fingerprint: only a view
    // ends the doubt.
    let unsure = index
        .as_ref()
        .is_some_and(|read| read.loaded.current().is_unsure(vm.as_str()));
    let header = reads
        .cache
        .bytes()
        .and_then(|bytes| crate::codec::read_header(bytes).ok().flatten())
        .map(|h| (h.generation, h.fingerprint.map(|f| f.to_hex())));
    let (loaded, index_listing) = reads.resolve(io, settings, vm).await?;
    if !loaded.changed {
        let behind = match (&header, &entry) {
            _ if index.is_none() => return Ok(None),
            (Some((generation, fingerprint)), Some(entry)) => {
                if entry.generation == *generation && entry.fingerprint == *fingerprint && !unsure {
                    return Ok(None);
                }
                entry.generation < *generation || (unsure && entry.generation == *generation)
            }
            (Some(_), None) => true,
            // No cache, nothing in the folder: an entry without restore
            // points is as true.
            (None, entry) => {
                if entry.as_ref().is_none_or(|e| e.summaries.is_empty()) {
                    return Ok(None);
                }
                false
            }
        };
        if behind {
            let bytes = loaded.read.bytes().expect("a cache with a header");
            return Ok(Some(
                publish_bytes(io, settings, vm, bytes, &index_listing, None).await,
            ));
        }
    }
    let cache = loaded.cache.expect("a load for writing decodes the cache");
    let previous = loaded
        .previous_generation
        .max(entry.map_or(0, |e| e.generation));
    write(io, settings, cache, previous, &index_listing)
        .await
        .map(Some)
}

/// The index only lags: the next check catches it up.
fn warn_unpublished(io: &Io, vm: &VmId, step: &str, reason: &str) {
    let message = if step == "compaction" {
        "brcache: the index segment was published, but the index compaction failed; the next write or check --repair retries it"
    } else {
        "brcache: the repository index was not updated (its segment was not published); the next check will catch up"
    };
    io.log(
        Level::Warn,
        message,
        json!({ "vm": vm.as_str(), "step": step, "reason": reason }),
    );
}

/// A VM's entry for a segment, from a cache in memory (for a VM folder
/// whose cache is gone, the gone entry).
pub fn segment_of(cache: &VmCache) -> crate::Result<Vec<u8>> {
    Ok(Segment::new(cache.vm().as_str(), index::entry_of(cache)?).encode())
}
