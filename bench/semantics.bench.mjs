#!/usr/bin/env node
// Coherency check and restore-view summaries of a 1,000-entry VM cache,
// against plain Node doing JSON.parse of the same cache (what Xen
// Orchestra does before it can look at anything). Ratios are measured in
// the same run, paths interleaved.
//
//   node bench/semantics.bench.mjs [--json] [--runs N]

import assert from 'node:assert/strict'
import zlib from 'node:zlib'
import * as napi from '../js/index.js'
import * as wasm from '../js/wasm.js'
import { createRandom, makeVm, makeVmBackups } from '../js/sample/metadata.js'
import { restoreView } from '../js/sample/baselines.js'
import { compare, ms, ratio } from './stats.mjs'

const args = process.argv.slice(2)
const runs = Number(args[args.indexOf('--runs') + 1]) || 20

// One VM with 1,000 restore points (a long retention), as brcache writes it.
const rng = createRandom('bench-semantics')
const vm = makeVm(rng, 0)
const backups = makeVmBackups(rng, { vm, retention: 1000 })
const cache = napi.VmCache.empty(vm.uuid)
for (const { filename, metadata } of backups) cache.add(`/xo-vm-backups/${vm.uuid}/${filename}`, metadata)
const bytes = cache.commit()
const listing = [...backups.map((b) => b.filename), 'cache.json.gz', ...backups.flatMap((b) => b.dataFiles.filter((f) => f.startsWith('./')).map((f) => f.slice(2)))]

// Plain Node: parse everything, then compare key sets (the best XO could do).
function plainReconcile() {
  const parsed = JSON.parse(zlib.gunzipSync(bytes))
  const names = new Set(Object.keys(parsed).map((k) => k.slice(k.lastIndexOf('/') + 1)))
  const files = listing.filter((n) => n.endsWith('.json'))
  const present = new Set(files)
  return { stale: [...names].filter((n) => !present.has(n)), missing: files.filter((n) => !names.has(n)) }
}

// Plain Node: parse everything, then project as XO's formatVmBackup does.
function plainSummaries() {
  const parsed = JSON.parse(zlib.gunzipSync(bytes))
  return restoreView({ [vm.uuid]: Object.values(parsed) })[vm.uuid].sort((a, b) => a.timestamp - b.timestamp)
}

const checks = {
  'plain Node: JSON.parse + key-set compare': plainReconcile,
  'napi fastPath (header only)': () => napi.fastPath(bytes, listing),
  'wasm fastPath (header only)': () => wasm.fastPath(bytes, listing),
  'napi decode + reconcile': () => napi.VmCache.decode(vm.uuid, bytes).reconcile(listing),
  'wasm decode + reconcile': () => wasm.VmCache.decode(vm.uuid, bytes).reconcile(listing),
}
const views = {
  'plain Node: JSON.parse + projection': plainSummaries,
  'napi summariesOf (one pass)': () => napi.summariesOf(vm.uuid, bytes),
  'wasm summariesOf (one pass)': () => wasm.summariesOf(vm.uuid, bytes),
  'napi VmCache.decode + summaries': () => napi.VmCache.decode(vm.uuid, bytes).summaries(),
}

// Same answers before timing anything.
assert.deepStrictEqual(plainReconcile(), { stale: [], missing: [] })
assert.equal(napi.fastPath(bytes, listing), true)
for (const name of ['napi decode + reconcile', 'wasm decode + reconcile']) assert.equal(checks[name]().coherent, true)
assert.deepStrictEqual(
  napi.VmCache.decode(vm.uuid, bytes).summaries().map((s) => s.id),
  plainSummaries().map((s) => s.id),
)
assert.deepStrictEqual(napi.summariesOf(vm.uuid, bytes), napi.VmCache.decode(vm.uuid, bytes).summaries())
assert.deepStrictEqual(wasm.summariesOf(vm.uuid, bytes), napi.summariesOf(vm.uuid, bytes))

const results = { reconcile: compare(checks, { runs }), summaries: compare(views, { runs }) }
const json = zlib.gunzipSync(bytes).length
if (args.includes('--json')) {
  console.log(JSON.stringify({ entries: backups.length, jsonBytes: json, gzipBytes: bytes.length, results }, null, 2))
} else {
  console.log(
    `a ${backups.length}-entry VM cache: ${(json / 1e6).toFixed(1)} MB JSON, ${(bytes.length / 1e6).toFixed(2)} MB gzip; median of ${runs} interleaved runs`,
  )
  for (const [title, table] of Object.entries(results)) {
    const baseline = Object.values(table)[0].median
    console.log(`\n${title}\n| path | median | vs plain Node |\n|---|---|---|`)
    for (const [name, r] of Object.entries(table)) console.log(`| ${name} | ${ms(r.median)} | ${ratio(baseline, r.median)} |`)
  }
}
