import type { BytesInput, CacheHeader, DecodeOptions, EncodeOptions, MetadataCache } from './types.js'

export type * from './types.js'
export { BrcacheError } from './types.js'

/** Decodes `cache.json.gz` bytes; the same object as `JSON.parse(gunzip(bytes))` for a valid cache. */
export declare function decodeCache(bytes: BytesInput, options?: DecodeOptions): MetadataCache
/** Encodes a cache object as gzip bytes any gunzip reads, with brcache's header in FEXTRA. */
export declare function encodeCache(cache: MetadataCache, options?: EncodeOptions): Uint8Array
/** brcache's header, read without inflating; null for a cache written by Xen Orchestra. */
export declare function readCacheHeader(bytes: BytesInput, options?: Pick<DecodeOptions, 'name'>): CacheHeader | null
