// `brcache serve`: the web restore view. The browser receives the
// repository index's files, or each VM's cache.json.gz, as they lie on the
// share and decodes them with the wasm build, so the server never
// inflates, parses or re-serialises a record.
//
// What a request can reach is closed: an explicit list of assets, the list
// of VM folders, the cache of a VM that list names, the index files a
// listing of the index folder names, and an encrypted repository's two
// root files. Nothing in a URL is ever joined onto a file system path, so
// no spelling of `..` or of an encoded slash can reach a file outside the
// repository or the package.
//
// On an encrypted repository every file goes out as it lies, encrypted:
// the page asks for the key and decrypts in the browser, and the key never
// travels. A server given the key can still check and repair caches before
// serving them; one without it serves them unchecked.

import { createHash } from 'node:crypto'
import { readFile, stat } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { join } from 'node:path'
import { DESCRIPTOR_FILE, KEY_CHECK_FILE } from './encryption.js'
import { INDEX_DIR } from './index-store.js'
import { CACHE_FILE, vmFile } from './layout.js'
import { indexApi } from './core.js'
import { listVmFolders, openRepository } from './repository.js'

const packageDir = join(import.meta.dirname, '..')

const TYPES = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  wasm: 'application/wasm',
}

// URL path -> file of the package. The page's ES module imports are
// relative (`../browser.js`, `./generated/wasm-web/…`), so every asset is
// served at its own path inside the package and the imports resolve as
// they do on disk.
const ASSETS = new Map(
  [
    'js/web/app.js',
    'js/web/format.js',
    'js/web/table.js',
    'js/web/details.js',
    'js/web/style.css',
    'js/browser.js',
    'js/codec.js',
    'js/vm-cache.js',
    'js/errors.js',
    'js/layout.js',
    'js/concurrency.js',
    'js/index-store.js',
    'js/encryption.js',
    'js/handlers/encrypted.js',
    'js/web/http-share.js',
    'js/generated/wasm-web/brcache_wasm.js',
    'js/generated/wasm-web/brcache_wasm_bg.wasm',
  ].map((file) => [`/${file}`, file]),
)
// The page's relative URLs (`js/web/app.js`, `api/vms`) resolve from `/`.
ASSETS.set('/', 'js/web/index.html')

// The wasm module is compiled from the page's own origin; nothing else runs.
const PAGE_POLICY = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; object-src 'none'; base-uri 'none'"

class HttpError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

const notFound = () => new HttpError(404, 'not found')

/** On a checked cache: the VM's metadata files that could not be read, `[{ id, reason }]`. */
export const UNREADABLE_HEADER = 'X-Brcache-Unreadable'

/**
 * A server (not yet listening) for the restore view of a repository.
 *
 * @param {string | object} dir the repository: a folder or a handler, as `openRepository` takes
 * @param {{ repair?: boolean, immutable?: boolean, index?: boolean, encryptionKey?: string }} [options]
 *   `repair`: check each VM's cache against its folder (and write the
 *   repair) before serving it, so the bytes are true to the folder;
 *   `immutable`: never write a cache (implies no repair, and no index, as
 *   for listings); `index`: offer the repository index, when there is one,
 *   so the page loads every VM's restore view in a few requests (the VMs
 *   the index does not know still come from their caches); `encryptionKey`: on an
 *   encrypted repository, what lets the server check caches (the page asks
 *   for the key itself)
 */
export function createServer(dir, { repair = true, immutable = false, index = true, encryptionKey } = {}) {
  const repository = openRepository(dir, { immutable, encryptionKey })
  const share = repository.handler
  const offerIndex = index && repository.usesIndex
  // Checks need to read the caches: not on an encrypted repository whose
  // key the server was not given (it serves them as they lie). Decided
  // once; an I/O failure is asked again.
  let readable
  const canCheck = async () => {
    if (!repair || immutable) return false
    readable ??= repository.encryption().then(
      (state) => state.readable,
      (error) => {
        readable = undefined
        throw error
      },
    )
    return readable
  }

  /** The index files, newest snapshot first, from a fresh listing; 404 without an index. */
  async function indexFiles() {
    if (!offerIndex) throw new HttpError(404, 'no repository index')
    let names
    try {
      names = await share.list(INDEX_DIR)
    } catch (error) {
      if (error.code === 'ENOENT') throw new HttpError(404, 'no repository index')
      throw new HttpError(500, `cannot list ${INDEX_DIR}: ${error.message}`)
    }
    const plan = indexApi.readPlan(names)
    return [plan.snapshot, ...plan.oldSnapshots, ...plan.segments].filter(Boolean)
  }

  /** A file of the share with its date; `missing` is the 404's message. */
  async function readShared(file, missing) {
    try {
      // The date first: should a writer replace the file in between, the
      // date is the older one, and If-Modified-Since errs towards a 200.
      const info = await share.stat(file)
      return { info, bytes: await share.readFile(file) }
    } catch (error) {
      if (error.code === 'ENOENT') throw new HttpError(404, missing)
      throw new HttpError(500, `cannot read ${file}: ${error.message}`)
    }
  }

  async function indexFile(name, request, response) {
    // Only a name the listing gives: compared, never resolved.
    if (!(await indexFiles()).includes(name)) throw new HttpError(404, `${INDEX_DIR}/${name} is not an index file`)
    const file = `${INDEX_DIR}/${name}`
    // A 404 if compacted away since the listing: the page reads the index again.
    const { info, bytes } = await readShared(file, `${file} is gone`)
    send(request, response, bytes, { type: 'application/octet-stream', mtimeMs: info.mtimeMs })
  }

  async function vmCache(vm, request, response) {
    // Only a VM the repository lists: the name is compared, never resolved.
    if (!(await listVmFolders(share)).includes(vm)) throw notFound()
    const headers = {}
    if (await canCheck()) {
      let report
      try {
        report = await repository.checkVm(vm, { repair: true })
      } catch (error) {
        throw new HttpError(503, `cannot check the cache of VM ${vm}: ${error.message}`)
      }
      // Metadata files the cache leaves out because they cannot be read:
      // the page says so on the VM's row, rather than show a shorter list
      // as if it were whole. (URI-encoded: a header is Latin-1.)
      if (report.unreadable.length > 0) headers[UNREADABLE_HEADER] = encodeURIComponent(JSON.stringify(report.unreadable))
    }
    const { info, bytes } = await readShared(vmFile(vm, CACHE_FILE), `VM ${vm} has no cache`)
    // No Content-Encoding: the page must get the gzip bytes themselves.
    send(request, response, bytes, { type: 'application/gzip', mtimeMs: info.mtimeMs, headers })
  }

  async function asset(file, request, response) {
    const path = join(packageDir, file)
    let bytes
    let info
    try {
      info = await stat(path)
      bytes = await readFile(path)
    } catch (error) {
      if (error.code === 'ENOENT') throw new HttpError(404, `${file} is not built (run npm run build)`)
      throw error
    }
    const headers = file.endsWith('.html') ? { 'Content-Security-Policy': PAGE_POLICY } : {}
    send(request, response, bytes, { type: TYPES[file.slice(file.lastIndexOf('.') + 1)], mtimeMs: info.mtimeMs, headers })
  }

  async function route(request, response) {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD')
      throw new HttpError(405, `${request.method} is not allowed`)
    }
    const path = (request.url ?? '').split('?')[0]
    const file = ASSETS.get(path)
    if (file) return asset(file, request, response)
    if (path === '/api/vms') return json(request, response, 200, await listVmFolders(share))
    // The page reads an encrypted repository's two root files to know the
    // algorithm and to check the key it is given: both as they lie (the
    // second is encrypted). A 404 for a plaintext repository.
    if (path === `/api/${DESCRIPTOR_FILE}` || path === `/api/${KEY_CHECK_FILE}`) {
      const file = path.slice('/api/'.length)
      const { info, bytes } = await readShared(file, `no ${file}: the repository is not encrypted`)
      return send(request, response, bytes, { type: 'application/octet-stream', mtimeMs: info.mtimeMs })
    }
    if (path === '/api/index') return json(request, response, 200, await indexFiles())
    const indexMatch = /^\/api\/index\/([^/]+)$/.exec(path)
    if (indexMatch) return indexFile(indexMatch[1], request, response)
    const match = /^\/api\/vms\/([^/]+)\/cache$/.exec(path)
    if (match) return vmCache(match[1], request, response)
    throw notFound()
  }

  return createHttpServer((request, response) => {
    route(request, response).catch((error) => {
      // A message, never a stack: the page shows it to whoever looks.
      const status = error instanceof HttpError ? error.status : 500
      if (!response.headersSent) json(request, response, status, { error: error.message })
      else response.destroy()
    })
  })
}

function etagOf(bytes) {
  return `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 32)}"`
}

/** Whether the client's copy is current (RFC 9110 §13.1.2 and §13.1.3). */
function notModified(request, etag, mtimeMs) {
  const ifNoneMatch = request.headers['if-none-match']
  if (ifNoneMatch !== undefined) {
    // Weak comparison, as If-None-Match uses.
    return ifNoneMatch.split(',').some((tag) => {
      const t = tag.trim()
      return t === '*' || t.replace(/^W\//, '') === etag
    })
  }
  const since = Date.parse(request.headers['if-modified-since'] ?? '')
  // HTTP dates have whole seconds.
  return Number.isFinite(since) && Math.floor(mtimeMs / 1000) * 1000 <= since
}

function send(request, response, bytes, { type, mtimeMs, headers = {} }) {
  const etag = etagOf(bytes)
  response.setHeader('ETag', etag)
  response.setHeader('Last-Modified', new Date(mtimeMs).toUTCString())
  // Always revalidate: a cache changes with every backup.
  response.setHeader('Cache-Control', 'no-cache')
  response.setHeader('X-Content-Type-Options', 'nosniff')
  for (const [name, value] of Object.entries(headers)) response.setHeader(name, value)
  if (notModified(request, etag, mtimeMs)) {
    response.writeHead(304).end()
    return
  }
  response.writeHead(200, { 'Content-Type': type, 'Content-Length': bytes.length })
  response.end(request.method === 'HEAD' ? undefined : bytes)
}

function json(request, response, status, value) {
  const body = Buffer.from(JSON.stringify(value))
  response.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': body.length,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  })
  response.end(request.method === 'HEAD' ? undefined : body)
}
