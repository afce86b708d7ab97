// What a test compares to see that nothing wrote in a folder.

import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

/** Every file and folder under `dir`, with each file's size and date: what a write would change. */
export function treeOf(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((entry) => {
      const path = join(entry.parentPath, entry.name)
      const info = statSync(path)
      return `${relative(dir, path)} ${entry.isDirectory() ? 'folder' : `${info.size} ${info.mtimeMs}`}`
    })
    .sort()
}
