// The SMB share the SMB tests run against (scripts/smb.sh): Samba on
// loopback, mounted through the FUSE client smbnetfs, started (and, the
// first time on a machine, installed) by the project itself.

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const script = join(import.meta.dirname, '..', '..', 'scripts', 'smb.sh')

/** Starts the share and its mount (idempotent): `{ mount, exported }`. */
export function startSmb() {
  const envFile = execFileSync('bash', [script, 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim()
  const env = Object.fromEntries(
    readFileSync(envFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  )
  return { mount: env.BRCACHE_SMB_MOUNT, exported: env.BRCACHE_SMB_EXPORT }
}

export function stopSmb() {
  execFileSync('bash', [script, 'stop'], { stdio: 'ignore' })
}
