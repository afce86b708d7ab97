// The restore view page: lists the repository's VMs and reads the
// repository index (a snapshot and a few segments, whatever the VM count),
// decoding it here with the wasm build. Without an index, or for a VM the
// index does not know (a VM Xen Orchestra backed up behind its back), it
// fetches the VM's cache.json.gz as it lies on the share and decodes that,
// straight to the restore view's summaries (never full records). A VM whose
// payload fails shows its error on its own row; the others go on.
//
// An encrypted repository is read through the same EncryptedShare as on
// the server: the page asks for the key, checks it against metadata.json,
// and decrypts every file here. The key stays in this page's memory.

import { EncryptedShare, IndexStore, encryptionApi, indexApi, init, summariesOf } from '../browser.js'
import { mapLimit } from '../concurrency.js'
import { CACHE_FILE, vmFile } from '../layout.js'
import { showDetails } from './details.js'
import { describeVm, formatBytes } from './format.js'
import { httpError, httpShare } from './http-share.js'
import { createVmTable } from './table.js'

// Browsers open about six connections per host over HTTP/1.1: more in
// flight would only queue, and decoding keeps up with six.
const CONCURRENCY = 6

const $ = (id) => document.getElementById(id)
const status = $('status')
const progress = $('progress')
const details = $('details')

const table = createVmTable($('vms'), { empty: $('empty'), onSelect: (row) => showDetails(details, row) })
$('filter').addEventListener('input', (event) => table.setFilter(event.target.value))

const api = (path) => new URL(path, document.baseURI)

/**
 * The repository index, or undefined when there is none or it cannot be
 * used: then every VM comes from its cache, as the server's listings do.
 */
async function readIndex(share) {
  const log = { warn: (message, details) => console.warn(message, details), debug() {} }
  try {
    const index = await new IndexStore(share, indexApi, log).read()
    // Segments without a snapshot are not the whole view.
    return index?.plan.snapshot ? index : undefined
  } catch (error) {
    // Neither the repository's encryption nor a sign-in to come is a
    // reason to do without the index: say them.
    if (error.code === 'ENCRYPTED' || error.status === 401) throw error
    console.warn('brcache: the repository index cannot be used, reading every VM cache instead', error)
    return undefined
  }
}

async function loadVm(http, share, vm) {
  // Named as on the share, so an error reads as `brcache check` would say it.
  const file = vmFile(vm, CACHE_FILE)
  const summaries = summariesOf(vm, await share.readFile(file), undefined, { name: file })
  return { summaries, info: describeVm(summaries), unreadable: http.unreadable(file) }
}

/** A form's next submission: its input's value. */
function submitted(form, input) {
  return new Promise((resolve) => {
    form.addEventListener(
      'submit',
      (event) => {
        event.preventDefault()
        resolve(input.value)
      },
      { once: true },
    )
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

/** The key the user types, checked against metadata.json: the share that decrypts. */
async function unlock(share) {
  const form = $('unlock')
  const input = $('key')
  const error = $('unlock-error')
  const { algorithm } = await new EncryptedShare(share, encryptionApi).describe()
  $('algorithm').textContent = algorithm
  status.textContent = 'Encrypted repository: enter its key'
  progress.hidden = true
  form.hidden = false
  input.focus()
  for (;;) {
    const key = await submitted(form, input)
    const decrypting = new EncryptedShare(share, encryptionApi, key)
    try {
      await decrypting.cipher()
      form.hidden = true
      input.value = ''
      progress.hidden = false
      return decrypting
    } catch (failure) {
      if (failure.code !== 'WRONG_ENCRYPTION_KEY' && failure.code !== 'INVALID_ENCRYPTION_KEY') throw failure
      error.textContent = failure.message
      error.hidden = false
      input.select()
    }
  }
}

function showProgress(done, total) {
  progress.max = Math.max(total, 1)
  progress.value = done
  status.textContent = `${done} / ${total} VMs`
}

function showTotals(source) {
  const rows = table.rows
  const ok = rows.filter((row) => row.state === 'ok')
  const points = ok.reduce((n, row) => n + row.info.count, 0)
  const size = ok.reduce((n, row) => n + row.info.size, 0)
  const failed = rows.length - ok.length
  const unreadable = ok.reduce((n, row) => n + (row.unreadable?.length ?? 0), 0)
  status.textContent =
    `${rows.length} VM${rows.length === 1 ? '' : 's'}, ${points} restore points, ${formatBytes(size)}` +
    (failed ? ` · ${failed} VM${failed === 1 ? '' : 's'} could not be read` : '') +
    (unreadable ? ` · ${unreadable} metadata file${unreadable === 1 ? '' : 's'} could not be read` : '') +
    (source === 'index' ? ' · from the repository index' : '')
  status.classList.toggle('has-errors', failed + unreadable > 0)
  progress.hidden = true
}

/** The page's work; a 401 (a server with a token) signs in, then starts again. */
async function main() {
  await init()
  try {
    await load()
  } catch (error) {
    if (error.status !== 401) throw error
    await signIn()
    await load()
  }
}

async function load() {
  const http = httpShare(document.baseURI)
  // Read as plaintext while encryption.json is read (its answer holds the
  // others back): an encrypted repository then asks for its key.
  let share = new EncryptedShare(http, encryptionApi)
  const indexing = readIndex(share)
  indexing.catch(() => {})
  const [vms, locked] = await Promise.all([
    fetch(api('api/vms')).then(async (response) => {
      if (!response.ok) throw await httpError(response)
      return response.json()
    }),
    share.cipher().then(
      () => false,
      (error) => (error.code === 'ENCRYPTED' ? true : Promise.reject(error)),
    ),
  ])
  let index
  if (locked) {
    share = await unlock(http)
    index = await readIndex(share)
  } else {
    index = await indexing
  }
  vms.forEach((vm) => table.add(vm))
  // The index has every VM it knows, those left without restore points
  // included; a VM folder it does not know is read from its cache, and a
  // VM it knows whose folder is gone is not shown.
  let pending = vms
  if (index) {
    const view = index.view()
    pending = []
    for (const vm of vms) {
      if (index.vmGeneration(vm) === null) {
        pending.push(vm)
        continue
      }
      const summaries = view[vm] ?? []
      table.update(vm, { summaries, info: describeVm(summaries) })
    }
  }
  document.body.dataset.source = index ? 'index' : 'caches'
  let done = vms.length - pending.length
  showProgress(done, vms.length)
  await mapLimit(pending, CONCURRENCY, async (vm) => {
    try {
      table.update(vm, await loadVm(http, share, vm))
    } catch (error) {
      table.update(vm, { error: { message: error.message, code: error.code } })
    }
    showProgress(++done, vms.length)
  })
  table.flush()
  showTotals(index ? 'index' : 'caches')
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
