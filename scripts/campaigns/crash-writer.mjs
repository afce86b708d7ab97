// The victim of the crash campaign (crash.mjs), which kills it with SIGKILL:
//
//   node scripts/campaigns/crash-writer.mjs <dir> <seed> <first-op> <lock-stale-ms>
//
// Backs up the campaign's 1 to 3 VMs forever: op n writes the restore point
// crashOp(seed, n) describes, then deletes the oldest backups beyond that
// op's retention (and now and then one of another VM in the same call), as a
// backup job's retention does. It prints JSON lines: `{ ready: true }` once
// the repository is open, `{ op: n }` before op n starts (so the parent can
// restart the sequence after the last op that may have begun), and
// `{ warn, data }` for every warning the repository logs.

import fs from 'node:fs'
import { LocalHandler, openRepository } from 'brcache'
import { crashOp, crashVms } from './common.mjs'

const [dir, seed, firstOpText, staleText] = process.argv.slice(2)
const firstOp = Number(firstOpText)
const lockStaleMs = Number(staleText)
if (!dir || seed === undefined || !Number.isInteger(firstOp) || !Number.isInteger(lockStaleMs)) {
  console.error('usage: crash-writer.mjs <dir> <seed> <first-op> <lock-stale-ms>')
  process.exit(2)
}

// Synchronous writes: a line the parent must see before a kill (the op about
// to start) cannot sit in a stream buffer when SIGKILL lands.
const report = (object) => fs.writeSync(1, `${JSON.stringify(object)}\n`)

const repository = openRepository(new LocalHandler(dir), {
  lockStaleMs,
  logger: { warn: (message, data) => report({ warn: message, data }) },
})
const vms = crashVms(seed)
report({ ready: true })

// Retention needs to know what is there, as a backup job does: the listing
// also checks (and may repair) caches a previous, killed writer left behind.
const live = new Map()
for (const { vm } of vms) live.set(vm.uuid, (await repository.listVmBackups(vm.uuid)).map((record) => record.id))

for (let op = firstOp; ; op++) {
  report({ op })
  const { vm, metadata, retention, alsoPrune } = crashOp(seed, op, vms)
  const backups = live.get(vm)
  backups.push(await repository.writeVmBackupMetadata(vm, metadata))
  const doomed = backups.splice(0, Math.max(0, backups.length - retention))
  if (alsoPrune) {
    // One call deleting backups of two VMs: two cache updates, two locks.
    const other = [...live.values()].find((keys) => keys !== backups && keys.length > 1)
    if (other) doomed.push(other.shift())
  }
  if (doomed.length > 0) await repository.deleteVmBackups(doomed)
}
