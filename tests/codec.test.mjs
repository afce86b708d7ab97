// decodeCache / encodeCache on both Node surfaces (napi addon and wasm),
// over the shared vectors that the Rust suite also runs.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import * as napi from 'brcache'
import * as wasm from 'brcache/wasm'

const vectors = join(import.meta.dirname, 'vectors')
const { cases } = JSON.parse(readFileSync(join(vectors, 'manifest.json'), 'utf8'))
const surfaces = { napi, wasm }

function options(testCase) {
  return { ...testCase.limits, name: testCase.input }
}

for (const [surface, brcache] of Object.entries(surfaces)) {
  describe(`${surface}: shared vectors`, () => {
    for (const testCase of cases) {
      test(testCase.name, () => {
        const bytes = readFileSync(join(vectors, testCase.input))
        const { expect } = testCase
        if (expect.error) {
          assert.throws(
            () => brcache.decodeCache(bytes, options(testCase)),
            (error) => {
              assert.ok(error instanceof brcache.BrcacheError, `not a BrcacheError: ${error}`)
              assert.equal(error.code, expect.error, error.message)
              if (expect.offset !== undefined) assert.equal(error.offset, expect.offset, error.message)
              assert.ok(error.message.startsWith(`${testCase.input}: `), error.message)
              return true
            },
          )
        } else if (expect.ok) {
          // Valid, with values JSON cannot spell: what JSON.parse reads.
          assert.deepStrictEqual(brcache.decodeCache(bytes, options(testCase)), JSON.parse(zlib.gunzipSync(bytes)))
          assert.deepStrictEqual(brcache.readCacheHeader(bytes), expect.header)
        } else {
          const expected = JSON.parse(readFileSync(join(vectors, expect.json), 'utf8'))
          const decoded = brcache.decodeCache(bytes, options(testCase))
          assert.deepStrictEqual(decoded, expected)
          // deepStrictEqual ignores key order; JSON.parse keeps it.
          assert.equal(JSON.stringify(decoded), JSON.stringify(expected))
          assert.deepStrictEqual(brcache.readCacheHeader(bytes), expect.header)
        }
      })
    }
  })
}

describe('the surfaces agree', () => {
  test('napi and wasm give the same result or the same error on every vector', () => {
    for (const testCase of cases) {
      const bytes = readFileSync(join(vectors, testCase.input))
      const outcome = (brcache) => {
        try {
          return { value: JSON.stringify(brcache.decodeCache(bytes, testCase.limits)) }
        } catch (error) {
          return { code: error.code, offset: error.offset, message: error.message }
        }
      }
      assert.deepStrictEqual(outcome(napi), outcome(wasm), testCase.name)
    }
  })
})

for (const [surface, brcache] of Object.entries(surfaces)) {
  describe(`${surface}: encodeCache`, () => {
    const cache = JSON.parse(readFileSync(join(vectors, 'xo-full-and-delta.expected.json'), 'utf8'))

    test('plain zlib.gunzipSync + JSON.parse (what XO does) reads it back', () => {
      const bytes = brcache.encodeCache(cache)
      assert.deepStrictEqual(JSON.parse(zlib.gunzipSync(bytes)), cache)
      assert.equal(zlib.gunzipSync(bytes).toString(), JSON.stringify(cache))
    })

    test('decodeCache reads it back, with its header', () => {
      const bytes = brcache.encodeCache(cache, { generation: 41 })
      assert.deepStrictEqual(brcache.decodeCache(bytes), cache)
      const header = brcache.readCacheHeader(bytes)
      assert.equal(header.generation, 41)
      assert.equal(header.entries, Object.keys(cache).length)
      assert.match(header.fingerprint, /^[0-9a-f]{64}$/)
    })

    test('the same object always gives the same bytes', () => {
      assert.deepStrictEqual(brcache.encodeCache(cache), brcache.encodeCache(structuredClone(cache)))
    })

    test('refuses what is not an object of objects, with a typed error', () => {
      for (const [bad, code] of [
        [[], 'NOT_AN_OBJECT'],
        [{ a: 1 }, 'ENTRY_NOT_AN_OBJECT'],
        [{ a: null }, 'ENTRY_NOT_AN_OBJECT'],
      ]) {
        assert.throws(() => brcache.encodeCache(bad), { name: 'BrcacheError', code })
      }
      assert.throws(() => brcache.encodeCache(undefined), TypeError)
    })
  })
}

describe('hostile keys', () => {
  test('__proto__ and constructor keys pollute no prototype', () => {
    const bytes = readFileSync(join(vectors, 'proto-keys.gz'))
    for (const brcache of Object.values(surfaces)) {
      const decoded = brcache.decodeCache(bytes)
      assert.equal(Object.getPrototypeOf(decoded), Object.prototype)
      assert.ok(Object.hasOwn(decoded, '__proto__'))
      assert.deepStrictEqual(decoded.__proto__, { polluted: true })
      assert.equal({}.polluted, undefined)
      assert.equal(Object.prototype.polluted, undefined)
      assert.equal({}.x, undefined)
    }
  })
})

describe('inputs', () => {
  test('Buffer, Uint8Array, ArrayBuffer and a view into a larger buffer all decode', () => {
    const bytes = readFileSync(join(vectors, 'unicode-names.gz'))
    const expected = napi.decodeCache(bytes)
    const padded = new Uint8Array(bytes.length + 10)
    padded.set(bytes, 5)
    for (const brcache of Object.values(surfaces)) {
      assert.deepStrictEqual(brcache.decodeCache(new Uint8Array(bytes)), expected)
      assert.deepStrictEqual(brcache.decodeCache(new Uint8Array(bytes).buffer), expected)
      assert.deepStrictEqual(brcache.decodeCache(padded.subarray(5, 5 + bytes.length)), expected)
    }
  })

  test('anything else is a TypeError', () => {
    for (const brcache of Object.values(surfaces)) {
      assert.throws(() => brcache.decodeCache('not bytes'), TypeError)
    }
  })

  test('the default inflate limit stops a bomb that would inflate past it', () => {
    // 300 MiB of zeros compress to about 300 KiB.
    const bomb = zlib.gzipSync(Buffer.alloc(300 << 20), { level: 9 })
    for (const brcache of Object.values(surfaces)) {
      assert.throws(() => brcache.decodeCache(bomb), { code: 'TOO_LARGE' })
    }
  })
})
