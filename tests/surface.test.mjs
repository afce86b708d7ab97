// The napi addon and the wasm module are one surface (crates/bindings/):
// both export exactly the names README.md's "The core's JS surface" lists,
// their classes have the same methods and properties, and they throw the
// same error for the same bad input. Loads both builds directly, whatever
// BRCACHE_CORE says.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { BACKUP_DIR, CACHE_FILE } from '../js/common/layout.js'
import { INDEX_DIR } from '../js/common/repo-index.js'
import { loadNativeAddon, loadWasmModule } from '../js/node/load-core.js'

const root = join(import.meta.dirname, '..')
const builds = { napi: loadNativeAddon(), wasm: loadWasmModule() }

/** The names between README.md's surface markers, sorted. */
function readmeSurface() {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const section = /<!-- surface:start -->\n([\s\S]*?)<!-- surface:end -->/.exec(readme)
  assert.ok(section, 'README.md has the surface markers')
  return [...section[1].matchAll(/`([A-Za-z]\w*)`/g)].map((m) => m[1]).sort()
}

// wasm-bindgen's glue adds its loaders (and internals prefixed `__`).
const GLUE = new Set(['default', 'initSync'])

function exported(build) {
  return Object.keys(build)
    .filter((name) => !GLUE.has(name) && !name.startsWith('__'))
    .sort()
}

function members(build, name) {
  // wasm-bindgen's classes add free(), Symbol.dispose (a symbol, not listed
  // here) and internals prefixed `__`; napi's add nothing.
  return Object.getOwnPropertyNames(build[name].prototype)
    .filter((member) => member !== 'constructor' && member !== 'free' && !member.startsWith('__'))
    .sort()
}

function thrown(fn) {
  try {
    fn()
  } catch (error) {
    return { name: error.name, code: error.code, message: error.message, detail: error.detail, offset: error.offset, isError: error instanceof Error }
  }
  assert.fail('expected a throw')
}

describe('the core’s JS surface', () => {
  const listed = readmeSurface()

  for (const [name, build] of Object.entries(builds)) {
    test(`${name} exports exactly the README's list`, () => {
      assert.deepEqual(exported(build), listed)
    })
  }

  test('each class has the same methods and properties on both builds', () => {
    const classes = listed.filter((name) => /^[A-Z]/.test(name))
    assert.ok(classes.length > 0)
    for (const name of classes) assert.deepEqual(members(builds.napi, name), members(builds.wasm, name), name)
  })

  test('both builds throw the same Error for the same bad input', () => {
    const truncated = Uint8Array.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2])
    const cases = [
      (b) => b.decodeCacheText(truncated),
      (b) => b.explainDecode(truncated),
      (b) => b.readHeader(Uint8Array.from([1, 2, 3])),
      (b) => b.newVmCache('../escape'),
      (b) => b.newCipher('none', new Uint8Array(32)),
      (b) => b.newVmCache('vm').add('/xo-vm-backups/vm/20240101T000000Z.json', Uint8Array.from([0x7b])),
    ]
    for (const call of cases) {
      const napi = thrown(() => call(builds.napi))
      assert.equal(napi.name, 'BrcacheError')
      assert.equal(napi.isError, true)
      assert.equal(typeof napi.code, 'string')
      assert.deepEqual(thrown(() => call(builds.wasm)), napi)
    }
    assert.equal(thrown(() => builds.napi.decodeCacheText(truncated)).offset, 12)
  })

  test('both builds give the same values, bytes as Uint8Arrays', () => {
    const text = JSON.stringify({ '/xo-vm-backups/vm/20240101T000000Z.json': { mode: 'full', timestamp: 1 } })
    const bytes = builds.napi.encodeJson(text, 7)
    assert.ok(bytes instanceof Uint8Array)
    assert.deepEqual(Buffer.from(builds.wasm.encodeJson(text, 7)), Buffer.from(bytes))
    for (const build of Object.values(builds)) {
      assert.equal(build.decodeCacheText(bytes), text)
      assert.equal(build.explainDecode(bytes), undefined)
      assert.equal(build.checkKeys('vm', ['/xo-vm-backups/vm/20240101T000000Z.json']), undefined)
    }
    assert.deepEqual(builds.napi.readHeader(bytes), builds.wasm.readHeader(bytes))
    assert.equal(builds.napi.readHeader(bytes).generation, 7)
    const files = (build) => build.newCipher('chacha20-poly1305', new Uint8Array(32)).initialFiles(new Uint8Array(12), 'u')
    for (const list of [files(builds.napi), files(builds.wasm)]) assert.ok(list.every((file) => file instanceof Uint8Array))
    assert.deepEqual(files(builds.napi).map((f) => Buffer.from(f)), files(builds.wasm).map((f) => Buffer.from(f)))
  })

  test("the JS side's repository layout is the core's", () => {
    // js/common/layout.js keeps its own constants (the page and the sample
    // generator use them before any core is loaded): they must be these.
    const core = builds.napi.repositoryLayout()
    assert.deepEqual(builds.wasm.repositoryLayout(), core)
    assert.deepEqual({ backupDir: BACKUP_DIR, cacheFile: CACHE_FILE, indexDir: INDEX_DIR }, core)
  })
})
