// Handlers do every byte of I/O for the repository layer; see interface.md.

import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LocalHandler } from './local.js'
import { S3Handler } from './s3.js'

export { LocalHandler, LOCK_SUFFIX, TEMP_PREFIX, cleanTempsWith, isTempName } from './local.js'
export { SimulatedShare } from './simulated.js'
export { EncryptedShare, initializeEncryption } from '../../common/encrypted-share.js'
export { S3Handler, parseS3Url } from './s3.js'

/**
 * A handler for a repository given as a handler (returned as is: anything
 * with a `list` method, so wrappers and test doubles need no base class), a
 * path, or a file: URL.
 */
export function openHandler(pathOrHandler, { s3 } = {}) {
  if (pathOrHandler !== null && typeof pathOrHandler === 'object' && typeof pathOrHandler.list === 'function') {
    return pathOrHandler
  }
  if (typeof pathOrHandler === 'string' && pathOrHandler.startsWith('s3://')) return S3Handler.fromUrl(pathOrHandler, s3)
  if (pathOrHandler instanceof URL) return new LocalHandler(fileURLToPath(pathOrHandler))
  if (typeof pathOrHandler === 'string' && pathOrHandler !== '') return new LocalHandler(resolve(pathOrHandler))
  throw Object.assign(new TypeError('openHandler needs a handler, a directory path or a file: URL'), { code: 'EINVAL' })
}
