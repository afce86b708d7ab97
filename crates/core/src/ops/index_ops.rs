//! The repository-wide index on the share: reading it, publishing a VM's
//! segment, compacting, rebuilding (the format and its folding rules are
//! [`crate::index`]'s). No repository-wide lock: segments have unique
//! names, snapshots are created create-only at the next generation, and a
//! compaction deletes only what its own snapshot folded.

use super::exec::Io;
use super::io::{Failure, IoError, Level, Request, Response, is_repository_error};
use super::settings::{IndexMode, Settings};
use super::share;
use crate::index::{self, INDEX_DIR, Loaded, ReadPlan, Segment};
use serde_json::json;

fn path(name: &str) -> String {
    format!("{INDEX_DIR}/{name}")
}

/// An error of one step of the index's upkeep (`publish`, `compaction`,
/// `snapshot`), named in the message.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    pub step: &'static str,
    pub failure: Failure,
}

impl From<StepFailure> for Failure {
    fn from(failure: StepFailure) -> Failure {
        failure.failure.in_step(failure.step)
    }
}

/// The index folder's names, or `None` when there is no index.
pub async fn list(io: &Io) -> Result<Option<Vec<String>>, Failure> {
    listed(io.call(list_request()).await)
}

pub fn list_request() -> Request {
    Request::List {
        path: INDEX_DIR.to_string(),
    }
}

/// What a listing of the index folder says, from its response.
pub fn listed(response: Response) -> Result<Option<Vec<String>>, Failure> {
    match response {
        Response::Names(names) => Ok(Some(names)),
        Response::Failed(error) if error.code == "ENOENT" => Ok(None),
        Response::Failed(error) => {
            Err(Failure::io(format_args!("cannot list {INDEX_DIR}"), &error))
        }
        _ => Ok(None),
    }
}

/// Whether writers keep the index: unless it is turned off, always, even
/// before there is one. The first listing that finds none makes it from
/// the caches it read (see [`super::listing::restore_view`]); a write that
/// lands meanwhile must not be left out of it, and its segment, folded by
/// generation, is what keeps it in.
pub fn active(settings: &Settings) -> bool {
    settings.index != IndexMode::Off
}

/// The index as read: its plan and its decoded files.
#[derive(Debug, Clone)]
pub struct Read {
    pub plan: ReadPlan,
    pub loaded: Loaded,
    /// VMs whose entry changed between a listing's two listings of the
    /// index folder (see [`catch_up`]): their writer may still be at work,
    /// its lock taken after the VM folders were listed, so a listing reads
    /// them from their caches and folders as it reads a locked VM's.
    pub moved: std::collections::BTreeSet<String>,
    /// Whether the read listed the index folder itself, after the listing
    /// it was given: a file that one showed was gone (a compaction's
    /// cleanup), so what was read is the folder as it is later than that.
    pub relisted: bool,
}

/// How much of a table's entries a reader needs (a whole snapshot is read
/// whole whatever it asks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Every VM's entry: the restore view, checks, writers.
    All,
    /// The entries of the VMs the segments not folded yet touch: a
    /// compaction, which keeps the others' rows.
    Changed,
    /// The rows of every VM: the entries of those whose row cannot fold
    /// the segments that touch it ([`index::rows_after`]), the VM table.
    Table,
    /// One VM's entry: its restore points.
    Vm(&'a str),
}

/// The index as it is now, every VM's entry read (see [`read_scoped`]).
pub async fn read(
    io: &Io,
    settings: &Settings,
    listing: Option<Vec<String>>,
) -> Result<Option<Read>, Failure> {
    read_scoped(io, settings, listing, Scope::All).await
}

/// The index as it is now, or `None` when there is none: the folder is
/// listed, then the newest snapshot and the segments named after it (less
/// [`index::READ_MARGIN_MS`]) are read at once; then, in a second round,
/// older segments the snapshot did not fold, if any (older ones it folded
/// linger on a share without locks until a cleanup; they are not read),
/// and, when the snapshot is a table, the parts `scope` needs. Should a
/// late segment touch a VM whose part was not read, that part is read in
/// a third round (rare). A file that vanished meanwhile was compacted
/// away, as was a part the table names that is not listed: read again. A
/// newest snapshot, or a part, that does not decode is an error, never a
/// reason to use an older one: the compaction that wrote it may have
/// deleted segments only it holds.
pub async fn read_scoped(
    io: &Io,
    settings: &Settings,
    listing: Option<Vec<String>>,
    scope: Scope<'_>,
) -> Result<Option<Read>, Failure> {
    const ATTEMPTS: usize = 5;
    let given = listing.is_some();
    let mut listing = Some(listing);
    for attempt in 0..ATTEMPTS {
        let names = match listing.take().flatten() {
            Some(names) => Some(names),
            None => list(io).await?,
        };
        let Some(names) = names else { return Ok(None) };
        let plan = ReadPlan::from_listing(names.iter().map(String::as_str));
        // Snapshots named by generation alone have no time: every segment
        // is read with them, as before.
        let snapshot_time = plan.snapshot.as_deref().map_or(0, index::snapshot_time);
        let floor = snapshot_time.saturating_sub(index::READ_MARGIN_MS);
        let segments = in_scope(&plan.segments, scope);
        let (recent, older) = with_the_snapshot(&segments, snapshot_time, floor);
        // Every VM's entry: the parts listed go out beside the snapshot,
        // so that the restore view costs two round trips as with a whole
        // snapshot. They are the table's, but for the leftovers of a
        // compaction killed or raced (read for nothing until a cleanup).
        let prefetch = if scope == Scope::All {
            plan.parts.clone()
        } else {
            Vec::new()
        };
        let first: Vec<String> = plan.snapshot.iter().cloned().chain(recent).collect();
        let asked: Vec<String> = first.iter().cloned().chain(prefetch.clone()).collect();
        let Some(mut contents) = fetch(io, &asked).await? else {
            continue;
        };
        let prefetched: Vec<(String, Vec<u8>)> = prefetch
            .into_iter()
            .zip(contents.split_off(first.len()))
            .collect();
        let file = plan.snapshot.as_deref().map_or(INDEX_DIR.to_string(), path);
        let stored = match plan.snapshot {
            Some(_) => index::Stored::decode(&contents.remove(0), &settings.limits)
                .map_err(|e| Failure::Core(e.in_file(file)))?,
            None => index::Stored::Whole(index::Snapshot::empty()),
        };
        let (skipped, late): (Vec<String>, Vec<String>) = older
            .into_iter()
            .partition(|name| stored.folded().contains(name));
        let segments: Vec<(String, Vec<u8>)> = first
            .into_iter()
            .skip(usize::from(plan.snapshot.is_some()))
            .zip(contents)
            .collect();
        let loaded = match stored {
            index::Stored::Whole(snapshot) => {
                let Some(late_contents) = fetch(io, &late).await? else {
                    continue;
                };
                let mut segments = segments;
                segments.extend(late.into_iter().zip(late_contents));
                Loaded::of(snapshot, segments, skipped, &settings.limits)
            }
            index::Stored::Table(table) => {
                let files = Files {
                    recent: segments,
                    late,
                    skipped,
                    prefetched,
                };
                let Some(loaded) = read_table(io, settings, &plan, table, files, scope).await?
                else {
                    continue;
                };
                loaded
            }
        };
        for (name, reason) in &loaded.unreadable {
            io.log(
                Level::Warn,
                "brcache: unreadable index segment skipped",
                json!({ "file": path(name), "reason": reason }),
            );
        }
        return Ok(Some(Read {
            plan,
            loaded,
            moved: Default::default(),
            relisted: given && attempt > 0,
        }));
    }
    Err(Failure::refused(
        "EAGAIN",
        format!("{INDEX_DIR} keeps changing while it is read"),
    ))
}

/// What the first round of [`read_scoped`] read or left for the second.
struct Files {
    /// Segments read with the table.
    recent: Vec<(String, Vec<u8>)>,
    /// Older segments the table did not fold.
    late: Vec<String>,
    /// Older segments the table folded, unread.
    skipped: Vec<String>,
    /// Parts read with the table (every one listed, for [`Scope::All`]).
    prefetched: Vec<(String, Vec<u8>)>,
}

/// The second (and rare third) round of [`read_scoped`] for a table: the
/// late segments and the parts `scope` needs that were not read with the
/// table, at once; `None` when a file vanished.
async fn read_table(
    io: &Io,
    settings: &Settings,
    plan: &ReadPlan,
    table: index::Table,
    files: Files,
    scope: Scope<'_>,
) -> Result<Option<Loaded>, Failure> {
    let limits = &settings.limits;
    let Files {
        recent,
        late,
        skipped,
        mut prefetched,
    } = files;
    let (mut segments, mut unreadable) = index::decode_segments(recent, limits);
    let touched = |segments: &index::Named<Segment>| -> Vec<String> {
        segments
            .iter()
            .filter(|(name, _)| !table.folded.contains(name))
            .map(|(_, s)| s.vm.clone())
            .collect()
    };
    let unfoldable = |segments: &index::Named<Segment>| -> Vec<String> {
        let waiting = segments
            .iter()
            .filter(|(name, _)| !table.folded.contains(name));
        index::rows_after(&table, waiting).1.into_iter().collect()
    };
    let mut wanted: Vec<String> = match scope {
        Scope::All => table.rows.keys().cloned().collect(),
        Scope::Changed => touched(&segments),
        Scope::Table => unfoldable(&segments),
        Scope::Vm(vm) => vec![vm.to_string()],
    };
    // Only the parts the table names are decoded.
    prefetched.retain(|(name, _)| table.parts.contains_key(name));
    let mut read_parts: Vec<String> = prefetched.iter().map(|(n, _)| n.clone()).collect();
    let mut parts = prefetched;
    let mut late = late;
    loop {
        let needed: Vec<String> = table
            .parts_of(wanted.iter().map(String::as_str))
            .into_iter()
            .filter(|part| !read_parts.contains(part))
            .collect();
        if needed.iter().any(|part| !plan.parts.contains(part)) {
            // Deleted by a compaction since the table was listed.
            return Ok(None);
        }
        let names: Vec<String> = late.iter().cloned().chain(needed.iter().cloned()).collect();
        let Some(mut contents) = fetch(io, &names).await? else {
            return Ok(None);
        };
        let part_contents = contents.split_off(late.len());
        let (late_segments, late_unreadable) = index::decode_segments(
            std::mem::take(&mut late)
                .into_iter()
                .zip(contents)
                .collect(),
            limits,
        );
        unreadable.extend(late_unreadable);
        parts.extend(needed.iter().cloned().zip(part_contents));
        read_parts.extend(needed);
        wanted = match scope {
            Scope::Changed => touched(&late_segments),
            _ => Vec::new(),
        };
        segments.extend(late_segments);
        if scope == Scope::Table {
            wanted = unfoldable(&segments);
        }
        if table
            .parts_of(wanted.iter().map(String::as_str))
            .iter()
            .all(|part| read_parts.contains(part))
        {
            break;
        }
    }
    if let Scope::Vm(vm) = scope {
        segments.retain(|(_, s)| s.vm == vm);
    }
    let mut loaded = Loaded::decode_table(table, parts, segments, skipped, limits)?;
    loaded.set_unreadable(unreadable);
    Ok(Some(loaded))
}

/// `read`, caught up with the index folder as `relisted`, a listing made
/// after `read`'s: the segments it adds are read (a rare round trip) and
/// folded with the others; a newer snapshot, a compaction since that may
/// have deleted segments published meanwhile, is read whole from it.
/// Nothing is asked when it adds nothing, the common case. A listing from
/// the index relists beside its reads, once the VM folders are listed
/// (see [`super::listing::restore_view`]).
///
/// What the second listing adds may be a segment published after the VM
/// folders were listed, by a writer whose lock that listing did not show
/// (taken after it) and that is still at work: a delete's segment goes
/// out beside its metadata's removal and may land first. The VMs whose
/// entry moved between the two reads are therefore named in
/// [`Read::moved`], to be read like locked ones.
pub async fn catch_up(
    io: &Io,
    settings: &Settings,
    read: Read,
    relisted: Option<Vec<String>>,
    scope: Scope<'_>,
) -> Result<Option<Read>, Failure> {
    let before: std::collections::BTreeMap<String, _> = read
        .loaded
        .vms()
        .into_iter()
        .map(|vm| (vm.to_string(), read.loaded.state_of(vm)))
        .collect();
    let caught = caught_up(io, settings, read, relisted, scope).await?;
    Ok(caught.map(|mut read| {
        read.moved = read
            .loaded
            .vms()
            .into_iter()
            .filter(|vm| before.get(*vm) != Some(&read.loaded.state_of(vm)))
            .map(str::to_string)
            .collect();
        read
    }))
}

async fn caught_up(
    io: &Io,
    settings: &Settings,
    read: Read,
    relisted: Option<Vec<String>>,
    scope: Scope<'_>,
) -> Result<Option<Read>, Failure> {
    // The folder gone since: nothing newer to read (only a build that made
    // it and failed removes it).
    let Some(names) = relisted else {
        return Ok(Some(read));
    };
    let plan = ReadPlan::from_listing(names.iter().map(String::as_str));
    if plan.snapshot != read.plan.snapshot {
        return read_scoped(io, settings, Some(names), scope).await;
    }
    let added: Vec<String> = in_scope(&plan.segments, scope)
        .into_iter()
        .filter(|name| {
            !read.plan.segments.contains(name) && !read.loaded.snapshot.folded.contains(name)
        })
        .collect();
    if added.is_empty() {
        return Ok(Some(read));
    }
    let Some(contents) = fetch(io, &added).await? else {
        // Compacted away meanwhile: the snapshot that folded it is newer.
        return read_scoped(io, settings, None, scope).await;
    };
    let known = read.loaded.unreadable.len();
    let only = match scope {
        Scope::Vm(vm) => Some(vm),
        _ => None,
    };
    let Some(loaded) = read.loaded.with_segments(
        added.into_iter().zip(contents).collect(),
        only,
        &settings.limits,
    ) else {
        // A VM whose part was not read changed meanwhile: read again, as
        // the folder is now.
        return read_scoped(io, settings, Some(names), scope).await;
    };
    for (name, reason) in &loaded.unreadable[known..] {
        io.log(
            Level::Warn,
            "brcache: unreadable index segment skipped",
            json!({ "file": path(name), "reason": reason }),
        );
    }
    Ok(Some(Read {
        plan,
        loaded,
        moved: Default::default(),
        relisted: read.relisted,
    }))
}

/// The segments `scope` reads: for one VM's restore points, that VM's
/// and those whose name says no VM; every one otherwise.
fn in_scope(segments: &[String], scope: Scope<'_>) -> Vec<String> {
    segments
        .iter()
        .filter(|name| match scope {
            Scope::Vm(vm) => index::segment_vm(name).is_none_or(|named| named == vm),
            Scope::All | Scope::Changed | Scope::Table => true,
        })
        .cloned()
        .collect()
}

/// Which segments to read in the same round trip as the snapshot (the
/// others, once it says which it folded, only if it did not): those named
/// after `floor` (its time less the margin), unless more than
/// [`index::MARGIN_READS`] are, in which case only those named after the
/// snapshot itself. Inside the margin a segment is as likely folded as
/// not: a backup job's writers publish side by side, one of them compacts,
/// and a read of each of their segments on every listing would cost
/// requests growing with the VMs until the cleanup a grace period later.
fn with_the_snapshot(segments: &[String], time: u64, floor: u64) -> (Vec<String>, Vec<String>) {
    let after =
        |bound: u64| move |name: &String| index::segment_time(name).is_none_or(|t| t >= bound);
    let recent = segments.iter().filter(|n| after(floor)(n)).count();
    let bound = if recent > index::MARGIN_READS {
        time
    } else {
        floor
    };
    segments.iter().cloned().partition(after(bound))
}

/// The index files `names`, read at once; `None` when one vanished (a
/// compaction's cleanup: read the folder again). Nothing is asked for none.
async fn fetch(io: &Io, names: &[String]) -> Result<Option<Vec<Vec<u8>>>, Failure> {
    if names.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let requests = names
        .iter()
        .map(|name| Request::Read { path: path(name) })
        .collect();
    let mut contents = Vec::with_capacity(names.len());
    let mut vanished = false;
    for (name, response) in names.iter().zip(io.all(requests).await) {
        match response {
            Response::Bytes(bytes) => contents.push(bytes),
            Response::Failed(error) if error.code == "ENOENT" => vanished = true,
            Response::Failed(error) if is_repository_error(&error.code) => {
                return Err(Failure::Io(error));
            }
            Response::Failed(error) => {
                return Err(Failure::io(
                    format_args!("cannot read {}", path(name)),
                    &error,
                ));
            }
            _ => vanished = true,
        }
    }
    Ok((!vanished).then_some(contents))
}

/// Publishes one segment under a name no one else picks (`now`, the
/// caller's clock, and a nonce), written atomically (a crash never leaves
/// half a segment), then compacts when segments pile up. `listing` is the
/// folder as listed before; `vm`, the VM the name says (see [`naming`]).
pub async fn publish(
    io: &Io,
    settings: &Settings,
    segment: Vec<u8>,
    now: f64,
    listing: &Option<Vec<String>>,
    vm: Option<&str>,
) -> Result<(), StepFailure> {
    write_segment(io, settings, segment, now, vm).await?;
    if compaction_due(listing) {
        compact_elected(io, settings, Due::Writer).await?;
    }
    Ok(())
}

/// The VM a segment of `vm` says in its name ([`index::vm_segment_name`]),
/// where the index folder as `listing` shows it holds a table (a part is
/// listed): a release that knows no such names takes them for no segment
/// and ignores them, but it finds a table unreadable too and lists from
/// the caches. Beside a whole snapshot, which it reads, or with no
/// listing, the name says no VM (every one-VM read reads it).
pub fn naming<'a>(vm: &'a str, listing: &Option<Vec<String>>) -> Option<&'a str> {
    listing
        .as_ref()
        .is_some_and(|names| names.iter().any(|name| index::is_part(name)))
        .then_some(vm)
}

/// Writes one segment (see [`publish`]), without compacting.
pub async fn write_segment(
    io: &Io,
    settings: &Settings,
    segment: Vec<u8>,
    now: f64,
    vm: Option<&str>,
) -> Result<(), StepFailure> {
    let (time, random) = (now.max(0.0) as u64, settings.unique());
    let name = match vm {
        Some(vm) => index::vm_segment_name(time, random, vm),
        None => index::segment_name(time, random),
    };
    let response = io
        .call(Request::Replace {
            path: path(&name),
            bytes: segment,
        })
        .await;
    share::done(response, || {
        format!("cannot publish the index segment {}", path(&name))
    })
    .map_err(|failure| StepFailure {
        step: "publish",
        failure,
    })
}

/// Whether one more segment than `listing` shows waiting puts the index
/// past the compaction point.
pub fn compaction_due(listing: &Option<Vec<String>>) -> bool {
    let waiting = listing.as_ref().map_or(0, |names| {
        ReadPlan::from_listing(names.iter().map(String::as_str)).waiting()
    });
    waiting + 1 > index::COMPACT_AFTER
}

/// The lock (in the index folder) that elects one compactor among the
/// writers that see segments pile up at once (a backup job's VMs publish
/// side by side): without it each of them would read every segment to
/// fold them, and all but one would create nothing.
const COMPACTION_LOCK: &str = "compaction";

/// Who asks for a compaction: a writer that saw segments pile up past
/// [`index::COMPACT_AFTER`], or a listing that read more than
/// [`index::LISTING_COMPACTS_AFTER`] a compaction would fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Writer,
    Listing,
}

/// Compacts if this writer wins the election (a try-lock: nobody waits)
/// and segments still pile up once it holds the lock (the writer before
/// may have just folded them). A writer that loses leaves its segment
/// for the winner or the next compaction: nothing is lost, the segment
/// is read until a snapshot folds it.
pub async fn compact_elected(io: &Io, settings: &Settings, due: Due) -> Result<(), StepFailure> {
    // What a listing's compaction must still find to fold once it has read
    // the index (another may have folded it meanwhile).
    let at_least = match due {
        Due::Writer => 0,
        Due::Listing => index::LISTING_COMPACTS_AFTER + 1,
    };
    if !settings.locks {
        // No lock to elect one: a due writer compacts one time in four, so
        // that a backup job's writers do not all fold at once, and the
        // segments wait a little longer for the next one otherwise. A
        // listing is one, after its answer.
        if due == Due::Writer && settings.unique() % 4 != 0 {
            return Ok(());
        }
        if settings.create_only {
            // Of two compactions of one snapshot, one creates the next.
            return compact_listed(io, settings, false, None, at_least)
                .await
                .map(|_| ());
        }
        return compact_unlocked(io, settings, false, at_least)
            .await
            .map(|_| ());
    }
    let lock = path(COMPACTION_LOCK);
    let taken = io
        .call(Request::Lock {
            path: lock.clone(),
            wait: false,
        })
        .await;
    if let Response::Failed(error) = taken {
        io.log(
            Level::Debug,
            "brcache: the index compaction is left to another writer",
            json!({ "file": lock, "reason": error.message }),
        );
        return Ok(());
    }
    let result = async {
        let listing = list(io).await?;
        let due = listing.as_ref().is_some_and(|names| {
            ReadPlan::from_listing(names.iter().map(String::as_str)).waiting()
                > index::COMPACT_AFTER
        });
        Ok((due || at_least > 0).then_some(listing))
    }
    .await
    .map_err(|failure| StepFailure {
        step: "compaction",
        failure,
    });
    let result = match result {
        Ok(Some(listing)) => compact_listed(io, settings, false, listing, at_least)
            .await
            .map(|_| ()),
        Ok(None) => Ok(()),
        Err(failure) => Err(failure),
    };
    if let Response::Failed(error) = io.call(Request::Unlock { path: lock.clone() }).await {
        // It goes stale and is taken over; only compactions wait till then.
        io.log(
            Level::Debug,
            "brcache: could not release the index compaction lock",
            json!({ "file": lock, "reason": error.message }),
        );
    }
    result
}

/// What a compaction or rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    pub generation: u64,
    pub folded: usize,
}

/// Folds every segment into a new snapshot, created at the next generation
/// (of two compactions of one snapshot, the second creates nothing and
/// deletes nothing); `drop_unreadable` also deletes segments that do not
/// decode (after a check republished every VM that disagreed).
pub async fn compact(
    io: &Io,
    settings: &Settings,
    drop_unreadable: bool,
) -> Result<Option<Compacted>, StepFailure> {
    if !settings.create_only {
        return compact_unlocked(io, settings, drop_unreadable, 0).await;
    }
    compact_listed(io, settings, drop_unreadable, None, 0).await
}

/// Segments a compaction of `read` would fold that its snapshot has not:
/// those unfolded, less the deltas of a VM in doubt (a compaction leaves
/// them, see [`index::compact`]).
pub fn foldable(read: &Read) -> usize {
    let unsure = &read.loaded.current().unsure;
    read.loaded
        .segments
        .iter()
        .filter(|(name, _)| !read.loaded.snapshot.folded.contains(name))
        .filter(|(_, s)| matches!(s.body, index::Body::View(_)) || !unsure.contains(&s.vm))
        .count()
}

/// Compacts on a share without create-only writes (Garage), where any
/// number of compactors may run at once and each one's create succeeds:
///
/// - the snapshot gets a unique name at the next generation
///   ([`index::unique_snapshot_name`]); readers take the greatest name of
///   the highest generation, and a sibling (same generation, smaller name)
///   is merely not read;
/// - nothing is deleted at once. A compactor deletes what the snapshot it
///   started from (the base) folded, and the snapshots below the base,
///   only once the base is older than [`index::GRACE_MS`];
/// - a compactor whose listing is older than half that when it is about to
///   create gives up.
///
/// Why nothing is lost: a sibling of the base was made from a listing
/// taken before the first snapshot of the base's generation existed (a
/// later listing shows that snapshot, and its compactor writes the next
/// generation), so it is created within `GRACE_MS / 2` of the base. A
/// cleanup runs on a listing at most that old, of a base older than
/// `GRACE_MS`: every sibling is in it, the base is the greatest of its
/// generation, and every snapshot that can still come (from this listing
/// or a later one) starts from the base or above, so holds what the base
/// folded. Segments the base did not fold (published later, or the deltas
/// of a VM in doubt) are never deleted here. What a compaction that gave
/// up or lost folded stays in the segments it read.
async fn compact_unlocked(
    io: &Io,
    settings: &Settings,
    drop_unreadable: bool,
    at_least: usize,
) -> Result<Option<Compacted>, StepFailure> {
    let listed_at = share::now(io).await;
    let Some((read, mut compaction, now)) = prepare(io, settings, None, at_least).await? else {
        return Ok(None);
    };
    if now - listed_at > (index::GRACE_MS / 2) as f64 {
        io.log(
            Level::Debug,
            "brcache: an index compaction took too long to be safe without a lock, given up",
            json!({ "ms": now - listed_at }),
        );
        return Ok(None);
    }
    compaction.name = index::unique_snapshot_name(
        compaction.snapshot.generation,
        now.max(0.0) as u64,
        settings.unique(),
    );
    if !create_snapshot(io, &compaction).await? {
        return Ok(None);
    }
    let mut doomed: Vec<String> = Vec::new();
    let settled = read
        .plan
        .snapshot
        .as_deref()
        .is_some_and(|base| now - index::snapshot_time(base) as f64 >= index::GRACE_MS as f64);
    if settled {
        doomed.extend(
            read.plan
                .segments
                .iter()
                .filter(|name| read.loaded.snapshot.folded.contains(*name))
                .cloned(),
        );
        doomed.extend(read.plan.old_snapshots.iter().cloned());
        // Parts neither the base nor the new table names, made before
        // any table still to come was listed (see above: every compactor
        // that may still create listed after `now - GRACE_MS / 2`, and
        // makes its parts after its listing).
        let base_parts = read.loaded.table.as_ref().map(|t| &t.parts);
        doomed.extend(
            compaction
                .unreferenced(&read.plan.parts)
                .into_iter()
                .filter(|name| !base_parts.is_some_and(|parts| parts.contains_key(*name)))
                .filter(|name| {
                    index::part_time(name).is_some_and(|t| now - t as f64 >= index::GRACE_MS as f64)
                })
                .cloned(),
        );
    }
    clean_up(io, &read, &compaction, doomed, drop_unreadable).await
}

/// What both compactions start with: the index read for the VMs its
/// waiting segments touch, and, if at least `at_least` segments are
/// [`foldable`], its compaction laid out in parts at the time it returns.
async fn prepare(
    io: &Io,
    settings: &Settings,
    listing: Option<Vec<String>>,
    at_least: usize,
) -> Result<Option<(Read, index::Compaction, f64)>, StepFailure> {
    let Some(read) = read_scoped(io, settings, listing, Scope::Changed)
        .await
        .map_err(|failure| StepFailure {
            step: "compaction",
            failure,
        })?
    else {
        return Ok(None);
    };
    if foldable(&read) < at_least {
        return Ok(None);
    }
    let mut compaction = read.loaded.compact(read.plan.generation);
    let now = share::now(io).await;
    read.loaded
        .lay_out(&mut compaction, now.max(0.0) as u64, settings.unique());
    Ok(Some((read, compaction, now)))
}

/// [`compact`], from the folder as just listed when `listing` is given,
/// if at least `at_least` segments are [`foldable`].
async fn compact_listed(
    io: &Io,
    settings: &Settings,
    drop_unreadable: bool,
    listing: Option<Vec<String>>,
    at_least: usize,
) -> Result<Option<Compacted>, StepFailure> {
    let Some((read, compaction, _)) = prepare(io, settings, listing, at_least).await? else {
        return Ok(None);
    };
    if !create_snapshot(io, &compaction).await? {
        return Ok(None);
    }
    let mut doomed = compaction.segments_to_delete.clone();
    doomed.extend(read.plan.old_snapshots.iter().cloned());
    // Under the compaction's create-only name, no other table of this
    // generation comes: what the new one does not name, no reader of it
    // needs (a reader of the old table finds a part gone, and reads again).
    doomed.extend(
        compaction
            .unreferenced(&read.plan.parts)
            .into_iter()
            .cloned(),
    );
    clean_up(io, &read, &compaction, doomed, drop_unreadable).await
}

/// Once a compaction's snapshot is written: deletes `doomed` and, with
/// `drop_unreadable`, the segments that did not decode (folded by no one:
/// a check has just republished every VM that disagreed).
async fn clean_up(
    io: &Io,
    read: &Read,
    compaction: &index::Compaction,
    mut doomed: Vec<String>,
    drop_unreadable: bool,
) -> Result<Option<Compacted>, StepFailure> {
    if drop_unreadable {
        doomed.extend(read.loaded.unreadable.iter().map(|(name, _)| name.clone()));
    }
    share::delete_if_present(io, doomed.iter().map(|n| path(n)).collect())
        .await
        .map_err(|failure| StepFailure {
            step: "compaction",
            failure,
        })?;
    Ok(Some(Compacted {
        generation: compaction.snapshot.generation,
        folded: compaction.segments_to_delete.len(),
    }))
}

/// The segments `plan` names, read at once: those still there, by name.
async fn read_segments(io: &Io, plan: &ReadPlan) -> Vec<(String, Vec<u8>)> {
    let requests = plan
        .segments
        .iter()
        .map(|n| Request::Read { path: path(n) })
        .collect();
    plan.segments
        .iter()
        .zip(io.all(requests).await)
        .filter_map(|(name, response)| match response {
            Response::Bytes(bytes) => Some((name.clone(), bytes)),
            _ => None,
        })
        .collect()
}

/// Makes the first snapshot from entries a listing found in true caches
/// (see [`super::Listed::index_seed`]), folded with the segments writers
/// published meanwhile, by generation. Only when there is still no
/// snapshot: the entries were read a while ago, and unlike a rebuild's
/// (read under the build's own checks, just now) they must never outrank
/// what another seed or compaction folded since and deleted. `None` when
/// there was one already, or another seed took the name first.
pub async fn seed(
    io: &Io,
    settings: &Settings,
    entries: Vec<Segment>,
) -> Result<Option<Compacted>, StepFailure> {
    let step = |failure| StepFailure {
        step: "snapshot",
        failure,
    };
    let names = list(io).await.map_err(step)?.unwrap_or_default();
    let plan = ReadPlan::from_listing(names.iter().map(String::as_str));
    if plan.snapshot.is_some() {
        return Ok(None);
    }
    // A vanished segment was folded by a snapshot made meanwhile, whose
    // name this seed's create then finds taken.
    let segments = read_segments(io, &plan).await;
    // What did not decode is not folded, so not deleted: it stays for a
    // check to judge.
    let (listed, _) = index::decode_segments(segments, &settings.limits);
    let mut compaction = index::rebuild(&plan, entries, listed);
    if !settings.create_only {
        unlocked_name(io, settings, &mut compaction).await;
    }
    lay_out_fresh(io, settings, &mut compaction).await;
    let created = write_snapshot(io, &compaction).await.map_err(|error| {
        step(Failure::io(
            format_args!("cannot write the index snapshot {}", path(&compaction.name)),
            &error,
        ))
    })?;
    if !created {
        return Ok(None);
    }
    // Without create-only writes, two seeds may both create: what each folded stays
    // until a compaction's cleanup (see `compact_unlocked`).
    let doomed = if settings.create_only {
        let mut doomed = compaction.segments_to_delete.clone();
        doomed.extend(compaction.unreferenced(&plan.parts).into_iter().cloned());
        doomed
    } else {
        Vec::new()
    };
    share::delete_if_present(io, doomed.iter().map(|n| path(n)).collect())
        .await
        .map_err(step)?;
    Ok(Some(Compacted {
        generation: compaction.snapshot.generation,
        folded: compaction.segments_to_delete.len(),
    }))
}

/// Gives a seed's or rebuild's snapshot a unique name, on a share without
/// create-only writes (see [`compact_unlocked`]).
async fn unlocked_name(io: &Io, settings: &Settings, compaction: &mut index::Compaction) {
    let now = share::now(io).await;
    compaction.name = index::unique_snapshot_name(
        compaction.snapshot.generation,
        now.max(0.0) as u64,
        settings.unique(),
    );
}

/// Creates a compaction's snapshot; false if the name is taken (another
/// compaction's: this one then deletes nothing).
async fn create_snapshot(io: &Io, compaction: &index::Compaction) -> Result<bool, StepFailure> {
    write_snapshot(io, compaction)
        .await
        .map_err(|error| StepFailure {
            step: "compaction",
            failure: Failure::io(
                format_args!(
                    "cannot write the index snapshot {} (compaction; the segments stay and are still read)",
                    path(&compaction.name)
                ),
                &error,
            ),
        })
}

/// Creates an index file; false if the name is taken.
async fn create(io: &Io, name: &str, bytes: Vec<u8>) -> Result<bool, IoError> {
    match io
        .call(Request::Create {
            path: path(name),
            bytes,
        })
        .await
    {
        Response::Failed(error) if error.code == "EEXIST" => Ok(false),
        Response::Failed(error) => Err(error),
        _ => Ok(true),
    }
}

/// Writes a compaction's snapshot: its parts (create-only, unique names,
/// at once), then its table, create-only at its name; false if the name
/// is taken. Unless the table is written, the parts made for it are
/// deleted again (no table names them); a crash leaves them for the next
/// compaction's cleanup.
async fn write_snapshot(io: &Io, compaction: &index::Compaction) -> Result<bool, IoError> {
    let requests = compaction
        .parts
        .iter()
        .map(|(name, part)| Request::Create {
            path: path(name),
            bytes: part.encode(),
        })
        .collect();
    let parts_failed = io
        .all(requests)
        .await
        .into_iter()
        .find_map(|response| match response {
            Response::Failed(error) => Some(error),
            _ => None,
        });
    let created = match parts_failed {
        Some(error) => Err(error),
        None => create(io, &compaction.name, compaction.table.encode()).await,
    };
    if !matches!(created, Ok(true)) {
        // No table names them. Best effort: a part left over is an
        // unreferenced one, for the next compaction's cleanup.
        let own = compaction
            .parts
            .iter()
            .map(|(name, _)| path(name))
            .collect();
        let _ = share::delete_if_present(io, own).await;
    }
    created
}

/// Lays out a snapshot made from scratch (a seed, a rebuild): every VM in
/// a new part.
async fn lay_out_fresh(io: &Io, settings: &Settings, compaction: &mut index::Compaction) {
    let now = share::now(io).await;
    compaction.lay_out(
        None,
        &Default::default(),
        &Default::default(),
        now.max(0.0) as u64,
        settings.unique(),
    );
}

/// Replaces the index with one built from `from_caches` (each VM cache's
/// segment, read just now) and the segments listed, never reading the
/// snapshot, which may be what is broken. The new snapshot outranks every
/// one listed; should a compaction take its generation first, the rebuild
/// starts again from a new listing.
pub async fn rebuild(
    io: &Io,
    settings: &Settings,
    from_caches: Vec<Vec<u8>>,
) -> Result<Compacted, StepFailure> {
    const ATTEMPTS: usize = 5;
    let mut existed = None;
    for _ in 0..ATTEMPTS {
        let listed = list(io).await.map_err(|failure| StepFailure {
            step: "snapshot",
            failure,
        })?;
        let existed = *existed.get_or_insert(listed.is_some());
        let names = listed.unwrap_or_default();
        let plan = ReadPlan::from_listing(names.iter().map(String::as_str));
        // A vanished segment was folded by a compaction: it only matters
        // that the rebuild outranks that compaction's snapshot, which it does.
        let segments = read_segments(io, &plan).await;
        let mut compaction =
            index::rebuild_from_bytes(&plan, from_caches.clone(), segments, &settings.limits)
                .map_err(|e| StepFailure {
                    step: "snapshot",
                    failure: e.into(),
                })?;
        if !settings.create_only {
            unlocked_name(io, settings, &mut compaction).await;
        }
        lay_out_fresh(io, settings, &mut compaction).await;
        match write_snapshot(io, &compaction).await {
            Ok(true) => {
                // Without create-only writes, the rebuilt snapshot outranks the others,
                // which a compaction's cleanup deletes later (see
                // `compact_unlocked`).
                let mut doomed = Vec::new();
                if settings.create_only {
                    doomed.extend(compaction.segments_to_delete.iter().cloned());
                    doomed.extend(plan.snapshot.iter().cloned());
                    doomed.extend(plan.old_snapshots.iter().cloned());
                    doomed.extend(compaction.unreferenced(&plan.parts).into_iter().cloned());
                }
                share::delete_if_present(io, doomed.iter().map(|n| path(n)).collect())
                    .await
                    .map_err(|failure| StepFailure {
                        step: "snapshot",
                        failure,
                    })?;
                return Ok(Compacted {
                    generation: compaction.snapshot.generation,
                    folded: compaction.segments_to_delete.len(),
                });
            }
            Ok(false) => continue,
            Err(error) => {
                // A build that made the index folder and failed takes it
                // away again: an index folder without a snapshot would make
                // every writer publish segments that no listing reads.
                let removed = !existed
                    && !matches!(
                        io.call(Request::RemoveFolder {
                            path: INDEX_DIR.to_string()
                        })
                        .await,
                        Response::Failed(_)
                    );
                return Err(StepFailure {
                    step: "snapshot",
                    failure: Failure::io(
                        format_args!(
                            "cannot write the index snapshot {}, the index was not built{}",
                            path(&compaction.name),
                            if removed {
                                " (its empty folder was removed)"
                            } else {
                                ""
                            }
                        ),
                        &error,
                    ),
                });
            }
        }
    }
    Err(StepFailure {
        step: "snapshot",
        failure: Failure::refused(
            "EAGAIN",
            format!("{INDEX_DIR}: compactions kept taking the rebuilt snapshot's name"),
        ),
    })
}
