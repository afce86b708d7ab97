// The benchmark's page, run in Chromium by bench/browser.bench.mjs: one
// VM's cache.json.gz turned into the restore view's summaries, (a) by the
// wasm build in one pass, (b) as a page would without it:
// DecompressionStream('gzip'), JSON.parse, then the same projection in JS.
// The results are POSTed back to the bench server.

import { init, summariesOf } from '/js/browser.js'
import { projectRecord } from '/bench/restore-view.js'

const params = new URL(location.href).searchParams
const vm = params.get('vm')
const runs = Number(params.get('runs'))
const warmup = Number(params.get('warmup'))

/** The restore view as XO's UI projects it, sorted as the core sorts. */
function restoreView(records) {
  return records
    .map(projectRecord)
    .sort((a, b) => a.timestamp - b.timestamp || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

async function inflate(bytes) {
  return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).text()
}

// The JS path in its three steps, each timed, for the breakdown.
async function plain(bytes, times) {
  let t = performance.now()
  const text = await inflate(bytes)
  times?.inflate.push(performance.now() - t)
  t = performance.now()
  const body = JSON.parse(text)
  times?.parse.push(performance.now() - t)
  t = performance.now()
  // brcache writes each entry's own key as its `id`, as XO does.
  const view = restoreView(Object.values(body))
  times?.project.push(performance.now() - t)
  return view
}

async function run() {
  await init()
  const response = await fetch(`/api/vms/${vm}/cache`)
  if (!response.ok) throw new Error(`HTTP ${response.status}`)
  const bytes = new Uint8Array(await response.arrayBuffer())

  // The same restore points in the same order, before timing anything.
  const a = summariesOf(vm, bytes).map((s) => s.id)
  const b = (await plain(bytes)).map((s) => s.id)
  if (a.length !== b.length || a.some((id, i) => id !== b[i])) throw new Error('the two paths disagree on the restore points')

  const times = { wasm: [], js: [], inflate: [], parse: [], project: [] }
  for (let i = 0; i < warmup; i++) {
    summariesOf(vm, bytes)
    await plain(bytes)
  }
  // Interleaved, so a slow spell of the machine falls on both paths alike.
  for (let i = 0; i < runs; i++) {
    let t = performance.now()
    summariesOf(vm, bytes)
    times.wasm.push(performance.now() - t)
    t = performance.now()
    await plain(bytes, times)
    times.js.push(performance.now() - t)
  }
  return { entries: a.length, gzipBytes: bytes.length, jsonBytes: new TextEncoder().encode(await inflate(bytes)).length, times }
}

function report(body) {
  return fetch('/bench/results', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
}

run().then(report, (error) => report({ error: String(error?.stack ?? error) }))
