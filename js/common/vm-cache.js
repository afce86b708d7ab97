// A VM folder's cache (see crates/core/src/vm_cache.rs), over a
// backend: the napi addon or the wasm module, with identical behaviour.
// Every decision is the core's; this file converts arguments and results.
// Free of Node-only imports: the browser uses it too.

import { call, toBytes } from './codec.js'

const encoder = new TextEncoder()

/** Metadata as bytes: a record object is serialized as XO writes it. */
function metadataBytes(metadata) {
  return typeof metadata === 'object' && metadata !== null && !ArrayBuffer.isView(metadata) && !(metadata instanceof ArrayBuffer)
    ? encoder.encode(JSON.stringify(metadata))
    : toBytes(metadata)
}

/** `files`: a Map or plain object of metadata file name -> bytes. */
function splitFiles(files = new Map()) {
  const entries = files instanceof Map ? [...files] : Object.entries(files)
  return [entries.map(([name]) => name), entries.map(([, bytes]) => metadataBytes(bytes))]
}

function withCoherent(plan) {
  return { ...plan, coherent: plan.stale.length === 0 && plan.missing.length === 0 }
}

export function makeVmCacheApi(backend) {
  class VmCache {
    #handle

    /** @private use VmCache.empty, VmCache.decode or VmCache.rebuild */
    constructor(handle) {
      this.#handle = handle
    }

    static empty(vm) {
      return new VmCache(call(() => backend.newVmCache(vm)))
    }

    static decode(vm, bytes, options = {}) {
      const { maxInflatedSize, maxDepth, name } = options
      return new VmCache(call(() => backend.decodeVmCache(vm, toBytes(bytes), maxInflatedSize, maxDepth), name))
    }

    /** A cache built from a folder listing and the files it names. */
    static rebuild(vm, listing, files) {
      const cache = VmCache.empty(vm)
      const unreadable = cache.rebuild(listing, files)
      return { cache, unreadable }
    }

    get vm() {
      return this.#handle.vm
    }

    get generation() {
      return this.#handle.generation
    }

    get size() {
      return this.#handle.size
    }

    keys() {
      return this.#handle.keys()
    }

    fingerprint() {
      return this.#handle.fingerprint()
    }

    recordedFingerprint() {
      return this.#handle.recordedFingerprint() ?? null
    }

    /**
     * The records in name (chronological) order, as JSON.parse reads them,
     * each stamped with its key as `_filename` and `id` (and `isImmutable`
     * defaulted): whatever a cache file says, a record never names another
     * file than the one its key, checked by the core, names.
     */
    records() {
      return JSON.parse(this.#handle.entriesJson()).map(([key, record]) => {
        record._filename = key
        record.id = key
        if (typeof record.isImmutable !== 'boolean') record.isImmutable = false
        return record
      })
    }

    /** The cache body as JSON text, exactly what XO reads. */
    body() {
      return this.#handle.toJson()
    }

    add(path, metadata) {
      call(() => this.#handle.add(path, metadataBytes(metadata)))
      return this
    }

    remove(paths) {
      call(() => this.#handle.remove([...paths]))
      return this
    }

    continueAfter(previousGeneration) {
      this.#handle.continueAfter(previousGeneration)
      return this
    }

    /** The bytes of the next write; the generation goes up by one. */
    commit() {
      return this.#handle.commit()
    }

    summaries(filter) {
      return JSON.parse(call(() => this.#handle.summaries(filter ? JSON.stringify(filter) : undefined)))
    }

    /** `listing`: the names in the VM folder, as a directory listing gives them. */
    reconcile(listing) {
      return withCoherent(JSON.parse(this.#handle.reconcile([...listing])))
    }

    /** Applies a plan with the missing files' contents; returns what could not be read. */
    apply(plan, files) {
      const [names, contents] = splitFiles(files)
      const { stale, missing } = plan
      return JSON.parse(call(() => this.#handle.apply(JSON.stringify({ stale, missing }), names, contents)))
    }

    rebuild(listing, files) {
      const [names, contents] = splitFiles(files)
      return JSON.parse(call(() => this.#handle.rebuild([...listing], names, contents)))
    }

    /** This cache's segment for the repository-wide index. */
    indexSegment() {
      return call(() => this.#handle.indexSegment())
    }

    merge(other) {
      return new VmCache(this.#handle.merge(other.#handle))
    }

    replay(newer) {
      return new VmCache(this.#handle.replay(newer.#handle))
    }

    copy() {
      return new VmCache(this.#handle.copy())
    }
  }

  /** Whether the header alone proves the cache covers exactly the listed metadata files. */
  function fastPath(bytes, listing) {
    return call(() => backend.fastPath(toBytes(bytes), [...listing]))
  }

  /** Throws unless every key names a distinct metadata file of `vm`'s folder. */
  function checkKeys(vm, keys, file) {
    call(() => backend.checkKeys(vm, [...keys]), file)
  }

  /** A VM cache's summaries straight from its bytes (one pass, no VmCache). */
  function summariesOf(vm, bytes, filter, options = {}) {
    const { maxInflatedSize, maxDepth, name } = options
    const text = call(
      () => backend.vmSummaries(vm, toBytes(bytes), filter ? JSON.stringify(filter) : undefined, maxInflatedSize, maxDepth),
      name,
    )
    return JSON.parse(text)
  }

  /**
   * The next bytes of `vm`'s cache after this writer created `added`
   * (`[[name, bytes | record], …]`) and deleted `removed` (names), with
   * `listing` the folder listed after: spliced from `bytes`, never decoded,
   * when their header proves the cache true to the folder as it was; null
   * otherwise (then decode, reconcile and write it whole).
   */
  function spliceCache(vm, bytes, listing, added = [], removed = []) {
    const spliced = call(() =>
      backend.spliceCache(
        vm,
        toBytes(bytes),
        [...listing],
        added.map(([name]) => name),
        added.map(([, content]) => metadataBytes(content)),
        [...removed],
      ),
    )
    return spliced ?? null
  }

  /** The index segment of a cache just written, from its bytes (one pass, no decode). */
  function indexSegmentOf(vm, bytes, options = {}) {
    const { maxInflatedSize, maxDepth, name } = options
    return call(() => backend.indexSegmentOfBytes(vm, toBytes(bytes), maxInflatedSize, maxDepth), name)
  }

  return { VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf }
}
