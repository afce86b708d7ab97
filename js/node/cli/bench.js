// `brcache bench`: listing and update scenarios on the simulated share,
// each figure a ratio to a baseline measured in the same run.

import { cpSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { listWithoutCache, listXoStyle, restoreView } from '../../sample/baselines.js'
import { generateRepository } from '../../sample/generate.js'
import { LocalHandler, SimulatedShare } from '../handlers/index.js'
import { CACHE_FILE, metadataKey, vmFile } from '../../common/layout.js'
import { INDEX_DIR } from '../../common/repo-index.js'
import { indexApi } from '../core.js'
import { openRepository } from '../repository.js'
import { createRandom, makeVm, makeVmBackups } from '../../sample/metadata.js'
import { formatBytes, progress, table } from './format.js'

const SHARE = { rttMs: 10, maxInFlight: 16, bandwidthBytesPerSec: 125_000_000 }

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

/** Runs `fn` `runs` times on a share with fresh counters; median time, last counters. */
async function measure(share, fn, runs, after) {
  const times = []
  let stats
  let peakRss = 0
  for (let i = 0; i < runs; i++) {
    share.resetStats()
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20)
    const start = performance.now()
    await fn()
    times.push(performance.now() - start)
    clearInterval(sampler)
    peakRss = Math.max(peakRss, process.memoryUsage().rss)
    stats = share.stats()
    await after?.()
  }
  return { ms: median(times), runs, calls: stats.calls.total, bytesRead: stats.bytes.read, bytesWritten: stats.bytes.written, peakRss }
}

function withTempDir(fn) {
  const dir = mkdtempSync(join(tmpdir(), 'brcache-bench-'))
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }))
}

async function article({ runs, vms = 22, retention = 45 }) {
  return withTempDir(async (dir) => {
    await generateRepository(dir, { vms, retention, seed: 'article' })
    await openRepository(dir).buildIndex()
    const share = new SimulatedShare(new LocalHandler(dir), SHARE)
    const repository = openRepository(share, { index: false })
    const indexed = openRepository(share, { index: true, verifyEveryMs: Infinity })
    const settle = () => repository.settle()
    const paths = {
      'no cache': () => listWithoutCache(share).then(restoreView),
      'XO-style cache': () => listXoStyle(share).then(restoreView),
      'brcache restore view': () => repository.listSummaries(),
      'brcache restore view, index': () => indexed.listSummaries(),
      'brcache full records': () => repository.listAllVmBackups(),
    }
    const results = {}
    for (const [name, fn] of Object.entries(paths)) results[name] = await measure(share, fn, runs, settle)
    return { title: `article: ${vms} VMs x ${retention} restore points, listing`, baseline: 'no cache', results }
  })
}

const BENCH_KEY = 'brcache-bench-key-32-characters!'

/**
 * The article's listing on an encrypted repository (XO's default
 * algorithm) against the same repository in plaintext, same seed, same
 * share. Warm: one repository object for every run, as a backup server
 * keeps it; fresh: a new one each run, which first reads encryption.json
 * (and, with a key, checks it against metadata.json) before anything else.
 */
async function encrypted({ runs, vms = 22, retention = 45 }) {
  return withTempDir(async (dir) => {
    const [plainDir, sealedDir] = [join(dir, 'plain'), join(dir, 'encrypted')]
    await generateRepository(plainDir, { vms, retention, seed: 'article' })
    await generateRepository(sealedDir, { vms, retention, seed: 'article', encryptionKey: BENCH_KEY })
    await openRepository(plainDir).buildIndex()
    await openRepository(sealedDir, { encryptionKey: BENCH_KEY }).buildIndex()
    const plain = new SimulatedShare(new LocalHandler(plainDir), SHARE)
    const sealed = new SimulatedShare(new LocalHandler(sealedDir), SHARE)
    const open = (share, options) => openRepository(share, share === sealed ? { ...options, encryptionKey: BENCH_KEY } : options)
    // Runs alternate between the two repositories, path by path, so that
    // a busy machine weighs on both alike.
    const paths = {
      'restore view (caches)': (share) => {
        const repository = open(share, { index: false })
        return [() => repository.listSummaries(), () => repository.settle()]
      },
      'restore view (index)': (share) => {
        const repository = open(share, { index: true, verifyEveryMs: Infinity })
        return [() => repository.listSummaries()]
      },
      'full records (caches)': (share) => {
        const repository = open(share, { index: false })
        return [() => repository.listAllVmBackups(), () => repository.settle()]
      },
      'restore view (index), fresh repository': (share) => [() => open(share, { index: true, verifyEveryMs: Infinity }).listSummaries()],
    }
    const results = {}
    for (const [path, make] of Object.entries(paths)) {
      const sides = [
        ['plaintext', plain],
        ['encrypted', sealed],
      ].map(([label, share]) => ({ label, share, calls: make(share), samples: [] }))
      for (let i = 0; i < runs; i++) {
        for (const side of sides) side.samples.push(await measure(side.share, side.calls[0], 1, side.calls[1]))
      }
      for (const { label, samples } of sides) {
        results[`${label}, ${path}`] = { ...samples.at(-1), ms: median(samples.map((sample) => sample.ms)), runs }
      }
    }
    return {
      title: `encrypted: ${vms} VMs x ${retention} restore points, chacha20-poly1305 against plaintext (interleaved runs)`,
      baseline: 'plaintext, restore view (caches)',
      // Each encrypted path against the same path in plaintext.
      pairedWith: (name) => (name.startsWith('encrypted, ') ? name.replace('encrypted, ', 'plaintext, ') : undefined),
      results,
    }
  })
}

/** Xen Orchestra's cache update: read, gunzip, parse, change, rewrite whole, no lock. */
async function xoStyleUpdate(handler, vm, change) {
  const path = vmFile(vm, CACHE_FILE)
  const cache = JSON.parse(gunzipSync(await handler.readFile(path)))
  change(cache)
  await handler.writeFile(path, gzipSync(JSON.stringify(cache)))
}

async function update({ runs, retentions = [45, 1000] }) {
  const results = {}
  for (const retention of retentions) {
    await withTempDir(async (dir) => {
      const rng = createRandom(`update-${retention}`)
      const vm = makeVm(rng, 0)
      const backups = makeVmBackups(rng, { vm, retention: retention + 3 * runs + 2 })
      const local = new LocalHandler(dir)
      for (const { filename, metadata } of backups.slice(0, retention)) {
        await local.writeFile(vmFile(vm.uuid, filename), JSON.stringify(metadata), { exclusive: true })
      }
      await openRepository(dir).buildIndex()
      const share = new SimulatedShare(new LocalHandler(dir), SHARE)
      const onShare = openRepository(share, { index: false })
      const indexed = openRepository(share, { index: true, verifyEveryMs: Infinity })
      let next = retention
      const add = await measure(share, () => onShare.writeVmBackupMetadata(vm.uuid, backups[next++].metadata), runs)
      const addIndexed = await measure(share, () => indexed.writeVmBackupMetadata(vm.uuid, backups[next++].metadata), runs)
      let oldest = 0
      const remove = await measure(
        share,
        () => onShare.deleteVmBackups([metadataKey(vm.uuid, backups[oldest++].filename)]),
        runs,
      )
      const removeIndexed = await measure(
        share,
        () => indexed.deleteVmBackups([metadataKey(vm.uuid, backups[oldest++].filename)]),
        runs,
      )
      const xoAdd = await measure(
        share,
        async () => {
          const { filename, metadata } = backups[next++]
          const key = metadataKey(vm.uuid, filename)
          await share.writeFile(vmFile(vm.uuid, filename), JSON.stringify(metadata), { exclusive: true })
          await xoStyleUpdate(share, vm.uuid, (cache) => (cache[key] = { ...metadata, _filename: key, id: key }))
        },
        runs,
      )
      const xoRemove = await measure(
        share,
        async () => {
          const { filename } = backups[oldest++]
          await share.unlink(vmFile(vm.uuid, filename))
          await xoStyleUpdate(share, vm.uuid, (cache) => delete cache[metadataKey(vm.uuid, filename)])
        },
        runs,
      )
      results[`add one, retention ${retention}: XO-style`] = xoAdd
      results[`add one, retention ${retention}: brcache`] = add
      results[`add one, retention ${retention}: brcache + index`] = addIndexed
      results[`delete one, retention ${retention}: XO-style`] = xoRemove
      results[`delete one, retention ${retention}: brcache`] = remove
      results[`delete one, retention ${retention}: brcache + index`] = removeIndexed
    })
  }
  return {
    title: 'update: one backup added, one deleted (brcache locks, re-reads and checks; XO-style does neither)',
    baseline: null,
    results,
  }
}

/**
 * A backup job: one backup written to each of `vms` VMs at once (XO runs a
 * job's VMs side by side), through brcache and the XO-style model, on
 * copies of the same repository.
 */
async function job({ runs, vms = 50, retention = 45 }) {
  return withTempDir(async (dir) => {
    await generateRepository(dir, { vms, retention, seed: 'job' })
    await openRepository(dir).buildIndex()
    const share = new SimulatedShare(new LocalHandler(dir), SHARE)
    const folders = (await share.listWithTypes('xo-vm-backups')).filter((e) => e.isDirectory && !e.name.startsWith('.') && !e.name.endsWith('.lock')).map((e) => e.name)
    const rng = createRandom('job-writes')
    let hour = 0
    // Each round's backups: one per VM, an hour after the last round's.
    const round = () => {
      hour++
      return folders.map((uuid) => {
        const [{ filename, metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid }, retention: 1, start: Date.UTC(2031, 0, 1, hour) })
        return { uuid, filename, metadata }
      })
    }
    const onShare = openRepository(share, { index: false })
    const indexed = openRepository(share, { index: true, verifyEveryMs: Infinity })
    const results = {}
    results[`${vms} VMs at once: XO-style`] = await measure(
      share,
      () =>
        Promise.all(
          round().map(async ({ uuid, filename, metadata }) => {
            const key = metadataKey(uuid, filename)
            await share.writeFile(vmFile(uuid, filename), JSON.stringify(metadata), { exclusive: true })
            await xoStyleUpdate(share, uuid, (cache) => (cache[key] = { ...metadata, _filename: key, id: key }))
          }),
        ),
      runs,
    )
    results[`${vms} VMs at once: brcache`] = await measure(share, () => Promise.all(round().map(({ uuid, metadata }) => onShare.writeVmBackupMetadata(uuid, metadata))), runs)
    results[`${vms} VMs at once: brcache + index`] = await measure(
      share,
      () => Promise.all(round().map(({ uuid, metadata }) => indexed.writeVmBackupMetadata(uuid, metadata))),
      runs,
    )
    return {
      title: `backup job: one backup written to each of ${vms} VMs at once (retention ${retention})`,
      baseline: `${vms} VMs at once: XO-style`,
      results,
    }
  })
}

/** Renames the segments in `folder` whose name says a VM to the name without it: `[[named, unnamed]]` paths. */
function unnameSegments(folder) {
  const renamed = []
  for (const name of readdirSync(folder)) {
    const stem = /^(\d{15}-[0-9a-f]{16})-.+\.json\.gz$/.exec(name)
    if (!stem) continue
    const paths = [join(folder, name), join(folder, `${stem[1]}.json.gz`)]
    renameSync(...paths)
    renamed.push(paths)
  }
  return renamed
}

async function large({ runs, vms = 1000, retention = 100 }) {
  return withTempDir(async (dir) => {
    const bar = progress('gen')
    await generateRepository(dir, { vms, retention, seed: 'large', caches: false, onProgress: (d, t) => bar.update(d, t, 'VMs') })
    bar.done()
    const share = new SimulatedShare(new LocalHandler(dir), SHARE)
    const repository = openRepository(share, { index: false })
    const indexed = openRepository(share, { index: true, verifyEveryMs: Infinity })
    const results = {}
    results['no cache (full records)'] = await measure(share, () => listWithoutCache(share).then(restoreView), 1)
    results['brcache cold rebuild (check --repair)'] = await measure(share, () => repository.checkAll({ repair: true }), 1)
    results['brcache index build (from the caches)'] = await measure(share, () => indexed.buildIndex(), 1)
    results['brcache warm listing (full records)'] = await measure(share, () => repository.listAllVmBackups(), runs)
    results['brcache listSummaries (per-VM caches)'] = await measure(share, () => repository.listSummaries(), runs)
    results['brcache listSummaries (index)'] = await measure(share, () => indexed.listSummaries(), runs)
    // The VM table from the index's table (sized by VMs), and one VM's
    // restore points from its part.
    const [someVm] = await repository.listAllVms()
    results['brcache VM table (index)'] = await measure(share, () => indexed.vmTable(), runs)
    results["brcache one VM's points (index)"] = await measure(share, () => indexed.vmRestoreView(someVm), runs)
    // The index's worst warm case: as many segments waiting as a writer
    // lets pile up before it compacts (one backup on each of 64 VMs), then
    // the write that compacts them.
    const rng = createRandom('large-index-writes')
    const writeOne = (vm) => {
      const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, retention: 1, start: Date.UTC(2031, 0, 1) + rng.int(0, 1e9) })
      return indexed.writeVmBackupMetadata(vm, metadata)
    }
    const waiting = indexApi.compactAfter()
    const writers = (await repository.listAllVms()).slice(0, waiting + 1)
    for (const vm of writers.slice(0, waiting)) await writeOne(vm)
    // A listing that read more than 8 of them compacts once it has
    // answered: each run starts from the index folder as the writers left
    // it, once that compaction is done.
    const folder = join(dir, INDEX_DIR)
    const saved = join(dir, 'index-as-written')
    cpSync(folder, saved, { recursive: true })
    const restore = async () => {
      await indexed.settle()
      rmSync(folder, { recursive: true, force: true })
      cpSync(saved, folder, { recursive: true })
    }
    results[`brcache listSummaries (index, ${waiting} segments waiting)`] = await measure(share, () => indexed.listSummaries(), runs, restore)
    results[`brcache VM table (index, ${waiting} segments waiting)`] = await measure(share, () => indexed.vmTable(), runs, restore)
    results[`brcache one VM's points (index, ${waiting} segments waiting)`] = await measure(share, () => indexed.vmRestoreView(writers[0]), runs, restore)
    // The same segments named as before names said their VM: every
    // one-VM read reads them all.
    const unnamed = async () => {
      await restore()
      unnameSegments(folder)
    }
    await unnamed()
    results[`brcache VM table (index, ${waiting} segments waiting, names without their VM)`] = await measure(share, () => indexed.vmTable(), runs, unnamed)
    results[`brcache one VM's points (index, ${waiting} segments waiting, names without their VM)`] = await measure(share, () => indexed.vmRestoreView(writers[0]), runs, unnamed)
    await restore()
    results['brcache add one backup, index (the write that compacts)'] = await measure(share, () => writeOne(writers.at(-1)), 1)
    results['XO-style cache (full records)'] = await measure(share, () => listXoStyle(share).then(restoreView), runs)
    return { title: `large: ${vms} VMs x ${retention} restore points`, baseline: 'no cache (full records)', results }
  })
}

/**
 * An immutable repository (Object Lock, WORM): brcache writes no cache
 * there, only the create-only index of epoch folders, and Xen Orchestra
 * reads every metadata file on every listing (the baseline).
 */
async function immutable({ runs, vms = 200, retention = 45 }) {
  return withTempDir(async (dir) => {
    await generateRepository(dir, { vms, retention, seed: 'immutable', caches: false })
    const share = new SimulatedShare(new LocalHandler(dir), SHARE)
    const open = () => openRepository(share, { immutable: true, verifyEveryMs: Infinity })
    const results = {}
    results['no cache (every metadata file, as XO lists it)'] = await measure(share, () => listWithoutCache(share).then(restoreView), runs)
    results['brcache index off (every folder read)'] = await measure(share, () => openRepository(share, { immutable: true, index: false }).listSummaries(), runs)
    // The first listing reads every folder and its follow-up makes the
    // index: measured once, with that follow-up.
    const first = open()
    results['brcache first listing (makes the index)'] = await measure(share, () => first.listSummaries().then(() => first.settle()), 1)
    const indexed = open()
    results['brcache restore view, index'] = await measure(share, () => indexed.listSummaries(), runs)
    results['brcache VM table, index'] = await measure(share, () => indexed.vmTable(), runs)
    const [someVm] = Object.keys(await indexed.listSummaries())
    results["brcache one VM's points, index"] = await measure(share, () => indexed.vmRestoreView(someVm), runs)
    // A backup: its metadata file and its segment, both create-only.
    const rng = createRandom('immutable-writes')
    let hour = 0
    const writeOne = () => {
      const [{ metadata }] = makeVmBackups(rng, { vm: { ...makeVm(rng, 0), uuid: someVm }, retention: 1, start: Date.UTC(2031, 0, 1, hour++) })
      return indexed.writeVmBackupMetadata(someVm, metadata)
    }
    results['brcache add one backup (create-only metadata and segment)'] = await measure(share, writeOne, runs)
    const writer = open()
    for (let i = 0; i < 8; i++) await writeOne()
    await indexed.settle()
    results[`brcache restore view, index, ${8 + runs} segments waiting`] = await measure(share, () => writer.listSummaries(), 1)
    return { title: `immutable: ${vms} VMs x ${retention} restore points, no cache, the create-only index`, baseline: 'no cache (every metadata file, as XO lists it)', results }
  })
}

const SCENARIOS = { article, update, job, large, encrypted, immutable }

export async function runBench({ scenario, json, runs, vms, retention }) {
  const names = scenario === 'all' ? ['article', 'update', 'job', 'encrypted'] : [scenario]
  for (const name of names) if (!SCENARIOS[name]) throw new Error(`unknown scenario ${JSON.stringify(name)} (article, update, job, large, encrypted, immutable, all)`)
  const reports = []
  for (const name of names) {
    const options = { runs }
    if (vms !== undefined) options.vms = vms
    if (retention !== undefined) options.retention = retention
    reports.push({ scenario: name, ...(await SCENARIOS[name](options)) })
  }
  if (json) {
    console.log(JSON.stringify({ share: SHARE, node: process.version, reports }, null, 2))
    return 0
  }
  console.log(`simulated share: ${SHARE.rttMs} ms round trip, ${SHARE.maxInFlight} calls in flight, 1 Gbit/s; median of ${runs} runs\n`)
  for (const { title, baseline, results, pairedWith } of reports) {
    console.log(title)
    const base = baseline ? results[baseline] : undefined
    const ratio = (of, to) => (to ? `${(to.ms / of.ms).toFixed(2)}x` : '')
    const rows = Object.entries(results).map(([name, r]) => [
      name,
      `${r.ms.toFixed(0)} ms`,
      base ? `${(base.ms / r.ms).toFixed(1)}x` : '',
      ...(pairedWith ? [ratio(r, results[pairedWith(name)])] : []),
      r.calls,
      formatBytes(r.bytesRead),
      formatBytes(r.bytesWritten),
      formatBytes(r.peakRss),
    ])
    const columns = ['path', 'time', base ? `vs ${baseline}` : '', ...(pairedWith ? ['vs the same path in plaintext'] : []), 'calls', 'read', 'written', 'peak RSS']
    console.log(table(columns, rows))
    console.log('')
  }
  return 0
}
