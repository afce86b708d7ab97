//! Whether each VM's index entry still agrees with its cache.

use super::format::Snapshot;
use crate::error::{Error, ErrorKind, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// Why a VM's index entry disagrees with its cache, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Drift {
    /// The index has no entry for a VM folder that has restore points.
    Unknown,
    /// The cache was written (by brcache or XO) after the entry.
    Behind,
    /// The index has restore points for a VM folder that is gone.
    Gone,
}

/// Each VM folder's cache as [`drift`] needs it: its generation and
/// fingerprint (hex), or `None` when the folder has no cache.
pub type CacheStates = BTreeMap<String, Option<(u64, Option<String>)>>;

/// The caches argument of [`drift`] from its JSON form:
/// `{ "<vm>": [generation, fingerprint | null] | null }`.
pub fn parse_caches(text: &str) -> Result<CacheStates> {
    serde_json::from_str(text)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("invalid caches: {e}")))
}

/// Compares the index with the VM folders' caches: `caches` maps each VM
/// folder to its cache's generation and fingerprint (hex), `None` when the
/// folder has no cache. Returns the VMs whose entry must be republished.
pub fn drift(snapshot: &Snapshot, caches: &CacheStates) -> BTreeMap<String, Drift> {
    let mut out = BTreeMap::new();
    for (vm, cache) in caches {
        match (snapshot.vms.get(vm), cache) {
            (None, Some(_)) => {
                out.insert(vm.clone(), Drift::Unknown);
            }
            (Some(entry), Some((generation, fingerprint)))
                if entry.generation != *generation || &entry.fingerprint != fingerprint =>
            {
                out.insert(vm.clone(), Drift::Behind);
            }
            (Some(entry), None) if !entry.summaries.is_empty() => {
                out.insert(vm.clone(), Drift::Behind);
            }
            _ => {}
        }
    }
    for (vm, entry) in &snapshot.vms {
        if !caches.contains_key(vm) && !entry.summaries.is_empty() {
            out.insert(vm.clone(), Drift::Gone);
        }
    }
    out
}
