//! The check a listing of full records runs over every byte of every cache
//! before it hands the text on to JSON.parse.
//!
//! It is a scanner, not a parser: nothing is built, strings are skipped
//! with a vectorised search for their two special bytes, and only the
//! top-level keys are kept. serde_json walking the same text with a
//! visitor (the first version of this check) took twice the time of the
//! inflate that precedes it, and made the listing 11% slower than the
//! release before; `tests/fuzz.rs` holds the two to the same verdicts.

use super::json_error;
use crate::error::{Error, ErrorKind, Result};
use std::borrow::Cow;

/// Checks a cache body in one pass, as a reader that hands the text on
/// (to JSON.parse) needs it checked: valid JSON, an object of objects,
/// nested at most `max_depth` deep, every string a Rust string could hold
/// (no lone surrogate). Returns its keys, in document order.
///
/// A body it accepts, [`super::check_depth`] and [`super::parse_entries`]
/// accept too, so that handing the text on never lets through what a full
/// decode would refuse; what it refuses, the caller decodes fully (for the
/// exact error, or the answer: a number beyond f64, which JSON.parse makes
/// Infinity, is refused here, where a full decode keeps it as text).
pub fn check_records(text: &str, max_depth: usize) -> Result<Vec<Cow<'_, str>>> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
        open: Vec::new(),
    };
    scanner.records(max_depth)
}

/// The first byte from `from` on that ends a string's plain run: a quote,
/// a backslash or a control character (or the end). Eight bytes at a time:
/// most of a cache's bytes are in strings, most of them short (where a
/// search that sets up vectors for each string costs more than it saves).
fn special(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte's high bit is set where it is a quote, a backslash or
        // below 0x20 (the classic "has a zero byte" test, exact for the
        // first byte it flags, which is all that is used).
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flagged = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let flagged = flagged & HIGH;
        if flagged != 0 {
            return at + (flagged.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while let Some(&b) = bytes.get(at) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        at += 1;
    }
    at
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// The arrays and objects the value being scanned is inside.
    open: Vec<u8>,
}

impl<'a> Scanner<'a> {
    fn records(&mut self, max_depth: usize) -> Result<Vec<Cow<'a, str>>> {
        self.whitespace();
        if self.peek() != Some(b'{') {
            return Err(self.error("the cache body is not an object"));
        }
        if max_depth < 1 {
            return Err(self.too_deep());
        }
        self.at += 1;
        let mut keys = Vec::new();
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                keys.push(self.key()?);
                if self.peek() != Some(b'{') {
                    return Err(self.error("an entry is not an object"));
                }
                self.value(max_depth - 1)?;
                self.whitespace();
                match self.next() {
                    Some(b',') => self.whitespace(),
                    Some(b'}') => break,
                    _ => return Err(self.error("expected ',' or '}'")),
                }
            }
        }
        self.whitespace();
        if self.at != self.bytes.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(keys)
    }

    /// A top-level key, its colon and the whitespace after it; borrowed
    /// unless it has escapes.
    fn key(&mut self) -> Result<Cow<'a, str>> {
        let start = self.at;
        let escaped = self.member()?;
        let quoted = self.text[start..self.at].trim_end_matches([' ', '\t', '\n', '\r', ':']);
        Ok(if escaped {
            Cow::Owned(serde_json::from_str(quoted).map_err(|e| json_error(quoted, &e))?)
        } else {
            Cow::Borrowed(&quoted[1..quoted.len() - 1])
        })
    }

    /// A member's key, its colon and the whitespace after it; whether the
    /// key has escapes.
    fn member(&mut self) -> Result<bool> {
        if self.next() != Some(b'"') {
            return Err(self.error("expected a key"));
        }
        let escaped = self.string()?;
        self.whitespace();
        if self.next() != Some(b':') {
            return Err(self.error("expected ':'"));
        }
        self.whitespace();
        Ok(escaped)
    }

    /// One value and everything inside it, at most `depth_left` arrays
    /// and objects deep: a loop over an explicit stack, so that no input
    /// reaches the call stack's limit.
    fn value(&mut self, depth_left: usize) -> Result<()> {
        self.open.clear();
        loop {
            // A value starts here.
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.open.push(open);
                    if self.open.len() > depth_left {
                        return Err(self.too_deep());
                    }
                    self.at += 1;
                    self.whitespace();
                    match (open, self.peek()) {
                        (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                            self.at += 1;
                            self.open.pop();
                        }
                        (b'{', _) => {
                            self.member()?;
                            continue;
                        }
                        _ => continue,
                    }
                }
                Some(b'"') => {
                    self.at += 1;
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return Err(self.error("expected a value")),
            }
            // A value ended: close what it ends, until another value starts.
            loop {
                let Some(&inside) = self.open.last() else {
                    return Ok(());
                };
                self.whitespace();
                match (inside, self.next()) {
                    (b'{', Some(b',')) => {
                        self.whitespace();
                        self.member()?;
                        break;
                    }
                    (b'[', Some(b',')) => {
                        self.whitespace();
                        break;
                    }
                    (b'{', Some(b'}')) | (b'[', Some(b']')) => {
                        self.open.pop();
                    }
                    _ => return Err(self.error("expected ',' or a closing bracket")),
                }
            }
        }
    }

    /// The rest of a string whose opening quote is behind; whether it has
    /// escapes.
    fn string(&mut self) -> Result<bool> {
        let mut escaped = false;
        loop {
            self.at = special(self.bytes, self.at);
            match self.next() {
                Some(b'"') => return Ok(escaped),
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => {
                    self.at -= 1;
                    // serde_json and JSON.parse refuse them raw.
                    return Err(self.error("a control character in a string"));
                }
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// An escape whose backslash is behind.
    fn escape(&mut self) -> Result<()> {
        match self.next() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(()),
            Some(b'u') => match self.hex()? {
                0xd800..=0xdbff => {
                    if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                        return Err(self.lone_surrogate());
                    }
                    self.at += 2;
                    match self.hex()? {
                        0xdc00..=0xdfff => Ok(()),
                        _ => Err(self.lone_surrogate()),
                    }
                }
                0xdc00..=0xdfff => Err(self.lone_surrogate()),
                _ => Ok(()),
            },
            _ => Err(self.error("an invalid escape")),
        }
    }

    fn hex(&mut self) -> Result<u16> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.error("an invalid \\u escape"))?;
        self.at += 4;
        // Four ASCII hex digits always parse.
        Ok(u16::from_str_radix(std::str::from_utf8(digits).unwrap_or("0"), 16).unwrap_or(0))
    }

    /// JSON's number grammar; a number that is finite only as text (beyond
    /// f64, which JSON.parse makes Infinity) is refused.
    fn number(&mut self) -> Result<()> {
        let start = self.at;
        self.eat(b'-');
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("an invalid number")),
        }
        let mut fraction_or_exponent = false;
        if self.eat(b'.') {
            self.some_digits()?;
            fraction_or_exponent = true;
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            self.some_digits()?;
            fraction_or_exponent = true;
        }
        // Below 309 digits, an integer is a finite f64.
        if fraction_or_exponent || self.at - start > 300 {
            let value: f64 = self.text[start..self.at].parse().unwrap_or(f64::INFINITY);
            if !value.is_finite() {
                return Err(self.error("number out of range"));
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Result<()> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.error("an invalid number"));
        }
        self.digits();
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes.get(self.at..self.at + word.len()) != Some(word) {
            return Err(self.error("an invalid literal"));
        }
        self.at += word.len();
        Ok(())
    }

    /// JSON's four whitespace bytes, no others.
    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        self.at += 1;
        byte
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.at += 1;
        }
        matched
    }

    fn error(&self, what: &str) -> Error {
        Error::new(ErrorKind::InvalidJson, format!("invalid JSON: {what}")).at(self.at as u64)
    }

    fn too_deep(&self) -> Error {
        Error::new(ErrorKind::TooDeep, "JSON nests too deep").at(self.at as u64)
    }

    fn lone_surrogate(&self) -> Error {
        Error::new(
            ErrorKind::InvalidJson,
            "a \\u escape of a lone UTF-16 surrogate",
        )
        .at(self.at as u64)
    }
}
