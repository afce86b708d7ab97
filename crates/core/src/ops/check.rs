//! Checking a VM's cache against its folder, and repairing it.

use super::exec::{Io, join_all};
use super::io::{Failure, Request, Response};
use super::load::{self, Loaded, Want};
use super::mutate;
use super::settings::Settings;
use super::share;
use crate::key::VmId;
use serde::Serialize;

/// What a check found (and did) in one VM folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub vm: String,
    pub entries: usize,
    pub fast_path: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_error: Option<String>,
    /// Entries whose metadata file is gone (keys).
    pub stale: Vec<String>,
    /// Metadata files the cache lacks (keys).
    pub missing: Vec<String>,
    pub unreadable: Vec<UnreadableFile>,
    /// Metadata files being written (keys): neither missing nor unreadable.
    pub writing: Vec<String>,
    pub coherent: bool,
    pub repaired: bool,
    /// With `deep`: restore points whose data files are not all there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<Vec<Incomplete>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnreadableFile {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incomplete {
    pub id: String,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    pub repair: bool,
    pub dry_run: bool,
    pub deep: bool,
}

fn report(loaded: &Loaded) -> Report {
    let vm = &loaded.vm;
    let missing: Vec<String> = loaded
        .plan
        .missing
        .iter()
        .filter(|n| !loaded.writing.contains(n))
        .map(|n| vm.key(n))
        .collect();
    let cache = loaded.cache.as_ref().expect("a check decodes the cache");
    Report {
        vm: vm.as_str().to_string(),
        entries: cache.len(),
        fast_path: loaded.fast_path,
        cache_error: loaded.cache_error.clone(),
        stale: loaded.plan.stale.iter().map(|n| vm.key(n)).collect(),
        coherent: loaded.plan.stale.is_empty()
            && missing.is_empty()
            && loaded.unreadable.is_empty()
            && loaded.cache_error.is_none(),
        missing,
        unreadable: loaded
            .unreadable
            .iter()
            .map(|u| UnreadableFile {
                id: vm.key(&u.name),
                reason: u.reason.clone(),
            })
            .collect(),
        writing: loaded.writing.iter().map(|n| vm.key(n)).collect(),
        repaired: false,
        incomplete: None,
    }
}

/// Reconciles a VM's cache with its folder and reports stale entries,
/// missing ones and unreadable metadata; with `repair`, writes the repaired
/// cache under the VM's lock (never in a dry run, never on an immutable
/// repository), and its index segment with it. `deep` also checks that the
/// data files each restore point names exist.
pub async fn check_vm(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    options: CheckOptions,
) -> Result<Report, Failure> {
    let write = options.repair && !options.dry_run && !settings.immutable;
    if write {
        mutate::lock(io, vm, true)
            .await
            .map_err(|e| Failure::io(format_args!("cannot lock {}", share::lock_path(vm)), &e))?;
    }
    let result = async {
        // A repair reads what a locked writer reads; a plain check, the load.
        let (loaded, index_listing) = if write {
            let reads = mutate::read_locked(io, settings, vm).await?;
            reads.resolve(io, settings, vm).await?
        } else {
            (
                load::load(io, vm, &Want::Cache, &settings.limits).await?,
                None,
            )
        };
        let mut report = report(&loaded);
        if options.deep {
            report.incomplete = Some(incomplete(io, &loaded).await?);
        }
        let mut publish = mutate::Committed::default();
        if write && loaded.changed {
            let cache = loaded.cache.expect("decoded");
            publish = mutate::write(
                io,
                settings,
                cache,
                loaded.previous_generation,
                &index_listing,
            )
            .await?;
            report.repaired = true;
        }
        Ok((report, publish))
    }
    .await;
    match result {
        Ok((report, publish)) => {
            if write {
                mutate::release(io, settings, vm, publish).await;
            }
            Ok(report)
        }
        Err(failure) => {
            if write {
                mutate::unlock(io, vm).await;
            }
            Err(failure)
        }
    }
}

/// The restore points whose data files are not all there.
async fn incomplete(io: &Io, loaded: &Loaded) -> Result<Vec<Incomplete>, Failure> {
    let vm = &loaded.vm;
    let cache = loaded.cache.as_ref().expect("decoded");
    let mut wanted = Vec::new();
    for (key, record) in cache.entries() {
        let record: serde_json::Value = serde_json::from_str(record.get()).unwrap_or_default();
        wanted.push((key, data_files(&record)));
    }
    let checks = join_all(wanted.iter().map(|(key, files)| async move {
        let requests = files
            .iter()
            .flatten()
            .map(|file| Request::Stat {
                path: share::vm_file(vm, file),
            })
            .collect();
        let mut responses = io.all(requests).await.into_iter();
        let mut missing = Vec::new();
        for file in files {
            let Some(file) = file else {
                missing.push("(a data path outside the VM folder)".to_string());
                continue;
            };
            match responses.next() {
                Some(Response::Failed(error)) if error.code == "ENOENT" => {
                    missing.push(file.clone())
                }
                Some(Response::Failed(error)) => {
                    return Err(Failure::io(
                        format_args!("cannot check {}", share::vm_file(vm, file)),
                        &error,
                    ));
                }
                _ => {}
            }
        }
        Ok((!missing.is_empty()).then(|| Incomplete {
            id: key.clone(),
            missing,
        }))
    }))
    .await;
    let mut out: Vec<Incomplete> = checks
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The data files a restore point names, relative to its VM folder; `None`
/// for a path outside it.
fn data_files(record: &serde_json::Value) -> Vec<Option<String>> {
    let inside = |path: &serde_json::Value| {
        let path = path.as_str()?;
        let clean = path.strip_prefix("./").unwrap_or(path);
        let ok = !clean.is_empty()
            && clean
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\\'));
        ok.then(|| clean.to_string())
    };
    if record["mode"] == "full" {
        return match record.get("xva") {
            None => Vec::new(),
            Some(xva) => vec![inside(xva)],
        };
    }
    match record.get("vhds").and_then(|v| v.as_object()) {
        Some(vhds) => vhds.values().map(inside).collect(),
        None => Vec::new(),
    }
}

/// After a listing found a cache to repair: write the repair if the lock is
/// free and nobody wrote the cache since it was read. Readers never wait
/// for the lock, and a failed repair costs nothing but a later one.
/// Answers whether it wrote.
pub async fn repair_in_background(
    io: &Io,
    settings: &Settings,
    loaded: Loaded,
) -> Result<bool, Failure> {
    let vm = loaded.vm.clone();
    if mutate::lock(io, &vm, false).await.is_err() {
        return Ok(false); // somebody else is writing this cache
    }
    if loaded.settle {
        // The listing saw the lock (a writer that died, or was just done)
        // and went by the folder: under the lock, the cache and the index
        // entry are made to agree with it, read afresh (the index too),
        // so the lag a dead writer left ends here, not at the next write.
        let settled = mutate::settle_locked(io, settings, &vm).await;
        return mutate::finish(io, settings, &vm, settled).await;
    }
    let result = async {
        let mutate::LockedReads {
            cache: read,
            entries,
            folder,
            index_listing,
        } = mutate::read_locked(io, settings, &vm).await?;
        if !folder {
            return Ok(None); // removed since: a cache would bring it back
        }
        // Not even a readable header: generation 0, as the load counted it.
        let current = read
            .bytes()
            .and_then(|b| crate::codec::read_header(b).ok().flatten())
            .map_or(0, |h| h.generation);
        if current != loaded.previous_generation {
            return Ok(None);
        }
        // The listing was taken in parallel with the cache read, so it may
        // predate the cache: an entry a writer added in between would look
        // stale and the repair would undo that writer's update. Write only
        // what the folder, listed now under the lock, still agrees with.
        let Some(repaired) = loaded.cache else {
            return Ok(None);
        };
        let listing = crate::coherency::Listing::from_entries(entries.iter().map(String::as_str));
        let plan = crate::coherency::reconcile(&repaired, &listing);
        let left_out = |name: &crate::MetadataName| {
            loaded.writing.contains(name) || loaded.unreadable.iter().any(|u| &u.name == name)
        };
        if !plan.stale.is_empty() || plan.missing.iter().any(|n| !left_out(n)) {
            return Ok(None);
        }
        let publish = mutate::write(
            io,
            settings,
            repaired,
            loaded.previous_generation,
            &index_listing,
        )
        .await?;
        Ok(Some(publish))
    }
    .await;
    mutate::finish(io, settings, &vm, result).await
}
