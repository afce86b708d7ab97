// brcache for web pages, on the WebAssembly build. Call `init()` once
// (it fetches and compiles the module) before decoding.

import initWasm, * as wasm from './generated/wasm-web/brcache_wasm.js'
import { makeCodec } from './codec.js'
import { makeVmCacheApi } from './vm-cache.js'

let codec

/**
 * Loads the wasm module. `input` is anything wasm-bindgen's init accepts
 * (a URL, a Response, bytes); by default the module next to this file.
 */
export async function init(input) {
  if (!codec) {
    await initWasm(input === undefined ? undefined : { module_or_path: input })
    codec = { ...makeCodec(wasm), ...makeVmCacheApi(wasm) }
  }
}

function ready() {
  if (!codec) throw new Error('brcache: call `await init()` before decoding')
  return codec
}

export function decodeCache(bytes, options) {
  return ready().decodeCache(bytes, options)
}

export function encodeCache(object, options) {
  return ready().encodeCache(object, options)
}

export function readCacheHeader(bytes, options) {
  return ready().readCacheHeader(bytes, options)
}

/** A VM's cache (the same class as the Node entries export). */
export function vmCacheApi() {
  return ready()
}

export { BrcacheError } from './errors.js'
