//! Listing restore points: one VM's, every VM's, and the restore view
//! (from the repository-wide index when there is one).

use super::exec::{Io, join, join_all};
use super::index_ops::{self, Scope};
use super::io::{Failure, Level};
use super::load::{self, Answer, Loaded, Want};
use super::settings::{IndexMode, Settings};
use super::share;
use crate::coherency::Unreadable;
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
    /// With `from_index`: the VMs answered from their caches and folders
    /// instead, and why.
    pub not_from_index: NotFromIndex,
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
    /// On an immutable repository (see [`super::journal`]): the listing's
    /// clock before it listed the folders its `index_seed` views come
    /// from (ms).
    pub seed_time: u64,
}

/// The VMs a listing from the index read from their caches and folders
/// rather than trust their entries, each list sorted: a VM may be both
/// locked and in doubt.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NotFromIndex {
    /// Their lock showed: a writer at work, or one that died.
    pub locked: Vec<String>,
    /// Their entry is in doubt ([`Snapshot::unsure`]).
    pub in_doubt: Vec<String>,
    /// Folders the index has no entry for.
    pub unknown: Vec<String>,
}

impl NotFromIndex {
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "locked": self.locked, "inDoubt": self.in_doubt, "unknown": self.unknown })
    }
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
    locked: Option<(&crate::index::Loaded, &BTreeSet<VmId>)>,
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
            loaded.settle = (locked.contains(vm) || index.current().is_unsure(vm.as_str()))
                && disagrees(index, &loaded);
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
fn disagrees(index: &crate::index::Loaded, loaded: &Loaded) -> bool {
    if index.current().is_unsure(loaded.vm.as_str()) {
        return true;
    }
    let header = loaded
        .read
        .bytes()
        .and_then(|bytes| crate::codec::read_header(bytes).ok().flatten());
    match (index.state_of(loaded.vm.as_str()), header) {
        (Some((generation, fingerprint, _)), Some(header)) => {
            generation != header.generation || fingerprint != header.fingerprint.map(|f| f.to_hex())
        }
        (Some((_, _, points)), None) => points || loaded.read.bytes().is_some(),
        (None, _) => true,
    }
}

/// What a listing through the index answers.
#[derive(Debug, Clone)]
enum Wanted {
    /// The restore view: every VM's summaries.
    View(Filter),
    /// The VM table: a row per VM.
    Table,
    /// One VM's summaries.
    Vm(VmId, Filter),
}

impl Wanted {
    fn filter(&self) -> Filter {
        match self {
            Wanted::View(filter) | Wanted::Vm(_, filter) => filter.clone(),
            Wanted::Table => Filter::default(),
        }
    }

    fn scope(&self) -> Scope<'_> {
        match self {
            Wanted::View(_) => Scope::All,
            Wanted::Table => Scope::Table,
            Wanted::Vm(vm, _) => Scope::Vm(vm.as_str()),
        }
    }
}

/// A VM's row of the VM table (see [`crate::index::TableSummary`]) from
/// its summaries' piece; `None` without restore points.
fn row_piece(piece: Option<Piece>) -> Option<Piece> {
    let summaries: Vec<crate::index::RawSummary> =
        serde_json::from_str(&piece?.body).expect("a listing's summaries are JSON");
    Some(Piece {
        body: serde_json::to_string(&crate::index::TableSummary::of(&summaries))
            .expect("a row serializes"),
        ..Piece::default()
    })
}

/// The restore view: `{ vm: summaries }`, from the repository-wide index
/// when there is one, else from every VM's checked cache. With the index,
/// the VM folders are listed at the same time: a folder the index does not
/// know (Xen Orchestra backed it up behind the index's back) is read from
/// its cache, and one that is gone is not listed. Two round trips
/// whatever the VM count, when the index knows every folder (the folders
/// and the index folder; the table, the segments and the parts listed).
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
///
/// The first round trip's two listings land in either order, so a
/// writer's segment and unlock can both land between them: the VM folders
/// then show no lock and the index folder no segment. The index folder is
/// listed again beside the index's reads (that listing starts once the VM
/// folders' is done, so it shows every segment published before an unlock
/// the VM folders' missed) and what it adds is read in a third round trip,
/// only then ([`index_ops::catch_up`]).
pub async fn restore_view(io: &Io, settings: &Settings, filter: Filter) -> Result<Listed, Failure> {
    if settings.journal {
        return through_journal(io, settings, Wanted::View(filter)).await;
    }
    if settings.index == IndexMode::Off {
        return list_all(io, settings, Want::Summaries(filter)).await;
    }
    through_index(io, settings, Wanted::View(filter)).await
}

/// The VM table: `{ vm: { name, count, modes, lastBackup, size } }`, VMs
/// without restore points omitted, by the restore view's rules (the same
/// VMs read from their caches) but from the index's table: only the VMs
/// that segments changed since the last compaction have their part read
/// and folded, the others' rows are what that compaction's full fold
/// computed. Three round trips whatever the VM count, and the table
/// (sized by VMs) with those parts read.
pub async fn vm_table(io: &Io, settings: &Settings) -> Result<Listed, Failure> {
    let quiet = settings.collecting();
    let mut listed = if settings.journal {
        through_journal(io, &quiet, Wanted::Table).await?
    } else if settings.index == IndexMode::Off {
        list_all(io, &quiet, Want::Summaries(Filter::default())).await?
    } else {
        through_index(io, &quiet, Wanted::Table).await?
    };
    // Through the index, rows already; from the caches alone, summaries.
    let from_index = listed.from_index;
    let rows = std::mem::take(&mut listed.parts)
        .into_iter()
        .map(|(vm, piece)| {
            let row = if from_index {
                Some(piece)
            } else {
                row_piece(Some(piece))
            };
            let row = deliver(io, settings, &vm, row);
            (vm, row)
        })
        .collect();
    Ok(listed.finish(rows))
}

/// One VM's restore view (summaries) from the index, by the restore
/// view's rules (from its cache and folder when the index does not know
/// it, doubts it, or its lock shows), reading the table, that VM's part
/// and the segments: three round trips, and one part, whatever the VM
/// count. Without an index, from its checked cache.
pub async fn vm_restore_view(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    filter: Filter,
) -> Result<Listed, Failure> {
    if settings.journal {
        return through_journal(io, settings, Wanted::Vm(vm.clone(), filter)).await;
    }
    if settings.index == IndexMode::Off {
        return list_vm(io, settings, vm, Want::Summaries(filter)).await;
    }
    through_index(io, settings, Wanted::Vm(vm.clone(), filter)).await
}

/// A listing through the index (see [`restore_view`]), answering what
/// `wanted` asks.
async fn through_index(io: &Io, settings: &Settings, wanted: Wanted) -> Result<Listed, Failure> {
    let filter = wanted.filter();
    let want = Want::Summaries(filter.clone());
    let only = match &wanted {
        Wanted::Vm(vm, _) => Some(vm.clone()),
        _ => None,
    };
    let scope = wanted.scope();
    let read_index = |listing: Option<Vec<String>>| async move {
        match listing {
            Some(names) => index_for_listing(io, settings, names, scope).await,
            None => Ok(None),
        }
    };
    // Without locks, no lock shows in the VM folders' listing, and on an
    // object store that listing is the costly call (Garage walks every
    // object under xo-vm-backups/: 1.1 s at 27,000 objects, where the
    // index's folder and snapshot take 0.1 s). Through the index, the VMs
    // are then the index's: a VM folder it does not know (Xen Orchestra's
    // first backup of a VM) or one gone waits for the next verification,
    // like every change Xen Orchestra makes behind the index. Without an
    // index, the folders are listed.
    let (mut folders, preloaded, index) = if settings.locks {
        // The first round trip lists the VM folders and the index folder;
        // the locked VMs' loads go out beside the index's reads, in the
        // second.
        let (folders, listing) = join(share::list_backup_folders(io), index_ops::list(io)).await;
        let (mut folders, listing) = (folders?, listing?);
        if let Some(vm) = &only {
            folders.vms.retain(|folder| folder == vm);
        }
        let locked: Vec<VmId> = folders
            .vms
            .iter()
            .filter(|vm| folders.locked.contains(vm))
            .cloned()
            .collect();
        let loads = join_all(locked.iter().map(|vm| load_vm(io, settings, vm, &want)));
        let (loads, index) = join(loads, read_index(listing)).await;
        let preloaded = locked.into_iter().zip(loads).collect();
        (folders, preloaded, index?)
    } else {
        match read_index(index_ops::list(io).await?).await? {
            Some(index) => (index_folders(&index), BTreeMap::new(), Some(index)),
            None => (share::list_backup_folders(io).await?, BTreeMap::new(), None),
        }
    };
    if let Some(vm) = &only {
        folders.vms.retain(|folder| folder == vm);
    }
    if let Some(index) = &index {
        folders.locked.extend(
            folders
                .vms
                .iter()
                .filter(|vm| index.moved.contains(vm.as_str()))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
    let preloaded = RefCell::new(preloaded);
    let vms = folders.vms;
    let Some(index) = index else {
        // Every VM read whole: the VM table makes the index as the
        // restore view does.
        let seed = !matches!(wanted, Wanted::Vm(..)) && seeds_index(settings, &filter);
        return from_caches(io, settings, &vms, &want, seed, None, preloaded).await;
    };
    let compact_index = writes_index(settings)
        && index_ops::foldable(&index) > crate::index::LISTING_COMPACTS_AFTER;
    let loaded = &index.loaded;
    let current = loaded.current();
    let unknown: Vec<VmId> = vms
        .iter()
        .filter(|vm| loaded.generation_of(vm.as_str()).is_none())
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
        Some((loaded, &folders.locked)),
        preloaded,
    )
    .await?;
    let mut cached: std::collections::BTreeMap<String, Piece> =
        std::mem::take(&mut listed.parts).into_iter().collect();
    let view = match wanted {
        Wanted::Table => BTreeMap::new(),
        _ => current.filtered_view(&filter),
    };
    let rows = match wanted {
        Wanted::Table => loaded.rows(),
        _ => BTreeMap::new(),
    };
    let mut parts = Vec::with_capacity(vms.len());
    for vm in &vms {
        let from_index = match wanted {
            Wanted::Table => rows
                .get(vm.as_str())
                .filter(|row| row.count > 0)
                .map(|row| Piece {
                    body: serde_json::to_string(row).expect("a row serializes"),
                    ..Piece::default()
                }),
            _ => view.get(vm.as_str()).map(|summaries| Piece {
                body: serde_json::to_string(summaries).expect("raw summaries serialize"),
                ..Piece::default()
            }),
        };
        let piece = match cached.remove(vm.as_str()) {
            // Read from the cache: summaries, made a row for the table.
            Some(piece) if matches!(wanted, Wanted::Table) => row_piece(Some(piece)),
            Some(piece) => Some(piece),
            None if verified.contains(vm) => None,
            None => deliver(io, settings, vm.as_str(), from_index),
        };
        parts.push((vm.as_str().to_string(), piece));
    }
    let repairs = std::mem::take(&mut listed.repairs);
    let unreadable = std::mem::take(&mut listed.unreadable);
    let names = |vms: Vec<&VmId>| vms.iter().map(|vm| vm.as_str().to_string()).collect();
    let not_from_index = NotFromIndex {
        locked: names(locked),
        in_doubt: names(doubted.iter().collect()),
        unknown: names(unknown.iter().collect()),
    };
    Ok(Listed {
        repairs,
        unreadable,
        from_index: true,
        not_from_index,
        compact_index,
        ..Listed::default()
    }
    .finish(parts))
}

/// A listing of an immutable repository through its index (see
/// [`super::journal`]): the index read (three round trips) beside the VM
/// folders' listing where the share has locks (a local share; on S3 the
/// VMs are the index's, as in [`restore_view`]). A VM the index does not
/// know or whose entry does not add up ([`crate::index::epochs::judge`])
/// is read from its folder, and its view is left for the follow-up to
/// publish, so that the doubt lasts one listing. Without an index, every
/// VM is read from its folder, and the follow-up makes the index from
/// them (the whole unfiltered view only: nothing else holds every VM).
async fn through_journal(io: &Io, settings: &Settings, wanted: Wanted) -> Result<Listed, Failure> {
    let filter = wanted.filter();
    let want = Want::Summaries(filter.clone());
    let only = match &wanted {
        Wanted::Vm(vm, _) => Some(vm.clone()),
        _ => None,
    };
    let time = share::now(io).await as u64;
    let folders = async {
        if settings.locks {
            share::list_backup_folders(io).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (read, folders) = join(super::journal::read(io, settings), folders).await;
    let folders = folders?;
    if matches!(&read, Ok(Some(read)) if read.writable) {
        // Written as a writable repository too (its writers keep the
        // writable index, not this one): every folder read, as with the
        // index off, and nothing made.
        return match wanted {
            Wanted::Vm(vm, filter) => list_vm(io, settings, &vm, Want::Summaries(filter)).await,
            _ => list_all(io, settings, want).await,
        };
    }
    let read = match read {
        Ok(read) => read.filter(|read| read.plan.snapshot.is_some()),
        Err(failure @ Failure::Io(_)) if failure.code() != "EAGAIN" => return Err(failure),
        Err(failure) => {
            io.log(
                Level::Warn,
                "brcache: unusable repository index, listing every VM instead",
                json!({ "reason": failure.to_string() }),
            );
            None
        }
    };
    let current = read.as_ref().map(|read| &read.current);
    let mut vms: Vec<VmId> = match (folders, current) {
        (Some(folders), _) => folders.vms,
        (None, Some(current)) => current
            .vms
            .keys()
            .filter_map(|vm| VmId::new(vm).ok())
            .collect(),
        (None, None) => share::list_vm_folders(io).await?,
    };
    if let Some(vm) = &only {
        vms.retain(|folder| folder == vm);
    }
    let whole = filter == Filter::default();
    let unknown: Vec<VmId> = vms
        .iter()
        .filter(|vm| current.is_some_and(|c| !c.vms.contains_key(vm.as_str())))
        .cloned()
        .collect();
    let doubted: Vec<VmId> = vms
        .iter()
        .filter(|vm| current.is_some_and(|c| c.is_unsure(vm.as_str())))
        .cloned()
        .collect();
    let read_whole: Vec<&VmId> = vms
        .iter()
        .filter(|vm| current.is_none() || unknown.contains(vm) || doubted.contains(vm))
        .collect();
    let loads = join_all(
        read_whole
            .iter()
            .map(|vm| load::load(io, vm, &want, &settings.limits)),
    )
    .await;
    let mut listed = Listed::default();
    let mut pieces: BTreeMap<String, Option<Piece>> = BTreeMap::new();
    let mut views = Vec::new();
    for (vm, load) in read_whole.iter().zip(loads) {
        let mut loaded = load?;
        if let (true, Answer::Summaries(summaries)) = (whole, &loaded.answer) {
            let held = current.and_then(|c| c.vms.get(vm.as_str()));
            views.push(super::journal::view_of(vm.as_str(), summaries, held, time));
        }
        let piece = piece_of(&mut loaded);
        listed.absorb(loaded, settings);
        pieces.insert(vm.as_str().to_string(), piece);
    }
    let view = current
        .map(|c| c.filtered_view(&filter))
        .unwrap_or_default();
    let mut parts = Vec::with_capacity(vms.len());
    for vm in &vms {
        let piece = match pieces.remove(vm.as_str()) {
            Some(piece) => piece,
            None => view.get(vm.as_str()).map(|summaries| Piece {
                body: serde_json::to_string(summaries).expect("raw summaries serialize"),
                ..Piece::default()
            }),
        };
        // Through the index the VM table gets rows; without, summaries,
        // which `vm_table` makes rows.
        let piece = match wanted {
            Wanted::Table if current.is_some() => row_piece(piece),
            _ => piece,
        };
        parts.push((
            vm.as_str().to_string(),
            deliver(io, settings, vm.as_str(), piece),
        ));
    }
    let names = |vms: &[VmId]| vms.iter().map(|vm| vm.as_str().to_string()).collect();
    listed.from_index = current.is_some();
    if current.is_some() {
        listed.not_from_index = NotFromIndex {
            locked: Vec::new(),
            in_doubt: names(&doubted),
            unknown: names(&unknown),
        };
    }
    let seeds = current.is_none() && whole && only.is_none();
    listed.compact_index = seeds
        || read
            .as_ref()
            .is_some_and(|read| read.segments.len() > crate::index::LISTING_COMPACTS_AFTER);
    if current.is_some() || seeds {
        listed.index_seed = views;
        listed.seed_time = time;
    }
    Ok(listed.finish(parts))
}

/// The VM folders as the index knows them (see [`restore_view`]).
fn index_folders(index: &index_ops::Read) -> share::BackupFolders {
    share::BackupFolders {
        vms: index
            .loaded
            .vms()
            .into_iter()
            .filter_map(|vm| VmId::new(vm).ok())
            .collect(),
        ..share::BackupFolders::default()
    }
}

/// The catch-up of a read that listed the index folder again itself (a
/// compaction deleted a file the first listing showed): that listing came
/// after the VM folders', so a writer that took its lock after the VM
/// folders were listed, and published before it, showed in neither, and
/// its VM's entry moved before the read began (a delete's segment lands
/// before its metadata is gone). So the VM folders are listed again, once
/// that read is done, and the index folder after them, as the first two
/// listings are for the second: a VM locked now is read like a locked one
/// (its writer may still be at work), and so is one whose entry moves
/// between the read and the index folder's last listing. Two more round
/// trips, only when a compaction raced the listing.
async fn after_relisting(
    io: &Io,
    settings: &Settings,
    read: index_ops::Read,
    scope: Scope<'_>,
) -> Result<Option<index_ops::Read>, Failure> {
    let folders = share::list_backup_folders(io).await?;
    let relisted = index_ops::list(io).await?;
    let caught = index_ops::catch_up(io, settings, read, relisted, scope).await?;
    Ok(caught.map(|mut read| {
        read.moved
            .extend(folders.locked.iter().map(|vm| vm.as_str().to_string()));
        read
    }))
}

/// The index listed as `listing`, if it has a snapshot and reads; else
/// `None` (and why, logged). Without a snapshot, the segments alone may
/// not hold every VM (the snapshot was lost, or the index never
/// compacted). Where locks show (see [`restore_view`]) the folder is
/// listed again beside the reads, and the index caught up with it.
async fn index_for_listing(
    io: &Io,
    settings: &Settings,
    listing: Vec<String>,
    scope: Scope<'_>,
) -> Result<Option<index_ops::Read>, Failure> {
    // Without locks no writer shows in the VM folders' listing: the window
    // is its last round trip whatever the index folder shows.
    let relist = async {
        if settings.locks {
            index_ops::list(io).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (read, relisted) = join(
        index_ops::read_scoped(io, settings, Some(listing), scope),
        relist,
    )
    .await;
    let read = match (read, relisted?) {
        (Ok(Some(read)), Some(_)) if read.relisted => {
            after_relisting(io, settings, read, scope).await
        }
        (Ok(Some(read)), Some(relisted)) => {
            index_ops::catch_up(io, settings, read, relisted, scope).await
        }
        (read, _) => read,
    };
    match read {
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
