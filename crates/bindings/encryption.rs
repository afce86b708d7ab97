//! A repository's cipher as a JS class (see the core's `encryption`).

use crate::wire::{self, Bytes, BytesListOut, BytesOut, Throws};
use brcache_core::{Algorithm, Cipher};
use brcache_core::{Error, ErrorKind};

class! {
    /// A repository's cipher, its key checked for size.
    pub struct NativeCipher { inner: Cipher }
    impl {
        #[export(js_name = "algorithm", getter)]
        pub fn algorithm(&self) -> String {
            self.inner.algorithm().name().to_string()
        }

        /// `IV ‖ ciphertext ‖ tag`.
        #[export(js_name = "seal")]
        pub fn seal(&self, iv: Bytes, plaintext: Bytes) -> Throws<BytesOut> {
            Ok(wire::bytes_out(self.inner.seal(&iv, &plaintext)?))
        }

        #[export(js_name = "open")]
        pub fn open(&self, sealed: Bytes) -> Throws<BytesOut> {
            Ok(wire::bytes_out(self.inner.open(&sealed)?))
        }

        /// Throws unless `metadata.json`'s bytes open with this key.
        #[export(js_name = "verifyKey")]
        pub fn verify_key(&self, metadata: Option<Bytes>) -> Throws<()> {
            Ok(self.inner.verify_key(metadata.as_deref())?)
        }

        /// `[encryption.json, metadata.json]` of a new repository.
        #[export(js_name = "initialFiles")]
        pub fn initial_files(&self, iv: Bytes, random_uuid: String) -> Throws<BytesListOut> {
            let (descriptor, check) = self.inner.initial_files(&iv, &random_uuid)?;
            Ok(wire::bytes_list_out(vec![descriptor, check]))
        }
    }
}

functions! {
    /// How to read a repository: `null` for plaintext, or a cipher whose
    /// key is still to be verified against `metadata.json`.
    #[export(js_name = "openEncryption")]
    pub fn open_encryption(
        descriptor: Option<Bytes>,
        key: Option<Bytes>,
    ) -> Throws<Option<NativeCipher>> {
        let cipher = brcache_core::open_encryption(descriptor.as_deref(), key.as_deref())?;
        Ok(cipher.map(|inner| NativeCipher { inner }))
    }

    /// A cipher for a new encrypted repository (its key checked for size).
    #[export(js_name = "newCipher")]
    pub fn new_cipher(algorithm: String, key: Bytes) -> Throws<NativeCipher> {
        let algorithm = Algorithm::from_name(&algorithm)?
            .ok_or_else(|| Error::new(ErrorKind::InvalidArgument, "\"none\" is no cipher"))?;
        Ok(NativeCipher { inner: Cipher::new(algorithm, &key)? })
    }

    /// What `encryption.json` names: an algorithm, or `null` for plaintext.
    #[export(js_name = "encryptionAlgorithm")]
    pub fn encryption_algorithm(descriptor: Option<Bytes>) -> Throws<Option<String>> {
        let algorithm = brcache_core::read_encryption_descriptor(descriptor.as_deref())?;
        Ok(algorithm.map(|algorithm| algorithm.name().to_string()))
    }
}
