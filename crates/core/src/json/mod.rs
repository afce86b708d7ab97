//! The JSON body of a cache: one object whose values are objects.
//!
//! Entries are kept as raw JSON text: decoding a record that nobody looks at
//! is wasted work, and raw text keeps every field and number exactly as the
//! writer put it. Parsing follows JSON.parse where the two could differ: a
//! duplicate key keeps its first position and takes its last value.

mod check;

pub use check::check_records;

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
    fn check_records_agrees_with_a_full_decode_on_the_grammar() {
        let full = |text: &str| {
            check_depth(text.as_bytes(), 8).and_then(|()| parse_entries(text).map(|_| ()))
        };
        for body in [
            r#"{"a":{"n":-0,"f":0.5e+10,"g":1E-5,"i":120,"z":0}}"#,
            r#"{"a":{"n":01}}"#,
            r#"{"a":{"n":1.}}"#,
            r#"{"a":{"n":.5}}"#,
            r#"{"a":{"n":-}}"#,
            r#"{"a":{"n":1e}}"#,
            r#"{"a":{"n":+1}}"#,
            r#"{"a":{"n":1.5.2}}"#,
            r#"{"a":{"t":true,"f":false,"n":null}}"#,
            r#"{"a":{"t":tru}}"#,
            r#"{"a":{"t":nul}}"#,
            r#"{"a":{"t":True}}"#,
            "{\"a\":{\"s\":\"x\u{1}y\"}}",
            "{\"a\":{\"s\":\"tab\there\"}}",
            r#"{"a":{"s":"\x"}}"#,
            r#"{"a":{"s":"\u12"}}"#,
            r#"{"a":{"s":"\u12g4"}}"#,
            r#"{"a":{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}}"#,
            r#"{"a":{"s":"\ud83d\u0041"}}"#,
            "{\"a\":{}}\u{c}",
            "\u{feff}{\"a\":{}}",
            " \t\r\n{ \"a\" : { \"b\" : [ 1 , [ ] , { } ] } }\n",
            r#"{"":{}}"#,
            r#"{"a":{"b":[1,]}}"#,
            r#"{"a":{"b":[,1]}}"#,
            r#"{"a":{"b":{"c"}}}"#,
            r#"{"a":{"b":{"c":}}}"#,
            r#"{"a":{"b":{,}}}"#,
            r#"{"a":{"b":1 2}}"#,
            r#"{"a":{"b":[1 2]}}"#,
            r#"{"a":{"b":"x"}"#,
            r#"{"a":{"b":"x}}"#,
            r#"{"a":{"b":[}}"#,
            r#"{"a":{"b":]}}"#,
            r#"{"a":{},"b":{}}"#,
            r#"{"a":{} "b":{}}"#,
            r#"{"a" {}}"#,
            r#"{a:{}}"#,
            r#"{"a":{}}}"#,
            "{}",
            "{ }",
        ] {
            assert_eq!(
                check_records(body, 8).is_ok(),
                full(body).is_ok(),
                "{body:?}"
            );
        }
        // JSON.parse makes this Infinity: refused here, kept as text by a
        // full decode (see check_records).
        let beyond = r#"{"a":{"n":1e400}}"#;
        assert!(full(beyond).is_ok());
        assert!(
            check_records(beyond, 8)
                .unwrap_err()
                .detail()
                .contains("number out of range")
        );
        let long = format!(r#"{{"a":{{"n":{}}}}}"#, "9".repeat(400));
        assert!(
            check_records(&long, 8)
                .unwrap_err()
                .detail()
                .contains("number out of range")
        );
        assert!(check_records(&format!(r#"{{"a":{{"n":{}}}}}"#, "9".repeat(300)), 8).is_ok());
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
