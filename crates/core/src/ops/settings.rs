//! What an operation is told about its repository before it starts.

use crate::codec::DecodeLimits;
use std::cell::Cell;
use std::rc::Rc;

/// Whether writers keep the repository-wide index and listings use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// Never.
    Off,
    /// When the repository has one (its folder exists).
    Auto,
    /// Always: a writer creates it.
    On,
}

/// The repository's settings, shared by an operation and its parts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: DecodeLimits,
    /// Never write, create or delete a cache or index file.
    pub immutable: bool,
    pub index: IndexMode,
    /// An immutable repository's index: create-only files in epoch
    /// folders ([`crate::index::epochs`]), on unless the index is turned
    /// off. `index` is then `Off`: nothing of the writable index's runs.
    pub journal: bool,
    /// The share serves caches already checked against their folders
    /// (`brcache serve`'s API to its page): listings read them as they are
    /// and list no VM folder. Never for writing.
    pub trusted: bool,
    /// Listings hand each VM's answer out as soon as it is made
    /// ([`super::Operation::take_emitted`]) rather than in the final answer,
    /// so that the caller's parse overlaps the other VMs' reads.
    pub stream: bool,
    /// The share has locks and enforces create-only writes. Without (S3,
    /// Garage), the index is compacted without a lock: see
    /// [`super::index_ops::compact_unlocked`].
    pub locks: bool,
    /// The share refuses to create a name that exists (a file system's
    /// exclusive create, or an object store that honours `If-None-Match:
    /// *`, probed by the handler): index snapshots are then named by their
    /// generation alone and created create-only, and what a compaction
    /// folded is deleted at once, with or without locks. Without (Garage),
    /// see [`super::index_ops::compact_unlocked`].
    pub create_only: bool,
    /// Randomness from the caller (the core has none): segment names.
    nonce: Rc<Cell<u64>>,
}

impl Settings {
    pub fn new(limits: DecodeLimits, immutable: bool, index: IndexMode, nonce: u64) -> Settings {
        Settings {
            limits,
            immutable,
            // The writable index rewrites and deletes: an immutable
            // repository gets the journal instead.
            index: if immutable { IndexMode::Off } else { index },
            journal: immutable && index != IndexMode::Off,
            trusted: false,
            stream: false,
            locks: true,
            create_only: true,
            nonce: Rc::new(Cell::new(nonce)),
        }
    }

    /// The same repository with another index mode (a build makes the
    /// index exist).
    pub fn with_index(&self, index: IndexMode) -> Settings {
        Settings {
            index: if self.immutable {
                IndexMode::Off
            } else {
                index
            },
            journal: self.immutable && !self.trusted && index != IndexMode::Off,
            ..self.clone()
        }
    }

    /// The same repository read through a share that serves checked
    /// caches (see [`Settings::trusted`]): read only.
    pub fn trusting(&self) -> Settings {
        Settings {
            trusted: true,
            immutable: true,
            journal: false,
            ..self.clone()
        }
    }

    /// The same repository on a share without locks or create-only writes
    /// (see [`Settings::locks`]).
    pub fn without_locks(&self) -> Settings {
        Settings {
            locks: false,
            create_only: false,
            ..self.clone()
        }
    }

    /// The same share, found to refuse creating a name that exists though
    /// it has no locks (see [`Settings::create_only`]).
    pub fn with_create_only(&self) -> Settings {
        Settings {
            create_only: true,
            ..self.clone()
        }
    }

    /// The same settings, for a caller that takes answers as they come.
    pub fn streaming(&self) -> Settings {
        Settings {
            stream: true,
            ..self.clone()
        }
    }

    /// The same settings, for a listing whose answers are reshaped before
    /// they go out (the VM table's rows from summaries).
    pub fn collecting(&self) -> Settings {
        Settings {
            stream: false,
            ..self.clone()
        }
    }

    /// A fresh 64-bit value for a name no other writer picks
    /// (splitmix64 over the caller's seed).
    pub fn unique(&self) -> u64 {
        let next = self.nonce.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.nonce.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
