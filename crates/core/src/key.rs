//! Cache keys: which metadata file an entry stands for.
//!
//! Xen Orchestra keys an entry by the metadata file's path relative to the
//! repository root, usually with a leading slash
//! (`/xo-vm-backups/<vm>/<date>.json`), sometimes without. Both are read;
//! the leading-slash form is written. Whatever a cache says, a key must name
//! a `.json` file directly inside the VM's own folder: a cache is untrusted
//! input, and a key is what a caller later reads or deletes.

use crate::error::{Error, ErrorKind, Result};

/// The folder holding one directory per VM.
pub const BACKUP_DIR: &str = "xo-vm-backups";
/// The cache file in each VM folder.
pub const CACHE_FILE: &str = "cache.json.gz";

/// A VM folder name (the source VM's UUID), checked to be one plain path
/// component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmId(String);

impl VmId {
    pub fn new(id: &str) -> Result<VmId> {
        if is_plain_component(id) {
            Ok(VmId(id.to_string()))
        } else {
            Err(Error::new(
                ErrorKind::InvalidKey,
                format!("{id:?} is not a VM folder name"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `xo-vm-backups/<vm>`, relative to the repository root.
    pub fn dir(&self) -> String {
        format!("{BACKUP_DIR}/{}", self.0)
    }

    /// The canonical key of a metadata file of this VM.
    pub fn key(&self, name: &MetadataName) -> String {
        format!("/{BACKUP_DIR}/{}/{}", self.0, name.0)
    }

    /// The metadata file a key names, if the key names one of this VM's.
    pub fn parse_key(&self, key: &str) -> Result<MetadataName> {
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidKey,
                format!(
                    "cache key {key:?} {why} (VM folder {BACKUP_DIR}/{})",
                    self.0
                ),
            )
        };
        let relative = key.strip_prefix('/').unwrap_or(key);
        let rest = relative
            .strip_prefix(BACKUP_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| invalid("is not under the backup folder"))?;
        let name = rest
            .strip_prefix(self.0.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| invalid("belongs to another VM folder"))?;
        MetadataName::new(name).map_err(|e| invalid(e.detail()))
    }
}

impl VmId {
    /// Checks a cache's keys: each names a metadata file of this VM, and no
    /// two name the same file (as `/x` and `x` would). Returns the names.
    pub fn check_keys<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<MetadataName>> {
        let mut names = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for key in keys {
            let name = self.parse_key(key)?;
            if !seen.insert(name.clone()) {
                return Err(Error::new(
                    ErrorKind::InvalidKey,
                    format!("cache key {key:?} names a file another key already names"),
                ));
            }
            names.push(name);
        }
        Ok(names)
    }
}

/// The file name of a restore point's metadata (`<date>.json`), checked to
/// be a plain `.json` file name: no separator, no `..`, not hidden.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct MetadataName(String);

impl TryFrom<String> for MetadataName {
    type Error = Error;
    fn try_from(name: String) -> Result<Self> {
        MetadataName::new(&name)
    }
}

impl From<MetadataName> for String {
    fn from(name: MetadataName) -> String {
        name.0
    }
}

impl MetadataName {
    pub fn new(name: &str) -> Result<MetadataName> {
        let why = if !is_plain_component(name) {
            "is not a plain file name inside the VM folder"
        } else if name.len() <= ".json".len() || !name.ends_with(".json") {
            "does not name a .json metadata file"
        } else {
            return Ok(MetadataName(name.to_string()));
        };
        Err(Error::new(ErrorKind::InvalidKey, format!("{name:?} {why}")))
    }

    /// Whether a directory entry is a restore point's metadata file, as
    /// Xen Orchestra decides it (any `*.json`), minus what could never be
    /// one (hidden or unsafe names).
    pub fn is_metadata_file(name: &str) -> bool {
        MetadataName::new(name).is_ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One path component that cannot climb, hide or smuggle a separator.
fn is_plain_component(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> VmId {
        VmId::new("0f3c9e2a-1111-2222-3333-444455556666").unwrap()
    }

    #[test]
    fn both_key_forms_are_read_and_the_slash_form_written() {
        let vm = vm();
        let with = vm.parse_key(&format!(
            "/xo-vm-backups/{}/20240131T020005Z.json",
            vm.as_str()
        ));
        let without = vm.parse_key(&format!(
            "xo-vm-backups/{}/20240131T020005Z.json",
            vm.as_str()
        ));
        assert_eq!(with.clone().unwrap(), without.unwrap());
        assert_eq!(
            vm.key(&with.unwrap()),
            format!("/xo-vm-backups/{}/20240131T020005Z.json", vm.as_str())
        );
    }

    #[test]
    fn keys_outside_the_vm_folder_are_rejected_by_name() {
        let vm = vm();
        let id = vm.as_str().to_string();
        for key in [
            String::new(),
            "/".to_string(),
            format!("/xo-vm-backups/{id}/../other/1.json"),
            format!("/xo-vm-backups/{id}/.."),
            format!("/xo-vm-backups/{id}/sub/1.json"),
            format!("/xo-vm-backups/{id}/../../etc/passwd.json"),
            "/xo-vm-backups/another-vm/1.json".to_string(),
            format!("/xo-vm-backups/{id}x/1.json"),
            format!("/etc/{id}/1.json"),
            format!("//xo-vm-backups/{id}/1.json"),
            format!("/xo-vm-backups/{id}/1.json\0"),
            format!("/xo-vm-backups/{id}/.hidden.json"),
            format!("/xo-vm-backups/{id}/cache.json.gz"),
            format!("/xo-vm-backups/{id}/1.xva"),
            format!("/xo-vm-backups/{id}/.json"),
            format!("/xo-vm-backups/{id}/a\\b.json"),
            format!("/xo-vm-backups/{id}/"),
        ] {
            let err = vm.parse_key(&key).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidKey);
            assert!(err.detail().contains(&format!("{key:?}")), "{key:?}: {err}");
        }
    }

    #[test]
    fn vm_ids_are_plain_components() {
        for bad in ["", ".", "..", "a/b", ".hidden", "a\0"] {
            assert!(VmId::new(bad).is_err(), "{bad:?}");
        }
    }
}
