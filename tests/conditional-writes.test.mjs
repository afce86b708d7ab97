// The probe of S3 conditional writes (If-None-Match: *), both answers, on a
// fake S3 endpoint in this process (Garage's answer is in s3.test.mjs), and
// what the repository does with each: index snapshots named by generation
// and created create-only where the store enforces it, unique names where
// it does not.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { LocalHandler, openRepository } from 'brcache'
import { startFakes, stopFakes } from './helpers/fake-s3.mjs'

/**
 * An S3 endpoint keeping objects in memory: PUT, GET, HEAD, DELETE of one
 * key. `ifNoneMatch`: 'honour' (412 on an existing key), 'ignore' (overwrite,
 * as Garage does), 'refuse' (501 for any PUT carrying the header).
 */
function fakeS3(ifNoneMatch) {
  const objects = new Map()
  const requests = []
  const server = createServer((request, response) => {
    const chunks = []
    request.on('data', (chunk) => chunks.push(chunk))
    request.on('end', () => {
      const key = decodeURIComponent(new URL(request.url, 'http://x').pathname)
      requests.push(`${request.method} ${key}`)
      const conditional = request.headers['if-none-match'] === '*'
      const answer = (status, body = '') => {
        response.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) })
        response.end(body)
      }
      if (request.method === 'PUT') {
        if (conditional && ifNoneMatch === 'refuse') return answer(501, '<Error><Code>NotImplemented</Code></Error>')
        if (conditional && ifNoneMatch === 'honour' && objects.has(key)) return answer(412, '<Error><Code>PreconditionFailed</Code></Error>')
        objects.set(key, Buffer.concat(chunks))
        return answer(200)
      }
      if (request.method === 'DELETE') {
        objects.delete(key)
        return answer(204)
      }
      if (!objects.has(key)) return answer(404, '<Error><Code>NoSuchKey</Code></Error>')
      if (request.method === 'HEAD') return answer(200)
      return answer(200, objects.get(key).toString('latin1'))
    })
  })
  return { server, objects, requests }
}

describe('the If-None-Match probe', () => {
  let stores
  before(async () => (stores = await startFakes(['honour', 'ignore', 'refuse'], fakeS3)))
  after(() => stopFakes(stores))

  test('a store that honours it: true, asked once, the probe object deleted', async () => {
    const { handler, objects, requests } = stores.honour
    assert.equal(await handler.conditionalWrites(), true)
    assert.equal(await handler.conditionalWrites(), true)
    assert.equal(requests.filter((r) => r.startsWith('PUT')).length, 2, 'probed once')
    assert.deepStrictEqual([...objects.keys()], [])
    // Create-only writes need no look at the key first there.
    requests.length = 0
    await handler.writeFile('a.json', '{}', { exclusive: true })
    await assert.rejects(handler.writeFile('a.json', '{}', { exclusive: true }), { code: 'EEXIST' })
    assert.deepStrictEqual(requests, ['PUT /b/p/a.json', 'PUT /b/p/a.json'])
  })

  test('a store that ignores it (Garage) or refuses the header: false, nothing left', async () => {
    for (const mode of ['ignore', 'refuse']) {
      const { handler, objects, requests } = stores[mode]
      assert.equal(await handler.conditionalWrites(), false, mode)
      assert.deepStrictEqual([...objects.keys()], [], mode)
      // Not known to honour it: the key is looked at first.
      requests.length = 0
      await handler.writeFile('a.json', '{}', { exclusive: mode === 'ignore' })
      assert.equal(requests[0], mode === 'ignore' ? 'HEAD /b/p/a.json' : 'PUT /b/p/a.json', mode)
    }
  })
})

/** A local folder shown as a share without locks whose store answers `honoured`. */
function lockless(dir, honoured) {
  const local = new LocalHandler(dir)
  let asked = 0
  const share = new Proxy(local, {
    get(target, name) {
      if (name === 'supportsLocks') return false
      if (name === 'conditionalWrites') return async () => (asked++, honoured)
      const value = Reflect.get(target, name, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  return { share, asked: () => asked }
}

describe('the index on a share without locks, by the probe', () => {
  for (const honoured of [true, false]) {
    test(`conditional writes ${honoured ? 'honoured: snapshots named by generation, folded segments deleted at once' : 'ignored: unique snapshot names, nothing deleted at once'}`, async (t) => {
      const dir = fs.mkdtempSync(join(tmpdir(), 'brcache-probe-'))
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
      const { share, asked } = lockless(dir, honoured)
      const repository = openRepository(share)
      const vms = Array.from({ length: 10 }, (_, i) => `dddddddd-0000-4000-8000-${String(i).padStart(12, '0')}`)
      for (const [i, vm] of vms.entries()) await repository.writeVmBackupMetadata(vm, { mode: 'full', timestamp: Date.UTC(2024, 0, 1) + i * 1000, jobId: 'j', scheduleId: 's', size: 1 })
      assert.equal(Object.keys(await repository.listSummaries()).length, 10)
      await repository.settle()
      const files = () => fs.readdirSync(join(dir, 'xo-vm-backups', '.brcache-index')).sort()
      const snapshots = files().filter((n) => n.startsWith('snapshot-'))
      assert.equal(snapshots.length, 1)
      if (honoured) {
        assert.deepStrictEqual(snapshots, ['snapshot-00000000000000000001.json.gz'])
        // The table's part beside it.
        assert.deepStrictEqual(files().filter((n) => !n.startsWith('part-')), snapshots, 'the seed deleted what it folded')
      } else {
        assert.match(snapshots[0], /^snapshot-00000000000000000001-\d{15}-[0-9a-f]{16}\.json\.gz$/)
        // The table, its part and the 10 folded segments.
        assert.equal(files().length, 12, 'the folded segments wait for a cleanup')
      }
      assert.equal(asked(), 1, 'probed once per repository object')
      assert.equal(Object.keys(await repository.listSummaries()).length, 10)
    })
  }
})
