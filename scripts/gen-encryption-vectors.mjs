#!/usr/bin/env node
// Writes tests/vectors/encryption.json: files encrypted as Xen Orchestra
// encrypts a remote, made with Node's own crypto (as XO makes them), and
// what opening each must give; shared by the Rust, napi and wasm suites.
// The expectations come from Node's crypto and the layout, never from
// brcache. Deterministic: the IVs are fixed per case, so rerunning writes
// the same file.

import { createCipheriv, createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import zlib from 'node:zlib'

const out = join(import.meta.dirname, '..', 'tests', 'vectors', 'encryption.json')
const KEY = 'xo-remote-encryption-key-32-char'
const OTHER_KEY = 'not-the-key-of-this-remote-32chr'
const ALGORITHMS = ['chacha20-poly1305', 'aes-256-gcm']

const b64 = (bytes) => Buffer.from(bytes).toString('base64')
let serial = 0
/** A fixed IV per case: deterministic output, and still one IV per file. */
const nextIv = () => createHash('sha256').update(`iv ${serial++}`).digest().subarray(0, 12)

function seal(algorithm, key, plaintext, iv = nextIv()) {
  const cipher = createCipheriv(algorithm, Buffer.from(key), iv, { authTagLength: 16 })
  return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
}

const flip = (bytes, at) => {
  const copy = Buffer.from(bytes)
  copy[at < 0 ? copy.length + at : at] ^= 0x01
  return copy
}

const plaintexts = {
  empty: Buffer.alloc(0),
  'one byte': Buffer.from('x'),
  'a metadata file': Buffer.from(JSON.stringify({ mode: 'full', timestamp: 1706666405000, xva: './20240131T020005Z.xva', size: 123 })),
  'a cache.json.gz': zlib.gzipSync(JSON.stringify({ '/xo-vm-backups/v/20240131T020005Z.json': { mode: 'delta', timestamp: 1 } })),
  'non-ASCII text': Buffer.from('sauvegarde de la VM « Éléphant » 🐘'),
  '5,000 bytes': Buffer.from(Array.from({ length: 5_000 }, (_, i) => (i * 7919) & 0xff)),
}

const files = []
const seals = []
for (const algorithm of ALGORITHMS) {
  for (const [name, plaintext] of Object.entries(plaintexts)) {
    const iv = nextIv()
    const sealed = seal(algorithm, KEY, plaintext, iv)
    // seal: the same IV and plaintext must give Node's bytes exactly.
    seals.push({ name: `${algorithm}: ${name}`, algorithm, iv: b64(iv), plaintext: b64(plaintext), sealed: b64(sealed) })
    files.push({ name: `${algorithm}: ${name}`, algorithm, key: KEY, sealed: b64(sealed), plaintext: b64(plaintext) })
  }
  const sealed = seal(algorithm, KEY, plaintexts['a metadata file'])
  const other = ALGORITHMS.find((a) => a !== algorithm)
  const failing = {
    'a bit flipped in the ciphertext': [KEY, flip(sealed, 20)],
    'a bit flipped in the tag': [KEY, flip(sealed, -1)],
    'a bit flipped in the IV': [KEY, flip(sealed, 0)],
    'the tag cut off': [KEY, sealed.subarray(0, sealed.length - 16)],
    'one byte short of an IV and a tag': [KEY, sealed.subarray(0, 27)],
    'no bytes': [KEY, Buffer.alloc(0)],
    'a plaintext file': [KEY, plaintexts['a metadata file']],
    'another key': [OTHER_KEY, sealed],
    [`written with ${other}`]: [KEY, seal(other, KEY, plaintexts['a metadata file'])],
    'bytes moved from another file': [KEY, Buffer.concat([sealed.subarray(0, 12), seal(algorithm, KEY, plaintexts['a metadata file']).subarray(12)])],
  }
  for (const [name, [key, bytes]] of Object.entries(failing)) {
    files.push({ name: `${algorithm}: ${name}`, algorithm, key, sealed: b64(bytes), error: 'DECRYPTION_FAILED' })
  }
}

// encryption.json's bytes (null: no such file), the key given (null: none),
// and the verdict: plaintext, an algorithm whose key is to be checked, or
// an error code.
const descriptor = (value) => b64(typeof value === 'string' ? value : JSON.stringify(value))
const opens = [
  { name: 'no descriptor, no key', descriptor: null, key: null, plaintext: true },
  { name: 'algorithm none, no key', descriptor: descriptor({ algorithm: 'none' }), key: null, plaintext: true },
  { name: 'chacha20, key', descriptor: descriptor({ algorithm: 'chacha20-poly1305' }), key: KEY, algorithm: 'chacha20-poly1305' },
  { name: 'aes-256-gcm, key', descriptor: descriptor({ algorithm: 'aes-256-gcm' }), key: KEY, algorithm: 'aes-256-gcm' },
  { name: 'extra fields are ignored', descriptor: descriptor({ algorithm: 'aes-256-gcm', note: 1 }), key: KEY, algorithm: 'aes-256-gcm' },
  { name: 'chacha20, no key', descriptor: descriptor({ algorithm: 'chacha20-poly1305' }), key: null, error: 'ENCRYPTED' },
  { name: 'aes-256-gcm, no key', descriptor: descriptor({ algorithm: 'aes-256-gcm' }), key: null, error: 'ENCRYPTED' },
  { name: 'no descriptor, a key', descriptor: null, key: KEY, error: 'NOT_ENCRYPTED' },
  { name: 'algorithm none, a key', descriptor: descriptor({ algorithm: 'none' }), key: KEY, error: 'NOT_ENCRYPTED' },
  { name: 'an algorithm XO does not use', descriptor: descriptor({ algorithm: 'aes-128-cbc' }), key: KEY, error: 'UNSUPPORTED_ENCRYPTION' },
  { name: 'an algorithm XO does not use, no key', descriptor: descriptor({ algorithm: 'rot13' }), key: null, error: 'UNSUPPORTED_ENCRYPTION' },
  { name: 'not JSON', descriptor: descriptor('{"algorithm":'), key: null, error: 'UNSUPPORTED_ENCRYPTION' },
  { name: 'no algorithm field', descriptor: descriptor({ cipher: 'aes-256-gcm' }), key: null, error: 'UNSUPPORTED_ENCRYPTION' },
  { name: 'algorithm not a string', descriptor: descriptor({ algorithm: 1 }), key: KEY, error: 'UNSUPPORTED_ENCRYPTION' },
  { name: 'an empty file', descriptor: descriptor(''), key: null, error: 'UNSUPPORTED_ENCRYPTION' },
  { name: 'a key of 31 bytes', descriptor: descriptor({ algorithm: 'chacha20-poly1305' }), key: KEY.slice(1), error: 'INVALID_ENCRYPTION_KEY' },
  { name: 'a key of 33 bytes (a non-ASCII character)', descriptor: descriptor({ algorithm: 'aes-256-gcm' }), key: `é${KEY.slice(1)}`, error: 'INVALID_ENCRYPTION_KEY' },
]

// metadata.json, XO's key check: `{"random":"<uuid>"}` encrypted.
const check = JSON.stringify({ random: '5c0c6a3e-2b8f-4a57-9d33-8e1f0a6b7c2d' })
const keyChecks = []
for (const algorithm of ALGORITHMS) {
  const other = ALGORITHMS.find((a) => a !== algorithm)
  keyChecks.push(
    { name: `${algorithm}: the right key`, algorithm, key: KEY, metadata: b64(seal(algorithm, KEY, check)) },
    { name: `${algorithm}: another key`, algorithm, key: OTHER_KEY, metadata: b64(seal(algorithm, KEY, check)), error: 'WRONG_ENCRYPTION_KEY' },
    { name: `${algorithm}: written with ${other}`, algorithm, key: KEY, metadata: b64(seal(other, KEY, check)), error: 'WRONG_ENCRYPTION_KEY' },
    { name: `${algorithm}: missing`, algorithm, key: KEY, metadata: null, error: 'WRONG_ENCRYPTION_KEY' },
    { name: `${algorithm}: decrypts to an array`, algorithm, key: KEY, metadata: b64(seal(algorithm, KEY, '[]')), error: 'WRONG_ENCRYPTION_KEY' },
    { name: `${algorithm}: decrypts to no JSON`, algorithm, key: KEY, metadata: b64(seal(algorithm, KEY, 'random')), error: 'WRONG_ENCRYPTION_KEY' },
    { name: `${algorithm}: plaintext`, algorithm, key: KEY, metadata: b64(check), error: 'WRONG_ENCRYPTION_KEY' },
  )
}

const vectors = {
  about: 'Made by scripts/gen-encryption-vectors.mjs with Node crypto, in Xen Orchestra\'s layout: IV (12) | ciphertext | tag (16). Bytes are base64.',
  files,
  seals,
  opens,
  keyChecks,
}
writeFileSync(out, `${JSON.stringify(vectors, null, 1)}\n`)
console.log(`${out}: ${files.length} files, ${seals.length} seals, ${opens.length} opens, ${keyChecks.length} key checks`)
