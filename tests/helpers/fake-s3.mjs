// Fake S3 endpoints on loopback, one per behaviour under test, each with an
// S3Handler pointed at it (one attempt: a fake answers at once or never).

import { S3Handler } from 'brcache'

/**
 * Starts `make(kind)` (which returns `{ server, ... }`, an http.Server not
 * yet listening) for each kind, and gives each its handler.
 * @returns {Promise<Record<string, { server: import('node:http').Server, handler: S3Handler }>>}
 */
export async function startFakes(kinds, make) {
  const fakes = {}
  for (const kind of kinds) {
    const fake = make(kind)
    await new Promise((resolve) => fake.server.listen(0, '127.0.0.1', resolve))
    fake.handler = new S3Handler({
      endpoint: `http://127.0.0.1:${fake.server.address().port}`,
      bucket: 'b',
      prefix: 'p',
      accessKeyId: 'k',
      secretAccessKey: 's',
      maxAttempts: 1,
    })
    fakes[kind] = fake
  }
  return fakes
}

/** Stops what {@link startFakes} started. */
export function stopFakes(fakes) {
  for (const { server, handler } of Object.values(fakes)) {
    handler.destroy()
    server.close()
  }
}
