//! Repository operations, free of I/O.
//!
//! Each operation a backup server performs on a repository (list a VM's
//! restore points, list them all, the restore view, write a backup, delete
//! backups, check or repair a VM, check or build the repository index) is a
//! value, an [`Operation`], that asks for one I/O at a time, or several
//! independent ones at once, and is handed each result until it yields its
//! answer. Every decision is made here: what to read, what a missing file
//! means, when a cache is rewritten, when the index is published or
//! compacted, what a failure leaves behind. The caller (the JS driver, the
//! tests' simulated share) only performs the [`Request`]s.
//!
//! - [`io`]: requests, responses, failures, log messages.
//! - [`exec`]: how an operation runs and asks.
//! - [`settings`]: what an operation knows of its repository.
//! - [`share`]: what each call's answer means.
//! - [`load`]: a VM's cache made true to its folder (the read side).
//! - [`listing`]: one VM's restore points, every VM's, the restore view.
//! - [`mutate`]: the one door every cache write goes through.
//! - [`write`]: recording a backup, deleting backups.
//! - [`check`]: checking and repairing a VM's cache.
//! - [`index_ops`], [`index_check`]: the repository index on the share;
//!   [`journal`]: an immutable repository's.
//! - [`wire`]: operations as the napi and wasm bindings carry them.

pub mod check;
pub mod exec;
pub mod index_check;
pub mod index_ops;
pub mod io;
pub mod journal;
pub mod listing;
pub mod load;
pub mod mutate;
pub mod settings;
pub mod share;
pub mod wire;
pub mod write;

pub use check::{CheckOptions, Report};
pub use exec::{Operation, RequestId, Status};
pub use index_check::{Built, IndexReport};
pub use io::{Failure, IoError, Level, Log, Request, Response};
pub use listing::{Listed, NotFromIndex};
pub use load::{Loaded, Want};
pub use settings::{IndexMode, Settings};

use crate::key::VmId;
use crate::summary::Filter;
use std::collections::BTreeMap;

/// What an operation answers.
#[derive(Debug)]
pub enum Output {
    /// The VM folders' names.
    Vms(Vec<String>),
    Listed(Listed),
    /// A backup's key (XO's id).
    Written(String),
    Deleted,
    Report(Report),
    Reports(BTreeMap<String, Report>),
    Index(IndexReport),
    Built(Built),
    /// How many background repairs wrote their cache.
    Repaired(usize),
    /// The index as read: `None` when there is none.
    IndexRead(Option<Box<index_ops::Read>>),
    /// What a compaction did: `None` when there was no index, or another
    /// compaction created the snapshot first.
    Compacted(Option<index_ops::Compacted>),
}

/// An operation of any kind.
pub type Op = Operation<Output>;

fn vm_id(vm: &str) -> Result<VmId, Failure> {
    Ok(VmId::new(vm)?)
}

/// The VM folders: directories of `xo-vm-backups/`, not hidden, not locks.
pub fn list_vms() -> Op {
    Op::new(|io| async move {
        let vms = share::list_vm_folders(&io).await?;
        Ok(Output::Vms(
            vms.iter().map(|vm| vm.as_str().to_string()).collect(),
        ))
    })
}

/// The listing of `xo-vm-backups/` as a restore view reads it: the VM
/// folders and, for each VM whose lock shows, `<vm>.lock` (sorted). What a
/// server hands a reader that runs the core over its own share (the page
/// of `brcache serve`), so that the reader sees the locks it must go by.
pub fn list_backup_folders() -> Op {
    Op::new(|io| async move {
        let folders = share::list_backup_folders(&io).await?;
        let locks = folders
            .locked
            .iter()
            .map(|vm| format!("{}{}", vm.as_str(), share::LOCK_SUFFIX));
        let mut names: Vec<String> = folders
            .vms
            .iter()
            .map(|vm| vm.as_str().to_string())
            .chain(locks)
            .collect();
        names.sort();
        Ok(Output::Vms(names))
    })
}

/// One VM's restore points (records or summaries).
pub fn list_vm(settings: Settings, vm: &str, want: Want) -> Result<Op, Failure> {
    let vm = vm_id(vm)?;
    Ok(Op::new(|io| async move {
        listing::list_vm(&io, &settings, &vm, want)
            .await
            .map(Output::Listed)
    }))
}

/// Every VM's restore points from their checked caches.
pub fn list_all(settings: Settings, want: Want) -> Op {
    Op::new(|io| async move {
        listing::list_all(&io, &settings, want)
            .await
            .map(Output::Listed)
    })
}

/// The restore view, from the index when there is one.
pub fn restore_view(settings: Settings, filter: Filter) -> Op {
    Op::new(|io| async move {
        listing::restore_view(&io, &settings, filter)
            .await
            .map(Output::Listed)
    })
}

/// The VM table (a row per VM), from the index's table when there is one.
pub fn vm_table(settings: Settings) -> Op {
    Op::new(|io| async move { listing::vm_table(&io, &settings).await.map(Output::Listed) })
}

/// One VM's restore view, from the index when there is one (its table,
/// its part and the segments).
pub fn vm_restore_view(settings: Settings, vm: &str, filter: Filter) -> Result<Op, Failure> {
    let vm = vm_id(vm)?;
    Ok(Op::new(|io| async move {
        listing::vm_restore_view(&io, &settings, &vm, filter)
            .await
            .map(Output::Listed)
    }))
}

/// Records a backup: `metadata` is its metadata file's bytes (JSON with a
/// `timestamp` in ms, which names the file).
pub fn write_backup(settings: Settings, vm: &str, metadata: Vec<u8>) -> Result<Op, Failure> {
    let vm = vm_id(vm)?;
    let timestamp = serde_json::from_slice::<serde_json::Value>(&metadata)
        .ok()
        .and_then(|m| m.get("timestamp").and_then(serde_json::Value::as_f64))
        .unwrap_or(f64::NAN);
    let name = write::metadata_name(timestamp)?;
    Ok(Op::new(|io| async move {
        write::write_backup(&io, &settings, &vm, &name, metadata)
            .await
            .map(Output::Written)
    }))
}

/// Deletes restore points by their metadata paths; every path is checked
/// before anything is deleted.
pub fn delete_backups(settings: Settings, paths: Vec<String>) -> Result<Op, Failure> {
    for path in &paths {
        write::split_key(path)?;
    }
    Ok(Op::new(|io| async move {
        write::delete_backups(&io, &settings, &paths)
            .await
            .map(|()| Output::Deleted)
    }))
}

/// Checks (and repairs) one VM's cache.
pub fn check_vm(settings: Settings, vm: &str, options: CheckOptions) -> Result<Op, Failure> {
    let vm = vm_id(vm)?;
    Ok(Op::new(|io| async move {
        check::check_vm(&io, &settings, &vm, options)
            .await
            .map(Output::Report)
    }))
}

/// Checks (and repairs) every VM's cache.
pub fn check_all(settings: Settings, options: CheckOptions) -> Op {
    Op::new(|io| async move {
        index_check::check_all(&io, &settings, options)
            .await
            .map(Output::Reports)
    })
}

/// Checks (and repairs) the repository index against the caches.
pub fn check_index(settings: Settings, repair: bool) -> Op {
    Op::new(|io| async move {
        index_check::check_index(&io, &settings, repair)
            .await
            .map(Output::Index)
    })
}

/// Reads the repository index (its plan and what it holds).
pub fn read_index(settings: Settings) -> Op {
    Op::new(|io| async move {
        index_ops::read(&io, &settings, None)
            .await
            .map(|read| Output::IndexRead(read.map(Box::new)))
    })
}

/// Folds every segment into a new snapshot (`drop_unreadable`: and deletes
/// the segments that do not decode).
pub fn compact_index(settings: Settings, drop_unreadable: bool) -> Op {
    Op::new(move |io| async move {
        index_ops::compact(&io, &settings, drop_unreadable)
            .await
            .map(Output::Compacted)
            .map_err(Failure::from)
    })
}

/// Builds the repository index from the caches.
pub fn build_index(settings: Settings) -> Op {
    Op::new(|io| async move {
        index_check::build_index(&io, &settings)
            .await
            .map(Output::Built)
    })
}

/// The background repairs a listing found (see [`Listed::repairs`]).
pub fn repair(settings: Settings, loaded: Vec<Loaded>) -> Op {
    follow_up(settings, Vec::new(), loaded, false)
}

/// What a listing of an immutable repository leaves to do once it has
/// answered (see [`journal::follow_up`]): a failure is logged, the next
/// listing reads the same folders again.
pub fn journal_follow_up(
    settings: Settings,
    views: Vec<crate::index::Segment>,
    time: u64,
    compact: bool,
) -> Op {
    Op::new(move |io| async move {
        if let Err(failure) = journal::follow_up(&io, &settings, views, time, compact).await {
            io.log(
                Level::Warn,
                "brcache: the repository index was not updated after a listing; the next listing reads the same folders",
                serde_json::json!({ "reason": failure.to_string() }),
            );
        }
        Ok(Output::Repaired(0))
    })
}

/// What a listing leaves to do once it has answered: make the index from
/// the entries it found (see [`Listed::index_seed`]), then the repairs,
/// which then publish their entries into it, then the compaction it found
/// due (see [`Listed::compact_index`]), which folds those too.
pub fn follow_up(
    settings: Settings,
    index_seed: Vec<crate::index::Segment>,
    loaded: Vec<Loaded>,
    compact_index: bool,
) -> Op {
    Op::new(move |io| async move {
        if !index_seed.is_empty() {
            index_check::seed_index(&io, &settings, index_seed).await;
        }
        let written = exec::join_all(
            loaded
                .into_iter()
                .map(|l| check::repair_in_background(&io, &settings, l)),
        )
        .await;
        if compact_index {
            let due = index_ops::Due::Listing;
            if let Err(failure) = index_ops::compact_elected(&io, &settings, due).await {
                io.log(
                    Level::Debug,
                    "brcache: the compaction a listing found due failed; the segments stay and are read",
                    serde_json::json!({ "reason": Failure::from(failure).to_string() }),
                );
            }
        }
        Ok(Output::Repaired(
            written
                .into_iter()
                .filter(|w| matches!(w, Ok(true)))
                .count(),
        ))
    })
}
