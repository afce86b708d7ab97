// The repository-wide index (crates/core/src/index/, crates/core/src/ops/,
// js/node/repository.js) on real folders: built from the VM caches, followed by
// every write and delete, compacted, reconciled with what Xen Orchestra
// writes behind its back, rebuilt when lost or corrupt, never written on an
// immutable repository, and right under concurrent writers and SIGKILL.
//
// The truth a view is judged against is read from the disk
// (tests/helpers/repo-index-campaign.mjs, diskTruth: every metadata file that
// parses), or the per-VM listing, which checks each cache against its folder.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { LocalHandler, SimulatedShare, openRepository } from 'brcache'
import { generateRepository } from '../js/sample/generate.js'
import { INDEX_DIR, IndexStore } from '../js/common/repo-index.js'
import { formatFilenameDate } from '../js/common/layout.js'
import { indexApi } from '../js/node/native.js'
import { createRandom, makeMetadata, makeVm } from '../js/sample/metadata.js'
import {
  Children,
  KILLS_MUST_BE_ZERO,
  WRITERS_MUST_BE_ZERO,
  compareViews,
  diskTruth,
  indexFiles,
  recorder,
  runKills,
  runWriters,
  vmFolders,
} from './helpers/repo-index-campaign.mjs'

// --- fixtures ----------------------------------------------------------------

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-index-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/**
 * Runs `run(dir, children)` in a fresh folder. When the test ends, however
 * it ends (a timeout leaves the run going), the children are killed and no
 * more can start, the run is over, and only then is the folder removed.
 */
function processRun(t, run) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-index-'))
  const children = new Children()
  const running = run(dir, children)
  t.after(async () => {
    await children.close()
    await running.catch(() => {})
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return running
}

// With the VM the name says, or (an older release's) without.
const SEGMENT = /^\d{15}-[0-9a-f]{16}(-[^/]+)?\.json\.gz$/
const SNAPSHOT = /^snapshot-\d{20}\.json\.gz$/
const segments = (dir) => indexFiles(dir).filter((name) => SEGMENT.test(name))
const snapshots = (dir) => indexFiles(dir).filter((name) => SNAPSHOT.test(name))
const indexPath = (dir, ...names) => path.join(dir, INDEX_DIR, ...names)
const vmPath = (dir, vm, ...names) => path.join(dir, 'xo-vm-backups', vm, ...names)

/** A generated repository (caches written) with its index built. */
async function indexed(t, { vms = 6, retention = 3, seed = 'brcache/tests/index' } = {}) {
  const dir = tempDir(t)
  await generateRepository(dir, { vms, retention, seed })
  await openRepository(dir).buildIndex()
  return dir
}

/** The per-VM view, checked against every folder, without writing anything. */
function perVm(dir) {
  // Immutable and without an index: every folder read, nothing written.
  return openRepository(dir, { immutable: true, index: false }).listSummaries()
}

/** Every file under `root` with a hash of its bytes (folders listed too). */
function hashes(root) {
  const out = {}
  const walk = (rel) => {
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name
      if (entry.isDirectory()) {
        out[`${name}/`] = 'folder'
        walk(name)
      } else out[name] = createHash('sha256').update(fs.readFileSync(path.join(root, name))).digest('hex')
    }
  }
  walk('')
  return out
}

/**
 * A simulated share (no latency) over the folder that also measures round
 * trips: a call started after another completed depends on it (at most), so
 * its depth is one more; the deepest call is the number of round trips.
 */
const METADATA_FILE = /^xo-vm-backups\/[^/.][^/]*\/\d{8}T\d{6}Z\.json$/

function measuredShare(dir) {
  const share = new SimulatedShare(new LocalHandler(dir), { rttMs: 0 })
  const kinds = ['list', 'listWithTypes', 'readFile', 'writeFile', 'rename', 'unlink', 'rmdir', 'mkdir', 'stat', 'lock', 'cleanTemps']
  let completed = 0
  let deepest = 0
  const files = []
  const handler = Object.fromEntries(
    kinds.map((kind) => [
      kind,
      async (...args) => {
        const depth = completed + 1
        deepest = Math.max(deepest, depth)
        if (kind === 'readFile') files.push(args[0])
        try {
          return await share[kind](...args)
        } finally {
          completed = Math.max(completed, depth)
        }
      },
    ]),
  )
  return {
    handler,
    calls: () => share.stats().calls,
    roundTrips: () => deepest,
    /** Metadata files read: `<vm folder>/<date>.json`, never the index's own `.json` segments. */
    metadataReads: () => files.filter((file) => METADATA_FILE.test(file)),
    reset() {
      share.resetStats()
      completed = 0
      deepest = 0
      files.length = 0
    },
  }
}

/** A new restore point of `vm`, one hour after its last one. */
function nextBackup(dir, vm, rng = createRandom(`next:${vm}`)) {
  const names = fs
    .readdirSync(vmPath(dir, vm))
    .filter((name) => name.endsWith('.json'))
    .sort()
  const last = JSON.parse(fs.readFileSync(vmPath(dir, vm, names.at(-1))))
  return makeMetadata(rng, { vm: { ...makeVm(rng, 0), uuid: vm }, jobId: last.jobId, scheduleId: last.scheduleId, timestamp: last.timestamp + 3600_000, mode: 'delta' })
}

/** A cache as Xen Orchestra writes it: gzip(JSON.stringify()) of every metadata file, no header. */
function writeXoCache(dir, vm) {
  const cache = {}
  for (const name of fs.readdirSync(vmPath(dir, vm)).filter((n) => n.endsWith('.json'))) {
    const key = `/xo-vm-backups/${vm}/${name}`
    cache[key] = { ...JSON.parse(fs.readFileSync(vmPath(dir, vm, name))), _filename: key, id: key }
  }
  fs.writeFileSync(vmPath(dir, vm, 'cache.json.gz'), zlib.gzipSync(JSON.stringify(cache)))
}

const count = (view) => Object.values(view).reduce((n, summaries) => n + summaries.length, 0)
const indexWarnings = (events) => events.filter((e) => e.level === 'warn').map((e) => e.message)

// --- by default ------------------------------------------------------------------

describe('the index by default', () => {
  test('the first listing of a writable repository makes the index; the next answers from it', async (t) => {
    const dir = tempDir(t)
    await generateRepository(dir, { vms: 5, retention: 3, seed: 'brcache/tests/index/default' })
    const truth = await openRepository(dir, { index: false }).listSummaries()
    // (An immutable repository gets its own index, of create-only files:
    // tests/immutable-index.test.mjs.)
    for (const options of [{ immutable: true, index: false }, { index: false }]) {
      const repository = openRepository(dir, options)
      await repository.listSummaries()
      await repository.settle()
      assert.deepStrictEqual(indexFiles(dir), [], `${JSON.stringify(options)}: no index`)
    }
    const repository = openRepository(dir, { verifyEveryMs: Infinity })
    const first = await repository.restoreView()
    assert.deepStrictEqual([first.fromIndex, first.verified], [false, true])
    assert.deepStrictEqual(first.vms, truth)
    await repository.settle()
    assert.deepStrictEqual(snapshots(dir).length, 1, 'the listing made a snapshot')
    const share = measuredShare(dir)
    const second = await openRepository(share.handler, { verifyEveryMs: Infinity }).restoreView()
    assert.deepStrictEqual([second.fromIndex, second.verified], [true, false])
    assert.deepStrictEqual(second.vms, truth)
    assert.equal(share.calls().readFile, 3, 'encryption.json, the table and its part, no VM cache')
  })

  test('what Xen Orchestra writes behind the index: missing until verified, then found', async (t) => {
    const dir = await indexed(t, { vms: 4, retention: 3, seed: 'brcache/tests/index/verify' })
    const vm = vmFolders(dir)[0]
    const backup = nextBackup(dir, vm)
    const name = `${formatFilenameDate(backup.timestamp)}.json`
    fs.writeFileSync(vmPath(dir, vm, name), JSON.stringify(backup))
    writeXoCache(dir, vm)
    const id = `/xo-vm-backups/${vm}/${name}`
    const ids = (view) => Object.values(view.vms).flat().map((s) => s.id)

    const repository = openRepository(dir, { verifyEveryMs: Infinity })
    const quick = await repository.restoreView()
    assert.deepStrictEqual([quick.fromIndex, quick.verified], [true, false])
    assert.ok(!ids(quick).includes(id), 'the index does not know it yet')
    const exact = await repository.restoreView(undefined, { verified: true })
    assert.deepStrictEqual([exact.fromIndex, exact.verified], [true, true])
    assert.ok(ids(exact).includes(id), 'a verified answer has it')
    assert.deepStrictEqual(exact.vms, await perVm(dir))

    // A long-running process verifies in the background after an answer
    // from the index, every verifyEveryMs at most (0 here: after each):
    // the next answer has what was written meanwhile.
    const again = nextBackup(dir, vm, createRandom('again'))
    const againName = `${formatFilenameDate(again.timestamp)}.json`
    fs.writeFileSync(vmPath(dir, vm, againName), JSON.stringify(again))
    writeXoCache(dir, vm)
    const server = openRepository(dir, { verifyEveryMs: 0 })
    assert.ok(!ids(await server.restoreView()).includes(`/xo-vm-backups/${vm}/${againName}`))
    await server.settle()
    const after = await server.restoreView()
    assert.ok(ids(after).includes(`/xo-vm-backups/${vm}/${againName}`), 'caught up in the background')
    assert.deepStrictEqual(after.vms, await perVm(dir))
  })

  test('verifications asked for at once share the next one; verifiedAsOf says when the last that caught up began', async (t) => {
    const dir = await indexed(t, { vms: 3, retention: 2, seed: 'brcache/tests/index/verify-shared' })
    const share = measuredShare(dir)
    const repository = openRepository(share.handler, { verifyEveryMs: Infinity })
    assert.equal(repository.verifiedAsOf, undefined)
    await repository.verify() // (the object's first call also reads encryption.json)
    const before = Date.now()
    const start = share.calls().readFile
    await repository.verify()
    const asOf = repository.verifiedAsOf
    assert.ok(asOf >= before, 'one that found nothing to catch up counts')
    const one = share.calls().readFile - start
    assert.ok(one >= 3, `every VM cache read: ${one}`)
    // The first starts at once; the nine asked for while it runs share the one after it.
    const reports = await Promise.all(Array.from({ length: 10 }, () => repository.verify()))
    assert.equal(share.calls().readFile - start, one * 3, 'two more verifications, not ten')
    assert.ok(reports.every((report) => report.exists && Object.keys(report.drift).length === 0))
    assert.ok(repository.verifiedAsOf >= asOf)
    // Off the bound (Infinity), none starts in the background; at 0, one does.
    assert.equal(repository.verifyInBackground(), false)
    const eager = openRepository(dir, { verifyEveryMs: 0 })
    assert.equal(eager.verifyInBackground(), true)
    assert.equal(eager.verifyInBackground(), false, 'one at a time')
    await eager.settle()
    assert.ok(eager.verifiedAsOf !== undefined)
  })
})

// --- building and reading --------------------------------------------------------

describe('buildIndex and listSummaries', () => {
  test('a built index is one snapshot, and lists what the VM caches list, filters included', async (t) => {
    const dir = tempDir(t)
    await generateRepository(dir, { vms: 12, retention: 4, seed: 'brcache/tests/index/build' })
    assert.deepStrictEqual(indexFiles(dir), [], 'generateRepository writes no index')
    const { events, logger } = recorder()
    const repository = openRepository(dir, { logger })
    assert.deepStrictEqual(await repository.buildIndex(), { vms: 12, generation: 1 })
    // The table and one part (twelve small VMs).
    assert.deepStrictEqual(
      indexFiles(dir).map((name) => name.replace(/^part-00000000000000000001-\d{15}-[0-9a-f]{16}\.json\.gz$/, 'part')),
      ['part', 'snapshot-00000000000000000001.json.gz'],
    )

    const truth = await openRepository(dir, { index: false }).listSummaries()
    assert.equal(count(truth), 48)
    assert.deepStrictEqual(compareViews(truth, diskTruth(dir)).same, true)
    const share = measuredShare(dir)
    const viaIndex = openRepository(share.handler, { logger })
    assert.deepStrictEqual(await viaIndex.listSummaries(), truth)
    // encryption.json, read once per repository (see handlers/encrypted.js).
    assert.deepStrictEqual(share.calls().readFile, 3, 'three reads: encryption.json, the table and its part, no VM cache')

    const some = Object.values(truth).flat()
    const filters = [
      { mode: 'full' },
      { mode: 'delta' },
      { jobId: some[0].jobId },
      { scheduleId: some.at(-1).scheduleId, mode: 'delta' },
      { jobId: 'no such job' },
    ]
    for (const filter of filters) {
      const expected = await openRepository(dir, { index: false }).listSummaries(filter)
      assert.deepStrictEqual(await viaIndex.listSummaries(filter), expected, JSON.stringify(filter))
    }
    assert.ok(count(await viaIndex.listSummaries({ mode: 'full' })) > 0)
    assert.deepStrictEqual(await viaIndex.listSummaries({ jobId: 'no such job' }), {})
    assert.deepStrictEqual(indexWarnings(events), [])
  })

  test('brcache list lists through the index: it touches no VM folder', async (t) => {
    const dir = await indexed(t, { vms: 4, retention: 2 })
    const truth = diskTruth(dir)
    // Without their caches, a per-VM listing would read every metadata file
    // and write the caches back; through the index, nothing is touched.
    for (const vm of vmFolders(dir)) fs.rmSync(vmPath(dir, vm, 'cache.json.gz'))
    const before = hashes(dir)
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(import.meta.dirname, '..', 'js', 'node', 'cli.js'), 'list', '--json', dir])
    assert.deepStrictEqual(JSON.parse(stdout), truth)
    assert.deepStrictEqual(hashes(dir), before)
  })

  test('a warm listing costs two round trips whatever the VM count; without an index it grows', async (t) => {
    const measure = async (vms) => {
      const dir = tempDir(t)
      await generateRepository(dir, { vms, retention: 2, seed: `brcache/tests/index/rtt/${vms}` })
      const share = measuredShare(dir)
      const perVmCost = async () => {
        const repository = openRepository(share.handler, { index: false })
        await repository.listSummaries() // warm, as below
        share.reset()
        await repository.listSummaries()
        return { calls: share.calls().total, roundTrips: share.roundTrips() }
      }
      const without = await perVmCost()
      await openRepository(dir).buildIndex()
      // Nothing in the background: only the listing's own calls are counted.
      const repository = openRepository(share.handler, { verifyEveryMs: Infinity })
      // Warm: the repository has read encryption.json, once for its life.
      await repository.listSummaries()
      share.reset()
      const view = await repository.listSummaries()
      assert.equal(Object.keys(view).length, vms)
      const withIndex = { calls: share.calls().total, roundTrips: share.roundTrips(), kinds: share.calls() }
      // With segments waiting to be folded: still two round trips, one more read each.
      const vm = vmFolders(dir)[0]
      await openRepository(dir).writeVmBackupMetadata(vm, nextBackup(dir, vm))
      await openRepository(dir).writeVmBackupMetadata(vm, nextBackup(dir, vm))
      share.reset()
      assert.deepStrictEqual(await repository.listSummaries(), await perVm(dir))
      const withSegments = { calls: share.calls().total, roundTrips: share.roundTrips() }
      return { without, withIndex, withSegments }
    }
    const small = await measure(5)
    const large = await measure(60)
    for (const { withIndex, withSegments } of [small, large]) {
      assert.ok(withIndex.calls <= 5, JSON.stringify(withIndex))
      // The index folder, and again beside its reads (a writer's segment and
      // unlock landing between the first two calls, see the core's listing)
      assert.equal(withIndex.kinds.list, 2)
      // The table and its part (a few small VMs: one).
      assert.equal(withIndex.kinds.readFile, 2)
      assert.equal(withIndex.roundTrips, 2)
      assert.deepStrictEqual(withSegments, { calls: withIndex.calls + 2, roundTrips: 2 })
    }
    assert.equal(small.withIndex.calls, large.withIndex.calls)
    // Without the index: a listing, then a cache read and a folder listing per VM.
    assert.equal(small.without.calls, 1 + 2 * 5)
    assert.equal(large.without.calls, 1 + 2 * 60)
    assert.ok(large.without.roundTrips > small.without.roundTrips, JSON.stringify({ small, large }))
  })

  test("the VM table and one VM's restore points cost the same round trips and reads at 5 and 60 VMs", async (t) => {
    const measure = async (vms) => {
      const dir = tempDir(t)
      await generateRepository(dir, { vms, retention: 3, seed: `brcache/tests/index/table/${vms}` })
      await openRepository(dir).buildIndex()
      const share = measuredShare(dir)
      const repository = openRepository(share.handler, { verifyEveryMs: Infinity })
      await repository.listSummaries() // warm: encryption.json, read once
      const truth = await openRepository(dir, { index: false }).listSummaries()
      const vm = vmFolders(dir)[1]
      const cost = async (run) => {
        share.reset()
        const answer = await run()
        return { answer, roundTrips: share.roundTrips(), reads: share.calls().readFile }
      }
      const table = await cost(() => repository.vmTable())
      assert.equal(table.answer.fromIndex, true)
      assert.deepStrictEqual(Object.keys(table.answer.vms), Object.keys(truth))
      for (const [uuid, row] of Object.entries(table.answer.vms)) {
        const summaries = truth[uuid]
        assert.equal(row.count, summaries.length, uuid)
        assert.equal(row.lastBackup, summaries.at(-1).timestamp, uuid)
        assert.equal(row.name, summaries.at(-1).vm.name_label, uuid)
        assert.equal(row.size, summaries.reduce((n, s) => n + s.size, 0), uuid)
        assert.equal(Object.values(row.modes).reduce((a, b) => a + b, 0), summaries.length, uuid)
      }
      const one = await cost(() => repository.vmRestoreView(vm))
      assert.deepStrictEqual([one.answer.fromIndex, one.answer.summaries], [true, truth[vm]])
      // A backup's segment waiting for a VM: the delta says what it
      // changed in the set the row describes, so the row folds it and no
      // part is read; the others' rows are kept.
      const writer = vmFolders(dir)[0]
      await openRepository(dir).writeVmBackupMetadata(writer, nextBackup(dir, writer))
      const after = await openRepository(dir, { index: false }).listSummaries()
      const waiting = await cost(() => repository.vmTable())
      const row = waiting.answer.vms[writer]
      assert.equal(row.count, after[writer].length)
      assert.equal(row.lastBackup, after[writer].at(-1).timestamp)
      assert.equal(row.name, after[writer].at(-1).vm.name_label)
      assert.equal(row.size, after[writer].reduce((n, s) => n + s.size, 0))
      const oneWaiting = await cost(() => repository.vmRestoreView(writer))
      assert.deepStrictEqual(oneWaiting.answer.summaries, after[writer])
      const shape = ({ roundTrips, reads }) => ({ roundTrips, reads })
      return { table: shape(table), one: shape(one), waiting: shape(waiting), oneWaiting: shape(oneWaiting) }
    }
    const small = await measure(5)
    const large = await measure(60)
    assert.deepStrictEqual(small, large)
    // The table alone; the table and the VM's part; then the table with
    // the segment; the table, the segment and the VM's part.
    assert.deepStrictEqual(small, {
      table: { roundTrips: 2, reads: 1 },
      one: { roundTrips: 3, reads: 2 },
      waiting: { roundTrips: 2, reads: 2 },
      oneWaiting: { roundTrips: 3, reads: 3 },
    })
  })
})

// --- writers publish ---------------------------------------------------------------

describe('writes and deletes publish segments', () => {
  test('the index view follows each write and delete at once; a VM left without backups is omitted', async (t) => {
    const dir = await indexed(t, { vms: 3, retention: 2 })
    const { events, logger } = recorder()
    const repository = openRepository(dir, { logger })
    const [vm, other] = vmFolders(dir)

    const key = await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm))
    assert.equal(segments(dir).length, 1)
    let view = await repository.listSummaries()
    assert.ok(view[vm].some((s) => s.id === key), 'the new restore point is listed')
    assert.deepStrictEqual(view, await perVm(dir))

    await repository.deleteVmBackups([key])
    assert.equal(segments(dir).length, 2)
    view = await repository.listSummaries()
    assert.ok(!view[vm].some((s) => s.id === key), 'the deleted restore point is gone')
    assert.deepStrictEqual(view, await perVm(dir))

    // One call deleting every backup of `other`: its VM leaves the view.
    await repository.deleteVmBackups(view[other].map((s) => s.id))
    view = await repository.listSummaries()
    assert.ok(!(other in view))
    assert.deepStrictEqual(view, await perVm(dir))
    assert.deepStrictEqual(Object.keys(view).sort(), vmFolders(dir).filter((v) => v !== other))
    assert.deepStrictEqual(indexWarnings(events), [])
    assert.deepStrictEqual((await repository.checkIndex()).drift, {})
  })

  test('past 64 segments a writer compacts: the view is unchanged and the folded segments are gone', async (t) => {
    const dir = await indexed(t, { vms: 4, retention: 1 })
    const { events, logger } = recorder()
    const repository = openRepository(dir, { logger })
    const vms = vmFolders(dir)
    const rng = createRandom('compaction')
    for (let i = 0; i < 64; i++) {
      const vm = vms[i % vms.length]
      await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm, rng))
    }
    const before = segments(dir)
    assert.equal(before.length, 64, 'no compaction up to 64 segments')
    assert.deepStrictEqual(snapshots(dir), ['snapshot-00000000000000000001.json.gz'])
    // (Not listed through the index: a listing that reads more than 8
    // segments compacts, see below.)
    const view = await perVm(dir)

    // The 65th segment: the writer folds everything into snapshot 2, and
    // deletes the segments (the snapshot it read goes at the next compaction).
    await repository.writeVmBackupMetadata(vms[0], nextBackup(dir, vms[0], rng))
    assert.deepStrictEqual(segments(dir), [])
    assert.deepStrictEqual(snapshots(dir), ['snapshot-00000000000000000001.json.gz', 'snapshot-00000000000000000002.json.gz'])
    const after = await repository.listSummaries()
    assert.deepStrictEqual(after, await perVm(dir))
    assert.equal(count(after), count(view) + 1)

    // Compacting by hand: same view, segments folded, the old snapshot gone.
    const store = new IndexStore(new LocalHandler(dir), indexApi, logger)
    await repository.deleteVmBackups([after[vms[1]][0].id])
    const third = await repository.listSummaries()
    assert.equal((await store.read()).unfolded, 1)
    assert.deepStrictEqual(await store.compact(), { generation: 3, folded: 1 })
    // Beside the tables, the parts they name.
    assert.deepStrictEqual(
      indexFiles(dir).filter((name) => !name.startsWith('part-')),
      ['snapshot-00000000000000000002.json.gz', 'snapshot-00000000000000000003.json.gz'],
    )
    assert.deepStrictEqual(await repository.listSummaries(), third)
    assert.deepStrictEqual(third, await perVm(dir))
    assert.deepStrictEqual(indexWarnings(events), [])
  })

  test('a listing that reads more than 8 segments compacts once it has answered; one that reads 8 does not', async (t) => {
    const dir = await indexed(t, { vms: 4, retention: 1 })
    const { events, logger } = recorder()
    const repository = openRepository(dir, { logger })
    const vms = vmFolders(dir)
    const rng = createRandom('listing-compaction')
    for (let i = 0; i < 8; i++) await repository.writeVmBackupMetadata(vms[i % vms.length], nextBackup(dir, vms[i % vms.length], rng))
    assert.deepStrictEqual(await repository.listSummaries(), await perVm(dir))
    await repository.settle()
    assert.equal(segments(dir).length, 8, 'eight segments are left to the writers')
    assert.deepStrictEqual(snapshots(dir), ['snapshot-00000000000000000001.json.gz'])
    await repository.writeVmBackupMetadata(vms[0], nextBackup(dir, vms[0], rng))
    const view = await repository.listSummaries()
    assert.deepStrictEqual(view, await perVm(dir))
    await repository.settle()
    assert.deepStrictEqual(segments(dir), [], 'the listing folded the nine')
    assert.deepStrictEqual(snapshots(dir), ['snapshot-00000000000000000001.json.gz', 'snapshot-00000000000000000002.json.gz'])
    assert.deepStrictEqual(await repository.listSummaries(), view)
    assert.deepStrictEqual(indexWarnings(events), [])
  })
})

// --- Xen Orchestra writes behind the index -----------------------------------------

describe('Xen Orchestra writes behind the index', () => {
  test('check finds behind, unknown and gone VMs; a dry run writes nothing; repair makes the index the truth', async (t) => {
    const dir = await indexed(t, { vms: 4, retention: 3 })
    const [behind, gone] = vmFolders(dir)
    // XO adds a restore point and rewrites the cache its way (no header, generation 0).
    const metadata = nextBackup(dir, behind)
    const name = `${formatFilenameDate(metadata.timestamp)}.json`
    fs.writeFileSync(vmPath(dir, behind, name), JSON.stringify(metadata))
    writeXoCache(dir, behind)
    // XO backs up a VM the index never saw.
    const rng = createRandom('xo-new-vm')
    const newVm = makeVm(rng, 9)
    fs.mkdirSync(vmPath(dir, newVm.uuid), { recursive: true })
    for (const hour of [1, 2]) {
      const timestamp = Date.UTC(2025, 5, 1, hour)
      const md = makeMetadata(rng, { vm: newVm, jobId: 'job', scheduleId: 'schedule', timestamp, mode: 'full' })
      fs.writeFileSync(vmPath(dir, newVm.uuid, `20250601T0${hour}0000Z.json`), JSON.stringify(md))
    }
    writeXoCache(dir, newVm.uuid)
    // And a VM folder is deleted whole.
    fs.rmSync(vmPath(dir, gone), { recursive: true })

    const truth = diskTruth(dir)
    assert.deepStrictEqual(compareViews(await perVm(dir), truth).same, true)
    const { events, logger } = recorder()
    // No verification in the background (see "the index by default"):
    // what check finds is the point here.
    const repository = openRepository(dir, { logger, verifyEveryMs: Infinity })
    const stale = compareViews(await repository.listSummaries(), truth)
    // Before a check, the VM folders listed beside the index show the new
    // VM (read from its cache) and drop the gone one; only the VM whose
    // cache XO rewrote lags, by its new backup.
    assert.deepStrictEqual([stale.lost.length, stale.phantom, stale.different], [1, [], [behind]])
    assert.deepStrictEqual(
      events.filter((e) => /does not know/.test(e.message)).map((e) => e.data.vms),
      [[newVm.uuid]],
    )
    await repository.settle() // the new VM's cache, read through brcache, is repaired in the background

    // The new VM's cache, repaired in the background, published its
    // segment as every cache write does: the index knows it now.
    const expected = { [behind]: 'behind', [gone]: 'gone' }
    assert.deepStrictEqual(await repository.checkIndex(), { exists: true, drift: expected, repaired: false })

    const before = hashes(dir)
    assert.deepStrictEqual(await repository.checkIndex({ dryRun: true, repair: true }), { exists: true, drift: expected, repaired: false })
    assert.deepStrictEqual(hashes(dir), before, 'a dry run writes nothing, in the index or elsewhere')

    assert.deepStrictEqual(await repository.checkIndex({ repair: true }), { exists: true, drift: expected, repaired: true })
    assert.deepStrictEqual(await repository.checkIndex(), { exists: true, drift: {}, repaired: false })
    const view = await repository.listSummaries()
    assert.deepStrictEqual(compareViews(view, truth), { lost: [], phantom: [], different: [], same: true })
    assert.deepStrictEqual(view, await openRepository(dir, { index: false }).listSummaries())
    assert.deepStrictEqual(segments(dir), [], 'the repair compacted')
    assert.deepStrictEqual(indexWarnings(events), [])
    // What XO reads is still plain gzip + JSON, now with every backup.
    const asXo = JSON.parse(zlib.gunzipSync(fs.readFileSync(vmPath(dir, behind, 'cache.json.gz'))))
    assert.deepStrictEqual(Object.keys(asXo).sort(), truth[behind].map((s) => s.id).sort())
  })

  for (const scenario of ['XO rewrote its cache', 'its folder was deleted']) {
    test(`a VM whose cache starts again from generation 0 (${scenario}): brcache's next write is listed at once`, async (t) => {
      const dir = await indexed(t, { vms: 2, retention: 2 })
      const [vm] = vmFolders(dir)
      const repository = openRepository(dir)
      // Writes raise the VM's generation in the index...
      for (let i = 0; i < 3; i++) await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm, createRandom(`gen:${i}`)))
      const template = nextBackup(dir, vm)
      // ...then its cache starts again from nothing.
      if (scenario === 'XO rewrote its cache') writeXoCache(dir, vm)
      else fs.rmSync(vmPath(dir, vm), { recursive: true })
      const key = await repository.writeVmBackupMetadata(vm, { ...template, timestamp: template.timestamp + 3600_000 })
      const view = await repository.listSummaries()
      assert.ok(view[vm].some((s) => s.id === key), 'the write just made is listed through the index')
      assert.deepStrictEqual(compareViews(view, diskTruth(dir)), { lost: [], phantom: [], different: [], same: true })
      assert.deepStrictEqual((await repository.checkIndex()).drift, {})
    })
  }

  test('a VM folder XO recreates after the index recorded it gone is listed again after a check', async (t) => {
    const dir = await indexed(t, { vms: 2, retention: 2 })
    const [vm] = vmFolders(dir)
    const saved = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-index-saved-'))
    t.after(() => fs.rmSync(saved, { recursive: true, force: true }))
    fs.cpSync(vmPath(dir, vm), saved, { recursive: true })
    fs.rmSync(vmPath(dir, vm), { recursive: true })
    const repository = openRepository(dir)
    assert.deepStrictEqual((await repository.checkIndex({ repair: true })).drift, { [vm]: 'gone' })
    assert.ok(!(vm in (await repository.listSummaries())))
    fs.cpSync(saved, vmPath(dir, vm), { recursive: true })
    writeXoCache(dir, vm)
    assert.deepStrictEqual((await repository.checkIndex({ repair: true })).drift, { [vm]: 'behind' })
    assert.deepStrictEqual(compareViews(await repository.listSummaries(), diskTruth(dir)).same, true)
    assert.deepStrictEqual((await repository.checkIndex()).drift, {})
  })
})

describe('answers say which VMs the index was not trusted for', () => {
  /**
   * An index, then: a VM whose lock shows (held), a VM whose entry is in
   * doubt (brcache's delta, then altered on the share to put a restore
   * point that is not there), and a VM folder Xen Orchestra made that the
   * index does not know.
   */
  async function doubtful(t) {
    const dir = await indexed(t, { vms: 4, retention: 2 })
    const [locked, doubted] = vmFolders(dir)
    fs.mkdirSync(path.join(dir, 'xo-vm-backups', `${locked}.lock`))
    await openRepository(dir).writeVmBackupMetadata(doubted, nextBackup(dir, doubted))
    const [delta] = segments(dir)
    const body = JSON.parse(zlib.gunzipSync(fs.readFileSync(indexPath(dir, delta))))
    assert.equal(body.kind, 'delta')
    body.put[0].id = `/xo-vm-backups/${doubted}/20990101T000000Z.json`
    fs.writeFileSync(indexPath(dir, delta), zlib.gzipSync(JSON.stringify(body)))
    const rng = createRandom('xo-unknown-vm')
    const unknown = makeVm(rng, 7).uuid
    fs.mkdirSync(vmPath(dir, unknown), { recursive: true })
    const md = makeMetadata(rng, { vm: { ...makeVm(rng, 7), uuid: unknown }, jobId: 'job', scheduleId: 'schedule', timestamp: Date.UTC(2025, 5, 1), mode: 'full' })
    fs.writeFileSync(vmPath(dir, unknown, '20250601T000000Z.json'), JSON.stringify(md))
    writeXoCache(dir, unknown)
    return { dir, locked, doubted, unknown }
  }

  test('restoreView names them, reads them from their caches, and checkIndex lists the entries in doubt', async (t) => {
    const { dir, locked, doubted, unknown } = await doubtful(t)
    const repository = openRepository(dir, { verifyEveryMs: Infinity })
    const report = await repository.checkIndex()
    assert.deepStrictEqual(report, { exists: true, drift: { [unknown]: 'unknown' }, repaired: false, inDoubt: [doubted] })
    const answer = await repository.restoreView()
    assert.equal(answer.fromIndex, true)
    assert.deepStrictEqual(answer.notFromIndex, { locked: [locked], inDoubt: [doubted], unknown: [unknown] })
    assert.deepStrictEqual(compareViews(answer.vms, diskTruth(dir)).same, true, 'the phantom is not listed')
    // Their background repairs publish the doubted and unknown VMs; the
    // held lock stays, and its VM is read from its folder meanwhile.
    await repository.settle()
    const after = await repository.restoreView()
    assert.deepStrictEqual(after.notFromIndex, { locked: [locked], inDoubt: [], unknown: [] })
    assert.equal((await repository.checkIndex()).inDoubt, undefined)
    fs.rmdirSync(path.join(dir, 'xo-vm-backups', `${locked}.lock`))
    assert.deepStrictEqual((await repository.restoreView()).notFromIndex, { locked: [], inDoubt: [], unknown: [] })
    // From the caches, the answer has nothing to say of the index.
    assert.equal((await openRepository(dir, { index: false }).restoreView()).notFromIndex, undefined)
  })

  test('brcache list names them on stderr, its --json stdout stays the view; check --json marks the entries in doubt', async (t) => {
    const { dir, locked, doubted, unknown } = await doubtful(t)
    const cli = (...args) => promisify(execFile)(process.execPath, [path.join(import.meta.dirname, '..', 'js', 'node', 'cli.js'), ...args])
    const { stdout: checked } = await cli('check', '--json', dir).catch((error) => error)
    assert.equal(JSON.parse(checked)[doubted].indexInDoubt, true)
    assert.equal(JSON.parse(checked)[locked].indexInDoubt, undefined)
    const { stdout: text } = await cli('check', dir).catch((error) => error)
    assert.match(text, new RegExp(`repository index .*${doubted} in doubt`))
    const { stdout, stderr } = await cli('list', '--json', dir)
    assert.deepStrictEqual(JSON.parse(stdout), diskTruth(dir))
    assert.match(stderr, new RegExp(`read from their caches, not the index \\(locked\\): ${locked}\n`))
    assert.match(stderr, new RegExp(`\\(index entry in doubt\\): ${doubted}\n`))
    assert.match(stderr, new RegExp(`\\(not in the index\\): ${unknown}\n`))
  })
})

// --- lost and corrupt indexes --------------------------------------------------------

describe('a lost or corrupt index', () => {
  /**
   * Damages the index, then: the listing is still the truth (with a
   * warning), check --repair rebuilds it from the VM caches without reading
   * one metadata file, and afterwards the index lists the truth on its own.
   */
  async function damagedThenRepaired(t, damage, { warning }) {
    const dir = await indexed(t, { vms: 5, retention: 3 })
    const truth = diskTruth(dir)
    damage(dir)
    const { events, logger } = recorder()
    const share = measuredShare(dir)
    const repository = openRepository(share.handler, { logger })
    assert.deepStrictEqual(compareViews(await repository.listSummaries(), truth).same, true)
    assert.match(indexWarnings(events).join('\n'), warning)

    share.reset()
    const repaired = await repository.checkIndex({ repair: true })
    assert.equal(repaired.repaired, true, JSON.stringify(repaired))
    assert.deepStrictEqual(share.metadataReads(), [], 'rebuilt from the caches: no metadata file read')
    assert.equal(snapshots(dir).length, 1)
    assert.deepStrictEqual(segments(dir), [])

    events.length = 0
    share.reset()
    assert.deepStrictEqual(compareViews(await repository.listSummaries(), truth).same, true)
    assert.deepStrictEqual(share.calls().readFile, 2, 'through the index again (the table and its part)')
    assert.deepStrictEqual(indexWarnings(events), [])
    assert.deepStrictEqual(await repository.checkIndex(), { exists: true, drift: {}, repaired: false })
    return { dir, repository }
  }

  test('its snapshot deleted: the listing falls back, check --repair rebuilds it', async (t) => {
    await damagedThenRepaired(t, (dir) => fs.rmSync(indexPath(dir, snapshots(dir)[0])), { warning: /has no snapshot/ })
  })

  test('its snapshot overwritten with garbage: the listing falls back, check reports it unusable and repair rebuilds it', async (t) => {
    const { repository } = await damagedThenRepaired(t, (dir) => fs.writeFileSync(indexPath(dir, snapshots(dir)[0]), 'garbage'), {
      warning: /unusable repository index/,
    })
    assert.equal((await repository.checkIndex()).unusable, undefined)
  })

  test('its snapshot cut short: the same', async (t) => {
    await damagedThenRepaired(
      t,
      (dir) => {
        const file = indexPath(dir, snapshots(dir)[0])
        fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2))
      },
      { warning: /unusable repository index/ },
    )
  })

  test('the whole folder deleted: listings use the VM caches and make it again; buildIndex rebuilds it from them', async (t) => {
    const dir = await indexed(t, { vms: 5, retention: 3 })
    const truth = diskTruth(dir)
    fs.rmSync(indexPath(dir), { recursive: true })
    const { events, logger } = recorder()
    const share = measuredShare(dir)
    const repository = openRepository(share.handler, { logger })
    const first = await repository.restoreView()
    assert.deepStrictEqual([first.fromIndex, compareViews(first.vms, truth).same], [false, true])
    await repository.settle()
    assert.deepStrictEqual(snapshots(dir), ['snapshot-00000000000000000001.json.gz'], 'the listing made it again')
    assert.deepStrictEqual(await repository.checkIndex({ repair: true }), { exists: true, drift: {}, repaired: false })
    share.reset()
    assert.deepStrictEqual(await repository.buildIndex(), { vms: 5, generation: 2 })
    assert.deepStrictEqual(share.metadataReads(), [])
    assert.deepStrictEqual(compareViews(await repository.listSummaries(), truth).same, true)
    assert.deepStrictEqual(indexWarnings(events), [])
  })

  test('a rebuild reads only the metadata files a cache lacks', async (t) => {
    const dir = await indexed(t, { vms: 4, retention: 2 })
    const [vm] = vmFolders(dir)
    // XO wrote a restore point and was killed before its cache update.
    const metadata = nextBackup(dir, vm)
    const name = `${formatFilenameDate(metadata.timestamp)}.json`
    fs.writeFileSync(vmPath(dir, vm, name), JSON.stringify(metadata))
    fs.writeFileSync(indexPath(dir, snapshots(dir)[0]), 'garbage')
    const share = measuredShare(dir)
    const repository = openRepository(share.handler)
    await repository.checkIndex({ repair: true })
    assert.deepStrictEqual(share.metadataReads(), [`xo-vm-backups/${vm}/${name}`])
    assert.deepStrictEqual(compareViews(await repository.listSummaries(), diskTruth(dir)).same, true)
    assert.deepStrictEqual((await repository.checkIndex()).drift, {})
  })

  test('a segment cut short is skipped with a warning; a later one of its VM still counts, and check catches up', async (t) => {
    const dir = await indexed(t, { vms: 3, retention: 2 })
    const [vm, lagging] = vmFolders(dir)
    const repository = openRepository(dir)
    await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm))
    const [older] = segments(dir)
    await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm))
    await repository.writeVmBackupMetadata(lagging, nextBackup(dir, lagging))
    const newest = segments(dir).find((name) => name !== older && JSON.parse(zlib.gunzipSync(fs.readFileSync(indexPath(dir, name)))).vm === lagging)
    for (const name of [older, newest]) {
      const file = indexPath(dir, name)
      fs.truncateSync(file, Math.floor(fs.statSync(file).size / 2))
    }

    const { events, logger } = recorder()
    const reader = openRepository(dir, { logger })
    const truth = diskTruth(dir)
    const view = await reader.listSummaries()
    assert.equal(indexWarnings(events).filter((m) => /unreadable index segment skipped/.test(m)).length, 2)
    // `vm`'s later segment supersedes the cut one; `lagging` is one write behind.
    assert.deepStrictEqual(view[vm], truth[vm])
    const diff = compareViews(view, truth)
    assert.equal(diff.lost.length, 1)
    assert.deepStrictEqual([diff.phantom, diff.different], [[], [lagging]])
    assert.deepStrictEqual((await reader.checkIndex()).drift, { [lagging]: 'behind' })
    await reader.checkIndex({ repair: true })
    assert.deepStrictEqual(compareViews(await reader.listSummaries(), truth).same, true)
    assert.deepStrictEqual((await reader.checkIndex()).drift, {})
  })

  test('a damaged snapshot is never replaced by the older one still beside it: that one lacks what the compaction deleted', async (t) => {
    const dir = await indexed(t, { vms: 3, retention: 2 })
    const [vm] = vmFolders(dir)
    const repository = openRepository(dir)
    const key = await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm))
    const store = new IndexStore(new LocalHandler(dir), indexApi, recorder().logger)
    await store.compact() // folds the write's segment into snapshot 2, deletes the segment
    assert.deepStrictEqual(segments(dir), [])
    const [older, newest] = snapshots(dir)
    assert.ok(older && newest, 'snapshot 1 is kept beside snapshot 2 until the next compaction')
    fs.writeFileSync(indexPath(dir, newest), fs.readFileSync(indexPath(dir, newest)).subarray(0, 40))

    const { events, logger } = recorder()
    const reader = openRepository(dir, { logger })
    const view = await reader.listSummaries()
    assert.ok(view[vm].some((s) => s.id === key), 'the backup only snapshot 2 held is listed (from the caches)')
    assert.ok(compareViews(view, diskTruth(dir)).same)
    assert.ok(indexWarnings(events).some((m) => /unusable repository index, listing every VM instead/.test(m)))
    assert.match((await reader.checkIndex()).unusable, new RegExp(`^${INDEX_DIR}/${newest}: deflate stream ends early`))
    await reader.checkIndex({ repair: true })
    assert.deepStrictEqual(await reader.checkIndex(), { exists: true, drift: {}, repaired: false })
    assert.deepStrictEqual(compareViews(await reader.listSummaries(), diskTruth(dir)).same, true)
  })

  for (const rebuild of ['checkIndex', 'buildIndex']) {
    test(`${rebuild}: a rebuild is not undone by leftover segments of a cache XO rewrote, or of a VM folder now gone`, async (t) => {
      const dir = await indexed(t, { vms: 4, retention: 3 })
      const [rewritten, gone] = vmFolders(dir)
      const repository = openRepository(dir)
      // Unfolded segments raise both VMs' generations in the index...
      for (const vm of [rewritten, gone]) await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm))
      // ...then XO deletes a backup and rewrites the cache from scratch (generation 0),
      const oldest = fs
        .readdirSync(vmPath(dir, rewritten))
        .filter((n) => n.endsWith('.json'))
        .sort()[0]
      fs.rmSync(vmPath(dir, rewritten, oldest))
      writeXoCache(dir, rewritten)
      // a VM folder is deleted, and the snapshot is lost to corruption.
      fs.rmSync(vmPath(dir, gone), { recursive: true })
      fs.writeFileSync(indexPath(dir, snapshots(dir)[0]), 'garbage')
      const truth = diskTruth(dir)

      if (rebuild === 'checkIndex') assert.equal((await repository.checkIndex({ repair: true })).repaired, true)
      else await repository.buildIndex()
      assert.deepStrictEqual(compareViews(await repository.listSummaries(), truth), { lost: [], phantom: [], different: [], same: true })
      assert.deepStrictEqual(await repository.checkIndex(), { exists: true, drift: {}, repaired: false })
    })
  }
})

// --- compactions racing and crashing, step by step --------------------------------

/**
 * A handler over the folder whose calls from number `crashAt` on never
 * return (the process died there); a write cut there leaves the first half
 * of its bytes, as a create-only write killed midway does.
 */
function crashingHandler(dir, crashAt) {
  const local = new LocalHandler(dir)
  let calls = 0
  let crash
  const crashed = new Promise((resolve) => (crash = resolve))
  const kinds = ['list', 'listWithTypes', 'readFile', 'writeFile', 'rename', 'unlink', 'rmdir', 'mkdir', 'stat', 'lock', 'cleanTemps']
  const handler = Object.fromEntries(
    kinds.map((kind) => [
      kind,
      (...args) => {
        if (calls++ < crashAt) return local[kind](...args)
        if (kind === 'writeFile') fs.writeFileSync(path.join(dir, args[0]), args[1].subarray(0, Math.floor(args[1].length / 2)))
        crash({ kind, file: args[0] })
        return new Promise(() => {})
      },
    ]),
  )
  return { handler, crashed }
}

/** A gate: `wait()` blocks until `open()`. */
function gate() {
  let open
  const opened = new Promise((resolve) => (open = resolve))
  return { open, wait: () => opened }
}

describe('compactions racing and crashing', () => {
  test('a compaction cut at any of its steps, or with its snapshot torn, loses nothing; check --repair mends the rest', async (t) => {
    // The template: snapshots 1 and 2, then segments of writes and a delete.
    const template = await indexed(t, { vms: 3, retention: 2 })
    const writer = openRepository(template)
    const vms = vmFolders(template)
    const rng = createRandom('crash-steps')
    const store = new IndexStore(new LocalHandler(template), indexApi, recorder().logger)
    await writer.writeVmBackupMetadata(vms[0], nextBackup(template, vms[0], rng))
    await store.compact()
    for (const vm of vms) await writer.writeVmBackupMetadata(vm, nextBackup(template, vm, rng))
    await writer.deleteVmBackups([(await writer.listVmSummaries(vms[1]))[0].id])
    assert.deepStrictEqual([snapshots(template).length, segments(template).length], [2, 4])
    const truth = diskTruth(template)

    const outcomes = []
    for (let crashAt = 0; ; crashAt++) {
      const dir = tempDir(t)
      fs.cpSync(template, dir, { recursive: true })
      const { handler, crashed } = crashingHandler(dir, crashAt)
      const compaction = new IndexStore(handler, indexApi, recorder().logger).compact()
      const where = await Promise.race([crashed, compaction.then(() => undefined)])
      if (where === undefined) break // the compaction ran to its end: every step was cut once

      const { events, logger } = recorder()
      const repository = openRepository(dir, { logger })
      const before = compareViews(await repository.listSummaries(), truth)
      assert.ok(before.same, `cut at call ${crashAt} (${where.kind} ${where.file}): ${JSON.stringify(before)}`)
      const fellBackNow = indexWarnings(events).some((m) => /listing every VM instead/.test(m))
      if (fellBackNow) {
        const report = await repository.checkIndex()
        assert.match(report.unusable ?? '', /./, `cut at call ${crashAt}: check says the index is unusable`)
      }
      await repository.checkIndex({ repair: true })
      events.length = 0
      assert.ok(compareViews(await repository.listSummaries(), truth).same, `cut at call ${crashAt}, after repair`)
      assert.deepStrictEqual(indexWarnings(events), [], `cut at call ${crashAt}: the repaired index is used`)
      assert.deepStrictEqual(await repository.checkIndex(), { exists: true, drift: {}, repaired: false })
      outcomes.push(`${where.kind}${fellBackNow ? ' (fell back)' : ''}`)
    }
    // list, 7 reads (the table, 4 segments, the parts of the 3 VMs they
    // touch), the new part's write (a part no table names: never read),
    // the table's (torn: listings read the VM caches, never an older
    // snapshot, until the repair rebuilt it), 7 deletions (the segments,
    // the old table and the two parts it alone named).
    assert.deepStrictEqual(outcomes, [
      'list',
      ...Array(7).fill('readFile'),
      'writeFile',
      'writeFile (fell back)',
      ...Array(7).fill('unlink'),
    ])
  })

  test('of two compactions of one snapshot, the one that writes first wins and the other deletes nothing; a stale one never hides a newer', async (t) => {
    const dir = await indexed(t, { vms: 3, retention: 2 })
    const writer = openRepository(dir)
    const [vm, other] = vmFolders(dir)
    const rng = createRandom('race')
    await writer.writeVmBackupMetadata(vm, nextBackup(dir, vm, rng))
    await writer.writeVmBackupMetadata(other, nextBackup(dir, other, rng))

    // A reads snapshot 1 and two segments, then stalls before writing snapshot 2.
    const local = new LocalHandler(dir)
    const stall = gate()
    const stalled = gate()
    const slow = {
      ...Object.fromEntries(['list', 'readFile', 'unlink'].map((kind) => [kind, (...args) => local[kind](...args)])),
      async writeFile(file, data, options) {
        stalled.open()
        await stall.wait()
        return local.writeFile(file, data, options)
      },
    }
    const a = new IndexStore(slow, indexApi, recorder().logger).compact()
    await stalled.wait()
    // Meanwhile a third write, and B folds all three segments into snapshot 2.
    const key = await writer.writeVmBackupMetadata(vm, nextBackup(dir, vm, rng))
    const b = new IndexStore(local, indexApi, recorder().logger)
    assert.deepStrictEqual(await b.compact(), { generation: 2, folded: 3 })
    stall.open()
    assert.equal(await a, undefined, 'A lost the race: it writes nothing and deletes nothing')
    const view = await writer.listSummaries()
    assert.ok(view[vm].some((s) => s.id === key), 'the write only B folded is listed')
    assert.deepStrictEqual(compareViews(view, diskTruth(dir)).same, true)

    // A compaction stalled long enough for snapshot 2 to be gone writes a
    // stale snapshot 2 beside a newer one: readers take the newest.
    const stall2 = gate()
    const stalled2 = gate()
    const slow2 = {
      ...slow,
      async writeFile(file, data, options) {
        stalled2.open()
        await stall2.wait()
        return local.writeFile(file, data, options)
      },
    }
    const c = new IndexStore(slow2, indexApi, recorder().logger).compact() // reads snapshot 2
    await stalled2.wait()
    await writer.writeVmBackupMetadata(other, nextBackup(dir, other, rng))
    for (const generation of [3, 4, 5]) assert.equal((await b.compact()).generation, generation)
    assert.deepStrictEqual(snapshots(dir), ['snapshot-00000000000000000004.json.gz', 'snapshot-00000000000000000005.json.gz'])
    stall2.open()
    assert.deepStrictEqual(await c, { generation: 3, folded: 0 })
    assert.deepStrictEqual(snapshots(dir), ['00000000000000000003', '00000000000000000004', '00000000000000000005'].map((g) => `snapshot-${g}.json.gz`))
    assert.deepStrictEqual(compareViews(await writer.listSummaries(), diskTruth(dir)).same, true)
    assert.deepStrictEqual((await writer.checkIndex()).drift, {})
  })
})

describe('a rebuild racing a compaction', () => {
  /** The local handler, with writes of snapshots held at a gate (once). */
  function holdingSnapshots(dir) {
    const local = new LocalHandler(dir)
    const held = gate()
    const release = gate()
    let holding = true
    const handler = new Proxy(local, {
      get(target, name) {
        if (name !== 'writeFile') return typeof target[name] === 'function' ? target[name].bind(target) : target[name]
        return async (file, data, options) => {
          if (holding && /\/snapshot-/.test(file)) {
            holding = false
            held.open()
            await release.wait()
          }
          return target.writeFile(file, data, options)
        }
      },
    })
    return { handler, held: held.wait, release: release.open }
  }

  /** An indexed repository whose index is wrong about one VM: XO deleted a backup and rewrote its cache. */
  async function behindTheIndex(t) {
    const dir = await indexed(t, { vms: 3, retention: 3 })
    const writer = openRepository(dir)
    const [vm, other] = vmFolders(dir)
    await writer.writeVmBackupMetadata(other, nextBackup(dir, other))
    const oldest = fs.readdirSync(vmPath(dir, vm)).filter((n) => n.endsWith('.json')).sort()[0]
    fs.rmSync(vmPath(dir, vm, oldest))
    writeXoCache(dir, vm)
    assert.deepStrictEqual(compareViews(await writer.listSummaries(), diskTruth(dir)).different, [vm], 'the index is wrong about vm')
    return dir
  }

  test('a compaction that read the old index and writes after the rebuild deletes nothing and hides nothing', async (t) => {
    const dir = await behindTheIndex(t)
    const { handler, held, release } = holdingSnapshots(dir)
    const stale = new IndexStore(handler, indexApi, recorder().logger).compact()
    await held()
    await openRepository(dir).buildIndex()
    release()
    assert.equal(await stale, undefined, 'the stale compaction lost the snapshot name to the rebuild')
    const repository = openRepository(dir)
    assert.ok(compareViews(await repository.listSummaries(), diskTruth(dir)).same)
    assert.deepStrictEqual(await repository.checkIndex(), { exists: true, drift: {}, repaired: false })
  })

  test('a rebuild whose snapshot name a compaction took first starts again and still wins', async (t) => {
    const dir = await behindTheIndex(t)
    const { handler, held, release } = holdingSnapshots(dir)
    const rebuilding = openRepository(handler).buildIndex()
    await held()
    // The compaction folds the old, wrong index into the name the rebuild is about to create.
    const taken = await new IndexStore(new LocalHandler(dir), indexApi, recorder().logger).compact()
    release()
    const rebuilt = await rebuilding
    assert.ok(rebuilt.generation > taken.generation, `rebuilt at ${rebuilt.generation}, after the compaction's ${taken.generation}`)
    const repository = openRepository(dir)
    assert.ok(compareViews(await repository.listSummaries(), diskTruth(dir)).same)
    assert.deepStrictEqual(await repository.checkIndex(), { exists: true, drift: {}, repaired: false })
    assert.deepStrictEqual(snapshots(dir).length, 1, 'the rebuild deleted every snapshot it outranks')
  })
})

// --- immutable repositories ------------------------------------------------------------

describe('immutable repositories', () => {
  test('never get the writable index: writes, deletes, checks and repairs leave only epoch folders (nothing with index: false)', async (t) => {
    for (const index of [true, 'auto', false]) {
      const dir = tempDir(t)
      await generateRepository(dir, { vms: 3, retention: 2, seed: 'brcache/tests/index/immutable' })
      const [vm] = vmFolders(dir)
      const repository = openRepository(dir, { immutable: true, index })
      const key = await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm))
      await repository.deleteVmBackups([key])
      await repository.checkAll({ repair: true })
      assert.deepStrictEqual(await repository.checkIndex({ repair: true }), { exists: false, drift: {}, repaired: false })
      await repository.listSummaries()
      await repository.settle()
      await assert.rejects(repository.buildIndex(), /immutable/)
      const names = indexFiles(dir)
      if (index === false) assert.deepStrictEqual(names, [], 'index: false')
      else assert.ok(names.length > 0 && names.every((name) => /^epoch-\d{20}$/.test(name)), `index: ${index}: ${names}`)
    }
  })

  test('a writable index already there is never written, even corrupt and asked to repair', async (t) => {
    const dir = await indexed(t, { vms: 3, retention: 2 })
    const [vm] = vmFolders(dir)
    // The writable index's files (its own, create-only, go in epoch folders).
    const writable = (root) => Object.fromEntries(Object.entries(hashes(root)).filter(([name]) => !name.startsWith('epoch-')))
    const before = writable(indexPath(dir))
    const repository = openRepository(dir, { immutable: true })
    await repository.writeVmBackupMetadata(vm, nextBackup(dir, vm))
    fs.writeFileSync(indexPath(dir, snapshots(dir)[0]), 'garbage')
    const corrupt = writable(indexPath(dir))
    assert.deepStrictEqual(compareViews(await repository.listSummaries(), diskTruth(dir)).same, true)
    const check = await repository.checkIndex({ repair: true })
    assert.equal(check.repaired, false)
    assert.deepStrictEqual(writable(indexPath(dir)), corrupt)
    assert.notDeepStrictEqual(corrupt, before)
  })

  test('listAllVms never lists the index folder', async (t) => {
    const dir = await indexed(t, { vms: 3, retention: 1 })
    assert.ok(fs.statSync(indexPath(dir)).isDirectory())
    const vms = await openRepository(dir).listAllVms()
    assert.deepStrictEqual(vms.sort(), vmFolders(dir))
    assert.ok(!vms.includes('.brcache-index'))
    assert.equal(vms.length, 3)
  })
})

// --- processes -----------------------------------------------------------------------------

describe('several processes, and SIGKILL', { concurrency: 2 }, () => {
  test('4 writers on their own VMs and 2 on a shared one, a reader listing: the index, unrepaired, is the truth', { timeout: 240_000 }, async (t) => {
    const { figures, problems, truth } = await processRun(t, (dir, children) =>
      runWriters(dir, { seed: 'npm-test', writers: 4, shared: 2, count: 18, children }),
    )
    assert.deepStrictEqual(problems, [])
    for (const name of WRITERS_MUST_BE_ZERO) assert.equal(figures[name], 0, `${name}: ${JSON.stringify(figures)}`)
    assert.equal(figures.writes, 6 * 18)
    assert.equal(figures.deletes, 6 * 6)
    assert.ok(figures.listings > 0)
    // 6 x 24 segments: writers compacted at least twice, without any global lock.
    assert.ok(figures.compactions >= 2, JSON.stringify(figures))
    assert.equal(Object.keys(truth).length, 3 + 5)
  })

  test('20 SIGKILLs of a process writing and compacting: no lost or phantom restore point', { timeout: 240_000 }, async (t) => {
    const { figures, problems } = await processRun(t, (dir, children) => runKills(dir, { seed: 'npm-test', kills: 20, children }))
    assert.deepStrictEqual(problems, [])
    for (const name of KILLS_MUST_BE_ZERO) assert.equal(figures[name], 0, `${name}: ${JSON.stringify(figures)}`)
    assert.equal(figures.kills, 20)
    assert.ok(figures.killedCompacting > 0, JSON.stringify(figures))
    assert.ok(figures.helperCompactions > 0 && figures.helperOps > 0, JSON.stringify(figures))
  })
})
