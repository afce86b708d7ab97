// The command line, run as a user runs it: exit codes, output, files.

import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { openRepository } from 'brcache'

const cli = join(import.meta.dirname, '..', 'js', 'node', 'cli.js')
const dirs = []
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

function temp() {
  const dir = mkdtempSync(join(tmpdir(), 'brcache-cli-'))
  dirs.push(dir)
  return dir
}

function brcache(...args) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' })
  return { code: result.status, out: result.stdout, err: result.stderr }
}

function gen(dir, ...extra) {
  const r = brcache('gen', dir, '--vms', '3', '--retention', '5', '--seed', 's1', ...extra)
  assert.equal(r.code, 0, r.err)
  return r
}

function snapshot(dir) {
  const files = {}
  const walk = (rel) => {
    for (const entry of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name
      if (entry.isDirectory()) walk(path)
      else files[path] = readFileSync(join(dir, path)).toString('base64')
    }
  }
  walk('')
  return files
}

describe('brcache gen', () => {
  test('the same seed writes the same repository; another seed another one', () => {
    const [a, b, c] = [temp(), temp(), temp()]
    gen(a)
    gen(b)
    assert.equal(brcache('gen', c, '--vms', '3', '--retention', '5', '--seed', 's2').code, 0)
    assert.deepStrictEqual(snapshot(a), snapshot(b))
    assert.notDeepStrictEqual(Object.keys(snapshot(a)), Object.keys(snapshot(c)))
  })

  test('writes metadata, placeholder data files and caches (unless --no-cache)', () => {
    const dir = temp()
    gen(dir)
    const files = Object.keys(snapshot(dir))
    assert.equal(files.filter((f) => f.endsWith('.json')).length, 15)
    assert.equal(files.filter((f) => f.endsWith('/cache.json.gz')).length, 3)
    assert.ok(files.some((f) => f.endsWith('.xva')))
    assert.ok(files.some((f) => f.endsWith('.vhd')))
    const bare = temp()
    gen(bare, '--no-cache')
    assert.equal(Object.keys(snapshot(bare)).filter((f) => f.endsWith('cache.json.gz')).length, 0)
  })
})

describe('brcache list', () => {
  test('--json is listSummaries: every VM, every restore point', async () => {
    const dir = temp()
    gen(dir)
    const r = brcache('list', dir, '--json')
    assert.equal(r.code, 0, r.err)
    const view = JSON.parse(r.out)
    assert.deepStrictEqual(view, await openRepository(dir).listSummaries())
    assert.equal(Object.keys(view).length, 3)
    for (const summaries of Object.values(view)) {
      assert.equal(summaries.length, 5)
      for (const s of summaries) for (const field of ['id', 'timestamp', 'mode', 'size']) assert.ok(field in s)
    }
  })

  test('the table names every VM and counts its restore points by mode', () => {
    const dir = temp()
    gen(dir)
    const view = JSON.parse(brcache('list', dir, '--json').out)
    const r = brcache('list', dir)
    assert.equal(r.code, 0, r.err)
    for (const [vm, summaries] of Object.entries(view)) {
      const line = r.out.split('\n').find((l) => l.startsWith(vm))
      assert.ok(line, `no line for ${vm}`)
      assert.ok(line.includes(summaries.at(-1).vm.name_label))
      const full = summaries.filter((s) => s.mode === 'full').length
      assert.ok(line.includes(`${full} full`), line)
    }
    assert.match(r.out, /3 VMs, 15 restore points/)
  })

  test('--vm lists one VM', () => {
    const dir = temp()
    gen(dir)
    const [vm] = Object.keys(JSON.parse(brcache('list', dir, '--json').out))
    const r = brcache('list', dir, '--vm', vm, '--json')
    assert.deepStrictEqual(Object.keys(JSON.parse(r.out)), [vm])
  })
})

describe('brcache check', () => {
  test('coherent: exit 0; stale left as is: exit 1; repaired: exit 0, then coherent', () => {
    const dir = temp()
    gen(dir)
    assert.equal(brcache('check', dir).code, 0)
    const view = JSON.parse(brcache('list', dir, '--json').out)
    const [vm, summaries] = Object.entries(view)[0]
    const gone = summaries[1].id
    unlinkSync(join(dir, gone))
    const dry = brcache('check', dir, '--json', '--repair', '--dry-run')
    assert.equal(dry.code, 1)
    assert.deepStrictEqual(JSON.parse(dry.out)[vm], { stale: [gone], missing: [], unreadable: [], repaired: false })
    const repaired = brcache('check', dir, '--json', '--repair')
    assert.equal(repaired.code, 0, repaired.err)
    assert.equal(JSON.parse(repaired.out)[vm].repaired, true)
    const again = brcache('check', dir, '--json')
    assert.equal(again.code, 0)
    assert.deepStrictEqual(JSON.parse(again.out)[vm], { stale: [], missing: [], unreadable: [], repaired: false })
  })

  test('unreadable metadata is reported with its reason', () => {
    const dir = temp()
    gen(dir)
    const [vm, summaries] = Object.entries(JSON.parse(brcache('list', dir, '--json').out))[0]
    const broken = `/xo-vm-backups/${vm}/20300101T000000Z.json`
    writeFileSync(join(dir, broken), '{"mode":')
    // Older than the minute a metadata file may take to be written.
    const old = new Date(Date.now() - 120_000)
    utimesSync(join(dir, broken), old, old)
    const r = brcache('check', dir, '--json')
    assert.equal(r.code, 1)
    const [unreadable] = JSON.parse(r.out)[vm].unreadable
    assert.equal(unreadable.id, broken)
    assert.match(unreadable.reason, /JSON/)
    assert.equal(summaries.length, 5)
  })

  test('--deep reports restore points whose data files are gone, and deletes nothing', () => {
    const dir = temp()
    gen(dir)
    const [vm, summaries] = Object.entries(JSON.parse(brcache('list', dir, '--json').out))[0]
    const full = summaries.find((s) => s.mode === 'full')
    const xva = full.id.replace(/\.json$/, '.xva')
    unlinkSync(join(dir, xva))
    const before = snapshot(dir)
    const r = brcache('check', dir, '--deep', '--json')
    assert.equal(r.code, 1)
    assert.deepStrictEqual(JSON.parse(r.out)[vm].incomplete, [{ id: full.id, missing: [xva.split('/').pop()] }])
    assert.deepStrictEqual(snapshot(dir), before)
  })
})

/** `brcache serve <dir>` on a free port: the child and its first line of output (once it listens). */
function serveCli(dir, env = {}) {
  const child = spawn(process.execPath, [cli, 'serve', dir, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  const line = new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')))
    })
    child.on('exit', (code) => reject(new Error(`brcache serve exited with ${code}`)))
  })
  return { child, line }
}

describe('brcache serve', () => {
  test('listens on loopback, prints the URL, serves the VM list and caches', async () => {
    const dir = temp()
    gen(dir)
    const { child, line } = serveCli(dir)
    try {
      const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(await line)[0]
      const vms = await (await fetch(new URL('api/vms', url))).json()
      assert.deepStrictEqual(vms, await openRepository(dir).listAllVms())
      const cache = await fetch(new URL(`api/vms/${vms[0]}/cache`, url))
      assert.equal(cache.headers.get('content-type'), 'application/gzip')
      assert.deepStrictEqual(Buffer.from(await cache.arrayBuffer()), readFileSync(join(dir, 'xo-vm-backups', vms[0], 'cache.json.gz')))
      assert.equal((await fetch(url)).status, 200)
      // A writable repository without an index: made before the first page.
      assert.match(await line, /repository index made from the VM caches\) at http:/)
      const index = await fetch(new URL('api/index', url))
      assert.equal(index.status, 200)
      assert.match((await index.json())[0], /^snapshot-/)
      assert.ok(index.headers.get('x-brcache-verified-at'))
    } finally {
      child.kill()
    }
  })

  test('with an index, the start catches it up with a VM folder XO added behind it, before the first page', async () => {
    const dir = temp()
    gen(dir)
    await openRepository(dir).buildIndex()
    // A VM folder the index never heard of, as XO would write it (no segment).
    const other = temp()
    gen(other, '--vms', '1', '--seed', 'cli-serve-other')
    const [added] = await openRepository(other).listAllVms()
    cpSync(join(other, 'xo-vm-backups', added), join(dir, 'xo-vm-backups', added), { recursive: true })
    assert.deepStrictEqual((await openRepository(dir).checkIndex()).drift, { [added]: 'unknown' })

    const { child, line } = serveCli(dir)
    try {
      assert.match(await line, /repository index caught up on 1 VM\) at http:/)
      assert.deepStrictEqual(await openRepository(dir).checkIndex(), { exists: true, drift: {}, repaired: false })
    } finally {
      child.kill()
    }
  })

  test('an encrypted repository: served as it lies without the key, checked with it, refused with another', async () => {
    const dir = temp()
    const keyed = { BRCACHE_ENCRYPTION_KEY: 'cli-serve-encryption-key-32-char' }
    const made = spawnSync(process.execPath, [cli, 'gen', dir, '--vms', '2', '--retention', '2'], { encoding: 'utf8', env: { ...process.env, ...keyed } })
    assert.equal(made.status, 0, made.stderr)
    const [vm] = readdirSync(join(dir, 'xo-vm-backups'))
    const cacheFile = join(dir, 'xo-vm-backups', vm, 'cache.json.gz')
    for (const [env, expected] of [
      [{ BRCACHE_ENCRYPTION_KEY: '' }, /encrypted with chacha20-poly1305: served as it lies, unchecked; the page asks for the key\) at http:/],
      [keyed, /encrypted with chacha20-poly1305: checked with the server's key; the page asks for it too\) at http:/],
    ]) {
      const { child, line } = serveCli(dir, env)
      try {
        const first = await line
        assert.match(first, expected)
        const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(first)[0]
        const cache = await fetch(new URL(`api/vms/${vm}/cache`, url))
        assert.equal(cache.status, 200)
        assert.deepStrictEqual(Buffer.from(await cache.arrayBuffer()), readFileSync(cacheFile), 'the bytes as they lie, encrypted')
        const descriptor = await fetch(new URL('api/encryption.json', url))
        assert.deepStrictEqual(await descriptor.json(), { algorithm: 'chacha20-poly1305' })
        assert.equal((await fetch(new URL('api/metadata.json', url))).status, 200)
      } finally {
        child.kill()
      }
    }
    const refused = spawnSync(process.execPath, [cli, 'serve', dir, '--port', '0'], {
      encoding: 'utf8',
      env: { ...process.env, BRCACHE_ENCRYPTION_KEY: 'not-the-key-of-this-repository!!' },
    })
    assert.equal(refused.status, 2)
    assert.match(refused.stderr, /metadata\.json: does not decrypt/)
  })

  test('a missing repository, a bad port or a bad window is an error before listening', () => {
    for (const args of [[join(tmpdir(), 'no-such-brcache-dir')], [temp(), '--port', 'http'], [temp(), '--verify-every', 'often']]) {
      const r = brcache('serve', ...args)
      assert.equal(r.code, 2, r.err)
      assert.match(r.err, /^brcache: /)
      if (args.includes('often')) assert.match(r.err, /--verify-every expects a whole number/)
    }
  })
})

describe('usage', () => {
  test('--help on every command, exit 0', () => {
    for (const command of ['gen', 'list', 'check', 'serve', 'demo', 'bench']) {
      const r = brcache(command, '--help')
      assert.equal(r.code, 0)
      assert.match(r.out, new RegExp(`Usage: brcache ${command}`))
    }
  })

  test('errors are one clear line with exit 2', () => {
    for (const args of [['nope'], ['list'], ['gen', temp(), '--vms', 'many'], ['list', '--bogus', 'x'], ['list', join(tmpdir(), 'no-such-brcache-dir')]]) {
      const r = brcache(...args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`)
      assert.match(r.err, /^brcache: /)
      assert.equal(r.err.trim().split('\n').length, 1, r.err)
      assert.ok(r.err.trim().length > 10)
    }
  })

  test('a missing repository is an error, not an empty listing', () => {
    const r = brcache('list', join(tmpdir(), 'no-such-brcache-dir'), '--json')
    assert.equal(r.code, 2)
    assert.equal(r.out, '')
  })
})

describe('brcache demo', () => {
  test('lists a small repository every way and reports the same restore points', () => {
    const r = spawnSync(process.execPath, [cli, 'demo', '--vms', '2', '--retention', '4', '--rtt', '1'], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /lists the same 8 restore points/)
    assert.match(r.stdout, /Every listing gives the same restore points/)
  })
})
