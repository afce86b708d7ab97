// The repository API a backup server calls: list, write, delete and check
// the restore points of a backup repository, keeping each VM folder's
// cache.json.gz true.
//
// This file does I/O through a handler (see handlers/interface.md) and
// nothing else: what to read, what a cache becomes and what is stale are
// decided by the core (VmCache, on js/core.js's choice by default).
//
// Promises kept here, where Xen Orchestra breaks them:
// - a listing checks every cache against its folder (the fingerprint fast
//   path costs one extra call per VM, made in parallel with the cache read),
//   and reads only the metadata files a cache lacks: it never lists a
//   restore point whose file is gone, nor misses one that is there;
// - a failed directory listing or metadata read is an error, never "no
//   backups"; an unusable cache is rebuilt and the event logged;
// - cache writes are atomic (temp + rename) and serialised across processes
//   and hosts by a lock on the share; writers re-read the cache under the
//   lock, so no update is lost; readers never wait for the lock;
// - an immutable repository never gets a cache written, created or deleted;
// - an encrypted repository is read and written as Xen Orchestra encrypts
//   it (handlers/encrypted.js), and without its key it is an error, never
//   an empty repository, and nothing is written to it.

import { BrcacheError } from '../common/errors.js'
import { mapLimit } from '../common/concurrency.js'
import { EncryptedShare, LOCK_SUFFIX, openHandler } from './handlers/index.js'
import { INDEX_DIR, IndexStore } from '../common/repo-index.js'
import { BACKUP_DIR, CACHE_FILE, formatFilenameDate, metadataKey, splitMetadataPath, vmDir, vmFile } from '../common/layout.js'
import * as defaultCore from './core.js'

// Verdicts on the whole repository (its encryption): never taken for one
// unreadable file.
const REPOSITORY_ERRORS = new Set(['ENCRYPTED', 'NOT_ENCRYPTED', 'WRONG_ENCRYPTION_KEY', 'UNSUPPORTED_ENCRYPTION', 'INVALID_ENCRYPTION_KEY'])

const silent = { debug() {}, info() {}, warn() {}, error() {} }

// A metadata file younger than this that does not parse is being written
// (the age rule of temp files, plus 2 s for shares whose timestamps have
// whole or even two-second steps).
const BEING_WRITTEN_MS = 62_000


/**
 * An error that names what was being done, keeping the original code. A
 * verdict on the repository (its encryption) already says all there is.
 */
function annotate(error, what) {
  if (REPOSITORY_ERRORS.has(error.code)) return error
  const wrapped = new Error(`${what}: ${error.message}`, { cause: error })
  wrapped.code = error.code
  return wrapped
}

/** Whether an error condemns one file only: it does not decrypt (altered, cut, another key's). */
function isUndecryptable(error) {
  return error instanceof BrcacheError && error.code === 'DECRYPTION_FAILED'
}

const decoder = new TextDecoder()

function byTimestamp(a, b) {
  return (a.timestamp ?? 0) - (b.timestamp ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

/**
 * Opens a backup repository.
 *
 * @param {string | object} pathOrHandler a folder (local or a mounted NFS/SMB share), an
 *   `s3://<key>:<secret>@<host>:<port>/<bucket>/<prefix>` URL, or a handler
 * @param {object} [options]
 * @param {number} [options.concurrency=10] VM folders and metadata files worked on at once
 * @param {boolean} [options.immutable=false] never write, create or delete a cache
 * @param {object} [options.logger] `{ debug, info, warn, error }(message, data)`
 * @param {number} [options.lockStaleMs=10000] when a cache lock left by a dead writer is taken over
 * @param {object} [options.core] the core to use (`brcache/wasm`'s exports work too)
 * @param {{ http?: boolean }} [options.s3] for an s3:// URL: plain HTTP (a store on loopback)
 * @param {boolean | 'auto'} [options.index='auto'] maintain and use the repository-wide
 *   index: always, never, or when the repository has one
 * @param {string | Uint8Array} [options.encryptionKey] the key of a repository Xen Orchestra
 *   encrypts (its remote's 32-character `encryptionKey`)
 */
export function openRepository(pathOrHandler, options = {}) {
  return new Repository(openHandler(pathOrHandler, options), options)
}

/**
 * The VM folders of a share: directories of xo-vm-backups/, not hidden,
 * not locks. Names only, which lie in clear on an encrypted repository too.
 */
export async function listVmFolders(handler) {
  let entries
  try {
    entries = await handler.listWithTypes(BACKUP_DIR)
  } catch (error) {
    if (error.code !== 'ENOENT') throw annotate(error, `cannot list ${BACKUP_DIR}`)
    // No backup folder yet is an empty repository, but only if the
    // repository itself is there: an unmounted share is an error.
    try {
      await handler.list('')
    } catch (rootError) {
      throw annotate(rootError, 'cannot list the repository root')
    }
    return []
  }
  return entries
    .filter(({ name, isDirectory }) => isDirectory && !name.startsWith('.') && !name.endsWith(LOCK_SUFFIX))
    .map(({ name }) => name)
}

export class Repository {
  #share
  #handler
  #core
  #concurrency
  #immutable
  #log
  #lockStaleMs
  #limits
  #index
  #indexMode

  constructor(
    handler,
    {
      concurrency = 10,
      immutable = false,
      logger = silent,
      lockStaleMs = 10_000,
      core = defaultCore,
      limits = {},
      index = 'auto',
      encryptionKey,
    } = {},
  ) {
    this.#share = handler
    // Every byte this file reads or writes goes through the repository's
    // encryption, so no write can happen before it is known.
    this.#handler = new EncryptedShare(handler, core.encryptionApi, encryptionKey)
    this.#core = core
    this.#concurrency = concurrency
    this.#immutable = immutable
    this.#log = { ...silent, ...logger }
    this.#lockStaleMs = lockStaleMs
    this.#limits = limits
    this.#index = new IndexStore(this.#handler, core.indexApi, this.#log)
    // An immutable repository gets no index either: it is a cache too.
    // Without locks (S3), two writers of one VM could publish conflicting
    // entries of the same generation, and the index could lag behind the
    // folder until a check: such repositories list through their checked
    // VM caches, which stay true whatever the writers do.
    if (index === true && handler.supportsLocks === false) {
      throw new Error('the repository index needs a handler with locks (not S3); the VM caches serve listings there')
    }
    this.#indexMode = immutable || handler.supportsLocks === false ? false : index
  }

  /** The share as it lies: on an encrypted repository, its bytes are encrypted. */
  get handler() {
    return this.#share
  }

  /**
   * `{ algorithm, readable }`: what `encryption.json` names (null for a
   * plaintext repository) and whether this repository object can read it
   * (it was given the right key, or needs none); `reason` says why not.
   */
  async encryption() {
    const { algorithm } = await this.#handler.describe()
    try {
      await this.#handler.cipher()
      return { algorithm, readable: true }
    } catch (error) {
      if (!REPOSITORY_ERRORS.has(error.code)) throw error
      return { algorithm, readable: false, code: error.code, reason: error.message }
    }
  }

  /** Whether listings use the repository-wide index when there is one. */
  get usesIndex() {
    return this.#indexMode !== false
  }

  get immutable() {
    return this.#immutable
  }

  // --- listing ---------------------------------------------------------------

  /** The VM folders: directories of xo-vm-backups/, not hidden, not locks. */
  async listAllVms() {
    return listVmFolders(this.#handler)
  }

  /** A VM's restore points (metadata records), sorted by timestamp. */
  async listVmBackups(vm, predicate) {
    const loaded = await this.#load(vm, 'records')
    this.#repairInBackground(vm, loaded)
    const records = loaded.records().sort(byTimestamp)
    return predicate ? records.filter(predicate) : records
  }

  /** `{ [vm]: restore points }`, VMs without restore points omitted. */
  async listAllVmBackups() {
    return this.#perVm((vm) => this.listVmBackups(vm))
  }

  /**
   * The restore view: `{ [vm]: summaries }` (see the core's summary). From
   * the repository-wide index when there is one, else from every VM's
   * checked cache. With the index, the VM folders are listed at the same
   * time: a folder the index does not know (Xen Orchestra backed it up
   * behind the index's back) is read from its cache, and one that is gone
   * is not listed. Two round trips whatever the VM count, when the index
   * knows every folder.
   */
  async listSummaries(filter) {
    return (await this.restoreView(filter)).vms
  }

  /**
   * The restore view with what it could not read: `{ vms, unreadable }`,
   * `vms` as listSummaries returns it and `unreadable` the metadata files
   * found in the VM folders read that are not in it (`[{ file, reason }]`,
   * sorted): not JSON, not a restore point, or not decrypting. A listing
   * from the index reads no VM folder the index knows; `check` finds those.
   * With `vm`, that VM's alone (from its cache, as listVmSummaries).
   */
  async restoreView(filter, { vm } = {}) {
    const unreadable = []
    let vms
    if (vm === undefined) vms = await this.#restoreView(filter, unreadable)
    else {
      const summaries = await this.#vmSummaries(vm, filter, unreadable)
      vms = summaries.length > 0 ? { [vm]: summaries } : {}
    }
    unreadable.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
    return { vms, unreadable }
  }

  async #restoreView(filter, unreadable) {
    const perVm = (vm) => this.#vmSummaries(vm, filter, unreadable)
    if (this.#indexMode !== false) {
      const [vms, index] = await Promise.all([this.listAllVms(), this.#indexForListing()])
      if (index) {
        const view = index.view(filter)
        const unknown = vms.filter((vm) => index.vmGeneration(vm) === null)
        if (unknown.length > 0) {
          this.#log.info('brcache: VM folders the repository index does not know, read from their caches (brcache check catches the index up)', {
            vms: unknown,
          })
        }
        const fromCaches = new Map(
          await mapLimit(unknown, this.#concurrency, async (vm) => [vm, await perVm(vm)]),
        )
        const result = {}
        for (const vm of vms) {
          const summaries = fromCaches.get(vm) ?? view[vm]
          if (summaries?.length > 0) result[vm] = summaries
        }
        return result
      }
      return this.#perVm(perVm, vms)
    }
    return this.#perVm(perVm)
  }

  /** The index, if there is one with a snapshot and it reads; else undefined (and why, logged). */
  async #indexForListing() {
    try {
      const index = await this.#index.read()
      // Without a snapshot, the segments alone may not hold every VM (the
      // snapshot was lost, or the index never compacted): not the whole view.
      if (index?.plan.snapshot) return index
      if (index) this.#log.warn('brcache: the repository index has no snapshot, listing every VM instead', { dir: INDEX_DIR })
    } catch (error) {
      if ((!(error instanceof BrcacheError) && error.code !== 'EAGAIN') || REPOSITORY_ERRORS.has(error.code)) throw error
      this.#log.warn('brcache: unusable repository index, listing every VM instead', { reason: error.message })
    }
    return undefined
  }

  /** One VM's restore view (summaries), sorted by timestamp. */
  async listVmSummaries(vm, filter) {
    return this.#vmSummaries(vm, filter, [])
  }

  async #vmSummaries(vm, filter, unreadable) {
    const loaded = await this.#load(vm, 'summaries', filter)
    this.#repairInBackground(vm, loaded)
    for (const { name, reason } of loaded.unreadable) unreadable.push({ file: vmFile(vm, name), reason })
    return loaded.summaries(filter)
  }

  async #perVm(fn, listed) {
    const vms = listed ?? (await this.listAllVms())
    const lists = await mapLimit(vms, this.#concurrency, fn)
    const result = {}
    vms.forEach((vm, i) => {
      if (lists[i].length > 0) result[vm] = lists[i]
    })
    return result
  }

  // --- writing ---------------------------------------------------------------

  /**
   * Writes a restore point's metadata (create-only: a second backup of the
   * same VM in the same second is an error, never an overwrite), then
   * records it in the VM's cache. Returns its key (XO's backup id).
   */
  async writeVmBackupMetadata(vm, metadata) {
    this.#core.VmCache.empty(vm) // checks the VM folder name
    if (!Number.isFinite(metadata?.timestamp)) throw new TypeError('metadata.timestamp must be a number (ms)')
    const name = `${formatFilenameDate(metadata.timestamp)}.json`
    const key = metadataKey(vm, name)
    const bytes = Buffer.from(JSON.stringify(metadata))
    // The VM's lock is taken before the metadata file is written: a reader
    // that lists the folder while the cache is behind it then finds the
    // lock held and leaves the repair to this writer, instead of taking
    // the lock the writer is about to need. The backup itself never waits
    // on the cache: without the lock, the file is written all the same.
    const release = this.#immutable ? undefined : await this.#lockOrWarn(vm, 'write')
    try {
      try {
        await this.#handler.writeFile(vmFile(vm, name), bytes, { exclusive: true })
      } catch (error) {
        if (error.code === 'EEXIST') {
          throw annotate(error, `a restore point of VM ${vm} already exists at ${name}`)
        }
        throw annotate(error, `cannot write ${vmFile(vm, name)}`)
      }
      if (release) await this.#updateCache(vm, 'write', (cache) => cache.add(key, bytes), { locked: true, edit: { added: [[name, bytes]] } })
    } finally {
      await release?.()
    }
    return key
  }

  /**
   * The VM's lock for a write (creating the folder of a VM's first backup,
   * which the lock lives in), or undefined, logged, when it cannot be had:
   * the cache update is then left to the next check.
   */
  async #lockOrWarn(vm, reason) {
    try {
      try {
        return await this.#lock(vm)
      } catch (error) {
        // A delete never brings a vanished VM folder back.
        if (error.code !== 'ENOENT' || reason !== 'write') throw error
        await this.#handler.mkdir(vmDir(vm))
        return await this.#lock(vm)
      }
    } catch (error) {
      if (REPOSITORY_ERRORS.has(error.code)) throw error
      this.#log.warn('brcache: the cache was not updated; the next check will repair it', {
        file: vmFile(vm, CACHE_FILE),
        operation: reason,
        reason: error.message,
      })
      return undefined
    }
  }

  /**
   * Deletes restore points: their metadata first (so nothing lists a half
   * deleted backup), then the data files they name (`.xva` and its
   * checksum; VHDs are left to a clean step), then their cache entries.
   * Every path is checked before anything is deleted.
   */
  async deleteVmBackups(paths) {
    const targets = [...paths].map((path) => {
      const where = splitMetadataPath(path)
      if (!where) {
        throw new BrcacheError({ code: 'INVALID_KEY', message: `${JSON.stringify(path)} is not a restore point's metadata path` })
      }
      // The core refuses any path outside the VM folder.
      this.#core.VmCache.empty(where.vm).remove([path])
      return { ...where, key: metadataKey(where.vm, where.name) }
    })
    const keysByVm = new Map()
    for (const { vm, name, key } of targets) keysByVm.set(vm, [...(keysByVm.get(vm) ?? []), { name, key }])
    // Per VM, under its lock as for a write (see writeVmBackupMetadata):
    // files first, so nothing lists a half-deleted backup, then the cache.
    await mapLimit([...keysByVm], this.#concurrency, async ([vm, points]) => {
      const release = this.#immutable ? undefined : await this.#lockOrWarn(vm, 'delete')
      try {
        await mapLimit(points, this.#concurrency, ({ name }) => this.#deleteFiles(vm, name))
        const keys = points.map(({ key }) => key)
        const edit = { removed: points.map(({ name }) => name) }
        if (release) await this.#updateCache(vm, 'delete', (cache) => cache.remove(keys), { locked: true, edit })
      } finally {
        await release?.()
      }
    })
  }

  async #deleteFiles(vm, name) {
    let metadata
    try {
      metadata = JSON.parse(decoder.decode(await this.#handler.readFile(vmFile(vm, name))))
    } catch (error) {
      // Already gone, or unreadable: the metadata goes anyway, and its
      // data files are an orphan for the clean step to find.
      if (error.code !== 'ENOENT' && !(error instanceof SyntaxError) && !isUndecryptable(error)) {
        throw annotate(error, `cannot read ${vmFile(vm, name)}`)
      }
    }
    await this.#unlinkIfPresent(vmFile(vm, name))
    const xva = typeof metadata?.xva === 'string' ? metadata.xva.replace(/^\.\//, '') : undefined
    if (metadata?.mode === 'full' && xva) {
      if (xva.includes('/') || xva.startsWith('.') || xva.includes('\\')) {
        this.#log.warn('brcache: not deleting a data file outside the VM folder', { file: vmFile(vm, name), xva: metadata.xva })
        return
      }
      await this.#unlinkIfPresent(vmFile(vm, xva))
      await this.#unlinkIfPresent(vmFile(vm, `${xva}.checksum`))
    }
  }

  async #unlinkIfPresent(path) {
    try {
      await this.#handler.unlink(path)
    } catch (error) {
      if (error.code !== 'ENOENT') throw annotate(error, `cannot delete ${path}`)
    }
  }

  // --- checking --------------------------------------------------------------

  /**
   * Reconciles a VM's cache with its folder. Reports stale entries (file
   * gone), missing ones (file not in the cache) and unreadable metadata;
   * with `repair`, reads only what is missing and writes the repaired cache
   * (never in a dry run, never on an immutable repository). With `deep`,
   * also checks that the data files each restore point names exist.
   */
  async checkVm(vm, { repair = false, dryRun = false, deep = false } = {}) {
    const write = repair && !dryRun && !this.#immutable
    const release = write ? await this.#lock(vm) : undefined
    try {
      const loaded = await this.#load(vm)
      const report = this.#report(vm, loaded)
      if (deep) report.incomplete = await this.#incomplete(vm, loaded.cache)
      if (write && loaded.changed) {
        await this.#writeCache(vm, loaded.cache, loaded.previousGeneration)
        report.repaired = true
      }
      return report
    } finally {
      await release?.()
    }
  }

  /** `{ [vm]: report }` for every VM folder. */
  async checkAll(options) {
    const vms = await this.listAllVms()
    const reports = await mapLimit(vms, this.#concurrency, (vm) => this.checkVm(vm, options))
    return Object.fromEntries(vms.map((vm, i) => [vm, reports[i]]))
  }

  #report(vm, { cache, plan, unreadable, cacheError, fastPath, writing = [] }) {
    const key = (name) => metadataKey(vm, name)
    const missing = plan.missing.filter((name) => !writing.includes(name))
    return {
      vm,
      entries: cache.size,
      fastPath,
      cacheError,
      stale: plan.stale.map(key),
      missing: missing.map(key),
      unreadable: unreadable.map(({ name, reason }) => ({ id: key(name), reason })),
      writing: writing.map(key).sort(),
      coherent: plan.stale.length === 0 && missing.length === 0 && unreadable.length === 0 && !cacheError,
      repaired: false,
    }
  }

  async #incomplete(vm, cache) {
    const incomplete = []
    await mapLimit(cache.records(), this.#concurrency, async (record) => {
      const missing = []
      for (const file of dataFiles(record)) {
        if (!file) {
          missing.push('(a data path outside the VM folder)')
          continue
        }
        try {
          await this.#handler.stat(vmFile(vm, file))
        } catch (error) {
          if (error.code !== 'ENOENT') throw annotate(error, `cannot check ${vmFile(vm, file)}`)
          missing.push(file)
        }
      }
      if (missing.length > 0) incomplete.push({ id: record.id, missing })
    })
    return incomplete.sort((a, b) => (a.id < b.id ? -1 : 1))
  }

  // --- the cache, read side ----------------------------------------------------

  /**
   * `{ bytes }` of a VM's cache, `{}` when there is none, or `{ error }`
   * (its message) when it does not decrypt: a cache to rebuild.
   */
  async #readCache(vm) {
    const path = vmFile(vm, CACHE_FILE)
    try {
      return { bytes: await this.#handler.readFile(path) }
    } catch (error) {
      if (error.code === 'ENOENT') return {}
      if (REPOSITORY_ERRORS.has(error.code)) throw error
      if (isUndecryptable(error)) return { error: error.message }
      // The folder listing is the truth and still reachable: treat the
      // cache as unusable rather than failing the listing.
      this.#log.warn('brcache: cannot read the cache, using the metadata files', { file: path, reason: error.message })
      return {}
    }
  }

  /** `[cache, listing]`: the VM's cache (as #readCache gives it) and its folder, read at once. */
  #read(vm) {
    return Promise.all([this.#readCache(vm), this.#listVmFolder(vm)])
  }

  async #listVmFolder(vm) {
    try {
      return await this.#handler.list(vmDir(vm))
    } catch (error) {
      // A VM folder that is gone has no restore points; any other failure
      // must not pass for "no backups".
      if (error.code === 'ENOENT') return []
      throw annotate(error, `cannot list ${vmDir(vm)}`)
    }
  }

  /**
   * Reads metadata files. A file gone since the listing is skipped; a
   * folder where a file should be is unreadable metadata, reported like a
   * file that does not parse; any other failure is an error, never a
   * restore point silently missing.
   */
  async #readMetadata(vm, names) {
    const files = new Map()
    const failed = []
    await mapLimit(names, this.#concurrency, async (name) => {
      try {
        files.set(name, await this.#handler.readFile(vmFile(vm, name)))
      } catch (error) {
        if (error.code === 'EISDIR') failed.push({ name, reason: `${vmFile(vm, name)} is a folder, not a file` })
        else if (isUndecryptable(error)) failed.push({ name, reason: error.message, undecryptable: true })
        else if (error.code !== 'ENOENT') throw annotate(error, `cannot read ${vmFile(vm, name)}`)
      }
    })
    return { files, failed }
  }

  /**
   * A VM's cache made coherent with its folder, in memory: the fast path
   * when the header's fingerprint matches the listing, else reconcile and
   * read only what is missing; an unusable cache is rebuilt.
   *
   * `want` says what the caller needs, so the fast path does only that
   * work: 'records' (plain JSON.parse of the body, keys checked by the
   * core), 'summaries' (the core's one-pass projection, with `filter`) or
   * 'cache' (a VmCache, for checks and writes).
   */
  async #load(vm, want = 'cache', filter = undefined, read = undefined) {
    const { VmCache, fastPath, readCacheHeader, decodeCache, checkKeys, summariesOf } = this.#core
    const file = vmFile(vm, CACHE_FILE)
    const options = { ...this.#limits, name: file }
    const [{ bytes, error: unreadableCache }, listing] = read ?? (await this.#read(vm))
    const coherent = { stale: [], missing: [], coherent: true }
    let cacheError = unreadableCache
    if (cacheError) this.#log.warn('brcache: unusable cache, rebuilding it from the metadata files', { file, reason: cacheError })
    if (bytes && this.#fastPath(fastPath, bytes, listing)) {
      try {
        if (want === 'records') {
          const body = decodeCache(bytes, options)
          const keys = Object.keys(body)
          checkKeys(vm, keys, file)
          const records = keys.map((key) => stamp(body[key], key.startsWith('/') ? key : `/${key}`))
          return { records: () => records, plan: coherent, unreadable: [], fastPath: true, changed: false }
        }
        if (want === 'summaries') {
          const summaries = summariesOf(vm, bytes, filter, options)
          return { summaries: () => summaries, plan: coherent, unreadable: [], fastPath: true, changed: false }
        }
        const cache = VmCache.decode(vm, bytes, options)
        return { cache, plan: coherent, unreadable: [], fastPath: true, changed: false, previousGeneration: cache.generation }
      } catch (error) {
        if (!(error instanceof BrcacheError)) throw error
        // A header that vouches for a body that does not hold: rebuild.
      }
    }
    let cache
    let previousGeneration = 0
    if (bytes) {
      try {
        cache = VmCache.decode(vm, bytes, options)
        previousGeneration = cache.generation
      } catch (error) {
        if (!(error instanceof BrcacheError)) throw error
        cacheError = error.message
        this.#log.warn('brcache: unusable cache, rebuilding it from the metadata files', { file, reason: error.message })
        try {
          previousGeneration = readCacheHeader(bytes)?.generation ?? 0
        } catch {
          // Not even a readable header: generations start over.
        }
      }
    }
    const repaired = cache ?? VmCache.empty(vm)
    const plan = repaired.reconcile(listing)
    const loaded = {
      writing: [],
      cache: repaired,
      records: () => repaired.records(),
      summaries: (f) => repaired.summaries(f),
      plan,
      unreadable: [],
      fastPath: false,
      cacheError,
      previousGeneration,
    }
    if (plan.coherent) {
      // Coherent, but without a fingerprint that says so (an XO-written
      // cache) or unusable: rewriting it lets the next check take the fast
      // path. An empty folder without a cache needs none.
      loaded.changed = cache ? cache.recordedFingerprint() !== cache.fingerprint() : Boolean(bytes ?? unreadableCache)
      return loaded
    }
    const { files, failed } = await this.#readMetadata(vm, plan.missing)
    // A file that does not decrypt may be one being written too (XO
    // writes in place on encrypted repositories as well): cut short.
    const unparsed = [...repaired.apply(plan, files).filter(({ name }) => files.has(name)), ...failed.filter((f) => f.undecryptable)]
    loaded.writing = await this.#beingWritten(vm, unparsed)
    loaded.unreadable = [...unparsed, ...failed.filter((f) => !f.undecryptable)]
      .filter(({ name }) => !loaded.writing.includes(name))
      .map(({ name, reason }) => ({ name, reason }))
    for (const { name, reason } of loaded.unreadable) {
      this.#log.warn('brcache: unreadable metadata left out of the cache', { file: vmFile(vm, name), reason })
    }
    loaded.changed = true
    return loaded
  }

  /**
   * The names of `unparsed` (metadata files read that do not parse) that
   * are young enough to be a write in progress: Xen Orchestra writes
   * metadata in place, and so does any writer on a share without atomic
   * create. They are left out of the cache and of the reports, as temp
   * files are, until they parse or grow old (then they are unreadable).
   */
  async #beingWritten(vm, unparsed) {
    const writing = []
    await mapLimit(unparsed, this.#concurrency, async ({ name }) => {
      try {
        const { mtimeMs } = await this.#handler.stat(vmFile(vm, name))
        if (Date.now() - mtimeMs < BEING_WRITTEN_MS) writing.push(name)
      } catch (error) {
        if (error.code === 'ENOENT') writing.push(name) // gone since: not a restore point either
        else throw annotate(error, `cannot stat ${vmFile(vm, name)}`)
      }
    })
    if (writing.length > 0) this.#log.debug('brcache: metadata being written, not listed yet', { vm, files: writing.sort() })
    return writing
  }

  #fastPath(fastPath, bytes, listing) {
    try {
      return fastPath(bytes, listing)
    } catch (error) {
      if (error instanceof BrcacheError) return false // not even a gzip header
      throw error
    }
  }

  // --- the cache, write side ---------------------------------------------------

  #lock(vm, options) {
    return this.#handler.lock(vmFile(vm, CACHE_FILE), { stale: this.#lockStaleMs, ...options })
  }

  async #writeCache(vm, cache, previousGeneration) {
    cache.continueAfter(previousGeneration)
    await this.#writeCacheBytes(vm, cache.commit())
  }

  /**
   * The write path's fast way, under the VM's lock: when the cache's
   * header proves it true to the folder as it was before this writer's
   * change (`edit`: `{ added: [[name, bytes]], removed: [names] }`), the
   * core splices the change into its compressed bytes, recompressing only
   * what changed, and the index segment comes from those bytes in one
   * pass. False when it cannot (no header, another writer's change in the
   * folder, a cache written otherwise): the caller writes it whole.
   */
  async #spliced(vm, [{ bytes }, listing], { added = [], removed = [] }) {
    if (!bytes) return false
    const next = this.#core.spliceCache(vm, bytes, listing, added, removed)
    if (!next) return false
    await this.#writeCacheBytes(vm, next)
    await this.#publish(vm, () => this.#core.indexSegmentOf(vm, next, { ...this.#limits, name: vmFile(vm, CACHE_FILE) }))
    return true
  }

  async #writeCacheBytes(vm, bytes) {
    const path = vmFile(vm, CACHE_FILE)
    await this.#handler.writeFile(path, bytes)
    // Under the lock, a temp file of the cache is a dead writer's; other
    // temps (metadata being written, without this lock) only when old.
    try {
      await this.#handler.cleanTemps(vmDir(vm), { anyAgeFor: [CACHE_FILE] })
    } catch (error) {
      this.#log.debug('brcache: could not clean temp files', { dir: vmDir(vm), reason: error.message })
    }
  }

  /**
   * Applies `mutate` to the latest cache of `vm` under the VM's lock:
   * re-read, (rebuild if unusable), mutate, write atomically. A failure is
   * logged and leaves the old cache as it was; the next listing or check
   * notices the difference and repairs it. `locked`: the caller holds the
   * lock already.
   */
  async #updateCache(vm, reason, mutate, { locked = false, edit } = {}) {
    let release
    try {
      if (!locked) release = await this.#lock(vm)
      const read = await this.#read(vm)
      if (edit && (await this.#spliced(vm, read, edit))) return
      const loaded = await this.#load(vm, 'cache', undefined, read)
      mutate(loaded.cache)
      // A cache without a generation of its own (none yet, unusable, or
      // rewritten by XO) starts again from 0: its segments would then lose
      // every fold to the entry the index still holds for the VM, hiding
      // this write. Continue after that entry instead.
      if (loaded.previousGeneration === 0) loaded.cache.continueAfter(await this.#indexedGeneration(vm))
      await this.#writeCache(vm, loaded.cache, loaded.previousGeneration)
      // Published under the VM's lock: the VM's segments then follow its
      // cache generations in order.
      await this.#publish(vm, () => loaded.cache.indexSegment())
    } catch (error) {
      if (error instanceof BrcacheError && error.code === 'INVALID_KEY') throw error
      this.#log.warn('brcache: the cache was not updated; the next check will repair it', {
        file: vmFile(vm, CACHE_FILE),
        operation: reason,
        reason: error.message,
      })
    } finally {
      await release?.()
    }
  }

  // --- the repository-wide index ----------------------------------------------

  async #indexActive() {
    if (this.#indexMode === false) return false
    return this.#indexMode === true || (await this.#index.exists())
  }

  /** The cache generation the index holds for `vm` (0 if none, or no usable index). */
  async #indexedGeneration(vm) {
    try {
      if (!(await this.#indexActive())) return 0
      return (await this.#index.read())?.vmGeneration(vm) ?? 0
    } catch (error) {
      this.#log.debug('brcache: cannot read the repository index', { vm, reason: error.message })
      return 0
    }
  }

  /**
   * Publishes a VM's index segment after its cache was written, and
   * compacts when segments pile up. A failure is logged: the index only
   * lags, and the next check catches it up.
   */
  async #publish(vm, segment) {
    let published = false
    try {
      if (!(await this.#indexActive())) return
      await this.#index.publish(segment())
      published = true
      if (await this.#index.shouldCompact()) await this.#index.compact()
    } catch (error) {
      if (published) {
        // The index is right, with one more segment to read: only the
        // compaction failed (the next writer or check --repair retries it).
        this.#log.warn('brcache: the index segment was published, but the index compaction failed; the next write or check --repair retries it', {
          vm,
          step: 'compaction',
          reason: error.message,
        })
      } else {
        this.#log.warn('brcache: the repository index was not updated (its segment was not published); the next check will catch up', {
          vm,
          step: error.step ?? 'publish',
          reason: error.message,
        })
      }
    }
  }

  /**
   * Compares the index with every VM folder's cache (generation and
   * fingerprint from its header) and, with `repair`, publishes a fresh
   * entry for every VM that changed behind the index's back (Xen Orchestra
   * writes caches without segments) and records vanished VM folders.
   * Returns `{ exists, drift: { [vm]: 'unknown' | 'behind' | 'gone' }, repaired }`,
   * plus `damaged: [file]` for segments that did not decode (a repair
   * compacts them away), or `unusable` when the snapshot does not (a
   * repair rebuilds the index).
   */
  async checkIndex({ repair = false, dryRun = false } = {}) {
    let index
    try {
      index = await this.#index.read()
    } catch (error) {
      if (!(error instanceof BrcacheError) || REPOSITORY_ERRORS.has(error.code)) throw error
      this.#log.warn('brcache: unusable repository index', { reason: error.message })
      if (repair && !dryRun && !this.#immutable) return { exists: true, drift: {}, repaired: true, ...(await this.buildIndex()) }
      return { exists: true, unusable: error.message, drift: {}, repaired: false }
    }
    if (index === undefined) return { exists: false, drift: {}, repaired: false }
    if (!index.plan.snapshot) {
      // Listings do not use an index without a snapshot (see
      // #indexForListing): a build or compaction that failed, or segments
      // published before any. A repair completes it.
      const unusable = `${INDEX_DIR} has no snapshot (a build or compaction failed, or none was made yet)`
      this.#log.warn('brcache: repository index without a snapshot', { dir: INDEX_DIR })
      if (repair && !dryRun && !this.#immutable) return { exists: true, noSnapshot: true, drift: {}, repaired: true, ...(await this.buildIndex()) }
      return { exists: true, noSnapshot: true, unusable, drift: {}, repaired: false }
    }
    const { drift, repaired } = await this.#reconcileIndex(index, repair && !dryRun && !this.#immutable)
    const damaged = index.unreadable().map(({ name }) => `${INDEX_DIR}/${name}`)
    return { exists: true, drift, repaired, ...(damaged.length > 0 && { damaged }) }
  }

  /** checkIndex's work on an index read: `{ drift, repaired }`. */
  async #reconcileIndex(index, repair) {
    const vms = await this.listAllVms()
    const states = {}
    await mapLimit(vms, this.#concurrency, async (vm) => {
      const { bytes, error } = await this.#readCache(vm)
      let header = null
      try {
        header = bytes ? this.#core.readCacheHeader(bytes) : error ? null : undefined
      } catch {
        header = null // not even a gzip header: certainly behind
      }
      states[vm] = header === undefined ? null : [header?.generation ?? 0, header?.fingerprint ?? null]
    })
    const drift = index.drift(states)
    const damaged = index.unreadable().length > 0
    // Segments piled past the compaction point (writers' compactions
    // failed) are compacted too.
    const write = repair && (Object.keys(drift).length > 0 || damaged || index.plan.shouldCompact)
    if (write) {
      await mapLimit(Object.entries(drift), this.#concurrency, async ([vm, kind]) => {
        if (kind === 'gone') return this.#index.publish(index.goneSegment(vm))
        // The cache is rewritten past the generation the index knows (it
        // went back to 0 if XO rewrote it), then published as usual.
        await this.#updateCache(vm, 'index', (cache) => cache.continueAfter(index.vmGeneration(vm) ?? 0))
      })
      // The compaction also deletes what did not decode: every VM's entry
      // now agrees with its cache, so a cut segment holds nothing needed.
      return { drift, repaired: true, compaction: await this.#index.compact({ dropUnreadable: true }) }
    }
    return { drift, repaired: false }
  }

  /**
   * Builds (or rebuilds) the index from the VM caches, not from the
   * metadata files: every cache is checked (and repaired), then the caches'
   * entries become a new snapshot that outranks whatever index was there
   * (see IndexStore#rebuild), without reading it.
   */
  async buildIndex() {
    if (this.#immutable) throw new Error('an immutable repository gets no index')
    const reports = await this.checkAll({ repair: true })
    const vms = Object.keys(reports)
    const fromCaches = await mapLimit(vms, this.#concurrency, async (vm) => (await this.#load(vm)).cache.indexSegment())
    let compaction = await this.#index.rebuild(fromCaches)
    // Segments left from before the rebuild were folded too: one of a VM
    // folder now gone, or of a generation above its cache's (a cache XO
    // rewrote starts again at 0), would win over the fresh entry. Catch up
    // as check does, so that the rebuilt index agrees with every cache.
    const index = await this.#index.read()
    if (index) compaction = (await this.#reconcileIndex(index, true)).compaction ?? compaction
    return { vms: vms.length, generation: compaction?.generation }
  }

  /**
   * After a listing found a cache to repair: write the repair if the lock
   * is free and nobody wrote the cache since it was read. Readers never
   * wait for the lock, and a failed repair costs nothing but a later one.
   */
  #repairInBackground(vm, loaded) {
    if (this.#immutable || !loaded.changed) return
    const task = (async () => {
      let release
      try {
        release = await this.#lock(vm, { retries: 0 })
      } catch {
        return // somebody else is writing this cache
      }
      try {
        const { bytes } = await this.#readCache(vm)
        let current = 0
        try {
          current = bytes ? this.#core.readCacheHeader(bytes)?.generation ?? 0 : 0
        } catch {
          // Not even a readable header (an empty or non-gzip file): generation
          // 0, as #load counted it, so an unusable cache gets repaired too.
        }
        if (current !== loaded.previousGeneration) return
        // The listing was taken in parallel with the cache read, so it may
        // predate the cache: an entry a writer added in between would look
        // stale and the repair would undo that writer's update. Write only
        // what the folder, listed now under the lock, still agrees with.
        // (Unreadable metadata files stay out of the cache, as in checkVm.)
        const repaired = loaded.cache.copy()
        const plan = repaired.reconcile(await this.#listVmFolder(vm))
        const unreadable = new Set([...loaded.unreadable.map(({ name }) => name), ...loaded.writing])
        if (plan.stale.length > 0 || plan.missing.some((name) => !unreadable.has(name))) return
        await this.#writeCache(vm, repaired, loaded.previousGeneration)
      } catch (error) {
        this.#log.debug('brcache: background repair failed', { vm, reason: error.message })
      } finally {
        await release()
      }
    })()
    this.#pending.add(task)
    task.finally(() => this.#pending.delete(task))
  }

  #pending = new Set()

  /** Waits for background repairs (tests, and a clean shutdown). */
  async settle() {
    while (this.#pending.size > 0) await Promise.all([...this.#pending])
  }
}

/** A record as handed out: it names the file its (checked) key names. */
function stamp(record, key) {
  record._filename = key
  record.id = key
  if (typeof record.isImmutable !== 'boolean') record.isImmutable = false
  return record
}

/** The data files a restore point names, relative to its VM folder. */
function dataFiles(record) {
  const inside = (path) => {
    if (typeof path !== 'string') return undefined
    const clean = path.replace(/^\.\//, '')
    const parts = clean.split('/')
    return clean && parts.every((p) => p && p !== '.' && p !== '..' && !p.includes('\\')) ? clean : undefined
  }
  if (record.mode === 'full') return record.xva === undefined ? [] : [inside(record.xva)]
  return Object.values(record.vhds ?? {}).map(inside)
}
