// The Garage cluster the S3 tests run against (scripts/garage.sh): started
// (and, the first time on a machine, installed) by the project itself.

import { serviceScript } from './service.mjs'

const garage = serviceScript('garage.sh')

/** Starts the 3-node cluster (idempotent) and returns its settings. */
export function startGarage() {
  const env = garage.start()
  return {
    endpoints: env.BRCACHE_S3_ENDPOINTS.split(','),
    bucket: env.BRCACHE_S3_BUCKET,
    accessKeyId: env.BRCACHE_S3_KEY,
    secretAccessKey: env.BRCACHE_S3_SECRET,
    region: env.BRCACHE_S3_REGION,
  }
}

export function stopGarage() {
  garage.run('stop')
}

/** SIGKILLs one node (1 to 3); `startGarage` brings it back. */
export function killGarageNode(node) {
  garage.run('kill', String(node))
}
