// decodeCache / encodeCache over a backend (the napi addon or the
// wasm module), with identical behaviour on both.
//
// Decoding splits the work where each side is fastest: Rust unwraps the
// gzip member and checks framing, checksums, size and depth limits, UTF-8
// and nesting; JSON.parse builds the JS objects (far cheaper than building
// them property by property across the boundary). When JSON.parse or the
// shape check fails, the core decodes the bytes itself to name the precise
// error, so the same bytes give the same error code on every surface.
//
// This module must stay free of Node-only imports: the browser uses it too.

import { BrcacheError } from './errors.js'

/** @param {unknown} input */
export function toBytes(input) {
  if (input instanceof Uint8Array) return input
  if (input instanceof ArrayBuffer) return new Uint8Array(input)
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
  throw new TypeError('decodeCache expects a Uint8Array, Buffer or ArrayBuffer')
}

/**
 * Calls into a backend, turning the error it throws for bad input (both
 * builds throw the same Error, `name` 'BrcacheError' with the core's
 * `code`, `detail` and `offset`; see crates/bindings/mod.rs) into a
 * BrcacheError that names `file`. Anything else, a TypeError for a wrong
 * argument say, passes through.
 */
export function call(fn, file) {
  try {
    return fn()
  } catch (error) {
    if (error instanceof Error && error.name === 'BrcacheError' && !(error instanceof BrcacheError)) throw new BrcacheError(error, file)
    throw error
  }
}

/**
 * A cache body is an object whose every value is an object. JSON.parse
 * has already built it; this walk is cheap next to the parse.
 */
function isCacheShape(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  for (const key in value) {
    const entry = value[key]
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return false
  }
  return true
}

/**
 * @param {{
 *   decodeCacheText(bytes: Uint8Array, maxInflatedSize?: number, maxDepth?: number): string,
 *   explainDecode(bytes: Uint8Array, maxInflatedSize?: number, maxDepth?: number): void,
 *   readHeader(bytes: Uint8Array): object | null,
 *   encodeJson(text: string, generation?: number): Uint8Array,
 * }} backend a backend (the addon or the wasm module), which throws its
 *   failures (see `call`)
 */
export function makeCodec(backend) {
  function decodeCache(input, options = {}) {
    const bytes = toBytes(input)
    const { maxInflatedSize, maxDepth, name } = options
    const text = call(() => backend.decodeCacheText(bytes, maxInflatedSize, maxDepth), name)
    let value
    let parseError
    try {
      value = JSON.parse(text)
    } catch (error) {
      parseError = error
    }
    if (parseError === undefined && isCacheShape(value)) return value
    // The core names the problem precisely; JSON.parse's message is the
    // fallback should the two ever disagree on what is valid.
    call(() => backend.explainDecode(bytes, maxInflatedSize, maxDepth), name)
    throw new BrcacheError(
      {
        code: 'INVALID_JSON',
        message: parseError ? `invalid JSON: ${parseError.message}` : 'the cache body is not an object of objects',
      },
      name,
    )
  }

  function encodeCache(object, options = {}) {
    const text = JSON.stringify(object)
    if (typeof text !== 'string') throw new TypeError('encodeCache expects an object')
    return call(() => backend.encodeJson(text, options.generation))
  }

  function readCacheHeader(input, options = {}) {
    return call(() => backend.readHeader(toBytes(input)), options.name) ?? null
  }

  return { decodeCache, encodeCache, readCacheHeader }
}
