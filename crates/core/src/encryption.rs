//! Encrypted repositories, laid out as Xen Orchestra encrypts a remote.
//!
//! A remote with an encryption key keeps two files at its root:
//!
//! - [`DESCRIPTOR_FILE`] (`encryption.json`), plaintext, names the
//!   algorithm: `{"algorithm":"chacha20-poly1305"}` (XO's default),
//!   `aes-256-gcm` (older remotes) or `none` (plaintext, as when the file
//!   is absent).
//! - [`KEY_CHECK_FILE`] (`metadata.json`), encrypted, a JSON object: a file
//!   that only the right key opens, read before anything else so that a
//!   wrong key is an error, never a repository that looks empty.
//!
//! Every other file (each `<date>.json`, each `cache.json.gz`, and all that
//! brcache adds: index files, temp files) is `IV ‖ ciphertext ‖ tag`: a
//! fresh 12-byte IV, the whole file encrypted at once, no associated data,
//! a 16-byte tag. The key is the 32 bytes of XO's 32-character setting.
//!
//! Opening a repository is decided here, from what the caller read:
//! [`open`] takes the descriptor's bytes (or their absence) and the key (or
//! its absence) and answers plaintext, a [`Cipher`] whose key the caller
//! must still [`Cipher::verify_key`] against `metadata.json`, or an error
//! that names the file and the problem. The IV comes from the caller: the
//! core has no source of randomness, as it has no I/O.

use crate::error::{Error, ErrorKind, Result};
use aes_gcm::Aes256Gcm;
use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit};

/// The plaintext file that names the algorithm.
pub const DESCRIPTOR_FILE: &str = "encryption.json";
/// The encrypted file that proves the key.
pub const KEY_CHECK_FILE: &str = "metadata.json";
/// Bytes of the key (XO's setting is a 32-character string).
pub const KEY_LEN: usize = 32;
/// Bytes of the IV at the start of every encrypted file.
pub const IV_LEN: usize = 12;
/// Bytes of the authentication tag at the end of every encrypted file.
pub const TAG_LEN: usize = 16;

/// The algorithms XO encrypts remotes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    ChaCha20Poly1305,
    Aes256Gcm,
}

impl Algorithm {
    /// XO's name of the algorithm, as `encryption.json` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
            Algorithm::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// The algorithm of a name, `None` for `none`.
    pub fn from_name(name: &str) -> Result<Option<Algorithm>> {
        match name {
            "none" => Ok(None),
            "chacha20-poly1305" => Ok(Some(Algorithm::ChaCha20Poly1305)),
            "aes-256-gcm" => Ok(Some(Algorithm::Aes256Gcm)),
            other => Err(Error::new(
                ErrorKind::UnsupportedEncryption,
                format!(
                    "the algorithm {other:?} is not one Xen Orchestra encrypts with (chacha20-poly1305, aes-256-gcm, none)"
                ),
            )),
        }
    }
}

/// What `encryption.json` says: `None` when the repository is plaintext
/// (no file, or `none`). Anything that is not a JSON object with a string
/// `algorithm` is an error: brcache never guesses that a repository it
/// cannot read is plaintext.
pub fn read_descriptor(bytes: Option<&[u8]>) -> Result<Option<Algorithm>> {
    let Some(bytes) = bytes else { return Ok(None) };
    let in_file = |e: Error| e.in_file(DESCRIPTOR_FILE);
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        in_file(Error::new(
            ErrorKind::UnsupportedEncryption,
            format!("not JSON ({e}): cannot tell whether the repository is encrypted"),
        ))
    })?;
    let Some(name) = value.get("algorithm").and_then(|a| a.as_str()) else {
        return Err(in_file(Error::new(
            ErrorKind::UnsupportedEncryption,
            "no \"algorithm\" string: cannot tell whether the repository is encrypted",
        )));
    };
    Algorithm::from_name(name).map_err(in_file)
}

/// The bytes of `encryption.json` for an algorithm, as XO writes it.
pub fn descriptor(algorithm: Option<Algorithm>) -> Vec<u8> {
    let name = algorithm.map_or("none", Algorithm::name);
    format!("{{\"algorithm\":\"{name}\"}}").into_bytes()
}

/// How to read a repository, from its descriptor and the key a user gave.
///
/// - no descriptor (or `none`) and no key: plaintext (`Ok(None)`);
/// - an algorithm and a key: a cipher, to verify against `metadata.json`
///   before anything else is read or written;
/// - an algorithm without a key: `ENCRYPTED`, naming the file and the
///   algorithm, so that nothing is listed as empty nor written in clear;
/// - a key on a plaintext repository: `NOT_ENCRYPTED` (the key belongs to
///   another remote, or the descriptor was lost: either way, not a
///   repository to write to in clear nor encrypted).
pub fn open(descriptor: Option<&[u8]>, key: Option<&[u8]>) -> Result<Option<Cipher>> {
    let algorithm = read_descriptor(descriptor)?;
    match (algorithm, key) {
        (None, None) => Ok(None),
        (Some(algorithm), Some(key)) => Cipher::new(algorithm, key).map(Some),
        (Some(algorithm), None) => Err(Error::new(
            ErrorKind::Encrypted,
            format!(
                "the repository is encrypted with {} and no encryption key was given (BRCACHE_ENCRYPTION_KEY or --encryption-key-file)",
                algorithm.name()
            ),
        )
        .in_file(DESCRIPTOR_FILE)),
        (None, Some(_)) => Err(Error::new(
            ErrorKind::NotEncrypted,
            if descriptor.is_some() {
                "the repository is not encrypted (algorithm \"none\"), but an encryption key was given"
            } else {
                "no such file: the repository is not encrypted, but an encryption key was given"
            },
        )
        .in_file(DESCRIPTOR_FILE)),
    }
}

/// A repository's key and algorithm: seals and opens its files.
#[derive(Clone)]
pub struct Cipher {
    algorithm: Algorithm,
    key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Cipher {
    // Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cipher")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Drop for Cipher {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl Cipher {
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<Cipher> {
        let key: [u8; KEY_LEN] = key.try_into().map_err(|_| {
            Error::new(
                ErrorKind::InvalidEncryptionKey,
                format!(
                    "an encryption key is {KEY_LEN} bytes (Xen Orchestra's 32-character setting), not {}",
                    key.len()
                ),
            )
        })?;
        Ok(Cipher { algorithm, key })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// `iv ‖ ciphertext ‖ tag`. The IV must be fresh for every file: the
    /// caller draws it from a secure source.
    pub fn seal(&self, iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        if iv.len() != IV_LEN {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("an IV is {IV_LEN} bytes, not {}", iv.len()),
            ));
        }
        let sealed = match self.algorithm {
            Algorithm::ChaCha20Poly1305 => {
                ChaCha20Poly1305::new(&self.key.into()).encrypt(iv.into(), plaintext)
            }
            Algorithm::Aes256Gcm => Aes256Gcm::new(&self.key.into()).encrypt(iv.into(), plaintext),
        }
        .expect("encrypting in memory cannot fail below 2^38 bytes");
        let mut out = Vec::with_capacity(IV_LEN + sealed.len());
        out.extend_from_slice(iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of an encrypted file, or `DECRYPTION_FAILED`: the
    /// bytes were altered, cut, written with another key or algorithm, or
    /// are not encrypted at all. Nothing of a file that fails is returned.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < IV_LEN + TAG_LEN {
            return Err(Error::new(
                ErrorKind::DecryptionFailed,
                format!(
                    "{} bytes cannot be an encrypted file (IV and tag alone are {})",
                    sealed.len(),
                    IV_LEN + TAG_LEN
                ),
            ));
        }
        let (iv, body) = sealed.split_at(IV_LEN);
        match self.algorithm {
            Algorithm::ChaCha20Poly1305 => {
                ChaCha20Poly1305::new(&self.key.into()).decrypt(iv.into(), body)
            }
            Algorithm::Aes256Gcm => Aes256Gcm::new(&self.key.into()).decrypt(iv.into(), body),
        }
        .map_err(|_| {
            Error::new(
                ErrorKind::DecryptionFailed,
                format!(
                    "does not authenticate with this key ({}): altered, cut, or not written with it",
                    self.algorithm.name()
                ),
            )
        })
    }

    /// Checks the key against the bytes of `metadata.json`, as XO does: it
    /// must open and hold a JSON object. `None`: the file is missing.
    pub fn verify_key(&self, metadata: Option<&[u8]>) -> Result<()> {
        let wrong = |why: &str| {
            Error::new(
                ErrorKind::WrongEncryptionKey,
                format!(
                    "{why}: the encryption key (or the algorithm {}) is not this repository's",
                    self.algorithm.name()
                ),
            )
            .in_file(KEY_CHECK_FILE)
        };
        let Some(metadata) = metadata else {
            return Err(Error::new(
                ErrorKind::WrongEncryptionKey,
                "missing: the key of this encrypted repository cannot be checked",
            )
            .in_file(KEY_CHECK_FILE));
        };
        let plaintext = self.open(metadata).map_err(|_| wrong("does not decrypt"))?;
        match serde_json::from_slice::<serde_json::Value>(&plaintext) {
            Ok(serde_json::Value::Object(_)) => Ok(()),
            _ => Err(wrong("decrypts to something other than a JSON object")),
        }
    }

    /// The two files of a new encrypted repository, as XO writes them into
    /// an empty remote: the descriptor and the key check (whose plaintext
    /// is `{"random":"<uuid>"}`).
    pub fn initial_files(&self, iv: &[u8], random_uuid: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let check = serde_json::json!({ "random": random_uuid }).to_string();
        Ok((
            descriptor(Some(self.algorithm)),
            self.seal(iv, check.as_bytes())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const IV: &[u8; 12] = b"fixed-iv-12b";

    #[test]
    fn open_decides_from_descriptor_and_key() {
        assert!(open(None, None).unwrap().is_none());
        assert!(
            open(Some(br#"{"algorithm":"none"}"#), None)
                .unwrap()
                .is_none()
        );
        let e = open(Some(br#"{"algorithm":"aes-256-gcm"}"#), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Encrypted);
        assert!(e.to_string().starts_with("encryption.json: "));
        assert!(e.to_string().contains("aes-256-gcm"));
        assert_eq!(
            open(None, Some(KEY)).unwrap_err().kind(),
            ErrorKind::NotEncrypted
        );
        assert_eq!(
            open(Some(b"{"), None).unwrap_err().kind(),
            ErrorKind::UnsupportedEncryption
        );
        assert_eq!(
            open(Some(br#"{"algorithm":"rot13"}"#), Some(KEY))
                .unwrap_err()
                .kind(),
            ErrorKind::UnsupportedEncryption
        );
        let cipher = open(Some(br#"{"algorithm":"chacha20-poly1305"}"#), Some(KEY))
            .unwrap()
            .unwrap();
        assert_eq!(cipher.algorithm(), Algorithm::ChaCha20Poly1305);
    }

    #[test]
    fn seal_then_open_both_algorithms() {
        for algorithm in [Algorithm::ChaCha20Poly1305, Algorithm::Aes256Gcm] {
            let cipher = Cipher::new(algorithm, KEY).unwrap();
            let sealed = cipher.seal(IV, b"hello").unwrap();
            assert_eq!(sealed.len(), IV_LEN + 5 + TAG_LEN);
            assert_eq!(&sealed[..IV_LEN], IV);
            assert_eq!(cipher.open(&sealed).unwrap(), b"hello");
            let mut tampered = sealed.clone();
            tampered[IV_LEN] ^= 1;
            assert_eq!(
                cipher.open(&tampered).unwrap_err().kind(),
                ErrorKind::DecryptionFailed
            );
            assert_eq!(
                cipher.open(&sealed[..20]).unwrap_err().kind(),
                ErrorKind::DecryptionFailed
            );
        }
    }

    #[test]
    fn keys_and_ivs_have_their_sizes() {
        assert_eq!(
            Cipher::new(Algorithm::Aes256Gcm, b"short")
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidEncryptionKey
        );
        let cipher = Cipher::new(Algorithm::Aes256Gcm, KEY).unwrap();
        assert_eq!(
            cipher.seal(b"short", b"x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert!(!format!("{cipher:?}").contains("0123"));
    }

    #[test]
    fn the_key_check_file_proves_the_key() {
        let cipher = Cipher::new(Algorithm::ChaCha20Poly1305, KEY).unwrap();
        let (descriptor, check) = cipher.initial_files(IV, "8c1b").unwrap();
        assert_eq!(descriptor, br#"{"algorithm":"chacha20-poly1305"}"#);
        cipher.verify_key(Some(&check)).unwrap();
        let other = Cipher::new(
            Algorithm::ChaCha20Poly1305,
            b"fedcba9876543210fedcba9876543210",
        )
        .unwrap();
        let e = other.verify_key(Some(&check)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongEncryptionKey);
        assert!(e.to_string().starts_with("metadata.json: "));
        let aes = Cipher::new(Algorithm::Aes256Gcm, KEY).unwrap();
        assert_eq!(
            aes.verify_key(Some(&check)).unwrap_err().kind(),
            ErrorKind::WrongEncryptionKey
        );
        assert_eq!(
            cipher.verify_key(None).unwrap_err().kind(),
            ErrorKind::WrongEncryptionKey
        );
        let not_object = cipher.seal(IV, b"[1]").unwrap();
        assert_eq!(
            cipher.verify_key(Some(&not_object)).unwrap_err().kind(),
            ErrorKind::WrongEncryptionKey
        );
    }
}
