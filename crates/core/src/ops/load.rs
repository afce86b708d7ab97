//! A VM's cache made true to its folder, in memory: the read side every
//! operation shares.
//!
//! 1. The cache and the folder listing are read at once.
//! 2. When the header's fingerprint matches the listing, the cache is true
//!    as it is (the fast path): only what the caller wants is decoded.
//! 3. Otherwise the cache is reconciled with the listing and only the
//!    metadata files it lacks are read. A cache that does not decode is
//!    rebuilt from the metadata files, never trusted, never dropped.
//! 4. A metadata file read that does not parse and is young is a write in
//!    progress (Xen Orchestra writes in place): left out, not reported, until
//!    it parses or grows old.

use super::exec::Io;
use super::io::{Failure, Level, Request, Response};
use super::share::{self, CacheRead};
use crate::codec::{self, DecodeLimits};
use crate::coherency::{self, Listing, Plan, Unreadable};
use crate::key::{MetadataName, VmId};
use crate::summary::{self, Filter, Summary};
use crate::vm_cache::VmCache;
use serde_json::json;
use std::collections::BTreeSet;

/// A metadata file younger than this that does not parse is being written:
/// the age rule of temp files, plus 2 s for shares whose timestamps have
/// whole or even two-second steps.
pub const BEING_WRITTEN_MS: f64 = 62_000.0;

/// What the caller of a load needs, so that the fast path does only that.
#[derive(Debug, Clone)]
pub enum Want {
    /// The records, as JSON text (the cache body, keys checked).
    Records,
    /// The restore view's summaries (one pass over the body).
    Summaries(Filter),
    /// The cache itself, for checks and writes.
    Cache,
}

/// What a listing hands out of a VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `{ key: record }` JSON text (the cache body as it lies).
    RecordsObject(String),
    /// `[[key, record], ...]` JSON text (a repaired cache's entries).
    RecordsPairs(String),
    Summaries(Vec<Summary>),
    None,
}

/// A VM's cache as a load leaves it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub vm: VmId,
    /// The cache file as read.
    pub read: CacheRead,
    /// The folder's entries as listed.
    pub entries: Vec<String>,
    /// The true cache (decoded, reconciled); `None` when the fast path
    /// answered without decoding it.
    pub cache: Option<VmCache>,
    pub answer: Answer,
    pub plan: Plan,
    pub unreadable: Vec<Unreadable>,
    /// Metadata files being written: neither listed nor reported.
    pub writing: Vec<MetadataName>,
    pub fast_path: bool,
    /// Why the cache file could not be used, if it could not.
    pub cache_error: Option<String>,
    /// The generation of the cache file read (0: none, XO's, unreadable).
    pub previous_generation: u64,
    /// Whether the cache file should be rewritten to match `cache`.
    pub changed: bool,
    /// Whether its background repair must also bring the VM's index entry
    /// level with the cache (the listing saw the VM's lock, see
    /// [`super::mutate::settle_locked`]).
    pub settle: bool,
}

/// Reads and makes true a VM's cache (see the module's steps).
pub async fn load(
    io: &Io,
    vm: &VmId,
    want: &Want,
    limits: &DecodeLimits,
) -> Result<Loaded, Failure> {
    let responses = io
        .all(vec![
            share::read_cache_request(vm),
            share::list_vm_request(vm),
        ])
        .await;
    let [cache, listing]: [Response; 2] = responses.try_into().expect("two responses");
    let read = share::cache_read(io, vm, cache)?;
    let entries = share::vm_listing(vm, listing)?;
    resolve(io, vm, want, limits, read, entries).await
}

/// A VM's cache from a share that serves it checked (see
/// [`super::Settings::trusted`]): read as it is, its folder never listed.
/// No cache is no restore point; one that does not decode is an error.
pub async fn load_trusted(
    io: &Io,
    vm: &VmId,
    want: &Want,
    limits: &DecodeLimits,
) -> Result<Loaded, Failure> {
    let file = share::cache_path(vm);
    // The share vouches for its caches: one it cannot serve is an error
    // (never "no restore points"); only a missing one means none.
    let read = match io.call(share::read_cache_request(vm)).await {
        Response::Bytes(bytes) => CacheRead::Bytes(bytes),
        Response::Failed(error) if error.code == "ENOENT" => CacheRead::Absent,
        Response::Failed(error) => {
            return Err(Failure::io(format_args!("cannot read {file}"), &error));
        }
        other => share::cache_read(io, vm, other)?,
    };
    let (answer, cache) = match &read {
        CacheRead::Bytes(bytes) => fast(vm, want, limits, bytes, &file)
            .map_err(|e| Failure::Core(e.in_file(file.clone())))?,
        CacheRead::Absent => (Answer::None, Some(VmCache::new(vm.clone()))),
        CacheRead::Undecryptable(reason) => {
            return Err(Failure::refused("DECRYPTION_FAILED", reason.clone()));
        }
    };
    Ok(Loaded {
        vm: vm.clone(),
        read,
        entries: Vec::new(),
        cache,
        answer,
        plan: Plan::default(),
        unreadable: Vec::new(),
        writing: Vec::new(),
        fast_path: true,
        cache_error: None,
        previous_generation: 0,
        changed: false,
        settle: false,
    })
}

/// [`load`] from a cache read and a listing already made.
pub async fn resolve(
    io: &Io,
    vm: &VmId,
    want: &Want,
    limits: &DecodeLimits,
    read: CacheRead,
    entries: Vec<String>,
) -> Result<Loaded, Failure> {
    let file = share::cache_path(vm);
    let listing = Listing::from_entries(entries.iter().map(String::as_str));
    let mut cache_error = match &read {
        CacheRead::Undecryptable(reason) => Some(reason.clone()),
        _ => None,
    };
    if let Some(reason) = &cache_error {
        warn_unusable(io, &file, reason);
    }
    let bytes = read.bytes();
    if let Some(bytes) = bytes {
        let header = codec::read_header(bytes).ok().flatten();
        if coherency::fast_path(header.as_ref(), &listing) {
            match fast(vm, want, limits, bytes, &file) {
                // A header that vouches for a body that does not hold: rebuild.
                Err(_) => {}
                Ok((answer, cache)) => {
                    return Ok(Loaded {
                        vm: vm.clone(),
                        previous_generation: header.map_or(0, |h| h.generation),
                        entries,
                        cache,
                        answer,
                        plan: Plan {
                            fingerprint_matches: true,
                            ..Plan::default()
                        },
                        unreadable: Vec::new(),
                        writing: Vec::new(),
                        fast_path: true,
                        cache_error: None,
                        changed: false,
                        settle: false,
                        read,
                    });
                }
            }
        }
    }
    let mut previous_generation = 0;
    let mut decoded = None;
    if let Some(bytes) = bytes {
        match VmCache::decode(vm.clone(), bytes, limits) {
            Ok(cache) => {
                previous_generation = cache.generation();
                decoded = Some(cache);
            }
            Err(error) => {
                let reason = error.in_file(file.clone()).to_string();
                warn_unusable(io, &file, &reason);
                cache_error = Some(reason);
                // Not even a readable header: generations start over.
                previous_generation = codec::read_header(bytes)
                    .ok()
                    .flatten()
                    .map_or(0, |h| h.generation);
            }
        }
    }
    let had_cache = decoded.is_some();
    let base = decoded.unwrap_or_else(|| VmCache::new(vm.clone()));
    let plan = coherency::reconcile(&base, &listing);
    let mut loaded = Loaded {
        vm: vm.clone(),
        entries,
        cache: None,
        answer: Answer::None,
        plan,
        unreadable: Vec::new(),
        writing: Vec::new(),
        fast_path: false,
        cache_error,
        previous_generation,
        changed: false,
        settle: false,
        read,
    };
    if loaded.plan.is_coherent() {
        // Coherent, but without a fingerprint that says so (an XO-written
        // cache) or unusable: rewriting it lets the next check take the
        // fast path. An empty folder without a cache needs none.
        loaded.changed = if had_cache {
            base.recorded_fingerprint() != Some(base.fingerprint())
        } else {
            loaded.read.bytes().is_some() || loaded.cache_error.is_some()
        };
        loaded.cache = Some(base);
        loaded.answer = answer_of(vm, want, loaded.cache.as_ref().expect("set"))?;
        return Ok(loaded);
    }
    let metadata = share::read_metadata(io, vm, &loaded.plan.missing).await?;
    let repaired = coherency::apply(&base, &loaded.plan, &metadata.files);
    // Files read that do not parse, and files that do not decrypt: either
    // may be a write in progress.
    let mut unparsed: Vec<Unreadable> = repaired
        .unreadable
        .into_iter()
        .filter(|u| metadata.files.contains_key(&u.name))
        .collect();
    unparsed.extend(
        metadata
            .failed
            .iter()
            .filter(|f| f.undecryptable)
            .map(|f| Unreadable {
                name: f.name.clone(),
                reason: f.reason.clone(),
            }),
    );
    let writing = being_written(io, vm, &unparsed).await?;
    let unreadable: Vec<Unreadable> = unparsed
        .into_iter()
        .chain(
            metadata
                .failed
                .iter()
                .filter(|f| !f.undecryptable)
                .map(|f| Unreadable {
                    name: f.name.clone(),
                    reason: f.reason.clone(),
                }),
        )
        .filter(|u| !writing.contains(&u.name))
        .collect();
    for u in &unreadable {
        io.log(
            Level::Warn,
            "brcache: unreadable metadata left out of the cache",
            json!({ "file": share::vm_file(vm, u.name.as_str()), "reason": u.reason }),
        );
    }
    loaded.writing = writing.into_iter().collect();
    loaded.unreadable = unreadable;
    loaded.changed = true;
    loaded.answer = answer_of(vm, want, &repaired.cache)?;
    loaded.cache = Some(repaired.cache);
    Ok(loaded)
}

fn warn_unusable(io: &Io, file: &str, reason: &str) {
    io.log(
        Level::Warn,
        "brcache: unusable cache, rebuilding it from the metadata files",
        json!({ "file": file, "reason": reason }),
    );
}

/// The fast path's answer: only what `want` needs is decoded.
fn fast(
    vm: &VmId,
    want: &Want,
    limits: &DecodeLimits,
    bytes: &[u8],
    file: &str,
) -> crate::Result<(Answer, Option<VmCache>)> {
    match want {
        Want::Records => {
            let decoded = codec::decode_records_text(bytes, limits)?;
            let keys = match crate::json::check_records(&decoded.text, limits.max_depth) {
                Ok(keys) => keys,
                Err(error) => {
                    // The error a full decode gives, which says exactly
                    // what is wrong (this pass only knows it is).
                    codec::check_body(decoded.text.as_bytes(), limits)?;
                    crate::json::parse_entries(&decoded.text)?;
                    return Err(error);
                }
            };
            vm.check_keys(keys.iter().map(|k| &**k))
                .map_err(|e| e.in_file(file))?;
            drop(keys);
            Ok((Answer::RecordsObject(decoded.text), None))
        }
        Want::Summaries(filter) => Ok((
            Answer::Summaries(summary::summaries_of_bytes(vm, bytes, limits, filter)?),
            None,
        )),
        Want::Cache => Ok((
            Answer::None,
            Some(VmCache::decode(vm.clone(), bytes, limits)?),
        )),
    }
}

fn answer_of(vm: &VmId, want: &Want, cache: &VmCache) -> crate::Result<Answer> {
    let _ = vm;
    Ok(match want {
        Want::Records => Answer::RecordsPairs(cache.entries_json()),
        Want::Summaries(filter) => Answer::Summaries(summary::summaries(cache, filter)?),
        Want::Cache => Answer::None,
    })
}

/// The names of `unparsed` young enough to be a write in progress.
async fn being_written(
    io: &Io,
    vm: &VmId,
    unparsed: &[Unreadable],
) -> Result<BTreeSet<MetadataName>, Failure> {
    let mut writing = BTreeSet::new();
    if unparsed.is_empty() {
        return Ok(writing);
    }
    let mut requests: Vec<Request> = unparsed
        .iter()
        .map(|u| Request::Stat {
            path: share::vm_file(vm, u.name.as_str()),
        })
        .collect();
    requests.push(Request::Now);
    let mut responses = io.all(requests).await;
    let now = match responses.pop() {
        Some(Response::Time(ms)) => ms,
        _ => 0.0,
    };
    for (u, response) in unparsed.iter().zip(responses) {
        match response {
            Response::Modified(mtime) if now - mtime < BEING_WRITTEN_MS => {
                writing.insert(u.name.clone());
            }
            Response::Modified(_) => {}
            // Gone since: not a restore point either.
            Response::Failed(error) if error.code == "ENOENT" => {
                writing.insert(u.name.clone());
            }
            Response::Failed(error) => {
                return Err(Failure::io(
                    format_args!("cannot stat {}", share::vm_file(vm, u.name.as_str())),
                    &error,
                ));
            }
            _ => {}
        }
    }
    if !writing.is_empty() {
        io.log(
            Level::Debug,
            "brcache: metadata being written, not listed yet",
            json!({ "vm": vm.as_str(), "files": writing.iter().map(|n| n.as_str()).collect::<Vec<_>>() }),
        );
    }
    Ok(writing)
}
