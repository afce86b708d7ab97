//! The shared test vectors (tests/vectors/), run against the core. The
//! napi and wasm suites run the same manifest (tests/codec.test.mjs).

use brcache_core::{CacheHeader, DecodeLimits, decode};
use serde_json::Value;
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn limits(case: &Value) -> DecodeLimits {
    let mut limits = DecodeLimits::default();
    if let Some(max) = case["limits"]["maxInflatedSize"].as_u64() {
        limits.max_inflated_size = max as usize;
    }
    if let Some(max) = case["limits"]["maxDepth"].as_u64() {
        limits.max_depth = max as usize;
    }
    limits
}

/// Equal as JSON.parse would see them: same keys in the same order, numbers
/// equal as doubles.
fn assert_same(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(b)) => {
            let ka: Vec<_> = a.keys().collect();
            let kb: Vec<_> = b.keys().collect();
            assert_eq!(ka, kb, "keys differ at {path}");
            for (k, v) in a {
                assert_same(v, &b[k], &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "array length differs at {path}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_same(x, y, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            assert_eq!(a.as_f64(), b.as_f64(), "number differs at {path}");
        }
        _ => assert_eq!(actual, expected, "value differs at {path}"),
    }
}

fn header_json(header: Option<&CacheHeader>) -> Value {
    match header {
        None => Value::Null,
        Some(h) => serde_json::json!({
            "version": h.version,
            "generation": h.generation,
            "entries": h.entries,
            "fingerprint": h.fingerprint.map(|f| f.to_hex()),
        }),
    }
}

#[test]
fn every_vector_decodes_as_expected() {
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the manifest lost cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let bytes = read(case["input"].as_str().unwrap());
        let result = decode(&bytes, &limits(case));
        let expect = &case["expect"];
        if let Some(code) = expect["error"].as_str() {
            let error = match result {
                Ok(_) => panic!("{name}: decoded, expected {code}"),
                Err(error) => error,
            };
            assert_eq!(error.code(), code, "{name}: {error}");
            if let Some(offset) = expect["offset"].as_u64() {
                assert_eq!(error.offset(), Some(offset), "{name}: {error}");
            }
        } else if expect["ok"] == true {
            let document = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                header_json(document.header()),
                expect["header"],
                "{name}: header"
            );
        } else {
            let document = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let actual: Value = serde_json::from_str(&document.to_json()).unwrap();
            let expected: Value =
                serde_json::from_slice(&read(expect["json"].as_str().unwrap())).unwrap();
            assert_same(&actual, &expected, name);
            assert_eq!(
                header_json(document.header()),
                expect["header"],
                "{name}: header"
            );
        }
    }
}

#[test]
fn re_encoding_every_valid_vector_round_trips() {
    let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    for case in manifest["cases"].as_array().unwrap() {
        if case["expect"]["error"].is_string() {
            continue;
        }
        let bytes = read(case["input"].as_str().unwrap());
        let document = decode(&bytes, &limits(case)).unwrap();
        let again = decode(&brcache_core::encode(&document), &limits(case)).unwrap();
        assert_eq!(again, document, "{}", case["name"]);
    }
}
