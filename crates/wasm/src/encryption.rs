//! A repository's cipher as a JS class, mirroring the napi addon's
//! `NativeCipher` method for method (see the core's `encryption`).

use crate::throw;
use brcache_core::encryption::{self, Cipher};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct NativeCipher {
    inner: Cipher,
}

#[wasm_bindgen(js_name = openEncryption)]
pub fn open_encryption(
    descriptor: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
) -> Result<Option<NativeCipher>, JsValue> {
    encryption::open(descriptor.as_deref(), key.as_deref())
        .map(|cipher| cipher.map(|inner| NativeCipher { inner }))
        .map_err(throw)
}

#[wasm_bindgen(js_name = newCipher)]
pub fn new_cipher(algorithm: &str, key: &[u8]) -> Result<NativeCipher, JsValue> {
    let algorithm = encryption::Algorithm::from_name(algorithm)
        .and_then(|algorithm| {
            algorithm.ok_or_else(|| {
                brcache_core::Error::new(
                    brcache_core::ErrorKind::InvalidArgument,
                    "\"none\" is no cipher",
                )
            })
        })
        .map_err(throw)?;
    Cipher::new(algorithm, key)
        .map(|inner| NativeCipher { inner })
        .map_err(throw)
}

#[wasm_bindgen]
impl NativeCipher {
    #[wasm_bindgen(getter)]
    pub fn algorithm(&self) -> String {
        self.inner.algorithm().name().to_string()
    }

    pub fn seal(&self, iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, JsValue> {
        self.inner.seal(iv, plaintext).map_err(throw)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, JsValue> {
        self.inner.open(sealed).map_err(throw)
    }

    /// `undefined` when the key is right, else the error (returned, as
    /// the napi addon returns it).
    #[wasm_bindgen(js_name = verifyKey)]
    pub fn verify_key(&self, metadata: Option<Vec<u8>>) -> Result<(), JsValue> {
        self.inner.verify_key(metadata.as_deref()).map_err(throw)
    }

    #[wasm_bindgen(js_name = initialFiles)]
    pub fn initial_files(&self, iv: &[u8], random_uuid: &str) -> Result<js_sys::Array, JsValue> {
        let (descriptor, check) = self.inner.initial_files(iv, random_uuid).map_err(throw)?;
        let out = js_sys::Array::new();
        out.push(&js_sys::Uint8Array::from(&descriptor[..]));
        out.push(&js_sys::Uint8Array::from(&check[..]));
        Ok(out)
    }
}

#[wasm_bindgen(js_name = encryptionAlgorithm)]
pub fn encryption_algorithm(descriptor: Option<Vec<u8>>) -> Result<Option<String>, JsValue> {
    encryption::read_descriptor(descriptor.as_deref())
        .map(|algorithm| algorithm.map(|a| a.name().to_string()))
        .map_err(throw)
}
