//! An immutable repository's index on the share: reading it, writers'
//! segments, and what a listing leaves to do (its seed, the views of the
//! VMs it doubted, compactions). The rules, and why they hold, are in
//! [`crate::index::epochs`]; here every call is create-only.

use super::exec::{Io, join, join_all};
use super::io::{Failure, Level, Request, Response};
use super::settings::Settings;
use super::share;
use crate::coherency::Listing;
use crate::index::epochs::{self, EpochPlan};
use crate::index::{
    Delta, INDEX_DIR, RawSummary, Segment, Snapshot, VmEntry, decode_segments, segment_name,
    segment_time,
};
use crate::key::{MetadataName, VmId};
use crate::summary::{self, Filter};
use serde_json::json;
use std::collections::BTreeMap;

/// The index as a reader finds it.
#[derive(Debug, Clone)]
pub struct Read {
    /// Every epoch of the index folder's listing, ascending.
    pub epochs: Vec<u64>,
    pub plan: EpochPlan,
    /// The snapshot as read (empty without one).
    pub snapshot: Snapshot,
    /// It with the segments it had not folded ([`epochs::current`]).
    pub current: Snapshot,
    /// Segments read that it had not folded, decoded.
    pub segments: Vec<(String, Segment)>,
    /// Segments that did not decode: skipped.
    pub unreadable: Vec<(String, String)>,
    /// The index folder holds a writable index (its snapshots or
    /// segments): brcache writers keep it, not this one, so the repository
    /// is written as a writable one and this index would fall behind.
    /// Nothing else of the read is filled in; listings read the folders.
    pub writable: bool,
}

fn list_failure(path: &str, response: Response) -> Result<Vec<String>, Failure> {
    match response {
        Response::Names(names) => Ok(names),
        Response::Failed(error) if error.code == "ENOENT" => Ok(Vec::new()),
        Response::Failed(error) => Err(Failure::io(format_args!("cannot list {path}"), &error)),
        _ => Ok(Vec::new()),
    }
}

/// The epochs of the index folder, ascending (none without an index), and
/// whether a writable index is there too (see [`Read::writable`]).
pub async fn list_epochs(io: &Io) -> Result<(Vec<u64>, bool), Failure> {
    let names = super::index_ops::list(io).await?.unwrap_or_default();
    let plan = crate::index::ReadPlan::from_listing(names.iter().map(String::as_str));
    let writable = plan.snapshot.is_some() || !plan.segments.is_empty();
    Ok((
        epochs::epochs_of_root(names.iter().map(String::as_str)),
        writable,
    ))
}

async fn list_some(io: &Io, which: &[u64]) -> Result<BTreeMap<u64, Vec<String>>, Failure> {
    let requests = which
        .iter()
        .map(|e| Request::List {
            path: epochs::epoch_folder(*e),
        })
        .collect();
    let mut listed = BTreeMap::new();
    for (epoch, response) in which.iter().zip(io.all(requests).await) {
        listed.insert(
            *epoch,
            list_failure(&epochs::epoch_folder(*epoch), response)?,
        );
    }
    Ok(listed)
}

fn read_request(name: &str) -> Request {
    Request::Read {
        path: format!("{INDEX_DIR}/{name}"),
    }
}

/// Reads the index: the index folder, the two newest epochs, then the
/// snapshot beside the segments named after it, and in a last round trip,
/// rare, the older ones it did not fold (a writer's clock behind the
/// compactor's, a late publication). `None` when there is no epoch at all.
/// Unlike the writable index's reader no margin is read early: a segment
/// a snapshot folded stays listed until its epoch is no longer read, and
/// reading any of them would make each listing cost more.
pub async fn read(io: &Io, settings: &Settings) -> Result<Option<Read>, Failure> {
    let (epochs, writable) = list_epochs(io).await?;
    if writable {
        return Ok(Some(Read {
            epochs,
            plan: EpochPlan::default(),
            snapshot: Snapshot::empty(),
            current: Snapshot::empty(),
            segments: Vec::new(),
            unreadable: Vec::new(),
            writable,
        }));
    }
    if epochs.is_empty() {
        return Ok(None);
    }
    let mut listed = list_some(io, &epochs::first_to_list(&epochs)).await?;
    let plan = loop {
        let plan = EpochPlan::from_listings(&epochs, &listed);
        if plan.more.is_empty() {
            break plan;
        }
        listed.extend(list_some(io, &plan.more).await?);
    };
    let since = plan
        .snapshot
        .as_deref()
        .and_then(|s| s.split_once('/'))
        .map_or(0, |(_, name)| crate::index::snapshot_time(name));
    let bare = |name: &str| name.split_once('/').map_or(name, |(_, n)| n).to_string();
    let (early, late): (Vec<&String>, Vec<&String>) = plan
        .segments
        .iter()
        .partition(|name| segment_time(&bare(name.as_str())).is_none_or(|t| t >= since));
    let mut requests: Vec<Request> = plan.snapshot.iter().map(|s| read_request(s)).collect();
    requests.extend(early.iter().map(|name| read_request(name)));
    let mut responses = io.all(requests).await.into_iter();
    let snapshot = match &plan.snapshot {
        Some(name) => match responses.next() {
            Some(Response::Bytes(bytes)) => Snapshot::decode(&bytes, &settings.limits)
                .map_err(|e| Failure::Core(e.in_file(format!("{INDEX_DIR}/{name}"))))?,
            Some(Response::Failed(error)) => {
                return Err(Failure::io(
                    format_args!("cannot read {INDEX_DIR}/{name}"),
                    &error,
                ));
            }
            _ => Snapshot::empty(),
        },
        None => Snapshot::empty(),
    };
    let mut fetched: Vec<(String, Vec<u8>)> = Vec::new();
    let mut take = |names: Vec<&String>, responses: Vec<Response>| -> Result<(), Failure> {
        for (name, response) in names.into_iter().zip(responses) {
            match response {
                Response::Bytes(bytes) => fetched.push((name.clone(), bytes)),
                // Never deleted by brcache here; gone means someone else's
                // doing, and the segment is skipped like an unreadable one.
                Response::Failed(error) if error.code == "ENOENT" => {}
                Response::Failed(error) => {
                    return Err(Failure::io(
                        format_args!("cannot read {INDEX_DIR}/{name}"),
                        &error,
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    };
    let early: Vec<&String> = early
        .into_iter()
        .filter(|n| !snapshot.folded.contains(*n))
        .collect();
    // The responses of segments the snapshot folded are dropped.
    let early_responses: Vec<Response> = plan
        .segments
        .iter()
        .filter(|name| segment_time(&bare(name.as_str())).is_none_or(|t| t >= since))
        .zip(responses)
        .filter(|(name, _)| !snapshot.folded.contains(*name))
        .map(|(_, r)| r)
        .collect();
    take(early, early_responses)?;
    let late: Vec<&String> = late
        .into_iter()
        .filter(|n| !snapshot.folded.contains(*n))
        .collect();
    if !late.is_empty() {
        let responses = io.all(late.iter().map(|n| read_request(n)).collect()).await;
        take(late, responses)?;
    }
    let (segments, unreadable) = decode_segments(fetched, &settings.limits);
    let current = epochs::current(&snapshot, segments.clone());
    Ok(Some(Read {
        epochs,
        plan,
        snapshot,
        current,
        segments,
        unreadable,
        writable,
    }))
}

/// A VM's view from the summaries a listing read from its folder (every
/// restore point, no filter), at a generation past the entry the index
/// holds: it is the truth as of `time`, the listing's clock before it
/// listed the folder.
pub fn view_of(
    vm: &str,
    summaries: &[summary::Summary],
    held: Option<&VmEntry>,
    time: u64,
) -> Segment {
    let summaries: Vec<RawSummary> = summaries.iter().map(RawSummary::of).collect();
    let names: Vec<String> = summaries
        .iter()
        .filter_map(|s| {
            serde_json::from_str::<serde_json::Value>(s.get())
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
        })
        .map(|id| id.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    let fingerprint = crate::Fingerprint::of_names(names.iter().map(String::as_str)).to_hex();
    Segment::new(
        vm,
        VmEntry {
            generation: time.max(held.map_or(0, |e| e.generation + 1)),
            fingerprint: Some(fingerprint),
            summaries,
            ..VmEntry::default()
        },
    )
}

/// Creates a segment in the newest epoch (see
/// [`epochs::publishing_epoch`]) named at `time`; a failure is logged,
/// never the writer's: the next listing reads the VM's folder.
async fn publish(io: &Io, settings: &Settings, epochs: &[u64], time: u64, segment: &Segment) {
    let epoch = epochs::publishing_epoch(epochs);
    let name = segment_name(time, settings.unique());
    let path = format!("{}/{name}", epochs::epoch_folder(epoch));
    let response = io
        .call(Request::Create {
            path: path.clone(),
            bytes: segment.encode(),
        })
        .await;
    if let Response::Failed(error) = response {
        io.log(
            Level::Warn,
            "brcache: the repository index was not updated (its segment was not published); the next listing reads the VM's folder",
            json!({ "vm": segment.vm, "file": path, "reason": error.message }),
        );
    }
}

/// What a writer publishes for its change to `vm`'s folder (`put`: the
/// metadata files it created, with their bytes, after creating them;
/// `removed`: those it is about to delete, before deleting them): a delta
/// whose fingerprint is the folder as listed now, less `removed`, named
/// and numbered by the clock read beside that listing and the index
/// folder's. A removal goes first so that a listing never hands out a
/// restore point already gone; a writer that dies between the two leaves
/// a folder that does not add up to the next delta's fingerprint, and the
/// listing after that reads the folder.
pub async fn publish_change(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    put: &[(MetadataName, Vec<u8>)],
    removed: &[MetadataName],
) {
    let listing = io.call(share::list_vm_request(vm));
    let (epochs, (listing, now)) = join(list_epochs(io), join(listing, share::now(io))).await;
    let listed = epochs.and_then(|epochs| Ok((epochs, share::vm_listing(vm, listing)?)));
    let ((epochs, writable), entries) = match listed {
        Ok(listed) => listed,
        Err(failure) => {
            io.log(
                Level::Warn,
                "brcache: the repository index was not updated (its segment was not published); the next listing reads the VM's folder",
                json!({ "vm": vm.as_str(), "reason": failure.to_string() }),
            );
            return;
        }
    };
    if writable {
        // Written as a writable repository too: its writers keep that index.
        return;
    }
    let listing = Listing::from_entries(
        entries
            .iter()
            .map(String::as_str)
            .filter(|entry| !removed.iter().any(|name| name.as_str() == *entry)),
    );
    let files: crate::coherency::Files = put.iter().cloned().collect();
    let names = Listing::from_entries(put.iter().map(|(n, _)| n.as_str()));
    let repaired = crate::coherency::rebuild(vm.clone(), &names, &files);
    let put: Vec<RawSummary> = summary::summaries(&repaired.cache, &Filter::default())
        .map(|s| s.iter().map(RawSummary::of).collect())
        .unwrap_or_default();
    let delta = Delta {
        generation: now as u64,
        fingerprint: Some(listing.fingerprint().to_hex()),
        put,
        remove: removed.iter().map(|name| vm.key(name)).collect(),
        ..Delta::default()
    };
    publish(
        io,
        settings,
        &epochs,
        now as u64,
        &Segment::delta(vm.as_str(), delta),
    )
    .await;
}

/// What a listing leaves to do (see [`super::listing::Listed`]): with
/// `compact`, a new snapshot folding what waits and `views` (a seed, the
/// VMs it doubted); else `views` published as segments. `time` is the
/// listing's clock before it listed those folders: a view is the truth as
/// of then, and is folded (or named) at that time, so that a delta
/// published since is applied over it.
pub async fn follow_up(
    io: &Io,
    settings: &Settings,
    views: Vec<Segment>,
    time: u64,
    compact: bool,
) -> Result<(), Failure> {
    if !compact {
        let (epochs, writable) = list_epochs(io).await?;
        if writable {
            return Ok(());
        }
        join_all(
            views
                .iter()
                .map(|v| publish(io, settings, &epochs, time, v)),
        )
        .await;
        return Ok(());
    }
    compact_with(io, settings, views, time).await
}

/// Writes a new snapshot: the index as read now with `views` folded in
/// (named at `time`), into the epoch [`EpochPlan::target`] says.
pub async fn compact_with(
    io: &Io,
    settings: &Settings,
    views: Vec<Segment>,
    time: u64,
) -> Result<(), Failure> {
    let now = share::now(io).await as u64;
    let (base, mut segments, generation, target) = match read(io, settings).await {
        Ok(Some(read)) if read.writable => return Ok(()),
        Ok(Some(read)) => (
            read.snapshot,
            read.segments,
            read.plan.generation,
            read.plan.target(now),
        ),
        Ok(None) => (Snapshot::empty(), Vec::new(), 0, 1),
        Err(failure) => {
            // A snapshot that does not decode is never deleted here: a new
            // one, in a new epoch, replaces it (from the views alone: a
            // listing that found the index unusable read every folder).
            io.log(
                Level::Warn,
                "brcache: the repository index does not read; a new snapshot replaces it",
                json!({ "reason": failure.to_string() }),
            );
            let (epochs, _) = list_epochs(io).await?;
            (
                Snapshot::empty(),
                Vec::new(),
                0,
                epochs::publishing_epoch(&epochs) + 1,
            )
        }
    };
    // Views are folded under names no file has (in the target epoch, so
    // that `folded` keeps them no longer than the epoch is read).
    segments.extend(views.into_iter().map(|view| {
        let name = epochs::in_epoch(target, &segment_name(time, settings.unique()));
        (name, view)
    }));
    let current = epochs::current(&base, segments);
    let (name, snapshot) = epochs::compacted(current, target, generation, now, settings.unique());
    let path = format!("{INDEX_DIR}/{name}");
    match io
        .call(Request::Create {
            path: path.clone(),
            bytes: snapshot.encode(),
        })
        .await
    {
        Response::Failed(error) => Err(Failure::io(format_args!("cannot create {path}"), &error)),
        _ => Ok(()),
    }
}

/// The check of an immutable repository's index against the folders (its
/// verification): every VM folder is read, as a listing without an index
/// reads them, and compared with its entry; with `repair`, the view of
/// each that differs is published (create-only segments), so that the
/// next listing answers it from the index. `exists` is false without a
/// snapshot (the first listing makes one). `None` when a writable index is
/// there ([`Read::writable`]): the caller checks that one.
pub async fn check(
    io: &Io,
    settings: &Settings,
    repair: bool,
) -> Result<Option<super::IndexReport>, Failure> {
    use crate::index::Drift;
    let time = share::now(io).await as u64;
    let (read, folders) = join(read(io, settings), share::list_vm_folders(io)).await;
    let folders = folders?;
    let read = match read {
        Ok(Some(read)) if read.writable => return Ok(None),
        Ok(Some(read)) if read.plan.snapshot.is_some() => read,
        Ok(_) => return Ok(Some(super::IndexReport::default())),
        Err(failure @ Failure::Io(_)) if failure.code() != "EAGAIN" => return Err(failure),
        Err(failure) => {
            return Ok(Some(super::IndexReport {
                exists: true,
                unusable: Some(failure.to_string()),
                ..Default::default()
            }));
        }
    };
    let current = &read.current;
    let want = super::Want::Summaries(Filter::default());
    let loads = join_all(
        folders
            .iter()
            .map(|vm| super::load::load(io, vm, &want, &settings.limits)),
    )
    .await;
    let mut drift = BTreeMap::new();
    let mut views = Vec::new();
    for (vm, load) in folders.iter().zip(loads) {
        let loaded = load?;
        let super::load::Answer::Summaries(summaries) = &loaded.answer else {
            continue;
        };
        let held = current.vms.get(vm.as_str());
        let view = view_of(vm.as_str(), summaries, held, time);
        let crate::index::Body::View(entry) = &view.body else {
            continue;
        };
        let differs = match held {
            None if entry.summaries.is_empty() => None,
            None => Some(Drift::Unknown),
            Some(held)
                if current.is_unsure(vm.as_str())
                    || held.fingerprint != entry.fingerprint
                    || held.summaries != entry.summaries =>
            {
                Some(Drift::Behind)
            }
            Some(_) => None,
        };
        if let Some(why) = differs {
            drift.insert(vm.as_str().to_string(), why);
            views.push(view);
        }
    }
    for (vm, entry) in &current.vms {
        let listed = folders.iter().any(|folder| folder.as_str() == vm);
        if !listed && !entry.summaries.is_empty() {
            drift.insert(vm.clone(), Drift::Gone);
            views.push(Segment::new(
                vm,
                VmEntry {
                    generation: time.max(entry.generation + 1),
                    fingerprint: Some(crate::Fingerprint::of_names([]).to_hex()),
                    ..VmEntry::default()
                },
            ));
        }
    }
    let repaired = repair && !views.is_empty();
    if repaired {
        join_all(
            views
                .iter()
                .map(|v| publish(io, settings, &read.epochs, time, v)),
        )
        .await;
    }
    Ok(Some(super::IndexReport {
        exists: true,
        drift,
        repaired,
        damaged: read
            .unreadable
            .iter()
            .map(|(name, _)| format!("{INDEX_DIR}/{name}"))
            .collect(),
        ..Default::default()
    }))
}
