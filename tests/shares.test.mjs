// What shares can and cannot do, and the faults users hit on them: the
// capability probe, create-only writes without hard links (the fallback a
// FUSE SMB client, many NAS and Windows shares need), metadata being
// written, a full share (a small tmpfs mounted here), a folder without
// xo-vm-backups/, permission denied on one VM folder, and the index's
// failed builds and compactions. tests/smb.test.mjs runs the same kinds of
// cases on a real SMB share.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { LocalHandler, SimulatedShare, openRepository } from 'brcache'
import { isTempName } from '../js/node/handlers/index.js'
import { generateRepository } from '../js/sample/generate.js'
import { INDEX_DIR } from '../js/common/repo-index.js'

const cli = path.join(import.meta.dirname, '..', 'js', 'node', 'cli.js')
const dirs = []
after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))

function temp() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-shares-'))
  dirs.push(dir)
  return dir
}

function brcache(...args) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' })
  return { code: result.status, out: result.stdout, err: result.stderr }
}

const VM = 'cccccccc-0000-4000-8000-000000000001'
const record = (timestamp, extra = {}) => ({ mode: 'full', timestamp, jobId: 'j', scheduleId: 's', size: 1, ...extra })
const key = (vm, name) => `/xo-vm-backups/${vm}/${name}`
const NO_LINKS = { hardLinks: false }

function recorderLog() {
  const lines = []
  const log = (level) => (message, data) => lines.push({ level, message, data })
  return { lines, logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') } }
}

describe('the capability probe', () => {
  test('a local folder can do everything; the probe leaves nothing behind and is remembered', async () => {
    const dir = temp()
    const handler = new LocalHandler(dir)
    const found = await handler.capabilities()
    assert.deepStrictEqual(
      { ...found },
      { hardLinks: true, renameOver: true, exclusiveCreate: true, directoryFsync: true, mtimeResolutionMs: 1, probed: true, createStrategy: 'link' },
    )
    assert.deepStrictEqual(fs.readdirSync(dir), [])
    assert.equal(await handler.capabilities(), found)
  })

  test("a probe removes the folder of a probe killed more than a minute ago, not a running one's", async () => {
    const dir = temp()
    const dead = path.join(dir, '.brcache-probe-1-0123456789ab')
    const running = path.join(dir, '.brcache-probe-2-0123456789ab')
    for (const folder of [dead, running]) {
      fs.mkdirSync(folder)
      fs.writeFileSync(path.join(folder, 'a'), 'a')
    }
    const old = new Date(Date.now() - 120_000)
    fs.utimesSync(dead, old, old)
    await new LocalHandler(dir).capabilities()
    assert.deepStrictEqual(fs.readdirSync(dir), ['.brcache-probe-2-0123456789ab'])
  })

  test('capabilities can be given instead of probed, and pick the create-only strategy', async () => {
    const handler = new LocalHandler(temp(), { capabilities: NO_LINKS })
    const found = await handler.capabilities()
    assert.equal(found.probed, false)
    assert.equal(found.hardLinks, false)
    assert.equal(found.createStrategy, 'claim')
    assert.equal((await new LocalHandler(temp(), { capabilities: { hardLinks: false, exclusiveCreate: false } }).capabilities()).createStrategy, 'check-then-rename')
    // Through a simulated share: the inner handler's.
    assert.equal((await new SimulatedShare(handler, { rttMs: 0 }).capabilities()).createStrategy, 'claim')
  })

  test('brcache check --verbose says what the share can do', () => {
    const dir = temp()
    assert.equal(brcache('gen', dir, '--vms', '1', '--retention', '2').code, 0)
    const r = brcache('check', dir, '--verbose')
    assert.equal(r.code, 0, r.err)
    assert.match(r.out, /share: hard links yes, rename over a file yes, exclusive create yes, folder fsync yes, timestamps to 1 ms; create-only writes by link/)
    assert.ok(!fs.readdirSync(dir).some((name) => name.startsWith('.brcache-probe-')))
    // Never probed on an immutable repository; a root it may not write to is said, not fatal.
    const immutable = brcache('check', dir, '--verbose', '--immutable')
    assert.equal(immutable.code, 0)
    assert.match(immutable.out, /share: not probed \(an immutable repository gets nothing written\)/)
    fs.chmodSync(dir, 0o555)
    try {
      const drop = ['--inh-caps=-dac_override,-dac_read_search', '--bounding-set=-dac_override,-dac_read_search']
      const readOnly = spawnSync('setpriv', [...drop, process.execPath, cli, 'check', dir, '--verbose'], { encoding: 'utf8' })
      assert.equal(readOnly.status, 0, readOnly.stderr)
      assert.match(readOnly.stdout, /share: not probed \(EACCES: permission denied, mkdir /)
    } finally {
      fs.chmodSync(dir, 0o755)
    }
  })
})

describe('create-only writes without hard links', () => {
  test('create, refuse a taken name, leave no claim or temp file', async () => {
    const dir = temp()
    const handler = new LocalHandler(dir, { capabilities: NO_LINKS })
    await handler.writeFile('a/x.json', '{"a":1}', { exclusive: true })
    await assert.rejects(handler.writeFile('a/x.json', '{"a":2}', { exclusive: true }), { code: 'EEXIST', path: 'a/x.json' })
    assert.equal(fs.readFileSync(path.join(dir, 'a/x.json'), 'utf8'), '{"a":1}')
    assert.deepStrictEqual(fs.readdirSync(path.join(dir, 'a')), ['x.json'])
    // A hard link was never made: the file has one name.
    assert.equal(fs.statSync(path.join(dir, 'a/x.json')).nlink, 1)
  })

  test('without exclusive create or rename over a file: create-only by check and rename, replace by unlink and rename', async () => {
    const dir = temp()
    const handler = new LocalHandler(dir, { capabilities: { hardLinks: false, exclusiveCreate: false, renameOver: false } })
    assert.equal((await handler.capabilities()).createStrategy, 'check-then-rename')
    await handler.writeFile('v/1.json', '{"a":1}', { exclusive: true })
    await assert.rejects(handler.writeFile('v/1.json', '{"a":2}', { exclusive: true }), { code: 'EEXIST' })
    await handler.writeFile('v/cache', 'one')
    await handler.writeFile('v/cache', 'two')
    assert.equal(fs.readFileSync(path.join(dir, 'v/cache'), 'utf8'), 'two')
    assert.equal(fs.readFileSync(path.join(dir, 'v/1.json'), 'utf8'), '{"a":1}')
    assert.deepStrictEqual(fs.readdirSync(path.join(dir, 'v')).sort(), ['1.json', 'cache'])
  })

  test('of many writers racing for one name, exactly one wins and its bytes are whole', async () => {
    const dir = temp()
    const handlers = Array.from({ length: 8 }, () => new LocalHandler(dir, { capabilities: NO_LINKS }))
    const data = (i) => JSON.stringify({ writer: i, pad: 'x'.repeat(100_000) })
    const results = await Promise.allSettled(handlers.map((h, i) => h.writeFile('v/1.json', data(i), { exclusive: true })))
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []))
    assert.equal(won.length, 1)
    for (const r of results) if (r.status === 'rejected') assert.equal(r.reason.code, 'EEXIST')
    assert.equal(fs.readFileSync(path.join(dir, 'v/1.json'), 'utf8'), data(won[0]))
    assert.deepStrictEqual(fs.readdirSync(path.join(dir, 'v')), ['1.json'])
  })

  test("a dead writer's claim: young, the name is taken; older than a minute, taken over; hidden from listings", async () => {
    const dir = temp()
    const handler = new LocalHandler(dir, { capabilities: NO_LINKS })
    await handler.mkdir('v')
    const claim = path.join(dir, 'v', '.1.json.claim')
    fs.writeFileSync(claim, '')
    assert.equal(isTempName('.1.json.claim'), true)
    await assert.rejects(handler.writeFile('v/1.json', '{}', { exclusive: true }), { code: 'EEXIST' })
    const old = new Date(Date.now() - 120_000)
    fs.utimesSync(claim, old, old)
    await handler.writeFile('v/1.json', '{"ok":true}', { exclusive: true })
    assert.deepStrictEqual(fs.readdirSync(path.join(dir, 'v')), ['1.json'])
    // cleanTemps removes old claims as it removes old temp files.
    fs.writeFileSync(path.join(dir, 'v', '.2.json.claim'), '')
    fs.utimesSync(path.join(dir, 'v', '.2.json.claim'), old, old)
    assert.deepStrictEqual(await handler.cleanTemps('v'), ['.2.json.claim'])
  })

  test('the repository writes, lists, deletes and checks the same with or without links', async () => {
    for (const capabilities of [undefined, NO_LINKS]) {
      const dir = temp()
      const repository = openRepository(new LocalHandler(dir, { capabilities }))
      const ids = []
      for (let i = 1; i <= 3; i++) ids.push(await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, i))))
      await assert.rejects(repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 1))), { code: 'EEXIST' })
      assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), ids)
      await repository.deleteVmBackups([ids[0]])
      assert.deepStrictEqual(fs.readdirSync(path.join(dir, 'xo-vm-backups', VM)).sort(), ['20240102T000000Z.json', '20240103T000000Z.json', 'cache.json.gz'])
      assert.equal((await repository.checkVm(VM)).coherent, true)
    }
  })
})

describe('metadata being written', () => {
  test('a young metadata file that does not parse is skipped, unreported and uncached; an old one is unreadable', async () => {
    const dir = temp()
    const repository = openRepository(dir)
    await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 1)))
    // Xen Orchestra writing a metadata file in place, half done.
    const half = path.join(dir, 'xo-vm-backups', VM, '20240102T000000Z.json')
    fs.writeFileSync(half, '{"mode":"full","timest')
    const { lines, logger } = recorderLog()
    const watched = openRepository(dir, { logger })
    assert.deepStrictEqual((await watched.listVmBackups(VM)).map((b) => b.id), [key(VM, '20240101T000000Z.json')])
    const report = await watched.checkVm(VM, { repair: true })
    assert.deepStrictEqual(report.writing, [key(VM, '20240102T000000Z.json')])
    assert.deepStrictEqual(report.unreadable, [])
    assert.deepStrictEqual(report.missing, [])
    assert.equal(report.coherent, true)
    assert.ok(!lines.some(({ message }) => /unreadable/.test(message)), JSON.stringify(lines))
    // The cache does not hold it: once whole, the next listing reads it.
    fs.writeFileSync(half, JSON.stringify(record(Date.UTC(2024, 0, 2))))
    assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), [key(VM, '20240101T000000Z.json'), key(VM, '20240102T000000Z.json')])
    // Left torn for more than a minute: a failed write, unreadable as before.
    fs.writeFileSync(path.join(dir, 'xo-vm-backups', VM, '20240103T000000Z.json'), '{"mode":')
    const old = new Date(Date.now() - 120_000)
    fs.utimesSync(path.join(dir, 'xo-vm-backups', VM, '20240103T000000Z.json'), old, old)
    const later = await repository.checkVm(VM)
    assert.deepStrictEqual(later.writing, [])
    assert.deepStrictEqual(later.unreadable.map(({ id }) => id), [key(VM, '20240103T000000Z.json')])
    const cli = brcache('check', dir)
    assert.equal(cli.code, 1)
    assert.match(cli.out, /1 unreadable/)
  })
})

describe('faults users hit', () => {
  test('an empty or unmounted mount point: list says there is no backup folder, exit 3', () => {
    const empty = temp()
    for (const args of [[], ['--json'], ['--vm', VM]]) {
      const r = brcache('list', empty, ...args)
      assert.equal(r.code, 3, r.err)
      assert.equal(r.err.trim(), `brcache: no backup folder at ${path.join(empty, 'xo-vm-backups')}: is the share mounted?`)
      assert.equal(r.out, '')
    }
    // No folder at all stays an I/O error (exit 2).
    const missing = brcache('list', path.join(empty, 'not-there'))
    assert.equal(missing.code, 2)
    assert.match(missing.err, /cannot list the repository root/)
    // A repository with the folder and no VM is just empty.
    fs.mkdirSync(path.join(empty, 'xo-vm-backups'))
    const r = brcache('list', empty)
    assert.equal(r.code, 0, r.err)
    assert.match(r.out, /no restore point in this repository/)
  })

  test('permission denied on one VM folder: an error naming it, never a shorter list', async (t) => {
    const dir = temp()
    const { vms } = await generateRepository(dir, { vms: 3, retention: 2, seed: 'perm' })
    assert.equal(vms, 3)
    await openRepository(dir).buildIndex()
    const [, denied] = fs.readdirSync(path.join(dir, 'xo-vm-backups')).sort()
    fs.chmodSync(path.join(dir, 'xo-vm-backups', denied), 0o000)
    t.after(() => fs.chmodSync(path.join(dir, 'xo-vm-backups', denied), 0o755))
    // Root reads everything: run as root without the capabilities that
    // override permission bits (util-linux's setpriv), so that the folder's
    // mode applies and the checkout stays readable wherever it is.
    const drop = ['--inh-caps=-dac_override,-dac_read_search', '--bounding-set=-dac_override,-dac_read_search']
    const r = spawnSync('setpriv', [...drop, process.execPath, cli, 'list', dir, '--immutable'], { encoding: 'utf8' })
    assert.equal(r.status, 2, r.stderr + r.stdout)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, new RegExp(`cannot list xo-vm-backups/${denied}: EACCES`))
    // Through the repository index, which holds that VM's restore view,
    // the listing is whole.
    const indexed = spawnSync('setpriv', [...drop, process.execPath, cli, 'list', dir, '--json'], { encoding: 'utf8' })
    assert.equal(indexed.status, 0, indexed.stderr)
    const view = JSON.parse(indexed.stdout)
    assert.equal(Object.keys(view).length, 3)
    assert.equal(view[denied].length, 2)
  })

  test('a full share (a 1 MiB tmpfs): a failed write leaves the old cache, no partial file, and a clear error', async (t) => {
    const mount = temp()
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount], { encoding: 'utf8' })
    assert.equal(mounted.status, 0, `mounting a tmpfs needs root: ${mounted.stderr}`)
    t.after(() => spawnSync('umount', [mount]))
    for (const capabilities of [undefined, NO_LINKS]) {
      const dir = path.join(mount, capabilities ? 'no-links' : 'links')
      const handler = new LocalHandler(dir, { capabilities })
      const repository = openRepository(handler, { index: true })
      await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 1)))
      await repository.buildIndex()
      const vmFolder = path.join(dir, 'xo-vm-backups', VM)
      const cacheBefore = fs.readFileSync(path.join(vmFolder, 'cache.json.gz'))
      const filesBefore = fs.readdirSync(vmFolder).sort()
      const indexBefore = fs.readdirSync(path.join(dir, INDEX_DIR)).sort()
      // Fill the share.
      const filler = path.join(mount, 'filler')
      const fd = fs.openSync(filler, 'w')
      try {
        for (;;) fs.writeSync(fd, Buffer.alloc(64 * 1024))
      } catch (error) {
        assert.equal(error.code, 'ENOSPC')
      } finally {
        fs.closeSync(fd)
      }
      const big = record(Date.UTC(2024, 0, 2), { pad: 'x'.repeat(256 * 1024) })
      await assert.rejects(repository.writeVmBackupMetadata(VM, big), (error) => {
        assert.equal(error.code, 'ENOSPC')
        assert.match(error.message, new RegExp(`cannot write xo-vm-backups/${VM}/20240102T000000Z.json: ENOSPC`))
        return true
      })
      assert.deepStrictEqual(fs.readdirSync(vmFolder).sort(), filesBefore, 'no partial, temp or claim file is left')
      assert.deepStrictEqual(fs.readFileSync(path.join(vmFolder, 'cache.json.gz')), cacheBefore)
      assert.deepStrictEqual(fs.readdirSync(path.join(dir, INDEX_DIR)).sort(), indexBefore)
      assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), [key(VM, '20240101T000000Z.json')])
      fs.unlinkSync(filler)
      // Room again: the same write goes through.
      await repository.writeVmBackupMetadata(VM, big)
      assert.equal((await repository.listVmBackups(VM)).length, 2)
      fs.rmSync(dir, { recursive: true })
    }
  })
})

describe("the index's failure modes", () => {
  // A share whose snapshot creates fail (as they did on SMB before the
  // fallback, with EPERM from the link).
  // The failed write made the index folder first, as a handler's
  // writeFile does before the link that failed.
  function failingSnapshots(dir, code = 'EPERM') {
    const fault = ({ path: file }) => {
      if (!/\/snapshot-\d+\.json\.gz$/.test(file)) return undefined
      fs.mkdirSync(path.join(dir, INDEX_DIR), { recursive: true })
      return { error: code }
    }
    return new SimulatedShare(new LocalHandler(dir), { rttMs: 0, faults: { writeFile: fault } })
  }

  test('a failed build names the snapshot step and leaves no index folder behind', async () => {
    const dir = temp()
    await generateRepository(dir, { vms: 2, retention: 3, seed: 'idx' })
    await assert.rejects(openRepository(failingSnapshots(dir)).buildIndex(), (error) => {
      assert.equal(error.code, 'EPERM')
      assert.equal(error.step, 'snapshot')
      assert.match(error.message, /cannot write the index snapshot xo-vm-backups\/\.brcache-index\/snapshot-0+1\.json\.gz, the index was not built \(its empty folder was removed\)/)
      return true
    })
    assert.equal(fs.existsSync(path.join(dir, INDEX_DIR)), false)
    // The CLI says the same, on one line.
    const r = brcache('index', dir)
    assert.equal(r.code, 0, r.err)
    assert.match(r.out, /repository index built from 2 VM caches/)
  })

  test('an index folder without a snapshot is reported by check, and --repair completes it', async () => {
    const dir = temp()
    await generateRepository(dir, { vms: 2, retention: 3, seed: 'idx' })
    // What a failed build used to leave: an empty index folder.
    fs.mkdirSync(path.join(dir, INDEX_DIR))
    const repository = openRepository(dir)
    const report = await repository.checkIndex()
    assert.equal(report.exists, true)
    assert.equal(report.noSnapshot, true)
    assert.match(report.unusable, /has no snapshot/)
    const check = brcache('check', dir)
    assert.equal(check.code, 1)
    assert.match(check.out, /repository index {2}unusable \(xo-vm-backups\/\.brcache-index has no snapshot/)
    const repair = brcache('check', dir, '--repair')
    assert.equal(repair.code, 0, repair.out + repair.err)
    assert.match(repair.out, /repository index {2}had no snapshot \(a build or compaction failed\): rebuilt\n/)
    const after = brcache('check', dir)
    assert.equal(after.code, 0)
    assert.match(after.out, /repository index {2}coherent/)
    assert.ok(fs.readdirSync(path.join(dir, INDEX_DIR)).some((name) => name.startsWith('snapshot-')))
  })

  test('a failed compaction says so, and not that the index was not updated', async () => {
    const dir = temp()
    await generateRepository(dir, { vms: 1, retention: 1, seed: 'idx' })
    await openRepository(dir).buildIndex()
    const [vm] = fs.readdirSync(path.join(dir, 'xo-vm-backups')).filter((name) => !name.startsWith('.'))
    const { lines, logger } = recorderLog()
    const repository = openRepository(failingSnapshots(dir, 'ENOSPC'), { logger })
    // Past the compaction point (64 segments waiting), every write compacts.
    for (let i = 0; i < 66; i++) await repository.writeVmBackupMetadata(vm, record(Date.UTC(2030, 0, 1, 0, 0, i)))
    const warnings = lines.filter(({ level }) => level === 'warn')
    assert.ok(warnings.length >= 1)
    for (const { message, data } of warnings) {
      assert.match(message, /the index segment was published, but the index compaction failed/)
      assert.equal(data.step, 'compaction')
      assert.match(data.reason, /cannot write the index snapshot .*snapshot-0+2\.json\.gz \(compaction; the segments stay and are still read\): ENOSPC/)
    }
    assert.ok(!lines.some(({ message }) => /was not updated/.test(message)))
    // The index is still right (every segment is read), and a check with
    // the share back compacts.
    const view = await openRepository(dir).listSummaries()
    assert.equal(view[vm].length, 67)
    const repaired = await openRepository(dir).checkIndex({ repair: true })
    assert.equal(repaired.exists, true)
    assert.ok(fs.readdirSync(path.join(dir, INDEX_DIR)).includes(`snapshot-${'2'.padStart(20, '0')}.json.gz`))
  })

  test('a failed publish says the segment was not published', async () => {
    const dir = temp()
    await generateRepository(dir, { vms: 1, retention: 1, seed: 'idx' })
    await openRepository(dir).buildIndex()
    const [vm] = fs.readdirSync(path.join(dir, 'xo-vm-backups')).filter((name) => !name.startsWith('.'))
    const { lines, logger } = recorderLog()
    const share = new SimulatedShare(new LocalHandler(dir), {
      rttMs: 0,
      faults: { writeFile: ({ path: file }) => (file.startsWith(`${INDEX_DIR}/`) ? { error: 'EIO' } : undefined) },
    })
    await openRepository(share, { logger }).writeVmBackupMetadata(vm, record(Date.UTC(2030, 0, 1)))
    const [warning] = lines.filter(({ level }) => level === 'warn')
    assert.match(warning.message, /the repository index was not updated \(its segment was not published\)/)
    assert.equal(warning.data.step, 'publish')
    assert.match(warning.data.reason, /cannot publish the index segment/)
  })
})
