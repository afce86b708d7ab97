// Debian's Chromium (installed by scripts/build.mjs), driven by
// playwright-core: never a browser a test tool downloads. Used by the
// browser test and the browser benchmark.

import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'

// As root Chromium needs --no-sandbox; the rest keeps it from reaching for
// Google's hosts, which this machine's closed network refuses.
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** A headless Chromium whose profile and dot-folders live in a temp dir; `close()` removes it. */
export async function launchChromium() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run \`node scripts/build.mjs\`, which installs it`)
  // Chromium writes ~/.config and ~/.cache even with its own profile folder.
  const home = mkdtempSync(join(tmpdir(), 'brcache-chromium-'))
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache') },
  })
  return {
    browser,
    async close() {
      await browser.close()
      rmSync(home, { recursive: true, force: true })
    },
  }
}
