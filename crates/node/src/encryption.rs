//! A repository's cipher as a JS class (see the core's `encryption`).

use crate::ErrorInfo;
use brcache_core::encryption::{self, Cipher};
use napi::bindgen_prelude::{Buffer, Either, Uint8Array};
use napi_derive::napi;

#[napi(js_name = "NativeCipher")]
pub struct NativeCipher {
    inner: Cipher,
}

/// How to read a repository: `null` for plaintext, a cipher whose key is
/// still to be verified against `metadata.json`, or the error.
#[napi]
pub fn open_encryption(
    descriptor: Option<Uint8Array>,
    key: Option<Uint8Array>,
) -> Either<Option<NativeCipher>, ErrorInfo> {
    match encryption::open(descriptor.as_deref(), key.as_deref()) {
        Ok(cipher) => Either::A(cipher.map(|inner| NativeCipher { inner })),
        Err(error) => Either::B(error.into()),
    }
}

/// A cipher for a new encrypted repository (its key checked for size).
#[napi]
pub fn new_cipher(algorithm: String, key: Uint8Array) -> Either<NativeCipher, ErrorInfo> {
    let cipher = encryption::Algorithm::from_name(&algorithm).and_then(|algorithm| {
        let algorithm = algorithm.ok_or_else(|| {
            brcache_core::Error::new(
                brcache_core::ErrorKind::InvalidArgument,
                "\"none\" is no cipher",
            )
        })?;
        Cipher::new(algorithm, &key)
    });
    match cipher {
        Ok(inner) => Either::A(NativeCipher { inner }),
        Err(error) => Either::B(error.into()),
    }
}

#[napi]
impl NativeCipher {
    #[napi(getter)]
    pub fn algorithm(&self) -> &'static str {
        self.inner.algorithm().name()
    }

    #[napi]
    pub fn seal(&self, iv: Uint8Array, plaintext: Uint8Array) -> Either<Buffer, ErrorInfo> {
        match self.inner.seal(&iv, &plaintext) {
            Ok(bytes) => Either::A(bytes.into()),
            Err(error) => Either::B(error.into()),
        }
    }

    #[napi]
    pub fn open(&self, sealed: Uint8Array) -> Either<Buffer, ErrorInfo> {
        match self.inner.open(&sealed) {
            Ok(bytes) => Either::A(bytes.into()),
            Err(error) => Either::B(error.into()),
        }
    }

    #[napi]
    pub fn verify_key(&self, metadata: Option<Uint8Array>) -> Option<ErrorInfo> {
        self.inner
            .verify_key(metadata.as_deref())
            .err()
            .map(ErrorInfo::from)
    }

    /// `[encryption.json, metadata.json]` of a new repository.
    #[napi]
    pub fn initial_files(
        &self,
        iv: Uint8Array,
        random_uuid: String,
    ) -> Either<Vec<Buffer>, ErrorInfo> {
        match self.inner.initial_files(&iv, &random_uuid) {
            Ok((descriptor, check)) => Either::A(vec![descriptor.into(), check.into()]),
            Err(error) => Either::B(error.into()),
        }
    }
}

/// What `encryption.json` names: an algorithm, or `null` for plaintext.
#[napi]
pub fn encryption_algorithm(
    descriptor: Option<Uint8Array>,
) -> Either<Option<&'static str>, ErrorInfo> {
    match encryption::read_descriptor(descriptor.as_deref()) {
        Ok(algorithm) => Either::A(algorithm.map(encryption::Algorithm::name)),
        Err(error) => Either::B(error.into()),
    }
}
