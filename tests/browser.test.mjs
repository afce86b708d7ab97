// The web restore view in Debian's Chromium, against `brcache serve` on a
// generated repository: the page decodes every VM's cache.json.gz with the
// wasm build and must show what `brcache list --json` says. A screenshot
// of the page is left in test-output/ for people to look at.

/* global window, document, MutationObserver -- in functions that run in the page */

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { after, before, describe, test } from 'node:test'
import { BrcacheError, openRepository, summariesOf } from 'brcache'
import { generateRepository } from '../js/sample/generate.js'
import { CACHE_FILE, formatFilenameDate, vmFile } from '../js/common/layout.js'
import { createRandom, makeVm, makeVmBackups } from '../js/sample/metadata.js'
import { describeVm, formatBytes, formatDate } from '../js/common/format.js'
import { launchChromium } from './helpers/chromium.mjs'
import { listen } from './helpers/serve.mjs'
import { Lockless } from './helpers/lockless.mjs'
import { treeOf } from './helpers/tree.mjs'
import { KEY, OTHER_KEY, encryptAsXo } from './helpers/xo-encryption.mjs'

const root = join(import.meta.dirname, '..')
const screenshots = join(root, 'test-output')
const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' })

let chromium
let dir
let view
const cleanups = []

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'brcache-browser-'))
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
  await generateRepository(dir, { vms: 8, retention: 6, seed: 'browser' })
  // What the command line lists is what the page must show. Read only:
  // a first listing would make the index, and this repository is the
  // page's without one (the index has its own tests below).
  const list = spawnSync(process.execPath, [join(root, 'js/node/cli.js'), 'list', dir, '--json', '--immutable'], { encoding: 'utf8' })
  assert.equal(list.status, 0, list.stderr)
  view = JSON.parse(list.stdout)
  assert.deepStrictEqual(view, await openRepository(dir, { immutable: true }).listSummaries())
  chromium = await launchChromium()
  cleanups.push(() => chromium.close())
})

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup()
})

/** A page of the restore view at `url`, loaded; page errors are collected, not thrown. */
async function open(url) {
  const page = await chromium.browser.newPage({ viewport: { width: 1440, height: 640 } })
  const errors = []
  page.on('pageerror', (error) => errors.push(error.message))
  page.workersSeen = []
  page.on('worker', (worker) => page.workersSeen.push(new URL(worker.url()).pathname))
  // Every text the status line shows, progress included.
  await page.addInitScript(() => {
    window.statusTexts = []
    new MutationObserver((records) => {
      // The text node each assignment added: later ones replace it, never change it.
      for (const record of records) {
        if (record.target.id === 'status') for (const node of record.addedNodes) window.statusTexts.push(node.textContent)
      }
    }).observe(document, { subtree: true, childList: true })
  })
  await page.goto(url)
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
  return { page, errors }
}

/** The VM table as shown: rows in display order. */
function rowsOf(page) {
  return page.$$eval('#vms tbody tr', (trs) =>
    trs.map((tr) => ({
      vm: tr.dataset.vm,
      state: tr.dataset.state,
      hidden: tr.hidden,
      count: tr.dataset.count === undefined ? undefined : Number(tr.dataset.count),
      name: tr.querySelector('.name')?.textContent,
      modes: Object.fromEntries([...tr.querySelectorAll('.mode')].map((b) => [b.dataset.mode, Number(b.dataset.n)])),
      last: tr.querySelector('.last')?.textContent,
      size: tr.querySelector('.size')?.textContent,
      error: tr.querySelector('.error')?.textContent,
      code: tr.querySelector('.error')?.dataset.code,
    })),
  )
}

function modesOf(summaries) {
  const modes = {}
  for (const s of summaries) modes[s.mode] = (modes[s.mode] ?? 0) + 1
  return modes
}

/** The page's rows are the restore view's VMs, each as `brcache list --json` says. */
/** A copy of the suite's repository, removed after the suite. */
function copyOfRepository(prefix) {
  const copy = mkdtempSync(join(tmpdir(), prefix))
  cleanups.push(() => rmSync(copy, { recursive: true, force: true }))
  cpSync(dir, copy, { recursive: true })
  return copy
}

/** `brcache serve` on `source` and the page on it, with every URL the server was asked. */
async function openWatched(source, options) {
  const server = await listen(source, options)
  cleanups.push(server.close)
  const requests = []
  server.server.on('request', (request) => requests.push(request.url))
  return { ...(await open(server.url)), requests, server }
}

function assertRowsAre(rows, view) {
  assert.deepStrictEqual(rows.map((r) => r.vm).sort(), Object.keys(view).sort())
  for (const row of rows) {
    const summaries = view[row.vm]
    assert.equal(row.state, 'ok', row.error)
    assert.equal(row.count, summaries.length, row.vm)
    assert.equal(row.name, summaries.at(-1).vm.name_label)
    assert.deepStrictEqual(row.modes, modesOf(summaries))
    assert.equal(row.last, formatDate(summaries.at(-1).timestamp, { seconds: false }))
    assert.equal(row.size, formatBytes(describeVm(summaries).size))
  }
}

describe('the restore view of a healthy repository', () => {
  let server
  let page
  let errors
  before(async () => {
    // The caches path, VM by VM: without --no-index the server would make
    // the index at the page's first look (tested below), and every later
    // copy of this repository would have it.
    server = await listen(dir, { index: false })
    cleanups.push(server.close)
    ;({ page, errors } = await open(server.url))
  })

  test('every VM, its name, count by mode, last backup and size, as `brcache list --json` says', async () => {
    const rows = await rowsOf(page)
    assert.deepStrictEqual(rows.map((r) => r.vm).sort(), Object.keys(view).sort())
    assert.equal(rows.length, 8)
    for (const row of rows) {
      const summaries = view[row.vm]
      const info = describeVm(summaries)
      assert.equal(row.state, 'ok', row.error)
      assert.equal(row.count, summaries.length)
      assert.equal(row.name, summaries.at(-1).vm.name_label)
      assert.deepStrictEqual(row.modes, modesOf(summaries))
      assert.equal(row.last, formatDate(summaries.at(-1).timestamp, { seconds: false }))
      assert.equal(row.size, formatBytes(info.size))
    }
    const total = Object.values(view).reduce((n, s) => n + s.length, 0)
    assert.match(await page.textContent('#status'), new RegExp(`^8 VMs, ${total} restore points, `))
    const texts = await page.evaluate(() => window.statusTexts)
    const progress = texts.filter((t) => / \/ 8 VMs$/.test(t))
    assert.deepStrictEqual(progress, Array.from({ length: 9 }, (_, i) => `${i} / 8 VMs`), 'a progress line per VM loaded')
    assert.equal(await page.isVisible('#progress'), false, 'the progress bar is gone once every VM is in')
    assert.deepStrictEqual(errors, [])
  })

  test("a click on a VM lists its restore points, newest first, and the screenshot is taken", async () => {
    const vm = Object.keys(view)[3]
    await page.click(`#vms tr[data-vm="${vm}"]`)
    await page.waitForSelector(`#details[data-vm="${vm}"] table.points`)
    const points = await page.$$eval('#details tbody tr', (trs) =>
      trs.map((tr) => ({ id: tr.dataset.id, cells: [...tr.cells].map((td) => td.textContent) })),
    )
    const expected = view[vm].toReversed()
    assert.deepStrictEqual(
      points.map((p) => p.id),
      expected.map((s) => s.id),
    )
    points.forEach(({ cells: [date, mode, size, disks] }, i) => {
      assert.equal(date, formatDate(expected[i].timestamp))
      assert.equal(mode, expected[i].mode)
      assert.equal(size, formatBytes(expected[i].size))
      // A full backup is one XVA: no disk count, rather than a false 0.
      assert.equal(disks, expected[i].mode === 'full' && expected[i].disks.length === 0 ? '—' : String(expected[i].disks.length))
    })
    assert.equal(await page.getAttribute(`#vms tr[data-vm="${vm}"]`, 'aria-selected'), 'true')
    assert.equal(await page.textContent('#details h2'), view[vm].at(-1).vm.name_label)
    mkdirSync(screenshots, { recursive: true })
    await page.screenshot({ path: join(screenshots, 'restore-view.png'), fullPage: true })
  })

  test('headers sort the table, again in reverse', async () => {
    const sizeOf = (vm) => describeVm(view[vm]).size
    const nameOf = (vm) => view[vm].at(-1).vm.name_label
    const order = async () => (await rowsOf(page)).map((r) => r.vm)
    const sorted = (vms, compare) => vms.every((vm, i) => i === 0 || compare(vms[i - 1], vm) <= 0)

    await page.click('th[data-sort="size"] button')
    assert.equal(await page.getAttribute('th[data-sort="size"]', 'aria-sort'), 'descending')
    assert.ok(sorted(await order(), (a, b) => sizeOf(b) - sizeOf(a)), 'largest first')
    await page.click('th[data-sort="size"] button')
    assert.equal(await page.getAttribute('th[data-sort="size"]', 'aria-sort'), 'ascending')
    assert.ok(sorted(await order(), (a, b) => sizeOf(a) - sizeOf(b)), 'smallest first')

    await page.click('th[data-sort="name"] button')
    assert.equal(await page.getAttribute('th[data-sort="size"]', 'aria-sort'), null)
    const byName = await order()
    assert.ok(sorted(byName, (a, b) => collator.compare(nameOf(a), nameOf(b))), 'by name')
    await page.click('th[data-sort="name"] button')
    assert.deepStrictEqual(await order(), byName.toReversed())
    await page.click('th[data-sort="name"] button')
  })

  test('the filter keeps the VMs whose name (or uuid) matches', async () => {
    const names = Object.fromEntries(Object.entries(view).map(([vm, s]) => [vm, s.at(-1).vm.name_label]))
    // A name's first word (which names may share), a whole name, a uuid's first group.
    const word = Object.values(names)[0].split('-')[0]
    for (const text of [word, Object.values(names)[5], Object.keys(names)[2].slice(0, 8)]) {
      await page.fill('#filter', text.toUpperCase())
      const shown = (await rowsOf(page)).filter((r) => !r.hidden).map((r) => r.vm)
      const expected = Object.keys(names).filter((vm) => names[vm].includes(text) || vm.includes(text))
      assert.deepStrictEqual(shown.sort(), expected.sort(), text)
      assert.ok(shown.length > 0)
    }
    await page.fill('#filter', 'no-such-vm')
    assert.equal((await rowsOf(page)).filter((r) => !r.hidden).length, 0)
    assert.equal(await page.isVisible('#empty'), true)
    await page.fill('#filter', '')
    assert.equal((await rowsOf(page)).filter((r) => !r.hidden).length, 8)
    assert.equal(await page.isVisible('#empty'), false)
  })

  test('a reload revalidates every cache: 304s, and the same page', async () => {
    const before = await rowsOf(page)
    const answers = []
    const record = (request, response) => {
      if (request.url.endsWith('/cache')) response.on('finish', () => answers.push([Boolean(request.headers['if-none-match']), response.statusCode]))
    }
    server.server.on('request', record)
    try {
      await page.reload()
      await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
    } finally {
      server.server.off('request', record)
    }
    assert.deepStrictEqual(answers, Array.from({ length: 8 }, () => [true, 304]))
    assert.deepStrictEqual(
      (await rowsOf(page)).map((r) => [r.vm, r.count]).sort(),
      before.map((r) => [r.vm, r.count]).sort(),
    )
  })
})

describe('a repository with damaged caches, served as they are', () => {
  let page
  let errors
  const broken = {}
  before(async () => {
    const copy = mkdtempSync(join(tmpdir(), 'brcache-browser-broken-'))
    cleanups.push(() => rmSync(copy, { recursive: true, force: true }))
    cpSync(dir, copy, { recursive: true })
    const [garbageVm, truncatedVm] = Object.keys(view).slice(1, 3)
    const file = (vm) => join(copy, vmFile(vm, CACHE_FILE))
    const whole = readFileSync(file(truncatedVm))
    broken[garbageVm] = Buffer.from('these bytes are no gzip member at all')
    broken[truncatedVm] = whole.subarray(0, Math.floor(whole.length / 2))
    for (const [vm, bytes] of Object.entries(broken)) writeFileSync(file(vm), bytes)
    const server = await listen(copy, { repair: false })
    cleanups.push(server.close)
    ;({ page, errors } = await open(server.url))
  })

  test("each damaged cache shows the decoder's error on its row; every other VM is fine", async () => {
    const rows = await rowsOf(page)
    assert.equal(rows.length, 8)
    for (const row of rows) {
      if (broken[row.vm]) {
        // The message Node's decoder gives for the same bytes, file named alike.
        const expected = (() => {
          try {
            summariesOf(row.vm, broken[row.vm], undefined, { name: vmFile(row.vm, CACHE_FILE) })
          } catch (error) {
            assert.ok(error instanceof BrcacheError)
            return error
          }
          assert.fail('the damaged cache decoded')
        })()
        assert.equal(row.state, 'error')
        assert.ok(row.error.includes(expected.message), `${row.error} should include ${expected.message}`)
        assert.equal(row.code, expected.code)
        assert.equal(row.count, undefined)
        assert.equal(row.name, expected.code)
      } else {
        assert.equal(row.state, 'ok', row.error)
        assert.equal(row.count, view[row.vm].length)
        assert.deepStrictEqual(row.modes, modesOf(view[row.vm]))
      }
    }
    assert.deepStrictEqual(new Set(rows.filter((r) => r.state === 'error').map((r) => r.code)), new Set(['NOT_GZIP', 'TRUNCATED']))
    assert.match(await page.textContent('#status'), /^8 VMs, 36 restore points, .* · 2 VMs could not be read$/)
    assert.deepStrictEqual(errors, [])
  })

  test('the rest of the page works: sorting, filtering, details, the error in the details', async () => {
    await page.click('th[data-sort="count"] button')
    const rows = await rowsOf(page)
    assert.deepStrictEqual(
      rows.slice(-2).map((r) => r.state),
      ['error', 'error'],
      'VMs in error sort last',
    )
    const [garbageVm] = Object.keys(broken)
    await page.click(`#vms tr[data-vm="${garbageVm}"]`)
    await page.waitForSelector(`#details[data-vm="${garbageVm}"] p.error`)
    assert.equal(await page.textContent('#details p.error'), rows.find((r) => r.vm === garbageVm).error)
    assert.match(await page.textContent('#details p.error'), /cache\.json\.gz: not gzip data/)
    const healthy = rows.find((r) => r.state === 'ok')
    await page.click(`#vms tr[data-vm="${healthy.vm}"]`)
    await page.waitForSelector(`#details[data-vm="${healthy.vm}"] table.points`)
    assert.equal(await page.$$eval('#details tbody tr', (trs) => trs.length), view[healthy.vm].length)
    await page.fill('#filter', garbageVm.slice(0, 8))
    assert.deepStrictEqual(
      (await rowsOf(page)).filter((r) => !r.hidden).map((r) => r.vm),
      [garbageVm],
    )
    await page.fill('#filter', '')
    await page.screenshot({ path: join(screenshots, 'restore-view-errors.png'), fullPage: true })
  })
})

describe('a repository with an index: the page reads it, and the caches of VMs it does not know', () => {
  let page
  let errors
  let truth
  let added
  let gone
  const requests = []
  before(async () => {
    const copy = mkdtempSync(join(tmpdir(), 'brcache-browser-index-'))
    cleanups.push(() => rmSync(copy, { recursive: true, force: true }))
    cpSync(dir, copy, { recursive: true })
    const repository = openRepository(copy)
    await repository.buildIndex()
    // A backup after the last compaction (its segment waits to be folded)...
    const [written] = Object.keys(view)
    const rng = createRandom('browser-index')
    const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: written }, retention: 1, start: Date.UTC(2030, 0, 1) })
    await repository.writeVmBackupMetadata(written, metadata)
    // ...a VM folder the index never heard of (copied in, as XO would write it)...
    const other = mkdtempSync(join(tmpdir(), 'brcache-browser-other-'))
    cleanups.push(() => rmSync(other, { recursive: true, force: true }))
    await generateRepository(other, { vms: 1, retention: 3, seed: 'browser-index-other' })
    ;[added] = await openRepository(other).listAllVms()
    cpSync(join(other, 'xo-vm-backups', added), join(copy, 'xo-vm-backups', added), { recursive: true })
    // ...and a VM folder deleted behind the index.
    gone = Object.keys(view)[5]
    rmSync(join(copy, 'xo-vm-backups', gone), { recursive: true })

    truth = await openRepository(copy, { index: false }).listSummaries()
    // No verification in the background: it would catch the index up
    // with the VMs the page must find unknown.
    assert.deepStrictEqual(await openRepository(copy, { verifyEveryMs: Infinity }).listSummaries(), truth, 'the server side agrees')
    const server = await listen(copy)
    cleanups.push(server.close)
    server.server.on('request', (request) => requests.push(request.url))
    ;({ page, errors } = await open(server.url))
  })

  test('every VM as the caches say, from the index file requests plus one cache: the unknown VM', async () => {
    assert.equal(await page.getAttribute('body', 'data-source'), 'index')
    const rows = await rowsOf(page)
    assert.deepStrictEqual(rows.map((r) => r.vm).sort(), Object.keys(truth).sort())
    assert.ok(!rows.some((r) => r.vm === gone), 'the deleted VM folder is not shown')
    for (const row of rows) {
      assert.equal(row.state, 'ok', row.error)
      assert.equal(row.count, truth[row.vm].length, row.vm)
      assert.deepStrictEqual(row.modes, modesOf(truth[row.vm]))
      assert.equal(row.last, formatDate(truth[row.vm].at(-1).timestamp, { seconds: false }))
    }
    const api = requests.filter((url) => url.startsWith('/api/'))
    const files = api.filter((url) => url.startsWith('/api/r/0/index/'))
    assert.deepStrictEqual(
      api.filter((url) => !url.startsWith('/api/r/0/index/')).sort(),
      // encryption.json: a 404, so the repository is plaintext; asked by
      // the page and by the worker that decodes the index, at once. The
      // index folder twice: listed again beside its files' reads (see the
      // core's restore view); the VM folders with their locks.
      ['/api/r/0/encryption.json', '/api/r/0/encryption.json', '/api/r/0/index', '/api/r/0/index', '/api/r/0/vms?locks=1', `/api/r/0/vms/${added}/cache`, '/api/repositories'].sort(),
    )
    // The segment is a backup's delta, which the written VM's row folds
    // alone: no part is read.
    assert.deepStrictEqual(
      files.map((url) => url.split('/').at(-1).replace(/^(snapshot|part)-.*/, '$1').replace(/^\d{15}-.*/, 'segment')).sort(),
      ['segment', 'snapshot'],
      `the table and the one segment: ${files}`,
    )
    // Decoded off the page's main thread.
    assert.deepStrictEqual(page.workersSeen, ['/js/web/index-worker.js'])
    assert.match(await page.textContent('#status'), /^8 VMs, \d+ restore points, .* · from the repository index$/)
    assert.deepStrictEqual(errors, [])
    await page.screenshot({ path: join(screenshots, 'restore-view-index.png'), fullPage: true })
  })
})

describe("the VM table from the index's table, a VM's restore points when it is opened", () => {
  test('the first load reads the table alone (no part, no cache); a VM opened reads its part', async () => {
    const copy = copyOfRepository('brcache-browser-table-')
    await openRepository(copy).buildIndex()
    const { page, errors, requests } = await openWatched(copy)
    assert.equal(await page.getAttribute('body', 'data-source'), 'index')
    assertRowsAre(await rowsOf(page), view)
    // Every VM's summaries are in the parts: a page that read them to
    // show the table would ask for one here.
    const files = (from) => from.filter((url) => url.startsWith('/api/r/0/index/')).map((url) => decodeURIComponent(url.slice('/api/r/0/index/'.length)))
    const loaded = files(requests)
    assert.equal(loaded.length, 1, `the table alone: ${loaded}`)
    assert.match(loaded[0], /^snapshot-/)
    assert.deepStrictEqual(requests.filter((url) => url.includes('/cache')), [], 'no VM cache')

    // A VM opened: its restore points through the index, from its part.
    requests.length = 0
    const vm = Object.keys(view)[2]
    await page.click(`#vms tr[data-vm="${vm}"]`)
    await page.waitForSelector(`#details[data-vm="${vm}"] table.points`)
    const ids = await page.$$eval('#details tbody tr', (trs) => trs.map((tr) => tr.dataset.id))
    assert.deepStrictEqual(ids, view[vm].toReversed().map((s) => s.id))
    assert.equal(await page.textContent('#details h2'), view[vm].at(-1).vm.name_label)
    const opened = files(requests)
    assert.equal(opened.filter((name) => name.startsWith('part-')).length, 1, `one part: ${opened}`)
    assert.deepStrictEqual(requests.filter((url) => url.includes('/cache')), [], 'no VM cache')
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

describe('a fresh writable repository: the server makes the index, and the page reads it', () => {
  test('the first load from the caches, then from the index the server made: a handful of requests; what XO writes shows without a command', async () => {
    const copy = copyOfRepository('brcache-browser-fresh-')
    // A short window, so that the page's own poll shows XO's write soon.
    const { page, errors, requests, server } = await openWatched(copy, { verifyEveryMs: 200 })
    // The first look at the index folder found none, and made it behind its answer.
    assert.equal(await page.getAttribute('body', 'data-source'), 'caches')
    assert.equal(await page.isVisible('#verified'), false)
    await server.server.settle()
    // Refresh (as the page's poll would) finds the index and reads it from then on.
    await page.click('#refresh')
    await page.waitForSelector('body[data-source="index"]', { timeout: 15_000 })

    requests.length = 0
    await page.reload()
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
    assert.equal(await page.getAttribute('body', 'data-source'), 'index')
    assertRowsAre(await rowsOf(page), view)
    const api = requests.filter((url) => url.startsWith('/api/'))
    assert.deepStrictEqual(
      api.filter((url) => !url.startsWith('/api/r/0/index/')).sort(),
      ['/api/r/0/encryption.json', '/api/r/0/encryption.json', '/api/r/0/index', '/api/r/0/index', '/api/r/0/vms?locks=1', '/api/repositories'].sort(),
      'no VM cache',
    )
    assert.equal(api.filter((url) => url.startsWith('/api/r/0/index/')).length, 1, 'the table the server made alone: no segment waits, so no part')
    assert.match(await page.textContent('#status'), /^8 VMs, \d+ restore points, .* · from the repository index$/)
    // Made from checked caches, so verified as of then; said discreetly.
    assert.match(await page.textContent('#verified'), /^index verified \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/)
    const verifiedAt = Date.parse(await page.getAttribute('body', 'data-verified-at'))
    assert.ok(verifiedAt <= Date.now())

    // Xen Orchestra adds a restore point behind the index: a metadata file
    // and its cache rewritten as plain gzip JSON, no segment. The page's
    // poll of the index folder lets the server verify; the next shows it.
    const [vm] = Object.keys(view)
    const folder = join(copy, 'xo-vm-backups', vm)
    const last = view[vm].at(-1)
    const rng = createRandom('browser-xo-write')
    const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, retention: 1, start: last.timestamp + 3600_000 })
    const name = `${formatFilenameDate(metadata.timestamp)}.json`
    writeFileSync(join(folder, name), JSON.stringify(metadata))
    const cache = JSON.parse(gunzipSync(readFileSync(join(folder, CACHE_FILE))))
    const key = `/xo-vm-backups/${vm}/${name}`
    cache[key] = { ...metadata, _filename: key, id: key }
    writeFileSync(join(folder, CACHE_FILE), gzipSync(JSON.stringify(cache)))
    await page.waitForFunction((n) => Number(document.querySelector(`#vms tr[data-vm="${n.vm}"]`)?.dataset.count) === n.count, { vm, count: view[vm].length + 1 }, { timeout: 30_000 })
    // The catch-up's segment may be listed before the verification ends: its time comes with a later poll.
    await page.waitForFunction((before) => Date.parse(document.body.dataset.verifiedAt) > before, verifiedAt, { timeout: 15_000 })
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

describe('a share without locks (S3): the page lists through the index without the VM folders', () => {
  test("the VM table and a VM's restore points from the index, no VM folder listing; a backup written shows at Refresh", async () => {
    const copy = copyOfRepository('brcache-browser-lockless-')
    await openRepository(copy).buildIndex()
    const { page, errors, requests } = await openWatched(new Lockless(copy), { verifyEveryMs: Infinity })
    assert.equal(await page.getAttribute('body', 'data-source'), 'index')
    assertRowsAre(await rowsOf(page), view)
    const vm = Object.keys(view)[1]
    await page.click(`#vms tr[data-vm="${vm}"]`)
    await page.waitForSelector(`#details[data-vm="${vm}"] table.points`)
    const ids = await page.$$eval('#details tbody tr', (trs) => trs.map((tr) => tr.dataset.id))
    assert.deepStrictEqual(ids, view[vm].toReversed().map((s) => s.id))
    // A backup through the library on that share (a delta, no lock), then Refresh.
    const rng = createRandom('browser-lockless')
    const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, retention: 1, start: Date.UTC(2031, 0, 1) })
    const writer = openRepository(new Lockless(copy))
    await writer.writeVmBackupMetadata(vm, metadata)
    await writer.settle()
    await page.click('#refresh')
    await page.waitForFunction((n) => Number(document.querySelector(`#vms tr[data-vm="${n.vm}"]`)?.dataset.count) === n.count, { vm, count: view[vm].length + 1 }, { timeout: 15_000 })
    assert.deepStrictEqual(
      requests.filter((url) => /^\/api\/r\/0\/vms(\?|$)/.test(url)),
      [],
      'no VM folder listing',
    )
    assert.deepStrictEqual(requests.filter((url) => url.includes('/cache')), [], 'no VM cache')
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

/** A copy of the suite's repository as brcache leaves an immutable one: no cache. */
function immutableCopy(prefix) {
  const copy = copyOfRepository(prefix)
  for (const vm of Object.keys(view)) rmSync(join(copy, vmFile(vm, CACHE_FILE)))
  return copy
}

/** `brcache serve --immutable` on `copy` and the page on it, with every URL the server was asked. */
const openImmutable = (copy) => openWatched(copy, { immutable: true, verifyEveryMs: 0 })

describe('an immutable repository: the page reads its index of create-only files, and the server writes nothing', () => {
  test('every VM as its folders say, from the index (no cache read), a VM opened shows its restore points; a backup written shows at Refresh', async () => {
    const copy = immutableCopy('brcache-browser-immutable-')
    // The library's first listing there makes the index (its follow-up).
    const library = openRepository(copy, { immutable: true })
    await library.listSummaries()
    await library.settle()
    assert.ok(readdirSync(join(copy, 'xo-vm-backups', '.brcache-index')).every((name) => /^epoch-\d{20}$/.test(name)))
    // A VM folder the index never heard of (as XO would write it, no cache): read from its folder.
    const other = mkdtempSync(join(tmpdir(), 'brcache-browser-immutable-other-'))
    cleanups.push(() => rmSync(other, { recursive: true, force: true }))
    await generateRepository(other, { vms: 1, retention: 3, seed: 'browser-immutable-other' })
    const [added] = await openRepository(other).listAllVms()
    cpSync(join(other, 'xo-vm-backups', added), join(copy, 'xo-vm-backups', added), { recursive: true })
    rmSync(join(copy, vmFile(added, CACHE_FILE)))
    const truth = await openRepository(copy, { immutable: true, index: false }).listSummaries()
    assert.equal(Object.keys(truth).length, 9)
    const tree = treeOf(copy)

    const { page, errors, requests } = await openImmutable(copy)
    assert.equal(await page.getAttribute('body', 'data-source'), 'index')
    assertRowsAre(await rowsOf(page), truth)
    assert.match(await page.textContent('#status'), /^9 VMs, \d+ restore points, .* · from the repository index$/)
    assert.equal(await page.textContent('#verified'), 'immutable: index not verified by the server')
    const api = requests.filter((url) => url.startsWith('/api/'))
    const index = api.filter((url) => url.startsWith('/api/r/0/index'))
    assert.ok(index.includes('/api/r/0/index'), 'the index folder: its epochs')
    assert.ok(index.some((url) => /^\/api\/r\/0\/index\/epoch-\d{20}$/.test(url)), `an epoch's listing: ${index}`)
    assert.ok(index.some((url) => /^\/api\/r\/0\/index\/epoch-\d{20}\/snapshot-/.test(url)), `its snapshot: ${index}`)
    // Besides the index: the VM folders, encryption.json (a 404: plaintext),
    // and the one VM the index does not know, from its folder (its cache a
    // 404) as the library reads it. No other VM's cache or folder.
    const names = readdirSync(join(copy, 'xo-vm-backups', added)).filter((name) => name.endsWith('Z.json'))
    assert.deepStrictEqual(
      [...new Set(api.filter((url) => !url.startsWith('/api/r/0/index')))].sort(),
      [
        '/api/repositories',
        '/api/r/0/encryption.json',
        '/api/r/0/vms?locks=1',
        `/api/r/0/vms/${added}/cache`,
        `/api/r/0/vms/${added}/backups`,
        ...names.map((name) => `/api/r/0/vms/${added}/backups/${name}`),
      ].sort(),
    )
    assert.deepStrictEqual(page.workersSeen, ['/js/web/index-worker.js'])

    // A VM opened: its restore points, through the index too.
    requests.length = 0
    const vm = Object.keys(view)[2]
    await page.click(`#vms tr[data-vm="${vm}"]`)
    await page.waitForSelector(`#details[data-vm="${vm}"] table.points`)
    const ids = await page.$$eval('#details tbody tr', (trs) => trs.map((tr) => tr.dataset.id))
    assert.deepStrictEqual(ids, truth[vm].toReversed().map((s) => s.id))
    assert.deepStrictEqual(requests.filter((url) => url.startsWith('/api/r/0/vms/')), [], 'no VM cache or folder')
    assert.ok(requests.some((url) => /^\/api\/r\/0\/index\/epoch-\d{20}\/snapshot-/.test(url)), String(requests))
    await page.screenshot({ path: join(screenshots, 'restore-view-immutable.png'), fullPage: true })
    assert.deepStrictEqual(treeOf(copy), tree, 'the server wrote nothing')

    // A backup written through the library there: a create-only metadata
    // file and its segment, in an epoch the index folder's listing does not
    // show change. Refresh (as the page's poll) shows it.
    const [written] = Object.keys(view)
    const rng = createRandom('browser-immutable-write')
    const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: written }, retention: 1, start: Date.UTC(2030, 0, 1) })
    const writer = openRepository(copy, { immutable: true })
    await writer.writeVmBackupMetadata(written, metadata)
    await writer.settle()
    await page.click('#refresh')
    await page.waitForFunction((n) => Number(document.querySelector(`#vms tr[data-vm="${n.vm}"]`)?.dataset.count) === n.count, { vm: written, count: truth[written].length + 1 }, { timeout: 15_000 })
    assert.equal(await page.getAttribute('body', 'data-source'), 'index')
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

describe('an immutable repository without its index yet: the page reads every VM folder, as the library does', () => {
  test('every VM from its folder (its metadata files), none from a cache; nothing written; a folder read again only once it changed', async () => {
    const copy = immutableCopy('brcache-browser-immutable-bare-')
    // (The listings of the suite's before() made one in the original.)
    rmSync(join(copy, 'xo-vm-backups', '.brcache-index'), { recursive: true, force: true })
    const tree = treeOf(copy)
    const { page, errors, requests } = await openImmutable(copy)
    assert.equal(await page.getAttribute('body', 'data-source'), 'folders')
    assertRowsAre(await rowsOf(page), view)
    const metadata = requests.filter((url) => /^\/api\/r\/0\/vms\/[^/]+\/backups\/[^/]+$/.test(url))
    assert.equal(metadata.length, Object.values(view).flat().length, 'every metadata file, once')
    assert.deepStrictEqual(treeOf(copy), tree, 'the server wrote nothing, and made no index')

    // Refresh: each folder listed again, nothing read again.
    requests.length = 0
    await page.click('#refresh')
    await page.waitForFunction(() => Number(document.body.dataset.refreshed) >= 1, undefined, { timeout: 15_000 })
    assert.equal(requests.filter((url) => /\/backups$/.test(url)).length, Object.keys(view).length, String(requests))
    assert.deepStrictEqual(requests.filter((url) => /\/backups\/[^/]+$/.test(url)), [], 'no metadata file read again')
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

describe('a server with a token: the page signs in first', () => {
  test('the sign-in form, a wrong token refused, the right one shows the view, a reload keeps the session', async () => {
    const token = 'browser-test-token-for-the-restore-view'
    const server = await listen(dir, { auth: token, index: false })
    cleanups.push(server.close)
    const page = await chromium.browser.newPage({ viewport: { width: 1440, height: 640 } })
    const errors = []
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(server.url)
    await page.waitForSelector('#sign-in:not([hidden])', { timeout: 15_000 })
    assert.equal(await page.textContent('#status'), 'Sign in to see the restore view')
    assert.equal((await rowsOf(page)).length, 0)
    await page.fill('#token', 'not-the-token-at-all')
    await page.click('#sign-in button')
    await page.waitForSelector('#sign-in-error:not([hidden])')
    assert.equal(await page.textContent('#sign-in-error'), 'Wrong token')
    await page.fill('#token', token)
    await page.click('#sign-in button')
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
    assert.equal(await page.isVisible('#sign-in'), false)
    assert.deepStrictEqual((await rowsOf(page)).map((r) => r.vm).sort(), Object.keys(view).sort())
    const cookies = await page.context().cookies()
    assert.deepStrictEqual(cookies.map((c) => [c.name, c.httpOnly, c.sameSite]), [['brcache_session', true, 'Strict']])
    assert.equal(await page.evaluate(() => document.cookie), '', 'the session is out of the page scripts\' reach')
    await page.reload()
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
    assert.equal(await page.isVisible('#sign-in'), false, 'no second sign-in')
    assert.equal((await rowsOf(page)).length, 8)
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

describe('metadata files the server cannot read: said on their VM row, never a silently shorter list', () => {
  test('the row counts them, the details name them, the status line adds them up', async () => {
    const copy = mkdtempSync(join(tmpdir(), 'brcache-browser-unreadable-'))
    cleanups.push(() => rmSync(copy, { recursive: true, force: true }))
    cpSync(dir, copy, { recursive: true })
    const vm = Object.keys(view)[2]
    // A restore point XO was writing when the share filled up: cut short.
    const bad = vmFile(vm, '20300101T000000Z.json')
    writeFileSync(join(copy, bad), '{"mode": "full", "timest')
    // Old enough not to be a write in progress (those are not reported).
    const past = new Date(Date.now() - 120_000)
    utimesSync(join(copy, bad), past, past)
    const server = await listen(copy, { index: false })
    cleanups.push(server.close)
    const { page, errors } = await open(server.url)
    const row = (await rowsOf(page)).find((r) => r.vm === vm)
    assert.equal(row.state, 'ok')
    assert.equal(row.count, view[vm].length)
    assert.equal(await page.getAttribute(`#vms tr[data-vm="${vm}"]`, 'data-unreadable'), '1')
    assert.match(await page.textContent(`#vms tr[data-vm="${vm}"] .unreadable`), /^1 unreadable$/)
    assert.match(await page.textContent('#status'), /· 1 metadata file could not be read$/)
    await page.click(`#vms tr[data-vm="${vm}"]`)
    await page.waitForSelector(`#details[data-vm="${vm}"] p.error`)
    assert.match(await page.textContent('#details p.error'), new RegExp(`^Not listed, unreadable: /${bad.replaceAll('.', '\\.')}: `))
    assert.equal((await rowsOf(page)).filter((r) => r.vm !== vm).every((r) => !r.name.includes('unreadable')), true)
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

describe('an encrypted repository: the page asks for the key and decrypts, and the key never leaves it', () => {
  const cases = [
    // The server without the key serves the files as they lie; the page reads the index.
    { algorithm: 'chacha20-poly1305', index: true, serverKey: undefined },
    // The server with the key checks each cache first; the page reads the caches.
    { algorithm: 'aes-256-gcm', index: false, serverKey: KEY },
  ]
  for (const { algorithm, index, serverKey } of cases) {
    test(`${algorithm}, ${index ? 'with' : 'without'} an index, a server ${serverKey ? 'given' : 'without'} the key`, async () => {
      const copy = mkdtempSync(join(tmpdir(), 'brcache-browser-encrypted-'))
      cleanups.push(() => rmSync(copy, { recursive: true, force: true }))
      cpSync(dir, copy, { recursive: true })
      encryptAsXo(copy, { algorithm, caches: 'keep' })
      if (index) await openRepository(copy, { encryptionKey: KEY }).buildIndex()
      const server = await listen(copy, { encryptionKey: serverKey, index })
      cleanups.push(server.close)
      const seen = []
      server.server.on('request', (request) => seen.push(`${request.method} ${request.url} ${JSON.stringify(request.rawHeaders)}`))
      const page = await chromium.browser.newPage({ viewport: { width: 1440, height: 640 } })
      const errors = []
      page.on('pageerror', (error) => errors.push(error.message))
      page.on('request', (request) => seen.push(`${request.url()} ${JSON.stringify(request.headers())} ${request.postData() ?? ''}`))
      await page.goto(server.url)
      await page.waitForSelector('#unlock:not([hidden])', { timeout: 15_000 })
      assert.equal(await page.textContent('#algorithm'), algorithm)
      assert.match(await page.textContent('#status'), /^Encrypted repository: enter its key$/)
      assert.equal((await rowsOf(page)).length, 0, 'nothing shown before the key')
      if (index) await page.screenshot({ path: join(screenshots, 'restore-view-encrypted.png'), fullPage: true })

      // Another key: said, and asked again.
      await page.fill('#key', OTHER_KEY)
      await page.click('#unlock button')
      await page.waitForSelector('#unlock-error:not([hidden])')
      assert.match(await page.textContent('#unlock-error'), /metadata\.json: does not decrypt/)
      assert.equal(await page.isVisible('#unlock'), true)

      await page.fill('#key', KEY)
      await page.click('#unlock button')
      await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
      assert.equal(await page.isVisible('#unlock'), false)
      assert.equal(await page.getAttribute('body', 'data-source'), index ? 'index' : 'caches')
      const rows = await rowsOf(page)
      assert.deepStrictEqual(rows.map((r) => r.vm).sort(), Object.keys(view).sort())
      for (const row of rows) {
        assert.equal(row.state, 'ok', row.error)
        assert.equal(row.count, view[row.vm].length)
        assert.deepStrictEqual(row.modes, modesOf(view[row.vm]))
        assert.equal(row.name, view[row.vm].at(-1).vm.name_label)
      }
      assert.deepStrictEqual(errors, [])
      // Neither key, in any spelling, in any request the page made or the server received.
      const spellings = [KEY, OTHER_KEY].flatMap((k) => [k, encodeURIComponent(k), Buffer.from(k).toString('base64'), Buffer.from(k).toString('hex')])
      assert.ok(seen.length > 10)
      for (const line of seen) for (const spelling of spellings) assert.ok(!line.includes(spelling), `a key in ${line}`)
      await page.close()
    })
  }
})

describe('several repositories in one page, live', () => {
  test('each repository its rows and its line; a broken one and a skipped encrypted one hold no other back', async () => {
    const second = mkdtempSync(join(tmpdir(), 'brcache-browser-second-'))
    const locked = mkdtempSync(join(tmpdir(), 'brcache-browser-locked-'))
    cleanups.push(() => rmSync(second, { recursive: true, force: true }), () => rmSync(locked, { recursive: true, force: true }))
    // The second repository holds copies of two of the first's VMs (a backup copy job does that).
    await generateRepository(second, { vms: 2, retention: 3, seed: 'browser-second' })
    const copied = Object.keys(view).slice(0, 2)
    for (const vm of copied) cpSync(join(dir, 'xo-vm-backups', vm), join(second, 'xo-vm-backups', vm), { recursive: true })
    cpSync(dir, locked, { recursive: true })
    encryptAsXo(locked, { algorithm: 'chacha20-poly1305', caches: 'keep' })
    const missing = join(tmpdir(), 'brcache-browser-no-such-repository')
    // (--no-index: no index made in the shared repository.)
    const server = await listen([dir, second, missing, locked], { index: false })
    cleanups.push(server.close)
    const page = await chromium.browser.newPage({ viewport: { width: 1440, height: 900 } })
    const errors = []
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(server.url)
    await page.waitForSelector('#unlock:not([hidden])', { timeout: 15_000 })
    assert.equal(await page.textContent('#unlock-repository'), locked)
    await page.click('#unlock-skip')
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
    const secondView = await openRepository(second).listSummaries()
    const rows = await page.$$eval('#vms tbody tr', (trs) => trs.map((tr) => [tr.dataset.repository, tr.dataset.vm, tr.dataset.state, Number(tr.dataset.count)]))
    const expected = [...Object.entries(view).map(([vm, list]) => [dir, vm, 'ok', list.length]), ...Object.entries(secondView).map(([vm, list]) => [second, vm, 'ok', list.length])]
    assert.deepStrictEqual(rows.sort(), expected.sort())
    assert.equal(await page.isVisible('th.repository'), true, 'a repository column with several repositories')
    const lines = await page.$$eval('#repositories li', (lis) => lis.map((li) => [li.dataset.repository, li.className, li.textContent]))
    assert.deepStrictEqual(lines.map(([name]) => name), [dir, second, missing, locked])
    assert.match(lines[0][2], /: 8 VMs, \d+ restore points$/)
    assert.match(lines[1][2], /: 4 VMs, \d+ restore points$/)
    assert.equal(lines[2][1], 'failed')
    assert.match(lines[2][2], /cannot list the repository root|ENOENT/)
    assert.equal(lines[3][1], 'failed')
    assert.match(lines[3][2], /encrypted, and no key was given/)
    assert.match(await page.textContent('#status'), /^12 VMs, .* · 2 repositories could not be read$/)
    await page.screenshot({ path: join(screenshots, 'restore-view-repositories.png'), fullPage: true })
    assert.deepStrictEqual(errors, [])
    await page.close()
  })

  test('a new backup and a deleted VM folder show without a reload; Refresh reads at once; a metadata file downloads, decrypted', async () => {
    const copy = mkdtempSync(join(tmpdir(), 'brcache-browser-live-'))
    cleanups.push(() => rmSync(copy, { recursive: true, force: true }))
    cpSync(dir, copy, { recursive: true })
    encryptAsXo(copy, { algorithm: 'aes-256-gcm', caches: 'keep' })
    const repository = openRepository(copy, { encryptionKey: KEY })
    await repository.buildIndex()
    const server = await listen(copy)
    cleanups.push(server.close)
    const page = await chromium.browser.newPage({ viewport: { width: 1440, height: 640 }, acceptDownloads: true })
    const errors = []
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(server.url)
    await page.waitForSelector('#unlock:not([hidden])', { timeout: 15_000 })
    await page.fill('#key', KEY)
    await page.click('#unlock button[type="submit"]')
    await page.waitForSelector('body[data-ready="true"]', { timeout: 15_000 })
    const [vm, doomed] = Object.keys(view)
    const count = () => page.getAttribute(`#vms tr[data-vm="${vm}"]`, 'data-count').then(Number)
    assert.equal(await count(), view[vm].length)

    // A backup written while the page is open: the poll of the index folder sees it.
    const rng = createRandom('browser-live')
    const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, retention: 1, start: Date.UTC(2031, 0, 1) })
    await repository.writeVmBackupMetadata(vm, metadata)
    await page.waitForFunction((n) => Number(document.querySelector(`#vms tr[data-vm="${n.vm}"]`)?.dataset.count) === n.count, { vm, count: view[vm].length + 1 }, { timeout: 15_000 })

    // A VM folder deleted behind the page's back: gone at the next Refresh, at once.
    rmSync(join(copy, 'xo-vm-backups', doomed), { recursive: true })
    const refreshed = Number(await page.getAttribute('body', 'data-refreshed'))
    await page.click('#refresh')
    await page.waitForFunction((n) => Number(document.body.dataset.refreshed) > n, refreshed, { timeout: 15_000 })
    assert.equal(await page.$(`#vms tr[data-vm="${doomed}"]`), null)

    // The newest restore point's metadata file, decrypted in the page.
    await page.click(`#vms tr[data-vm="${vm}"]`)
    await page.waitForSelector(`#details[data-vm="${vm}"] button.download`)
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#details tbody tr:first-child button.download')])
    const saved = join(copy, 'downloaded.json')
    await download.saveAs(saved)
    assert.deepStrictEqual(JSON.parse(readFileSync(saved, 'utf8')), metadata)
    assert.match(download.suggestedFilename(), new RegExp(`^${vm}-\\d{8}T\\d{6}Z\\.json$`))
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})

describe('200 VMs without an index, their caches held back: rows that arrive, sorting, filtering, headers', () => {
  let server
  let truth
  let big
  before(async () => {
    big = mkdtempSync(join(tmpdir(), 'brcache-browser-big-'))
    cleanups.push(() => rmSync(big, { recursive: true, force: true }))
    await generateRepository(big, { vms: 200, retention: 3, seed: 'browser-big' })
    truth = await openRepository(big, { index: false }).listSummaries()
    server = await listen(big, { index: false })
    cleanups.push(server.close)
  })

  /** A page whose first `pass` cache requests go through; `release()` lets the others go. */
  async function held(pass) {
    const page = await chromium.browser.newPage({ viewport: { width: 1440, height: 640 } })
    const errors = []
    page.on('pageerror', (error) => errors.push(error.message))
    const waiting = []
    let passed = 0
    let released = false
    await page.route(
      (url) => url.pathname.endsWith('/cache'),
      (route) => {
        if (released || passed < pass) {
          passed++
          route.continue()
        } else waiting.push(route)
      },
    )
    await page.goto(server.url)
    await page.waitForFunction((n) => document.querySelectorAll('#vms tbody tr[data-state="ok"]').length >= n, pass, { timeout: 15_000 })
    return {
      page,
      errors,
      release() {
        released = true
        for (const route of waiting.splice(0)) route.continue()
      },
    }
  }

  const nameOf = (vm) => truth[vm].at(-1).vm.name_label
  const order = (page) => page.$$eval('#vms tbody tr', (trs) => trs.map((tr) => tr.dataset.vm))
  const shown = (page) => page.$$eval('#vms tbody tr', (trs) => trs.filter((tr) => !tr.hidden).map((tr) => tr.dataset.vm))

  test('rows arriving while the pointer rests on a row never move it; once it leaves, the rows are in order', async () => {
    const { page, errors, release } = await held(60)
    const target = await page.$('#vms tbody tr[data-state="ok"]:nth-child(3)')
    const vm = await target.getAttribute('data-vm')
    const box = await target.boundingBox()
    const point = { x: box.x + box.width / 2, y: box.y + box.height / 2 }
    await page.mouse.move(point.x, point.y)
    // Every frame while the other 140 arrive: where the row is, and what is under the pointer.
    await page.evaluate(({ vm, point }) => {
      const tr = document.querySelector(`#vms tr[data-vm="${vm}"]`)
      window.hoverLog = []
      const look = () => {
        window.hoverLog.push([tr.getBoundingClientRect().top, document.elementFromPoint(point.x, point.y)?.closest('tr')?.dataset.vm])
        if (!document.body.dataset.ready) window.requestAnimationFrame(look)
      }
      look()
    }, { vm, point })
    release()
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })
    const log = await page.evaluate(() => window.hoverLog)
    assert.ok(log.length > 3, `${log.length} frames looked at`)
    for (const [top, under] of log) {
      assert.equal(top, box.y, 'the row under the pointer stays put')
      assert.equal(under, vm, 'the pointer stays on its row')
    }
    assert.equal(await page.$$eval('#vms tbody tr[data-state="ok"]', (trs) => trs.length), 200)
    // The pointer leaves: the rows that came in go to their places.
    await page.mouse.move(5, 5)
    const byName = Object.keys(truth).sort((a, b) => collator.compare(nameOf(a), nameOf(b)) || collator.compare(a, b))
    await page.waitForFunction((expected) => [...document.querySelectorAll('#vms tbody tr')].every((tr, i) => tr.dataset.vm === expected[i]), byName, { timeout: 5_000 })
    assert.deepStrictEqual(errors, [])
    await page.close()
  })

  test('sorting and filtering 200 rows, each right; the headers stay in view when the rows scroll', async () => {
    const { page, errors, release } = await held(0)
    release()
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })
    const sizeOf = (vm) => describeVm(truth[vm]).size
    const lastOf = (vm) => truth[vm].at(-1).timestamp
    const sorted = (vms, compare) => vms.every((vm, i) => i === 0 || compare(vms[i - 1], vm) <= 0)
    await page.click('th[data-sort="size"] button')
    const bySize = await order(page)
    assert.equal(bySize.length, 200)
    assert.ok(sorted(bySize, (a, b) => sizeOf(b) - sizeOf(a)), 'largest first')
    await page.click('th[data-sort="last"] button')
    assert.ok(sorted(await order(page), (a, b) => lastOf(b) - lastOf(a)), 'newest first')
    await page.click('th[data-sort="name"] button')
    assert.ok(sorted(await order(page), (a, b) => collator.compare(nameOf(a), nameOf(b))), 'by name')
    await page.click('th[data-sort="name"] button')
    assert.ok(sorted(await order(page), (a, b) => collator.compare(nameOf(b), nameOf(a))), 'by name, reversed')

    for (const text of ['prod', 'PROD-1', 'web', Object.keys(truth)[7].slice(0, 6)]) {
      await page.fill('#filter', text)
      const needle = text.toLowerCase()
      const expected = Object.keys(truth).filter((vm) => nameOf(vm).toLowerCase().includes(needle) || vm.includes(needle))
      assert.ok(expected.length > 0 && expected.length < 200, text)
      assert.deepStrictEqual((await shown(page)).sort(), expected.sort(), text)
      // Filtering hides rows, never reorders them.
      assert.ok(sorted(await shown(page), (a, b) => collator.compare(nameOf(b), nameOf(a))), `${text}: still in order`)
    }
    await page.fill('#filter', 'no-such-vm')
    assert.deepStrictEqual(await shown(page), [])
    assert.equal(await page.isVisible('#empty'), true)
    await page.fill('#filter', '')
    assert.equal((await shown(page)).length, 200)

    // Scrolled as a user scrolls, then the page to its end: the headers are still on screen, on top.
    const table = await page.$('#vms tbody')
    const box = await table.boundingBox()
    await page.mouse.move(box.x + 100, box.y + 100)
    await page.mouse.wheel(0, 3000)
    await page.waitForFunction(() => document.querySelector('#vms').closest('.scroll').scrollTop > 1000)
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight))
    await page.evaluate(() => new Promise((resolve) => window.requestAnimationFrame(() => setTimeout(resolve))))
    const headers = await page.$$eval('#vms th', (ths) =>
      ths
        .filter((th) => th.offsetParent !== null)
        .map((th) => {
          const rect = th.getBoundingClientRect()
          const on = document.elementFromPoint(rect.left + rect.width / 2, rect.top + rect.height / 2)
          return { text: th.textContent, top: rect.top, bottom: rect.bottom, on: th.contains(on) }
        }),
    )
    assert.equal(headers.length, 6)
    const height = await page.evaluate(() => window.innerHeight)
    for (const th of headers) {
      assert.ok(th.top >= 0 && th.bottom <= height, `${th.text} in view: ${th.top}`)
      assert.ok(th.on, `${th.text} on top of the rows`)
    }
    assert.deepStrictEqual(errors, [])
    await page.screenshot({ path: join(screenshots, 'restore-view-scrolled.png') })
    await page.close()
  })

  test('a full backup shows no disk count ("—", one XVA), never "0"', async () => {
    const { page, errors, release } = await held(0)
    release()
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 })
    const vm = Object.keys(truth)[11]
    await page.click(`#vms tr[data-vm="${vm}"]`)
    await page.waitForSelector(`#details[data-vm="${vm}"] table.points`)
    const cells = await page.$$eval('#details tbody tr', (trs) => trs.map((tr) => [tr.cells[1].textContent, tr.cells[3].textContent, tr.cells[3].title]))
    const expected = truth[vm].toReversed()
    assert.ok(expected.some((s) => s.mode === 'full') && expected.some((s) => s.mode === 'delta'))
    cells.forEach(([mode, disks, title], i) => {
      assert.equal(mode, expected[i].mode)
      if (mode === 'full') {
        assert.equal(disks, '—')
        assert.match(title, /XVA/)
      } else {
        assert.equal(disks, String(expected[i].disks.length))
        assert.notEqual(disks, '0')
      }
    })
    assert.deepStrictEqual(errors, [])
    await page.close()
  })
})
