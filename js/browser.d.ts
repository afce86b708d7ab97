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

/** What the repository index's reader needs of a share: its folder's names and its files' bytes. */
export interface IndexFiles {
  list(dir: string): Promise<string[]>
  readFile(file: string): Promise<Uint8Array>
}

/** The repository index as read: the restore view of every VM it knows. */
export interface LoadedIndex {
  /** The snapshot's generation. */
  readonly generation: number
  /** Segments waiting to be folded. */
  readonly unfolded: number
  /** `{ vm: summaries }`, VMs without restore points omitted. */
  view(filter?: SummaryFilter): Record<string, Summary[]>
  /** The cache generation the index holds for `vm`, or null if it does not know the VM. */
  vmGeneration(vm: string): number | null
  /** Segments that did not decode, skipped. */
  unreadable(): { name: string; reason: string }[]
  readonly plan: { snapshot: string | null; segments: string[]; oldSnapshots: string[]; generation: number }
}

/** The index's decoding on the wasm build, for IndexStore (after init). */
export declare const indexApi: unknown

/** Reads the repository index over `files` (for a page: `brcache serve`'s `/api/index`), as the server does. */
export declare class IndexStore {
  constructor(files: IndexFiles, api: typeof indexApi, log: { warn(message: string, data?: unknown): void })
  /** The index, or undefined when there is none; throws a BrcacheError when its snapshot does not decode. */
  read(options?: { attempts?: number }): Promise<LoadedIndex | undefined>
}

/** A share that decrypts what it reads, as `brcache serve`'s page does for an encrypted repository. */
export declare class EncryptedShare {
  constructor(inner: IndexFiles, api: EncryptionApi, key?: string | Uint8Array)
  cipher(): Promise<Cipher | null>
  describe(): Promise<{ algorithm: EncryptionAlgorithm | null }>
  list(dir: string): Promise<string[]>
  readFile(file: string): Promise<Uint8Array>
}
