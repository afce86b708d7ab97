//! The JSON body of a cache: one object whose values are objects.
//!
//! Entries are kept as raw JSON text: decoding a record that nobody looks at
//! is wasted work, and raw text keeps every field and number exactly as the
//! writer put it. Parsing follows JSON.parse where the two could differ: a
//! duplicate key keeps its first position and takes its last value.

use crate::error::{Error, ErrorKind, Result};
use indexmap::IndexMap;
use serde_json::value::RawValue;

/// The entries of a cache body, in document order.
pub type RawEntries = IndexMap<String, Box<RawValue>>;

/// Checks what JSON.parse would let through but the core would not: arrays
/// or objects nested deeper than `max_depth` (so that a hostile body cannot
/// exhaust a recursive parser's stack), and `\u` escapes of lone UTF-16
/// surrogates (which no Rust string can hold).
///
/// This runs on every decode, including the bindings' fast path that hands
/// the text to JSON.parse, so every surface refuses the same bodies.
pub fn check_depth(text: &[u8], max_depth: usize) -> Result<()> {
    let mut depth = 0usize;
    let mut i = 0;
    let len = text.len();
    while i < len {
        match text[i] {
            // Most of a cache's bytes are inside strings: skip them with a
            // vectorised search for the only two bytes that matter there.
            b'"' => loop {
                // A backslash as the last byte leaves nothing to skip to:
                // an unterminated string, for the parser to report.
                let Some(rest) = text.get(i + 1..) else {
                    return Ok(());
                };
                match memchr::memchr2(b'"', b'\\', rest) {
                    None => return Ok(()),
                    Some(found) if text[i + 1 + found] == b'\\' => {
                        i = escape_end(text, i + 1 + found)?;
                    }
                    Some(found) => {
                        i += found + 1;
                        break;
                    }
                }
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Error::new(
                        ErrorKind::TooDeep,
                        format!("JSON nests deeper than {max_depth} levels"),
                    )
                    .at(i as u64));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The index of the last byte of the escape sequence starting with the
/// backslash at `at`; an error for a lone surrogate.
fn escape_end(text: &[u8], at: usize) -> Result<usize> {
    let hex = |from: usize| {
        text.get(from..from + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    if text.get(at + 1) != Some(&b'u') {
        return Ok(at + 1);
    }
    let lone = || {
        Error::new(
            ErrorKind::InvalidJson,
            "a \\u escape of a lone UTF-16 surrogate",
        )
        .at(at as u64)
    };
    match hex(at + 2) {
        Some(0xd800..=0xdbff) => {
            let paired = text.get(at + 6..at + 8) == Some(b"\\u")
                && matches!(hex(at + 8), Some(0xdc00..=0xdfff));
            if paired { Ok(at + 11) } else { Err(lone()) }
        }
        Some(0xdc00..=0xdfff) => Err(lone()),
        // Malformed escapes are the parser's to report.
        _ => Ok(at + 1),
    }
}

/// Parses a cache body into its entries, checking the shape: an object of
/// objects.
pub fn parse_entries(text: &str) -> Result<RawEntries> {
    let first = text.bytes().position(|b| !b.is_ascii_whitespace());
    match first.map(|i| text.as_bytes()[i]) {
        Some(b'{') => {}
        Some(_) => {
            // Valid JSON of another type is "not an object"; anything else
            // is reported with its syntax error.
            serde_json::from_str::<&RawValue>(text).map_err(|e| json_error(text, &e))?;
            return Err(Error::new(
                ErrorKind::NotAnObject,
                "the cache body is JSON but not an object",
            )
            .at(first.unwrap() as u64));
        }
        None => {
            return Err(Error::new(ErrorKind::InvalidJson, "the cache body is empty").at(0));
        }
    }
    let entries: RawEntries = serde_json::from_str(text).map_err(|e| json_error(text, &e))?;
    for (key, value) in &entries {
        if !value.get().starts_with('{') {
            return Err(Error::new(
                ErrorKind::EntryNotAnObject,
                format!(
                    "the entry {key:?} is {}, not an object",
                    describe(value.get())
                ),
            ));
        }
    }
    Ok(entries)
}

/// A JSON syntax error, located by byte offset as well as line and column.
pub fn json_error(text: &str, error: &serde_json::Error) -> Error {
    let offset = offset_of(text, error.line(), error.column());
    Error::new(
        ErrorKind::InvalidJson,
        format!(
            "invalid JSON at line {} column {}: {}",
            error.line(),
            error.column(),
            strip_location(&error.to_string())
        ),
    )
    .at(offset as u64)
}

fn strip_location(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
}

/// serde_json reports 1-based lines and 1-based byte columns.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = text
        .match_indices('\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(i, _)| i + 1);
    let line_start = if line <= 1 { 0 } else { line_start };
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// A short description of a JSON value's type, for error messages.
pub fn describe(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't') | Some(b'f') => "a boolean",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// Appends `value` as a JSON string literal, escaped as JSON.stringify does.
pub fn push_string(out: &mut String, value: &str) {
    // serde_json escapes exactly the characters JSON.stringify escapes for
    // well-formed strings: quote, backslash and control characters.
    out.push_str(&serde_json::to_string(value).expect("strings always serialize"));
}

/// Appends valid JSON `raw` without the whitespace between its tokens, as
/// JSON.stringify would have written it.
pub fn push_minified(out: &mut String, raw: &str) {
    if is_compact(raw) {
        out.push_str(raw);
        return;
    }
    let bytes = raw.as_bytes();
    let mut i = 0;
    let mut run_start = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i),
            b' ' | b'\t' | b'\n' | b'\r' => {
                out.push_str(&raw[run_start..i]);
                i += 1;
                run_start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&raw[run_start..]);
}

/// Whether valid JSON `raw` has no whitespace outside its strings.
pub fn is_compact(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i),
            b' ' | b'\t' | b'\n' | b'\r' => return false,
            _ => i += 1,
        }
    }
    true
}

/// The index just past the string literal that starts at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_inside_strings() {
        assert!(check_depth(br#"{"a":"[[[[[[\"{{{{"}"#, 1).is_ok());
        assert!(check_depth(br#"{"a":{"b":[1]}}"#, 3).is_ok());
        let err = check_depth(br#"{"a":{"b":[1]}}"#, 2).unwrap_err();
        assert_eq!((err.kind(), err.offset()), (ErrorKind::TooDeep, Some(10)));
    }

    #[test]
    fn lone_surrogates_are_refused_and_pairs_accepted() {
        assert!(check_depth(br#"{"a":"\ud83d\ude80 \u00e9 \n"}"#, 4).is_ok());
        for bad in [
            &br#"{"\ud800":{}}"#[..],
            br#"{"a":"\udc00"}"#,
            br#"{"a":"\ud800\u0041"}"#,
            br#"{"a":"\ud800"#,
        ] {
            let err = check_depth(bad, 4).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidJson,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            parse_entries("[]").unwrap_err().kind(),
            ErrorKind::NotAnObject
        );
        assert_eq!(
            parse_entries(" null").unwrap_err().kind(),
            ErrorKind::NotAnObject
        );
        assert_eq!(
            parse_entries("[").unwrap_err().kind(),
            ErrorKind::InvalidJson
        );
        assert_eq!(
            parse_entries("").unwrap_err().kind(),
            ErrorKind::InvalidJson
        );
        let err = parse_entries(r#"{"a":{},"b":[]}"#).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::EntryNotAnObject);
        assert!(err.detail().contains("\"b\""), "{err}");
    }

    #[test]
    fn check_records_refuses_what_a_full_decode_refuses() {
        let ok = |text: &str| check_records(text, 4).map(|k| k.join(" "));
        assert_eq!(
            ok(r#" {"a":{"x":[1,{"y":null}]},"b\u00e9":{}} "#).unwrap(),
            "a bé"
        );
        assert_eq!(ok(r#"{"a":{},"a":{"z":1}}"#).unwrap(), "a a");
        for bad in [
            "",
            "[]",
            "null",
            r#"{"a":1}"#,
            r#"{"a":[]}"#,
            r#"{"a":{}} x"#,
            r#"{"a":{},}"#,
            r#"{"a":{"b":{"c":{"d":{}}}}}"#,
            r#"{"a":{"s":"\ud800"}}"#,
            r#"{"\udc00":{}}"#,
            r#"{"a":{"\ud800x":1}}"#,
        ] {
            assert!(ok(bad).is_err(), "{bad:?} accepted");
            let full = check_depth(bad.as_bytes(), 4).and_then(|()| parse_entries(bad).map(|_| ()));
            assert!(full.is_err(), "{bad:?}: the full decode accepts it");
        }
        assert!(check_records(r#"{"a":{"b":{"c":{}}}}"#, 4).is_ok());
        assert!(check_depth(br#"{"a":{"b":{"c":{}}}}"#, 4).is_ok());
    }

    #[test]
    fn json_errors_are_located() {
        let err = parse_entries("{\"a\":{},\n \"b\" {}}").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidJson);
        assert_eq!(err.offset(), Some(14));
        assert!(err.detail().contains("line 2"), "{err}");
    }

    #[test]
    fn minify_keeps_strings_intact() {
        let raw = "{ \"a b\" : [ 1 , \"x \\\" y\" ],\n\t\"c\": {} }";
        let mut out = String::new();
        push_minified(&mut out, raw);
        assert_eq!(out, r#"{"a b":[1,"x \" y"],"c":{}}"#);
        assert!(is_compact(&out));
        assert!(!is_compact(raw));
    }

    #[test]
    fn duplicate_keys_behave_like_json_parse() {
        let entries = parse_entries(r#"{"a":{"v":1},"b":{},"a":{"v":2}}"#).unwrap();
        let keys: Vec<_> = entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(entries["a"].get(), r#"{"v":2}"#);
    }
}

/// Checks a cache body in one pass, as a reader that hands the text on
/// (to JSON.parse) needs it checked: valid JSON, an object of objects,
/// nested at most `max_depth` deep, every string a Rust string could hold
/// (no lone surrogate). Returns its keys, in document order.
///
/// A body it accepts, [`check_depth`] and [`parse_entries`] accept too, so
/// that handing the text on never lets through what a full decode would
/// refuse; what it refuses, the caller decodes fully (for the exact error,
/// or the answer: a number beyond f64, which JSON.parse makes Infinity, is
/// refused here, where a full decode keeps it as text).
/// One pass rather than those two: the fast path of a listing of full
/// records runs this over every byte of every cache.
pub fn check_records(text: &str, max_depth: usize) -> Result<Vec<std::borrow::Cow<'_, str>>> {
    use serde::Deserializer as _;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let keys = deserializer
        .deserialize_map(checked::Records { max_depth })
        .and_then(|keys| deserializer.end().map(|()| keys))
        .map_err(|e| json_error(text, &e))?;
    Ok(keys)
}

/// The visitors of [`check_records`]: each value is walked, not built,
/// and strings are parsed (so that their escapes are checked), not skipped.
mod checked {
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    pub struct Records {
        pub max_depth: usize,
    }

    impl<'de> Visitor<'de> for Records {
        type Value = Vec<Cow<'de, str>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of objects")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            if self.max_depth < 1 {
                return Err(de::Error::custom("JSON nests too deep"));
            }
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<Key<'de>>()? {
                keys.push(key.0);
                map.next_value_seed(Value {
                    depth_left: self.max_depth - 1,
                    object: true,
                })?;
            }
            Ok(keys)
        }
    }

    /// A string, borrowed when it has no escapes.
    struct Key<'de>(Cow<'de, str>);

    impl<'de> de::Deserialize<'de> for Key<'de> {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl<'de> Visitor<'de> for KeyVisitor {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(s)))
                }
                fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(s.to_string())))
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }

    /// Any value (`object`: only an object), at most `depth_left` levels
    /// of arrays and objects deep, itself included.
    #[derive(Clone, Copy)]
    struct Value {
        depth_left: usize,
        object: bool,
    }

    impl Value {
        fn nested<E: de::Error>(self) -> Result<Value, E> {
            if self.depth_left == 0 {
                return Err(E::custom("JSON nests too deep"));
            }
            Ok(Value {
                depth_left: self.depth_left - 1,
                object: false,
            })
        }

        fn scalar<E: de::Error>(self) -> Result<(), E> {
            if self.object {
                return Err(E::custom("an entry is not an object"));
            }
            Ok(())
        }
    }

    impl<'de> DeserializeSeed<'de> for Value {
        type Value = ();

        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Value {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.scalar()
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.scalar()
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.scalar()
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.scalar()
        }
        fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<(), E> {
            self.scalar()
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.scalar()
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.scalar()
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            self.scalar()?;
            let inner = self.nested()?;
            while seq.next_element_seed(inner)?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let inner = self.nested()?;
            while map.next_key::<Key<'de>>()?.is_some() {
                map.next_value_seed(inner)?;
            }
            Ok(())
        }
    }
}
