// The repository on a real SMB share: Samba on loopback, mounted through
// the FUSE client smbnetfs (scripts/smb.sh starts both, installing them the
// first time). That mount has no hard links and whole-second timestamps,
// so every create-only write takes the fallback (a claim, then a rename).
// Each test works in a folder of its own on the share.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { LocalHandler, openRepository, VmCache } from 'brcache'
import { INDEX_DIR } from '../js/common/repo-index.js'
import { formatFilenameDate } from '../js/common/layout.js'
import { Children } from '../scripts/campaigns/common.mjs'
import { startSmb, stopSmb } from './helpers/smb.mjs'

const cli = path.join(import.meta.dirname, '..', 'js', 'node', 'cli.js')
let share
const dirs = []
before(() => {
  share = startSmb()
})
after(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true })
  stopSmb()
})

/** A fresh folder on the share, seen through the mount. */
function onShare(name) {
  const dir = fs.mkdtempSync(path.join(share.mount, `${name}-`))
  dirs.push(dir)
  return dir
}

function brcache(...args) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' })
  return { code: result.status, out: result.stdout, err: result.stderr }
}

const VM = 'dddddddd-0000-4000-8000-000000000001'
const record = (timestamp, extra = {}) => ({ mode: 'full', timestamp, jobId: 'j', scheduleId: 's', size: 1, ...extra })
const key = (vm, name) => `/xo-vm-backups/${vm}/${name}`

function recorder() {
  const warnings = []
  return { warnings, logger: { warn: (message, data) => warnings.push({ message, data }) } }
}

describe('an SMB share through a FUSE client', () => {
  test('the probe finds no hard links and whole-second timestamps, and leaves nothing behind', async () => {
    const dir = onShare('probe')
    const found = await new LocalHandler(dir).capabilities()
    assert.deepStrictEqual(
      { ...found },
      {
        hardLinks: false,
        renameOver: true,
        exclusiveCreate: true,
        directoryFsync: true,
        mtimeResolutionMs: 1000,
        probed: true,
        createStrategy: 'claim',
      },
    )
    assert.deepStrictEqual(fs.readdirSync(dir), [])
  })

  test('gen, list, write, delete, check and repair', async () => {
    const dir = onShare('core')
    assert.equal(brcache('gen', dir, '--vms', '3', '--retention', '4', '--seed', 'smb').code, 0)
    const listed = brcache('list', dir)
    assert.equal(listed.code, 0, listed.err)
    assert.match(listed.out, /3 VMs, 12 restore points/)
    const { warnings, logger } = recorder()
    const repository = openRepository(dir, { logger })
    const ids = []
    for (let i = 1; i <= 3; i++) ids.push(await repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, i), { xva: `./2024010${i}T000000Z.xva` })))
    await assert.rejects(repository.writeVmBackupMetadata(VM, record(Date.UTC(2024, 0, 1))), { code: 'EEXIST' })
    assert.deepStrictEqual((await repository.listVmBackups(VM)).map((b) => b.id), ids)
    fs.writeFileSync(path.join(dir, 'xo-vm-backups', VM, '20240101T000000Z.xva'), 'data')
    await repository.deleteVmBackups([ids[0]])
    const folder = path.join(dir, 'xo-vm-backups', VM)
    assert.deepStrictEqual(fs.readdirSync(folder).sort(), ['20240102T000000Z.json', '20240103T000000Z.json', 'cache.json.gz'])
    assert.deepStrictEqual(warnings, [])
    // Behind the cache's back, on the server's side of the share: one
    // restore point gone, one added.
    const exported = path.join(share.exported, path.basename(dir), 'xo-vm-backups', VM)
    fs.unlinkSync(path.join(exported, '20240102T000000Z.json'))
    fs.writeFileSync(path.join(exported, '20240109T000000Z.json'), JSON.stringify(record(Date.UTC(2024, 0, 9))))
    const check = brcache('check', dir, '--verbose')
    assert.equal(check.code, 1, check.err)
    assert.match(check.out, new RegExp(`${VM} {2}2 restore points {2}1 stale, 1 missing`))
    assert.match(check.out, /share: hard links no, rename over a file yes, exclusive create yes, folder fsync yes, timestamps to 1000 ms; create-only writes by claim/)
    const repair = brcache('check', dir, '--repair')
    assert.equal(repair.code, 0, repair.out)
    assert.equal(brcache('check', dir).code, 0)
    const cache = VmCache.decode(VM, fs.readFileSync(path.join(folder, 'cache.json.gz')))
    assert.deepStrictEqual(cache.keys().sort(), [key(VM, '20240103T000000Z.json'), key(VM, '20240109T000000Z.json')])
    // Nothing of the writes' machinery is left: no claim, no temp file.
    assert.deepStrictEqual(fs.readdirSync(folder).filter((name) => name.startsWith('.')), [])
  })

  test('a folder of the share without xo-vm-backups: list says so, exit 3', () => {
    const r = brcache('list', onShare('empty'))
    assert.equal(r.code, 3)
    assert.match(r.err, /no backup folder at .*xo-vm-backups: is the share mounted\?/)
  })

  test('the index: build, compaction past 64 segments, check', async () => {
    const dir = onShare('index')
    assert.equal(brcache('gen', dir, '--vms', '2', '--retention', '2', '--seed', 'smb').code, 0)
    const built = brcache('index', dir)
    assert.equal(built.code, 0, built.err)
    assert.match(built.out, /repository index built from 2 VM caches \(snapshot generation 1\)/)
    const { warnings, logger } = recorder()
    const repository = openRepository(dir, { logger })
    for (let i = 0; i < 66; i++) await repository.writeVmBackupMetadata(VM, record(Date.UTC(2031, 0, 1, 0, 0, i)))
    assert.deepStrictEqual(warnings, [])
    const names = fs.readdirSync(path.join(dir, INDEX_DIR))
    assert.ok(names.includes(`snapshot-${'2'.padStart(20, '0')}.json.gz`), names.join(' '))
    assert.ok(!names.some((name) => name.startsWith('.')), `claims or temp files left: ${names.join(' ')}`)
    const view = await repository.listSummaries()
    assert.equal(view[VM].length, 66)
    assert.equal(Object.keys(view).length, 3)
    const check = brcache('check', dir)
    assert.equal(check.code, 0, check.out)
    assert.match(check.out, /repository index {2}coherent/)
  })

  test('what a failed build left on SMB (an index folder, no snapshot): check reports it, --repair builds it', () => {
    const dir = onShare('nosnapshot')
    assert.equal(brcache('gen', dir, '--vms', '2', '--retention', '2', '--seed', 'smb').code, 0)
    fs.mkdirSync(path.join(dir, INDEX_DIR))
    const check = brcache('check', dir)
    assert.equal(check.code, 1)
    assert.match(check.out, /repository index {2}unusable \(.*has no snapshot/)
    const repair = brcache('check', dir, '--repair')
    assert.equal(repair.code, 0, repair.out + repair.err)
    assert.match(repair.out, /had no snapshot .*: rebuilt/)
    assert.match(brcache('check', dir).out, /repository index {2}coherent/)
  })

  test('two writer processes on one VM and a reader: no reader fails, no update is lost', { timeout: 180_000 }, async (t) => {
    const dir = onShare('writers')
    const COUNT = 10
    const writer = path.join(import.meta.dirname, 'helpers', 'writer.mjs')
    fs.mkdirSync(path.join(dir, 'xo-vm-backups', VM), { recursive: true })
    const processes = new Children()
    t.after(() => processes.close())
    const children = [0, 1].map((seed) => {
      let summary
      const { exited } = processes.spawn(writer, [dir, VM, String(seed), String(COUNT)], { onLine: (line) => (summary = line) })
      return exited.then((result) => ({ ...result, summary }))
    })
    let writing = true
    const done = Promise.all(children).finally(() => (writing = false))
    const pattern = new RegExp(`^/xo-vm-backups/${VM}/(\\d{8}T\\d{6}Z)\\.json$`)
    const seen = new Set()
    const failures = []
    const reader = openRepository(dir)
    let listings = 0
    while (writing || listings === 0) {
      try {
        for (const r of await reader.listVmBackups(VM)) {
          const match = pattern.exec(r.id)
          if (!match || formatFilenameDate(r.timestamp) !== match[1]) failures.push(`bad record ${r.id}`)
          seen.add(r.id)
        }
        listings++
      } catch (error) {
        failures.push(error.stack)
      }
    }
    await reader.settle()
    const results = await done
    for (const { code, stdout, stderr } of results) assert.equal(code, 0, `${stderr}${stdout}`)
    assert.deepStrictEqual(failures, [])
    const written = results.flatMap(({ summary }) => summary.written)
    const deleted = new Set(results.flatMap(({ summary }) => summary.deleted))
    assert.equal(new Set(written).size, 2 * COUNT)
    for (const id of seen) assert.ok(written.includes(id), `the reader listed ${id}, which nobody wrote`)
    for (const { summary } of results) assert.deepStrictEqual(summary.warnings.filter((w) => /not updated/.test(w.message)), [])
    const expected = written.filter((id) => !deleted.has(id)).sort()
    const onDisk = fs
      .readdirSync(path.join(dir, 'xo-vm-backups', VM))
      .filter((name) => /^\d{8}T\d{6}Z\.json$/.test(name))
      .map((name) => key(VM, name))
      .sort()
    assert.deepStrictEqual(onDisk, expected)
    const report = await openRepository(dir).checkVm(VM)
    assert.deepStrictEqual([report.coherent, report.stale, report.missing, report.unreadable], [true, [], [], []])
  })

  test('crash campaign on the fallback path: 20 SIGKILLs leave no torn metadata, no phantom or lost restore point', { timeout: 300_000 }, async (t) => {
    const children = new Children()
    t.after(() => children.close())
    let figures
    const script = path.join(import.meta.dirname, '..', 'scripts', 'campaigns', 'crash.mjs')
    const args = ['--kills', '20', '--seed', 'npm-test-smb', '--lock-stale-ms', '3000', '--dir', share.mount, '--json']
    const { exited } = children.spawn(script, args, { onLine: (line) => (figures = line) })
    const { code, stdout, stderr } = await exited
    assert.ok(figures, `${stdout}\n${stderr}`)
    assert.deepStrictEqual(figures.failed, [], JSON.stringify(figures.problems, null, 2))
    assert.equal(code, 0, `${stdout}\n${stderr}`)
    assert.equal(figures.kills, 20)
    for (const name of ['torn', 'phantomListed', 'lostListed', 'lostAfterRepair', 'phantomAfterRepair', 'differentAfterRepair', 'incoherentAfterRepair', 'tempsRemaining', 'locksRemaining', 'tornMetadataFiles', 'writerFailures', 'checkErrors']) {
      assert.equal(figures[name], 0, name)
    }
    assert.equal(figures.tempsCleaned, figures.tempsLeft)
    assert.ok(figures.backupsAtEnd > 0)
  })
})
