#!/usr/bin/env node
// A Node.js binary of another version or architecture, from the npm
// registry's `node-linux-<arch>` packages (the official binary inside an
// npm package), installed once into node_modules/.cache/brcache/ — never a
// dependency of brcache itself. CI runs the suite on Node 24 with it, and
// the arm64 test loads the cross-built addon in an arm64 Node under qemu.
//
//   node scripts/node-binary.mjs [--arch x64|arm64] <version>   prints the binary's path
//
// <version> is a pinned version or a major release line (22, 24).

import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The exact releases this project tests, by release line. */
export const NODE_RELEASES = { 22: '22.23.5', 24: '24.22.3' }

/** Installs (once) and returns the path of Node `version` for Linux on `arch`. */
export function nodeBinary(version, { arch = 'x64', log = () => {} } = {}) {
  const exact = NODE_RELEASES[version] ?? version
  if (!/^\d+\.\d+\.\d+$/.test(exact)) throw new Error(`node-binary: no pinned release for Node ${version}`)
  const dir = join(root, 'node_modules', '.cache', 'brcache', `node-linux-${arch}-${exact}`)
  const binary = join(dir, 'package', 'bin', 'node')
  if (existsSync(binary)) return binary
  log(`fetching Node ${exact} for ${arch} (npm's node-linux-${arch} package)`)
  mkdirSync(dir, { recursive: true })
  // npm pack, not npm install: it fetches the tarball whatever this
  // machine's architecture (install would refuse arm64 on x64) and runs
  // nothing from it.
  const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir, `node-linux-${arch}@${exact}`], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim()
  execFileSync('tar', ['-xzf', join(dir, tarball), '-C', dir, 'package/bin/node', 'package/package.json'], { stdio: 'inherit' })
  rmSync(join(dir, tarball))
  if (!existsSync(binary)) throw new Error(`node-binary: npm installed node-linux-${arch}@${exact} but ${binary} is missing`)
  return binary
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const archAt = args.indexOf('--arch')
  const arch = archAt >= 0 ? args.splice(archAt, 2)[1] : 'x64'
  if (args.length !== 1) {
    process.stderr.write('usage: node scripts/node-binary.mjs [--arch x64|arm64] <version>\n')
    process.exit(2)
  }
  console.log(nodeBinary(args[0], { arch, log: (m) => process.stderr.write(`node-binary: ${m}\n`) }))
}
