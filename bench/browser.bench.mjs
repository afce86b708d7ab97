#!/usr/bin/env node
// In Chromium: a 1,000-entry VM cache turned into the restore view's
// summaries by the wasm build (one pass, `summariesOf`), against the page
// doing it without brcache: DecompressionStream('gzip') + JSON.parse + the
// same projection in JS. Both in the same page, runs interleaved; the page
// POSTs its timings back (performance.now() is real in plain headless
// mode; --virtual-time-budget would freeze it).
//
//   node bench/browser.bench.mjs [--json] [--runs N]

import { createServer as createHttpServer } from 'node:http'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { VmCache } from '../js/index.js'
import { CACHE_FILE, vmDir, vmFile } from '../js/common/layout.js'
import { createRandom, makeVm, makeVmBackups } from '../js/sample/metadata.js'
import { createServer } from '../js/node/serve.js'
import { launchChromium } from '../tests/helpers/chromium.mjs'
import { summarize } from './stats.mjs'

const args = process.argv.slice(2)
const runs = Number(args[args.indexOf('--runs') + 1]) || 20
const warmup = 3

// One VM with 1,000 restore points (a long retention), as brcache writes it,
// in a repository of its own that `brcache serve` serves as it is.
const rng = createRandom('browser-bench')
const vm = makeVm(rng, 0)
const cache = VmCache.empty(vm.uuid)
for (const { filename, metadata } of makeVmBackups(rng, { vm, retention: 1000 })) cache.add(`/${vmFile(vm.uuid, filename)}`, metadata)
const dir = mkdtempSync(join(tmpdir(), 'brcache-browser-bench-'))
mkdirSync(join(dir, vmDir(vm.uuid)), { recursive: true })
writeFileSync(join(dir, vmFile(vm.uuid, CACHE_FILE)), cache.commit())

// The restore view's server, plus the bench page and the route its results come back on.
const app = createServer(dir, { repair: false })
let settle
const results = new Promise((resolve, reject) => (settle = { resolve, reject }))
const page = `<!doctype html><html><head><meta charset="utf-8"><title>brcache browser bench</title>
<script type="module" src="/bench/page.js"></script></head><body>running…</body></html>`
const server = createHttpServer((request, response) => {
  const path = request.url.split('?')[0]
  if (request.method === 'GET' && path === '/bench/') {
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page)
  } else if (request.method === 'GET' && path === '/bench/restore-view.js') {
    response.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(readFileSync(join(import.meta.dirname, '..', 'js', 'sample', 'restore-view.js')))
  } else if (request.method === 'GET' && path === '/bench/page.js') {
    response.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(readFileSync(join(import.meta.dirname, 'browser', 'page.js')))
  } else if (request.method === 'POST' && path === '/bench/results') {
    let body = ''
    request.on('data', (chunk) => (body += chunk))
    request.on('end', () => {
      response.writeHead(204).end()
      const result = JSON.parse(body)
      if (result.error) settle.reject(new Error(`the bench page failed: ${result.error}`))
      else settle.resolve(result)
    })
  } else {
    app.emit('request', request, response)
  }
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))

const chromium = await launchChromium()
let result
let version
try {
  version = chromium.browser.version()
  const tab = await chromium.browser.newPage()
  tab.on('pageerror', (error) => settle.reject(error))
  await tab.goto(`http://127.0.0.1:${server.address().port}/bench/?vm=${vm.uuid}&runs=${runs}&warmup=${warmup}`)
  result = await results
} finally {
  await chromium.close()
  server.closeAllConnections()
  server.close()
  rmSync(dir, { recursive: true, force: true })
}

const stats = Object.fromEntries(Object.entries(result.times).map(([name, list]) => [name, summarize(list)]))
if (args.includes('--json')) {
  console.log(JSON.stringify({ chromium: version, entries: result.entries, gzipBytes: result.gzipBytes, jsonBytes: result.jsonBytes, stats }, null, 2))
} else {
  const f = (ms) => `${ms.toFixed(1)} ms`
  console.log(
    `Chromium ${version}: a ${result.entries}-entry VM cache (${(result.jsonBytes / 1e6).toFixed(1)} MB JSON, ${(result.gzipBytes / 1e6).toFixed(2)} MB gzip) to the restore view's summaries; median of ${runs} interleaved runs after ${warmup} warm-up runs\n`,
  )
  console.log('| path | median | min | max | vs the page without brcache |\n|---|---|---|---|---|')
  const baseline = stats.js.median
  const row = (name, s, ratio = true) => console.log(`| ${name} | ${f(s.median)} | ${f(s.min)} | ${f(s.max)} | ${ratio ? `${(baseline / s.median).toFixed(2)}x` : ''} |`)
  row("page: DecompressionStream('gzip') + JSON.parse + projection", stats.js)
  row('wasm `summariesOf` (one pass)', stats.wasm)
  console.log(
    `\nThe page's path, step by step (medians): inflate ${f(stats.inflate.median)}, JSON.parse ${f(stats.parse.median)}, projection ${f(stats.project.median)}.`,
  )
}
