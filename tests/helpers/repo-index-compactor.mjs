// The victim of the index kill campaign (repo-index-campaign.mjs, runKills),
// which kills it with SIGKILL at random moments:
//
//   node tests/helpers/repo-index-compactor.mjs <dir> <seed> <round>
//
// Over and over: writes a restore point of one of the campaign's VMs through
// openRepository(dir, { index: true }) (a cache write and an index segment),
// deletes that VM's oldest backups beyond a small retention (more segments),
// then compacts the index with IndexStore.compact one to three times. Before
// each step it prints `{ phase: 'write' | 'delete' | 'compact' }` with a
// synchronous write, so the parent knows what a kill interrupted. Round
// <round>'s timestamps are in a range of their own: a restarted process
// never collides with the file names of a killed one.

import fs from 'node:fs'
import { LocalHandler, openRepository } from 'brcache'
import { IndexStore } from '../../js/common/repo-index.js'
import { indexApi } from '../../js/node/native.js'
import { createRandom, makeMetadata } from '../../js/sample/metadata.js'
import { runVm } from './repo-index-campaign.mjs'

const [dir, seed, roundText] = process.argv.slice(2)
const round = Number(roundText)
if (!dir || seed === undefined || !Number.isInteger(round)) {
  console.error('usage: repo-index-compactor.mjs <dir> <seed> <round>')
  process.exit(2)
}

const report = (object) => fs.writeSync(1, `${JSON.stringify(object)}\n`)
const silent = { debug() {}, info() {}, warn() {}, error() {} }

const handler = new LocalHandler(dir)
const repository = openRepository(handler, { index: true, lockStaleMs: 2000 })
const store = new IndexStore(handler, indexApi, silent)
const rng = createRandom(`index-compactor:${seed}:${round}`)
const vms = (await repository.listAllVms()).sort()
const records = new Map()
for (let i = 0; records.size < vms.length && i < 64; i++) {
  const vm = runVm(seed, i)
  if (vms.includes(vm.uuid)) records.set(vm.uuid, vm)
}
const job = { jobId: rng.uuid(), scheduleId: rng.uuid() }
const start = Date.UTC(2025, 0, 1) + round * 10 * 86_400_000
report({ ready: true })

for (let op = 0; ; op++) {
  const vm = rng.pick(vms)
  report({ phase: 'write', op })
  const timestamp = start + op * 60_000 + rng.int(0, 58_999)
  const metadata = makeMetadata(rng, { vm: records.get(vm) ?? { ...runVm(seed, 0), uuid: vm }, ...job, timestamp, mode: rng.bool(0.15) ? 'full' : 'delta' })
  await repository.writeVmBackupMetadata(vm, metadata)

  const keep = rng.int(2, 5)
  const ids = (await repository.listVmSummaries(vm)).map((s) => s.id)
  if (ids.length > keep) {
    report({ phase: 'delete', op })
    await repository.deleteVmBackups(ids.slice(0, ids.length - keep))
  }

  for (let n = rng.int(1, 3); n > 0; n--) {
    report({ phase: 'compact', op })
    try {
      await store.compact()
    } catch (error) {
      // A snapshot a previous process was killed writing: unusable until a
      // check rebuilds it; the writes above still publish their segments.
      report({ compactFailed: error.message })
    }
  }
}
