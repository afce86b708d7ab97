// The restore view page. For each repository the server offers, it runs
// the core's operations over the server's HTTP share (js/web/reader.js):
// with a repository index, one vmTable operation, in a worker, whose
// answer fills the whole table from the index's table (a row per VM), and
// a vmRestoreView operation for the restore points of a VM the user opens;
// without one, a listVm operation per VM cache, six at a time, so that
// rows arrive as they come. What an index, a
// cache or a listing means is the core's to say, as on the server. A VM
// whose payload fails shows its error on its own row, and a repository
// that fails shows its error on its own line: the others go on.
//
// An encrypted repository is read through the same EncryptedShare as on
// the server: the page asks for its key, checks it against metadata.json,
// and decrypts every file here. The key stays in this page's memory.
//
// Once loaded, the page watches for changes on its own: the index folder's
// listing every few seconds (one small request, a 304 while nothing
// changed), or without an index the VM caches now and then (304s too) and
// whether an index has appeared (`brcache serve` makes one), and the
// Refresh button does the same at once. The server verifies the index
// against the VM caches in the background; the page says when it last did.
//
// On an immutable repository (the server says which), the page lists as
// the library does there: through its index of create-only files, or
// without one from the VM folders; the server checks no cache there.

import { EncryptedShare, encryptionApi, init } from '../browser.js'
import { mapLimit } from '../common/concurrency.js'
import { BACKUP_DIR, CACHE_FILE, vmDir, vmFile } from '../common/layout.js'
import { showDetails } from './details.js'
import { describeRow, describeVm, formatBytes, formatDate } from '../common/format.js'
import { httpError, httpShare } from './http-share.js'
import { CONCURRENCY, listFolder, listIndex, listVm, listVms, readView, readVm } from './reader.js'
import { createVmTable } from './table.js'

const POLL_INDEX_MS = 5_000
const POLL_CACHES_MS = 30_000

const $ = (id) => document.getElementById(id)
const status = $('status')
const verified = $('verified')
const progress = $('progress')
const details = $('details')
const list = $('repositories')

const repositories = []
const table = createVmTable($('vms'), {
  empty: $('empty'),
  onSelect: (row) => {
    showDetails(details, row, { download: (summary) => download(row, summary) })
    loadPoints(row)
  },
})
$('filter').addEventListener('input', (event) => table.setFilter(event.target.value))

const api = (path) => new URL(path, document.baseURI)

/** A form's next submission (its input's value), or null when `skip` is clicked. */
function submitted(form, input, skip) {
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener('submit', onSubmit)
      skip?.removeEventListener('click', onSkip)
      resolve(value)
    }
    const onSubmit = (event) => {
      event.preventDefault()
      done(input.value)
    }
    const onSkip = () => done(null)
    form.addEventListener('submit', onSubmit)
    skip?.addEventListener('click', onSkip)
  })
}

/**
 * On a server with a token, once it answered 401: the sign-in, until the
 * server sets the session cookie every later request carries.
 */
async function signIn() {
  const form = $('sign-in')
  const input = $('token')
  const error = $('sign-in-error')
  status.textContent = 'Sign in to see the restore view'
  progress.hidden = true
  form.hidden = false
  input.focus()
  for (;;) {
    const token = await submitted(form, input)
    const answer = await fetch(api('api/sign-in'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token }),
    })
    if (answer.ok) {
      form.hidden = true
      input.value = ''
      progress.hidden = false
      status.textContent = 'Loading…'
      return
    }
    if (answer.status !== 401 && answer.status !== 429) throw await httpError(answer)
    error.textContent = answer.status === 429 ? (await answer.json()).error : 'Wrong token'
    error.hidden = false
    input.select()
  }
}

// One key prompt at a time, however many repositories are encrypted.
let unlocking = Promise.resolve()

/** The key the user types for `repository`, checked against metadata.json: the share that decrypts, or null (skipped). */
function unlock(repository) {
  const turn = unlocking.then(async () => {
    const form = $('unlock')
    const input = $('key')
    const error = $('unlock-error')
    const { algorithm } = await new EncryptedShare(repository.http, encryptionApi).describe()
    $('algorithm').textContent = algorithm
    $('unlock-repository').textContent = repository.name
    error.hidden = true
    status.textContent = 'Encrypted repository: enter its key'
    progress.hidden = true
    form.hidden = false
    input.focus()
    try {
      for (;;) {
        const key = await submitted(form, input, $('unlock-skip'))
        if (key === null) return null
        const decrypting = new EncryptedShare(repository.http, encryptionApi, key)
        try {
          await decrypting.cipher()
          return { share: decrypting, key }
        } catch (failure) {
          if (failure.code !== 'WRONG_ENCRYPTION_KEY' && failure.code !== 'INVALID_ENCRYPTION_KEY') throw failure
          error.textContent = failure.message
          error.hidden = false
          input.select()
        }
      }
    } finally {
      form.hidden = true
      input.value = ''
      progress.hidden = false
    }
  })
  unlocking = turn.catch(() => {})
  return turn
}

// The restore view is read in a worker (js/web/index-worker.js) where the
// page can start one, so that no long task holds the page while an index
// is decoded; else here, by the same code.
let worker
let requests = 0
const answers = new Map()
try {
  worker = new Worker(new URL('./index-worker.js', import.meta.url), { type: 'module' })
  worker.addEventListener('message', ({ data }) => {
    answers.get(data.id)?.(data)
    answers.delete(data.id)
  })
} catch {
  worker = undefined
}

async function readInWorker({ base, key, immutable, locks }) {
  const id = ++requests
  const answer = await new Promise((resolve) => {
    answers.set(id, resolve)
    worker.postMessage({ id, base: String(base), key, immutable, locks })
  })
  if (answer.error) throw Object.assign(new Error(answer.error.message), answer.error)
  return answer.result
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])
const sameNames = (a, b) => (a === null || b === null ? a === b : same([...a].sort(), [...b].sort()))

/** One repository of the server, as this page reads and watches it. */
class RepositoryView {
  constructor({ id, name, immutable, locks }) {
    this.id = id
    this.name = name
    this.immutable = immutable === true
    // Without locks (S3), no VM folder listing beside the index (reader.js).
    this.locks = locks !== false
    this.base = new URL(`api/r/${id}/`, document.baseURI)
    this.http = httpShare(this.base)
    this.encryptionKey = undefined
    this.share = undefined
    this.vms = []
    // The server's listings of the VM folders and of the index folder, as last read.
    this.listed = undefined
    this.source = undefined
    // When the server last verified the index this page read (ms), if it said.
    this.verifiedAt = undefined
    this.error = undefined
    // On an immutable repository without an index, each VM folder's
    // listing as last read: a folder is read again only once it changed.
    this.folders = new Map()
  }

  key(vm) {
    return `${this.id}/${vm}`
  }

  /** The restore view (js/web/reader.js), in the worker or here. */
  async read(share, key) {
    try {
      const { immutable, locks } = this
      return worker ? await readInWorker({ base: this.base, key, immutable, locks }) : await readView(share, this.http, { immutable, locks })
    } catch (error) {
      // Neither the repository's encryption nor a sign-in to come is a
      // reason to read VM by VM: say them.
      if (error.code === 'ENCRYPTED' || error.status === 401) throw error
      // One VM's failure fails the whole operation: VM by VM, it fails
      // its own row only.
      console.warn('brcache: the restore view could not be read at once, reading every VM cache instead', error)
      const folders = await this.http.list(BACKUP_DIR)
      return { listed: { folders, index: undefined }, vms: await listVms(share, Promise.resolve(folders)) }
    }
  }

  /** Reads the repository through its encryption: plaintext, or the key the user gives. */
  async open() {
    // Read as plaintext while encryption.json is read (its answer holds the
    // others back): an encrypted repository then asks for its key.
    let share = new EncryptedShare(this.http, encryptionApi)
    const reading = this.read(share)
    reading.catch(() => {})
    const locked = await share.cipher().then(
      () => false,
      (error) => (error.code === 'ENCRYPTED' ? true : Promise.reject(error)),
    )
    let read
    if (locked) {
      const unlocked = await unlock(this)
      if (!unlocked) throw Object.assign(new Error('encrypted, and no key was given: Refresh to enter it'), { code: 'LOCKED' })
      ;({ share, key: this.encryptionKey } = unlocked)
      read = await this.read(share, this.encryptionKey)
    } else {
      read = await reading
    }
    this.share = share
    return read
  }

  /** What the page shows of the repository: every VM's row, from the index or the caches. */
  async load(onProgress) {
    await this.show(await this.open(), onProgress)
  }

  /** Shows what `read` (js/web/reader.js) answered; VMs without its view are fetched one by one. */
  async show({ listed, vms, view, served }, onProgress = () => {}) {
    const gone = this.vms.filter((vm) => !vms.includes(vm))
    for (const vm of gone) table.remove(this.key(vm))
    // Rows no longer as their folders were read (loadFolder).
    for (const vm of view ? vms : gone) this.folders.delete(vm)
    for (const vm of vms) if (!table.has(this.key(vm))) table.add(this.key(vm), { vm, repository: this.name })
    this.vms = vms
    this.listed = listed
    this.source = view?.fromIndex ? 'index' : this.immutable ? 'folders' : 'caches'
    this.verifiedAt = view?.verifiedAt
    let pending = vms
    if (view) {
      pending = []
      // The table's rows; a VM's restore points when it is opened (loadPoints).
      for (const vm of vms) {
        table.update(this.key(vm), { summaries: undefined, pointsError: undefined, info: describeRow(view.rows[vm]), unreadable: served[vm] ?? [] })
      }
    }
    let done = vms.length - pending.length
    onProgress(done, vms.length)
    await mapLimit(pending, CONCURRENCY, async (vm) => {
      await this.loadVm(vm)
      onProgress(++done, vms.length)
    })
  }

  /** A VM's row from its cache; `ifChanged`: not decoded again when the server says it is the same. */
  async loadVm(vm, { ifChanged = false } = {}) {
    if (this.immutable) return this.loadFolder(vm)
    const file = vmFile(vm, CACHE_FILE)
    const before = this.http.etag(file)
    try {
      // Read here rather than by the operation: its ETag says whether to
      // decode, and a failed read (a 404 included) is the row's error.
      const bytes = await this.share.readFile(file)
      if (ifChanged && before !== undefined && this.http.etag(file) === before) return
      const summaries = await listVm(this.share, vm, bytes)
      table.update(this.key(vm), { summaries, info: describeVm(summaries), unreadable: this.http.unreadable(file) })
    } catch (error) {
      table.update(this.key(vm), { error: { message: error.message, code: error.code } })
    }
  }

  /**
   * On an immutable repository, a VM's row from its folder, by the same
   * operation the library lists it with there (its metadata files read,
   * and a cache Xen Orchestra left checked against them). Metadata files
   * are create-only there: a folder listed as when its row was read holds
   * the same restore points, so it is not read again, Refresh included.
   */
  async loadFolder(vm) {
    try {
      const listing = await this.share.list(vmDir(vm))
      const before = this.folders.get(vm)
      if (before !== undefined && same(listing, before)) return
      const { summaries, unreadable } = await listFolder(this.share, vm, listing)
      // A file that did not read is tried again at the next look.
      if (unreadable.length === 0) this.folders.set(vm, listing)
      else this.folders.delete(vm)
      table.update(this.key(vm), { summaries, info: describeVm(summaries), unreadable })
    } catch (error) {
      this.folders.delete(vm)
      table.update(this.key(vm), { error: { message: error.message, code: error.code } })
    }
  }

  /**
   * What changed since the last look: with an index, the server's listings
   * say whether anything did (the restore view is read again only then);
   * without one, every cache is asked for again (a 304 when unchanged).
   */
  async refresh({ force = false } = {}) {
    // A repository that failed to open is tried again at a click only (it
    // may ask for a key).
    if (!this.share) return force ? this.load() : undefined
    const { immutable } = this
    // Through the index without locks, the VMs are the index's (reader.js).
    const folders = this.source === 'index' && !this.locks ? null : await this.http.list(BACKUP_DIR)
    if (this.source === 'index') {
      const { names: index } = await listIndex(this.share, { immutable })
      this.verifiedAt = this.http.verifiedAt()
      if (!force && sameNames(folders, this.listed.folders) && sameNames(index, this.listed.index)) return
      return this.show(await this.read(this.share, this.encryptionKey))
    }
    if (this.listed.index === null) {
      // The server makes the index of a repository that has none at its
      // first look (on an immutable one, the library's next listing does):
      // read it from then on, as the next load would.
      const { names: index } = await listIndex(this.share, { immutable })
      if (index !== null) return this.show(await this.read(this.share, this.encryptionKey))
    }
    const vms = await listVms(this.share, Promise.resolve(folders))
    for (const vm of this.vms.filter((v) => !vms.includes(v))) {
      table.remove(this.key(vm))
      this.folders.delete(vm)
    }
    for (const vm of vms.filter((v) => !this.vms.includes(v))) table.add(this.key(vm), { vm, repository: this.name })
    const fresh = new Set(vms.filter((v) => !this.vms.includes(v)))
    this.vms = vms
    this.listed = { ...this.listed, folders }
    await mapLimit(vms, CONCURRENCY, (vm) => this.loadVm(vm, { ifChanged: !force && !fresh.has(vm) }))
  }
}

/**
 * The restore points of a VM shown from the index's table, once it is
 * opened: the core's vmRestoreView (its table, that VM's part and its
 * segments), shown in the details when they come. A row the table
 * updates meanwhile is asked again if it is still open.
 */
async function loadPoints(row) {
  if (row.state !== 'ok' || row.summaries !== undefined || row.pointsError !== undefined || row.loadingPoints) return
  const repository = repositories.find((r) => r.key(row.vm) === row.key)
  if (!repository?.share) return
  const asked = row.info
  row.loadingPoints = true
  let result
  try {
    result = { summaries: await readVm(repository.share, row.vm, { immutable: repository.immutable, locks: repository.locks }) }
  } catch (error) {
    result = { pointsError: error.message }
  } finally {
    row.loadingPoints = false
  }
  if (!table.has(row.key)) return
  if (row.info !== asked) {
    if (row.tr.getAttribute('aria-selected') === 'true') loadPoints(row)
    return
  }
  table.update(row.key, result)
}

async function download(row, summary) {
  const repository = repositories.find((r) => r.key(row.vm) === row.key)
  const name = summary.id.split('/').at(-1)
  // Through the repository's share: decrypted here on an encrypted repository.
  const bytes = await repository.share.readFile(vmFile(row.vm, name))
  const link = document.createElement('a')
  link.href = URL.createObjectURL(new Blob([bytes], { type: 'application/json' }))
  link.download = `${row.vm}-${name}`
  link.click()
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000)
}

function showProgress(done, total) {
  progress.max = Math.max(total, 1)
  progress.value = done
  status.textContent = `${done} / ${total} VMs`
}

function showTotals() {
  const rows = table.rows
  const ok = rows.filter((row) => row.state === 'ok')
  const points = ok.reduce((n, row) => n + row.info.count, 0)
  const size = ok.reduce((n, row) => n + row.info.size, 0)
  const failed = rows.length - ok.length
  const unreadable = ok.reduce((n, row) => n + (row.unreadable?.length ?? 0), 0)
  const broken = repositories.filter((r) => r.error).length
  const sources = new Set(repositories.filter((r) => !r.error).map((r) => r.source))
  document.body.dataset.source = sources.size === 1 ? [...sources][0] : 'mixed'
  status.textContent =
    `${rows.length} VM${rows.length === 1 ? '' : 's'}, ${points} restore points, ${formatBytes(size)}` +
    (failed ? ` · ${failed} VM${failed === 1 ? '' : 's'} could not be read` : '') +
    (unreadable ? ` · ${unreadable} metadata file${unreadable === 1 ? '' : 's'} could not be read` : '') +
    (broken ? ` · ${broken} repositor${broken === 1 ? 'y' : 'ies'} could not be read` : '') +
    (sources.size === 1 && sources.has('index') ? ' · from the repository index' : '')
  status.classList.toggle('has-errors', failed + unreadable + broken > 0)
  showVerified(repositories.filter((r) => !r.error && r.source === 'index'))
  progress.hidden = true
  // One line per repository when there are several: its counts, or its error.
  list.hidden = repositories.length < 2
  list.replaceChildren(
    ...repositories.map((repository) => {
      const li = document.createElement('li')
      li.dataset.repository = repository.name
      if (repository.error) {
        li.className = 'failed'
        li.textContent = `${repository.name}: ${repository.error.message}`
      } else {
        const mine = ok.filter((row) => row.repository === repository.name && row.key.startsWith(`${repository.id}/`))
        li.textContent =
          `${repository.name}: ${repository.vms.length} VMs, ${mine.reduce((n, row) => n + row.info.count, 0)} restore points` +
          (repository.source === 'index' ? `, ${repository.immutable ? IMMUTABLE_TEXT : verifiedText(repository.verifiedAt)}` : '')
      }
      return li
    }),
  )
}

const IMMUTABLE_TEXT = 'immutable: index not verified by the server'
const verifiedText = (at) => (at === undefined ? 'index not verified yet' : `index verified ${formatDate(at)} UTC`)

/**
 * Whether the index answers were verified, discreetly: the server checks
 * the index against every VM cache now and then, and what Xen Orchestra
 * wrote since its last check may not show yet. The oldest of the indexed
 * repositories, the weakest promise.
 */
function showVerified(indexed) {
  verified.hidden = indexed.length === 0
  if (verified.hidden) return
  if (indexed.some((r) => r.immutable)) {
    // The server writes nothing there, so it never catches that index up.
    verified.textContent = IMMUTABLE_TEXT
    verified.title =
      'The server writes nothing on an immutable repository, so it does not catch its index up with what Xen Orchestra wrote behind it: that shows once a verification of the library (brcache list --verify) has published it.'
    delete document.body.dataset.verifiedAt
    return
  }
  const times = indexed.map((r) => r.verifiedAt)
  const oldest = times.includes(undefined) ? undefined : Math.min(...times)
  verified.textContent = verifiedText(oldest)
  verified.title =
    oldest === undefined
      ? 'The server has not yet checked the repository index against the VM caches: what Xen Orchestra wrote without brcache may be missing until it does (within its --verify-every window while this page is open).'
      : 'When the server last checked the repository index against every VM cache: what Xen Orchestra wrote since may show only after its next check.'
  if (oldest === undefined) delete document.body.dataset.verifiedAt
  else document.body.dataset.verifiedAt = new Date(oldest).toISOString()
}

/** Loads every repository; one that fails says so and holds no other back. */
async function loadAll() {
  const response = await fetch(api('api/repositories'))
  if (!response.ok) throw await httpError(response)
  for (const served of await response.json()) repositories.push(new RepositoryView(served))
  $('vms').dataset.repositories = repositories.length > 1 ? 'many' : 'one'
  const counts = new Map()
  const onProgress = (repository) => (done, total) => {
    counts.set(repository, [done, total])
    const all = [...counts.values()].reduce(([d, t], [dd, tt]) => [d + dd, t + tt], [0, 0])
    showProgress(...all)
  }
  await Promise.all(
    repositories.map((repository) =>
      repository.load(onProgress(repository)).catch((error) => {
        if (error.status === 401) throw error
        repository.error = error
      }),
    ),
  )
  await table.settle()
  showTotals()
}

async function refreshAll(options) {
  await Promise.all(
    repositories.map(async (repository) => {
      try {
        await repository.refresh(options)
        repository.error = undefined
      } catch (error) {
        if (error.status === 401) return
        repository.error = error
      }
    }),
  )
  await table.settle()
  showTotals()
}

/** Polls each repository at its pace, never two refreshes of one at once. */
function watch() {
  let running = false
  const tick = async (options) => {
    if (running) return
    running = true
    try {
      await refreshAll(options)
    } finally {
      running = false
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed ?? 0) + 1)
    }
  }
  // The pace is chosen again after each look: a repository may have gained an index.
  const next = () => setTimeout(() => tick().finally(next), repositories.some((r) => r.source === 'index') ? POLL_INDEX_MS : POLL_CACHES_MS)
  next()
  $('refresh').addEventListener('click', () => tick({ force: true }))
}

/** The page's work; a 401 (a server with a token) signs in, then starts again. */
async function main() {
  await init()
  try {
    await loadAll()
  } catch (error) {
    if (error.status !== 401) throw error
    repositories.length = 0
    await signIn()
    await loadAll()
  }
  watch()
}

main()
  .catch((error) => {
    status.textContent = `The restore view could not load: ${error.message}`
    status.classList.add('has-errors')
    document.body.dataset.failed = 'true'
  })
  .finally(() => {
    document.body.dataset.ready = 'true'
  })
