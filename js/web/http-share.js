// The index folder as `brcache serve` offers it, in the shape of a share
// handler, so that the page reads the repository index with the very code
// the server side uses (js/index-store.js): same read plan, same retries
// when a compaction removes a file mid-read, same checks. A 404 is ENOENT,
// as on a share: no index, or a file compacted away since the listing.

import { INDEX_DIR } from '../index-store.js'

/** An Error carrying the server's `{ error }` if it sent one, else the status line. */
export async function httpError(response) {
  let message = `${response.status} ${response.statusText}`
  try {
    const body = await response.json()
    if (typeof body?.error === 'string') message = `${message}: ${body.error}`
  } catch {
    // Not JSON: the status line says enough.
  }
  return Object.assign(new Error(`HTTP ${message}`), response.status === 404 ? { code: 'ENOENT' } : {})
}

export function httpShare(base) {
  const url = (path) => new URL(path, base)
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
      if (!file.startsWith(`${INDEX_DIR}/`)) throw new Error(`only ${INDEX_DIR} is served, not ${file}`)
      const name = file.slice(INDEX_DIR.length + 1)
      return new Uint8Array(await (await get(`api/index/${encodeURIComponent(name)}`)).arrayBuffer())
    },
  }
}
