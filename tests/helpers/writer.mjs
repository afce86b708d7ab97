// A backup writer process for the multi-process test of
// tests/repository.test.mjs:
//
//   node tests/helpers/writer.mjs <dir> <vm> <seed> <count>
//
// Writes <count> restore points of VM <vm> in repository <dir>, with
// timestamps in a range of its own (derived from <seed>, so writers never
// collide on a file name), and after every third write deletes its own
// oldest remaining restore point. Prints one JSON line:
// `{ seed, written: [key], deleted: [key], warnings: [{ message, data }] }`
// and exits 0, or prints the error and exits 1.

import { openRepository } from 'brcache'
import { createRandom, makeVm, makeVmBackups } from '../../js/sample/metadata.js'

const [dir, vm, seedText, countText] = process.argv.slice(2)
const seed = Number(seedText)
const count = Number(countText)
if (!dir || !vm || !Number.isInteger(seed) || !Number.isInteger(count) || count < 1) {
  console.error('usage: writer.mjs <dir> <vm> <seed> <count>')
  process.exit(2)
}

// Writer n owns [start + n * 4 h, start + n * 4 h + count min): one restore
// point a minute (plus a jitter below 15 s), far from every other writer's.
const start = Date.UTC(2025, 0, 1) + seed * 4 * 3600_000
const rng = createRandom(`writer-${seed}`)
const backups = makeVmBackups(rng, { vm: makeVm(rng, seed), retention: count, start, intervalMs: 60_000 })

const warnings = []
const logger = { warn: (message, data) => warnings.push({ message, data }) }
const repository = openRepository(dir, { logger })

const written = []
const deleted = []
try {
  for (let i = 0; i < count; i++) {
    written.push(await repository.writeVmBackupMetadata(vm, backups[i].metadata))
    if (i % 3 === 2) {
      const oldest = written.find((key) => !deleted.includes(key))
      await repository.deleteVmBackups([oldest])
      deleted.push(oldest)
    }
  }
  await repository.settle()
  process.stdout.write(`${JSON.stringify({ seed, written, deleted, warnings })}\n`)
} catch (error) {
  console.error(error)
  process.exitCode = 1
}
