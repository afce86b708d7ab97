// The repository as `brcache serve` offers it, in the shape of a share
// handler, so that the page reads it with the very code the server side
// uses: the core's operations (js/web/reader.js: the same reads, the same
// retries when a compaction removes a file mid-read, same checks), and an
// encrypted repository through js/common/encrypted-share.js (the same
// verdicts, the same decryption). A 404 is ENOENT, as on a share: no
// index, no cache, a plaintext repository's missing encryption.json, or a
// file compacted away since the listing.

import { DESCRIPTOR_FILE, KEY_CHECK_FILE } from '../common/encryption.js'
import { INDEX_DIR } from '../common/repo-index.js'
import { BACKUP_DIR, CACHE_FILE } from '../common/layout.js'

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

/** The URL (relative to a repository's API) of a file the server offers, or undefined. */
function apiPath(file) {
  if (file === DESCRIPTOR_FILE || file === KEY_CHECK_FILE) return file
  // A writable index's file, or an immutable one's `epoch-<n>/<name>`.
  if (file.startsWith(`${INDEX_DIR}/`)) return `index/${file.slice(INDEX_DIR.length + 1).split('/').map(encodeURIComponent).join('/')}`
  const inVm = /^xo-vm-backups\/([^/]+)\/([^/]+)$/.exec(file)
  if (!inVm) return undefined
  const vm = encodeURIComponent(inVm[1])
  if (inVm[2] === CACHE_FILE) return `vms/${vm}/cache`
  if (/^\d{8}T\d{6}Z\.json$/.test(inVm[2])) return `vms/${vm}/backups/${inVm[2]}`
  return undefined
}

/**
 * One repository of the server, `base` its API URL (`…/api/r/<id>/`).
 * Besides a share's `list` and `readFile`, it remembers what the server
 * said of each file read: its ETag (a poll skips what did not change) and
 * what the server's check found unreadable.
 */
export function httpShare(base) {
  const url = (path) => new URL(path, base)
  const seen = new Map()
  let verifiedAt
  async function get(path) {
    const response = await fetch(url(path))
    if (!response.ok) throw await httpError(response)
    return response
  }
  return {
    async list(dir) {
      if (dir === INDEX_DIR) {
        const response = await get('index')
        const header = response.headers.get('X-Brcache-Verified-At')
        verifiedAt = header ? Date.parse(header) : undefined
        return response.json()
      }
      // With the locks that show, which the core goes by.
      if (dir === BACKUP_DIR) return (await get('vms?locks=1')).json()
      // An immutable repository's epoch folder, and a VM folder's metadata
      // files, which the server offers there only (it checks no cache).
      const epoch = dir.startsWith(`${INDEX_DIR}/`) ? dir.slice(INDEX_DIR.length + 1) : undefined
      if (epoch !== undefined && !epoch.includes('/')) return (await get(`index/${encodeURIComponent(epoch)}`)).json()
      const vm = /^xo-vm-backups\/([^/.][^/]*)$/.exec(dir)
      if (vm) return (await get(`vms/${encodeURIComponent(vm[1])}/backups`)).json()
      throw new Error(`${dir} is not listed`)
    },
    async readFile(file) {
      const path = apiPath(file)
      if (path === undefined) throw new Error(`${file} is not served`)
      const response = await get(path)
      const found = response.headers.get('X-Brcache-Unreadable')
      seen.set(file, { etag: response.headers.get('ETag'), unreadable: found ? JSON.parse(decodeURIComponent(found)) : [] })
      return new Uint8Array(await response.arrayBuffer())
    },
    /** The ETag of the last answer for `file`, or undefined. */
    etag(file) {
      return seen.get(file)?.etag ?? undefined
    },
    /** When the server last verified its index against every VM cache (ms), as its last index listing said; undefined if not. */
    verifiedAt() {
      return verifiedAt
    },
    /** The metadata files the server's check of a cache could not read: `[{ id, reason }]`. */
    unreadable(file) {
      return seen.get(file)?.unreadable ?? []
    },
  }
}
