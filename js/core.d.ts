// The functions every surface (napi, wasm on Node, wasm in a browser)
// exports, with identical behaviour.
import type { BytesInput, CacheHeader, DecodeOptions, EncodeOptions, EncryptionApi, MetadataCache, Summary, SummaryFilter } from './types.js'

export type * from './types.js'
export { BrcacheError, VmCache } from './types.js'

/** Decodes `cache.json.gz` bytes; the same object as `JSON.parse(gunzip(bytes))` for a valid cache. */
export declare function decodeCache(bytes: BytesInput, options?: DecodeOptions): MetadataCache
/** Encodes a cache object as gzip bytes any gunzip reads, with brcache's header in FEXTRA. */
export declare function encodeCache(cache: MetadataCache, options?: EncodeOptions): Uint8Array
/** brcache's header, read without inflating; null for a cache written by Xen Orchestra. */
export declare function readCacheHeader(bytes: BytesInput, options?: Pick<DecodeOptions, 'name'>): CacheHeader | null
/** A VM cache's restore-view summaries straight from its `cache.json.gz` bytes, sorted by timestamp. */
export declare function summariesOf(vm: string, bytes: BytesInput, filter?: SummaryFilter, options?: DecodeOptions): Summary[]
/**
 * A cache's next bytes after a writer created `added` (`[name, bytes or record]`) and deleted
 * `removed` (names), `listing` the folder's entries after: spliced from `bytes` without decoding
 * them when their header proves the cache true to the folder as it was, else null.
 */
export declare function spliceCache(
  vm: string,
  bytes: BytesInput,
  listing: Iterable<string>,
  added?: [string, BytesInput | object][],
  removed?: Iterable<string>,
): Uint8Array | null
/** The index segment a writer publishes for a cache it just wrote, from the cache's bytes. */
export declare function indexSegmentOf(vm: string, bytes: BytesInput, options?: DecodeOptions): Uint8Array
/** Whether the header alone proves the cache covers exactly the listed metadata files. */
export declare function fastPath(bytes: BytesInput, listing: Iterable<string>): boolean
/** Throws a BrcacheError unless every key names a distinct metadata file of `vm`'s folder. */
export declare function checkKeys(vm: string, keys: Iterable<string>, file?: string): void
/** Encrypted repositories, as Xen Orchestra encrypts them. */
export declare const encryptionApi: EncryptionApi

/**
 * The core's repository operations (kinds and arguments as
 * crates/core/src/ops/wire.rs lists them); the repository API drives them
 * through a handler (js/common/operations.js).
 */
export declare const operations: {
  start(
    kind: string,
    settings: { immutable?: boolean; index?: boolean | 'auto'; trusted?: boolean; limits?: { maxInflatedSize?: number; maxDepth?: number } },
    args?: Record<string, unknown>,
    bytes?: Uint8Array,
  ): unknown
}
