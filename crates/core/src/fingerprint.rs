//! A fingerprint of a set of metadata file names.
//!
//! A cache records the fingerprint of the names it covers; a checker hashes
//! the names it lists and, when both agree, knows without reading anything
//! that the cache covers exactly the files present (the fast path). Xen
//! Orchestra compares only counts, which misses one lost add plus one lost
//! remove; a set hash does not.

use sha2::{Digest, Sha256};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// SHA-256 over the names sorted bytewise, each followed by a NUL (which
    /// no file name contains), so the result ignores order and duplicates
    /// cannot be confused with other sets.
    pub fn of_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Fingerprint {
        let mut names: Vec<&str> = names.into_iter().collect();
        names.sort_unstable();
        names.dedup();
        let mut hasher = Sha256::new();
        for name in names {
            hasher.update(name.as_bytes());
            hasher.update([0]);
        }
        Fingerprint(hasher.finalize().into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Fingerprint {
        Fingerprint(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, for reports and JS.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_but_content_does() {
        let a = Fingerprint::of_names(["x.json", "y.json"]);
        assert_eq!(a, Fingerprint::of_names(["y.json", "x.json"]));
        assert_ne!(a, Fingerprint::of_names(["x.json", "z.json"]));
        assert_ne!(a, Fingerprint::of_names(["x.jsony.json"]));
        assert_ne!(Fingerprint::of_names([]), a);
    }
}
