// Who may read the restore view: `brcache serve` with a token. A request
// carries the token itself (`Authorization: Bearer …`, for scripts) or the
// session cookie a sign-in gave it (for the page). Every comparison takes
// the same time whatever the guess, and failed sign-ins are limited per
// client, so the token cannot be found by timing or by trying.
//
// State is in memory and bounded: sessions and failure counters are
// evicted oldest first past their caps, so no client can grow the
// server's memory by signing in or failing to.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

export const SESSION_COOKIE = 'brcache_session'

/** A fresh token for `--auth`: 32 random bytes, URL-safe. */
export function generateToken() {
  return randomBytes(32).toString('base64url')
}

// Digests have one length, so timingSafeEqual never throws, and the
// comparison's time says nothing of the guess's length either.
const digest = (text) => createHash('sha256').update(String(text)).digest()

function cookies(request) {
  const out = new Map()
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=')
    if (at > 0) out.set(part.slice(0, at).trim(), part.slice(at + 1).trim())
  }
  return out
}

/** Drops the oldest entries of a Map (insertion order) past `max`. */
function trim(map, max) {
  while (map.size > max) map.delete(map.keys().next().value)
}

export class Auth {
  #token
  #secure
  #sessionMs
  #maxFailures
  #windowMs
  #sessions = new Map()
  #failures = new Map()
  #maxSessions
  #maxClients
  #now

  /**
   * @param {string} token what a client must know
   * @param {object} [options]
   * @param {boolean} [options.secure] the server speaks TLS: the cookie is `Secure`
   * @param {number} [options.sessionMs] how long a sign-in lasts (12 h)
   * @param {number} [options.maxFailures] failed sign-ins a client may make per window (5)
   * @param {number} [options.windowMs] the window (60 s)
   */
  constructor(
    token,
    { secure = false, sessionMs = 12 * 3600_000, maxFailures = 5, windowMs = 60_000, maxSessions = 1_000, maxClients = 10_000, now = Date.now } = {},
  ) {
    if (typeof token !== 'string' || token.length < 16) throw new Error('an authentication token has at least 16 characters')
    this.#token = digest(token)
    this.#secure = secure
    this.#sessionMs = sessionMs
    this.#maxFailures = maxFailures
    this.#windowMs = windowMs
    this.#maxSessions = maxSessions
    this.#maxClients = maxClients
    this.#now = now
  }

  #matches(candidate) {
    return timingSafeEqual(digest(candidate), this.#token)
  }

  /** Whether the request carries the token or a live session. */
  authorized(request) {
    const header = request.headers.authorization ?? ''
    if (header.startsWith('Bearer ')) return this.#matches(header.slice('Bearer '.length).trim())
    const session = cookies(request).get(SESSION_COOKIE)
    if (!session) return false
    // Sessions are looked up by their digest: a map lookup on the raw id
    // would not run in constant time, a digest of it gives nothing away.
    const key = digest(session).toString('hex')
    const expires = this.#sessions.get(key)
    if (expires === undefined) return false
    if (expires <= this.#now()) {
      this.#sessions.delete(key)
      return false
    }
    return true
  }

  /** `{ retryAfter }` (seconds) while `client` has used up its failed sign-ins, else undefined. */
  limited(client) {
    const entry = this.#failures.get(client)
    if (!entry || entry.until <= this.#now()) return undefined
    return entry.count >= this.#maxFailures ? { retryAfter: Math.ceil((entry.until - this.#now()) / 1000) } : undefined
  }

  /**
   * A sign-in attempt from `client`: `{ cookie }` (a Set-Cookie value) when
   * `token` is right, `{ retryAfter }` when the client must wait, `{}`
   * when wrong (counted).
   */
  signIn(client, token) {
    const limit = this.limited(client)
    if (limit) return limit
    if (typeof token === 'string' && this.#matches(token)) {
      this.#failures.delete(client)
      const session = randomBytes(32).toString('base64url')
      this.#sessions.set(digest(session).toString('hex'), this.#now() + this.#sessionMs)
      trim(this.#sessions, this.#maxSessions)
      const attributes = ['Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${Math.floor(this.#sessionMs / 1000)}`]
      if (this.#secure) attributes.push('Secure')
      return { cookie: `${SESSION_COOKIE}=${session}; ${attributes.join('; ')}` }
    }
    const now = this.#now()
    const entry = this.#failures.get(client)
    if (!entry || entry.until <= now) this.#failures.set(client, { count: 1, until: now + this.#windowMs })
    else entry.count++
    trim(this.#failures, this.#maxClients)
    return {}
  }
}

/** Whether a host name or address to listen on is this machine only. */
export function isLoopback(host) {
  const h = String(host).replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h)
}
