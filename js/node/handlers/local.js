// Handler over a folder on a local or mounted file system (NFS, SMB): the
// contract is in interface.md. Every path is confined to the root before any
// system call, so a bad path from the repository layer can never reach
// outside the backup repository.

import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs/promises'
import * as path from 'node:path'
import lockfile from 'proper-lockfile'
import { createStrategy, FULL_CAPABILITIES, probeCapabilities } from './capabilities.js'

/**
 * Temp files are `.<basename>.tmp-<pid>-<hex>`: the leading dot keeps them
 * out of plain listings and out of XO's `*.json` metadata globbing, and the
 * pid tells an operator which process left one behind.
 */
export const TEMP_PREFIX = '.'
const TEMP_MARKER = '.tmp-'
const TEMP_NAME = /^\..+\.tmp-\d+-[0-9a-f]+$/
// A create-only write without hard links claims its name with the hidden
// file `.<basename>.claim`, created exclusively (see createByClaim).
const CLAIM_SUFFIX = '.claim'
const CLAIM_NAME = /^\..+\.claim$/

/** The lock of `<path>` is the directory `<path>.lock`, next to it. */
export const LOCK_SUFFIX = '.lock'

/** Whether a directory entry name is one of our in-progress/abandoned temp files (or claims). */
export function isTempName(name) {
  return typeof name === 'string' && (TEMP_NAME.test(name) || CLAIM_NAME.test(name))
}

function claimName(base) {
  return `${TEMP_PREFIX}${base}${CLAIM_SUFFIX}`
}

function tempName(base) {
  return `${TEMP_PREFIX}${base}${TEMP_MARKER}${process.pid}-${randomBytes(6).toString('hex')}`
}

function codedError(code, message, relPath) {
  return Object.assign(new Error(`${code}: ${message}`), { code, path: relPath })
}

// Callers see the path they passed, not where the share happens to be
// mounted; the message keeps the absolute path for operators.
function relabel(error, relPath, dest) {
  if (error !== null && typeof error === 'object') {
    error.path = relPath
    if (dest !== undefined) error.dest = dest
  }
  return error
}

// Bounded at ~25 s: long enough to outlast a normal cache update by another
// process, short enough that a wedged share surfaces as ELOCKED rather than
// a hang. Jitter keeps competing writers from retrying in lockstep. The
// backoff stops growing at 250 ms: the lock is a directory, not a queue,
// and a waiter sleeping seconds loses every free moment to newcomers that
// retry after 50 ms (the race campaign measured writers waiting ~20 s with
// a 2 s cap). A retry is one mkdir: four a second is cheap on any share.
const LOCK_BACKOFF = { factor: 1.5, minTimeout: 50, maxTimeout: 250, randomize: true, maxRetryTime: 25_000 }
const LOCK_DEFAULT_RETRIES = 120
let lockSerial = 0

function lockRetries(retries) {
  if (retries === undefined) return { ...LOCK_BACKOFF, retries: LOCK_DEFAULT_RETRIES }
  if (typeof retries === 'number') return { ...LOCK_BACKOFF, retries }
  return { ...LOCK_BACKOFF, ...retries }
}

export class LocalHandler {
  #root
  #capabilities

  /**
   * @param {string} rootDir the repository root; resolved to an absolute path
   * @param {{ capabilities?: object }} [options] `capabilities`: what the
   *   file system can do, instead of probing it (missing ones: it can)
   */
  constructor(rootDir, { capabilities } = {}) {
    if (typeof rootDir !== 'string' || rootDir === '') {
      throw codedError('EINVAL', 'LocalHandler needs a root directory path', rootDir)
    }
    this.#root = path.resolve(rootDir)
    if (capabilities) this.#capabilities = Promise.resolve(Object.freeze({ ...FULL_CAPABILITIES, ...capabilities, probed: false }))
  }

  /**
   * What the file system under the root can do: `{ hardLinks, renameOver,
   * exclusiveCreate, directoryFsync, mtimeResolutionMs, probed }`, probed
   * once (in a hidden folder of the root, removed after) and remembered; a
   * failed probe is not remembered. `createStrategy` says how create-only
   * writes go with it.
   */
  capabilities() {
    if (!this.#capabilities) {
      const probing = probeCapabilities(this.#root).then(
        (found) => Object.freeze({ ...found, probed: true, createStrategy: createStrategy(found) }),
        (error) => {
          this.#capabilities = undefined
          throw relabel(error, '')
        },
      )
      this.#capabilities = probing
    }
    return this.#capabilities.then((c) => (c.createStrategy ? c : Object.freeze({ ...c, createStrategy: createStrategy(c) })))
  }

  get root() {
    return this.#root
  }

  /** Locks exclude other processes and hosts (see lock()). */
  get supportsLocks() {
    return true
  }

  /**
   * The absolute path of a repository-relative path, or EINVAL. Checks are
   * lexical and run before any I/O; the final prefix test is a second line
   * of defence against platform quirks (drive letters, UNC prefixes).
   */
  #resolve(relPath, { allowRoot = false } = {}) {
    if (typeof relPath !== 'string') {
      throw codedError('EINVAL', `path must be a string, got ${typeof relPath}`, relPath)
    }
    const refuse = (why) => {
      throw codedError('EINVAL', `${why}: '${relPath.replace(/\0/g, '\\0')}'`, relPath)
    }
    if (relPath.includes('\0')) refuse('NUL in path')
    if (relPath.includes('\\')) refuse('backslash in path')
    if (relPath.startsWith('/') || path.isAbsolute(relPath)) refuse('absolute path')
    if (relPath.split('/').includes('..')) refuse("'..' segment in path")
    const isRoot = relPath.split('/').every((segment) => segment === '' || segment === '.')
    if (isRoot && !allowRoot) refuse('path designates the repository root')
    const absolute = path.resolve(this.#root, relPath)
    if (absolute !== this.#root && !absolute.startsWith(this.#root + path.sep)) refuse('path escapes the repository')
    return absolute
  }

  async #run(relPath, fn, dest) {
    try {
      return await fn()
    } catch (error) {
      throw relabel(error, relPath, dest)
    }
  }

  /** Entry names, sorted; a missing directory is ENOENT. */
  async list(dir) {
    const absolute = this.#resolve(dir, { allowRoot: true })
    const names = await this.#run(dir, () => fs.readdir(absolute))
    return names.sort()
  }

  /** `[{ name, isDirectory }]`, sorted by name. Symlinks are not followed. */
  async listWithTypes(dir) {
    const absolute = this.#resolve(dir, { allowRoot: true })
    const entries = await this.#run(dir, () => fs.readdir(absolute, { withFileTypes: true }))
    return entries
      .map((entry) => ({ name: entry.name, isDirectory: entry.isDirectory() }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  async readFile(file) {
    const absolute = this.#resolve(file)
    return this.#run(file, () => fs.readFile(absolute))
  }

  /**
   * `exclusive`: create-only (EEXIST if present), for metadata, which is
   * never rewritten, in the strongest way the share allows (see
   * capabilities()). Otherwise an atomic replace through a temp file and a
   * rename, so readers on any client see the old or the new bytes, whole.
   */
  async writeFile(file, data, { exclusive = false } = {}) {
    const absolute = this.#resolve(file)
    const dir = path.dirname(absolute)
    const capabilities = await this.capabilities()
    await this.#run(file, () => fs.mkdir(dir, { recursive: true }))
    if (!exclusive) return this.#run(file, () => replaceAtomically(absolute, data, capabilities))
    return this.#run(file, () => createOnly(absolute, data, capabilities))
  }

  async rename(from, to) {
    const source = this.#resolve(from)
    const target = this.#resolve(to)
    await this.#run(from, () => retryBusy(() => fs.rename(source, target)), to)
  }

  async unlink(file) {
    const absolute = this.#resolve(file)
    await this.#run(file, () => retryBusy(() => fs.unlink(absolute)))
  }

  /** Removes an empty directory (ENOTEMPTY otherwise): never a tree. */
  async rmdir(dir) {
    const absolute = this.#resolve(dir)
    await this.#run(dir, () => fs.rmdir(absolute))
  }

  async mkdir(dir) {
    const absolute = this.#resolve(dir)
    await this.#run(dir, () => fs.mkdir(absolute, { recursive: true }))
  }

  async stat(file) {
    const absolute = this.#resolve(file, { allowRoot: true })
    const stats = await this.#run(file, () => fs.stat(absolute))
    return { size: stats.size, mtimeMs: stats.mtimeMs, isDirectory: stats.isDirectory() }
  }

  /**
   * Cross-process lock on `file` (which need not exist) via proper-lockfile:
   * an atomic mkdir of `<file>.lock`, kept fresh while held, taken over once
   * its mtime is older than `stale`. Resolves to an idempotent `release()`.
   *
   * @param {string} file
   * @param {{ stale?: number, retries?: number | object }} [options]
   *   `retries`: a count (same backoff shape) or `retry` module options
   */
  async lock(file, { stale = 30_000, retries } = {}) {
    const absolute = this.#resolve(file)
    // proper-lockfile retries every error, so a missing folder would spin
    // for the whole backoff before surfacing; fail fast instead.
    const parent = path.dirname(absolute)
    const parentStats = await this.#run(file, () => statFolder(parent))
    if (!parentStats.isDirectory()) throw codedError('ENOTDIR', `parent of '${file}' is not a directory`, file)

    let compromised = false
    let released = false
    let unlock
    try {
      // proper-lockfile keeps its holders in a map keyed by the path it's
      // given: a unique key per acquisition stops one holder in this process
      // from releasing another's entry after a stale takeover. The lock
      // directory is still `<path>.lock`, shared by every process.
      unlock = await lockfile.lock(`${absolute}#${++lockSerial}`, {
        lockfilePath: absolute + LOCK_SUFFIX,
        stale,
        retries: lockRetries(retries),
        realpath: false,
        // The default throws from a timer, i.e. crashes the process. Writes
        // made under a lost lock are still atomic replaces, so the worst
        // outcome is a lost update, which the cache layer must tolerate anyway.
        onCompromised: () => {
          compromised = true
        },
      })
    } catch (error) {
      if (error?.code === 'ELOCKED') {
        throw codedError('ELOCKED', `'${file}' is locked by another holder`, file)
      }
      throw relabel(error, file)
    }

    return async function release() {
      if (released || compromised) return
      released = true
      try {
        await unlock()
      } catch (error) {
        // Compromised between the check above and the unlock: same as above.
        if (error?.code === 'ERELEASED' || error?.code === 'ECOMPROMISED' || compromised) return
        throw relabel(error, file)
      }
    }
  }

  /**
   * Removes our temp files older than `olderThanMs` from `dir` (crash
   * leftovers). Younger ones may belong to a write in progress in another
   * process. Returns the removed names, sorted.
   */
  async cleanTemps(dir, options) {
    return cleanTempsWith(this, dir, options)
  }
}

/**
 * `fs.stat` of a folder that should be there, asked again a few times over
 * ~150 ms when it says ENOENT: on smbnetfs (SMB through FUSE), a folder
 * whose entries change (the VM locks live in xo-vm-backups/, created and
 * removed by every writer) was once reported missing for an instant in the
 * SMB crash campaign. A folder truly missing still fails, that much later.
 */
async function statFolder(folder) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fs.stat(folder)
    } catch (error) {
      if (error?.code !== 'ENOENT' || attempt === 3) throw error
      await new Promise((resolve) => setTimeout(resolve, 20 << attempt))
    }
  }
}

/**
 * cleanTemps over any handler's primitives, so a wrapper (e.g. a simulated
 * share) pays one round trip per underlying operation, as a real share would.
 * `mtimeMs` comes from the server: on a share with a skewed clock the
 * threshold must be generous, hence the minute-scale default.
 */
export async function cleanTempsWith(handler, dir, { olderThanMs = 60_000, anyAgeFor = [] } = {}) {
  const entries = await handler.listWithTypes(dir)
  const prefix = dir === '' || dir.endsWith('/') ? dir : `${dir}/`
  const removed = []
  const cutoff = Date.now() - olderThanMs
  // Temps of these files are dead whatever their age (their writer's lock
  // is held by the caller); any other may belong to a write in progress.
  const dead = (name) => anyAgeFor.some((target) => name.startsWith(`${TEMP_PREFIX}${target}${TEMP_MARKER}`))
  for (const { name, isDirectory } of entries) {
    if (isDirectory || !isTempName(name)) continue
    const file = prefix + name
    try {
      const { mtimeMs } = await handler.stat(file)
      if (mtimeMs > cutoff && !dead(name)) continue
      await handler.unlink(file)
      removed.push(name)
    } catch (error) {
      // Another cleaner or the writer itself got there first.
      if (error?.code !== 'ENOENT') throw error
    }
  }
  return removed.sort()
}

function alreadyExists(absolute) {
  return Object.assign(new Error(`EEXIST: file already exists, '${absolute}'`), { code: 'EEXIST', errno: -17 })
}

async function exists(absolute) {
  return fs.lstat(absolute).then(
    () => true,
    (error) => (error.code === 'ENOENT' ? false : Promise.reject(error)),
  )
}

/**
 * Create-only, in the strongest way the share allows (`createStrategy` in
 * capabilities.js): never a half-written file under its name.
 */
async function createOnly(absolute, data, capabilities) {
  // A taken name is refused before anything is written (what follows
  // still settles a race).
  if (await exists(absolute)) throw alreadyExists(absolute)
  if (capabilities.createStrategy === 'link') await createByLink(absolute, data)
  else await createByClaim(absolute, data, capabilities)
  if (capabilities.directoryFsync) await syncDirectory(path.dirname(absolute))
}

/**
 * The data goes to a temp file, fsynced, then is hard-linked to its name,
 * which fails with EEXIST if the name is taken (the link is atomic, on NFS
 * too). A crash, even SIGKILL, leaves at worst a temp file (skipped by
 * listings, removed by cleanTemps), never a half-written file under its
 * real name.
 */
async function createByLink(absolute, data) {
  const temp = await writeTemp(absolute, data)
  try {
    await fs.link(temp, absolute)
  } finally {
    await fs.unlink(temp).catch(() => {})
  }
}

/**
 * Without hard links: the name is claimed by creating `.<basename>.claim`
 * exclusively (O_EXCL, which SMB and NFSv3+ honour), then, the name being
 * still free, the data goes to a temp file, fsynced, renamed to its name,
 * and the claim is removed. Of two writers of one name, one gets the claim
 * and the other EEXIST, either from the claim or, once the claim is gone,
 * from the name (checked after the claim is had). Readers see no file or the
 * whole one; a crash leaves at worst the claim and a temp file, both hidden
 * and skipped by listings: a claim older than a minute whose name is still
 * free is a dead writer's, taken over by the next writer of that name and
 * removed by cleanTemps. Without exclusive create ('check-then-rename'),
 * the claim excludes nobody: the name is only checked before the rename,
 * create-only among writers that hold a lock of their own (brcache's
 * metadata writers hold the VM's).
 */
async function createByClaim(absolute, data, capabilities) {
  const claim = path.join(path.dirname(absolute), claimName(path.basename(absolute)))
  await takeClaim(claim, capabilities)
  try {
    if (await exists(absolute)) throw alreadyExists(absolute)
    const temp = await writeTemp(absolute, data)
    try {
      await fs.rename(temp, absolute)
    } catch (error) {
      await fs.unlink(temp).catch(() => {})
      throw error
    }
  } finally {
    await fs.unlink(claim).catch(() => {})
  }
}

const DEAD_CLAIM_MS = 60_000

async function takeClaim(claim, capabilities) {
  for (let attempt = 1; ; attempt++) {
    try {
      const handle = await fs.open(claim, capabilities.exclusiveCreate ? 'wx' : 'w')
      await handle.close()
      return
    } catch (error) {
      if (error.code !== 'EEXIST' || attempt > 1) {
        if (error.code === 'EEXIST') throw alreadyExists(claim.replace(/\.claim$/, ''))
        throw error
      }
      // A claim left by a writer killed before its rename: take it over
      // once it is older than a minute (plus the share's timestamp step).
      const stats = await fs.stat(claim).catch(() => undefined)
      if (stats && Date.now() - stats.mtimeMs < DEAD_CLAIM_MS + capabilities.mtimeResolutionMs) {
        throw alreadyExists(claim.replace(/\.claim$/, ''))
      }
      await fs.unlink(claim).catch(() => {})
    }
  }
}

// An SMB server refuses to replace or delete a file another client has
// open (a sharing violation, EBUSY through the FUSE client): a reader of the
// cache holds it for one read, so the rename or unlink is retried, with a
// growing pause, for up to about 5 s before the error is surfaced.
const BUSY_PAUSES_MS = [10, 20, 40, 80, 120, 160, 200, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250, 250]

export async function retryBusy(fn) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn()
    } catch (error) {
      if (error?.code !== 'EBUSY' || attempt >= BUSY_PAUSES_MS.length) throw error
      await new Promise((resolve) => setTimeout(resolve, BUSY_PAUSES_MS[attempt]))
    }
  }
}

/**
 * On a share that cannot rename over a file, the old one is removed first:
 * for a moment there is no file (a cache then reads as absent, and is
 * rebuilt), never a torn one.
 */
async function replaceAtomically(absolute, data, capabilities) {
  const temp = await writeTemp(absolute, data)
  try {
    if (!capabilities.renameOver) await retryBusy(() => fs.unlink(absolute)).catch((error) => (error.code === 'ENOENT' ? undefined : Promise.reject(error)))
    await retryBusy(() => fs.rename(temp, absolute))
  } catch (error) {
    await fs.unlink(temp).catch(() => {})
    throw error
  }
  if (capabilities.directoryFsync) await syncDirectory(path.dirname(absolute))
}

/**
 * Writes `data` to a new temp file beside `absolute`, fsynced (without it
 * a crash after the rename or link can leave the name pointing at an empty
 * or partial file on some file systems), and returns its path. On failure
 * nothing is left behind.
 */
async function writeTemp(absolute, data) {
  const temp = path.join(path.dirname(absolute), tempName(path.basename(absolute)))
  let handle
  try {
    handle = await fs.open(temp, 'wx')
    await handle.writeFile(data)
    await handle.sync()
    await handle.close()
    return temp
  } catch (error) {
    await handle?.close().catch(() => {})
    await fs.unlink(temp).catch(() => {})
    throw error
  }
}

// Makes the rename itself durable. Not every platform or share can open or
// fsync a directory (Windows, some FUSE/SMB mounts): the data is already
// safe, so this is best effort.
async function syncDirectory(dir) {
  let handle
  try {
    handle = await fs.open(dir, 'r')
    await handle.sync()
  } catch {
    // best effort
  } finally {
    await handle?.close().catch(() => {})
  }
}
