#!/usr/bin/env node
// `npm run bench`: every benchmark, one after the other (none of them is
// a test; each prints ratios measured in its own run).

import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

const root = join(import.meta.dirname, '..')
const extra = process.argv.slice(2)
for (const args of [['bench/codec.bench.mjs'], ['bench/core.bench.mjs'], ['bench/semantics.bench.mjs'], ['bench/browser.bench.mjs'], ['js/cli.js', 'bench', '--scenario', 'all'], ['bench/s3.bench.mjs']]) {
  console.log(`\n$ node ${args.join(' ')}`)
  execFileSync(process.execPath, [...args, ...extra], { cwd: root, stdio: 'inherit' })
}
