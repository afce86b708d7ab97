//! brcache's own header, carried in a gzip FEXTRA sub-field.
//!
//! Xen Orchestra reads `cache.json.gz` with a plain gunzip, which skips
//! FEXTRA, so whatever we put there is invisible to it and the body stays
//! exactly the JSON it expects.
//!
//! Sub-field `BC`, little-endian, version 1:
//!
//! | offset | size | field                                                |
//! |--------|------|------------------------------------------------------|
//! | 0      | 1    | format version (1)                                   |
//! | 1      | 1    | flags: bit 0 = a fingerprint follows                 |
//! | 2      | 8    | generation: every write of the cache increments it   |
//! | 10     | 4    | number of entries                                    |
//! | 14     | 32   | fingerprint of the set of metadata names (if flagged)|
//!
//! Later versions may only append fields, so a reader of version 1 reads the
//! prefix it knows of any version. A sub-field too short for its own flags
//! is ignored: the cache is then read as one without a header (generation 0,
//! no fingerprint), which only costs a full coherency check.

use crate::fingerprint::Fingerprint;
use crate::gzip;

/// The FEXTRA sub-field identifier ("BC", brcache).
pub const SUBFIELD_ID: [u8; 2] = *b"BC";
/// The header format this code writes.
pub const FORMAT_VERSION: u8 = 1;

const FLAG_FINGERPRINT: u8 = 0x01;
const FIXED_LEN: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheHeader {
    /// The header format version the writer used.
    pub version: u8,
    /// How many times this cache has been written; 0 for a cache without
    /// a header (written by Xen Orchestra).
    pub generation: u64,
    /// The number of entries the writer stored.
    pub entries: u32,
    /// The fingerprint of the metadata names the entries cover.
    pub fingerprint: Option<Fingerprint>,
}

impl CacheHeader {
    /// The sub-field payload for this header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + 32);
        out.push(FORMAT_VERSION);
        out.push(if self.fingerprint.is_some() {
            FLAG_FINGERPRINT
        } else {
            0
        });
        out.extend_from_slice(&self.generation.to_le_bytes());
        out.extend_from_slice(&self.entries.to_le_bytes());
        if let Some(fingerprint) = &self.fingerprint {
            out.extend_from_slice(fingerprint.as_bytes());
        }
        out
    }

    /// Parses a sub-field payload; `None` when it is malformed.
    pub fn from_bytes(data: &[u8]) -> Option<CacheHeader> {
        if data.len() < FIXED_LEN || data[0] == 0 {
            return None;
        }
        let flags = data[1];
        let generation = u64::from_le_bytes(data[2..10].try_into().ok()?);
        let entries = u32::from_le_bytes(data[10..14].try_into().ok()?);
        let fingerprint = if flags & FLAG_FINGERPRINT != 0 {
            let bytes: [u8; 32] = data.get(FIXED_LEN..FIXED_LEN + 32)?.try_into().ok()?;
            Some(Fingerprint::from_bytes(bytes))
        } else {
            None
        };
        Some(CacheHeader {
            version: data[0],
            generation,
            entries,
            fingerprint,
        })
    }

    /// Finds our header among the sub-fields of an FEXTRA payload.
    pub fn from_extra(extra: Option<&[u8]>) -> Option<CacheHeader> {
        gzip::subfields(extra?)
            .into_iter()
            .find(|(id, _)| *id == SUBFIELD_ID)
            .and_then(|(_, data)| CacheHeader::from_bytes(data))
    }

    /// The complete FEXTRA payload carrying this header.
    pub fn to_extra(&self) -> Vec<u8> {
        gzip::subfield(SUBFIELD_ID, &self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let header = CacheHeader {
            version: FORMAT_VERSION,
            generation: 42,
            entries: 7,
            fingerprint: Some(Fingerprint::of_names(["a.json", "b.json"])),
        };
        assert_eq!(
            CacheHeader::from_extra(Some(&header.to_extra())),
            Some(header)
        );
        let bare = CacheHeader {
            fingerprint: None,
            ..header
        };
        assert_eq!(CacheHeader::from_bytes(&bare.to_bytes()), Some(bare));
    }

    #[test]
    fn later_versions_are_read_by_prefix() {
        let mut bytes = CacheHeader {
            version: FORMAT_VERSION,
            generation: 3,
            entries: 1,
            fingerprint: None,
        }
        .to_bytes();
        bytes[0] = 9;
        bytes.extend_from_slice(b"future fields");
        let header = CacheHeader::from_bytes(&bytes).unwrap();
        assert_eq!((header.version, header.generation), (9, 3));
    }

    #[test]
    fn malformed_is_ignored() {
        assert_eq!(CacheHeader::from_bytes(&[1, 1, 0]), None);
        // Flags promise a fingerprint that is not there.
        let mut bytes = vec![1, FLAG_FINGERPRINT];
        bytes.extend_from_slice(&[0; 12]);
        assert_eq!(CacheHeader::from_bytes(&bytes), None);
    }
}
