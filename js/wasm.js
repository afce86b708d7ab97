// brcache for Node.js, on the WebAssembly build (same API as the addon).

import { createRequire } from 'node:module'
import { makeCodec } from './codec.js'
import { makeEncryptionApi } from './encryption.js'
import { makeIndexApi } from './index-store.js'
import { makeVmCacheApi } from './vm-cache.js'

const require = createRequire(import.meta.url)
const wasm = require('./generated/wasm-node/brcache_wasm.js')

export const { decodeCache, encodeCache, readCacheHeader } = makeCodec(wasm)
export const { VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf } = makeVmCacheApi(wasm)
export const indexApi = makeIndexApi(wasm)
export const encryptionApi = makeEncryptionApi(wasm)
export { BrcacheError } from './errors.js'
