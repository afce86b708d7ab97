// The VM table. One row per VM of a repository (the same VM backed up to
// two repositories is two rows), made when the VM is listed and updated in
// place when its payload arrives; sorting and filtering only move or hide
// rows, so a thousand VMs loading one by one cost a thousand small updates,
// not a thousand redraws.

import { formatBytes, formatDate } from './format.js'

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' })

// Each compares two loaded rows; rows still loading or in error go last.
const ORDERS = {
  repository: (a, b) => collator.compare(a.repository, b.repository),
  name: (a, b) => collator.compare(a.info.name, b.info.name),
  uuid: () => 0,
  count: (a, b) => a.info.count - b.info.count,
  last: (a, b) => (a.info.last ?? -Infinity) - (b.info.last ?? -Infinity),
  size: (a, b) => a.info.size - b.info.size,
}

function cell(text, className) {
  const td = document.createElement('td')
  td.textContent = text
  if (className) td.className = className
  return td
}

// Full backups first, as a restore starts from one; other modes after.
const MODE_ORDER = ['full', 'delta']
const modeRank = (mode) => (MODE_ORDER.includes(mode) ? MODE_ORDER.indexOf(mode) : MODE_ORDER.length)

function modeBadges(modes) {
  const td = cell('', 'modes')
  const ordered = Object.entries(modes).sort(([a], [b]) => modeRank(a) - modeRank(b) || collator.compare(a, b))
  for (const [mode, n] of ordered) {
    const badge = document.createElement('span')
    badge.className = `mode mode-${mode.replace(/[^a-z0-9-]/gi, '')}`
    badge.dataset.mode = mode
    badge.dataset.n = String(n)
    badge.textContent = `${n} ${mode}`
    td.append(badge)
  }
  return td
}

function renderRow(row) {
  const { tr, vm, state, info, error } = row
  tr.dataset.state = state
  // Shown only when the page has several repositories (see style.css).
  const repository = cell(row.repository, 'repository')
  // The uuid's first group tells VMs apart at a glance; all of it on hover.
  const uuid = cell(`${vm.slice(0, 8)}…`, 'uuid')
  uuid.title = vm
  if (state === 'ok') {
    tr.dataset.count = String(info.count)
    const name = cell(info.name || '(unnamed)', 'name')
    // Restore points left out because their metadata files cannot be read:
    // the count is not the whole story, and the row says so.
    const unreadable = row.unreadable?.length ?? 0
    if (unreadable > 0) {
      tr.dataset.unreadable = String(unreadable)
      const note = document.createElement('span')
      note.className = 'unreadable'
      note.textContent = `${unreadable} unreadable`
      note.title = row.unreadable.map(({ id, reason }) => `${id}: ${reason}`).join('\n')
      name.append(' ', note)
    } else {
      delete tr.dataset.unreadable
    }
    tr.replaceChildren(
      repository,
      name,
      uuid,
      cell(String(info.count), 'count number'),
      modeBadges(info.modes),
      cell(formatDate(info.last, { seconds: false }), 'last'),
      cell(formatBytes(info.size), 'size number'),
    )
  } else {
    delete tr.dataset.count
    const message = cell(state === 'error' ? error.message : 'loading…', state === 'error' ? 'error' : 'loading')
    message.colSpan = 4
    if (state === 'error' && error.code) message.dataset.code = error.code
    // The name is in the payload that failed: the code stands in for it.
    const name = cell(state === 'error' ? (error.code ?? 'unavailable') : '', state === 'error' ? 'name failed' : 'name')
    tr.replaceChildren(repository, name, uuid, message)
  }
}

/**
 * @param {HTMLTableElement} table with a `th[data-sort]` for each sortable column
 * @param {{ onSelect(row): void, empty: HTMLElement }} options
 */
export function createVmTable(table, { onSelect, empty }) {
  const body = table.tBodies[0]
  const rows = new Map()
  let sort = { key: 'name', direction: 1 }
  let filter = ''
  let scheduled = false

  function matches(row) {
    if (!filter) return true
    return row.vm.toLowerCase().includes(filter) || (row.info?.name ?? '').toLowerCase().includes(filter)
  }

  function compare(a, b) {
    const loaded = (a.state === 'ok') - (b.state === 'ok')
    if (loaded !== 0) return -loaded
    const order = a.state === 'ok' ? ORDERS[sort.key](a, b) * sort.direction : 0
    return order || collator.compare(a.vm, b.vm) * (sort.key === 'uuid' ? sort.direction : 1) || collator.compare(a.repository, b.repository)
  }

  /** Puts rows in order and applies the filter (now). */
  function flush() {
    scheduled = false
    const ordered = [...rows.values()].sort(compare)
    let visible = 0
    for (const row of ordered) {
      row.tr.hidden = !matches(row)
      if (!row.tr.hidden) visible++
      body.append(row.tr) // moves it: the rows end up in sorted order
    }
    empty.hidden = visible > 0 || rows.size === 0
    for (const th of table.tHead.querySelectorAll('th[data-sort]')) {
      if (th.dataset.sort === sort.key) th.setAttribute('aria-sort', sort.direction > 0 ? 'ascending' : 'descending')
      else th.removeAttribute('aria-sort')
    }
  }

  // Payloads arrive in bursts: order the rows once per frame, not per VM.
  function schedule() {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(() => scheduled && flush())
  }

  function select(row) {
    for (const other of body.querySelectorAll('tr[aria-selected="true"]')) other.removeAttribute('aria-selected')
    row.tr.setAttribute('aria-selected', 'true')
    onSelect(row)
  }

  /** A row for `vm` of `repository` (its name), under `key`, until its payload arrives. */
  function add(key, { vm, repository = '' }) {
    const tr = document.createElement('tr')
    tr.dataset.vm = vm
    tr.dataset.repository = repository
    tr.tabIndex = 0
    const row = { key, vm, repository, tr, state: 'loading' }
    tr.addEventListener('click', () => select(row))
    tr.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault()
        select(row)
      }
    })
    rows.set(key, row)
    renderRow(row)
    schedule()
  }

  /** A VM folder gone from its repository. */
  function remove(key) {
    const row = rows.get(key)
    if (!row) return
    row.tr.remove()
    rows.delete(key)
    schedule()
  }

  /** `{ summaries, info }` once decoded, or `{ error }`. */
  function update(key, result) {
    const row = rows.get(key)
    Object.assign(row, result, { state: result.error ? 'error' : 'ok' })
    renderRow(row)
    if (row.tr.getAttribute('aria-selected') === 'true') onSelect(row)
    schedule()
  }

  for (const th of table.tHead.querySelectorAll('th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const key = th.dataset.sort
      // Sizes, counts and dates read best largest or newest first.
      sort = sort.key === key ? { key, direction: -sort.direction } : { key, direction: ['name', 'uuid', 'repository'].includes(key) ? 1 : -1 }
      flush()
    })
  }

  return {
    add,
    remove,
    has: (key) => rows.has(key),
    update,
    flush,
    setFilter(text) {
      filter = text.trim().toLowerCase()
      flush()
    },
    get rows() {
      return [...rows.values()]
    },
  }
}
