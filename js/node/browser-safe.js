// Which of the package's code runs in a browser, named once. The lint
// (eslint.config.js) forbids Node's modules and Node globals there, and
// `brcache serve` (js/node/serve.js) serves exactly these files, so a
// module the page needs cannot be missing from the server while the lint
// lets a Node import into the page, or the other way round.

import { readdirSync } from 'node:fs'
import { join, relative, sep } from 'node:path'

/** Runs in Node and in browsers alike (the glue over either core): no Node module, no DOM. */
export const SHARED = ['js/common/']

/** Runs in browsers only: the browser entry and the restore view page. */
export const BROWSER = ['js/browser.js', 'js/web/']

/** Every browser-safe file or folder (a folder ends with `/`), relative to the package. */
export const BROWSER_SAFE = [...BROWSER, ...SHARED]

/**
 * The wasm build the browser entry imports. Named rather than listed from
 * its folder: before `npm run build` it is missing, and the server says so
 * instead of answering a bare 404; its .d.ts files are not for browsers.
 */
export const WASM_WEB = ['js/generated/wasm-web/brcache_wasm.js', 'js/generated/wasm-web/brcache_wasm_bg.wasm']

const SERVED_TYPES = /\.(js|css|html|wasm)$/

/**
 * The files a browser may load, relative to `packageDir`: every file of
 * BROWSER_SAFE's folders (regular files only: a symbolic link, which
 * could point anywhere, is left out) and WASM_WEB.
 */
export function browserFiles(packageDir) {
  const files = []
  for (const entry of BROWSER_SAFE) {
    if (!entry.endsWith('/')) {
      files.push(entry)
      continue
    }
    for (const dirent of readdirSync(join(packageDir, entry), { recursive: true, withFileTypes: true })) {
      if (!dirent.isFile() || !SERVED_TYPES.test(dirent.name)) continue
      files.push(relative(packageDir, join(dirent.parentPath, dirent.name)).split(sep).join('/'))
    }
  }
  return [...files, ...WASM_WEB].sort()
}
