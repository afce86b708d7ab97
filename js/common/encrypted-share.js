// The repository's encryption, as a handler around the share's handler:
// every read of a file is decrypted and every write encrypted, as Xen
// Orchestra's handler does, so the repository, the index and the page work
// on encrypted repositories unchanged.
//
// Before anything is decided, `encryption.json` is read (XO reads it
// first too). The core then says how to go on: plaintext; encrypted, with
// a key to check against `metadata.json` before anything else is read or
// written; or an error (encrypted without a key, a key for a plaintext
// repository, an algorithm XO does not use). A repository that cannot be
// read is never listed as empty, and nothing is ever written, created or
// deleted in it: every write waits for the verdict.
//
// Without a key, reads (files, listings, stats) go out beside the first
// read of `encryption.json` rather than after it, and their answers are
// released only once it says plaintext: a plaintext repository pays one
// call, not one round trip. With a key, everything waits for the key's
// check.
//
// Free of Node-only imports: the page wraps its HTTP share with it.

import { DESCRIPTOR_FILE, KEY_CHECK_FILE } from './encryption.js'

const WRITES = ['rename', 'unlink', 'rmdir', 'mkdir', 'lock', 'cleanTemps']
const LISTINGS = ['list', 'listWithTypes', 'stat']

async function readOptional(handler, file) {
  try {
    return await handler.readFile(file)
  } catch (error) {
    if (error.code === 'ENOENT') return undefined
    throw error
  }
}

export class EncryptedShare {
  #inner
  #api
  #key
  #opening

  /**
   * @param {object} inner the share's handler
   * @param {object} api the core's encryption API (`makeEncryptionApi`)
   * @param {string | Uint8Array} [key] the repository's encryption key, if any
   */
  constructor(inner, api, key) {
    this.#inner = inner
    this.#api = api
    this.#key = key === '' ? undefined : key
    for (const name of WRITES) {
      if (typeof inner[name] !== 'function') continue
      this[name] = async (...args) => {
        await this.cipher()
        return inner[name](...args)
      }
    }
    for (const name of LISTINGS) {
      if (typeof inner[name] !== 'function') continue
      this[name] = (...args) => this.#read(() => inner[name](...args))
    }
  }

  /** The share as it lies (encrypted bytes stay encrypted). */
  get inner() {
    return this.#inner
  }

  get supportsLocks() {
    return this.#inner.supportsLocks
  }

  get root() {
    return this.#inner.root
  }

  /**
   * The repository's cipher, null when it is plaintext; rejects with the
   * reason it cannot be read. Decided once; an I/O failure is tried again
   * on the next call, a verdict is final.
   */
  cipher() {
    this.#opening ??= this.#open().catch((error) => {
      if (error.name !== 'BrcacheError') this.#opening = undefined
      throw error
    })
    return this.#opening
  }

  /** `{ algorithm }`: what `encryption.json` names (null for plaintext), without a key. */
  async describe() {
    return { algorithm: this.#api.encryptionAlgorithm(await readOptional(this.#inner, DESCRIPTOR_FILE)) }
  }

  async #open() {
    // With a key, the file that proves it is read beside the descriptor:
    // one round trip for the verdict, as without a key.
    const [descriptor, check] = await Promise.all([
      readOptional(this.#inner, DESCRIPTOR_FILE),
      this.#key === undefined ? undefined : readOptional(this.#inner, KEY_CHECK_FILE),
    ])
    const cipher = this.#api.openEncryption(descriptor, this.#key)
    cipher?.verifyKey(check)
    return cipher
  }

  /** `read()`'s answer once the verdict allows it (see the top of this file). */
  async #read(read) {
    if (this.#key !== undefined) {
      await this.cipher()
      return read()
    }
    const reading = read()
    reading.catch(() => {}) // its error is only ours once the verdict is in
    await this.cipher()
    return reading
  }

  async readFile(file) {
    // The descriptor itself lies in clear.
    if (file === DESCRIPTOR_FILE) return this.#inner.readFile(file)
    const bytes = await this.#read(() => this.#inner.readFile(file))
    const cipher = await this.cipher()
    return cipher ? cipher.open(bytes, file) : bytes
  }

  async writeFile(file, data, options) {
    if (file === DESCRIPTOR_FILE || file === KEY_CHECK_FILE) {
      throw Object.assign(new Error(`EPERM: ${file} is the repository's encryption, not brcache's to write`), { code: 'EPERM', path: file })
    }
    const cipher = await this.cipher()
    return this.#inner.writeFile(file, cipher ? cipher.seal(data) : data, options)
  }
}

/**
 * Makes an empty folder an encrypted repository, as XO does for a remote
 * with an encryption key: `encryption.json` in clear and `metadata.json`
 * encrypted. Refuses a folder that holds anything.
 */
export async function initializeEncryption(handler, api, { key, algorithm = 'chacha20-poly1305' }) {
  const cipher = api.newCipher(algorithm, key)
  const existing = await handler.list('').catch((error) => (error.code === 'ENOENT' ? [] : Promise.reject(error)))
  if (existing.length > 0) {
    throw Object.assign(new Error(`the repository is not empty (${existing.length} entries): Xen Orchestra encrypts only an empty remote`), {
      code: 'ENOTEMPTY',
    })
  }
  const [descriptor, check] = cipher.initialFiles()
  await handler.writeFile(KEY_CHECK_FILE, check, { exclusive: true })
  await handler.writeFile(DESCRIPTOR_FILE, descriptor, { exclusive: true })
}
