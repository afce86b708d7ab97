#!/usr/bin/env node
// Index campaign: the repository-wide index under concurrent writers and
// under SIGKILL, at a larger scale than tests/repo-index.test.mjs runs it (the
// same code: tests/helpers/repo-index-campaign.mjs).
//
//   1. Writers: --writers processes on VMs of their own and --shared more
//      on one VM they share add and delete backups through
//      openRepository(dir, { index: true }) (each write publishes a segment;
//      writers compact past 64 segments, with no global lock) while this
//      process lists through the index. At the end the index, unrepaired,
//      must list exactly what the metadata files hold, and check must find
//      no drift.
//   2. Kills: a process writing, deleting and compacting the index
//      (IndexStore.compact) is killed with SIGKILL --kills times at seeded
//      moments. After each kill a listing must not fail and, when the index
//      is unusable, must fall back to the truth; a kill during a compaction
//      must leave the index the truth as it is; after check --repair it must
//      be the truth, with no drift left.
//
// The truth is read from the disk (every metadata file that parses), never
// through the code under test. Exits 1 if any must-be-zero figure is not.

import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { KILLS_MUST_BE_ZERO, WRITERS_MUST_BE_ZERO, runKills, runWriters } from '../../tests/helpers/repo-index-campaign.mjs'

const USAGE = `usage: node scripts/campaigns/repo-index.mjs [--kills N=100] [--writers N=4] [--shared N=2] [--count N=60]
       [--readers N=2] [--seed S=1] [--json]

--writers processes on VMs of their own and --shared on one VM write --count backups each
(deleting one every third) while --readers loops list through the index; then a writing,
compacting process is killed --kills times. Exits 1 if a restore point is lost or phantom,
a reader fails, or the index disagrees with the VM caches after a repair.`

let values
try {
  values = parseArgs({
    options: {
      kills: { type: 'string', default: '100' },
      writers: { type: 'string', default: '4' },
      shared: { type: 'string', default: '2' },
      count: { type: 'string', default: '60' },
      readers: { type: 'string', default: '2' },
      seed: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  }).values
} catch (error) {
  console.error(`${error.message}\n${USAGE}`)
  process.exit(2)
}
if (values.help) {
  console.log(USAGE)
  process.exit(0)
}
const numbers = {}
for (const name of ['kills', 'writers', 'shared', 'count', 'readers']) {
  numbers[name] = Number(values[name])
  if (!Number.isInteger(numbers[name]) || numbers[name] < 0) {
    console.error(`--${name} needs a whole number, got ${values[name]}\n${USAGE}`)
    process.exit(2)
  }
}

const folders = []
const temp = (prefix) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  folders.push(dir)
  return dir
}
const removeAll = () => {
  for (const dir of folders) fs.rmSync(dir, { recursive: true, force: true })
}
process.on('exit', removeAll)
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130))

const started = performance.now()
const log = (line) => values.json || console.log(line)
const table = (figures) => {
  const width = Math.max(...Object.keys(figures).map((k) => k.length))
  return Object.entries(figures)
    .map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)
    .join('\n')
}

const failed = []
const out = { seed: values.seed }

if (numbers.writers + numbers.shared > 0 && numbers.count > 0) {
  log(`writers: ${numbers.writers} on their own VMs, ${numbers.shared} on a shared one, ${numbers.count} backups each...`)
  const t = performance.now()
  const { figures, problems } = await runWriters(temp('brcache-index-writers-'), {
    seed: `campaign:${values.seed}`,
    writers: numbers.writers,
    shared: numbers.shared,
    count: numbers.count,
    readers: numbers.readers,
  })
  out.writers = { ...figures, wallMs: Math.round(performance.now() - t), problems }
  for (const name of WRITERS_MUST_BE_ZERO) if (figures[name] !== 0) failed.push(`writers.${name}`)
  if (problems.length > 0) failed.push('writers.problems')
  log(table(figures))
  for (const problem of problems) log(`  problem: ${problem}`)
}

if (numbers.kills > 0) {
  log(`kills: ${numbers.kills} SIGKILLs of a process writing and compacting the index...`)
  const t = performance.now()
  const { figures, problems } = await runKills(temp('brcache-index-kills-'), { seed: `campaign:${values.seed}`, kills: numbers.kills })
  out.kills = { ...figures, wallMs: Math.round(performance.now() - t), problems }
  for (const name of KILLS_MUST_BE_ZERO) if (figures[name] !== 0) failed.push(`kills.${name}`)
  if (problems.length > 0) failed.push('kills.problems')
  log(table(figures))
  for (const problem of problems) log(`  problem: ${problem}`)
}

out.failed = failed
out.wallMs = Math.round(performance.now() - started)
if (values.json) console.log(JSON.stringify(out))
else console.log(failed.length === 0 ? `\nOK in ${(out.wallMs / 1000).toFixed(1)} s` : `\nFAILED: ${failed.join(', ')}`)
removeAll()
process.exitCode = failed.length === 0 ? 0 : 1
