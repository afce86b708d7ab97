// The repository API a backup server calls: list, write, delete and check
// the restore points of a backup repository, keeping each VM folder's
// cache.json.gz (and the repository index) true.
//
// Every operation is the core's (crates/core/src/ops/): it decides what to
// read, what a listing means, when a cache is rewritten and its index
// segment published, what a failure leaves behind. This file starts
// operations, performs their requests through the handler (drive, in
// operations.js) and shapes their answers for JS. The promises they keep,
// where Xen Orchestra breaks them, are the README's ("What brcache
// promises"): listings check every cache against its folder; a failed read
// is an error, never "no backups"; cache writes are atomic and serialised
// by a lock on the share, with no lost update; an immutable repository
// never gets a cache written; an encrypted one is read and written as Xen
// Orchestra encrypts it (common/encrypted-share.js), and without its key it is
// an error and nothing is written to it.

import { drive } from '../common/operations.js'
import { EncryptedShare, openHandler } from './handlers/index.js'
import * as defaultCore from './core.js'

// Verdicts on the whole repository (its encryption): never taken for one
// unreadable file.
const REPOSITORY_ERRORS = new Set(['ENCRYPTED', 'NOT_ENCRYPTED', 'WRONG_ENCRYPTION_KEY', 'UNSUPPORTED_ENCRYPTION', 'INVALID_ENCRYPTION_KEY'])

const silent = { debug() {}, info() {}, warn() {}, error() {} }

/**
 * Opens a backup repository.
 *
 * @param {string | object} pathOrHandler a folder (local or a mounted NFS/SMB share), an
 *   `s3://<key>:<secret>@<host>:<port>/<bucket>/<prefix>` URL, or a handler
 * @param {object} [options]
 * @param {number} [options.concurrency=20] calls on the share at once, per operation: the
 *   default is what ten VM folders read at once (each cache beside its folder's listing) made
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
export async function listVmFolders(handler, core = defaultCore) {
  return drive(core.operations.start('listVms', { index: false }), handler)
}

/**
 * The listing of xo-vm-backups/ as the core's restore view reads it: the
 * VM folders and `<vm>.lock` for each VM whose lock shows, sorted. What a
 * server hands a reader that runs the core over it (the page of `brcache
 * serve`), so that the reader goes by the cache of a VM being written.
 */
export async function listBackupFolders(handler, core = defaultCore) {
  return drive(core.operations.start('listBackupFolders', { index: false }), handler)
}

function byTimestamp(a, b) {
  return (a.timestamp ?? 0) - (b.timestamp ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

/** A record as handed out: it names the file its (checked) key names. */
function stamp(record, key) {
  record._filename = key
  record.id = key
  if (typeof record.isImmutable !== 'boolean') record.isImmutable = false
  return record
}

/** A VM's records from a listing's answer (`{ object }` or `{ pairs }`), sorted by timestamp. */
function records(answer) {
  if (!answer) return []
  const pairs = answer.pairs ?? Object.entries(answer.object)
  return pairs.map(([key, record]) => stamp(record, key.startsWith('/') ? key : `/${key}`)).sort(byTimestamp)
}

export class Repository {
  #share
  #handler
  #core
  #settings
  #drive
  #pending = new Set()
  #probe
  #lockProbe
  #verifying
  #nextVerification
  #verifiedAt
  #verifiedAsOf
  #verifyEveryMs

  constructor(
    handler,
    {
      concurrency = 20,
      immutable = false,
      logger = silent,
      lockStaleMs = 10_000,
      core = defaultCore,
      limits = {},
      index = 'auto',
      encryptionKey,
      verifyEveryMs = 60_000,
    } = {},
  ) {
    this.#share = handler
    // Every byte an operation reads or writes goes through the
    // repository's encryption, so no write can happen before it is known.
    this.#handler = new EncryptedShare(handler, core.encryptionApi, encryptionKey)
    this.#core = core
    // Without locks (S3), the core keeps the index with records no two
    // writers need to order (deltas) and compacts it without deleting what
    // a concurrent compaction may still need.
    // On an immutable repository, `index` keeps its own index (create-only
    // files in epoch folders) rather than the writable one.
    this.#settings = { limits, immutable, index, locks: handler.supportsLocks !== false }
    this.#drive = { concurrency, logger: { ...silent, ...logger }, lockStaleMs }
    // Infinity: never in the background (a one-shot command, which asks
    // for a verified answer when it needs one). Counted from the object's
    // creation: an object made per request never verifies in the
    // background (each would read every cache); a long-lived one (a backup
    // server's) does, every verifyEveryMs at most.
    this.#verifyEveryMs = verifyEveryMs
    this.#verifiedAt = Date.now()
  }

  /** Runs one core operation through the (encrypting) handler. */
  async #run(kind, args, bytes) {
    await this.#probed()
    const operation = this.#core.operations.start(kind, this.#settings, args, bytes)
    return drive(operation, this.#handler, { ...this.#drive, repairs: (next) => this.#inBackground(next) })
  }

  /**
   * Without locks, whether the store refuses to create a name that exists
   * (an S3 store that honours If-None-Match; Garage does not), asked once
   * per repository object: then the index's snapshots are created
   * create-only under their generation's name, and what a compaction folded
   * goes at once (see the README, "No lock needed").
   */
  #probed() {
    if (this.#settings.locks) return undefined
    this.#probe ??= this.#probeShare()
    return this.#probe
  }

  /**
   * An S3 bucket with Object Lock is an immutable repository (as Xen
   * Orchestra detects it), found out before anything is written.
   */
  #lockProbed() {
    this.#lockProbe ??= (async () => {
      if (this.#settings.immutable || typeof this.#share.objectLocked !== 'function') return
      if ((await this.#share.objectLocked().catch(() => false)) === true) {
        this.#settings.immutable = true
        this.#drive.logger.info('brcache: the bucket has Object Lock on: an immutable repository (no cache written, create-only index)')
      }
    })()
    return this.#lockProbe
  }

  /**
   * An immutable store is never probed for conditional writes (the probe
   * object would stay, a billed version), which its index does not need.
   */
  async #probeShare() {
    await this.#lockProbed()
    if (this.#settings.immutable || typeof this.#share.conditionalWrites !== 'function') return
    const honoured = await this.#share.conditionalWrites().catch(() => false)
    this.#settings.createOnly = honoured === true
    this.#drive.logger.debug('brcache: conditional writes probed', { createOnly: this.#settings.createOnly })
  }

  /**
   * The repairs a listing found, written when the lock is free and nobody
   * wrote the cache since: readers never wait, and a failed repair costs
   * nothing but a later one.
   */
  #inBackground(operation) {
    this.#track(
      drive(operation, this.#handler, this.#drive).catch((error) => {
        this.#drive.logger.debug('brcache: background repair failed', { reason: error.message })
      }),
    )
  }

  /** Keeps `task` (which never rejects) for settle() until it ends. */
  #track(task) {
    this.#pending.add(task)
    task.finally(() => this.#pending.delete(task))
  }

  /** Waits for background repairs and verifications (tests, and a clean shutdown). */
  async settle() {
    while (this.#pending.size > 0) await Promise.all([...this.#pending])
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
    return this.#settings.index !== false && !this.#settings.immutable
  }

  /** Whether it is immutable as far as known yet: an S3 bucket's Object Lock shows after the first call (see isImmutable). */
  get immutable() {
    return this.#settings.immutable
  }

  /**
   * Whether the repository is immutable: opened so, or an S3 bucket with
   * Object Lock (asked once, and nothing else: no write probes). For a
   * process that reads the share itself and must know before it writes or
   * serves anything (`brcache serve`).
   */
  async isImmutable() {
    await this.#lockProbed()
    return this.#settings.immutable
  }

  // --- listing ---------------------------------------------------------------

  /** The VM folders: directories of xo-vm-backups/, not hidden, not locks. */
  async listAllVms() {
    return this.#run('listVms')
  }

  /** A VM's restore points (metadata records), sorted by timestamp. */
  async listVmBackups(vm, predicate) {
    const { vms } = await this.#run('listVm', { vm, want: 'records' })
    const list = records(vms[vm])
    return predicate ? list.filter(predicate) : list
  }

  /** `{ [vm]: restore points }`, VMs without restore points omitted. */
  async listAllVmBackups() {
    const { vms } = await this.#run('listAll', { want: 'records' })
    return Object.fromEntries(Object.entries(vms).map(([vm, answer]) => [vm, records(answer)]))
  }

  /**
   * The restore view: `{ [vm]: summaries }` (see the core's summary). From
   * the repository-wide index when there is one, else from every VM's
   * checked cache (see the core's `listing::restore_view`), whose first
   * listing makes the index in the background. `{ verified: true }`: see
   * restoreView.
   */
  async listSummaries(filter, options) {
    return (await this.restoreView(filter, options)).vms
  }

  /**
   * The restore view with what it could not read: `{ vms, unreadable }`,
   * `vms` as listSummaries returns it and `unreadable` the metadata files
   * found in the VM folders read that are not in it (`[{ file, reason }]`,
   * sorted): not JSON, not a restore point, or not decrypting. A listing
   * from the index reads no VM folder the index knows; `check` finds those.
   * With `vm`, that VM's alone (from its cache, as listVmSummaries).
   *
   * `fromIndex` says where the answer came from and `verified` whether it
   * is exact for writers that know nothing of the index (Xen Orchestra):
   * an answer from the index is not, until a verification (see verify)
   * has caught the index up; one runs in the background after such an
   * answer once the object has lived `verifyEveryMs` since it was made or
   * last verified (60 s by default). With `{ verified: true }`, the answer
   * waits for a verification that starts after the call.
   *
   * From the index, `notFromIndex` names the VMs answered from their caches
   * and folders instead (sorted): `locked` (a writer's lock showed, held or
   * left by one that died), `inDoubt` (an entry the index itself doubts)
   * and `unknown` (folders it has no entry for). Those answers are exact
   * whatever `verified` says of the others.
   */
  async restoreView(filter, { vm, verified = false } = {}) {
    if (vm !== undefined) {
      const { vms, unreadable } = await this.#run('listVm', { vm, want: 'summaries', filter })
      return { vms, unreadable, fromIndex: false, verified: true }
    }
    let answer = await this.#run('restoreView', { filter })
    if (answer.fromIndex && verified) {
      await this.verify()
      answer = await this.#run('restoreView', { filter })
    } else if (answer.fromIndex) {
      this.verifyInBackground()
    }
    const { vms, unreadable, fromIndex, notFromIndex } = answer
    // From the caches, each was checked against its folder; from the
    // index, only once a verification since the call has caught it up.
    const view = { vms, unreadable, fromIndex, verified: !fromIndex || verified }
    return fromIndex ? { ...view, notFromIndex } : view
  }

  /**
   * Makes the index exact for writers that know nothing of it (Xen
   * Orchestra rewrites caches without publishing): every VM folder's cache
   * is compared with the index, and every VM that changed behind its back
   * is caught up (its cache checked and republished). Resolves to the
   * check's report once done. Calls made while one runs share the next
   * one, which starts once it ends, so after every one of them: a server
   * asked for verified answers by many clients at once runs two, not one
   * per client.
   */
  async verify() {
    if (this.#verifying) {
      this.#nextVerification ??= (async () => {
        while (this.#verifying) await this.#verifying.catch(() => {})
        this.#nextVerification = undefined
        return this.#verifyNow()
      })()
      return this.#nextVerification
    }
    return this.#verifyNow()
  }

  async #verifyNow() {
    const started = Date.now()
    // An immutable repository's index is caught up with create-only
    // segments: its verification publishes (see the README).
    const running = this.#run('checkIndex', { repair: !this.#settings.immutable || this.#settings.index !== false })
    this.#verifying = running
    try {
      const report = await running
      // Caught up only if nothing was left behind: a drift the check could
      // not repair leaves the index as inexact as before.
      const drifted = Object.keys(report.drift).length > 0 || report.unusable || report.damaged?.length > 0
      if (report.exists && (report.repaired || !drifted)) this.#verifiedAsOf = started
      return report
    } finally {
      this.#verifying = undefined
      this.#verifiedAt = Date.now()
    }
  }

  /**
   * When the last verification that caught the index up began (ms since
   * the epoch), or undefined: the index holds what every VM cache said
   * then. Writes since may be missing until the next one.
   */
  get verifiedAsOf() {
    return this.#verifiedAsOf
  }

  /**
   * A verification in the background, if none runs and the last ended
   * `verifyEveryMs` ago or more (counted from the object's creation before
   * the first): what restoreView does after an answer from the index, for
   * a process that serves the index's files rather than its answers
   * (`brcache serve`). Its catch-up the next listing sees (see `verify`).
   * Returns whether one started.
   */
  verifyInBackground() {
    // (Infinity never lets a time pass the bound.)
    if (this.#verifying || Date.now() - this.#verifiedAt < this.#verifyEveryMs) return false
    this.#track(
      this.verify().catch((error) => {
        this.#drive.logger.warn('brcache: background verification of the repository index failed', { reason: error.message })
      }),
    )
    return true
  }

  /**
   * The VM table: `{ vms, unreadable, fromIndex }`, `vms` being
   * `{ [vm]: { name, count, modes: { full, delta }, lastBackup, size } }`
   * (VMs without restore points omitted): each VM's name (from its newest
   * restore point), restore points counted by mode, newest timestamp and
   * total size. From the index's table when there is one, reading the
   * table (sized by VMs) and the parts of only the VMs changed since its
   * last compaction; VMs the index does not know, doubts or sees locked
   * are read from their caches, as in restoreView. Without an index, from
   * every VM's checked cache. Like restoreView, an answer from the index
   * starts a background verification when one is due.
   */
  async vmTable() {
    const { vms, unreadable, fromIndex } = await this.#run('vmTable')
    if (fromIndex) this.verifyInBackground()
    return { vms, unreadable, fromIndex }
  }

  /**
   * One VM's restore view on demand: `{ summaries, unreadable, fromIndex }`.
   * From the index when there is one (its table, that VM's part and the
   * segments: a few dozen KiB whatever the VM count), by restoreView's
   * rules; else from the VM's checked cache, as listVmSummaries.
   */
  async vmRestoreView(vm, filter) {
    const { vms, unreadable, fromIndex } = await this.#run('vmRestoreView', { vm, filter })
    if (fromIndex) this.verifyInBackground()
    return { summaries: vms[vm] ?? [], unreadable, fromIndex }
  }

  /** One VM's restore view (summaries), sorted by timestamp. */
  async listVmSummaries(vm, filter) {
    return (await this.#run('listVm', { vm, want: 'summaries', filter })).vms[vm] ?? []
  }

  // --- writing ---------------------------------------------------------------

  /**
   * Writes a restore point's metadata (create-only: a second backup of the
   * same VM in the same second is an error, never an overwrite), then
   * records it in the VM's cache. Returns its key (XO's backup id).
   */
  async writeVmBackupMetadata(vm, metadata) {
    if (!Number.isFinite(metadata?.timestamp)) throw new TypeError('metadata.timestamp must be a number (ms)')
    const bytes = new TextEncoder().encode(JSON.stringify(metadata))
    return (await this.#run('writeBackup', { vm }, bytes)).key
  }

  /**
   * Deletes restore points: their metadata first (so nothing lists a half
   * deleted backup), then the data files they name (`.xva` and its
   * checksum; VHDs are left to a clean step), then their cache entries.
   * Every path is checked before anything is deleted.
   */
  async deleteVmBackups(paths) {
    await this.#run('deleteBackups', { paths: [...paths].map(String) })
  }

  // --- checking --------------------------------------------------------------

  /**
   * Reconciles a VM's cache with its folder. Reports stale entries (file
   * gone), missing ones (file not in the cache) and unreadable metadata;
   * with `repair`, reads only what is missing and writes the repaired cache
   * (never in a dry run, never on an immutable repository) and its index
   * segment. With `deep`, also checks that the data files each restore
   * point names exist.
   */
  async checkVm(vm, { repair = false, dryRun = false, deep = false } = {}) {
    return this.#run('checkVm', { vm, repair, dryRun, deep })
  }

  /** `{ [vm]: report }` for every VM folder. */
  async checkAll({ repair = false, dryRun = false, deep = false } = {}) {
    return this.#run('checkAll', { repair, dryRun, deep })
  }

  // --- the repository-wide index ----------------------------------------------

  /**
   * Compares the index with every VM folder's cache (generation and
   * fingerprint from its header) and, with `repair`, publishes a fresh
   * entry for every VM that changed behind the index's back (Xen Orchestra
   * writes caches without segments) and records vanished VM folders.
   * Returns `{ exists, drift: { [vm]: 'unknown' | 'behind' | 'gone' }, repaired }`,
   * plus `damaged: [file]` for segments that did not decode (a repair
   * compacts them away), `inDoubt: [vm]` for entries the index doubts
   * (listings read those VMs from their caches; a repair publishes their
   * views), or `unusable` when the snapshot does not decode (a repair
   * rebuilds the index).
   */
  async checkIndex({ repair = false, dryRun = false } = {}) {
    return this.#run('checkIndex', { repair, dryRun })
  }

  /**
   * Builds (or rebuilds) the index from the VM caches, not from the
   * metadata files: every cache is checked (and repaired), then the caches'
   * entries become a new snapshot that outranks whatever index was there.
   */
  async buildIndex() {
    if (this.#settings.immutable) throw new Error('an immutable repository gets no index build: its first listing makes its index (create-only files)')
    return this.#run('buildIndex')
  }
}
