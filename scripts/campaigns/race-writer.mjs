// A writer of the race campaign (race.mjs):
//
//   node scripts/campaigns/race-writer.mjs <dir> <seed> <writers> <index> <ops> <local|simulated> <rtt-ms>
//
// Does <ops> operations on its VM (raceWriters says which: the shared one or
// its own): adds a backup, or deletes one of its own (a random one, always
// when it holds more than its retention, else now and then). Prints one JSON
// line at the end: every op it completed, with the wall-clock times it
// started and returned (`Date.now()`, comparable across processes), what the
// repository logged, and any op that threw.

import { openRepository } from 'brcache'
import { createRandom } from '../../js/sample/metadata.js'
import { raceBackup, raceHandler, raceWriters } from './common.mjs'

const [dir, seed, writersText, indexText, opsText, share, rttText] = process.argv.slice(2)
const [writers, index, ops, rttMs] = [writersText, indexText, opsText, rttText].map(Number)
if (!dir || !Number.isInteger(index) || index >= writers || !Number.isInteger(ops) || !['local', 'simulated'].includes(share)) {
  console.error('usage: race-writer.mjs <dir> <seed> <writers> <index> <ops> <local|simulated> <rtt-ms>')
  process.exit(2)
}

const writer = raceWriters(seed, writers)[index]
const vm = writer.vm.uuid
const { handler, counts } = raceHandler(dir, share, rttMs)
const warnings = []
const repository = openRepository(handler, { logger: { warn: (message, data) => warnings.push({ message, data }) } })
const rng = createRandom(`race:${seed}:writer:${index}:ops`)

const log = []
const errors = []
const live = []
let added = 0
for (let i = 0; i < ops; i++) {
  const remove = live.length > writer.retention || (live.length > 0 && rng.bool(0.35))
  const start = Date.now()
  try {
    if (remove) {
      const [key] = live.splice(rng.int(0, live.length - 1), 1)
      await repository.deleteVmBackups([key])
      log.push({ kind: 'delete', key, start, end: Date.now() })
    } else {
      const key = await repository.writeVmBackupMetadata(vm, raceBackup(seed, writer, added++))
      live.push(key)
      log.push({ kind: 'add', key, start, end: Date.now() })
    }
  } catch (error) {
    errors.push({ op: i, start, message: error.stack })
  }
}
await repository.settle()
process.stdout.write(`${JSON.stringify({ writer: index, vm, shared: writer.shared, log, warnings, errors, counts: counts() })}\n`)
