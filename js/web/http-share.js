// The repository as `brcache serve` offers it, in the shape of a share
// handler, so that the page reads it with the very code the server side
// uses: the repository index through js/index-store.js (same read plan,
// same retries when a compaction removes a file mid-read, same checks),
// and an encrypted repository through js/handlers/encrypted.js (the same
// verdicts, the same decryption). A 404 is ENOENT, as on a share: no
// index, no cache, a plaintext repository's missing encryption.json, or a
// file compacted away since the listing.

import { DESCRIPTOR_FILE, KEY_CHECK_FILE } from '../encryption.js'
import { INDEX_DIR } from '../index-store.js'
import { CACHE_FILE } from '../layout.js'

/** An Error carrying the server's `{ error }` if it sent one, else the status line. */
export async function httpError(response) {
  let message = `${response.status} ${response.statusText}`
  try {
    const body = await response.json()
    if (typeof body?.error === 'string') message = `${message}: ${body.error}`
  } catch {
    // Not JSON: the status line says enough.
  }
  return Object.assign(new Error(`HTTP ${message}`), { status: response.status }, response.status === 404 ? { code: 'ENOENT' } : {})
}

/** The API path of a repository file the server offers, or undefined. */
function apiPath(file) {
  if (file === DESCRIPTOR_FILE || file === KEY_CHECK_FILE) return `api/${file}`
  if (file.startsWith(`${INDEX_DIR}/`)) return `api/index/${encodeURIComponent(file.slice(INDEX_DIR.length + 1))}`
  const cache = /^xo-vm-backups\/([^/]+)\/(.+)$/.exec(file)
  if (cache && cache[2] === CACHE_FILE) return `api/vms/${encodeURIComponent(cache[1])}/cache`
  return undefined
}

export function httpShare(base) {
  const url = (path) => new URL(path, base)
  // What the server's check of a cache found unreadable, by cache file.
  const unreadable = new Map()
  async function get(path) {
    const response = await fetch(url(path))
    if (!response.ok) throw await httpError(response)
    return response
  }
  return {
    async list(dir) {
      if (dir !== INDEX_DIR) throw new Error(`only ${INDEX_DIR} is served, not ${dir}`)
      return (await get('api/index')).json()
    },
    async readFile(file) {
      const path = apiPath(file)
      if (path === undefined) throw new Error(`${file} is not served`)
      const response = await get(path)
      const found = response.headers.get('X-Brcache-Unreadable')
      if (found) unreadable.set(file, JSON.parse(decodeURIComponent(found)))
      else unreadable.delete(file)
      return new Uint8Array(await response.arrayBuffer())
    },
    /** The metadata files the server's check of a cache could not read: `[{ id, reason }]`. */
    unreadable(file) {
      return unreadable.get(file) ?? []
    },
  }
}
