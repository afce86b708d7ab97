#!/usr/bin/env node
// Builds everything the JS side loads, from a fresh clone or incrementally:
//   - npm packages (npm ci) when node_modules is missing or stale;
//   - the wasm32 rustup target and the wasm-bindgen CLI at the exact
//     version Cargo.lock pins (the two must match or the glue breaks);
//   - the napi addon (release)         -> js/generated/brcache.node
//   - the wasm module for Node and web -> js/generated/wasm-{node,web}/
//   - Debian's Chromium (/usr/bin/chromium), which the browser test drives
//     through playwright-core: a test tool's own browser download cannot
//     work on these machines, the distribution's package does.
// Every step is skipped when its output is already up to date, so running
// it before each test run costs about a second.

import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

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
  log('installing npm packages (npm ci)')
  run('npm', ['ci', '--no-audit', '--no-fund'])
}

function ensureWasmTarget() {
  const installed = output('rustup', ['target', 'list', '--installed']) ?? ''
  if (installed.split('\n').includes('wasm32-unknown-unknown')) return
  log('adding the rustup target wasm32-unknown-unknown')
  run('rustup', ['target', 'add', 'wasm32-unknown-unknown'])
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

function buildAddon() {
  log('cargo build -p brcache-node (release)')
  run('cargo', ['build', '--release', '--quiet', '-p', 'brcache-node'])
  const built = join(root, 'target', 'release', 'libbrcache_node.so')
  const dest = join(generated, 'brcache.node')
  if (mtime(built) > mtime(dest)) {
    // Copy then rename: overwriting the file in place would change the
    // code under any process that has the addon loaded (and crash it).
    copyFileSync(built, `${dest}.tmp`)
    renameSync(`${dest}.tmp`, dest)
  }
}

function buildWasm() {
  log('cargo build -p brcache-wasm (release, wasm32)')
  run('cargo', ['build', '--release', '--quiet', '--target', 'wasm32-unknown-unknown', '-p', 'brcache-wasm'])
  const wasm = join(root, 'target', 'wasm32-unknown-unknown', 'release', 'brcache_wasm.wasm')
  for (const [target, dir] of [['nodejs', 'wasm-node'], ['web', 'wasm-web']]) {
    const outDir = join(generated, dir)
    if (mtime(join(outDir, 'brcache_wasm_bg.wasm')) > mtime(wasm)) continue
    log(`wasm-bindgen --target ${target}`)
    run(wasmBindgen(), ['--target', target, '--out-dir', outDir, wasm])
  }
  // The nodejs glue is CommonJS, but this package is "type": "module".
  writeFileSync(join(generated, 'wasm-node', 'package.json'), '{ "type": "commonjs" }\n')
}

const CHROMIUM = '/usr/bin/chromium'

function ensureChromium() {
  if (existsSync(CHROMIUM)) return
  if (output('apt-get', ['--version']) === undefined) {
    throw new Error(`${CHROMIUM} is missing and apt-get is not available: install Debian's chromium package by hand`)
  }
  log('installing Debian\'s chromium (apt-get, once per machine)')
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  try {
    run('apt-get', ['update'], { env, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'] })
    run('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { env, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'] })
  } catch (error) {
    throw new Error(`could not install chromium with apt-get (root is needed): ${error.message}`)
  }
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium but ${CHROMIUM} is still missing`)
}

mkdirSync(generated, { recursive: true })
ensureNpmPackages()
ensureChromium()
ensureWasmTarget()
ensureWasmBindgenCli()
buildAddon()
buildWasm()
log('done')
