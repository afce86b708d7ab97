// The HTTP answers `brcache serve` gives: errors as `{ error }` (a message,
// never a stack), bytes with a strong ETag and 304s, JSON that is never
// cached.

import { createHash } from 'node:crypto'

export class HttpError extends Error {
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

export const notFound = () => new HttpError(404, 'not found')

export function etagOf(bytes) {
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

export function send(request, response, bytes, { type, mtimeMs, headers = {}, etag = etagOf(bytes) }) {
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

export function json(request, response, status, value) {
  const body = Buffer.from(JSON.stringify(value))
  response.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': body.length,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  })
  response.end(request.method === 'HEAD' ? undefined : body)
}

/**
 * JSON that changes now and then (a folder's listing): an ETag, so that a
 * page polling it gets 304s until something changed. `version` is what
 * else the answer says (in `headers`) that a change of must be a 200 too:
 * a 304's headers are not what every client goes by.
 */
export function jsonRevalidated(request, response, value, { headers = {}, version = '' } = {}) {
  const body = Buffer.from(JSON.stringify(value))
  const etag = etagOf(version === '' ? body : Buffer.concat([body, Buffer.from(`\n${version}`)]))
  send(request, response, body, { type: 'application/json; charset=utf-8', mtimeMs: Date.now(), headers, etag })
}
