//! The one door every cache write goes through, whoever makes it (a backup
//! written or deleted, a check's repair, a listing's background repair, the
//! index's catch-up): under the VM's lock, the cache is replaced atomically
//! and, when the repository keeps an index, the VM's segment is published
//! from the very bytes written, as the lock is released (segments fold by
//! generation, so their order never matters, and the write need not wait
//! for it). No other code writes a cache.

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

/// What a commit leaves to publish as the lock is released.
#[derive(Debug, Default)]
pub struct Publish {
    segment: Option<crate::Result<Vec<u8>>>,
    listing: Option<Vec<String>>,
    /// The caller's clock as the cache went out: the segment's name.
    time: f64,
}

/// Releases the VM's lock and publishes what was committed under it, side
/// by side.
pub async fn release(io: &Io, settings: &Settings, vm: &VmId, publish: Publish) {
    let unlocking: Pin<Box<dyn Future<Output = ()>>> = Box::pin(unlock(io, vm));
    let publishing: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
        match publish.segment {
            None => {}
            Some(Err(error)) => warn_unpublished(io, vm, "publish", &error.to_string()),
            Some(Ok(segment)) => {
                if let Err(failure) =
                    index_ops::publish(io, settings, segment, publish.time, &publish.listing).await
                {
                    warn_unpublished(io, vm, failure.step, &failure.failure.to_string());
                }
            }
        }
    });
    join_all([unlocking, publishing]).await;
}

/// What a writer changed in the folder before updating the cache.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// Metadata files created, with their bytes.
    pub added: Vec<(MetadataName, Vec<u8>)>,
    /// Metadata files deleted.
    pub removed: Vec<MetadataName>,
}

/// The bytes of the cache after `edit`, from the cache as read and the
/// folder as listed after the edit (or as it will be once the edit is
/// done: a delete computes its cache before deleting). When the header
/// proves the cache was true before the edit, the change is spliced into
/// its compressed bytes; otherwise the cache is made true as a listing
/// makes it, then changed.
pub async fn prepare(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    read: CacheRead,
    entries: Vec<String>,
    edit: &Edit,
    index_listing: &Option<Vec<String>>,
) -> Result<Vec<u8>, Failure> {
    if let Some(bytes) = read.bytes() {
        let listing = Listing::from_entries(entries.iter().map(String::as_str));
        let added: Vec<(MetadataName, &[u8])> = edit
            .added
            .iter()
            .map(|(n, b)| (n.clone(), &b[..]))
            .collect();
        if let Some(next) = splice::splice_cache(vm, bytes, &listing, &added, &edit.removed)? {
            return Ok(next);
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
    Ok(encode(
        io,
        settings,
        cache,
        loaded.previous_generation,
        index_listing,
    )
    .await)
}

/// Writes a cache made in memory, its generation after `previous` (the
/// generation of the file it replaces).
pub async fn write(
    io: &Io,
    settings: &Settings,
    cache: VmCache,
    previous: u64,
    index_listing: &Option<Vec<String>>,
) -> Result<Publish, Failure> {
    let vm = cache.vm().clone();
    let bytes = encode(io, settings, cache, previous, index_listing).await;
    commit(io, settings, &vm, bytes, index_listing).await
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

/// Replaces the cache file with `bytes`; what to publish of it comes back
/// for [`release`].
pub async fn commit(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    bytes: Vec<u8>,
    index_listing: &Option<Vec<String>>,
) -> Result<Publish, Failure> {
    commit_beside(io, settings, vm, bytes, index_listing, Vec::new())
        .await
        .0
}

/// [`commit`], with `beside` (requests that do not depend on the replace)
/// in the same round trip; their responses come back in order. The
/// segment is computed while the cache is on its way: the clock answers
/// at once, the share a round trip later, so its CPU is off the write's
/// path.
pub async fn commit_beside(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    bytes: Vec<u8>,
    index_listing: &Option<Vec<String>>,
    beside: Vec<Request>,
) -> (Result<Publish, Failure>, Vec<Response>) {
    let path = share::cache_path(vm);
    let kept = index_ops::active(settings).then(|| bytes.clone());
    let mut requests = vec![Request::Replace {
        path: path.clone(),
        bytes,
    }];
    requests.extend(beside);
    let segment = async {
        let bytes = kept?;
        let time = share::now(io).await;
        Some((
            time,
            index::segment_of_bytes(vm.as_str(), &bytes, &settings.limits),
        ))
    };
    let (mut responses, segment) = join(io.all(requests), segment).await;
    let replaced = responses.remove(0);
    let result = share::done(replaced, || format!("cannot write {path}")).map(|()| {
        let (time, segment) = segment.map_or((0.0, None), |(t, s)| (t, Some(s)));
        Publish {
            segment,
            listing: index_listing.clone(),
            time,
        }
    });
    (result, responses)
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
