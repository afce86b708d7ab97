// Repositories encrypted as Xen Orchestra encrypts a remote, made with
// Node's own crypto and nothing of brcache, so that the tests compare two
// independent implementations of the layout (see
// ../shared/notes/xo-reference.md, section 6): `encryption.json` in clear,
// `metadata.json` and every other file `IV ‖ ciphertext ‖ tag`, 12-byte IV,
// 16-byte tag, the key the bytes of XO's 32-character setting.

import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'

export const ALGORITHMS = ['chacha20-poly1305', 'aes-256-gcm']
export const KEY = 'brcache-tests-32-character-key!!'
export const OTHER_KEY = 'another-32-character-key-here!!!'

export function xoEncrypt(algorithm, key, plaintext) {
  const iv = randomBytes(12)
  const cipher = createCipheriv(algorithm, Buffer.from(key), iv, { authTagLength: 16 })
  return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()])
}

export function xoDecrypt(algorithm, key, sealed) {
  const decipher = createDecipheriv(algorithm, Buffer.from(key), sealed.subarray(0, 12), { authTagLength: 16 })
  decipher.setAuthTag(sealed.subarray(sealed.length - 16))
  return Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()])
}

/** The files of a folder, relative, sorted, recursively. */
export function filesOf(dir) {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort()
}

/** `{ [file]: [sha-free bytes as base64, mtimeMs] }` of every file: to prove nothing changed. */
export function fingerprintTree(dir) {
  return Object.fromEntries(
    filesOf(dir).map((file) => {
      const full = path.join(dir, file)
      return [file, [fs.readFileSync(full).toString('base64'), fs.statSync(full).mtimeMs]]
    }),
  )
}

/**
 * Encrypts a plaintext repository in place as XO would have written it:
 * each metadata file, and each VM's cache as XO writes one (plain gzip of
 * the records keyed by `/xo-vm-backups/<vm>/<name>`, no brcache header), or
 * with `caches: 'keep'` the cache that is there, encrypted as it is.
 */
export function encryptAsXo(dir, { algorithm, key = KEY, caches = 'xo' }) {
  const seal = (bytes) => xoEncrypt(algorithm, key, bytes)
  const backups = path.join(dir, 'xo-vm-backups')
  for (const vm of fs.existsSync(backups) ? fs.readdirSync(backups) : []) {
    const folder = path.join(backups, vm)
    if (!fs.statSync(folder).isDirectory()) continue
    const cache = {}
    for (const name of fs.readdirSync(folder).sort()) {
      const file = path.join(folder, name)
      if (/^\d{8}T\d{6}Z\.json$/.test(name)) {
        const text = fs.readFileSync(file)
        const id = `/xo-vm-backups/${vm}/${name}`
        cache[id] = { ...JSON.parse(text), _filename: id, id }
        fs.writeFileSync(file, seal(text))
      }
    }
    const cachePath = path.join(folder, 'cache.json.gz')
    if (caches === 'keep' && fs.existsSync(cachePath)) fs.writeFileSync(cachePath, seal(fs.readFileSync(cachePath)))
    else if (caches === 'xo') fs.writeFileSync(cachePath, seal(zlib.gzipSync(JSON.stringify(cache))))
    else fs.rmSync(cachePath, { force: true })
  }
  fs.writeFileSync(path.join(dir, 'encryption.json'), JSON.stringify({ algorithm }))
  fs.writeFileSync(path.join(dir, 'metadata.json'), seal(JSON.stringify({ random: randomUUID() })))
}

/** A VM's cache as XO reads it: decrypt, gunzip, JSON.parse. */
export function readCacheAsXo(dir, vm, { algorithm, key = KEY }) {
  const sealed = fs.readFileSync(path.join(dir, 'xo-vm-backups', vm, 'cache.json.gz'))
  return JSON.parse(zlib.gunzipSync(xoDecrypt(algorithm, key, sealed)))
}

/** A metadata file as XO reads it. */
export function readMetadataAsXo(dir, vm, name, { algorithm, key = KEY }) {
  return JSON.parse(xoDecrypt(algorithm, key, fs.readFileSync(path.join(dir, 'xo-vm-backups', vm, name))))
}
