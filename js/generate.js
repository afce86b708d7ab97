// Writes a sample repository to a folder: metadata shaped like Xen
// Orchestra's (js/sample.js), empty placeholder data files, and, unless
// told otherwise, brcache's caches.

import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { vmDir } from './layout.js'
import { openRepository } from './repository.js'
import { createRandom, makeVm, makeVmBackups } from './sample.js'

/**
 * @param {string} dir the repository root (created if needed)
 * @param {{ vms: number, retention: number, seed?: string, caches?: boolean, onProgress?: (done: number, total: number) => void }} options
 * @returns {Promise<{ vms: number, restorePoints: number, files: number }>}
 */
export async function generateRepository(dir, { vms, retention, seed = 'brcache', caches = true, onProgress }) {
  const rng = createRandom(seed)
  let files = 0
  const start = Date.UTC(2024, 0, 1, 1, 0, 0)
  const jobs = Array.from({ length: Math.max(1, Math.ceil(vms / 10)) }, () => ({ jobId: rng.uuid(), scheduleId: rng.uuid() }))
  for (let i = 0; i < vms; i++) {
    const vm = makeVm(rng, i)
    const job = jobs[i % jobs.length]
    // VMs of a job are backed up one after the other.
    const backups = makeVmBackups(rng, { vm, retention, start: start + i * 7 * 60_000, ...job })
    const folder = join(dir, vmDir(vm.uuid))
    mkdirSync(folder, { recursive: true })
    for (const { filename, metadata, dataFiles } of backups) {
      // Plain writes, no fsync: this is sample data, and a large sample
      // has hundreds of thousands of files.
      writeFileSync(join(folder, filename), JSON.stringify(metadata), { flag: 'wx' })
      for (const file of dataFiles) {
        const path = join(folder, file)
        mkdirSync(dirname(path), { recursive: true })
        writeFileSync(path, '')
      }
      files += 1 + dataFiles.length
    }
    onProgress?.(i + 1, vms)
  }
  if (caches) await openRepository(dir, { concurrency: 4 }).checkAll({ repair: true })
  return { vms, restorePoints: vms * retention, files }
}
