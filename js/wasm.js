// brcache for Node.js, on the WebAssembly build (same API as the addon).

import { loadWasmModule, makeCore } from './load-core.js'

export const { decodeCache, encodeCache, readCacheHeader, VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf, indexApi, encryptionApi } =
  makeCore(loadWasmModule())
export { BrcacheError } from './errors.js'
