// A service the tests run against, started and stopped by a script of the
// project's own (scripts/garage.sh, scripts/smb.sh): `start` installs what
// is missing, starts it (idempotent) and prints the path of an env file of
// KEY=value lines, which tests read as their settings.

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** The script `scripts/<name>`: `start()` it, or `run(...args)` another of its commands. */
export function serviceScript(name) {
  const script = join(import.meta.dirname, '..', '..', 'scripts', name)
  return {
    /** Starts it; its env file's settings, `{ KEY: value }`. */
    start() {
      const envFile = execFileSync('bash', [script, 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim()
      return Object.fromEntries(
        readFileSync(envFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => line.split(/=(.*)/s).slice(0, 2)),
      )
    },
    run(...args) {
      execFileSync('bash', [script, ...args], { stdio: 'ignore' })
    },
  }
}
