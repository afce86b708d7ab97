//! A decoded cache: the header and the raw entries, in order.

use crate::error::Result;
use crate::header::CacheHeader;
use crate::json::{self, RawEntries};
use serde_json::value::RawValue;

#[derive(Debug, Clone, Default)]
pub struct CacheDocument {
    header: Option<CacheHeader>,
    entries: RawEntries,
}

impl CacheDocument {
    pub fn from_parts(header: Option<CacheHeader>, entries: RawEntries) -> Self {
        CacheDocument { header, entries }
    }

    /// Parses a JSON body (an object of objects) into a document without
    /// a header.
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(CacheDocument::from_parts(None, json::parse_entries(text)?))
    }

    /// Our header, or `None` for a cache written by Xen Orchestra.
    pub fn header(&self) -> Option<&CacheHeader> {
        self.header.as_ref()
    }

    /// The generation: 0 when there is no header.
    pub fn generation(&self) -> u64 {
        self.header.map_or(0, |h| h.generation)
    }

    pub fn set_header(&mut self, header: Option<CacheHeader>) {
        self.header = header;
    }

    pub fn entries(&self) -> &RawEntries {
        &self.entries
    }

    pub fn into_entries(self) -> RawEntries {
        self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.entries.get(key).map(|v| &**v)
    }

    /// The body as compact JSON, entries in order.
    pub fn to_json(&self) -> String {
        let size: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = String::with_capacity(size + 2);
        out.push('{');
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json::push_string(&mut out, key);
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }
}

impl PartialEq for CacheDocument {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}
