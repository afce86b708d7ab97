// Hostile input: bad cache and metadata bytes, through the core on both
// Node surfaces and through the repository API. Every case must end in a
// typed error or a rebuild: never a crash, a hang, a polluted prototype,
// nor a file touched outside the VM folder. The Rust suite runs the cache
// cases too (tests/vectors/manifest.json, crates/core/tests/).

import assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import zlib from 'node:zlib'
import * as napi from 'brcache'
import * as wasm from 'brcache/wasm'

const vectors = join(import.meta.dirname, 'vectors')
const { cases } = JSON.parse(readFileSync(join(vectors, 'manifest.json'), 'utf8'))
const surfaces = { napi, wasm }
const VM = '5f1d0c3e-0000-4000-8000-000000000001'
const OTHER = '5f1d0c3e-0000-4000-8000-000000000002'
const dirs = []
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

function assertUnpolluted() {
  for (const name of ['polluted', 'x', 'isAdmin']) {
    assert.equal({}[name], undefined, `Object.prototype.${name} was set`)
    assert.equal(Object.prototype[name], undefined)
  }
}

/** The outcome of `fn`: 'ok', or the BrcacheError's code. Anything else fails the test. */
function outcome(fn) {
  try {
    fn()
    return 'ok'
  } catch (error) {
    assert.ok(error instanceof napi.BrcacheError, `not a typed error: ${error?.stack ?? error}`)
    assert.ok(error.message.length > 0)
    return error.code
  }
}

// Cache classes beyond the codec vectors: keys that try to leave the VM
// folder, and entries of the wrong type, as the core sees them per VM.
const key = (name, vm = VM) => `/xo-vm-backups/${vm}/${name}`
const extraCaches = {
  'key to another VM': { [key('20240101T000000Z.json', OTHER)]: { mode: 'full' } },
  'key climbing out': { [`/xo-vm-backups/${VM}/../../sentinel.json`]: { mode: 'full' } },
  'key into a subfolder': { [key('vdis/20240101T000000Z.json')]: { mode: 'full' } },
  'key to a data file': { [key('20240101T000000Z.xva')]: { mode: 'full' } },
  'absolute key elsewhere': { '/etc/passwd.json': {} },
  'empty key': { '': {} },
  'NUL in key': { [key('20240101T000000Z.json\u0000')]: {} },
  'hidden key': { [key('.20240101T000000Z.json')]: {} },
  '__proto__ and constructor keys': { __proto__: { polluted: true }, constructor: { prototype: { x: 1 } } },
}

describe('every bad cache, on both surfaces, as a VM cache', () => {
  test('codec vectors: the same outcome through napi and wasm, typed or accepted', () => {
    for (const testCase of cases) {
      const bytes = readFileSync(join(vectors, testCase.input))
      const results = Object.values(surfaces).map((b) => [
        outcome(() => b.decodeCache(bytes, testCase.limits)),
        outcome(() => b.VmCache.decode(VM, bytes, testCase.limits)),
        outcome(() => b.summariesOf(VM, bytes, undefined, testCase.limits)),
      ])
      assert.deepStrictEqual(results[0], results[1], testCase.name)
      if (testCase.expect.error) assert.deepStrictEqual(results[0], Array(3).fill(testCase.expect.error), testCase.name)
      assertUnpolluted()
    }
  })

  test('keys that leave the VM folder are refused with INVALID_KEY, naming the key', () => {
    for (const [name, body] of Object.entries(extraCaches)) {
      const text = JSON.stringify(body).replace('"__proto__":{}', '"__proto__":{"polluted":true}')
      const bytes = zlib.gzipSync(name.startsWith('__proto__') ? '{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}' : text)
      for (const brcache of Object.values(surfaces)) {
        assert.throws(() => brcache.VmCache.decode(VM, bytes), { name: 'BrcacheError', code: 'INVALID_KEY' }, name)
        assert.throws(() => brcache.summariesOf(VM, bytes), { name: 'BrcacheError', code: 'INVALID_KEY' }, name)
        // The plain codec accepts any object of objects, as JSON.parse does.
        const decoded = brcache.decodeCache(bytes)
        assert.equal(Object.getPrototypeOf(decoded), Object.prototype)
      }
      assertUnpolluted()
    }
  })
})

// --- through the repository ----------------------------------------------------

function repositoryWith(cacheBytes) {
  const dir = mkdtempSync(join(tmpdir(), 'brcache-hostile-'))
  dirs.push(dir)
  const folder = join(dir, 'xo-vm-backups', VM)
  mkdirSync(folder, { recursive: true })
  mkdirSync(join(dir, 'xo-vm-backups', OTHER), { recursive: true })
  const names = ['20240101T000000Z.json', '20240102T000000Z.json', '20240103T000000Z.json']
  names.forEach((name, i) => writeFileSync(join(folder, name), JSON.stringify({ mode: 'full', timestamp: i + 1, size: 1, xva: `./${name.replace('.json', '.xva')}` })))
  // Files a hostile cache points at: they must survive everything.
  const sentinels = [join(dir, 'sentinel.json'), join(dir, 'xo-vm-backups', OTHER, '20240101T000000Z.json'), join(dir, 'xo-vm-backups', OTHER, '20240101T000000Z.xva')]
  for (const file of sentinels) writeFileSync(file, '{"mode":"full","timestamp":0,"xva":"./20240101T000000Z.xva"}')
  if (cacheBytes !== undefined) writeFileSync(join(folder, 'cache.json.gz'), cacheBytes)
  return { dir, folder, names, sentinels }
}

function snapshotOutside(dir) {
  const out = {}
  const walk = (rel) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${e.name}` : e.name
      // The VM's own folder, and the repository index, which every write
      // publishes to (its files are checked when read, see the index tests).
      if (path === `xo-vm-backups/${VM}` || path === 'xo-vm-backups/.brcache-index') continue
      if (e.isDirectory()) walk(path)
      else out[path] = `${statSync(join(dir, path)).mtimeMs}:${readFileSync(join(dir, path)).toString('base64')}`
    }
  }
  walk('')
  return out
}

async function exercise(core, cacheBytes) {
  const { dir, folder, names, sentinels } = repositoryWith(cacheBytes)
  const outside = snapshotOutside(dir)
  const repository = napi.openRepository(dir, { core })
  const listed = await repository.listVmBackups(VM)
  assert.deepStrictEqual(listed.map((b) => b.id), names.map((n) => key(n)))
  const summaries = await repository.listVmSummaries(VM)
  assert.deepStrictEqual(summaries.map((s) => s.id), names.map((n) => key(n)))
  await repository.settle()
  const report = await repository.checkVm(VM, { repair: true })
  assert.equal(report.stale.length + report.missing.length, report.repaired ? report.stale.length + report.missing.length : 0)
  const again = await repository.checkVm(VM)
  assert.equal(again.coherent, true, JSON.stringify(again))
  await repository.deleteVmBackups([key(names[0])])
  assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), names.slice(1).map((n) => key(n)))
  for (const file of sentinels) assert.ok(existsSync(file), `${file} was deleted`)
  assert.deepStrictEqual(snapshotOutside(dir), outside, 'a file outside the VM folder changed')
  assert.ok(existsSync(join(folder, 'cache.json.gz')))
  assertUnpolluted()
}

describe('every bad cache on disk is rebuilt, and nothing outside the VM folder is touched', () => {
  const hostile = [
    ...cases.filter((c) => c.expect.error).map((c) => [c.name, () => readFileSync(join(vectors, c.input))]),
    ...Object.entries(extraCaches).map(([name, body]) => [name, () => zlib.gzipSync(JSON.stringify(body))]),
    ['cache pointing at a sentinel through an entry id', () => zlib.gzipSync(JSON.stringify({ [key('20240101T000000Z.json')]: { mode: 'full', timestamp: 1, id: '/sentinel.json', _filename: '/sentinel.json', xva: '../../sentinel.json' } }))],
  ]
  assert.ok(hostile.length >= 25, `only ${hostile.length} hostile cache classes`)
  for (const [surface, core] of Object.entries(surfaces)) {
    test(`${surface} core: ${hostile.length} classes of bad cache bytes`, { timeout: 60_000 }, async () => {
      for (const [name, bytes] of hostile) {
        await exercise(core, bytes()).catch((error) => {
          error.message = `${name}: ${error.message}`
          throw error
        })
      }
    })
  }

  test('a folder where the cache file should be: listing still tells the truth', async () => {
    const { dir, folder, names } = repositoryWith()
    mkdirSync(join(folder, 'cache.json.gz'))
    const warnings = []
    const repository = napi.openRepository(dir, { logger: { warn: (m, d) => warnings.push(d) } })
    assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), names.map((n) => key(n)))
    await repository.settle()
    assert.ok(warnings.some((w) => w.file.endsWith('cache.json.gz')))
  })
})

const OLD = new Date(Date.now() - 120_000)

describe('bad metadata files are reported and left out, never fatal', () => {
  const metadata = {
    empty: '',
    'not JSON': '{"mode":',
    array: '[1,2]',
    null: 'null',
    string: '"full"',
    'invalid UTF-8': Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]),
    'deep nesting': `{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`,
    'lone surrogate key': '{"\\ud800":1}',
  }
  const accepted = {
    '__proto__ keys': '{"__proto__":{"polluted":true},"mode":"full","timestamp":9}',
    'numbers out of range': '{"mode":"full","timestamp":9,"size":1e400}',
    'huge string': `{"mode":"full","timestamp":9,"note":"${'x'.repeat(4 << 20)}"}`,
    'wrong field types': '{"mode":42,"timestamp":"yesterday","vdis":[],"vhds":7,"vm":"x"}',
  }
  for (const [surface, core] of Object.entries(surfaces)) {
    test(`${surface} core`, { timeout: 60_000 }, async () => {
      for (const [name, bytes] of Object.entries(metadata)) {
        const { dir, folder, names } = repositoryWith()
        writeFileSync(join(folder, '20240109T000000Z.json'), bytes)
        // Older than a write in progress can be: for good, not being written.
        utimesSync(join(folder, '20240109T000000Z.json'), OLD, OLD)
        const repository = napi.openRepository(dir, { core })
        assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), names.map((n) => key(n)), name)
        const report = await repository.checkVm(VM, { repair: true })
        assert.deepStrictEqual(report.unreadable.map((u) => u.id), [key('20240109T000000Z.json')], name)
        assert.ok(report.unreadable[0].reason.length > 0)
        assertUnpolluted()
      }
      for (const [name, bytes] of Object.entries(accepted)) {
        const { dir, folder, names } = repositoryWith()
        writeFileSync(join(folder, '20240109T000000Z.json'), bytes)
        const repository = napi.openRepository(dir, { core })
        const listed = await repository.listVmBackups(VM)
        assert.deepStrictEqual(listed.map((b) => b.id), [...names, '20240109T000000Z.json'].map((n) => key(n)).sort(), name)
        await repository.listVmSummaries(VM)
        await repository.settle()
        assert.equal((await repository.checkVm(VM)).coherent, true, name)
        assertUnpolluted()
      }
      const { dir, folder, names } = repositoryWith()
      mkdirSync(join(folder, '20240109T000000Z.json'))
      const report = await napi.openRepository(dir, { core }).checkVm(VM, { repair: true })
      assert.deepStrictEqual(report.unreadable.map((u) => u.id), [key('20240109T000000Z.json')])
      assert.match(report.unreadable[0].reason, /folder/)
      assert.equal(report.entries, names.length)
    })
  }
})
