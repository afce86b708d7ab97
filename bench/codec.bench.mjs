#!/usr/bin/env node
// Decoding a 1,000-entry cache (realistic XO records) three ways in one
// run: plain Node (zlib.gunzipSync + JSON.parse, what Xen Orchestra does),
// the napi addon and the wasm build. Every path is first checked to give
// the same object. Ratios are against plain Node in the same run.
//
//   node bench/codec.bench.mjs [--json] [--runs N]

import assert from 'node:assert/strict'
import zlib from 'node:zlib'
import * as napi from '../js/index.js'
import * as wasm from '../js/wasm.js'
import { makeRepository } from '../js/sample/metadata.js'
import { compare, ms, ratio } from './stats.mjs'

const args = process.argv.slice(2)
const runs = Number(args[args.indexOf('--runs') + 1]) || 30

// 10 VMs x 100 restore points, merged into one 1,000-entry cache.
const repo = makeRepository('bench-codec', { vms: 10, retention: 100 })
const cache = {}
for (const { vm, backups } of repo.vms) {
  for (const { filename, metadata } of backups) {
    const path = `/xo-vm-backups/${vm.uuid}/${filename}`
    cache[path] = { ...metadata, _filename: path, id: path }
  }
}
const json = JSON.stringify(cache)
const bytes = zlib.gzipSync(json)

const paths = {
  'plain Node (gunzipSync + JSON.parse)': () => JSON.parse(zlib.gunzipSync(bytes)),
  'napi decodeCache': () => napi.decodeCache(bytes),
  'wasm decodeCache': () => wasm.decodeCache(bytes),
}
const expected = JSON.parse(json)
for (const [name, fn] of Object.entries(paths)) assert.deepStrictEqual(fn(), expected, name)

const results = compare(paths, { runs })
const baseline = results['plain Node (gunzipSync + JSON.parse)'].median

const summary = {
  input: { entries: Object.keys(cache).length, jsonBytes: json.length, gzipBytes: bytes.length },
  node: process.version,
  results: Object.fromEntries(
    Object.entries(results).map(([name, r]) => [name, { ...r, speedupVsPlainNode: baseline / r.median }]),
  ),
}
if (args.includes('--json')) {
  console.log(JSON.stringify(summary, null, 2))
} else {
  console.log(
    `decode of a ${summary.input.entries}-entry cache: ${(json.length / 1e6).toFixed(1)} MB JSON, ${(bytes.length / 1e6).toFixed(2)} MB gzip; median of ${runs} interleaved runs`,
  )
  console.log('| path | median | min | vs plain Node |')
  console.log('|---|---|---|---|')
  for (const [name, r] of Object.entries(results)) {
    console.log(`| ${name} | ${ms(r.median)} | ${ms(r.min)} | ${ratio(baseline, r.median)} |`)
  }
}
