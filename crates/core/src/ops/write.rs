//! Recording a backup and deleting backups.
//!
//! A writer takes the VM's lock before touching the folder: a reader that
//! lists the folder while the cache is behind it then finds the lock held
//! and leaves the repair to this writer. The backup itself never waits on
//! the cache: without the lock, the metadata is written all the same and
//! the next check repairs the cache.
//!
//! Round trips of a write, on a share with locks (the lock's own calls
//! are the handler's):
//! 1. lock;
//! 2. the metadata file created, the cache read, the VM folder and the
//!    index folder listed, dead writers' temp files cleaned, all at once
//!    (the listing is the folder with the new file, whether or not it
//!    shows it yet: the lock keeps other brcache writers out); the new
//!    cache is computed as soon as the reads are in, the create may still
//!    be on its way;
//! 3. the cache replaced and, beside it, the index segment of the same
//!    bytes published (the caller's clock, asked with the replace, answers
//!    at once: the segment is computed and sent while the cache is on its
//!    way);
//! 4. unlock, once both are done: a reader that lists `xo-vm-backups/`
//!    sees the lock until the index holds the write (see
//!    [`super::listing::restore_view`]).
//!
//! A delete takes four as well (see `delete_vm_backups`).

use super::exec::{Io, join, join_all};
use super::io::{Failure, Level, Request, Response};
use super::mutate::{self, Edit};
use super::settings::Settings;
use super::share;
use crate::ErrorKind;
use crate::key::{MetadataName, VmId};
use serde_json::json;

/// `YYYYMMDDTHHmmssZ.json` in UTC: the name XO gives a restore point's
/// metadata, from its timestamp (ms).
pub fn metadata_name(timestamp_ms: f64) -> Result<MetadataName, Failure> {
    if !timestamp_ms.is_finite() || !(0.0..=253_402_300_799_999.0).contains(&timestamp_ms) {
        return Err(Failure::refused(
            "INVALID_ARGUMENT",
            "metadata.timestamp must be a number (ms)",
        ));
    }
    let seconds = (timestamp_ms / 1000.0).floor() as i64;
    let (days, second) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let name = format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z.json",
        second / 3600,
        second / 60 % 60,
        second % 60
    );
    Ok(MetadataName::new(&name)?)
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The VM's lock for a change, or `None` (logged) when it cannot be had:
/// the cache update is then left to the next check. `create_folder`: a
/// VM's first backup creates `xo-vm-backups/` when even that is missing;
/// a delete never brings a vanished folder back (see [`mutate::LockedReads::folder`]).
async fn lock_or_warn(
    io: &Io,
    vm: &VmId,
    operation: &str,
    create_folder: bool,
) -> Result<bool, Failure> {
    let mut result = mutate::lock(io, vm, true).await;
    if create_folder && matches!(&result, Err(e) if e.code == "ENOENT") {
        let made = io.call(Request::MakeFolder { path: vm.dir() }).await;
        result = match made {
            Response::Failed(error) => Err(error),
            _ => mutate::lock(io, vm, true).await,
        };
    }
    match result {
        Ok(()) => Ok(true),
        Err(error) if super::io::is_repository_error(&error.code) => Err(Failure::Io(error)),
        Err(error) => {
            io.log(
                Level::Warn,
                "brcache: the cache was not updated; the next check will repair it",
                json!({ "file": share::cache_path(vm), "lock": share::lock_path(vm), "operation": operation, "reason": error.message }),
            );
            Ok(false)
        }
    }
}

/// A cache update that failed leaves the old cache as it was: logged, the
/// next listing or check notices and repairs it. A key outside the VM's
/// folder is the caller's error.
fn settle(
    io: &Io,
    vm: &VmId,
    operation: &str,
    result: Result<mutate::Committed, Failure>,
) -> Result<mutate::Committed, Failure> {
    match result {
        Err(Failure::Core(error)) if error.kind() == ErrorKind::InvalidKey => {
            Err(Failure::Core(error))
        }
        Err(failure) => {
            io.log(
                Level::Warn,
                "brcache: the cache was not updated; the next check will repair it",
                json!({ "file": share::cache_path(vm), "operation": operation, "reason": failure.to_string() }),
            );
            Ok(mutate::Committed::default())
        }
        Ok(publish) => Ok(publish),
    }
}

/// Writes a restore point's metadata, create-only (a second backup of the
/// same VM in the same second is an error, never an overwrite), then
/// records it in the VM's cache. Answers its key (XO's backup id).
pub async fn write_backup(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    name: &MetadataName,
    metadata: Vec<u8>,
) -> Result<String, Failure> {
    let key = vm.key(name);
    let path = share::vm_file(vm, name.as_str());
    let locked = !settings.immutable && lock_or_warn(io, vm, "write", true).await?;
    let create = io.call(Request::Create {
        path: path.clone(),
        bytes: metadata.clone(),
    });
    let created = |response| match response {
        Response::Failed(error) if error.code == "EEXIST" => Err(Failure::io(
            format_args!(
                "a restore point of VM {} already exists at {}",
                vm.as_str(),
                name.as_str()
            ),
            &error,
        )),
        Response::Failed(error) => Err(Failure::io(format_args!("cannot write {path}"), &error)),
        _ => Ok(()),
    };
    if !locked {
        created(create.await)?;
        if settings.journal {
            super::journal::publish_change(io, settings, vm, &[(name.clone(), metadata)], &[])
                .await;
        }
        return Ok(key);
    }
    let mut edit = Edit {
        added: vec![(name.clone(), metadata)],
        ..Edit::default()
    };
    // The new cache is computed as soon as the reads are in, while the
    // create (a create-only write, the round's slowest call on most
    // shares) may still be on its way; it is written only once the create
    // succeeded.
    let preparing = async {
        let reads = mutate::read_locked(io, settings, vm).await?;
        let mut entries = reads.entries;
        if !entries.iter().any(|e| e == name.as_str()) {
            entries.push(name.as_str().to_string());
        }
        let (bytes, spliced) = mutate::prepare(
            io,
            settings,
            vm,
            reads.cache,
            entries,
            &edit,
            &reads.index_listing,
        )
        .await?;
        Ok::<_, Failure>((bytes, spliced, reads.index_listing))
    };
    let (response, prepared) = join(create, preparing).await;
    let result = match created(response) {
        Err(failure) => Err(failure),
        Ok(()) => {
            let update = async {
                let (bytes, spliced_into, index_listing) = prepared?;
                edit.spliced_into = spliced_into;
                let delta = delta_of(settings, &edit);
                mutate::commit(io, settings, vm, bytes, &index_listing, delta).await
            };
            settle(io, vm, "write", update.await)
        }
    };
    match result {
        Ok(publish) => {
            mutate::release(io, settings, vm, publish).await;
            Ok(key)
        }
        Err(failure) => {
            mutate::unlock(io, vm).await;
            Err(failure)
        }
    }
}

/// What a writer publishes to the index: with locks that exclude, the
/// delta of its edit when that is all that changed in the cache (else the
/// cache's whole view, which then is the truth); without, always the
/// delta: a view made from a cache or folder read without a lock may miss
/// what another writer did meanwhile, and would outrank it.
fn delta_of<'a>(settings: &Settings, edit: &'a Edit) -> Option<&'a Edit> {
    (edit.spliced_into.is_some() || !settings.locks).then_some(edit)
}

/// Deletes restore points (metadata paths, any VMs): per VM under its lock,
/// their metadata, then the data files they name (a full backup's `.xva`
/// and its checksum; VHDs are left to a clean step), so nothing ever lists
/// a half-deleted backup, and their cache entries. Every path is checked
/// before anything is deleted.
pub async fn delete_backups(io: &Io, settings: &Settings, paths: &[String]) -> Result<(), Failure> {
    let mut by_vm: std::collections::BTreeMap<VmId, Vec<MetadataName>> = Default::default();
    for path in paths {
        let (vm, name) = split_key(path)?;
        let names = by_vm.entry(vm).or_default();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let results = join_all(
        by_vm
            .iter()
            .map(|(vm, names)| delete_vm_backups(io, settings, vm, names)),
    )
    .await;
    results.into_iter().collect()
}

/// The VM and file a metadata key names (`/xo-vm-backups/<vm>/<name>`,
/// leading slash optional); never a path outside the VM's folder.
pub fn split_key(path: &str) -> Result<(VmId, MetadataName), Failure> {
    let invalid = || {
        Failure::Core(crate::Error::new(
            ErrorKind::InvalidKey,
            format!("{path:?} is not a restore point's metadata path"),
        ))
    };
    let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let [dir, vm, _] = parts[..] else {
        return Err(invalid());
    };
    if dir != crate::key::BACKUP_DIR {
        return Err(invalid());
    }
    let vm = VmId::new(vm)?;
    let name = vm.parse_key(path)?;
    Ok((vm, name))
}

/// One VM's deletes. Under the lock, in four round trips:
/// 1. lock;
/// 2. the metadata files read (for the data files they name) beside the
///    cache, the VM folder, the index folder and the clean of dead
///    writers' temp files;
/// 3. the metadata files deleted beside the cache replaced by the one of
///    the folder as it will be once they are gone, and the index segment
///    of that cache published;
/// 4. unlock, and the data files deleted.
///
/// Between 3's parts, or should a crash cut them apart, the cache and the
/// folder disagree, and the cache's fingerprint (of the names it covers)
/// says so: a reader then goes by the folder, a cache that still lists a
/// deleted file drops it, one that lacks a file still there reads it back.
/// The index may hold the delete before the folder does; the lock, held
/// until all three are done (and left by a crash), is what tells readers
/// to go by the folder meanwhile. A metadata delete that fails is put
/// right under the lock before it is released (see
/// [`mutate::settle_locked`]): no segment says a file still there is gone.
async fn delete_vm_backups(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    names: &[MetadataName],
) -> Result<(), Failure> {
    let locked = !settings.immutable && lock_or_warn(io, vm, "delete", false).await?;
    let metadata: Vec<String> = names
        .iter()
        .map(|n| share::vm_file(vm, n.as_str()))
        .collect();
    let mut requests: Vec<Request> = metadata
        .iter()
        .map(|path| Request::Read { path: path.clone() })
        .collect();
    if locked {
        requests.extend(mutate::locked_reads(settings, vm));
    }
    let mut responses = io.all(requests).await.into_iter();
    let (data_files, gone) =
        match data_files_of(io, vm, names, responses.by_ref().take(names.len())) {
            Ok(read) => read,
            Err(failure) => {
                if locked {
                    mutate::unlock(io, vm).await;
                }
                return Err(failure);
            }
        };
    if !locked && settings.journal {
        return delete_published(io, settings, vm, names, metadata, data_files).await;
    }
    if !locked {
        share::delete_if_present(io, metadata).await?;
        return share::delete_if_present(io, data_files).await;
    }
    let reads = mutate::take_locked_reads(io, settings, vm, &mut responses);
    if matches!(&reads, Ok(reads) if !reads.folder) {
        // The folder is gone: nothing to delete, and no cache to write
        // (it would bring the folder back).
        mutate::unlock(io, vm).await;
        return share::delete_if_present(io, data_files).await;
    }
    let index_listing = reads
        .as_ref()
        .ok()
        .and_then(|reads| reads.index_listing.clone());
    // The cache of the folder as it will be: its listing less the files
    // about to be deleted.
    let mut edit = Edit {
        removed: names.to_vec(),
        gone,
        ..Edit::default()
    };
    let prepared = match reads {
        Ok(reads) => {
            let entries: Vec<String> = reads
                .entries
                .into_iter()
                .filter(|e| !names.iter().any(|n| n.as_str() == e))
                .collect();
            mutate::prepare(
                io,
                settings,
                vm,
                reads.cache,
                entries,
                &edit,
                &index_listing,
            )
            .await
        }
        Err(failure) => Err(failure),
    };
    let deletes: Vec<Request> = metadata
        .iter()
        .map(|path| Request::Delete { path: path.clone() })
        .collect();
    let (update, deleted) = match prepared {
        Ok((bytes, spliced_into)) => {
            edit.spliced_into = spliced_into;
            let delta = delta_of(settings, &edit);
            mutate::commit_beside(io, settings, vm, bytes, &index_listing, delta, deletes).await
        }
        Err(failure) => (Err(failure), io.all(deletes).await),
    };
    let deleted = metadata
        .iter()
        .zip(deleted)
        .try_for_each(|(path, response)| match response {
            Response::Failed(error) if error.code != "ENOENT" => {
                Err(Failure::io(format_args!("cannot delete {path}"), &error))
            }
            _ => Ok(()),
        });
    let publish = match deleted.and_then(|()| settle(io, vm, "delete", update)) {
        Ok(publish) => publish,
        Err(failure) => {
            // A metadata file still there: the cache, written without it,
            // disagrees with the folder (a reader reads it back), and the
            // segment, published beside, says it is gone. Put both right
            // while the lock still tells readers to go by the folder. Its
            // data files stay.
            if super::index_ops::active(settings) {
                match mutate::settle_locked(io, settings, vm).await {
                    Ok(Some(committed)) => mutate::release(io, settings, vm, committed).await,
                    Ok(None) => mutate::unlock(io, vm).await,
                    Err(settling) => {
                        io.log(
                            Level::Warn,
                            "brcache: the repository index was not updated (its segment was not published); the next check will catch up",
                            json!({ "vm": vm.as_str(), "step": "publish", "reason": settling.to_string() }),
                        );
                        mutate::unlock(io, vm).await;
                    }
                }
            } else {
                mutate::unlock(io, vm).await;
            }
            return Err(failure);
        }
    };
    let (_, data) = join(
        mutate::release(io, settings, vm, publish),
        share::delete_if_present(io, data_files),
    )
    .await;
    data
}

/// The deletes of an immutable repository, its retention lifted (see
/// [`super::journal`]): the removal published, then the metadata files
/// deleted, then their data files. A metadata file still under retention
/// fails the call, and is published again as there.
async fn delete_published(
    io: &Io,
    settings: &Settings,
    vm: &VmId,
    names: &[MetadataName],
    metadata: Vec<String>,
    data_files: Vec<String>,
) -> Result<(), Failure> {
    super::journal::publish_change(io, settings, vm, &[], names).await;
    let requests = metadata
        .iter()
        .map(|path| Request::Delete { path: path.clone() })
        .collect();
    let mut kept = Vec::new();
    let mut failure = None;
    for ((path, name), response) in metadata.iter().zip(names).zip(io.all(requests).await) {
        if let Response::Failed(error) = response
            && error.code != "ENOENT"
        {
            failure.get_or_insert(Failure::io(format_args!("cannot delete {path}"), &error));
            kept.push(name.clone());
        }
    }
    let Some(failure) = failure else {
        return share::delete_if_present(io, data_files).await;
    };
    let read = share::read_metadata(io, vm, &kept).await?;
    let put: Vec<(MetadataName, Vec<u8>)> = read.files.into_iter().collect();
    if !put.is_empty() {
        super::journal::publish_change(io, settings, vm, &put, &[]).await;
    }
    Err(failure)
}

/// A metadata file's name and bytes.
type MetadataFile = (MetadataName, Vec<u8>);

/// The data files the metadata files read name, from their responses,
/// and the metadata files read.
fn data_files_of(
    io: &Io,
    vm: &VmId,
    names: &[MetadataName],
    responses: impl Iterator<Item = Response>,
) -> Result<(Vec<String>, Vec<MetadataFile>), Failure> {
    let mut data_files = Vec::new();
    let mut read = Vec::new();
    for (name, response) in names.iter().zip(responses) {
        match response {
            Response::Bytes(bytes) => {
                data_files.extend(full_backup_files(io, vm, name, &bytes));
                read.push((name.clone(), bytes));
            }
            // Already gone, or unreadable: the metadata goes anyway, and
            // its data files are an orphan for the clean step to find.
            Response::Failed(error)
                if error.code == "ENOENT"
                    || error.code == "DECRYPTION_FAILED"
                    || error.code == "EISDIR" => {}
            Response::Failed(error) => {
                return Err(Failure::io(
                    format_args!("cannot read {}", share::vm_file(vm, name.as_str())),
                    &error,
                ));
            }
            _ => {}
        }
    }
    Ok((data_files, read))
}

/// The data files of a full backup (`xva` and its checksum), relative to
/// the repository root; a path that leaves the VM folder is never deleted.
fn full_backup_files(io: &Io, vm: &VmId, name: &MetadataName, bytes: &[u8]) -> Vec<String> {
    let Ok(metadata) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let (Some("full"), Some(xva)) = (metadata["mode"].as_str(), metadata["xva"].as_str()) else {
        return Vec::new();
    };
    let xva = xva.strip_prefix("./").unwrap_or(xva);
    if xva.is_empty() || xva.contains('/') || xva.starts_with('.') || xva.contains('\\') {
        io.log(
            Level::Warn,
            "brcache: not deleting a data file outside the VM folder",
            json!({ "file": share::vm_file(vm, name.as_str()), "xva": metadata["xva"] }),
        );
        return Vec::new();
    }
    vec![
        share::vm_file(vm, xva),
        share::vm_file(vm, &format!("{xva}.checksum")),
    ]
}
