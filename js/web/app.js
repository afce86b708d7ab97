// The restore view page: lists the repository's VMs, fetches each VM's
// cache.json.gz as it lies on the share and decodes it here with the wasm
// build, straight to the restore view's summaries (never full records).
// A VM whose payload fails shows its error on its own row; the others go on.

import { init, summariesOf } from '../browser.js'
import { mapLimit } from '../concurrency.js'
import { CACHE_FILE, vmFile } from '../layout.js'
import { showDetails } from './details.js'
import { describeVm, formatBytes } from './format.js'
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

/** The server's `{ error }` if it sent one, else the status line. */
async function httpError(response) {
  let message = `${response.status} ${response.statusText}`
  try {
    const body = await response.json()
    if (typeof body?.error === 'string') message = `${message}: ${body.error}`
  } catch {
    // Not JSON: the status line says enough.
  }
  return new Error(`HTTP ${message}`)
}

async function loadVm(vm) {
  const response = await fetch(api(`api/vms/${encodeURIComponent(vm)}/cache`))
  if (!response.ok) throw await httpError(response)
  const bytes = new Uint8Array(await response.arrayBuffer())
  // Named as on the share, so the error reads as `brcache check` would say it.
  return summariesOf(vm, bytes, undefined, { name: vmFile(vm, CACHE_FILE) })
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
  status.textContent =
    `${rows.length} VM${rows.length === 1 ? '' : 's'}, ${points} restore points, ${formatBytes(size)}` +
    (failed ? ` · ${failed} VM${failed === 1 ? '' : 's'} could not be read` : '')
  status.classList.toggle('has-errors', failed > 0)
  progress.hidden = true
}

async function main() {
  await init()
  const response = await fetch(api('api/vms'))
  if (!response.ok) throw await httpError(response)
  const vms = await response.json()
  vms.forEach((vm) => table.add(vm))
  let done = 0
  showProgress(done, vms.length)
  await mapLimit(vms, CONCURRENCY, async (vm) => {
    try {
      const summaries = await loadVm(vm)
      table.update(vm, { summaries, info: describeVm(summaries) })
    } catch (error) {
      table.update(vm, { error: { message: error.message, code: error.code } })
    }
    showProgress(++done, vms.length)
  })
  table.flush()
  showTotals()
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
