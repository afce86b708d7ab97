// Finding and loading brcache's core on Node: the napi addon built for this
// platform, or the WebAssembly build of the same Rust code.
//
// The addon follows napi-rs's conventions: it is named by its platform
// triple (`brcache.linux-x64-gnu.node`) and ships in its own npm package
// (`brcache-linux-x64-gnu`, under `npm/<triple>/` in the repository), one
// of the main package's optionalDependencies; npm installs only the one
// whose os/cpu/libc match. In a clone, `npm run build` puts the addon in
// that same folder, which is looked at first.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { platformTriple } from './platform.js'
import { makeCodec } from '../common/codec.js'
import { makeEncryptionApi } from '../common/encryption.js'
import { makeIndexApi } from '../common/repo-index.js'
import { makeOperationsApi } from '../common/operations.js'
import { makeVmCacheApi } from '../common/vm-cache.js'
import * as wasmGlue from '../generated/wasm-web/brcache_wasm.js'

export { platformTriple }

const require = createRequire(import.meta.url)
let wasmReady = false

/** Where the addon for `triple` may be, most specific first. */
export function addonCandidates(triple = platformTriple()) {
  return [`../../npm/${triple}/brcache.${triple}.node`, `brcache-${triple}`]
}

/**
 * The napi addon for this platform; throws an Error saying what was tried
 * and why each failed (not installed, or present but not loadable).
 */
export function loadNativeAddon(triple = platformTriple()) {
  const failures = []
  for (const candidate of addonCandidates(triple)) {
    try {
      return require(candidate)
    } catch (error) {
      const missing = error.code === 'MODULE_NOT_FOUND' && error.message.includes(candidate)
      failures.push(missing ? `${candidate}: not installed` : `${candidate}: ${error.message.split('\n')[0]}`)
    }
  }
  throw new Error(`brcache: no native addon loads on ${triple} (${failures.join('; ')})`)
}

/**
 * The wasm-bindgen module, ready; throws if the module is missing. Node
 * runs the same files as web pages (js/generated/wasm-web/: the glue, an
 * ES module, and the .wasm), compiled synchronously from the file here,
 * so the package holds the module once.
 */
export function loadWasmModule() {
  if (!wasmReady) {
    let bytes
    try {
      bytes = readFileSync(new URL('../generated/wasm-web/brcache_wasm_bg.wasm', import.meta.url))
    } catch (error) {
      throw new Error(`brcache: the WebAssembly core is missing (${error.message.split('\n')[0]})`, { cause: error })
    }
    wasmGlue.initSync({ module: bytes })
    wasmReady = true
  }
  return wasmGlue
}

const apis = new WeakMap()

/** The JS API over a backend (the addon or the wasm module), built once per backend. */
export function makeCore(backend) {
  let api = apis.get(backend)
  if (!api) {
    api = {
      ...makeCodec(backend),
      ...makeVmCacheApi(backend),
      indexApi: makeIndexApi(backend),
      encryptionApi: makeEncryptionApi(backend),
      operations: makeOperationsApi(backend),
    }
    apis.set(backend, api)
  }
  return api
}

export const CORE_VARIABLE = 'BRCACHE_CORE'

/**
 * Picks the core: `BRCACHE_CORE=native` or `=wasm` forces one (and a
 * missing one is an error); otherwise the addon, or the wasm core with one
 * notice through `warn` when no addon loads. Returns `{ name, backend }`.
 * `env` is where BRCACHE_CORE is read, the loaders and `warn` can be
 * replaced (the tests do).
 */
export function chooseCore({
  env = process.env,
  loadNative = loadNativeAddon,
  loadWasm = loadWasmModule,
  warn = (message) => process.stderr.write(`${message}\n`),
} = {}) {
  const choice = env[CORE_VARIABLE] ?? ''
  switch (choice) {
    case 'native':
      try {
        return { name: 'native', backend: loadNative() }
      } catch (error) {
        throw new Error(`${error.message}, and ${CORE_VARIABLE}=native forbids the WebAssembly core`, { cause: error })
      }
    case 'wasm':
      return { name: 'wasm', backend: loadWasm() }
    case '':
    case 'auto': {
      let nativeError
      try {
        return { name: 'native', backend: loadNative() }
      } catch (error) {
        nativeError = error
      }
      let backend
      try {
        backend = loadWasm()
      } catch (error) {
        throw new Error(`${nativeError.message}; ${error.message}`, { cause: error })
      }
      warn(`${nativeError.message}: using the WebAssembly core (same results, slower). Set ${CORE_VARIABLE}=wasm to choose it without this notice.`)
      return { name: 'wasm', backend }
    }
    default:
      throw new Error(`brcache: ${CORE_VARIABLE} must be native, wasm or unset, not ${JSON.stringify(choice)}`)
  }
}
