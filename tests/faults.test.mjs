// Faults from the share, injected with SimulatedShare: what the repository
// API promises when calls fail or crawl. tests/repository.test.mjs already
// covers every `list` failing, a failing `listWithTypes`, every metadata
// read failing while the cache is fine, and a cache `writeFile` failing;
// this file covers the rest:
// - one failure among many calls (one VM's folder, one metadata file) is
//   still an error for the whole call, never a shorter answer;
// - a listing that fails under a writer's or a repair's lock is never taken
//   for an empty folder (which would empty the cache);
// - a cache rename that fails (a share client that does its own temp file +
//   rename), a refused lock: the old cache stays byte for byte, a warning
//   names the file, the backup itself is written or deleted, and the next
//   write repairs the cache without any check;
// - slow calls change nothing but the time.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { LocalHandler, SimulatedShare, VmCache, openRepository } from 'brcache'
import { isTempName } from '../js/node/handlers/index.js'
import { formatFilenameDate } from '../js/common/layout.js'
import { createRandom, makeRepository } from '../js/sample/metadata.js'

// --- fixtures ----------------------------------------------------------------

const SAMPLE = makeRepository('brcache/tests/faults', { vms: 3, retention: 8 })
const [A, B, C] = SAMPLE.vms
const VM = A.vm.uuid

const keyOf = (sample, i) => `/xo-vm-backups/${sample.vm.uuid}/${sample.backups[i].filename}`
const fileOf = (sample, i) => `xo-vm-backups/${sample.vm.uuid}/${sample.backups[i].filename}`
const CACHE = (sample = A) => `xo-vm-backups/${sample.vm.uuid}/cache.json.gz`

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-faults-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const onDisk = (dir, file) => path.join(dir, ...file.split('/'))
const cacheBytes = (dir, sample = A) => (fs.existsSync(onDisk(dir, CACHE(sample))) ? fs.readFileSync(onDisk(dir, CACHE(sample))) : undefined)

/** The names of `sample`'s VM folder. */
const folder = (dir, sample = A) => fs.readdirSync(onDisk(dir, `xo-vm-backups/${sample.vm.uuid}`))

/** Locks and temp files left: in the VM folder, and the VM's lock beside it (`<vm>.lock`). */
const leftovers = (dir, sample = A) => [
  ...folder(dir, sample).filter((name) => name.endsWith('.lock') || isTempName(name)),
  ...fs.readdirSync(onDisk(dir, 'xo-vm-backups')).filter((name) => name === `${sample.vm.uuid}.lock`),
]

/** The body of the VM's cache, or of a cache rebuilt from the folder as it is now. */
function cacheBody(dir, sample = A) {
  return VmCache.decode(sample.vm.uuid, cacheBytes(dir, sample)).body()
}
function rebuiltBody(dir, sample = A) {
  const names = folder(dir, sample)
  const files = new Map(names.filter((name) => name.endsWith('.json')).map((name) => [name, fs.readFileSync(onDisk(dir, `xo-vm-backups/${sample.vm.uuid}/${name}`))]))
  return VmCache.rebuild(sample.vm.uuid, names, files).cache.body()
}

/** Backups `indexes` of `sample`, written through the API on a plain folder (coherent cache). */
async function seeded(dir, sample, indexes) {
  const repository = openRepository(dir)
  for (const i of indexes) await repository.writeVmBackupMetadata(sample.vm.uuid, sample.backups[i].metadata)
}

/** Metadata files written behind the API's back: no cache entry for them. */
function putMetadata(dir, sample, indexes) {
  for (const i of indexes) {
    fs.mkdirSync(onDisk(dir, `xo-vm-backups/${sample.vm.uuid}`), { recursive: true })
    fs.writeFileSync(onDisk(dir, fileOf(sample, i)), JSON.stringify(sample.backups[i].metadata))
  }
}

/**
 * A latency-free share over the folder whose faults can be switched at any
 * time (`share.fault = fn`), recording every call.
 */
function faultyShare(dir) {
  const calls = []
  const share = {
    fault: undefined,
    calls,
    of: (kind) => calls.filter((call) => call.kind === kind).map((call) => call.path),
  }
  share.handler = new SimulatedShare(new LocalHandler(dir), {
    rttMs: 0,
    faults: (call) => {
      calls.push(call)
      return share.fault?.(call)
    },
  })
  return share
}

/**
 * A share client that makes its atomic writes itself, out of the share's
 * own calls: create a temp file next to the target, then rename it over the
 * target (what an SMB or object-store client does where no local fs.rename
 * exists). Its renames are share calls, so they can fail; on failure it
 * tries to remove the temp file, which can fail too and leave it behind.
 */
function renamingClient(share) {
  const client = Object.create(null)
  for (const kind of ['list', 'listWithTypes', 'readFile', 'rename', 'unlink', 'rmdir', 'mkdir', 'stat', 'lock', 'cleanTemps']) {
    client[kind] = (...args) => share[kind](...args)
  }
  client.writeFile = async (file, data, { exclusive = false } = {}) => {
    if (exclusive) return share.writeFile(file, data, { exclusive })
    const slash = file.lastIndexOf('/')
    const temp = `${file.slice(0, slash + 1)}.${file.slice(slash + 1)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`
    assert.ok(isTempName(temp.slice(slash + 1)), 'the repository must recognise the temp name')
    await share.writeFile(temp, data, { exclusive: true })
    try {
      await share.rename(temp, file)
    } catch (error) {
      await share.unlink(temp).catch(() => {})
      throw error
    }
  }
  return client
}

/** A logger that keeps its warnings. */
function recorder() {
  const warns = []
  return { warns, logger: { warn: (message, data) => warns.push({ message, data }) } }
}

const names = (records) => records.map((record) => record.id)

// --- failed listings -----------------------------------------------------------

describe('a failed listing is an error, never "no backups"', () => {
  test("one VM folder's listing fails: whole-repository listings and checks reject instead of leaving that VM out", async (t) => {
    const dir = tempDir(t)
    await seeded(dir, A, [0, 1])
    await seeded(dir, B, [0, 1, 2])
    await seeded(dir, C, [0])
    const share = faultyShare(dir)
    share.fault = ({ kind, path: where }) => (kind === 'list' && where === `xo-vm-backups/${B.vm.uuid}` ? { error: 'EIO' } : undefined)
    const repository = openRepository(share.handler)

    await assert.rejects(repository.listAllVmBackups(), { code: 'EIO' })
    await assert.rejects(repository.listSummaries(), { code: 'EIO' })
    await assert.rejects(repository.listVmBackups(B.vm.uuid), { code: 'EIO' })
    await assert.rejects(repository.listVmSummaries(B.vm.uuid), { code: 'EIO' })
    await assert.rejects(repository.checkAll(), { code: 'EIO' })
    await assert.rejects(repository.checkAll({ repair: true }), { code: 'EIO' })
    // The other VMs still list on their own.
    assert.deepStrictEqual(names(await repository.listVmBackups(VM)), [0, 1].map((i) => keyOf(A, i)))
    await repository.settle()
    // The failing VM was listed (not skipped) each time, and lost nothing.
    assert.ok(share.of('list').filter((where) => where === `xo-vm-backups/${B.vm.uuid}`).length >= 6)
    assert.equal(cacheBody(dir, B), rebuiltBody(dir, B))
  })

  test('EIO on listWithTypes: listAllVms and everything built on it reject', async (t) => {
    const dir = tempDir(t)
    await seeded(dir, A, [0, 1])
    const share = faultyShare(dir)
    share.fault = ({ kind }) => (kind === 'listWithTypes' ? { error: 'EIO' } : undefined)
    const repository = openRepository(share.handler)
    for (const call of [() => repository.listAllVms(), () => repository.listAllVmBackups(), () => repository.listSummaries(), () => repository.checkAll({ repair: true })]) {
      await assert.rejects(call(), { code: 'EIO' })
    }
  })

  test('a missing xo-vm-backups is an empty repository only if the root itself lists', async (t) => {
    const dir = tempDir(t)
    const share = faultyShare(dir)
    const repository = openRepository(share.handler)
    assert.deepStrictEqual(await repository.listAllVmBackups(), {})
    // A share whose root cannot be listed (not mounted, or failing) is not empty.
    share.fault = ({ kind, path: where }) => (kind === 'list' && where === '' ? { error: 'EIO' } : undefined)
    await assert.rejects(repository.listAllVms(), { code: 'EIO' })
    await assert.rejects(repository.listAllVmBackups(), { code: 'EIO' })
    await assert.rejects(repository.listSummaries(), { code: 'EIO' })
  })

  test('a listing failing under the lock of a write or a delete never empties the cache', async (t) => {
    const dir = tempDir(t)
    await seeded(dir, A, [0, 1, 2])
    const old = cacheBytes(dir)
    const share = faultyShare(dir)
    const log = recorder()
    const repository = openRepository(share.handler, { logger: log.logger })
    share.fault = ({ kind }) => (kind === 'list' ? { error: 'EIO' } : undefined)

    // The metadata is written, the cache update gives up: nothing is taken for an empty folder.
    assert.equal(await repository.writeVmBackupMetadata(VM, A.backups[3].metadata), keyOf(A, 3))
    assert.ok(fs.existsSync(onDisk(dir, fileOf(A, 3))))
    await repository.deleteVmBackups([keyOf(A, 0)])
    assert.equal(fs.existsSync(onDisk(dir, fileOf(A, 0))), false)
    assert.deepStrictEqual(cacheBytes(dir), old)
    await assert.rejects(repository.checkVm(VM, { repair: true }), { code: 'EIO' })
    assert.deepStrictEqual(cacheBytes(dir), old)
    assert.deepStrictEqual(
      log.warns.filter(({ data }) => data.file === CACHE()).map(({ data }) => [data.operation, /EIO/.test(data.reason)]),
      [
        ['write', true],
        ['delete', true],
      ],
    )

    // The share is back: a listing tells the truth at once.
    share.fault = undefined
    assert.deepStrictEqual(names(await repository.listVmBackups(VM)), [1, 2, 3].map((i) => keyOf(A, i)))
    await repository.settle()
  })

  test("a listing's background repair whose re-listing fails writes nothing", async (t) => {
    const dir = tempDir(t)
    await seeded(dir, A, [0, 1])
    putMetadata(dir, A, [2]) // the cache lacks #2: a listing repairs it in the background
    const old = cacheBytes(dir)
    const share = faultyShare(dir)
    let lists = 0
    // The listing's own folder listing works; the repair's, under the lock, fails.
    share.fault = ({ kind, path: where }) => (kind === 'list' && where === `xo-vm-backups/${VM}` && ++lists > 1 ? { error: 'EIO' } : undefined)
    const repository = openRepository(share.handler)
    assert.deepStrictEqual(names(await repository.listVmBackups(VM)), [0, 1, 2].map((i) => keyOf(A, i)))
    await repository.settle()
    assert.equal(lists, 2, 'the repair re-listed the folder under the lock')
    assert.deepStrictEqual(cacheBytes(dir), old)
    assert.deepStrictEqual(share.of('writeFile'), [])
    assert.deepStrictEqual(leftovers(dir), [])
  })
})

// --- failed metadata reads -----------------------------------------------------

describe('a metadata file that cannot be read fails the listing, never drops its restore point', () => {
  const damages = {
    'no cache': (dir) => fs.unlinkSync(onDisk(dir, CACHE())),
    'a corrupt cache': (dir) => fs.writeFileSync(onDisk(dir, CACHE()), 'not a gzip member'),
  }
  for (const [name, damage] of Object.entries(damages)) {
    test(`${name}: the rebuild meets EIO on one of five files`, async (t) => {
      const dir = tempDir(t)
      await seeded(dir, A, [0, 1, 2, 3, 4])
      damage(dir)
      const before = cacheBytes(dir)
      const share = faultyShare(dir)
      share.fault = ({ kind, path: where }) => (kind === 'readFile' && where === fileOf(A, 2) ? { error: 'EIO' } : undefined)
      const repository = openRepository(share.handler, { logger: recorder().logger })

      await assert.rejects(repository.listVmBackups(VM), { code: 'EIO' })
      await assert.rejects(repository.listVmSummaries(VM), { code: 'EIO' })
      await assert.rejects(repository.listAllVmBackups(), { code: 'EIO' })
      await assert.rejects(repository.listSummaries(), { code: 'EIO' })
      await assert.rejects(repository.checkVm(VM), { code: 'EIO' })
      await assert.rejects(repository.checkVm(VM, { repair: true }), { code: 'EIO' })
      await repository.settle()
      // No cache lacking #2 was written by anyone.
      assert.deepStrictEqual(cacheBytes(dir), before)
      assert.deepStrictEqual(share.of('writeFile'), [])

      share.fault = undefined
      assert.deepStrictEqual(names(await repository.listVmBackups(VM)), [0, 1, 2, 3, 4].map((i) => keyOf(A, i)))
      await repository.settle()
      assert.equal(cacheBody(dir), rebuiltBody(dir))
    })
  }
})

// --- failed cache writes -------------------------------------------------------

describe('a cache write that fails leaves the old cache, says so, and the next write repairs it', () => {
  /**
   * Through a client that renames its temp files itself, with the cache's
   * rename (and, with `keepTemp`, the temp's removal) failing: returns what
   * the write and the delete left.
   */
  async function failingRename(t, { keepTemp = false, fault = 'rename' } = {}) {
    const dir = tempDir(t)
    await seeded(dir, A, [0, 1, 2])
    const old = cacheBytes(dir)
    const share = faultyShare(dir)
    share.fault = ({ kind, path: where, to }) => {
      if (fault === 'rename' && kind === 'rename' && to === CACHE()) return { error: 'EIO' }
      if (fault === 'lock' && kind === 'lock') return { error: 'EIO' }
      if (keepTemp && kind === 'unlink' && isTempName(path.posix.basename(where))) return { error: 'EIO' }
      return undefined
    }
    const log = recorder()
    const repository = openRepository(renamingClient(share.handler), { logger: log.logger })

    assert.equal(await repository.writeVmBackupMetadata(VM, A.backups[3].metadata), keyOf(A, 3))
    await repository.deleteVmBackups([keyOf(A, 0)])
    return { dir, old, share, log, repository }
  }

  test('a failing rename: metadata written and deleted, old cache bytes kept, one warning per update naming the file', async (t) => {
    const { dir, old, share, log } = await failingRename(t)
    assert.ok(fs.existsSync(onDisk(dir, fileOf(A, 3))))
    assert.equal(fs.existsSync(onDisk(dir, fileOf(A, 0))), false)
    assert.deepStrictEqual(cacheBytes(dir), old)
    // (The index segments, published beside the caches, are renamed too.)
    assert.equal(share.of('rename').filter((from) => from.startsWith(`xo-vm-backups/${VM}/`)).length, 2, 'each update got as far as the rename')
    const warned = log.warns.filter(({ data }) => data.file === CACHE())
    assert.deepStrictEqual(warned.map(({ data }) => data.operation), ['write', 'delete'])
    for (const { data } of warned) assert.match(data.reason, /EIO/)
    // The client removed its temp files.
    assert.deepStrictEqual(folder(dir).filter(isTempName), [])
  })

  test('the next write, without any check, makes the cache equal to a rebuild', async (t) => {
    const { dir, share, repository } = await failingRename(t)
    share.fault = undefined
    await repository.writeVmBackupMetadata(VM, A.backups[4].metadata)
    assert.equal(cacheBody(dir), rebuiltBody(dir))
    assert.deepStrictEqual(Object.keys(JSON.parse(cacheBody(dir))), [1, 2, 3, 4].map((i) => keyOf(A, i)))
    const report = await repository.checkVm(VM)
    assert.deepStrictEqual([report.coherent, report.fastPath], [true, true])
  })

  test('the next delete does too', async (t) => {
    const { dir, share, repository } = await failingRename(t)
    share.fault = undefined
    await repository.deleteVmBackups([keyOf(A, 1)])
    assert.equal(cacheBody(dir), rebuiltBody(dir))
    assert.deepStrictEqual(Object.keys(JSON.parse(cacheBody(dir))), [2, 3].map((i) => keyOf(A, i)))
  })

  test('a temp file the failed rename left behind is removed by the next cache write', async (t) => {
    const { dir, old, share, repository } = await failingRename(t, { keepTemp: true })
    const temps = folder(dir).filter(isTempName)
    assert.equal(temps.length, 2, 'one temp file per failed update')
    assert.deepStrictEqual(cacheBytes(dir), old)
    // Never listed, never taken for a restore point or a cache.
    assert.deepStrictEqual(names(await repository.listVmBackups(VM)), [1, 2, 3].map((i) => keyOf(A, i)))
    await repository.settle()
    share.fault = undefined
    const report = await repository.checkVm(VM, { repair: true })
    assert.equal(report.repaired, true)
    assert.deepStrictEqual(folder(dir).filter(isTempName), [])
    assert.equal(cacheBody(dir), rebuiltBody(dir))
  })

  test('a share that refuses the lock: the backup is written and deleted, the cache kept, and the next write repairs it', async (t) => {
    const { dir, old, share, log, repository } = await failingRename(t, { fault: 'lock' })
    assert.ok(fs.existsSync(onDisk(dir, fileOf(A, 3))))
    assert.equal(fs.existsSync(onDisk(dir, fileOf(A, 0))), false)
    assert.deepStrictEqual(cacheBytes(dir), old)
    assert.deepStrictEqual(share.of('writeFile').filter((where) => !where.endsWith('.json')), [], 'no cache write without the lock')
    assert.deepStrictEqual(
      log.warns.filter(({ data }) => data.file === CACHE()).map(({ data }) => data.operation),
      ['write', 'delete'],
    )
    share.fault = undefined
    await repository.writeVmBackupMetadata(VM, A.backups[4].metadata)
    assert.equal(cacheBody(dir), rebuiltBody(dir))
  })
})

// --- slow calls ------------------------------------------------------------------

describe('slow calls change nothing but the time', () => {
  test('two writers and a reader on one VM, every call delayed at random', async (t) => {
    const dir = tempDir(t)
    // Seeded delays of 0-20 ms on any call, across the calls of two clients.
    const rng = createRandom('brcache/tests/faults/slow')
    const slow = () => ({ delayMs: rng.int(0, 20) })
    const client = () => new SimulatedShare(new LocalHandler(dir), { rttMs: 1, maxInFlight: 4, faults: { '*': slow } })
    const first = openRepository(client())
    const second = openRepository(client())
    const reader = openRepository(client())
    // The second writer backs up the same VM at other times (same records, shifted by a year).
    const shifted = A.backups.map(({ metadata }) => ({ ...metadata, timestamp: metadata.timestamp + 365 * 86_400_000 }))
    const shiftedKey = (i) => `/xo-vm-backups/${VM}/${formatFilenameDate(shifted[i].timestamp)}.json`

    const listings = []
    let writing = true
    const listing = (async () => {
      while (writing) listings.push(names(await reader.listVmBackups(VM)))
    })()
    await Promise.all([
      (async () => {
        for (const i of [0, 1, 2, 3, 4, 5]) await first.writeVmBackupMetadata(VM, A.backups[i].metadata)
        await first.deleteVmBackups([keyOf(A, 0), keyOf(A, 2)])
      })(),
      (async () => {
        for (const i of [0, 1, 2, 3]) await second.writeVmBackupMetadata(VM, shifted[i])
        await second.deleteVmBackups([shiftedKey(1)])
      })(),
    ]).finally(() => (writing = false))
    await listing
    await Promise.all([first.settle(), second.settle(), reader.settle()])

    const expected = [...[1, 3, 4, 5].map((i) => keyOf(A, i)), ...[0, 2, 3].map(shiftedKey)]
    assert.deepStrictEqual(names(await reader.listVmBackups(VM)), expected)
    assert.ok(listings.length > 0)
    for (const listed of listings) {
      // Every listing is a sorted set of restore points some writer wrote.
      assert.deepStrictEqual(listed, [...new Set(listed)].sort())
      for (const id of listed) assert.ok([...[0, 1, 2, 3, 4, 5].map((i) => keyOf(A, i)), ...[0, 1, 2, 3].map(shiftedKey)].includes(id), id)
    }
    const report = await first.checkVm(VM)
    assert.deepStrictEqual([report.coherent, report.fastPath], [true, true])
    assert.equal(cacheBody(dir), rebuiltBody(dir))
    assert.deepStrictEqual(leftovers(dir), [])
  })

  test('a slow cache read and a slow folder listing: the listing still agrees with the folder', async (t) => {
    const dir = tempDir(t)
    await seeded(dir, A, [0, 1, 2, 3])
    putMetadata(dir, A, [4])
    fs.unlinkSync(onDisk(dir, fileOf(A, 1)))
    const share = faultyShare(dir)
    share.fault = ({ kind, path: where }) => (where === CACHE() || kind === 'list' ? { delayMs: 30 } : undefined)
    const repository = openRepository(share.handler)
    assert.deepStrictEqual(names(await repository.listVmBackups(VM)), [0, 2, 3, 4].map((i) => keyOf(A, i)))
    assert.deepStrictEqual(Object.keys(await repository.listSummaries()), [VM])
    await repository.settle()
    const report = await repository.checkVm(VM)
    assert.deepStrictEqual([report.coherent, report.fastPath], [true, true])
  })
})
