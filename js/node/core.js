// The core brcache runs on in Node: the napi addon for this platform when
// one loads, else the WebAssembly build, with one notice on stderr.
// BRCACHE_CORE=native or BRCACHE_CORE=wasm forces one (see js/node/load-core.js).
// `brcache` and the repository API import the core from here.

import { chooseCore, makeCore } from './load-core.js'

const chosen = chooseCore()

/** Which core this process runs on: 'native' (the napi addon) or 'wasm'. */
export const coreName = chosen.name

export const { decodeCache, encodeCache, readCacheHeader, VmCache, fastPath, checkKeys, summariesOf, spliceCache, indexSegmentOf, indexApi, encryptionApi, operations } =
  makeCore(chosen.backend)
