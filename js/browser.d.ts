import type { BytesInput, CacheHeader, DecodeOptions, EncodeOptions, MetadataCache, Summary, SummaryFilter } from './types.js'
import { VmCache } from './types.js'

export type * from './types.js'
export { BrcacheError, VmCache } from './types.js'

/** Loads the wasm module (by default the one next to this file). Call once before anything else. */
export declare function init(input?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>
export declare function decodeCache(bytes: BytesInput, options?: DecodeOptions): MetadataCache
export declare function encodeCache(cache: MetadataCache, options?: EncodeOptions): Uint8Array
export declare function readCacheHeader(bytes: BytesInput, options?: Pick<DecodeOptions, 'name'>): CacheHeader | null
/** A VM cache's restore-view summaries straight from its `cache.json.gz` bytes, sorted by timestamp. */
export declare function summariesOf(vm: string, bytes: BytesInput, filter?: SummaryFilter, options?: DecodeOptions): Summary[]
/** Whether the header alone proves the cache covers exactly the listed metadata files. */
export declare function fastPath(bytes: BytesInput, listing: Iterable<string>): boolean
/** Throws a BrcacheError unless every key names a distinct metadata file of `vm`'s folder. */
export declare function checkKeys(vm: string, keys: Iterable<string>, file?: string): void

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
