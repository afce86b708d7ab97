// A reader of the race campaign (race.mjs):
//
//   node scripts/campaigns/race-reader.mjs <dir> <seed> <writers> <index> <local|simulated> <rtt-ms> <stop-file> <log-file> [no-repairs]
//
// Lists without a pause, in turn one VM's restore points, every VM's
// (listAllVmBackups) and the restore view (listSummaries), until <stop-file>
// exists. Checks what each listing returns on its own (well-formed ids of
// the VM listed, records that match their file names, sorted), and writes
// every listing to <log-file> with its wall-clock start and end, for the
// parent to check against the writers' op logs. Prints `{ ready: true }`
// when it starts listing and one JSON line of counts at the end. With
// `no-repairs` it opens the repository as immutable: it then never repairs a
// cache in the background, so never takes a lock.

import fs from 'node:fs'
import { openRepository } from 'brcache'
import { formatFilenameDate } from '../../js/common/layout.js'
import { createRandom } from '../../js/sample/metadata.js'
import { raceHandler, raceWriters } from './common.mjs'

const [dir, seed, writersText, indexText, share, rttText, stopFile, logFile, repairs] = process.argv.slice(2)
const [writers, index, rttMs] = [writersText, indexText, rttText].map(Number)
if (!dir || !Number.isInteger(writers) || !Number.isInteger(index) || !['local', 'simulated'].includes(share) || !stopFile || !logFile) {
  console.error('usage: race-reader.mjs <dir> <seed> <writers> <index> <local|simulated> <rtt-ms> <stop-file> <log-file>')
  process.exit(2)
}

const vms = [...new Set(raceWriters(seed, writers).map((writer) => writer.vm.uuid))]
const { handler, counts } = raceHandler(dir, share, rttMs)
const repository = openRepository(handler, { immutable: repairs === 'no-repairs' })
const rng = createRandom(`race:${seed}:reader:${index}`)
const ID = /^\/xo-vm-backups\/([^/]+)\/(\d{8}T\d{6}Z\.json)$/

let listings = 0
let errors = 0
const errorSamples = []
const bad = []
const out = fs.openSync(logFile, 'w')

/** The file names of one VM's listing, after checking each record against them. */
function names(vm, items) {
  const found = []
  let previous = -Infinity
  for (const item of items) {
    const match = ID.exec(item.id)
    const problems = []
    if (!match || match[1] !== vm) problems.push('an id that is not a metadata file of this VM')
    else if (formatFilenameDate(item.timestamp) !== match[2].slice(0, -5)) problems.push('a timestamp that is not its file name')
    if ('_filename' in item && item._filename !== item.id) problems.push('_filename differs from id')
    if (item.vm?.uuid !== vm) problems.push('the record of another VM')
    if (!(item.timestamp >= previous)) problems.push('out of order')
    previous = item.timestamp
    if (problems.length > 0 && bad.length < 20) bad.push(`${item.id}: ${problems.join(', ')}`)
    if (match) found.push(match[2])
  }
  return found
}

process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
const KINDS = ['listVmBackups', 'listAllVmBackups', 'listSummaries']
while (!fs.existsSync(stopFile)) {
  const kind = KINDS[listings % KINDS.length]
  const vm = rng.pick(vms)
  const start = Date.now()
  try {
    let byVm
    if (kind === 'listVmBackups') byVm = { [vm]: await repository.listVmBackups(vm) }
    else if (kind === 'listAllVmBackups') byVm = await repository.listAllVmBackups()
    else byVm = await repository.listSummaries()
    const end = Date.now()
    const listed = Object.fromEntries(Object.entries(byVm).map(([v, items]) => [v, names(v, items)]))
    // A VM a whole-repository listing omits is one it found without backups.
    const covered = kind === 'listVmBackups' ? [vm] : vms
    fs.writeSync(out, `${JSON.stringify({ kind, start, end, covered, listed })}\n`)
    listings++
  } catch (error) {
    errors++
    if (errorSamples.length < 10) errorSamples.push(`${kind}: ${error.stack}`)
  }
}
await repository.settle()
fs.closeSync(out)
process.stdout.write(`${JSON.stringify({ reader: index, listings, errors, errorSamples, bad, counts: counts() })}\n`)
