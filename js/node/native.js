// The napi addon, wrapped in the JS glue shared with the wasm build: this
// platform's addon or an error saying where it was looked for. `brcache`
// itself goes through js/node/core.js, which falls back on the wasm build.

import { loadNativeAddon, makeCore } from './load-core.js'

export const { decodeCache, encodeCache, readCacheHeader, VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf, indexApi, encryptionApi, operations } =
  makeCore(loadNativeAddon())
