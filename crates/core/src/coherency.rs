//! Is a VM cache true to its folder, and if not, what makes it true?
//!
//! The folder listing is the truth: a restore point exists when its
//! metadata file does. Coherency compares the **set of names** the cache
//! covers with the set the listing shows (Xen Orchestra compares only their
//! counts, so one lost add plus one lost remove passes unnoticed). The
//! answer is a [`Plan`]: entries that are stale (their file is gone) and
//! files missing from the cache (to be read). Applying the plan reads only
//! the missing files, never the whole folder.
//!
//! When the cache's header recorded a fingerprint of its names and the
//! listing hashes to the same value, the cache is coherent without even
//! being inflated: [`fast_path`].

use crate::error::Error;
use crate::fingerprint::Fingerprint;
use crate::header::CacheHeader;
use crate::key::{MetadataName, VmId};
use crate::vm_cache::VmCache;
use std::collections::{BTreeMap, BTreeSet};

/// The metadata files of one VM folder, from a directory listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    names: BTreeSet<MetadataName>,
}

impl Listing {
    /// Keeps the directory entries that are metadata files (`*.json`, not
    /// hidden); data files, `cache.json.gz`, `vdis/` and temp files are
    /// ignored.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a str>) -> Listing {
        Listing {
            names: entries
                .into_iter()
                .filter_map(|name| MetadataName::new(name).ok())
                .collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &MetadataName> {
        self.names.iter()
    }

    pub fn contains(&self, name: &MetadataName) -> bool {
        self.names.contains(name)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_names(self.names.iter().map(MetadataName::as_str))
    }
}

/// Metadata file contents by name, as the caller read them.
pub type Files = BTreeMap<MetadataName, Vec<u8>>;

/// [`Files`] from parallel lists of names and contents, the form both JS
/// bindings pass them in. A name that is not a metadata file name is an
/// error: callers only ever read metadata files.
pub fn files_from(names: Vec<String>, contents: Vec<Vec<u8>>) -> Result<Files, Error> {
    if names.len() != contents.len() {
        return Err(Error::new(
            crate::ErrorKind::InvalidKey,
            format!("{} file names for {} contents", names.len(), contents.len()),
        ));
    }
    names
        .into_iter()
        .zip(contents)
        .map(|(name, bytes)| Ok((MetadataName::new(&name)?, bytes)))
        .collect()
}

/// A metadata file that could not become an entry, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub name: MetadataName,
    pub reason: String,
}

/// What it takes to make a cache coherent with a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Entries whose metadata file is gone.
    pub stale: Vec<MetadataName>,
    /// Metadata files the cache does not cover: read them, then [`apply`].
    pub missing: Vec<MetadataName>,
    /// Whether the fingerprint the cache recorded matches the listing,
    /// i.e. whether the fast path alone would have said "coherent".
    #[serde(default)]
    pub fingerprint_matches: bool,
}

impl Plan {
    /// A plan from its JSON form, as [`reconcile`]'s serialization gives
    /// it; every name must be a metadata file name.
    pub fn from_json(text: &str) -> Result<Plan, Error> {
        serde_json::from_str(text).map_err(|e| {
            Error::new(
                crate::ErrorKind::InvalidArgument,
                format!("invalid plan: {e}"),
            )
        })
    }

    pub fn is_coherent(&self) -> bool {
        self.stale.is_empty() && self.missing.is_empty()
    }
}

/// The cheapest check there is: the header alone (no inflate) against the
/// listing. `true` means the cache covers exactly the listed files. A cache
/// without a recorded fingerprint (written by XO) never takes this path.
pub fn fast_path(header: Option<&CacheHeader>, listing: &Listing) -> bool {
    header
        .and_then(|h| h.fingerprint)
        .is_some_and(|recorded| recorded == listing.fingerprint())
}

/// Compares the names a cache covers with a listing.
pub fn reconcile(cache: &VmCache, listing: &Listing) -> Plan {
    Plan {
        stale: cache
            .names()
            .filter(|n| !listing.contains(n))
            .cloned()
            .collect(),
        missing: listing
            .names()
            .filter(|n| !cache.contains(n))
            .cloned()
            .collect(),
        fingerprint_matches: cache
            .recorded_fingerprint()
            .is_some_and(|f| f == listing.fingerprint()),
    }
}

/// The outcome of [`apply`] or [`rebuild`]: the repaired cache, and the
/// metadata files that could not be used.
#[derive(Debug, Clone)]
pub struct Repaired {
    pub cache: VmCache,
    pub unreadable: Vec<Unreadable>,
}

/// Applies a plan: stale entries dropped, missing files added from
/// `files`. A missing file absent from `files` (it could not be read) or
/// not a JSON object is reported and left out; it is never fatal.
pub fn apply(cache: &VmCache, plan: &Plan, files: &Files) -> Repaired {
    let mut repaired = cache.clone();
    for name in &plan.stale {
        repaired.remove_name(name.clone());
    }
    let mut unreadable = Vec::new();
    for name in &plan.missing {
        match files.get(name) {
            None => unreadable.push(Unreadable {
                name: name.clone(),
                reason: "its content was not provided (unreadable or vanished)".to_string(),
            }),
            Some(bytes) => {
                if let Err(error) = repaired.add_name(name.clone(), bytes) {
                    unreadable.push(Unreadable {
                        name: name.clone(),
                        reason: describe(&error),
                    });
                }
            }
        }
    }
    Repaired {
        cache: repaired,
        unreadable,
    }
}

/// A cache built from scratch from a listing and the files it names.
pub fn rebuild(vm: VmId, listing: &Listing, files: &Files) -> Repaired {
    let empty = VmCache::new(vm);
    apply(&empty, &reconcile(&empty, listing), files)
}

fn describe(error: &Error) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> VmId {
        VmId::new("vm").unwrap()
    }

    fn name(n: &str) -> MetadataName {
        MetadataName::new(n).unwrap()
    }

    fn files(names: &[&str]) -> Files {
        names
            .iter()
            .map(|n| {
                (
                    name(n),
                    format!(r#"{{"timestamp":1,"n":"{n}"}}"#).into_bytes(),
                )
            })
            .collect()
    }

    #[test]
    fn listing_keeps_metadata_files_only() {
        let listing = Listing::from_entries([
            "20240101T000000Z.json",
            "20240101T000000Z.xva",
            "cache.json.gz",
            ".cache.json.gz.tmp-1",
            ".hidden.json",
            "vdis",
        ]);
        let names: Vec<_> = listing.names().map(MetadataName::as_str).collect();
        assert_eq!(names, ["20240101T000000Z.json"]);
    }

    #[test]
    fn same_count_different_names_is_detected_and_repaired() {
        // XO's count check passes this cache: 2 entries, 2 files.
        let mut cache = rebuild(
            vm(),
            &Listing::from_entries(["a.json", "b.json"]),
            &files(&["a.json", "b.json"]),
        )
        .cache;
        cache.commit();
        let listing = Listing::from_entries(["a.json", "c.json"]);
        let plan = reconcile(&cache, &listing);
        assert_eq!(plan.stale, [name("b.json")]);
        assert_eq!(plan.missing, [name("c.json")]);
        assert!(!plan.fingerprint_matches);
        let repaired = apply(&cache, &plan, &files(&["c.json"]));
        assert!(repaired.unreadable.is_empty());
        assert_eq!(
            repaired.cache,
            rebuild(vm(), &listing, &files(&["a.json", "c.json"])).cache
        );
    }

    #[test]
    fn apply_reads_only_what_is_missing() {
        let listing = Listing::from_entries(["a.json", "b.json"]);
        let cache = rebuild(
            vm(),
            &Listing::from_entries(["a.json"]),
            &files(&["a.json"]),
        )
        .cache;
        let plan = reconcile(&cache, &listing);
        assert_eq!(plan.missing, [name("b.json")]);
        // Only b.json is provided; a.json comes from the cache.
        let repaired = apply(&cache, &plan, &files(&["b.json"]));
        assert_eq!(repaired.cache.len(), 2);
        assert!(repaired.unreadable.is_empty());
    }

    #[test]
    fn unreadable_metadata_is_reported_not_fatal() {
        let listing = Listing::from_entries(["a.json", "b.json", "c.json"]);
        let mut given = files(&["a.json"]);
        given.insert(name("b.json"), b"{ truncated".to_vec());
        let rebuilt = rebuild(vm(), &listing, &given);
        assert_eq!(rebuilt.cache.len(), 1);
        let reported: Vec<_> = rebuilt.unreadable.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(reported, ["b.json", "c.json"]);
        assert!(
            rebuilt.unreadable[0].reason.contains("not a JSON object"),
            "{:?}",
            rebuilt.unreadable
        );
    }

    #[test]
    fn fast_path_needs_a_recorded_fingerprint_that_matches() {
        let listing = Listing::from_entries(["a.json"]);
        let mut cache = rebuild(vm(), &listing, &files(&["a.json"])).cache;
        let bytes = cache.commit();
        let header = crate::codec::read_header(&bytes).unwrap();
        assert!(fast_path(header.as_ref(), &listing));
        assert!(!fast_path(
            header.as_ref(),
            &Listing::from_entries(["a.json", "b.json"])
        ));
        assert!(!fast_path(None, &listing));
        assert!(reconcile(&cache, &listing).fingerprint_matches);
    }
}
