// The repository API (js/node/repository.js) end to end, on real folders: what a
// backup server sees (listings, writes, deletes, checks), what Xen
// Orchestra sees (the cache files, read with plain gunzip + JSON.parse),
// and what happens when things go wrong (stale, corrupt and truncated
// caches, failing shares, crashes, immutable repositories, concurrent
// processes). See ../shared/notes/xo-reference.md, sections 3 and 5.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import zlib from 'node:zlib'
import { BrcacheError, LocalHandler, SimulatedShare, VmCache, decodeCache, openRepository, readCacheHeader } from 'brcache'
import { isTempName } from '../js/node/handlers/index.js'
import { formatFilenameDate } from '../js/common/layout.js'
import { makeRepository } from '../js/sample/metadata.js'
import { Children } from '../scripts/campaigns/common.mjs'

// --- fixtures ----------------------------------------------------------------

// Three VMs with 8 restore points each: for each VM, #0 and #7 are full
// backups (an .xva), the others deltas (VHDs).
const SAMPLE = makeRepository('brcache/tests/repository', { vms: 3, retention: 8 })
const [A, B, C] = SAMPLE.vms
const VM = A.vm.uuid

const key = (vm, name) => `/xo-vm-backups/${vm}/${name}`
const keyOf = (vm, backup) => key(vm, backup.filename)

/** A fresh repository folder, removed when the test ends. */
function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-repository-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const vmPath = (dir, vm, ...names) => path.join(dir, 'xo-vm-backups', vm, ...names)
const cachePath = (dir, vm) => vmPath(dir, vm, 'cache.json.gz')

/** A restore point's metadata file, as Xen Orchestra writes it (compact JSON). */
function putMetadata(dir, vm, backup) {
  fs.mkdirSync(vmPath(dir, vm), { recursive: true })
  fs.writeFileSync(vmPath(dir, vm, backup.filename), JSON.stringify(backup.metadata))
}

/** The data files a restore point names (.xva and its checksum, or VHDs), empty. */
function putDataFiles(dir, vm, backup) {
  for (const file of backup.dataFiles) {
    const target = vmPath(dir, vm, file.replace(/^\.\//, ''))
    fs.mkdirSync(path.dirname(target), { recursive: true })
    fs.writeFileSync(target, '')
  }
}

/** The metadata file names of a VM folder, sorted. */
function metadataNames(dir, vm) {
  return fs
    .readdirSync(vmPath(dir, vm))
    .filter((name) => name.endsWith('.json') && !name.startsWith('.'))
    .sort()
}

/** What Xen Orchestra reads from a cache: gunzip, then JSON.parse. */
function readAsXo(dir, vm) {
  return JSON.parse(zlib.gunzipSync(fs.readFileSync(cachePath(dir, vm))).toString())
}

/** The body of a cache rebuilt from scratch from the folder as it is now. */
function rebuiltBody(dir, vm, Cache = VmCache) {
  const listing = fs.readdirSync(vmPath(dir, vm))
  const files = new Map(metadataNames(dir, vm).map((name) => [name, fs.readFileSync(vmPath(dir, vm, name))]))
  return Cache.rebuild(vm, listing, files).cache.body()
}

function cacheBody(dir, vm, Cache = VmCache) {
  return Cache.decode(vm, fs.readFileSync(cachePath(dir, vm))).body()
}

/** Metadata as it is on disk (the sample's objects hold `undefined` fields JSON drops). */
const asJson = (metadata) => JSON.parse(JSON.stringify(metadata))

/** A record as the API hands it out: the metadata plus `_filename`, `id` and `isImmutable`. */
function expectedRecord(vm, backup) {
  return { ...asJson(backup.metadata), _filename: keyOf(vm, backup), id: keyOf(vm, backup), isImmutable: false }
}

/**
 * Every file and folder under `root`, with a hash of its bytes and its
 * mtime; `folderMtimes: false` leaves out folders' mtimes (which a lock,
 * a folder next to the file it locks, changes).
 */
function snapshot(root, { folderMtimes = true } = {}) {
  const out = {}
  const walk = (rel) => {
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const name = rel ? `${rel}/${entry.name}` : entry.name
      const absolute = path.join(root, name)
      if (entry.isDirectory()) {
        out[`${name}/`] = folderMtimes ? fs.statSync(absolute).mtimeMs : 'folder'
        walk(name)
      } else {
        out[name] = `${createHash('sha256').update(fs.readFileSync(absolute)).digest('hex')} ${fs.statSync(absolute).mtimeMs}`
      }
    }
  }
  walk('')
  return out
}

/** A logger that keeps what it is told. */
function recorder() {
  const events = []
  const logger = Object.fromEntries(
    ['debug', 'info', 'warn', 'error'].map((level) => [level, (message, data) => events.push({ level, message, data })]),
  )
  return { events, logger, warns: () => events.filter((event) => event.level === 'warn') }
}

/**
 * A simulated share without latency over the folder, recording every call
 * (`{ kind, path }`) and failing those `fault` says to fail.
 */
function share(dir, fault) {
  const calls = []
  const handler = new SimulatedShare(new LocalHandler(dir), {
    rttMs: 0,
    faults: (call) => {
      calls.push(call)
      return fault?.(call)
    },
  })
  const of = (kind) => calls.filter((call) => call.kind === kind).map((call) => call.path)
  return { handler, calls, of, reset: () => calls.splice(0) }
}

/** Writes VM `sample`'s restore points `indexes` through the API. */
async function writeBackups(repository, sample, indexes = sample.backups.keys()) {
  const keys = []
  for (const i of indexes) keys.push(await repository.writeVmBackupMetadata(sample.vm.uuid, sample.backups[i].metadata))
  return keys
}

/** A repository whose VM folder holds backups `indexes` and a coherent brcache cache. */
async function repositoryWith(t, indexes, { sample = A, options } = {}) {
  const dir = tempDir(t)
  const repository = openRepository(dir, options)
  await writeBackups(repository, sample, indexes)
  return { dir, repository }
}

const names = (vm, records) => records.map((record) => record.id.slice(`/xo-vm-backups/${vm}/`.length))
const filenames = (indexes, sample = A) => indexes.map((i) => sample.backups[i].filename)

// --- every API call ------------------------------------------------------------

describe('listAllVms', () => {
  test('lists VM folders only: not hidden folders, not lock folders, not plain files', async (t) => {
    const dir = tempDir(t)
    const root = path.join(dir, 'xo-vm-backups')
    for (const folder of [A.vm.uuid, B.vm.uuid, '.hidden', `${A.vm.uuid}.lock`, 'cache.json.gz.lock']) {
      fs.mkdirSync(path.join(root, folder), { recursive: true })
    }
    fs.writeFileSync(path.join(root, 'stray.json'), '{}')
    fs.writeFileSync(path.join(root, 'notes.txt'), 'not a VM')
    assert.deepStrictEqual(await openRepository(dir).listAllVms(), [A.vm.uuid, B.vm.uuid].sort())
  })

  test('a repository without xo-vm-backups has no VMs', async (t) => {
    const dir = tempDir(t)
    assert.deepStrictEqual(await openRepository(dir).listAllVms(), [])
    assert.deepStrictEqual(await openRepository(dir).listAllVmBackups(), {})
  })

  test('a missing repository root (an unmounted share) is an error, not an empty repository', async (t) => {
    const missing = path.join(tempDir(t), 'not-mounted')
    await assert.rejects(openRepository(missing).listAllVms(), { code: 'ENOENT' })
    await assert.rejects(openRepository(missing).listAllVmBackups(), { code: 'ENOENT' })
    await assert.rejects(openRepository(missing).checkAll(), { code: 'ENOENT' })
  })
})

describe('writeVmBackupMetadata', () => {
  test('writes <date>.json as compact JSON, returns its key, and keeps the cache up to date', async (t) => {
    const dir = tempDir(t)
    const repository = openRepository(dir)
    const [first, second] = A.backups

    const key1 = await repository.writeVmBackupMetadata(VM, first.metadata)
    assert.equal(first.filename, `${formatFilenameDate(first.metadata.timestamp)}.json`)
    assert.equal(key1, keyOf(VM, first))
    assert.equal(fs.readFileSync(vmPath(dir, VM, first.filename), 'utf8'), JSON.stringify(first.metadata))
    assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)), [key1])
    const generation1 = readCacheHeader(fs.readFileSync(cachePath(dir, VM))).generation

    const key2 = await repository.writeVmBackupMetadata(VM, second.metadata)
    assert.equal(key2, keyOf(VM, second))
    assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)).sort(), [key1, key2])
    assert.ok(readCacheHeader(fs.readFileSync(cachePath(dir, VM))).generation > generation1)
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
    // Nothing else in the folder: no temp file, no lock left behind.
    assert.deepStrictEqual(fs.readdirSync(vmPath(dir, VM)).sort(), ['cache.json.gz', first.filename, second.filename].sort())
  })

  test('a second restore point in the same second is EEXIST, and the first stays as it was', async (t) => {
    const dir = tempDir(t)
    const repository = openRepository(dir)
    const timestamp = Date.UTC(2024, 4, 1, 12, 0, 0, 100)
    const first = { ...A.backups[0].metadata, timestamp, size: 1 }
    const key1 = await repository.writeVmBackupMetadata(VM, first)
    const name = `${formatFilenameDate(timestamp)}.json`
    const before = snapshot(dir)

    await assert.rejects(repository.writeVmBackupMetadata(VM, { ...first, timestamp: timestamp + 800, size: 2 }), { code: 'EEXIST' })
    // Every file as it was; only the folders' times may differ (the VM's
    // lock, taken before the write, is a directory made and removed there).
    const files = (entries) => Object.fromEntries(Object.entries(entries).filter(([path]) => !path.endsWith('/')))
    assert.deepStrictEqual(Object.keys(snapshot(dir)), Object.keys(before))
    assert.deepStrictEqual(files(snapshot(dir)), files(before))
    assert.deepStrictEqual(JSON.parse(fs.readFileSync(vmPath(dir, VM, name), 'utf8')), first)
    assert.deepStrictEqual(await repository.listVmBackups(VM), [{ ...first, _filename: key1, id: key1, isImmutable: false }])
  })

  test('refuses a VM name that is not a plain folder name, or metadata without a timestamp, before any I/O', async (t) => {
    const dir = tempDir(t)
    const repository = openRepository(dir)
    for (const vm of ['..', '../etc', 'a/b', '.hidden', '']) {
      await assert.rejects(repository.writeVmBackupMetadata(vm, A.backups[0].metadata), (error) => {
        assert.ok(error instanceof BrcacheError, `${vm}: ${error}`)
        assert.equal(error.code, 'INVALID_KEY')
        return true
      })
    }
    await assert.rejects(repository.writeVmBackupMetadata(VM, { mode: 'full' }), TypeError)
    assert.deepStrictEqual(fs.readdirSync(dir), [])
  })
})

describe('listVmBackups', () => {
  test('returns every restore point, sorted by timestamp, as full records keyed by their metadata path', async (t) => {
    // Written out of order; one of them by "XO" directly (no cache entry yet).
    const { dir, repository } = await repositoryWith(t, [5, 0, 3, 7, 1])
    putMetadata(dir, VM, A.backups[2])
    const records = await repository.listVmBackups(VM)
    assert.deepStrictEqual(records, [0, 1, 2, 3, 5, 7].map((i) => expectedRecord(VM, A.backups[i])))
    for (const record of records) assert.equal(record._filename, record.id)
    const timestamps = records.map((record) => record.timestamp)
    assert.deepStrictEqual(timestamps, [...timestamps].sort((a, b) => a - b))
  })

  test('sorts by timestamp even where file names disagree', async (t) => {
    const { dir, repository } = await repositoryWith(t, [1, 2])
    // A restore point filed under a later name than its timestamp says.
    const odd = { filename: '20991231T235959Z.json', metadata: { ...A.backups[0].metadata } }
    putMetadata(dir, VM, odd)
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), [odd.filename, ...filenames([1, 2])])
    await repository.settle()
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), [odd.filename, ...filenames([1, 2])])
  })

  test('a predicate filters the records', async (t) => {
    const { repository } = await repositoryWith(t, [0, 1, 2, 7])
    const full = await repository.listVmBackups(VM, (record) => record.mode === 'full')
    assert.deepStrictEqual(names(VM, full), filenames([0, 7]))
    assert.deepStrictEqual(await repository.listVmBackups(VM, () => false), [])
  })

  test('a VM without a folder, or whose folder holds no metadata, has no restore points', async (t) => {
    const dir = tempDir(t)
    fs.mkdirSync(vmPath(dir, B.vm.uuid, 'vdis'), { recursive: true })
    fs.writeFileSync(vmPath(dir, B.vm.uuid, '20240101T000000Z.xva'), '')
    const repository = openRepository(dir)
    assert.deepStrictEqual(await repository.listVmBackups(VM), [])
    assert.deepStrictEqual(await repository.listVmBackups(B.vm.uuid), [])
    await repository.settle()
    assert.equal(fs.existsSync(cachePath(dir, B.vm.uuid)), false, 'no cache is created for an empty folder')
  })
})

describe('listAllVmBackups and listSummaries', () => {
  test('list every VM with restore points, omitting the others', async (t) => {
    const dir = tempDir(t)
    const repository = openRepository(dir)
    await writeBackups(repository, A, [0, 1])
    await writeBackups(repository, B, [2])
    fs.mkdirSync(vmPath(dir, C.vm.uuid), { recursive: true }) // a VM folder without restore points
    assert.deepStrictEqual(await repository.listAllVmBackups(), {
      [VM]: [0, 1].map((i) => expectedRecord(VM, A.backups[i])),
      [B.vm.uuid]: [expectedRecord(B.vm.uuid, B.backups[2])],
    })
    assert.deepStrictEqual(Object.keys(await repository.listSummaries()).sort(), [VM, B.vm.uuid].sort())
  })

  test('summaries carry the restore view fields, and the filter keeps what it names', async (t) => {
    const { repository } = await repositoryWith(t, [0, 1, 2])
    const summary = (backup) => {
      const md = backup.metadata
      const flags = Object.values(md.isVhdDifferencing ?? {})
      return {
        id: keyOf(VM, backup),
        timestamp: md.timestamp,
        mode: md.mode,
        size: md.size,
        jobId: md.jobId,
        scheduleId: md.scheduleId,
        tags: md.tags,
        vm: { uuid: md.vm.uuid, name_label: md.vm.name_label, name_description: md.vm.name_description, tags: md.vm.tags },
        disks: Object.entries(md.vhds ?? {}).map(([ref, vhd]) => ({
          id: `/xo-vm-backups/${VM}/${vhd}`,
          name: md.vdis[ref].name_label,
          uuid: md.vdis[ref].uuid,
        })),
        withMemory: md.vmSnapshot.suspend_VDI !== 'OpaqueRef:NULL',
        differencingVhds: flags.filter((flag) => flag === true).length,
        dynamicVhds: flags.filter((flag) => flag === false).length,
        isImmutable: false,
      }
    }
    const all = await repository.listSummaries()
    assert.deepStrictEqual(all, { [VM]: [0, 1, 2].map((i) => summary(A.backups[i])) })
    assert.ok(all[VM][1].disks.length > 0, 'a delta has disks')
    assert.deepStrictEqual(await repository.listSummaries({ mode: 'delta' }), { [VM]: [1, 2].map((i) => summary(A.backups[i])) })
    assert.deepStrictEqual(await repository.listSummaries({ jobId: 'no such job' }), {})
  })
})

describe('deleteVmBackups', () => {
  test('deletes the metadata, the .xva and its checksum of a full backup, leaves VHDs, and updates the cache', async (t) => {
    const { dir, repository } = await repositoryWith(t, [0, 1, 2, 7])
    for (const i of [0, 1, 2, 7]) putDataFiles(dir, VM, A.backups[i])
    const full = A.backups[0]
    const delta = A.backups[1]
    const xva = full.metadata.xva.replace('./', '')
    assert.ok(fs.existsSync(vmPath(dir, VM, xva)) && fs.existsSync(vmPath(dir, VM, `${xva}.checksum`)))

    await repository.deleteVmBackups([keyOf(VM, full), keyOf(VM, delta)])

    for (const gone of [full.filename, xva, `${xva}.checksum`, delta.filename]) assert.equal(fs.existsSync(vmPath(dir, VM, gone)), false, gone)
    for (const vhd of delta.dataFiles) assert.ok(fs.existsSync(vmPath(dir, VM, vhd)), `VHD ${vhd} is left to the clean step`)
    for (const i of [2, 7]) {
      for (const file of [A.backups[i].filename, ...A.backups[i].dataFiles]) assert.ok(fs.existsSync(vmPath(dir, VM, file.replace('./', ''))), file)
    }
    assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)).sort(), [2, 7].map((i) => keyOf(VM, A.backups[i])))
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([2, 7]))
  })

  test('a path outside a VM folder is INVALID_KEY and nothing is deleted, even when mixed with valid paths', async (t) => {
    const { dir, repository } = await repositoryWith(t, [0, 1])
    await writeBackups(repository, B, [0])
    for (const i of [0, 1]) putDataFiles(dir, VM, A.backups[i])
    const valid = keyOf(VM, A.backups[0])
    const before = snapshot(dir)
    const invalid = [
      '/etc/passwd',
      'xo-vm-backups/cache.json.gz',
      `/xo-vm-backups/${VM}/../${B.vm.uuid}/${B.backups[0].filename}`,
      `/xo-vm-backups/../${A.backups[1].filename}`,
      `/xo-vm-backups/${VM}/cache.json.gz`,
      `/xo-vm-backups/${VM}/${A.backups[0].metadata.xva.replace('./', '')}`,
      `/xo-vm-backups/${VM}/${A.backups[1].dataFiles[0]}`,
      `/xo-vm-backups/${VM}/.hidden.json`,
      `/other-dir/${VM}/${A.backups[1].filename}`,
    ]
    for (const bad of invalid) {
      await assert.rejects(repository.deleteVmBackups([valid, bad]), (error) => {
        assert.ok(error instanceof BrcacheError, `${bad}: ${error}`)
        assert.equal(error.code, 'INVALID_KEY', bad)
        return true
      })
      assert.deepStrictEqual(snapshot(dir), before, `nothing deleted for ${bad}`)
    }
  })

  test('a data path pointing outside the VM folder is not followed; the metadata goes', async (t) => {
    const { dir, repository } = await repositoryWith(t, [1])
    const victim = vmPath(dir, B.vm.uuid, 'victim.xva')
    fs.mkdirSync(path.dirname(victim), { recursive: true })
    fs.writeFileSync(victim, 'data of another VM')
    const evil = { ...A.backups[0].metadata, xva: `../${B.vm.uuid}/victim.xva` }
    const evilKey = await repository.writeVmBackupMetadata(VM, evil)
    const log = recorder()
    await openRepository(dir, { logger: log.logger }).deleteVmBackups([evilKey])
    assert.ok(fs.existsSync(victim))
    assert.deepStrictEqual(metadataNames(dir, VM), filenames([1]))
    assert.ok(log.warns().some((event) => event.data?.xva === evil.xva))
  })

  test('deleting a restore point whose file is already gone drops its cache entry', async (t) => {
    const { dir, repository } = await repositoryWith(t, [0, 1])
    fs.unlinkSync(vmPath(dir, VM, A.backups[0].filename))
    await repository.deleteVmBackups([keyOf(VM, A.backups[0])])
    assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)), [keyOf(VM, A.backups[1])])
  })
})

/** Sets a file's mtime two minutes back: past the age of a metadata write in progress. */
function ageFile(file) {
  const old = new Date(Date.now() - 120_000)
  fs.utimesSync(file, old, old)
}

describe('checkVm and checkAll', () => {
  test('a coherent cache: the report says so, through the fast path', async (t) => {
    const { repository } = await repositoryWith(t, [0, 1, 2])
    assert.deepStrictEqual(await repository.checkVm(VM), {
      vm: VM,
      entries: 3,
      fastPath: true,
      stale: [],
      missing: [],
      unreadable: [],
      writing: [],
      coherent: true,
      repaired: false,
    })
  })

  test('reports stale, missing and unreadable entries; a dry run writes nothing', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1, 2, 3])
    fs.unlinkSync(vmPath(dir, VM, A.backups[1].filename)) // removed behind the cache's back
    putMetadata(dir, VM, A.backups[4]) // added behind its back
    fs.writeFileSync(vmPath(dir, VM, A.backups[5].filename), '{"mode":"delta","timest') // torn
    ageFile(vmPath(dir, VM, A.backups[5].filename)) // for good: not a write in progress
    const before = snapshot(dir)
    const { handler, of } = share(dir)
    const log = recorder()
    const repository = openRepository(handler, { logger: log.logger })

    for (const options of [{}, { dryRun: true }, { repair: true, dryRun: true }]) {
      const report = await repository.checkVm(VM, options)
      assert.deepStrictEqual(report.stale, [keyOf(VM, A.backups[1])])
      assert.deepStrictEqual(report.missing, [4, 5].map((i) => keyOf(VM, A.backups[i])))
      assert.equal(report.unreadable.length, 1)
      assert.equal(report.unreadable[0].id, keyOf(VM, A.backups[5]))
      assert.equal(typeof report.unreadable[0].reason, 'string')
      assert.ok(report.unreadable[0].reason.length > 0)
      assert.equal(report.coherent, false)
      assert.equal(report.repaired, false)
      assert.equal(report.fastPath, false)
    }
    const reports = await repository.checkAll({ repair: true, dryRun: true })
    assert.deepStrictEqual(Object.keys(reports), [VM])
    assert.equal(reports[VM].repaired, false)

    assert.deepStrictEqual(snapshot(dir), before)
    for (const kind of ['writeFile', 'rename', 'unlink', 'mkdir', 'rmdir', 'lock']) assert.deepStrictEqual(of(kind), [], kind)
    assert.ok(log.warns().some((event) => event.data.file === `xo-vm-backups/${VM}/${A.backups[5].filename}`))
  })

  test('repair reads only the metadata files the cache lacks, then the cache equals a fresh rebuild', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1, 2])
    fs.unlinkSync(vmPath(dir, VM, A.backups[0].filename))
    putMetadata(dir, VM, A.backups[3])
    putMetadata(dir, VM, A.backups[4])
    const { handler, of, reset } = share(dir)
    const repository = openRepository(handler)

    const report = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual(report.stale, [keyOf(VM, A.backups[0])])
    assert.deepStrictEqual(report.missing, [3, 4].map((i) => keyOf(VM, A.backups[i])))
    assert.equal(report.repaired, true)
    assert.deepStrictEqual(of('readFile').sort(), [
      'encryption.json', // once per repository: is it encrypted?
      `xo-vm-backups/${VM}/${A.backups[3].filename}`,
      `xo-vm-backups/${VM}/${A.backups[4].filename}`,
      `xo-vm-backups/${VM}/cache.json.gz`,
    ])
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))

    reset()
    const again = await repository.checkVm(VM, { repair: true })
    assert.equal(again.coherent, true)
    assert.equal(again.fastPath, true)
    assert.equal(again.repaired, false)
    assert.deepStrictEqual(of('readFile'), [`xo-vm-backups/${VM}/cache.json.gz`])
    assert.deepStrictEqual(of('writeFile'), [])
  })

  test('checkAll reports every VM folder and repairs them all', async (t) => {
    const dir = tempDir(t)
    const repository = openRepository(dir)
    await writeBackups(repository, A, [0, 1])
    await writeBackups(repository, B, [0])
    fs.mkdirSync(vmPath(dir, C.vm.uuid), { recursive: true })
    putMetadata(dir, B.vm.uuid, B.backups[1])
    fs.unlinkSync(cachePath(dir, VM))

    const reports = await repository.checkAll({ repair: true })
    assert.deepStrictEqual(Object.keys(reports).sort(), [VM, B.vm.uuid, C.vm.uuid].sort())
    assert.deepStrictEqual(reports[VM].missing, [0, 1].map((i) => keyOf(VM, A.backups[i])))
    assert.deepStrictEqual(reports[B.vm.uuid].missing, [keyOf(B.vm.uuid, B.backups[1])])
    assert.equal(reports[C.vm.uuid].coherent, true)
    assert.equal(reports[C.vm.uuid].entries, 0)
    for (const vm of [VM, B.vm.uuid]) {
      assert.equal(reports[vm].repaired, true)
      assert.equal(cacheBody(dir, vm), rebuiltBody(dir, vm))
    }
    assert.equal(fs.existsSync(cachePath(dir, C.vm.uuid)), false)
    for (const report of Object.values(await repository.checkAll())) assert.equal(report.coherent, true)
  })

  test('deep reports restore points whose data files are missing, and deletes nothing', async (t) => {
    const { dir, repository } = await repositoryWith(t, [0, 1, 2, 7])
    putDataFiles(dir, VM, A.backups[0])
    putDataFiles(dir, VM, A.backups[1])
    // #2 (delta) and #7 (full) lost their data files; #7 keeps its checksum.
    fs.mkdirSync(vmPath(dir, VM), { recursive: true })
    fs.writeFileSync(vmPath(dir, VM, `${A.backups[7].metadata.xva.replace('./', '')}.checksum`), '')
    const before = snapshot(dir, { folderMtimes: false })

    for (const options of [{ deep: true }, { deep: true, repair: true }]) {
      const report = await repository.checkVm(VM, options)
      assert.equal(report.coherent, true)
      assert.deepStrictEqual(report.incomplete, [
        { id: keyOf(VM, A.backups[2]), missing: A.backups[2].dataFiles },
        { id: keyOf(VM, A.backups[7]), missing: [A.backups[7].metadata.xva.replace('./', '')] },
      ])
      assert.deepStrictEqual(snapshot(dir, { folderMtimes: false }), before)
    }
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([0, 1, 2, 7]))
    assert.equal((await repository.checkVm(VM)).incomplete, undefined, 'only a deep check looks at data files')
  })
})

// --- compatibility with Xen Orchestra --------------------------------------------

describe('Xen Orchestra compatibility', () => {
  /**
   * A VM folder as XO leaves it: metadata files, and a cache made with
   * gzip(JSON.stringify()) holding XO's three record shapes (RemoteAdapter
   * regeneration, writeVmBackupMetadata, cleanVm regeneration), a legacy
   * key without its leading slash, and an id from `xo-backups clean-vms`
   * run on the VM folder (W6).
   */
  function xoFolder(dir) {
    const cache = {}
    A.backups.slice(0, 5).forEach((backup, i) => {
      putMetadata(dir, VM, backup)
      const k = keyOf(VM, backup)
      const md = backup.metadata
      const shapes = [
        { ...md, _filename: k, isImmutable: false, id: k },
        { ...md, _filename: k, id: k },
        { _filename: k, id: k, ...md },
        { ...md, _filename: k, id: k },
        { ...md, _filename: `/${VM}/${backup.filename}`, id: `/${VM}/${backup.filename}` },
      ]
      cache[i === 3 ? k.slice(1) : k] = shapes[i]
    })
    fs.writeFileSync(cachePath(dir, VM), zlib.gzipSync(JSON.stringify(cache)))
    return [0, 1, 2, 3, 4].map((i) => expectedRecord(VM, A.backups[i]))
  }

  test('a cache written by XO lists correctly, with canonical ids', async (t) => {
    const dir = tempDir(t)
    const expected = xoFolder(dir)
    const { handler, of } = share(dir)
    const repository = openRepository(handler)
    assert.deepStrictEqual(await repository.listVmBackups(VM), expected)
    assert.deepStrictEqual(await repository.listAllVmBackups(), { [VM]: expected })
    assert.deepStrictEqual(of('readFile').filter((file) => file.endsWith('Z.json')), [], 'the cache was used, no metadata read')
    await repository.settle()
  })

  test('an XO cache is coherent without the fast path; repair rewrites it in a form XO still reads', async (t) => {
    const dir = tempDir(t)
    const expected = xoFolder(dir)
    const repository = openRepository(dir)
    const first = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual([first.coherent, first.fastPath, first.stale, first.missing], [true, false, [], []])
    assert.equal(first.repaired, true)

    const asXo = readAsXo(dir, VM)
    assert.deepStrictEqual(Object.keys(asXo).sort(), expected.map((record) => record.id))
    for (const [k, record] of Object.entries(asXo)) {
      assert.equal(record._filename, k)
      assert.equal(record.id, k)
    }
    const second = await repository.checkVm(VM)
    assert.deepStrictEqual([second.coherent, second.fastPath], [true, true])
    assert.deepStrictEqual(await repository.listVmBackups(VM), expected)
  })

  test('a cache brcache writes is what XO reads: gunzip + JSON.parse, keyed by /xo-vm-backups/<vm>/<name>, _filename and id set', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1, 2])
    const asXo = readAsXo(dir, VM)
    assert.deepStrictEqual(asXo, Object.fromEntries([0, 1, 2].map((i) => [keyOf(VM, A.backups[i]), { ...asJson(A.backups[i].metadata), _filename: keyOf(VM, A.backups[i]), id: keyOf(VM, A.backups[i]), ...pick(asXo[keyOf(VM, A.backups[i])], 'isImmutable') }])))
    // And brcache's own decoder agrees with XO's reading.
    assert.deepStrictEqual(decodeCache(fs.readFileSync(cachePath(dir, VM))), asXo)
  })
})

function pick(object, ...fields) {
  return Object.fromEntries(fields.filter((field) => field in object).map((field) => [field, object[field]]))
}

// --- unusable caches, drift, failures --------------------------------------------

describe('stale, missing, corrupt and truncated caches are repaired', () => {
  const cases = {
    stale: { corrupt: false, damage: (dir) => (fs.unlinkSync(vmPath(dir, VM, A.backups[1].filename)), putMetadata(dir, VM, A.backups[4])) },
    missing: { corrupt: false, damage: (dir) => fs.unlinkSync(cachePath(dir, VM)) },
    corrupt: {
      corrupt: true,
      damage: (dir) => {
        const bytes = fs.readFileSync(cachePath(dir, VM))
        bytes[bytes.length >> 1] ^= 0xff
        fs.writeFileSync(cachePath(dir, VM), bytes)
      },
    },
    truncated: { corrupt: true, damage: (dir) => fs.truncateSync(cachePath(dir, VM), fs.statSync(cachePath(dir, VM)).size >> 1) },
    'empty (a torn XO write)': { corrupt: true, damage: (dir) => fs.truncateSync(cachePath(dir, VM), 0) },
    'not gzip': { corrupt: true, damage: (dir) => fs.writeFileSync(cachePath(dir, VM), '{"not":"gzip"}') },
  }

  for (const [name, { corrupt, damage }] of Object.entries(cases)) {
    test(name, async (t) => {
      const { dir } = await repositoryWith(t, [0, 1, 2, 3])
      damage(dir)
      const damaged = fs.existsSync(cachePath(dir, VM)) ? fs.readFileSync(cachePath(dir, VM)) : undefined
      const truth = metadataNames(dir, VM)

      // A listing returns the truth, logs an unusable cache, and repairs it in the background.
      const log = recorder()
      const reader = openRepository(dir, { logger: log.logger })
      assert.deepStrictEqual(names(VM, await reader.listVmBackups(VM)), truth)
      const warns = log.warns().filter((event) => event.data?.file === `xo-vm-backups/${VM}/cache.json.gz`)
      if (corrupt) {
        assert.equal(warns.length, 1)
        assert.equal(typeof warns[0].data.reason, 'string')
        assert.ok(warns[0].data.reason.length > 0)
      } else {
        assert.deepStrictEqual(warns, [])
      }
      await reader.settle()
      assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))

      // checkVm({ repair: true }) repairs the same damage.
      if (damaged) fs.writeFileSync(cachePath(dir, VM), damaged)
      else fs.unlinkSync(cachePath(dir, VM))
      const checker = openRepository(dir, { logger: recorder().logger })
      const report = await checker.checkVm(VM, { repair: true })
      assert.equal(report.coherent, false)
      assert.equal(report.repaired, true)
      assert.equal(typeof report.cacheError, corrupt ? 'string' : 'undefined')
      assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
      assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)).sort(), truth.map((file) => key(VM, file)))
      const after = await checker.checkVm(VM)
      assert.deepStrictEqual([after.coherent, after.fastPath], [true, true])
    })
  }

  test('an unusable cache in a folder without restore points is replaced too', async (t) => {
    const dir = tempDir(t)
    fs.mkdirSync(vmPath(dir, VM), { recursive: true })
    fs.writeFileSync(cachePath(dir, VM), 'garbage')
    const repository = openRepository(dir)
    const report = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual([report.coherent, report.repaired, typeof report.cacheError], [false, true, 'string'])
    assert.deepStrictEqual(readAsXo(dir, VM), {})
    assert.equal((await repository.checkVm(VM)).coherent, true)
  })
})

describe('drift XO does not see', () => {
  test('same count, different keys: detected and repaired', async (t) => {
    const dir = tempDir(t)
    for (const i of [0, 1, 2]) putMetadata(dir, VM, A.backups[i])
    // XO's count check (3 == 3) passes this cache, which lists #3 instead of #2.
    const cache = Object.fromEntries([0, 1, 3].map((i) => [keyOf(VM, A.backups[i]), expectedRecord(VM, A.backups[i])]))
    fs.writeFileSync(cachePath(dir, VM), zlib.gzipSync(JSON.stringify(cache)))
    const repository = openRepository(dir)

    for (const options of [{}, { repair: true }]) {
      const report = await repository.checkVm(VM, options)
      assert.deepStrictEqual(report.stale, [keyOf(VM, A.backups[3])])
      assert.deepStrictEqual(report.missing, [keyOf(VM, A.backups[2])])
      assert.deepStrictEqual([report.coherent, report.repaired], [false, Boolean(options.repair)])
    }
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
    assert.equal((await repository.checkVm(VM)).coherent, true)
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([0, 1, 2]))

    // A listing alone returns the truth too (and repairs in the background).
    fs.writeFileSync(cachePath(dir, VM), zlib.gzipSync(JSON.stringify(cache)))
    const reader = openRepository(dir)
    assert.deepStrictEqual(names(VM, await reader.listVmBackups(VM)), filenames([0, 1, 2]))
    await reader.settle()
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
  })

  test('same count, different keys in a brcache cache: the fingerprint does not match, no fast path', async (t) => {
    const { dir, repository } = await repositoryWith(t, [0, 1, 2])
    fs.unlinkSync(vmPath(dir, VM, A.backups[2].filename))
    putMetadata(dir, VM, A.backups[3])
    const report = await repository.checkVm(VM)
    assert.deepStrictEqual([report.fastPath, report.stale, report.missing], [false, [keyOf(VM, A.backups[2])], [keyOf(VM, A.backups[3])]])
  })

  test('a metadata file that does not parse is reported as unreadable and left out, never fatal', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1])
    const torn = A.backups[2]
    fs.writeFileSync(vmPath(dir, VM, torn.filename), JSON.stringify(torn.metadata).slice(0, 100))
    fs.writeFileSync(vmPath(dir, VM, A.backups[3].filename), '[1, 2, 3]') // JSON, but not a record
    // Older than a write in progress can be (a young one is being written,
    // see tests/shares.test.mjs).
    for (const i of [2, 3]) ageFile(vmPath(dir, VM, A.backups[i].filename))
    const log = recorder()
    const repository = openRepository(dir, { logger: log.logger })

    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([0, 1]))
    assert.deepStrictEqual(Object.keys(await repository.listAllVmBackups()), [VM])
    for (const options of [{}, { repair: true }, { repair: true }]) {
      const report = await repository.checkVm(VM, options)
      assert.deepStrictEqual(report.unreadable.map((u) => u.id), [2, 3].map((i) => keyOf(VM, A.backups[i])))
      assert.equal(report.coherent, false)
    }
    await repository.settle()
    assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)).sort(), [0, 1].map((i) => keyOf(VM, A.backups[i])))
    const files = new Set(log.warns().map((event) => event.data.file))
    assert.ok(files.has(`xo-vm-backups/${VM}/${torn.filename}`))
  })

  test('a restore point removed behind the cache is never listed', async (t) => {
    const { dir, repository } = await repositoryWith(t, [0, 1, 2])
    fs.unlinkSync(vmPath(dir, VM, A.backups[1].filename))
    const { handler, of } = share(dir)
    const reader = openRepository(handler, { immutable: true })
    assert.deepStrictEqual(names(VM, await reader.listVmBackups(VM)), filenames([0, 2]))
    assert.deepStrictEqual(Object.keys(await reader.listSummaries()), [VM])
    assert.deepStrictEqual((await reader.listSummaries())[VM].map((s) => s.id), [0, 2].map((i) => keyOf(VM, A.backups[i])))
    const [encryption, caches] = [of('readFile').filter((f) => f === 'encryption.json'), of('readFile').filter((f) => f !== 'encryption.json')]
    assert.deepStrictEqual(caches, Array(3).fill(`xo-vm-backups/${VM}/cache.json.gz`), 'nothing to read but the cache')
    assert.equal(encryption.length, 1, 'encryption.json, once for the repository')
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([0, 2]))
  })
})

describe('failures are errors, never "no backups"', () => {
  test('a failed folder listing rejects with its code', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1])
    const { handler } = share(dir, (call) => (call.kind === 'list' ? { error: 'EIO' } : undefined))
    const repository = openRepository(handler)
    await assert.rejects(repository.listVmBackups(VM), { code: 'EIO' })
    await assert.rejects(repository.listAllVmBackups(), { code: 'EIO' })
    await assert.rejects(repository.listSummaries(), { code: 'EIO' })
    await assert.rejects(repository.checkVm(VM), { code: 'EIO' })
    await assert.rejects(repository.checkAll({ repair: true }), { code: 'EIO' })
  })

  test('a failed listing of xo-vm-backups rejects too', async (t) => {
    const { dir } = await repositoryWith(t, [0])
    const repository = openRepository(new SimulatedShare(new LocalHandler(dir), { rttMs: 0, faults: { listWithTypes: { error: 'ESTALE' } } }))
    await assert.rejects(repository.listAllVms(), { code: 'ESTALE' })
    await assert.rejects(repository.listAllVmBackups(), { code: 'ESTALE' })
    await assert.rejects(repository.checkAll(), { code: 'ESTALE' })
  })

  test('a failed metadata read rejects; a failed cache read falls back to the metadata files', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1])
    putMetadata(dir, VM, A.backups[2]) // not in the cache: must be read
    const failing = share(dir, (call) => (call.kind === 'readFile' && call.path.endsWith('.json') ? { error: 'EIO' } : undefined))
    await assert.rejects(openRepository(failing.handler).listVmBackups(VM), { code: 'EIO' })
    await assert.rejects(openRepository(failing.handler).checkVm(VM, { repair: true }), { code: 'EIO' })

    const log = recorder()
    const noCache = share(dir, (call) => (call.kind === 'readFile' && call.path.endsWith('cache.json.gz') ? { error: 'EIO' } : undefined))
    const repository = openRepository(noCache.handler, { logger: log.logger })
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([0, 1, 2]))
    assert.ok(log.warns().some((event) => event.data.file === `xo-vm-backups/${VM}/cache.json.gz`))
    await repository.settle()
  })

  test('a failed cache write leaves the old cache intact, is logged, and the next check repairs it', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1, 2])
    const old = fs.readFileSync(cachePath(dir, VM))
    const failCache = (call) => (call.kind === 'writeFile' && call.path.endsWith('cache.json.gz') ? { error: 'EIO' } : undefined)
    let failing = true
    const { handler } = share(dir, (call) => (failing ? failCache(call) : undefined))
    const log = recorder()
    const repository = openRepository(handler, { logger: log.logger })

    // The backup is written; its cache update fails.
    assert.equal(await repository.writeVmBackupMetadata(VM, A.backups[3].metadata), keyOf(VM, A.backups[3]))
    assert.ok(fs.existsSync(vmPath(dir, VM, A.backups[3].filename)))
    // So does a delete's.
    await repository.deleteVmBackups([keyOf(VM, A.backups[0])])
    assert.equal(fs.existsSync(vmPath(dir, VM, A.backups[0].filename)), false)
    assert.ok(fs.readFileSync(cachePath(dir, VM)).equals(old))
    const warned = log.warns().filter((event) => event.data.file === `xo-vm-backups/${VM}/cache.json.gz`)
    assert.deepStrictEqual(warned.map((event) => event.data.operation), ['write', 'delete'])
    for (const event of warned) assert.match(event.data.reason, /EIO/)

    // A repair that cannot write says so, and still leaves the old cache.
    await assert.rejects(repository.checkVm(VM, { repair: true }), { code: 'EIO' })
    assert.ok(fs.readFileSync(cachePath(dir, VM)).equals(old))
    // Listings stay true meanwhile.
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([1, 2, 3]))
    await repository.settle()
    assert.ok(fs.readFileSync(cachePath(dir, VM)).equals(old))

    failing = false
    const report = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual(report.stale, [keyOf(VM, A.backups[0])])
    assert.deepStrictEqual(report.missing, [keyOf(VM, A.backups[3])])
    assert.equal(report.repaired, true)
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
    assert.deepStrictEqual(fs.readdirSync(vmPath(dir, VM)).filter(isTempName), [])
  })
})

describe('immutable repositories never get a cache written, created or deleted', () => {
  test('without a cache: writes, deletes, listings and repairs create none', async (t) => {
    const dir = tempDir(t)
    const { handler, calls, of, reset } = share(dir)
    const repository = openRepository(handler, { immutable: true })
    const keys = await writeBackups(repository, A, [0, 1, 2, 3])
    await repository.deleteVmBackups([keys[1]])
    reset()
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([0, 2, 3]))
    assert.deepStrictEqual(of('readFile').sort(), [
      ...filenames([0, 2, 3]).map((name) => `xo-vm-backups/${VM}/${name}`),
      `xo-vm-backups/${VM}/cache.json.gz`,
    ])
    const report = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual([report.repaired, report.missing.length], [false, 3])
    await repository.checkAll({ repair: true })
    await repository.listSummaries()
    await repository.settle()

    assert.deepStrictEqual(fs.readdirSync(vmPath(dir, VM)).sort(), filenames([0, 2, 3]))
    const touched = calls.filter((call) => call.path.includes('cache.json.gz') && call.kind !== 'readFile')
    assert.deepStrictEqual(touched, [])
    assert.deepStrictEqual(of('lock'), [])
  })

  test('with a stale cache: it keeps its bytes, and listings read only what it lacks', async (t) => {
    const { dir } = await repositoryWith(t, [0, 1, 2])
    const old = fs.readFileSync(cachePath(dir, VM))
    const before = fs.statSync(cachePath(dir, VM)).mtimeMs
    const { handler, calls, of, reset } = share(dir)
    const repository = openRepository(handler, { immutable: true })

    await repository.writeVmBackupMetadata(VM, A.backups[3].metadata)
    await repository.deleteVmBackups([keyOf(VM, A.backups[0])])
    putMetadata(dir, VM, A.backups[4]) // another writer, behind the cache's back
    reset()
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([1, 2, 3, 4]))
    assert.deepStrictEqual(of('readFile').sort(), [
      ...filenames([3, 4]).map((name) => `xo-vm-backups/${VM}/${name}`),
      `xo-vm-backups/${VM}/cache.json.gz`,
    ])
    const report = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual(report.stale, [keyOf(VM, A.backups[0])])
    assert.deepStrictEqual(report.missing, [3, 4].map((i) => keyOf(VM, A.backups[i])))
    assert.equal(report.repaired, false)
    await repository.checkAll({ repair: true })
    await repository.settle()

    assert.ok(fs.readFileSync(cachePath(dir, VM)).equals(old))
    assert.equal(fs.statSync(cachePath(dir, VM)).mtimeMs, before)
    assert.deepStrictEqual(calls.filter((call) => call.path.includes('cache.json.gz') && call.kind !== 'readFile'), [])
    assert.deepStrictEqual(fs.readdirSync(vmPath(dir, VM)).sort(), ['cache.json.gz', ...filenames([1, 2, 3, 4])].sort())
  })
})

describe('crash leftovers', () => {
  const TEMP = '.cache.json.gz.tmp-4242-0123456789ab'

  /** A VM folder after a writer died mid cache write: the temp file stays, the cache lacks its backup. */
  async function crashed(t) {
    const { dir, repository } = await repositoryWith(t, [0, 1])
    putMetadata(dir, VM, A.backups[2])
    assert.ok(isTempName(TEMP))
    fs.writeFileSync(vmPath(dir, VM, TEMP), zlib.gzipSync('{"half":'))
    const past = new Date(Date.now() - 60_000)
    fs.utimesSync(vmPath(dir, VM, TEMP), past, past)
    return { dir, repository }
  }

  test('a temp file is never listed nor reported as a restore point', async (t) => {
    const { dir } = await crashed(t)
    const repository = openRepository(dir, { immutable: true })
    assert.deepStrictEqual(names(VM, await repository.listVmBackups(VM)), filenames([0, 1, 2]))
    const report = await repository.checkVm(VM, { repair: true, dryRun: true })
    assert.deepStrictEqual([report.stale, report.missing, report.unreadable], [[], [keyOf(VM, A.backups[2])], []])
    assert.ok(fs.existsSync(vmPath(dir, VM, TEMP)), 'neither a dry run nor an immutable repository removes it')
  })

  test('the next cache write removes it', async (t) => {
    const { dir, repository } = await crashed(t)
    await repository.writeVmBackupMetadata(VM, A.backups[3].metadata)
    assert.deepStrictEqual(fs.readdirSync(vmPath(dir, VM)).sort(), ['cache.json.gz', ...filenames([0, 1, 2, 3])].sort())
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
  })

  test('check --repair removes it', async (t) => {
    const { dir, repository } = await crashed(t)
    const report = await repository.checkVm(VM, { repair: true })
    assert.equal(report.repaired, true)
    assert.deepStrictEqual(fs.readdirSync(vmPath(dir, VM)).sort(), ['cache.json.gz', ...filenames([0, 1, 2])].sort())
  })
})

// --- both cores ------------------------------------------------------------------

describe('the napi and wasm cores behave the same', async () => {
  const cores = { napi: undefined, wasm: await import('brcache/wasm') }
  const outcomes = {}

  /** Write, list, delete, drift, check, repair: what each step gave, and the cache bytes. */
  async function flow(t, core) {
    const dir = tempDir(t)
    const Cache = core?.VmCache ?? VmCache
    const repository = openRepository(dir, core ? { core } : {})
    const keys = await writeBackups(repository, A, [0, 1, 2, 3, 7])
    const listed = await repository.listVmBackups(VM)
    assert.deepStrictEqual(listed, [0, 1, 2, 3, 7].map((i) => expectedRecord(VM, A.backups[i])))
    await repository.deleteVmBackups([keys[0], keys[2]])
    const afterDelete = names(VM, await repository.listVmBackups(VM))
    assert.deepStrictEqual(afterDelete, filenames([1, 3, 7]))
    const coherent = await repository.checkVm(VM)
    assert.deepStrictEqual([coherent.coherent, coherent.fastPath], [true, true])
    const bytes = fs.readFileSync(cachePath(dir, VM))
    assert.equal(cacheBody(dir, VM, Cache), rebuiltBody(dir, VM, Cache))

    fs.unlinkSync(vmPath(dir, VM, A.backups[1].filename))
    putMetadata(dir, VM, A.backups[4])
    const drifted = await repository.checkVm(VM, { repair: true })
    assert.deepStrictEqual([drifted.stale, drifted.missing, drifted.repaired], [[keyOf(VM, A.backups[1])], [keyOf(VM, A.backups[4])], true])
    assert.equal(cacheBody(dir, VM, Cache), rebuiltBody(dir, VM, Cache))
    const summaries = await repository.listSummaries()
    return { listed, afterDelete, coherent, bytes, drifted, repairedBytes: fs.readFileSync(cachePath(dir, VM)), summaries }
  }

  for (const [name, core] of Object.entries(cores)) {
    test(`${name}: write, list, delete, check, repair`, async (t) => {
      outcomes[name] = await flow(t, core)
    })
  }

  test('same results, same cache bytes', () => {
    assert.ok(outcomes.napi && outcomes.wasm)
    assert.deepStrictEqual(outcomes.wasm, outcomes.napi)
  })
})

// --- concurrency -----------------------------------------------------------------

/** A handler that passes every call to `inner`, except those `overrides` replaces. */
function delegate(inner, overrides) {
  const kinds = ['list', 'listWithTypes', 'readFile', 'writeFile', 'rename', 'unlink', 'rmdir', 'mkdir', 'stat', 'lock', 'cleanTemps']
  return { ...Object.fromEntries(kinds.map((kind) => [kind, (...args) => inner[kind](...args)])), ...overrides }
}

describe('a listing that overlaps a write', () => {
  test('never undoes that write when it repairs the cache in the background', async (t) => {
    const { dir, repository: writer } = await repositoryWith(t, [0, 1])
    const local = new LocalHandler(dir)
    let writeStarted
    const written = new Promise((resolve) => (writeStarted = resolve))
    const reader = openRepository(
      delegate(local, {
        // The reader's folder listing is taken before another writer adds #2...
        async list(folder) {
          const listing = await local.list(folder)
          if (folder === `xo-vm-backups/${VM}` && writeStarted) {
            const write = writer.writeVmBackupMetadata(VM, A.backups[2].metadata)
            writeStarted(write)
            writeStarted = undefined
            await write
          }
          return listing
        },
        // ...and its cache read comes after that writer updated the cache.
        async readFile(file) {
          if (file.endsWith('cache.json.gz')) await written
          return local.readFile(file)
        },
      }),
    )
    const listed = names(VM, await reader.listVmBackups(VM))
    assert.deepStrictEqual(listed.slice(0, 2), filenames([0, 1]))
    await reader.settle()
    assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)).sort(), [0, 1, 2].map((i) => keyOf(VM, A.backups[i])))
    const report = await writer.checkVm(VM)
    assert.deepStrictEqual([report.coherent, report.missing], [true, []])
  })
})

// --- processes -------------------------------------------------------------------

describe('several processes on one VM folder', () => {
  test('4 writers and 2 readers: no reader fails, no update is lost', { timeout: 60_000 }, async (t) => {
    const dir = tempDir(t)
    const WRITERS = 4
    const COUNT = 25
    const writer = path.join(import.meta.dirname, 'helpers', 'writer.mjs')
    fs.mkdirSync(vmPath(dir, VM), { recursive: true })

    const processes = new Children()
    t.after(() => processes.close())
    const children = Array.from({ length: WRITERS }, (_, seed) => {
      let summary
      const { exited } = processes.spawn(writer, [dir, VM, String(seed), String(COUNT)], { onLine: (line) => (summary = line) })
      return exited.then((result) => ({ ...result, summary }))
    })
    let writing = true
    const done = Promise.all(children).finally(() => (writing = false))

    const pattern = new RegExp(`^/xo-vm-backups/${VM}/(\\d{8}T\\d{6}Z)\\.json$`)
    const seen = new Set()
    const failures = []
    const readers = Array.from({ length: 2 }, async () => {
      const repository = openRepository(dir, { logger: recorder().logger })
      let listings = 0
      while (writing || listings === 0) {
        try {
          const records = await repository.listVmBackups(VM)
          listings++
          let previous = -Infinity
          for (const record of records) {
            const match = pattern.exec(record.id)
            if (!match || record._filename !== record.id || formatFilenameDate(record.timestamp) !== match[1] || record.timestamp < previous) {
              failures.push(`bad record ${record.id} (${record.timestamp})`)
            }
            previous = record.timestamp
            seen.add(record.id)
          }
        } catch (error) {
          failures.push(error.stack)
        }
      }
      await repository.settle()
      return listings
    })

    const results = await done
    const listings = await Promise.all(readers)
    for (const { code, stdout, stderr } of results) assert.equal(code, 0, `${stderr}${stdout}`)
    assert.deepStrictEqual(failures, [])
    assert.ok(listings.every((n) => n > 0))

    const summaries = results.map(({ summary }) => summary)
    const written = summaries.flatMap((s) => s.written)
    const deleted = new Set(summaries.flatMap((s) => s.deleted))
    assert.equal(new Set(written).size, WRITERS * COUNT)
    for (const s of summaries) {
      assert.deepStrictEqual(s.warnings.filter((w) => /not updated/.test(w.message)), [], `writer ${s.seed}: a lost cache update`)
    }
    const expected = written.filter((k) => !deleted.has(k)).sort()
    for (const id of seen) assert.ok(written.includes(id), `a reader listed ${id}, which nobody wrote`)

    // The folder holds exactly what was written and not deleted, and the cache says exactly that.
    assert.deepStrictEqual(metadataNames(dir, VM).map((name) => key(VM, name)), expected)
    assert.deepStrictEqual(Object.keys(readAsXo(dir, VM)).sort(), expected)
    const report = await openRepository(dir).checkVm(VM)
    assert.deepStrictEqual([report.coherent, report.stale, report.missing, report.unreadable], [true, [], [], []])
    assert.equal(cacheBody(dir, VM), rebuiltBody(dir, VM))
    assert.deepStrictEqual(fs.readdirSync(vmPath(dir, VM)).filter((name) => isTempName(name) || name.endsWith('.lock')), [])
    assert.equal(fs.existsSync(`${vmPath(dir, VM)}.lock`), false, "the VM's lock is released")
  })
})
