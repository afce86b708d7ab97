// `brcache serve`: the web restore view of one or more repositories. The
// browser receives the repository index's files, or each VM's
// cache.json.gz, as they lie on the share and decodes them with the wasm
// build, so the server never inflates, parses or re-serialises a record.
//
// What a request can reach is closed: the browser-safe files, the list
// of repositories, and per repository what js/node/served-repository.js
// offers under `/api/r/<id>/` (the first repository's also under `/api/`,
// the URLs of a one-repository server). Nothing in a URL is ever joined
// onto a file system path.
//
// With a token (`auth`), every /api/ URL but the sign-in answers 401 to a
// request without the token or a session cookie; the page and its assets
// (public code) load, and the page asks for the token.
//
// A repository that fails (unreachable, encrypted without its key, a
// damaged index) answers its own errors; the others are not held back.
//
// An immutable repository gets nothing written by the server; the page reads
// its index of create-only files (see js/node/served-repository.js).

import { readFile, stat } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { join } from 'node:path'
import { Auth } from './auth.js'
import { HttpError, json, notFound, send } from './http.js'
import { servedRepository } from './served-repository.js'
import { browserFiles } from './browser-safe.js'

export { UNREADABLE_HEADER, VERIFIED_HEADER } from './served-repository.js'

const packageDir = join(import.meta.dirname, '..', '..')

const TYPES = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  wasm: 'application/wasm',
}

// URL path -> file of the package: the browser-safe files (see
// js/node/browser-safe.js), listed once at start-up. The page's ES module
// imports are relative (`../browser.js`, `../common/layout.js`), so every
// asset is served at its own path inside the package and the imports
// resolve as they do on disk. A URL is only ever a key of this map.
const ASSETS = new Map(browserFiles(packageDir).map((file) => [`/${file}`, file]))
// The page's relative URLs (`js/web/app.js`, `api/vms`) resolve from `/`.
ASSETS.set('/', 'js/web/index.html')

// The wasm module is compiled from the page's own origin; nothing else runs.
const PAGE_POLICY = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/**
 * A server (not yet listening) for the restore view of repositories.
 *
 * @param {string | object | Array<string | object>} sources the repositories: folders, s3:// URLs
 *   or handlers, as `openRepository` takes them
 * @param {{ repair?: boolean, immutable?: boolean, index?: boolean, encryptionKey?: string,
 *   verifyEveryMs?: number, auth?: string | Auth, tls?: { cert: string | Buffer, key: string | Buffer } }} [options]
 *   `repair`: check each VM's cache against its folder (and write the
 *   repair) before serving it, so the bytes are true to the folder;
 *   `immutable`: write nothing, as on an S3 bucket with Object Lock, which
 *   is found out (no repair, no index made or verified); its index of
 *   create-only files, which listings of the library make there, is served
 *   read only (its epoch folders, their snapshots and segments), with the
 *   VM folders' metadata files, so that the page lists through it as the
 *   library does; `index`: offer the repository index, when there is one,
 *   so the page loads every VM's restore view in a few requests (the VMs
 *   the index does not know still come from their caches), and, with
 *   repair on, keep it: made at the first listing of the index folder when
 *   the repository has none (or by `prepareIndex()` before listening), and
 *   verified against every VM cache in the background after such
 *   listings, at most one at a time and one per `verifyEveryMs` (default
 *   60,000; Infinity: never), so that what Xen Orchestra writes shows
 *   within that window; `encryptionKey`: on an
 *   encrypted repository, what lets the server check caches (the page asks
 *   for the key itself; a plaintext repository ignores it); `auth`: the token (or an
 *   Auth) every /api/ request must carry, itself or through the session cookie a
 *   sign-in gives; `tls`: serve HTTPS
 * @returns the node:http (or https) server, with `repositories`: what each source became, and
 *   `settle()`: waits for what they do in the background
 */
export function createServer(sources, { repair = true, immutable = false, index = true, encryptionKey, verifyEveryMs = 60_000, auth, tls } = {}) {
  const gate = typeof auth === 'string' ? new Auth(auth, { secure: Boolean(tls) }) : auth
  const repositories = (Array.isArray(sources) ? sources : [sources]).map((source) =>
    servedRepository(source, { repair, immutable, index, encryptionKey, verifyEveryMs }),
  )

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

  async function signIn(request, response) {
    if (!gate) throw new HttpError(404, 'this server has no sign-in: it needs none')
    const client = request.socket.remoteAddress ?? ''
    const wait = gate.limited(client)
    if (wait) return tooMany(request, response, wait.retryAfter)
    const token = new URLSearchParams(await readBody(request)).get('token')
    const result = gate.signIn(client, token)
    if (result.retryAfter) return tooMany(request, response, result.retryAfter)
    if (!result.cookie) throw new HttpError(401, 'wrong token')
    response.setHeader('Set-Cookie', result.cookie)
    return json(request, response, 200, { signedIn: true })
  }

  async function route(request, response) {
    const path = (request.url ?? '').split('?')[0]
    if (path === '/api/sign-in') {
      if (request.method !== 'POST') {
        response.setHeader('Allow', 'POST')
        throw new HttpError(405, `${request.method} is not allowed`)
      }
      return signIn(request, response)
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD')
      throw new HttpError(405, `${request.method} is not allowed`)
    }
    const file = ASSETS.get(path)
    if (file) return asset(file, request, response)
    if (gate && !gate.authorized(request)) {
      response.setHeader('WWW-Authenticate', 'Bearer realm="brcache"')
      throw new HttpError(401, 'sign in first: this restore view needs its token')
    }
    if (path === '/api/repositories') {
      // Whether each is immutable: the page then lists it as the library
      // does there (its index of create-only files, its folders).
      // And whether its share has locks: without (S3), no VM folder listing.
      const served = await Promise.all(
        repositories.map(async (repository, id) => ({ id, name: repository.name, immutable: await immutableOrNot(repository), locks: repository.locks })),
      )
      return json(request, response, 200, served)
    }
    const one = /^\/api\/r\/(0|[1-9]\d{0,3})\/(.+)$/.exec(path)
    if (one) {
      const repository = repositories[Number(one[1])]
      if (!repository) throw notFound()
      return repository.route(one[2], request, response)
    }
    if (path.startsWith('/api/')) return repositories[0].route(path.slice('/api/'.length), request, response)
    throw notFound()
  }

  const handle = (request, response) => {
    route(request, response).catch((error) => {
      // A message, never a stack: the page shows it to whoever looks.
      const status = error instanceof HttpError ? error.status : 500
      if (!response.headersSent) json(request, response, status, { error: error.message })
      else response.destroy()
    })
  }
  const server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, handle) : createHttpServer(handle)
  const settle = () => Promise.all(repositories.map((served) => served.settle()))
  return Object.assign(server, { repositories, settle })
}

// An S3 bucket's Object Lock probe that hangs (a store out of reach) must
// not hold the page of every other repository back: that one is then not
// known to be immutable, and its own requests fail as they would anyway.
const IMMUTABLE_WAIT_MS = 2_000

async function immutableOrNot(repository) {
  let timer
  const waited = new Promise((resolve) => {
    timer = setTimeout(() => resolve(false), IMMUTABLE_WAIT_MS)
  })
  try {
    return await Promise.race([repository.isImmutable(), waited])
  } finally {
    clearTimeout(timer)
  }
}

const MAX_BODY = 4096

/** A small request body as text; a larger one is refused. */
function readBody(request) {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks = []
    request.on('data', (chunk) => {
      size += chunk.length
      if (size > MAX_BODY) {
        reject(new HttpError(413, `a sign-in is at most ${MAX_BODY} bytes`))
        request.destroy()
      } else chunks.push(chunk)
    })
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    request.on('error', reject)
  })
}

function tooMany(request, response, retryAfter) {
  response.setHeader('Retry-After', String(retryAfter))
  json(request, response, 429, { error: `too many failed sign-ins: try again in ${retryAfter} s`, retryAfter })
}

