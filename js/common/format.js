// How the restore view writes sizes, dates and modes. Shared with the
// command line (js/node/cli/format.js), so a size reads the same in both.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function formatBytes(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return ''
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`
}

/**
 * `2024-01-03 01:01:06` in UTC (the column headers say so): ISO order,
 * the same in every locale and time zone, as the command line prints it.
 */
export function formatDate(ms, { seconds = true } = {}) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return ''
  return new Date(ms).toISOString().slice(0, seconds ? 19 : 16).replace('T', ' ')
}

/**
 * What the table shows of a VM: its name (the newest restore point's, as
 * a VM may have been renamed), counts by mode, last backup, total size.
 */
export function describeVm(summaries) {
  const modes = {}
  let size = 0
  for (const s of summaries) {
    const mode = typeof s.mode === 'string' ? s.mode : 'unknown'
    modes[mode] = (modes[mode] ?? 0) + 1
    if (typeof s.size === 'number') size += s.size
  }
  const last = summaries.at(-1)
  return {
    name: typeof last?.vm?.name_label === 'string' ? last.vm.name_label : '',
    count: summaries.length,
    modes,
    last: typeof last?.timestamp === 'number' ? last.timestamp : undefined,
    size,
  }
}

/**
 * What the table shows of a VM from its row of the core's VM table
 * (`{ name, count, modes, lastBackup, size }`), as describeVm says it of
 * summaries; a VM without a row has no restore points.
 */
export function describeRow(row) {
  if (row === undefined) return describeVm([])
  return {
    name: typeof row.name === 'string' ? row.name : '',
    count: row.count,
    modes: { ...row.modes },
    last: typeof row.lastBackup === 'number' ? row.lastBackup : undefined,
    size: row.size,
  }
}
