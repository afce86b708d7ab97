// `brcache serve` without a browser: what each URL answers, conditional
// requests, repair before serving, and that no URL reaches past the
// repository or the asset list.

import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { gzipSync } from 'node:zlib'
import { BrcacheError, LocalHandler, openRepository, summariesOf } from 'brcache'
import { EncryptedShare, encryptionApi, init } from '../js/browser.js'
import { httpShare } from '../js/web/http-share.js'
import { readView, readVm } from '../js/web/reader.js'
import { generateRepository } from '../js/sample/generate.js'
import { INDEX_DIR } from '../js/common/repo-index.js'
import { browserFiles } from '../js/node/browser-safe.js'
import { CACHE_FILE, formatFilenameDate, vmFile } from '../js/common/layout.js'
import { createRandom, makeMetadata, makeVm, makeVmBackups } from '../js/sample/metadata.js'
import { listen as listenOn } from './helpers/serve.mjs'
import { treeOf } from './helpers/tree.mjs'
import { KEY, encryptAsXo } from './helpers/xo-encryption.mjs'

const root = join(import.meta.dirname, '..')
const cleanups = []
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

async function repositoryDir(seed = 'serve') {
  const parent = mkdtempSync(join(tmpdir(), 'brcache-serve-'))
  cleanups.push(() => rmSync(parent, { recursive: true, force: true }))
  // A file next to the repository that no URL may ever reach.
  writeFileSync(join(parent, 'secret.txt'), 'SECRET-OUTSIDE-THE-REPOSITORY')
  const dir = join(parent, 'repo')
  await generateRepository(dir, { vms: 3, retention: 4, seed })
  return dir
}

async function listen(dirOrHandler, options) {
  const server = await listenOn(dirOrHandler, options)
  cleanups.push(server.close)
  return server.port
}

/** A raw request: the path goes on the wire as written (fetch would normalise `..`). */
function get(port, path, { method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end()
  })
}

const cacheUrl = (vm) => `/api/vms/${vm}/cache`
const cacheBytes = (dir, vm) => readFileSync(join(dir, vmFile(vm, CACHE_FILE)))

/** A handler that records every path the server touches. */
function recording(dir) {
  const handler = new LocalHandler(dir)
  const calls = []
  const proxy = new Proxy(handler, {
    get(target, name) {
      const value = target[name]
      if (typeof value !== 'function') return value
      return (...args) => {
        calls.push([name, args[0]])
        return value.apply(target, args)
      }
    },
  })
  return { handler: proxy, calls }
}

describe('brcache serve: the API', () => {
  let dir
  let port
  let vms
  before(async () => {
    dir = await repositoryDir()
    port = await listen(dir)
    vms = await openRepository(dir).listAllVms()
  })

  test('/api/vms lists the VM folders', async () => {
    const r = await get(port, '/api/vms')
    assert.equal(r.status, 200)
    assert.match(r.headers['content-type'], /^application\/json/)
    assert.deepStrictEqual(JSON.parse(r.body), vms)
  })

  test("a VM's cache is the file's bytes, unchanged and not content-encoded", async () => {
    for (const vm of vms) {
      const r = await get(port, cacheUrl(vm))
      assert.equal(r.status, 200)
      assert.equal(r.headers['content-type'], 'application/gzip')
      assert.equal(r.headers['content-encoding'], undefined)
      assert.equal(Number(r.headers['content-length']), r.body.length)
      assert.deepStrictEqual(r.body, cacheBytes(dir, vm))
      assert.equal(r.headers['last-modified'], new Date(statSync(join(dir, vmFile(vm, CACHE_FILE))).mtimeMs).toUTCString())
      assert.equal(summariesOf(vm, r.body).length, 4)
    }
  })

  test('an unchanged cache is a 304 on If-None-Match or If-Modified-Since', async () => {
    const [vm] = vms
    const first = await get(port, cacheUrl(vm))
    const etag = first.headers.etag
    assert.match(etag, /^"[^"]+"$/, 'a strong ETag')
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const r = await get(port, cacheUrl(vm), { headers: { 'If-None-Match': ifNoneMatch } })
      assert.equal(r.status, 304, ifNoneMatch)
      assert.equal(r.body.length, 0)
      assert.equal(r.headers.etag, etag)
    }
    const other = await get(port, cacheUrl(vm), { headers: { 'If-None-Match': '"something-else"' } })
    assert.equal(other.status, 200)
    const since = await get(port, cacheUrl(vm), { headers: { 'If-Modified-Since': first.headers['last-modified'] } })
    assert.equal(since.status, 304)
    const older = new Date(Date.parse(first.headers['last-modified']) - 60_000).toUTCString()
    assert.equal((await get(port, cacheUrl(vm), { headers: { 'If-Modified-Since': older } })).status, 200)
    // If-None-Match decides when both are sent (RFC 9110 §13.1.3).
    const both = await get(port, cacheUrl(vm), {
      headers: { 'If-None-Match': '"something-else"', 'If-Modified-Since': first.headers['last-modified'] },
    })
    assert.equal(both.status, 200)
  })

  test('the ETag changes when the cache does', async () => {
    const vm = vms[1]
    const before = await get(port, cacheUrl(vm))
    const rng = createRandom('serve-new-backup')
    const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, retention: 1, start: Date.UTC(2030, 0, 1) })
    const repository = openRepository(dir)
    const id = await repository.writeVmBackupMetadata(vm, metadata)
    const after = await get(port, cacheUrl(vm), { headers: { 'If-None-Match': before.headers.etag } })
    assert.equal(after.status, 200)
    assert.notEqual(after.headers.etag, before.headers.etag)
    assert.deepStrictEqual(after.body, cacheBytes(dir, vm))
    assert.ok(summariesOf(vm, after.body).some((s) => s.id === id))
  })

  test('HEAD answers the headers of GET without a body', async () => {
    const vm = vms[0]
    const getR = await get(port, cacheUrl(vm))
    const head = await get(port, cacheUrl(vm), { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.body.length, 0)
    for (const name of ['etag', 'last-modified', 'content-type', 'content-length']) assert.equal(head.headers[name], getR.headers[name])
    assert.equal((await get(port, '/', { method: 'HEAD' })).status, 200)
  })

  test('only GET and HEAD: anything else is a 405 naming them', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await get(port, cacheUrl(vms[0]), { method })
      assert.equal(r.status, 405, method)
      assert.equal(r.headers.allow, 'GET, HEAD')
      assert.match(JSON.parse(r.body).error, new RegExp(method))
    }
  })

  test('the page and its assets, with the types a browser needs', async () => {
    const page = await get(port, '/')
    assert.equal(page.status, 200)
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8')
    assert.match(page.headers['content-security-policy'], /'wasm-unsafe-eval'/)
    assert.deepStrictEqual(page.body, readFileSync(join(root, 'js/web/index.html')))
    const types = {
      '/js/web/app.js': 'text/javascript; charset=utf-8',
      '/js/web/style.css': 'text/css; charset=utf-8',
      '/js/browser.js': 'text/javascript; charset=utf-8',
      '/js/common/vm-cache.js': 'text/javascript; charset=utf-8',
      '/js/generated/wasm-web/brcache_wasm.js': 'text/javascript; charset=utf-8',
      '/js/generated/wasm-web/brcache_wasm_bg.wasm': 'application/wasm',
    }
    for (const [path, type] of Object.entries(types)) {
      const r = await get(port, path)
      assert.equal(r.status, 200, path)
      assert.equal(r.headers['content-type'], type, path)
      assert.deepStrictEqual(r.body, readFileSync(join(root, path.slice(1))), path)
    }
    // Every browser-safe file is served, and every relative import of its
    // modules is an asset the server has.
    const served = browserFiles(root).map((file) => `/${file}`)
    for (const needed of ['/js/web/app.js', '/js/web/index-worker.js', '/js/browser.js', '/js/common/codec.js', '/js/common/encrypted-share.js']) assert.ok(served.includes(needed), needed)
    for (const path of served) assert.equal((await get(port, path)).status, 200, path)
    for (const path of served.filter((file) => file.endsWith('.js') && !file.startsWith('/js/generated/'))) {
      const source = (await get(port, path)).body.toString()
      for (const [, spec] of source.matchAll(/^import[^'"]*['"](\.[^'"]+)['"]/gm)) {
        const target = new URL(spec, `http://x${path}`).pathname
        assert.equal((await get(port, target)).status, 200, `${path} imports ${target}`)
      }
    }
  })
})

describe('brcache serve: nothing outside the repository and the asset list', () => {
  test('every other path is a 404 with a JSON error, and reads nothing', async () => {
    const dir = await repositoryDir('confined')
    const { handler, calls } = recording(dir)
    const port = await listen(handler)
    const [vm] = await openRepository(dir).listAllVms()
    const paths = [
      '/api/vms/..%2f..%2fetc/cache',
      '/api/vms/..%2F..%2Fsecret.txt/cache',
      `/api/vms/${vm}/../../x`,
      `/api/vms/${vm}/../../../secret.txt`,
      `/api/vms/${vm}%2f..%2f..%2f..%2fsecret.txt/cache`,
      `/api/vms/${vm}/cache/extra`,
      `/api/vms/${vm}/20240101T000000Z.json`,
      `/api/vms/./cache`,
      `/api/vms/../cache`,
      `/api/vms/${vm.toUpperCase()}/cache`,
      '/api/vms/00000000-0000-0000-0000-000000000000/cache',
      '/api/vms/xo-vm-backups/cache',
      '/js/../package.json',
      '/js/web/../../package.json',
      '/js/web/',
      '/js/web',
      '/js/',
      '/js/repository.js',
      '/js/node/repository.js',
      '/js/node/serve.js',
      '/js/common/',
      '/js/sample/metadata.js',
      '/js/index.js',
      '/js/generated/wasm-web/brcache_wasm.d.ts',
      '/js/web/index.html/..',
      '/npm/linux-x64-gnu/brcache.linux-x64-gnu.node',
      '/package.json',
      '/xo-vm-backups',
      `/xo-vm-backups/${vm}/${CACHE_FILE}`,
      '/etc/passwd',
      '//etc/passwd',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/..\\..\\secret.txt',
      '/secret.txt',
      '/../secret.txt',
      '/favicon.ico',
    ]
    for (const path of paths) {
      calls.length = 0
      const r = await get(port, path)
      assert.equal(r.status, 404, path)
      assert.match(r.headers['content-type'], /^application\/json/, path)
      assert.deepStrictEqual(Object.keys(JSON.parse(r.body)), ['error'], path)
      assert.doesNotMatch(r.body.toString(), /SECRET|\n\s+at /, path)
      // At most the VM list was read, to compare a name against it.
      for (const [method, target] of calls) {
        assert.deepStrictEqual([method, target], ['listWithTypes', 'xo-vm-backups'], path)
      }
    }
  })

  test('a VM folder without a cache is a 404 with a reason', async () => {
    const dir = await repositoryDir('no-cache')
    const port = await listen(dir, { immutable: true })
    const [vm, other] = await openRepository(dir).listAllVms()
    unlinkSync(join(dir, vmFile(vm, CACHE_FILE)))
    const r = await get(port, cacheUrl(vm))
    assert.equal(r.status, 404)
    assert.match(JSON.parse(r.body).error, new RegExp(`VM ${vm} has no cache`))
    // An immutable repository gets no cache written, not even to serve it.
    assert.throws(() => cacheBytes(dir, vm), { code: 'ENOENT' })
    assert.equal((await get(port, cacheUrl(other))).status, 200)
  })
})

describe('brcache serve: the bytes are true to the folder', () => {
  test('a stale cache is repaired before it is served (unless --no-repair)', async () => {
    const dir = await repositoryDir('repair')
    const [vm] = await openRepository(dir).listAllVms()
    const stale = cacheBytes(dir, vm)
    const [gone] = summariesOf(vm, stale)
    unlinkSync(join(dir, gone.id))

    const asIs = await listen(dir, { repair: false })
    const unrepaired = await get(asIs, cacheUrl(vm))
    assert.deepStrictEqual(unrepaired.body, stale)

    const repairing = await listen(dir)
    const r = await get(repairing, cacheUrl(vm))
    assert.equal(r.status, 200)
    assert.deepStrictEqual(r.body, cacheBytes(dir, vm), 'the repair was written, and served')
    const ids = summariesOf(vm, r.body).map((s) => s.id)
    assert.equal(ids.length, 3)
    assert.ok(!ids.includes(gone.id))
    assert.ok((await openRepository(dir).checkVm(vm)).fastPath, 'the served cache is coherent and says so')
  })

  test('an undecodable cache is rebuilt before it is served; without repair it is served as is', async () => {
    const dir = await repositoryDir('garbage')
    const [vm] = await openRepository(dir).listAllVms()
    const garbage = Buffer.from('not a gzip file at all')
    writeFileSync(join(dir, vmFile(vm, CACHE_FILE)), garbage)
    const asIs = await get(await listen(dir, { repair: false }), cacheUrl(vm))
    assert.deepStrictEqual(asIs.body, garbage)
    assert.throws(() => summariesOf(vm, asIs.body), BrcacheError)
    const repaired = await get(await listen(dir), cacheUrl(vm))
    assert.equal(summariesOf(vm, repaired.body).length, 4)
  })
})

describe('brcache serve: the repository index', () => {
  test('without an index, /api/index is a 404 saying so', async () => {
    // (Without repair, the server makes none: see "keeps the index" below.)
    const port = await listen(await repositoryDir('no-index'), { repair: false })
    const r = await get(port, '/api/index')
    assert.equal(r.status, 404)
    assert.deepStrictEqual(JSON.parse(r.body), { error: 'no repository index' })
  })

  test('/api/index lists the index files, newest snapshot first; each is served as it lies, with 304s', async () => {
    const dir = await repositoryDir('index')
    const repository = openRepository(dir)
    await repository.buildIndex()
    const [vm] = await repository.listAllVms()
    const rng = createRandom('serve-index')
    const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, retention: 1, start: Date.UTC(2030, 0, 1) })
    await repository.writeVmBackupMetadata(vm, metadata)
    const port = await listen(dir)
    const names = JSON.parse((await get(port, '/api/index')).body)
    const onDisk = readdirSync(join(dir, INDEX_DIR)).filter((n) => !n.startsWith('.'))
    assert.deepStrictEqual([...names].sort(), onDisk.sort())
    assert.match(names[0], /^snapshot-\d{20}\.json\.gz$/)
    assert.equal(names.filter((n) => /\.json\.gz$/.test(n) && !n.startsWith('snapshot-') && !n.startsWith('part-')).length, 1, 'the write published one segment')
    assert.equal(names.filter((n) => n.startsWith('part-')).length, 1, "and the table's part")
    for (const name of names) {
      const r = await get(port, `/api/index/${name}`)
      assert.equal(r.status, 200, name)
      assert.equal(r.headers['content-type'], 'application/octet-stream')
      assert.equal(r.headers['content-encoding'], undefined)
      assert.deepStrictEqual(r.body, readFileSync(join(dir, INDEX_DIR, name)), name)
      const again = await get(port, `/api/index/${name}`, { headers: { 'if-none-match': r.headers.etag } })
      assert.equal(again.status, 304, name)
    }
  })

  test('only listed index files: every other name is a 404 that reads nothing but the listing', async () => {
    const dir = await repositoryDir('index-confined')
    await openRepository(dir).buildIndex()
    writeFileSync(join(dir, INDEX_DIR, '.snapshot-00000000000000000009.json.gz.tmp-1'), 'temp')
    const { handler, calls } = recording(dir)
    const served = await listenOn(handler)
    cleanups.push(served.close)
    const { port } = served
    const [snapshot] = JSON.parse((await get(port, '/api/index')).body)
    // What a listing sets off behind its answer (whether to verify the index).
    await served.server.settle()
    for (const path of [
      '/api/index/..%2f..%2f..%2fsecret.txt',
      '/api/index/..%2F..%2Fxo-vm-backups',
      `/api/index/${snapshot}/..%2f..%2f..%2f..%2fsecret.txt`,
      '/api/index/../../secret.txt',
      '/api/index/snapshot-00000000000000000099.json.gz',
      '/api/index/.snapshot-00000000000000000009.json.gz.tmp-1',
      `/api/index/${snapshot.toUpperCase()}`,
      `/api/index/${snapshot}/x`,
      '/api/index/',
      '/api/index/%00',
    ]) {
      calls.length = 0
      const r = await get(port, path)
      assert.equal(r.status, 404, path)
      assert.deepStrictEqual(Object.keys(JSON.parse(r.body)), ['error'], path)
      assert.doesNotMatch(r.body.toString(), /SECRET|\n\s+at /, path)
      for (const [method, target] of calls) assert.deepStrictEqual([method, target], ['list', INDEX_DIR], path)
    }
  })

  test('--no-index and --immutable do not offer the index', async () => {
    const dir = await repositoryDir('index-off')
    await openRepository(dir).buildIndex()
    for (const options of [{ index: false }, { immutable: true }]) {
      const r = await get(await listen(dir, options), '/api/index')
      assert.equal(r.status, 404, JSON.stringify(options))
    }
  })
})

/** A restore point Xen Orchestra writes behind brcache's back: its metadata file, then its cache as plain gzip JSON, no header, no segment. */
function writeAsXo(dir, vm, seed) {
  const folder = join(dir, 'xo-vm-backups', vm)
  const names = readdirSync(folder).filter((n) => /^\d{8}T\d{6}Z\.json$/.test(n)).sort()
  const last = JSON.parse(readFileSync(join(folder, names.at(-1))))
  const rng = createRandom(seed)
  const metadata = makeMetadata(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, jobId: last.jobId, scheduleId: last.scheduleId, timestamp: last.timestamp + 3600_000, mode: 'delta' })
  const name = `${formatFilenameDate(metadata.timestamp)}.json`
  writeFileSync(join(folder, name), JSON.stringify(metadata))
  const cache = {}
  for (const file of [...names, name]) {
    const key = `/xo-vm-backups/${vm}/${file}`
    cache[key] = { ...JSON.parse(readFileSync(join(folder, file))), _filename: key, id: key }
  }
  writeFileSync(join(folder, CACHE_FILE), gzipSync(JSON.stringify(cache)))
  return `/xo-vm-backups/${vm}/${name}`
}

const hasIndex = (dir) => existsSync(join(dir, INDEX_DIR)) && readdirSync(join(dir, INDEX_DIR)).some((n) => n.startsWith('snapshot-'))

describe('brcache serve keeps the repository index', () => {
  // What the page reads: the core's vmTable over the server's HTTP API,
  // and each VM's points by vmRestoreView, as opening it reads them.
  async function readPage(share, http) {
    const read = await readView(share, http)
    if (!read.view) return read
    const vms = {}
    for (const vm of read.vms) {
      const points = await readVm(share, vm)
      if (points.length > 0) vms[vm] = points
    }
    return { ...read, view: { ...read.view, vms } }
  }
  const page = (served) => {
    const http = httpShare(new URL('api/r/0/', served.url))
    return { http, share: new EncryptedShare(http, encryptionApi) }
  }
  const ids = (read) => Object.values(read.view?.vms ?? {}).flat().map((s) => s.id)
  async function serving(name, options) {
    const dir = await repositoryDir(name)
    const served = await listenOn(dir, options)
    cleanups.push(served.close)
    return { dir, served }
  }
  before(async () => {
    // Node's fetch reads no file: URL, so the module's bytes are handed over.
    await init(readFileSync(join(root, 'js/generated/wasm-web/brcache_wasm_bg.wasm')))
  })

  test('a writable repository without an index gets one at the first look, from its checked caches; the page then reads it', async () => {
    const { dir, served } = await serving('made')
    const truth = await openRepository(dir, { index: false }).listSummaries()
    assert.equal(hasIndex(dir), false)
    // The first look answers at once, from what there is; the index is made behind it.
    const first = await get(served.port, '/api/index')
    assert.equal(first.status, 404)
    let listing
    for (let i = 0; i < 200 && listing?.status !== 200; i++) {
      if (i > 0) await sleep(25)
      listing = await get(served.port, '/api/index')
    }
    assert.equal(listing.status, 200, 'the index was made')
    assert.ok(hasIndex(dir))
    assert.match(JSON.parse(listing.body)[0], /^snapshot-\d{20}\.json\.gz$/)
    // Made from caches each checked against its folder: as exact as a
    // verification, which the listing says once the making is over.
    await served.server.settle()
    listing = await get(served.port, '/api/index')
    assert.ok(Date.parse(listing.headers['x-brcache-verified-at']) <= Date.now())
    const { http, share } = page(served)
    const read = await readPage(share, http)
    assert.equal(read.view.fromIndex, true)
    assert.deepStrictEqual(read.view.vms, truth)
    assert.deepStrictEqual(read.served, {}, 'no cache fetched')
    assert.equal(read.view.verifiedAt, Date.parse(listing.headers['x-brcache-verified-at']))
  })

  test('prepareIndex (what brcache serve runs before it listens) makes it, then verifies it', async () => {
    const { dir, served } = await serving('prepared', { verifyEveryMs: Infinity })
    const [repository] = served.server.repositories
    assert.deepStrictEqual(await repository.prepareIndex(), { made: true })
    assert.ok(hasIndex(dir))
    const again = await repository.prepareIndex()
    assert.deepStrictEqual(again.check.drift, {})
    assert.equal((await get(served.port, '/api/index')).status, 200)
  })

  test("what Xen Orchestra writes (a plain gzip cache, no segment) shows in the served index within the window, with no command", async () => {
    const { dir, served } = await serving('xo-write', { verifyEveryMs: 100 })
    await served.server.repositories[0].prepareIndex()
    const [, vm] = await openRepository(dir).listAllVms()
    const written = Date.now()
    const id = writeAsXo(dir, vm, 'serve-xo-write')
    const { http, share } = page(served)
    // The page's poll: each look at the index folder lets the server verify
    // in the background once the window has passed since the last time.
    // (The catch-up's segment can be listed before the verification ends
    // and the listing says so: both are waited for.)
    let read
    for (let i = 0; i < 200; i++) {
      read = await readPage(share, http)
      if (ids(read).includes(id) && read.view.verifiedAt >= written) break
      await sleep(25)
    }
    assert.ok(ids(read).includes(id), 'caught up in the background')
    assert.deepStrictEqual(read.view.vms, await openRepository(dir, { index: false }).listSummaries())
    assert.ok(read.view.verifiedAt >= written, 'and the listing says it was verified since')
    // Caught up by a segment: what a brcache listing of the share reads too.
    const onShare = await openRepository(dir, { verifyEveryMs: Infinity }).restoreView()
    assert.equal(onShare.fromIndex, true)
    assert.ok(Object.values(onShare.vms).flat().some((s) => s.id === id))
  })

  test('?verified=1 answers once a verification begun after it caught the index up', async () => {
    // No verification in the background: only the one asked for.
    const { dir, served } = await serving('verified', { verifyEveryMs: Infinity })
    await served.server.repositories[0].prepareIndex()
    const [vm] = await openRepository(dir).listAllVms()
    const plain = await get(served.port, '/api/index')
    const madeAt = plain.headers['x-brcache-verified-at']
    const id = writeAsXo(dir, vm, 'serve-verified')
    const { http, share } = page(served)
    const stale = await readPage(share, http)
    assert.ok(!ids(stale).includes(id), 'the index does not know it yet')
    assert.equal(new Date(stale.view.verifiedAt).toISOString(), madeAt, 'and says since when it was not verified')

    const asked = Date.now()
    const verified = await get(served.port, '/api/index?verified=1')
    assert.equal(verified.status, 200)
    assert.ok(Date.parse(verified.headers['x-brcache-verified-at']) >= asked)
    const names = JSON.parse(verified.body)
    assert.ok(names.length > JSON.parse(plain.body).length, 'the catch-up published a segment')
    assert.ok(ids(await readPage(share, http)).includes(id))
    // Verified again with nothing new: the same files, but a page polling
    // with the old ETag gets a 200 that says so, not a 304.
    const later = await get(served.port, '/api/index?verified=1', { headers: { 'If-None-Match': verified.headers.etag } })
    assert.equal(later.status, 200)
    assert.deepStrictEqual(JSON.parse(later.body), names)
    assert.ok(Date.parse(later.headers['x-brcache-verified-at']) >= Date.parse(verified.headers['x-brcache-verified-at']))
    assert.equal((await get(served.port, '/api/index', { headers: { 'If-None-Match': later.headers.etag } })).status, 304, 'then 304s')

    // A server that cannot verify says so rather than answer unverified.
    const noRepair = await listenOn(dir, { repair: false })
    cleanups.push(noRepair.close)
    const refused = await get(noRepair.port, '/api/index?verified=1')
    assert.equal(refused.status, 409)
    assert.match(JSON.parse(refused.body).error, /does not verify/)
    assert.equal((await get(noRepair.port, '/api/index')).headers['x-brcache-verified-at'], undefined)
  })

  test('immutable, --no-index, --no-repair, encrypted without the key: no index made, nothing verified', async () => {
    for (const options of [{ immutable: true }, { index: false }, { repair: false }, { encrypted: true }]) {
      const dir = await repositoryDir('untouched')
      if (options.encrypted) encryptAsXo(dir, { algorithm: 'aes-256-gcm', caches: 'keep' })
      const served = await listenOn(dir, { ...options, verifyEveryMs: 0 })
      cleanups.push(served.close)
      for (let i = 0; i < 3; i++) assert.equal((await get(served.port, '/api/index')).status, 404, JSON.stringify(options))
      assert.equal(await served.server.repositories[0].prepareIndex(), undefined)
      await served.server.settle()
      assert.equal(existsSync(join(dir, INDEX_DIR)), false, JSON.stringify(options))
    }
    // With the key, the server reads the caches: it makes the index as on a plaintext repository.
    const dir = await repositoryDir('encrypted-keyed')
    encryptAsXo(dir, { algorithm: 'aes-256-gcm', caches: 'keep' })
    const served = await listenOn(dir, { encryptionKey: KEY })
    cleanups.push(served.close)
    assert.deepStrictEqual(await served.server.repositories[0].prepareIndex(), { made: true })
    assert.ok(hasIndex(dir))
  })

  test("/api/vms carries the VM locks: the page reads a locked VM from its cache, not from the index behind it", async () => {
    // No verification in the background: the index stays behind the write.
    const { dir, served } = await serving('locked', { verifyEveryMs: Infinity })
    await served.server.repositories[0].prepareIndex()
    const [vm, other] = await openRepository(dir).listAllVms()
    // A writer at work: its metadata and cache are written (a writer that
    // keeps no index stands in for one whose segment is not out yet), and
    // it holds the VM's lock (proper-lockfile's folder).
    const template = JSON.parse(readFileSync(join(dir, 'xo-vm-backups', vm, readdirSync(join(dir, 'xo-vm-backups', vm)).filter((n) => n.endsWith('Z.json')).sort().at(-1))))
    const id = await openRepository(dir, { index: false }).writeVmBackupMetadata(vm, { ...template, timestamp: template.timestamp + 3600_000 })
    mkdirSync(join(dir, 'xo-vm-backups', `${vm}.lock`))
    const listed = JSON.parse((await get(served.port, '/api/vms?locks=1')).body)
    assert.ok(listed.includes(`${vm}.lock`), JSON.stringify(listed))
    assert.ok(!listed.includes(`${other}.lock`))
    assert.deepStrictEqual(JSON.parse((await get(served.port, '/api/vms')).body), await openRepository(dir).listAllVms(), 'plain: VM folders only')
    // The server checks a cache under the VM's lock: the writer lets go
    // when the page asks for that cache, after the page saw the lock.
    const { http, share } = page(served)
    const lock = join(dir, 'xo-vm-backups', `${vm}.lock`)
    const done = {
      ...http,
      readFile(file) {
        if (file === vmFile(vm, CACHE_FILE)) rmdirSync(lock)
        return http.readFile(file)
      },
    }
    const read = await readView(new EncryptedShare(done, encryptionApi), http)
    assert.equal(existsSync(lock), false, 'the cache was asked for')
    assert.equal(read.view.fromIndex, true)
    assert.deepStrictEqual(read.vms, await openRepository(dir).listAllVms(), 'the lock is no VM')
    const rows = (await openRepository(dir, { index: false }).vmTable()).vms
    assert.deepStrictEqual(read.view.rows[vm], rows[vm], 'the locked VM, from its cache')
    assert.deepStrictEqual(Object.keys(read.served), [vm], 'its cache, and no other, fetched')
    assert.deepStrictEqual(read.view.rows, rows)
    // Without the lock the page goes by the index again, still behind here
    // (nothing told it, as after a writer that published nothing).
    assert.ok(!ids(await readPage(share, http)).includes(id))
  })

  test('within the window, looks at the index read no VM cache: one verification per window at most', async () => {
    const dir = await repositoryDir('bounded')
    await openRepository(dir).buildIndex()
    const { handler, calls } = recording(dir)
    const served = await listenOn(handler, { verifyEveryMs: 60_000 })
    cleanups.push(served.close)
    for (let i = 0; i < 20; i++) assert.equal((await get(served.port, '/api/index')).status, 200)
    await served.server.settle()
    assert.deepStrictEqual(calls.filter(([, path]) => String(path).endsWith(CACHE_FILE)), [])
    // Past the window (0 here), the next look sets one off, and settle() waits for it.
    const eager = await listenOn(handler, { verifyEveryMs: 0 })
    cleanups.push(eager.close)
    calls.length = 0
    await get(eager.port, '/api/index')
    await eager.server.settle()
    const reads = calls.filter(([, path]) => String(path).endsWith(CACHE_FILE)).length
    assert.ok(reads >= 3, `every VM cache read once: ${reads}`)
  })
})

describe('brcache serve: several repositories', () => {
  test('/api/repositories names them (an s3:// URL without its credentials); each answers under /api/r/<id>/', async () => {
    const [a, b] = [await repositoryDir('several-a'), await repositoryDir('several-b')]
    const served = await listenOn([a, b, 's3://key:secret@127.0.0.1:1/bucket/prefix'], { index: false })
    cleanups.push(served.close)
    const { port } = served
    assert.deepStrictEqual(JSON.parse((await get(port, '/api/repositories')).body), [
      { id: 0, name: a, immutable: false, locks: true },
      { id: 1, name: b, immutable: false, locks: true },
      // S3 has no locks: the page lists it through the index without the VM folders.
      { id: 2, name: 's3://127.0.0.1:1/bucket/prefix', immutable: false, locks: false },
    ])
    for (const [id, dir] of [
      [0, a],
      [1, b],
    ]) {
      const vms = JSON.parse((await get(port, `/api/r/${id}/vms`)).body)
      assert.deepStrictEqual(vms, await openRepository(dir).listAllVms())
      const cache = await get(port, `/api/r/${id}/vms/${vms[0]}/cache`)
      assert.deepStrictEqual(cache.body, cacheBytes(dir, vms[0]))
    }
    // The first repository keeps the URLs of a one-repository server.
    assert.deepStrictEqual(JSON.parse((await get(port, '/api/vms')).body), JSON.parse((await get(port, '/api/r/0/vms')).body))
    for (const path of ['/api/r/3/vms', '/api/r/-1/vms', '/api/r/01/vms', '/api/r/1/../0/vms', '/api/r/99999/vms', '/api/r//vms']) {
      assert.equal((await get(port, path)).status, 404, path)
    }
    // One that fails answers its own error; the others are untouched.
    const broken = await get(port, '/api/r/2/vms')
    assert.ok(broken.status >= 500, String(broken.status))
    assert.equal((await get(port, '/api/r/1/vms')).status, 200)
  })

  test("a restore point's metadata file downloads as it lies; nothing else of the folder does", async () => {
    const dir = await repositoryDir('download')
    const port = await listen(dir)
    const [vm] = await openRepository(dir).listAllVms()
    const [name] = readdirSync(join(dir, 'xo-vm-backups', vm)).filter((n) => n.endsWith('Z.json'))
    const file = await get(port, `/api/r/0/vms/${vm}/backups/${name}`)
    assert.equal(file.status, 200)
    assert.deepStrictEqual(file.body, readFileSync(join(dir, 'xo-vm-backups', vm, name)))
    assert.equal(file.headers['content-disposition'], `attachment; filename="${vm}-${name}"`)
    const xva = readdirSync(join(dir, 'xo-vm-backups', vm)).find((n) => n.endsWith('.xva'))
    for (const other of ['cache.json.gz', xva, '20200101T000000Z.json', `..%2f${vm}%2f${name}`, `${name}/x`, '.brcache-index']) {
      assert.equal((await get(port, `/api/r/0/vms/${vm}/backups/${other}`)).status, 404, other)
    }
  })

  test('the VM list and the index listing answer 304 while they do not change', async () => {
    const dir = await repositoryDir('poll')
    await openRepository(dir).buildIndex()
    const port = await listen(dir)
    for (const path of ['/api/r/0/vms', '/api/r/0/index']) {
      const first = await get(port, path)
      assert.equal(first.status, 200)
      assert.ok(first.headers.etag, path)
      assert.equal((await get(port, path, { headers: { 'If-None-Match': first.headers.etag } })).status, 304, path)
    }
    const [vm] = await openRepository(dir).listAllVms()
    const before = (await get(port, '/api/r/0/index')).headers.etag
    await openRepository(dir).writeVmBackupMetadata(vm, { mode: 'full', timestamp: Date.UTC(2030, 0, 1), xva: './x.xva' })
    assert.equal((await get(port, '/api/r/0/index', { headers: { 'If-None-Match': before } })).status, 200, 'a new segment: a new listing')
  })
})

describe('brcache serve under load', () => {
  test('requests for one cache while it is checked share the next check: 50 at once cost two', async () => {
    const dir = await repositoryDir('coalesce')
    const handler = new LocalHandler(dir)
    // The first check waits until every request has reached the server:
    // they all come while it runs, so they all share the one after it.
    let arrived = 0
    let allArrived
    let checks = 0
    const gate = new Promise((resolve) => (allArrived = resolve))
    const lock = handler.lock.bind(handler)
    handler.lock = async (...args) => {
      checks++
      await gate
      return lock(...args)
    }
    const served = await listenOn(handler)
    cleanups.push(served.close)
    served.server.on('request', () => ++arrived === 50 && allArrived())
    const [vm] = await openRepository(dir).listAllVms()
    const answers = await Promise.all(Array.from({ length: 50 }, () => get(served.port, cacheUrl(vm))))
    assert.deepStrictEqual(new Set(answers.map((a) => a.status)), new Set([200]))
    for (const answer of answers) assert.deepStrictEqual(answer.body, cacheBytes(dir, vm))
    assert.equal(checks, 2, 'the running check and the one all the others shared')
  })

  test('a check always starts after its request: a restore point deleted behind the cache is never served', async () => {
    const dir = await repositoryDir('coalesce-order')
    const port = await listen(dir)
    const [vm] = await openRepository(dir).listAllVms()
    const names = readdirSync(join(dir, 'xo-vm-backups', vm)).filter((n) => n.endsWith('Z.json'))
    for (const name of names.slice(0, 3)) {
      const during = Array.from({ length: 10 }, () => get(port, cacheUrl(vm)))
      unlinkSync(join(dir, 'xo-vm-backups', vm, name))
      const after = await get(port, cacheUrl(vm))
      await Promise.all(during)
      const ids = summariesOf(vm, after.body).map((s) => s.id)
      assert.ok(!ids.includes(`/xo-vm-backups/${vm}/${name}`), `${name} was deleted before the request`)
    }
  })

  test('200 pages polling at once, on the index and on the caches: every answer a 200 or a 304', async () => {
    const dir = await repositoryDir('load')
    await openRepository(dir).buildIndex()
    for (const options of [{}, { index: false }]) {
      const served = await listenOn(dir, options)
      cleanups.push(served.close)
      const statuses = new Map()
      const seen = (status) => statuses.set(status, (statuses.get(status) ?? 0) + 1)
      await Promise.all(
        Array.from({ length: 200 }, async () => {
          const etags = new Map()
          const fetchOne = async (path) => {
            const r = await get(served.port, path, { headers: etags.has(path) ? { 'If-None-Match': etags.get(path) } : {} })
            if (r.headers.etag) etags.set(path, r.headers.etag)
            seen(r.status)
            return r
          }
          const vms = JSON.parse((await fetchOne('/api/r/0/vms')).body)
          for (let round = 0; round < 3; round++) {
            if (options.index === false) await Promise.all(vms.map((vm) => fetchOne(`/api/r/0/vms/${vm}/cache`)))
            else await Promise.all([fetchOne('/api/r/0/vms'), fetchOne('/api/r/0/index')])
          }
        }),
      )
      assert.deepStrictEqual([...statuses.keys()].sort(), [200, 304], JSON.stringify([...statuses]))
    }
  })
})

describe("brcache serve: an immutable repository's index of create-only files, read only", () => {
  let dir
  let served
  let epochs
  let tree
  let vms
  // A name no URL may reach in each place: the index folder, an epoch folder, a VM folder.
  const stray = 'notes.txt'
  before(async () => {
    await init(readFileSync(join(root, 'js/generated/wasm-web/brcache_wasm_bg.wasm')))
    dir = await repositoryDir('immutable-index')
    vms = await openRepository(dir).listAllVms()
    // As on an immutable repository: no cache.
    for (const vm of vms) unlinkSync(join(dir, vmFile(vm, CACHE_FILE)))
    // The library's first listing there reads every folder; its follow-up makes the index.
    const repository = openRepository(dir, { immutable: true })
    await repository.listSummaries()
    await repository.settle()
    epochs = readdirSync(join(dir, INDEX_DIR)).sort()
    assert.ok(epochs.length > 0 && epochs.every((name) => /^epoch-\d{20}$/.test(name)), String(epochs))
    writeFileSync(join(dir, INDEX_DIR, stray), 'SECRET')
    writeFileSync(join(dir, INDEX_DIR, epochs.at(-1), stray), 'SECRET')
    writeFileSync(join(dir, 'xo-vm-backups', vms[0], stray), 'SECRET')
    tree = treeOf(dir)
    served = await listenOn(dir, { immutable: true, verifyEveryMs: 0 })
    cleanups.push(served.close)
  })

  const filesOf = (epoch) => readdirSync(join(dir, INDEX_DIR, epoch)).filter((name) => name !== stray).sort()

  test('the epochs, each epoch\'s snapshots and segments, and their bytes as they lie; the repository says it is immutable', async () => {
    const repositories = await get(served.port, '/api/repositories')
    assert.deepStrictEqual(JSON.parse(repositories.body), [{ id: 0, name: dir, immutable: true, locks: true }])
    for (const base of ['/api/', '/api/r/0/']) {
      const root = await get(served.port, `${base}index`)
      assert.equal(root.status, 200)
      assert.deepStrictEqual(JSON.parse(root.body), epochs, 'the epoch folders, nothing else of the index folder')
      assert.equal(root.headers['x-brcache-verified-at'], undefined, 'never verified: that would write')
      assert.equal((await get(served.port, `${base}index`, { headers: { 'If-None-Match': root.headers.etag } })).status, 304)
      let read = 0
      for (const epoch of epochs) {
        const listing = await get(served.port, `${base}index/${epoch}`)
        assert.equal(listing.status, 200)
        assert.deepStrictEqual(JSON.parse(listing.body), filesOf(epoch))
        for (const name of filesOf(epoch)) {
          assert.match(name, /^(snapshot-\d+-\d+-[0-9a-f]+|\d{15}-[0-9a-f]{16}(-[^/]+)?)\.json\.gz$/)
          const file = await get(served.port, `${base}index/${epoch}/${encodeURIComponent(name)}`)
          assert.equal(file.status, 200, name)
          assert.equal(file.headers['content-type'], 'application/octet-stream')
          assert.deepStrictEqual(file.body, readFileSync(join(dir, INDEX_DIR, epoch, name)))
          assert.equal((await get(served.port, `${base}index/${epoch}/${name}`, { headers: { 'If-None-Match': file.headers.etag } })).status, 304)
          read++
        }
      }
      assert.ok(read > 0, 'a snapshot at least')
    }
    // A VM folder's metadata files, for the VMs the index does not know or doubts.
    for (const vm of vms) {
      const listing = await get(served.port, `/api/vms/${vm}/backups`)
      assert.equal(listing.status, 200)
      const names = readdirSync(join(dir, 'xo-vm-backups', vm)).filter((name) => /^\d{8}T\d{6}Z\.json$/.test(name)).sort()
      assert.deepStrictEqual(JSON.parse(listing.body), names)
    }
    assert.deepStrictEqual(treeOf(dir), tree, 'nothing written')
  })

  test('nothing outside the epoch folders, no `..`, no name that is not an epoch, a snapshot or a segment', async () => {
    const [epoch] = epochs
    const [file] = filesOf(epoch)
    const paths = [
      `/api/index/${stray}`,
      `/api/index/${epoch}/${stray}`,
      `/api/index/${epochs.at(-1)}/${stray}`,
      '/api/index/epoch-1',
      '/api/index/epoch-99999999999999999999',
      `/api/index/epoch-1/${file}`,
      `/api/index/${epoch.replace(/\d$/, (d) => String((Number(d) + 5) % 10))}/${file}`,
      '/api/index/..',
      '/api/index/../vms',
      '/api/index/%2e%2e',
      `/api/index/${epoch}/..`,
      `/api/index/${epoch}/%2e%2e`,
      `/api/index/${epoch}/..%2f..%2fsecret.txt`,
      `/api/index/${epoch}/%2e%2e%2f%2e%2e%2f%2e%2e%2f..%2fsecret.txt`,
      `/api/index/${epoch}/${file}/x`,
      `/api/index/${epoch}/${file}.tmp`,
      `/api/index/${epoch}/%E0%A4%A`,
      `/api/index/..%2f${epoch}`,
      `/api/index/${epoch}%2f${file}`,
      `/api/r/0/index/${epoch}/../../../secret.txt`,
      `/api/vms/${vms[0]}/backups/${stray}`,
      `/api/vms/../backups`,
      `/api/vms/${vms[0]}%2f..%2f${vms[1]}/backups`,
    ]
    for (const path of paths) {
      const r = await get(served.port, path)
      assert.ok(r.status === 404 || r.status === 400, `${path}: ${r.status}`)
      assert.deepStrictEqual(Object.keys(JSON.parse(r.body)), ['error'], path)
      assert.doesNotMatch(r.body.toString(), /SECRET|\n\s+at /, path)
    }
    assert.deepStrictEqual(JSON.parse((await get(served.port, `/api/index/${epochs.at(-1)}`)).body), filesOf(epochs.at(-1)), 'a stray file is not listed')
    assert.ok(!JSON.parse((await get(served.port, `/api/vms/${vms[0]}/backups`)).body).includes(stray))
    // Verified answers would need a write.
    assert.equal((await get(served.port, '/api/index?verified=1')).status, 409)
    assert.deepStrictEqual(treeOf(dir), tree, 'nothing written')
  })

  test('a share whose bucket has Object Lock, served without --immutable, is found immutable: the same index, nothing checked or written', async () => {
    // An S3 handler's answers, over the folder: no locks, Object Lock on.
    const handler = new LocalHandler(dir)
    const locked = new Proxy(handler, {
      get(target, name) {
        if (name === 'supportsLocks') return false
        if (name === 'objectLocked') return async () => true
        const value = target[name]
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    const found = await listenOn(locked, { verifyEveryMs: 0 })
    cleanups.push(found.close)
    assert.equal(JSON.parse((await get(found.port, '/api/repositories')).body)[0].immutable, true)
    assert.deepStrictEqual(JSON.parse((await get(found.port, '/api/index')).body), epochs)
    const [epoch] = epochs
    assert.deepStrictEqual(JSON.parse((await get(found.port, `/api/index/${epoch}`)).body), filesOf(epoch))
    // No check: it would write the caches it found missing.
    for (const vm of vms) assert.equal((await get(found.port, cacheUrl(vm))).status, 404)
    assert.equal(await found.server.repositories[0].prepareIndex(), undefined)
    await found.server.settle()
    assert.deepStrictEqual(treeOf(dir), tree, 'nothing written')
  })

  test("the page's core lists through it as the library does: every VM, its restore points, no cache read, nothing written", async () => {
    const truth = await openRepository(dir, { immutable: true, index: false }).listSummaries()
    const library = await openRepository(dir, { immutable: true }).vmTable()
    assert.equal(library.fromIndex, true)
    const asked = []
    served.server.on('request', (request) => asked.push(request.url))
    const http = httpShare(new URL('api/r/0/', served.url))
    const share = new EncryptedShare(http, encryptionApi)
    const read = await readView(share, http, { immutable: true })
    assert.equal(read.view.fromIndex, true)
    assert.deepStrictEqual(read.view.rows, library.vms)
    for (const vm of vms) assert.deepStrictEqual(await readVm(share, vm, { immutable: true }), truth[vm], vm)
    // The VM folders, encryption.json (a 404: plaintext), and the index.
    assert.deepStrictEqual(
      [...new Set(asked.filter((url) => !url.startsWith('/api/r/0/index')))].sort(),
      ['/api/r/0/encryption.json', '/api/r/0/vms?locks=1'],
      'no VM cache or folder: the index knows every VM',
    )
    assert.ok(asked.some((url) => /^\/api\/r\/0\/index\/epoch-\d{20}\/snapshot-/.test(url)), String(asked))
    assert.deepStrictEqual(treeOf(dir), tree, 'nothing written')
  })
})
