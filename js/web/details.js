// The details pane: one VM's restore points, newest first, as a user picks
// one to restore.

import { describeVm, formatBytes, formatDate } from '../common/format.js'

function element(tag, text, className) {
  const node = document.createElement(tag)
  if (text !== undefined) node.textContent = text
  if (className) node.className = className
  return node
}

function pointRow(summary, download) {
  const tr = element('tr')
  tr.dataset.id = summary.id
  const mode = element('span', String(summary.mode ?? ''), `mode mode-${String(summary.mode ?? '').replace(/[^a-z0-9-]/gi, '')}`)
  const modeCell = element('td')
  modeCell.append(mode)
  const disks = summary.disks ?? []
  const diskCell = element('td', String(disks.length), 'number disks')
  if (disks.length === 0 && summary.mode === 'full') {
    // A full backup is one XVA holding every disk: its metadata names no
    // VHD, so the summary has no disk to count, and "0" would be untrue.
    diskCell.textContent = '—'
    diskCell.dataset.disks = 'xva'
    diskCell.title = 'A full backup holds the whole VM, every disk included, in one XVA file'
  } else {
    diskCell.dataset.disks = String(disks.length)
    // The disk names are there on hover: most VMs have one or two.
    diskCell.title = disks.map((d) => d.name ?? d.uuid ?? d.id).join('\n')
  }
  tr.append(
    element('td', formatDate(summary.timestamp), 'date'),
    modeCell,
    element('td', formatBytes(summary.size), 'number'),
    diskCell,
    element('td', summary.withMemory ? 'yes' : '', 'memory'),
  )
  if (download) {
    const button = element('button', 'Metadata', 'download')
    button.type = 'button'
    button.title = 'Download this restore point\'s metadata file, as it lies (decrypted here on an encrypted repository)'
    button.addEventListener('click', (event) => {
      event.stopPropagation()
      download(summary).catch((error) => {
        button.textContent = 'failed'
        button.title = error.message
      })
    })
    const td = element('td')
    td.append(button)
    tr.append(td)
  }
  return tr
}

/**
 * Shows `row` (a VM of the table, loaded or in error) in `pane`;
 * `download(summary)`, when given, fetches a restore point's metadata file.
 */
export function showDetails(pane, row, { download } = {}) {
  pane.dataset.vm = row.vm
  const title = element('h2', row.info?.name || row.vm)
  const uuid = element('p', row.vm, 'uuid')
  if (row.state === 'error') {
    pane.replaceChildren(title, uuid, element('p', row.error.message, 'error'))
    return
  }
  if (row.pointsError !== undefined) {
    pane.replaceChildren(title, uuid, element('p', row.pointsError, 'error'))
    return
  }
  // (A row from the index's table: its restore points are on their way.)
  if (row.state !== 'ok' || row.summaries === undefined) {
    pane.replaceChildren(title, uuid, element('p', 'loading…', 'hint'))
    return
  }
  const { count, size } = describeVm(row.summaries)
  const head = element('tr')
  for (const [label, className] of [['Date (UTC)'], ['Mode'], ['Size', 'number'], ['Disks', 'number'], ['Memory'], ...(download ? [['File']] : [])]) {
    const th = element('th', label, className)
    th.scope = 'col'
    head.append(th)
  }
  const thead = element('thead')
  thead.append(head)
  const body = element('tbody')
  body.append(...row.summaries.toReversed().map((summary) => pointRow(summary, download)))
  const table = element('table', undefined, 'points')
  table.append(thead, body)
  const line = element('p', `${count} restore point${count === 1 ? '' : 's'}, ${formatBytes(size)}`, 'summary')
  const unreadable = (row.unreadable ?? []).map(({ id, reason }) => element('p', `Not listed, unreadable: ${id}: ${reason}`, 'error'))
  pane.replaceChildren(title, uuid, line, ...unreadable, table)
}
