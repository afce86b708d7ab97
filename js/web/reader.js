// How the page reads a repository: the core's operations
// (crates/core/src/ops/), driven over the page's HTTP share
// (js/web/http-share.js, through js/common/encrypted-share.js). What an
// index, a cache or a listing means is the core's to say, as on the server;
// this file only says which operation to run and what to hand back to the
// page (the server's listings, to see a change later, and what its
// headers said of the caches read). Used by the worker
// (js/web/index-worker.js) and, where no worker starts, by the page itself.

import { drive, operations } from '../browser.js'
import { INDEX_DIR, isEpochName } from '../common/repo-index.js'
import { BACKUP_DIR, CACHE_FILE, vmDir, vmFile } from '../common/layout.js'

// Browsers open about six connections per host over HTTP/1.1: more in
// flight would only queue.
export const CONCURRENCY = 6

// `brcache serve` checks each cache against its folder before serving it
// and offers no VM folder's listing: the core reads the caches as they are.
// (Trusted implies read only, and turns an immutable repository's index
// off: see the core's Settings::trusting.)
const SETTINGS = { trusted: true, index: 'auto' }

// On an immutable repository the server checks no cache (a repair is a
// write) and offers what the library reads there instead: the index of
// create-only files and the VM folders' listings. So the page runs the
// library's own settings for it (openRepository(…, { immutable: true })):
// through that index, with a VM it does not know or doubts read from its
// folder. The operations leave the index's follow-up (its seed, its
// compactions, which write) undone: the page never asks for it.
const IMMUTABLE = { immutable: true, index: 'auto' }

/**
 * The settings the page's operations run with on a repository the server
 * says is immutable, or not, and has locks, or not. On a share without
 * locks (S3) no lock shows in the VM folders' listing, its costliest call
 * there (Garage walks every object under xo-vm-backups/): through the
 * index the library's listings skip it, the VMs being the index's, and so
 * do the page's.
 */
const settingsFor = (immutable, locks = true) => ({ ...(immutable ? IMMUTABLE : SETTINGS), ...(locks ? {} : { locks: false }) })

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

/**
 * What the page compares between two looks at the index (`names`, null
 * without an index), and those listings for the operation that reads the
 * index next (`made`, see answering), so that the server is asked once.
 * The writable index is its folder's listing. An immutable repository's
 * index folder lists its epochs only, and a segment lands in an epoch: so
 * its two newest epochs too, which the core lists first there
 * (crates/core/src/index/epochs.rs, `first_to_list`).
 */
export async function listIndex(share, { immutable = false } = {}) {
  const root = await share.list(INDEX_DIR).catch(absent)
  if (root === null) return { names: null, made: {} }
  const made = { [INDEX_DIR]: Promise.resolve(root) }
  if (!immutable) return { names: root, made }
  const newest = root.filter(isEpochName).sort().slice(-2)
  // An epoch gone since is no names, as the core takes a missing folder.
  const listings = await Promise.all(newest.map((epoch) => share.list(`${INDEX_DIR}/${epoch}`).catch((error) => (error.code === 'ENOENT' ? [] : Promise.reject(error)))))
  newest.forEach((epoch, i) => {
    made[`${INDEX_DIR}/${epoch}`] = Promise.resolve(listings[i])
  })
  return { names: [...root, ...newest.flatMap((epoch, i) => listings[i].map((name) => `${epoch}/${name}`))], made }
}

/** The VM folders, by the core's listVms (`folders`: the server's listing, if already asked). */
export function listVms(share, folders = share.list(BACKUP_DIR)) {
  return drive(operations.start('listVms', SETTINGS), answering(share, { [BACKUP_DIR]: folders }))
}

/**
 * The repository's VM table. `listed` is what the server listed (the VM
 * folders, and the index's listings, see listIndex, or null when it offers
 * none), `vms` the VM folders; `immutable`: the server said the repository
 * is (see settingsFor). With an index, `view` is the vmTable operation's answer (`{ rows,
 * unreadable, fromIndex }`, `rows` being `{ [vm]: { name, count, modes,
 * lastBackup, size } }` from the index's table, and `verifiedAt`: when the
 * server last verified the index, if it said) and `served` what the server
 * said it could not read in each cache the operation fetched (VMs the index
 * does not know). A VM's restore points come when the page asks for them
 * (readVm). Without an index the caches (on an immutable repository, the
 * folders) are read VM by VM (listVm), so that rows arrive as they come:
 * `view` is undefined.
 */
export async function readView(share, http, { immutable = false, locks = true } = {}) {
  const index = listIndex(share, { immutable })
  // Without locks, the VM folders are listed only where there is no index.
  const folders = locks ? share.list(BACKUP_DIR) : index.then(({ names }) => (names === null ? share.list(BACKUP_DIR) : null))
  folders.catch(() => {})
  index.catch(() => {})
  const { names, made } = await index
  const listed = { folders: await folders, index: names }
  if (listed.index === null) return { listed, vms: await listVms(share, folders) }
  const handler = answering(share, { ...(listed.folders === null ? {} : { [BACKUP_DIR]: folders }), ...made })
  const { vms: rows, unreadable, fromIndex } = await drive(operations.start('vmTable', settingsFor(immutable, locks)), handler, { concurrency: CONCURRENCY })
  const vms = listed.folders === null ? Object.keys(rows).sort() : await listVms(share, folders)
  const served = {}
  for (const vm of vms) if (http.etag(vmFile(vm, CACHE_FILE)) !== undefined) served[vm] = http.unreadable(vmFile(vm, CACHE_FILE))
  // There the core read the VMs the index does not know from their folders: what did not read is its to say.
  if (immutable) for (const { file, reason } of unreadable) (served[file.split('/')[1]] ??= []).push({ id: `/${file}`, reason })
  return { listed, vms, view: { rows, unreadable, fromIndex, verifiedAt: http.verifiedAt() }, served }
}

/** A VM's restore points (summaries) by the core's vmRestoreView: through the index, its table, that VM's part and its segments. */
export async function readVm(share, vm, { immutable = false, locks = true } = {}) {
  const { vms } = await drive(operations.start('vmRestoreView', settingsFor(immutable, locks), { vm }), share, { concurrency: CONCURRENCY })
  return vms[vm] ?? []
}

/** A VM's summaries by the core's listVm; `bytes`: its cache, already read by the page. */
export async function listVm(share, vm, bytes) {
  const handler = bytes === undefined ? share : answering(share, { [vmFile(vm, CACHE_FILE)]: Promise.resolve(bytes) })
  const { vms } = await drive(operations.start('listVm', SETTINGS, { vm, want: 'summaries' }), handler, { concurrency: CONCURRENCY })
  return vms[vm] ?? []
}

/**
 * On an immutable repository, a VM's restore points from its folder
 * (`listing`: the folder's, already read) by the core's listVm, as the
 * library lists it there: `{ summaries, unreadable }`, `unreadable` the
 * metadata files that did not read, `[{ id, reason }]` as the server says
 * of a cache it checked.
 */
export async function listFolder(share, vm, listing) {
  const handler = answering(share, { [vmDir(vm)]: Promise.resolve(listing) })
  const { vms, unreadable } = await drive(operations.start('listVm', IMMUTABLE, { vm, want: 'summaries' }), handler, { concurrency: CONCURRENCY })
  return { summaries: vms[vm] ?? [], unreadable: unreadable.map(({ file, reason }) => ({ id: `/${file}`, reason })) }
}
