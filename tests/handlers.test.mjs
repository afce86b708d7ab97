// I/O handlers: path confinement, write atomicity, temp leftovers, locks,
// and the simulated share used by benchmarks and reliability tests.
// Timing assertions are lower bounds only: simulated latency is never
// undercut, but a loaded machine may always be slower.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
// Internal but stable in v4: the only way to see that a holder noticed its
// lock was compromised, without sleeping a guessed amount of time.
import lockfile from 'proper-lockfile/lib/lockfile.js'
import { LocalHandler, SimulatedShare, TEMP_PREFIX, isTempName, openHandler } from '../js/node/handlers/index.js'
import { openRepository } from '../js/node/repository.js'

const localModule = pathToFileURL(path.join(import.meta.dirname, '..', 'js', 'node', 'handlers', 'local.js')).href

/** A fresh `<tmp>/repo` root inside a scratch folder, removed after the test. */
function tempRepo(t) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'brcache-handlers-'))
  t.after(() => fs.rmSync(base, { recursive: true, force: true }))
  const root = path.join(base, 'repo')
  fs.mkdirSync(root)
  return { base, root, handler: new LocalHandler(root) }
}

/** Every entry under `dir` with its content, to prove an operation touched nothing. */
function snapshot(dir) {
  const result = {}
  const walk = (relative) => {
    for (const entry of fs.readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      const child = path.join(relative, entry.name)
      if (entry.isDirectory()) {
        result[child] = 'dir'
        walk(child)
      } else {
        result[child] = fs.readFileSync(path.join(dir, child), 'latin1')
      }
    }
  }
  walk('')
  return result
}

function age(file, ms) {
  const when = new Date(Date.now() - ms)
  fs.utimesSync(file, when, when)
}

/** Runs an ESM snippet in a child Node with `root` as its argument; resolves on exit. */
function child(source, root) {
  const process_ = spawn(process.execPath, ['--input-type=module', '-e', source, root], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise((resolve, reject) => {
    process_.on('error', reject)
    process_.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`child exited with ${code}`))))
  })
  return { process: process_, exited }
}

function line(stream) {
  return new Promise((resolve, reject) => {
    let buffered = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => {
      buffered += chunk
      if (buffered.includes('\n')) resolve(buffered.split('\n')[0])
    })
    stream.on('end', () => reject(new Error('child closed its output')))
  })
}

describe('LocalHandler: path confinement', () => {
  const escaping = ['../x', '../victim', 'a/../../b', 'a/../../victim', '..', 'x/..', 'a/./../b', 'a\0b', 'victim\0', 'a\\b', '..\\victim']

  test('refuses escaping, absolute, NUL and backslash paths with EINVAL and touches nothing', async (t) => {
    const { base, root, handler } = tempRepo(t)
    fs.writeFileSync(path.join(base, 'victim'), 'precious')
    fs.writeFileSync(path.join(root, 'inside'), 'inside')
    fs.mkdirSync(path.join(root, 'a'))
    const before = snapshot(base)
    // Destructive operations only ever aim inside the scratch folder, so a
    // confinement bug can't damage the machine running the tests.
    const paths = [...escaping, path.join(base, 'victim'), path.join(base, 'new')]
    const operations = {
      list: (p) => handler.list(p),
      listWithTypes: (p) => handler.listWithTypes(p),
      readFile: (p) => handler.readFile(p),
      writeFile: (p) => handler.writeFile(p, 'pwned'),
      exclusiveWrite: (p) => handler.writeFile(p, 'pwned', { exclusive: true }),
      renameFrom: (p) => handler.rename(p, 'stolen'),
      renameTo: (p) => handler.rename('inside', p),
      unlink: (p) => handler.unlink(p),
      rmdir: (p) => handler.rmdir(p),
      mkdir: (p) => handler.mkdir(p),
      stat: (p) => handler.stat(p),
      lock: (p) => handler.lock(p, { retries: 0 }),
      cleanTemps: (p) => handler.cleanTemps(p, { olderThanMs: 0 }),
    }
    for (const p of paths) {
      for (const [name, operation] of Object.entries(operations)) {
        await assert.rejects(operation(p), (error) => {
          assert.equal(error.code, 'EINVAL', `${name}(${JSON.stringify(p)}): ${error}`)
          return true
        })
      }
    }
    for (const p of ['/etc/passwd', '//etc/passwd', '/']) {
      for (const name of ['readFile', 'stat', 'list']) await assert.rejects(operations[name](p), { code: 'EINVAL' })
    }
    await assert.rejects(handler.readFile(42), { code: 'EINVAL' })
    assert.deepEqual(snapshot(base), before)
  })

  test('the root itself can be listed but not written, removed or locked', async (t) => {
    const { handler } = tempRepo(t)
    await handler.writeFile('f', 'x')
    assert.deepEqual(await handler.list(''), ['f'])
    assert.deepEqual(await handler.list('.'), ['f'])
    assert.equal((await handler.stat('')).isDirectory, true)
    for (const root of ['', '.', './']) {
      await assert.rejects(handler.writeFile(root, 'x'), { code: 'EINVAL' })
      await assert.rejects(handler.rmdir(root), { code: 'EINVAL' })
      await assert.rejects(handler.lock(root, { retries: 0 }), { code: 'EINVAL' })
    }
  })

  test("names that merely contain dots are not '..' segments", async (t) => {
    const { root, handler } = tempRepo(t)
    for (const name of ['..foo', 'a/..b/c', 'x...', 'a/b../c..']) {
      await handler.writeFile(name, name)
      assert.equal((await handler.readFile(name)).toString(), name)
    }
    assert.equal(fs.readFileSync(path.join(root, 'a', '..b', 'c'), 'utf8'), 'a/..b/c')
  })
})

describe('LocalHandler: operations and errors', () => {
  test('list, listWithTypes, stat, rename, unlink, rmdir, mkdir', async (t) => {
    const { root, handler } = tempRepo(t)
    await handler.mkdir('xo-vm-backups/vm1/sub')
    await handler.writeFile('xo-vm-backups/vm1/b.json', '{"b":1}')
    await handler.writeFile('xo-vm-backups/vm1/a.json', Buffer.from('{"a":1}'))
    assert.deepEqual(await handler.list('xo-vm-backups/vm1'), ['a.json', 'b.json', 'sub'])
    assert.deepEqual(await handler.listWithTypes('xo-vm-backups/vm1'), [
      { name: 'a.json', isDirectory: false },
      { name: 'b.json', isDirectory: false },
      { name: 'sub', isDirectory: true },
    ])
    const stats = await handler.stat('xo-vm-backups/vm1/a.json')
    assert.deepEqual(Object.keys(stats).sort(), ['isDirectory', 'mtimeMs', 'size'])
    assert.equal(stats.size, 7)
    assert.equal(stats.isDirectory, false)
    assert.equal(typeof stats.mtimeMs, 'number')

    await handler.rename('xo-vm-backups/vm1/a.json', 'xo-vm-backups/vm1/c.json')
    assert.deepEqual(await handler.list('xo-vm-backups/vm1'), ['b.json', 'c.json', 'sub'])
    await handler.unlink('xo-vm-backups/vm1/c.json')
    await assert.rejects(handler.unlink('xo-vm-backups/vm1/c.json'), { code: 'ENOENT', path: 'xo-vm-backups/vm1/c.json' })
    await assert.rejects(handler.rmdir('xo-vm-backups/vm1'), { code: 'ENOTEMPTY' })
    await handler.rmdir('xo-vm-backups/vm1/sub')
    await handler.mkdir('xo-vm-backups/vm1') // already there: fine
    assert.deepEqual(fs.readdirSync(path.join(root, 'xo-vm-backups', 'vm1')), ['b.json'])
  })

  test('a missing folder is ENOENT for list, listWithTypes and cleanTemps; a file is ENOTDIR', async (t) => {
    const { handler } = tempRepo(t)
    await assert.rejects(handler.list('xo-vm-backups/none'), { code: 'ENOENT', path: 'xo-vm-backups/none' })
    await assert.rejects(handler.listWithTypes('xo-vm-backups/none'), { code: 'ENOENT', path: 'xo-vm-backups/none' })
    await assert.rejects(handler.cleanTemps('xo-vm-backups/none'), { code: 'ENOENT' })
    await assert.rejects(handler.readFile('none.json'), { code: 'ENOENT', path: 'none.json' })
    await handler.writeFile('file', 'x')
    await assert.rejects(handler.list('file'), { code: 'ENOTDIR', path: 'file' })
  })

  test('exclusive write creates parents once, then EEXIST and the file is untouched', async (t) => {
    const { root, handler } = tempRepo(t)
    const file = 'xo-vm-backups/vm1/20240101T000000Z.json'
    await handler.writeFile(file, '{"first":true}', { exclusive: true })
    await assert.rejects(handler.writeFile(file, '{"second":true}', { exclusive: true }), { code: 'EEXIST', path: file })
    assert.equal(fs.readFileSync(path.join(root, file), 'utf8'), '{"first":true}')
    assert.deepEqual(await handler.list('xo-vm-backups/vm1'), ['20240101T000000Z.json'])
  })

  test('a failed write leaves neither a temp file nor a partial file, and the old content stays', async (t) => {
    const { root, handler } = tempRepo(t)
    const dir = path.join(root, 'vm')
    await handler.writeFile('vm/cache.json.gz', 'old')
    let during
    // Fails mid-write, after the temp file exists, and records what was there.
    async function* failing() {
      yield Buffer.from('partial')
      during = fs.readdirSync(dir).sort()
      throw Object.assign(new Error('boom'), { code: 'EIO' })
    }
    await assert.rejects(handler.writeFile('vm/cache.json.gz', failing()), { code: 'EIO', path: 'vm/cache.json.gz' })
    const temps = during.filter((name) => name !== 'cache.json.gz')
    assert.equal(temps.length, 1)
    assert.ok(isTempName(temps[0]), temps[0])
    assert.ok(temps[0].startsWith(`${TEMP_PREFIX}cache.json.gz.tmp-${process.pid}-`), temps[0])
    assert.deepEqual(fs.readdirSync(dir), ['cache.json.gz'])
    assert.equal(fs.readFileSync(path.join(dir, 'cache.json.gz'), 'utf8'), 'old')

    await assert.rejects(handler.writeFile('vm/new.json', failing(), { exclusive: true }), { code: 'EIO' })
    assert.deepEqual(fs.readdirSync(dir), ['cache.json.gz'])
  })
})

describe('LocalHandler: atomic replace', () => {
  const SIZE = 4 << 20
  const versions = Array.from({ length: 8 }, (_, i) => Buffer.alloc(SIZE, i + 1))

  function checkWhole(buffer) {
    assert.equal(buffer.length, SIZE, 'torn read: wrong size')
    assert.ok(versions[buffer[0] - 1]?.equals(buffer), 'torn read: mixed content')
  }

  test('concurrent readers only ever see a complete version (same process)', async (t) => {
    const { handler } = tempRepo(t)
    const file = 'vm/cache.json.gz'
    await handler.writeFile(file, versions[0])
    let writing = true
    let reads = 0
    const names = new Set()
    const stop = () => {
      writing = false
    }
    const reader = async () => {
      while (writing) {
        checkWhole(await handler.readFile(file))
        reads++
      }
    }
    const lister = async () => {
      while (writing) for (const name of await handler.list('vm')) names.add(name)
    }
    const loops = [reader(), reader(), lister()]
    for (const loop of loops) loop.catch(stop)
    try {
      for (let i = 1; i <= 24; i++) await handler.writeFile(file, versions[i % versions.length])
    } finally {
      stop()
    }
    await Promise.all(loops)
    assert.ok(reads > 0)
    for (const name of names) assert.ok(name === 'cache.json.gz' || isTempName(name), name)
    assert.deepEqual(await handler.list('vm'), ['cache.json.gz'])
    checkWhole(await handler.readFile(file))
  })

  test('a reader never sees a torn file written by another process', async (t) => {
    const { root, handler } = tempRepo(t)
    const file = 'vm/cache.json.gz'
    await handler.writeFile(file, versions[0])
    const writer = child(
      `import { LocalHandler } from ${JSON.stringify(localModule)}
      const handler = new LocalHandler(process.argv[1])
      for (let i = 1; i <= 16; i++) await handler.writeFile('vm/cache.json.gz', Buffer.alloc(${SIZE}, (i % 8) + 1))`,
      root,
    )
    let running = true
    writer.exited.finally(() => {
      running = false
    }).catch(() => {})
    let reads = 0
    while (running) {
      checkWhole(await handler.readFile(file))
      reads++
    }
    await writer.exited
    assert.ok(reads > 0)
    assert.deepEqual(await handler.list('vm'), ['cache.json.gz'])
  })
})

describe('LocalHandler: temp leftovers', () => {
  test('isTempName recognises our temp names only', () => {
    assert.ok(isTempName('.cache.json.gz.tmp-1234-0a1b2c3d4e5f'))
    assert.ok(isTempName('.20240101T000000Z.json.tmp-1-ab'))
    assert.ok(TEMP_PREFIX.length > 0 && '.x.tmp-1-ab'.startsWith(TEMP_PREFIX))
    for (const name of ['cache.json.gz', '20240101T000000Z.json', '.hidden', 'x.tmp-1-ab', '.x.tmp-12-xyz', '.x.tmp--ab', '.tmp-1-ab', 'cache.json.gz.lock', '', undefined]) {
      assert.equal(isTempName(name), false, String(name))
    }
  })

  test('cleanTemps removes old temp files only, and returns their names', async (t) => {
    const { root, handler } = tempRepo(t)
    const dir = path.join(root, 'xo-vm-backups', 'vm1')
    fs.mkdirSync(dir, { recursive: true })
    const oldTemps = ['.cache.json.gz.tmp-99-aa', '.20240101T000000Z.json.tmp-12-0f']
    const freshTemp = '.cache.json.gz.tmp-100-bb'
    for (const name of [...oldTemps, freshTemp, 'cache.json.gz', '20240101T000000Z.json']) fs.writeFileSync(path.join(dir, name), name)
    fs.mkdirSync(path.join(dir, '.dir.tmp-1-ab')) // a folder is never ours to remove
    for (const name of [...oldTemps, 'cache.json.gz', '20240101T000000Z.json', '.dir.tmp-1-ab']) age(path.join(dir, name), 10 * 60_000)

    assert.deepEqual(await handler.cleanTemps('xo-vm-backups/vm1'), [...oldTemps].sort())
    assert.deepEqual(fs.readdirSync(dir).sort(), ['.cache.json.gz.tmp-100-bb', '.dir.tmp-1-ab', '20240101T000000Z.json', 'cache.json.gz'])
    assert.deepEqual(await handler.cleanTemps('xo-vm-backups/vm1'), [])
    assert.deepEqual(await handler.cleanTemps('xo-vm-backups/vm1', { olderThanMs: 0 }), [freshTemp])
    assert.deepEqual((await handler.list('xo-vm-backups/vm1')).filter((name) => !isTempName(name)), ['20240101T000000Z.json', 'cache.json.gz'])
  })
})

describe('LocalHandler: locks', () => {
  const quick = { retries: 0 }
  const patient = { retries: { retries: 200, minTimeout: 10, maxTimeout: 20, randomize: false } }

  test('a second locker fails or waits until the first releases', async (t) => {
    const { root, handler } = tempRepo(t)
    const other = new LocalHandler(root)
    await handler.mkdir('xo-vm-backups/vm1')
    const target = 'xo-vm-backups/vm1/cache.json.gz' // need not exist
    const lockDir = path.join(root, `${target}.lock`)

    const release = await handler.lock(target, quick)
    assert.ok(fs.statSync(lockDir).isDirectory())
    await assert.rejects(other.lock(target, quick), { code: 'ELOCKED', path: target })
    await assert.rejects(other.lock(target, { retries: { retries: 3, minTimeout: 5, maxTimeout: 10 } }), { code: 'ELOCKED' })

    let acquired = false
    const waiting = other.lock(target, patient).then((release2) => {
      acquired = true
      return release2
    })
    await sleep(100)
    assert.equal(acquired, false, 'acquired while held')
    await release()
    const release2 = await waiting
    assert.ok(fs.statSync(lockDir).isDirectory())
    await release() // idempotent, and must not remove the new holder's lock
    assert.ok(fs.statSync(lockDir).isDirectory())
    await release2()
    assert.equal(fs.existsSync(lockDir), false)
    assert.equal(fs.existsSync(path.join(root, target)), false)
  })

  test("a VM folder's lock is the folder `<vm>.lock` beside it: exclusive, stale ones taken over, never listed as a VM nor cleaned", async (t) => {
    // brcache locks a VM on its folder's path, as Xen Orchestra's backup
    // runs do (handler.lock(vmDir)): the two exclude each other.
    const { root, handler } = tempRepo(t)
    await handler.mkdir('xo-vm-backups/vm1')
    await handler.writeFile('xo-vm-backups/vm1/cache.json.gz', new Uint8Array([1]))
    const lockDir = path.join(root, 'xo-vm-backups', 'vm1.lock')
    const release = await handler.lock('xo-vm-backups/vm1', quick)
    assert.ok(fs.statSync(lockDir).isDirectory())
    assert.deepEqual(await handler.list('xo-vm-backups/vm1'), ['cache.json.gz'], 'nothing inside the VM folder')
    await assert.rejects(new LocalHandler(root).lock('xo-vm-backups/vm1', quick), { code: 'ELOCKED', path: 'xo-vm-backups/vm1' })
    assert.deepEqual(await handler.cleanTemps('xo-vm-backups', { olderThanMs: 0 }), [])
    assert.ok(fs.existsSync(lockDir), 'cleanTemps leaves a lock alone')
    assert.deepEqual(await openRepository(root).listAllVms(), ['vm1'])
    await release()
    assert.equal(fs.existsSync(lockDir), false)
    // A dead holder's lock, once stale, is taken over.
    fs.mkdirSync(lockDir)
    await assert.rejects(handler.lock('xo-vm-backups/vm1', quick), { code: 'ELOCKED' })
    age(lockDir, 60 * 60_000)
    const successor = await handler.lock('xo-vm-backups/vm1', quick)
    assert.ok(Date.now() - fs.statSync(lockDir).mtimeMs < 60_000, 'lock directory not refreshed')
    await successor()
    assert.equal(fs.existsSync(lockDir), false)
    // A VM folder that does not exist yet can be locked (a first backup).
    const first = await handler.lock('xo-vm-backups/vm2', quick)
    assert.ok(fs.existsSync(path.join(root, 'xo-vm-backups', 'vm2.lock')))
    assert.equal(fs.existsSync(path.join(root, 'xo-vm-backups', 'vm2')), false)
    await first()
  })

  test('a lock in a missing folder fails at once with ENOENT', async (t) => {
    const { handler } = tempRepo(t)
    await assert.rejects(handler.lock('xo-vm-backups/none/cache.json.gz'), { code: 'ENOENT', path: 'xo-vm-backups/none/cache.json.gz' })
  })

  test('a stale lock is taken over; a fresh one is not', async (t) => {
    const { root, handler } = tempRepo(t)
    const lockDir = path.join(root, 'cache.json.gz.lock')
    fs.mkdirSync(lockDir)
    await assert.rejects(handler.lock('cache.json.gz', quick), { code: 'ELOCKED' })
    age(lockDir, 60 * 60_000)
    const release = await handler.lock('cache.json.gz', quick)
    assert.ok(Date.now() - fs.statSync(lockDir).mtimeMs < 60_000, 'lock directory not refreshed')
    await release()
    assert.equal(fs.existsSync(lockDir), false)
  })

  test('a compromised lock neither crashes the process nor releases its successor', async (t) => {
    const { root, handler } = tempRepo(t)
    const lockDir = path.join(root, 'cache.json.gz.lock')
    const release = await handler.lock('cache.json.gz', { stale: 2000, retries: 0 })
    // As if another host had taken the lock over and released it.
    fs.rmdirSync(lockDir)
    // The holder notices on its next refresh (after 1 s for stale 2000 ms).
    const deadline = Date.now() + 5000
    while (Object.keys(lockfile.getLocks()).length > 0 && Date.now() < deadline) await sleep(50)
    assert.equal(Object.keys(lockfile.getLocks()).length, 0, 'compromise not detected')
    const successor = await new LocalHandler(root).lock('cache.json.gz', quick)
    await release()
    assert.ok(fs.existsSync(lockDir), "the compromised holder removed its successor's lock")
    await successor()
    assert.equal(fs.existsSync(lockDir), false)
  })

  test('excludes a locker in another process', async (t) => {
    const { root, handler } = tempRepo(t)
    const holder = child(
      `import { LocalHandler } from ${JSON.stringify(localModule)}
      const release = await new LocalHandler(process.argv[1]).lock('cache.json.gz', { retries: 0 })
      console.log('locked')
      process.stdin.resume()
      process.stdin.on('end', async () => { await release(); console.log('released') })`,
      root,
    )
    assert.equal(await line(holder.process.stdout), 'locked')
    await assert.rejects(handler.lock('cache.json.gz', quick), { code: 'ELOCKED' })
    const waiting = handler.lock('cache.json.gz', patient)
    holder.process.stdin.end()
    await holder.exited
    const release = await waiting
    await release()
  })
})

/** Wraps a handler, recording how many calls are inside it at once. */
function instrument(inner, { delayMs = 5 } = {}) {
  const probe = { active: 0, maxActive: 0, calls: {} }
  const methods = ['list', 'listWithTypes', 'readFile', 'writeFile', 'rename', 'unlink', 'rmdir', 'mkdir', 'stat', 'lock', 'cleanTemps']
  probe.handler = Object.fromEntries(
    methods.map((method) => [
      method,
      async (...args) => {
        probe.calls[method] = (probe.calls[method] ?? 0) + 1
        probe.active++
        probe.maxActive = Math.max(probe.maxActive, probe.active)
        try {
          await sleep(delayMs)
          return await inner[method](...args)
        } finally {
          probe.active--
        }
      },
    ]),
  )
  return probe
}

describe('SimulatedShare', () => {
  test('counts calls and bytes by kind; resetStats zeroes them', async (t) => {
    const { handler } = tempRepo(t)
    const share = new SimulatedShare(handler, { rttMs: 1 })
    await share.writeFile('d/a.bin', Buffer.alloc(1000))
    await share.writeFile('d/s.txt', 'héllo') // 6 bytes in UTF-8
    assert.equal((await share.readFile('d/a.bin')).length, 1000)
    await share.readFile('d/a.bin')
    assert.deepEqual(await share.list('d'), ['a.bin', 's.txt'])
    await share.stat('d/a.bin')
    const release = await share.lock('d/a.bin')
    await release()
    await assert.rejects(share.readFile('d/none'), { code: 'ENOENT' })

    const { calls, bytes } = share.stats()
    assert.equal(calls.writeFile, 2)
    assert.equal(calls.readFile, 3)
    assert.equal(calls.list, 1)
    assert.equal(calls.stat, 1)
    assert.equal(calls.lock, 1)
    assert.equal(calls.release, 1)
    assert.equal(calls.unlink, 0)
    assert.equal(calls.total, 9)
    assert.deepEqual(bytes, { read: 2000, written: 1006 })

    share.resetStats()
    const reset = share.stats()
    assert.equal(reset.calls.total, 0)
    assert.ok(Object.values(reset.calls).every((n) => n === 0))
    assert.deepEqual(reset.bytes, { read: 0, written: 0 })
  })

  test('at most maxInFlight calls reach the inner handler at once, granted in FIFO order', async (t) => {
    const { handler } = tempRepo(t)
    await handler.writeFile('d/f.bin', Buffer.alloc(100, 7))
    const probe = instrument(handler)
    const granted = []
    const share = new SimulatedShare(probe.handler, {
      rttMs: 20,
      maxInFlight: 4,
      faults: ({ seq }) => {
        granted.push(seq)
      },
    })
    const start = performance.now()
    const results = await Promise.all(Array.from({ length: 20 }, () => share.readFile('d/f.bin')))
    const elapsed = performance.now() - start
    assert.ok(results.every((buffer) => buffer.length === 100 && buffer[0] === 7))
    assert.equal(probe.calls.readFile, 20)
    assert.ok(probe.maxActive <= 4, `max in flight ${probe.maxActive}`)
    assert.ok(probe.maxActive >= 2, `no concurrency at all: ${probe.maxActive}`)
    assert.deepEqual(granted, Array.from({ length: 20 }, (_, i) => i + 1))
    // 20 calls through 4 slots: at least 5 round trips back to back.
    assert.ok(elapsed >= 100, `${elapsed} ms`)
    assert.equal(share.stats().calls.readFile, 20)
  })

  test('bandwidth adds transfer time to reads and writes', async (t) => {
    const { handler } = tempRepo(t)
    const share = new SimulatedShare(handler, { rttMs: 0, bandwidthBytesPerSec: 10_000_000 })
    let start = performance.now()
    await share.writeFile('big.bin', Buffer.alloc(500_000))
    assert.ok(performance.now() - start >= 50)
    start = performance.now()
    await share.readFile('big.bin')
    assert.ok(performance.now() - start >= 50)
  })

  test('an injected error fails the call after the round trip without reaching the inner handler', async (t) => {
    const { root, handler } = tempRepo(t)
    await handler.writeFile('d/x', 'x')
    await handler.writeFile('d/y', 'y')
    const probe = instrument(handler, { delayMs: 0 })
    const seen = []
    const share = new SimulatedShare(probe.handler, {
      rttMs: 1,
      faults: (context) => {
        seen.push(context)
        return context.kind === 'readFile' && context.path === 'd/x' ? { error: 'EIO' } : undefined
      },
    })
    await assert.rejects(share.readFile('d/x'), { code: 'EIO', path: 'd/x' })
    assert.equal(probe.calls.readFile, undefined)
    assert.equal((await share.readFile('d/y')).toString(), 'y')
    assert.equal(probe.calls.readFile, 1)
    await share.rename('d/y', 'd/z')
    assert.deepEqual(seen.at(-1), { kind: 'rename', path: 'd/y', seq: 3, to: 'd/z' })
    assert.equal(share.stats().calls.readFile, 2)

    share.setFaults({ writeFile: { error: 'EACCES' }, '*': ({ kind }) => (kind === 'lock' ? { error: 'EIO' } : undefined) })
    await assert.rejects(share.writeFile('d/w', 'w'), { code: 'EACCES', path: 'd/w' })
    await assert.rejects(share.lock('d/x'), { code: 'EIO' })
    assert.equal(probe.calls.writeFile, undefined)
    assert.equal(probe.calls.lock, undefined)
    assert.equal(fs.existsSync(path.join(root, 'd', 'w')), false)
    assert.equal(fs.existsSync(path.join(root, 'd', 'x.lock')), false)
    assert.equal((await share.readFile('d/x')).toString(), 'x')

    share.setFaults(undefined)
    assert.equal((await share.readFile('d/x')).toString(), 'x')
    await share.writeFile('d/w', 'w')
    assert.equal(probe.calls.writeFile, 1)
  })

  test('an injected delay adds latency', async (t) => {
    const { handler } = tempRepo(t)
    await handler.writeFile('f', 'f')
    const share = new SimulatedShare(handler, { rttMs: 0, faults: { stat: { delayMs: 60 } } })
    const start = performance.now()
    await share.stat('f')
    assert.ok(performance.now() - start >= 60)
  })

  test('cleanTemps goes through the share one operation at a time', async (t) => {
    const { root, handler } = tempRepo(t)
    fs.writeFileSync(path.join(root, '.f.tmp-1-ab'), '')
    fs.writeFileSync(path.join(root, 'f'), '')
    age(path.join(root, '.f.tmp-1-ab'), 10 * 60_000)
    const share = new SimulatedShare(handler, { rttMs: 1 })
    assert.deepEqual(await share.cleanTemps(''), ['.f.tmp-1-ab'])
    const { calls } = share.stats()
    assert.deepEqual([calls.listWithTypes, calls.stat, calls.unlink, calls.total], [1, 1, 1, 3])
  })
})

describe('openHandler', () => {
  test('returns handlers as is, and a LocalHandler for a path or file: URL', (t) => {
    const { root, handler } = tempRepo(t)
    assert.equal(openHandler(handler), handler)
    const share = new SimulatedShare(handler)
    assert.equal(openHandler(share), share)
    const fromPath = openHandler(path.relative(process.cwd(), root))
    assert.ok(fromPath instanceof LocalHandler)
    assert.equal(fromPath.root, root)
    assert.equal(openHandler(pathToFileURL(root)).root, root)
    assert.throws(() => openHandler(42), { code: 'EINVAL' })
    assert.throws(() => openHandler({}), { code: 'EINVAL' })
  })
})
