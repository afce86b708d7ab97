//! The shared encryption vectors (tests/vectors/encryption.json, made with
//! Node's crypto in Xen Orchestra's layout), run against the core. The napi
//! and wasm suites run the same file (tests/encryption.test.mjs).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use brcache_core::{Algorithm, Cipher};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/encryption.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("encryption vectors")).unwrap()
}

fn bytes(value: &Value) -> Option<Vec<u8>> {
    value.as_str().map(|s| STANDARD.decode(s).expect("base64"))
}

fn cipher(case: &Value) -> Cipher {
    let algorithm = Algorithm::from_name(case["algorithm"].as_str().unwrap())
        .unwrap()
        .unwrap();
    Cipher::new(algorithm, case["key"].as_str().unwrap().as_bytes()).unwrap()
}

fn cases<'a>(vectors: &'a Value, kind: &str) -> &'a [Value] {
    let cases = vectors[kind].as_array().unwrap();
    assert!(!cases.is_empty(), "no {kind} vectors");
    cases
}

#[test]
fn files_open_as_node_sealed_them() {
    let vectors = vectors();
    for case in cases(&vectors, "files") {
        let name = case["name"].as_str().unwrap();
        let opened = cipher(case).open(&bytes(&case["sealed"]).unwrap());
        match case["error"].as_str() {
            None => assert_eq!(
                opened.unwrap(),
                bytes(&case["plaintext"]).unwrap(),
                "{name}"
            ),
            Some(code) => assert_eq!(opened.unwrap_err().code(), code, "{name}"),
        }
    }
}

#[test]
fn seals_are_node_bytes_for_the_same_iv() {
    let vectors = vectors();
    for case in cases(&vectors, "seals") {
        let algorithm = Algorithm::from_name(case["algorithm"].as_str().unwrap())
            .unwrap()
            .unwrap();
        let cipher = Cipher::new(algorithm, b"xo-remote-encryption-key-32-char").unwrap();
        let sealed = cipher
            .seal(
                &bytes(&case["iv"]).unwrap(),
                &bytes(&case["plaintext"]).unwrap(),
            )
            .unwrap();
        assert_eq!(sealed, bytes(&case["sealed"]).unwrap(), "{}", case["name"]);
    }
}

#[test]
fn repositories_open_as_the_descriptor_and_key_say() {
    let vectors = vectors();
    for case in cases(&vectors, "opens") {
        let name = case["name"].as_str().unwrap();
        let descriptor = bytes(&case["descriptor"]);
        let key = case["key"].as_str().map(str::as_bytes);
        let opened = brcache_core::open_encryption(descriptor.as_deref(), key);
        match (case["error"].as_str(), opened) {
            (Some(code), Err(error)) => assert_eq!(error.code(), code, "{name}"),
            (None, Ok(None)) => assert_eq!(case["plaintext"], true, "{name}"),
            (None, Ok(Some(cipher))) => {
                assert_eq!(cipher.algorithm().name(), case["algorithm"], "{name}")
            }
            (expected, got) => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn key_checks_accept_only_the_right_key() {
    let vectors = vectors();
    for case in cases(&vectors, "keyChecks") {
        let result = cipher(case).verify_key(bytes(&case["metadata"]).as_deref());
        match case["error"].as_str() {
            None => result.unwrap(),
            Some(code) => assert_eq!(result.unwrap_err().code(), code, "{}", case["name"]),
        }
    }
}
