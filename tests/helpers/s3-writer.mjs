// A backup server writing to an S3 repository through one Garage node, for
// the multi-server test: adds backups (distinct timestamps of its own) to
// its VMs and deletes some of its earlier ones, then prints what it did.
//   node s3-writer.mjs <settings JSON> <writer number> <count>

import { openRepository, S3Handler } from 'brcache'

const [settings, writer, count] = [JSON.parse(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])]
const handler = new S3Handler(settings)
const repository = openRepository(handler, { concurrency: 4 })
const added = []
const deleted = []
const errors = []
for (let i = 0; i < count; i++) {
  const vm = settings.vms[i % settings.vms.length]
  // One timestamp space per writer: two writers never name the same file.
  const timestamp = Date.UTC(2024, 0, 1) + writer * 86_400_000 * 1000 + i * 1000
  try {
    added.push(await repository.writeVmBackupMetadata(vm, { mode: 'full', timestamp, jobId: `job-${writer}`, scheduleId: 's', size: i, xva: `./${i}.xva` }))
    if (i % 4 === 3) {
      const victim = added.splice(added.length - 3, 1)[0]
      await repository.deleteVmBackups([victim])
      deleted.push(victim)
    }
  } catch (error) {
    errors.push(`${error.code ?? ''} ${error.message}`)
  }
}
await repository.settle()
handler.destroy()
console.log(JSON.stringify({ writer, added, deleted, errors }))
