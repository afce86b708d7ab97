// A local share that says it has no locks, as S3Handler does: what a
// listing does on S3, without an object store.

import { LocalHandler } from '../../js/node/handlers/index.js'

export class Lockless extends LocalHandler {
  get supportsLocks() {
    return false
  }
}
