// The VM table. One row per VM of a repository (the same VM backed up to
// two repositories is two rows), made when the VM is listed and updated in
// place when its payload arrives.
//
// What it costs, with a thousand VMs: a payload marks its row; once a
// frame, the marked rows are drawn (as many as fit in a few milliseconds,
// the rest at the next frame, so no task grows long) and each goes to its
// place by a binary search, never a sort of every row. While the pointer
// is over the rows, arriving rows go nowhere but the end and loaded rows
// stay where they are, so the row under the cursor never moves; the order
// is put right once the pointer leaves. A click on a header sorts once and
// puts the rows in with one `replaceChildren`; the filter hides or shows
// only the rows whose match changed.

import { formatBytes, formatDate } from '../common/format.js'

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

// Drawing rows stops for the frame past this much script time.
const FRAME_BUDGET_MS = 12
// A batch larger than this is drawn in its sorted order: the rows on
// screen first, each going after the one before, so none of them moves.
const BATCH = 64
// Payloads arriving one by one are drawn together, at this pace at most:
// each time the table changes, the browser lays it out again, and a
// layout per frame would leave the page no time to fetch and decode.
const INTERVAL_MS = 150

function cell(text, className) {
  const td = document.createElement('td')
  // The rows are laid out as grids (style.css): the roles keep them a table.
  td.setAttribute('role', 'cell')
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
  repository.title = row.repository
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
  // The rows in the tbody, in its order.
  const order = []
  // Rows to draw (a new state) and to place (not yet in the tbody, or maybe out of place).
  const marked = new Set()
  // True when `order` may be out of the sort's order (rows kept still under the pointer).
  let unsorted = false
  let sort = { key: 'name', direction: 1 }
  let filter = ''
  let visible = 0
  let frame = 0
  let timer = 0
  let lastTick = -Infinity
  let hovered = false
  let waiting = []
  // The marked rows sorted, while no row is marked or removed and the sort stays.
  let queue = null
  let marks = 0
  let queued = -1

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

  /** Shows or hides `row` as the filter says, keeping the count of shown rows. */
  function applyFilter(row) {
    const hidden = !matches(row)
    if (row.placed && row.tr.hidden === hidden) return
    if (row.placed) visible += hidden ? -1 : 1
    else if (!hidden) visible++
    row.tr.hidden = hidden
  }

  function showEmpty() {
    empty.hidden = visible > 0 || rows.size === 0
  }

  function showSort() {
    for (const th of table.tHead.querySelectorAll('th[data-sort]')) {
      if (th.dataset.sort === sort.key) th.setAttribute('aria-sort', sort.direction > 0 ? 'ascending' : 'descending')
      else th.removeAttribute('aria-sort')
    }
  }

  function draw(row) {
    if (row.drawn === row.state) return
    renderRow(row)
    row.drawn = row.state
  }

  /** The rows in the tbody sorted, and put back at once; marked rows not yet in wait for work(). */
  function resort() {
    queue = null
    order.sort(compare)
    body.replaceChildren(...order.map((row) => row.tr))
    unsorted = false
  }

  /** Where `row` goes in `order` (which it is not in). */
  function place(row) {
    let low = 0
    let high = order.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (compare(order[middle], row) <= 0) low = middle + 1
      else high = middle
    }
    body.insertBefore(row.tr, order[low]?.tr ?? null)
    order.splice(low, 0, row)
  }

  /** Draws and places marked rows, for `budget` ms at most (all of them without one). */
  function work(budget = Infinity) {
    const start = performance.now()
    let list = marked
    if (!hovered && !unsorted && marked.size > BATCH) {
      if (queue === null || queued !== marks) {
        queue = [...marked].sort(compare)
        queued = marks
      }
      list = queue
    }
    for (const row of list) {
      if (!marked.has(row)) continue
      draw(row)
      applyFilter(row)
      if (hovered) {
        // Under the pointer nothing moves: a new row goes last, a loaded one stays.
        if (!row.placed) {
          body.append(row.tr)
          order.push(row)
          unsorted = true
        } else if (order.length > 1) {
          unsorted = true
        }
      } else if (!unsorted) {
        if (row.placed) order.splice(order.indexOf(row), 1)
        place(row)
      } else if (!row.placed) {
        // Out of order already: the resort to come puts it right.
        body.append(row.tr)
        order.push(row)
      }
      row.placed = true
      marked.delete(row)
      if (performance.now() - start > budget) break
    }
  }

  function tick() {
    frame = 0
    lastTick = performance.now()
    // A table that waited under the pointer is sorted once the pointer has
    // left: one sort and one replaceChildren (a thousand rows: tens of ms).
    if (!hovered && unsorted) resort()
    work(FRAME_BUDGET_MS)
    showEmpty()
    // A backlog goes on at the next frame; what arrives later waits its turn.
    if (marked.size > 0 || (unsorted && !hovered)) frame = requestAnimationFrame(tick)
    else {
      for (const resolve of waiting) resolve()
      waiting = []
    }
  }

  function schedule({ now = false } = {}) {
    if (frame) return
    if (timer && !now) return
    clearTimeout(timer)
    timer = 0
    const wait = now ? 0 : lastTick + INTERVAL_MS - performance.now()
    if (wait <= 0) frame = requestAnimationFrame(tick)
    else
      timer = setTimeout(() => {
        timer = 0
        if (!frame) frame = requestAnimationFrame(tick)
      }, wait)
  }

  function mark(row) {
    marked.add(row)
    marks++
    schedule()
  }

  /** Draws and places every marked row now, sorting if needed. */
  function flush() {
    if (frame) cancelAnimationFrame(frame)
    clearTimeout(timer)
    frame = 0
    timer = 0
    if (!hovered && unsorted) resort()
    work()
    showEmpty()
    showSort()
    for (const resolve of waiting) resolve()
    waiting = []
  }

  function select(row) {
    for (const other of body.querySelectorAll('tr[aria-selected="true"]')) other.removeAttribute('aria-selected')
    row.tr.setAttribute('aria-selected', 'true')
    onSelect(row)
  }

  /** A row for `vm` of `repository` (its name), under `key`, until its payload arrives. */
  function add(key, { vm, repository = '' }) {
    const tr = document.createElement('tr')
    tr.setAttribute('role', 'row')
    tr.dataset.vm = vm
    tr.dataset.repository = repository
    tr.tabIndex = 0
    const row = { key, vm, repository, tr, state: 'loading', drawn: undefined, placed: false }
    tr.addEventListener('click', () => select(row))
    tr.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault()
        select(row)
      }
    })
    rows.set(key, row)
    mark(row)
  }

  /** A VM folder gone from its repository. */
  function remove(key) {
    const row = rows.get(key)
    if (!row) return
    rows.delete(key)
    marked.delete(row)
    marks++
    if (row.placed) {
      order.splice(order.indexOf(row), 1)
      if (!row.tr.hidden) visible--
      row.tr.remove()
    }
    schedule()
  }

  /** `{ summaries, info }` once decoded, or `{ error }`. */
  function update(key, result) {
    const row = rows.get(key)
    Object.assign(row, result, { state: result.error ? 'error' : 'ok' })
    // Drawn again even in the same state: the payload changed.
    row.drawn = undefined
    if (row.tr.getAttribute('aria-selected') === 'true') onSelect(row)
    mark(row)
  }

  body.addEventListener('pointerenter', () => {
    hovered = true
  })
  body.addEventListener('pointerleave', () => {
    hovered = false
    if (unsorted) schedule()
  })

  for (const th of table.tHead.querySelectorAll('th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const key = th.dataset.sort
      // Sizes, counts and dates read best largest or newest first.
      sort = sort.key === key ? { key, direction: -sort.direction } : { key, direction: ['name', 'uuid', 'repository'].includes(key) ? 1 : -1 }
      // Asked for: sorted now, under the pointer too.
      resort()
      showEmpty()
      showSort()
    })
  }
  showSort()
  // CSS lays the table out as grids, which takes its implicit roles away.
  table.setAttribute('role', 'table')
  for (const group of [table.tHead, body]) group.setAttribute('role', 'rowgroup')
  for (const tr of table.tHead.rows) tr.setAttribute('role', 'row')
  for (const th of table.tHead.querySelectorAll('th')) th.setAttribute('role', 'columnheader')

  return {
    add,
    remove,
    has: (key) => rows.has(key),
    update,
    flush,
    /** Resolves once every row is drawn and in place, a frame's slice at a time (no long task). */
    settle() {
      if (marked.size === 0 && !(unsorted && !hovered)) {
        showEmpty()
        return Promise.resolve()
      }
      // Asked for: no waiting for the pace.
      schedule({ now: true })
      return new Promise((resolve) => waiting.push(resolve))
    },
    setFilter(text) {
      filter = text.trim().toLowerCase()
      for (const row of order) applyFilter(row)
      showEmpty()
    },
    get rows() {
      return [...rows.values()]
    },
  }
}
