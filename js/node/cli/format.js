// Terminal output for the command line: tables, sizes, a progress bar that
// shows on a terminal and stays quiet when piped.

export { formatBytes } from '../../common/format.js'

/** A plain text table with aligned columns; '' when there are no rows. */
export function table(headers, rows) {
  if (rows.length === 0) return ''
  const cells = [headers, ...rows].map((row) => row.map((cell) => String(cell)))
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => row[i].length)))
  const line = (row) => row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n')
}

/** A progress bar on stderr when it is a terminal; silent otherwise. */
export function progress(label, stream = process.stderr) {
  const active = Boolean(stream.isTTY)
  let last = 0
  return {
    update(done, total, unit = '') {
      if (!active) return
      const now = Date.now()
      if (done < total && now - last < 100) return
      last = now
      const width = 30
      const filled = Math.round((done / total) * width)
      stream.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${unit}`)
    },
    done() {
      if (active) stream.write('\r\x1b[K')
    },
  }
}
