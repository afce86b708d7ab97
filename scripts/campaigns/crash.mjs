#!/usr/bin/env node
// Crash campaign: a writer adding and deleting backups (crash-writer.mjs) is
// killed with SIGKILL at seeded random moments, again and again, and after
// every kill the repository it left is checked from the disk up:
//
//   (a) every cache.json.gz decodes: a kill never leaves a torn cache;
//   (b) a listing never shows a restore point whose metadata file is absent,
//       and shows every metadata file that parses;
//   (c) check --repair (which waits for the dead writer's lock to go stale
//       and takes it over) makes the cache equal to a rebuild of the folder.
//
// The kill delays and the writer's ops are seeded, so a run is repeatable in
// what it does; where exactly each kill lands depends on the machine's
// timing, which is the point. See README.md, "Reliability".

import fs from 'node:fs'
import path from 'node:path'
import { decodeCache, LocalHandler, openRepository } from 'brcache'
import { CACHE_FILE } from '../../js/common/layout.js'
import { createRandom } from '../../js/sample/metadata.js'
import {
  Children,
  cacheFile,
  cacheNow,
  crashOp,
  crashVms,
  folderTruth,
  lockFolder,
  minus,
  options,
  sleep,
  table,
  tempFolder,
  vmFolders,
} from './common.mjs'

const USAGE = `usage: node scripts/campaigns/crash.mjs [--kills N=300] [--seed S=1] [--min-delay MS=5] [--max-delay MS=150]
       [--lock-stale-ms MS=2000] [--dir DIR] [--json]

--dir DIR: run in a fresh folder under DIR (a mounted share, e.g. SMB) instead of a temp folder.

Kills a backup writer with SIGKILL N times at random moments (seeded) and checks the
repository after each kill. Exits 1 if a torn cache or metadata file, a phantom or lost
restore point, or a cache a repair could not make equal to a rebuild of its folder was found.`

const args = options(USAGE, { kills: 300, seed: '1', 'min-delay': 5, 'max-delay': 150, 'lock-stale-ms': 2000, dir: '', json: false })
const WRITER = path.join(import.meta.dirname, 'crash-writer.mjs')
// The writer prints `ready` before it touches the repository; a writer that
// is not even up after this long means the machine is wedged, not a finding.
const READY_TIMEOUT_MS = 60_000

const figures = {
  seed: args.seed,
  kills: 0,
  // must be 0
  torn: 0,
  phantomListed: 0,
  lostListed: 0,
  lostAfterRepair: 0,
  phantomAfterRepair: 0,
  differentAfterRepair: 0,
  incoherentAfterRepair: 0,
  tempsAfterRepairWrite: 0,
  tempsRemaining: 0,
  locksRemaining: 0,
  tornMetadataFiles: 0,
  writerFailures: 0,
  checkErrors: 0,
  // where the kills landed, from what they left behind
  killedHoldingLock: 0,
  killedBeforeRename: 0,
  killedWritingMetadata: 0,
  killedBeforeCacheUpdate: 0,
  killedElsewhere: 0,
  // what cleaned up after them
  locksTakenOver: 0,
  tempsLeft: 0,
  tempsCleaned: 0,
  writerOps: 0,
  writerWarnings: 0,
  backupsAtEnd: 0,
  wallMs: 0,
}
const MUST_BE_ZERO = [
  'torn',
  'phantomListed',
  'lostListed',
  'lostAfterRepair',
  'phantomAfterRepair',
  'differentAfterRepair',
  'incoherentAfterRepair',
  'tempsAfterRepairWrite',
  'tempsRemaining',
  'locksRemaining',
  'tornMetadataFiles',
  'writerFailures',
  'checkErrors',
]
const problems = []
const problem = (kill, what) => {
  if (problems.length < 50) problems.push(`kill ${kill}: ${what}`)
}

const started = performance.now()
const { dir, remove } = args.dir ? folderUnder(args.dir) : tempFolder('brcache-crash-')
const children = new Children()
const rng = createRandom(`crash:${args.seed}:kills`)
const vms = crashVms(args.seed)
const checker = openRepository(new LocalHandler(dir), { lockStaleMs: args['lock-stale-ms'] })
const tempsSeen = new Set()
const tornSeen = new Set()
const warnings = new Map()
let nextOp = 0

/** Runs the writer until a seeded delay after it is ready, then SIGKILLs it. */
async function runAndKill(kill) {
  let ops = 0
  let readyAt
  const ready = new Promise((resolve) => (readyAt = resolve))
  const { child, exited } = children.spawn(WRITER, [dir, args.seed, String(nextOp), String(args['lock-stale-ms'])], {
    onLine: (line) => {
      if (line.ready) readyAt()
      if (Number.isInteger(line.op)) {
        nextOp = Math.max(nextOp, line.op + 1)
        ops++
      }
      if (line.warn) {
        figures.writerWarnings++
        warnings.set(line.warn, (warnings.get(line.warn) ?? 0) + 1)
      }
    },
  })
  const delay = rng.int(args['min-delay'], args['max-delay'])
  const outcome = await Promise.race([ready.then(() => 'ready'), exited.then(() => 'exited'), sleep(READY_TIMEOUT_MS, 'timeout', { ref: false })])
  if (outcome === 'ready') {
    await Promise.race([sleep(delay), exited])
  }
  const killed = child.kill('SIGKILL')
  const { code, signal, stderr } = await exited
  figures.writerOps += ops
  if (outcome !== 'ready' || !killed || signal !== 'SIGKILL') {
    figures.writerFailures++
    problem(kill, `the writer ${outcome === 'timeout' ? 'never got ready' : `exited by itself (code ${code}, signal ${signal})`}: ${stderr.trim()}`)
  }
  figures.kills++
}

/** Everything checked after one kill, VM by VM. */
async function check(kill) {
  for (const vm of vmFolders(dir)) {
    // (a) The cache, as any reader would find it now.
    if (fs.existsSync(cacheFile(dir, vm))) {
      try {
        decodeCache(fs.readFileSync(cacheFile(dir, vm)))
      } catch (error) {
        figures.torn++
        problem(kill, `torn cache in ${vm}: ${error.code} ${error.message}`)
      }
    }
    const before = folderTruth(dir, vm)
    const lockLeft = lockMtime(dir, vm)
    // Metadata temps outlive a few kills (they are removed once a minute
    // old): only the new ones say where this kill landed.
    const newTemps = before.temps.filter((temp) => !tempsSeen.has(`${vm}/${temp}`))
    for (const temp of newTemps) tempsSeen.add(`${vm}/${temp}`)
    const newlyTorn = before.unreadable.filter((name) => !tornSeen.has(`${vm}/${name}`))
    for (const name of newlyTorn) tornSeen.add(`${vm}/${name}`)
    const drift = await checker.checkVm(vm) // read-only: where the cache stands before anything repairs it

    // (b) A listing, checked against the files that are there.
    const listed = await checker.listVmBackups(vm)
    await checker.settle()
    const listedIds = new Set(listed.map((record) => record.id))
    for (const id of listedIds) {
      if (!before.keys.has(id)) {
        figures.phantomListed++
        problem(kill, `listed ${id}, whose metadata file is absent or does not parse`)
      }
    }
    for (const id of minus(before.keys, listedIds)) {
      figures.lostListed++
      problem(kill, `did not list ${id}, whose metadata file is there and parses`)
    }

    // (c) Repair, after the dead writer's lock went stale (it is taken
    // over by checkVm itself: waiting first just saves its backoff).
    if (lockLeft !== undefined) {
      // The listing's background repair may have taken it over already.
      await sleep(Math.max(0, lockLeft + args['lock-stale-ms'] + 50 - Date.now()))
      figures.locksTakenOver++
    }
    const report = await checker.checkVm(vm, { repair: true })
    const truth = folderTruth(dir, vm)
    const cache = cacheNow(dir, vm) ?? { body: '{}', keys: new Set() }
    const lost = minus(truth.keys, cache.keys)
    const phantom = minus(cache.keys, truth.keys)
    figures.lostAfterRepair += lost.length
    figures.phantomAfterRepair += phantom.length
    for (const id of [...lost, ...phantom]) problem(kill, `after repair, ${lost.includes(id) ? 'the cache lacks' : 'the cache still has'} ${id}`)
    if (lost.length === 0 && phantom.length === 0 && cache.body !== truth.body) {
      figures.differentAfterRepair++
      problem(kill, `after repair, the cache of ${vm} has the right keys but not the records a rebuild gives`)
    }
    const after = await checker.checkVm(vm)
    if (drifted(after)) {
      figures.incoherentAfterRepair++
      problem(kill, `a check right after the repair still finds ${vm} incoherent: ${JSON.stringify(after)}`)
    }
    // A repair removes the cache's temps whatever their age; a metadata
    // write's temp only once it is a minute old (it may be in progress).
    const cacheTemps = truth.temps.filter(isCacheTemp)
    if (report.repaired && cacheTemps.length > 0) {
      figures.tempsAfterRepairWrite += cacheTemps.length
      problem(kill, `the repair wrote the cache of ${vm} but left ${cacheTemps.join(', ')}`)
    }
    if (fs.existsSync(lockFolder(dir, vm))) {
      figures.locksRemaining++
      problem(kill, `a lock is left in ${vm} after the checks`)
    }

    // Where the kill landed, from what it left (it can leave several things).
    if (lockLeft !== undefined) figures.killedHoldingLock++
    // A metadata write goes through a temp file too (then a hard link):
    // a kill in the middle of it leaves that temp, never a torn file.
    if (newTemps.some(isCacheTemp)) figures.killedBeforeRename++
    if (newlyTorn.length > 0 || newTemps.some((name) => !isCacheTemp(name))) figures.killedWritingMetadata++
    for (const name of newlyTorn) problem(kill, `a metadata file that does not parse was left: ${vm}/${name}`)
    if (drifted(drift)) figures.killedBeforeCacheUpdate++
  }
}

/** A fresh folder under `parent` (a share's mount), removed at the end like a temp folder. */
function folderUnder(parent) {
  const dir = fs.mkdtempSync(path.join(parent, 'brcache-crash-'))
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

const isCacheTemp = (name) => name.startsWith(`.${CACHE_FILE}.tmp-`)

/** The mtime of a VM's cache lock (refreshed while its holder lives), or undefined. */
function lockMtime(dir, vm) {
  try {
    return fs.statSync(lockFolder(dir, vm)).mtimeMs
  } catch (error) {
    if (error.code === 'ENOENT') return undefined
    throw error
  }
}

/**
 * Whether a check report finds the cache behind its folder. A metadata file
 * that does not parse (a kill in the middle of writing it) stays out of the
 * cache and is reported as unreadable at every check: that is not drift.
 */
function drifted(report) {
  const unreadable = new Set(report.unreadable.map(({ id }) => id))
  return report.stale.length > 0 || report.missing.some((id) => !unreadable.has(id)) || Boolean(report.cacheError)
}

/** Whether the checks since `counts` was taken found any trace of the kill. */
function leftTraces(counts) {
  const keys = ['killedHoldingLock', 'killedBeforeRename', 'killedWritingMetadata', 'killedBeforeCacheUpdate']
  return keys.some((key) => figures[key] > counts[key])
}

/**
 * One more backup per VM through the API, as the next backup run would
 * write: its cache writes must remove every temp file a kill left.
 */
async function finish() {
  // A temp file of a metadata write may belong to a write in progress, so a
  // cache write removes one only once it is a minute old: let that minute
  // pass for the temps the kills left (a cache's own temps go at any age).
  const past = new Date(Date.now() - 120_000)
  for (const vm of vmFolders(dir)) {
    for (const temp of folderTruth(dir, vm).temps) fs.utimesSync(path.join(dir, 'xo-vm-backups', vm, temp), past, past)
  }
  for (const { vm } of vms) {
    let op = nextOp
    let planned
    do planned = crashOp(args.seed, op++, vms)
    while (planned.vm !== vm.uuid)
    nextOp = op
    await checker.writeVmBackupMetadata(planned.vm, planned.metadata)
  }
  for (const vm of vmFolders(dir)) {
    const { temps, keys } = folderTruth(dir, vm)
    figures.tempsRemaining += temps.length
    for (const temp of temps) problem('end', `temp file ${vm}/${temp} outlived a cache write`)
    figures.backupsAtEnd += keys.size
    if (fs.existsSync(lockFolder(dir, vm))) figures.locksRemaining++
  }
  const remaining = new Set(vmFolders(dir).flatMap((vm) => folderTruth(dir, vm).temps.map((temp) => `${vm}/${temp}`)))
  figures.tempsLeft = tempsSeen.size
  figures.tornMetadataFiles = tornSeen.size
  figures.tempsCleaned = minus(tempsSeen, remaining).length
}

let exitCode = 1
try {
  for (let kill = 1; kill <= args.kills; kill++) {
    await runAndKill(kill)
    const counts = { ...figures }
    try {
      await check(kill)
    } catch (error) {
      figures.checkErrors++
      problem(kill, `a check failed: ${error.stack}`)
    }
    if (!leftTraces(counts)) figures.killedElsewhere++
    if (!args.json && process.stderr.isTTY) process.stderr.write(`\rkill ${kill}/${args.kills}`)
  }
  if (!args.json && process.stderr.isTTY) process.stderr.write('\n')
  try {
    await finish()
  } catch (error) {
    figures.checkErrors++
    problem('end', `the final write failed: ${error.stack}`)
  }
  figures.wallMs = Math.round(performance.now() - started)
  figures.writerWarningKinds = Object.fromEntries(warnings)
  const failed = MUST_BE_ZERO.filter((name) => figures[name] !== 0)
  exitCode = failed.length === 0 ? 0 : 1
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ ...figures, failed, problems })}\n`)
  } else {
    console.log(`crash campaign, seed ${args.seed}: ${figures.kills} SIGKILLs of a writer, kill delays ${args['min-delay']}-${args['max-delay']} ms`)
    console.log('must be 0:')
    console.log(table(MUST_BE_ZERO.map((name) => [name, figures[name]])))
    console.log('where the kills landed (from what they left; a kill can leave several):')
    console.log(
      table([
        ['holding a cache lock', figures.killedHoldingLock],
        ['cache temp written, not renamed', figures.killedBeforeRename],
        ['metadata temp written, not linked', figures.killedWritingMetadata],
        ['metadata written/deleted, cache not yet updated', figures.killedBeforeCacheUpdate],
        ['elsewhere (between ops, listing, generating)', figures.killedElsewhere],
      ]),
    )
    console.log('cleanup and work done:')
    console.log(
      table([
        ['stale locks taken over', figures.locksTakenOver],
        ['temp files left by kills / cleaned', `${figures.tempsLeft} / ${figures.tempsCleaned}`],
        ['writer ops begun', figures.writerOps],
        ['writer warnings', figures.writerWarnings],
        ...[...warnings].map(([message, count]) => [`  ${message}`, count]),
        ['backups at the end', figures.backupsAtEnd],
        ['wall time', `${(figures.wallMs / 1000).toFixed(1)} s`],
      ]),
    )
    for (const line of problems) console.log(`PROBLEM ${line}`)
    console.log(exitCode === 0 ? 'OK' : `FAILED: ${failed.join(', ')}`)
  }
} finally {
  children.killAll()
  remove()
  process.exitCode = exitCode
}
