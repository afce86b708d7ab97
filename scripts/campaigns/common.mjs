// What the reliability campaigns (crash.mjs, race.mjs) share: argument
// parsing, child processes that are always reaped, and the truth about a VM
// folder read straight from the disk, never through the code under test.

import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { LocalHandler, SimulatedShare, VmCache } from 'brcache'
import { isTempName, LOCK_SUFFIX } from '../../js/node/handlers/index.js'
import { BACKUP_DIR, CACHE_FILE } from '../../js/common/layout.js'
import { createRandom, makeMetadata, makeVm } from '../../js/sample/metadata.js'

export { sleep }

/**
 * `--name value` options with integer/string/boolean defaults; exits 2 on
 * a usage error so a typo never runs a default campaign by mistake.
 */
export function options(usage, spec) {
  const parsed = (() => {
    try {
      return parseArgs({
        options: {
          help: { type: 'boolean' },
          ...Object.fromEntries(Object.entries(spec).map(([name, value]) => [name, { type: typeof value === 'boolean' ? 'boolean' : 'string' }])),
        },
      }).values
    } catch (error) {
      console.error(`${error.message}\n${usage}`)
      process.exit(2)
    }
  })()
  if (parsed.help) {
    console.log(usage)
    process.exit(0)
  }
  const values = {}
  for (const [name, fallback] of Object.entries(spec)) {
    const given = parsed[name]
    if (given === undefined) values[name] = fallback
    else if (typeof fallback === 'number') {
      values[name] = Number(given)
      if (!Number.isFinite(values[name]) || values[name] < 0) {
        console.error(`--${name} needs a non-negative number, got ${given}\n${usage}`)
        process.exit(2)
      }
    } else values[name] = given
  }
  return values
}

/** A temp folder for one campaign run; `remove()` is safe to call twice. */
export function tempFolder(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Child processes that die with the campaign: on any exit path (a failed
 * check, an exception, Ctrl-C) every child still running is killed, so a
 * campaign never leaves writers behind. `close()` is for a caller that
 * gives up on a run (a test that timed out): it kills every child, waits
 * for them to be gone, and refuses to start any more.
 */
export class Children {
  #running = new Map()
  #closed = false

  constructor() {
    const stopAll = () => this.killAll()
    process.once('exit', stopAll)
    for (const signal of ['SIGINT', 'SIGTERM']) {
      process.once(signal, () => {
        stopAll()
        process.exit(130)
      })
    }
  }

  /**
   * Starts `node script ...args`. `onLine(object)` gets every JSON line it
   * prints (other lines are kept in `stdout`). Resolves `exited` to
   * `{ code, signal, stdout, stderr }`.
   */
  spawn(script, args, { onLine } = {}) {
    if (this.#closed) throw new Error('this run was closed: no more child processes')
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let partial = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      partial += chunk
      const lines = partial.split('\n')
      partial = lines.pop()
      for (const line of lines) {
        let object
        try {
          object = JSON.parse(line)
        } catch {
          stdout += `${line}\n`
          continue
        }
        onLine?.(object)
      }
    })
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const exited = new Promise((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code, signal) => {
        this.#running.delete(child)
        // A line cut by SIGKILL has no newline: it was never a whole report.
        resolve({ code, signal, stdout: stdout + partial, stderr })
      })
    })
    this.#running.set(child, exited)
    return { child, exited }
  }

  killAll() {
    for (const child of this.#running.keys()) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  }

  async close() {
    this.#closed = true
    const exits = [...this.#running.values()]
    this.killAll()
    await Promise.allSettled(exits)
  }
}

export const vmFolder = (dir, vm) => path.join(dir, BACKUP_DIR, vm)
/** A VM's lock: proper-lockfile's folder beside the VM folder (the lock is taken on the folder's path). */
export const lockFolder = (dir, vm) => path.join(dir, BACKUP_DIR, vm + LOCK_SUFFIX)
export const cacheFile = (dir, vm) => path.join(dir, BACKUP_DIR, vm, CACHE_FILE)

/** The VM folders of a repository, read from the disk. */
export function vmFolders(dir) {
  const root = path.join(dir, BACKUP_DIR)
  if (!fs.existsSync(root)) return []
  return fs
    .readdirSync(root, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.') && !entry.name.endsWith(LOCK_SUFFIX))
    .map((entry) => entry.name)
    .sort()
}

/** The names of a VM folder that are restore points' metadata files (as XO globs them). */
export function metadataNames(names) {
  return names.filter((name) => name.endsWith('.json') && !name.startsWith('.'))
}

/**
 * What the folder says, independently of any cache: the cache a rebuild
 * from every metadata file gives, its keys, and the files that do not parse.
 */
export function folderTruth(dir, vm) {
  const folder = vmFolder(dir, vm)
  const listing = fs.existsSync(folder) ? fs.readdirSync(folder) : []
  const files = new Map()
  for (const name of metadataNames(listing)) {
    try {
      files.set(name, fs.readFileSync(path.join(folder, name)))
    } catch (error) {
      if (error.code !== 'ENOENT') throw error
    }
  }
  const { cache, unreadable } = VmCache.rebuild(vm, listing, files)
  return {
    listing,
    temps: listing.filter(isTempName),
    body: cache.body(),
    keys: new Set(cache.keys()),
    unreadable: unreadable.map(({ name }) => name),
  }
}

/** The cache of a VM folder as decoded now: `undefined` if there is none. */
export function cacheNow(dir, vm) {
  let bytes
  try {
    bytes = fs.readFileSync(cacheFile(dir, vm))
  } catch (error) {
    if (error.code === 'ENOENT') return undefined
    throw error
  }
  const cache = VmCache.decode(vm, bytes)
  return { body: cache.body(), keys: new Set(cache.keys()) }
}

/** Elements of `a` not in `b`. */
export function minus(a, b) {
  return [...a].filter((x) => !b.has(x))
}

/** A fixed-width two-column table of figures for the terminal. */
export function table(rows) {
  const width = Math.max(...rows.map(([label]) => label.length))
  return rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`).join('\n')
}

// --- the crash campaign's backups ---------------------------------------------

const CRASH_EPOCH = Date.UTC(2025, 0, 1)

/** The 1 to 3 VMs a crash campaign's writer backs up, derived from the seed. */
export function crashVms(seed) {
  const rng = createRandom(`crash:${seed}:vms`)
  const count = rng.int(1, 3)
  const job = { jobId: rng.uuid(), scheduleId: rng.uuid() }
  return Array.from({ length: count }, (_, i) => ({ ...job, vm: makeVm(rng, i) }))
}

/**
 * Op `op` of the crash campaign: which VM gets a backup, its metadata, and
 * how many backups that VM keeps afterwards. A pure function of the seed and
 * the op number, so a restarted writer continues the sequence where the
 * killed one stopped, and the timestamps of two ops never share a second.
 */
export function crashOp(seed, op, vms) {
  const rng = createRandom(`crash:${seed}:op:${op}`)
  const { vm, jobId, scheduleId } = rng.pick(vms)
  const timestamp = CRASH_EPOCH + op * 60_000 + rng.int(0, 58_999)
  const metadata = makeMetadata(rng, { vm, jobId, scheduleId, timestamp, mode: rng.bool(0.15) ? 'full' : 'delta' })
  return { vm: vm.uuid, metadata, retention: rng.int(4, 10), alsoPrune: rng.bool(0.2) }
}

// --- the race campaign's VMs and backups ------------------------------------------

const RACE_EPOCH = Date.UTC(2025, 0, 1)

/**
 * Who writes where in a race campaign: the first half of the writers (at
 * least one) share one VM folder, every other writer has a VM of its own.
 * Writers of the shared VM back up the same VM (same record), each in a time
 * range of its own, so their file names never collide.
 */
export function raceWriters(seed, writers) {
  const shared = makeVm(createRandom(`race:${seed}:vm:shared`), 0)
  const sharing = Math.max(1, Math.ceil(writers / 2))
  return Array.from({ length: writers }, (_, index) => {
    const rng = createRandom(`race:${seed}:writer:${index}`)
    const vm = index < sharing ? shared : makeVm(createRandom(`race:${seed}:vm:${index}`), index)
    return { index, vm, shared: index < sharing, jobId: rng.uuid(), scheduleId: rng.uuid(), retention: rng.int(3, 6) }
  })
}

/** The metadata of writer `index`'s `n`th backup: one a minute, in a range of its own. */
export function raceBackup(seed, writer, n) {
  const rng = createRandom(`race:${seed}:writer:${writer.index}:backup:${n}`)
  const timestamp = RACE_EPOCH + writer.index * 400 * 86_400_000 + n * 60_000 + rng.int(0, 58_999)
  const { vm, jobId, scheduleId } = writer
  return makeMetadata(rng, { vm, jobId, scheduleId, timestamp, mode: rng.bool(0.15) ? 'full' : 'delta' })
}

/**
 * The handler a race campaign process works through (the folder, or a
 * simulated share in front of it), counting what the campaign reports and
 * the repository does not expose: cache writes (a reader writes one only to
 * repair it in the background) and how long taking a cache lock took.
 */
export function raceHandler(dir, share, rttMs) {
  const local = new LocalHandler(dir)
  const inner = share === 'simulated' ? new SimulatedShare(local, { rttMs }) : local
  const counts = { cacheWrites: 0, locksTaken: 0, locksRefused: 0, lockWaitMs: 0, maxLockWaitMs: 0 }
  const handler = Object.create(null)
  for (const kind of ['list', 'listWithTypes', 'readFile', 'rename', 'unlink', 'rmdir', 'mkdir', 'stat', 'cleanTemps']) {
    handler[kind] = (...args) => inner[kind](...args)
  }
  handler.writeFile = async (file, data, writeOptions) => {
    await inner.writeFile(file, data, writeOptions)
    if (file.endsWith(`/${CACHE_FILE}`)) counts.cacheWrites++
  }
  handler.lock = async (file, lockOptions) => {
    const start = performance.now()
    try {
      const release = await inner.lock(file, lockOptions)
      const waited = performance.now() - start
      counts.locksTaken++
      counts.lockWaitMs += waited
      counts.maxLockWaitMs = Math.max(counts.maxLockWaitMs, waited)
      return release
    } catch (error) {
      counts.locksRefused++
      throw error
    }
  }
  return { handler, counts: () => ({ ...counts, calls: inner.stats?.().calls.total }) }
}
