// The write path's splice: recording a backup, or deleting one, on a cache
// the header proves true rewrites only the chunks the change touches
// (crates/core/src/chunked.rs, splice.rs), and the cache reads exactly as
// a whole rewrite, for brcache and for Xen Orchestra (plain gunzip). When
// the header proves nothing (another writer's file in the folder, a cache
// XO wrote), the whole cache is read, reconciled and written, as always.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import { VmCache, openRepository } from 'brcache'
import * as napi from '../js/node/native.js'
import * as wasm from '../js/wasm.js'
import { createRandom, makeVm, makeVmBackups } from '../js/sample/metadata.js'

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-write-path-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A VM with `retention` restore points and a cache brcache wrote, and more restore points to come. */
async function written(t, retention) {
  const dir = tempDir(t)
  const rng = createRandom(`write-path-${retention}`)
  const vm = makeVm(rng, 0)
  const backups = makeVmBackups(rng, { vm, retention: retention + 5 })
  const folder = path.join(dir, 'xo-vm-backups', vm.uuid)
  fs.mkdirSync(folder, { recursive: true })
  for (const { filename, metadata } of backups.slice(0, retention)) fs.writeFileSync(path.join(folder, filename), JSON.stringify(metadata))
  const repository = openRepository(dir, { index: false })
  await repository.checkVm(vm.uuid, { repair: true })
  return { dir, vm: vm.uuid, backups, repository }
}

const cachePath = (dir, vm) => path.join(dir, 'xo-vm-backups', vm, 'cache.json.gz')
const xoRead = (dir, vm) => JSON.parse(zlib.gunzipSync(fs.readFileSync(cachePath(dir, vm))))

/** What the cache must hold: a rebuild from the folder's metadata files. */
function rebuilt(dir, vm) {
  const folder = path.join(dir, 'xo-vm-backups', vm)
  const listing = fs.readdirSync(folder)
  const files = new Map(listing.filter((n) => n.endsWith('Z.json')).map((n) => [n, fs.readFileSync(path.join(folder, n))]))
  return JSON.parse(VmCache.rebuild(vm, listing, files).cache.body())
}

/** Each chunk's compressed bytes, by the table in the FEXTRA sub-field `BK`. */
function chunks(bytes) {
  const xlen = bytes.readUInt16LE(10)
  const extra = bytes.subarray(12, 12 + xlen)
  for (let at = 0; at < extra.length; at += 4 + extra.readUInt16LE(at + 2)) {
    if (extra.toString('latin1', at, at + 2) !== 'BK') continue
    const count = extra.readUInt32LE(at + 4)
    const out = []
    let offset = 12 + xlen
    for (let i = 0; i < count; i++) {
      const length = extra.readUInt32LE(at + 8 + i * 16)
      out.push(bytes.subarray(offset, offset + length))
      offset += length
    }
    assert.equal(offset, bytes.length - 8, 'the table covers the deflate stream')
    return out
  }
  assert.fail('no chunk table')
}

describe('the write path splices a true cache', () => {
  test('a backup recorded on a long retention keeps the compressed bytes of every older chunk', async (t) => {
    const { dir, vm, backups, repository } = await written(t, 800)
    const before = chunks(fs.readFileSync(cachePath(dir, vm)))
    assert.ok(before.length >= 4, `${before.length} chunks`)
    await repository.writeVmBackupMetadata(vm, backups[800].metadata)
    const after = chunks(fs.readFileSync(cachePath(dir, vm)))
    // Every chunk but the last (which the new entry joins) and the closing
    // brace, byte for byte: a splice, not a rewrite.
    const kept = before.length - 2
    assert.deepStrictEqual(after.slice(0, kept), before.slice(0, kept))
    assert.deepStrictEqual(xoRead(dir, vm), rebuilt(dir, vm))
    assert.equal((await repository.checkVm(vm)).fastPath, true)
    assert.equal(Object.keys(xoRead(dir, vm)).length, 801)
  })

  test('a delete at retention (the oldest) rewrites the first chunk only, and reads as a rewrite', async (t) => {
    const { dir, vm, repository } = await written(t, 800)
    const before = chunks(fs.readFileSync(cachePath(dir, vm)))
    const [oldest] = (await repository.listVmBackups(vm)).map((r) => r.id)
    await repository.deleteVmBackups([oldest])
    const after = chunks(fs.readFileSync(cachePath(dir, vm)))
    assert.equal(after.length, before.length)
    assert.notDeepEqual(after[0], before[0])
    assert.deepStrictEqual(after.slice(1), before.slice(1), 'every later chunk copied as it is')
    assert.deepStrictEqual(xoRead(dir, vm), rebuilt(dir, vm))
    assert.equal(oldest in xoRead(dir, vm), false)
    assert.equal((await repository.checkVm(vm)).coherent, true)
  })

  test('a file another writer added behind the cache: no splice, the whole cache reconciled', async (t) => {
    const { dir, vm, backups, repository } = await written(t, 10)
    const behind = backups[11]
    fs.writeFileSync(path.join(dir, 'xo-vm-backups', vm, behind.filename), JSON.stringify(behind.metadata))
    await repository.writeVmBackupMetadata(vm, backups[10].metadata)
    const cache = xoRead(dir, vm)
    assert.ok(`/xo-vm-backups/${vm}/${behind.filename}` in cache, "the other writer's backup is in the cache")
    assert.deepStrictEqual(cache, rebuilt(dir, vm))
  })

  test('a cache XO wrote (no header): no splice; written whole in brcache form', async (t) => {
    const { dir, vm, backups, repository } = await written(t, 5)
    fs.writeFileSync(cachePath(dir, vm), zlib.gzipSync(JSON.stringify(xoRead(dir, vm))))
    await repository.writeVmBackupMetadata(vm, backups[5].metadata)
    assert.deepStrictEqual(xoRead(dir, vm), rebuilt(dir, vm))
    assert.equal((await repository.checkVm(vm)).fastPath, true, 'a header again')
  })
})

describe('spliceCache, one behaviour on both cores', () => {
  test('napi and wasm give the same bytes, and null for the same refusals', async (t) => {
    const { dir, vm, backups } = await written(t, 30)
    const bytes = fs.readFileSync(cachePath(dir, vm))
    const listing = [...fs.readdirSync(path.join(dir, 'xo-vm-backups', vm)), backups[30].filename]
    const added = [[backups[30].filename, Buffer.from(JSON.stringify(backups[30].metadata))]]
    const a = napi.spliceCache(vm, bytes, listing, added)
    const b = wasm.spliceCache(vm, bytes, listing, added)
    assert.ok(a && b)
    assert.deepStrictEqual(Buffer.from(a), Buffer.from(b))
    assert.deepStrictEqual(Buffer.from(napi.indexSegmentOf(vm, a)), Buffer.from(wasm.indexSegmentOf(vm, b)))
    const removed = [backups[0].filename]
    const without = listing.filter((n) => n !== backups[0].filename && n !== backups[30].filename)
    assert.deepStrictEqual(Buffer.from(napi.spliceCache(vm, bytes, without, [], removed)), Buffer.from(wasm.spliceCache(vm, bytes, without, [], removed)))
    // The header does not prove the cache true: null on both.
    for (const core of [napi, wasm]) {
      assert.equal(core.spliceCache(vm, bytes, [...listing, '20990101T000000Z.json'], added), null)
      assert.throws(() => core.spliceCache(vm, bytes, listing, [['../x.json', Buffer.from('{}')]]), { code: 'INVALID_KEY' })
    }
  })
})
