// The repository API on S3, against a real 3-node Garage cluster on
// loopback (scripts/garage.sh starts it, installing Garage the first time).
// Each test works under its own key prefix of the bucket.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import zlib from 'node:zlib'
import { openRepository, S3Handler, VmCache } from 'brcache'
import { killGarageNode, startGarage, stopGarage } from './helpers/garage.mjs'
import { KEY, OTHER_KEY, xoDecrypt, xoEncrypt } from './helpers/xo-encryption.mjs'

let garage
const handlers = []
before(() => {
  garage = startGarage()
})
after(() => {
  for (const h of handlers) h.destroy()
  stopGarage()
})

function s3({ node = 0, prefix = `t-${randomBytes(6).toString('hex')}`, ...rest } = {}) {
  const handler = new S3Handler({ ...garage, endpoint: garage.endpoints[node], prefix, ...rest })
  handlers.push(handler)
  return handler
}

const VM = 'aaaaaaaa-0000-4000-8000-000000000001'
const VM2 = 'aaaaaaaa-0000-4000-8000-000000000002'
const record = (timestamp, extra = {}) => ({ mode: 'full', timestamp, jobId: 'j', scheduleId: 's', size: 1, ...extra })
const key = (vm, name) => `/xo-vm-backups/${vm}/${name}`

describe('the S3 handler', () => {
  test('reads, writes, lists (paginated, with folders), deletes', async () => {
    const h = s3()
    await h.writeFile('xo-vm-backups/a/1.json', '{}')
    await h.writeFile('xo-vm-backups/a/sub/x', 'y')
    await h.writeFile('xo-vm-backups/b/2.json', '{"b":1}')
    assert.deepStrictEqual(await h.listWithTypes('xo-vm-backups'), [
      { name: 'a', isDirectory: true },
      { name: 'b', isDirectory: true },
    ])
    assert.deepStrictEqual(await h.list('xo-vm-backups/a'), ['1.json', 'sub'])
    assert.equal((await h.readFile('xo-vm-backups/b/2.json')).toString(), '{"b":1}')
    await assert.rejects(h.writeFile('xo-vm-backups/a/1.json', '{}', { exclusive: true }), { code: 'EEXIST' })
    await h.unlink('xo-vm-backups/a/1.json')
    await assert.rejects(h.unlink('xo-vm-backups/a/1.json'), { code: 'ENOENT' })
    await assert.rejects(h.readFile('xo-vm-backups/a/1.json'), { code: 'ENOENT' })
    await assert.rejects(h.list('xo-vm-backups/none'), { code: 'ENOENT' })
    // More objects than one ListObjectsV2 page holds.
    await Promise.all(Array.from({ length: 1100 }, (_, i) => h.writeFile(`many/${String(i).padStart(4, '0')}.json`, '')))
    assert.equal((await h.list('many')).length, 1100)
  })

  test('confines every path to its prefix', async () => {
    const h = s3()
    for (const bad of ['../x', '/etc/passwd', 'a/../../b', 'a\0b', 'a\\b']) {
      await assert.rejects(h.readFile(bad), { code: 'EINVAL' })
      await assert.rejects(h.writeFile(bad, 'x'), { code: 'EINVAL' })
    }
  })

  test('a wrong key or bucket is an error, never "no backups"', async () => {
    const wrongKey = s3({ secretAccessKey: 'not-the-secret' })
    await assert.rejects(wrongKey.check(), { code: 'EACCES' })
    await assert.rejects(openRepository(wrongKey).listAllVms(), { code: 'EACCES' })
    const wrongBucket = s3({ bucket: 'no-such-bucket' })
    await assert.rejects(wrongBucket.check())
    await assert.rejects(openRepository(wrongBucket).listAllVmBackups())
  })

  test('Garage ignores If-None-Match: the probe says so, and leaves nothing behind', async () => {
    const h = s3()
    assert.equal(await h.conditionalWrites(), false)
    assert.equal(await h.conditionalWrites(), false, 'asked once, kept')
    // The probe's delete is done once it resolves, but Garage's listings
    // follow a delete a moment later on a 3-node cluster (a CI run on Node
    // 24 once saw the probe still listed): the listing is asked again for
    // up to 3 s, and must come empty.
    let listed = await h.list('')
    for (let i = 0; i < 30 && listed.length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      listed = await h.list('')
    }
    assert.deepStrictEqual(listed, [])
    // The unique-name path: the index's snapshots are named with their time.
    const repository = openRepository(h)
    await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 1)))
    await repository.listSummaries()
    await repository.settle()
    const snapshots = (await h.list('xo-vm-backups/.brcache-index')).filter((n) => n.startsWith('snapshot-'))
    assert.equal(snapshots.length, 1)
    assert.match(snapshots[0], /^snapshot-\d{20}-\d{15}-[0-9a-f]{16}\.json\.gz$/)
  })

  test('opens from an s3:// URL', async () => {
    const { host } = new URL(garage.endpoints[0])
    const url = `s3://${garage.accessKeyId}:${garage.secretAccessKey}@${host}/${garage.bucket}/url-${randomBytes(6).toString('hex')}`
    const repository = openRepository(url, { s3: { http: true } })
    await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 1)))
    assert.equal((await repository.listVmBackups(VM)).length, 1)
  })
})

describe('the repository API on S3', () => {
  test('write, list, summaries, delete, check and repair', async () => {
    const h = s3()
    const repository = openRepository(h)
    const ids = []
    for (let i = 1; i <= 4; i++) ids.push(await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, i), { xva: `./2024010${i}T000000Z.xva` })))
    await h.writeFile(`xo-vm-backups/${VM}/20240101T000000Z.xva`, 'data')
    await h.writeFile(`xo-vm-backups/${VM}/20240101T000000Z.xva.checksum`, 'sum')
    await repository.writeVmBackupMetadata(VM2, record(Date.UTC(2024, 1, 1)))
    assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), ids)
    assert.deepStrictEqual(Object.keys(await repository.listSummaries()).sort(), [VM, VM2])
    await repository.deleteVmBackups([ids[0]])
    assert.deepStrictEqual(await h.list(`xo-vm-backups/${VM}`), ['20240102T000000Z.json', '20240103T000000Z.json', '20240104T000000Z.json', 'cache.json.gz'])
    // Behind the cache's back: one restore point gone, one added.
    await h.unlink(`xo-vm-backups/${VM}/20240102T000000Z.json`)
    await h.writeFile(`xo-vm-backups/${VM}/20240109T000000Z.json`, JSON.stringify(record(9)))
    const report = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual(report.stale, [key(VM, '20240102T000000Z.json')])
    assert.deepStrictEqual(report.missing, [key(VM, '20240109T000000Z.json')])
    assert.equal(report.repaired, true)
    assert.equal((await repository.checkVm(VM)).coherent, true)
    // What XO reads: a plain gzip of the object it expects.
    const cache = JSON.parse(zlib.gunzipSync(await h.readFile(`xo-vm-backups/${VM}/cache.json.gz`)))
    assert.deepStrictEqual(Object.keys(cache), [key(VM, '20240103T000000Z.json'), key(VM, '20240104T000000Z.json'), key(VM, '20240109T000000Z.json')])
    for (const [k, v] of Object.entries(cache)) assert.equal(v.id, k)
  })

  test('an encrypted repository, as XO lays it out in a bucket: read and written encrypted; refused without its key', async () => {
    const h = s3()
    const algorithm = 'aes-256-gcm'
    await h.writeFile('encryption.json', JSON.stringify({ algorithm }))
    await h.writeFile('metadata.json', xoEncrypt(algorithm, KEY, JSON.stringify({ random: 'r' })))
    await h.writeFile(`xo-vm-backups/${VM}/20240101T000000Z.json`, xoEncrypt(algorithm, KEY, JSON.stringify(record(Date.UTC(2024, 0, 1)))))
    const repository = openRepository(h, { encryptionKey: KEY })
    const id = await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 2)))
    assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), [key(VM, '20240101T000000Z.json'), id])
    await repository.checkVm(VM, { repair: true })
    const cache = JSON.parse(zlib.gunzipSync(xoDecrypt(algorithm, KEY, await h.readFile(`xo-vm-backups/${VM}/cache.json.gz`))))
    assert.deepStrictEqual(Object.keys(cache), [key(VM, '20240101T000000Z.json'), id])
    assert.equal(JSON.parse(xoDecrypt(algorithm, KEY, await h.readFile(id.slice(1)))).timestamp, Date.UTC(2024, 0, 2))
    const before = await h.list(`xo-vm-backups/${VM}`)
    await assert.rejects(openRepository(h).listSummaries(), { code: 'ENCRYPTED' })
    await assert.rejects(openRepository(h, { encryptionKey: OTHER_KEY }).writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 3))), { code: 'WRONG_ENCRYPTION_KEY' })
    assert.deepStrictEqual(await h.list(`xo-vm-backups/${VM}`), before)
  })

  test('an immutable repository gets no cache object, and lists the truth', async () => {
    const h = s3()
    const repository = openRepository(h, { immutable: true })
    await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 1)))
    await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 2)))
    assert.equal((await repository.listVmBackups(VM)).length, 2)
    await repository.checkVm(VM, { repair: true })
    await repository.settle()
    assert.deepStrictEqual(await h.list(`xo-vm-backups/${VM}`), ['20240101T000000Z.json', '20240102T000000Z.json'])
  })

  /** A handler that records every call made through it (`read`). */
  function counting(h, read) {
    return new Proxy(h, {
      get(target, name) {
        const value = Reflect.get(target, name, target)
        if (typeof value !== 'function') return value
        return (...args) => {
          read.push(`${String(name)} ${args[0]}`)
          return value.apply(target, args)
        }
      },
    })
  }

  /**
   * `count` VMs written (one backup each) by a writer, the index made by the
   * first listing: the calls of the next listing, checked to read nothing but
   * the VM folders' listing and the index, and then of one after `backups`
   * more backups and of one after that listing's follow-up.
   */
  async function indexListingCalls(count, backups) {
    const h = s3()
    const vms = Array.from({ length: count }, (_, i) => `cccccccc-0000-4000-8000-${String(i).padStart(12, '0')}`)
    const writer = openRepository(h, { concurrency: 16 })
    await Promise.all(vms.map((vm, i) => writer.writeVmBackupMetadata(vm, record(Date.UTC(2024, 0, 1) + i * 1000))))
    await writer.settle()
    const first = openRepository(h)
    assert.equal(Object.keys(await first.listSummaries()).length, count)
    await first.settle()
    const calls = []
    const listOnce = async () => {
      const read = []
      const repository = openRepository(counting(h, read))
      const { vms: view, fromIndex } = await repository.restoreView()
      assert.equal(fromIndex, true)
      // Besides the probes every repository object makes once on S3, of
      // conditional writes (three requests) and of Object Lock (one), the
      // handler's answers kept and counted apart...
      const probe = (call) => call.startsWith('conditionalWrites') || call.startsWith('objectLocked')
      calls.push(read.filter((call) => !probe(call)).length)
      // ...and its encryption probe; no VM folder listed or read.
      const outside = read.filter((call) => !call.includes('.brcache-index') && call !== 'readFile encryption.json' && !probe(call))
      assert.deepStrictEqual(outside, [], 'only the index read')
      // Its follow-up (a compaction, when it read many segments).
      await repository.settle()
      return view
    }
    const view = await listOnce()
    assert.deepStrictEqual(Object.keys(view).sort(), [...vms].sort())
    const added = []
    for (let i = 0; i < backups; i++) added.push(await writer.writeVmBackupMetadata(vms[i % count], record(Date.UTC(2024, 1, 1) + i * 1000)))
    await writer.settle()
    const next = await listOnce()
    for (const id of added) assert.ok(Object.values(next).some((summaries) => summaries.some((s) => s.id === id)), id)
    await listOnce()
    return { calls, h, vms, view, writer }
  }

  test('the repository index on S3: made by the first listing, then a listing costs a handful of calls whatever the VMs', { timeout: 240_000 }, async (t) => {
    const backups = 12
    const small = await indexListingCalls(10, backups)
    const { calls, vms, view, writer, h } = await indexListingCalls(60, backups)
    t.diagnostic(`a listing through the index, 10 VMs then 60: ${small.calls.join(', ')} / ${calls.join(', ')} calls (after the index is made, after ${backups} backups, after that listing's compaction)`)
    assert.deepStrictEqual(calls, small.calls, 'the same calls whatever the VMs')
    // The encryption probe, the index folder, its table and the table's
    // part: no listing of the VM folders without locks (Garage walks every
    // object for it).
    assert.equal(calls[0], 4)
    assert.ok(calls[1] > calls[0], 'the backups are read from their segments')
    assert.ok(calls[2] < calls[1], 'the listing that read them compacted')
    // The part that compaction replaced lingers until its cleanup a grace
    // period later, read beside the table meanwhile.
    assert.ok(calls[2] <= calls[0] + 1, 'and reads the snapshot again, with at most the replaced part')
    // A backup and a delete, each a delta the next listing folds.
    const added = await writer.writeVmBackupMetadata(vms[0], record(Date.UTC(2024, 2, 1)))
    await writer.deleteVmBackups([view[vms[1]][0].id])
    await writer.settle()
    const next = await openRepository(h).listSummaries()
    assert.ok(next[vms[0]].some((s) => s.id === added))
    assert.equal(next[vms[1]].some((s) => s.id === view[vms[1]][0].id), false)
  })
})

function runWriter(settings, writer, count) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'helpers', 's3-writer.mjs'), JSON.stringify(settings), String(writer), String(count)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.on('error', reject)
    // 'close', not 'exit': the child's stdout may still be in flight at its exit.
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`writer ${writer} exited with ${code}`))))
  })
}

describe('many backup servers, one S3 repository', () => {
  test('writers on different nodes, a node killed mid-run: the listing equals the truth', { timeout: 300_000 }, async () => {
    const prefix = `multi-${randomBytes(6).toString('hex')}`
    const shared = 'bbbbbbbb-0000-4000-8000-000000000000'
    const own = (i) => `bbbbbbbb-0000-4000-8000-00000000000${i + 1}`
    // Writers on nodes 1 and 2; node 3 is killed in the middle of the run.
    const writers = [0, 1, 2, 3].map((i) =>
      runWriter({ ...garage, endpoint: garage.endpoints[i % 2], prefix, vms: [shared, own(i)] }, i, 24),
    )
    const reader = openRepository(s3({ node: 0, prefix }))
    const readerErrors = []
    let readings = 0
    let running = true
    const readers = (async () => {
      while (running) {
        try {
          await reader.listSummaries()
          readings++
        } catch (error) {
          readerErrors.push(`${error.code} ${error.message}`)
        }
      }
    })()
    await new Promise((r) => setTimeout(r, 1500))
    killGarageNode(3)
    const results = await Promise.all(writers)
    running = false
    await readers
    await reader.settle()
    startGarage() // node 3 back, for the next tests and runs

    for (const { errors } of results) assert.deepStrictEqual(errors, [])
    const expected = new Set(results.flatMap((r) => r.added))
    // The truth: the metadata objects themselves.
    const h = s3({ node: 1, prefix })
    const truth = new Set()
    for (const vm of await h.list('xo-vm-backups')) {
      for (const name of await h.list(`xo-vm-backups/${vm}`)) if (name.endsWith('.json')) truth.add(key(vm, name))
    }
    assert.deepStrictEqual([...truth].sort(), [...expected].sort(), 'a metadata write or delete was lost')
    const listed = new Set(Object.values(await openRepository(h).listAllVmBackups()).flat().map((b) => b.id))
    assert.deepStrictEqual([...listed].sort(), [...truth].sort(), 'the listing is not the truth')
    // Through the index (the reader's first listing made it), before any
    // repair: the VMs it doubts are read from their caches and folders.
    const summaries = new Set(Object.values(await openRepository(h).listSummaries()).flat().map((b) => b.id))
    assert.deepStrictEqual([...summaries].sort(), [...truth].sort(), 'the index listing is not the truth')
    assert.ok((await h.list('xo-vm-backups/.brcache-index')).some((name) => name.startsWith('snapshot-')), 'the index was made')
    assert.deepStrictEqual(readerErrors, [])
    assert.ok(readings > 0)
    // After a check, every cache equals a rebuild of its folder.
    const repository = openRepository(h)
    await repository.checkAll({ repair: true })
    for (const [vm, report] of Object.entries(await repository.checkAll())) {
      assert.equal(report.coherent, true, vm)
      const cache = VmCache.decode(vm, await h.readFile(`xo-vm-backups/${vm}/cache.json.gz`))
      assert.deepStrictEqual(cache.keys().sort(), [...truth].filter((id) => id.includes(vm)).sort())
    }
  })
})
