// The Garage cluster the S3 tests run against (scripts/garage.sh): started
// (and, the first time on a machine, installed) by the project itself.

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const script = join(import.meta.dirname, '..', '..', 'scripts', 'garage.sh')

/** Starts the 3-node cluster (idempotent) and returns its settings. */
export function startGarage() {
  const envFile = execFileSync('bash', [script, 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim()
  const env = Object.fromEntries(
    readFileSync(envFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(/=(.*)/s).slice(0, 2)),
  )
  return {
    endpoints: env.BRCACHE_S3_ENDPOINTS.split(','),
    bucket: env.BRCACHE_S3_BUCKET,
    accessKeyId: env.BRCACHE_S3_KEY,
    secretAccessKey: env.BRCACHE_S3_SECRET,
    region: env.BRCACHE_S3_REGION,
  }
}

export function stopGarage() {
  execFileSync('bash', [script, 'stop'], { stdio: 'ignore' })
}

/** SIGKILLs one node (1 to 3); `startGarage` brings it back. */
export function killGarageNode(node) {
  execFileSync('bash', [script, 'kill', String(node)], { stdio: 'ignore' })
}
