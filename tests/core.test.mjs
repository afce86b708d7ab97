// Which core `brcache` runs on: the napi addon for this platform, the wasm
// build where none loads (one notice on stderr), or the one BRCACHE_CORE
// forces (a missing one is an error). `npm test` runs this file, with the
// codec, repository, index, hostile-input and CLI tests, once on the
// default core and once more with BRCACHE_CORE=wasm.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import * as brcache from 'brcache'
import * as wasm from 'brcache/wasm'
import { addonCandidates, chooseCore, loadNativeAddon, platformTriple } from '../js/node/load-core.js'

const root = join(import.meta.dirname, '..')

/** Runs `script` (an ES module) in a child Node with BRCACHE_CORE set to `choice` (or unset). */
function node(script, choice) {
  const env = { ...process.env }
  delete env.BRCACHE_CORE
  if (choice !== undefined) env.BRCACHE_CORE = choice
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env, encoding: 'utf8' })
}

describe('the core this run is on', () => {
  test('is the one BRCACHE_CORE names, else the addon built in this clone', () => {
    assert.equal(brcache.coreName, process.env.BRCACHE_CORE === 'wasm' ? 'wasm' : 'native')
  })

  test('gives the same bytes and records as the explicit wasm entry', () => {
    const cache = { '/xo-vm-backups/v/20240101T000000Z.json': { mode: 'full', timestamp: 1, id: 'x' } }
    const bytes = brcache.encodeCache(cache, { generation: 3 })
    assert.deepEqual(Buffer.from(bytes), Buffer.from(wasm.encodeCache(cache, { generation: 3 })))
    assert.deepEqual(wasm.decodeCache(bytes), cache)
    assert.deepEqual(brcache.readCacheHeader(bytes), wasm.readCacheHeader(bytes))
  })
})

describe('choosing the core', () => {
  const addon = { kind: 'addon' }
  const module = { kind: 'wasm' }
  const fails = (message) => () => {
    throw new Error(message)
  }

  test('the addon when it loads, without a word', () => {
    const notices = []
    const chosen = chooseCore({ env: {}, loadNative: () => addon, loadWasm: fails('unused'), warn: (m) => notices.push(m) })
    assert.deepEqual(chosen, { name: 'native', backend: addon })
    assert.deepEqual(notices, [])
  })

  test('the wasm core where no addon loads, with one notice saying why', () => {
    const notices = []
    const chosen = chooseCore({ env: { BRCACHE_CORE: '' }, loadNative: fails('brcache: no native addon loads on x'), loadWasm: () => module, warn: (m) => notices.push(m) })
    assert.deepEqual(chosen, { name: 'wasm', backend: module })
    assert.equal(notices.length, 1)
    assert.match(notices[0], /^brcache: no native addon loads on x: using the WebAssembly core .*BRCACHE_CORE=wasm/)
  })

  test('BRCACHE_CORE=wasm takes the wasm core even where the addon loads, without a notice', () => {
    const notices = []
    const chosen = chooseCore({ env: { BRCACHE_CORE: 'wasm' }, loadNative: () => addon, loadWasm: () => module, warn: (m) => notices.push(m) })
    assert.deepEqual(chosen, { name: 'wasm', backend: module })
    assert.deepEqual(notices, [])
  })

  test('forcing a core that is missing is an error naming it, never the other core', () => {
    const warn = () => assert.fail('no notice when the choice is forced')
    assert.throws(
      () => chooseCore({ env: { BRCACHE_CORE: 'native' }, loadNative: fails('brcache: no native addon loads on x'), loadWasm: () => module, warn }),
      /no native addon loads on x, and BRCACHE_CORE=native forbids the WebAssembly core/,
    )
    assert.throws(
      () => chooseCore({ env: { BRCACHE_CORE: 'wasm' }, loadNative: () => addon, loadWasm: fails('brcache: the WebAssembly core is missing'), warn }),
      /the WebAssembly core is missing/,
    )
    assert.throws(
      () => chooseCore({ env: { BRCACHE_CORE: '' }, loadNative: fails('brcache: no native addon loads on x'), loadWasm: fails('brcache: the WebAssembly core is missing'), warn }),
      /no native addon loads on x; brcache: the WebAssembly core is missing/,
    )
  })

  test('any other BRCACHE_CORE is an error', () => {
    assert.throws(() => chooseCore({ env: { BRCACHE_CORE: 'napi' }, loadNative: () => addon, loadWasm: () => module }), /BRCACHE_CORE must be native, wasm or unset, not "napi"/)
  })
})

describe('platform triples and where the addon is looked for', () => {
  test('napi-rs names', () => {
    assert.equal(platformTriple({ platform: 'linux', arch: 'x64', libc: 'gnu' }), 'linux-x64-gnu')
    assert.equal(platformTriple({ platform: 'linux', arch: 'arm64', libc: 'musl' }), 'linux-arm64-musl')
    assert.equal(platformTriple({ platform: 'linux', arch: 'arm', libc: 'gnu' }), 'linux-arm-gnueabihf')
    assert.equal(platformTriple({ platform: 'darwin', arch: 'arm64' }), 'darwin-arm64')
    assert.equal(platformTriple({ platform: 'win32', arch: 'x64' }), 'win32-x64-msvc')
  })

  test('this machine is glibc Linux on x64, whose addon this clone builds', () => {
    assert.equal(platformTriple(), `${process.platform}-${process.arch}-gnu`)
    assert.deepEqual(addonCandidates('linux-x64-gnu'), ['../../npm/linux-x64-gnu/brcache.linux-x64-gnu.node', 'brcache-linux-x64-gnu'])
  })

  test('a platform without an addon: the error names every place looked at', () => {
    assert.throws(
      () => loadNativeAddon('linux-riscv64-gnu'),
      (error) => {
        assert.equal(
          error.message,
          'brcache: no native addon loads on linux-riscv64-gnu (../../npm/linux-riscv64-gnu/brcache.linux-riscv64-gnu.node: not installed; brcache-linux-riscv64-gnu: not installed)',
        )
        return true
      },
    )
  })
})

describe('BRCACHE_CORE in a fresh process', () => {
  const script = "import { coreName, decodeCache, encodeCache } from 'brcache'; console.log(coreName, JSON.stringify(decodeCache(encodeCache({}))))"

  test('unset: the addon, and nothing on stderr', () => {
    const run = node(script, undefined)
    assert.equal(run.status, 0, run.stderr)
    assert.equal(run.stdout, 'native {}\n')
    assert.equal(run.stderr, '')
  })

  test('native and wasm: the core named, and nothing on stderr', () => {
    for (const choice of ['native', 'wasm']) {
      const run = node(script, choice)
      assert.equal(run.status, 0, run.stderr)
      assert.equal(run.stdout, `${choice} {}\n`)
      assert.equal(run.stderr, '')
    }
  })

  test('anything else: the import fails, saying what is allowed', () => {
    const run = node(script, 'fast')
    assert.notEqual(run.status, 0)
    assert.match(run.stderr, /BRCACHE_CORE must be native, wasm or unset, not "fast"/)
  })

  test('the command line says it in one line, with exit status 2', () => {
    const run = spawnSync(process.execPath, [join(root, 'js', 'bin.js'), '--help'], {
      env: { ...process.env, BRCACHE_CORE: 'fast' },
      encoding: 'utf8',
    })
    assert.equal(run.status, 2)
    assert.equal(run.stderr, 'brcache: BRCACHE_CORE must be native, wasm or unset, not "fast"\n')
    assert.equal(run.stdout, '')
  })
})
