// The repository index under concurrent writers and under SIGKILL, shared by
// tests/repo-index.test.mjs (short runs) and scripts/campaigns/repo-index.mjs (long
// runs, README figures). Both runs work on a folder the caller owns, and
// judge the index against the truth read straight from the disk: every
// metadata file that parses, whatever the caches or the index say.
//
// - runWriters: writer processes (tests/helpers/repo-index-writer.mjs), each on
//   its own VM, plus some sharing one VM, add and delete backups through
//   openRepository(dir, { index: true }) while this process lists through
//   the index; at the end the index, unrepaired, must be the truth.
// - runKills: a process (tests/helpers/repo-index-compactor.mjs) that writes,
//   deletes and compacts the index over and over is killed with SIGKILL at
//   seeded random moments; after every kill the index must be usable or
//   unusable in a way listings fall back from, and check --repair must make
//   it the truth again. A kill during a compaction must not cost anything,
//   even before a repair.

import fs from 'node:fs'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { openRepository, VmCache } from 'brcache'
import { INDEX_DIR } from '../../js/common/repo-index.js'
import { LOCK_SUFFIX } from '../../js/node/handlers/index.js'
import { Children, vmFolders } from '../../scripts/campaigns/common.mjs'

export { vmFolders }
import { BACKUP_DIR } from '../../js/common/layout.js'
import { createRandom, makeVm, makeVmBackups } from '../../js/sample/metadata.js'

const HELPERS = import.meta.dirname
const WRITER = path.join(HELPERS, 'repo-index-writer.mjs')
const COMPACTOR = path.join(HELPERS, 'repo-index-compactor.mjs')

// --- the truth, from the disk ---------------------------------------------------

/**
 * The restore view the folders hold: for each VM, the summaries of a cache
 * rebuilt from every metadata file there (files that do not parse left
 * out); VMs without restore points omitted.
 */
export function diskTruth(dir) {
  const view = {}
  for (const vm of vmFolders(dir)) {
    const folder = path.join(dir, BACKUP_DIR, vm)
    const listing = fs.readdirSync(folder)
    const files = new Map()
    for (const name of listing) {
      if (!name.endsWith('.json') || name.startsWith('.')) continue
      try {
        files.set(name, fs.readFileSync(path.join(folder, name)))
      } catch (error) {
        if (error.code !== 'ENOENT' && error.code !== 'EISDIR') throw error
      }
    }
    const summaries = VmCache.rebuild(vm, listing, files).cache.summaries()
    if (summaries.length > 0) view[vm] = summaries
  }
  return view
}

const idsOf = (view) => new Set(Object.values(view ?? {}).flatMap((summaries) => summaries.map((s) => s.id)))

/**
 * How a view differs from the truth: restore points it lacks (`lost`),
 * restore points it has that are not there (`phantom`), and VMs whose
 * summaries differ otherwise (`different`: order, fields).
 */
export function compareViews(view, truth) {
  const have = idsOf(view)
  const want = idsOf(truth)
  const lost = [...want].filter((id) => !have.has(id))
  const phantom = [...have].filter((id) => !want.has(id))
  const vms = new Set([...Object.keys(view ?? {}), ...Object.keys(truth)])
  const different = [...vms].filter((vm) => !isDeepStrictEqual(view?.[vm], truth[vm]))
  return { lost, phantom, different, same: lost.length === 0 && phantom.length === 0 && different.length === 0 }
}

/** The index folder's names, sorted (empty when there is none). */
export function indexFiles(dir) {
  try {
    return fs.readdirSync(path.join(dir, INDEX_DIR)).sort()
  } catch (error) {
    if (error.code === 'ENOENT') return []
    throw error
  }
}

// With the VM the name says, or (an older release's) without.
const SEGMENT = /^\d{15}-[0-9a-f]{16}(-[^/]+)?\.json\.gz$/
const SNAPSHOT = /^snapshot-(\d{20})\.json\.gz$/

/** The newest snapshot's generation in the index folder, 0 if none. */
export function snapshotGeneration(dir) {
  return Math.max(0, ...indexFiles(dir).map((name) => Number(SNAPSHOT.exec(name)?.[1] ?? 0)))
}

/** A logger that keeps what it is told. */
export function recorder() {
  const events = []
  const logger = Object.fromEntries(['debug', 'info', 'warn', 'error'].map((level) => [level, (message, data) => events.push({ level, message, data })]))
  return { events, logger, warns: () => events.filter((event) => event.level === 'warn') }
}

/** Whether a listing said it could not use the index and listed every VM instead. */
export const fellBack = (events) => events.some((e) => e.level === 'warn' && /listing every VM instead/.test(e.message))

// --- processes --------------------------------------------------------------------

export { Children }

/** VM `i` of a run: the same from a seed in every process. */
export function runVm(seed, i) {
  return makeVm(createRandom(`index-campaign:${seed}:vm:${i}`), i)
}

/** A repository of `vms` VMs (from `seed`) with `backups` restore points each, and its index built. */
async function seedRepository(dir, { seed, vms, backups }) {
  const repository = openRepository(dir, { index: true })
  for (let i = 0; i < vms; i++) {
    const vm = runVm(seed, i)
    const series = makeVmBackups(createRandom(`index-campaign:${seed}:seed-backups:${i}`), { vm, retention: backups, start: Date.UTC(2024, 0, 1) })
    for (const { metadata } of series) await repository.writeVmBackupMetadata(vm.uuid, metadata)
  }
  await repository.buildIndex()
  return repository
}

// --- writers racing, readers reading ----------------------------------------------

/**
 * `writers` processes on VMs of their own and `shared` more on one VM they
 * share, `count` backups each (plus a delete every third), while `readers`
 * loops here list through the index.
 */
export async function runWriters(dir, { seed = 'index', writers = 4, shared = 2, count = 30, readers = 1, vms = 3, children = new Children() } = {}) {
  const figures = {
    writers: writers + shared,
    writes: 0,
    deletes: 0,
    listings: 0,
    readerFallbacks: 0,
    readerErrors: 0,
    phantomListed: 0,
    writerFailures: 0,
    writerCacheNotUpdated: 0,
    writerIndexWarnings: 0,
    compactions: 0,
    segmentsLeft: 0,
    lost: 0,
    phantom: 0,
    different: 0,
    drift: 0,
  }
  const problems = []
  try {
    await seedRepository(dir, { seed, vms, backups: 3 })
    const startGeneration = snapshotGeneration(dir)
    const initial = idsOf(diskTruth(dir))
    // Writer n < writers backs up VM `vms + n`; the shared ones VM `vms + writers`.
    const plan = Array.from({ length: writers + shared }, (_, n) => ({ n, vm: runVm(seed, vms + Math.min(n, writers)) }))
    const runs = plan.map(({ n, vm }) => {
      let report
      const { exited } = children.spawn(WRITER, [dir, vm.uuid, `${seed}`, String(n), String(count)], { onLine: (line) => (report = line) })
      return exited.then((result) => ({ ...result, report, n }))
    })
    let writing = true
    const done = Promise.all(runs).finally(() => (writing = false))

    const seen = new Set()
    const reading = Array.from({ length: readers }, async () => {
      do {
        const { events, logger } = recorder()
        const repository = openRepository(dir, { index: true, logger })
        try {
          const view = await repository.listSummaries()
          figures.listings++
          if (fellBack(events)) figures.readerFallbacks++
          for (const id of idsOf(view)) seen.add(id)
        } catch (error) {
          figures.readerErrors++
          if (problems.length < 20) problems.push(`reader: ${error.stack}`)
        }
        await repository.settle()
      } while (writing)
    })
    const results = await done
    await Promise.all(reading)

    const written = new Set(initial)
    for (const { code, signal, stdout, stderr, report, n } of results) {
      if (code !== 0 || !report) {
        figures.writerFailures++
        problems.push(`writer ${n}: exit ${code ?? signal}: ${stderr}${stdout}`)
        continue
      }
      figures.writes += report.written.length
      figures.deletes += report.deleted.length
      for (const key of report.written) written.add(key)
      figures.writerCacheNotUpdated += report.warnings.filter((w) => /cache was not updated/.test(w.message)).length
      figures.writerIndexWarnings += report.warnings.filter((w) => /index/.test(w.message)).length
    }
    for (const id of seen) {
      if (!written.has(id)) {
        figures.phantomListed++
        problems.push(`a reader listed ${id}, which nobody wrote`)
      }
    }

    // The index as the writers left it, without any repair.
    const truth = diskTruth(dir)
    const { events, logger } = recorder()
    const repository = openRepository(dir, { index: true, logger })
    const view = await repository.listSummaries()
    if (fellBack(events)) problems.push(`the final listing did not use the index: ${JSON.stringify(events)}`)
    const diff = compareViews(view, truth)
    figures.lost = diff.lost.length
    figures.phantom = diff.phantom.length
    figures.different = diff.different.length
    if (!diff.same) problems.push(`the index is not the truth: ${JSON.stringify(diff)}`)
    const check = await repository.checkIndex()
    figures.drift = Object.keys(check.drift).length + (check.unusable ? 1 : 0)
    if (figures.drift > 0) problems.push(`checkIndex: ${JSON.stringify(check)}`)
    figures.compactions = snapshotGeneration(dir) - startGeneration
    figures.segmentsLeft = indexFiles(dir).filter((name) => SEGMENT.test(name)).length
    return { figures, problems, truth, view }
  } finally {
    children.killAll()
  }
}

export const WRITERS_MUST_BE_ZERO = ['readerErrors', 'phantomListed', 'writerFailures', 'writerCacheNotUpdated', 'lost', 'phantom', 'different', 'drift']

// --- kills --------------------------------------------------------------------------

/**
 * Makes the locks a killed process held look as old as they would be once
 * stale, so that the next writer or check takes them over at once instead
 * of waiting for proper-lockfile's 2 s floor: what waiting would do, sooner.
 */
function ageLocks(dir) {
  const past = new Date(Date.now() - 60_000)
  const locks = vmLocks(dir)
  for (const vm of locks) fs.utimesSync(path.join(dir, BACKUP_DIR, vm + LOCK_SUFFIX), past, past)
  return locks.length
}

/** The VMs whose lock (`xo-vm-backups/<vm>.lock`, beside the folder) is there. */
function vmLocks(dir) {
  const root = path.join(dir, BACKUP_DIR)
  return fs
    .readdirSync(root)
    .filter((name) => name.endsWith(LOCK_SUFFIX) && !name.startsWith('.'))
    .map((name) => name.slice(0, -LOCK_SUFFIX.length))
}

/**
 * Kills a writer-and-compactor process `kills` times and checks the index
 * after every kill. Each kill is aimed by the seed: once the process has
 * announced its `n`th step (1 to `maxSteps`), after 0 to `maxDelay` ms, so
 * that kills land at every kind of step whatever the machine's speed, and
 * where within the step depends on its timing.
 */
export async function runKills(dir, { seed = 'index', kills = 20, vms = 4, maxSteps = 12, maxDelay = 6, children = new Children() } = {}) {
  const rng = createRandom(`index-campaign:${seed}:kills`)
  const figures = {
    kills: 0,
    killedCompacting: 0,
    killedWriting: 0,
    killedStarting: 0,
    helperOps: 0,
    helperCompactions: 0,
    helperFailures: 0,
    unusableAfterKill: 0,
    locksLeftByKills: 0,
    laggingAfterKill: 0,
    laggingLost: 0,
    laggingPhantom: 0,
    laggingAfterBackgroundRepair: 0,
    locksLeftAfterBackgroundRepair: 0,
    readerErrors: 0,
    wrongFallback: 0,
    lostAfterCompactionKill: 0,
    phantomAfterCompactionKill: 0,
    lost: 0,
    phantom: 0,
    different: 0,
    unusableAfterRepair: 0,
    driftAfterRepair: 0,
    checkErrors: 0,
    unreadableSegmentsLeft: 0,
    snapshotGeneration: 0,
  }
  const problems = []
  const problem = (kill, what) => {
    if (problems.length < 50) problems.push(`kill ${kill}: ${what}`)
  }
  try {
    await seedRepository(dir, { seed, vms, backups: 3 })
    for (let kill = 1; kill <= kills; kill++) {
      const steps = rng.int(1, maxSteps)
      const delay = rng.int(0, maxDelay)
      let reached
      const aimed = new Promise((resolve) => (reached = resolve))
      let phase = 'starting'
      let step = 0
      const { child, exited } = children.spawn(COMPACTOR, [dir, `${seed}`, String(kill)], {
        onLine: (line) => {
          if (!line.phase) return
          phase = line.phase
          if (line.phase === 'write') figures.helperOps++
          if (line.phase === 'compact') figures.helperCompactions++
          if (++step === steps) reached()
        },
      })
      if (!(await Promise.race([aimed.then(() => false), exited.then(() => true)]))) {
        if (delay > 0) await sleep(delay)
        child.kill('SIGKILL')
      }
      const { code, signal, stdout, stderr } = await exited
      if (signal !== 'SIGKILL') {
        figures.helperFailures++
        problem(kill, `the helper exited on its own (${code}): ${stderr}${stdout}`)
        continue
      }
      figures.kills++
      if (phase === 'compact') figures.killedCompacting++
      else if (phase === 'starting') figures.killedStarting++
      else figures.killedWriting++
      figures.locksLeftByKills += ageLocks(dir)

      const truth = diskTruth(dir)
      // 1. Right after the kill: a listing through the index never fails;
      //    an unusable index is a fallback to the VM caches (the truth); a
      //    kill during a compaction (every write before it complete) leaves
      //    an index that is the truth already.
      const { events, logger } = recorder()
      const repository = openRepository(dir, { logger, lockStaleMs: 2000 })
      try {
        const view = await repository.listSummaries()
        await repository.settle()
        const diff = compareViews(view, truth)
        if (fellBack(events)) {
          figures.unusableAfterKill++
          if (!diff.same) {
            figures.wrongFallback++
            problem(kill, `the fallback listing is not the truth: ${JSON.stringify(diff)}`)
          }
        } else if (phase === 'compact' || phase === 'starting') {
          figures.lostAfterCompactionKill += diff.lost.length
          figures.phantomAfterCompactionKill += diff.phantom.length + diff.different.length
          if (!diff.same) problem(kill, `killed while ${phase}: the index is not the truth: ${JSON.stringify(diff)}`)
        } else if (!diff.same) {
          // Killed between a file and its cache, or a cache and its
          // segment: the dead writer's lock, beside the VM folder, makes
          // the listing read that VM from its cache and folder; a lag here
          // is a listing from the index that missed it.
          figures.laggingAfterKill++
          figures.laggingLost += diff.lost.length
          figures.laggingPhantom += diff.phantom.length + diff.different.length
          problem(kill, `killed while ${phase}: the index listing right after is not the truth: ${JSON.stringify(diff)}`)
        }
        // The listing's background repair took the stale lock where the
        // VM's cache or entry was behind and published the entry: the next
        // listing, by another reader, is the truth without any check.
        const next = await openRepository(dir, { logger: recorder().logger }).listSummaries()
        const nextDiff = compareViews(next, truth)
        if (!nextDiff.same) {
          figures.laggingAfterBackgroundRepair++
          problem(kill, `the listing after the background repair is not the truth: ${JSON.stringify(nextDiff)}`)
        }
        figures.locksLeftAfterBackgroundRepair += vmLocks(dir).length
      } catch (error) {
        figures.readerErrors++
        problem(kill, `listing after the kill: ${error.stack}`)
      }

      // 2. check --repair: the VM caches (a kill in a write may have left
      //    one behind its folder), then the index; after it, the index is the
      //    truth and a check finds nothing.
      try {
        if (phase !== 'compact') await repository.checkAll({ repair: true })
        await repository.checkIndex({ repair: true })
        await repository.settle()
        const after = recorder()
        const reader = openRepository(dir, { logger: after.logger })
        const view = await reader.listSummaries()
        if (fellBack(after.events)) {
          figures.unusableAfterRepair++
          problem(kill, `the repaired index is unusable: ${JSON.stringify(after.warns())}`)
        }
        const diff = compareViews(view, truth)
        figures.lost += diff.lost.length
        figures.phantom += diff.phantom.length
        figures.different += diff.different.length
        if (!diff.same) problem(kill, `after check --repair, the index is not the truth: ${JSON.stringify(diff)}`)
        const check = await reader.checkIndex()
        if (Object.keys(check.drift).length > 0 || check.unusable) {
          figures.driftAfterRepair++
          problem(kill, `after check --repair, checkIndex says ${JSON.stringify(check)}`)
        }
      } catch (error) {
        figures.checkErrors++
        problem(kill, `check --repair: ${error.stack}`)
      }
    }
    const { events, logger } = recorder()
    await openRepository(dir, { logger }).listSummaries()
    figures.unreadableSegmentsLeft = events.filter((e) => /unreadable index segment/.test(e.message)).length
    figures.snapshotGeneration = snapshotGeneration(dir)
    return { figures, problems }
  } finally {
    children.killAll()
  }
}

export const KILLS_MUST_BE_ZERO = [
  'helperFailures',
  'readerErrors',
  'laggingAfterKill',
  'laggingLost',
  'laggingPhantom',
  'laggingAfterBackgroundRepair',
  'wrongFallback',
  'lostAfterCompactionKill',
  'phantomAfterCompactionKill',
  'lost',
  'phantom',
  'different',
  'unusableAfterRepair',
  'driftAfterRepair',
  'checkErrors',
]
