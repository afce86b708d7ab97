#!/usr/bin/env node
// The restore view page itself, in Chromium, on a generated repository of
// 1,000 VMs × 20 restore points: the time from navigation to every VM's
// row on screen, the long tasks meanwhile, then sorts (a click on a
// header to the next paint) and filters (a key typed to the next paint),
// on both paths: the repository index, and every VM's cache (`--no-index`,
// as on every S3 or immutable repository). Against the page as it was at
// BASELINE (its js/web/ taken out of git at run time), served by the same
// server from the same data, runs interleaved; ratios are the baseline's
// time over this page's.
//
//   node bench/page.bench.mjs [--json] [--runs N] [--baseline COMMIT] [--vms N]

/* global window, document, requestAnimationFrame, MutationObserver -- in functions that run in the page */

import { execFileSync } from 'node:child_process'
import { createServer as createHttpServer } from 'node:http'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateRepository } from '../js/sample/generate.js'
import { openRepository } from '../js/node/repository.js'
import { createServer } from '../js/node/serve.js'
import { launchChromium } from '../tests/helpers/chromium.mjs'
import { summarize } from './stats.mjs'

// The page before issue 19's work: every frame sorted and re-appended every row.
const BASELINE = '1061b1f'

const args = process.argv.slice(2)
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback)
const runs = Number(option('--runs', 3))
const vmCount = Number(option('--vms', 1000))
const retention = 20
const root = join(import.meta.dirname, '..')
const git = (...rest) => execFileSync('git', rest, { cwd: root, encoding: 'utf8' })
const baseline = git('rev-parse', '--verify', `${option('--baseline', BASELINE)}^{commit}`).trim()

// The baseline page's files, as that commit has them.
const old = mkdtempSync(join(tmpdir(), 'brcache-page-bench-baseline-'))
mkdirSync(join(old, 'js', 'web'), { recursive: true })
for (const file of git('ls-tree', '--name-only', baseline, 'js/web/').split('\n').filter(Boolean)) {
  writeFileSync(join(old, file), execFileSync('git', ['show', `${baseline}:${file}`], { cwd: root }))
}
// The index reader the baseline page used, as it was then (the core's
// operations read the index now): served beside its page.
const legacyIndexStore = git('show', `${baseline}:js/index-store.js`).replace(/from '\.\/([a-z-]+\.js)'/g, "from '/base/js/$1'")
writeFileSync(join(old, 'js', 'web', 'legacy-index-store.js'), legacyIndexStore)

const dir = mkdtempSync(join(tmpdir(), 'brcache-page-bench-'))
const started = performance.now()
process.stderr.write(`page bench: generating ${vmCount} VMs × ${retention} restore points… `)
await generateRepository(dir, { vms: vmCount, retention, seed: 'page-bench' })
await openRepository(dir).buildIndex()
process.stderr.write(`${((performance.now() - started) / 1000).toFixed(0)} s\n`)

// Shared modules the baseline page imports from js/, where they have moved since.
const MOVED = {
  '/js/codec.js': '/js/common/codec.js',
  '/js/concurrency.js': '/js/common/concurrency.js',
  '/js/encryption.js': '/js/common/encryption.js',
  '/js/errors.js': '/js/common/errors.js',
  '/js/index-store.js': '/js/common/repo-index.js',
  '/js/layout.js': '/js/common/layout.js',
}

// The browser entry as the baseline page imports it: today's, plus the
// index reader the page used before it ran the core's operations.
const BASELINE_ENTRY = `export * from '/js/browser.js'
import * as wasm from '/js/generated/wasm-web/brcache_wasm.js'
import { makeIndexApi } from '/js/common/repo-index.js'
export { IndexStore } from '/base/js/web/legacy-index-store.js'
export const indexApi = makeIndexApi(wasm)
`

const TYPES = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' }

/** `brcache serve` on `dir`, plus the baseline page under /base/ (its js/web/ from git, the rest shared). */
async function serve(options) {
  const app = createServer(dir, options)
  const served = { last: 0 }
  const server = createHttpServer((request, response) => {
    const path = request.url.split('?')[0]
    // When the server handed over the last of the data (a cache, or an index file).
    if (/\/(cache|index\/[^/]+)$/.test(path)) response.on('finish', () => (served.last = Date.now()))
    if (path.startsWith('/base/')) {
      const rest = path.slice('/base'.length)
      const file = rest === '/' ? 'js/web/index.html' : rest.startsWith('/js/web/') ? rest.slice(1) : undefined
      if (file) {
        let bytes
        try {
          bytes = readFileSync(join(old, file))
        } catch {
          return response.writeHead(404).end()
        }
        return response.writeHead(200, { 'Content-Type': TYPES[file.split('.').pop()] ?? 'application/octet-stream' }).end(bytes)
      }
      if (rest === '/js/browser.js') return response.writeHead(200, { 'Content-Type': TYPES.js }).end(BASELINE_ENTRY)
      // The baseline page imports the shared modules by their names of the time.
      request.url = MOVED[rest] ?? rest
    }
    app.emit('request', request, response)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    served,
    url: `http://127.0.0.1:${server.address().port}/`,
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(resolve))),
  }
}

// In the page before its own scripts: long tasks, and when every row is in.
function instrument() {
  window.bench = { longTasks: [], ready: undefined, painted: undefined }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) window.bench.longTasks.push([entry.startTime, entry.duration])
  }).observe({ type: 'longtask', buffered: true })
  new MutationObserver((_, observer) => {
    if (document.body?.dataset.ready === undefined) return
    observer.disconnect()
    window.bench.ready = performance.now()
    requestAnimationFrame(() => setTimeout(() => (window.bench.painted = performance.now())))
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-ready'] })
}

// Each a click on a header, or a filter's new text, to the next paint.
const SORTS = ['size', 'size', 'name', 'last', 'count', 'name']
const FILTERS = ['p', 'pr', 'pro', 'prod', '', 'web', '']

async function interactions({ sorts, filters }) {
  const nextPaint = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)))
  const since = performance.now()
  const out = { sort: [], filter: [] }
  for (const key of sorts) {
    const button = document.querySelector(`th[data-sort="${key}"] button`)
    const t = performance.now()
    button.click()
    await nextPaint()
    out.sort.push(performance.now() - t)
  }
  const input = document.getElementById('filter')
  for (const text of filters) {
    const t = performance.now()
    input.value = text
    input.dispatchEvent(new Event('input', { bubbles: true }))
    await nextPaint()
    out.filter.push(performance.now() - t)
  }
  await nextPaint()
  out.longTasks = window.bench.longTasks.filter(([start]) => start >= since).map(([, duration]) => duration)
  return out
}

async function measure(browser, url, served) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } })
  try {
    await context.addInitScript(instrument)
    const page = await context.newPage()
    const errors = []
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(url)
    await page.waitForFunction(() => window.bench.painted !== undefined, undefined, { timeout: 300_000, polling: 200 })
    const { ready, painted, longTasks, origin } = await page.evaluate(() => ({ ...window.bench, origin: performance.timeOrigin }))
    // The same clock on both sides: the page's rows painted after the server's last byte.
    const lag = origin + painted - served.last
    const shown = await page.$$eval('#vms tbody tr[data-state="ok"]', (trs) => trs.length)
    if (errors.length || shown !== vmCount) throw new Error(`${url}: ${shown} VMs shown of ${vmCount}; ${errors.join('; ')}`)
    const loadTasks = longTasks.filter(([start]) => start <= painted).map(([, duration]) => duration)
    const after = await page.evaluate(interactions, { sorts: SORTS, filters: FILTERS })
    return { load: painted, ready, lag, loadLongTasks: loadTasks, ...after }
  } finally {
    await context.close()
  }
}

const servers = { index: await serve({}), caches: await serve({ index: false }) }
const chromium = await launchChromium()
const version = chromium.browser.version()
const results = {}
try {
  for (const path of ['index', 'caches']) {
    results[path] = { baseline: [], page: [] }
    // Interleaved, so a slow spell of the machine falls on both pages alike.
    for (let i = 0; i < runs; i++) {
      for (const which of i % 2 ? ['page', 'baseline'] : ['baseline', 'page']) {
        const url = servers[path].url + (which === 'baseline' ? 'base/' : '')
        const result = await measure(chromium.browser, url, servers[path].served)
        process.stderr.write(`page bench: ${path} ${which} run ${i + 1}: ${(result.load / 1000).toFixed(2)} s\n`)
        results[path][which].push(result)
      }
    }
  }
} finally {
  await chromium.close()
  for (const server of Object.values(servers)) await server.close()
  rmSync(dir, { recursive: true, force: true })
  rmSync(old, { recursive: true, force: true })
}

/** Per path and page: medians of each figure over the runs. */
function figures(list) {
  const all = (pick) => list.flatMap(pick)
  return {
    load: summarize(list.map((r) => r.load)),
    lag: summarize(list.map((r) => r.lag)),
    loadLongestTask: summarize(list.map((r) => Math.max(0, ...r.loadLongTasks))),
    loadLongTasksOver200: summarize(list.map((r) => r.loadLongTasks.filter((d) => d > 200).length)),
    sort: summarize(all((r) => r.sort)),
    filter: summarize(all((r) => r.filter)),
    interactionLongestTask: summarize(list.map((r) => Math.max(0, ...r.longTasks))),
  }
}
const stats = Object.fromEntries(Object.entries(results).map(([path, pages]) => [path, { baseline: figures(pages.baseline), page: figures(pages.page) }]))
const seconds = ((performance.now() - started) / 1000).toFixed(0)

if (args.includes('--json')) {
  console.log(JSON.stringify({ chromium: version, baseline, vms: vmCount, retention, runs, stats, results }, null, 2))
} else {
  console.log(
    `Chromium ${version}: the restore view on ${vmCount} VMs × ${retention} restore points, this page against the page at ${baseline.slice(0, 12)} (same server, same data), ${runs} interleaved runs each, medians (sort: ${SORTS.length} clicks a run; filter: ${FILTERS.length} inputs a run); ${seconds} s in all\n`,
  )
  const ms = (s) => (s.median >= 1000 ? `${(s.median / 1000).toFixed(2)} s` : `${s.median.toFixed(0)} ms`)
  const ratio = (a, b) => (b.median > 0 ? `${(a.median / b.median).toFixed(1)}x` : '')
  console.log('| path | figure | page at baseline | this page | ratio |\n|---|---|---|---|---|')
  for (const [path, { baseline: b, page: p }] of Object.entries(stats)) {
    const name = path === 'index' ? 'index' : 'caches (`--no-index`)'
    console.log(`| ${name} | navigation to every row painted | ${ms(b.load)} | ${ms(p.load)} | ${ratio(b.load, p.load)} |`)
    console.log(`| ${name} | last row painted after the server's last byte | ${ms(b.lag)} | ${ms(p.lag)} | ${ratio(b.lag, p.lag)} |`)
    console.log(`| ${name} | longest task while loading | ${ms(b.loadLongestTask)} | ${ms(p.loadLongestTask)} | ${ratio(b.loadLongestTask, p.loadLongestTask)} |`)
    console.log(`| ${name} | long tasks over 200 ms while loading | ${b.loadLongTasksOver200.median} | ${p.loadLongTasksOver200.median} | |`)
    console.log(`| ${name} | sort, click to paint (max) | ${ms(b.sort)} (${b.sort.max.toFixed(0)} ms) | ${ms(p.sort)} (${p.sort.max.toFixed(0)} ms) | ${ratio(b.sort, p.sort)} |`)
    console.log(`| ${name} | filter, input to paint (max) | ${ms(b.filter)} (${b.filter.max.toFixed(0)} ms) | ${ms(p.filter)} (${p.filter.max.toFixed(0)} ms) | ${ratio(b.filter, p.filter)} |`)
  }
}
