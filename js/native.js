// The napi addon, wrapped in the JS glue shared with the wasm build.

import { createRequire } from 'node:module'
import { makeCodec } from './codec.js'
import { makeEncryptionApi } from './encryption.js'
import { makeIndexApi } from './index-store.js'
import { makeVmCacheApi } from './vm-cache.js'

const require = createRequire(import.meta.url)

function loadAddon() {
  try {
    return require('./generated/brcache.node')
  } catch (error) {
    throw new Error(`brcache: the native addon is not built (${error.message}); run \`npm run build\``, {
      cause: error,
    })
  }
}

const addon = loadAddon()

export const { decodeCache, encodeCache, readCacheHeader } = makeCodec(addon)
export const { VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf } = makeVmCacheApi(addon)
export const indexApi = makeIndexApi(addon)
export const encryptionApi = makeEncryptionApi(addon)
