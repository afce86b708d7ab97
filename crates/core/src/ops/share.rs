//! The calls operations make, each with the meaning a repository gives its
//! answer: what a missing file or folder means, which failures are the
//! repository's verdict and which condemn one file only.

use super::exec::Io;
use super::io::{Failure, IoError, Level, Request, Response, is_repository_error};
use crate::key::{BACKUP_DIR, CACHE_FILE, MetadataName, VmId};
use serde_json::json;

/// A VM's cache as read.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheRead {
    Bytes(Vec<u8>),
    /// No cache file.
    Absent,
    /// It does not decrypt (altered, cut, another key's): a cache to rebuild.
    Undecryptable(String),
}

impl CacheRead {
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            CacheRead::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }
}

pub fn cache_path(vm: &VmId) -> String {
    format!("{}/{CACHE_FILE}", vm.dir())
}

/// The path a VM's lock is taken on: the VM folder itself, as Xen
/// Orchestra's backup runs and cleanVm take it (`handler.lock(vmDir)`), so
/// that brcache and XO exclude each other. proper-lockfile makes the lock
/// `xo-vm-backups/<vm>.lock`, beside the folder: a reader's listing of
/// `xo-vm-backups/` shows which VMs are being written.
pub fn lock_path(vm: &VmId) -> String {
    vm.dir()
}

/// The suffix of a lock's folder (`<path>.lock`), as lock handlers make it.
pub const LOCK_SUFFIX: &str = ".lock";

pub fn vm_file(vm: &VmId, name: &str) -> String {
    format!("{}/{name}", vm.dir())
}

fn unexpected(request: &str, response: &Response) -> Failure {
    Failure::refused(
        "INVALID_ARGUMENT",
        format!("brcache: {request} answered with {response:?}"),
    )
}

/// A response that must be a failure or `want`; anything else is the
/// caller's bug, said plainly.
fn failed(response: &Response) -> Option<&IoError> {
    match response {
        Response::Failed(error) => Some(error),
        _ => None,
    }
}

/// The cache request, and what its answer means.
pub fn read_cache_request(vm: &VmId) -> Request {
    Request::Read {
        path: cache_path(vm),
    }
}

pub fn cache_read(io: &Io, vm: &VmId, response: Response) -> Result<CacheRead, Failure> {
    let path = cache_path(vm);
    match response {
        Response::Bytes(bytes) => Ok(CacheRead::Bytes(bytes)),
        Response::Failed(error) if error.code == "ENOENT" => Ok(CacheRead::Absent),
        Response::Failed(error) if is_repository_error(&error.code) => Err(Failure::Io(error)),
        Response::Failed(error) if error.code == "DECRYPTION_FAILED" => {
            Ok(CacheRead::Undecryptable(error.message))
        }
        Response::Failed(error) => {
            // The folder listing is the truth and still reachable: the cache
            // is unusable rather than the listing failed.
            io.log(
                Level::Warn,
                "brcache: cannot read the cache, using the metadata files",
                json!({ "file": path, "reason": error.message }),
            );
            Ok(CacheRead::Absent)
        }
        other => Err(unexpected("a cache read", &other)),
    }
}

pub fn list_vm_request(vm: &VmId) -> Request {
    Request::List { path: vm.dir() }
}

/// A VM folder's entries; a folder that is gone has no restore points, any
/// other failure must not pass for "no backups".
pub fn vm_listing(vm: &VmId, response: Response) -> Result<Vec<String>, Failure> {
    match response {
        Response::Names(names) => Ok(names),
        Response::Failed(error) if error.code == "ENOENT" => Ok(Vec::new()),
        Response::Failed(error) => Err(Failure::io(
            format_args!("cannot list {}", vm.dir()),
            &error,
        )),
        other => Err(unexpected("a folder listing", &other)),
    }
}

/// The VM folders: directories of `xo-vm-backups/`, not hidden, not locks.
/// No backup folder is an empty repository only if the repository itself
/// is there: an unmounted share is an error.
pub async fn list_vm_folders(io: &Io) -> Result<Vec<VmId>, Failure> {
    Ok(list_backup_folders(io).await?.vms)
}

/// What the listing of `xo-vm-backups/` shows: the VM folders, sorted, and
/// the VMs whose lock is there (held, or left by a writer that died).
#[derive(Debug, Clone, Default)]
pub struct BackupFolders {
    pub vms: Vec<VmId>,
    pub locked: std::collections::BTreeSet<VmId>,
}

/// [`list_vm_folders`], with the locks the same listing shows.
pub async fn list_backup_folders(io: &Io) -> Result<BackupFolders, Failure> {
    let response = io
        .call(Request::ListFolders {
            path: BACKUP_DIR.to_string(),
        })
        .await;
    let names = match response {
        Response::Names(names) => names,
        Response::Failed(error) if error.code == "ENOENT" => {
            if let Some(error) = failed(
                &io.call(Request::List {
                    path: String::new(),
                })
                .await,
            ) {
                return Err(Failure::io("cannot list the repository root", error));
            }
            return Ok(BackupFolders::default());
        }
        Response::Failed(error) => {
            return Err(Failure::io(
                format_args!("cannot list {BACKUP_DIR}"),
                &error,
            ));
        }
        other => return Err(unexpected("a folder listing", &other)),
    };
    let mut folders = BackupFolders::default();
    for name in names.iter().filter(|name| !name.starts_with('.')) {
        match name.strip_suffix(LOCK_SUFFIX) {
            Some(stem) => folders.locked.extend(VmId::new(stem).ok()),
            None => folders.vms.extend(VmId::new(name).ok()),
        }
    }
    folders.vms.sort();
    Ok(folders)
}

/// Metadata files as read: contents by name, and those that failed one by
/// one (a folder where a file should be, a file that does not decrypt).
#[derive(Debug, Default)]
pub struct MetadataRead {
    pub files: crate::coherency::Files,
    pub failed: Vec<FailedFile>,
}

#[derive(Debug, Clone)]
pub struct FailedFile {
    pub name: MetadataName,
    pub reason: String,
    /// It does not decrypt: perhaps a write in progress (XO writes in place).
    pub undecryptable: bool,
}

/// Reads metadata files at once. A file gone since the listing is skipped;
/// any failure but those of one file is an error, never a restore point
/// silently missing.
pub async fn read_metadata(
    io: &Io,
    vm: &VmId,
    names: &[MetadataName],
) -> Result<MetadataRead, Failure> {
    let requests = names
        .iter()
        .map(|name| Request::Read {
            path: vm_file(vm, name.as_str()),
        })
        .collect();
    let mut read = MetadataRead::default();
    for (name, response) in names.iter().zip(io.all(requests).await) {
        let path = vm_file(vm, name.as_str());
        match response {
            Response::Bytes(bytes) => {
                read.files.insert(name.clone(), bytes);
            }
            Response::Failed(error) if error.code == "ENOENT" => {}
            Response::Failed(error) if error.code == "EISDIR" => read.failed.push(FailedFile {
                name: name.clone(),
                reason: format!("{path} is a folder, not a file"),
                undecryptable: false,
            }),
            Response::Failed(error) if error.code == "DECRYPTION_FAILED" => {
                read.failed.push(FailedFile {
                    name: name.clone(),
                    reason: error.message,
                    undecryptable: true,
                })
            }
            Response::Failed(error) if is_repository_error(&error.code) => {
                return Err(Failure::Io(error));
            }
            Response::Failed(error) => {
                return Err(Failure::io(format_args!("cannot read {path}"), &error));
            }
            other => return Err(unexpected("a metadata read", &other)),
        }
    }
    Ok(read)
}

/// Whether a response is a success; a failure becomes the error of `what`.
pub fn done(response: Response, what: impl FnOnce() -> String) -> Result<(), Failure> {
    match response {
        Response::Failed(error) => Err(Failure::io(what(), &error)),
        _ => Ok(()),
    }
}

/// Deletes files at once; one already gone is fine.
pub async fn delete_if_present(io: &Io, paths: Vec<String>) -> Result<(), Failure> {
    let requests = paths
        .iter()
        .map(|path| Request::Delete { path: path.clone() })
        .collect();
    for (path, response) in paths.iter().zip(io.all(requests).await) {
        match response {
            Response::Failed(error) if error.code != "ENOENT" => {
                return Err(Failure::io(format_args!("cannot delete {path}"), &error));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The time, from the caller's clock.
pub async fn now(io: &Io) -> f64 {
    match io.call(Request::Now).await {
        Response::Time(ms) => ms,
        // A caller without a clock makes every young file look old, which
        // only reports more as unreadable: never a wrong restore point.
        _ => 0.0,
    }
}
