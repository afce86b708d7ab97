// `brcache serve` with a token, over raw HTTP (the browser's sign-in is in
// tests/browser.test.mjs): every /api/ URL but the sign-in
// answers 401 without it; the token works as a Bearer header or through
// the session cookie a sign-in sets; failed sign-ins are limited per
// client; a non-loopback --host needs a token; HTTPS with --tls-cert.

import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Auth, isLoopback } from '../js/node/auth.js'
import { generateRepository } from '../js/sample/generate.js'
import { listen } from './helpers/serve.mjs'

const cli = join(import.meta.dirname, '..', 'js', 'node', 'cli.js')
const TOKEN = 'the-restore-view-token-of-these-tests'
const cleanups = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

let dir
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'brcache-auth-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  await generateRepository(join(dir, 'repo'), { vms: 2, retention: 2, seed: 'auth' })
})

function call(port, path, { method = 'GET', headers = {}, body, tls } = {}) {
  return new Promise((resolve, reject) => {
    const request = (tls ? httpsRequest : httpRequest)({ host: '127.0.0.1', port, path, method, headers, ...(tls && { ca: tls }) }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }))
    })
    request.on('error', reject)
    request.end(body)
  })
}

const signIn = (port, token) =>
  call(port, '/api/sign-in', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ token }).toString() })

async function server(options = {}) {
  const s = await listen(join(dir, 'repo'), { auth: TOKEN, ...options })
  cleanups.push(s.close)
  return s.port
}

describe('a server with a token', () => {
  test('every /api/ URL is a 401 without it; the page and its assets load', async () => {
    const port = await server()
    const vms = JSON.parse((await call(port, '/api/vms', { headers: { Authorization: `Bearer ${TOKEN}` } })).body)
    assert.equal(vms.length, 2)
    for (const path of ['/api/vms', `/api/vms/${vms[0]}/cache`, '/api/index', '/api/index/x', '/api/encryption.json', '/api/metadata.json', '/api/nothing']) {
      const r = await call(port, path)
      assert.equal(r.status, 401, path)
      assert.equal(r.headers['www-authenticate'], 'Bearer realm="brcache"')
      assert.match(JSON.parse(r.body).error, /^sign in first/)
    }
    for (const path of ['/', '/js/web/app.js', '/js/generated/wasm-web/brcache_wasm_bg.wasm']) assert.equal((await call(port, path)).status, 200, path)
    const page = await call(port, '/')
    assert.match(page.headers['content-security-policy'], /form-action 'self'; frame-ancestors 'none'/)
  })

  test('the token as a Bearer header; a wrong one, or another scheme, is a 401', async () => {
    const port = await server()
    assert.equal((await call(port, '/api/vms', { headers: { Authorization: `Bearer ${TOKEN}` } })).status, 200)
    for (const header of [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, 'Bearer ', `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}`, TOKEN]) {
      assert.equal((await call(port, '/api/vms', { headers: { Authorization: header } })).status, 401, header)
    }
  })

  test('a sign-in sets an HttpOnly, SameSite=Strict session cookie that works; a forged one does not', async () => {
    const port = await server()
    const r = await signIn(port, TOKEN)
    assert.equal(r.status, 200)
    const cookie = r.headers['set-cookie'][0]
    assert.match(cookie, /^brcache_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/)
    assert.ok(!cookie.includes(TOKEN), 'the cookie is a session, not the token')
    const session = cookie.split(';')[0]
    assert.equal((await call(port, '/api/vms', { headers: { Cookie: session } })).status, 200)
    assert.equal((await call(port, '/api/vms', { headers: { Cookie: `${session.slice(0, -2)}xy` } })).status, 401)
    assert.equal((await call(port, '/api/vms', { headers: { Cookie: `brcache_session=${TOKEN}` } })).status, 401)
    assert.equal((await call(port, '/api/sign-in')).status, 405)
  })

  test('failed sign-ins are limited per client: the sixth within a minute is a 429, the right token too', async () => {
    const port = await server()
    for (let i = 0; i < 5; i++) assert.equal((await signIn(port, `guess-${i}`)).status, 401)
    const limited = await signIn(port, TOKEN)
    assert.equal(limited.status, 429)
    assert.ok(Number(limited.headers['retry-after']) > 0 && Number(limited.headers['retry-after']) <= 60)
    assert.match(JSON.parse(limited.body).error, /too many failed sign-ins/)
    // The Bearer header is unaffected: a script with the token still works.
    assert.equal((await call(port, '/api/vms', { headers: { Authorization: `Bearer ${TOKEN}` } })).status, 200)
    const huge = await call(port, '/api/sign-in', { method: 'POST', body: `token=${'x'.repeat(10_000)}` })
    assert.equal(huge.status, 429, 'still limited, before the body is read')
  })
})

describe('Auth, the bookkeeping', () => {
  test('sessions expire; failure windows reset; both maps stay bounded', () => {
    let now = 1_000_000
    const auth = new Auth(TOKEN, { sessionMs: 1000, windowMs: 500, maxFailures: 2, maxSessions: 3, maxClients: 4, now: () => now })
    const request = (cookie) => ({ headers: { cookie } })
    const { cookie } = auth.signIn('a', TOKEN)
    const session = cookie.split(';')[0]
    assert.equal(auth.authorized(request(session)), true)
    now += 1000
    assert.equal(auth.authorized(request(session)), false, 'expired')
    assert.deepStrictEqual(auth.signIn('b', 'x'), {})
    assert.deepStrictEqual(auth.signIn('b', 'y'), {})
    assert.ok(auth.limited('b').retryAfter >= 1)
    now += 500
    assert.equal(auth.limited('b'), undefined, 'the window passed')
    // Five clients fail once: the oldest is forgotten, never more than four kept.
    for (const client of ['c1', 'c2', 'c3', 'c4', 'c5']) auth.signIn(client, 'x')
    auth.signIn('c1', 'x')
    assert.equal(auth.limited('c1'), undefined, 'c1 was evicted, its count started again')
    const sessions = ['s1', 's2', 's3', 's4'].map((client) => auth.signIn(client, TOKEN).cookie.split(';')[0])
    assert.deepStrictEqual(sessions.map((s) => auth.authorized(request(s))), [false, true, true, true])
    assert.throws(() => new Auth('short'), /at least 16 characters/)
  })

  test('loopback is 127.0.0.0/8, ::1 and localhost, nothing else', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopback(host), true, host)
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.1', 'example.org', '128.0.0.1', '127.0.0.1.example.org']) assert.equal(isLoopback(host), false, host)
  })
})

/** `brcache serve` as a child: its first lines, once it listens. */
function serveCli(args, lines = 1) {
  const child = spawn(process.execPath, [cli, 'serve', join(dir, 'repo'), '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  cleanups.push(() => child.kill())
  return new Promise((resolve, reject) => {
    let out = ''
    let err = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      if (out.split('\n').length > lines) resolve(out.split('\n').slice(0, lines))
    })
    child.stderr.on('data', (chunk) => (err += chunk))
    child.on('exit', (code) => reject(Object.assign(new Error(`brcache serve exited with ${code}: ${err}`), { code, err })))
  })
}

describe('brcache serve beyond loopback', () => {
  test('a non-loopback --host without a token is refused, saying how', async () => {
    const refused = await serveCli(['--host', '0.0.0.0']).catch((error) => error)
    assert.equal(refused.code, 2)
    assert.match(refused.err, /--host 0\.0\.0\.0 would serve every VM's backup history to anyone .* add --auth .* or --auth-file FILE/)
  })

  test('--auth generates and prints a token; --auth-file reads one; both guard the API', async () => {
    const [listening, told] = await serveCli(['--host', '0.0.0.0', '--auth'], 2)
    const port = Number(/:(\d+)\/ \(Ctrl-C/.exec(listening)[1])
    const token = /: ([A-Za-z0-9_-]{43})$/.exec(told)[1]
    assert.equal((await call(port, '/api/vms')).status, 401)
    assert.equal((await call(port, '/api/vms', { headers: { Authorization: `Bearer ${token}` } })).status, 200)

    const file = join(dir, 'token')
    writeFileSync(file, `${TOKEN}\n`)
    const [line] = await serveCli(['--auth-file', file], 2)
    const other = Number(/:(\d+)\/ \(Ctrl-C/.exec(line)[1])
    assert.equal((await call(other, '/api/vms', { headers: { Authorization: `Bearer ${TOKEN}` } })).status, 200)
    writeFileSync(file, 'short\n')
    assert.match((await serveCli(['--auth-file', file]).catch((error) => error)).err, /at least 16 characters/)
  })

  test('HTTPS with --tls-cert and --tls-key: the cookie is Secure', async () => {
    const cert = join(dir, 'cert.pem')
    const key = join(dir, 'key.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
    const missing = await serveCli(['--auth-file', join(dir, 'token-tls'), '--tls-cert', cert, '--tls-key', key]).catch((error) => error)
    assert.match(missing.err, /cannot read the token file .*token-tls/, 'a missing token file is an error')
    assert.match((await serveCli(['--tls-cert', cert]).catch((error) => error)).err, /--tls-cert and --tls-key go together/)
    writeFileSync(join(dir, 'token-tls'), TOKEN)
    const [listening] = await serveCli(['--auth-file', join(dir, 'token-tls'), '--tls-cert', cert, '--tls-key', key], 2)
    assert.match(listening, /at https:\/\/127\.0\.0\.1:\d+\//)
    const port = Number(/:(\d+)\/ \(Ctrl-C/.exec(listening)[1])
    const ca = (await import('node:fs')).readFileSync(cert)
    const r = await call(port, '/api/sign-in', {
      tls: ca,
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `token=${TOKEN}`,
    })
    assert.equal(r.status, 200)
    assert.match(r.headers['set-cookie'][0], /; Secure$/)
    assert.equal((await call(port, '/api/vms', { tls: ca, headers: { Cookie: r.headers['set-cookie'][0].split(';')[0] } })).status, 200)
  })
})
