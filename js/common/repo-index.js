// The repository-wide index's glue (see crates/core/src/index/ for the
// format and its rules, crates/core/src/ops/index_ops.rs for reading,
// publishing and compacting it on a share): the decoded index as JS sees
// it, and IndexStore, the index read and compacted on its own.

import { call } from './codec.js'
import { drive, makeOperationsApi } from './operations.js'

// The core's INDEX_DIR, kept here for code that runs before a core is
// loaded; tests/surface.test.mjs holds the two equal.
export const INDEX_DIR = 'xo-vm-backups/.brcache-index'

const U64_MAX = 2n ** 64n - 1n

/**
 * Whether a name of the index folder is an epoch folder of an immutable
 * repository's index as the core takes it (crates/core/src/index/epochs.rs,
 * `epoch_number`: `epoch-` and 20 digits that fit a u64), for code that
 * must tell before any operation runs: what `brcache serve` offers, which
 * epochs the page lists first.
 */
export function isEpochName(name) {
  return /^epoch-\d{20}$/.test(name) && BigInt(name.slice('epoch-'.length)) <= U64_MAX
}

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
      /** The VM table: `{ vm: { name, count, modes, lastBackup, size } }`. */
      rows: () => JSON.parse(handle.rowsJson()),
      unreadable: () => JSON.parse(handle.unreadableJson()).map(([name, reason]) => ({ name, reason })),
      /** The VMs whose entry is in doubt, sorted: listings read them from their caches. */
      inDoubt: () => JSON.parse(handle.inDoubtJson()),
      // Named after the newest snapshot listed (see Loaded::compact).
      compaction: () => unwrapCompaction(handle.compaction(listedGeneration)),
      goneSegment: (vm) => handle.goneSegment(vm),
      vmGeneration: (vm) => handle.vmGeneration(vm) ?? null,
      drift: (caches) => JSON.parse(call(() => handle.driftJson(JSON.stringify(caches)))),
    }
  }
  const unwrapCompaction = (compaction) => ({ ...JSON.parse(compaction.summaryJson()), bytes: compaction.snapshot() })
  return {
    /** The operations that read and compact the index (see IndexStore). */
    operations: makeOperationsApi(backend),
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
    /** An index from a table (format 3), some of its parts (`[[name, bytes]]`) and the segments beside it. */
    loadTable(table, parts, segments) {
      const partList = [...parts]
      const entries = [...segments]
      const handle = call(
        () => backend.loadIndexTable(table, partList.map(([n]) => n), partList.map(([, b]) => b), entries.map(([n]) => n), entries.map(([, b]) => b)),
        INDEX_DIR,
      )
      return wrap(handle, handle.generation)
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
 * The index on a share, read and compacted by the core's operations
 * (crates/core/src/ops/index_ops.rs) through `handler`: for tools and tests
 * that work on the index alone. Writers publish and compact through the
 * repository API.
 */
export class IndexStore {
  #handler
  #operations
  #log

  /** `api`: the index API of a backend (`indexApi`), which carries its operations. */
  constructor(handler, api, log) {
    this.#handler = handler
    this.#operations = api.operations
    this.#log = log
  }

  #run(kind, args) {
    return drive(this.#operations.start(kind, { index: true }, args), this.#handler, { logger: this.#log })
  }

  /** The index now, `{ plan, generation, unfolded, unreadable }`, or undefined when there is none. */
  async read() {
    return (await this.#run('readIndex')) ?? undefined
  }

  /**
   * Folds every segment into a new snapshot (`dropUnreadable`: and deletes
   * the segments that do not decode): `{ generation, folded }`, or
   * undefined when there is no index or another compaction created the
   * snapshot first.
   */
  async compact({ dropUnreadable = false } = {}) {
    return (await this.#run('compactIndex', { dropUnreadable })) ?? undefined
  }
}
