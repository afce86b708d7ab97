// What the file system under a repository can do, found out by trying it
// once in a hidden folder of the repository root (then removed). Local
// disks and NFS have everything; a FUSE SMB client, many NAS and Windows
// shares have no hard links, and some have whole-second timestamps. The
// local handler picks its create-only write from this (see interface.md).

import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs/promises'
import * as path from 'node:path'

/** The hidden folder a probe works in, at the repository root. */
export const PROBE_PREFIX = '.brcache-probe-'

/** Errors that mean "this share cannot do that", as opposed to a failing share. */
const UNSUPPORTED = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK', 'EINVAL', 'EACCES'])

/**
 * Probes the folder `root` and returns:
 * `{ hardLinks, renameOver, exclusiveCreate, directoryFsync, mtimeResolutionMs }`.
 * Each is tried on small files of a fresh hidden folder, removed at the end
 * (also on failure). An error that is not "unsupported" (the share is full,
 * gone, read-only) is thrown: nothing can be decided from it.
 */
export async function probeCapabilities(root) {
  const dir = path.join(root, `${PROBE_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`)
  await fs.mkdir(root, { recursive: true })
  await removeDeadProbes(root)
  await fs.mkdir(dir)
  const file = (name) => path.join(dir, name)
  try {
    const result = {}
    await fs.writeFile(file('a'), 'a', { flag: 'wx' })
    // Exclusive create: a second 'wx' of the same name must fail with EEXIST.
    result.exclusiveCreate = await fs.writeFile(file('a'), 'again', { flag: 'wx' }).then(
      () => false,
      (error) => (error.code === 'EEXIST' ? true : Promise.reject(error)),
    )
    result.hardLinks = await fs.link(file('a'), file('b')).then(
      async () => (await fs.readFile(file('b'), 'utf8')) === (await fs.readFile(file('a'), 'utf8')),
      (error) => (UNSUPPORTED.has(error.code) ? false : Promise.reject(error)),
    )
    await fs.writeFile(file('c'), 'c', { flag: 'wx' })
    result.renameOver = await fs.rename(file('c'), file('a')).then(
      async () => (await fs.readFile(file('a'), 'utf8')) === 'c',
      (error) => (UNSUPPORTED.has(error.code) || error.code === 'EEXIST' ? false : Promise.reject(error)),
    )
    result.directoryFsync = await syncable(dir)
    result.mtimeResolutionMs = await mtimeResolution(file('a'))
    return result
  } finally {
    await fs.rm(dir, { recursive: true, force: true }).catch(() => {})
  }
}

// A probe takes milliseconds: one folder older than this was left by a
// process killed in the middle of its probe.
const DEAD_PROBE_MS = 60_000

async function removeDeadProbes(root) {
  const names = await fs.readdir(root)
  for (const name of names) {
    if (!name.startsWith(PROBE_PREFIX)) continue
    const folder = path.join(root, name)
    const stats = await fs.stat(folder).catch(() => undefined)
    if (stats?.isDirectory() && Date.now() - stats.mtimeMs > DEAD_PROBE_MS) await fs.rm(folder, { recursive: true, force: true }).catch(() => {})
  }
}

async function syncable(dir) {
  let handle
  try {
    handle = await fs.open(dir, 'r')
    await handle.sync()
    return true
  } catch {
    return false
  } finally {
    await handle?.close().catch(() => {})
  }
}

/**
 * 1 when the share keeps milliseconds (or finer), 1000 when it keeps whole
 * seconds: an mtime set to x.123 s is read back. Where it cannot be set, the
 * coarse answer, which only makes the age rules wait longer.
 */
async function mtimeResolution(file) {
  const seconds = 1_700_000_000.123
  try {
    await fs.utimes(file, seconds, seconds)
    const { mtimeMs } = await fs.stat(file)
    if (Math.abs(mtimeMs - seconds * 1000) < 1) return 1
    if (mtimeMs % 1000 !== 0 && mtimeMs % 10 === 0) return 10
    return mtimeMs % 1000 === 0 ? 1000 : 2000
  } catch {
    return 2000
  }
}

/** The capabilities of a file system that can do everything (not probed). */
export const FULL_CAPABILITIES = Object.freeze({
  hardLinks: true,
  renameOver: true,
  exclusiveCreate: true,
  directoryFsync: true,
  mtimeResolutionMs: 1,
})

/**
 * The way a create-only write goes on a share with `capabilities`:
 * - 'link': temp file, fsync, hard link to the name (atomic, create-only);
 * - 'claim': the name is claimed by creating a hidden `.<name>.claim`
 *   exclusively, then the data goes to a temp file, fsynced, renamed to the
 *   (still free) name: readers see no file or the whole one;
 * - 'check-then-rename': no exclusive create at all: the name is checked,
 *   then the temp renamed to it (create-only only among writers that hold
 *   a lock, as brcache's metadata writers hold the VM's).
 */
export function createStrategy(capabilities) {
  if (capabilities.hardLinks) return 'link'
  if (capabilities.exclusiveCreate) return 'claim'
  return 'check-then-rename'
}
