// One repository as `brcache serve` offers it, under `/api/r/<id>/`: the
// list of VM folders, a listed VM's cache and metadata files, the index
// files a listing of the index folder names, and an encrypted repository's
// two root files. Names are compared with a listing, never joined onto a
// path, so no spelling of `..` or of an encoded slash reaches a file the
// listing does not give.
//
// Every file goes out as it lies on the share. On an encrypted repository
// the page decrypts; a server given the key still checks and repairs
// caches first, one without it serves them unchecked.
//
// Where it may write, the server also keeps the repository index, which the
// page only reads: it makes it when there is none, and verifies it against
// the VM caches in the background (Xen Orchestra rewrites caches without
// telling the index), bounded by verifyEveryMs, through the library's own
// seed and verification.
//
// On an immutable repository (opened so, or an S3 bucket with Object Lock)
// it writes nothing: no check (a repair is a write), no index made. It
// serves what the library lists from there instead, read only: the index
// of create-only files (the epoch folders, their snapshots and segments,
// names as the core takes them) and the VM folders' metadata files, so
// that the page's core lists through that index as the library does.

import { DESCRIPTOR_FILE, KEY_CHECK_FILE } from '../common/encryption.js'
import { HttpError, jsonRevalidated, notFound, send } from './http.js'
import { INDEX_DIR, isEpochName } from '../common/repo-index.js'
import { CACHE_FILE, vmDir, vmFile } from '../common/layout.js'
import { indexApi } from './core.js'
import { listBackupFolders, listVmFolders, openRepository } from './repository.js'

/** On a checked cache: the VM's metadata files that could not be read, `[{ id, reason }]`. */
export const UNREADABLE_HEADER = 'X-Brcache-Unreadable'

/**
 * On the index listing: when (ISO 8601) this server last verified the
 * index against every VM cache, or made it from them; absent when it has
 * not since it started, or cannot (see `keepsIndex`).
 */
export const VERIFIED_HEADER = 'X-Brcache-Verified-At'

const METADATA_NAME = /^\d{8}T\d{6}Z\.json$/

/** How a repository is named to whoever looks at the page: never with credentials. */
export function repositoryName(source) {
  if (typeof source !== 'string') return source?.root ?? 'repository'
  if (!source.startsWith('s3://')) return source
  return source.replace(/^s3:\/\/[^@/]*@/, 's3://')
}

/**
 * @param {string | object} source a folder, an s3:// URL or a handler
 * @param {{ repair: boolean, immutable: boolean, index: boolean, encryptionKey?: string, verifyEveryMs: number }} options
 */
export function servedRepository(source, { repair, immutable, index, encryptionKey, verifyEveryMs }) {
  // One object for the server's life: its background verifications are
  // bounded by verifyEveryMs from its creation (see Repository).
  let repository = openRepository(source, { immutable, encryptionKey, verifyEveryMs })
  const share = repository.handler
  // Asked before anything the server does with the repository: an S3
  // bucket's Object Lock is found out by a probe (the library's, once),
  // not by a flag.
  let immutability
  const isImmutable = () => {
    immutability ??= repository.isImmutable()
    return immutability
  }
  // Asked now, so that the first page finds it known.
  isImmutable()
  // Checks need to read the caches: not on an encrypted repository whose
  // key the server was not given (it serves them as they lie). Decided
  // once; an I/O failure is asked again.
  let readable
  async function decide() {
    let state = await repository.encryption()
    // A key given for the server's other repositories is not this one's.
    if (state.code === 'NOT_ENCRYPTED') {
      repository = openRepository(source, { immutable: await isImmutable(), verifyEveryMs })
      state = await repository.encryption()
    }
    return state
  }
  const encryption = () => {
    readable ??= decide().catch((error) => {
      readable = undefined
      throw error
    })
    return readable
  }
  const canCheck = async () => repair && !(await isImmutable()) && (await encryption()).readable
  // Whether this server makes the index and verifies it: it offers one
  // (not --no-index) and may write what its checks find (repair on, not
  // immutable, the caches readable).
  const keepsIndex = async () => index && (await canCheck())
  // The writable index, offered where the repository is not immutable.
  const offersIndex = async () => index && !(await isImmutable())

  /** The index folder's listing: its files, newest snapshot first, and the snapshot (null without one). */
  async function indexListing() {
    let names
    try {
      names = await share.list(INDEX_DIR)
    } catch (error) {
      if (error.code === 'ENOENT') return { files: [], snapshot: null }
      throw new HttpError(500, `cannot list ${INDEX_DIR}: ${error.message}`)
    }
    const plan = indexApi.readPlan(names)
    // A table's parts are read beside it; parts alone (a compaction between
    // its parts and its table) are no index yet.
    const files = [plan.snapshot, ...plan.oldSnapshots, ...plan.segments].filter(Boolean)
    return { files: files.length > 0 ? [...files, ...(plan.parts ?? [])] : [], snapshot: plan.snapshot ?? null }
  }

  /** The index files, newest snapshot first, from a fresh listing; 404 without an index. */
  async function indexFiles() {
    if (!(await offersIndex())) throw new HttpError(404, 'no repository index')
    const { files } = await indexListing()
    if (files.length === 0) throw new HttpError(404, 'no repository index')
    return files
  }

  // Work this server does beside its answers (making and verifying the
  // index), for settle().
  const background = new Set()
  function track(task) {
    const quiet = task.catch(() => {})
    background.add(quiet)
    quiet.finally(() => background.delete(quiet))
  }

  // The index this server made: as of when (what the caches said as its
  // listing began), the attempt under way, and when the last one began.
  let madeAsOf
  let making
  let madeTriedAt = -Infinity

  /**
   * Makes the index of a repository that has no snapshot, by the library's
   * own seed: a restore view from the caches, each checked against its
   * folder, whose follow-up makes the index from those it found true.
   * Resolves to whether there is a snapshot now.
   */
  function makeIndex() {
    making ??= (async () => {
      const started = Date.now()
      madeTriedAt = started
      try {
        const view = await repository.restoreView()
        await repository.settle()
        const { snapshot } = await indexListing()
        // From the index: someone made it meanwhile, as of a time not known.
        if (snapshot && !view.fromIndex) madeAsOf = started
        return Boolean(snapshot)
      } finally {
        making = undefined
      }
    })()
    return making
  }

  /** When this server last verified or made the index (ms), or undefined. */
  function verifiedAsOf() {
    const times = [madeAsOf, repository.verifiedAsOf].filter((t) => t !== undefined)
    return times.length === 0 ? undefined : Math.max(...times)
  }

  /**
   * After an index listing, in the background: the index made when there
   * is none (after a failed attempt, again once verifyEveryMs has passed),
   * else verified once verifyEveryMs has passed since the last
   * verification (Repository.verifyInBackground). So the page's poll of the
   * index folder keeps it caught up with what Xen Orchestra wrote, and a
   * server nobody looks at reads nothing.
   */
  function keepUp(snapshot) {
    track(
      (async () => {
        if (!(await keepsIndex())) return
        if (snapshot) repository.verifyInBackground()
        else if (!making && Date.now() - madeTriedAt >= verifyEveryMs) await makeIndex()
      })(),
    )
  }

  /**
   * `GET index`: the listing, with when the index was last verified.
   * `?verified=1` answers once a verification (or the making of the index)
   * that began after the request has caught the index up, or fails.
   */
  async function indexRoute(request, response) {
    if (!index) throw new HttpError(404, 'no repository index')
    const query = new URL(request.url ?? '', 'http://localhost').searchParams
    const verified = query.has('verified') && query.get('verified') !== '0'
    if (await isImmutable()) return epochsRoute(verified, request, response)
    if (verified) {
      if (!(await keepsIndex())) {
        throw new HttpError(409, 'this server does not verify the repository index (--no-repair, or an encrypted repository without its key)')
      }
      const arrived = Date.now()
      if (!(await indexListing()).snapshot) {
        // One under way began before this request: what it makes may miss
        // what came since, and a verification follows.
        await making?.catch(() => {})
        if (!(await indexListing()).snapshot) await makeIndex()
      }
      // (An index still missing is the 404 below.)
      const exists = Boolean((await indexListing()).snapshot)
      if (exists && !(verifiedAsOf() >= arrived)) await repository.verify()
      if (exists && !(verifiedAsOf() >= arrived)) {
        throw new HttpError(503, 'the repository index could not be caught up with the VM caches (see brcache check)')
      }
    }
    const { files, snapshot } = await indexListing()
    keepUp(snapshot)
    if (files.length === 0) throw new HttpError(404, 'no repository index')
    const asOf = verifiedAsOf()
    const stamp = asOf === undefined ? '' : new Date(asOf).toISOString()
    return jsonRevalidated(request, response, files, { headers: stamp ? { [VERIFIED_HEADER]: stamp } : {}, version: stamp })
  }

  // --- an immutable repository's index, read only ---------------------------

  /**
   * The index folder's epochs, sorted, as the core reads them
   * (crates/core/src/ops/journal.rs, `list_epochs`); none where the folder
   * holds a writable index's files, which that repository's brcache writers
   * keep instead: the library then lists every VM folder, and so does the
   * page, given no index.
   */
  async function epochs() {
    let names
    try {
      names = await share.list(INDEX_DIR)
    } catch (error) {
      if (error.code === 'ENOENT') return []
      throw new HttpError(500, `cannot list ${INDEX_DIR}: ${error.message}`)
    }
    const plan = indexApi.readPlan(names)
    if (plan.snapshot || plan.segments.length > 0) return []
    return names.filter(isEpochName).sort()
  }

  async function epochsRoute(verified, request, response) {
    if (verified) throw new HttpError(409, 'this server does not verify the index of an immutable repository: it writes nothing there')
    const listed = await epochs()
    if (listed.length === 0) throw new HttpError(404, 'no repository index')
    return jsonRevalidated(request, response, listed)
  }

  /**
   * An epoch folder's snapshots and segments (crates/core/src/index/epochs.rs
   * reads those only; temp files and anything else are left out), or
   * undefined when `epoch` is not an epoch's name or its folder is gone.
   * Only a name the core takes for an epoch is ever put in a path.
   */
  async function epochFiles(epoch) {
    if (!isEpochName(epoch)) return undefined
    const folder = `${INDEX_DIR}/${epoch}`
    let names
    try {
      names = await share.list(folder)
    } catch (error) {
      if (error.code === 'ENOENT') return undefined
      throw new HttpError(500, `cannot list ${folder}: ${error.message}`)
    }
    const plan = indexApi.readPlan(names)
    return [plan.snapshot, ...plan.oldSnapshots, ...plan.segments].filter(Boolean).sort()
  }

  async function epochRoute(epoch, request, response) {
    const files = await epochFiles(epoch)
    if (files === undefined) throw new HttpError(404, `${INDEX_DIR}/${epoch} is not an epoch of the index`)
    return jsonRevalidated(request, response, files)
  }

  async function epochFile(epoch, encoded, request, response) {
    let name
    try {
      name = decodeURIComponent(encoded)
    } catch {
      throw new HttpError(400, 'not a file name')
    }
    // Only a name the epoch's listing gives: compared, never resolved.
    if (!(await epochFiles(epoch))?.includes(name)) throw new HttpError(404, `${INDEX_DIR}/${epoch}/${name} is not an index file`)
    const file = `${INDEX_DIR}/${epoch}/${name}`
    const { info, bytes } = await readShared(file, `${file} is gone`)
    send(request, response, bytes, { type: 'application/octet-stream', mtimeMs: info.mtimeMs })
  }

  /**
   * A VM folder's metadata files, on an immutable repository only: there
   * the page reads a VM the index does not know, or doubts, from its
   * folder, as the library does. Elsewhere the server checks caches and
   * the page reads those.
   */
  async function vmFolder(vm, request, response) {
    if (!(await isImmutable())) throw notFound()
    await listedVm(vm)
    let names
    try {
      names = await share.list(vmDir(vm))
    } catch (error) {
      if (error.code === 'ENOENT') throw new HttpError(404, `VM ${vm} has no folder`)
      throw new HttpError(500, `cannot list the folder of VM ${vm}: ${error.message}`)
    }
    return jsonRevalidated(request, response, names.filter((name) => METADATA_NAME.test(name)).sort())
  }

  /** A file of the share with its date; `missing` is the 404's message. */
  async function readShared(file, missing) {
    try {
      // The date first: should a writer replace the file in between, the
      // date is the older one, and If-Modified-Since errs towards a 200.
      const info = await share.stat(file)
      return { info, bytes: await share.readFile(file) }
    } catch (error) {
      if (error.code === 'ENOENT') throw new HttpError(404, missing)
      throw new HttpError(500, `cannot read ${file}: ${error.message}`)
    }
  }

  async function indexFile(name, request, response) {
    // Only a name the listing gives: compared, never resolved.
    if (!(await indexFiles()).includes(name)) throw new HttpError(404, `${INDEX_DIR}/${name} is not an index file`)
    const file = `${INDEX_DIR}/${name}`
    // A 404 if compacted away since the listing: the page reads the index again.
    const { info, bytes } = await readShared(file, `${file} is gone`)
    send(request, response, bytes, { type: 'application/octet-stream', mtimeMs: info.mtimeMs })
  }

  async function listedVm(vm) {
    // Only a VM the repository lists: the name is compared, never resolved.
    if (!(await listVmFolders(share)).includes(vm)) throw notFound()
  }

  // Checks by VM, coalesced: requests for a cache that is being checked
  // share the next check rather than queue for the VM's lock one after the
  // other (200 pages polling one VM would otherwise take turns for many
  // seconds). The next, not the running one: that one may have listed the
  // folder before the request came, and every answer must be checked after
  // its request arrived. So at most two checks of a VM at a time.
  const checks = new Map()
  const ignore = () => {}
  function startCheck(vm, state) {
    const running = repository.checkVm(vm, { repair: true })
    state.running = running
    running
      .finally(() => {
        if (state.running !== running) return
        state.running = undefined
        if (!state.next) checks.delete(vm)
      })
      .catch(ignore)
    return running
  }
  function check(vm) {
    let state = checks.get(vm)
    if (!state) checks.set(vm, (state = {}))
    if (!state.running) return startCheck(vm, state)
    state.next ??= state.running.then(ignore, ignore).then(() => {
      state.next = undefined
      return startCheck(vm, state)
    })
    return state.next
  }

  async function vmCache(vm, request, response) {
    await listedVm(vm)
    const headers = {}
    if (await canCheck()) {
      let report
      try {
        report = await check(vm)
      } catch (error) {
        throw new HttpError(503, `cannot check the cache of VM ${vm}: ${error.message}`)
      }
      // Metadata files the cache leaves out because they cannot be read:
      // the page says so on the VM's row, rather than show a shorter list
      // as if it were whole. (URI-encoded: a header is Latin-1.)
      if (report.unreadable.length > 0) headers[UNREADABLE_HEADER] = encodeURIComponent(JSON.stringify(report.unreadable))
    }
    const { info, bytes } = await readShared(vmFile(vm, CACHE_FILE), `VM ${vm} has no cache`)
    // No Content-Encoding: the page must get the gzip bytes themselves.
    send(request, response, bytes, { type: 'application/gzip', mtimeMs: info.mtimeMs, headers })
  }

  /** A restore point's metadata file, as it lies (encrypted on an encrypted repository), to download. */
  async function metadataFile(vm, name, request, response) {
    if (!METADATA_NAME.test(name)) throw notFound()
    await listedVm(vm)
    let names
    try {
      names = await share.list(vmDir(vm))
    } catch (error) {
      throw new HttpError(500, `cannot list the folder of VM ${vm}: ${error.message}`)
    }
    if (!names.includes(name)) throw new HttpError(404, `VM ${vm} has no restore point ${name}`)
    const { info, bytes } = await readShared(vmFile(vm, name), `${vmFile(vm, name)} is gone`)
    send(request, response, bytes, {
      type: 'application/octet-stream',
      mtimeMs: info.mtimeMs,
      headers: { 'Content-Disposition': `attachment; filename="${vm}-${name}"` },
    })
  }

  return {
    name: repositoryName(source),
    /**
     * Whether its share has locks: without (S3), the page lists through the
     * index without the VM folders' listing, as the library does there.
     */
    locks: share.supportsLocks !== false,
    /** Whether the repository is immutable (opened so, or an S3 bucket with Object Lock): the server writes nothing there. */
    isImmutable,
    /**
     * Fails now on a missing or unmounted repository, or on a wrong key:
     * `{ vms, encryption, immutable }`, `immutable` being false or `{ index }`:
     * whether it has an index of create-only files the page reads.
     */
    async start() {
      const state = await encryption()
      if (!state.readable && encryptionKey !== undefined && state.algorithm) throw new Error(state.reason)
      const vms = await listVmFolders(share)
      const immutable = (await isImmutable()) && { index: index && (await epochs()).length > 0 }
      return { vms, encryption: state, repository, immutable }
    },
    /**
     * Before the first page (`brcache serve` runs it before it listens):
     * the index made when there is none, else verified, so that the first
     * page reads an index and what Xen Orchestra wrote while no brcache ran
     * shows on it. `{ made }` or `{ check }` (the verification's report);
     * undefined when this server keeps no index.
     */
    async prepareIndex() {
      if (!(await keepsIndex())) return undefined
      if (!(await indexListing()).snapshot) return { made: await makeIndex() }
      return { check: await repository.verify() }
    },
    /** Waits for what the server does in the background (tests, and a clean shutdown). */
    async settle() {
      while (background.size > 0) await Promise.all([...background])
      await repository.settle()
    },
    /** Answers `rest`, the URL path after `/api/r/<id>/` (or after `/api/`). */
    async route(rest, request, response) {
      // `?locks=1`: with `<vm>.lock` for each VM whose lock shows, the
      // listing the page's core reads, so that it reads a locked VM from
      // its (checked) cache rather than trust the index for it. Plain, the
      // VM folders alone, for clients that take every name for a VM.
      if (rest === 'vms') {
        const locks = new URL(request.url ?? '', 'http://localhost').searchParams.get('locks')
        return jsonRevalidated(request, response, await (locks === '1' ? listBackupFolders(share) : listVmFolders(share)))
      }
      // The page reads an encrypted repository's two root files to know the
      // algorithm and to check the key it is given: both as they lie (the
      // second is encrypted). A 404 for a plaintext repository.
      if (rest === DESCRIPTOR_FILE || rest === KEY_CHECK_FILE) {
        const { info, bytes } = await readShared(rest, `no ${rest}: the repository is not encrypted`)
        return send(request, response, bytes, { type: 'application/octet-stream', mtimeMs: info.mtimeMs })
      }
      if (rest === 'index') return indexRoute(request, response)
      const indexMatch = /^index\/([^/]+)$/.exec(rest)
      if (indexMatch) {
        if (!index) throw new HttpError(404, 'no repository index')
        // On an immutable repository, an epoch folder's listing.
        if (await isImmutable()) return epochRoute(indexMatch[1], request, response)
        return indexFile(indexMatch[1], request, response)
      }
      const epochMatch = /^index\/([^/]+)\/([^/]+)$/.exec(rest)
      if (epochMatch) {
        if (!index || !(await isImmutable())) throw notFound()
        return epochFile(epochMatch[1], epochMatch[2], request, response)
      }
      const cacheMatch = /^vms\/([^/]+)\/cache$/.exec(rest)
      if (cacheMatch) return vmCache(cacheMatch[1], request, response)
      const folderMatch = /^vms\/([^/]+)\/backups$/.exec(rest)
      if (folderMatch) return vmFolder(folderMatch[1], request, response)
      const metadataMatch = /^vms\/([^/]+)\/backups\/([^/]+)$/.exec(rest)
      if (metadataMatch) return metadataFile(metadataMatch[1], metadataMatch[2], request, response)
      throw notFound()
    },
  }
}
