#!/usr/bin/env node
// Listing an S3 repository on a real 3-node Garage cluster (loopback, real
// HTTP round trips): without cache, XO-style cache, brcache. Requests and
// bytes are counted by a SimulatedShare with no added latency wrapped
// around the S3 handler. Ratios are measured in the same run.
//
//   node bench/s3.bench.mjs [--runs N] [--json]

import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { listWithoutCache, listXoStyle, restoreView } from '../js/sample/baselines.js'
import { mapLimit } from '../js/common/concurrency.js'
import { generateRepository } from '../js/sample/generate.js'
import { openRepository, S3Handler, SimulatedShare } from '../js/index.js'
import { startGarage, stopGarage } from '../tests/helpers/garage.mjs'
import { formatBytes, table } from '../js/node/cli/format.js'

const args = process.argv.slice(2)
const runs = Number(args[args.indexOf('--runs') + 1]) || 3

function files(dir) {
  const out = []
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name))
      else out.push(relative(dir, join(d, e.name)))
    }
  }
  walk(dir)
  return out
}

function median(values) {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
}

async function scenario(garage, { vms, retention }) {
  const dir = mkdtempSync(join(tmpdir(), 'brcache-s3-bench-'))
  const prefix = `bench-${vms}x${retention}-${Date.now()}`
  const handler = new S3Handler({ ...garage, endpoint: garage.endpoints[0], prefix })
  try {
    await generateRepository(dir, { vms, retention, seed: `s3-${vms}` })
    const all = files(dir)
    await mapLimit(all, 32, (file) => handler.writeFile(file, readFileSync(join(dir, file))))
    const share = new SimulatedShare(handler, { rttMs: 0, maxInFlight: 16, bandwidthBytesPerSec: Number.POSITIVE_INFINITY })
    const repository = openRepository(share)
    const paths = {
      'no cache': () => listWithoutCache(share).then(restoreView),
      'XO-style cache': () => listXoStyle(share).then(restoreView),
      'brcache restore view': () => repository.listSummaries(),
      'brcache full records': () => repository.listAllVmBackups(),
    }
    const results = {}
    for (const [name, fn] of Object.entries(paths)) {
      const times = []
      let stats
      for (let i = 0; i < runs; i++) {
        share.resetStats()
        const start = performance.now()
        await fn()
        times.push(performance.now() - start)
        stats = share.stats()
        await repository.settle()
      }
      results[name] = { ms: median(times), requests: stats.calls.total, bytesRead: stats.bytes.read }
    }
    const bytes = all.reduce((n, f) => n + statSync(join(dir, f)).size, 0)
    return { title: `${vms} VMs x ${retention} restore points (${all.length} objects, ${formatBytes(bytes)})`, results }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    handler.destroy()
  }
}

const garage = startGarage()
try {
  const reports = []
  for (const size of [{ vms: 22, retention: 45 }, { vms: 200, retention: 45 }]) reports.push(await scenario(garage, size))
  if (args.includes('--json')) {
    console.log(JSON.stringify({ runs, reports }, null, 2))
  } else {
    console.log(`Garage 2.5, 3 nodes on loopback, replication 3; median of ${runs} runs\n`)
    for (const { title, results } of reports) {
      const base = results['no cache'].ms
      console.log(title)
      console.log(
        table(
          ['path', 'time', 'vs no cache', 'requests', 'read'],
          Object.entries(results).map(([name, r]) => [name, `${r.ms.toFixed(0)} ms`, `${(base / r.ms).toFixed(1)}x`, r.requests, formatBytes(r.bytesRead)]),
        ),
      )
      console.log('')
    }
  }
} finally {
  stopGarage()
}
