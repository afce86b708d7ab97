// A repository's encryption (see crates/core/src/encryption.rs), over a
// backend: the napi addon or the wasm module, with identical
// behaviour. The core decides and seals; this file draws the IVs (the core
// has no randomness) and converts arguments and results.
// Free of Node-only imports: the browser uses it too.

import { call, toBytes } from './codec.js'

export const DESCRIPTOR_FILE = 'encryption.json'
export const KEY_CHECK_FILE = 'metadata.json'
const IV_LENGTH = 12

const encoder = new TextEncoder()

/** A key as XO takes it: the bytes of its 32-character string (or bytes). */
function keyBytes(key) {
  if (key === undefined || key === null) return undefined
  return typeof key === 'string' ? encoder.encode(key) : toBytes(key)
}

function freshIv() {
  return globalThis.crypto.getRandomValues(new Uint8Array(IV_LENGTH))
}

export function makeEncryptionApi(backend) {
  class Cipher {
    #handle

    /** @private use openEncryption or newCipher */
    constructor(handle) {
      this.#handle = handle
    }

    get algorithm() {
      return this.#handle.algorithm
    }

    /** `IV ‖ ciphertext ‖ tag`, with a fresh IV. */
    seal(plaintext) {
      return call(() => this.#handle.seal(freshIv(), toBytes(typeof plaintext === 'string' ? encoder.encode(plaintext) : plaintext)))
    }

    /** The plaintext, or a BrcacheError (DECRYPTION_FAILED) naming `file`. */
    open(sealed, file) {
      return call(() => this.#handle.open(toBytes(sealed)), file)
    }

    /** Throws WRONG_ENCRYPTION_KEY unless `metadata.json`'s bytes open with this key. */
    verifyKey(metadata) {
      call(() => this.#handle.verifyKey(metadata === undefined ? undefined : toBytes(metadata)))
    }

    /** `[encryption.json, metadata.json]` bytes for a new repository. */
    initialFiles() {
      return call(() => this.#handle.initialFiles(freshIv(), globalThis.crypto.randomUUID()))
    }
  }

  return {
    /**
     * How to read a repository, from `encryption.json`'s bytes (undefined
     * when absent) and the key given (undefined when none): null for
     * plaintext, else a Cipher whose key is still to be verified; throws
     * ENCRYPTED, NOT_ENCRYPTED or UNSUPPORTED_ENCRYPTION.
     */
    openEncryption(descriptor, key) {
      const handle = call(() => backend.openEncryption(descriptor === undefined ? undefined : toBytes(descriptor), keyBytes(key)))
      return handle ? new Cipher(handle) : null
    },
    /** What `encryption.json` names: an algorithm, or null for plaintext. */
    encryptionAlgorithm(descriptor) {
      return call(() => backend.encryptionAlgorithm(descriptor === undefined ? undefined : toBytes(descriptor)), DESCRIPTOR_FILE) ?? null
    },
    newCipher(algorithm, key) {
      return new Cipher(call(() => backend.newCipher(algorithm, keyBytes(key))))
    },
  }
}
