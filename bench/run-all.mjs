#!/usr/bin/env node
// `npm run bench`: every benchmark, one after the other (none of them is
// a test; each prints ratios measured in its own run).

import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const extra = process.argv.slice(2)
const benches = [
  ['bench/codec.bench.mjs'],
  ['bench/core.bench.mjs'],
  ['bench/semantics.bench.mjs'],
  ['bench/browser.bench.mjs'],
  ['bench/page.bench.mjs'],
  ['js/node/cli.js', 'bench', '--scenario', 'all'],
  ['bench/serve-load.bench.mjs'],
  ['bench/s3.bench.mjs'],
  ['bench/smb.bench.mjs'],
]
for (const args of benches) {
  console.log(`\n$ node ${args.join(' ')}`)
  execFileSync(process.execPath, [...args, ...extra], { cwd: root, stdio: 'inherit' })
}
