#!/usr/bin/env node
// The wasm core's cost: the same repository work on the napi addon and on
// the WebAssembly build (the core `brcache` falls back on where no addon
// loads), as one ratio per job. A local folder, no simulated latency, so
// the core's CPU time is what differs; both listings must agree.
//
//   node bench/core.bench.mjs [--runs N] [--json]

import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { generateRepository } from '../js/sample/generate.js'
import * as native from '../js/node/native.js'
import { openRepository } from '../js/node/repository.js'
import * as wasm from '../js/wasm.js'
import { summarize } from './stats.mjs'

const args = process.argv.slice(2)
const runs = Number(args[args.indexOf('--runs') + 1]) || 15
const json = args.includes('--json')

const dir = mkdtempSync(join(tmpdir(), 'brcache-core-bench-'))
try {
  await generateRepository(dir, { vms: 22, retention: 45, seed: 'article' })
  const cores = { napi: native, wasm }
  const jobs = {
    'restore view (listSummaries)': (core) => openRepository(dir, { core, index: false }).listSummaries(),
    'full records (listAllVmBackups)': (core) => openRepository(dir, { core, index: false }).listAllVmBackups(),
    'check every VM (checkAll)': (core) => openRepository(dir, { core, index: false }).checkAll(),
  }
  const results = {}
  for (const [job, run] of Object.entries(jobs)) {
    assert.deepEqual(await run(wasm), await run(native), `${job}: the two cores disagree`)
    const times = { napi: [], wasm: [] }
    for (let i = 0; i < runs + 2; i++) {
      for (const [name, core] of Object.entries(cores)) {
        const start = performance.now()
        await run(core)
        if (i >= 2) times[name].push(performance.now() - start)
      }
    }
    const napi = summarize(times.napi).median
    const wasmTime = summarize(times.wasm).median
    results[job] = { napi, wasm: wasmTime, ratio: wasmTime / napi }
  }
  if (json) {
    console.log(JSON.stringify({ runs, results }, null, 2))
  } else {
    console.log(`The article's repository (22 VMs x 45), local folder, ${runs} interleaved runs, medians:\n`)
    console.log('| job | napi | wasm | wasm / napi |\n|---|---|---|---|')
    for (const [job, { napi, wasm: w, ratio }] of Object.entries(results)) {
      console.log(`| ${job} | ${napi.toFixed(1)} ms | ${w.toFixed(1)} ms | ${ratio.toFixed(2)}x |`)
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
