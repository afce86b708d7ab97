// Writes a sample repository to a folder: metadata shaped like Xen
// Orchestra's (js/sample/metadata.js), empty placeholder data files, and, unless
// told otherwise, brcache's caches; encrypted as Xen Orchestra encrypts a
// remote when given a key.

import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { LocalHandler, initializeEncryption } from '../node/handlers/index.js'
import { vmDir } from '../common/layout.js'
import { encryptionApi } from '../node/core.js'
import { openRepository } from '../node/repository.js'
import { createRandom, makeVm, makeVmBackups } from './metadata.js'

/**
 * @param {string} dir the repository root (created if needed)
 * @param {{ vms: number, retention: number, seed?: string, caches?: boolean, onProgress?: (done: number, total: number) => void,
 *   encryptionKey?: string, algorithm?: string }} options `encryptionKey`: write an encrypted
 *   repository (into an empty or new folder), with `algorithm` (default chacha20-poly1305)
 * @returns {Promise<{ vms: number, restorePoints: number, files: number }>}
 */
export async function generateRepository(dir, { vms, retention, seed = 'brcache', caches = true, onProgress, encryptionKey, algorithm }) {
  let seal = (text) => text
  if (encryptionKey !== undefined) {
    mkdirSync(dir, { recursive: true })
    await initializeEncryption(new LocalHandler(dir), encryptionApi, { key: encryptionKey, algorithm })
    const cipher = encryptionApi.newCipher(algorithm ?? 'chacha20-poly1305', encryptionKey)
    seal = (text) => cipher.seal(text)
  }
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
      writeFileSync(join(folder, filename), seal(JSON.stringify(metadata)), { flag: 'wx' })
      for (const file of dataFiles) {
        const path = join(folder, file)
        mkdirSync(dirname(path), { recursive: true })
        writeFileSync(path, '')
      }
      files += 1 + dataFiles.length
    }
    onProgress?.(i + 1, vms)
  }
  // The caches as the backups left them, and no index: a repository's
  // first listing makes that (tests and benches build one when they want it).
  if (caches) await openRepository(dir, { concurrency: 4, encryptionKey, index: false }).checkAll({ repair: true })
  return { vms, restorePoints: vms * retention, files }
}
