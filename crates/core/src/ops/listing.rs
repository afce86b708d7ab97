//! Listing restore points: one VM's, every VM's, and the restore view
//! (from the repository-wide index when there is one).

use super::exec::{Io, join, join_all};
use super::index_ops;
use super::io::{Failure, Level};
use super::load::{self, Answer, Loaded, Want};
use super::settings::{IndexMode, Settings};
use super::share;
use crate::coherency::Unreadable;
use crate::index::Snapshot;
use crate::json::push_string;
use crate::key::VmId;
use crate::summary::Filter;
use serde_json::json;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// A listing's answer: per VM (in order, those without restore points
/// omitted) the JSON text of its answer, plus what could not be read and
/// the caches a background repair should rewrite.
#[derive(Debug, Default)]
pub struct Listed {
    /// `(vm, piece)`: summaries for a restore view; for records,
    /// `{ "object": {key: record} }` or `{ "pairs": [[key, record]] }`.
    pub parts: Vec<(String, Piece)>,
    /// Metadata files of the VM folders read that are not in the answer:
    /// (file, reason), sorted.
    pub unreadable: Vec<(String, String)>,
    /// Caches found to need rewriting ([`super::check::repair_in_background`]).
    pub repairs: Vec<Loaded>,
    /// Whether the answer came from the repository index.
    pub from_index: bool,
    /// When the restore view found no index to answer from (none yet, or
    /// segments without a snapshot): the entries of the VMs whose caches
    /// it found true, for the follow-up that makes the index
    /// ([`super::follow_up`]). No one has to run a command for a writable
    /// repository to get its index.
    pub index_seed: Vec<crate::index::Segment>,
    /// When the restore view read more segments than
    /// [`crate::index::LISTING_COMPACTS_AFTER`] that a compaction would
    /// fold: its follow-up compacts, so that the next listings read the
    /// snapshot alone.
    pub compact_index: bool,
}

/// One VM's answer as JSON text, `open ‖ body ‖ close`: a body may be tens
/// of MB (full records), so it is copied once, into the final answer.
#[derive(Debug, Default, Clone)]
pub struct Piece {
    open: &'static str,
    body: String,
    close: &'static str,
}

impl Piece {
    fn len(&self) -> usize {
        self.open.len() + self.body.len() + self.close.len()
    }

    fn write_to(&self, out: &mut String) {
        out.push_str(self.open);
        out.push_str(&self.body);
        out.push_str(self.close);
    }
}

impl Listed {
    /// `{ "<vm>": <answer>, ... }`, appended to `out`.
    pub fn write_json(&self, out: &mut String) {
        let size: usize = self
            .parts
            .iter()
            .map(|(vm, p)| vm.len() + p.len() + 4)
            .sum();
        out.reserve(size + 2);
        out.push('{');
        for (i, (vm, piece)) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_string(out, vm);
            out.push(':');
            piece.write_to(out);
        }
        out.push('}');
    }

    /// The answer as JSON text.
    pub fn json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    /// Takes in what a VM's load leaves besides its answer: the files it
    /// could not read, and the cache a background repair should rewrite.
    fn absorb(&mut self, loaded: Loaded, settings: &Settings) {
        for Unreadable { name, reason } in &loaded.unreadable {
            self.unreadable
                .push((share::vm_file(&loaded.vm, name.as_str()), reason.clone()));
        }
        if (loaded.changed || loaded.settle) && !settings.immutable {
            self.repairs.push(loaded);
        }
    }

    fn finish(mut self, parts: Vec<(String, Option<Piece>)>) -> Listed {
        self.parts = parts
            .into_iter()
            .filter_map(|(vm, piece)| Some((vm, piece?)))
            .collect();
        self.unreadable.sort();
        self
    }
}

/// A VM's answer as JSON text, taken out of its load; `None` without
/// restore points.
fn piece_of(loaded: &mut Loaded) -> Option<Piece> {
    match std::mem::replace(&mut loaded.answer, Answer::None) {
        Answer::RecordsObject(body) if body.trim() != "{}" => Some(Piece {
            open: r#"{"object":"#,
            body,
            close: "}",
        }),
        Answer::RecordsPairs(body) if body != "[]" => Some(Piece {
            open: r#"{"pairs":"#,
            body,
            close: "}",
        }),
        Answer::Summaries(summaries) if !summaries.is_empty() => Some(Piece {
            body: serde_json::to_string(&summaries).expect("summaries serialize"),
            ..Piece::default()
        }),
        _ => None,
    }
}

/// A streaming listing hands each VM's answer to the caller as soon as it
/// is made (`[vm, answer]`, see [`super::Settings::stream`]), so that the
/// caller's parse of one VM overlaps the reads of the others; otherwise the
/// piece is kept for the whole answer.
fn deliver(io: &Io, settings: &Settings, vm: &str, piece: Option<Piece>) -> Option<Piece> {
    let piece = piece?;
    if !settings.stream {
        return Some(piece);
    }
    io.emit_with(|text| {
        text.reserve(vm.len() + piece.len() + 8);
        text.push('[');
        push_string(text, vm);
        text.push(',');
        piece.write_to(text);
        text.push(']');
    });
    None
}

/// A VM's load, checked or (on a trusted share) as the cache lies.
async fn load_vm(io: &Io, settings: &Settings, vm: &VmId, want: &Want) -> Result<Loaded, Failure> {
    if settings.trusted {
        load::load_trusted(io, vm, want, &settings.limits).await
    } else {
        load::load(io, vm, want, &settings.limits).await
    }
}

/// One VM's records or summaries, its cache checked against its folder.
pub async fn list_vm(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    want: Want,
) -> Result<Listed, Failure> {
    let mut loaded = load_vm(io, settings, vm, &want).await?;
    let piece = deliver(io, settings, vm.as_str(), piece_of(&mut loaded));
    let mut listed = Listed::default();
    listed.absorb(loaded, settings);
    Ok(listed.finish(vec![(vm.as_str().to_string(), piece)]))
}

/// Every VM's records or summaries from their checked caches.
pub async fn list_all(io: &Io, settings: &Settings, want: Want) -> Result<Listed, Failure> {
    let vms = share::list_vm_folders(io).await?;
    from_caches(io, settings, &vms, &want, false, None, Preloaded::default()).await
}

/// Loads a listing made before it knew it would need them (the locked
/// VMs', beside the index's reads), taken by [`from_caches`].
type Preloaded = RefCell<BTreeMap<VmId, Result<Loaded, Failure>>>;

/// Every VM's answer from its checked cache; with `seed`, also the index
/// entries of the caches found true ([`Listed::index_seed`]). With
/// `locked`, the index a listing answers the other VMs from, and the VMs
/// whose lock it saw: each of those whose entry there disagrees with its
/// cache gets a background repair that levels them.
async fn from_caches(
    io: &Io,
    settings: &Settings,
    vms: &[VmId],
    want: &Want,
    seed: bool,
    locked: Option<(&Snapshot, &BTreeSet<VmId>)>,
    preloaded: Preloaded,
) -> Result<Listed, Failure> {
    let preloaded = &preloaded;
    let loads = join_all(vms.iter().map(|vm| async move {
        let early = preloaded.borrow_mut().remove(vm);
        let mut loaded = match early {
            Some(loaded) => loaded?,
            None => load_vm(io, settings, vm, want).await?,
        };
        if let Some((index, locked)) = locked {
            loaded.settle =
                (locked.contains(vm) || index.is_unsure(vm.as_str())) && disagrees(index, &loaded);
        }
        let entry = if seed { seed_of(vm, &loaded) } else { None };
        let piece = deliver(io, settings, vm.as_str(), piece_of(&mut loaded));
        Ok::<_, Failure>((loaded, piece, entry))
    }))
    .await;
    let mut listed = Listed::default();
    let mut parts = Vec::with_capacity(vms.len());
    for (vm, load) in vms.iter().zip(loads) {
        let (loaded, piece, entry) = load?;
        listed.absorb(loaded, settings);
        listed.index_seed.extend(entry);
        parts.push((vm.as_str().to_string(), piece));
    }
    Ok(listed.finish(parts))
}

/// Whether a restore view that finds no index seeds one: on a repository
/// brcache may write (not immutable, not read through a trusted share),
/// with the index not turned off, and for the whole view (a filtered one
/// does not hold every restore point).
fn seeds_index(settings: &Settings, filter: &Filter) -> bool {
    writes_index(settings) && *filter == Filter::default()
}

/// Whether a listing may write the index: on a repository brcache may
/// write (not immutable, not read through a trusted share), with the index
/// not turned off.
fn writes_index(settings: &Settings) -> bool {
    settings.index != IndexMode::Off && !settings.immutable && !settings.trusted
}

/// A VM's index entry from a load that found its cache true as it lies
/// (the fast path): the cache's generation and fingerprint, and every
/// summary. `None` for any other load: a cache to repair publishes its
/// own entry when the repair writes it.
fn seed_of(vm: &VmId, loaded: &Loaded) -> Option<crate::index::Segment> {
    if !loaded.fast_path || loaded.changed {
        return None;
    }
    let header = crate::codec::read_header(loaded.read.bytes()?).ok()??;
    let Answer::Summaries(summaries) = &loaded.answer else {
        return None;
    };
    let entry = crate::index::VmEntry {
        generation: header.generation,
        fingerprint: header.fingerprint.map(|f| f.to_hex()),
        summaries: summaries.iter().map(crate::index::RawSummary::of).collect(),
        ..crate::index::VmEntry::default()
    };
    Some(crate::index::Segment::new(vm.as_str(), entry))
}

/// Whether a VM's index entry is not the cache a load read: another
/// generation or fingerprint, an entry with restore points for a VM
/// without a cache (or none for a VM with one), or an entry the index
/// itself doubts (see [`Snapshot::unsure`]).
fn disagrees(index: &Snapshot, loaded: &Loaded) -> bool {
    if index.is_unsure(loaded.vm.as_str()) {
        return true;
    }
    let header = loaded
        .read
        .bytes()
        .and_then(|bytes| crate::codec::read_header(bytes).ok().flatten());
    match (index.vms.get(loaded.vm.as_str()), header) {
        (Some(entry), Some(header)) => {
            entry.generation != header.generation
                || entry.fingerprint != header.fingerprint.map(|f| f.to_hex())
        }
        (Some(entry), None) => !entry.summaries.is_empty() || loaded.read.bytes().is_some(),
        (None, _) => true,
    }
}

/// The restore view: `{ vm: summaries }`, from the repository-wide index
/// when there is one, else from every VM's checked cache. With the index,
/// the VM folders are listed at the same time: a folder the index does not
/// know (Xen Orchestra backed it up behind the index's back) is read from
/// its cache, and one that is gone is not listed. Two round trips whatever
/// the VM count, when the index knows every folder.
///
/// A VM whose lock shows in the same listing is read from its cache and
/// folder too, as without an index: a brcache writer holds the lock from
/// before it touches the folder until its segment is published, and one
/// that dies leaves it, so the index is trusted exactly for the VMs no
/// writer of brcache's is (or was, when it died) between its first change
/// and its segment. Those reads go out beside the index's, in the second
/// round trip. The background repair of a locked VM whose entry disagrees
/// with its cache takes the lock once it is free (a dead writer's goes
/// stale and is taken over) and publishes the entry, so the extra reads
/// last until the next listing after that, not until the VM's next write.
pub async fn restore_view(io: &Io, settings: &Settings, filter: Filter) -> Result<Listed, Failure> {
    let want = Want::Summaries(filter.clone());
    if settings.index == IndexMode::Off {
        return list_all(io, settings, want).await;
    }
    // The locked VMs are known from the first round trip: their loads go
    // out beside the index's reads.
    let folders_and_locked = async {
        let folders = share::list_backup_folders(io).await?;
        let locked: Vec<VmId> = folders
            .vms
            .iter()
            .filter(|vm| folders.locked.contains(vm))
            .cloned()
            .collect();
        let loads = join_all(locked.iter().map(|vm| load_vm(io, settings, vm, &want))).await;
        Ok::<_, Failure>((folders, locked.into_iter().zip(loads).collect()))
    };
    // Without locks, no lock shows in the VM folders' listing, and on an
    // object store that listing is the costly call (Garage walks every
    // object under xo-vm-backups/: 1.1 s at 27,000 objects, where the
    // index's folder and snapshot take 0.1 s). Through the index, the VMs
    // are then the index's: a VM folder it does not know (Xen Orchestra's
    // first backup of a VM) or one gone waits for the next verification,
    // like every change Xen Orchestra makes behind the index. Without an
    // index, the folders are listed.
    let (folders, preloaded, index) = if settings.locks {
        let (folders, index) = join(folders_and_locked, index_for_listing(io, settings)).await;
        let ((folders, preloaded), index) = (folders?, index?);
        (folders, preloaded, index)
    } else {
        match index_for_listing(io, settings).await? {
            Some(index) => (index_folders(&index), BTreeMap::new(), Some(index)),
            None => {
                let (folders, preloaded) = folders_and_locked.await?;
                (folders, preloaded, None)
            }
        }
    };
    let preloaded = RefCell::new(preloaded);
    let vms = folders.vms;
    let Some(index) = index else {
        let seed = seeds_index(settings, &filter);
        return from_caches(io, settings, &vms, &want, seed, None, preloaded).await;
    };
    let compact_index = writes_index(settings)
        && index_ops::foldable(&index) > crate::index::LISTING_COMPACTS_AFTER;
    let current = index.loaded.current();
    let unknown: Vec<VmId> = vms
        .iter()
        .filter(|vm| current.generation_of(vm.as_str()).is_none())
        .cloned()
        .collect();
    if !unknown.is_empty() {
        io.log(
            Level::Info,
            "brcache: VM folders the repository index does not know, read from their caches (brcache check catches the index up)",
            json!({ "vms": unknown.iter().map(VmId::as_str).collect::<Vec<_>>() }),
        );
    }
    // Entries folded from deltas that do not add up (writers without a
    // lock, a VM the index never saw whole): read like unknown folders,
    // and levelled by the background repair.
    let doubted: Vec<VmId> = vms
        .iter()
        .filter(|vm| current.is_unsure(vm.as_str()))
        .cloned()
        .collect();
    if !doubted.is_empty() {
        io.log(
            Level::Debug,
            "brcache: VMs whose index entry is in doubt, read from their caches",
            json!({ "vms": doubted.iter().map(VmId::as_str).collect::<Vec<_>>() }),
        );
    }
    let verified: Vec<VmId> = vms
        .iter()
        .filter(|vm| unknown.contains(vm) || doubted.contains(vm) || folders.locked.contains(vm))
        .cloned()
        .collect();
    let locked: Vec<&VmId> = verified
        .iter()
        .filter(|vm| folders.locked.contains(vm) && !unknown.contains(vm))
        .collect();
    if !locked.is_empty() {
        io.log(
            Level::Debug,
            "brcache: VMs whose lock is held (or left by a writer that died), read from their caches",
            json!({ "vms": locked.iter().map(|vm| vm.as_str()).collect::<Vec<_>>() }),
        );
    }
    let mut listed = from_caches(
        io,
        settings,
        &verified,
        &want,
        false,
        Some((current, &folders.locked)),
        preloaded,
    )
    .await?;
    let mut cached: std::collections::BTreeMap<String, Piece> =
        std::mem::take(&mut listed.parts).into_iter().collect();
    let view = current.filtered_view(&filter);
    let mut parts = Vec::with_capacity(vms.len());
    for vm in &vms {
        let piece = match cached.remove(vm.as_str()) {
            Some(piece) => Some(piece),
            None if verified.contains(vm) => None,
            None => deliver(
                io,
                settings,
                vm.as_str(),
                view.get(vm.as_str()).map(|summaries| Piece {
                    body: serde_json::to_string(summaries).expect("raw summaries serialize"),
                    ..Piece::default()
                }),
            ),
        };
        parts.push((vm.as_str().to_string(), piece));
    }
    let repairs = std::mem::take(&mut listed.repairs);
    let unreadable = std::mem::take(&mut listed.unreadable);
    Ok(Listed {
        repairs,
        unreadable,
        from_index: true,
        compact_index,
        ..Listed::default()
    }
    .finish(parts))
}

/// The VM folders as the index knows them (see [`restore_view`]).
fn index_folders(index: &index_ops::Read) -> share::BackupFolders {
    share::BackupFolders {
        vms: index
            .loaded
            .current()
            .vms
            .keys()
            .filter_map(|vm| VmId::new(vm).ok())
            .collect(),
        ..share::BackupFolders::default()
    }
}

/// The index, if there is one with a snapshot and it reads; else `None`
/// (and why, logged). Without a snapshot, the segments alone may not hold
/// every VM (the snapshot was lost, or the index never compacted).
async fn index_for_listing(
    io: &Io,
    settings: &Settings,
) -> Result<Option<index_ops::Read>, Failure> {
    match index_ops::read(io, settings, None).await {
        Ok(Some(read)) if read.plan.snapshot.is_some() => Ok(Some(read)),
        Ok(Some(_)) => {
            io.log(
                Level::Warn,
                "brcache: the repository index has no snapshot, listing every VM instead",
                json!({ "dir": crate::index::INDEX_DIR }),
            );
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(failure @ Failure::Io(_)) if failure.code() != "EAGAIN" => Err(failure),
        Err(failure) => {
            io.log(
                Level::Warn,
                "brcache: unusable repository index, listing every VM instead",
                json!({ "reason": failure.to_string() }),
            );
            Ok(None)
        }
    }
}
