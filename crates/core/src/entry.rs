//! Cache entries: a metadata record plus `_filename` and `id`.
//!
//! Xen Orchestra has three writers that each shape entries differently
//! (field order, which extras are present, whether a raw `id` wins). Here
//! one function shapes every entry, whoever asks: the record's own fields in
//! their order, compact, then `isImmutable` (the record's own boolean, else
//! `false`), `_filename` and `id`, both equal to the entry's key. So an
//! entry added incrementally, rebuilt from the file, or carried over from an
//! XO-written cache is the same bytes, and XO's UI always finds the fields
//! it shows.

use crate::error::{Error, ErrorKind, Result};
use crate::json;
use indexmap::IndexMap;
use serde_json::value::RawValue;

/// Fields that brcache sets on every entry, after the record's own.
pub const IMMUTABLE_FIELD: &str = "isImmutable";
pub const FILENAME_FIELD: &str = "_filename";
pub const ID_FIELD: &str = "id";

fn is_trailing_field(name: &str) -> bool {
    name == IMMUTABLE_FIELD || name == FILENAME_FIELD || name == ID_FIELD
}

/// How deep a record may nest: inside a cache it sits one level down, and
/// the cache must still decode within the default depth limit.
pub const MAX_RECORD_DEPTH: usize = crate::codec::DecodeLimits::DEFAULT_MAX_DEPTH - 1;

/// The entry for the metadata file at `key`, from the file's bytes.
pub fn from_metadata(key: &str, metadata: &[u8]) -> Result<Box<RawValue>> {
    let text = std::str::from_utf8(metadata).map_err(|e| {
        Error::new(ErrorKind::InvalidMetadata, "metadata is not valid UTF-8")
            .at(e.valid_up_to() as u64)
    })?;
    // What a cache could not hold must not get into one: it would poison
    // every later decode of that cache.
    json::check_depth(metadata, MAX_RECORD_DEPTH).map_err(|e| {
        let at = e.offset().unwrap_or(0);
        Error::new(
            ErrorKind::InvalidMetadata,
            format!("metadata cannot be cached: {}", e.detail()),
        )
        .at(at)
    })?;
    let fields = parse_fields(text).map_err(|e| {
        Error::new(
            ErrorKind::InvalidMetadata,
            format!("metadata is not a JSON object: {}", e.detail()),
        )
    })?;
    Ok(shape(key, &fields))
}

/// The same entry reshaped for `key`: a no-op for entries brcache wrote,
/// a rewrite for entries other writers shaped differently.
pub fn normalize(key: &str, entry: &RawValue) -> Result<Box<RawValue>> {
    let text = entry.get();
    if is_shaped(key, text) {
        return Ok(entry.to_owned());
    }
    let fields = parse_fields(text)?;
    Ok(shape(key, &fields))
}

fn parse_fields(text: &str) -> Result<IndexMap<String, Box<RawValue>>> {
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        serde_json::from_str::<&RawValue>(text).map_err(|e| json::json_error(text, &e))?;
        return Err(Error::new(
            ErrorKind::EntryNotAnObject,
            format!("{} is not an object", json::describe(text.trim_start())),
        ));
    }
    serde_json::from_str(text).map_err(|e| json::json_error(text, &e))
}

fn shape(key: &str, fields: &IndexMap<String, Box<RawValue>>) -> Box<RawValue> {
    let immutable = fields
        .get(IMMUTABLE_FIELD)
        .is_some_and(|v| v.get() == "true");
    let mut out = String::with_capacity(fields.values().map(|v| v.get().len() + 16).sum());
    out.push('{');
    for (name, value) in fields {
        if is_trailing_field(name) {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        json::push_string(&mut out, name);
        out.push(':');
        json::push_minified(&mut out, value.get());
    }
    out.push_str(&suffix(key, immutable, out.len() > 1));
    RawValue::from_string(out).expect("shaped entries are valid JSON")
}

/// `,"isImmutable":<bool>,"_filename":<key>,"id":<key>}`, the tail every
/// shaped entry ends with.
fn suffix(key: &str, immutable: bool, after_fields: bool) -> String {
    let mut out = String::with_capacity(2 * key.len() + 48);
    if after_fields {
        out.push(',');
    }
    json::push_string(&mut out, IMMUTABLE_FIELD);
    out.push(':');
    out.push_str(if immutable { "true" } else { "false" });
    out.push(',');
    json::push_string(&mut out, FILENAME_FIELD);
    out.push(':');
    json::push_string(&mut out, key);
    out.push(',');
    json::push_string(&mut out, ID_FIELD);
    out.push(':');
    json::push_string(&mut out, key);
    out.push('}');
    out
}

/// Whether `text` is already exactly what [`shape`] would make of it:
/// compact, with the right tail and no other `_filename`/`id` field.
fn is_shaped(key: &str, text: &str) -> bool {
    [false, true].into_iter().any(|immutable| {
        if text.strip_prefix('{') == Some(suffix(key, immutable, false).as_str()) {
            return true;
        }
        let Some(head) = text.strip_suffix(suffix(key, immutable, true).as_str()) else {
            return false;
        };
        // The head must be `{` + compact fields, none of the trailing ones.
        head.len() > 1
            && head.starts_with('{')
            && json::is_compact(head)
            && parse_fields(&format!("{head}}}"))
                .is_ok_and(|fields| !fields.keys().any(|name| is_trailing_field(name)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/xo-vm-backups/v/20240101T000000Z.json";

    #[test]
    fn every_writer_gets_the_same_shape() {
        let from_file = from_metadata(KEY, br#"{ "mode": "full", "size": 1 }"#).unwrap();
        assert_eq!(
            from_file.get(),
            r#"{"mode":"full","size":1,"isImmutable":false,"_filename":"/xo-vm-backups/v/20240101T000000Z.json","id":"/xo-vm-backups/v/20240101T000000Z.json"}"#
        );
        // XO's regeneration adds _filename and isImmutable, then id; its
        // add path has no isImmutable; cleanVm lets a raw id win.
        let xo_regen = RawValue::from_string(format!(
            r#"{{"mode":"full","size":1,"_filename":"{KEY}","isImmutable":false,"id":"{KEY}"}}"#
        ))
        .unwrap();
        let xo_add = RawValue::from_string(format!(
            r#"{{"mode":"full","size":1,"_filename":"{KEY}","id":"{KEY}"}}"#
        ))
        .unwrap();
        let xo_clean =
            RawValue::from_string(r#"{"_filename":"x","id":"y","mode":"full","size":1}"#.into())
                .unwrap();
        assert_eq!(normalize(KEY, &xo_regen).unwrap().get(), from_file.get());
        assert_eq!(normalize(KEY, &xo_add).unwrap().get(), from_file.get());
        assert_eq!(normalize(KEY, &xo_clean).unwrap().get(), from_file.get());
        assert_eq!(normalize(KEY, &from_file).unwrap().get(), from_file.get());
    }

    #[test]
    fn an_empty_record_still_gets_its_key() {
        let entry = from_metadata(KEY, b"{}").unwrap();
        assert_eq!(
            entry.get(),
            format!(r#"{{"isImmutable":false,"_filename":"{KEY}","id":"{KEY}"}}"#)
        );
        assert_eq!(normalize(KEY, &entry).unwrap().get(), entry.get());
    }

    #[test]
    fn an_immutable_record_stays_marked() {
        let entry = from_metadata(KEY, br#"{"isImmutable":true,"mode":"full"}"#).unwrap();
        assert!(
            entry
                .get()
                .starts_with(r#"{"mode":"full","isImmutable":true,"#)
        );
        assert_eq!(normalize(KEY, &entry).unwrap().get(), entry.get());
    }

    #[test]
    fn metadata_that_is_not_an_object_is_refused() {
        let deep = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(MAX_RECORD_DEPTH),
            "]".repeat(MAX_RECORD_DEPTH)
        );
        let lone = br#"{"a":"\ud800"}"#;
        for bad in [
            &b"[]"[..],
            b"null",
            b"{",
            b"",
            b"\xff",
            deep.as_bytes(),
            lone,
        ] {
            let err = from_metadata(KEY, bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidMetadata, "{bad:?}");
        }
    }
}
