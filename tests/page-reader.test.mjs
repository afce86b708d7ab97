// The page's reads (js/web/reader.js) on Node, over `brcache serve`'s HTTP
// API with Node's fetch and the wasm build the page loads: what the core's
// operations answer through the page's share, without a browser. The
// browser test (tests/browser.test.mjs) checks what the page then shows.

import assert from 'node:assert/strict'
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { EncryptedShare, encryptionApi, init } from '../js/browser.js'
import { openRepository } from '../js/node/repository.js'
import { generateRepository } from '../js/sample/generate.js'
import { CACHE_FILE, vmFile } from '../js/common/layout.js'
import { httpShare } from '../js/web/http-share.js'
import { listVm, readView, readVm } from '../js/web/reader.js'
import { listen } from './helpers/serve.mjs'
import { Lockless } from './helpers/lockless.mjs'

const cleanups = []
let dir

before(async () => {
  // Node's fetch reads no file: URL, so the module's bytes are handed over.
  await init(readFileSync(new URL('../js/generated/wasm-web/brcache_wasm_bg.wasm', import.meta.url)))
  dir = mkdtempSync(join(tmpdir(), 'brcache-page-reader-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  await generateRepository(dir, { vms: 4, retention: 3, seed: 'page-reader' })
})

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

async function served(source, options) {
  const server = await listen(source, options)
  cleanups.push(server.close)
  const http = httpShare(new URL('api/r/0/', server.url))
  return { http, share: new EncryptedShare(http, encryptionApi) }
}

function copy(name) {
  const to = mkdtempSync(join(tmpdir(), `brcache-page-reader-${name}-`))
  cleanups.push(() => rmSync(to, { recursive: true, force: true }))
  cpSync(dir, to, { recursive: true })
  return to
}

describe('the page reads a repository by the core’s operations', () => {
  test('on a share without locks (S3): through the index, as the library lists there, without the VM folders’ listing', async () => {
    const indexed = copy('lockless')
    await openRepository(indexed).buildIndex()
    const truth = await openRepository(indexed, { index: false }).listSummaries()
    const rows = (await openRepository(indexed, { index: false }).vmTable()).vms
    const server = await listen(new Lockless(indexed))
    cleanups.push(server.close)
    const requests = []
    server.server.on('request', (request) => requests.push(request.url))
    const served = await (await fetch(new URL('api/repositories', server.url))).json()
    assert.deepStrictEqual(served.map(({ locks }) => locks), [false])
    const http = httpShare(new URL('api/r/0/', server.url))
    const share = new EncryptedShare(http, encryptionApi)
    const read = await readView(share, http, { locks: false })
    assert.equal(read.view.fromIndex, true)
    assert.deepStrictEqual(read.view.rows, rows, "the caches' rows")
    assert.deepStrictEqual(read.vms, Object.keys(truth).sort())
    assert.equal(read.listed.folders, null)
    for (const vm of Object.keys(truth)) assert.deepStrictEqual(await readVm(share, vm, { locks: false }), truth[vm], vm)
    assert.deepStrictEqual(
      requests.filter((url) => /\/vms(\?|$)/.test(url)),
      [],
      'no VM folder listing',
    )
    // A share with locks: the server says so, and the page lists the folders.
    const local = await listen(indexed)
    cleanups.push(local.close)
    assert.deepStrictEqual((await (await fetch(new URL('api/repositories', local.url))).json()).map(({ locks }) => locks), [true])
  })

  test("with an index: one vmTable, the VM folders and the index listing as the server gave them; a VM's points by vmRestoreView", async () => {
    const indexed = copy('index')
    await openRepository(indexed).buildIndex()
    const truth = await openRepository(indexed, { index: false }).listSummaries()
    const rows = (await openRepository(indexed, { index: false }).vmTable()).vms
    const { http, share } = await served(indexed)
    const read = await readView(share, http)
    assert.equal(read.view.fromIndex, true)
    assert.deepStrictEqual(read.view.rows, rows, "the caches' rows")
    for (const vm of Object.keys(truth)) assert.deepStrictEqual(await readVm(share, vm), truth[vm], vm)
    assert.deepStrictEqual(read.vms.sort(), Object.keys(truth).sort())
    assert.deepStrictEqual(read.listed.folders.sort(), read.vms)
    assert.ok(read.listed.index.length > 0)
    assert.deepStrictEqual(read.served, {}, 'no cache fetched: the index knows every VM')
  })

  test(
    'with an index and a VM folder it does not know: that VM from its cache, no VM folder listed',
    async () => {
      const indexed = copy('unknown')
      await openRepository(indexed).buildIndex()
      // A VM folder Xen Orchestra wrote behind the index's back.
      const other = mkdtempSync(join(tmpdir(), 'brcache-page-reader-other-'))
      cleanups.push(() => rmSync(other, { recursive: true, force: true }))
      await generateRepository(other, { vms: 1, retention: 2, seed: 'page-reader-other' })
      const [added] = await openRepository(other).listAllVms()
      cpSync(join(other, 'xo-vm-backups', added), join(indexed, 'xo-vm-backups', added), { recursive: true })
      const truth = await openRepository(indexed, { index: false }).listSummaries()
      const rows = (await openRepository(indexed, { index: false }).vmTable()).vms
      const { http, share } = await served(indexed)
      const read = await readView(share, http)
      assert.equal(read.view.fromIndex, true)
      assert.deepStrictEqual(read.view.rows, rows)
      assert.deepStrictEqual(Object.keys(read.served), [added])
      assert.deepStrictEqual(await readVm(share, added), truth[added])
    },
  )

  test('without an index: no restore view at once, each VM by listVm, a damaged cache its own error', async () => {
    const plain = copy('plain')
    const truth = await openRepository(plain, { index: false }).listSummaries()
    const [damaged, ...healthy] = Object.keys(truth)
    writeFileSync(join(plain, vmFile(damaged, CACHE_FILE)), 'these bytes are no gzip member at all')
    const { http, share } = await served(plain, { repair: false })
    const read = await readView(share, http)
    assert.equal(read.view, undefined)
    assert.equal(read.listed.index, null)
    assert.deepStrictEqual(read.vms.sort(), Object.keys(truth).sort())
    for (const vm of healthy) assert.deepStrictEqual(await listVm(share, vm), truth[vm])
    await assert.rejects(listVm(share, damaged), { name: 'BrcacheError', code: 'NOT_GZIP', message: new RegExp(`${vmFile(damaged, CACHE_FILE)}: not gzip data`) })
  })
})
