#!/usr/bin/env node
// Race campaign: writer processes add and delete backups of one shared VM
// and of VMs of their own while reader processes list without a pause, on
// a local folder and through the simulated share. Then:
//
// - every listing a reader made is checked against the writers' op logs: it
//   must hold every restore point whose write had returned before the
//   listing began and whose delete had not begun before it ended, and
//   nothing that was not there at some point during the listing;
// - every VM's cache must be coherent without a repair, and its keys equal
//   to the metadata files on disk and to what the op logs predict (writes
//   minus deletes): a cache update lost to a race would show here.
//
// Seeded: the same seed gives the same ops; their interleaving is the
// machine's. See README.md, "Reliability".

import fs from 'node:fs'
import path from 'node:path'
import { LocalHandler, openRepository } from 'brcache'
import { isTempName, LOCK_SUFFIX } from '../../js/node/handlers/index.js'
import { BACKUP_DIR } from '../../js/common/layout.js'
import { Children, cacheNow, folderTruth, minus, options, raceWriters, sleep, table, tempFolder, vmFolder, vmFolders } from './common.mjs'

const USAGE = `usage: node scripts/campaigns/race.mjs [--ops N=4000] [--writers 8] [--readers 4] [--share local|simulated|both]
       [--rtt-ms 1] [--seed S=1] [--timeout-s 1800] [--no-reader-repairs] [--json]

N operations (adds and deletes, split between the writers) by writer processes, half of
them on one shared VM and the others on a VM each, while reader processes list. Exits 1 if
a reader failed or listed wrongly, or an update was lost. --no-reader-repairs opens the
readers' repository as immutable, so that they never take a lock nor write a repair (a
diagnostic: what the readers' background repairs cost the writers).`

const args = options(USAGE, {
  ops: 4000,
  writers: 8,
  readers: 4,
  share: 'both',
  'rtt-ms': 1,
  seed: '1',
  'timeout-s': 1800,
  'no-reader-repairs': false,
  json: false,
})
if (!['local', 'simulated', 'both'].includes(args.share) || args.writers < 1) {
  console.error(USAGE)
  process.exit(2)
}
const WRITER = path.join(import.meta.dirname, 'race-writer.mjs')
const READER = path.join(import.meta.dirname, 'race-reader.mjs')
const MUST_BE_ZERO = [
  'writerErrors',
  'readerErrors',
  'readerBadRecords',
  'readerPhantom',
  'readerStale',
  'readerMissed',
  'lostUpdates',
  'phantomEntries',
  'filesNotAsLogged',
  'differentRecords',
  'incoherent',
  'leftovers',
  'campaignErrors',
]

const children = new Children()

async function round(share) {
  const figures = {
    share,
    writers: args.writers,
    readers: args.readers,
    ops: 0,
    adds: 0,
    deletes: 0,
    writingMs: 0,
    opsPerSec: 0,
    sharedVmOpsPerSec: 0,
    ownVmOpsPerSec: 0,
    readerListings: 0,
    readerRepairs: 0,
    readerLockAttempts: 0,
    writerLockWaitMeanMs: 0,
    writerLockWaitMaxMs: 0,
    cacheUpdatesDeferred: 0,
    deferredBecause: {},
    callsPerOp: undefined,
    backupsAtEnd: 0,
    ...Object.fromEntries(MUST_BE_ZERO.map((name) => [name, 0])),
  }
  const problems = []
  const problem = (what) => {
    if (problems.length < 30) problems.push(what)
  }
  const repo = tempFolder('brcache-race-')
  const work = tempFolder('brcache-race-logs-')
  const stopFile = path.join(work.dir, 'stop')
  const plan = raceWriters(args.seed, args.writers)
  const vms = [...new Set(plan.map((writer) => writer.vm.uuid))]
  const common = [repo.dir, args.seed, String(args.writers)]
  const rtt = String(args['rtt-ms'])
  const deadline = sleep(args['timeout-s'] * 1000, 'timeout', { ref: false })
  try {
    // Readers first, so that the writers' very first ops are raced too.
    const readers = Array.from({ length: args.readers }, (_, index) => {
      let ready
      const started = new Promise((resolve) => (ready = resolve))
      let result
      const logFile = path.join(work.dir, `reader-${index}.ndjson`)
      const repairs = args['no-reader-repairs'] ? 'no-repairs' : 'repairs'
      const { exited } = children.spawn(READER, [...common, String(index), share, rtt, stopFile, logFile, repairs], {
        onLine: (line) => (line.ready ? ready() : (result = line)),
      })
      return { started: Promise.race([started, exited]), exited: exited.then((outcome) => ({ ...outcome, result, logFile })) }
    })
    await Promise.all(readers.map((reader) => reader.started))

    const perWriter = Math.ceil(args.ops / args.writers)
    const writers = plan.map(({ index }) => {
      let result
      const { exited } = children.spawn(WRITER, [...common, String(index), String(perWriter), share, rtt], { onLine: (line) => (result = line) })
      return exited.then((outcome) => ({ ...outcome, result }))
    })
    const written = await Promise.race([Promise.all(writers), deadline])
    if (written === 'timeout') throw new Error(`the writers did not finish within ${args['timeout-s']} s`)
    fs.writeFileSync(stopFile, '')
    const read = await Promise.race([Promise.all(readers.map((reader) => reader.exited)), deadline])
    if (read === 'timeout') throw new Error(`the readers did not stop within ${args['timeout-s']} s`)

    // --- the writers' logs: what each backup's life was ---
    const history = new Map() // key -> { vm, addStart, addEnd, delStart, delEnd }
    const spans = { shared: [Infinity, -Infinity, 0], own: [Infinity, -Infinity, 0] }
    const locks = { taken: 0, waitMs: 0 }
    let calls = 0
    for (const { code, stderr, result } of written) {
      if (code !== 0 || !result) {
        figures.writerErrors++
        problem(`a writer exited with code ${code}: ${stderr.trim()}`)
        continue
      }
      figures.writerErrors += result.errors.length
      for (const { message } of result.errors) problem(`writer ${result.writer}: ${message}`)
      for (const { data } of result.warnings.filter(({ message }) => /not updated/.test(message))) {
        figures.cacheUpdatesDeferred++
        // The reason without the path: how often each kind of failure happened.
        const reason = String(data?.reason).replace(/'[^']*'/g, "'…'")
        figures.deferredBecause[reason] = (figures.deferredBecause[reason] ?? 0) + 1
      }
      const span = spans[result.shared ? 'shared' : 'own']
      for (const { kind, key, start, end } of result.log) {
        figures.ops++
        span[0] = Math.min(span[0], start)
        span[1] = Math.max(span[1], end)
        span[2]++
        if (kind === 'add') {
          figures.adds++
          history.set(key, { vm: result.vm, addStart: start, addEnd: end, delStart: Infinity, delEnd: Infinity })
        } else {
          figures.deletes++
          Object.assign(history.get(key), { delStart: start, delEnd: end })
        }
      }
      calls += result.counts.calls ?? 0
      locks.taken += result.counts.locksTaken
      locks.waitMs += result.counts.lockWaitMs
      figures.writerLockWaitMaxMs = Math.max(figures.writerLockWaitMaxMs, Math.round(result.counts.maxLockWaitMs))
    }
    const first = Math.min(spans.shared[0], spans.own[0])
    const last = Math.max(spans.shared[1], spans.own[1])
    figures.writingMs = last - first
    figures.opsPerSec = round1((figures.ops * 1000) / figures.writingMs)
    figures.sharedVmOpsPerSec = round1((spans.shared[2] * 1000) / (spans.shared[1] - spans.shared[0]))
    figures.ownVmOpsPerSec = spans.own[2] > 0 ? round1((spans.own[2] * 1000) / (spans.own[1] - spans.own[0])) : null
    figures.writerLockWaitMeanMs = round1(locks.waitMs / locks.taken)
    if (share === 'simulated') figures.callsPerOp = round1(calls / figures.ops)

    // --- every listing against those lives ---
    const byVm = new Map(vms.map((vm) => [vm, []]))
    for (const [key, life] of history) byVm.get(life.vm)?.push({ key, ...life })
    for (const { code, stderr, result, logFile } of read) {
      if (code !== 0 || !result) {
        figures.readerErrors++
        problem(`a reader exited with code ${code}: ${stderr.trim()}`)
        continue
      }
      figures.readerListings += result.listings
      figures.readerRepairs += result.counts.cacheWrites
      figures.readerLockAttempts += result.counts.locksTaken + result.counts.locksRefused
      figures.readerErrors += result.errors
      for (const sample of result.errorSamples) problem(`reader ${result.reader}: ${sample}`)
      figures.readerBadRecords += result.bad.length
      for (const sample of result.bad) problem(`reader ${result.reader} listed a bad record: ${sample}`)
      for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
        if (line !== '') checkListing(JSON.parse(line), byVm, history, figures, problem)
      }
    }

    // --- the repository at rest ---
    const checker = openRepository(new LocalHandler(repo.dir))
    for (const vm of new Set([...vms, ...vmFolders(repo.dir)])) {
      const lives = byVm.get(vm) ?? []
      const predicted = new Set(lives.filter((life) => life.delEnd === Infinity).map((life) => life.key))
      const deleted = new Set(lives.filter((life) => life.delEnd !== Infinity).map((life) => life.key))
      const truth = folderTruth(repo.dir, vm)
      const cache = cacheNow(repo.dir, vm) ?? { body: '{}', keys: new Set() }
      const report = await checker.checkVm(vm)
      const lostAdds = minus(predicted, cache.keys)
      const resurrected = [...cache.keys].filter((key) => deleted.has(key))
      const phantom = [...cache.keys].filter((key) => !history.has(key))
      figures.lostUpdates += lostAdds.length + resurrected.length
      figures.phantomEntries += phantom.length
      for (const key of lostAdds) problem(`lost update: the cache lacks ${key}, written and never deleted`)
      for (const key of resurrected) problem(`lost update: the cache still has ${key}, deleted`)
      for (const key of phantom) problem(`phantom entry ${key}: nobody wrote it`)
      const onDisk = new Set([...truth.keys, ...truth.unreadable.map((name) => `/${BACKUP_DIR}/${vm}/${name}`)])
      const notAsLogged = [...minus(onDisk, predicted), ...minus(predicted, onDisk)]
      figures.filesNotAsLogged += notAsLogged.length
      for (const key of notAsLogged) problem(`${key} is ${onDisk.has(key) ? 'on disk, not in' : 'in the op logs, not on disk'}`)
      if (cache.body !== truth.body && lostAdds.length + resurrected.length + phantom.length === 0) {
        figures.differentRecords++
        problem(`the cache of ${vm} holds the right keys, but not the records a rebuild gives`)
      }
      if (!report.coherent) {
        figures.incoherent++
        problem(`checkVm(${vm}) without repair: ${JSON.stringify({ ...report, entries: undefined })}`)
      }
      const leftovers = fs.existsSync(vmFolder(repo.dir, vm))
        ? fs.readdirSync(vmFolder(repo.dir, vm)).filter((name) => isTempName(name) || name.endsWith(LOCK_SUFFIX))
        : []
      figures.leftovers += leftovers.length
      for (const name of leftovers) problem(`left behind: ${vm}/${name}`)
      figures.backupsAtEnd += predicted.size
    }
  } catch (error) {
    figures.campaignErrors++
    problem(error.stack)
  } finally {
    children.killAll()
    repo.remove()
    work.remove()
  }
  figures.failed = MUST_BE_ZERO.filter((name) => figures[name] !== 0)
  figures.problems = problems
  return figures
}

/**
 * One listing [start, end] against the lives of the backups of each VM it
 * covers. `Date.now()` is taken before a call starts and after it returns,
 * in every process, so `addEnd < start` means the write returned before the
 * listing began, and `delStart > end` that the delete began after it ended.
 */
function checkListing({ kind, start, end, covered, listed }, byVm, history, figures, problem) {
  for (const vm of Object.keys(listed)) {
    if (!covered.includes(vm)) {
      figures.readerPhantom += listed[vm].length
      problem(`${kind} listed a VM nobody wrote: ${vm}`)
    }
  }
  for (const vm of covered) {
    const names = new Set(listed[vm] ?? [])
    if (names.size !== (listed[vm] ?? []).length) {
      figures.readerBadRecords++
      problem(`${kind} listed a restore point of ${vm} twice`)
    }
    for (const name of names) {
      const key = `/${BACKUP_DIR}/${vm}/${name}`
      const life = history.get(key)
      if (!life) {
        figures.readerPhantom++
        problem(`${kind} listed ${key}, which no writer wrote`)
      } else if (life.addStart > end || life.delEnd < start) {
        figures.readerStale++
        problem(`${kind} [${start}, ${end}] listed ${key}, ${life.addStart > end ? 'written after the listing' : 'deleted before the listing'}: ${JSON.stringify(life)}`)
      }
    }
    for (const life of byVm.get(vm) ?? []) {
      if (life.addEnd < start && life.delStart > end && !names.has(life.key.slice(`/${BACKUP_DIR}/${vm}/`.length))) {
        figures.readerMissed++
        problem(`${kind} [${start}, ${end}] missed ${life.key}: ${JSON.stringify(life)}`)
      }
    }
  }
}

function round1(x) {
  return Math.round(x * 10) / 10
}

const shares = args.share === 'both' ? ['local', 'simulated'] : [args.share]
const started = performance.now()
const results = []
for (const share of shares) results.push(await round(share))
const wallMs = Math.round(performance.now() - started)
const failed = results.some((result) => result.failed.length > 0)
if (args.json) {
  process.stdout.write(`${JSON.stringify({ seed: args.seed, ops: args.ops, wallMs, rounds: results })}\n`)
} else {
  for (const result of results) {
    console.log(
      `race campaign, seed ${args.seed}, ${result.share === 'local' ? 'local folder' : `simulated share (${args['rtt-ms']} ms round trip)`}: ` +
        `${result.writers} writers (${Math.max(1, Math.ceil(result.writers / 2))} on one shared VM), ${result.readers} readers` +
        (args['no-reader-repairs'] ? ' (immutable: no background repairs)' : ''),
    )
    console.log('must be 0:')
    console.log(table(MUST_BE_ZERO.map((name) => [name, result[name]])))
    console.log('work done:')
    console.log(
      table([
        ['ops (adds + deletes)', `${result.ops} (${result.adds} + ${result.deletes})`],
        ['writing time', `${(result.writingMs / 1000).toFixed(1)} s`],
        ['updates per second, all VMs', result.opsPerSec],
        ['  writers of the shared VM', result.sharedVmOpsPerSec],
        ['  writers of their own VM', result.ownVmOpsPerSec ?? '-'],
        ...(result.callsPerOp === undefined ? [] : [['share calls per update', result.callsPerOp]]),
        ['reader listings', result.readerListings],
        ['  background repairs they wrote (of lock attempts)', `${result.readerRepairs} (${result.readerLockAttempts})`],
        ['writer lock wait, mean / max', `${result.writerLockWaitMeanMs} ms / ${result.writerLockWaitMaxMs} ms`],
        ['cache updates deferred to the next write', result.cacheUpdatesDeferred],
        ...Object.entries(result.deferredBecause).map(([reason, count]) => [`  ${reason}`, count]),
        ['backups at the end', result.backupsAtEnd],
      ]),
    )
    for (const line of result.problems) console.log(`PROBLEM ${line}`)
    console.log(result.failed.length === 0 ? 'OK\n' : `FAILED: ${result.failed.join(', ')}\n`)
  }
  console.log(`wall time ${(wallMs / 1000).toFixed(1)} s`)
}
process.exitCode = failed ? 1 : 0
