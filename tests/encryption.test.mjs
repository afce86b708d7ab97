// Encrypted repositories: the shared vectors through the napi addon and the
// wasm build (the Rust suite runs them too: crates/core/tests/
// encryption_vectors.rs), then whole repositories encrypted as Xen
// Orchestra encrypts a remote, made with Node's crypto
// (tests/helpers/xo-encryption.mjs): listed, written, deleted, checked and
// repaired with the key, for both algorithms; refused without it or with
// another, with every file's bytes and mtime unchanged.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import { LocalHandler, openRepository } from 'brcache'
import { generateRepository } from '../js/sample/generate.js'
import { encryptionApi as napi } from '../js/node/native.js'
import { encryptionApi as wasm } from '../js/wasm.js'
import { loadNativeAddon, loadWasmModule } from '../js/node/load-core.js'
import * as wasmCore from '../js/wasm.js'
import {
  ALGORITHMS,
  KEY,
  OTHER_KEY,
  encryptAsXo,
  filesOf,
  fingerprintTree,
  readCacheAsXo,
  readMetadataAsXo,
  xoDecrypt,
  xoEncrypt,
} from './helpers/xo-encryption.mjs'

const vectors = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, 'vectors', 'encryption.json'), 'utf8'))
const b64 = (text) => (text === null ? undefined : Buffer.from(text, 'base64'))
const cli = path.join(import.meta.dirname, '..', 'js', 'node', 'cli.js')

const SURFACES = {
  napi: { api: napi, raw: loadNativeAddon() },
  wasm: { api: wasm, raw: loadWasmModule() },
}

for (const [surface, { api, raw }] of Object.entries(SURFACES)) {
  describe(`${surface}: the encryption vectors`, () => {
    test(`${vectors.files.length} files open as Node sealed them, or fail as they must`, () => {
      for (const c of vectors.files) {
        const cipher = api.newCipher(c.algorithm, c.key)
        if (c.error) assert.throws(() => cipher.open(b64(c.sealed), 'x/f.json'), { code: c.error, name: 'BrcacheError', message: /^x\/f\.json: / }, c.name)
        else assert.deepEqual(Buffer.from(cipher.open(b64(c.sealed))), b64(c.plaintext), c.name)
      }
    })

    test(`${vectors.seals.length} seals give Node's bytes for the same IV`, () => {
      for (const c of vectors.seals) {
        const cipher = raw.newCipher(c.algorithm, Buffer.from('xo-remote-encryption-key-32-char'))
        assert.deepEqual(Buffer.from(cipher.seal(b64(c.iv), b64(c.plaintext))), b64(c.sealed), c.name)
      }
    })

    test(`${vectors.opens.length} descriptors and keys open a repository as they must`, () => {
      for (const c of vectors.opens) {
        const open = () => api.openEncryption(b64(c.descriptor), c.key ?? undefined)
        if (c.error) assert.throws(open, { code: c.error }, c.name)
        else if (c.plaintext) assert.equal(open(), null, c.name)
        else assert.equal(open().algorithm, c.algorithm, c.name)
      }
    })

    test(`${vectors.keyChecks.length} key checks accept only the right key`, () => {
      for (const c of vectors.keyChecks) {
        const check = () => api.newCipher(c.algorithm, c.key).verifyKey(b64(c.metadata))
        if (c.error) assert.throws(check, { code: c.error, message: /^metadata\.json: / }, c.name)
        else check()
      }
    })

    test('a sealed file opens with Node, with a fresh IV every time', () => {
      for (const algorithm of ALGORITHMS) {
        const cipher = api.newCipher(algorithm, KEY)
        const [a, b] = [cipher.seal('same bytes'), cipher.seal('same bytes')]
        assert.notDeepEqual(Buffer.from(a).subarray(0, 12), Buffer.from(b).subarray(0, 12))
        assert.equal(xoDecrypt(algorithm, KEY, Buffer.from(a)).toString(), 'same bytes')
      }
    })
  })
}

// --- repositories -------------------------------------------------------------

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-encryption-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A plaintext sample and its copy encrypted as XO would have it: `{ plain, encrypted }`. */
async function pair(t, algorithm, { vms = 3, retention = 5, caches = 'xo' } = {}) {
  const plain = tempDir(t)
  await generateRepository(plain, { vms, retention, seed: `encryption ${algorithm}`, caches: false })
  const encrypted = tempDir(t)
  fs.cpSync(plain, encrypted, { recursive: true })
  encryptAsXo(encrypted, { algorithm, caches })
  return { plain, encrypted }
}

const ids = (view) => Object.fromEntries(Object.entries(view).map(([vm, list]) => [vm, list.map((s) => s.id)]))

/** Every file brcache or XO wrote decrypts with Node (data placeholders are empty). */
function assertAllEncrypted(dir, algorithm, key = KEY) {
  let sealed = 0
  for (const file of filesOf(dir)) {
    const bytes = fs.readFileSync(path.join(dir, file))
    if (file === 'encryption.json' || bytes.length === 0) continue
    assert.doesNotThrow(() => xoDecrypt(algorithm, key, bytes), `${file} is not encrypted with the key`)
    sealed++
  }
  return sealed
}

function run(args, env = {}) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, BRCACHE_ENCRYPTION_KEY: '', ...env } })
}

for (const algorithm of ALGORITHMS) {
  describe(`a repository XO encrypted with ${algorithm}`, () => {
    test('lists what the plaintext repository lists, on both cores; the caches brcache rewrites XO reads unchanged', async (t) => {
      const { plain, encrypted } = await pair(t, algorithm)
      const expected = await openRepository(plain, { index: false }).listSummaries()
      assert.equal(Object.keys(expected).length, 3)
      for (const core of [undefined, wasmCore]) {
        const repository = openRepository(encrypted, { encryptionKey: KEY, ...(core && { core }) })
        assert.deepStrictEqual(await repository.listSummaries(), expected)
        assert.deepStrictEqual(await repository.listAllVmBackups(), await openRepository(plain).listAllVmBackups())
        await repository.settle()
      }
      // XO's caches had no brcache header: the listing rewrote them, still
      // encrypted, and XO reads the same records.
      for (const vm of Object.keys(expected)) {
        const body = readCacheAsXo(encrypted, vm, { algorithm })
        assert.deepStrictEqual(Object.keys(body).sort(), expected[vm].map((s) => s.id).sort())
        const sealed = fs.readFileSync(path.join(encrypted, 'xo-vm-backups', vm, 'cache.json.gz'))
        // Not gzip on the share: a gunzip fails on it (its first bytes are the random IV).
        assert.throws(() => zlib.gunzipSync(sealed), undefined, 'a cache in clear')
      }
      assert.ok(assertAllEncrypted(encrypted, algorithm) > 15)
    })

    test('write, delete, check and repair with the key: XO reads every file brcache wrote', async (t) => {
      const { encrypted } = await pair(t, algorithm)
      const repository = openRepository(encrypted, { encryptionKey: KEY })
      const [vm, other] = Object.keys(await repository.listSummaries())
      const before = (await repository.listVmBackups(vm)).map((r) => r.id)

      const timestamp = Date.UTC(2025, 5, 1, 2, 0, 5)
      const id = await repository.writeVmBackupMetadata(vm, { mode: 'full', timestamp, xva: './20250601T020005Z.xva', size: 7, vm: { uuid: vm } })
      assert.equal(readMetadataAsXo(encrypted, vm, '20250601T020005Z.json', { algorithm }).size, 7)
      assert.ok(id in readCacheAsXo(encrypted, vm, { algorithm }), 'the new restore point in the cache XO reads')

      await repository.deleteVmBackups([before[0]])
      const cache = readCacheAsXo(encrypted, vm, { algorithm })
      assert.equal(before[0] in cache, false)
      assert.deepStrictEqual(Object.keys(cache).sort(), [...before.slice(1), id].sort())
      assert.equal(fs.existsSync(path.join(encrypted, before[0].slice(1))), false)

      // XO backs up behind brcache's back: check finds it, repair records it.
      const name = '20250701T020005Z.json'
      fs.writeFileSync(
        path.join(encrypted, 'xo-vm-backups', other, name),
        xoEncrypt(algorithm, KEY, JSON.stringify({ mode: 'delta', timestamp: Date.UTC(2025, 6, 1, 2, 0, 5), vhds: {}, size: 1 })),
      )
      const found = await repository.checkVm(other)
      assert.deepStrictEqual(found.missing, [`/xo-vm-backups/${other}/${name}`])
      const repaired = await repository.checkVm(other, { repair: true })
      assert.equal(repaired.repaired, true)
      assert.ok(`/xo-vm-backups/${other}/${name}` in readCacheAsXo(encrypted, other, { algorithm }))
      assert.equal((await repository.checkVm(other)).coherent, true)
      assertAllEncrypted(encrypted, algorithm)
    })

    test("writes and deletes lock the VM folder (`<vm>.lock` beside it, as XO's backup runs do), through the encryption", async (t) => {
      const { encrypted } = await pair(t, algorithm, { vms: 1, retention: 2 })
      const [vm] = fs.readdirSync(path.join(encrypted, 'xo-vm-backups')).filter((name) => !name.startsWith('.'))
      const held = []
      class Recording extends LocalHandler {
        async lock(file, options) {
          const release = await super.lock(file, options)
          held.push([file, fs.statSync(path.join(encrypted, `${file}.lock`)).isDirectory()])
          return release
        }
      }
      const repository = openRepository(new Recording(encrypted), { encryptionKey: KEY })
      const id = await repository.writeVmBackupMetadata(vm, { mode: 'delta', timestamp: Date.UTC(2025, 0, 1), vhds: {}, size: 1, vm: { name_label: 'lock-probe' } })
      await repository.deleteVmBackups([id])
      assert.deepStrictEqual(held, [
        [`xo-vm-backups/${vm}`, true],
        [`xo-vm-backups/${vm}`, true],
      ])
      assert.equal(fs.existsSync(path.join(encrypted, 'xo-vm-backups', `${vm}.lock`)), false, 'released')
      assert.deepStrictEqual(await repository.listAllVms(), [vm])
    })

    test('the repository index is encrypted too: no name, size or file name in clear', async (t) => {
      const { plain, encrypted } = await pair(t, algorithm, { vms: 4 })
      const repository = openRepository(encrypted, { encryptionKey: KEY, index: true })
      await repository.buildIndex()
      const vm = fs.readdirSync(path.join(encrypted, 'xo-vm-backups')).find((name) => !name.startsWith('.'))
      await repository.writeVmBackupMetadata(vm, { mode: 'full', timestamp: Date.UTC(2025, 0, 1), xva: './x.xva', size: 1, vm: { name_label: 'index-probe' } })
      const indexDir = path.join(encrypted, 'xo-vm-backups', '.brcache-index')
      const indexFiles = fs.readdirSync(indexDir)
      assert.ok(indexFiles.length >= 2, 'a snapshot and a segment')
      const names = Object.values(await openRepository(plain).listSummaries()).map((list) => list[0].vm.name_label)
      for (const file of indexFiles) {
        const bytes = fs.readFileSync(path.join(indexDir, file))
        assert.doesNotThrow(() => xoDecrypt(algorithm, KEY, bytes), file)
        for (const needle of [...names, 'index-probe', 'timestamp', '.json']) {
          assert.equal(bytes.includes(needle), false, `${file} holds ${needle} in clear`)
        }
      }
      // Listings from it agree with the folders.
      const viaIndex = await openRepository(encrypted, { encryptionKey: KEY }).listSummaries()
      assert.deepStrictEqual(ids(viaIndex), ids(await openRepository(encrypted, { encryptionKey: KEY, index: false }).listSummaries()))
      assertAllEncrypted(encrypted, algorithm)
    })

    test('without the key: every call fails naming encryption.json and the algorithm, and nothing changes', async (t) => {
      const { encrypted } = await pair(t, algorithm)
      const before = fingerprintTree(encrypted)
      const dirsBefore = fs.readdirSync(encrypted, { recursive: true }).sort()
      const repository = openRepository(encrypted, { index: true })
      const vm = fs.readdirSync(path.join(encrypted, 'xo-vm-backups'))[0]
      const refused = { code: 'ENCRYPTED', message: new RegExp(`^encryption\\.json: .*${algorithm}`) }
      const calls = {
        listAllVms: () => repository.listAllVms(),
        listSummaries: () => repository.listSummaries(),
        listVmBackups: () => repository.listVmBackups(vm),
        writeVmBackupMetadata: () => repository.writeVmBackupMetadata(vm, { mode: 'full', timestamp: Date.UTC(2025, 0, 1) }),
        deleteVmBackups: () => repository.deleteVmBackups([`/xo-vm-backups/${vm}/${fs.readdirSync(path.join(encrypted, 'xo-vm-backups', vm)).find((n) => n.endsWith('Z.json'))}`]),
        checkVm: () => repository.checkVm(vm, { repair: true }),
        checkAll: () => repository.checkAll({ repair: true }),
        checkIndex: () => repository.checkIndex({ repair: true }),
        buildIndex: () => repository.buildIndex(),
      }
      for (const [name, call] of Object.entries(calls)) await assert.rejects(call(), refused, name)
      await repository.settle()
      for (const args of [['list', encrypted], ['list', encrypted, '--json'], ['check', encrypted, '--repair'], ['index', encrypted]]) {
        const result = run(args)
        assert.equal(result.status, 2, `${args.join(' ')}: ${result.stdout}`)
        assert.match(result.stderr, new RegExp(`encryption\\.json: the repository is encrypted with ${algorithm}`))
        assert.doesNotMatch(result.stdout, /no restore point/)
      }
      const state = await repository.encryption()
      assert.deepStrictEqual(state, { algorithm, readable: false, code: 'ENCRYPTED', reason: state.reason })
      assert.match(state.reason, /^encryption\.json: the repository is encrypted/)
      assert.deepStrictEqual(fingerprintTree(encrypted), before)
      assert.deepStrictEqual(fs.readdirSync(encrypted, { recursive: true }).sort(), dirsBefore, 'no file, folder, lock or temp created')
    })

    test('with another key: the same refusal, found through metadata.json before anything else is read', async (t) => {
      const { encrypted } = await pair(t, algorithm)
      const before = fingerprintTree(encrypted)
      const reads = []
      const local = new LocalHandler(encrypted)
      const recording = Object.create(local)
      for (const method of ['list', 'listWithTypes', 'readFile', 'writeFile', 'stat', 'mkdir', 'lock', 'unlink', 'rename', 'cleanTemps']) {
        recording[method] = (...args) => {
          reads.push(`${method} ${args[0]}`)
          return local[method](...args)
        }
      }
      const repository = openRepository(recording, { encryptionKey: OTHER_KEY })
      const refused = { code: 'WRONG_ENCRYPTION_KEY', message: /^metadata\.json: / }
      await assert.rejects(repository.listSummaries(), refused)
      await assert.rejects(repository.writeVmBackupMetadata(fs.readdirSync(path.join(encrypted, 'xo-vm-backups'))[0], { timestamp: 1 }), refused)
      await assert.rejects(repository.checkAll({ repair: true }), refused)
      assert.deepStrictEqual(reads, ['readFile encryption.json', 'readFile metadata.json'])
      const result = run(['check', encrypted, '--repair'], { BRCACHE_ENCRYPTION_KEY: OTHER_KEY })
      assert.equal(result.status, 2)
      assert.match(result.stderr, /metadata\.json: does not decrypt/)
      assert.deepStrictEqual(fingerprintTree(encrypted), before)
    })

    test('a tampered metadata file is named and counted, never listed, and list exits 1', async (t) => {
      const { encrypted } = await pair(t, algorithm, { caches: 'none' })
      const vm = fs.readdirSync(path.join(encrypted, 'xo-vm-backups'))[0]
      const name = fs.readdirSync(path.join(encrypted, 'xo-vm-backups', vm)).find((n) => n.endsWith('Z.json'))
      const file = path.join(encrypted, 'xo-vm-backups', vm, name)
      const bytes = fs.readFileSync(file)
      bytes[bytes.length - 20] ^= 0x40
      fs.writeFileSync(file, bytes)

      // Young, it may be a file XO is still writing in place: not listed, not reported.
      const young = await openRepository(encrypted, { encryptionKey: KEY, index: false }).restoreView()
      assert.deepStrictEqual(young.unreadable, [])
      assert.ok(!young.vms[vm].some((s) => s.id.endsWith(name)))
      const past = new Date(Date.now() - 120_000)
      fs.utimesSync(file, past, past)

      const repository = openRepository(encrypted, { encryptionKey: KEY })
      const { vms, unreadable } = await repository.restoreView()
      assert.deepStrictEqual(
        unreadable.map(({ file }) => file),
        [`xo-vm-backups/${vm}/${name}`],
      )
      assert.match(unreadable[0].reason, /does not authenticate/)
      assert.equal(vms[vm].length, 4)
      assert.ok(!vms[vm].some((s) => s.id.endsWith(name)))
      const report = await repository.checkVm(vm)
      assert.deepStrictEqual(report.unreadable.map(({ id }) => id), [`/xo-vm-backups/${vm}/${name}`])
      await repository.settle()

      const result = run(['list', encrypted], { BRCACHE_ENCRYPTION_KEY: KEY })
      assert.equal(result.status, 1, result.stderr)
      assert.match(result.stderr, new RegExp(`unreadable, not listed: xo-vm-backups/${vm}/${name}: .*does not authenticate`))
      assert.match(result.stdout, /14 restore points; 1 metadata file could not be read/)
      const one = run(['list', encrypted, '--vm', vm], { BRCACHE_ENCRYPTION_KEY: KEY })
      assert.equal(one.status, 1, one.stderr)
      assert.match(one.stderr, new RegExp(`unreadable, not listed: xo-vm-backups/${vm}/${name}`))
      assert.match(one.stdout, /1 metadata file could not be read/)
      const other = fs.readdirSync(path.join(encrypted, 'xo-vm-backups')).find((v) => v !== vm)
      assert.equal(run(['list', encrypted, '--vm', other], { BRCACHE_ENCRYPTION_KEY: KEY }).status, 0)
    })

    test('a tampered cache is rebuilt from the metadata files and written encrypted', async (t) => {
      const { encrypted } = await pair(t, algorithm)
      const vm = fs.readdirSync(path.join(encrypted, 'xo-vm-backups'))[0]
      const cachePath = path.join(encrypted, 'xo-vm-backups', vm, 'cache.json.gz')
      const expected = Object.keys(readCacheAsXo(encrypted, vm, { algorithm })).sort()
      const bytes = fs.readFileSync(cachePath)
      bytes[15] ^= 1
      fs.writeFileSync(cachePath, bytes)
      const repository = openRepository(encrypted, { encryptionKey: KEY })
      const report = await repository.checkVm(vm)
      assert.match(report.cacheError, /cache\.json\.gz: does not authenticate/)
      assert.equal(report.coherent, false)
      // A listing gives the truth, and repairs the cache behind it.
      assert.deepStrictEqual((await repository.listVmSummaries(vm)).map((s) => s.id).sort(), expected)
      await repository.settle()
      assert.deepStrictEqual(Object.keys(readCacheAsXo(encrypted, vm, { algorithm })).sort(), expected)
      assert.equal((await repository.checkVm(vm)).coherent, true)
      fs.writeFileSync(cachePath, bytes)
      const repaired = await repository.checkVm(vm, { repair: true })
      assert.equal(repaired.repaired, true)
      assert.match(repaired.cacheError, /does not authenticate/)
      assert.deepStrictEqual(Object.keys(readCacheAsXo(encrypted, vm, { algorithm })).sort(), expected)
    })
  })
}

describe('keys and repositories that do not match', () => {
  test('a key for a plaintext repository is refused, and nothing is written', async (t) => {
    const dir = tempDir(t)
    await generateRepository(dir, { vms: 2, retention: 2, seed: 'plain' })
    const before = fingerprintTree(dir)
    await assert.rejects(openRepository(dir, { encryptionKey: KEY }).listSummaries(), { code: 'NOT_ENCRYPTED', message: /^encryption\.json: / })
    assert.deepStrictEqual(fingerprintTree(dir), before)
    assert.deepStrictEqual(await openRepository(dir).encryption(), { algorithm: null, readable: true })
  })

  test('encryption.json naming the other algorithm than the files: the key check fails', async (t) => {
    const { encrypted } = await pair(t, 'chacha20-poly1305')
    fs.writeFileSync(path.join(encrypted, 'encryption.json'), JSON.stringify({ algorithm: 'aes-256-gcm' }))
    await assert.rejects(openRepository(encrypted, { encryptionKey: KEY }).listSummaries(), { code: 'WRONG_ENCRYPTION_KEY' })
  })

  test('an encryption.json brcache cannot read is an error, never plaintext', async (t) => {
    const dir = tempDir(t)
    await generateRepository(dir, { vms: 1, retention: 1, seed: 'odd' })
    fs.writeFileSync(path.join(dir, 'encryption.json'), '{"algorithm":"aes-128-cbc"}')
    await assert.rejects(openRepository(dir).listSummaries(), { code: 'UNSUPPORTED_ENCRYPTION', message: /^encryption\.json: .*aes-128-cbc/ })
    const result = run(['list', dir])
    assert.equal(result.status, 2)
  })

  test('brcache gen writes an encrypted repository XO reads, and the key file works', async (t) => {
    const dir = tempDir(t)
    const keyFile = path.join(tempDir(t), 'key')
    fs.writeFileSync(keyFile, `${KEY}\n`)
    for (const algorithm of ALGORITHMS) {
      const repo = path.join(dir, algorithm)
      const made = run(['gen', repo, '--vms', '2', '--retention', '3', '--encryption-key-file', keyFile, '--algorithm', algorithm])
      assert.equal(made.status, 0, made.stderr)
      assert.deepStrictEqual(JSON.parse(fs.readFileSync(path.join(repo, 'encryption.json'))), { algorithm })
      assert.ok(assertAllEncrypted(repo, algorithm) >= 2 * 3 + 2 + 1)
      const [vm] = fs.readdirSync(path.join(repo, 'xo-vm-backups'))
      assert.equal(Object.keys(readCacheAsXo(repo, vm, { algorithm })).length, 3)
      const listed = run(['list', repo, '--json', '--encryption-key-file', keyFile])
      assert.equal(listed.status, 0, listed.stderr)
      assert.equal(Object.values(JSON.parse(listed.stdout)).flat().length, 6)
      // A plain gunzip of a cache fails: nothing in clear.
      assert.throws(() => zlib.gunzipSync(fs.readFileSync(path.join(repo, 'xo-vm-backups', vm, 'cache.json.gz'))))
    }
    assert.equal(run(['gen', path.join(dir, 'x'), '--algorithm', 'aes-256-gcm']).status, 2)
  })
})
