// brcache/browser: the same functions as the Node entries, on the wasm build
// for web pages, after `init()`.
import { VmCache } from './types.js'
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
