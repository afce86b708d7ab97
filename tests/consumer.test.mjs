// brcache as a consumer gets it: `npm pack` of the main package and of this
// platform's addon package, installed with production dependencies only
// into an empty project; its three entry points imported and `npx brcache`
// run there (demo, gen, list, serve). Then every `.node` file is removed
// from the installed tree, as on a platform brcache ships no addon for,
// and the same runs go through the wasm core with one notice on stderr.

import assert from 'node:assert/strict'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { platformTriple } from '../js/node/load-core.js'

const root = join(import.meta.dirname, '..')
const triple = platformTriple()
const work = mkdtempSync(join(tmpdir(), 'brcache-consumer-'))
const project = join(work, 'project')
after(() => rmSync(work, { recursive: true, force: true }))

/** Environment of the consumer's commands: no BRCACHE_CORE unless given, no npm_* of this test run. */
function consumerEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) && name !== 'BRCACHE_CORE'))
  return { ...env, ...extra }
}

function pack(dir) {
  const json = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: dir, encoding: 'utf8', env: consumerEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  const [packed] = JSON.parse(json)
  return packed
}

function npx(args, env) {
  return spawnSync('npx', ['--no', 'brcache', ...args], { cwd: project, encoding: 'utf8', env: consumerEnv(env), timeout: 120_000 })
}

/** Every file under `dir` whose name ends with `suffix`. */
function filesEnding(dir, suffix) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(suffix))
    .map((entry) => join(entry.parentPath, entry.name))
}

const IMPORTS = `
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as brcache from 'brcache'
import * as wasm from 'brcache/wasm'
import * as browser from 'brcache/browser'
const cache = { '/xo-vm-backups/v/20240101T000000Z.json': { mode: 'full', timestamp: 1, id: 'i' } }
const bytes = brcache.encodeCache(cache, { generation: 2 })
await browser.init(readFileSync(join(dirname(fileURLToPath(import.meta.resolve('brcache/browser'))), 'generated', 'wasm-web', 'brcache_wasm_bg.wasm')))
console.log(JSON.stringify({
  core: brcache.coreName,
  native: brcache.decodeCache(bytes),
  wasm: wasm.decodeCache(bytes),
  browser: browser.decodeCache(bytes),
  generation: browser.readCacheHeader(bytes).generation,
  api: typeof brcache.openRepository,
}))
`

function importAll(env) {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', IMPORTS], { cwd: project, encoding: 'utf8', env: consumerEnv(env) })
  assert.equal(run.status, 0, run.stderr)
  return { ...JSON.parse(run.stdout), stderr: run.stderr }
}

/**
 * `brcache serve` on a free port (the installed bin npx runs, started
 * without npx so that killing it stops the server): the page, the VM list
 * and the page's wasm module answer.
 */
async function serves(dir, env) {
  const bin = join(project, 'node_modules', '.bin', 'brcache')
  const child = spawn(bin, ['serve', dir, '--port', '0'], { cwd: project, env: consumerEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    const url = await new Promise((resolve, reject) => {
      let out = ''
      let err = ''
      child.stdout.on('data', (chunk) => {
        out += chunk
        const match = /(http:\/\/\S+\/)/.exec(out)
        if (match) resolve(match[1])
      })
      child.stderr.on('data', (chunk) => (err += chunk))
      child.on('exit', (code) => reject(new Error(`brcache serve exited with ${code}: ${err}`)))
    })
    for (const path of ['', 'api/vms', 'js/generated/wasm-web/brcache_wasm_bg.wasm']) {
      const response = await fetch(new URL(path, url))
      assert.equal(response.status, 200, path)
      await response.arrayBuffer()
    }
  } finally {
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill()
    await exited
  }
}

const EXPECTED = { native: undefined, wasm: undefined, browser: undefined }
const cache = { '/xo-vm-backups/v/20240101T000000Z.json': { mode: 'full', timestamp: 1, id: 'i' } }
for (const key of Object.keys(EXPECTED)) EXPECTED[key] = cache

let main
let addon

describe('the packed package, installed as a consumer installs it', () => {
  before(() => {
    main = pack(root)
    addon = pack(join(root, 'npm', triple))
    mkdirSync(project)
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
    execFileSync(
      'npm',
      ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', join(work, main.filename), join(work, addon.filename)],
      { cwd: project, env: consumerEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
    )
  })

  test('the main tarball holds JS, declarations and the wasm builds, no addon, nothing of the clone', () => {
    const paths = main.files.map((file) => file.path)
    for (const path of paths) {
      assert.match(path, /^(js\/|package\.json$|README\.md$|CHANGELOG\.md$|LICENSE$)/, path)
      assert.doesNotMatch(path, /\.node$|\.tmp$/, path)
    }
    for (const needed of [
      'CHANGELOG.md',
      'js/index.d.ts',
      'js/wasm.d.ts',
      'js/browser.d.ts',
      'js/bin.js',
      'js/generated/wasm-web/brcache_wasm_bg.wasm',
    ]) {
      assert.ok(paths.includes(needed), `${needed} is missing`)
    }
    // 784 KiB: the index without locks (deltas, their fold, unlocked
    // compaction) added about 110 KB of wasm, 37 KB to the tarball (636 KB
    // before); its table and parts (the VM table, one VM on demand) about
    // 30 KB more (712 KB); zlib-rs for the read path's inflate, the S3
    // write probe and the listing race's catch-up together 61 KB more
    // (773 KB); the immutable repositories' index of create-only files
    // (epochs, their journal) and segments that say their VM 53 KB more
    // (826 KB).
    assert.ok(main.size < 832 * 1024, `the tarball grew to ${main.size} bytes`)
    assert.ok(!paths.some((path) => path.startsWith('js/generated/wasm-node/')), 'one wasm build, not two')
  })

  test(`the ${triple} tarball holds its addon and its manifest`, () => {
    assert.deepEqual(addon.files.map((file) => file.path).sort(), ['README.md', `brcache.${triple}.node`, 'package.json'])
    assert.equal(addon.name, `brcache-${triple}`)
  })

  test('only production dependencies are installed', () => {
    const installed = readdirSync(join(project, 'node_modules'))
    for (const dev of ['eslint', 'typescript', 'playwright-core']) assert.ok(!installed.includes(dev), dev)
    for (const wanted of ['brcache', `brcache-${triple}`, 'proper-lockfile', '@aws-sdk']) assert.ok(installed.includes(wanted), wanted)
  })

  test('brcache, brcache/wasm and brcache/browser import, on the addon, without a word on stderr', () => {
    const result = importAll()
    assert.deepEqual(result, { core: 'native', ...EXPECTED, generation: 2, api: 'function', stderr: '' })
  })

  test('npx brcache demo, gen, list and serve run on the addon', async () => {
    const demo = npx(['demo', '--vms', '4', '--retention', '5'])
    assert.equal(demo.status, 0, demo.stderr)
    assert.match(demo.stdout, /brcache's restore view lists the same 20 restore points/)
    assert.equal(demo.stderr, '')
    const dir = join(work, 'repo-native')
    assert.equal(npx(['gen', dir, '--vms', '2', '--retention', '3', '--seed', 'consumer']).status, 0)
    const list = npx(['list', dir, '--json'])
    assert.equal(list.status, 0, list.stderr)
    assert.equal(Object.values(JSON.parse(list.stdout)).flat().length, 6)
    await serves(dir)
  })

  describe('with every .node file removed from the installed tree', () => {
    before(() => {
      const removed = filesEnding(join(project, 'node_modules'), '.node')
      assert.ok(removed.some((file) => file.endsWith(`brcache.${triple}.node`)), 'the addon was installed')
      for (const file of removed) rmSync(file)
      assert.deepEqual(filesEnding(join(project, 'node_modules'), '.node'), [])
    })

    test('the three entry points import, on the wasm core, with one notice on stderr', () => {
      const result = importAll()
      assert.deepEqual({ ...result, stderr: undefined }, { core: 'wasm', ...EXPECTED, generation: 2, api: 'function', stderr: undefined })
      const lines = result.stderr.split('\n').filter(Boolean)
      assert.equal(lines.length, 1, result.stderr)
      assert.match(lines[0], new RegExp(`^brcache: no native addon loads on ${triple} .*: using the WebAssembly core`))
    })

    test('npx brcache demo, gen, list and serve run on the wasm core', async () => {
      const demo = npx(['demo', '--vms', '4', '--retention', '5'])
      assert.equal(demo.status, 0, demo.stderr)
      assert.match(demo.stdout, /brcache's restore view lists the same 20 restore points/)
      assert.equal(demo.stderr.split('\n').filter(Boolean).length, 1, demo.stderr)
      const dir = join(work, 'repo-wasm')
      assert.equal(npx(['gen', dir, '--vms', '2', '--retention', '3', '--seed', 'consumer'], { BRCACHE_CORE: 'wasm' }).status, 0)
      const list = npx(['list', dir, '--json'], { BRCACHE_CORE: 'wasm' })
      assert.equal(list.status, 0, list.stderr)
      assert.equal(list.stderr, '', 'BRCACHE_CORE=wasm: no notice')
      assert.equal(Object.values(JSON.parse(list.stdout)).flat().length, 6)
      await serves(dir, { BRCACHE_CORE: 'wasm' })
    })

    test('BRCACHE_CORE=native is a one-line error, exit status 2', () => {
      const run = npx(['demo'], { BRCACHE_CORE: 'native' })
      assert.equal(run.status, 2)
      assert.match(run.stderr, new RegExp(`^brcache: no native addon loads on ${triple} \\(.*\\), and BRCACHE_CORE=native forbids the WebAssembly core\\n$`))
      assert.equal(run.stdout, '')
    })
  })
})
