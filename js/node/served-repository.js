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

import { DESCRIPTOR_FILE, KEY_CHECK_FILE } from '../common/encryption.js'
import { HttpError, jsonRevalidated, notFound, send } from './http.js'
import { INDEX_DIR } from '../common/repo-index.js'
import { CACHE_FILE, vmDir, vmFile } from '../common/layout.js'
import { indexApi } from './core.js'
import { listVmFolders, openRepository } from './repository.js'

/** On a checked cache: the VM's metadata files that could not be read, `[{ id, reason }]`. */
export const UNREADABLE_HEADER = 'X-Brcache-Unreadable'

const METADATA_NAME = /^\d{8}T\d{6}Z\.json$/

/** How a repository is named to whoever looks at the page: never with credentials. */
export function repositoryName(source) {
  if (typeof source !== 'string') return source?.root ?? 'repository'
  if (!source.startsWith('s3://')) return source
  return source.replace(/^s3:\/\/[^@/]*@/, 's3://')
}

/**
 * @param {string | object} source a folder, an s3:// URL or a handler
 * @param {{ repair: boolean, immutable: boolean, index: boolean, encryptionKey?: string }} options
 */
export function servedRepository(source, { repair, immutable, index, encryptionKey }) {
  let repository = openRepository(source, { immutable, encryptionKey })
  const share = repository.handler
  const offerIndex = index && repository.usesIndex
  // Checks need to read the caches: not on an encrypted repository whose
  // key the server was not given (it serves them as they lie). Decided
  // once; an I/O failure is asked again.
  let readable
  async function decide() {
    let state = await repository.encryption()
    // A key given for the server's other repositories is not this one's.
    if (state.code === 'NOT_ENCRYPTED') {
      repository = openRepository(source, { immutable })
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
  const canCheck = async () => repair && !immutable && (await encryption()).readable

  /** The index files, newest snapshot first, from a fresh listing; 404 without an index. */
  async function indexFiles() {
    if (!offerIndex) throw new HttpError(404, 'no repository index')
    let names
    try {
      names = await share.list(INDEX_DIR)
    } catch (error) {
      if (error.code === 'ENOENT') throw new HttpError(404, 'no repository index')
      throw new HttpError(500, `cannot list ${INDEX_DIR}: ${error.message}`)
    }
    const plan = indexApi.readPlan(names)
    return [plan.snapshot, ...plan.oldSnapshots, ...plan.segments].filter(Boolean)
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
    /** Fails now on a missing or unmounted repository, or on a wrong key: `{ vms, encryption }`. */
    async start() {
      const state = await encryption()
      if (!state.readable && encryptionKey !== undefined && state.algorithm) throw new Error(state.reason)
      return { vms: await listVmFolders(share), encryption: state, repository }
    },
    /** Answers `rest`, the URL path after `/api/r/<id>/` (or after `/api/`). */
    async route(rest, request, response) {
      if (rest === 'vms') return jsonRevalidated(request, response, await listVmFolders(share))
      // The page reads an encrypted repository's two root files to know the
      // algorithm and to check the key it is given: both as they lie (the
      // second is encrypted). A 404 for a plaintext repository.
      if (rest === DESCRIPTOR_FILE || rest === KEY_CHECK_FILE) {
        const { info, bytes } = await readShared(rest, `no ${rest}: the repository is not encrypted`)
        return send(request, response, bytes, { type: 'application/octet-stream', mtimeMs: info.mtimeMs })
      }
      if (rest === 'index') return jsonRevalidated(request, response, await indexFiles())
      const indexMatch = /^index\/([^/]+)$/.exec(rest)
      if (indexMatch) return indexFile(indexMatch[1], request, response)
      const cacheMatch = /^vms\/([^/]+)\/cache$/.exec(rest)
      if (cacheMatch) return vmCache(cacheMatch[1], request, response)
      const metadataMatch = /^vms\/([^/]+)\/backups\/([^/]+)$/.exec(rest)
      if (metadataMatch) return metadataFile(metadataMatch[1], metadataMatch[2], request, response)
      throw notFound()
    },
  }
}
