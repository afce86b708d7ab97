// brcache for Node.js, on the WebAssembly build (same API as the addon).

import { loadWasmModule, makeCore } from './node/load-core.js'

export const { decodeCache, encodeCache, readCacheHeader, VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf, indexApi, encryptionApi, operations } =
  makeCore(loadWasmModule())
export { BrcacheError } from './common/errors.js'
