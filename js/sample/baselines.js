// How listings were done before brcache, measured against it in the same
// run by the demo and the benchmarks.

import { BACKUP_DIR, CACHE_FILE, vmDir, vmFile } from '../common/layout.js'
import { gunzipSync } from 'node:zlib'
import { mapLimit } from '../common/concurrency.js'
import { projectRecord } from './restore-view.js'

async function listVms(handler) {
  const entries = await handler.listWithTypes(BACKUP_DIR)
  return entries.filter((e) => e.isDirectory && !e.name.startsWith('.') && !e.name.endsWith('.lock')).map((e) => e.name)
}

/**
 * No cache at all (Xen Orchestra before 5.71, as the article describes
 * it): list every VM folder, then read and parse every metadata file.
 * VMs 10 at a time, as XO does.
 */
export async function listWithoutCache(handler, { concurrency = 10 } = {}) {
  const vms = await listVms(handler)
  const result = {}
  await mapLimit(vms, concurrency, async (vm) => {
    const names = (await handler.list(vmDir(vm))).filter((n) => n.endsWith('.json') && !n.startsWith('.'))
    const records = await Promise.all(
      names.map(async (name) => {
        const record = JSON.parse(await handler.readFile(vmFile(vm, name)))
        const id = `/${vmFile(vm, name)}`
        return { ...record, _filename: id, id }
      }),
    )
    if (records.length > 0) result[vm] = records.sort((a, b) => a.timestamp - b.timestamp)
  })
  return result
}

/**
 * Xen Orchestra's cache today: read each VM's cache.json.gz (full records),
 * trust it without looking at the folder, 10 VMs at a time; rebuild it from
 * the metadata files when it is missing (rewriting the whole file).
 */
export async function listXoStyle(handler, { concurrency = 10 } = {}) {
  const vms = await listVms(handler)
  const result = {}
  await mapLimit(vms, concurrency, async (vm) => {
    let cache
    try {
      cache = JSON.parse(gunzipSync(await handler.readFile(vmFile(vm, CACHE_FILE))))
    } catch {
      const names = (await handler.list(vmDir(vm))).filter((n) => n.endsWith('.json') && !n.startsWith('.'))
      cache = {}
      for (const name of names) {
        const id = `/${vmFile(vm, name)}`
        cache[id] = { ...JSON.parse(await handler.readFile(vmFile(vm, name))), _filename: id, id }
      }
    }
    const records = Object.values(cache)
    if (records.length > 0) result[vm] = records.sort((a, b) => a.timestamp - b.timestamp)
  })
  return result
}

/** The restore view of `{ vm: records }`, projected as XO's UI does. */
export function restoreView(recordsByVm) {
  const view = {}
  for (const [vm, records] of Object.entries(recordsByVm)) view[vm] = records.map(projectRecord)
  return view
}
