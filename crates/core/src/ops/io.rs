//! What an operation asks of its caller, and what it is told back.
//!
//! Every request names one thing a share does in one call (one round trip
//! on a network share). Paths are relative to the repository root, POSIX
//! style, as the JS handlers take them (`js/handlers/interface.md`).

use crate::error::Error;
use std::fmt;

/// One call on the share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A folder's entry names, files and folders alike.
    List { path: String },
    /// A folder's sub-folders' names only (the VM folders of `xo-vm-backups/`).
    ListFolders { path: String },
    /// A file's bytes.
    Read { path: String },
    /// A file's modification time.
    Stat { path: String },
    /// Create-only and all or nothing: `EEXIST` if the name is taken.
    Create { path: String, bytes: Vec<u8> },
    /// Atomic replace (temp, fsync, rename): readers see the old file or
    /// the new one, never a part.
    Replace { path: String, bytes: Vec<u8> },
    /// Deletes a file (`ENOENT` if absent).
    Delete { path: String },
    /// Creates a folder and its parents (no error if it exists).
    MakeFolder { path: String },
    /// Removes an empty folder.
    RemoveFolder { path: String },
    /// Takes the lock of `path` across processes and hosts; `wait: false`
    /// gives up at once (`ELOCKED`) when someone holds it.
    Lock { path: String, wait: bool },
    /// Releases a lock this operation took.
    Unlock { path: String },
    /// Removes the temp files of dead writers in `dir`; those of the files
    /// in `any_age_for` whatever their age (their lock is held).
    CleanTemps {
        dir: String,
        any_age_for: Vec<String>,
    },
    /// The time, in ms since the epoch (the core has no clock).
    Now,
}

impl Request {
    /// The path the request is about, for messages.
    pub fn path(&self) -> &str {
        match self {
            Request::List { path }
            | Request::ListFolders { path }
            | Request::Read { path }
            | Request::Stat { path }
            | Request::Create { path, .. }
            | Request::Replace { path, .. }
            | Request::Delete { path }
            | Request::MakeFolder { path }
            | Request::RemoveFolder { path }
            | Request::Lock { path, .. }
            | Request::Unlock { path } => path,
            Request::CleanTemps { dir, .. } => dir,
            Request::Now => "",
        }
    }

    /// The request's kind, as the bindings name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::List { .. } => "list",
            Request::ListFolders { .. } => "listFolders",
            Request::Read { .. } => "read",
            Request::Stat { .. } => "stat",
            Request::Create { .. } => "create",
            Request::Replace { .. } => "replace",
            Request::Delete { .. } => "delete",
            Request::MakeFolder { .. } => "makeFolder",
            Request::RemoveFolder { .. } => "removeFolder",
            Request::Lock { .. } => "lock",
            Request::Unlock { .. } => "unlock",
            Request::CleanTemps { .. } => "cleanTemps",
            Request::Now => "now",
        }
    }

    /// The bytes a write request carries.
    pub fn payload(&self) -> Option<&[u8]> {
        match self {
            Request::Create { bytes, .. } | Request::Replace { bytes, .. } => Some(bytes),
            _ => None,
        }
    }
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Done, nothing to tell (writes, deletes, locks).
    Done,
    /// A listing's names.
    Names(Vec<String>),
    /// A file's bytes.
    Bytes(Vec<u8>),
    /// A file's modification time, ms since the epoch.
    Modified(f64),
    /// The time, ms since the epoch.
    Time(f64),
    /// The call failed: `code` as the handler gives it (`ENOENT`,
    /// `EEXIST`, `EACCES`, `ELOCKED`, `DECRYPTION_FAILED`, ...).
    Failed(IoError),
}

/// A failed call, as the share reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoError {
    pub code: String,
    pub message: String,
    /// The step of the index's upkeep that failed (`publish`,
    /// `compaction`, `snapshot`), when it was one.
    pub step: Option<&'static str>,
}

impl IoError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> IoError {
        IoError {
            code: code.into(),
            message: message.into(),
            step: None,
        }
    }
}

/// Why an operation failed: the core's own verdict on bytes, or a call
/// that failed, named with what was being done.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Core(Error),
    Io(IoError),
}

impl Failure {
    /// A failed call, annotated with what it was for; the code stays. A
    /// verdict on the repository (its encryption) already says all there is.
    pub fn io(what: impl fmt::Display, error: &IoError) -> Failure {
        if is_repository_error(&error.code) {
            return Failure::Io(error.clone());
        }
        Failure::Io(IoError {
            message: format!("{what}: {}", error.message),
            ..error.clone()
        })
    }

    /// The same failure, as the failure of a step of the index's upkeep.
    pub fn in_step(self, step: &'static str) -> Failure {
        match self {
            Failure::Io(error) => Failure::Io(IoError {
                step: Some(step),
                ..error
            }),
            Failure::Core(error) => Failure::Io(IoError {
                code: error.code().to_string(),
                message: error.to_string(),
                step: Some(step),
            }),
        }
    }

    /// An operation's own refusal (a backup already there, a bad argument).
    pub fn refused(code: &str, message: impl Into<String>) -> Failure {
        Failure::Io(IoError::new(code, message))
    }

    pub fn code(&self) -> &str {
        match self {
            Failure::Core(error) => error.code(),
            Failure::Io(error) => &error.code,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Core(error) => error.fmt(f),
            Failure::Io(error) => f.write_str(&error.message),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Core(error)
    }
}

/// Verdicts on the whole repository (its encryption): a read that gets one
/// fails the operation, never counts as one unreadable file.
pub const REPOSITORY_ERRORS: [&str; 5] = [
    "ENCRYPTED",
    "NOT_ENCRYPTED",
    "WRONG_ENCRYPTION_KEY",
    "UNSUPPORTED_ENCRYPTION",
    "INVALID_ENCRYPTION_KEY",
];

pub fn is_repository_error(code: &str) -> bool {
    REPOSITORY_ERRORS.contains(&code)
}

/// A message an operation leaves for the caller's logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: Level,
    pub message: String,
    /// JSON object text: the file, VM and reason the message is about.
    pub fields: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
        }
    }
}
