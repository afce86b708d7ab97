//! A VM's cache written again without being read: the write path's fast
//! way when the cache is known to be true.
//!
//! After a writer (holding the VM's lock) creates or deletes metadata files
//! and lists the folder, the cache's header alone can prove that the cache
//! covered exactly the folder as it was before those changes: its
//! fingerprint is that of the listed names, less the files just created,
//! plus the ones just deleted. Then the new cache is the old one with those
//! entries added and removed, and [`crate::chunked::splice`] builds it from
//! the old bytes, recompressing only the chunks it changes. Anything else
//! (no header, another writer's change in the folder, a table that does not
//! match) answers `None`: the caller decodes, reconciles and writes the
//! whole cache, as always.

use crate::chunked::{self, Edit};
use crate::codec::{self, DEFAULT_LEVEL};
use crate::coherency::Listing;
use crate::entry;
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::header::{CacheHeader, FORMAT_VERSION};
use crate::key::{MetadataName, VmId};
use std::collections::BTreeSet;

/// The new bytes of `vm`'s cache after `added` (name and bytes of each
/// metadata file created) and `removed` (names deleted), with `listing`
/// the folder listed after them; `None` when the cache cannot be shown
/// coherent with the folder from its header, or cannot be spliced.
/// Metadata that cannot be cached is an error, as in [`crate::VmCache::add`].
pub fn splice_cache(
    vm: &VmId,
    bytes: &[u8],
    listing: &Listing,
    added: &[(MetadataName, &[u8])],
    removed: &[MetadataName],
) -> Result<Option<Vec<u8>>> {
    splice_cache_with_target(vm, bytes, listing, added, removed, chunked::CHUNK_TARGET)
}

/// [`splice_cache`] writing new chunks of about `target` bytes (tests use
/// small ones).
pub fn splice_cache_with_target(
    vm: &VmId,
    bytes: &[u8],
    listing: &Listing,
    added: &[(MetadataName, &[u8])],
    removed: &[MetadataName],
    target: usize,
) -> Result<Option<Vec<u8>>> {
    let Ok(Some(header)) = codec::read_header(bytes) else {
        return Ok(None);
    };
    let Some(recorded) = header.fingerprint else {
        return Ok(None);
    };
    let after: BTreeSet<&MetadataName> = listing.names().collect();
    let created: BTreeSet<&MetadataName> = added.iter().map(|(name, _)| name).collect();
    let deleted: BTreeSet<&MetadataName> = removed.iter().collect();
    // What the folder was before this writer's changes: what its cache
    // must cover for the splice to keep it true.
    if created.iter().any(|name| !after.contains(name))
        || deleted.iter().any(|name| after.contains(name))
    {
        return Ok(None);
    }
    let before: BTreeSet<&MetadataName> = after
        .iter()
        .filter(|name| !created.contains(*name))
        .chain(deleted.iter())
        .copied()
        .collect();
    let before_fingerprint = Fingerprint::of_names(before.iter().map(|name| name.as_str()));
    if recorded != before_fingerprint
        || header.entries as usize != before.len()
        || header.generation == 0
    {
        return Ok(None);
    }
    let mut appended = Vec::with_capacity(added.len());
    let mut sorted: Vec<&(MetadataName, &[u8])> = added.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, metadata) in sorted {
        let key = vm.key(name);
        let value = entry::from_metadata(&key, metadata)?;
        appended.push((key, value));
    }
    let removed_keys: Vec<String> = deleted.iter().map(|name| vm.key(name)).collect();
    let next = CacheHeader {
        version: FORMAT_VERSION,
        generation: header.generation + 1,
        entries: after.len() as u32,
        fingerprint: Some(listing.fingerprint()),
    };
    let edit = Edit {
        appended: &appended,
        removed: &removed_keys,
    };
    Ok(chunked::splice_with_target(
        bytes,
        &next,
        &edit,
        DEFAULT_LEVEL,
        target,
    ))
}

/// [`splice_cache`] from the plain values a binding receives: the VM
/// folder's name, the cache's bytes, the folder's entries, and names
/// (checked here) with the created files' contents.
pub fn splice_request(
    vm: &str,
    bytes: &[u8],
    entries: &[String],
    added_names: &[String],
    added_contents: &[Vec<u8>],
    removed: &[String],
) -> Result<Option<Vec<u8>>> {
    let vm = VmId::new(vm)?;
    if added_names.len() != added_contents.len() {
        return Err(crate::Error::new(
            crate::ErrorKind::InvalidArgument,
            format!(
                "{} names for {} contents",
                added_names.len(),
                added_contents.len()
            ),
        ));
    }
    let added = added_names
        .iter()
        .zip(added_contents)
        .map(|(name, content)| Ok((MetadataName::new(name)?, &content[..])))
        .collect::<Result<Vec<_>>>()?;
    let removed = removed
        .iter()
        .map(|name| MetadataName::new(name))
        .collect::<Result<Vec<_>>>()?;
    let listing = Listing::from_entries(entries.iter().map(String::as_str));
    splice_cache(&vm, bytes, &listing, &added, &removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VmCache;
    use crate::codec::DecodeLimits;

    fn vm() -> VmId {
        VmId::new("0b1c2d3e-0000-4000-8000-000000000001").unwrap()
    }

    fn name(i: usize) -> MetadataName {
        MetadataName::new(&format!("2024{i:04}T010000Z.json")).unwrap()
    }

    fn metadata(i: usize) -> Vec<u8> {
        format!(
            "{{\"mode\":\"delta\",\"timestamp\":{i},\"size\":{},\"pad\":\"{}\"}}",
            i * 10,
            "x".repeat(2000)
        )
        .into_bytes()
    }

    fn listing(names: impl IntoIterator<Item = usize>) -> Listing {
        let owned: Vec<String> = names
            .into_iter()
            .map(|i| name(i).as_str().to_string())
            .chain(["cache.json.gz".into()])
            .collect();
        Listing::from_entries(owned.iter().map(String::as_str))
    }

    fn written(range: std::ops::Range<usize>) -> (VmCache, Vec<u8>) {
        let mut cache = VmCache::new(vm());
        for i in range {
            cache.add(&vm().key(&name(i)), &metadata(i)).unwrap();
        }
        let bytes = cache.commit();
        (cache, bytes)
    }

    #[test]
    fn an_add_and_a_delete_give_what_a_full_write_gives() {
        let (mut cache, bytes) = written(0..100);
        let new = metadata(100);
        let spliced = splice_cache(&vm(), &bytes, &listing(0..101), &[(name(100), &new)], &[])
            .unwrap()
            .unwrap();
        cache.add(&vm().key(&name(100)), &new).unwrap();
        let full = cache.commit();
        let limits = DecodeLimits::default();
        assert_eq!(
            codec::decode(&spliced, &limits).unwrap(),
            codec::decode(&full, &limits).unwrap()
        );
        // And the delete of the oldest, from the spliced bytes.
        let again = splice_cache(&vm(), &spliced, &listing(1..101), &[], &[name(0)])
            .unwrap()
            .unwrap();
        cache.remove_name(name(0));
        assert_eq!(
            codec::decode(&again, &limits).unwrap(),
            codec::decode(&cache.commit(), &limits).unwrap()
        );
        let decoded = VmCache::decode(vm(), &again, &limits).unwrap();
        assert_eq!(decoded.generation(), 3);
        assert_eq!(decoded.recorded_fingerprint(), Some(decoded.fingerprint()));
        // The index entry a writer publishes, without decoding the cache.
        assert_eq!(
            crate::index::entry_of_bytes(&vm(), &again, &limits).unwrap(),
            crate::index::entry_of(&decoded).unwrap()
        );
    }

    #[test]
    fn a_cache_the_header_does_not_prove_true_is_not_spliced() {
        let (_, bytes) = written(0..10);
        let new = metadata(10);
        // Another writer's file in the folder, that the cache lacks.
        assert_eq!(
            splice_cache(
                &vm(),
                &bytes,
                &listing((0..11).chain([50])),
                &[(name(10), &new)],
                &[]
            )
            .unwrap(),
            None
        );
        // A file said created that the listing lacks; one said deleted that it has.
        assert_eq!(
            splice_cache(&vm(), &bytes, &listing(0..10), &[(name(10), &new)], &[]).unwrap(),
            None
        );
        assert_eq!(
            splice_cache(&vm(), &bytes, &listing(0..10), &[], &[name(3)]).unwrap(),
            None
        );
        // A cache without a header (XO's).
        let xo = crate::gzip::write_member(b"{}", None, 6);
        assert_eq!(
            splice_cache(&vm(), &xo, &listing([10]), &[(name(10), &new)], &[]).unwrap(),
            None
        );
        // Metadata that cannot be cached is an error, as for an add.
        let error =
            splice_cache(&vm(), &bytes, &listing(0..11), &[(name(10), b"[1]")], &[]).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::InvalidMetadata);
    }
}
