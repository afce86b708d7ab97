// brcache/browser: the same functions as the Node entries, on the wasm build
// for web pages, after `init()`.
import { VmCache } from './types.js'
import type { Cipher, EncryptionAlgorithm, EncryptionApi, Summary, SummaryFilter } from './types.js'
import type { checkKeys, decodeCache, encodeCache, fastPath, readCacheHeader, summariesOf } from './core.js'

export * from './core.js'

/** Loads the wasm module (by default the one next to this file). Call once before anything else. */
export declare function init(input?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>
/** Every function above, and VmCache, as one object (after init). */
export declare function vmCacheApi(): {
  decodeCache: typeof decodeCache
  encodeCache: typeof encodeCache
  readCacheHeader: typeof readCacheHeader
  summariesOf: typeof summariesOf
  fastPath: typeof fastPath
  checkKeys: typeof checkKeys
  VmCache: typeof VmCache
}

/** What a read of a repository needs of a share: its folders' names and its files' bytes. */
export interface IndexFiles {
  list(dir: string): Promise<string[]>
  readFile(file: string): Promise<Uint8Array>
}

/** Settings of an operation: `trusted` for a share that serves caches already checked, as `brcache serve` does. */
export interface OperationSettings {
  immutable?: boolean
  index?: boolean | 'auto'
  trusted?: boolean
  limits?: { maxInflatedSize?: number; maxDepth?: number }
}

/** A repository operation of the core, run by `drive`. */
export interface Operation {
  poll(): string
}

/** The core's repository operations on the wasm build (after init); kinds and arguments as crates/core/src/ops/wire.rs lists them. */
export declare const operations: {
  start(kind: string, settings: OperationSettings, args?: Record<string, unknown>, bytes?: Uint8Array): Operation
}

/** Runs `operation` through `handler` to its answer (`restoreView`, `listVm`: `{ vms, unreadable, fromIndex }`, and `notFromIndex` from the index). */
export declare function drive(
  operation: Operation,
  handler: IndexFiles,
  options?: { concurrency?: number; logger?: { [level: string]: (message: string, data?: unknown) => void } },
): Promise<any>

/** A share that decrypts what it reads, as `brcache serve`'s page does for an encrypted repository. */
export declare class EncryptedShare {
  constructor(inner: IndexFiles, api: EncryptionApi, key?: string | Uint8Array)
  cipher(): Promise<Cipher | null>
  describe(): Promise<{ algorithm: EncryptionAlgorithm | null }>
  list(dir: string): Promise<string[]>
  readFile(file: string): Promise<Uint8Array>
}
