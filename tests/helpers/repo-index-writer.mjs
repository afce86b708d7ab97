// A backup writer process for the index campaign (repo-index-campaign.mjs):
//
//   node tests/helpers/repo-index-writer.mjs <dir> <vm> <seed> <n> <count>
//
// Writes <count> restore points of VM <vm> through
// openRepository(dir, { index: true }), each publishing an index segment
// (and compacting the index when segments pile up), and after every third
// write deletes its own oldest remaining restore point. Writer <n>'s
// timestamps are in a range of its own, so writers sharing a VM never
// collide on a file name. Prints one JSON line:
// `{ n, written: [key], deleted: [key], warnings: [{ message, data }] }`
// and exits 0, or prints the error and exits 1.

import { openRepository } from 'brcache'
import { createRandom, makeMetadata } from '../../js/sample/metadata.js'
import { runVm } from './repo-index-campaign.mjs'

const [dir, vm, seed, nText, countText] = process.argv.slice(2)
const n = Number(nText)
const count = Number(countText)
if (!dir || !vm || seed === undefined || !Number.isInteger(n) || !Number.isInteger(count) || count < 1) {
  console.error('usage: repo-index-writer.mjs <dir> <vm> <seed> <n> <count>')
  process.exit(2)
}

const rng = createRandom(`index-writer:${seed}:${n}`)
const vmRecord = { ...runVm(seed, n), uuid: vm }
const job = { jobId: rng.uuid(), scheduleId: rng.uuid() }
// One a minute, in writer n's own 100-day range.
const start = Date.UTC(2025, 0, 1) + n * 100 * 86_400_000

const warnings = []
const logger = { warn: (message, data) => warnings.push({ message, data }) }
const repository = openRepository(dir, { index: true, logger })

const written = []
const deleted = []
try {
  for (let i = 0; i < count; i++) {
    const timestamp = start + i * 60_000 + rng.int(0, 58_999)
    const metadata = makeMetadata(rng, { vm: vmRecord, ...job, timestamp, mode: rng.bool(0.15) ? 'full' : 'delta' })
    written.push(await repository.writeVmBackupMetadata(vm, metadata))
    if (i % 3 === 2) {
      const oldest = written.find((key) => !deleted.includes(key))
      await repository.deleteVmBackups([oldest])
      deleted.push(oldest)
    }
  }
  await repository.settle()
  process.stdout.write(`${JSON.stringify({ n, written, deleted, warnings })}\n`)
} catch (error) {
  console.error(error)
  process.exitCode = 1
}
