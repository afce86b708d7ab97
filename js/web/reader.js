// How the page reads a repository: the core's operations
// (crates/core/src/ops/), driven over the page's HTTP share
// (js/web/http-share.js, through js/common/encrypted-share.js). What an
// index, a cache or a listing means is the core's to say, as on the server;
// this file only says which operation to run and what to hand back to the
// page (the server's listings, to see a change later, and what its
// headers said of the caches read). Used by the worker
// (js/web/index-worker.js) and, where no worker starts, by the page itself.

import { drive, operations } from '../browser.js'
import { INDEX_DIR } from '../common/repo-index.js'
import { BACKUP_DIR, CACHE_FILE, vmFile } from '../common/layout.js'

// Browsers open about six connections per host over HTTP/1.1: more in
// flight would only queue.
export const CONCURRENCY = 6

// `brcache serve` checks each cache against its folder before serving it
// and offers no VM folder's listing: the core reads the caches as they are.
// (Trusted implies read only; `immutable: true` here would also turn the
// index off, see the core's Settings::new.)
const SETTINGS = { trusted: true, index: 'auto' }

/**
 * `share`, with the first listing of a folder or read of a file answered
 * by one already under way (`made`: `{ path: promise }`), so that the page
 * asks the server once for what it also looks at itself.
 */
export function answering(share, made) {
  const pending = new Map(Object.entries(made))
  const take = (path, call) => {
    const answer = pending.get(path)
    pending.delete(path)
    return answer ?? call()
  }
  return {
    list: (dir) => take(dir, () => share.list(dir)),
    readFile: (file) => take(file, () => share.readFile(file)),
  }
}

const absent = (error) => (error.code === 'ENOENT' ? null : Promise.reject(error))

/** The VM folders, by the core's listVms (`folders`: the server's listing, if already asked). */
export function listVms(share, folders = share.list(BACKUP_DIR)) {
  return drive(operations.start('listVms', SETTINGS), answering(share, { [BACKUP_DIR]: folders }))
}

/**
 * The repository's VM table. `listed` is what the server listed (the VM
 * folders, and the index folder or null when it offers none), `vms` the VM
 * folders. With an index, `view` is the vmTable operation's answer (`{ rows,
 * unreadable, fromIndex }`, `rows` being `{ [vm]: { name, count, modes,
 * lastBackup, size } }` from the index's table, and `verifiedAt`: when the
 * server last verified the index, if it said) and `served` what the server
 * said it could not read in each cache the operation fetched (VMs the index
 * does not know). A VM's restore points come when the page asks for them
 * (readVm). Without an index the caches are fetched VM by VM (listVm), so
 * that rows arrive as they come: `view` is undefined.
 */
export async function readView(share, http) {
  const folders = share.list(BACKUP_DIR)
  const index = share.list(INDEX_DIR).catch(absent)
  folders.catch(() => {})
  index.catch(() => {})
  const vms = await listVms(share, folders)
  const listed = { folders: await folders, index: await index }
  if (listed.index === null) return { listed, vms }
  const handler = answering(share, { [BACKUP_DIR]: folders, [INDEX_DIR]: index })
  const { vms: rows, unreadable, fromIndex } = await drive(operations.start('vmTable', SETTINGS), handler, { concurrency: CONCURRENCY })
  const served = {}
  for (const vm of vms) if (http.etag(vmFile(vm, CACHE_FILE)) !== undefined) served[vm] = http.unreadable(vmFile(vm, CACHE_FILE))
  return { listed, vms, view: { rows, unreadable, fromIndex, verifiedAt: http.verifiedAt() }, served }
}

/** A VM's restore points (summaries) by the core's vmRestoreView: through the index, its table, that VM's part and its segments. */
export async function readVm(share, vm) {
  const { vms } = await drive(operations.start('vmRestoreView', SETTINGS, { vm }), share, { concurrency: CONCURRENCY })
  return vms[vm] ?? []
}

/** A VM's summaries by the core's listVm; `bytes`: its cache, already read by the page. */
export async function listVm(share, vm, bytes) {
  const handler = bytes === undefined ? share : answering(share, { [vmFile(vm, CACHE_FILE)]: Promise.resolve(bytes) })
  const { vms } = await drive(operations.start('listVm', SETTINGS, { vm, want: 'summaries' }), handler, { concurrency: CONCURRENCY })
  return vms[vm] ?? []
}
