// brcache for web pages, on the WebAssembly build. Call `init()` once
// (it fetches and compiles the module) before decoding.

import initWasm, * as wasm from './generated/wasm-web/brcache_wasm.js'
import { makeCodec } from './common/codec.js'
import { makeEncryptionApi } from './common/encryption.js'
import { makeOperationsApi } from './common/operations.js'
import { makeVmCacheApi } from './common/vm-cache.js'

let initialized = false

// The API is built once, over a view of the module that refuses every call
// until init() has run: before that, wasm-bindgen's glue would fail with a
// TypeError about its own internals instead of saying what is missing.
const backend = new Proxy(
  {},
  {
    get(_, name) {
      if (!initialized) throw new Error('brcache: call `await init()` before decoding')
      return wasm[name]
    },
  },
)

const api = { ...makeCodec(backend), ...makeVmCacheApi(backend) }
/** The core's repository operations (see js/common/operations.js): `drive(operations.start(kind, settings, args), share)`. */
export const operations = makeOperationsApi(backend)
/** Encrypted repositories (see js/common/encryption.js), for `new EncryptedShare(share, encryptionApi, key)`. */
export const encryptionApi = makeEncryptionApi(backend)

/**
 * Loads the wasm module. `input` is anything wasm-bindgen's init accepts
 * (a URL, a Response, bytes); by default the module next to this file.
 */
export async function init(input) {
  if (!initialized) {
    await initWasm(input === undefined ? undefined : { module_or_path: input })
    initialized = true
  }
}

export const { decodeCache, encodeCache, readCacheHeader, VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf } = api

/** The codec and VM cache API as one object (the same functions as the named exports). */
export function vmCacheApi() {
  if (!initialized) throw new Error('brcache: call `await init()` before decoding')
  return api
}

export { BrcacheError } from './common/errors.js'
export { drive } from './common/operations.js'
export { EncryptedShare } from './common/encrypted-share.js'
