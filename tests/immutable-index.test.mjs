// The index of an immutable repository (crates/core/src/index/epochs.rs,
// crates/core/src/ops/journal.rs) on real folders whose share refuses to
// overwrite or delete what exists (as Object Lock and chattr +i do): made by
// the first listing, followed by writes and deletes, never a cache, a lock,
// an overwrite or a delete of brcache's; and S3 Object Lock found out with
// GetObjectLockConfiguration on a fake endpoint.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import { createServer } from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { LocalHandler, SimulatedShare, openRepository } from 'brcache'
import { generateRepository } from '../js/sample/generate.js'
import { INDEX_DIR } from '../js/common/repo-index.js'
import { diskTruth } from './helpers/repo-index-campaign.mjs'
import { startFakes, stopFakes } from './helpers/fake-s3.mjs'

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-immutable-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const METADATA = /^xo-vm-backups\/[^/]+\/\d{8}T\d{6}Z\.json$/

/**
 * A local folder behind a share that refuses, with EPERM, every write over
 * an existing file and every delete but a restore point's metadata and data
 * (Xen Orchestra deletes those once their retention lifts), and records
 * what it refused. `lockless`: shown as a share without locks, whose store
 * has Object Lock on.
 */
function immutableShare(dir, { lockless = false } = {}) {
  const refused = []
  const calls = []
  const simulated = new SimulatedShare(new LocalHandler(dir), {
    rttMs: 0,
    faults: (call) => {
      calls.push(call)
      const exists = fs.existsSync(path.join(dir, call.path))
      const deletable = METADATA.test(call.path) || /\.xva(\.checksum)?$/.test(call.path)
      if ((call.kind === 'writeFile' && exists) || (call.kind === 'unlink' && !deletable) || ['rename', 'rmdir', 'lock'].includes(call.kind)) {
        refused.push(`${call.kind} ${call.path}`)
        return { error: 'EPERM' }
      }
      return undefined
    },
  })
  const share = !lockless
    ? simulated
    : new Proxy(simulated, {
        get(target, name) {
          if (name === 'supportsLocks') return false
          if (name === 'objectLocked') return async () => true
          const value = Reflect.get(target, name, target)
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
  return { share, refused, calls, reset: () => calls.splice(0) }
}

const vmFolders = (dir) =>
  fs
    .readdirSync(path.join(dir, 'xo-vm-backups'))
    .filter((n) => !n.startsWith('.'))
    .sort()

function indexTree(dir) {
  const root = path.join(dir, INDEX_DIR)
  if (!fs.existsSync(root)) return []
  return fs.readdirSync(root, { recursive: true }).map(String).sort()
}

async function nextBackup(dir, vm) {
  const folder = path.join(dir, 'xo-vm-backups', vm)
  const last = fs
    .readdirSync(folder)
    .filter((n) => /^\d{8}T\d{6}Z\.json$/.test(n))
    .sort()
    .at(-1)
  const metadata = JSON.parse(fs.readFileSync(path.join(folder, last)))
  return { ...metadata, timestamp: metadata.timestamp + 3600_000 }
}

describe('an immutable repository gets an index of create-only files', () => {
  for (const lockless of [false, true]) {
    test(`${lockless ? 'a share without locks, Object Lock found out' : 'a local share, --immutable'}: made by the first listing, then listings read only it`, async (t) => {
      const dir = tempDir(t)
      await generateRepository(dir, { vms: 4, retention: 3, seed: 'brcache/tests/immutable' })
      for (const vm of vmFolders(dir)) fs.rmSync(path.join(dir, 'xo-vm-backups', vm, 'cache.json.gz'), { force: true })
      const { share, refused, calls, reset } = immutableShare(dir, { lockless })
      const repository = openRepository(share, lockless ? {} : { immutable: true })
      const truth = diskTruth(dir)
      const first = await repository.restoreView()
      assert.equal(first.fromIndex, false)
      assert.deepStrictEqual(first.vms, truth)
      await repository.settle()
      assert.equal(repository.immutable, true)
      const tree = indexTree(dir)
      assert.ok(
        tree.some((n) => /^epoch-\d{20}\/snapshot-/.test(n)),
        JSON.stringify(tree),
      )
      assert.ok(!tree.some((n) => /^snapshot-|^\d{15}-/.test(n)), 'nothing of the writable index')

      // A write, a delete: published, never a cache.
      const [vm, other] = vmFolders(dir)
      const key = await repository.writeVmBackupMetadata(vm, await nextBackup(dir, vm))
      const [gone] = (await repository.restoreView()).vms[other].map((s) => s.id)
      await repository.deleteVmBackups([gone])
      await repository.settle()
      reset()
      const listed = await repository.restoreView()
      assert.equal(listed.fromIndex, true)
      assert.deepStrictEqual(listed.vms, diskTruth(dir))
      assert.ok(listed.vms[vm].some((s) => s.id === key))
      assert.deepStrictEqual(listed.notFromIndex, { locked: [], inDoubt: [], unknown: [] })
      // No VM folder read: the index folder, its epochs, its files.
      const read = calls.filter((c) => c.kind === 'readFile').map((c) => c.path)
      assert.ok(read.some((p) => p.startsWith(`${INDEX_DIR}/`)), JSON.stringify(read))
      assert.ok(!read.some((p) => p.startsWith('xo-vm-backups/') && !p.startsWith(`${INDEX_DIR}/`)), JSON.stringify(read))
      assert.ok(!calls.some((c) => c.path.startsWith(`xo-vm-backups/${other}`)))
      await repository.settle()

      assert.deepStrictEqual(refused, [], 'nothing refused was asked')
      for (const folder of vmFolders(dir)) assert.ok(!fs.existsSync(path.join(dir, 'xo-vm-backups', folder, 'cache.json.gz')))
      assert.ok(!calls.some((c) => c.kind === 'writeFile' && c.path.includes('.brcache-probe')), 'no probe object')
    })
  }

  test('--no-index: no index, every listing reads every folder', async (t) => {
    const dir = tempDir(t)
    await generateRepository(dir, { vms: 2, retention: 2, seed: 'brcache/tests/immutable-off' })
    const { share, refused } = immutableShare(dir)
    const repository = openRepository(share, { immutable: true, index: false })
    assert.deepStrictEqual(await repository.listSummaries(), diskTruth(dir))
    await repository.settle()
    assert.deepStrictEqual(indexTree(dir), [])
    assert.deepStrictEqual(refused, [])
  })
})

/** An S3 endpoint answering GetObjectLockConfiguration only, as `lock` says. */
function fakeBucket(lock) {
  const requests = []
  const server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`)
    const answer = (status, body) => {
      response.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) })
      response.end(body)
    }
    if (request.method !== 'GET' || !request.url.includes('object-lock')) return answer(400, '<Error><Code>BadRequest</Code></Error>')
    if (lock === 'none') return answer(404, '<Error><Code>ObjectLockConfigurationNotFoundError</Code></Error>')
    if (lock === 'denied') return answer(403, '<Error><Code>AccessDenied</Code></Error>')
    return answer(
      200,
      `<?xml version="1.0" encoding="UTF-8"?><ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>${lock}</ObjectLockEnabled></ObjectLockConfiguration>`,
    )
  })
  return { server, requests }
}

describe('S3 Object Lock, found out once', () => {
  let buckets
  before(async () => (buckets = await startFakes(['Enabled', 'none', 'denied'], fakeBucket)))
  after(() => stopFakes(buckets))

  test('a bucket with Object Lock on: true, asked once, with GetObjectLockConfiguration on the bucket', async () => {
    const { handler, requests } = buckets.Enabled
    assert.equal(await handler.objectLocked(), true)
    assert.equal(await handler.objectLocked(), true)
    assert.equal(requests.length, 1)
    assert.match(requests[0], /^GET \/b\/?\?object-lock/)
  })

  test('no configuration, or a key that may not ask: false', async () => {
    assert.equal(await buckets.none.handler.objectLocked(), false)
    assert.equal(await buckets.denied.handler.objectLocked(), false)
  })
})
