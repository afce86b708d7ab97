//! Typed errors. Every error says what is wrong and, where it makes sense,
//! where: a byte offset in the gzip member or in the JSON text, or the cache
//! key involved. Callers add the file name (see [`Error::in_file`]) because
//! the core never knows where the bytes came from.

use std::fmt;

/// What went wrong, as a stable machine-readable kind.
///
/// The `code()` strings are part of the public contract: the napi and wasm
/// bindings expose them as `error.code`, and the shared test vectors name
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The bytes do not start with the gzip magic number.
    NotGzip,
    /// The gzip member ends before its header, body or trailer does.
    Truncated,
    /// A compression method other than deflate, or reserved flag bits set.
    UnsupportedGzip,
    /// The optional header CRC16 (FHCRC) does not match the header.
    HeaderCrcMismatch,
    /// The deflate stream is malformed.
    CorruptDeflate,
    /// The CRC32 in the trailer does not match the inflated data.
    CrcMismatch,
    /// The ISIZE in the trailer does not match the inflated length.
    SizeMismatch,
    /// Inflating would exceed the configured limit (a gzip bomb, or a cache
    /// far larger than any real one).
    TooLarge,
    /// Bytes follow the gzip member (a second member or garbage).
    TrailingData,
    /// The inflated body is not valid UTF-8.
    InvalidUtf8,
    /// The inflated body is not valid JSON.
    InvalidJson,
    /// The JSON nests deeper than the configured limit.
    TooDeep,
    /// The JSON document is not an object.
    NotAnObject,
    /// A cache entry is not a JSON object.
    EntryNotAnObject,
    /// A cache key does not name a metadata file of the VM folder.
    InvalidKey,
    /// A metadata file cannot be used as a cache entry.
    InvalidMetadata,
    /// A caller's argument (a filter, a plan) is malformed.
    InvalidArgument,
    /// The repository is encrypted and no key was given.
    Encrypted,
    /// A key was given for a repository that is not encrypted.
    NotEncrypted,
    /// `encryption.json` names no algorithm brcache knows, or is not JSON.
    UnsupportedEncryption,
    /// An encryption key of the wrong size.
    InvalidEncryptionKey,
    /// `metadata.json` does not open with the key: the wrong key or algorithm.
    WrongEncryptionKey,
    /// An encrypted file does not authenticate: altered, cut, or another key's.
    DecryptionFailed,
}

impl ErrorKind {
    /// The stable code of this kind, e.g. `CRC_MISMATCH`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotGzip => "NOT_GZIP",
            ErrorKind::Truncated => "TRUNCATED",
            ErrorKind::UnsupportedGzip => "UNSUPPORTED_GZIP",
            ErrorKind::HeaderCrcMismatch => "HEADER_CRC_MISMATCH",
            ErrorKind::CorruptDeflate => "CORRUPT_DEFLATE",
            ErrorKind::CrcMismatch => "CRC_MISMATCH",
            ErrorKind::SizeMismatch => "SIZE_MISMATCH",
            ErrorKind::TooLarge => "TOO_LARGE",
            ErrorKind::TrailingData => "TRAILING_DATA",
            ErrorKind::InvalidUtf8 => "INVALID_UTF8",
            ErrorKind::InvalidJson => "INVALID_JSON",
            ErrorKind::TooDeep => "TOO_DEEP",
            ErrorKind::NotAnObject => "NOT_AN_OBJECT",
            ErrorKind::EntryNotAnObject => "ENTRY_NOT_AN_OBJECT",
            ErrorKind::InvalidKey => "INVALID_KEY",
            ErrorKind::InvalidMetadata => "INVALID_METADATA",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::Encrypted => "ENCRYPTED",
            ErrorKind::NotEncrypted => "NOT_ENCRYPTED",
            ErrorKind::UnsupportedEncryption => "UNSUPPORTED_ENCRYPTION",
            ErrorKind::InvalidEncryptionKey => "INVALID_ENCRYPTION_KEY",
            ErrorKind::WrongEncryptionKey => "WRONG_ENCRYPTION_KEY",
            ErrorKind::DecryptionFailed => "DECRYPTION_FAILED",
        }
    }

    /// Whether offsets of this kind count in the inflated JSON body rather
    /// than in the gzip member.
    pub fn is_in_body(self) -> bool {
        matches!(
            self,
            ErrorKind::InvalidUtf8
                | ErrorKind::InvalidJson
                | ErrorKind::TooDeep
                | ErrorKind::NotAnObject
        )
    }

    /// Every kind, for tests and documentation tables.
    pub const ALL: [ErrorKind; 23] = [
        ErrorKind::NotGzip,
        ErrorKind::Truncated,
        ErrorKind::UnsupportedGzip,
        ErrorKind::HeaderCrcMismatch,
        ErrorKind::CorruptDeflate,
        ErrorKind::CrcMismatch,
        ErrorKind::SizeMismatch,
        ErrorKind::TooLarge,
        ErrorKind::TrailingData,
        ErrorKind::InvalidUtf8,
        ErrorKind::InvalidJson,
        ErrorKind::TooDeep,
        ErrorKind::NotAnObject,
        ErrorKind::EntryNotAnObject,
        ErrorKind::InvalidKey,
        ErrorKind::InvalidMetadata,
        ErrorKind::InvalidArgument,
        ErrorKind::Encrypted,
        ErrorKind::NotEncrypted,
        ErrorKind::UnsupportedEncryption,
        ErrorKind::InvalidEncryptionKey,
        ErrorKind::WrongEncryptionKey,
        ErrorKind::DecryptionFailed,
    ];
}

/// An error with its kind, a human explanation and an optional location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    detail: String,
    offset: Option<u64>,
    file: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error {
            kind,
            detail: detail.into(),
            offset: None,
            file: None,
        }
    }

    /// The same error, located at a byte offset (of the gzip member for
    /// framing errors, of the inflated JSON text for JSON errors).
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// The same error, naming the file it was found in.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        write!(f, "{}", self.detail)?;
        if let Some(offset) = self.offset {
            if self.kind.is_in_body() {
                write!(f, " (at byte {offset} of the inflated body)")?;
            } else {
                write!(f, " (at byte {offset})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
