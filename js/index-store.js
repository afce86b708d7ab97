// The repository-wide index on the share (see crates/core/src/index.rs for
// the format and its rules): reading it in two round trips, publishing a
// VM's segment, compacting. The core decides what a listing means, what a
// fold gives and what a compaction deletes; this file does the I/O.

import { call } from './codec.js'

export const INDEX_DIR = 'xo-vm-backups/.brcache-index'

/** The index glue over a native backend (napi addon or wasm module). */
export function makeIndexApi(native) {
  function wrap(handle) {
    return {
      get generation() {
        return handle.generation
      },
      get unfolded() {
        return handle.unfolded
      },
      view: (filter) => JSON.parse(call(() => handle.viewJson(filter ? JSON.stringify(filter) : undefined))),
      unreadable: () => JSON.parse(handle.unreadableJson()).map(([name, reason]) => ({ name, reason })),
      compaction: () => ({ ...JSON.parse(handle.compactionJson()), bytes: handle.compactedSnapshot() }),
      goneSegment: (vm) => handle.goneSegment(vm),
      vmGeneration: (vm) => handle.vmGeneration(vm) ?? null,
      drift: (caches) => JSON.parse(call(() => handle.driftJson(JSON.stringify(caches)))),
    }
  }
  return {
    readPlan: (names) => JSON.parse(native.indexReadPlan([...names])),
    segmentName() {
      const [high, low] = crypto.getRandomValues(new Uint32Array(2))
      return native.indexSegmentName(Date.now(), high, low)
    },
    load(snapshot, segments) {
      const entries = [...segments]
      return wrap(call(() => native.loadIndex(snapshot ?? undefined, entries.map(([n]) => n), entries.map(([, b]) => b)), INDEX_DIR))
    },
  }
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

  /** How many segments wait to be folded (one listing). */
  async segmentCount() {
    const names = await this.#list()
    return names === undefined ? 0 : this.#api.readPlan(names).segments.length
  }

  /** Deletes every snapshot (a rebuild, once every VM has a segment). */
  async dropSnapshots() {
    const names = (await this.#list()) ?? []
    const plan = this.#api.readPlan(names)
    for (const name of [plan.snapshot, ...plan.oldSnapshots].filter(Boolean)) {
      await this.#handler.unlink(`${INDEX_DIR}/${name}`).catch((error) => {
        if (error.code !== 'ENOENT') throw error
      })
    }
  }

  /**
   * The index as it is now, or undefined when there is none: the folder is
   * listed, then the newest snapshot and every segment are read at once.
   * A file that vanished meanwhile was compacted away: read again.
   */
  async read({ attempts = 5 } = {}) {
    for (let attempt = 1; ; attempt++) {
      const names = await this.#list()
      if (names === undefined) return undefined
      const plan = this.#api.readPlan(names)
      const read = (name) =>
        this.#handler.readFile(`${INDEX_DIR}/${name}`).catch((error) => {
          if (error.code === 'ENOENT') return undefined
          throw error
        })
      const [snapshot, ...segments] = await Promise.all([plan.snapshot ? read(plan.snapshot) : null, ...plan.segments.map(read)])
      if (snapshot === undefined || segments.includes(undefined)) {
        if (attempt < attempts) continue
        throw Object.assign(new Error(`${INDEX_DIR} keeps changing while it is read`), { code: 'EAGAIN' })
      }
      const index = this.#api.load(snapshot, plan.segments.map((name, i) => [name, segments[i]]))
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
    await this.#handler.writeFile(`${INDEX_DIR}/${name}`, bytes)
    return name
  }

  /**
   * Folds every segment into a new snapshot. Snapshots are created at the
   * next generation, create-only: of two compactions of the same snapshot,
   * the second fails to create its file and deletes nothing.
   */
  async compact() {
    const index = await this.read()
    if (index === undefined) return undefined
    const compaction = index.compaction()
    try {
      await this.#handler.writeFile(`${INDEX_DIR}/${compaction.name}`, compaction.bytes, { exclusive: true })
    } catch (error) {
      if (error.code === 'EEXIST') return undefined
      throw error
    }
    const obsolete = [...compaction.segmentsToDelete, ...index.plan.oldSnapshots]
    for (const name of obsolete) {
      await this.#handler.unlink(`${INDEX_DIR}/${name}`).catch((error) => {
        if (error.code !== 'ENOENT') throw error
      })
    }
    return { generation: compaction.generation, folded: compaction.segmentsToDelete.length }
  }
}
