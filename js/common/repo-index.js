// The repository-wide index on the share (see crates/core/src/index/ for
// the format and its rules): reading it in two round trips, publishing a
// VM's segment, compacting. The core decides what a listing means, what a
// fold gives and what a compaction deletes; this file does the I/O.

import { call } from './codec.js'

export const INDEX_DIR = 'xo-vm-backups/.brcache-index'

/** The index glue over a backend (napi addon or wasm module). */
export function makeIndexApi(backend) {
  function wrap(handle, listedGeneration) {
    return {
      get generation() {
        return handle.generation
      },
      get unfolded() {
        return handle.unfolded
      },
      view: (filter) => JSON.parse(call(() => handle.viewJson(filter ? JSON.stringify(filter) : undefined))),
      unreadable: () => JSON.parse(handle.unreadableJson()).map(([name, reason]) => ({ name, reason })),
      // Named after the newest snapshot listed (see Loaded::compact).
      compaction: () => unwrapCompaction(handle.compaction(listedGeneration)),
      goneSegment: (vm) => handle.goneSegment(vm),
      vmGeneration: (vm) => handle.vmGeneration(vm) ?? null,
      drift: (caches) => JSON.parse(call(() => handle.driftJson(JSON.stringify(caches)))),
    }
  }
  const unwrapCompaction = (compaction) => ({ ...JSON.parse(compaction.summaryJson()), bytes: compaction.snapshot() })
  return {
    readPlan: (names) => JSON.parse(backend.indexReadPlan([...names])),
    /** Segments past which a writer compacts. */
    compactAfter: () => backend.indexCompactAfter(),
    /** The rebuilt index (see `rebuild` in the core): `{ name, generation, segmentsToDelete, bytes }`. */
    rebuild(listing, fromCaches, segments) {
      const entries = [...segments]
      return unwrapCompaction(
        call(() => backend.rebuildIndex([...listing], fromCaches, entries.map(([n]) => n), entries.map(([, b]) => b)), INDEX_DIR),
      )
    },
    segmentName() {
      const [high, low] = crypto.getRandomValues(new Uint32Array(2))
      return backend.indexSegmentName(Date.now(), high, low)
    },
    /** `plan`: the read plan the bytes come from (its newest generation names the next compaction). */
    load(snapshot, segments, plan) {
      const entries = [...segments]
      // An error is the snapshot's (segments that fail are set aside): name it.
      const file = plan?.snapshot ? `${INDEX_DIR}/${plan.snapshot}` : INDEX_DIR
      const handle = call(() => backend.loadIndex(snapshot ?? undefined, entries.map(([n]) => n), entries.map(([, b]) => b)), file)
      return wrap(handle, plan?.generation ?? handle.generation)
    },
  }
}

/**
 * An error of one step of the index's upkeep, named in the message and in
 * `step` ('publish', 'compaction', 'snapshot'), keeping the original code.
 */
export function indexStepError(error, step, what) {
  const wrapped = new Error(`${what}: ${error.message}`, { cause: error })
  wrapped.code = error.code
  wrapped.step = step
  return wrapped
}

export class IndexStore {
  #handler
  #api
  #log

  constructor(handler, api, log) {
    this.#handler = handler
    this.#api = api
    this.#log = log
  }

  /** The folder's names, or undefined when there is no index. */
  async #list() {
    try {
      return await this.#handler.list(INDEX_DIR)
    } catch (error) {
      if (error.code === 'ENOENT') return undefined
      throw error
    }
  }

  async exists() {
    return (await this.#list()) !== undefined
  }

  /** Whether enough segments wait for a writer to compact (one listing; the core sets the threshold). */
  async shouldCompact() {
    const names = await this.#list()
    return names !== undefined && this.#api.readPlan(names).shouldCompact
  }

  /** An index file's bytes, or undefined if it vanished (compacted away). */
  #readFile(name) {
    return this.#handler.readFile(`${INDEX_DIR}/${name}`).catch((error) => {
      if (error.code === 'ENOENT') return undefined
      throw error
    })
  }

  /**
   * The index as it is now, or undefined when there is none: the folder is
   * listed, then the newest snapshot and every segment are read at once.
   * A file that vanished meanwhile was compacted away: read again. A
   * newest snapshot that does not decode is an error (a BrcacheError),
   * never a reason to use an older one: the compaction that wrote it may
   * have deleted segments only it holds, so an older snapshot could list
   * restore points since deleted, or miss new ones. Listings then read the
   * VM caches, and check --repair rebuilds the index.
   */
  async read({ attempts = 5 } = {}) {
    for (let attempt = 1; ; attempt++) {
      const names = await this.#list()
      if (names === undefined) return undefined
      const plan = this.#api.readPlan(names)
      const [snapshot, ...segments] = await Promise.all([plan.snapshot ? this.#readFile(plan.snapshot) : null, ...plan.segments.map((n) => this.#readFile(n))])
      if (snapshot === undefined || segments.includes(undefined)) {
        if (attempt < attempts) continue
        throw Object.assign(new Error(`${INDEX_DIR} keeps changing while it is read`), { code: 'EAGAIN' })
      }
      const index = this.#api.load(
        snapshot,
        plan.segments.map((name, i) => [name, segments[i]]),
        plan,
      )
      for (const { name, reason } of index.unreadable()) {
        this.#log.warn('brcache: unreadable index segment skipped', { file: `${INDEX_DIR}/${name}`, reason })
      }
      return Object.assign(index, { plan })
    }
  }

  /**
   * Publishes one segment, under a name no one else picks (so it needs no
   * create-only write), written atomically: a crash never leaves half a
   * segment for readers to skip forever.
   */
  async publish(bytes) {
    const name = this.#api.segmentName()
    try {
      await this.#handler.writeFile(`${INDEX_DIR}/${name}`, bytes)
    } catch (error) {
      throw indexStepError(error, 'publish', `cannot publish the index segment ${INDEX_DIR}/${name}`)
    }
    return name
  }

  /**
   * Replaces the index with one built from `fromCaches` (each VM cache's
   * segment, read just now) and the segments listed, never reading the
   * snapshot, which may be what is broken. The new snapshot outranks every
   * one listed and is created like a compaction's; should a compaction
   * take its generation first, the rebuild starts again from a new listing.
   */
  async rebuild(fromCaches, { attempts = 5 } = {}) {
    let existed
    for (let attempt = 1; ; attempt++) {
      const listed = await this.#list()
      existed ??= listed !== undefined
      const names = listed ?? []
      const plan = this.#api.readPlan(names)
      const segments = await Promise.all(
        plan.segments.map((name) =>
          this.#handler.readFile(`${INDEX_DIR}/${name}`).then(
            (bytes) => [name, bytes],
            (error) => (error.code === 'ENOENT' ? undefined : Promise.reject(error)),
          ),
        ),
      )
      // A vanished segment was folded by a compaction: it only matters that
      // the rebuild outranks that compaction's snapshot, which it does.
      const rebuilt = this.#api.rebuild(names, fromCaches, segments.filter(Boolean))
      let created
      try {
        created = await this.#create(rebuilt.name, rebuilt.bytes)
      } catch (error) {
        // A build that made the index folder and failed takes it away
        // again: an index folder without a snapshot would make every
        // writer publish segments that no listing reads.
        const removed = !existed && (await this.#handler.rmdir(INDEX_DIR).then(() => true, () => false))
        throw indexStepError(
          error,
          'snapshot',
          `cannot write the index snapshot ${INDEX_DIR}/${rebuilt.name}, the index was not built${removed ? ' (its empty folder was removed)' : ''}`,
        )
      }
      if (created) {
        await this.#unlinkAll([...rebuilt.segmentsToDelete, plan.snapshot, ...plan.oldSnapshots].filter(Boolean))
        return { generation: rebuilt.generation, folded: rebuilt.segmentsToDelete.length }
      }
      if (attempt === attempts) {
        throw Object.assign(new Error(`${INDEX_DIR}: compactions kept taking the rebuilt snapshot's name`), { code: 'EAGAIN' })
      }
    }
  }

  /** Creates an index file; false if the name is taken. */
  async #create(name, bytes) {
    try {
      await this.#handler.writeFile(`${INDEX_DIR}/${name}`, bytes, { exclusive: true })
      return true
    } catch (error) {
      if (error.code === 'EEXIST') return false
      throw error
    }
  }

  async #unlinkAll(names) {
    for (const name of names) {
      await this.#handler.unlink(`${INDEX_DIR}/${name}`).catch((error) => {
        if (error.code !== 'ENOENT') throw error
      })
    }
  }

  /**
   * Folds every segment into a new snapshot (`dropUnreadable`: and deletes
   * the segments that do not decode, once a check has republished every
   * VM whose entry disagreed with its cache). Snapshots are created at the
   * next generation, create-only: of two compactions of the same snapshot,
   * the second fails to create its file and deletes nothing.
   */
  async compact({ dropUnreadable = false } = {}) {
    const index = await this.read()
    if (index === undefined) return undefined
    const compaction = index.compaction()
    let created
    try {
      created = await this.#create(compaction.name, compaction.bytes)
    } catch (error) {
      throw indexStepError(error, 'compaction', `cannot write the index snapshot ${INDEX_DIR}/${compaction.name} (compaction; the segments stay and are still read)`)
    }
    if (!created) return undefined
    const unreadable = dropUnreadable ? index.unreadable().map(({ name }) => name) : []
    await this.#unlinkAll([...compaction.segmentsToDelete, ...index.plan.oldSnapshots, ...unreadable])
    return { generation: compaction.generation, folded: compaction.segmentsToDelete.length }
  }
}
