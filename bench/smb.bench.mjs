#!/usr/bin/env node
// The article's listing on a real SMB share: Samba on loopback, mounted
// through the FUSE client smbnetfs (scripts/smb.sh). No cache, XO-style
// cache, brcache's checked caches and brcache's repository index, in the
// same run, as ratios. The repository is generated on the server's side of
// the share (the same files a client would see, written faster), then
// every listing goes through the mount. Calls and bytes are counted by a
// SimulatedShare with no added latency wrapped around the mount's handler.
//
//   node bench/smb.bench.mjs [--runs N] [--vms N] [--retention R] [--json]

import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { listWithoutCache, listXoStyle, restoreView } from '../js/sample/baselines.js'
import { formatBytes, table } from '../js/node/cli/format.js'
import { generateRepository } from '../js/sample/generate.js'
import { LocalHandler, openRepository, SimulatedShare } from '../js/index.js'
import { startSmb, stopSmb } from '../tests/helpers/smb.mjs'

const args = process.argv.slice(2)
const option = (name, fallback) => (args.includes(`--${name}`) ? Number(args[args.indexOf(`--${name}`) + 1]) : fallback)
const runs = option('runs', 3)
const vms = option('vms', 22)
const retention = option('retention', 45)

function median(values) {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
}

/** The mean time of one call through the mount, one after the other, over many. */
async function callLatency(fn) {
  const count = 200
  const start = performance.now()
  for (let i = 0; i < count; i++) await fn()
  return (performance.now() - start) / count
}

const share = startSmb()
const name = `bench-${vms}x${retention}-${Date.now()}`
const serverSide = join(share.exported, name)
try {
  await generateRepository(serverSide, { vms, retention, seed: 'article' })
  await openRepository(serverSide).buildIndex()
  const mounted = new LocalHandler(join(share.mount, name))
  const counted = new SimulatedShare(mounted, { rttMs: 0, maxInFlight: 16, bandwidthBytesPerSec: Number.POSITIVE_INFINITY })
  const caches = openRepository(counted, { index: false })
  const indexed = openRepository(counted, { index: true, verifyEveryMs: Infinity })
  const paths = {
    'no cache: read every metadata file': () => listWithoutCache(counted).then(restoreView),
    'XO-style cache: read each cache, trust it': () => listXoStyle(counted).then(restoreView),
    'brcache: checked caches, restore view': () => caches.listSummaries(),
    'brcache: repository index, restore view': () => indexed.listSummaries(),
  }
  const results = {}
  const ids = (view) => JSON.stringify(Object.entries(view).map(([vm, list]) => [vm, list.map((b) => b.id).sort()]).sort())
  let expected
  for (const [label, fn] of Object.entries(paths)) {
    const times = []
    let stats
    for (let i = 0; i < runs; i++) {
      counted.resetStats()
      const start = performance.now()
      const view = await fn()
      times.push(performance.now() - start)
      stats = counted.stats()
      await caches.settle()
      expected ??= ids(view)
      if (ids(view) !== expected) throw new Error(`${label}: the listings disagree`)
    }
    results[label] = { firstMs: times[0], ms: median(times), calls: stats.calls.total, bytesRead: stats.bytes.read }
  }
  const [firstVm] = (await mounted.list('xo-vm-backups')).filter((entry) => !entry.startsWith('.'))
  const [firstMetadata] = (await mounted.list(`xo-vm-backups/${firstVm}`)).filter((entry) => entry.endsWith('.json'))
  const latencyMs = {
    stat: await callLatency(() => mounted.stat(`xo-vm-backups/${firstVm}/${firstMetadata}`)),
    readFile: await callLatency(() => mounted.readFile(`xo-vm-backups/${firstVm}/${firstMetadata}`)),
    list: await callLatency(() => mounted.list(`xo-vm-backups/${firstVm}`)),
  }
  const base = results['no cache: read every metadata file'].ms
  if (args.includes('--json')) {
    console.log(JSON.stringify({ vms, retention, runs, latencyMs, results }, null, 2))
  } else {
    console.log(`${vms} VMs x ${retention} restore points on Samba 4.17 over loopback, through smbnetfs (FUSE, SMB 3.1.1); median of ${runs} runs`)
    const { stat, readFile, list } = latencyMs
    console.log(`one call through the mount, in turn: stat ${stat.toFixed(2)} ms, readFile of a metadata file ${readFile.toFixed(2)} ms, list of a VM folder ${list.toFixed(2)} ms\n`)
    const baseFirst = results['no cache: read every metadata file'].firstMs
    console.log(
      table(
        ['listing', 'first run', 'vs no cache', 'median', 'vs no cache', 'calls', 'read'],
        Object.entries(results).map(([label, r]) => [
          label,
          `${r.firstMs.toFixed(0)} ms`,
          `${(baseFirst / r.firstMs).toFixed(1)}x`,
          `${r.ms.toFixed(0)} ms`,
          `${(base / r.ms).toFixed(1)}x`,
          r.calls,
          formatBytes(r.bytesRead),
        ]),
      ),
    )
  }
} finally {
  rmSync(serverSide, { recursive: true, force: true })
  stopSmb()
}
