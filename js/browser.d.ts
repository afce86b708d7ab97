import type { BytesInput, CacheHeader, DecodeOptions, EncodeOptions, MetadataCache } from './types.js'

export type * from './types.js'
export { BrcacheError } from './types.js'

/** Loads the wasm module (by default the one next to this file). Call once before decoding. */
export declare function init(input?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>
export declare function decodeCache(bytes: BytesInput, options?: DecodeOptions): MetadataCache
export declare function encodeCache(cache: MetadataCache, options?: EncodeOptions): Uint8Array
export declare function readCacheHeader(bytes: BytesInput, options?: Pick<DecodeOptions, 'name'>): CacheHeader | null
